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
With ``data=`` the fixed-effect columns and every random term's varying columns are rebuilt by
the fit's own formulaic model specs (``Design.fixed_model_spec``, ``GroupDesign.model_spec``):
the same coding of categorical columns (a new frame holding one level still gets every fitted
column), the same state of stateful transforms (``center`` and ``scale`` use the *fitted* data's
mean and sd, not the new rows') and the same whitelisted functions
(:data:`hierbayes.spec.transforms.EVAL_CONTEXT`), so a row copied from the fitted data gets
exactly its fitted :math:`x_i` and :math:`z_{ik}`. Each row's group levels are
matched to the fitted levels **by label** (the column values as strings, joined by ``:`` for
nested terms such as ``school:child``). A level the model has not seen gets

* ``new_levels="population"`` (default): :math:`u = 0`, i.e. the prediction for an *average*
  member of the population of levels (lme4's ``re.form`` with ``allow.new.levels=TRUE``);
* ``new_levels="sample"``: a fresh :math:`u \sim N(0, \Omega_k^{(s)})` per posterior draw,
  i.e. a prediction for a *new, random* level that carries the between-level uncertainty.

For a nested term only the unseen part is new: a new mother in a known community keeps the
community's effect. ``include_group_effects=False`` predicts at the population level, every
:math:`u = 0`, and needs no grouping columns (brms ``re_formula = NA``).

Memory: the returned arrays hold :math:`S \times n` numbers (7230 rows x 4000 draws is
230 MB in float64); intermediate arrays are built in chunks of posterior draws.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from formulaic import model_matrix

from hierbayes.design import GroupDesign, add_expression_columns
from hierbayes.exceptions import DataError, SpecError
from hierbayes.families import check_response, get_family, inverse_link
from hierbayes.inference.pointwise import (
    GroupRows,
    PredictionRows,
    eta_chunks,
    family_params,
    group_cov_cholesky,
    intercept_only,
    log_likelihood_of_rows,
    replicate_rows,
    rows_of_fit,
    to_array,
)
from hierbayes.inference.result import Fit
from hierbayes.spec.transforms import EVAL_CONTEXT

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


def _check_finite_columns(values: np.ndarray, names: tuple[str, ...], data: pd.DataFrame, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad.any(axis=0))[0])
        row = data.index[int(np.flatnonzero(bad[:, k])[0])]
        raise DataError(
            f"Column {names[k]!r} of the {what} is not finite for the new data (e.g. row {row!r}): a "
            "missing value in a predictor, or a transform undefined there (log or sqrt of 0 or a "
            "negative number). Fill or drop those rows."
        )


def _varying_columns(g: GroupDesign, data: pd.DataFrame) -> np.ndarray:
    """``Z`` of the new rows, built by the fitted term's own formulaic spec.

    Stateful transforms (``center``, ``scale``, ``poly``, splines) keep the fitted data's
    state and categorical columns keep the fitted levels, so a row copied from the fitted
    data gets exactly its fitted ``Z``.
    """
    try:
        with np.errstate(all="ignore"):
            if g.model_spec is not None:
                mm = g.model_spec.get_model_matrix(data, context=EVAL_CONTEXT)
            else:  # a GroupDesign made by hand, without formulaic's spec
                rhs = " + ".join((["1"] if g.term.intercept else ["0"]) + list(g.term.terms))
                mm = model_matrix(rhs, data, na_action="ignore", context=EVAL_CONTEXT)
    except Exception as err:
        raise DataError(
            f"Could not build the varying columns of {g.term.formula()} for the new data: {err}. Give the "
            "new data the columns (and categorical levels) of the fitted data."
        ) from None
    names = tuple(str(c) for c in mm.columns)
    if names != g.coef_names:
        raise DataError(
            f"The varying columns of {g.term.formula()} in the new data are {names}, but the model has "
            f"{g.coef_names}; give the new data the same columns (and categorical levels) as the fitted data."
        )
    Z = np.asarray(mm, dtype=float)
    if Z.shape[0] != len(data):
        raise DataError(
            f"The new data give {Z.shape[0]} rows of the varying columns of {g.term.formula()} for "
            f"{len(data)} rows; check for missing values in its predictors."
        )
    _check_finite_columns(Z, names, data, f"varying columns of {g.term.formula()}")
    return Z


def _group_rows(g: GroupDesign, data: pd.DataFrame, fitted: pd.DataFrame) -> GroupRows:
    for col in g.term.factor:
        _need(
            data,
            col,
            f"grouping factor of {g.term.formula()}; or predict at the population level, without it, "
            "with include_group_effects=False",
        )
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
        Z = _varying_columns(g, data)
    else:
        Z = np.ones((len(data), 1))
    return GroupRows(design=g, index=index, new_index=new_index, n_new=n_new, Z=Z, intercept_only=intercept_only(Z))


def as_frame(data: Any) -> pd.DataFrame:
    """New data as a DataFrame: a DataFrame as is, a dict of columns (scalars are one row)."""
    if isinstance(data, dict):
        data = pd.DataFrame({k: np.atleast_1d(v) for k, v in data.items()})
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame or a dict of columns; received {type(data).__name__}.")
    return data


def _rows_of_data(fit: Fit, data: Any, include_group_effects: bool = True) -> PredictionRows:
    data = as_frame(data)
    if len(data) == 0:
        raise DataError("The new data frame is empty (0 rows); nothing to predict.")
    design, spec = fit.design, fit.spec
    data = add_expression_columns(spec, data, strict=False)  # log(y), size - incidence, log(exposure)
    if design.X.shape[1] > 0:
        if design.fixed_model_spec is None:  # pragma: no cover - make_design always sets it
            raise SpecError("This fit's design has no formulaic model spec; cannot rebuild X for new data.")
        try:
            with np.errstate(all="ignore"):
                mm = design.fixed_model_spec.get_model_matrix(data, context=EVAL_CONTEXT)
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
        _check_finite_columns(X, design.fixed_names, data, "fixed-effect columns")
    else:
        X = np.zeros((len(data), 0))
    groups = tuple(_group_rows(g, data, design.data) for g in design.groups) if include_group_effects else ()
    offset = None
    if spec.offset is not None:
        _need(data, spec.offset, "the offset")
        offset = np.asarray(data[spec.offset], dtype=float)
    y = None
    trials = None
    response_cols = [c for c in (spec.response, spec.trials, spec.failures) if c is not None]
    if all(c in data.columns for c in response_cols) and not data[response_cols].isna().any().any():
        y, trials = check_response(spec.family, data, spec.response, trials=spec.trials, failures=spec.failures)
    if (
        get_family(spec.family).needs_trials
        and trials is None
        and spec.trials is not None
        and spec.trials in data.columns
    ):
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


def prediction_rows(fit: Fit, data: Any = None, *, include_group_effects: bool = True) -> PredictionRows:
    """The design arrays of the rows to predict: ``X``, per-term level index and ``Z``, offset, trials.

    ``data=None`` gives the fit's own rows; new data are built as the module docstring says.
    ``include_group_effects=False`` leaves every random term out (:math:`u = 0`, the grouping
    columns are not needed): brms ``re_formula = NA``, bambi ``include_group_specific=False``.
    """
    if data is None:
        rows = rows_of_fit(fit)
        return rows if include_group_effects else dataclasses.replace(rows, groups=())
    return _rows_of_data(fit, data, include_group_effects)


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


def _say_if_sample(fit: Fit, data: Any, out: xr.DataArray) -> xr.DataArray:
    """Note (in ``attrs["rows"]`` and the ``hierbayes`` log) that a Dask fit's own rows are a sample."""
    design = fit.design
    if data is None and design.is_sample:
        note = (
            f"computed on a seeded uniform random sample of {design.n_obs} of the {design.n_total} rows "
            f"(the fit's design; seed {fit.settings.get('random_seed')}); pass data= for other rows"
        )
        out.attrs["rows"] = note
        logging.getLogger("hierbayes").info("%s: %s", out.name, note)
    return out


def _eta(fit: Fit, rows: PredictionRows, new_levels: NewLevels, rng: np.random.Generator) -> np.ndarray:
    chains, draws, blocks = eta_chunks(fit, rows, _new_level_effects(fit, rows, new_levels, rng))
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
    include_group_effects: bool = True,
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
    include_group_effects
        ``False``: the population-level prediction :math:`x_i^\top\beta + o_i` with every
        random effect at 0; the new data need no grouping columns (brms ``re_formula = NA``).

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, obs)``, named ``"eta"``.
    """
    rows = prediction_rows(fit, data, include_group_effects=include_group_effects)
    rng = np.random.default_rng(random_seed)
    return to_array(fit, rows, _eta(fit, rows, new_levels, rng), "eta")


# ----------------------------------------------------------------------------- predictive draws


def posterior_predictive(
    fit: Fit,
    *,
    random_seed: int | np.random.Generator | None = None,
    data: pd.DataFrame | dict[str, Any] | None = None,
    new_levels: NewLevels = "population",
    include_group_effects: bool = True,
) -> xr.DataArray:
    """Replicated responses, one per posterior draw and row, on the response scale.

    Parameters
    ----------
    fit
        A fitted model.
    random_seed
        Seed or generator; the same seed gives the same replicates. ``None`` (default): seeded
        from the fit's own seed (``fit.settings["random_seed"]``), so calling it twice on one
        fit gives the same replicates; unseeded only when the fit itself had no seed.
    data
        New rows; ``None`` uses the fit's own rows. Binomial models need the trials column
        (or the successes and failures columns of ``cbind``), Gaussian models with a known sd
        the sd column.
    new_levels, include_group_effects
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
    rows = prediction_rows(fit, data, include_group_effects=include_group_effects)
    if random_seed is None:  # seeded from the fit: the same call gives the same draws
        random_seed = fit.settings.get("random_seed")
    rng = np.random.default_rng(random_seed)
    out = replicate_rows(fit, rows, rng, _new_level_effects(fit, rows, new_levels, rng))
    return _say_if_sample(fit, data, out)


