"""The second pass (sufficient statistics per partition) and :func:`make_design_dask`.

See :mod:`hierbayes.design_dask` for the two passes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.design import (
    Design,
    GroupDesign,
    check_columns,
    check_groups,
    check_terms_safe,
    nested_pairs,
    raw_columns,
)
from hierbayes.design_dask.scan import (
    DEFAULT_SAMPLE_ROWS,
    check_scan,
    compute_graph,
    dask_client,
    read_dask,
    scan_data,
    tree_reduce,
)
from hierbayes.exceptions import DataError, SpecError
from hierbayes.families import check_response, get_family
from hierbayes.spec.model import ModelSpec
from hierbayes.spec.transforms import EVAL_CONTEXT
from hierbayes.statistics import SufficientStatistics, compute_statistics

__all__ = ["design_from_statistics", "make_design_dask"]

# ----------------------------------------------------------------------------- levels and nesting


def _labels(frame: pd.DataFrame, factor: tuple[str, ...]) -> pd.Series:
    keys = frame[list(factor)].astype(str)
    if len(factor) == 1:
        return keys.iloc[:, 0]
    return keys.iloc[:, 0].str.cat([keys.iloc[:, k] for k in range(1, keys.shape[1])], sep=":")


@dataclass(frozen=True)
class _Levels:
    """Levels of every term and the code of every combination of the grouping columns."""

    factor_cols: list[str]
    combos: pd.DataFrame  # distinct combinations, in a fixed order
    codes: dict[str, np.ndarray]  # term -> code of each combination
    levels: dict[str, tuple[str, ...]]

    def lookup(self, frame: pd.DataFrame) -> np.ndarray:
        """Position in :attr:`combos` of every row of ``frame``."""
        if len(self.factor_cols) == 1:
            index = pd.Index(self.combos.iloc[:, 0])
            pos = index.get_indexer(frame[self.factor_cols[0]])
        else:
            index = pd.MultiIndex.from_frame(self.combos)
            pos = index.get_indexer(pd.MultiIndex.from_frame(frame[self.factor_cols]))
        return pos


def _levels(spec: ModelSpec, combos: pd.DataFrame) -> _Levels:
    combos = combos.reset_index(drop=True)
    codes, levels = {}, {}
    for term in spec.groups:
        c, uniques = pd.factorize(_labels(combos, term.factor), sort=True)
        codes[term.name] = np.asarray(c, dtype=np.int64)
        levels[term.name] = tuple(str(u) for u in uniques)
    return _Levels(list(combos.columns), combos, codes, levels)


# ----------------------------------------------------------------------------- model matrices


def _rhs(intercept: bool, terms: tuple[str, ...]) -> str:
    return " + ".join((["1"] if intercept else ["0"]) + list(terms))


def _skeleton(sample: pd.DataFrame, categories: dict[str, np.ndarray]) -> pd.DataFrame:
    """The sample plus one row for every category value it misses (so formulaic sees them all)."""
    extra = []
    sample = plain_frame(sample)
    for col, values in categories.items():
        for v in sorted(set(values) - set(sample[col].dropna()), key=str):
            row = sample.iloc[:1].copy()
            row[col] = v
            extra.append(row)
    return pd.concat([sample, *extra]) if extra else sample


def _specs(spec: ModelSpec, skeleton: pd.DataFrame) -> tuple[Any, list[Any]]:
    from formulaic import model_matrix

    def one(rhs: str, what: str) -> Any:
        try:
            return model_matrix(rhs, skeleton, na_action="ignore", context=EVAL_CONTEXT).model_spec
        except Exception as err:
            raise DataError(f"Could not build the {what} model matrix from {rhs!r}: {err}") from None

    fixed = one(_rhs(spec.intercept, spec.fixed), "fixed-effect")
    zs = [one(_rhs(t.intercept, t.terms), f"varying-term ({t.formula()})") for t in spec.groups]
    return fixed, zs


def plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Dask's pyarrow-backed string columns as object columns, which formulaic treats as categorical."""
    strings = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    return frame.astype(dict.fromkeys(strings, object)) if strings else frame


