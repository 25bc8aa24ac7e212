"""Save a fit to one NetCDF file and load it back, exactly (the file layout: :mod:`hierbayes.inference.store`).

:func:`load` rebuilds the design with :func:`hierbayes.make_design` from the stored spec and data,
so the loaded fit is the same model on the same rows; its summary equals the original's exactly
(floats are stored as float64, bit for bit). A fit to Dask data is rebuilt from its row sample and
its stored sufficient statistics, levels and categories of all rows
(:func:`hierbayes.design_dask.design_from_statistics`), without Dask or the original data.
``spec_to_dict``, ``spec_from_dict``, ``priors_to_dict`` and ``priors_from_dict`` (defined in
:mod:`hierbayes.spec.serialise`) and the atomic writers are re-exported here.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from typing import Any

import xarray as xr

from hierbayes._version import __version__
from hierbayes.design import Design, NestingWarning, make_design
from hierbayes.design_dask import design_from_statistics
from hierbayes.inference.build import var_names
from hierbayes.inference.collapsed.build import random_effect_draws
from hierbayes.inference.diagnostics import Diagnostics, diagnose
from hierbayes.inference.result import Fit
from hierbayes.inference.store import (
    FORMAT_VERSION,
    FitFileError,
    StoredFit,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    read,
    save,
)
from hierbayes.spec.model import ModelSpec
from hierbayes.spec.serialise import priors_from_dict, priors_to_dict, spec_from_dict, spec_to_dict

__all__ = [
    "FORMAT_VERSION",
    "FitFileError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "load",
    "priors_from_dict",
    "priors_to_dict",
    "save",
    "spec_from_dict",
    "spec_to_dict",
]


def _diagnostics_from_dict(
    value: Mapping[str, Any] | None, idata: xr.DataTree, spec: ModelSpec, design: Design
) -> Diagnostics | None:
    if value is None:
        return None
    names = {f.name: f for f in dataclasses.fields(Diagnostics)}
    if set(value) == set(names):
        kwargs = {
            k: (tuple(v) if isinstance(v, list) and str(names[k].type).startswith("tuple") else v)
            for k, v in value.items()
        }
        return Diagnostics(**kwargs)  # type: ignore[arg-type]
    # Saved by another version of hierbayes: recompute from the draws.
    vn = var_names(design)
    check = vn["fixed"] + vn["sd"] + vn["corr"] + vn["other"]
    return diagnose(idata, check, centered_terms=[g.name for g in spec.groups if g.centered])


def _stored_design(stored: StoredFit) -> Design:
    """The design of a fit to Dask data: its row sample with the statistics, levels and categories of all rows."""
    parts = stored.statistics
    assert parts is not None
    return design_from_statistics(
        stored.spec,
        stored.data,
        parts.statistics,
        parts.levels,
        parents=parts.parents,
        categories=parts.categories,
        dropped=stored.dropped,
    )


def load(path: str | os.PathLike[str]) -> Fit:
    r"""Load a fit saved by :func:`save`; no resampling.

    The design is rebuilt from the stored spec and data with :func:`hierbayes.make_design`; for a
    fit to Dask data from the stored row sample and the statistics of all rows
    (:func:`_stored_design`).

    Parameters
    ----------
    path
        A file written by :func:`save` (``posterior.nc``).

    Returns
    -------
    Fit
        Equal to the saved fit: same spec, data, draws, settings and diagnostics; the random-effect
        draws (``u_<g>``, ``z_<g>``) are stored as float32 and come back as float64 arrays holding
        those float32 values (relative error at most :math:`6 \times 10^{-8}`; see
        :mod:`hierbayes.inference.store`), except those of a collapsed fit, which are drawn again
        exactly (the same draws) from the stored parameters and seed. Fits saved by earlier
        versions, whose ``sd_<g>`` of a one-coefficient term has a length-1 ``<g>__coef`` dim,
        load with a scalar ``sd_<g>``.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    FitFileError
        If the file is not a hierbayes fit.
    """
    stored = read(path)
    if stored.statistics is not None:
        design = _stored_design(stored)
    else:
        with warnings.catch_warnings():
            # Already reported when the model was fitted.
            warnings.simplefilter("ignore", NestingWarning)
            design = make_design(stored.spec, stored.data)
        if stored.dropped:
            design = dataclasses.replace(design, dropped=stored.dropped)
    diagnostics = _diagnostics_from_dict(stored.diagnostics, stored.idata, stored.spec, design)
    fit = Fit(spec=stored.spec, design=design, idata=stored.idata, settings=stored.settings, diagnostics=diagnostics)
    if stored.regenerated:
        _draw_again(fit, stored.regenerated)
    return fit


def _draw_again(fit: Fit, regenerated: Mapping[str, Any]) -> None:
    """Draw the random effects that :func:`save` left out (a collapsed fit's ``u_<g>``), in place.

    They are exact conditional draws given the stored parameter draws and the fit's seed, so the
    same draws as the saved fit's (bit for bit with the same hierbayes on the same machine).
    """
    saved_by = regenerated.get("hierbayes")
    if saved_by != __version__:
        warnings.warn(
            f"The random effects {', '.join(regenerated['variables'])} of this fit were left out of the file "
            f"and are drawn again on loading, by hierbayes {__version__} (the file was saved by {saved_by}). "
            "They are exact draws from the same conditional distribution, but may differ in value from those "
            "of the saved fit.",
            UserWarning,
            stacklevel=3,
        )
    draws = random_effect_draws(fit.design, fit.posterior, random_seed=int(regenerated["random_seed"]))
    wanted = [str(v) for v in regenerated["variables"] if v in draws.data_vars]
    posterior = fit.idata.children["posterior"].to_dataset(inherit=False)
    fit.idata["posterior"] = xr.DataTree(posterior.merge(draws[wanted]))
