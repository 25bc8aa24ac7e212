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
from hierbayes.spec import names
from hierbayes.spec.model import ModelSpec

__all__ = ["INTERNAL_GROUP", "Fit", "is_internal", "move_internal"]

#: DataTree group holding the sampler's internal variables (standardised ``beta_std``,
#: non-centred ``z_<g>``, Cholesky factors ``corr_chol_<g>``), kept out of ``posterior`` so that
#: ``arviz_stats.summary(fit.idata)`` shows only interpretable parameters.
INTERNAL_GROUP = "posterior_internal"


def is_internal(name: str) -> bool:
    """Whether a posterior variable is internal to the sampler's parametrisation."""
    return name == names.BETA_STD or name.startswith((names.z(""), names.corr_chol("")))


def move_internal(idata: xr.DataTree) -> xr.DataTree:
    """Move the internal variables of ``idata["posterior"]`` into the group :data:`INTERNAL_GROUP` (in place)."""
    post = idata["posterior"].to_dataset()
    internal = [str(n) for n in post.data_vars if is_internal(str(n))]
    if internal:
        idata[INTERNAL_GROUP] = xr.DataTree(post[internal])
        idata["posterior"] = xr.DataTree(post.drop_vars(internal))
    return idata


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
        PyMC's result, an ``xarray.DataTree`` (groups ``posterior`` with the interpretable
        parameters, ``posterior_internal`` with the sampler's ``beta_std``, ``z_<g>``,
        ``corr_chol_<g>``, ``sample_stats``, and ``log_likelihood``, ``posterior_predictive``,
        ``observed_data``, ``prior`` when added).
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
        """All posterior draws as an ``xarray.Dataset`` (dims ``chain``, ``draw``, ...).

        The interpretable parameters of ``idata["posterior"]`` together with the internal ones of
        ``idata["posterior_internal"]``.
        """
        post = self.idata["posterior"].to_dataset()
        if INTERNAL_GROUP in self.idata.children:
            post = post.merge(self.idata[INTERNAL_GROUP].to_dataset(), combine_attrs="override")
        return post

    @property
    def data(self) -> pd.DataFrame:
        """The rows of the data used in the fit."""
        return self.design.data

    def save(self, path: str | os.PathLike[str], *, random_effects: store.RandomEffectsStorage = "auto") -> Path:
        """Save the fit (draws, spec, data, settings) to one NetCDF file; see :func:`hierbayes.save`."""
        return store.save(self, path, random_effects=random_effects)

    def _repr_html_(self) -> str:
        import html

        post = self.idata["posterior"]
        groups = ", ".join(sorted(self.idata.children))
        levels = "; ".join(f"{g.name}: {g.n_levels} levels" for g in self.design.groups) or "no grouping factor"
        diag = (
            "not recorded"
            if self.diagnostics is None
            else ("all checks passed" if self.diagnostics.ok else f"{len(self.diagnostics.problems)} problem(s)")
        )
        rows = [
            ("Formula", self.spec.formula()),
            ("Family", f"{self.spec.family} ({self.spec.link} link)"),
            ("Data", f"{self.design.n_obs} rows; {levels}"),
            (
                "Draws",
                f"{post.sizes['chain']} chains x {post.sizes['draw']} draws, method "
                f"{self.settings.get('method', '?')}, seed {self.settings.get('random_seed', '?')}",
            ),
            ("Diagnostics", diag),
            ("idata groups", groups),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<div><b>hierbayes.Fit</b><table>{body}</table></div>"

    def __repr__(self) -> str:
        post = self.posterior
        return (
            f"<hierbayes.Fit {self.spec.formula()!r} family={self.spec.family} "
            f"n={self.design.n_obs} chains={post.sizes['chain']} draws={post.sizes['draw']}>"
        )
