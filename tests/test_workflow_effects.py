"""Conditional effects and average comparisons (issue 13)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import hierbayes as hb


@pytest.fixture(scope="module")
def sleep_fit(synthetic_fit):
    df = hb.datasets.load("sleepstudy")
    design = hb.make_design(hb.parse_formula("Reaction ~ Days + (Days | Subject)"), df)
    rng = np.random.default_rng(3)
    vals = {
        "beta": rng.normal([250.0, 10.0], [5.0, 1.0], size=(2, 30, 2)),
        "u_Subject": rng.normal(0, [20.0, 5.0], size=(2, 30, design.groups[0].n_levels, 2)),
        "sd_Subject": [20.0, 5.0],
        "corr_Subject": np.eye(2),
        "sigma": 25.0,
    }
    return synthetic_fit("Reaction ~ Days + (Days | Subject)", df, vals, chains=2, draws=30)


def test_conditional_effects_population_level_equals_the_hand_computation(sleep_fit):
    table = hb.conditional_effects(sleep_fit, "Days", n_points=10)
    days = np.linspace(0, 9, 10)
    beta = sleep_fit.posterior["beta"].values.reshape(-1, 2)
    hand = beta[:, :1] + beta[:, 1:] * days  # (S, grid)
    np.testing.assert_allclose(table["Days"], days)
    np.testing.assert_allclose(table["mean"], hand.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["lower"], np.quantile(hand, 0.03, axis=0), rtol=1e-12)
    np.testing.assert_allclose(table["upper"], np.quantile(hand, 0.97, axis=0), rtol=1e-12)


def test_conditional_effects_by_group_adds_each_levels_effects(sleep_fit):
    table = hb.conditional_effects(sleep_fit, "Days", by="Subject", n_points=4)
    g = sleep_fit.design.groups[0]
    assert len(table) == 4 * g.n_levels
    beta = sleep_fit.posterior["beta"].values.reshape(-1, 2)
    u = sleep_fit.posterior["u_Subject"].values.reshape(-1, g.n_levels, 2)
    j = 5
    part = table[table["Subject"] == g.levels[j]]
    days = part["Days"].to_numpy()
    hand = (beta[:, :1] + u[:, j, :1]) + (beta[:, 1:] + u[:, j, 1:]) * days
    np.testing.assert_allclose(part["mean"], hand.mean(axis=0), rtol=1e-12)
    fig = hb.plot_conditional_effects(table)
    assert fig.axes


def test_conditional_effects_errors_name_the_column(sleep_fit):
    with pytest.raises(hb.DataError, match="'Dayz' is not a predictor"):
        hb.conditional_effects(sleep_fit, "Dayz")


def test_population_level_prediction_needs_no_grouping_column(sleep_fit):
    new = pd.DataFrame({"Days": [0.0, 5.0]})
    with pytest.raises(hb.DataError, match="include_group_effects=False"):
        hb.predict(sleep_fit, new)
    pred = hb.predict(sleep_fit, new, include_group_effects=False, kind="linear")
    beta = sleep_fit.posterior["beta"].values.reshape(-1, 2)
    np.testing.assert_allclose(pred["mean"], (beta[:, :1] + beta[:, 1:] * [0.0, 5.0]).mean(axis=0), rtol=1e-12)


def test_average_comparison_of_a_gaussian_model_is_the_slope(sleep_fit):
    res = hb.average_comparison(sleep_fit, "Days", population_averaged=False)
    beta = sleep_fit.posterior["beta"].values.reshape(-1, 2)
    assert len(res) == 1 and res.loc["Days", "comparison"] == "difference"
    g = sleep_fit.design.groups[0]
    u_slope = sleep_fit.posterior["u_Subject"].values.reshape(-1, g.n_levels, 2)[:, g.index, 1]
    # in-sample average over the rows' own subjects: beta_Days + mean_i u_{j[i], Days}
    assert res.loc["Days", "mean"] == pytest.approx((beta[:, 1] + u_slope.mean(axis=1)).mean(), rel=1e-9)


@pytest.mark.slow
def test_population_averaged_odds_ratio_recovers_the_marginal_truth():
    rng = np.random.default_rng(5)
    n_groups, per = 60, 20
    b0, b1, sd = -0.5, 1.0, 1.5
    g = np.repeat(np.arange(n_groups), per)
    x = rng.integers(0, 2, g.size)
    u = rng.normal(0, sd, n_groups)
    y = rng.binomial(1, expit(b0 + b1 * x + u[g]))
    df = pd.DataFrame({"g": g, "x": x, "y": y})
    # the marginal truth: average probabilities over the population of groups (quadrature)
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()
    p1, p0 = (weights * expit(b0 + b1 + sd * nodes)).sum(), (weights * expit(b0 + sd * nodes)).sum()
    truth = (p1 / (1 - p1)) / (p0 / (1 - p0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hb.fit("y ~ x + (1 | g)", df, family="bernoulli", chains=2, draws=300, tune=300, random_seed=2,
                     progressbar=False)
    res = hb.average_comparison(fit, "x", n_draws=50, random_seed=1)
    row = res.loc["x"]
    assert row["comparison"] == "odds_ratio"
    assert row["lower"] < truth < row["upper"]
    assert row["mean"] < np.exp(fit.posterior["beta"].sel(coef="x").values).mean()  # attenuated
