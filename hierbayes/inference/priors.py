r"""Priors resolved against the data: every default filled in, on the data's own scale.

The prior *values* (:class:`~hierbayes.Normal`, :class:`~hierbayes.HalfStudentT`, ...) belong to the
data-free spec (:mod:`hierbayes.spec.priors`, where the default formulas are written out); this
module turns them into numbers once the design exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hierbayes.design import Design, GroupDesign
from hierbayes.exceptions import PriorError
from hierbayes.families import get_family
from hierbayes.spec.priors import DEFAULT_SCALE, SCALE_PRIORS, HalfStudentT, Normal, ScalePrior

__all__ = ["ResolvedPriors", "resolve_priors"]


@dataclass(frozen=True)
class ResolvedPriors:
    """Priors with every default filled in from the data, on the data's own scale.

    ``b`` and ``B`` are the mean and covariance of the fixed effects, ``group_sd[g]`` the list of
    scale priors of group ``g``'s terms, ``sigma`` the residual-sd prior (``None`` when the family
    has none or sigma is known), ``lkj_eta`` the LKJ shape. ``fixed_other`` holds the fixed
    effects with a non-normal prior (:class:`~hierbayes.StudentT`, ``Laplace``, ``Flat``,
    ``Prior``) by column index; their rows of ``b`` and ``B`` are not used.
    """

    b: np.ndarray
    B: np.ndarray
    group_sd: dict[str, tuple[ScalePrior, ...]]
    sigma: ScalePrior | None
    lkj_eta: float
    response_scale: float
    fixed_other: dict[int, Any] = field(default_factory=dict)


def _sd(x: np.ndarray) -> float:
    s = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return s if s > 0 else 1.0


def _column_moments(design: Design) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(X column means, X column sds, y mean, y sd)`` (``ddof=1``), over all rows of the data.

    From the rows, or from the sufficient statistics of a sampled (Dask) design.
    """
    X = design.X
    p = X.shape[1]
    stats = design.statistics
    if stats is None:
        col_sd = np.array([_sd(X[:, k]) for k in range(p)])
        col_mean = X.mean(axis=0) if X.shape[0] else np.zeros(p)
        return col_mean, col_sd, float(np.mean(design.y)), _sd(design.y)
    sd = stats.sd(ddof=1)
    means = stats.means
    sd = np.where(sd > 1e-12 * (1.0 + np.abs(means)), sd, 1.0)  # the _sd convention: 1 for a constant
    return means[1 : 1 + p], sd[1 : 1 + p], float(means[0]), float(sd[0])


def _default_fixed_moments(
    col_mean: np.ndarray, col_sd: np.ndarray, intercept_col: int | None, s_y: float, y_center: float
) -> tuple[np.ndarray, np.ndarray]:
    """Default ``(b, B)``: stated on centred predictors, then mapped exactly to the data's scale."""
    p = col_mean.shape[0]
    b = np.zeros(p)
    B = np.zeros((p, p))
    slopes = [k for k in range(p) if k != intercept_col]
    for k in slopes:
        B[k, k] = (DEFAULT_SCALE * s_y / col_sd[k]) ** 2
    if intercept_col is not None:
        # beta_0 = a - sum_k beta_k m_k, a ~ N(y_center, (2.5 s_y)^2) independent of the slopes.
        i = intercept_col
        m = np.zeros(p)
        m[slopes] = col_mean[slopes]
        b[i] = y_center
        B[i, i] = (DEFAULT_SCALE * s_y) ** 2 + m @ B @ m
        cross = -(B @ m)
        cross[i] = 0.0
        B[i, :] += cross
        B[:, i] += cross
    return b, B


def _z_sd(design: Design, g: GroupDesign, k: int) -> float:
    """Sample sd of column ``k`` of ``g``'s Z over all rows (from the statistics of a Dask design); 1 if constant."""
    if design.statistics is None:
        return _sd(g.Z[:, k])
    z_sd = float(design.statistics.group(g.name).z_sd(design.statistics.n)[k])
    return z_sd if z_sd > 0 else 1.0


