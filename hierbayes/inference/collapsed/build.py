r"""The collapsed (marginalised) Gaussian model: random effects integrated out exactly.

For the Gaussian family with identity link,

.. math::

    y = X\beta + \sum_g Z_g u_g + o + e, \qquad e \sim N(0, \sigma^2 I), \qquad
    u_{gj} \sim N(0, \Omega_g),

so that :math:`y \mid \beta, \theta \sim N(X\beta + o, V)` with
:math:`V = \sigma^2 I + \sum_g Z_g (I \otimes \Omega_g) Z_g'` (:mod:`hierbayes.inference.collapsed.likelihood`
evaluates :math:`\log N(y - X\beta - o \mid 0, V)` in :math:`O(n)` without forming :math:`V`).
NUTS then explores only :math:`\beta`, the random-effect sds and correlations and
:math:`\sigma`, with the **same priors and variable names** as the full model of
:mod:`hierbayes.inference.build` (``beta_std``, ``beta``, ``sd_<g>``, ``corr_chol_<g>``, ``corr_<g>``,
``sigma``; ``sd_<g>`` a scalar per draw for a term with one coefficient). After sampling, for
every posterior draw the random effects are drawn exactly from
:math:`p(u \mid y, \beta, \theta)` (:func:`add_random_effects`), so the result also
holds ``u_<g>`` with dims ``(<g>, <g>__coef)`` and the same meaning as in the full model
(Lai, Domke & Sheldon, *Hierarchical Bayesian models: marginalize the random effects*,
NeurIPS 2024).

Supported structures: one grouping factor, two nested factors (the inner factor's
:attr:`~hierbayes.GroupDesign.parent` is the outer one), or any other set of two or more
factors, crossed (subjects x items) or partly nested, through the joint Woodbury form of
:class:`~hierbayes.inference.collapsed.likelihood.CrossedFactors` while the factors other than the largest have
at most :data:`~hierbayes.inference.collapsed.likelihood.CROSSED_MAX_SMALL` coefficients; each with any number of
varying terms and a full (LKJ) or diagonal covariance; Gaussian family with a free residual
sd.

Sufficient statistics
---------------------
With the standardised model matrix :math:`\tilde X` (see :mod:`hierbayes.inference.build`), a
reference :math:`\hat\beta` (least squares), :math:`y_0 = y - o - \tilde X\hat\beta`,
:math:`R = [y_0, \tilde X]` (:math:`n \times m`, :math:`m = p + 1`) and
:math:`v = (1, -(\tilde\beta - \hat\beta))`, the residual is :math:`r = Rv`, so

.. math::

    r'r = v'(R'R)v, \qquad Z_j'r_j = (Z_j'R_j)\,v .

:math:`R'R` and the per-level :math:`Z_j'R_j` (``(G, q, m)``) are computed once; each
log-density evaluation then costs :math:`O(Gqm + Gq^3)`, independent of the number of rows.
Expanding around :math:`\hat\beta` keeps :math:`r'r` free of cancellation.

The same statistics give the profiled ML/REML criteria (:mod:`hierbayes.inference.collapsed.reml`): with
:math:`v` replaced by the identity, the Woodbury algebra yields :math:`R'V^{-1}R`.

Memory
------
No dense :math:`Z` and no per-observation quantity is stored. The drawn random effects cost
``chains * draws * levels * q * 8`` bytes (1e5 levels x 4000 draws = 3.2 GB): pass
``store_random_effects=False`` to :func:`hierbayes.fit` to keep only the hyper-parameters,
and draw them later, for a subset of draws, with :func:`random_effect_draws`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Protocol, cast

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy.sparse as sp
import xarray as xr

from hierbayes.design import Design, GroupDesign, design_statistics
from hierbayes.exceptions import SpecError
from hierbayes.families import get_family
from hierbayes.inference.build import (
    FixedScaling,
    covariance_factor,
    fixed_effects,
    fixed_scaling,
    model_coords,
    residual_sd,
)
from hierbayes.inference.collapsed.likelihood import (
    CollapsedFactor,
    CrossedFactors,
    Factors,
    LevelClasses,
    NestedFactors,
    crossed_conditional_np,
    level_classes,
    marginal_loglik_from_sums,
    marginal_loglik_pooled,
    pooled_statistics,
)
from hierbayes.inference.collapsed.linalg import backward, chol, forward, sum_outer, swap_last
from hierbayes.inference.posterior import group_sd_draws, stacked, values
from hierbayes.inference.priors import ResolvedPriors, resolve_priors
from hierbayes.spec import names
from hierbayes.statistics import SufficientStatistics

__all__ = [
    "CollapsedData",
    "Method",
    "add_random_effects",
    "build_collapsed_model",
    "choose_method",
    "collapse_problem",
    "collapsed_data",
    "collapses_crossed",
    "conditional_effects",
    "random_effect_draws",
    "response_statistics",
    "with_observed_y",
]

Method = Literal["auto", "collapsed", "full"]
METHODS: tuple[str, ...] = ("auto", "collapsed", "full")

#: Floats per intermediate array when the random effects are drawn in chunks of draws.
_CHUNK_FLOATS = 4_000_000
#: The same for one term per factor (element-wise passes over ``(S, G)`` arrays): chunks that
#: stay in cache. 200,000 rows, 5,000 + 200 levels, 4,000 draws (one thread): 1.30 s at 4e6 floats,
#: 0.72 s at 1e6, 0.55 s at 2.5e5 and at 1e5 (same draws: the chunking never changes them).
_SCALAR_CHUNK_FLOATS = 250_000


# --------------------------------------------------------------------------------------
# Which designs can be collapsed
# --------------------------------------------------------------------------------------


def _ordered_groups(design: Design) -> tuple[GroupDesign, ...] | None:
    """``(g,)`` for one factor, ``(outer, inner)`` for two nested factors, else ``None``."""
    groups = design.groups
    if len(groups) == 1:
        return (groups[0],)
    if len(groups) == 2:
        a, b = groups
        if b.parent == a.name and b.parent_index is not None:
            return (a, b)
        if a.parent == b.name and a.parent_index is not None:
            return (b, a)
    return None


def _design_factors(groups: tuple[GroupDesign, ...]) -> list[CollapsedFactor]:
    return [CollapsedFactor(g.index, g.Z, n_levels=g.n_levels, name=g.name) for g in groups]


def collapse_problem(design: Design, sampler: bool = True) -> str | None:
    """Why ``design`` cannot be fitted by the collapsed sampler, or ``None`` when it can.

    ``sampler=False`` asks about the marginal likelihood alone (REML/ML), which allows larger
    crossed designs (no gradients, a few hundred evaluations).
    """
    spec = design.spec
    if not get_family(spec.family).collapses:
        return f"the {spec.family} family has no closed-form marginal likelihood (only the Gaussian has)"
    if design.known_sigma is not None:
        return "the residual sd is known per row (se(...)), which the collapsed sampler does not cover"
    if not design.groups:
        return "the model has no random effects"
    if _ordered_groups(design) is None:
        return CrossedFactors(tuple(_design_factors(design.groups))).size_problem(sampler)
    return None


def collapses_crossed(design: Design) -> bool:
    """Whether the collapsed method integrates ``design``'s factors out jointly as crossed factors."""
    return len(design.groups) > 1 and collapse_problem(design) is None and _ordered_groups(design) is None


