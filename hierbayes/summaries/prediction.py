r"""Predictions from a fit's posterior draws: pure numpy, no PyMC graph is rebuilt.

For posterior draw :math:`s` (of :math:`S` = chains x draws) and row :math:`i` the linear
predictor is

.. math::

    \eta_i^{(s)} = x_i^\top \beta^{(s)} + \sum_k z_{ik}^\top u_{k, j_k[i]}^{(s)} + o_i,

the mean is :math:`\mu_i^{(s)} = g^{-1}(\eta_i^{(s)})` (inverse link: identity, logistic,
standard normal cdf or exp), and a replicated response is drawn from the family at
:math:`\mu_i^{(s)}`:

=====================  ====================================================================
family                 :math:`y^{\mathrm{rep}}_i \mid \mu_i`
=====================  ====================================================================
``gaussian``           :math:`N(\mu_i, \sigma^2)`, or :math:`N(\mu_i, \sigma_i^2)` with a known
                       per-row sd
``bernoulli``          :math:`\mathrm{Bernoulli}(\mu_i)`
``binomial``           :math:`\mathrm{Binomial}(n_i, \mu_i)` with the row's trials :math:`n_i`
``poisson``            :math:`\mathrm{Poisson}(\mu_i)` (the offset is inside :math:`\eta_i`)
``negative_binomial``  :math:`\mathrm{NB}(\mu_i, \alpha)`, variance :math:`\mu_i + \mu_i^2/\alpha`
=====================  ====================================================================

New data
--------
With ``data=`` the fixed-effect columns are rebuilt by the fit's own formulaic model spec (the
same coding of categorical columns and the same transforms), and each row's group levels are
matched to the fitted levels **by label** (the column values as strings, joined by ``:`` for
nested terms such as ``school:child``). A level the model has not seen gets

* ``new_levels="population"`` (default): :math:`u = 0`, i.e. the prediction for an *average*
  member of the population of levels (lme4's ``re.form`` with ``allow.new.levels=TRUE``);
* ``new_levels="sample"``: a fresh :math:`u \sim N(0, \Omega_k^{(s)})` per posterior draw,
  i.e. a prediction for a *new, random* level that carries the between-level uncertainty.

For a nested term only the unseen part is new: a new mother in a known community keeps the
community's effect.

Memory: the returned arrays hold :math:`S \times n` numbers (7230 rows x 4000 draws is
230 MB in float64); intermediate arrays are built in chunks of posterior draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from formulaic import model_matrix

from hierbayes.design import GroupDesign, add_expression_columns, response_log_jacobian
from hierbayes.exceptions import DataError, SpecError
from hierbayes.families import Observed, check_response, get_family, inverse_link
from hierbayes.inference.result import Fit
from hierbayes.spec.transforms import invert_expression

__all__ = [
    "GroupRows",
    "NewLevels",
    "PredictKind",
    "PredictionRows",
    "as_frame",
    "group_cov_cholesky",
    "inverse_link",
    "linear_predictor",
    "log_likelihood",
    "posterior_predictive",
    "predict",
    "prediction_rows",
    "with_log_likelihood",
]

NewLevels = Literal["population", "sample"]
PredictKind = Literal["linear", "mean", "response"]

#: Largest number of (draw x row x coefficient) values held by one intermediate array.
_CHUNK_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------- posterior access


def _stacked(fit: Fit, name: str, *extra: str) -> np.ndarray:
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
    sd = _stacked(fit, f"sd_{g.name}", g.coef_dim)
    q = sd.shape[1]
    corr_name = f"corr_{g.name}"
    if corr_name in fit.posterior and q > 1:
        corr = _stacked(fit, corr_name, g.coef_dim, f"{g.coef_dim}_")
        return sd[:, :, None] * np.linalg.cholesky(corr)
    eye = np.eye(q)
    return sd[:, :, None] * eye[None]


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


def _intercept_only(Z: np.ndarray) -> bool:
    return Z.shape[1] == 1 and bool(np.all(Z[:, 0] == 1.0))


def _rows_of_fit(fit: Fit) -> PredictionRows:
    design = fit.design
    groups = tuple(
        GroupRows(
            design=g,
            index=g.index,
            new_index=np.full(design.n_obs, -1),
            n_new=0,
            Z=g.Z,
            intercept_only=_intercept_only(g.Z),
        )
        for g in design.groups
    )
    obs = np.array([str(i) for i in range(design.n_obs)])
    if "observed_data" in fit.idata.children and "y" in fit.idata["observed_data"].data_vars:
        obs = np.asarray(fit.idata["observed_data"]["y"].coords["obs"].values)
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


def _need(data: pd.DataFrame, column: str, why: str) -> None:
    if column not in data.columns:
        raise DataError(
            f"Column {column!r} ({why}) is not in the new data; the new data have: "
            f"{', '.join(map(str, data.columns))}. Add it."
        )


def _level_keys(data: pd.DataFrame, fitted: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The factor columns as strings, spelt as in the fitted data (integer ids stay ``"12"``, not ``"12.0"``)."""
    keys = {}
    for col in columns:
        values = data[col]
        fitted_int = pd.api.types.is_integer_dtype(fitted[col]) if col in fitted.columns else False
        if fitted_int and pd.api.types.is_float_dtype(values):
            keys[col] = [str(int(v)) if np.isfinite(v) and v == int(v) else str(v) for v in values]
        else:
            keys[col] = values.astype(str)
    return pd.DataFrame(keys, index=data.index)


