"""Predictions, posterior predictive draws, pointwise log-likelihood and LOO comparison."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import hierbayes as hb
from hierbayes.summaries.prediction import group_cov_cholesky, inverse_link

CHAINS, DRAWS = 2, 40


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    n = 60
    g = np.repeat(np.arange(6), 10)
    x = rng.normal(size=n)
    trials = rng.integers(1, 12, n)
    return pd.DataFrame(
        {
            "g": g,
            "x": x,
            "yb": rng.integers(0, 2, n),
            "s": rng.binomial(trials, 0.4),
            "n": trials,
            "cnt": rng.poisson(3.0, n),
            "logE": np.log(rng.uniform(0.5, 2.0, n)),
            "yg": rng.normal(size=n),
            "se": rng.uniform(0.5, 2.0, n),
        }
    )


def _draws(rng, shape, scale=1.0, loc=0.0):
    return loc + scale * rng.normal(size=(CHAINS, DRAWS, *shape))


@pytest.fixture(scope="module")
def fits(frame, synthetic_fit):
    """Synthetic posteriors (draws varying) for every family."""
    rng = np.random.default_rng(1)

    def common(extra=None):
        vals = {
            "beta": _draws(rng, (2,), 0.3, np.array([-0.2, 0.5])),
            "sd_g": np.abs(_draws(rng, (1,), 0.1, 0.8)),
            "u_g": _draws(rng, (6, 1), 0.8),
        }
        vals.update(extra or {})
        return vals

    kw = {"chains": CHAINS, "draws": DRAWS}
    return {
        "bernoulli": synthetic_fit("yb ~ x + (1 | g)", frame, common(), family="bernoulli", **kw),
        "probit": synthetic_fit("yb ~ x + (1 | g)", frame, common(), family="bernoulli", link="probit", **kw),
        "binomial": synthetic_fit("s | trials(n) ~ x + (1 | g)", frame, common(), family="binomial", **kw),
        "poisson": synthetic_fit("cnt ~ x + offset(logE) + (1 | g)", frame, common(), family="poisson", **kw),
        "negbin": synthetic_fit(
            "cnt ~ x + (1 | g)", frame, common({"alpha": np.abs(_draws(rng, (), 1.0, 4.0))}),
            family="negative_binomial", **kw,
        ),
        "gaussian": synthetic_fit(
            "yg ~ x + (1 | g)", frame, common({"sigma": np.abs(_draws(rng, (), 0.1, 1.0))}), **kw
        ),
        "known_sigma": synthetic_fit("yg | se(se) ~ x + (1 | g)", frame, common(), **kw),
    }


def _eta_by_hand(fit):
    post = fit.posterior
    beta = post["beta"].values  # (c, d, p)
    u = post["u_g"].values[..., 0]  # (c, d, J)
    eta = beta @ fit.design.X.T + u[:, :, fit.design.groups[0].index]
    if fit.design.offset is not None:
        eta = eta + fit.design.offset
    return eta


# ----------------------------------------------------------------------------- linear predictor


@pytest.mark.parametrize("name", ["bernoulli", "poisson", "gaussian"])
def test_linear_predictor_equals_hand_computation(fits, name):
    fit = fits[name]
    eta = hb.linear_predictor(fit)
    assert eta.dims == ("chain", "draw", "obs")
    assert eta.shape == (CHAINS, DRAWS, fit.design.n_obs)
    np.testing.assert_allclose(eta.values, _eta_by_hand(fit), rtol=0, atol=1e-12)


def test_linear_predictor_new_data_known_and_unseen_levels(fits):
    fit = fits["poisson"]
    new = pd.DataFrame({"g": [2, 99], "x": [0.3, 0.3], "logE": [0.1, 0.1]})
    eta = hb.linear_predictor(fit, new).values
    post = fit.posterior
    fixed = post["beta"].values @ np.array([1.0, 0.3]) + 0.1
    np.testing.assert_allclose(eta[..., 0], fixed + post["u_g"].sel(g="2").values[..., 0], atol=1e-12)
    np.testing.assert_allclose(eta[..., 1], fixed, atol=1e-12)  # unseen level: u = 0


def test_nested_new_inner_level_keeps_the_outer_effect(synthetic_fit):
    df = pd.DataFrame(
        {"y": [0, 1, 1, 0, 1, 0], "x": [0.0, 1, 2, 3, 4, 5], "g": [1, 1, 1, 2, 2, 2], "h": [1, 1, 2, 3, 3, 4]}
    )
    vals = {
        "beta": [0.2, 0.0],
        "sd_g": [1.0],
        "sd_g:h": [1.0],
        "u_g": np.array([[0.5], [-0.5]]),
        "u_g:h": np.array([[0.1], [0.2], [0.3], [0.4]]),
    }
    fit = synthetic_fit("y ~ x + (1 | g/h)", df, vals, family="bernoulli")
    new = pd.DataFrame({"g": [2, 2.0, 7], "h": [4, 9, 1], "x": [0.0, 0.0, 0.0]})
    eta = hb.linear_predictor(fit, new).values[0, 0]
    # known g:h; float id 2.0 matches level "2" with new h; unseen g and g:h -> population level
    np.testing.assert_allclose(eta, [0.2 - 0.5 + 0.4, 0.2 - 0.5, 0.2], atol=1e-12)
    with pytest.raises(ValueError, match="new_levels"):
        hb.linear_predictor(fit, new, new_levels="zero")


def test_new_levels_sample_draws_from_the_group_distribution(frame, synthetic_fit):
    chains, draws = 2, 2000
    fit = synthetic_fit(
        "yb ~ x + (1 | g)", frame, {"beta": [0.0, 0.0], "sd_g": [1.7], "u_g": np.zeros((6, 1))},
        family="bernoulli", chains=chains, draws=draws,
    )
    new = {"g": ["new"], "x": [0.0]}
    eta = hb.linear_predictor(fit, new, new_levels="sample", random_seed=3).values.ravel()
    # sd of 4000 normal draws: standard error ~ 1.7 / sqrt(2 * 4000)
    assert abs(eta.std() - 1.7) < 4 * 1.7 / np.sqrt(2 * eta.size)
    assert abs(eta.mean()) < 4 * 1.7 / np.sqrt(eta.size)
    again = hb.linear_predictor(fit, new, new_levels="sample", random_seed=3).values.ravel()
    np.testing.assert_array_equal(eta, again)


def test_group_cov_cholesky_full_covariance(frame, synthetic_fit):
    corr = np.array([[1.0, -0.4], [-0.4, 1.0]])
    fit = synthetic_fit(
        "yg ~ x + (1 + x | g)", frame,
        {"beta": [0.0, 0.0], "sd_g": [2.0, 0.5], "corr_g": corr, "u_g": np.zeros((6, 2)), "sigma": 1.0},
    )
    L = group_cov_cholesky(fit, "g")
    omega = np.diag([2.0, 0.5]) @ corr @ np.diag([2.0, 0.5])
    np.testing.assert_allclose(L[0] @ L[0].T, omega, atol=1e-12)


def test_new_data_missing_column_is_a_data_error(fits):
    with pytest.raises(hb.DataError, match="logE"):
        hb.linear_predictor(fits["poisson"], pd.DataFrame({"g": [1], "x": [0.0]}))
    with pytest.raises(hb.DataError, match="'g'"):
        hb.linear_predictor(fits["poisson"], pd.DataFrame({"x": [0.0], "logE": [0.0]}))


# ----------------------------------------------------------------------------- posterior predictive


@pytest.mark.parametrize("name", ["bernoulli", "probit", "binomial", "poisson", "negbin", "gaussian", "known_sigma"])
def test_posterior_predictive_shape_support_and_seed(fits, name):
    fit = fits[name]
    pp = hb.posterior_predictive(fit, random_seed=7)
    assert pp.dims == ("chain", "draw", "obs") and pp.name == "y"
    assert pp.shape == (CHAINS, DRAWS, fit.design.n_obs)
    values = pp.values
    if name in ("bernoulli", "probit"):
        assert values.dtype == np.int64 and set(np.unique(values)) <= {0, 1}
    elif name == "binomial":
        assert values.dtype == np.int64
        assert values.min() >= 0 and np.all(values <= fit.design.trials.astype(int))
    elif name in ("poisson", "negbin"):
        assert values.dtype == np.int64 and values.min() >= 0
    else:
        assert values.dtype == float
    np.testing.assert_array_equal(values, hb.posterior_predictive(fit, random_seed=7).values)
    assert not np.array_equal(values, hb.posterior_predictive(fit, random_seed=8).values)


def test_posterior_predictive_default_seed_is_the_fits_seed(fits):
    """``random_seed=None`` (the default) seeds from ``fit.settings["random_seed"]``: reproducible per fit."""
    import dataclasses

    fit = dataclasses.replace(fits["poisson"], settings={"random_seed": 11})
    default = hb.posterior_predictive(fit).values
    np.testing.assert_array_equal(default, hb.posterior_predictive(fit).values)
    np.testing.assert_array_equal(default, hb.posterior_predictive(fit, random_seed=11).values)
    assert not np.array_equal(default, hb.posterior_predictive(fit, random_seed=12).values)

def test_posterior_predictive_means_match_the_family(frame, synthetic_fit):
    """Replicates at one fixed parameter value: sample mean and variance against the family's."""
    chains, draws = 1, 4000
    vals = {"beta": [0.4, 0.0], "sd_g": [1.0], "u_g": np.zeros((6, 1)), "alpha": 2.5}
    fit = synthetic_fit("cnt ~ x + (1 | g)", frame, vals, family="negative_binomial", chains=chains, draws=draws)
    y = hb.posterior_predictive(fit, random_seed=1).values[..., 0].ravel()
    mu = np.exp(0.4)
    var = mu + mu**2 / 2.5
    assert abs(y.mean() - mu) < 4 * np.sqrt(var / y.size)
    assert abs(y.var() / var - 1) < 0.1  # relative sd of a variance estimate ~ sqrt(kurtosis / n) ~ 0.04


