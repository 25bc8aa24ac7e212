r"""Shrinkage: no pooling, complete pooling and the model's partial pooling, per group.

For a Gaussian model and one grouping factor :math:`g` with varying coefficients
:math:`z_i` (a column of ones for a random intercept), level :math:`j` has the coefficient

.. math::

    b_j = \beta_{z} + \sum_{a \in A(g)} u_{a, a(j)} + u_{g j},

the fixed coefficient(s) of the same columns plus the effects of the factors :math:`A(g)` that
:math:`g` is nested in (their level :math:`a(j)` containing :math:`j`) plus its own effect.
The table compares three estimates of one coefficient :math:`c` of :math:`b_j` (``coef=``,
default the intercept):

``no_pooling``
    The level's own weighted least-squares fit of :math:`\tilde y_i` on :math:`z_i` over its rows,
    where :math:`\tilde y_i = y_i - \sum_{k} x_{ik}\bar\beta_k` removes the other fixed
    effects (columns not among :math:`z`) at their posterior means :math:`\bar\beta_k`. For a
    random intercept this is the level's mean of :math:`\tilde y`; for the eight schools
    (one row per school, no covariates) it is :math:`y_j`. ``NaN`` where the level's rows
    cannot identify the coefficients (e.g. one row for an intercept and a slope).
``complete_pooling``
    The same least-squares fit over all rows at once, ignoring the groups (the eight schools:
    the precision-weighted mean :math:`\sum_j y_j\sigma_j^{-2} / \sum_j \sigma_j^{-2}`).
``partial_pooling``
    The posterior mean of :math:`b_{jc}` (with ``lower``/``upper``, the equal-tailed interval).
``population``
    The posterior mean of what the level is pooled towards,
    :math:`\beta_{c} + \sum_{a \in A(g)} u_{a,a(j)c}`: the fixed coefficient, plus the enclosing
    levels' effects for a nested factor.

Weights are :math:`w_i = 1/\sigma_i^2` for known residual sds (eight schools), else 1.

``shrinkage`` is the model's **pooling factor**. Given the variance parameters and
:math:`\beta`, the no-pooling estimate :math:`\hat b_j` has sampling covariance
:math:`V_j = A_j \Sigma_j A_j^\top` (:math:`A_j` the least-squares map of the level's rows,
:math:`\Sigma_j` the covariance of those rows from the residual and from the factors that are
neither :math:`g` nor enclosing it), and :math:`b_j \sim N(\cdot, \Omega_g)`, so

.. math::

    E[b_j \mid \hat b_j] = \hat b_j - S_j(\hat b_j - \text{population}_j), \qquad
    S_j = V_j(\Omega_g + V_j)^{-1}.

The column holds the posterior mean of the diagonal element :math:`(S_j)_{cc}`: 0 means no
pooling (the level's own data decide), 1 complete pooling. For a random intercept it is
:math:`V_j / (\tau^2 + V_j)`, e.g. :math:`\sigma_j^2/(\sigma_j^2 + \tau^2)` for the eight schools
and about :math:`(\sigma^2/n_j)/(\tau^2 + \sigma^2/n_j)` for a one-factor model, so it shrinks
as the group grows. It is exact conditional on the parameters for one factor, or nested
factors; with crossed factors it ignores the correlation that shared levels of the other
factor induce between groups, and it never accounts for the uncertainty in :math:`\beta`.
The distance-based ratio :math:`1 - (\text{partial} - \text{complete}) / (\text{no pooling} -
\text{complete})` can be computed from the table; it is unstable for levels whose no-pooling
estimate lies near the complete-pooling one, so it is not reported.

Only Gaussian models have least-squares no-pooling estimates; for GLMMs use
:func:`group_effects` (and :func:`hierbayes.plot_caterpillar`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierbayes.design import Design, GroupDesign
from hierbayes.exceptions import SpecError
from hierbayes.families import get_family
from hierbayes.inference.posterior import DEFAULT_PROB
from hierbayes.inference.result import Fit
from hierbayes.spec import names
from hierbayes.summaries.variance import group_covariance_draws, nested_in

__all__ = ["group_effects", "shrinkage"]


def _group(design: Design, name: str) -> GroupDesign:
    try:
        return design.group(name)
    except KeyError:
        names = ", ".join(repr(g.name) for g in design.groups) or "none"
        raise SpecError(f"No grouping factor {name!r} in this model; its grouping factors are: {names}.") from None


def _coef_index(g: GroupDesign, coef: str) -> int:
    if coef not in g.coef_names:
        raise SpecError(
            f"{coef!r} does not vary by {g.name!r}; the varying coefficients of {g.term.formula()} are: "
            f"{', '.join(g.coef_names)}."
        )
    return g.coef_names.index(coef)


def _level_map(parent: GroupDesign, g: GroupDesign) -> np.ndarray:
    """Level of ``parent`` holding each level of ``g`` (``g`` nested in ``parent``)."""
    out = np.empty(g.n_levels, dtype=np.int64)
    out[g.index] = parent.index
    return out


def _coefficient_draws(fit: Fit, g: GroupDesign, coef: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-draw ``(population, total)`` coefficient of each level, shapes ``(chain, draw, levels)``."""
    post = fit.posterior
    design = fit.design
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    population = np.zeros((n_chain, n_draw, g.n_levels))
    if coef in design.fixed_names:
        beta = post[names.BETA].sel(coef=coef).transpose("chain", "draw").values
        population += beta[..., None]
    for name in nested_in(design, g):
        a = design.group(name)
        if coef in a.coef_names:
            u = post[names.u(a.name)].sel({a.coef_dim: coef}).transpose("chain", "draw", a.name).values
            population += u[..., _level_map(a, g)]
    own = post[names.u(g.name)].sel({g.coef_dim: coef}).transpose("chain", "draw", g.name).values
    return population, population + own


