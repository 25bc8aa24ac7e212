"""Dask plumbing and the first pass over the data: checks, distinct groups, a seeded row sample.

See :mod:`hierbayes.design_dask` for the two passes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.design import (
    names_in_term,
)
from hierbayes.exceptions import DataError
from hierbayes.spec.model import ModelSpec

__all__ = ["DEFAULT_SAMPLE_ROWS", "dask_client", "is_dask_input", "read_dask"]

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


def compute_graph(client: Any, obj: Any, progressbar: bool) -> Any:
    future = client.compute(obj)
    if progressbar:
        import distributed

        distributed.progress(future)
    return future.result()


def tree_reduce(items: list[Any], merge: Any, *args: Any) -> Any:
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


def scan_data(
    ddf: Any, client: Any, columns: list[str], spec: ModelSpec, k: int, seed: int, progressbar: bool
) -> _Scan:
    from dask import delayed

    factor_cols = list(dict.fromkeys(c for g in spec.groups for c in g.factor))
    terms = [*spec.fixed, *(t for g in spec.groups for t in g.terms)]
    coded = {c for t in terms if "C(" in t for c in names_in_term(t)}  # numbers used as categories
    model_cols = {c for t in terms for c in names_in_term(t)}
    cat_cols = [c for c in columns if c in model_cols and (c in coded or not _is_numeric(ddf.dtypes[c]))]
    parts = [
        delayed(_scan_partition)(p, i, columns, factor_cols, cat_cols, k, seed) for i, p in enumerate(ddf.to_delayed())
    ]
    return compute_graph(client, tree_reduce(parts, _merge_scans, k, seed), progressbar)


def _is_numeric(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def check_scan(scan: _Scan, spec: ModelSpec, columns: list[str], dropna: bool) -> None:
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
