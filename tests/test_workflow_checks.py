"""Model checks as functions (issue 13): Bayesian R2, leave-one-group-out CV, PPC plots."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

import hierbayes as hb


def _simulated(n_groups=40, per=10, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    u = rng.normal(0, 1.0, n_groups)
    mu = 1.0 + 1.0 * x + u[g]
    y = mu + rng.normal(0, 1.0, g.size)
    return pd.DataFrame({"g": g, "x": x, "y": y}), mu


def test_bayes_r2_equals_the_hand_computation_on_a_known_posterior(synthetic_fit):
    df, _ = _simulated(n_groups=6, per=5)
    rng = np.random.default_rng(1)
    beta = rng.normal([1.0, 1.0], 0.1, size=(2, 4, 2))
    u = rng.normal(0, 1, size=(2, 4, 6, 1))
    sigma = np.abs(rng.normal(1.0, 0.1, size=(2, 4)))
    vals = {"beta": beta, "u_g": u, "sigma": sigma, "sd_g": [1.0]}
    fit = synthetic_fit("y ~ x + (1 | g)", df, vals, chains=2, draws=4)
    X, gi = fit.design.X, fit.design.groups[0].index
    mu = np.einsum("cdk,nk->cdn", beta, X) + u[..., 0][:, :, gi]
    mu_f = np.einsum("cdk,nk->cdn", beta, X)
    total = mu.var(axis=-1, ddof=1) + sigma**2
    table = hb.bayes_r2(fit)
    assert table.loc["conditional", "mean"] == pytest.approx((mu.var(axis=-1, ddof=1) / total).mean(), rel=1e-12)
    assert table.loc["marginal", "mean"] == pytest.approx((mu_f.var(axis=-1, ddof=1) / total).mean(), rel=1e-12)


def test_bayes_r2_for_a_logistic_model_is_between_0_and_1(synthetic_fit):
    df, mu = _simulated(n_groups=6, per=5)
    df["yb"] = (mu > 1).astype(int)
    vals = {"beta": [0.0, 2.0], "u_g": np.linspace(-1, 1, 6)[:, None], "sd_g": [1.0]}
    fit = synthetic_fit("yb ~ x + (1 | g)", df, vals, family="bernoulli")
    table = hb.bayes_r2(fit)
    assert ((table["mean"] > 0) & (table["mean"] < 1)).all()
    assert table.loc["marginal", "mean"] < table.loc["conditional", "mean"]


def test_bayes_r2_recovers_the_simulated_value():
    df, mu = _simulated()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hb.fit("y ~ x + (1 | g)", df, chains=2, draws=300, tune=300, random_seed=1, progressbar=False)
    sigma2 = 1.0
    truth_cond = mu.var(ddof=1) / (mu.var(ddof=1) + sigma2)
    truth_marg = (1.0 + 1.0 * df["x"]).var(ddof=1) / (mu.var(ddof=1) + sigma2)
    table = hb.bayes_r2(fit)
    # the posterior of R2 carries the parameter uncertainty; its mean lies within 3 posterior sd
    assert abs(table.loc["conditional", "mean"] - truth_cond) < 3 * table.loc["conditional", "sd"]
    assert abs(table.loc["marginal", "mean"] - truth_marg) < 3 * table.loc["marginal", "sd"]


@pytest.mark.slow
def test_kfold_equals_a_hand_loop_of_refits():
    df, _ = _simulated(n_groups=4, per=6, seed=3)
    kw = {"chains": 1, "draws": 60, "tune": 60, "progressbar": False, "method": "full"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hb.fit("y ~ x + (1 | g)", df, random_seed=11, **kw)
        result = hb.kfold(fit, group="g", folds=2)
        hand = np.empty(len(df))
        levels = np.sort(df["g"].unique())
        for k in range(2):
            held = df["g"].isin(levels[k::2]).to_numpy()
            refit = hb.fit("y ~ x + (1 | g)", df[~held], random_seed=11 + 1 + k, target_accept=0.8, **kw)
            ll = hb.log_likelihood(refit, df[held], new_levels="sample", random_seed=11 + 1 + k).values
            flat = ll.reshape(-1, ll.shape[-1])
            hand[held] = logsumexp(flat, axis=0) - np.log(flat.shape[0])
    np.testing.assert_allclose(result.pointwise.to_numpy(), hand, rtol=1e-10)
    assert result.elpd == pytest.approx(hand.sum(), rel=1e-10)
    assert list(result.folds["n_obs"]) == [12, 12]
    assert "KFold" in repr(result)


def test_kfold_rejects_an_unknown_group(synthetic_fit):
    df, _ = _simulated(n_groups=6, per=5)
    vals = {"beta": [1.0, 1.0], "u_g": np.zeros((6, 1)), "sd_g": [1.0], "sigma": 1.0}
    fit = synthetic_fit("y ~ x + (1 | g)", df, vals)
    with pytest.raises(hb.SpecError, match="'school' is not a grouping factor"):
        hb.kfold(fit, group="school")


@pytest.mark.parametrize("kind", ["dist", "pit", "loo_pit", "group"])
def test_plot_ppc_gaussian(synthetic_fit, kind):
    from matplotlib.figure import Figure

    df, _ = _simulated(n_groups=6, per=5)
    rng = np.random.default_rng(2)
    vals = {"beta": rng.normal([1.0, 1.0], 0.05, (2, 200, 2)), "u_g": rng.normal(0, 0.1, (2, 200, 6, 1)),
            "sd_g": [1.0], "sigma": np.abs(rng.normal(1, 0.05, (2, 200)))}
    fit = synthetic_fit("y ~ x + (1 | g)", df, vals, chains=2, draws=200)
    fit.settings["random_seed"] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k of a made-up posterior
        fig = hb.plot_ppc(fit, kind)
    assert isinstance(fig, Figure)
    assert "posterior_predictive" not in fit.idata.children  # the fit is left alone


def test_plot_ppc_counts_and_binary(synthetic_fit):
    df, mu = _simulated(n_groups=6, per=5)
    df["yb"] = (mu > 1).astype(int)
    df["cnt"] = np.random.default_rng(0).poisson(2.0, len(df))
    vals = {"beta": [0.0, 1.0], "u_g": np.zeros((6, 1)), "sd_g": [1.0]}
    binary = synthetic_fit("yb ~ x + (1 | g)", df, vals, family="bernoulli", draws=50)
    counts = synthetic_fit("cnt ~ x + (1 | g)", df, vals, family="poisson", draws=50)
    hb.plot_ppc(binary, random_seed=1)  # calibration (PAVA)
    hb.plot_ppc(counts, random_seed=1)  # rootogram
    with pytest.raises(hb.SpecError, match="binary"):
        hb.plot_ppc(counts, "calibration", random_seed=1)
