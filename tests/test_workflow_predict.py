"""Regression tests (issue 13): new data are transformed exactly as the fitted data were.

Rows copied from the fitted data must give the fitted linear predictor exactly, for stateful
transforms (``center``, ``scale``), whitelisted functions (``sqrt``) and categorical slopes, and
an unseen level gets the population prediction (``u = 0``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.summaries.prediction import prediction_rows


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    df = hb.datasets.load("sleepstudy")
    df = df[df["Subject"].astype(str).isin(sorted(df["Subject"].astype(str).unique())[:5])].copy()
    df["phase"] = np.where(df["Days"] < 3, "early", np.where(df["Days"] < 7, "mid", "late"))
    return df.reset_index(drop=True)


def _values(design, rng):
    values = {"beta": rng.normal(size=(1, 3, len(design.fixed_names))), "sigma": 10.0}
    for g in design.groups:
        q = len(g.coef_names)
        values[f"sd_{g.name}"] = np.ones(q)
        values[f"u_{g.name}"] = rng.normal(size=(1, 3, g.n_levels, q))
    return values


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + (center(Days) | Subject)",
        "Reaction ~ Days + (scale(Days) | Subject)",
        "Reaction ~ Days + (sqrt(Days) | Subject)",
        "Reaction ~ sqrt(Days) + center(Days) + (1 | Subject)",
        "Reaction ~ Days + (phase | Subject)",
        "Reaction ~ Days + (0 + C(phase) | Subject)",
    ],
)
def test_new_rows_copied_from_the_fit_give_the_fitted_linear_predictor(sleep, synthetic_fit, formula):
    spec = hb.parse_formula(formula)
    design = hb.make_design(spec, sleep)
    fit = synthetic_fit(formula, sleep, _values(design, np.random.default_rng(1)))
    fitted = hb.linear_predictor(fit).values
    # the design arrays of the copied rows are bit-for-bit the fitted ones
    rows = prediction_rows(fit, sleep.copy())
    np.testing.assert_array_equal(rows.X, design.X)
    for gr, g in zip(rows.groups, design.groups, strict=True):
        np.testing.assert_array_equal(gr.Z, g.Z)
        np.testing.assert_array_equal(gr.index, g.index)
    # every row at once, one row at a time (scale() of one row would be NaN if refitted), and the
    # rows of one categorical level only (a fresh model matrix would drop the other levels)
    new_all = hb.linear_predictor(fit, sleep.copy()).values
    np.testing.assert_array_equal(new_all, fitted)
    for i in (0, 9, 17):
        one = hb.linear_predictor(fit, sleep.iloc[[i]].copy()).values
        np.testing.assert_allclose(one[..., 0], fitted[..., i], rtol=1e-13, atol=0)  # matmul rounding only
    late = np.flatnonzero(sleep["phase"].to_numpy() == "late")
    sub = hb.linear_predictor(fit, sleep.iloc[late].copy()).values
    np.testing.assert_allclose(sub, fitted[..., late], rtol=1e-13, atol=0)


@pytest.mark.parametrize(
    "formula", ["Reaction ~ Days + (center(Days) | Subject)", "Reaction ~ Days + (phase | Subject)"]
)
def test_unseen_level_gets_the_population_prediction(sleep, synthetic_fit, formula):
    spec = hb.parse_formula(formula)
    design = hb.make_design(spec, sleep)
    values = _values(design, np.random.default_rng(2))
    fit = synthetic_fit(formula, sleep, values)
    new = sleep.iloc[[3, 15]].copy()
    new["Subject"] = 99999
    eta = hb.linear_predictor(fit, new).values
    beta = np.asarray(values["beta"])[0]  # (draws, coef)
    X = np.asarray(design.fixed_model_spec.get_model_matrix(new), dtype=float)
    np.testing.assert_allclose(eta[0], beta @ X.T, rtol=0, atol=1e-12)


def test_new_data_with_a_missing_predictor_value_names_the_column(sleep, synthetic_fit):
    formula = "Reaction ~ Days + (center(Days) | Subject)"
    design = hb.make_design(hb.parse_formula(formula), sleep)
    fit = synthetic_fit(formula, sleep, _values(design, np.random.default_rng(3)))
    new = sleep.iloc[[0, 1]].copy()
    new["Days"] = [1.0, np.nan]
    with pytest.raises(hb.DataError, match="Days"):
        hb.linear_predictor(fit, new)


def test_pymc_model_posterior_predictive_keeps_the_posterior_random_effects(sleep, synthetic_fit, caplog):
    """Issue 13: PyMC's sample_posterior_predictive must sample only y, not redraw z/u from the prior.

    The synthetic posterior holds only what a collapsed fit reports (beta, sd, corr, u, sigma):
    ``beta_std``, ``corr_chol`` and ``z`` are derived from it.
    """
    import logging

    import pymc as pm

    formula = "Reaction ~ Days + (Days | Subject)"
    design = hb.make_design(hb.parse_formula(formula), sleep)
    rng = np.random.default_rng(4)
    values = _values(design, rng) | {"corr_Subject": np.array([[1.0, 0.3], [0.3, 1.0]])}
    values["sd_Subject"] = np.array([20.0, 5.0])
    fit = synthetic_fit(formula, sleep, values)
    model, idata = hb.pymc_model(fit)
    assert {rv.name for rv in model.free_RVs} <= set(idata["posterior"].data_vars)
    assert hb.pymc_model(fit)[0] is model  # cached on the fit
    with caplog.at_level(logging.INFO, logger="pymc"), model:
        pp = pm.sample_posterior_predictive(
            idata, var_names=["y", "u_Subject", "beta"], random_seed=1, progressbar=False
        )
    assert "Sampling: [y]" in caplog.text
    replicated = pp["posterior_predictive"]
    np.testing.assert_allclose(replicated["u_Subject"].values, fit.posterior["u_Subject"].values, atol=1e-9)
    np.testing.assert_allclose(replicated["beta"].values, fit.posterior["beta"].values, atol=1e-9)


def test_add_log_prior_makes_psense_work(sleep, synthetic_fit):
    """Prior sensitivity by power-scaling runs on fit.idata once log_prior and log_likelihood are added."""
    import warnings

    import arviz_stats

    formula = "Reaction ~ Days + (Days | Subject)"
    design = hb.make_design(hb.parse_formula(formula), sleep)
    rng = np.random.default_rng(5)
    draws = 100
    values = {
        "beta": rng.normal([250.0, 10.0], [5.0, 1.0], size=(1, draws, 2)),
        "sd_Subject": np.abs(rng.normal([20.0, 5.0], [2.0, 0.5], size=(1, draws, 2))),
        "corr_Subject": np.array([[1.0, 0.2], [0.2, 1.0]]),
        "u_Subject": rng.normal(0, [20.0, 5.0], size=(1, draws, design.groups[0].n_levels, 2)),
        "sigma": np.abs(rng.normal(25.0, 1.0, size=(1, draws))),
    }
    fit = synthetic_fit(formula, sleep, values, draws=draws)
    hb.add_log_likelihood(fit)
    hb.add_log_prior(fit)
    lp = fit.idata["log_prior"]
    assert set(lp.data_vars) == {"beta_std", "sd_Subject", "corr_chol_Subject", "sigma"}
    assert hb.resolve_priors(design).lkj_eta == 1.0
    # LKJ(eta = 1) of a 2 x 2 correlation is uniform on [-1, 1]: log density log(1/2) at every draw
    np.testing.assert_allclose(lp["corr_chol_Subject"].values, np.log(0.5), atol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = arviz_stats.psense_summary(fit.idata, var_names=["beta", "sigma"])
    assert len(table) >= 2