def _matrix(mspec: Any, frame: pd.DataFrame, what: str, number: int | None) -> np.ndarray:
    frame = plain_frame(frame)
    with np.errstate(all="ignore"):
        values = np.asarray(mspec.get_model_matrix(frame, na_action="ignore", context=EVAL_CONTEXT), dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, k])
        where = f"partition {number}, " if number is not None else ""
        raise DataError(
            f"Column {mspec.column_names[k]!r} of the {what} model matrix has {rows.size} non-finite value(s) "
            f"(inf or NaN; e.g. {where}row {frame.index[rows[0]]!r}): a transform is undefined there "
            "(log or sqrt of 0 or a negative number, a power that overflows). Transform the column "
            "in the data first, or drop those rows."
        )
    return values


@dataclass(frozen=True)
class _Plan:
    """Everything a partition needs to compute its statistics (small, shipped to the workers)."""

    spec: ModelSpec
    fixed: Any
    zspecs: list[Any]
    levels: _Levels
    n_levels: dict[str, int]
    cross: list[tuple[str, str]]
    columns: tuple[str, ...]
    shift: np.ndarray

    def arrays(
        self, part: pd.DataFrame, number: int | None
    ) -> tuple[np.ndarray, list[tuple[str, np.ndarray, np.ndarray]]]:
        """``D = [y, X, o]`` and ``(name, index, Z)`` per term for the rows of ``part``."""
        spec = self.spec
        try:
            y, _ = check_response(spec.family, part, spec.response, trials=spec.trials, failures=spec.failures)
        except DataError as err:
            raise DataError(f"{err} (partition {number})" if number is not None else str(err)) from None
        cols = [np.asarray(y, dtype=float)[:, None], _matrix(self.fixed, part, "fixed-effect", number)]
        if spec.offset:
            cols.append(part[spec.offset].to_numpy(dtype=float)[:, None])
        pos = self.levels.lookup(part)
        groups = []
        for term, zspec in zip(spec.groups, self.zspecs, strict=True):
            Z = _matrix(zspec, part, f"varying-term ({term.formula()})", number)
            groups.append((term.name, self.levels.codes[term.name][pos], Z))
        return np.hstack(cols), groups


def _stats_partition(part: pd.DataFrame, number: int, plan: _Plan) -> SufficientStatistics:
    D, groups = plan.arrays(part, number)
    return compute_statistics(
        D, plan.columns, [(n, i, plan.n_levels[n], Z) for n, i, Z in groups], plan.cross, shift=plan.shift
    )


def _add(a: SufficientStatistics, b: SufficientStatistics, node: int) -> SufficientStatistics:
    return a + b


# ----------------------------------------------------------------------------- checks on the statistics


def _check_rank_gram(stats: SufficientStatistics, names: tuple[str, ...]) -> None:
    """The rank check of :func:`hierbayes.design._check_rank`, on :math:`X'X` from the statistics."""
    p = len(names)
    if p == 0:
        return
    if stats.n < p:
        raise DataError(
            f"The fixed effects have {p} columns but there are only {stats.n} rows; remove predictors or add data."
        )
    m1 = stats.TtT.shape[0]
    Hx = np.zeros((m1, p))
    Hx[0] = stats.shift[1 : 1 + p]
    Hx[2 : 2 + p] = np.eye(p)
    G = Hx.T @ stats.TtT @ Hx  # raw X'X
    d = np.sqrt(np.maximum(np.diag(G), 1e-300))
    G = G / np.outer(d, d)
    kept: list[int] = []
    bad: list[str] = []
    for k in range(p):
        resid = G[k, k]
        if kept:
            Gk = G[np.ix_(kept, kept)]
            resid -= G[k, kept] @ np.linalg.solve(Gk, G[kept, k])
        (bad.append(names[k]) if resid < 1e-11 else kept.append(k))
    if bad:
        sd = stats.sd()[1 : 1 + p]
        const = [n for n in bad if sd[names.index(n)] <= 1e-12 * (1.0 + abs(stats.means[1 + names.index(n)]))]
        collinear = " (collinear with the intercept)" if "Intercept" in names else ""
        why = (
            f"{', '.join(map(repr, const))} is constant{collinear}"
            if const
            else f"{', '.join(map(repr, bad))} is a linear combination of the other columns"
        )
        raise DataError(
            f"The fixed-effect matrix is rank deficient: {why}. Its coefficient cannot be estimated; "
            f"remove {bad[0]!r} from the formula (or check how it was coded)."
        )


