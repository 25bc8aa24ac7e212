r"""Pointwise quantities of a fit's own rows, from its posterior draws: pure numpy.

For posterior draw :math:`s` and row :math:`i`,

.. math::

    \eta_i^{(s)} = x_i^\top \beta^{(s)} + \sum_k z_{ik}^\top u_{k, j_k[i]}^{(s)} + o_i,

the pointwise log-likelihood is :math:`\log p(y_i \mid \eta_i^{(s)}, \phi^{(s)})` and a
replicated response :math:`y^{\mathrm{rep}(s)}_i \sim p(\cdot \mid \eta_i^{(s)}, \phi^{(s)})`,
both from the family registry (:mod:`hierbayes.families`; :math:`\phi` = ``sigma``/``alpha``).
The likelihood is conditional on the row's random effects, as the model was fitted.

:func:`add_log_likelihood` and :func:`add_posterior_predictive` put them into ``fit.idata``
under ArviZ's group names (``log_likelihood``, ``posterior_predictive``, with ``observed_data``),
so ``arviz_stats.loo(fit.idata)``, ``arviz_stats.compare`` and ``arviz_plots.plot_ppc_dist``
work on the fit directly. :mod:`hierbayes.summaries.prediction` uses the same functions for
predictions on new rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.design import GroupDesign, response_log_jacobian
from hierbayes.exceptions import DataError, SpecError
from hierbayes.families import Observed, get_family
from hierbayes.inference import posterior
from hierbayes.inference.result import Fit
from hierbayes.spec import names
from hierbayes.spec.transforms import invert_expression

__all__ = [
    "GroupRows",
    "PredictionRows",
    "add_log_likelihood",
    "add_posterior_predictive",
    "group_cov_cholesky",
    "log_likelihood_of_rows",
    "replicate_rows",
]

#: Largest number of (draw x row x coefficient) values held by one intermediate array.
_CHUNK_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------- posterior access


def stacked_draws(fit: Fit, name: str, *extra: str) -> np.ndarray:
    """Draws of ``name`` as an ``(S, *extra)`` array (chains concatenated)."""
    post = fit.posterior
    if name not in post and name.startswith("u_") and fit.settings.get("store_random_effects") is False:
        raise SpecError(
            f"This fit was made with store_random_effects=False, so it has no draws of {name!r}. "
            "Add them with hierbayes.inference.collapsed.build.random_effect_draws(fit.design, fit.posterior), "
            "or refit with store_random_effects=True."
        )
    if name not in post:
        raise SpecError(
            f"The posterior has no variable {name!r}; this fit cannot be used for predictions "
            f"(variables: {', '.join(map(str, post.data_vars))})."
        )
    da = post[name].transpose("chain", "draw", *extra, ...)  # vector parameters (cutpoints) keep their dim
    return np.asarray(da.values, dtype=float).reshape((-1, *da.shape[2:]))


def _n_draws(fit: Fit) -> tuple[int, int]:
    post = fit.posterior
    return int(post.sizes["chain"]), int(post.sizes["draw"])


def group_cov_cholesky(fit: Fit, group: str) -> np.ndarray:
    r"""Cholesky factors :math:`L_k^{(s)}` of :math:`\Omega_k^{(s)}` for every posterior draw.

    Parameters
    ----------
    fit
        A fitted model.
    group
        The random term's name (``"cluster"``, ``"cluster:mom"``).

    Returns
    -------
    numpy.ndarray
        ``(S, q, q)`` lower-triangular factors, ``Omega = L L^T``, draws of all chains stacked.
    """
    g = fit.design.group(group)
    stacked_draws(fit, names.sd(g.name))  # a clear error when the draws are missing
    return posterior.group_cov_cholesky(fit.posterior, g)


# ----------------------------------------------------------------------------- rows to predict


@dataclass(frozen=True)
class GroupRows:
    """One random term's arrays for the rows being predicted."""

    design: GroupDesign
    index: np.ndarray  # (n,) fitted level of each row, -1 for a level the model has not seen
    new_index: np.ndarray  # (n,) index into the distinct unseen levels, -1 for seen levels
    n_new: int
    Z: np.ndarray  # (n, q)
    intercept_only: bool


@dataclass(frozen=True)
class PredictionRows:
    """The arrays of the rows being predicted (the fit's own rows or new data); see :func:`prediction_rows`."""

    n: int
    X: np.ndarray
    groups: tuple[GroupRows, ...]
    offset: np.ndarray | None
    y: np.ndarray | None
    trials: np.ndarray | None
    known_sigma: np.ndarray | None
    index: pd.Index
    obs: np.ndarray  # coordinate labels of the "obs" dim


def intercept_only(Z: np.ndarray) -> bool:
    return Z.shape[1] == 1 and bool(np.all(Z[:, 0] == 1.0))


