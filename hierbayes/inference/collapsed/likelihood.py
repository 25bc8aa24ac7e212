r"""Gaussian random effects integrated out analytically ("collapsed" linear mixed models).

Model (Gaussian response, identity link):

.. math::

    y = X\beta + \sum_g Z_g u_g + e, \qquad e \sim N(0, \sigma^2 I_n), \qquad
    u_{gj} \sim N(0, \Omega_g) \text{ independently over levels } j,

so that, with the random effects integrated out,

.. math::

    y \mid \beta, \theta \sim N(X\beta, V), \qquad
    V = \sigma^2 I_n + \sum_g Z_g (I_{G_g} \otimes \Omega_g) Z_g'.

Each covariance enters only through a square root :math:`L_g` with
:math:`L_g L_g' = \Omega_g` (in practice the lower Cholesky factor; a singular
:math:`L_g`, e.g. a zero standard deviation, is allowed). Writing :math:`W_g = Z_g
(I \otimes L_g)` gives :math:`V = \sigma^2 I + \sum_g W_g W_g'`, and everything below is
computed from per-group sums of size :math:`q \times q`; neither the dense
:math:`n \times n` matrix :math:`V` nor the dense design :math:`Z` is ever formed.

Two structures are supported:

* one grouping factor (:class:`CollapsedFactor`), with :math:`q` varying terms;
* two nested factors (:class:`NestedFactors`), e.g. children (inner, :math:`q_2` terms)
  within schools (outer, :math:`q_1` terms).

Single factor
-------------
For level :math:`j` with rows :math:`r_j` of the residual :math:`r = y - X\beta` and rows
:math:`Z_j` of the design, let :math:`A_j = Z_j'Z_j`, :math:`b_j = Z_j' r_j`,
:math:`M_j = \sigma^2 I_q + L'A_j L = C_j C_j'` (Cholesky) and
:math:`w_j = C_j^{-1} L' b_j`. Woodbury's identity and the matrix determinant lemma give

.. math::

    \log|V| = 2(n - Gq)\log\sigma + \sum_j \log|M_j|, \qquad
    r'V^{-1}r = \sigma^{-2}\Big(r'r - \sum_j w_j'w_j\Big),

at cost :math:`O(nq + Gq^3)`. Levels without rows contribute nothing (their
:math:`M_j = \sigma^2 I` cancels the :math:`-2q\log\sigma`).

Two nested factors
------------------
Inner levels :math:`j` (terms :math:`Z_2`, factor :math:`L_2`) lie in outer levels
:math:`k = \mathrm{parent}(j)` (terms :math:`Z_1`, factor :math:`L_1`). Then :math:`V` is
block diagonal over outer levels, and so is :math:`V_2 = \sigma^2 I + W_2W_2'` over inner
levels. First collapse the inner level, with :math:`M_{2j} = \sigma^2 I + L_2'A_{22,j}L_2
= C_{2j}C_{2j}'`, :math:`w_j = C_{2j}^{-1}L_2'Z_{2j}'r_j` and
:math:`B_j = C_{2j}^{-1}L_2'A_{21,j}` (:math:`q_2 \times q_1`, with
:math:`A_{21,j} = Z_{2j}'Z_{1j}`):

.. math::

    \sigma^2 Z_{1j}'V_{2j}^{-1}r_j = Z_{1j}'r_j - B_j'w_j, \qquad
    \sigma^2 Z_{1j}'V_{2j}^{-1}Z_{1j} = A_{11,j} - B_j'B_j.

Summing over the inner levels of outer level :math:`k` gives
:math:`t_k = Z_{1k}'r_k - \sum_{j \in k} B_j'w_j` and
:math:`Q_k = A_{11,k} - \sum_{j\in k} B_j'B_j`; with
:math:`M_{1k} = \sigma^2 I + L_1'Q_kL_1 = C_{1k}C_{1k}'` and
:math:`e_k = C_{1k}^{-1}L_1't_k` a second Woodbury step gives

.. math::

    \log|V| = 2(n - Jq_2 - Kq_1)\log\sigma + \sum_j \log|M_{2j}| + \sum_k \log|M_{1k}|,
    \qquad
    r'V^{-1}r = \sigma^{-2}\Big(r'r - \sum_j w_j'w_j - \sum_k e_k'e_k\Big),

at cost :math:`O(n(q_1+q_2) + J(q_2^3 + q_1^2 q_2) + K q_1^3)`.

With one term per factor (:math:`q_1 = q_2 = 1`, e.g. nested random intercepts) every block is a
scalar and the evaluation is a few element-wise operations on length-:math:`J` and
:math:`K` vectors plus two segment sums (``_nested_scalar_pt``; likewise for one factor with
one term), with :math:`\sum_j \log M_{2j}` taken over the distinct values of
:math:`A_{22,j}` (the group sizes, for intercepts). When the residual is :math:`r = Rv`,
linear in the fixed effects, even those vectors can go: levels with the same constants (for
intercepts, the same size) are pooled into classes, and per-class sums of the data give the
log density in :math:`O(KDm)` for :math:`D` classes, whatever :math:`J`
(:class:`LevelClasses`, :func:`marginal_loglik_pooled`).

Crossed factors
---------------
For :math:`k \ge 2` factors that are not nested (:class:`CrossedFactors`, e.g. subjects x
items), stack all levels of all factors: :math:`Z = [Z_1, \dots, Z_k]`,
:math:`L = \mathrm{blockdiag}(I_{G_g} \otimes L_g)`, :math:`Q = \sum_g G_g q_g` and
:math:`M = \sigma^2 I_Q + L'Z'ZL` (the joint :math:`\sigma^2(Z'Z/\sigma^2 + \Omega^{-1})`,
scaled). Then :math:`\log|V| = 2(n - Q)\log\sigma + \log|M|` and
:math:`r'V^{-1}r = \sigma^{-2}(r'r - c'M^{-1}c)`, :math:`c = L'Z'r`. :math:`M` is eliminated
by blocks: the factor with the most coefficients (:math:`G_Bq_B`, "big") has a block diagonal
:math:`M_{BB}` (per level :math:`M_{Bj} = \sigma^2 I + L_B'A_{Bj}L_B = C_jC_j'`); the other
("small") factors, :math:`P = Q - G_Bq_B` coefficients, get the dense Schur complement

.. math::

    S = \sigma^2 I_P + L_S'\Big(Z_S'Z_S - \sum_j D_j'D_j\Big)L_S, \qquad
    D_j = C_j^{-1}L_B'K_j, \quad K_j = Z_{Bj}'Z_{S,j}\ (q_B \times P),

with :math:`w_j = C_j^{-1}L_B'b_{Bj}`, :math:`t = L_S'(b_S - \sum_j D_j'w_j)`,
:math:`S = C_SC_S'` and :math:`e = C_S^{-1}t`:

.. math::

    \log|V| = 2(n - Q)\log\sigma + \sum_j \log|M_{Bj}| + \log|S|, \qquad
    r'V^{-1}r = \sigma^{-2}\Big(r'r - \sum_j w_j'w_j - e'e\Big),

at cost :math:`O(n + G_Bq_B(q_B^2 + P^2) + P^3)` (dense Cholesky of :math:`S`). The dense
:math:`K` and :math:`Z_S'Z_S` limit :math:`P` (see :data:`CROSSED_MAX_SMALL` and, for the
sampler, :data:`CROSSED_MAX_WORK`).

In all cases :math:`\log p(r) = -\tfrac12\big(n\log 2\pi + \log|V| + r'V^{-1}r\big)`.

Conditional draws
-----------------
With :math:`u_j = L v_j`, :math:`v_j \sim N(0, I)` a priori, the conditional of one level is
:math:`v_j \mid r \sim N(M_j^{-1}L'b_j,\ \sigma^2 M_j^{-1})`, drawn as
:math:`v_j = C_j^{-T}(C_j^{-1}L'b_j + \sigma z_j)`, :math:`z_j \sim N(0, I)`. For nested
factors the outer effects are drawn from their conditional with the inner effects
integrated out, :math:`v_{1k} \mid r \sim N(M_{1k}^{-1}L_1't_k,\ \sigma^2 M_{1k}^{-1})`,
and then the inner effects from the single-factor conditional given the outer ones, using
the residual :math:`r - Z_1 u_1`. Together this is an exact draw from
:math:`p(u_1, u_2 \mid y, \beta, \theta)`. Crossed factors are drawn the same way: the
small factors jointly, :math:`v_S \mid r \sim N(S^{-1}t,\ \sigma^2 S^{-1})`, then the big
factor's levels given them, with :math:`b_{Bj} - K_ju_S` in place of :math:`b_{Bj}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor import TensorLike
from pytensor.tensor.variable import TensorVariable

from hierbayes.exceptions import DataError, SpecError

__all__ = [
    "CROSSED_MAX_SMALL",
    "CROSSED_MAX_WORK",
    "CollapsedFactor",
    "CrossedFactors",
    "Factors",
    "LevelClasses",
    "NestedFactors",
    "apply_small_lt_np",
    "draw_random_effects",
    "level_classes",
    "marginal_loglik",
    "marginal_loglik_from_sums",
    "marginal_loglik_pooled",
    "pooled_statistics",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: Largest number of coefficients :math:`P` of the "small" crossed factors (all but the
#: factor with the most levels x terms) for which :class:`CrossedFactors` is used at all (by
#: REML/ML too): a dense :math:`P \times P` Cholesky per evaluation.
CROSSED_MAX_SMALL = 2000
#: Largest dense cross-product :math:`K` (:math:`G_Bq_B \times P` floats) kept in memory.
CROSSED_MAX_CROSS = 20_000_000
#: Largest work per evaluation, :math:`G_Bq_BP^2 + P^3`, for the collapsed *sampler*. Measured
#: (compiled log density + gradient, timed; one BLAS thread on a shared 2-core machine, Numba
#: backend, :math:`G_B = 2000`, intercepts): log density + gradient 11 ms at :math:`P = 100`
#: (work 2e7), 29 ms at 300 (2e8), 139 ms at 600 (9e8), 377 ms at 1000 (3e9), against about
#: 1-2 ms for the full model's gradient at the same :math:`n = 20000`. NUTS needs a few times
#: fewer gradients on the collapsed model, so it pays up to roughly 1e8 (about 10-20 ms).
CROSSED_MAX_WORK = 100_000_000


# --------------------------------------------------------------------------------------
# Structure descriptions (numeric data only; no parameters)
# --------------------------------------------------------------------------------------


def _segment_sum_np(index: np.ndarray, n_levels: int, values: np.ndarray) -> np.ndarray:
    """Sum the rows of ``values`` (shape ``(n, ...)``) by level: result ``(n_levels, ...)``."""
    values = np.asarray(values, dtype=np.float64)
    tail = values.shape[1:]
    flat = values.reshape(values.shape[0], -1)
    out = np.empty((n_levels, flat.shape[1]))
    for a in range(flat.shape[1]):  # loop over columns (q^2 at most), never over groups
        out[:, a] = np.bincount(index, weights=flat[:, a], minlength=n_levels)
    return out.reshape((n_levels, *tail))


def _distinct_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values (read-only) and how often each occurs (as floats)."""
    distinct, counts = np.unique(values, return_counts=True)
    return _readonly(distinct), _readonly(counts.astype(np.float64))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class CollapsedFactor:
    r"""One grouping factor whose random effects are integrated out.

    Row :math:`i` of the data belongs to level ``index[i]`` and contributes
    :math:`Z_i' u_{\mathrm{index}[i]}` to the linear predictor, with
    :math:`u_j \sim N(0, \Omega)` of dimension :math:`q`.

    Parameters
    ----------
    index : array_like of int, shape (n,)
        Level of every row, in ``0 .. n_levels - 1``.
    Z : array_like of float, shape (n, q) or (n,), optional
        Values of the varying terms per row (``Z[:, 0] = 1`` for a varying intercept).
        Default: a column of ones (varying intercept only, :math:`q = 1`).
    n_levels : int, optional
        Number of levels :math:`G`; default ``index.max() + 1``. Levels without rows are
        allowed (their effects keep their prior).
    name : str
        Name of the grouping factor, used in error messages.

    Notes
    -----
    Arrays are copied and made read-only. Per-level Gram matrices
    :math:`A_j = Z_j'Z_j` are computed once, on first use, and cached. Instances compare by
    identity.
    """

    index: np.ndarray
    Z: np.ndarray = None  # type: ignore[assignment]  # a column of ones when omitted (__post_init__)
    n_levels: int = None  # type: ignore[assignment]  # max(index) + 1 when omitted (__post_init__)
    name: str = "group"

    def __post_init__(self) -> None:
        index = np.asarray(self.index)
        if index.ndim != 1 or index.size == 0:
            raise DataError(
                f"Grouping factor {self.name!r}: `index` must be a non-empty 1-D integer "
                f"array (one level per row); got shape {index.shape}. Pass the level codes "
                "of the rows, e.g. from `pandas.factorize`."
            )
        if index.dtype.kind not in "iu":
            raise DataError(
                f"Grouping factor {self.name!r}: `index` must hold integer level codes; got "
                f"dtype {index.dtype}. Convert the labels to codes 0..G-1 first (e.g. "
                "`pandas.factorize`)."
            )
        index = np.array(index, dtype=np.int64)
        lo, hi = int(index.min()), int(index.max())
        n_levels = hi + 1 if self.n_levels is None else int(self.n_levels)
        if lo < 0 or hi >= n_levels:
            raise DataError(
                f"Grouping factor {self.name!r}: level codes must lie in 0..{n_levels - 1} "
                f"(n_levels={n_levels}); got codes from {lo} to {hi}. Recode the levels or "
                "raise `n_levels`."
            )
        n = index.shape[0]
        if self.Z is None:
            Z = np.ones((n, 1))
        else:
            Z = np.array(self.Z, dtype=np.float64)
            if Z.ndim == 1:
                Z = Z[:, None]
            if Z.ndim != 2 or Z.shape[0] != n or Z.shape[1] == 0:
                raise DataError(
                    f"Grouping factor {self.name!r}: `Z` must have shape (n, q) = ({n}, q) "
                    f"with q >= 1, one row per entry of `index`; got shape "
                    f"{np.shape(self.Z)}."
                )
            if not np.all(np.isfinite(Z)):
                raise DataError(
                    f"Grouping factor {self.name!r}: `Z` contains NaN or infinite values "
                    f"(first bad row: {int(np.argmax(~np.isfinite(Z).all(axis=1)))}). Drop or "
                    "impute those rows before building the model."
                )
        object.__setattr__(self, "index", _readonly(index))
        object.__setattr__(self, "Z", _readonly(Z))
        object.__setattr__(self, "n_levels", n_levels)

    @classmethod
    def from_gram(cls, gram: np.ndarray, *, n_rows: int, name: str = "group") -> CollapsedFactor:
        r"""A factor known only by its per-level Gram matrices :math:`A_j = Z_j'Z_j` (no rows).

        This is all :func:`marginal_loglik_from_sums` and the batched conditional draws need
        (:mod:`hierbayes.statistics`); ``index`` and ``Z`` are ``None``, so the row-level
        :func:`marginal_loglik`, :func:`draw_random_effects` and :meth:`segment_sum` are not
        available.

        Parameters
        ----------
        gram
            ``(G, q, q)`` per-level Gram matrices.
        n_rows
            Number of data rows :math:`n`.
        name
            Name of the grouping factor.
        """
        gram = np.array(gram, dtype=np.float64)
        if gram.ndim != 3 or gram.shape[1] != gram.shape[2] or gram.shape[1] == 0:
            raise DataError(f"Grouping factor {name!r}: `gram` must have shape (G, q, q); got {gram.shape}.")
        obj = object.__new__(cls)
        for key, value in (("index", None), ("Z", None), ("n_levels", int(gram.shape[0])), ("name", name)):
            object.__setattr__(obj, key, value)
        obj.__dict__["gram"] = _readonly(gram)
        obj.__dict__["_rows"] = int(n_rows)
        obj.__dict__["_intercept_only"] = False
        return obj

    @property
    def n_rows(self) -> int:
        """Number of data rows :math:`n`."""
        if self.index is None:
            return int(self.__dict__["_rows"])
        return int(self.index.shape[0])

    @property
    def n_terms(self) -> int:
        """Number of varying terms :math:`q` (columns of ``Z``)."""
        if self.Z is None:
            return int(self.gram.shape[1])
        return int(self.Z.shape[1])

    @cached_property
    def gram(self) -> np.ndarray:
        r"""Per-level Gram matrices :math:`A_j = Z_j'Z_j`, shape ``(n_levels, q, q)``."""
        Z = self.Z
        return _readonly(_segment_sum_np(self.index, self.n_levels, Z[:, :, None] * Z[:, None, :]))

    @cached_property
    def _intercept_only(self) -> bool:
        return self.n_terms == 1 and bool(np.all(self.Z == 1.0))

    def segment_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum per-row ``values`` (shape ``(n, ...)``) over the rows of each level (NumPy)."""
        return _segment_sum_np(self.index, self.n_levels, values)


@dataclass(frozen=True, eq=False)
class NestedFactors:
    r"""Two nested grouping factors, e.g. children (``inner``) within schools (``outer``).

    Parameters
    ----------
    outer : CollapsedFactor
        The outer factor (:math:`K` levels, :math:`q_1` terms, design :math:`Z_1`).
    inner : CollapsedFactor
        The inner factor (:math:`J` levels, :math:`q_2` terms, design :math:`Z_2`), on the
        same rows as ``outer``.
    parent : array_like of int, shape (J,), optional
        Outer level of every inner level. Default: read off the rows, which requires every
        inner level to have at least one row. It must agree with the rows:
        ``parent[inner.index] == outer.index``.

    Notes
    -----
    Per-level sums :math:`A_{22,j} = Z_{2j}'Z_{2j}`, :math:`A_{21,j} = Z_{2j}'Z_{1j}` and
    :math:`A_{11,k} = Z_{1k}'Z_{1k}` are computed once, on first use, and cached.
    """

    outer: CollapsedFactor
    inner: CollapsedFactor
    parent: np.ndarray = None  # type: ignore[assignment]  # derived from the two factors when omitted

    def __post_init__(self) -> None:
        outer, inner = self.outer, self.inner
        if not isinstance(outer, CollapsedFactor) or not isinstance(inner, CollapsedFactor):
            raise SpecError(
                "NestedFactors needs two CollapsedFactor objects (outer, inner); got "
                f"{type(outer).__name__} and {type(inner).__name__}."
            )
        if outer.n_rows != inner.n_rows:
            raise DataError(
                f"Nested factors {outer.name!r} and {inner.name!r} must describe the same "
                f"rows; got {outer.n_rows} and {inner.n_rows} rows."
            )
        if self.parent is None:
            parent = np.full(inner.n_levels, -1, dtype=np.int64)
            parent[inner.index] = outer.index
            empty = np.flatnonzero(parent < 0)
            if empty.size:
                raise DataError(
                    f"Cannot infer the {outer.name!r} level of {empty.size} {inner.name!r} "
                    f"level(s) without rows (first: {int(empty[0])}). Pass `parent` "
                    "explicitly or drop the unused levels."
                )
        else:
            parent = np.asarray(self.parent)
            if parent.shape != (inner.n_levels,) or parent.dtype.kind not in "iu":
                raise DataError(
                    f"`parent` must be an integer array of shape ({inner.n_levels},), one "
                    f"{outer.name!r} level per {inner.name!r} level; got shape "
                    f"{parent.shape} and dtype {parent.dtype}."
                )
            parent = np.array(parent, dtype=np.int64)
            if parent.min() < 0 or parent.max() >= outer.n_levels:
                raise DataError(
                    f"`parent` values must lie in 0..{outer.n_levels - 1} (levels of "
                    f"{outer.name!r}); got {int(parent.min())}..{int(parent.max())}."
                )
        bad = parent[inner.index] != outer.index
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{inner.name!r} is not nested in {outer.name!r}: {int(bad.sum())} row(s) "
                f"put an {inner.name!r} level in a different {outer.name!r} level than "
                f"`parent` does (first: row {row}, {inner.name!r} level "
                f"{int(inner.index[row])} in {outer.name!r} level {int(outer.index[row])}, "
                f"parent says {int(parent[inner.index[row]])}). Give inner levels that occur "
                "in several outer levels distinct codes (e.g. factorize outer:inner)."
            )
        object.__setattr__(self, "parent", _readonly(parent))

    @classmethod
    def from_statistics(
        cls, outer: CollapsedFactor, inner: CollapsedFactor, parent: np.ndarray, cross_gram: np.ndarray
    ) -> NestedFactors:
        r"""Nested factors known by their sums only (no rows; see :meth:`CollapsedFactor.from_gram`).

        Parameters
        ----------
        outer, inner
            The factors (typically from :meth:`CollapsedFactor.from_gram`).
        parent
            ``(J,)`` outer level of every inner level (checked against the rows where the
            nesting was established, :func:`hierbayes.make_design`).
        cross_gram
            ``(J, q2, q1)`` per-inner-level :math:`A_{21,j} = Z_{2j}'Z_{1j}`.
        """
        parent = np.array(parent, dtype=np.int64)
        cross_gram = np.array(cross_gram, dtype=np.float64)
        if parent.shape != (inner.n_levels,) or cross_gram.shape != (inner.n_levels, inner.n_terms, outer.n_terms):
            raise DataError(
                f"Nested factors {outer.name!r}/{inner.name!r}: expected `parent` of shape ({inner.n_levels},) "
                f"and `cross_gram` of shape {(inner.n_levels, inner.n_terms, outer.n_terms)}; got {parent.shape} "
                f"and {cross_gram.shape}."
            )
        obj = object.__new__(cls)
        object.__setattr__(obj, "outer", outer)
        object.__setattr__(obj, "inner", inner)
        object.__setattr__(obj, "parent", _readonly(parent))
        obj.__dict__["cross_gram"] = _readonly(cross_gram)
        return obj

    @property
    def n_rows(self) -> int:
        """Number of data rows :math:`n`."""
        return self.inner.n_rows

    @cached_property
    def cross_gram(self) -> np.ndarray:
        r"""Per-inner-level :math:`A_{21,j} = Z_{2j}'Z_{1j}`, shape ``(J, q2, q1)``."""
        Z1, Z2 = self.outer.Z, self.inner.Z
        return _readonly(self.inner.segment_sum(Z2[:, :, None] * Z1[:, None, :]))

    @cached_property
    def scalar_constants(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r"""For one term per factor: :math:`(a, c, Q^0, g)` of the scalar path.

        :math:`a_j = A_{22,j}` and :math:`c_j = A_{21,j}` (``(J,)``), :math:`g_j = c_j^2/a_j`
        (0 where :math:`a_j = 0`, which forces :math:`c_j = 0`) and
        :math:`Q^0_k = A_{11,k} - \sum_{j \in k} g_j \ge 0` (``(K,)``, by Cauchy-Schwarz;
        rounding below zero is clipped). See ``_nested_scalar_pt``.
        """
        if self.outer.n_terms != 1 or self.inner.n_terms != 1:
            raise SpecError("The scalar nested path needs one varying term per factor.")
        a = np.array(self.inner.gram[:, 0, 0])
        c = np.array(self.cross_gram[:, 0, 0])
        g = np.divide(c**2, a, out=np.zeros_like(a), where=a > 0)
        Q0 = self.outer.gram[:, 0, 0] - np.bincount(self.parent, weights=g, minlength=self.outer.n_levels)
        return _readonly(a), _readonly(c), _readonly(np.maximum(Q0, 0.0)), _readonly(g)

    @cached_property
    def parent_segments(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """``(order, starts, outer)``: inner levels sorted by outer level (``None`` if already sorted).

        ``np.add.reduceat(x[..., order], starts, axis=-1)`` sums per-inner-level values over the
        inner levels of each outer level that has any, the outer levels ``outer`` (see
        :meth:`sum_inner`).
        """
        parent = self.parent
        order = None if np.all(parent[1:] >= parent[:-1]) else np.argsort(parent, kind="stable")
        ordered = parent if order is None else parent[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        return (None if order is None else _readonly(order)), _readonly(starts), _readonly(ordered[starts])

    def sum_inner(self, x: np.ndarray, presorted: bool = False) -> np.ndarray:
        """Sum ``x`` (``(S, J)``, one column per inner level) over the inner levels of each outer level: ``(S, K)``.

        With ``presorted=True`` the columns of ``x`` are already in the order ``order`` of
        :attr:`parent_segments`. Each entry is summed in the same order whatever ``S`` is (no
        BLAS, no sparse product).
        """
        order, starts, outer = self.parent_segments
        xs = x if order is None or presorted else np.take(x, order, axis=1)
        sums = np.add.reduceat(xs, starts, axis=1)
        if outer.size == self.outer.n_levels:
            return sums
        out = np.zeros((x.shape[0], self.outer.n_levels))
        out[:, outer] = sums
        return out

    @cached_property
    def scalar_gram_counts(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Distinct values of :math:`a_j = A_{22,j}` (one term) and how often each occurs.

        For random intercepts :math:`a_j` is the size of inner level :math:`j`, which takes few
        distinct values, so :math:`\sum_j \log(\sigma^2 + \lambda_2 a_j)` needs few logarithms.
        """
        return _distinct_counts(self.scalar_constants[0])