def _check_supported(spec: ModelSpec) -> None:
    family = get_family(spec.family)
    if not family.collapses:
        raise SpecError(
            f"The {spec.family} family cannot be fitted from sufficient statistics on Dask data (only the Gaussian "
            "has a closed-form marginal likelihood). For Bernoulli/binomial or Poisson rows use "
            "hb.aggregate_counts(model, data) to collect exact counts, or fit a sample in memory: "
            "hb.fit(model, ddf.sample(frac=...).compute())."
        )
    if spec.known_sigma is not None:
        raise SpecError("A known residual sd per row (se(...)) cannot be fitted from Dask data; fit it in memory.")
    if not spec.groups:
        raise SpecError("A model without random effects cannot be fitted from Dask data; add a grouping term.")


def _check_structure(spec: ModelSpec, groups: list[GroupDesign]) -> None:
    ok = len(groups) == 1 or (len(groups) == 2 and any(g.parent is not None for g in groups))
    if not ok:
        names = ", ".join(g.name for g in groups)
        raise SpecError(
            f"On Dask data hierbayes fits one grouping factor or two nested ones; {spec.formula()!r} has "
            f"{names}, which are crossed (or more than two). Fit a subsample in memory "
            "(hb.fit(model, ddf.sample(frac=...).compute())), or write nested factors with the a/b syntax."
        )


# ----------------------------------------------------------------------------- the design


def _scan_checked(
    ddf: Any,
    client: Any,
    columns: list[str],
    spec: ModelSpec,
    sample_rows: int,
    random_seed: int,
    progressbar: bool,
    dropna: bool,
) -> tuple[Any, Any, dict[str, int]]:
    """The first pass over the data, checked; with ``dropna=True`` rows with missing values dropped (and said)."""
    scan = scan_data(ddf, client, columns, spec, sample_rows, random_seed, progressbar)
    check_scan(scan, spec, columns, dropna)
    dropped: dict[str, int] = {}
    if scan.na:
        dropped = {c: v[0] for c, v in scan.na.items()}
        warnings.warn(
            f"dropna=True: dropped {scan.na_rows} of {scan.n} rows with missing values "
            f"({', '.join(f'{c}: {n}' for c, n in dropped.items())}).",
            UserWarning,
            stacklevel=4,
        )
        ddf = ddf.dropna(subset=columns)
        scan = scan_data(ddf, client, columns, spec, sample_rows, random_seed, progressbar)
    return scan, ddf, dropped


def _sample_index(sample: pd.DataFrame, term: Any, levels: tuple[str, ...]) -> np.ndarray:
    """Level code (position in ``levels``, the levels of all rows) of every row of the sample."""
    labels = _labels(sample, term.factor)
    index = pd.Index(levels).get_indexer(labels)
    if (index < 0).any():
        bad = labels.iloc[int(np.flatnonzero(index < 0)[0])]
        raise DataError(f"Level {bad!r} of {term.name!r} in the row sample is not among the levels of the data.")
    return np.asarray(index, dtype=np.int64)


def _sample_groups(
    spec: ModelSpec,
    zspecs: Any,
    sample: pd.DataFrame,
    levels: Mapping[str, tuple[str, ...]],
    parents: Mapping[str, tuple[str | None, np.ndarray | None]],
) -> list[GroupDesign]:
    """The group terms of the row sample, with the levels (and nesting) of all rows."""
    out = []
    for term, zspec in zip(spec.groups, zspecs, strict=True):
        Z = _matrix(zspec, sample, f"varying-term ({term.formula()})", None)
        parent, pindex = parents[term.name]
        out.append(
            GroupDesign(
                term,
                _sample_index(sample, term, levels[term.name]),
                levels[term.name],
                Z,
                tuple(str(c) for c in zspec.column_names),
                parent,
                pindex,
            )
        )
    return out


