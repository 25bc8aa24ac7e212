"""Odds/rate ratios, linear contrasts (safe parser) and population-averaged effects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import expit

import hierbayes as hb
from hierbayes.summaries.contrasts import ATTENUATION_C, parse_contrast


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {
            "y": rng.integers(0, 2, n),
            "cnt": rng.poisson(2.0, n),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "x": rng.normal(size=n),
            "g": np.repeat(np.arange(8), 5),
            "h": np.repeat(np.arange(8), 5) * 10 + (np.arange(n) % 5) // 2,  # h nested in g, 1-2 rows each
        }
    )


def _correlated_fit(synthetic_fit, frame, rho, family="bernoulli", response="y", chains=2, draws=1000):
    rng = np.random.default_rng(5)
    cov = np.array([[1.0, 0.0, 0.0], [0.0, 0.04, rho * 0.04], [0.0, rho * 0.04, 0.04]])
    beta = rng.multivariate_normal([0.1, 0.5, 0.3], cov, size=(chains, draws))
    vals = {"beta": beta, "sd_g": [1.0], "u_g": np.zeros((8, 1))}
    return synthetic_fit(f"{response} ~ a + b + (1 | g)", frame, vals, family=family, chains=chains, draws=draws)


# ----------------------------------------------------------------------------- parser


def test_parse_linear_combinations():
    names = ["Intercept", "a", "b"]
    assert parse_contrast("a + b", names) == {"a": 1.0, "b": 1.0}
    assert parse_contrast("a - b", names) == {"a": 1.0, "b": -1.0}
    assert parse_contrast("2*a - b", names) == {"a": 2.0, "b": -1.0}
    assert parse_contrast("(a + b) / 2", names) == {"a": 0.5, "b": 0.5}
    assert parse_contrast("-a + 3*(b - a)*0.5", names) == {"a": -2.5, "b": 1.5}
    assert parse_contrast("Intercept + a - a + b", names) == {"Intercept": 1.0, "b": 1.0}


def test_parse_names_that_are_not_identifiers():
    names = ["Intercept", "C(g)[T.b]", "x:z", "np.log(w)"]
    assert parse_contrast("C(g)[T.b] - x:z", names) == {"C(g)[T.b]": 1.0, "x:z": -1.0}
    assert parse_contrast("`x:z` + 2*`C(g)[T.b]`", names) == {"x:z": 1.0, "C(g)[T.b]": 2.0}
    assert parse_contrast("np.log(w)", names) == {"np.log(w)": 1.0}


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("__import__('os')", "function calls are not allowed"),
        ("__import__('os').system('true')", "not allowed"),
        ("a.__class__", "attribute access is not allowed"),
        ("a[0]", "indexing is not allowed"),
        ("a ** 2", "operator Pow is not allowed"),
        ("a * b", "not linear"),
        ("a / b", "not linear"),
        ("a + 1", "constant term"),
        ("a - a", "cancel"),
        ("a +", "not a valid expression"),
        ("", "empty"),
        ("lambda: a", "Lambda is not allowed"),
        ("c + a", r"'c' is not a coefficient.*Coefficients: Intercept, a, b"),
        ("aa + b", r"Did you mean 'a'"),
    ],
)
def test_parse_rejects(expr, match):
    with pytest.raises(hb.SpecError, match=match):
        parse_contrast(expr, ["Intercept", "a", "b"])


# ----------------------------------------------------------------------------- contrast


def test_contrast_is_the_draw_by_draw_combination(synthetic_fit, frame):
    fit = _correlated_fit(synthetic_fit, frame, rho=0.3)
    beta = fit.posterior["beta"]
    res = hb.contrast(fit, "2*a - b + Intercept")
    expected = 2 * beta.sel(coef="a") - beta.sel(coef="b") + beta.sel(coef="Intercept")
    np.testing.assert_allclose(res.draws.values, expected.values, rtol=0, atol=1e-13)  # summation order only
    assert res.weights == {"a": 2.0, "b": -1.0, "Intercept": 1.0}
    est = res.table.loc["estimate"]
    assert est["mean"] == pytest.approx(float(expected.mean()), abs=1e-12)
    lo, hi = np.quantile(expected.values, [0.03, 0.97])
    assert (est["lower"], est["upper"]) == pytest.approx((lo, hi), abs=1e-12)
    ratio = res.table.loc["odds_ratio"]
    assert ratio["median"] == pytest.approx(float(np.exp(np.median(expected.values))), rel=1e-9)
    assert "Contrast" in str(res)


def test_contrast_uses_the_joint_posterior(synthetic_fit, frame):
    """With corr(a, b) = -0.8 the sum is more precise than a sum of independent draws."""
    fit = _correlated_fit(synthetic_fit, frame, rho=-0.8)
    res = hb.contrast(fit, "a + b", prob=0.94)
    beta = fit.posterior["beta"]
    rng = np.random.default_rng(0)
    a = rng.permutation(beta.sel(coef="a").values.ravel())
    b = rng.permutation(beta.sel(coef="b").values.ravel())
    lo, hi = np.quantile(a + b, [0.03, 0.97])
    width = res.table.loc["estimate", "upper"] - res.table.loc["estimate", "lower"]
    # sd of the sum: 0.2 * sqrt(2 - 1.6) = 0.126 jointly, 0.2 * sqrt(2) = 0.283 independently
    assert width < 0.6 * (hi - lo)
    assert res.table.loc["estimate", "sd"] == pytest.approx(0.2 * np.sqrt(0.4), rel=0.1)


def test_contrast_unknown_name_lists_coefficients(synthetic_fit, frame):
    fit = _correlated_fit(synthetic_fit, frame, rho=0.0, draws=10)
    with pytest.raises(hb.SpecError, match="Coefficients: Intercept, a, b"):
        hb.contrast(fit, "kid2p + a")


def test_contrast_rate_ratio_for_log_link(synthetic_fit, frame):
    fit = _correlated_fit(synthetic_fit, frame, rho=0.0, family="poisson", response="cnt", draws=50)
    res = hb.contrast(fit, "a - b")
    assert list(res.table.index) == ["estimate", "rate_ratio"]


# ----------------------------------------------------------------------------- odds and rate ratios


def test_odds_ratios_and_rate_ratios(synthetic_fit, frame):
    fit = _correlated_fit(synthetic_fit, frame, rho=0.0, draws=200)
    table = hb.odds_ratios(fit)
    assert list(table.index) == ["Intercept", "a", "b"]
    expected = np.exp(fit.posterior["beta"].sel(coef="a").values)
    assert table.loc["a", "mean"] == pytest.approx(expected.mean(), rel=1e-12)
    assert table.loc["a", "median"] == pytest.approx(np.median(expected), rel=1e-12)
    assert table.loc["a", "p_gt_1"] == pytest.approx(np.mean(expected > 1))
    with pytest.raises(hb.SpecError, match="log links"):
        hb.rate_ratios(fit)
    pois = _correlated_fit(synthetic_fit, frame, rho=0.0, family="poisson", response="cnt", draws=20)
    with pytest.raises(hb.SpecError, match=r"logit link.*rate ratio.*hb\.rate_ratios"):
        hb.odds_ratios(pois)
    rr = hb.rate_ratios(pois)
    assert list(rr.index) == ["Intercept", "a", "b"]
    assert list(rr["quantity"]) == ["baseline rate", "rate ratio", "rate ratio"]
    assert np.isnan(rr.loc["Intercept", "p_gt_1"])


def test_odds_ratio_intercept_is_the_baseline_odds_not_a_ratio(synthetic_fit, frame):
    """Issue 13: the intercept is reported as the baseline odds, with no P(ratio > 1)."""
    fit = _correlated_fit(synthetic_fit, frame, rho=0.0, draws=50)
    table = hb.odds_ratios(fit)
    assert table.loc["Intercept", "quantity"] == "baseline odds"
    assert np.isnan(table.loc["Intercept", "p_gt_1"])
    assert (table.loc[["a", "b"], "quantity"] == "odds ratio").all()
    odds = np.exp(fit.posterior["beta"].sel(coef="Intercept").values)
    assert table.loc["Intercept", "mean"] == pytest.approx(odds.mean(), rel=1e-12)


def test_odds_ratios_reject_probit(synthetic_fit, frame):
    vals = {"beta": [0.0, 0.1, 0.2], "sd_g": [1.0], "u_g": np.zeros((8, 1))}
    fit = synthetic_fit("y ~ a + b + (1 | g)", frame, vals, family="bernoulli", link="probit")
    with pytest.raises(hb.SpecError, match="probit"):
        hb.odds_ratios(fit)


# ----------------------------------------------------------------------------- population averaged


def _logistic_normal(eta, sd, n=80):
    """E[expit(eta + sd * e)], e ~ N(0, 1), by Gauss-Hermite quadrature."""
    x, w = hermegauss(n)
    return float(np.sum(w * expit(eta + sd * x)) / np.sqrt(2 * np.pi))


def _odds(p):
    return p / (1 - p)


@pytest.mark.parametrize(
    ("formula", "sds", "total_sd"),
    [
        ("y ~ x + (1 | g)", {"sd_g": [1.5]}, 1.5),
        ("y ~ x + (1 | g/h)", {"sd_g": [1.0], "sd_g:h": [1.2]}, np.sqrt(1.0 + 1.44)),
    ],
)
def test_population_averaged_matches_quadrature(synthetic_fit, frame, formula, sds, total_sd):
    chains, draws, n_mc = 1, 200, 500
    b0, b1 = -0.5, 1.0
    vals = {"beta": [b0, b1], **sds}
    for name in sds:
        g = name[3:]
        n_levels = len(frame[g.split(":")].drop_duplicates())
        vals[f"u_{g}"] = np.zeros((n_levels, 1))
    fit = synthetic_fit(formula, frame, vals, family="bernoulli", chains=chains, draws=draws)
    res = hb.population_averaged(fit, {"x": [0.0, 1.0]}, coef="x", n_draws=n_mc, random_seed=11)
    for i, x in enumerate((0.0, 1.0)):
        exact = _logistic_normal(b0 + b1 * x, total_sd)
        # Monte Carlo se of the mean over draws x n_mc independent draws of u
        x_nodes = np.random.default_rng(0).normal(size=100_000)
        mc_se = np.std(expit(b0 + b1 * x + total_sd * x_nodes)) / np.sqrt(draws * n_mc)
        assert abs(res.table.loc[i, "marginal_mean"] - exact) < 4 * mc_se
        assert res.table.loc[i, "conditional_mean"] == pytest.approx(expit(b0 + b1 * x), rel=1e-12)
    p0, p1 = _logistic_normal(b0, total_sd), _logistic_normal(b0 + b1, total_sd)
    exact_or = _odds(p1) / _odds(p0)
    eff = res.effects.loc[0]
    assert eff["measure"] == "odds_ratio"
    assert eff["conditional_mean"] == pytest.approx(np.exp(b1), rel=1e-12)
    # delta-method bound on the Monte Carlo se of log OR from the two probabilities' se
    se_log_or = sum(0.5 / np.sqrt(draws * n_mc) / (p * (1 - p)) for p in (p0, p1))
    assert abs(np.log(eff["marginal_mean"]) - np.log(exact_or)) < 4 * se_log_or
    # attenuated: the marginal odds ratio is closer to 1 than the conditional one
    assert 1 < eff["marginal_mean"] < eff["conditional_mean"]
    assert eff["attenuation"] == pytest.approx(np.log(exact_or) / b1, abs=4 * se_log_or)
    assert eff["approx_attenuation"] == pytest.approx(1 / np.sqrt(1 + ATTENUATION_C**2 * total_sd**2), rel=1e-12)


def test_attenuation_approximation_is_close_to_quadrature():
    """The documented approximation beta / sqrt(1 + c^2 sd^2) is within 0.05 of the exact factor."""
    for sd in (0.5, 1.0, 1.5, 2.0, 2.7):
        for b0 in (-1.5, -0.5, 0.5):
            p0, p1 = _logistic_normal(b0, sd), _logistic_normal(b0 + 1.0, sd)
            exact = np.log(_odds(p1) / _odds(p0))
            assert abs(exact - 1 / np.sqrt(1 + ATTENUATION_C**2 * sd**2)) < 0.05


def test_population_averaged_is_reproducible_and_checks_coef(synthetic_fit, frame):
    vals = {"beta": [0.0, 0.5], "sd_g": [1.0], "u_g": np.zeros((8, 1))}
    fit = synthetic_fit("y ~ x + (1 | g)", frame, vals, family="bernoulli", chains=1, draws=20)
    one = hb.population_averaged(fit, {"x": 0.3}, n_draws=50, random_seed=4)
    two = hb.population_averaged(fit, {"x": 0.3}, n_draws=50, random_seed=4)
    np.testing.assert_array_equal(one.marginal.values, two.marginal.values)
    assert one.effects is None and one.table.shape == (1, 6)
    with pytest.raises(hb.DataError, match="'z' is not a column"):
        hb.population_averaged(fit, {"x": 0.3}, coef="z", random_seed=1)
    with pytest.raises(hb.SpecError, match="does not enter the fixed part"):
        hb.population_averaged(fit, {"x": 0.3, "a": 1.0}, coef="a", random_seed=1)


def test_parse_by_formulaic_extras():
    """formulaic's LinearConstraints reads ``a = b`` as ``a - b``; several combinations and comparisons are refused."""
    names = ["Intercept", "a", "b"]
    assert parse_contrast("a = b", names) == {"a": 1.0, "b": -1.0}
    with pytest.raises(hb.SpecError, match="one linear combination at a time"):
        parse_contrast("a, b", names)
    with pytest.raises(hb.SpecError, match=r"operator '>' is not allowed .* write 'a - b' and read p_positive"):
        parse_contrast("a > b", names)
