"""The result type of a fit: draws together with the spec, the design and the settings.

:class:`Fit` depends only on the spec, the design, the diagnostics type and the fit file
(:mod:`hierbayes.inference.store`), so every summary can take a ``Fit`` without importing the
pipeline that makes one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from hierbayes.design import Design
from hierbayes.inference import store
from hierbayes.inference.diagnostics import Diagnostics
from hierbayes.spec.model import ModelSpec

__all__ = ["Fit"]


@dataclass(eq=False)
class Fit:
    """A fitted model: the posterior draws together with the spec, the data and the settings.

    Attributes
    ----------
    spec
        The model specification.
    design
        The design the model was built from (``design.data`` are the rows used).
    idata
        PyMC's result, an ``xarray.DataTree`` (groups ``posterior``, ``sample_stats``, ...).
    settings
        Sampler settings, seed, method and library versions.
    diagnostics
        Convergence diagnostics (see :func:`hierbayes.diagnose`).
    """

    spec: ModelSpec
    design: Design
    idata: xr.DataTree
    settings: dict[str, Any] = field(default_factory=dict)
    diagnostics: Diagnostics | None = None

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws as an ``xarray.Dataset`` (dims ``chain``, ``draw``, ...)."""
        return self.idata["posterior"].to_dataset()

    @property
    def data(self) -> pd.DataFrame:
        """The rows of the data used in the fit."""
        return self.design.data

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fit (draws, spec, data, settings) to one NetCDF file; see :func:`hierbayes.save`."""
        return store.save(self, path)

    def __repr__(self) -> str:
        post = self.posterior
        return (
            f"<hierbayes.Fit {self.spec.formula()!r} family={self.spec.family} "
            f"n={self.design.n_obs} chains={post.sizes['chain']} draws={post.sizes['draw']}>"
        )
