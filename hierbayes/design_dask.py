r"""Designs from data that do not fit in memory: Dask data frames and Parquet files.

:func:`make_design_dask` does what :func:`hierbayes.make_design` does, on the Dask graph, in
two passes over the data:

1. **Scan** (one task per partition, merged in a tree): the number of rows; per column the
   count of missing and of infinite values with the first partition and row; the distinct
   combinations of the grouping columns; the distinct values of the categorical columns; and
   a seeded uniform sample of rows (a reservoir per partition, merged exactly: from two
   uniform samples of :math:`n_a` and :math:`n_b` rows the count kept from the first is
   hypergeometric).
2. **Statistics**: per partition, the fixed-effect and varying-term matrices (the formulaic
   spec fixed on the client, so every partition is encoded alike), the level codes (a hash
   lookup in the table of combinations) and the sufficient statistics of
   :mod:`hierbayes.statistics`, added in a tree.

Levels, nesting and data checks run on the client on the combinations, with the same code
and the same errors as in memory (:mod:`hierbayes.design`), naming the partition and row
where that is known. The returned :class:`~hierbayes.design.Design` holds the statistics of
all rows (:attr:`~hierbayes.design.Design.statistics`) and, as its row-level arrays, the seeded
random sample, which is what row-level summaries (posterior predictive checks, pointwise
log-likelihood) then use.

Dask is optional (``pip install "hierbayes[dask]"``) and imported only here, when Dask data
or a Parquet path is given. The computation runs on the active ``dask.distributed`` client if
there is one, else on a ``LocalCluster`` sized to the machine, closed afterwards.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.design import (
    Design,
    GroupDesign,
    _check_groups,
    _check_terms_safe,
    _names_in_term,
    _required_columns,
    nested_pairs,
    raw_columns,
)
from hierbayes.exceptions import DataError, SpecError
from hierbayes.families import check_response, get_family
from hierbayes.spec.model import ModelSpec
from hierbayes.spec.transforms import EVAL_CONTEXT
from hierbayes.statistics import SufficientStatistics, compute_statistics

__all__ = ["DEFAULT_SAMPLE_ROWS", "is_dask_input", "make_design_dask", "read_dask"]

#: Rows kept (seeded uniform sample) for row-level summaries of a Dask fit.
DEFAULT_SAMPLE_ROWS = 10_000

_INSTALL_HINT = 'Dask data need the optional dependencies: pip install "hierbayes[dask]"'


def _dask() -> Any:
    try:
        import dask.dataframe as dd
        import distributed  # noqa: F401
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} (missing: {err.name}).") from None
    return dd


def is_dask_input(data: object) -> bool:
    """Whether ``data`` is a Dask data frame, or a path, glob or folder of Parquet files."""
    if isinstance(data, str | os.PathLike):
        path = os.fspath(data)
        return path.endswith((".parquet", ".pq", "/")) or "*" in path or os.path.isdir(path)
    return type(data).__module__.split(".")[0] == "dask"


def read_dask(data: object) -> Any:
    """A Dask data frame from a Dask data frame (as it is) or a Parquet path/glob (read lazily)."""
    dd = _dask()
    if isinstance(data, str | os.PathLike):
        return dd.read_parquet(os.fspath(data))
    if not isinstance(data, dd.DataFrame):
        raise DataError(f"Expected a dask.dataframe.DataFrame or a Parquet path; received {type(data).__name__}.")
    return data


@contextlib.contextmanager
def dask_client() -> Iterator[Any]:
    """The active ``dask.distributed`` client, or a new ``LocalCluster`` (closed on exit)."""
    import distributed

    try:
        active = distributed.get_client()
    except ValueError:  # no client is active
        active = None
    if active is not None:
        yield active
        return
    with distributed.LocalCluster() as cluster, distributed.Client(cluster) as client:
        yield client


def _compute(client: Any, obj: Any, progressbar: bool) -> Any:
    future = client.compute(obj)
    if progressbar:
        import distributed

        distributed.progress(future)
    return future.result()


def _tree(items: list[Any], merge: Any, *args: Any) -> Any:
    """Merge delayed objects pairwise (depth log2 of their number); ``merge(a, b, node, *args)``."""
    from dask import delayed

    level, node = list(items), 0
    while len(level) > 1:
        nxt = []
        for k in range(0, len(level) - 1, 2):
            nxt.append(delayed(merge)(level[k], level[k + 1], node, *args))
            node += 1
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# ----------------------------------------------------------------------------- pass 1: scan


@dataclass
class _Scan:
    """What the first pass over the data returns (merged over partitions)."""

    n: int
    na: dict[str, tuple[int, int, Any]]  # column -> (count, first partition, first row label)
    inf: dict[str, tuple[int, int, Any]]
    combos: pd.DataFrame
    categories: dict[str, np.ndarray]
    sample: pd.DataFrame
    na_rows: int


def _first(old: tuple[int, int, Any] | None, new: tuple[int, int, Any]) -> tuple[int, int, Any]:
    if old is None:
        return new
    return (old[0] + new[0], *(old[1:] if old[0] else new[1:]))


def _scan_partition(
    part: pd.DataFrame, number: int, columns: list[str], factor_cols: list[str], cat_cols: list[str], k: int, seed: int
) -> _Scan:
    na: dict[str, tuple[int, int, Any]] = {}
    inf: dict[str, tuple[int, int, Any]] = {}
    missing = part[columns].isna()
    for col in columns:
        bad = missing[col].to_numpy()
        if bad.any():
            na[col] = (int(bad.sum()), number, part.index[bad][0])
        s = part[col]
        if pd.api.types.is_numeric_dtype(s) and s.dtype != bool:
            isinf = np.isinf(s.to_numpy(dtype=float, na_value=np.nan))
            if isinf.any():
                inf[col] = (int(isinf.sum()), number, part.index[isinf][0])
    rng = np.random.default_rng([seed, number])
    keep = rng.choice(len(part), size=min(k, len(part)), replace=False) if len(part) else np.zeros(0, int)
    return _Scan(
        n=len(part),
        na=na,
        inf=inf,
        combos=part[factor_cols].drop_duplicates(),
        categories={c: pd.unique(part[c].dropna()) for c in cat_cols},
        sample=part.iloc[keep],  # random order: any prefix is a uniform sample too
        na_rows=int(missing.any(axis=1).sum()),
    )


def _merge_scans(a: _Scan, b: _Scan, node: int, k: int, seed: int) -> _Scan:
    na, inf = dict(a.na), dict(a.inf)
    for col, v in b.na.items():
        na[col] = _first(na.get(col), v)
    for col, v in b.inf.items():
        inf[col] = _first(inf.get(col), v)
    # uniform sample of min(k, n_a + n_b) rows from uniform samples of the two halves
    rng = np.random.default_rng([seed, 1_000_003, node])
    size = min(k, a.n + b.n)
    from_a = int(rng.hypergeometric(a.n, b.n, size)) if size else 0
    from_a = min(from_a, len(a.sample))
    from_b = min(size - from_a, len(b.sample))
    sample = pd.concat([a.sample.iloc[:from_a], b.sample.iloc[:from_b]])
    sample = sample.iloc[rng.permutation(len(sample))]  # still uniform, no order left from the halves
    return _Scan(
        n=a.n + b.n,
        na=na,
        inf=inf,
        combos=pd.concat([a.combos, b.combos]).drop_duplicates(),
        categories={c: pd.unique(np.concatenate([a.categories[c], b.categories[c]])) for c in a.categories},
        sample=sample,
        na_rows=a.na_rows + b.na_rows,
    )


def _scan(ddf: Any, client: Any, columns: list[str], spec: ModelSpec, k: int, seed: int, progressbar: bool) -> _Scan:
    from dask import delayed

    factor_cols = list(dict.fromkeys(c for g in spec.groups for c in g.factor))
    terms = [*spec.fixed, *(t for g in spec.groups for t in g.terms)]
    coded = {c for t in terms if "C(" in t for c in _names_in_term(t)}  # numbers used as categories
    model_cols = {c for t in terms for c in _names_in_term(t)}
    cat_cols = [c for c in columns if c in model_cols and (c in coded or not _is_numeric(ddf.dtypes[c]))]
    parts = [
        delayed(_scan_partition)(p, i, columns, factor_cols, cat_cols, k, seed) for i, p in enumerate(ddf.to_delayed())
    ]
    return _compute(client, _tree(parts, _merge_scans, k, seed), progressbar)


def _is_numeric(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _check_scan(scan: _Scan, spec: ModelSpec, columns: list[str], dropna: bool) -> None:
    if scan.n == 0:
        raise DataError("The data frame is empty (0 rows); nothing to fit.")
    if scan.na and not dropna:
        detail = ", ".join(f"{c}: {v[0]}" for c, v in scan.na.items())
        col, (_, part, row) = next(iter(scan.na.items()))
        raise DataError(
            f"Missing values (NaN/None) in {scan.na_rows} row(s) of the columns the model uses ({detail}). "
            f"First: column {col!r}, partition {part}, row {row!r}. "
            "Nothing is dropped silently: impute them, remove the rows, or pass dropna=True to drop those "
            "rows (hierbayes then reports how many)."
        )
    for col, (count, part, row) in scan.inf.items():
        raise DataError(
            f"Column {col!r} has {count} infinite value(s) (e.g. row {row!r}, partition {part}); "
            "only finite numbers can be modelled. Check for log(0) or division by zero upstream, "
            "and drop or replace those rows."
        )


def _check_columns(spec: ModelSpec, available: list[str]) -> list[str]:
    needed = _required_columns(spec)
    for col in needed:
        if col not in available:
            close = difflib.get_close_matches(col, available, n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise DataError(
                f"Column {col!r} named in the model ({spec.formula()}) is not in the data.{hint} "
                f"Available columns: {', '.join(available)}."
            )
    return needed


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
    sample = _plain(sample)
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


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Dask's pyarrow-backed string columns as object columns, which formulaic treats as categorical."""
    strings = [c for c in frame.columns if isinstance(frame[c].dtype, pd.StringDtype)]
    return frame.astype(dict.fromkeys(strings, object)) if strings else frame