def _group_rows(g: GroupDesign, data: pd.DataFrame, fitted: pd.DataFrame) -> GroupRows:
    for col in g.term.factor:
        _need(data, col, f"grouping factor of {g.term.formula()}")
    keys = _level_keys(data, fitted, list(g.term.factor))
    labels = keys.iloc[:, 0] if len(g.term.factor) == 1 else keys.agg(":".join, axis=1)
    lookup = {lab: k for k, lab in enumerate(g.levels)}
    index = np.array([lookup.get(lab, -1) for lab in labels], dtype=np.int64)
    unseen = index < 0
    new_index = np.full(len(data), -1, dtype=np.int64)
    n_new = 0
    if unseen.any():
        codes, uniques = pd.factorize(labels[unseen])
        new_index[unseen] = codes
        n_new = len(uniques)
    if g.term.terms:
        rhs = " + ".join((["1"] if g.term.intercept else ["0"]) + list(g.term.terms))
        try:
            mm = model_matrix(rhs, data, na_action="raise", context={"np": np})
        except Exception as err:
            raise DataError(
                f"Could not build the varying columns of {g.term.formula()} for the new data: {err}"
            ) from None
        names = tuple(str(c) for c in mm.columns)
        if names != g.coef_names:
            raise DataError(
                f"The varying columns of {g.term.formula()} in the new data are {names}, but the model has "
                f"{g.coef_names}; give the new data the same columns (and categorical levels) as the fitted data."
            )
        Z = np.asarray(mm, dtype=float)
    else:
        Z = np.ones((len(data), 1))
    return GroupRows(
        design=g, index=index, new_index=new_index, n_new=n_new, Z=Z, intercept_only=_intercept_only(Z)
    )


def as_frame(data: Any) -> pd.DataFrame:
    """New data as a DataFrame: a DataFrame as is, a dict of columns (scalars are one row)."""
    if isinstance(data, dict):
        data = pd.DataFrame({k: np.atleast_1d(v) for k, v in data.items()})
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame or a dict of columns; received {type(data).__name__}.")
    return data


