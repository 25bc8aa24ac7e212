r"""Sufficient statistics of a Gaussian multilevel design: everything the collapsed path reads.

Notation. For rows :math:`i = 1..n` let :math:`D = [y, X, o]` be the raw columns (response,
fixed-effect model matrix, and the offset when there is one; :math:`m` columns), :math:`s` a
constant shift per column (the column means, or any close guess) and

.. math::

    T = [\,1,\ D - 1s'\,] \qquad (n \times (m + 1)).

For every grouping factor :math:`g` with levels :math:`j = 1..G_g` and varying columns
:math:`Z_g` (:math:`n \times q_g`), and for every nested pair (inner factor :math:`b` within
outer factor :math:`a`), the statistics are

.. math::

    T'T, \qquad A_{gj} = Z_{gj}'Z_{gj}\ (q_g \times q_g), \qquad
    Z_{gj}'T_j\ (q_g \times (m + 1)), \qquad A_{ba,j} = Z_{bj}'Z_{aj}\ (q_b \times q_a),

where :math:`Z_{gj}` and :math:`T_j` are the rows of level :math:`j`. They are sums over rows,
so they are computed in one pass, partition by partition, and added (:meth:`SufficientStatistics.__add__`).
Every quantity of the collapsed model is a linear function of :math:`T`: for any
:math:`(m + 1) \times k` matrix :math:`H`, :math:`(TH)'(TH) = H'(T'T)H` and
:math:`Z_{gj}'T_jH = (Z_{gj}'T_j)H`. With :math:`H` chosen so that :math:`TH` is the
standardised residual block :math:`R = [y - o - \tilde X\hat\beta,\ \tilde X]`, the collapsed
likelihood (:mod:`hierbayes.inference.collapsed.build`) and the exact conditional draws of the
random effects never touch the rows again. The ones column gives the sums (:math:`T'1` and
:math:`Z_{gj}'1`); the shift keeps the cross-products free of cancellation (a column with a
mean of 1e6 and an sd of 1 would otherwise lose 12 digits).

Cost: one pass, :math:`O(n\,(m^2 + \sum_g q_g(q_g + m)))`; memory
:math:`O(\sum_g G_g q_g (q_g + m))`, independent of :math:`n`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

__all__ = [
    "GroupStatistics",
    "SufficientStatistics",
    "compute_statistics",
    "statistics_from_dataset",
    "statistics_to_dataset",
]


@dataclass(frozen=True, eq=False)
class GroupStatistics:
    r"""Per-level sums of one grouping factor (module docstring for the notation).

    Attributes
    ----------
    name
        The factor's name (``"school"``, ``"school:child"``).
    gram
        :math:`A_j = Z_j'Z_j`, ``(G, q, q)``.
    ZtT
        :math:`Z_j'T_j`, ``(G, q, m + 1)``; ``ZtT[:, :, 0]`` is :math:`Z_j'1`.
    """

    name: str
    gram: np.ndarray
    ZtT: np.ndarray

    @property
    def n_levels(self) -> int:
        """Number of levels :math:`G`."""
        return int(self.gram.shape[0])

    @property
    def n_terms(self) -> int:
        """Number of varying terms :math:`q`."""
        return int(self.gram.shape[1])

    def z_sd(self, n: int) -> np.ndarray:
        r"""Standard deviation (``ddof=1``) of every varying column over all rows, ``(q,)``."""
        total = self.ZtT[:, :, 0].sum(axis=0)
        sq = np.einsum("gkk->k", self.gram)
        var = (sq - total**2 / n) / max(n - 1, 1)
        return np.sqrt(np.maximum(var, 0.0))


@dataclass(frozen=True, eq=False)
class SufficientStatistics:
    r"""The sufficient statistics of a Gaussian design (module docstring for the notation).

    Attributes
    ----------
    n
        Number of rows.
    columns
        Names of the raw columns :math:`D`: ``"y"``, the fixed-effect names, then ``"offset"``
        when there is one.
    shift
        The shift :math:`s` per raw column, ``(m,)``.
    TtT
        :math:`T'T`, ``(m + 1, m + 1)``; row 0 holds the column sums of :math:`T`.
    groups
        One :class:`GroupStatistics` per grouping factor, in the design's order.
    cross
        ``{(inner, outer): A_{ba}}``, ``(J, q_b, q_a)`` per inner level, for each nested pair.
    """

    n: int
    columns: tuple[str, ...]
    shift: np.ndarray
    TtT: np.ndarray
    groups: tuple[GroupStatistics, ...]
    cross: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        """Statistics of the union of two disjoint sets of rows (same shift and levels)."""
        if not np.array_equal(self.shift, other.shift) or self.columns != other.columns:
            raise ValueError("Only statistics computed with the same columns and shift can be added.")
        return SufficientStatistics(
            n=self.n + other.n,
            columns=self.columns,
            shift=self.shift,
            TtT=self.TtT + other.TtT,
            groups=tuple(
                GroupStatistics(a.name, a.gram + b.gram, a.ZtT + b.ZtT)
                for a, b in zip(self.groups, other.groups, strict=True)
            ),
            cross={k: v + other.cross[k] for k, v in self.cross.items()},
        )

    def group(self, name: str) -> GroupStatistics:
        """The statistics of the grouping factor called ``name``."""
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"No statistics for grouping factor {name!r}.")

    @property
    def means(self) -> np.ndarray:
        """Column means of :math:`D`, ``(m,)``."""
        return self.shift + self.TtT[0, 1:] / self.n

    @property
    def covariance(self) -> np.ndarray:
        """Covariance (``ddof=0``) of the columns of :math:`D`, ``(m, m)``."""
        c = self.TtT[0, 1:] / self.n
        return self.TtT[1:, 1:] / self.n - np.outer(c, c)

    def sd(self, ddof: int = 0) -> np.ndarray:
        """Standard deviation of every column of :math:`D`, ``(m,)``."""
        var = np.maximum(np.diag(self.covariance), 0.0) * self.n / max(self.n - ddof, 1)
        return np.sqrt(var)

    def column(self, name: str) -> int:
        """Position of raw column ``name`` in :math:`D` (add 1 for its column in :math:`T`)."""
        return self.columns.index(name)

    # ------------------------------------------------------------------------- (de)serialisation

    def to_dataset(
        self,
        levels: Mapping[str, Sequence[str]] | None = None,
        coef_names: Mapping[str, Sequence[str]] | None = None,
    ) -> xr.Dataset:
        """The statistics as an :class:`xarray.Dataset` with named dims (:func:`statistics_to_dataset`)."""
        return statistics_to_dataset(self, levels, coef_names)

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> SufficientStatistics:
        """The statistics written by :meth:`to_dataset`, bit for bit (:func:`statistics_from_dataset`)."""
        return statistics_from_dataset(ds)


def _level_sums(index: np.ndarray, n_levels: int, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    r"""``out[j, a, :] = sum_{i: index[i] = j} weights[i, a] * values[i, :]``, shape ``(G, q, k)``.

    One ``np.bincount`` per output column (``q k`` of them, no loop over levels); a weight
    column of ones (a varying intercept) is not multiplied, and a pair of the same column of ones
    becomes a plain count.
    """
    q, k = weights.shape[1], values.shape[1]
    out = np.empty((n_levels, q, k))
    ones_w = [bool(np.all(weights[:, a] == 1.0)) for a in range(q)]
    ones_v = [bool(np.all(values[:, b] == 1.0)) for b in range(k)]
    for a in range(q):
        for b in range(k):
            if ones_w[a] and ones_v[b]:
                out[:, a, b] = np.bincount(index, minlength=n_levels)
            elif ones_w[a] or ones_v[b]:
                x = values[:, b] if ones_w[a] else weights[:, a]
                out[:, a, b] = np.bincount(index, weights=x, minlength=n_levels)
            else:
                out[:, a, b] = np.bincount(index, weights=weights[:, a] * values[:, b], minlength=n_levels)
    return out


def compute_statistics(
    D: np.ndarray,
    columns: Sequence[str],
    groups: Sequence[tuple[str, np.ndarray, int, np.ndarray]],
    cross: Sequence[tuple[str, str]] = (),
    shift: np.ndarray | None = None,
) -> SufficientStatistics:
    r"""Sufficient statistics of the rows ``D`` (vectorised; module docstring for the math).

    Parameters
    ----------
    D
        ``(n, m)`` raw columns :math:`[y, X, o]`.
    columns
        Their names.
    groups
        ``(name, index, n_levels, Z)`` per grouping factor: ``(n,)`` level codes in
        ``0..n_levels-1`` and the ``(n, q)`` varying columns.
    cross
        ``(inner, outer)`` names of the nested pairs whose cross blocks are needed.
    shift
        Shift :math:`s` per column; default the column means of ``D``.

    Returns
    -------
    SufficientStatistics
    """
    D = np.asarray(D, dtype=np.float64)
    n = D.shape[0]
    shift = D.mean(axis=0) if shift is None else np.asarray(shift, dtype=np.float64)
    T = np.empty((n, D.shape[1] + 1))
    T[:, 0] = 1.0
    np.subtract(D, shift, out=T[:, 1:])
    by_name = {name: (index, n_levels, Z) for name, index, n_levels, Z in groups}
    out_groups = []
    for name, index, n_levels, Z in groups:
        Z = np.asarray(Z, dtype=np.float64)
        out_groups.append(GroupStatistics(name, _level_sums(index, n_levels, Z, Z), _level_sums(index, n_levels, Z, T)))
    out_cross = {}
    for inner, outer in cross:
        index, n_levels, Zb = by_name[inner]
        out_cross[inner, outer] = _level_sums(index, n_levels, np.asarray(Zb, dtype=np.float64), by_name[outer][2])
    return SufficientStatistics(
        n=n, columns=tuple(columns), shift=shift, TtT=T.T @ T, groups=tuple(out_groups), cross=out_cross
    )


# ----------------------------------------------------------------------------- (de)serialisation
# An xarray layout of the statistics (for the fit file, :mod:`hierbayes.inference.store`). Names:
#
# * ``stat_n`` (scalar, int64) :math:`n`; ``stat_shift`` (``stat_column``) :math:`s`, the dim's
#   coordinate holding :attr:`SufficientStatistics.columns`; ``stat_TtT`` (``stat_T_row``,
#   ``stat_T_col``) :math:`T'T`, both coordinates ``["1", *columns]``;
# * per grouping factor ``g`` (its name, as the posterior's dim of its levels): ``{g}__gram``
#   (``g``, ``{g}__coef``, ``{g}__coef_col``) and ``{g}__ZtT`` (``g``, ``{g}__coef``, ``stat_T_col``);
# * per nested pair ``(b, a)``: ``{b}__cross`` (``b``, ``{b}__coef``, ``{a}__coef_col``);
# * attributes ``stat_groups`` and ``stat_cross``: JSON lists of the factor names (in order) and
#   of the ``[inner, outer]`` pairs.
#
# Every float array is float64 as computed, so a NetCDF round trip is exact.

_STAT_N, _STAT_SHIFT, _STAT_TTT = "stat_n", "stat_shift", "stat_TtT"
_STAT_COLUMN, _STAT_T_ROW, _STAT_T_COL = "stat_column", "stat_T_row", "stat_T_col"
_STAT_RESERVED = {_STAT_N, _STAT_SHIFT, _STAT_TTT, _STAT_COLUMN, _STAT_T_ROW, _STAT_T_COL}


def statistics_to_dataset(
    stats: SufficientStatistics,
    levels: Mapping[str, Sequence[str]] | None = None,
    coef_names: Mapping[str, Sequence[str]] | None = None,
) -> xr.Dataset:
    """Every array of ``stats`` as an :class:`xarray.Dataset` with named dims (layout in the comment above).

    Parameters
    ----------
    stats
        The statistics.
    levels
        Optional level labels per grouping factor (coordinate of its level dim).
    coef_names
        Optional names of the varying columns per grouping factor (coordinate of ``{g}__coef``).

    Returns
    -------
    xarray.Dataset
        Readable back with :func:`statistics_from_dataset`.
    """
    clash = sorted(_STAT_RESERVED & {g.name for g in stats.groups})
    if clash:
        raise ValueError(f"A grouping factor may not be called {clash[0]!r} in stored statistics (a reserved name).")
    t_names = np.array(["1", *stats.columns], dtype=object)
    coords: dict[str, xr.Variable] = {
        _STAT_COLUMN: xr.Variable((_STAT_COLUMN,), np.array(stats.columns, dtype=object)),
        _STAT_T_ROW: xr.Variable((_STAT_T_ROW,), t_names),
        _STAT_T_COL: xr.Variable((_STAT_T_COL,), t_names),
    }
    variables: dict[str, xr.Variable] = {
        _STAT_N: xr.Variable((), np.int64(stats.n)),
        _STAT_SHIFT: xr.Variable((_STAT_COLUMN,), np.asarray(stats.shift, dtype=np.float64)),
        _STAT_TTT: xr.Variable((_STAT_T_ROW, _STAT_T_COL), np.asarray(stats.TtT, dtype=np.float64)),
    }
    for g in stats.groups:
        coef, coef_col = f"{g.name}__coef", f"{g.name}__coef_col"
        variables[f"{g.name}__gram"] = xr.Variable((g.name, coef, coef_col), np.asarray(g.gram, dtype=np.float64))
        variables[f"{g.name}__ZtT"] = xr.Variable((g.name, coef, _STAT_T_COL), np.asarray(g.ZtT, dtype=np.float64))
        if levels is not None and g.name in levels:
            coords[g.name] = xr.Variable((g.name,), np.array([str(v) for v in levels[g.name]], dtype=object))
        if coef_names is not None and g.name in coef_names:
            names = np.array([str(v) for v in coef_names[g.name]], dtype=object)
            coords[coef] = xr.Variable((coef,), names)
            coords[coef_col] = xr.Variable((coef_col,), names)
    for (inner, outer), block in stats.cross.items():
        dims = (inner, f"{inner}__coef", f"{outer}__coef_col")
        variables[f"{inner}__cross"] = xr.Variable(dims, np.asarray(block, dtype=np.float64))
    attrs = {
        "stat_groups": json.dumps([g.name for g in stats.groups]),
        "stat_cross": json.dumps([list(k) for k in stats.cross]),
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def statistics_from_dataset(ds: xr.Dataset) -> SufficientStatistics:
    """The :class:`SufficientStatistics` stored by :func:`statistics_to_dataset` (the same arrays, bit for bit).

    Raises
    ------
    KeyError
        When a variable or attribute of the layout is missing.
    """

    def values(name: str) -> np.ndarray:
        return np.asarray(ds[name].values, dtype=np.float64)

    groups = tuple(
        GroupStatistics(name, values(f"{name}__gram"), values(f"{name}__ZtT"))
        for name in json.loads(str(ds.attrs["stat_groups"]))
    )
    cross = {
        (str(inner), str(outer)): values(f"{inner}__cross") for inner, outer in json.loads(str(ds.attrs["stat_cross"]))
    }
    return SufficientStatistics(
        n=int(ds[_STAT_N].values),
        columns=tuple(str(c) for c in ds[_STAT_COLUMN].values),
        shift=values(_STAT_SHIFT),
        TtT=values(_STAT_TTT),
        groups=groups,
        cross=cross,
    )
