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
:math:`R'V_\theta^{-1}R` comes from the single-factor, nested or crossed Woodbury algebra of
:mod:`hierbayes.inference.collapsed.likelihood` (crossed factors: the joint :math:`I + \Lambda'Z'Z\Lambda` over all
levels of all factors, the largest factor eliminated level by level and a dense Cholesky of
the others' Schur complement).

Optimiser (:func:`_optimise_theta`, after lme4): the criterion is minimised over
:math:`\theta` with bounds :math:`\Lambda_{kk} \ge 0` by ``scipy.optimize.minimize``
(L-BFGS-B, central finite differences) from lme4's start :math:`\theta = 1` (identity
:math:`\Lambda`) and from :math:`\theta = 0.1`. Since the criterion is even in each diagonal
:math:`\Lambda_{kk}`, its derivative vanishes on the boundary, and a gradient method that
reaches :math:`\Lambda_{kk} = 0` stops there even when the criterion falls as
:math:`\Lambda_{kk}` grows. So the boundary is checked explicitly: every diagonal entry at
(or near) 0 is probed at small and moderate values, every other one is set to 0 with the
rest re-optimised, and the best point found is kept, until a round improves nothing by more
than ``1e-9``. ``converged`` is true only when the local run did not stop at its iteration
limit and no probe of :math:`\pm 10^{-4}` (relative) around the optimum lowers the criterion
by more than ``1e-6`` (an "ABNORMAL" line-search stop of L-BFGS-B at the optimum passes).
A diagonal entry below ``1e-4`` (lme4's ``isSingular`` tolerance) makes the fit singular (a
variance at 0, or a correlation at :math:`\pm 1`):
:class:`~hierbayes.exceptions.SingularFitWarning`.