def choose_method(design: Design, method: str) -> tuple[str, str]:
    """Resolve ``method`` to ``"collapsed"`` or ``"full"``; return it with a one-line reason.

    Raises
    ------
    SpecError
        For an unknown method, or ``method="collapsed"`` on a design it does not cover.
    """
    if method not in ("auto", "collapsed", "full"):
        raise SpecError(f"Unknown method {method!r}; allowed: {', '.join(METHODS)}.")
    problem = collapse_problem(design)
    if method == "collapsed" and problem is not None:
        raise SpecError(
            f"method='collapsed' cannot fit {design.spec.formula()!r}: {problem}. "
            "Use method='full' (or 'auto', which picks it)."
        )
    if method == "full":
        return "full", "hierbayes: method='full' (non-centred random effects sampled by NUTS)."
    if problem is None:
        ordered = _ordered_groups(design)
        if ordered is None:
            factors = ", ".join(g.name for g in design.groups)
            return "collapsed", (
                f"hierbayes: method='collapsed' (random effects of {factors} integrated out jointly as "
                "crossed factors; drawn exactly after sampling)."
            )
        levels = " within ".join(g.name for g in reversed(ordered))
        return "collapsed", (
            f"hierbayes: method='collapsed' (random effects of {levels} integrated out; drawn exactly after sampling)."
        )
    return "full", f"hierbayes: method='full' (not collapsible: {problem})."