def _matrix(mspec: Any, frame: pd.DataFrame, what: str, number: int | None) -> np.ndarray:
    frame = _plain(frame)
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
        raise SpecError(
            "A known residual sd per row (se(...)) cannot be fitted from Dask data; fit it in memory."
        )
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
    _check_terms_safe(spec)
    ddf = read_dask(data)
    columns = _check_columns(spec, [str(c) for c in ddf.columns])
    with dask_client() as client:
        scan = _scan(ddf, client, columns, spec, sample_rows, random_seed, progressbar)
        _check_scan(scan, spec, columns, dropna)
        dropped: dict[str, int] = {}
        if scan.na:
            dropped = {c: v[0] for c, v in scan.na.items()}
            warnings.warn(
                f"dropna=True: dropped {scan.na_rows} of {scan.n} rows with missing values "
                f"({', '.join(f'{c}: {n}' for c, n in dropped.items())}).",
                UserWarning,
                stacklevel=3,
            )
            ddf = ddf.dropna(subset=columns)
            scan = _scan(ddf, client, columns, spec, sample_rows, random_seed, progressbar)
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
        checked = _check_groups(spec, pseudo, n)
        _check_structure(spec, checked)
        fixed, zspecs = _specs(spec, _skeleton(sample, scan.categories))
        names = tuple(str(c) for c in fixed.column_names)
        parents = {g.name: (g.parent, g.parent_index) for g in checked}
        sample_groups = []
        pos = levels.lookup(sample)
        for term, zspec in zip(spec.groups, zspecs, strict=True):
            Z = _matrix(zspec, sample, f"varying-term ({term.formula()})", None)
            parent, pindex = parents[term.name]
            sample_groups.append(
                GroupDesign(
                    term, levels.codes[term.name][pos], levels.levels[term.name], Z,
                    tuple(str(c) for c in zspec.column_names), parent, pindex,
                )
            )
        X = _matrix(fixed, sample, "fixed-effect", None)
        y, trials = check_response(spec.family, sample, spec.response, trials=spec.trials, failures=spec.failures)
        offset = sample[spec.offset].to_numpy(dtype=float) if spec.offset else None
        draft = Design(spec=spec, data=sample, y=y, X=X, fixed_names=names, groups=tuple(sample_groups))
        D = np.hstack([y[:, None], X, *([offset[:, None]] if offset is not None else [])])
        plan = _Plan(
            spec=spec, fixed=fixed, zspecs=zspecs, levels=levels,
            n_levels={g.name: g.n_levels for g in sample_groups}, cross=nested_pairs(tuple(sample_groups)),
            columns=raw_columns(draft), shift=D.mean(axis=0),
        )
        from dask import delayed

        parts = [delayed(_stats_partition)(p, i, plan) for i, p in enumerate(ddf.to_delayed())]
        stats = _compute(client, _tree(parts, _add), progressbar)
    _check_rank_gram(stats, names)
    design = Design(
        spec=spec, data=sample, y=y, X=X, fixed_names=names, groups=tuple(sample_groups), trials=trials,
        offset=offset, known_sigma=None, dropped=dropped, fixed_model_spec=fixed, statistics=stats,
    )
    spec.priors.check_against(names, [g.name for g in design.groups])
    return design