def _sample_design(
    spec: ModelSpec,
    sample: pd.DataFrame,
    categories: dict[str, np.ndarray],
    levels: Mapping[str, tuple[str, ...]],
    parents: Mapping[str, tuple[str | None, np.ndarray | None]],
) -> tuple[Design, Any, list[Any]]:
    """The design of the row sample with the levels, nesting and categories of all rows (no statistics yet).

    Shared by :func:`make_design_dask` and :func:`design_from_statistics`, so that a saved and
    loaded fit gets the very design of the original: the same model matrices (formulaic's specs
    fixed on the sample plus one row per category it misses) and level codes.
    """
    fixed, zspecs = _specs(spec, _skeleton(sample, categories))
    names = tuple(str(c) for c in fixed.column_names)
    groups = _sample_groups(spec, zspecs, sample, levels, parents)
    X = _matrix(fixed, sample, "fixed-effect", None)
    y, trials = check_response(spec.family, sample, spec.response, trials=spec.trials, failures=spec.failures)
    offset = sample[spec.offset].to_numpy(dtype=float) if spec.offset else None
    design = Design(
        spec=spec,
        data=sample,
        y=y,
        X=X,
        fixed_names=names,
        groups=tuple(groups),
        trials=trials,
        offset=offset,
        known_sigma=None,
        fixed_model_spec=fixed,
        categories=categories,
    )
    return design, fixed, zspecs


def make_design_dask(
    spec: ModelSpec,
    data: Any,
    *,
    dropna: bool = False,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    random_seed: int = 0,
    progressbar: bool = False,
) -> Design:
    """Check Dask data against ``spec`` and compute the sufficient statistics of all rows.

    Parameters
    ----------
    spec
        A Gaussian model with one grouping factor or two nested ones.
    data
        A ``dask.dataframe.DataFrame``, or a path or glob of Parquet files (read lazily).
    dropna
        Drop (and report) rows with missing values instead of raising an error.
    sample_rows
        Size of the seeded uniform row sample kept as the design's row-level arrays.
    random_seed
        Seed of that sample.
    progressbar
        Show the progress of the passes over the data.

    Returns
    -------
    Design
        With :attr:`~hierbayes.design.Design.statistics` of all rows; ``data``, ``y``, ``X`` and
        the groups' ``index`` and ``Z`` hold the sample.

    Raises
    ------
    DataError
        As :func:`hierbayes.make_design` (missing column, missing or infinite values, with the
        partition and row; one level; rank deficiency; reversed nesting path).
    SpecError
        For a model that cannot be fitted from statistics (non-Gaussian, crossed factors).
    """
    _check_supported(spec)
    check_terms_safe(spec)
    ddf = read_dask(data)
    columns = check_columns(spec, [str(c) for c in ddf.columns])
    ddf = ddf[[c for c in ddf.columns if str(c) in columns]]  # read only the model's columns (Parquet: pushed down)
    with dask_client() as client:
        scan, ddf, dropped = _scan_checked(ddf, client, columns, spec, sample_rows, random_seed, progressbar, dropna)
        n = scan.n
        if n < 2:
            raise DataError(f"The data have {n} usable row(s); a multilevel model needs more than one.")
        sample = scan.sample
        check_response(spec.family, sample, spec.response, trials=spec.trials, failures=spec.failures)
        levels = _levels(spec, scan.combos)
        # nesting checks on the distinct combinations: the same sets of (level, level) pairs as the rows
        ones = np.ones((len(levels.combos), 1))
        pseudo = [
            GroupDesign(t, levels.codes[t.name], levels.levels[t.name], ones, ("Intercept",)) for t in spec.groups
        ]
        checked = check_groups(spec, pseudo, n, replicates_known=False)
        _check_structure(spec, checked)
        parents = {g.name: (g.parent, g.parent_index) for g in checked}
        categories = {c: np.asarray(v) for c, v in scan.categories.items()}
        draft, fixed, zspecs = _sample_design(spec, sample, categories, levels.levels, parents)
        y, X, offset = draft.y, draft.X, draft.offset
        D = np.hstack([y[:, None], X, *([offset[:, None]] if offset is not None else [])])
        plan = _Plan(
            spec=spec,
            fixed=fixed,
            zspecs=zspecs,
            levels=levels,
            n_levels={g.name: g.n_levels for g in draft.groups},
            cross=nested_pairs(draft.groups),
            columns=raw_columns(draft),
            shift=D.mean(axis=0),
        )
        from dask import delayed

        parts = [delayed(_stats_partition)(p, i, plan) for i, p in enumerate(ddf.to_delayed())]
        stats = compute_graph(client, tree_reduce(parts, _add), progressbar)
    _check_rank_gram(stats, draft.fixed_names)
    design = dataclasses.replace(draft, dropped=dropped, statistics=stats)
    spec.priors.check_against(design.fixed_names, [g.name for g in design.groups])
    return design