Standard errors of :math:`\hat\beta` are the square roots of the
diagonal of :math:`\hat\sigma^2 S_{XX}^{-1}` (as lme4's ``vcov``). The BLUPs are the
conditional means :math:`E[u \mid y]` at the estimates
(:func:`hierbayes.inference.collapsed.build.conditional_effects`).

The fixed-effect columns are standardised for the numerics (:mod:`hierbayes.inference.build`); the
estimates, standard errors and the REML criterion are reported for the data's own columns.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.optimize import minimize

from hierbayes.design import Design, GroupDesign, make_design
from hierbayes.design_dask import is_dask_input, make_design_dask
from hierbayes.exceptions import SingularFitWarning, SpecError
from hierbayes.inference.collapsed.build import (
    CollapsedData,
    collapse_problem,
    collapsed_data,
    conditional_effects,
)
from hierbayes.inference.collapsed.likelihood import CollapsedFactor, CrossedFactors, apply_small_lt_np
from hierbayes.inference.collapsed.linalg import chol, forward, sum_outer, swap_last
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
        Whether the optimum passed the checks of the module docstring (local optimiser
        success, no better point within :math:`\pm\delta` or on the boundary).
    singular
        Whether a diagonal entry of some :math:`\Lambda_g` is below ``1e-4`` (lme4's
        ``isSingular``): a variance at 0 or a correlation at :math:`\pm 1`.
    settings
        Optimiser details (starts, local runs, boundary checks, evaluations, message).
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
    singular: bool = False

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
            f"n={self.design.n_total} criterion={self.criterion:.4f}>"
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
    if isinstance(data.factors, CrossedFactors):
        return _crossed_cross_products(data, lambdas, S)
    if isinstance(data.factors, CollapsedFactor):
        Lam = lambdas[0]
        C = chol(np.eye(Lam.shape[0]) + Lam.T @ data.factors.gram @ Lam)
        W = forward(C, Lam.T @ data.ZtR[0])  # (G, q, m)
        S -= np.einsum("gqa,gqb->ab", W, W)
        return 2.0 * float(np.log(np.diagonal(C, axis1=1, axis2=2)).sum()), S
    nf = data.factors
    Lam1, Lam2 = lambdas
    C2 = chol(np.eye(Lam2.shape[0]) + Lam2.T @ nf.inner.gram @ Lam2)
    W = forward(C2, Lam2.T @ data.ZtR[1])  # (J, q2, m)
    B = forward(C2, Lam2.T @ nf.cross_gram)  # (J, q2, q1)
    P = data.outer_sum
    T = data.ZtR[0] - sum_outer(P, (swap_last(B) @ W)[None])[0]  # (K, q1, m)
    Q = nf.outer.gram - sum_outer(P, (swap_last(B) @ B)[None])[0]
    C1 = chol(np.eye(Lam1.shape[0]) + Lam1.T @ Q @ Lam1)
    E = forward(C1, Lam1.T @ T)
    S -= np.einsum("gqa,gqb->ab", W, W) + np.einsum("gqa,gqb->ab", E, E)
    logdet = np.log(np.diagonal(C2, axis1=1, axis2=2)).sum() + np.log(np.diagonal(C1, axis1=1, axis2=2)).sum()
    return 2.0 * float(logdet), S


def _crossed_cross_products(data: CollapsedData, lambdas: list[np.ndarray], S: np.ndarray) -> tuple[float, np.ndarray]:
    """:func:`_weighted_cross_products` for crossed factors.

    The dense Schur complement of :mod:`hierbayes.inference.collapsed.likelihood`.
    """
    cf = data.factors
    assert isinstance(cf, CrossedFactors)
    fb = cf.factors[cf.big]
    LB = lambdas[cf.big]
    m, P = S.shape[0], cf.n_small
    CB = chol(np.eye(LB.shape[0]) + LB.T @ fb.gram @ LB)
    W = forward(CB, LB.T @ data.ZtR[cf.big]).reshape(-1, m)
    D = forward(CB, LB.T @ cf.cross_gram).reshape(-1, P)
    RS = np.concatenate([data.ZtR[i].reshape(-1, m) for i in cf.small])
    T = apply_small_lt_np(RS - D.T @ W, cf, lambdas)
    half = apply_small_lt_np(cf.small_gram - D.T @ D, cf, lambdas)
    Schur = apply_small_lt_np(half.T, cf, lambdas) + np.eye(P)
    CS = np.linalg.cholesky(0.5 * (Schur + Schur.T))
    E = solve_triangular(CS, T, lower=True)
    S -= W.T @ W + E.T @ E
    logdet = np.log(np.diagonal(CB, axis1=1, axis2=2)).sum() + np.log(np.diag(CS)).sum()
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
    start: list[float] = []
    bounds: list[tuple[float | None, None]] = []
    for pos in _theta_layout(groups):
        for i, j in pos:
            start.append(1.0 if i == j else 0.0)
            bounds.append((0.0, None) if i == j else (None, None))
    return np.array(start), bounds


#: lme4's ``isSingular`` tolerance on the diagonal of the relative covariance factors.
SINGULAR_TOL = 1e-4
#: Values at which a diagonal entry of theta sitting on (or near) the boundary is probed.
_BOUNDARY_PROBES = (1e-3, 1e-2, 0.05, 0.2, 0.5, 1.0, 2.0)
#: Improvement that counts (criterion units) in the boundary rounds, and in the final check.
_IMPROVE_TOL = 1e-9
_CHECK_TOL = 1e-6
#: Criterion reported where it cannot be evaluated (finite, so finite differences stay finite).
_FAILED = 1e100


@dataclass
class _Optimum:
    x: np.ndarray
    fun: float
    success: bool
    message: str
    nit: int


class _ThetaSearch:
    """The profiled criterion with a cache and counters, and the local and boundary searches on it."""

    def __init__(self, objective: Any, bounds: list[tuple[float | None, None]]) -> None:
        self.objective, self.bounds = objective, bounds
        self.diag = [k for k, (lo, _) in enumerate(bounds) if lo is not None]
        self.lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
        self.cache: dict[bytes, float] = {}
        self.evaluations = 0
        self.runs = 0

    def f(self, x: np.ndarray) -> float:
        x = np.maximum(np.asarray(x, dtype=float), self.lower)
        key = x.tobytes()
        if key not in self.cache:
            self.evaluations += 1
            try:
                val = float(self.objective(x))
            except np.linalg.LinAlgError:  # numerically indefinite at absurd theta (e.g. 1e8)
                val = _FAILED
            self.cache[key] = val if np.isfinite(val) else _FAILED
        return self.cache[key]

    def local(self, x0: np.ndarray) -> _Optimum:
        self.runs += 1
        res = minimize(
            self.f,
            np.maximum(x0, self.lower),
            method="L-BFGS-B",
            jac="3-point",
            bounds=self.bounds,
            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1000},
        )
        x = np.maximum(np.asarray(res.x, dtype=float), self.lower)
        return _Optimum(x, self.f(x), bool(res.success), str(res.message), int(res.nit))

    def boundary_round(self, best: _Optimum) -> tuple[_Optimum, bool]:
        """One pass over the diagonal entries: probe along the axis at 0, or try the boundary itself."""
        improved = False
        for k in self.diag:
            if best.x[k] < SINGULAR_TOL:
                # On the boundary the derivative vanishes: look along the axis instead.
                probes = []
                for h in _BOUNDARY_PROBES:
                    x = best.x.copy()
                    x[k] = h
                    probes.append((self.f(x), x))
                fx, x = min(probes, key=lambda p: p[0])
                if fx >= best.fun - _IMPROVE_TOL:
                    continue
            else:
                # The boundary itself: this component at 0, the others re-optimised.
                x = best.x.copy()
                x[k] = 0.0
            opt = self.local(x)
            if opt.fun < best.fun - _IMPROVE_TOL:
                best, improved = opt, True
        return best, improved

    def snap_to_zero(self, best: _Optimum) -> _Optimum:
        """Report an exact 0 where the optimiser stopped a hair above it and 0 is no worse."""
        for k in self.diag:
            if 0.0 < best.x[k] < SINGULAR_TOL:
                x = best.x.copy()
                x[k] = 0.0
                fx = self.f(x)
                if fx <= best.fun + _IMPROVE_TOL:
                    best = _Optimum(x, fx, best.success, best.message, best.nit)
        return best

    def better_nearby(self, best: _Optimum) -> float:
        """How much better the best point within +-1e-4 (relative) of the optimum is (0 if none)."""
        worse_by = 0.0
        for k in range(best.x.size):
            delta = 1e-4 * max(1.0, abs(best.x[k]))
            for sign in (-1.0, 1.0):
                x = best.x.copy()
                x[k] += sign * delta
                if x[k] < self.lower[k]:
                    continue
                worse_by = max(worse_by, best.fun - self.f(x))
        return worse_by