def log_likelihood(
    fit: Fit,
    data: pd.DataFrame | dict[str, Any] | None = None,
    *,
    new_levels: NewLevels = "population",
    random_seed: int | np.random.Generator | None = None,
) -> xr.DataArray:
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
    new_levels
        For rows of levels the model has not seen: ``"population"`` (:math:`u = 0`) or
        ``"sample"`` (a fresh :math:`u \sim N(0, \Omega_k^{(s)})` per draw, what
        leave-one-group-out CV needs); see :func:`linear_predictor`.
    random_seed
        Seed for ``new_levels="sample"``.
        For a fit to Dask data, ``None`` means a seeded random sample of the rows, which
        ``attrs["rows"]`` of the result says.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, obs)``, named ``"y"``.
    """
    rows = prediction_rows(fit, data)
    rng = np.random.default_rng(random_seed)
    out = log_likelihood_of_rows(fit, rows, _new_level_effects(fit, rows, new_levels, rng), data=data)
    return _say_if_sample(fit, data, out)


def with_log_likelihood(fit: Fit) -> xr.DataTree:
    """A copy of ``fit.idata`` with a ``log_likelihood`` group (variable ``"y"``) for ArviZ LOO.

    The fit itself is not changed. ``arviz.loo(with_log_likelihood(fit))`` then works.
    """
    tree = fit.idata.copy()
    if "log_likelihood" in tree.children and "y" in tree["log_likelihood"].data_vars:
        return tree  # made by hb.fit(..., log_likelihood=True) or hb.add_log_likelihood: the same numbers
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
    include_group_effects: bool = True,
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
    new_levels, include_group_effects
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
        values = posterior_predictive(
            fit, random_seed=random_seed, data=data, new_levels=new_levels, include_group_effects=include_group_effects
        ).values
    elif kind in ("linear", "mean"):
        values = linear_predictor(
            fit, data, new_levels=new_levels, random_seed=random_seed, include_group_effects=include_group_effects
        ).values
        if kind == "mean":  # the family's E[y | eta] (inverse link; lognormal exp(eta + sigma^2/2), ...)
            shape = values.shape
            flat_eta = values.reshape(-1, shape[-1])
            mean = get_family(fit.spec.family).response_mean(
                flat_eta, str(fit.spec.link), family_params(fit, slice(None))
            )
            values = np.asarray(mean).reshape(shape)
    else:
        raise ValueError(f"kind must be 'linear', 'mean' or 'response'; received {kind!r}.")
    flat = values.reshape(-1, values.shape[-1]).astype(float)
    lo, hi = np.quantile(flat, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    index = fit.design.data.index if data is None else as_frame(data).index
    return pd.DataFrame(
        {"mean": flat.mean(axis=0), "sd": flat.std(axis=0, ddof=1), "lower": lo, "upper": hi}, index=index
    )