def design_from_statistics(
    spec: ModelSpec,
    sample: pd.DataFrame,
    statistics: SufficientStatistics,
    levels: Mapping[str, Sequence[str]],
    parents: Mapping[str, tuple[str, np.ndarray]] | None = None,
    categories: Mapping[str, np.ndarray] | None = None,
    dropped: Mapping[str, int] | None = None,
) -> Design:
    """The design :func:`make_design_dask` made, from its row sample and what it computed over all rows.

    No Dask, no data beyond the sample: used by :func:`hierbayes.load` for a fit to Dask data. The
    sample's model matrices are built exactly as :func:`make_design_dask` built them (the same
    code), and everything that depends on all rows is taken from the arguments, never recomputed
    from the sample (which may miss levels and categories): the statistics (number of rows,
    moments for the fixed-effect scaling and the default priors, the collapsed likelihood), the
    levels of every grouping factor, the nesting, the categories and the dropped-row counts.

    Parameters
    ----------
    spec
        The model.
    sample
        The row sample (:attr:`~hierbayes.design.Design.data` of the original design).
    statistics
        The sufficient statistics of all rows.
    levels
        ``{factor: level labels}`` of all rows, in the order of the statistics.
    parents
        ``{inner factor: (outer factor, outer level of each inner level)}`` for nested factors.
    categories
        ``{column: distinct values over all rows}`` of the categorical columns
        (:attr:`~hierbayes.design.Design.categories`).
    dropped
        Rows dropped for missing values, per column (:attr:`~hierbayes.design.Design.dropped`).

    Returns
    -------
    Design
        With :attr:`~hierbayes.design.Design.statistics` set; a sample when it has fewer rows
        than the statistics.

    Raises
    ------
    DataError
        When the sample, levels and statistics do not fit together (a level of the sample not
        among ``levels``, other columns or numbers of levels than the statistics).
    """
    parents = parents or {}
    nesting = {t.name: parents.get(t.name, (None, None)) for t in spec.groups}
    labels = {t.name: tuple(str(v) for v in levels[t.name]) for t in spec.groups}
    cats = {str(c): np.asarray(v) for c, v in (categories or {}).items()}
    draft, _, _ = _sample_design(spec, sample, cats, labels, nesting)
    if raw_columns(draft) != statistics.columns:
        raise DataError(
            f"The statistics hold the columns {list(statistics.columns)}, but the model's columns for the "
            f"row sample are {list(raw_columns(draft))}; the statistics do not belong to this model."
        )
    for g in draft.groups:
        sg = statistics.group(g.name)
        if (sg.n_levels, sg.n_terms) != (g.n_levels, len(g.coef_names)):
            raise DataError(
                f"The statistics of {g.name!r} have {sg.n_levels} levels x {sg.n_terms} terms; the model has "
                f"{g.n_levels} x {len(g.coef_names)}: they do not belong together."
            )
    if len(sample) > statistics.n:
        raise DataError(f"The row sample has {len(sample)} rows, more than the {statistics.n} of the statistics.")
    design = dataclasses.replace(draft, dropped=dict(dropped or {}), statistics=statistics)
    spec.priors.check_against(design.fixed_names, [g.name for g in design.groups])
    return design