def _rows_of_data(fit: Fit, data: Any) -> PredictionRows:
    data = as_frame(data)
    if len(data) == 0:
        raise DataError("The new data frame is empty (0 rows); nothing to predict.")
    design, spec = fit.design, fit.spec
    data = add_expression_columns(spec, data, strict=False)  # log(y), size - incidence, log(exposure)
    if design.X.shape[1] > 0:
        if design.fixed_model_spec is None:  # pragma: no cover - make_design always sets it
            raise SpecError("This fit's design has no formulaic model spec; cannot rebuild X for new data.")
        try:
            mm = design.fixed_model_spec.get_model_matrix(data, context={"np": np})
            mm = mm[[c for c in mm.columns if str(c) in design.fixed_names]]  # ordinal: no Intercept
        except Exception as err:
            raise DataError(
                f"Could not build the fixed-effect columns ({', '.join(design.fixed_names)}) for the new data: {err}"
            ) from None
        X = np.asarray(mm, dtype=float)
        if X.shape != (len(data), len(design.fixed_names)):
            raise DataError(
                f"The new data give {X.shape[0]} rows x {X.shape[1]} fixed-effect columns, expected "
                f"{len(data)} x {len(design.fixed_names)}; check for missing values in the predictors."
            )
    else:
        X = np.zeros((len(data), 0))
    groups = tuple(_group_rows(g, data, design.data) for g in design.groups)
    offset = None
    if spec.offset is not None:
        _need(data, spec.offset, "the offset")
        offset = np.asarray(data[spec.offset], dtype=float)
    y = None
    trials = None
    response_cols = [c for c in (spec.response, spec.trials, spec.failures) if c is not None]
    if all(c in data.columns for c in response_cols) and not data[response_cols].isna().any().any():
        y, trials = check_response(spec.family, data, spec.response, trials=spec.trials, failures=spec.failures)
    if spec.family == "binomial" and trials is None and spec.trials is not None and spec.trials in data.columns:
        trials = np.asarray(data[spec.trials], dtype=float)
    known_sigma = None
    if spec.known_sigma is not None and spec.known_sigma in data.columns:
        known_sigma = np.asarray(data[spec.known_sigma], dtype=float)
    return PredictionRows(
        n=len(data),
        X=X,
        groups=groups,
        offset=offset,
        y=y,
        trials=trials,
        known_sigma=known_sigma,
        index=data.index,
        obs=np.array([str(i) for i in range(len(data))]),
    )


def prediction_rows(fit: Fit, data: Any = None) -> PredictionRows:
    """The design arrays of the rows to predict: ``X``, per-term level index and ``Z``, offset, trials.

    ``data=None`` gives the fit's own rows; new data are built as the module docstring says.
    """
    return _rows_of_fit(fit) if data is None else _rows_of_data(fit, data)


# ----------------------------------------------------------------------------- linear predictor


def _new_level_effects(
    fit: Fit, rows: PredictionRows, new_levels: NewLevels, rng: np.random.Generator
) -> list[np.ndarray | None]:
    """Per group, ``(S, n_new, q)`` effects of the unseen levels (zeros for ``"population"``)."""
    if new_levels not in ("population", "sample"):
        raise ValueError(f"new_levels must be 'population' or 'sample'; received {new_levels!r}.")
    out: list[np.ndarray | None] = []
    for gr in rows.groups:
        if gr.n_new == 0 or new_levels == "population":
            out.append(None)
            continue
        L = group_cov_cholesky(fit, gr.design.name)  # (S, q, q)
        z = rng.standard_normal((L.shape[0], gr.n_new, L.shape[1]))
        out.append(np.einsum("sqr,snr->snq", L, z))
    return out


def _eta_chunks(
    fit: Fit, rows: PredictionRows, new_effects: list[np.ndarray | None]
) -> tuple[int, int, list[tuple[slice, np.ndarray]]]:
    """Compute eta in chunks of draws; return ``(chains, draws, [(draw slice, (c, n) block)])``."""
    chains, draws = _n_draws(fit)
    S = chains * draws
    beta = _stacked(fit, "beta", "coef") if rows.X.shape[1] > 0 else np.zeros((S, 0))
    u = [_stacked(fit, f"u_{gr.design.name}", gr.design.name, gr.design.coef_dim) for gr in rows.groups]
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


def _to_array(fit: Fit, rows: PredictionRows, values: np.ndarray, name: str) -> xr.DataArray:
    post = fit.posterior
    chains, draws = _n_draws(fit)
    return xr.DataArray(
        values.reshape(chains, draws, rows.n),
        dims=("chain", "draw", "obs"),
        coords={"chain": post.coords["chain"].values, "draw": post.coords["draw"].values, "obs": rows.obs},
        name=name,
    )


def _eta(fit: Fit, rows: PredictionRows, new_levels: NewLevels, rng: np.random.Generator) -> np.ndarray:
    chains, draws, blocks = _eta_chunks(fit, rows, _new_level_effects(fit, rows, new_levels, rng))
    out = np.empty((chains * draws, rows.n))
    for sl, block in blocks:
        out[sl] = block
    return out


