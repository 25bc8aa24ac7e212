"""Run NUTS on a built model with one of PyMC's sampler backends.

``sampler="auto"`` (the default) takes nutpie when it is installed (it is a dependency of
hierbayes, and PyMC's own default) and PyMC's NUTS otherwise. ``"numpyro"`` needs JAX and
numpyro (``pip install "hierbayes[jax]"``).
"""

from __future__ import annotations

import importlib.util
from typing import Literal

import pymc as pm
import xarray as xr

from hierbayes.exceptions import SamplerNotInstalledError

__all__ = ["SAMPLERS", "Sampler", "resolve_sampler", "sample"]

Sampler = Literal["auto", "nutpie", "pymc", "numpyro"]
SAMPLERS: tuple[str, ...] = ("auto", "nutpie", "pymc", "numpyro")

_INSTALL_HINTS = {
    "nutpie": ("nutpie",), 
    "numpyro": ("numpyro", "jax"),
}


def resolve_sampler(sampler: str) -> str:
    """Map ``"auto"`` to the backend that will run; check the backend is installed.

    Raises
    ------
    ValueError
        For an unknown sampler name.
    SamplerNotInstalledError
        With the ``pip install`` command that adds the missing backend.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}.")
    if sampler == "auto":
        return "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"
    for module in _INSTALL_HINTS.get(sampler, ()):
        if importlib.util.find_spec(module) is None:
            extra = "jax" if sampler == "numpyro" else sampler
            raise SamplerNotInstalledError(
                f"The {sampler!r} sampler needs the package {module!r}, which is not installed. "
                f"Install it with: pip install \"hierbayes[{extra}]\" (or pip install {' '.join(_INSTALL_HINTS[sampler])}), "
                "or use sampler='pymc'."
            )
    return sampler


def sample(
    model: pm.Model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    target_accept: float = 0.8,
    sampler: Sampler = "auto",
    progressbar: bool = True,
    cores: int | None = None,
) -> xr.DataTree:
    """Draw posterior samples with NUTS.

    Parameters
    ----------
    model
        From :func:`hierbayes.build_model`.
    draws, tune, chains
        Kept draws per chain, tuning draws per chain, number of chains.
    random_seed
        Seed; the same seed gives the same draws for a given sampler.
    target_accept
        NUTS's target acceptance rate; raise it (0.9, 0.95, 0.99) when there are divergences.
    sampler
        ``"auto"``, ``"nutpie"``, ``"pymc"`` or ``"numpyro"``.
    progressbar
        Show a progress bar.
    cores
        Chains run in parallel on this many cores (default: PyMC's choice).

    Returns
    -------
    xarray.DataTree
        PyMC's result (groups ``posterior``, ``sample_stats``, ``observed_data``, ...).
    """
    backend = resolve_sampler(sampler)
    if draws < 1 or tune < 0 or chains < 1:
        raise ValueError(f"draws must be >= 1, tune >= 0 and chains >= 1; received {draws}, {tune}, {chains}.")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be between 0 and 1; received {target_accept}.")
    with model:
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            target_accept=target_accept,
            nuts_sampler=backend,
            progressbar=progressbar,
            compute_convergence_checks=False,
        )
