r"""The fit file: one NetCDF file with the draws, the data, the spec and the settings, written atomically.

File layout
-----------
One NetCDF-4 file (HDF5, written with xarray's ``DataTree.to_netcdf`` and the ``h5netcdf``
engine), readable with ``xarray.open_datatree(path)`` and ArviZ:

* the groups of the fit's ``idata`` as PyMC returned them (``posterior``, ``sample_stats``,
  ``observed_data``, ...), unchanged;
* a group ``fit_data``: the data rows the model was fitted to, one variable per column along
  the dim ``row`` (coordinate: the data frame's index). Each column's pandas dtype is recorded
  in the variable's attributes and restored on load (integers, floats, booleans, strings,
  categoricals, nullable dtypes, dates);
* for a fit to Dask data only (:mod:`hierbayes.design_dask`), a group ``fit_statistics``:
  the sufficient statistics of *all* rows (:func:`hierbayes.statistics.statistics_to_dataset`:
  ``stat_n``, ``stat_shift``, ``stat_TtT`` and per grouping factor ``g`` the arrays
  ``{g}__gram``, ``{g}__ZtT`` and, when nested, ``{g}__cross``, with named dims), the level
  labels of every grouping factor over all rows (the coordinate of the dim ``g``; the sample
  may miss levels), ``{g}__parent_index`` (the outer level of each inner level, attribute
  ``parent``) for a nested factor, the distinct values over all rows of every categorical
  column (``stat_category_{k}``, each with its pandas dtype, the column names in the attribute
  ``categories``), and the attributes ``design = "row sample"``, ``n_total`` and
  ``n_sample``. ``fit_data`` then holds the seeded row sample;
* JSON attributes on the root: ``hierbayes_spec`` (the :class:`~hierbayes.spec.ModelSpec`,
  priors included, see :func:`hierbayes.spec.serialise.spec_to_dict`), ``hierbayes_settings`` (draws, tune, chains,
  seed, sampler, library versions), ``hierbayes_diagnostics``, ``hierbayes_dropped`` (rows dropped
  for missing values, per column) and ``hierbayes_format``: 1 for a fit to rows in memory, 2 for a
  fit to Dask data (``fit_statistics``), so that a hierbayes that reads only format 1 refuses
  such a file instead of rebuilding the model from the sample; files of format 1 still load.

:func:`hierbayes.load` rebuilds the design with :func:`hierbayes.make_design` from the stored spec and data,
so the loaded fit is the same model on the same rows; its summary equals the original's exactly.
For a fit to Dask data it rebuilds it with
:func:`hierbayes.design_dask.design_from_statistics` from the sample and ``fit_statistics``
(no Dask needed): the model, priors and summaries use the statistics of all rows, row-level
summaries the sample, as for the original fit.

Precision
---------
Parameters (``beta``, ``sd_<g>``, ``corr_<g>``, ``sigma``, ...) and every other float are stored
as float64, bit for bit. The **per-level draws** (variables with a grouping factor's levels as a
dim: the random effects ``u_<g>`` and their standardised ``z_<g>``) are most of a fit's size
(``chains * draws * levels * q`` values) and are stored as float32: each draw is rounded to the
nearest float32, a relative error of at most :math:`2^{-24} \approx 6 \times 10^{-8}`, many orders
of magnitude below the Monte Carlo error of anything computed from the draws (the MCSE of a
level's posterior mean is its posterior sd over :math:`\sqrt{\mathrm{ESS}}`). Such variables carry
the attribute ``hierbayes_stored_as = "float32"`` in the file and are float64 again after
:func:`read`. Summaries of the parameters are therefore exactly equal after a round trip;
quantities computed from the random effects (predictions, pointwise log-likelihood, shrinkage)
agree to about 7 significant digits. :func:`as_stored` gives a fit's draws rounded as a file holds
them, so that outputs written next to the file (the CLI's report) equal those rebuilt from it.
All numeric variables are compressed with zlib (level 1) after byte shuffling.

**Collapsed fits** (``method="collapsed"``) do not need their random-effect draws in the file at
all: ``u_<g>`` are exact draws from the conditional distribution given the stored parameter draws
and the fit's seed (:func:`hierbayes.inference.collapsed.build.random_effect_draws`), so
:func:`save` leaves them out by default (``random_effects="auto"``) and :func:`hierbayes.load`
draws them again, bit for bit the same on the same machine (a BLAS of another machine may change
the last bits, far below the float32 rounding above). The root attribute
``hierbayes_regenerated`` (JSON: the variables, the seed, the hierbayes version that saved the
file) says so; readers of the file with xarray alone see the parameters but no ``u_<g>``. The
achievement demo's file is 1.4 MB so instead of 27 MB (float32) or 54 MB (float64).
``random_effects="float32"`` stores them instead.

Names such as ``sd_school:child`` or the dim ``school:child`` (from ``(1 | school/child)``) are
valid NetCDF-4 names and are stored as they are (checked by reading the file back with both the
HDF5 and the netCDF-C readers): only ``/`` is forbidden. xarray already refuses ``/`` in
variable names; a dim with a ``/`` is refused with a clear error before anything is written.
Data columns whose name could not be a NetCDF variable name (it contains ``/``, starts with
``__`` or is not a string) are stored under a positional name and mapped back through the
group's ``columns`` attribute.

``spec_to_dict``, ``spec_from_dict``, ``priors_to_dict`` and ``priors_from_dict`` (defined in
:mod:`hierbayes.spec.serialise`) are re-exported here.

Writing is atomic: the file is written under a temporary name in the destination folder and
moved over the final name with :func:`os.replace` only when complete, so a crash never leaves a
partial file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes._version import __version__
from hierbayes.design import Design
from hierbayes.exceptions import HierBayesError
from hierbayes.spec.model import ModelSpec
from hierbayes.spec.serialise import jsonable, priors_from_dict, priors_to_dict, spec_from_dict, spec_to_dict
from hierbayes.statistics import SufficientStatistics

__all__ = [
    "FORMAT_VERSION",
    "STORED_AS_ATTR",
    "FitFileError",
    "StoredFit",
    "StoredStatistics",
    "as_stored",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "priors_from_dict",
    "priors_to_dict",
    "read",
    "regenerable_draws",
    "save",
    "spec_from_dict",
    "spec_to_dict",
]

#: Newest version of the file layout, the highest :func:`read` accepts (see "File layout").
FORMAT_VERSION = 2
_FORMAT_ROWS = 1  # a fit to rows in memory: the layout of version 1, unchanged
_FORMAT_STATISTICS = 2  # a fit to Dask data: adds the group fit_statistics
_ENGINE = "h5netcdf"
_DATA_GROUP = "fit_data"
_STATISTICS_GROUP = "fit_statistics"
_ROW_DIM = "row"
_ATTR_PREFIX = "hierbayes_"
#: Attribute of a variable stored at lower precision than it has in memory (value: its file dtype).
STORED_AS_ATTR = "hierbayes_stored_as"
_REGENERATED = "regenerated"  # root attribute (with _ATTR_PREFIX): draws left out, drawn again on load
RandomEffectsStorage = Literal["auto", "regenerate", "float32"]
_SINGLE = np.dtype(np.float32)


class FitFileError(HierBayesError, ValueError):
    """A file is not a fit saved by hierbayes, or it is damaged."""


class _Saveable(Protocol):
    """What :func:`save` reads of a fit (a :class:`hierbayes.Fit`)."""

    spec: ModelSpec
    design: Design
    idata: xr.DataTree
    settings: dict[str, Any]
    diagnostics: Any


def _dumps(value: Any) -> str:
    return json.dumps(jsonable(value), sort_keys=True)


# ------------------------------------------------------------------------- atomic writes


def _file_mode(path: Path) -> int:
    """Mode for a new file: the existing file's, else what ``open()`` would give (0o666 minus umask)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` when the block succeeds.

    The temporary file is in the same folder (so :func:`os.replace` is an atomic rename) and is
    removed if the block raises; the final name then keeps its previous content, if any. The file
    gets the permissions of the file it replaces, or those of a newly created file.
    """
    final = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _file_mode(final))
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, line ends as given) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


# ------------------------------------------------------------------------- data <-> xarray


def _safe_var_name(name: Any, i: int, taken: set[str]) -> str:
    ok = isinstance(name, str) and name and "/" not in name and not name.startswith("__") and name != _ROW_DIM
    var = name if ok else f"__column_{i}"
    while var in taken:
        var = f"__column_{i}_"
    taken.add(var)
    return var


def _encode_column(s: pd.Series) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
    """Return ``(values, attrs, missing mask or None)`` for one data column."""
    dtype = s.dtype
    attrs: dict[str, Any] = {"pandas_dtype": str(dtype)}
    if isinstance(dtype, pd.CategoricalDtype):
        attrs["encoding"] = "categorical"
        attrs["categories"] = _dumps(list(dtype.categories))
        attrs["ordered"] = int(bool(dtype.ordered))
        return np.asarray(s.cat.codes, dtype=np.int64), attrs, None
    if isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        attrs["encoding"] = "string"
        if isinstance(dtype, pd.StringDtype):
            attrs["storage"] = str(dtype.storage)
            attrs["na_value"] = "NA" if dtype.na_value is pd.NA else "nan"
        missing = np.asarray(s.isna())
        values = np.array(
            ["" if m else str(v) for v, m in zip(s.to_numpy(dtype=object), missing, strict=True)], dtype=object
        )
        return values, attrs, (missing if missing.any() else None)
    if isinstance(dtype, np.dtype) and dtype.kind in "biufmM":
        attrs["encoding"] = "numpy"
        return s.to_numpy(), attrs, None
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and getattr(dtype, "kind", "O") in "biuf":
        attrs["encoding"] = "nullable"
        return s.to_numpy(dtype=float, na_value=np.nan), attrs, None
    raise FitFileError(
        f"Cannot save data column {s.name!r} of dtype {dtype}: supported are numbers, booleans, "
        "strings, categoricals and datetimes. Convert the column (e.g. df[col].astype(str)) before fitting."
    )


def _decode_column(values: np.ndarray, attrs: Mapping[str, Any], missing: np.ndarray | None) -> Any:
    enc = attrs["encoding"]
    dtype_name = str(attrs["pandas_dtype"])
    if enc == "categorical":
        cats = json.loads(attrs["categories"])
        return pd.Categorical.from_codes(
            np.asarray(values, dtype=np.int64), categories=cats, ordered=bool(int(attrs["ordered"]))
        )
    if enc == "string":
        arr = np.array([str(v) for v in values], dtype=object)
        if missing is not None:
            arr[np.asarray(missing, dtype=bool)] = None
        if "storage" in attrs:
            na = pd.NA if attrs["na_value"] == "NA" else np.nan
            return pd.array(arr, dtype=pd.StringDtype(storage=str(attrs["storage"]), na_value=na))
        return arr
    if enc == "numpy":
        return np.asarray(values).astype(np.dtype(dtype_name), copy=False)
    if enc == "nullable":
        return pd.array(np.asarray(values, dtype=float), dtype="Float64").astype(dtype_name)
    raise FitFileError(f"Unknown column encoding {enc!r} in the saved data.")  # pragma: no cover


def data_to_dataset(df: pd.DataFrame) -> xr.Dataset:
    taken: set[str] = set()
    variables: dict[str, xr.Variable] = {}
    columns = []
    for i, name in enumerate(df.columns):
        var = _safe_var_name(name, i, taken)
        values, col_attrs, missing = _encode_column(df.iloc[:, i])
        variables[var] = xr.Variable((_ROW_DIM,), values, attrs=col_attrs)
        if missing is not None:
            variables[f"{var}__missing"] = xr.Variable((_ROW_DIM,), missing.astype(np.int8))
        columns.append([name, var])
    index = df.index
    attrs: dict[str, Any] = {"columns": _dumps(columns), "index_name": _dumps(index.name)}
    if isinstance(index, pd.RangeIndex):
        attrs["index"] = _dumps({"range": [index.start, index.stop, index.step]})
        coords = {}
    else:
        values, iattrs, _ = _encode_column(index.to_series(index=range(len(index))))
        attrs["index"] = _dumps({"values": True})
        coords = {_ROW_DIM: xr.Variable((_ROW_DIM,), values, attrs=iattrs)}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def dataset_to_data(ds: xr.Dataset) -> pd.DataFrame:
    columns = json.loads(ds.attrs["columns"])
    out = {}
    for name, var in columns:
        missing = ds[f"{var}__missing"].values if f"{var}__missing" in ds else None
        out[name] = _decode_column(ds[var].values, ds[var].attrs, missing)
    index_info = json.loads(ds.attrs["index"])
    n = ds.sizes.get(_ROW_DIM, 0)
    if "range" in index_info:
        index: pd.Index = pd.RangeIndex(*index_info["range"])
    else:
        coord = ds[_ROW_DIM]
        index = pd.Index(_decode_column(coord.values, coord.attrs, None))
    index.name = json.loads(ds.attrs["index_name"])
    df = pd.DataFrame({i: col for i, col in enumerate(out.values())}, index=index)
    df.columns = pd.Index([name for name, _ in columns]) if columns else pd.RangeIndex(0)
    if len(df) != n:  # pragma: no cover - guarded by the file layout
        raise FitFileError("The saved data have inconsistent lengths.")
    return df


# ------------------------------------------------------------------------------ save/load


def regenerable_draws(fit: _Saveable) -> list[str]:
    """Posterior variables that :func:`hierbayes.load` can draw again exactly instead of reading them.

    The random effects ``u_<g>`` of a collapsed fit with a recorded seed: exact conditional draws
    given the stored parameter draws (:func:`hierbayes.inference.collapsed.build.add_random_effects`).
    Empty for every other fit.
    """
    if fit.settings.get("method") != "collapsed" or fit.settings.get("random_seed") is None:
        return []
    if "posterior" not in fit.idata.children:
        return []
    posterior = fit.idata["posterior"]
    return [f"u_{g.name}" for g in fit.design.groups if f"u_{g.name}" in posterior.data_vars]


def save(fit: _Saveable, path: str | os.PathLike[str], *, random_effects: RandomEffectsStorage = "auto") -> Path:
    r"""Save a fit (draws, spec with priors, data, settings, diagnostics) to one NetCDF file.

    Parameters are stored as float64, bit for bit; the random-effect draws (``u_<g>``,
    ``z_<g>``: every variable with a grouping factor's levels as a dim) as float32, which halves
    the file (relative error at most :math:`2^{-24} \approx 6 \times 10^{-8}` per draw, far
    below the Monte Carlo error of any posterior summary; see the module docstring).

    Parameters
    ----------
    fit
        From :func:`hierbayes.fit`.
    path
        Destination file (conventionally ``posterior.nc``); an existing file is replaced
        atomically. The folder must exist.
    random_effects
        ``"auto"`` (default): leave out the random effects that :func:`hierbayes.load` can draw
        again exactly (a collapsed fit's ``u_<g>``, :func:`regenerable_draws`), store the others as
        float32; ``"regenerate"``: the same, but an error if there is nothing to leave out;
        ``"float32"``: store every random-effect draw (as float32), so that xarray alone reads them.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    FitFileError
        ``random_effects="regenerate"`` for a fit whose draws cannot be drawn again (not collapsed,
        or saved without its random effects).
    """
    if random_effects not in ("auto", "regenerate", "float32"):
        raise ValueError(f"random_effects must be 'auto', 'regenerate' or 'float32'; received {random_effects!r}.")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Cannot save to {path}: the folder {path.parent} does not exist.")
    tree = fit.idata.copy()
    for node in tree.subtree:
        bad = sorted(str(n) for n in [*node.variables, *node.dims] if "/" in str(n))
        if bad:
            raise FitFileError(
                f"Cannot save the fit: the name {bad[0]!r} in group {node.path!r} contains '/', which NetCDF "
                "does not allow in names. Rename the column (e.g. df.rename(columns={...})) and fit again."
            )
    for reserved in (_DATA_GROUP, _STATISTICS_GROUP):
        if reserved in tree.children:
            raise FitFileError(f"The fit's idata already has a group {reserved!r}; it is reserved for the data.")
    left_out = [] if random_effects == "float32" else regenerable_draws(fit)
    if random_effects == "regenerate" and not left_out:
        raise FitFileError(
            "random_effects='regenerate' needs a collapsed fit (method='collapsed') with its random effects "
            f"and seed; this fit is {fit.settings.get('method')!r}. Use random_effects='auto' or 'float32'."
        )
    if left_out:
        tree["posterior"] = xr.DataTree(tree.children["posterior"].to_dataset(inherit=False).drop_vars(left_out))
    tree = _mark_level_draws(tree, fit.design)
    tree[_DATA_GROUP] = xr.DataTree(data_to_dataset(fit.design.data))
    if fit.design.statistics is not None:
        tree[_STATISTICS_GROUP] = xr.DataTree(statistics_group(fit.design))
    tree.attrs = {
        **{k: v for k, v in tree.attrs.items() if not str(k).startswith(_ATTR_PREFIX)},
        f"{_ATTR_PREFIX}format": _FORMAT_ROWS if fit.design.statistics is None else _FORMAT_STATISTICS,
        f"{_ATTR_PREFIX}spec": _dumps(spec_to_dict(fit.spec)),
        f"{_ATTR_PREFIX}settings": _dumps(fit.settings),
        f"{_ATTR_PREFIX}diagnostics": _dumps(fit.diagnostics) if fit.diagnostics is not None else "null",
        f"{_ATTR_PREFIX}dropped": _dumps(fit.design.dropped),
    }
    if left_out:
        tree.attrs[f"{_ATTR_PREFIX}{_REGENERATED}"] = _dumps(
            {"variables": left_out, "random_seed": fit.settings["random_seed"], "hierbayes": __version__}
        )
    _write_tree(tree, path)
    return path


def _level_draw_names(node: xr.DataTree, design: Design) -> list[str]:
    """Float64 variables of ``node`` with a grouping factor's levels as a dim (``u_<g>``, ``z_<g>``)."""
    levels = {g.name for g in design.groups}
    return [
        str(name)
        for name, var in node.data_vars.items()
        if var.dtype == np.float64 and levels.intersection(map(str, var.dims))
    ]


def _map_level_draws(
    tree: xr.DataTree, design: Design, change: Callable[[xr.DataArray], xr.DataArray], exact: Collection[str] = ()
) -> xr.DataTree:
    """A copy of ``tree`` with ``change`` applied to every per-level draw not named in ``exact``."""
    tree = tree.copy()
    for node in tree.subtree:
        chosen = [n for n in _level_draw_names(node, design) if n not in exact]
        if chosen:
            ds = node.to_dataset(inherit=False)
            node.dataset = ds.assign({n: change(ds[n]) for n in chosen})
    return tree


def _mark_level_draws(tree: xr.DataTree, design: Design) -> xr.DataTree:
    """A copy of ``tree`` whose per-level draws carry ``STORED_AS_ATTR`` (they are written as float32)."""
    return _map_level_draws(tree, design, lambda da: da.copy().assign_attrs({STORED_AS_ATTR: str(_SINGLE)}))


def as_stored(tree: xr.DataTree, design: Design, *, exact: Collection[str] = ()) -> xr.DataTree:
    """A copy of a fit's ``idata`` with the values a fit file holds (see *Precision* above).

    The per-level draws are rounded to float32 and kept as float64, exactly as :func:`read`
    returns them; every other variable is shared with ``tree`` unchanged, as are the variables
    named in ``exact`` (those :func:`save` leaves out and :func:`hierbayes.load` draws again:
    :func:`regenerable_draws`).
    """
    return _map_level_draws(tree, design, lambda da: da.astype(_SINGLE).astype(np.float64), exact)


def _compression(tree: xr.DataTree) -> dict[str, dict[str, dict[str, Any]]]:
    """Compression (zlib after byte shuffling) for every numeric variable; float32 where marked."""
    encoding: dict[str, dict[str, dict[str, Any]]] = {}
    for node in tree.subtree:
        group: dict[str, dict[str, Any]] = {
            str(name): {"zlib": True, "complevel": 1, "shuffle": True}
            | ({"dtype": str(var.attrs[STORED_AS_ATTR])} if STORED_AS_ATTR in var.attrs else {})
            for name, var in node.data_vars.items()
            if var.dtype.kind in "biuf" and var.ndim > 0
        }
        if group:
            encoding[node.path] = group
    return encoding


def _write_tree(tree: xr.DataTree, path: Path) -> None:
    with atomic_path(path) as tmp:
        tree.to_netcdf(str(tmp), engine=_ENGINE, encoding=_compression(tree))  # type: ignore[call-overload]


def _attr_json(attrs: Mapping[str, Any], key: str, path: Path) -> Any:
    full = f"{_ATTR_PREFIX}{key}"
    if full not in attrs:
        raise FitFileError(
            f"{path} is not a fit saved by hierbayes (attribute {full!r} is missing). "
            "Save fits with hb.save(fit, path) or fit.save(path)."
        )
    return json.loads(str(attrs[full]))


def _restore_dtypes(tree: xr.DataTree) -> None:
    """Variables written at lower precision (``STORED_AS_ATTR``) become float64 again, in place."""
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        marked = [str(n) for n, var in ds.data_vars.items() if STORED_AS_ATTR in var.attrs]
        if marked:
            restored = {}
            for n in marked:
                da = ds[n].astype(np.float64)
                da.attrs = {k: v for k, v in ds[n].attrs.items() if k != STORED_AS_ATTR}
                restored[n] = da
            node.dataset = ds.assign(restored)


def _scalar_group_sds(tree: xr.DataTree) -> None:
    """Drop the length-1 ``<g>__coef`` dim of ``sd_<g>`` of files written by earlier versions.

    A term with one coefficient (``(1 | g)``) now stores a scalar ``sd_<g>`` per draw (see
    :mod:`hierbayes.inference.build`); older files have dims ``(chain, draw, <g>__coef)`` with one
    coefficient. Normalised in place, in every group (``posterior``, ``prior``, ...).
    """
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        changed = False
        for var in list(ds.data_vars):
            name = str(var)
            dim = f"{name.removeprefix('sd_')}__coef"
            if name.startswith("sd_") and dim in ds[name].dims and ds.sizes[dim] == 1:
                ds[name] = ds[name].isel({dim: 0}, drop=True)
                changed = True
                if not any(dim in v.dims for v in ds.data_vars.values()):
                    ds = ds.drop_dims(dim)
        if changed:
            node.dataset = ds


class StoredFit(NamedTuple):
    """What a fit file holds, before the design and the :class:`~hierbayes.Fit` are rebuilt.

    ``statistics`` is set for a fit to Dask data (then ``data`` is the row sample);
    ``regenerated`` (the variables, the seed and the version of hierbayes that saved the file) when
    :func:`save` left out random-effect draws that :func:`hierbayes.load` draws again.
    """

    spec: ModelSpec
    data: pd.DataFrame
    idata: xr.DataTree
    settings: dict[str, Any]
    diagnostics: dict[str, Any] | None
    dropped: dict[str, int]
    statistics: StoredStatistics | None = None
    regenerated: dict[str, Any] | None = None


def read(path: str | os.PathLike[str]) -> StoredFit:
    """Read a file written by :func:`save` into its parts (see :func:`hierbayes.load`).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    FitFileError
        If the file is not a hierbayes fit, or was written by a newer hierbayes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No saved fit at {path}.")
    try:
        with xr.open_datatree(path, engine=_ENGINE) as opened:
            tree = opened.load().copy()
    except (OSError, ValueError) as err:
        raise FitFileError(f"Cannot read {path} as a NetCDF file: {err}") from None
    attrs = {str(k): v for k, v in tree.attrs.items()}
    version = attrs.get(f"{_ATTR_PREFIX}format")
    if version is None:
        _attr_json(attrs, "format", path)  # raises: not a hierbayes file
    assert version is not None
    if int(version) > FORMAT_VERSION:
        raise FitFileError(
            f"{path} was written in hierbayes file format {int(version)}; this hierbayes reads up to "
            f"{FORMAT_VERSION}. Upgrade hierbayes (pip install -U hierbayes)."
        )
    spec = spec_from_dict(_attr_json(attrs, "spec", path))
    settings = _attr_json(attrs, "settings", path)
    diag = _attr_json(attrs, "diagnostics", path)
    dropped = _attr_json(attrs, "dropped", path) or {}
    if _DATA_GROUP not in tree.children:
        raise FitFileError(f"{path} has no {_DATA_GROUP!r} group: the data of the fit are missing.")
    data = dataset_to_data(tree[_DATA_GROUP].to_dataset())
    del tree[_DATA_GROUP]
    statistics = None
    if _STATISTICS_GROUP in tree.children:
        statistics = read_statistics_group(tree[_STATISTICS_GROUP].to_dataset(), path)
        del tree[_STATISTICS_GROUP]
        if statistics.n_sample != len(data):
            raise FitFileError(
                f"{path} is damaged: {_STATISTICS_GROUP!r} says the row sample has {statistics.n_sample} rows, "
                f"{_DATA_GROUP!r} holds {len(data)}."
            )
    _scalar_group_sds(tree)
    _restore_dtypes(tree)
    tree.attrs = {k: v for k, v in attrs.items() if not str(k).startswith(_ATTR_PREFIX)}
    key = f"{_ATTR_PREFIX}{_REGENERATED}"
    regenerated = json.loads(str(attrs[key])) if key in attrs else None
    return StoredFit(
        spec, data, tree, settings, diag, {str(k): int(v) for k, v in dropped.items()}, statistics, regenerated
    )


# ------------------------------------------------------------------------- statistics of a Dask fit


class StoredStatistics(NamedTuple):
    """What the group ``fit_statistics`` holds: the parts of a design computed over all rows of Dask data.

    The arguments of :func:`hierbayes.design_dask.design_from_statistics` besides the spec and the sample.
    """

    statistics: SufficientStatistics
    levels: dict[str, tuple[str, ...]]
    parents: dict[str, tuple[str, np.ndarray]]
    categories: dict[str, np.ndarray]
    n_sample: int


def statistics_group(design: Design) -> xr.Dataset:
    """The group ``fit_statistics`` of a design with statistics of all rows (layout in the module docstring)."""
    stats = design.statistics
    assert stats is not None
    try:
        ds = stats.to_dataset(
            levels={g.name: g.levels for g in design.groups}, coef_names={g.name: g.coef_names for g in design.groups}
        )
    except ValueError as err:  # a grouping factor named like a variable of the layout
        raise FitFileError(f"Cannot save the fit: {err} Rename the column and fit again.") from None
    for g in design.groups:
        if g.parent is not None and g.parent_index is not None:
            ds[f"{g.name}__parent_index"] = xr.Variable(
                (g.name,), np.asarray(g.parent_index, dtype=np.int64), attrs={"parent": g.parent}
            )
    columns = []
    for k, (column, values) in enumerate((design.categories or {}).items()):
        var = f"stat_category_{k}"
        encoded, col_attrs, _ = _encode_column(pd.Series(values))
        ds[var] = xr.Variable((var,), encoded, attrs=col_attrs)
        columns.append([column, var])
    ds.attrs.update(
        {"design": "row sample", "n_total": int(stats.n), "n_sample": int(design.n_obs), "categories": _dumps(columns)}
    )
    return ds


def read_statistics_group(ds: xr.Dataset, path: Path) -> StoredStatistics:
    """The parts stored by :func:`statistics_group`."""
    try:
        stats = SufficientStatistics.from_dataset(ds)
        levels = {g.name: tuple(str(v) for v in ds[g.name].values) for g in stats.groups}
        parents = {
            g.name: (
                str(ds[f"{g.name}__parent_index"].attrs["parent"]),
                np.asarray(ds[f"{g.name}__parent_index"].values, dtype=np.int64),
            )
            for g in stats.groups
            if f"{g.name}__parent_index" in ds
        }
        categories = {
            str(column): np.asarray(_decode_column(ds[var].values, ds[var].attrs, None))
            for column, var in json.loads(str(ds.attrs["categories"]))
        }
        n_sample = int(ds.attrs["n_sample"])
    except (KeyError, ValueError) as err:
        raise FitFileError(f"{path} is damaged: its group {_STATISTICS_GROUP!r} is incomplete ({err}).") from None
    return StoredStatistics(stats, levels, parents, categories, n_sample)