def linear_predictor(
    fit: Fit,
    data: pd.DataFrame | dict[str, Any] | None = None,
    *,
    new_levels: NewLevels = "population",
    random_seed: int | np.random.Generator | None = None,
) -> xr.DataArray:
    r"""Posterior draws of the linear predictor :math:`\eta` (link scale).

    Parameters
    ----------
    fit
        A fitted model.
    data
        New rows (a DataFrame or a dict of columns); ``None`` uses the fit's own rows.
        Group levels are matched by label; see the module docstring for unseen levels.
    new_levels
        ``"population"`` (unseen levels get :math:`u = 0`) or ``"sample"`` (a fresh
        :math:`u \sim N(0, \Omega_k)` per draw; needs ``random_seed`` for reproducibility).
    random_seed
        Seed (or generator) for ``new_levels="sample"``.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, obs)``, named ``"eta"``.
    """
    rows = prediction_rows(fit, data)
    rng = np.random.default_rng(random_seed)
    return _to_array(fit, rows, _eta(fit, rows, new_levels, rng), "eta")


# ----------------------------------------------------------------------------- predictive draws


def _observed(fit: Fit, rows: PredictionRows) -> Observed:
    """The rows' response and the row-level quantities the family needs, checked for new data."""
    spec = fit.spec
    if spec.known_sigma is not None and rows.known_sigma is None:
        raise DataError(
            f"This model has a known residual sd per row (column {spec.known_sigma!r}); add that column "
            "to the new data."
        )
    return Observed(y=rows.y, trials=rows.trials, known_sigma=rows.known_sigma)


def _family_params(fit: Fit, sl: slice) -> dict[str, np.ndarray]:
    """The family's own parameters (``sigma``, ``alpha``) for the draws in ``sl``, as columns."""
    family = get_family(fit.spec.family)
    names = family.parameters(known_sigma=fit.spec.known_sigma is not None)
    return {name: _stacked(fit, name)[sl][:, None] for name in names}


def posterior_predictive(
    fit: Fit,
    *,
    random_seed: int | np.random.Generator | None,
    data: pd.DataFrame | dict[str, Any] | None = None,
    new_levels: NewLevels = "population",
) -> xr.DataArray:
    """Replicated responses, one per posterior draw and row, on the response scale.

    Parameters
    ----------
    fit
        A fitted model.
    random_seed
        Seed or generator (required: the same seed gives the same draws; ``None`` is allowed
        and explicit).
    data
        New rows; ``None`` uses the fit's own rows. Binomial models need the trials column
        (or the successes and failures columns of ``cbind``), Gaussian models with a known sd
        the sd column.
    new_levels
        See :func:`linear_predictor`.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, obs)``, named ``"y"``: floats for the Gaussian family, integers
        (int64) otherwise (0/1 for bernoulli, ``0..trials`` for binomial). For a transformed
        response (``log(y) ~ ...``) the draws are transformed back to the scale of ``y`` itself
        (``exp`` of the replicated ``log(y)``); ``kind="mean"`` and ``"linear"`` of
        :func:`predict` stay on the transformed scale (the mean of ``log(y)``).
    """
    spec = fit.spec
    rows = prediction_rows(fit, data)
    rng = np.random.default_rng(random_seed)
    chains, draws, blocks = _eta_chunks(fit, rows, _new_level_effects(fit, rows, new_levels, rng))
    S = chains * draws
    family = get_family(spec.family)
    observed = _observed(fit, rows)
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
        out[sl] = family.replicate(rng, eta, str(spec.link), _family_params(fit, sl), observed)
    if spec.response_transformed:  # log(y) ~ ...: draws of y itself
        out = invert_expression(spec.response, out)
    return _to_array(fit, rows, out, "y")