def _optimise_theta(
    objective: Any, starts: list[np.ndarray], bounds: list[tuple[float | None, None]]
) -> tuple[_Optimum, dict[str, Any]]:
    r"""Minimise the profiled criterion over :math:`\theta`, boundary included (module docstring).

    Returns the optimum and the settings (``starts``, ``local_runs``, ``boundary_rounds``,
    ``evaluations``, ``checks``).
    """
    search = _ThetaSearch(objective, bounds)
    best: _Optimum | None = None
    for x0 in starts:
        opt = search.local(x0)
        if best is None or opt.fun < best.fun - _IMPROVE_TOL:
            best = opt
    assert best is not None
    rounds = 0
    for _ in range(7):
        rounds += 1
        best, improved = search.boundary_round(best)
        if not improved:
            break
    best = search.snap_to_zero(best)
    # Honest convergence: nothing better within +-delta of the optimum.
    worse_by = search.better_nearby(best)
    checks_ok = worse_by <= _CHECK_TOL
    # L-BFGS-B ends "ABNORMAL" when its line search cannot improve on finite-difference noise
    # at the optimum; the probes above decide. Running out of iterations is never convergence.
    best.success = checks_ok and np.isfinite(best.fun) and best.fun < _FAILED and "ITERATIONS" not in best.message
    if not checks_ok:
        best.message += f"; a point within 1e-4 of the optimum is better by {worse_by:.3g}"
    settings = {
        "starts": len(starts),
        "local_runs": search.runs,
        "boundary_rounds": rounds,
        "evaluations": search.evaluations,
        "checks": "passed" if checks_ok else f"failed (better by {worse_by:.3g})",
    }
    return best, settings