@dataclass(frozen=True, eq=False)
class CrossedFactors:
    r"""Two or more grouping factors that are not nested, e.g. subjects x items.

    Parameters
    ----------
    factors : sequence of CollapsedFactor
        The factors, all on the same rows. Any structure is allowed (crossed, partially
        crossed, or even nested); the algebra of the module docstring's "Crossed factors"
        section is exact for all of them.

    Notes
    -----
    The factor with the most coefficients :math:`G_gq_g` is the "big" one (:attr:`big`),
    eliminated level by level; the others ("small", :attr:`small`) are stacked, in order, into
    :math:`P` coefficients (level-major, terms fastest). The cross-products
    :math:`K = Z_B'Z_S` (``(G_B, q_B, P)``) and :math:`Z_S'Z_S` (``(P, P)``) are computed
    once, on first use, and cached.
    """

    factors: tuple[CollapsedFactor, ...]

    def __post_init__(self) -> None:
        factors = tuple(self.factors)
        if len(factors) < 2 or not all(isinstance(f, CollapsedFactor) for f in factors):
            raise SpecError(
                "CrossedFactors needs at least two CollapsedFactor objects; got "
                f"{', '.join(type(f).__name__ for f in factors) or 'none'}."
            )
        n = factors[0].n_rows
        for f in factors[1:]:
            if f.n_rows != n:
                raise DataError(
                    f"Crossed factors {factors[0].name!r} and {f.name!r} must describe the same "
                    f"rows; got {n} and {f.n_rows} rows."
                )
        object.__setattr__(self, "factors", factors)

    @property
    def n_rows(self) -> int:
        """Number of data rows :math:`n`."""
        return self.factors[0].n_rows

    @cached_property
    def big(self) -> int:
        """Position of the factor with the most coefficients (eliminated level by level)."""
        return int(np.argmax([f.n_levels * f.n_terms for f in self.factors]))

    @cached_property
    def small(self) -> tuple[int, ...]:
        """Positions of the other factors, stacked in this order into the :math:`P` coefficients."""
        return tuple(i for i in range(len(self.factors)) if i != self.big)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Start of each small factor's coefficients (order of :attr:`small`), then :math:`P`."""
        sizes = [self.factors[i].n_levels * self.factors[i].n_terms for i in self.small]
        return tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes)]))

    @property
    def n_small(self) -> int:
        """:math:`P`, the number of coefficients of the small factors."""
        return self.offsets[-1]

    @property
    def n_coef(self) -> int:
        """:math:`Q`, the number of coefficients of all factors."""
        return sum(f.n_levels * f.n_terms for f in self.factors)

    @property
    def work(self) -> int:
        """Floating-point work of one evaluation, about :math:`G_Bq_BP^2 + P^3`."""
        fb = self.factors[self.big]
        return fb.n_levels * fb.n_terms * self.n_small**2 + self.n_small**3

    def size_problem(self, sampler: bool = True) -> str | None:
        """Why the dense Schur complement is too large (for the sampler, or at all), or ``None``."""
        fb = self.factors[self.big]
        P = self.n_small
        names = ", ".join(self.factors[i].name for i in self.small)
        if P > CROSSED_MAX_SMALL:
            return (
                f"the crossed factors {names} have {P} coefficients besides the largest factor "
                f"{fb.name!r} (more than {CROSSED_MAX_SMALL}, the limit of the dense {P} x {P} "
                "Cholesky of the crossed Woodbury form)"
            )
        if sampler and self.work > CROSSED_MAX_WORK:
            return (
                f"the crossed factors {names} ({P} coefficients besides the largest factor "
                f"{fb.name!r}, {fb.n_levels} levels) need about {self.work:.1e} operations per "
                f"log density (more than {CROSSED_MAX_WORK:.0e}), more than sampling the effects"
            )
        if fb.n_levels * fb.n_terms * P > CROSSED_MAX_CROSS:
            return (
                f"the cross-products of {fb.name!r} with {names} would need "
                f"{fb.n_levels * fb.n_terms * P} floats (more than {CROSSED_MAX_CROSS})"
            )
        return None

    def _small_columns(self, pos: int) -> tuple[np.ndarray, int]:
        """Per-row first column (in 0..P-1) of small factor ``pos`` and its number of terms."""
        k = self.small.index(pos)
        f = self.factors[pos]
        return self.offsets[k] + f.index * f.n_terms, f.n_terms

    @cached_property
    def cross_gram(self) -> np.ndarray:
        r""":math:`K_j = Z_{Bj}'Z_{S,j}` per level of the big factor, shape ``(G_B, q_B, P)``."""
        fb = self.factors[self.big]
        G, qb, P = fb.n_levels, fb.n_terms, self.n_small
        out = np.zeros(G * qb * P)
        for pos in self.small:
            col0, qs = self._small_columns(pos)
            Zs = self.factors[pos].Z
            for a in range(qb):
                for b in range(qs):
                    flat = (fb.index * qb + a) * P + col0 + b
                    out += np.bincount(flat, weights=fb.Z[:, a] * Zs[:, b], minlength=out.size)
        return _readonly(out.reshape(G, qb, P))

    @cached_property
    def small_gram(self) -> np.ndarray:
        r""":math:`Z_S'Z_S` over the stacked small factors, shape ``(P, P)``."""
        P = self.n_small
        out = np.zeros(P * P)
        for p1 in self.small:
            c1, q1 = self._small_columns(p1)
            for p2 in self.small:
                c2, q2 = self._small_columns(p2)
                Z1, Z2 = self.factors[p1].Z, self.factors[p2].Z
                for a in range(q1):
                    for b in range(q2):
                        flat = (c1 + a) * P + c2 + b
                        out += np.bincount(flat, weights=Z1[:, a] * Z2[:, b], minlength=out.size)
        return _readonly(out.reshape(P, P))