# --------------------------------------------------------------------------------------
# Sufficient statistics
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CollapsedData:
    r"""Data of the collapsed model (see the module docstring for the notation).

    Attributes
    ----------
    groups
        ``(g,)``, ``(outer, inner)``, or all crossed groups in the design's order: the
        groups in the order of ``factors``.
    factors
        The :class:`~hierbayes.inference.collapsed.likelihood.CollapsedFactor`,
        :class:`~hierbayes.inference.collapsed.likelihood.NestedFactors` or
        :class:`~hierbayes.inference.collapsed.likelihood.CrossedFactors`.
    scaling
        Map between standardised and reported fixed effects.
    beta_ref
        Least-squares :math:`\hat\beta` on the standardised scale, ``(p,)``.
    RtR
        :math:`R'R`, ``(m, m)``.
    ZtR
        Per-level :math:`Z_j'R_j`, ``(G, q, m)``, one array per entry of ``groups``.
    n, p
        Rows and fixed-effect columns.
    """

    groups: tuple[GroupDesign, ...]
    factors: Factors
    scaling: FixedScaling
    beta_ref: np.ndarray
    RtR: np.ndarray
    ZtR: tuple[np.ndarray, ...]
    n: int
    p: int

    @cached_property
    def classes(self) -> LevelClasses | None:
        """The levels of the (inner) factor pooled by their constants when that saves work.

        :func:`~hierbayes.inference.collapsed.likelihood.level_classes` of ``factors`` (one
        varying term, e.g. random intercepts), else ``None``; computed on first use (the model
        and its shared statistics need it, the REML fit and the random-effect draws do not).
        """
        return level_classes(self.factors, width=self.p + 1)

    @property
    def outer_sum(self) -> sp.csr_matrix:
        """Sparse ``(K, J)`` 0/1 matrix summing inner levels into their outer level."""
        assert isinstance(self.factors, NestedFactors)
        J, K = self.factors.inner.n_levels, self.factors.outer.n_levels
        return sp.csr_matrix((np.ones(J), (self.factors.parent, np.arange(J))), shape=(K, J))


def _statistics_factors(
    groups: tuple[GroupDesign, ...], stats: SufficientStatistics, ordered: bool
) -> tuple[Factors, list[CollapsedFactor]]:
    """The factor structure, from the statistics (one or two nested factors) or the rows (crossed)."""
    if not ordered:
        factors_list = _design_factors(groups)
        return CrossedFactors(tuple(factors_list)), factors_list
    factors_list = [CollapsedFactor.from_gram(stats.group(g.name).gram, n_rows=stats.n, name=g.name) for g in groups]
    if len(groups) == 1:
        return factors_list[0], factors_list
    outer, inner = groups
    cross = stats.cross[inner.name, outer.name]
    assert inner.parent_index is not None  # _ordered_groups put the nested factor second
    return NestedFactors.from_statistics(factors_list[0], factors_list[1], inner.parent_index, cross), factors_list


def _standardising_map(stats: SufficientStatistics, design: Design, scaling: FixedScaling) -> tuple[np.ndarray, ...]:
    r"""``(hy, Hx)`` with :math:`T h_y = y - o` and :math:`T H_x = \tilde X` (``T`` of :mod:`hierbayes.statistics`)."""
    m1 = stats.TtT.shape[0]
    p = len(design.fixed_names)
    hy = np.zeros(m1)
    hy[0] = stats.shift[0]
    hy[1] = 1.0
    if design.spec.offset:
        k = 1 + stats.column("offset")
        hy[0] -= stats.shift[k - 1]
        hy[k] = -1.0
    Hx = np.zeros((m1, p))
    Hx[0] = (stats.shift[1 : 1 + p] - scaling.center) / scaling.scale
    Hx[2 : 2 + p] = np.diag(1.0 / scaling.scale)
    return hy, Hx


def collapsed_data(design: Design, scaling: FixedScaling | None = None) -> CollapsedData:
    r"""The collapsed model's structure and sufficient statistics, from :func:`~hierbayes.design.design_statistics`.

    With :math:`T` and :math:`T'T`, :math:`Z_j'T_j` of :mod:`hierbayes.statistics`, let
    :math:`h_y` and :math:`H_x` be the maps with :math:`Th_y = y - o` and
    :math:`TH_x = \tilde X` (standardised). Then
    :math:`\hat\beta = (H_x'T'TH_x)^{-1}H_x'T'Th_y` (least squares), :math:`H = [h_y -
    H_x\hat\beta,\ H_x]`, :math:`R'R = H'(T'T)H` and :math:`Z_j'R_j = (Z_j'T_j)H`: no row is
    read here (for a crossed design the factor structure is still built from the rows).
    """
    problem = collapse_problem(design, sampler=False)
    if problem is not None:
        raise SpecError(f"The collapsed sampler cannot fit {design.spec.formula()!r}: {problem}.")
    scaling = scaling if scaling is not None else fixed_scaling(design)
    ordered = _ordered_groups(design)
    groups = ordered if ordered is not None else design.groups
    stats = design_statistics(design)
    factors, _ = _statistics_factors(groups, stats, ordered is not None)
    hy, Hx = _standardising_map(stats, design, scaling)
    p = Hx.shape[1]
    if p:
        G = Hx.T @ stats.TtT @ Hx
        beta_ref = np.linalg.solve(G, Hx.T @ stats.TtT @ hy)
    else:
        beta_ref = np.zeros(0)
    H = np.column_stack([hy - Hx @ beta_ref, Hx])
    return CollapsedData(
        groups=groups,
        factors=factors,
        scaling=scaling,
        beta_ref=beta_ref,
        RtR=H.T @ stats.TtT @ H,
        ZtR=tuple(stats.group(g.name).ZtT @ H for g in groups),
        n=stats.n,
        p=p,
    )