def _components(
    data: CollapsedData, lambdas: list[np.ndarray], sigma: float, delta: np.ndarray
) -> tuple[dict[str, pd.Series], dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Per group: the sds, the correlation matrix and the BLUPs (conditional means) at the estimates."""
    chols = [sigma * Lam for Lam in lambdas]
    v = np.concatenate([[1.0], -delta])[None, :]
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
    return sd, corr, blups


def _singular_terms(data: CollapsedData, lambdas: list[np.ndarray]) -> list[str]:
    """Terms whose diagonal entry of Lambda_g is below the tolerance (lme4's isSingular)."""
    return [
        f"{g.name}:{g.coef_names[i]}"
        for g, pos, Lam in zip(data.groups, _theta_layout(data.groups), lambdas, strict=True)
        for i in range(Lam.shape[0])
        if (i, i) in pos and Lam[i, i] < SINGULAR_TOL
    ]


def fit_design(design: Design, method: Literal["reml", "ml"] = "reml") -> EmpiricalBayes:
    """ML/REML fit of a design (see :func:`empirical_bayes`)."""
    if method not in ("reml", "ml"):
        raise SpecError(f"Unknown empirical-Bayes method {method!r}; allowed: 'reml', 'ml'.")
    problem = collapse_problem(design, sampler=False)
    if problem is not None:
        raise SpecError(
            f"method={method!r} cannot fit {design.spec.formula()!r}: {problem}. "
            "ML/REML here covers Gaussian models with grouping factors that are single, nested or "
            "crossed (within the size limit of the dense crossed algebra); "
            "use hb.fit(..., method='full') for a Bayesian fit."
        )
    data = collapsed_data(design)
    reml = method == "reml"
    A = data.scaling.A
    log_det_A = float(np.linalg.slogdet(A)[1]) if data.p else 0.0
    start, bounds = _theta_start_and_bounds(data.groups)

    def objective(theta: np.ndarray) -> float:
        return _profile(theta, data, reml, log_det_A).criterion

    res, opt_settings = _optimise_theta(objective, [start, 0.1 * start], bounds)
    theta = res.x
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
    sd, corr, blups = _components(data, lambdas, sigma, prof.delta)
    zero_terms = _singular_terms(data, lambdas)
    if zero_terms:
        warnings.warn(
            f"Singular fit of {design.spec.formula()!r}: the relative sd factor of "
            f"{', '.join(zero_terms)} is below {SINGULAR_TOL:g} (a variance component at 0, or a "
            "correlation at +-1; lme4's isSingular). The data do not support that term: consider "
            "removing it or a Bayesian fit (hb.fit), whose prior keeps it away from 0.",
            SingularFitWarning,
            stacklevel=3,
        )
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
        settings={
            "method": method,
            "optimizer": "L-BFGS-B + boundary checks",
            "iterations": res.nit,
            "message": res.message,
            **opt_settings,
        },
        singular=bool(zero_terms),
    )


def empirical_bayes(
    model: str | ModelSpec,
    data: pd.DataFrame | Any,
    *,
    method: Literal["reml", "ml"] = "reml",
    dropna: bool = False,
) -> EmpiricalBayes:
    """Maximum-likelihood or REML fit of a Gaussian multilevel model, with BLUPs.

    Parameters
    ----------
    model
        An lme4-style formula or a :class:`ModelSpec` (Gaussian family; one grouping factor,
        two nested ones, or crossed ones such as ``(1 | subject) + (1 | item)``, with any
        varying terms). Priors in the spec are ignored.
    data
        The data frame; or a ``dask.dataframe.DataFrame`` or Parquet path/glob, reduced to
        sufficient statistics by Dask (one factor or two nested ones; see ``docs/big-data.md``).
    method
        ``"reml"`` (restricted maximum likelihood, lme4's default) or ``"ml"``.
    dropna
        Drop (and report) rows with missing values instead of raising an error.

    Returns
    -------
    EmpiricalBayes
        GLS fixed effects with standard errors, variance components, residual sd, BLUPs and
        the criterion (see the module docstring).

    Warns
    -----
    SingularFitWarning
        When the fit is singular (a variance component at 0 or a correlation at +-1).

    Examples
    --------
    >>> import hierbayes as hb
    >>> eb = hb.empirical_bayes("Reaction ~ Days + (Days | Subject)", hb.datasets.load("sleepstudy"))
    >>> round(eb.criterion, 2)
    1743.63
    """
    spec = model if isinstance(model, ModelSpec) else parse_formula(model)
    if is_dask_input(data):  # sufficient statistics computed by Dask (hierbayes.design_dask)
        design = make_design_dask(spec, data, dropna=dropna)
    else:
        design = make_design(spec, data, dropna=dropna)
    return fit_design(design, method=method)