def _group_scale_priors(design: Design, s_y: float) -> dict[str, tuple[ScalePrior, ...]]:
    """The sd prior of every term of every group: the user's (per group or per term), or the data-scaled default."""
    priors = design.spec.priors
    group_priors: dict[str, tuple[ScalePrior, ...]] = {}
    scale_types = tuple(SCALE_PRIORS.values())
    per_group = dict(priors.group_sd) if isinstance(priors.group_sd, tuple) else {}
    for g in design.groups:
        defaults = [
            HalfStudentT(scale=DEFAULT_SCALE * s_y / (1.0 if cname == "Intercept" else _z_sd(design, g, k)), nu=3.0)
            for k, cname in enumerate(g.coef_names)
        ]
        chosen: Any = priors.group_sd if isinstance(priors.group_sd, scale_types) else per_group.get(g.name)
        if chosen is None:
            group_priors[g.name] = tuple(defaults)
        elif isinstance(chosen, tuple):  # per term: {term: prior}
            by_term = dict(chosen)
            unknown = sorted(set(by_term) - set(g.coef_names))
            if unknown:
                raise PriorError(
                    f"Priors.group_sd[{g.name!r}] names term {unknown[0]!r}, which does not vary by {g.name}; "
                    f"its terms are: {', '.join(g.coef_names)}."
                )
            group_priors[g.name] = tuple(by_term.get(c, d) for c, d in zip(g.coef_names, defaults, strict=True))
        else:
            group_priors[g.name] = tuple(chosen for _ in g.coef_names)
    return group_priors


def resolve_priors(design: Design) -> ResolvedPriors:
    """Fill in the data-scaled default priors for ``design`` (formulas in :mod:`hierbayes.spec.priors`).

    Parameters
    ----------
    design
        The model's design (see :func:`hierbayes.make_design`).

    Returns
    -------
    ResolvedPriors
        ``b``, ``B`` on the scale of the data's own columns, and the scale priors.
    """
    spec = design.spec
    priors = spec.priors
    names = design.fixed_names
    p = design.X.shape[1]
    family = get_family(spec.family)
    gaussian = family.data_scaled_priors
    col_mean, col_sd, y_mean, y_sd = _column_moments(design)
    if design.statistics is None:  # the response the priors are stated on: y itself, log y for lognormal
        y_prior = family.prior_response(design.y)
        y_mean, y_sd = float(np.mean(y_prior)), _sd(y_prior)
    s_y = y_sd if gaussian else 1.0
    y_center = y_mean if gaussian else 0.0
    priors.check_against(names, [g.name for g in design.groups])
    b, B = _default_fixed_moments(col_mean, col_sd, design.intercept_index, s_y, y_center)
    fixed = priors.fixed
    fixed_other: dict[int, Any] = {}
    if isinstance(fixed, Normal):
        b, B = fixed.moments(p, names)
    elif isinstance(fixed, tuple):
        for name, prior in fixed:
            k = names.index(name)
            if not isinstance(prior, Normal):
                fixed_other[k] = prior
                continue
            b[k] = float(np.asarray(prior.mean))
            B[k, :] = 0.0
            B[:, k] = 0.0
            B[k, k] = float(np.asarray(prior.sd)) ** 2
    elif fixed is not None:  # one non-normal prior for every coefficient
        fixed_other = dict.fromkeys(range(p), fixed)
    sigma_prior: ScalePrior | None = None
    if gaussian and design.known_sigma is None:
        sigma_prior = priors.sigma or HalfStudentT(scale=DEFAULT_SCALE * s_y, nu=3.0)
    return ResolvedPriors(
        b=b,
        B=B,
        group_sd=_group_scale_priors(design, s_y),
        sigma=sigma_prior,
        lkj_eta=priors.lkj.eta,
        response_scale=s_y,
        fixed_other=fixed_other,
    )