def response_statistics(data: CollapsedData) -> dict[str, np.ndarray]:
    """The response-dependent arrays of ``data``, by their shared-variable names.

    The names are those of :func:`build_collapsed_model` with ``shared_statistics=True``:
    ``collapsed_beta_ref``, ``collapsed_RtR`` and ``collapsed_ZtR_<k>``; when the levels of the
    (inner) factor are pooled (``data.classes``), its ``collapsed_ZtR_<k>`` is replaced by the
    class sums ``collapsed_pooled_S`` and (nested factors) ``collapsed_pooled_P``
    (:func:`~hierbayes.inference.collapsed.likelihood.pooled_statistics`).
    """
    out = {"collapsed_beta_ref": data.beta_ref, "collapsed_RtR": data.RtR}
    out.update({f"collapsed_ZtR_{k}": a for k, a in enumerate(data.ZtR)})
    if data.classes is not None:
        last = len(data.ZtR) - 1
        parent = data.factors.parent if isinstance(data.factors, NestedFactors) else None
        S, P = pooled_statistics(data.classes, out.pop(f"collapsed_ZtR_{last}")[:, 0, :], parent)
        out["collapsed_pooled_S"] = S
        if parent is not None:  # one factor needs S only
            out["collapsed_pooled_P"] = P
    return out


# --------------------------------------------------------------------------------------
# The PyMC model
# --------------------------------------------------------------------------------------


def build_collapsed_model(
    design: Design, priors: ResolvedPriors | None = None, *, shared_statistics: bool = False
) -> pm.Model:
    r"""Build the collapsed PyMC model of ``design``: same priors and names as the full model.

    The likelihood is a ``pm.Potential`` called ``y_marginal`` holding
    :math:`\log N(y - X\beta - o \mid 0, V)`; there are no ``z_<g>`` or ``u_<g>``
    variables in the model (``u_<g>`` is added to the posterior by
    :func:`add_random_effects`).

    Parameters
    ----------
    design
        A Gaussian design with one grouping factor or two nested ones
        (see :func:`collapse_problem`).
    priors
        Resolved priors; by default :func:`hierbayes.inference.priors.resolve_priors` of the design.
    shared_statistics
        Hold the response's sufficient statistics (:math:`\hat\beta`, :math:`R'R`,
        :math:`Z_j'R_j`) in PyTensor shared variables named as the keys of
        :func:`response_statistics` (``collapsed_beta_ref``, ``collapsed_RtR``,
        ``collapsed_ZtR_<k>`` with ``k`` the position in :attr:`CollapsedData.groups`, and the
        class sums of pooled levels), so that a compiled model can be refitted to another
        response on the same design (:func:`response_statistics`; used by calibration
        checks). Default: constants.

    Returns
    -------
    pymc.Model
    """
    priors = priors if priors is not None else resolve_priors(design)
    data = collapsed_data(design)
    with pm.Model(coords=model_coords(design, obs=False)) as model:
        beta_std = fixed_effects(design, priors, data.scaling)
        chols = [covariance_factor(g, priors)[0] for g in data.groups]
        sigma = residual_sd(priors)
        stats = response_statistics(data)
        if shared_statistics:
            held = {k: pytensor.shared(a, name=k) for k, a in stats.items()}
        else:
            held = {k: pt.constant(a) for k, a in stats.items()}
        if beta_std is None:
            v = pt.constant(np.ones(1))
        else:
            v = pt.concatenate([pt.ones(1), held["collapsed_beta_ref"] - beta_std])
        if data.classes is not None:  # one-term factor(s): per-class sums, O(K D m) per evaluation
            assert isinstance(data.factors, CollapsedFactor | NestedFactors)
            nested = isinstance(data.factors, NestedFactors)
            logp = marginal_loglik_pooled(
                v,
                held["collapsed_RtR"],
                held["collapsed_ZtR_0"][:, 0, :] if nested else None,
                (held["collapsed_pooled_S"], held.get("collapsed_pooled_P")),
                sigma,
                data.factors,
                data.classes,
                tuple(chols) if nested else chols[0],
            )
        else:
            rtr = pt.dot(v, pt.dot(held["collapsed_RtR"], v))
            sums = [pt.tensordot(held[f"collapsed_ZtR_{k}"], v, axes=[[2], [0]]) for k in range(len(data.ZtR))]
            if isinstance(data.factors, CollapsedFactor):
                logp = marginal_loglik_from_sums(rtr, sums[0], sigma, data.factors, chols[0])
            else:
                logp = marginal_loglik_from_sums(rtr, tuple(sums), sigma, data.factors, tuple(chols))
        pm.Potential("y_marginal", logp)
    return model