def group_effects(
    fit: Fit, group: str, *, coef: str = "Intercept", total: bool = False, prob: float = DEFAULT_PROB
) -> pd.DataFrame:
    """Posterior of each level's effect :math:`u_{jc}` (or its total coefficient), in level order.

    Parameters
    ----------
    fit
        From :func:`hierbayes.fit` (any family; link scale for GLMMs).
    group
        Grouping factor, e.g. ``"school"`` or ``"school:child"``.
    coef
        Varying coefficient (``"Intercept"`` or a slope's name).
    total
        ``False``: the effect :math:`u_{jc}` (deviation from the population); ``True``: the
        level's total coefficient (fixed coefficient + enclosing levels' effects + own effect).
    prob
        Probability of the equal-tailed interval.

    Returns
    -------
    pandas.DataFrame
        Indexed by level: ``mean``, ``sd``, ``lower``, ``upper``.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1; received {prob}.")
    g = _group(fit.design, group)
    _coef_index(g, coef)
    population, coefficient = _coefficient_draws(fit, g, coef)
    draws = coefficient if total else coefficient - population
    flat = draws.reshape(-1, g.n_levels)
    lo, hi = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    out = pd.DataFrame(
        {
            "mean": flat.mean(axis=0),
            "sd": flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else np.zeros(g.n_levels),
            "lower": lo,
            "upper": hi,
        },
        index=pd.Index(g.levels, name=g.name),
    )
    out.attrs.update({"group": g.name, "coef": coef, "total": total, "prob": prob})
    return out


class _Other:
    """A grouping factor other than ``g`` that does not enclose it, with its per-draw covariance."""

    def __init__(self, k: GroupDesign, omega: np.ndarray) -> None:
        self.k = k
        self.omega = omega  # (draws, q_k, q_k)
        self.omega_mean = omega.mean(axis=0)


def _others(fit: Fit, g: GroupDesign) -> list[_Other]:
    design = fit.design
    post = fit.posterior
    enclosing = set(nested_in(design, g))
    out = []
    for k in design.groups:
        if k is g or k.name in enclosing:
            continue
        q = len(k.coef_names)
        out.append(_Other(k, group_covariance_draws(post, k).reshape(-1, q, q)))
    return out


def _gls_maps(
    fit: Fit, g: GroupDesign, rows: list[np.ndarray], others: list[_Other], residual_mean: np.ndarray, y: np.ndarray
) -> tuple[list[np.ndarray | None], np.ndarray, np.ndarray]:
    """Per-level GLS maps ``A_j`` (``None`` if not identified), and the pooled GLS normal equations."""
    q = len(g.coef_names)
    maps: list[np.ndarray | None] = []
    info_sum = np.zeros((q, q))
    score_sum = np.zeros(q)
    for r in rows:
        Z = g.Z[r]
        cov = np.diag(residual_mean[r])
        for o in others:
            Zk = o.k.Z[r]
            idx = o.k.index[r]
            cov += (Zk @ o.omega_mean @ Zk.T) * (idx[:, None] == idx[None, :])
        W = np.linalg.solve(cov, Z).T  # Z' Sigma^{-1}, (q, n_j)
        info = W @ Z
        info_sum += info
        score_sum += W @ y[r]
        if np.linalg.matrix_rank(info) < q:
            maps.append(None)
        else:
            maps.append(np.linalg.solve(info, W))
    return maps, info_sum, score_sum


def _pooling_factor(
    fit: Fit, g: GroupDesign, A: list[np.ndarray | None], rows: list[np.ndarray], others: list[_Other], c: int
) -> np.ndarray:
    """Posterior mean of ``(S_j)_cc`` per level (module docstring)."""
    design = fit.design
    post = fit.posterior
    q = len(g.coef_names)
    omega_g = group_covariance_draws(post, g).reshape(-1, q, q)
    S = omega_g.shape[0]
    known = design.known_sigma
    sigma2 = None if known is not None else post[names.SIGMA].transpose("chain", "draw").values.reshape(S) ** 2
    out = np.full(g.n_levels, np.nan)
    for j in range(g.n_levels):
        Aj = A[j]
        if Aj is None:
            continue
        r = rows[j]
        # Residual part: A diag(sigma_i^2) A'.
        if known is not None:
            V = np.broadcast_to((Aj * known[r] ** 2) @ Aj.T, (S, q, q)).copy()
        else:
            assert sigma2 is not None
            V = sigma2[:, None, None] * (Aj @ Aj.T)
        for o in others:
            k = o.k
            codes, local = np.unique(k.index[r], return_inverse=True)
            M = np.zeros((len(codes), q, len(k.coef_names)))
            np.add.at(M, local, Aj.T[:, :, None] * k.Z[r][:, None, :])
            V += np.einsum("lac,scd,lbd->sab", M, o.omega, M)
        Sj = np.linalg.solve((omega_g + V).transpose(0, 2, 1), V.transpose(0, 2, 1)).transpose(0, 2, 1)
        out[j] = float(Sj[:, c, c].mean())
    return out


def shrinkage(fit: Fit, group: str, *, coef: str = "Intercept", prob: float = DEFAULT_PROB) -> pd.DataFrame:
    """No-pooling, complete-pooling and partial-pooling estimates of each level's coefficient.

    See the module docstring for the definitions.

    Parameters
    ----------
    fit
        A Gaussian fit from :func:`hierbayes.fit`.
    group
        Grouping factor, e.g. ``"school"``.
    coef
        The varying coefficient to compare (``"Intercept"`` or a random slope's name).
    prob
        Probability of the interval of the partial-pooling estimate.

    Returns
    -------
    pandas.DataFrame
        Indexed by level (in the design's order): ``n`` (rows), ``no_pooling``,
        ``partial_pooling``, ``lower``, ``upper``, ``complete_pooling``, ``population`` and
        ``shrinkage`` (the pooling factor, 0 = none, 1 = complete).

    Raises
    ------
    SpecError
        For a non-Gaussian model, an unknown group, or a coefficient that does not vary by it.

    Examples
    --------
    >>> hb.shrinkage(fit, "school").sort_values("n").head()  # doctest: +SKIP
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1; received {prob}.")
    design = fit.design
    if not get_family(fit.spec.family).collapses:
        raise SpecError(
            f"shrinkage() compares with least-squares no-pooling estimates, which need a Gaussian model; "
            f"this fit is {fit.spec.family} ({fit.spec.link} link). Use hb.group_effects(fit, {group!r}) or "
            f"hb.plot_caterpillar(fit, {group!r}) for the levels' effects on the link scale."
        )
    g = _group(design, group)
    c = _coef_index(g, coef)

    post = fit.posterior
    if design.X.shape[1] > 0:
        beta_bar = post[names.BETA].mean(("chain", "draw")).sel(coef=list(design.fixed_names)).values
        other = np.array([name not in g.coef_names for name in design.fixed_names], dtype=bool)
        y_tilde = design.y - design.X[:, other] @ beta_bar[other]
    else:
        y_tilde = design.y.copy()
    if design.known_sigma is not None:
        residual_mean = design.known_sigma**2
    else:
        residual_mean = np.full(design.n_obs, float((post[names.SIGMA] ** 2).mean()))

    rows = [np.flatnonzero(g.index == j) for j in range(g.n_levels)]
    others = _others(fit, g)
    A, info_sum, score_sum = _gls_maps(fit, g, rows, others, residual_mean, y_tilde)
    complete = float(np.linalg.lstsq(info_sum, score_sum, rcond=None)[0][c])
    no_pool = np.array([np.nan if Aj is None else float((Aj @ y_tilde[r])[c]) for Aj, r in zip(A, rows, strict=True)])

    population, coefficient = _coefficient_draws(fit, g, coef)
    flat = coefficient.reshape(-1, g.n_levels)
    lo, hi = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    out = pd.DataFrame(
        {
            "n": np.array([len(r) for r in rows], dtype=np.int64),
            "no_pooling": no_pool,
            "partial_pooling": flat.mean(axis=0),
            "lower": lo,
            "upper": hi,
            "complete_pooling": complete,
            "population": population.reshape(-1, g.n_levels).mean(axis=0),
            "shrinkage": _pooling_factor(fit, g, A, rows, others, c),
        },
        index=pd.Index(g.levels, name=g.name),
    )
    out.attrs.update({"group": g.name, "coef": coef, "prob": prob})
    return out