#: What :func:`marginal_loglik` and :func:`draw_random_effects` accept as structure.
Factors = CollapsedFactor | NestedFactors | CrossedFactors


@dataclass(frozen=True, eq=False)
class LevelClasses:
    r"""Levels of a one-term factor pooled by their constants (the "pooled" scalar path).

    With one varying term, the collapsed log density depends on level :math:`j` of the factor
    (the inner one of :class:`NestedFactors`) only through its constants, :math:`a_j` (nested:
    :math:`(a_j, c_j, g_j)`, see ``_nested_scalar_pt``), and through :math:`b_j = Z_j'R_jv`,
    linear in :math:`v = (1, \hat\beta - \beta)`. Levels that share their constants form a
    class :math:`d` (random intercepts: the levels of the same size), and the per-level sums
    become per-class sums of the response statistics, computed once from the data:

    .. math::

        S_d = \sum_{j \in d} (Z_j'R_j)'(Z_j'R_j) \quad (m \times m), \qquad
        P_{kd} = \sum_{j \in d,\ j \in k} Z_j'R_j \quad (m,),

    so that :math:`\sum_{j \in d} b_j^2 = v'S_dv` and
    :math:`\sum_{j \in d, j \in k} b_j = P_{kd}'v`. An evaluation then costs
    :math:`O(KDm + Dm^2)` instead of :math:`O(Jm)`: independent of the number of inner levels
    (see :func:`marginal_loglik_pooled`).

    Attributes
    ----------
    index
        ``(J,)`` class of every level.
    a, c, g
        ``(D,)`` constants of each class (single factor: ``c`` and ``g`` are zero, unused).
    counts
        ``(K, D)`` levels of each class in each outer level (single factor: ``(1, D)``).
    """

    index: np.ndarray
    a: np.ndarray
    c: np.ndarray
    g: np.ndarray
    counts: np.ndarray

    @property
    def n_classes(self) -> int:
        """Number of classes :math:`D`."""
        return int(self.a.size)