# --------------------------------------------------------------------------------------
# Exact conditional draws of the random effects, batched over posterior draws
# --------------------------------------------------------------------------------------


def _level_draw(C: np.ndarray, c: np.ndarray, L: np.ndarray, sigma: np.ndarray, rng: NormalSource | None) -> np.ndarray:
    r""":math:`u = Lv`, :math:`v = C^{-T}(C^{-1}c + \sigma z)`; ``c`` is ``(S, G, q, 1)``; mean if no rng."""
    w = forward(C, c)
    if rng is not None:
        w = w + sigma[:, None, None, None] * rng.standard_normal(w.shape)
    v = backward(C, w)
    return (L[:, None] @ v)[..., 0]


def conditional_effects(
    data: CollapsedData,
    v: np.ndarray,
    sigma: np.ndarray,
    chols: list[np.ndarray],
    rngs: Sequence[NormalSource] | None = None,
) -> list[np.ndarray]:
    r"""Draw (or, without ``rngs``, average) :math:`u \mid y, \beta, \theta` for ``S`` parameter sets.

    The algebra of :func:`hierbayes.inference.collapsed.likelihood.draw_random_effects`, batched over the
    leading dimension and driven by the sufficient statistics.

    Parameters
    ----------
    data
        From :func:`collapsed_data`.
    v
        ``(S, m)`` coefficient vectors :math:`(1, -(\tilde\beta - \hat\beta))`, so that
        :math:`r = Rv`.
    sigma
        ``(S,)`` residual sds.
    chols
        One ``(S, q, q)`` covariance factor per group, in the order of ``data.groups``.
    rngs
        One generator per group (independent streams, so the result does not depend on how
        the draws are chunked; or normals drawn from them beforehand, see :class:`_Drawn`);
        ``None`` returns the conditional means (BLUPs at fixed parameters).

    Returns
    -------
    list of ndarray
        ``(S, G, q)`` per group, in the order of ``data.groups``.
    """
    rng = rngs if rngs is not None else [None] * len(data.groups)
    if not isinstance(data.factors, CrossedFactors) and all(a.shape[1] == 1 for a in data.ZtR):
        return _scalar_conditional_effects(data, v, sigma, [c[:, 0, 0] for c in chols], rng)
    return _general_conditional_effects(data, v, sigma, chols, rng)


def _general_conditional_effects(
    data: CollapsedData,
    v: np.ndarray,
    sigma: np.ndarray,
    chols: list[np.ndarray],
    rng: Sequence[NormalSource] | Sequence[None],
) -> list[np.ndarray]:
    """:func:`conditional_effects` for any numbers of terms: batched ``q x q`` factorisations."""
    rngs = None if rng[0] is None else rng
    s2 = (sigma**2)[:, None, None, None]
    sums = [np.einsum("gqm,sm->sgq", a, v)[..., None] for a in data.ZtR]  # (S, G, q, 1)
    if isinstance(data.factors, CrossedFactors):
        # crossed effects are drawn from the generators themselves (never in threads: _draw_posterior_effects)
        gens = None if rngs is None else cast("list[np.random.Generator]", list(rngs))
        return crossed_conditional_np(data.factors, [b[..., 0] for b in sums], chols, sigma, gens)
    if isinstance(data.factors, CollapsedFactor):
        L = chols[0]
        q = L.shape[-1]
        C = chol(s2 * np.eye(q) + swap_last(L)[:, None] @ data.factors.gram[None] @ L[:, None])
        return [_level_draw(C, swap_last(L)[:, None] @ sums[0], L, sigma, rng[0])]
    nf = data.factors
    L1, L2 = chols
    q1, q2 = L1.shape[-1], L2.shape[-1]
    P = data.outer_sum
    A21 = nf.cross_gram[None]  # (1, J, q2, q1)
    C2 = chol(s2 * np.eye(q2) + swap_last(L2)[:, None] @ nf.inner.gram[None] @ L2[:, None])
    L2t = swap_last(L2)[:, None]
    wb = forward(C2, np.concatenate([L2t @ sums[1], L2t @ A21], axis=-1))  # (S, J, q2, 1 + q1)
    w, B = wb[..., :1], wb[..., 1:]
    t = sums[0] - sum_outer(P, swap_last(B) @ w)  # (S, K, q1, 1)
    Q = nf.outer.gram[None] - sum_outer(P, swap_last(B) @ B)
    C1 = chol(s2 * np.eye(q1) + swap_last(L1)[:, None] @ Q @ L1[:, None])
    u1 = _level_draw(C1, swap_last(L1)[:, None] @ t, L1, sigma, rng[0])  # (S, K, q1)
    b2 = sums[1] - A21 @ u1[:, nf.parent, :, None]
    u2 = _level_draw(C2, L2t @ b2, L2, sigma, rng[1])
    return [u1, u2]