def log_likelihood(fit: Fit, data: pd.DataFrame | dict[str, Any] | None = None) -> xr.DataArray:
    r"""Pointwise log density :math:`\log p(y_i \mid \theta^{(s)})` of every row at every draw.

    The density is conditional on the row's random effects (the same likelihood the model
    was fitted with), computed with scipy: ``norm.logpdf``, ``binom.logpmf`` (bernoulli: one
    trial) written on the link scale with ``log_expit`` / ``log_ndtr`` so that it stays finite
    for extreme :math:`\eta`, ``poisson.logpmf`` and ``nbinom.logpmf`` with
    :math:`n = \alpha`, :math:`p = \alpha/(\alpha + \mu)`. For a transformed response
    (``log(y) ~ ...``, :math:`z = e(y)`) it is the density of the original :math:`y`:
    :math:`\log p(z_i \mid \theta) + \log|dz_i/dy_i|`, so LOO compares it with models of :math:`y`.

    Parameters
    ----------
    fit
        A fitted model.
    data
        New rows with the response; ``None`` uses the fit's own rows (what LOO needs).

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, obs)``, named ``"y"``.
    """
    spec = fit.spec
    rows = prediction_rows(fit, data)
    if rows.y is None:
        raise DataError(
            f"The log-likelihood needs the response column {spec.response!r} in the data"
            + (f" and the trials/failures column {spec.trials or spec.failures!r}" if get_family(spec.family).needs_trials else "")
            + "."
        )
    y = rows.y
    chains, draws, blocks = _eta_chunks(fit, rows, [None] * len(rows.groups))
    out = np.empty((chains * draws, rows.n))
    family = get_family(spec.family)
    observed = _observed(fit, rows)
    for sl, eta in blocks:
        out[sl] = family.log_likelihood(y, eta, str(spec.link), _family_params(fit, sl), observed)
    jacobian = response_log_jacobian(spec, fit.design.data if data is None else as_frame(data))
    if jacobian is not None:  # log(y) ~ ...: the density of y itself, log p(z) + log|dz/dy|
        out += jacobian[None, :]
    return _to_array(fit, rows, out, "y")


def with_log_likelihood(fit: Fit) -> xr.DataTree:
    """A copy of ``fit.idata`` with a ``log_likelihood`` group (variable ``"y"``) for ArviZ LOO.

    The fit itself is not changed. ``arviz.loo(with_log_likelihood(fit))`` then works.
    """
    tree = fit.idata.copy()
    ll = log_likelihood(fit)
    tree["log_likelihood"] = xr.DataTree(xr.Dataset({"y": ll}))
    return tree


# ----------------------------------------------------------------------------- summaries


def predict(
    fit: Fit,
    data: pd.DataFrame | dict[str, Any] | None = None,
    *,
    kind: PredictKind = "mean",
    prob: float = 0.94,
    random_seed: int | np.random.Generator | None = None,
    new_levels: NewLevels = "population",
) -> pd.DataFrame:
    r"""Posterior mean, sd and equal-tailed interval of a prediction for every row.

    Parameters
    ----------
    fit
        A fitted model.
    data
        New rows; ``None`` uses the fit's own rows.
    kind
        ``"linear"``: the linear predictor :math:`\eta` (brms ``posterior_linpred``);
        ``"mean"``: the expected response :math:`g^{-1}(\eta)`, e.g. a probability (brms
        ``posterior_epred``, bambi ``kind="response_params"``); ``"response"``: replicated
        responses, which add the family's noise (brms ``posterior_predict``, bambi
        ``kind="response"``).
    prob
        Probability of the equal-tailed interval (default 0.94, as every hierbayes summary).
    random_seed
        Seed for ``kind="response"`` and ``new_levels="sample"``.
    new_levels
        See :func:`linear_predictor`.

    Returns
    -------
    pandas.DataFrame
        Indexed like the rows (the data's own index), columns ``mean``, ``sd``, ``lower``,
        ``upper``.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1; received {prob}.")
    if kind == "response":
        values = posterior_predictive(fit, random_seed=random_seed, data=data, new_levels=new_levels).values
    elif kind in ("linear", "mean"):
        values = linear_predictor(fit, data, new_levels=new_levels, random_seed=random_seed).values
        if kind == "mean":  # the family's E[y | eta] (inverse link; lognormal exp(eta + sigma^2/2), ...)
            shape = values.shape
            flat_eta = values.reshape(-1, shape[-1])
            mean = get_family(fit.spec.family).response_mean(flat_eta, str(fit.spec.link), _family_params(fit, slice(None)))
            values = np.asarray(mean).reshape(shape)
    else:
        raise ValueError(f"kind must be 'linear', 'mean' or 'response'; received {kind!r}.")
    flat = values.reshape(-1, values.shape[-1]).astype(float)
    lo, hi = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    index = fit.design.data.index if data is None else as_frame(data).index
    return pd.DataFrame(
        {"mean": flat.mean(axis=0), "sd": flat.std(axis=0, ddof=1), "lower": lo, "upper": hi}, index=index
    )