def level_classes(factors: Factors, width: int = 1, *, force: bool = False) -> LevelClasses | None:
    r"""Pool the levels of a one-term factor (or nested pair) by their constants, when that pays.

    Returns ``None`` for factors with several terms, crossed factors, and when the classes
    are too many for pooling to save work: :math:`K D + D m > J`, with :math:`m` = ``width``
    the statistics' width (:math:`p + 1`); otherwise the pooled evaluation's :math:`O(KDm + Dm^2)`
    is below the per-level :math:`O(Jm)` plus two segment sums. Random intercepts pool well: their classes are the
    distinct group sizes. ``force=True`` pools one-term factors whatever the count.
    """
    if isinstance(factors, CollapsedFactor):
        if factors.n_terms != 1:
            return None
        a = np.asarray(factors.gram[:, 0, 0])
        keys = a[:, None]
        parent, K, J = np.zeros(a.size, dtype=np.int64), 1, factors.n_levels
    elif isinstance(factors, NestedFactors):
        if factors.outer.n_terms != 1 or factors.inner.n_terms != 1:
            return None
        a, c, _, g = factors.scalar_constants
        keys = np.column_stack([a, c, g])
        parent, K, J = factors.parent, factors.outer.n_levels, factors.inner.n_levels
    else:
        return None
    distinct, index = np.unique(keys, axis=0, return_inverse=True)
    index = index.reshape(-1)
    D = distinct.shape[0]
    if not force and K * D + width * D > J:
        return None
    counts = np.bincount(parent * D + index, minlength=K * D).reshape(K, D).astype(np.float64)
    zero = np.zeros(D)
    c_d, g_d = (distinct[:, 1], distinct[:, 2]) if distinct.shape[1] == 3 else (zero, zero.copy())
    return LevelClasses(
        index=_readonly(index.astype(np.int64)),
        a=_readonly(np.ascontiguousarray(distinct[:, 0])),
        c=_readonly(np.ascontiguousarray(c_d)),
        g=_readonly(np.ascontiguousarray(g_d)),
        counts=_readonly(counts),
    )


