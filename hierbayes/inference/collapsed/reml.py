r"""Empirical Bayes for Gaussian multilevel models: ML and REML estimates with BLUPs.

Model (as in :mod:`hierbayes.inference.collapsed.build`): :math:`y \sim N(X\beta + o, V)`,
:math:`V = \sigma^2 (I + \sum_g Z_g (I \otimes \Lambda_g\Lambda_g') Z_g') = \sigma^2 V_\theta`,
where :math:`\Lambda_g = L_g / \sigma` is the *relative* covariance factor
(:math:`\Omega_g = \sigma^2 \Lambda_g\Lambda_g'`; lme4's :math:`\theta` are the lower-triangular
entries of the :math:`\Lambda_g`, column by column, diagonal entries :math:`\ge 0`).

For fixed :math:`\theta` everything else is in closed form (Bates et al. 2015, *Fitting
linear mixed-effects models using lme4*, section 3). With :math:`R = [y - o, X]` and the
Woodbury algebra of :mod:`hierbayes.inference.collapsed.likelihood` applied to all :math:`p + 1` columns of
:math:`R` at once (per-group :math:`q \times q` work, :math:`O(Gq^2p)` after the one-off
sums),

.. math::

    R'V_\theta^{-1}R = \begin{pmatrix} s_{yy} & s_{Xy}' \\ s_{Xy} & S_{XX}\end{pmatrix},
    \qquad \hat\beta_\theta = S_{XX}^{-1}s_{Xy}, \qquad
    \mathrm{pwrss}_\theta = s_{yy} - s_{Xy}'\hat\beta_\theta,

and the profiled criteria (:math:`-2` log-likelihood and lme4's REML criterion) are

.. math::

    d_{ML}(\theta) = \log|V_\theta| + n\Big(1 + \log\frac{2\pi\,\mathrm{pwrss}_\theta}{n}\Big),
    \qquad
    d_{REML}(\theta) = \log|V_\theta| + \log|S_{XX}|
        + (n-p)\Big(1 + \log\frac{2\pi\,\mathrm{pwrss}_\theta}{n-p}\Big),

with :math:`\hat\sigma^2 = \mathrm{pwrss}/n` (ML) or :math:`\mathrm{pwrss}/(n-p)` (REML).
:math:`\theta` is found with ``scipy.optimize.minimize`` (L-BFGS-B, bounds
:math:`\Lambda_{kk} \ge 0`). Standard errors of :math:`\hat\beta` are the square roots of the
diagonal of :math:`\hat\sigma^2 S_{XX}^{-1}` (as lme4's ``vcov``). The BLUPs are the
conditional means :math:`E[u \mid y]` at the estimates
(:func:`hierbayes.inference.collapsed.build.conditional_effects`).

The fixed-effect columns are standardised for the numerics (:mod:`hierbayes.inference.build`); the
estimates, standard errors and the REML criterion are reported for the data's own columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from hierbayes.design import Design, GroupDesign, make_design
from hierbayes.exceptions import SpecError
from hierbayes.inference.collapsed.build import (
    CollapsedData,
    _chol,
    _forward,
    _sum_outer,
    _t,
    collapse_problem,
    collapsed_data,
    conditional_effects,
)
from hierbayes.inference.collapsed.likelihood import CollapsedFactor
from hierbayes.spec import names
from hierbayes.spec.formula import parse_formula
from hierbayes.spec.model import ModelSpec

__all__ = ["EmpiricalBayes", "empirical_bayes"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(eq=False)
class EmpiricalBayes:
    r"""ML or REML estimates of a Gaussian multilevel model, with BLUPs.

    Attributes
    ----------
    spec, design
        The model and its data.
    method
        ``"reml"`` or ``"ml"``.
    fixed
        One row per fixed effect: ``estimate`` (GLS), ``se``, ``t``.
    sd, corr
        Per group: the standard deviations of its varying terms (``pd.Series``) and their
        correlation matrix (``pd.DataFrame``; the identity for diagonal terms).
    sigma
        Residual standard deviation.
    blups
        Per group: conditional means of the random effects, levels x terms.
    criterion
        lme4's REML criterion (``method="reml"``) or the deviance :math:`-2\log L` (``"ml"``).
    loglik
        ``-criterion / 2`` (the REML log-likelihood for ``"reml"``, as lme4's ``logLik``).
    theta
        Relative covariance factors at the optimum (lme4's ``theta``).
    converged
        Whether the optimiser reported success.
    settings
        Optimiser details (iterations, message).
    """

    spec: ModelSpec
    design: Design
    method: str
    fixed: pd.DataFrame
    sd: dict[str, pd.Series]
    corr: dict[str, pd.DataFrame]
    sigma: float
    blups: dict[str, pd.DataFrame]
    criterion: float
    loglik: float
    theta: np.ndarray
    converged: bool
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def variances(self) -> pd.DataFrame:
        """Variance components in lme4's layout: ``group, term1, term2, variance, sd_or_corr``."""
        rows = []
        for name, sd in self.sd.items():
            for term, s in sd.items():
                rows.append((name, term, None, s**2, s))
            corr = self.corr[name]
            terms = list(sd.index)
            for i, a in enumerate(terms):
                for b in terms[i + 1 :]:
                    rows.append((name, a, b, corr.loc[a, b] * sd[a] * sd[b], corr.loc[a, b]))
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["group", "term1", "term2", "variance", "sd_or_corr"])

    def __repr__(self) -> str:
        return (
            f"<hierbayes.EmpiricalBayes {self.method.upper()} {self.spec.formula()!r} "
            f"n={self.design.n_obs} criterion={self.criterion:.4f}>"
        )


# --------------------------------------------------------------------------------------
# Profiled criterion
# --------------------------------------------------------------------------------------


def _is_full(g: GroupDesign) -> bool:
    return g.term.covariance == "full" and len(g.coef_names) > 1


def _theta_layout(groups: tuple[GroupDesign, ...]) -> list[list[tuple[int, int]]]:
    """Matrix positions of each group's entries of ``theta`` (lower triangle, column by column)."""
    out = []
    for g in groups:
        q = len(g.coef_names)
        if _is_full(g):
            out.append([(i, j) for j in range(q) for i in range(j, q)])
        else:
            out.append([(i, i) for i in range(q)])
    return out


def _lambdas(theta: np.ndarray, groups: tuple[GroupDesign, ...]) -> list[np.ndarray]:
    mats, k = [], 0
    for g, pos in zip(groups, _theta_layout(groups), strict=True):
        q = len(g.coef_names)
        Lam = np.zeros((q, q))
        for i, j in pos:
            Lam[i, j] = theta[k]
            k += 1
        mats.append(Lam)
    return mats


def _weighted_cross_products(data: CollapsedData, lambdas: list[np.ndarray]) -> tuple[float, np.ndarray]:
    r"""Return :math:`\log|V_\theta|` and :math:`R'V_\theta^{-1}R` (``(m, m)``)."""
    S = data.RtR.copy()
    if isinstance(data.factors, CollapsedFactor):
        Lam = lambdas[0]
        C = _chol(np.eye(Lam.shape[0]) + Lam.T @ data.factors.gram @ Lam)
        W = _forward(C, Lam.T @ data.ZtR[0])  # (G, q, m)
        S -= np.einsum("gqa,gqb->ab", W, W)
        return 2.0 * float(np.log(np.diagonal(C, axis1=1, axis2=2)).sum()), S
    nf = data.factors
    Lam1, Lam2 = lambdas
    C2 = _chol(np.eye(Lam2.shape[0]) + Lam2.T @ nf.inner.gram @ Lam2)
    W = _forward(C2, Lam2.T @ data.ZtR[1])  # (J, q2, m)
    B = _forward(C2, Lam2.T @ nf.cross_gram)  # (J, q2, q1)
    P = data.outer_sum
    T = data.ZtR[0] - _sum_outer(P, (_t(B) @ W)[None])[0]  # (K, q1, m)
    Q = nf.outer.gram - _sum_outer(P, (_t(B) @ B)[None])[0]
    C1 = _chol(np.eye(Lam1.shape[0]) + Lam1.T @ Q @ Lam1)
    E = _forward(C1, Lam1.T @ T)
    S -= np.einsum("gqa,gqb->ab", W, W) + np.einsum("gqa,gqb->ab", E, E)
    logdet = np.log(np.diagonal(C2, axis1=1, axis2=2)).sum() + np.log(np.diagonal(C1, axis1=1, axis2=2)).sum()
    return 2.0 * float(logdet), S


@dataclass(frozen=True)
class _Profile:
    criterion: float
    delta: np.ndarray
    pwrss: float
    Sxx: np.ndarray
    sigma2: float


def _profile(theta: np.ndarray, data: CollapsedData, reml: bool, log_det_A: float) -> _Profile:
    logdet, S = _weighted_cross_products(data, _lambdas(theta, data.groups))
    n, p = data.n, data.p
    Sxx, sxy, syy = S[1:, 1:], S[1:, 0], S[0, 0]
    if p:
        cf = np.linalg.cholesky(Sxx)
        delta = np.linalg.solve(Sxx, sxy)
        logdet_xx = 2.0 * float(np.log(np.diag(cf)).sum())
    else:
        delta, logdet_xx = np.zeros(0), 0.0
    pwrss = float(syy - sxy @ delta)
    dof = n - p if reml else n
    crit = logdet + dof * (1.0 + _LOG_2PI + math.log(pwrss / dof))
    if reml:
        crit += logdet_xx - 2.0 * log_det_A
    return _Profile(criterion=crit, delta=delta, pwrss=pwrss, Sxx=Sxx, sigma2=pwrss / dof)


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def _theta_start_and_bounds(groups: tuple[GroupDesign, ...]) -> tuple[np.ndarray, list[tuple[float | None, None]]]:
    start, bounds = [], []
    for pos in _theta_layout(groups):
        for i, j in pos:
            start.append(1.0 if i == j else 0.0)
            bounds.append((0.0, None) if i == j else (None, None))
    return np.array(start), bounds


def fit_design(design: Design, method: Literal["reml", "ml"] = "reml") -> EmpiricalBayes:
    """ML/REML fit of a design (see :func:`empirical_bayes`)."""
    if method not in ("reml", "ml"):
        raise SpecError(f"Unknown empirical-Bayes method {method!r}; allowed: 'reml', 'ml'.")
    problem = collapse_problem(design)
    if problem is not None:
        raise SpecError(
            f"method={method!r} cannot fit {design.spec.formula()!r}: {problem}. "
            "ML/REML here covers Gaussian models with one grouping factor or two nested ones; "
            "use hb.fit(..., method='full') for a Bayesian fit."
        )
    data = collapsed_data(design)
    reml = method == "reml"
    A = data.scaling.A
    log_det_A = float(np.linalg.slogdet(A)[1]) if data.p else 0.0
    start, bounds = _theta_start_and_bounds(data.groups)

    def objective(theta: np.ndarray) -> float:
        return _profile(theta, data, reml, log_det_A).criterion

    res = minimize(
        objective,
        start,
        method="L-BFGS-B",
        jac="3-point",
        bounds=bounds,
        options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 1000},
    )
    theta = np.asarray(res.x, dtype=float)
    prof = _profile(theta, data, reml, log_det_A)
    sigma = math.sqrt(prof.sigma2)

    # Fixed effects on the data's scale.
    fixed_names = list(design.fixed_names)
    if data.p:
        beta_std = data.beta_ref + prof.delta
        cov_std = prof.sigma2 * np.linalg.inv(prof.Sxx)
        beta = A @ beta_std
        se = np.sqrt(np.diag(A @ cov_std @ A.T))
    else:
        beta = se = np.zeros(0)
    fixed = pd.DataFrame({"estimate": beta, "se": se, "t": beta / se if data.p else beta}, index=fixed_names)

    # Variance components and BLUPs.
    lambdas = _lambdas(theta, data.groups)
    chols = [sigma * Lam for Lam in lambdas]
    v = np.concatenate([[1.0], -prof.delta])[None, :]
    means = conditional_effects(data, v, np.array([sigma]), [c[None] for c in chols])
    sd: dict[str, pd.Series] = {}
    corr: dict[str, pd.DataFrame] = {}
    blups: dict[str, pd.DataFrame] = {}
    for g, L, u in zip(data.groups, chols, means, strict=True):
        cov = L @ L.T
        s = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = cov / np.outer(s, s)
        np.fill_diagonal(r, 1.0)
        sd[g.name] = pd.Series(s, index=list(g.coef_names), name=names.sd(g.name))
        corr[g.name] = pd.DataFrame(r, index=list(g.coef_names), columns=list(g.coef_names))
        blups[g.name] = pd.DataFrame(u[0], index=pd.Index(g.levels, name=g.name), columns=list(g.coef_names))
    # Report groups in the design's order.
    order = [g.name for g in design.groups]
    return EmpiricalBayes(
        spec=design.spec,
        design=design,
        method=method,
        fixed=fixed,
        sd={k: sd[k] for k in order},
        corr={k: corr[k] for k in order},
        sigma=sigma,
        blups={k: blups[k] for k in order},
        criterion=prof.criterion,
        loglik=-0.5 * prof.criterion,
        theta=theta,
        converged=bool(res.success),
        settings={"method": method, "optimizer": "L-BFGS-B", "iterations": int(res.nit), "message": str(res.message)},
    )


