"""Generalised linear mixed models end to end: responses, likelihoods, recovery, Guatemalan data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import hierbayes as hb
from hierbayes.inference.build import fixed_scaling

# ----------------------------------------------------------------------------- response checks


@pytest.fixture(scope="module")
def counts():
    return pd.DataFrame(
        {
            "g": [1, 1, 2, 2, 3, 3],
            "x": [0.1, 0.5, -0.3, 0.2, 0.9, -1.0],
            "yb": [0, 1, 1, 0, 1, 0],
            "s": [2, 3, 0, 5, 1, 4],
            "n": [4, 3, 2, 6, 1, 9],
            "cnt": [0, 3, 1, 7, 2, 4],
            "logE": [0.0, 0.1, 0.2, -0.1, 0.3, 0.0],
        }
    )


def _with(df, **cols):
    out = df.copy()
    for k, v in cols.items():
        out[k] = v
    return out


@pytest.mark.parametrize(
    ("formula", "family", "change", "match"),
    [
        ("yb ~ x + (1 | g)", "bernoulli", {"yb": [0, 1, 2, 0, 1, 0]}, r"bernoulli family needs a 0/1 response.*'yb'"),
        ("yb ~ x + (1 | g)", "bernoulli", {"yb": ["no", "yes"] * 3}, r"'yb' must be numeric.*== 'yes'"),
        ("s | trials(n) ~ x + (1 | g)", "binomial", {"s": [2, 3, 3, 5, 1, 4]}, r"0 <= s <= trials.*'s', 'n'"),
        ("s | trials(n) ~ x + (1 | g)", "binomial", {"n": [4, 3, 2, 6, 0, 9]}, r"trials >= 1"),
        ("s | trials(n) ~ x + (1 | g)", "binomial", {"s": [2, 3, 0.5, 5, 1, 4]}, r"integer successes"),
        ("cbind(s, f) ~ x + (1 | g)", "binomial", {"f": [1, 1, -1, 1, 1, 1]}, r"'s', 'f'"),
        ("cnt ~ x + (1 | g)", "poisson", {"cnt": [0, 3, -1, 7, 2, 4]}, r"poisson family needs non-negative integer"),
        ("cnt ~ x + (1 | g)", "poisson", {"cnt": [0, 3, 1.5, 7, 2, 4]}, r"non-negative integer counts.*'cnt'"),
        ("cnt ~ x + (1 | g)", "negative_binomial", {"cnt": [0, 3, 1, 7.2, 2, 4]}, r"negative_binomial family"),
        ("cnt ~ x + (1 | g)", "poisson", {"cnt": list("abcdef")}, r"'cnt' must be numeric for the poisson"),
    ],
)
def test_bad_responses_raise_data_error(counts, formula, family, change, match):
    df = _with(counts, f=counts["n"] - counts["s"])
    df = _with(df, **change)
    spec = hb.parse_formula(formula, family=family)
    with pytest.raises(hb.DataError, match=match):
        hb.make_design(spec, df)


def test_cbind_equals_trials(counts):
    df = _with(counts, f=counts["n"] - counts["s"])
    a = hb.make_design(hb.parse_formula("s | trials(n) ~ x + (1 | g)", family="binomial"), df)
    b = hb.make_design(hb.parse_formula("cbind(s, f) ~ x + (1 | g)", family="binomial"), df)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.trials, b.trials)
    np.testing.assert_array_equal(a.trials, df["n"].to_numpy(float))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.groups[0].index, b.groups[0].index)


def _point_and_eta(model, design, rng):
    """A random point of the model and the linear predictor it implies (one random term)."""
    point = model.initial_point()
    p = design.X.shape[1]
    beta_std = rng.normal(size=p)
    g = design.groups[0]
    z = rng.normal(size=(g.n_levels, 1))
    sd = 0.7
    point["beta_std"] = beta_std
    point[f"z_{g.name}"] = z
    point[f"sd_{g.name}_log__"] = np.log(sd)
    eta = fixed_scaling(design).standardise(design.X) @ beta_std + sd * z[g.index, 0]
    if design.offset is not None:
        eta = eta + design.offset
    return point, eta


@pytest.mark.parametrize(
    ("formula", "family", "link"),
    [
        ("yb ~ x + (1 | g)", "bernoulli", "logit"),
        ("yb ~ x + (1 | g)", "bernoulli", "probit"),
        ("s | trials(n) ~ x + (1 | g)", "binomial", "logit"),
        ("cbind(s, f) ~ x + (1 | g)", "binomial", "probit"),
        ("cnt ~ x + offset(logE) + (1 | g)", "poisson", "log"),
        ("cnt ~ x + offset(logE) + (1 | g)", "negative_binomial", "log"),
    ],
)
def test_likelihood_of_built_model_matches_scipy(counts, formula, family, link):
    """The observed node's log density at a random point equals scipy's (trials, offset, link used)."""
    df = _with(counts, f=counts["n"] - counts["s"])
    design = hb.make_design(hb.parse_formula(formula, family=family, link=link), df)
    model = hb.build_model(design)
    point, eta = _point_and_eta(model, design, np.random.default_rng(3))
    mu = {"logit": special.expit, "probit": stats.norm.cdf, "log": np.exp}[link](eta)
    y = design.y
    if family == "bernoulli":
        ref = stats.bernoulli.logpmf(y, mu)
    elif family == "binomial":
        ref = stats.binom.logpmf(y, design.trials, mu)
    elif family == "poisson":
        ref = stats.poisson.logpmf(y, mu)
    else:
        point["inv_alpha_log__"] = np.log(0.4)
        alpha = 1 / 0.4
        ref = stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))
    logp = model.compile_logp(vars=[model["y"]], sum=False, mode="FAST_COMPILE")(point)[0]
    np.testing.assert_allclose(logp, ref, rtol=1e-6)


# ----------------------------------------------------------------------------- parameter recovery


def _simulate(family, seed=1, J=40, m=20):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), m)
    x = rng.normal(size=J * m)
    truth = {"Intercept": -0.4, "x": 0.8, "sd": 0.6}
    u = rng.normal(0.0, 1.0, J)
    u = truth["sd"] * (u - u.mean()) / u.std(ddof=1)  # the realised effects have mean 0 and sd `sd`
    eta = truth["Intercept"] + truth["x"] * x + u[g]
    df = pd.DataFrame({"g": g, "x": x})
    if family == "binomial":
        df["n"] = rng.integers(5, 16, J * m)
        df["s"] = rng.binomial(df["n"], special.expit(eta))
        formula = "s | trials(n) ~ x + (1 | g)"
    else:
        df["logE"] = np.log(rng.uniform(0.5, 3.0, J * m))
        df["cnt"] = rng.poisson(np.exp(eta + df["logE"]))
        formula = "cnt ~ x + offset(logE) + (1 | g)"
    return df, formula, truth


@pytest.mark.slow
@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_parameter_recovery(family):
    """40 groups x 20 rows: each true value inside the 94% interval and within 3 posterior sds.

    A calibrated posterior misses a 94% interval 6% of the time, so any fixed seed can fail by
    chance (before the simulated effects were centred, seed 20240601 put the binomial slope
    2.2 posterior sds off, where the group fixed-effects MLE of the same data was too). Seeds 1-6
    were then checked: 35 of 36 intervals covered the truth, all |z| < 2.
    """
    df, formula, truth = _simulate(family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        fit = hb.fit(formula, df, family=family, chains=4, draws=500, tune=500, random_seed=5, progressbar=False)
    assert fit.diagnostics.divergences == 0
    s = hb.summary(fit)
    sd_row = s.random[(s.random.group == "g") & (s.random.quantity == "sd")].iloc[0]
    rows = {"Intercept": s.fixed.loc["Intercept"], "x": s.fixed.loc["x"], "sd": sd_row}
    for name, row in rows.items():
        true = truth[name]
        assert row["lower"] < true < row["upper"], (name, row.to_dict())
        assert abs(row["mean"] - true) < 3 * row["sd"], (name, row.to_dict())


# ----------------------------------------------------------------------------- Guatemalan immunisation

#: Posterior means of an independent MCMC fit of the same model (the issue's reference).
GUATEMALAN_MCMC = {
    "Intercept": -1.07,
    "kid2p": 1.77,
    "momEdPri": 0.42,
    "momEdSec": 0.41,
    "husEdPri": 0.55,
    "husEdSec": 0.49,
    "rural": -0.95,
    "pcInd81": -1.41,
}


def test_guatemalan_mother_ids_are_unique_across_clusters():
    """So (1 | cluster/mom) and lme4's (1 | mom) + (1 | cluster) are the same model."""
    df = hb.datasets.load("guatemalan")
    assert df.groupby("mom")["cluster"].nunique().max() == 1
    assert df["mom"].nunique() == 1595 and df["cluster"].nunique() == 161