def pooled_statistics(
    classes: LevelClasses, ZtR: np.ndarray, parent: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-class sums :math:`(S, P)` of the per-level statistics ``ZtR`` (``(J, m)``).

    ``S`` is ``(D, m, m)``; ``P`` is ``(K, D, m)`` with ``parent`` the outer level of every
    level (``None``: one outer level, ``K = 1``). See :class:`LevelClasses`.
    """
    ZtR = np.asarray(ZtR, dtype=np.float64)
    D, m = classes.n_classes, ZtR.shape[1]
    S = np.empty((D, m, m))
    for d in range(D):  # D is small (pooling is used only then); O(J m^2) in all
        rows = ZtR[classes.index == d]
        S[d] = rows.T @ rows
    K = classes.counts.shape[0]
    cell = classes.index if parent is None else np.asarray(parent) * D + classes.index
    return S, _segment_sum_np(cell, K * D, ZtR).reshape(K, D, m)


# --------------------------------------------------------------------------------------
# PyTensor log density
# --------------------------------------------------------------------------------------


def _check_factors(factors: object) -> None:
    if not isinstance(factors, CollapsedFactor | NestedFactors | CrossedFactors):
        raise SpecError(
            f"`factors` must be a CollapsedFactor or NestedFactors (or CrossedFactors); got {type(factors).__name__}."
        )


def _as_chol_pt(chol: TensorLike, q: int, label: str) -> tuple[TensorVariable, bool]:
    """Return ``(L, is_diag)``: a (q, q) factor, or a (q,) vector of standard deviations."""
    L = pt.as_tensor_variable(chol)
    if L.type.ndim == 0:
        if q != 1:
            raise SpecError(
                f"{label}: a scalar factor is only allowed for one varying term; this factor "
                f"has q={q} terms. Pass a ({q}, {q}) Cholesky factor or a ({q},) vector of sds."
            )
        return L.reshape((1,)), True
    if L.type.ndim in (1, 2):
        expected = (q,) * L.type.ndim
        if any(s is not None and s != e for s, e in zip(L.type.shape, expected, strict=True)):
            raise SpecError(
                f"{label}: expected a factor of shape {expected} for q={q} terms; got static shape {L.type.shape}."
            )
        return L, L.type.ndim == 1
    raise SpecError(
        f"{label}: the covariance factor must be a ({q}, {q}) matrix (L with L L' = Omega) "
        f"or a ({q},) vector of standard deviations (diagonal Omega); got {L.type.ndim} dims."
    )


def _segment_sum_pt(index: np.ndarray, n_levels: int, values: TensorVariable) -> TensorVariable:
    """Sum the rows of symbolic ``values`` (``(n, ...)``) by level (an indexed increment)."""
    tail = [s if s is not None else values.shape[i] for i, s in enumerate(values.type.shape) if i > 0]
    out = pt.zeros((n_levels, *tail), dtype=values.dtype)
    return pt.inc_subtensor(out[pt.constant(index)], values)


def _congruence_pt(A: TensorLike, L: TensorVariable, diag: bool) -> TensorVariable:
    """Batched :math:`L' A_j L` for ``A`` of shape ``(G, q, q)``."""
    if diag:
        return A * L[:, None] * L[None, :]
    AL = pt.tensordot(A, L, axes=[[2], [0]])  # [j, a, k] = sum_b A[j, a, b] L[b, k]
    return pt.tensordot(AL, L, axes=[[1], [0]]).transpose(0, 2, 1)


def _left_t_pt(L: TensorVariable, B: TensorLike, diag: bool) -> TensorVariable:
    """Batched :math:`L' B_j` for ``B`` of shape ``(G, q, m)``."""
    if diag:
        return L[:, None] * B
    return pt.tensordot(B, L, axes=[[1], [0]]).transpose(0, 2, 1)


def _vec_lt_pt(b: TensorVariable, L: TensorVariable, diag: bool) -> TensorVariable:
    """Rows :math:`L' b_j` for ``b`` of shape ``(G, q)``."""
    return b * L if diag else pt.dot(b, L)


def _add_sigma2_eye(M: TensorVariable, sigma2: TensorVariable, q: int) -> TensorVariable:
    return M + sigma2 * pt.constant(np.eye(q))


def _batched_chol_solve_pt(M: TensorVariable, rhs: TensorVariable, q: int) -> tuple[Any, TensorVariable]:
    r"""For SPD ``M`` (``(G, q, q)``) and ``rhs`` (``(G, q, m)``), with :math:`M_j = C_jC_j'`.

    Returns :math:`\log|M_j|` (``(G,)``) and :math:`W_j = C_j^{-1}\,\mathrm{rhs}_j`
    (``(G, q, m)``). The factorisation and the forward substitution are written out as
    element-wise operations on length-:math:`G` vectors (:math:`O(q^3)` graph nodes), which
    every backend fuses into a single loop over groups and differentiates cheaply. This is
    meant for the small :math:`q` of random-effect blocks; PyTensor's batched ``Cholesky``
    is avoided on purpose, as its gradient is not compiled by the Numba backend.
    """
    C: dict[tuple[int, int], TensorVariable] = {}
    logdet: TensorVariable | float = 0.0
    for j in range(q):
        d = M[:, j, j]
        for k in range(j):
            d = d - C[j, k] ** 2
        C[j, j] = pt.sqrt(d)
        logdet = logdet + pt.log(d)
        for i in range(j + 1, q):
            s = M[:, i, j]
            for k in range(j):
                s = s - C[i, k] * C[j, k]
            C[i, j] = s / C[j, j]
    rows: list[TensorVariable] = []
    for i in range(q):
        s = rhs[:, i, :]
        for k in range(i):
            s = s - C[i, k][:, None] * rows[k]
        rows.append(s / C[i, i][:, None])
    return logdet, pt.stack(rows, axis=1)


def _weighted_rows_pt(factor: CollapsedFactor, r: TensorVariable) -> TensorVariable:
    """Per-row products :math:`Z_i r_i`, shape ``(n, q)``."""
    if factor._intercept_only:
        return r[:, None]
    return pt.constant(factor.Z) * r[:, None]


def marginal_loglik(
    r: TensorLike,
    sigma: TensorLike,
    factors: Factors,
    chol: TensorLike | tuple[TensorLike, ...],
) -> TensorVariable:
    r"""Exact log density of the residual :math:`r = y - X\beta` under :math:`N(0, V)`.

    .. math::

        \log p(r) = -\tfrac12\big(n \log 2\pi + \log|V| + r'V^{-1}r\big), \qquad
        V = \sigma^2 I + \sum_g Z_g (I \otimes L_gL_g') Z_g',

    evaluated by Woodbury's identity and the matrix determinant lemma from per-level
    sums (see the module docstring), in :math:`O(nq + Gq^3)`. The result is a PyTensor
    scalar built from differentiable operations, so it can be used in a PyMC model
    (``pm.Potential``) and sampled with NUTS; gradients flow to ``r`` (hence
    :math:`\beta`), ``sigma`` and the factors.

    Parameters
    ----------
    r : TensorLike, shape (n,)
        Residual vector :math:`y - X\beta`.
    sigma : TensorLike, scalar
        Residual standard deviation :math:`\sigma > 0`.
    factors : CollapsedFactor, NestedFactors or CrossedFactors
        The random-effect structure (numeric data only).
    chol : TensorLike or tuple
        Covariance factor(s) :math:`L` with :math:`LL' = \Omega`: a ``(q, q)`` matrix
        (normally the lower Cholesky factor; the upper triangle is *not* ignored), a
        ``(q,)`` vector of standard deviations for a diagonal :math:`\Omega`, or a scalar
        standard deviation when :math:`q = 1`. For :class:`NestedFactors` pass
        ``(chol_outer, chol_inner)``; for :class:`CrossedFactors` one factor per entry of
        ``factors.factors``, in that order.

    Returns
    -------
    TensorVariable
        Scalar log density.

    Examples
    --------
    >>> f = CollapsedFactor(index=np.array([0, 0, 1]))
    >>> logp = marginal_loglik(pt.as_tensor(np.array([0.1, -0.2, 0.3])), 1.0, f, 0.5)
    >>> float(logp.eval())  # doctest: +ELLIPSIS
    -3.1312...
    """
    _check_factors(factors)
    r = pt.as_tensor_variable(r)
    if r.type.ndim != 1:
        raise DataError(f"`r` must be a vector of residuals; got {r.type.ndim} dims.")
    n = factors.n_rows
    if r.type.shape[0] is not None and r.type.shape[0] != n:
        raise DataError(f"`r` has {r.type.shape[0]} entries but the factors describe {n} rows.")
    rtr = pt.sum(r**2)
    if isinstance(factors, CollapsedFactor):
        sums: TensorLike | tuple[TensorLike, ...] = _segment_sum_pt(
            factors.index, factors.n_levels, _weighted_rows_pt(factors, r)
        )
    elif isinstance(factors, CrossedFactors):
        sums = tuple(_segment_sum_pt(f.index, f.n_levels, _weighted_rows_pt(f, r)) for f in factors.factors)
    else:
        outer, inner = factors.outer, factors.inner
        sums = (
            _segment_sum_pt(outer.index, outer.n_levels, _weighted_rows_pt(outer, r)),
            _segment_sum_pt(inner.index, inner.n_levels, _weighted_rows_pt(inner, r)),
        )
    return marginal_loglik_from_sums(rtr, sums, sigma, factors, chol)


def marginal_loglik_from_sums(
    rtr: TensorLike,
    sums: TensorLike | tuple[TensorLike, ...],
    sigma: TensorLike,
    factors: Factors,
    chol: TensorLike | tuple[TensorLike, ...],
) -> TensorVariable:
    r""":func:`marginal_loglik` from the residual's sufficient statistics.

    The log density depends on :math:`r` only through :math:`r'r` and the per-level sums
    :math:`Z_j'r_j`. When :math:`r = y - X\beta` these are linear and quadratic in
    :math:`\beta` and can be formed from sums precomputed once from the data, so that each
    evaluation costs :math:`O(G q p)` instead of :math:`O(n)`.

    Parameters
    ----------
    rtr : TensorLike, scalar
        :math:`r'r`.
    sums : TensorLike or tuple of two
        :math:`b_j = Z_j'r_j`, shape ``(G, q)``, for one factor; ``(t, b)`` with
        :math:`t_k = Z_{1k}'r_k` (``(K, q1)``) and :math:`b_j = Z_{2j}'r_j` (``(J, q2)``)
        for :class:`NestedFactors`; one ``(G_g, q_g)`` array per factor for
        :class:`CrossedFactors`.
    sigma, factors, chol
        As in :func:`marginal_loglik`.

    Returns
    -------
    TensorVariable
        Scalar log density, identical to ``marginal_loglik(r, sigma, factors, chol)``.
    """
    _check_factors(factors)
    sigma = pt.as_tensor_variable(sigma)
    rtr = pt.as_tensor_variable(rtr)
    if sigma.type.ndim != 0:
        raise SpecError(f"`sigma` must be a scalar; got {sigma.type.ndim} dims.")
    n = factors.n_rows
    sigma2 = sigma**2

    if isinstance(factors, CrossedFactors):
        return _crossed_loglik_pt(rtr, sums, sigma, factors, chol)
    if isinstance(factors, CollapsedFactor):
        f = factors
        q, G = f.n_terms, f.n_levels
        L, diag = _as_chol_pt(chol, q, f"factor of {f.name!r}")  # type: ignore[arg-type]
        b = pt.as_tensor_variable(sums)  # type: ignore[arg-type]  # (G, q): Z_j' r_j
        if q == 1:  # scalar blocks: m_j = sigma^2 + lambda a_j, w_j^2 = lambda b_j^2 / m_j
            lam = _scalar_pt(L) ** 2
            a_distinct, a_count = _distinct_counts(f.gram[:, 0, 0])
            quad = (rtr - lam * pt.sum(b[:, 0] ** 2 / (sigma2 + lam * pt.constant(f.gram[:, 0, 0])))) / sigma2
            logdet_M = pt.dot(pt.constant(a_count), pt.log(sigma2 + lam * pt.constant(a_distinct)))
        else:
            M = _add_sigma2_eye(_congruence_pt(pt.constant(f.gram), L, diag), sigma2, q)
            logdet_M, W = _batched_chol_solve_pt(M, _vec_lt_pt(b, L, diag)[:, :, None], q)
            quad = (rtr - pt.sum(W**2)) / sigma2
        logdet_V = pt.sum(logdet_M) + 2.0 * (n - G * q) * pt.log(sigma)
    else:
        outer, inner = factors.outer, factors.inner
        q1, q2 = outer.n_terms, inner.n_terms
        if not isinstance(chol, tuple | list) or len(chol) != 2:
            raise SpecError(f"For NestedFactors pass `chol=(chol_outer, chol_inner)`; got {type(chol).__name__}.")
        if not isinstance(sums, tuple | list) or len(sums) != 2:
            raise SpecError(f"For NestedFactors pass `sums=(t_outer, b_inner)`; got {type(sums).__name__}.")
        L1, diag1 = _as_chol_pt(chol[0], q1, f"factor of {outer.name!r}")
        L2, diag2 = _as_chol_pt(chol[1], q2, f"factor of {inner.name!r}")
        t1 = pt.as_tensor_variable(sums[0])  # (K, q1)
        b2 = pt.as_tensor_variable(sums[1])  # (J, q2)
        if q1 == 1 and q2 == 1:
            logdet_V, quad = _nested_scalar_pt(rtr, t1[:, 0], b2[:, 0], sigma, factors, L1, L2)
        else:
            logdet_V, quad = _nested_general_pt(rtr, t1, b2, sigma, factors, (L1, diag1), (L2, diag2))
    return -0.5 * (n * _LOG_2PI + logdet_V + quad)


def _scalar_pt(L: TensorVariable) -> TensorVariable:
    """The single entry of a ``(1,)`` or ``(1, 1)`` covariance factor."""
    return L.reshape(())


def _nested_scalar_pt(
    rtr: TensorVariable,
    t1: TensorVariable,
    b2: TensorVariable,
    sigma: TensorVariable,
    factors: NestedFactors,
    L1: TensorVariable,
    L2: TensorVariable,
) -> tuple[TensorVariable, TensorVariable]:
    r""":math:`(\log|V|, r'V^{-1}r)` for nested factors with one term each (:math:`q_1 = q_2 = 1`).

    Every block of the module docstring's "Two nested factors" is a scalar. With
    :math:`\lambda_g = L_g^2`, per inner level :math:`a_j = A_{22,j}`, :math:`c_j = A_{21,j}`,
    :math:`m_j = \sigma^2 + \lambda_2 a_j` and :math:`h_j = \lambda_2 / m_j`:

    .. math::

        w_j^2 = h_j b_j^2, \qquad t_k = t_{1k} - \sum_{j \in k} h_j c_j b_j, \qquad
        Q_k = A_{11,k} - \sum_{j\in k} h_j c_j^2
            = Q^0_k + \sigma^2 \sum_{j \in k} \frac{c_j^2 / a_j}{m_j},

    with the constant :math:`Q^0_k = A_{11,k} - \sum_{j \in k} c_j^2/a_j \ge 0` (zero for
    random intercepts; terms with :math:`a_j = 0` have :math:`c_j = 0` and are dropped). The
    second form of :math:`Q_k` avoids the cancellation of the first when
    :math:`\lambda_2 a_j \gg \sigma^2`. Then :math:`M_{1k} = \sigma^2 + \lambda_1 Q_k` and

    .. math::

        \log|V| = 2(n - J - K)\log\sigma + \sum_j \log m_j + \sum_k \log M_{1k}, \qquad
        r'V^{-1}r = \sigma^{-2}\Big(r'r - \sum_j h_j b_j^2 - \lambda_1\sum_k t_k^2 / M_{1k}\Big).

    Only element-wise operations on length-:math:`J` and :math:`K` vectors and two segment sums
    (indexed increments) per evaluation: no batched factorisation, no 3-d intermediates. The
    :math:`J` logarithms :math:`\log m_j` are taken once per distinct value of :math:`a_j`
    (:attr:`NestedFactors.scalar_gram_counts`; for intercepts the distinct group sizes).
    """
    outer, inner, parent = factors.outer, factors.inner, factors.parent
    n, J, K = factors.n_rows, inner.n_levels, outer.n_levels
    a, c, Q0, g = factors.scalar_constants
    a_distinct, a_count = factors.scalar_gram_counts
    sigma2 = sigma**2
    lam1, lam2 = _scalar_pt(L1) ** 2, _scalar_pt(L2) ** 2
    m2 = sigma2 + lam2 * pt.constant(a)
    h = lam2 / m2
    t = t1 - _segment_sum_pt(parent, K, h * pt.constant(c) * b2)
    Q = pt.constant(Q0) + sigma2 * _segment_sum_pt(parent, K, pt.constant(g) / m2)
    m1 = sigma2 + lam1 * Q
    quad = (rtr - pt.sum(h * b2**2) - lam1 * pt.sum(t**2 / m1)) / sigma2
    # sum_j log m_j over the distinct values of a_j (few for intercepts: the group sizes)
    logdet_2 = pt.dot(pt.constant(a_count), pt.log(sigma2 + lam2 * pt.constant(a_distinct)))
    logdet_V = logdet_2 + pt.sum(pt.log(m1)) + 2.0 * (n - J - K) * pt.log(sigma)
    return logdet_V, quad


def marginal_loglik_pooled(
    v: TensorLike,
    RtR: TensorLike,
    outer_sums: TensorLike | None,
    pooled: tuple[TensorLike, TensorLike | None],
    sigma: TensorLike,
    factors: CollapsedFactor | NestedFactors,
    classes: LevelClasses,
    chol: TensorLike | tuple[TensorLike, TensorLike],
) -> TensorVariable:
    r""":func:`marginal_loglik_from_sums` for one-term factors, from per-class statistics.

    With :math:`r = Rv` (:math:`R` the residual at the reference :math:`\hat\beta` and the
    fixed-effect columns, :math:`v = (1, \hat\beta - \beta)`), :math:`r'r = v'R'Rv`, and the
    per-level sums enter only through the class sums of :class:`LevelClasses`. Single factor,
    :math:`m_d = \sigma^2 + \lambda a_d`:

    .. math::

        \log|V| = 2(n - G)\log\sigma + \sum_d n_d \log m_d, \qquad
        r'V^{-1}r = \sigma^{-2}\Big(r'r - \lambda \sum_d v'S_dv / m_d\Big).

    Nested factors (``_nested_scalar_pt`` per class, :math:`m_{2d} = \sigma^2 + \lambda_2 a_d`,
    :math:`h_d = \lambda_2/m_{2d}`, :math:`N_{kd}` = ``classes.counts``):

    .. math::

        \sum_j h_jb_j^2 = \sum_d h_d v'S_dv, \qquad
        t_k = t_{1k} - \sum_d h_dc_d P_{kd}'v, \qquad
        Q_k = Q^0_k + \sigma^2 \sum_d N_{kd}\, g_d / m_{2d}.

    Identical to :func:`marginal_loglik_from_sums` up to rounding, at :math:`O(KDm + Dm^2)`
    per evaluation instead of :math:`O(Jm)`.

    Parameters
    ----------
    v : TensorLike, shape (m,)
        :math:`(1, \hat\beta - \beta)` on the statistics' scale.
    RtR : TensorLike, shape (m, m)
        :math:`R'R`.
    outer_sums : TensorLike, shape (K, m), or None
        Nested factors: :math:`Z_{1k}'R_k` (so :math:`t_{1k} = ` ``outer_sums[k] @ v``); ``None``
        for one factor.
    pooled : tuple
        ``(S, P)`` of :func:`pooled_statistics` for the (inner) factor (``P`` is not used, and
        may be ``None``, for one factor).
    sigma, chol
        As in :func:`marginal_loglik` (``chol`` a scalar or ``(1,)``/``(1, 1)`` factor; a pair
        for nested factors).
    factors, classes
        The structure and its :func:`level_classes`.
    """
    _check_factors(factors)
    v = pt.as_tensor_variable(v)
    S = pt.as_tensor_variable(pooled[0])
    sigma = pt.as_tensor_variable(sigma)
    sigma2 = sigma**2
    rtr = pt.dot(v, pt.dot(pt.as_tensor_variable(RtR), v))
    vSv = pt.dot(pt.dot(S, v), v)  # (D,): sum over the levels of class d of b_j^2
    a, n_d = pt.constant(classes.a), pt.constant(classes.counts.sum(axis=0))
    n = factors.n_rows
    if isinstance(factors, CollapsedFactor):
        if factors.n_terms != 1:
            raise SpecError("The pooled path needs one varying term.")
        if isinstance(chol, tuple):
            raise SpecError(f"For one factor pass one covariance factor; got {len(chol)}.")
        lam = _scalar_pt(_as_chol_pt(chol, 1, f"factor of {factors.name!r}")[0]) ** 2
        m = sigma2 + lam * a
        quad = (rtr - lam * pt.sum(vSv / m)) / sigma2
        logdet_V = pt.dot(n_d, pt.log(m)) + 2.0 * (n - factors.n_levels) * pt.log(sigma)
        return -0.5 * (n * _LOG_2PI + logdet_V + quad)
    if not isinstance(chol, tuple | list) or len(chol) != 2 or outer_sums is None or pooled[1] is None:
        raise SpecError("For NestedFactors pass `chol=(chol_outer, chol_inner)`, the outer sums and `P`.")
    P = pt.as_tensor_variable(pooled[1])
    J, K = factors.inner.n_levels, factors.outer.n_levels
    lam1 = _scalar_pt(_as_chol_pt(chol[0], 1, f"factor of {factors.outer.name!r}")[0]) ** 2
    lam2 = _scalar_pt(_as_chol_pt(chol[1], 1, f"factor of {factors.inner.name!r}")[0]) ** 2
    Q0 = factors.scalar_constants[2]
    m2 = sigma2 + lam2 * a
    h = lam2 / m2
    t1 = pt.dot(pt.as_tensor_variable(outer_sums), v)  # (K,)
    t = t1 - pt.dot(pt.dot(P, v), h * pt.constant(classes.c))
    Q = pt.constant(Q0) + sigma2 * pt.dot(pt.constant(classes.counts), pt.constant(classes.g) / m2)
    m1 = sigma2 + lam1 * Q
    quad = (rtr - pt.dot(h, vSv) - lam1 * pt.sum(t**2 / m1)) / sigma2
    logdet_V = pt.dot(n_d, pt.log(m2)) + pt.sum(pt.log(m1)) + 2.0 * (n - J - K) * pt.log(sigma)
    return -0.5 * (n * _LOG_2PI + logdet_V + quad)


def _nested_general_pt(
    rtr: TensorVariable,
    t1: TensorVariable,
    b2: TensorVariable,
    sigma: TensorVariable,
    factors: NestedFactors,
    chol1: tuple[TensorVariable, bool],
    chol2: tuple[TensorVariable, bool],
) -> tuple[TensorVariable, TensorVariable]:
    r""":math:`(\log|V|, r'V^{-1}r)` for nested factors with any numbers of terms (module docstring)."""
    outer, inner = factors.outer, factors.inner
    q1, K = outer.n_terms, outer.n_levels
    q2, J = inner.n_terms, inner.n_levels
    n, sigma2 = factors.n_rows, sigma**2
    (L1, diag1), (L2, diag2) = chol1, chol2
    # inner level: Woodbury per inner group
    M2 = _add_sigma2_eye(_congruence_pt(pt.constant(inner.gram), L2, diag2), sigma2, q2)
    rhs = pt.concatenate(
        [
            _vec_lt_pt(b2, L2, diag2)[:, :, None],
            _left_t_pt(L2, pt.constant(factors.cross_gram), diag2),
        ],
        axis=2,
    )  # (J, q2, 1 + q1)
    logdet_M2, W = _batched_chol_solve_pt(M2, rhs, q2)
    w, B = W[:, :, 0], W[:, :, 1:]  # (J, q2), (J, q2, q1)
    # outer level: Woodbury per outer group on the reduced quantities
    Btw = pt.sum(B * w[:, :, None], axis=1)  # (J, q1)
    BtB = pt.sum(B[:, :, :, None] * B[:, :, None, :], axis=1)  # (J, q1, q1)
    t = t1 - _segment_sum_pt(factors.parent, K, Btw)
    Q = pt.constant(outer.gram) - _segment_sum_pt(factors.parent, K, BtB)
    M1 = _add_sigma2_eye(_congruence_pt(Q, L1, diag1), sigma2, q1)
    logdet_M1, E = _batched_chol_solve_pt(M1, _vec_lt_pt(t, L1, diag1)[:, :, None], q1)
    quad = (rtr - pt.sum(w**2) - pt.sum(E**2)) / sigma2
    logdet_V = pt.sum(logdet_M2) + pt.sum(logdet_M1) + 2.0 * (n - J * q2 - K * q1) * pt.log(sigma)
    return logdet_V, quad


def _apply_small_lt_pt(X: TensorVariable, cf: CrossedFactors, Ls: list[tuple[TensorVariable, bool]]) -> TensorVariable:
    r""":math:`L_S'X` for ``X`` of shape ``(P, m)``, :math:`L_S = \mathrm{blockdiag}(I \otimes L_g)` (small factors)."""
    parts = []
    for k, pos in enumerate(cf.small):
        f = cf.factors[pos]
        L, diag = Ls[pos]
        block = X[cf.offsets[k] : cf.offsets[k + 1]].reshape((f.n_levels, f.n_terms, -1))
        parts.append(_left_t_pt(L, block, diag).reshape((f.n_levels * f.n_terms, -1)))
    return parts[0] if len(parts) == 1 else pt.concatenate(parts, axis=0)


def _crossed_loglik_pt(
    rtr: TensorVariable,
    sums: TensorLike | tuple[TensorLike, ...],
    sigma: TensorVariable,
    cf: CrossedFactors,
    chol: TensorLike | tuple[TensorLike, ...],
) -> TensorVariable:
    """Log density for :class:`CrossedFactors` (module docstring, "Crossed factors")."""
    k = len(cf.factors)
    if not isinstance(chol, tuple | list) or len(chol) != k:
        raise SpecError(f"For CrossedFactors pass one covariance factor per factor ({k}); got {type(chol).__name__}.")
    if not isinstance(sums, tuple | list) or len(sums) != k:
        raise SpecError(
            f"For CrossedFactors pass one (G, q) array of sums per factor ({k}); got {type(sums).__name__}."
        )
    n, sigma2, P = cf.n_rows, sigma**2, cf.n_small
    Ls = [_as_chol_pt(c, f.n_terms, f"factor of {f.name!r}") for c, f in zip(chol, cf.factors, strict=True)]
    fb = cf.factors[cf.big]
    LB, diagB = Ls[cf.big]
    qB, GB = fb.n_terms, fb.n_levels
    bB = pt.as_tensor_variable(sums[cf.big])
    MB = _add_sigma2_eye(_congruence_pt(pt.constant(fb.gram), LB, diagB), sigma2, qB)
    rhs = pt.concatenate(
        [_vec_lt_pt(bB, LB, diagB)[:, :, None], _left_t_pt(LB, pt.constant(cf.cross_gram), diagB)], axis=2
    )  # (G_B, q_B, 1 + P)
    logdet_MB, W = _batched_chol_solve_pt(MB, rhs, qB)
    w = W[:, :, 0].reshape((GB * qB,))
    D = W[:, :, 1:].reshape((GB * qB, P))
    bS = pt.concatenate([pt.as_tensor_variable(sums[i]).reshape((-1,)) for i in cf.small])
    t = _apply_small_lt_pt((bS - pt.dot(w, D))[:, None], cf, Ls)  # (P, 1)
    mid = pt.constant(cf.small_gram) - pt.dot(D.T, D)
    S = _apply_small_lt_pt(_apply_small_lt_pt(mid, cf, Ls).T, cf, Ls) + sigma2 * pt.constant(np.eye(P))
    CS = pt.linalg.cholesky(S, lower=True)
    e = pt.linalg.solve_triangular(CS, t, lower=True)
    quad = (rtr - pt.sum(w**2) - pt.sum(e**2)) / sigma2
    logdet_V = pt.sum(logdet_MB) + 2.0 * pt.sum(pt.log(pt.diagonal(CS))) + 2.0 * (n - cf.n_coef) * pt.log(sigma)
    return -0.5 * (n * _LOG_2PI + logdet_V + quad)


# --------------------------------------------------------------------------------------
# NumPy conditional draws
# --------------------------------------------------------------------------------------


def _as_chol_np(chol: np.ndarray | float, q: int, label: str) -> np.ndarray:
    L = np.asarray(chol, dtype=np.float64)
    if L.ndim == 0 and q == 1:
        return L.reshape(1, 1)
    if L.shape == (q,):
        return np.diag(L)
    if L.shape == (q, q):
        return L
    raise SpecError(
        f"{label}: expected a ({q}, {q}) factor, a ({q},) vector of sds"
        + (" or a scalar sd" if q == 1 else "")
        + f"; got shape {L.shape}."
    )


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched solve of ``a[j] x = b[j]`` for vectors ``b`` of shape ``(G, q)``."""
    return np.linalg.solve(a, b[..., None])[..., 0]


def _draw_level(rng: np.random.Generator, C: np.ndarray, c: np.ndarray, L: np.ndarray, sigma: float) -> np.ndarray:
    r"""Draw :math:`u_j = L v_j`, :math:`v_j = C_j^{-T}(C_j^{-1}c_j + \sigma z_j)`."""
    z = rng.standard_normal(c.shape)
    v = _solve(np.swapaxes(C, 1, 2), _solve(C, c) + sigma * z)
    return v @ L.T


def draw_random_effects(
    rng: np.random.Generator,
    r: np.ndarray,
    sigma: float,
    factors: Factors,
    chol: np.ndarray | float | tuple[np.ndarray | float, ...],
) -> np.ndarray | tuple[np.ndarray, ...]:
    r"""Draw the random effects exactly from :math:`p(u \mid y, \beta, \theta)` (NumPy).

    For one factor, independently over levels,

    .. math::

        u_j = L v_j, \qquad v_j \mid r \sim N\big(M_j^{-1}L'Z_j'r_j,\ \sigma^2 M_j^{-1}\big),
        \qquad M_j = \sigma^2 I + L'Z_j'Z_jL,

    i.e. :math:`\mathrm{Cov}(u_j \mid r) = (Z_j'Z_j/\sigma^2 + \Omega^{-1})^{-1}` when
    :math:`\Omega` is invertible. For :class:`NestedFactors` the outer effects are drawn
    from their conditional with the inner effects integrated out, then the inner effects
    given the outer ones (see the module docstring). All work is batched over levels.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    r : ndarray, shape (n,)
        Residual :math:`y - X\beta` of one posterior draw.
    sigma : float
        Residual standard deviation of that draw.
    factors : CollapsedFactor, NestedFactors or CrossedFactors
        The random-effect structure.
    chol : ndarray or float, or tuple
        Covariance factor(s) of that draw, in the forms accepted by
        :func:`marginal_loglik`; ``(chol_outer, chol_inner)`` for :class:`NestedFactors`,
        one per factor for :class:`CrossedFactors`.

    Returns
    -------
    ndarray or tuple of ndarray
        ``u`` of shape ``(G, q)`` for one factor; ``(u_outer, u_inner)`` of shapes
        ``(K, q1)`` and ``(J, q2)`` for nested factors; one ``(G_g, q_g)`` array per factor
        for crossed factors.
    """
    _check_factors(factors)
    r = np.asarray(r, dtype=np.float64)
    sigma = float(sigma)
    if r.shape != (factors.n_rows,):
        raise DataError(f"`r` must have shape ({factors.n_rows},); got {r.shape}.")
    if not sigma > 0:
        raise SpecError(f"`sigma` must be positive; got {sigma}.")
    s2 = sigma**2

    if isinstance(factors, CrossedFactors):
        cf = factors
        if not isinstance(chol, tuple | list) or len(chol) != len(cf.factors):
            raise SpecError(
                f"For CrossedFactors pass one covariance factor per factor ({len(cf.factors)}); "
                f"got {type(chol).__name__}."
            )
        Ls = [_as_chol_np(c, f.n_terms, f"factor of {f.name!r}") for c, f in zip(chol, cf.factors, strict=True)]
        bs = [f.segment_sum(f.Z * r[:, None]) for f in cf.factors]
        return tuple(crossed_conditional_np(cf, bs, Ls, sigma, rng))
    if isinstance(factors, CollapsedFactor):
        f = factors
        q = f.n_terms
        L = _as_chol_np(chol, q, f"factor of {f.name!r}")  # type: ignore[arg-type]
        b = f.segment_sum(f.Z * r[:, None])
        C = np.linalg.cholesky(s2 * np.eye(q) + L.T @ f.gram @ L)
        return _draw_level(rng, C, b @ L, L, sigma)

    outer, inner, parent = factors.outer, factors.inner, factors.parent
    q1, q2 = outer.n_terms, inner.n_terms
    if not isinstance(chol, tuple | list) or len(chol) != 2:
        raise SpecError(f"For NestedFactors pass `chol=(chol_outer, chol_inner)`; got {type(chol).__name__}.")
    L1 = _as_chol_np(chol[0], q1, f"factor of {outer.name!r}")
    L2 = _as_chol_np(chol[1], q2, f"factor of {inner.name!r}")
    A21 = factors.cross_gram  # (J, q2, q1)
    b2 = inner.segment_sum(inner.Z * r[:, None])  # (J, q2)
    t1 = outer.segment_sum(outer.Z * r[:, None])  # (K, q1)
    C2 = np.linalg.cholesky(s2 * np.eye(q2) + L2.T @ inner.gram @ L2)
    w = _solve(C2, b2 @ L2)  # (J, q2)
    B = np.linalg.solve(C2, L2.T @ A21)  # (J, q2, q1)
    t = t1 - _segment_sum_np(parent, outer.n_levels, np.einsum("jab,ja->jb", B, w))
    Q = outer.gram - _segment_sum_np(parent, outer.n_levels, np.einsum("jab,jac->jbc", B, B))
    C1 = np.linalg.cholesky(s2 * np.eye(q1) + L1.T @ Q @ L1)
    u1 = _draw_level(rng, C1, t @ L1, L1, sigma)
    # inner given outer: Z_2j'(r_j - Z_1j u_1,parent(j)) = b2_j - A21_j u_1,parent(j)
    b2_cond = b2 - np.einsum("jab,jb->ja", A21, u1[parent])
    u2 = _draw_level(rng, C2, b2_cond @ L2, L2, sigma)
    return u1, u2


def apply_small_lt_np(X: np.ndarray, cf: CrossedFactors, Ls: list[np.ndarray]) -> np.ndarray:
    r""":math:`L_S'X` for ``X`` of shape ``(..., P, m)`` and factors ``Ls`` (``(..., q, q)``, one per factor)."""
    parts = []
    for k, pos in enumerate(cf.small):
        f = cf.factors[pos]
        block = X[..., cf.offsets[k] : cf.offsets[k + 1], :]
        block = block.reshape(*block.shape[:-2], f.n_levels, f.n_terms, block.shape[-1])
        LT = np.swapaxes(Ls[pos], -1, -2)[..., None, :, :]
        parts.append((LT @ block).reshape(*X.shape[:-2], f.n_levels * f.n_terms, X.shape[-1]))
    return np.concatenate(parts, axis=-2)


def crossed_conditional_np(
    cf: CrossedFactors,
    sums: list[np.ndarray],
    Ls: list[np.ndarray],
    sigma: float | np.ndarray,
    rng: np.random.Generator | list[np.random.Generator] | None,
) -> list[np.ndarray]:
    r"""Exact draws (or, without ``rng``, means) of crossed random effects, batched.

    Parameters
    ----------
    cf
        The crossed structure.
    sums
        Per factor :math:`b_g = Z_g'r`, shape ``(..., G_g, q_g)`` (a leading batch of
        parameter sets is allowed and must match ``Ls`` and ``sigma``).
    Ls
        Per factor the covariance factor, ``(..., q_g, q_g)``.
    sigma
        Residual sd(s), scalar or ``(...,)``.
    rng
        A generator (or one per factor: the first draws the small factors, the one of the big
        factor its levels), or ``None`` for the conditional means.

    Returns
    -------
    list of ndarray
        ``u_g`` of shape ``(..., G_g, q_g)`` per factor, in the order of ``cf.factors``.

    Notes
    -----
    With :math:`v = L^{-1}u`, the small factors are drawn first,
    :math:`v_S \mid r \sim N(S^{-1}t, \sigma^2S^{-1})` (their conditional with the big
    factor integrated out), then the big factor's levels given them from the single-factor
    conditional with :math:`b_{Bj} - K_ju_S` (module docstring).
    """
    rngs = rng if isinstance(rng, list) else [rng] * len(cf.factors)
    sigma = np.asarray(sigma, dtype=np.float64)
    batch = sigma.shape
    s2 = (sigma**2)[..., None, None]
    fb = cf.factors[cf.big]
    GB, qB, P = fb.n_levels, fb.n_terms, cf.n_small
    LB = Ls[cf.big]
    LBt = np.swapaxes(LB, -1, -2)[..., None, :, :]  # (..., 1, q, q)
    MB = s2[..., None] * np.eye(qB) + LBt @ fb.gram @ LB[..., None, :, :]
    CB = np.linalg.cholesky(MB)  # (..., G_B, q_B, q_B)
    bB = sums[cf.big][..., None]  # (..., G_B, q_B, 1)
    rhs = np.concatenate([LBt @ bB, LBt @ cf.cross_gram], axis=-1)
    W = np.linalg.solve(CB, rhs)
    w = W[..., :1].reshape(*batch, GB * qB, 1)
    D = W[..., 1:].reshape(*batch, GB * qB, P)
    Dt = np.swapaxes(D, -1, -2)
    bS = np.concatenate([sums[i].reshape(*batch, -1) for i in cf.small], axis=-1)[..., None]
    t = apply_small_lt_np(bS - Dt @ w, cf, Ls)  # (..., P, 1)
    mid = cf.small_gram - Dt @ D
    S = np.swapaxes(apply_small_lt_np(np.swapaxes(apply_small_lt_np(mid, cf, Ls), -1, -2), cf, Ls), -1, -2)
    S = S + s2 * np.eye(P)
    CS = np.linalg.cholesky(S)
    e = np.linalg.solve(CS, t)
    r_small = rngs[cf.small[0]]
    if r_small is not None:
        e = e + sigma[..., None, None] * r_small.standard_normal(e.shape)
    vS = np.linalg.solve(np.swapaxes(CS, -1, -2), e)[..., 0]  # (..., P)
    out: list[np.ndarray] = [np.empty(0)] * len(cf.factors)
    uS_flat = []
    for k, pos in enumerate(cf.small):
        f = cf.factors[pos]
        v = vS[..., cf.offsets[k] : cf.offsets[k + 1]].reshape(*batch, f.n_levels, f.n_terms, 1)
        u = (Ls[pos][..., None, :, :] @ v)[..., 0]
        out[pos] = u
        uS_flat.append(u.reshape(*batch, -1))
    uS = np.concatenate(uS_flat, axis=-1)  # (..., P)
    bB_cond = bB - cf.cross_gram @ uS[..., None, :, None]  # (..., G_B, q_B, 1)
    cB = np.linalg.solve(CB, LBt @ bB_cond)
    r_big = rngs[cf.big]
    if r_big is not None:
        cB = cB + sigma[..., None, None, None] * r_big.standard_normal(cB.shape)
    vB = np.linalg.solve(np.swapaxes(CB, -1, -2), cB)
    out[cf.big] = (LB[..., None, :, :] @ vB)[..., 0]
    return out