def empirical_bayes(
    model: str | ModelSpec,
    data: pd.DataFrame,
    *,
    method: Literal["reml", "ml"] = "reml",
    dropna: bool = False,
) -> EmpiricalBayes:
    """Maximum-likelihood or REML fit of a Gaussian multilevel model, with BLUPs.

    Parameters
    ----------
    model
        An lme4-style formula or a :class:`ModelSpec` (Gaussian family; one grouping factor,
        or two nested ones, with any varying terms). Priors in the spec are ignored.
    data
        The data frame.
    method
        ``"reml"`` (restricted maximum likelihood, lme4's default) or ``"ml"``.
    dropna
        Drop (and report) rows with missing values instead of raising an error.

    Returns
    -------
    EmpiricalBayes
        GLS fixed effects with standard errors, variance components, residual sd, BLUPs and
        the criterion (see the module docstring).

    Examples
    --------
    >>> import hierbayes as hb
    >>> eb = hb.empirical_bayes("Reaction ~ Days + (Days | Subject)", hb.datasets.load("sleepstudy"))
    >>> round(eb.criterion, 2)
    1743.63
    """
    spec = model if isinstance(model, ModelSpec) else parse_formula(model)
    design = make_design(spec, data, dropna=dropna)
    return fit_design(design, method=method)