@pytest.mark.slow
def test_guatemalan_matches_mcmc_reference(guatemalan_fit):
    fit = guatemalan_fit
    assert fit.diagnostics.divergences == 0
    s = hb.summary(fit)
    for coef, ref in GUATEMALAN_MCMC.items():
        row = s.fixed.loc[coef]
        assert abs(row["mean"] - ref) < 0.5 * row["sd"], (coef, row["mean"], row["sd"])
    mom_sd = s.random[(s.random.group == "cluster:mom") & (s.random.quantity == "sd")].iloc[0]
    assert 2.0 < mom_sd["mean"] < 2.9
    assert s.ngroups == {"cluster": 161, "cluster:mom": 1595}


@pytest.mark.slow
def test_guatemalan_odds_ratios_and_population_averaged_kid2p(guatemalan_fit):
    fit = guatemalan_fit
    ors = hb.odds_ratios(fit)
    beta = fit.posterior["beta"].sel(coef="kid2p").values
    assert ors.loc["kid2p", "mean"] == pytest.approx(np.exp(beta).mean(), rel=1e-12)
    both = hb.contrast(fit, "kid2p + husEdPri")
    np.testing.assert_allclose(
        both.draws.values, beta + fit.posterior["beta"].sel(coef="husEdPri").values, rtol=0, atol=1e-12
    )
    row = {c: 0.0 for c in GUATEMALAN_MCMC if c != "Intercept"} | {"rural": 1.0, "pcInd81": 0.5}
    pa = hb.population_averaged(fit, row, coef="kid2p", n_draws=200, random_seed=1)
    eff = pa.effects.iloc[0]
    # conditional OR is exp(beta); the population-averaged one is attenuated, by about the
    # documented factor 1/sqrt(1 + c^2 (sd_cluster^2 + sd_mom^2)) (exact for no finite step: +-0.05)
    assert eff["conditional_mean"] == pytest.approx(np.exp(beta).mean(), rel=1e-12)
    assert 1 < eff["marginal_mean"] < eff["conditional_mean"]
    assert abs(eff["attenuation"] - eff["approx_attenuation"]) < 0.06
    assert (pa.table["marginal_mean"] > pa.table["conditional_mean"]).all()  # p < 0.5: averaging raises it


@pytest.mark.slow
def test_guatemalan_posterior_predictive_reproduces_the_immunisation_rate(guatemalan_fit):
    fit = guatemalan_fit
    rep = hb.posterior_predictive(fit, random_seed=1)
    assert set(np.unique(rep.values)) == {0, 1}
    rate = rep.mean("obs").values.ravel()
    observed = fit.design.y.mean()
    assert np.quantile(rate, 0.03) < observed < np.quantile(rate, 0.97)
    ll = hb.log_likelihood(fit)
    assert ll.shape == (4, 1000, 2159) and np.isfinite(ll.values).all()
