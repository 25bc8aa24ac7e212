r"""Reading a posterior: the few helpers every summary shares (one vocabulary).

* :data:`DEFAULT_PROB` and :func:`check_prob`: the probability of equal-tailed intervals
  (a hierbayes option: 0.94, as ArviZ's default; ArviZ 1.x changed its own defaults);
* :func:`interval_stats`: mean, sd, (median,) and the equal-tailed interval of draws;
* :func:`stacked`: draws of a variable with the chains concatenated;
* :func:`group_sd_draws`: the sds ``sd_<g>`` of a grouping factor with their coefficient dim
  ``<g>__coef`` always present (a term with one coefficient, e.g. ``(1 | g)``, stores a scalar
  ``sd_<g>`` per draw; older fit files a length-1 coefficient dim);
* :func:`group_covariance_draws` and :func:`group_cov_cholesky`: per draw,
  :math:`\Omega_g = \operatorname{diag}(s_g) R_g \operatorname{diag}(s_g)` and its Cholesky
  factor, from ``sd_<g>`` and ``corr_<g>`` (names in :mod:`hierbayes.spec.names`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hierbayes.design import GroupDesign
from hierbayes.exceptions import SpecError
from hierbayes.inference.result import Fit
from hierbayes.spec import names

__all__ = [
    "DEFAULT_PROB",
    "check_prob",
    "fixed_effect_draws",
    "group_cov_cholesky",
    "group_covariance_draws",
    "group_sd_draws",
    "interval_stats",
    "stacked",
    "values",
]

#: Probability of the equal-tailed intervals of every summary, unless ``prob=`` says otherwise.
DEFAULT_PROB = 0.94


def check_prob(prob: float) -> None:
    """Refuse an interval probability outside (0, 1)."""
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1; received {prob}.")


def interval_stats(draws: np.ndarray, prob: float, *, median: bool = False) -> dict[str, float]:
    """Mean, sd (NaN for one draw), optionally the median, and the equal-tailed ``prob`` interval."""
    flat = np.asarray(draws, dtype=float).reshape(-1)
    lo, hi = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2])
    out = {"mean": float(flat.mean()), "sd": float(flat.std(ddof=1)) if flat.size > 1 else float("nan")}
    if median:
        out["median"] = float(np.median(flat))
    return out | {"lower": float(lo), "upper": float(hi)}


def fixed_effect_draws(fit: Fit) -> xr.DataArray:
    """Draws of the fixed effects ``beta``, dims ``(chain, draw, coef)``; a clear error without any."""
    post = fit.posterior
    if names.BETA not in post:
        raise SpecError("This model has no fixed effects, so there are no coefficients to contrast.")
    return post[names.BETA].transpose("chain", "draw", names.COEF)


def values(da: xr.DataArray, *dims: str) -> np.ndarray:
    """Values of ``da`` as floats with dims ``(chain, draw, *dims)`` in that order."""
    return np.asarray(da.transpose("chain", "draw", *dims, ...).values, dtype=float)


def stacked(posterior: xr.Dataset, name: str, *dims: str) -> np.ndarray:
    """Draws of ``name`` as an ``(S, *dims)`` float array, chains concatenated."""
    out = values(posterior[name], *dims)
    return out.reshape((-1, *out.shape[2:]))


def group_sd_draws(posterior: xr.Dataset, g: GroupDesign) -> xr.DataArray:
    r"""Draws of the sds :math:`s_g` of a grouping factor's varying coefficients, one per coefficient.

    A term with one coefficient (``(1 | g)``, ``(0 + x | g)``) stores ``sd_<g>`` as a scalar per
    draw, dims ``(chain, draw)``, as ArviZ users expect; a term with :math:`q > 1` coefficients
    stores dims ``(chain, draw, <g>__coef)``. This helper gives both (and the length-1 dim of
    files written before) in the second form, for code that works per coefficient.

    Parameters
    ----------
    posterior
        The fit's posterior, holding ``sd_<g>``.
    g
        The grouping factor's design (``fit.design.group(name)``).

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, <g>__coef)``, coefficients in ``g.coef_names`` order.
    """
    da = posterior[names.sd(g.name)]
    if g.coef_dim not in da.dims:
        if len(g.coef_names) != 1:
            raise SpecError(
                f"{names.sd(g.name)} has no dim {g.coef_dim!r}, but {g.name} has {len(g.coef_names)} varying "
                f"coefficients ({', '.join(g.coef_names)}); the posterior does not belong to this design."
            )
        da = da.expand_dims({g.coef_dim: list(g.coef_names)}, axis=-1)
    elif g.coef_dim not in da.coords:
        da = da.assign_coords({g.coef_dim: list(g.coef_names)})
    return da.sel({g.coef_dim: list(g.coef_names)}).transpose("chain", "draw", g.coef_dim)


def group_covariance_draws(posterior: xr.Dataset, g: GroupDesign) -> np.ndarray:
    r"""Per-draw covariance :math:`\Omega_g` of a grouping factor's varying coefficients.

    Returns
    -------
    numpy.ndarray
        Shape ``(chain, draw, q, q)``, coefficients in ``g.coef_names`` order. Built from
        ``sd_<g>`` and, for full-covariance terms, the correlation matrix ``corr_<g>``.
    """
    coefs = list(g.coef_names)
    sd = values(group_sd_draws(posterior, g), g.coef_dim)
    corr = names.corr(g.name)
    if corr in posterior and len(coefs) > 1:
        R = values(posterior[corr].sel({g.coef_dim: coefs, f"{g.coef_dim}_": coefs}), g.coef_dim, f"{g.coef_dim}_")
        return sd[..., :, None] * R * sd[..., None, :]
    return sd[..., :, None] * np.eye(len(coefs)) * sd[..., None, :]


def group_cov_cholesky(posterior: xr.Dataset, g: GroupDesign) -> np.ndarray:
    r"""Cholesky factors :math:`L^{(s)}` with :math:`\Omega_g^{(s)} = L L^\top`, ``(S, q, q)``, chains stacked."""
    sd = values(group_sd_draws(posterior, g), g.coef_dim)
    sd = sd.reshape(-1, sd.shape[-1])
    q = sd.shape[1]
    corr = names.corr(g.name)
    if corr in posterior and q > 1:
        return sd[:, :, None] * np.linalg.cholesky(stacked(posterior, corr, g.coef_dim, f"{g.coef_dim}_"))
    return sd[:, :, None] * np.eye(q)[None]