def _scalar_draw(
    b: np.ndarray, inv_m: np.ndarray, ell: np.ndarray, sigma: np.ndarray, rng: NormalSource | None
) -> np.ndarray:
    r""":math:`u = \ell(\ell\,b/m + \sigma z/\sqrt m) = \lambda b/m + \ell\sigma z/\sqrt m` (one term), in place.

    :func:`_level_draw` with scalar blocks: ``b`` is :math:`L'Z_j'r_j/\ell` (``(S, G)``,
    overwritten with the result), ``inv_m`` is :math:`1/m` (``(S, G)``, overwritten), ``ell``
    and ``sigma`` are ``(S,)``. The normals are drawn in the order and shape of
    :func:`_level_draw`'s, so both give the same draws for the same generator.
    """
    b *= inv_m
    b *= (ell**2)[:, None]
    if rng is not None:
        z = rng.standard_normal(b.shape)
        z *= (ell * sigma)[:, None]
        z *= np.sqrt(inv_m, out=inv_m)
        b += z
    return b


def _scalar_conditional_effects(
    data: CollapsedData,
    v: np.ndarray,
    sigma: np.ndarray,
    ells: list[np.ndarray],
    rng: Sequence[NormalSource] | Sequence[None],
) -> list[np.ndarray]:
    r""":func:`conditional_effects` for one term per factor (random intercepts), element-wise.

    With :math:`\lambda = \ell^2` (:math:`\ell` the sd), per level :math:`m_j = \sigma^2 +
    \lambda a_j` (:math:`a_j = Z_j'Z_j`) the blocks of the general algebra are scalars: one
    factor gives :math:`u_j = \ell(\ell b_j/m_j + \sigma z_j/\sqrt{m_j})`; for nested
    factors (notation of ``_nested_scalar_pt`` in
    :mod:`hierbayes.inference.collapsed.likelihood`) :math:`t_k = t_{1k} - \lambda_2\sum_{j\in
    k} c_jb_j/m_j`, :math:`Q_k = Q^0_k + \sigma^2\sum_{j\in k} g_j/m_j`,
    :math:`M_{1k} = \sigma^2 + \lambda_1Q_k`, the outer draw from :math:`(t_k, M_{1k})` and the
    inner draw from :math:`b_j - c_ju_{1,\mathrm{parent}(j)}`. ``(S, G)`` arrays throughout
    (a few passes over them, in place where possible): no batched ``1 x 1`` factorisations.
    """
    s2 = sigma**2
    # sums Z_j'r_j per draw, (S, G), by einsum (not BLAS): each entry independent of the chunk size
    if isinstance(data.factors, CollapsedFactor):
        sums = [np.einsum("gm,sm->sg", data.ZtR[0][:, 0, :], v, order="C")]
        ell = ells[0]
        inv = np.multiply.outer(ell**2, data.factors.gram[:, 0, 0])
        inv += s2[:, None]
        return [_scalar_draw(sums[0], np.reciprocal(inv, out=inv), ell, sigma, rng[0])[..., None]]
    nf = data.factors
    assert isinstance(nf, NestedFactors)
    a, c, Q0, g = nf.scalar_constants
    # work with the inner levels sorted by outer level (segment sums by reduceat), restore at the end
    order = nf.parent_segments[0]
    parent, Z2 = nf.parent, data.ZtR[1][:, 0, :]
    if order is not None:
        a, c, g, parent, Z2 = a[order], c[order], g[order], parent[order], Z2[order]
    b2 = np.einsum("gm,sm->sg", Z2, v, order="C")
    ell1, ell2 = ells
    inv2 = np.multiply.outer(ell2**2, a)  # (S, J)
    inv2 += s2[:, None]
    np.reciprocal(inv2, out=inv2)
    work = b2 * c
    work *= inv2
    t = np.einsum("gm,sm->sg", data.ZtR[0][:, 0, :], v, order="C")  # (S, K)
    t -= (ell2**2)[:, None] * nf.sum_inner(work, presorted=True)
    np.multiply(inv2, g, out=work)
    Q = Q0 + s2[:, None] * nf.sum_inner(work, presorted=True)
    m1 = s2[:, None] + (ell1**2)[:, None] * Q
    u1 = _scalar_draw(t, np.reciprocal(m1, out=m1), ell1, sigma, rng[0])
    # u_1 of each inner level's outer level (inner levels sorted by outer level: a repeat, no gather)
    work = np.repeat(u1, np.bincount(parent, minlength=nf.outer.n_levels), axis=1)
    work *= c
    b2 -= work
    del work
    if order is not None:  # back to the levels' order before the normals (same draws as the general path)
        restore = np.argsort(order)
        b2, inv2 = b2[:, restore], inv2[:, restore]
    u2 = _scalar_draw(b2, inv2, ell2, sigma, rng[1])
    return [u1[..., None], u2[..., None]]