def test_posterior_predictive_binomial_needs_trials_in_new_data(fits):
    with pytest.raises(hb.DataError, match="trials"):
        hb.posterior_predictive(fits["binomial"], random_seed=1, data={"g": [1], "x": [0.0]})
    pp = hb.posterior_predictive(fits["binomial"], random_seed=1, data={"g": [1, 2], "x": [0.0, 1.0], "n": [3, 5]})
    assert pp.values[..., 0].max() <= 3 and pp.values[..., 1].max() <= 5


def test_posterior_predictive_known_sigma_needs_the_column(fits):
    with pytest.raises(hb.DataError, match="'se'"):
        hb.posterior_predictive(fits["known_sigma"], random_seed=1, data={"g": [1], "x": [0.0]})


# ----------------------------------------------------------------------------- log-likelihood


def test_log_likelihood_matches_scipy_at_one_draw(fits):
    c, d = 1, 17
    for name, fit in fits.items():
        post = fit.posterior.isel(chain=c, draw=d)
        eta = _eta_by_hand(fit)[c, d]
        y = fit.design.y
        if name == "bernoulli":
            ref = stats.bernoulli.logpmf(y, special.expit(eta))
        elif name == "probit":
            ref = stats.bernoulli.logpmf(y, stats.norm.cdf(eta))
        elif name == "binomial":
            ref = stats.binom.logpmf(y, fit.design.trials, special.expit(eta))
        elif name == "poisson":
            ref = stats.poisson.logpmf(y, np.exp(eta))
        elif name == "negbin":
            a = float(post["alpha"])
            ref = stats.nbinom.logpmf(y, a, a / (a + np.exp(eta)))
        elif name == "gaussian":
            ref = stats.norm.logpdf(y, eta, float(post["sigma"]))
        else:
            ref = stats.norm.logpdf(y, eta, fit.design.known_sigma)
        ll = hb.log_likelihood(fit)
        assert ll.dims == ("chain", "draw", "obs")
        np.testing.assert_allclose(ll.values[c, d], ref, rtol=1e-10, atol=1e-12, err_msg=name)