def rows_of_fit(fit: Fit) -> PredictionRows:
    design = fit.design
    groups = tuple(
        GroupRows(
            design=g,
            index=g.index,
            new_index=np.full(design.n_obs, -1),
            n_new=0,
            Z=g.Z,
            intercept_only=intercept_only(g.Z),
        )
        for g in design.groups
    )
    obs = np.array([str(i) for i in range(design.n_obs)])
    if "observed_data" in fit.idata.children and "y" in fit.idata["observed_data"].data_vars:
        stored = np.asarray(fit.idata["observed_data"]["y"].coords["obs"].values)
        obs = stored if stored.size == design.n_obs else obs  # a Dask fit's rows are a sample
    return PredictionRows(
        n=design.n_obs,
        X=design.X,
        groups=groups,
        offset=design.offset,
        y=design.y,
        trials=design.trials,
        known_sigma=design.known_sigma,
        index=design.data.index,
        obs=obs,
    )


def eta_chunks(
    fit: Fit, rows: PredictionRows, new_effects: list[np.ndarray | None]
) -> tuple[int, int, list[tuple[slice, np.ndarray]]]:
    """Compute eta in chunks of draws; return ``(chains, draws, [(draw slice, (c, n) block)])``."""
    chains, draws = _n_draws(fit)
    S = chains * draws
    beta = stacked_draws(fit, names.BETA, names.COEF) if rows.X.shape[1] > 0 else np.zeros((S, 0))
    u = [stacked_draws(fit, names.u(gr.design.name), gr.design.name, gr.design.coef_dim) for gr in rows.groups]
    width = max([rows.n] + [rows.n * gr.Z.shape[1] for gr in rows.groups])
    step = max(1, _CHUNK_ELEMENTS // max(width, 1))
    blocks: list[tuple[slice, np.ndarray]] = []
    for start in range(0, S, step):
        sl = slice(start, min(S, start + step))
        eta = beta[sl] @ rows.X.T if rows.X.shape[1] else np.zeros((sl.stop - sl.start, rows.n))
        for gr, ug, new in zip(rows.groups, u, new_effects, strict=True):
            seen = gr.index >= 0
            vals = ug[sl][:, np.where(seen, gr.index, 0), :]  # (c, n, q)
            if not seen.all():
                if new is None:
                    vals[:, ~seen, :] = 0.0
                else:
                    vals[:, ~seen, :] = new[sl][:, gr.new_index[~seen], :]
            eta += vals[:, :, 0] if gr.intercept_only else np.einsum("cnq,nq->cn", vals, gr.Z)
        if rows.offset is not None:
            eta += rows.offset
        blocks.append((sl, eta))
    return chains, draws, blocks


def to_array(fit: Fit, rows: PredictionRows, values: np.ndarray, name: str) -> xr.DataArray:
    post = fit.posterior
    chains, draws = _n_draws(fit)
    return xr.DataArray(
        values.reshape(chains, draws, rows.n),
        dims=("chain", "draw", "obs"),
        coords={"chain": post.coords["chain"].values, "draw": post.coords["draw"].values, "obs": rows.obs},
        name=name,
    )


def observed_rows(fit: Fit, rows: PredictionRows) -> Observed:
    """The rows' response and the row-level quantities the family needs, checked for new data."""
    spec = fit.spec
    if spec.known_sigma is not None and rows.known_sigma is None:
        raise DataError(
            f"This model has a known residual sd per row (column {spec.known_sigma!r}); add that column "
            "to the new data."
        )
    return Observed(y=rows.y, trials=rows.trials, known_sigma=rows.known_sigma)


def family_params(fit: Fit, sl: slice) -> dict[str, np.ndarray]:
    """The family's own parameters (``sigma``, ``alpha``) for the draws in ``sl``, as columns."""
    family = get_family(fit.spec.family)
    params = family.parameters(known_sigma=fit.spec.known_sigma is not None)
    return {name: stacked_draws(fit, name)[sl][:, None] for name in params}


def replicate_rows(
    fit: Fit, rows: PredictionRows, rng: np.random.Generator, new_effects: list[np.ndarray | None] | None = None
) -> xr.DataArray:
    """Replicated responses ``(chain, draw, obs)`` named ``"y"`` for ``rows``, drawn with ``rng``.

    ``new_effects`` holds, per group, the effects of unseen levels (``None``: :math:`u = 0`).
    """
    spec = fit.spec
    new_effects = new_effects if new_effects is not None else [None] * len(rows.groups)
    chains, draws, blocks = eta_chunks(fit, rows, new_effects)
    S = chains * draws
    family = get_family(spec.family)
    observed = observed_rows(fit, rows)
    if family.needs_trials and rows.trials is None:
        raise DataError(
            f"Replicating a {spec.family} response needs the number of trials: add column "
            + (
                repr(spec.trials)
                if spec.trials
                else f"{spec.response!r} and {spec.failures!r} (trials = successes + failures)"
            )
            + " to the new data."
        )
    out = np.empty((S, rows.n), dtype=np.int64 if family.discrete else float)
    for sl, eta in blocks:
        out[sl] = family.replicate(rng, eta, str(spec.link), family_params(fit, sl), observed)
    if spec.response_transformed:  # log(y) ~ ...: draws of y itself
        out = invert_expression(spec.response, out)
    return to_array(fit, rows, out, "y")


def log_likelihood_of_rows(
    fit: Fit, rows: PredictionRows, new_effects: list[np.ndarray | None] | None = None, *, data: Any = None
) -> xr.DataArray:
    r"""Pointwise :math:`\log p(y_i \mid \theta^{(s)})`, dims ``(chain, draw, obs)``, named ``"y"``.

    ``new_effects`` holds, per group, the effects of unseen levels (``None``: :math:`u = 0`).
    ``data`` are the rows' data (``None``: the fit's own), needed for a transformed response
    (``log(y) ~ ...``), whose density is that of ``y``: :math:`\log p(z) + \log|dz/dy|`.
    """
    spec = fit.spec
    if rows.y is None:
        needs_trials = get_family(spec.family).needs_trials
        raise DataError(
            f"The log-likelihood needs the response column {spec.response!r} in the data"
            + (f" and the trials/failures column {spec.trials or spec.failures!r}" if needs_trials else "")
            + "."
        )
    y = rows.y
    new_effects = new_effects if new_effects is not None else [None] * len(rows.groups)
    chains, draws, blocks = eta_chunks(fit, rows, new_effects)
    out = np.empty((chains * draws, rows.n))
    family = get_family(spec.family)
    observed = observed_rows(fit, rows)
    for sl, eta in blocks:
        out[sl] = family.log_likelihood(y, eta, str(spec.link), family_params(fit, sl), observed)
    jacobian = response_log_jacobian(spec, fit.design.data if data is None else pd.DataFrame(data))
    if jacobian is not None:
        out += jacobian[None, :]
    return to_array(fit, rows, out, "y")


# ----------------------------------------------------------------------------- ArviZ groups


def _ensure_observed_data(fit: Fit, obs: np.ndarray) -> None:
    tree = fit.idata
    observed = tree["observed_data"].to_dataset() if "observed_data" in tree.children else xr.Dataset()
    if "y" not in observed:
        y = xr.Dataset({"y": (("obs",), np.asarray(fit.design.y))}, coords={"obs": obs})
        tree["observed_data"] = xr.DataTree(observed.merge(y).assign_attrs(observed.attrs))


def _set_group(fit: Fit, group: str, da: xr.DataArray) -> None:
    tree = fit.idata
    ds = tree[group].to_dataset() if group in tree.children else xr.Dataset()
    tree[group] = xr.DataTree(ds.drop_vars("y", errors="ignore").merge(xr.Dataset({"y": da})))


def add_log_likelihood(fit: Fit) -> Fit:
    r"""Add the pointwise log-likelihood of the fit's rows to ``fit.idata`` (group ``log_likelihood``).

    :math:`\log p(y_i \mid \theta^{(s)})` for every draw :math:`s` and row :math:`i`, conditional
    on the row's random effects (see :func:`hierbayes.log_likelihood`), as variable ``"y"`` with
    dims ``(chain, draw, obs)``; ``observed_data`` gets ``y`` too. Then
    ``arviz_stats.loo(fit.idata)`` and ``arviz_stats.compare({...: fit.idata})`` work directly.

    Parameters
    ----------
    fit
        A fitted model; changed in place (an existing ``log_likelihood`` group is replaced).

    Returns
    -------
    Fit
        The same fit, for chaining.
    """
    rows = rows_of_fit(fit)
    _set_group(fit, "log_likelihood", log_likelihood_of_rows(fit, rows))
    _ensure_observed_data(fit, rows.obs)
    return fit


def add_posterior_predictive(fit: Fit, *, random_seed: int | np.random.Generator | None = None) -> Fit:
    r"""Add replicated responses of the fit's rows to ``fit.idata`` (group ``posterior_predictive``).

    One :math:`y^{\mathrm{rep}(s)}_i` per draw and row, from the family at
    :math:`g^{-1}(\eta_i^{(s)})` (see :func:`hierbayes.posterior_predictive`), as variable
    ``"y"``; ``observed_data`` gets ``y`` too, so ``arviz_plots.plot_ppc_dist(fit.idata)`` works.

    Parameters
    ----------
    fit
        A fitted model; changed in place (an existing ``posterior_predictive`` group is replaced).
    random_seed
        Seed or generator; ``None`` (default) derives one from the fit's own seed
        (``fit.settings["random_seed"]``), so the same fit gives the same replicates.

    Returns
    -------
    Fit
        The same fit, for chaining.
    """
    if random_seed is None:
        seed = fit.settings.get("random_seed")
        random_seed = np.random.default_rng([int(seed), 13]) if seed is not None else None
    rng = np.random.default_rng(random_seed)
    rows = rows_of_fit(fit)
    _set_group(fit, "posterior_predictive", replicate_rows(fit, rows, rng))
    _ensure_observed_data(fit, rows.obs)
    return fit