def _posterior_factors(data: CollapsedData, posterior: xr.Dataset, index: np.ndarray) -> list[np.ndarray]:
    chols = []
    for g in data.groups:
        sd_g = values(group_sd_draws(posterior, g), g.coef_dim)
        sd = sd_g.reshape(-1, sd_g.shape[-1])[index]
        if names.corr_chol(g.name) in posterior:
            chols.append(sd[:, :, None] * stacked(posterior, names.corr_chol(g.name))[index])
        else:
            chols.append(sd[:, :, None] * np.eye(sd.shape[1]))
    return chols


def _draw_posterior_effects(
    design: Design, posterior: xr.Dataset, index: np.ndarray, random_seed: int | None
) -> dict[str, np.ndarray]:
    """``{u_<g>: (len(index), G, q)}`` for the stacked posterior draws ``index``.

    Chunks of draws go to :func:`_draw_workers` threads unless the factors are crossed: the
    200,000-row nested benchmark's 5,200 levels x 4,000 draws took 0.81 s in one thread and
    0.46 s with two (2 CPUs); achievement's 0.33 s and 0.18 s. The same draws either way.
    """
    data = collapsed_data(design)
    seeds = np.random.SeedSequence(random_seed).spawn(len(data.groups))
    rngs = [np.random.default_rng(s) for s in seeds]
    S = index.size
    if data.p:
        beta_std = stacked(posterior, names.BETA_STD)[index]
        v_all = np.column_stack([np.ones(S), data.beta_ref - beta_std])
    else:
        v_all = np.ones((S, 1))
    sigma_all = stacked(posterior, names.SIGMA)[index]
    chol_all = _posterior_factors(data, posterior, index)
    out = {names.u(g.name): np.empty((S, g.n_levels, len(g.coef_names))) for g in data.groups}
    q_max = max(len(g.coef_names) for g in data.groups)
    per_draw = max(g.n_levels for g in data.groups) * q_max**3
    if isinstance(data.factors, CrossedFactors):  # dense (P, P) Schur complement and (G_B q_B, P) solves
        cf = data.factors
        fb = cf.factors[cf.big]
        per_draw += 3 * cf.n_small * (cf.n_small + fb.n_levels * fb.n_terms)
    scalar = not isinstance(data.factors, CrossedFactors) and q_max == 1
    chunk = max(1, (_SCALAR_CHUNK_FLOATS if scalar else _CHUNK_FLOATS) // max(per_draw, 1))
    slices = [slice(start, min(S, start + chunk)) for start in range(0, S, chunk)]

    def draw(sl: slice, sources: list[NormalSource]) -> None:
        us = conditional_effects(data, v_all[sl], sigma_all[sl], [c[sl] for c in chol_all], sources)
        for g, u in zip(data.groups, us, strict=True):
            out[names.u(g.name)][sl] = u

    workers = _draw_workers()
    if isinstance(data.factors, CrossedFactors) or workers == 1 or len(slices) == 1:
        for sl in slices:
            draw(sl, list(rngs))
        return out
    # The chunks in threads (numpy releases Python's lock): this thread draws each chunk's
    # normals from the groups' streams in order, as the loop above would, and the workers do
    # the rest; the draws do not depend on the number of threads.
    sizes = [g.n_levels * len(g.coef_names) for g in data.groups]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[None]] = deque()
        for sl in slices:
            n = sl.stop - sl.start
            drawn = [_Drawn(rng.standard_normal(n * size)) for rng, size in zip(rngs, sizes, strict=True)]
            pending.append(pool.submit(_draw_all, draw, sl, drawn))
            while len(pending) > 2 * workers:  # a few chunks ahead at most (memory)
                pending.popleft().result()
        for future in pending:
            future.result()
    return out


class NormalSource(Protocol):
    """What :func:`conditional_effects` draws its standard normals from (a numpy ``Generator``)."""

    def standard_normal(self, size: tuple[int, ...]) -> np.ndarray: ...