def test_log_likelihood_is_finite_for_extreme_eta(frame, synthetic_fit):
    vals = {"beta": [40.0, 0.0], "sd_g": [1.0], "u_g": np.zeros((6, 1))}
    fit = synthetic_fit("yb ~ x + (1 | g)", frame, vals, family="bernoulli")
    ll = hb.log_likelihood(fit).values
    assert np.all(np.isfinite(ll))
    np.testing.assert_allclose(ll[0, 0][fit.design.y == 0], -40.0, rtol=1e-12)


def test_with_log_likelihood_adds_a_group_and_leaves_the_fit_alone(fits):
    fit = fits["bernoulli"]
    tree = hb.with_log_likelihood(fit)
    assert "log_likelihood" in tree.children and "y" in tree["log_likelihood"].data_vars
    assert "log_likelihood" not in fit.idata.children


# ----------------------------------------------------------------------------- predict


def test_predict_kinds(fits):
    fit = fits["bernoulli"]
    lin = hb.predict(fit, kind="linear")
    mean = hb.predict(fit, kind="mean")
    resp = hb.predict(fit, kind="response", random_seed=1)
    for table in (lin, mean, resp):
        assert list(table.columns) == ["mean", "sd", "lower", "upper"]
        assert table.index.equals(fit.design.data.index)
        assert np.all(table["lower"] <= table["upper"])
    eta = _eta_by_hand(fit).reshape(-1, fit.design.n_obs)
    np.testing.assert_allclose(lin["mean"], eta.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(mean["mean"], special.expit(eta).mean(axis=0), atol=1e-12)
    assert resp["mean"].between(0, 1).all()
    new = pd.DataFrame({"g": [1, 5], "x": [0.0, 2.0]}, index=["a", "b"])
    assert list(hb.predict(fit, new).index) == ["a", "b"]
    with pytest.raises(ValueError, match="kind"):
        hb.predict(fit, kind="epred")


def test_inverse_links():
    eta = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(inverse_link("logit", eta), 1 / (1 + np.exp(-eta)))
    np.testing.assert_allclose(inverse_link("probit", eta), stats.norm.cdf(eta))
    np.testing.assert_allclose(inverse_link("log", eta), np.exp(eta))


# ----------------------------------------------------------------------------- LOO comparison

ACH_FIXED = "math ~ year + retained + female + black + hispanic + size + lowinc"


@pytest.mark.slow
def test_compare_achievement_ranks_like_the_likelihood_ratio_tests(achievement, achievement_fit):
    """PSIS-LOO ranks the 3-level model first, then child-only, then school-only (as lme4's LRTs).

    The 3-level fit is the shared fixture (4 x 1000). Observation-level LOO separates the 3-level
    and child-only models by only ~8 elpd (dse ~4.6): measured 8.23, 8.35, 8.48 with seeds 1, 2, 3
    at 4 x 1000 draws (Monte Carlo spread ~0.1), but anywhere from 4 to 16 at 2 x 500 draws (PSIS
    noise from ~30 observations with Pareto k > 0.7), so the child-only model gets 4 x 1000 draws.
    School-only is ~2900 elpd behind; 2 x 500 draws suffice.
    """
    settings = {
        "child": (f"{ACH_FIXED} + (1 | child)", {"chains": 4, "draws": 1000, "tune": 1000}),
        "school": (f"{ACH_FIXED} + (1 | school)", {"chains": 2, "draws": 500, "tune": 500}),
    }
    fits = {"both": achievement_fit}
    for name, (formula, kw) in settings.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hb.ConvergenceWarning)
            fits[name] = hb.fit(formula, achievement, random_seed=2, progressbar=False, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = hb.compare(fits)
    assert list(table.index) == ["both", "child", "school"]
    assert table.loc["child", "elpd_diff"] < -4  # half the measured 8.3: > 30 Monte Carlo sds
    assert table.loc["school", "elpd_diff"] < -10 * table.loc["school", "dse"]
    for w in caught:  # only ArviZ's Pareto-k notes are expected
        assert "Pareto" in str(w.message), str(w.message)


def test_compare_rejects_bad_input(fits):
    with pytest.raises(hb.SpecError, match="at least two"):
        hb.compare(fits["bernoulli"])
    with pytest.raises(hb.SpecError, match="same response"):
        hb.compare({"a": fits["bernoulli"], "b": fits["poisson"]})