class _Drawn:
    """Standard normals drawn beforehand; ``standard_normal(shape)`` hands out the next ``prod(shape)``.

    A generator fills an array in C order, so handing out a long draw piece by piece gives what
    successive draws of those shapes from the same generator give.
    """

    def __init__(self, normals: np.ndarray) -> None:
        self._normals = normals
        self._at = 0

    def standard_normal(self, size: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(size, dtype=np.int64))
        if self._at + count > self._normals.size:
            raise RuntimeError("hierbayes: more normals asked for than were drawn for this chunk")
        z = self._normals[self._at : self._at + count].reshape(size)
        self._at += count
        return z

    def used_up(self) -> bool:
        return self._at == self._normals.size


def _draw_all(draw: Callable[[slice, list[NormalSource]], None], sl: slice, drawn: list[_Drawn]) -> None:
    """``draw(sl, drawn)``, checking that every normal drawn for the chunk was used (else the stream would shift)."""
    draw(sl, list(drawn))
    if not all(d.used_up() for d in drawn):
        raise RuntimeError("hierbayes: a chunk used fewer normals than were drawn for it")


def _draw_workers() -> int:
    """Threads for the conditional draws: the CPUs this process may use, at most 4."""
    from hierbayes.inference.jax_nuts import available_cpus  # numpy and the standard library only

    return max(1, min(4, available_cpus()))


def random_effect_draws(
    design: Design,
    posterior: xr.Dataset,
    *,
    thin: int = 1,
    random_seed: int | None = None,
) -> xr.Dataset:
    """Draw the random effects of a collapsed fit for every ``thin``-th draw of each chain.

    Parameters
    ----------
    design
        The fit's design (``fit.design``).
    posterior
        The fit's posterior (``fit.posterior``), with ``beta_std``, ``sigma``, ``sd_<g>``
        (and ``corr_chol_<g>``).
    thin
        Keep draws ``0, thin, 2 thin, ...`` of every chain.
    random_seed
        Seed of the conditional draws.

    Returns
    -------
    xarray.Dataset
        ``u_<g>`` with dims ``(chain, draw, <g>, <g>__coef)``, ``draw`` the kept draw numbers.
    """
    if thin < 1:
        raise ValueError(f"thin must be a positive integer; received {thin}.")
    sub = posterior.isel(draw=slice(None, None, thin))
    chains, draws = sub.sizes["chain"], sub.sizes["draw"]
    arrays = _draw_posterior_effects(design, sub, np.arange(chains * draws), random_seed)
    data_vars = {}
    for g in design.groups:
        u = arrays[names.u(g.name)].reshape(chains, draws, g.n_levels, len(g.coef_names))
        data_vars[names.u(g.name)] = (("chain", "draw", g.name, g.coef_dim), u)
    coords = {"chain": sub["chain"].values, "draw": sub["draw"].values}
    for g in design.groups:
        coords[g.name] = np.array(g.levels, dtype=object)
        coords[g.coef_dim] = np.array(g.coef_names, dtype=object)
    return xr.Dataset(data_vars, coords=coords)


def add_random_effects(
    idata: xr.DataTree,
    design: Design,
    *,
    random_seed: int | None = None,
    store_random_effects: bool = True,
) -> xr.DataTree:
    """Add ``u_<g>`` (exact conditional draws) and the observed ``y`` to a collapsed fit's result.

    Parameters
    ----------
    idata
        The sampler's result for :func:`build_collapsed_model`.
    design
        The design the model was built from.
    random_seed
        Seed of the conditional draws (the fit's seed): the same seed gives the same draws.
    store_random_effects
        ``False`` skips the draws (see the module docstring on memory); they can be made
        later with :func:`random_effect_draws`.

    Returns
    -------
    xarray.DataTree
        ``idata`` with ``u_<g>`` in its posterior and ``y`` in ``observed_data``.
    """
    posterior = idata["posterior"].to_dataset()
    if store_random_effects:
        posterior = posterior.merge(random_effect_draws(design, posterior, random_seed=random_seed))
        idata["posterior"] = xr.DataTree(posterior)
    return with_observed_y(idata, design)


def with_observed_y(idata: xr.DataTree, design: Design) -> xr.DataTree:
    """Add the observed response ``y`` (dim ``obs``) to ``idata["observed_data"]`` if it is not there, in place.

    Models whose likelihood is not a PyMC observed variable (collapsed, quadrature) have none.
    """
    observed = idata["observed_data"].to_dataset() if "observed_data" in idata.children else xr.Dataset()
    if "y" not in observed:
        y = xr.Dataset({"y": (("obs",), design.y)}, coords={"obs": np.arange(design.n_obs).astype(str)})
        idata["observed_data"] = xr.DataTree(observed.merge(y).assign_attrs(observed.attrs))
    return idata
