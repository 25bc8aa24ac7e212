"""ArviZ-native groups on the fit (issue 13): log_likelihood, posterior_predictive, observed_data."""

from __future__ import annotations

import arviz_stats
import numpy as np
import pandas as pd
import pytest

import hierbayes as hb

CHAINS, DRAWS = 2, 1000
U = np.linspace(-1.0, 1.0, 8)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 6)
    x = rng.normal(size=g.size)
    u = U
    y = 0.5 + 0.7 * x + u[g] + rng.normal(0, 0.5, g.size)
    return pd.DataFrame({"g": g, "x": x, "y": y, "cnt": rng.poisson(np.exp(0.3 + 0.2 * x + u[g] / 2))})


def _posterior(rng, q_levels=8):
    """Draws near the simulation's truth, so PSIS-LOO is well behaved (Pareto k < 0.7)."""
    return {
        "beta": rng.normal([0.5, 0.7], 0.03, size=(CHAINS, DRAWS, 2)),
        "sd_g": np.abs(rng.normal(0.8, 0.05, size=(CHAINS, DRAWS, 1))),
        "u_g": U[:, None] + rng.normal(0, 0.15, size=(CHAINS, DRAWS, q_levels, 1)),
        "sigma": np.abs(rng.normal(0.5, 0.02, size=(CHAINS, DRAWS))),
    }


@pytest.fixture(scope="module")
def fits(frame, synthetic_fit):
    rng = np.random.default_rng(1)
    full = synthetic_fit("y ~ x + (1 | g)", frame, _posterior(rng), chains=CHAINS, draws=DRAWS)
    post = _posterior(rng)
    post["beta"][..., 1] = 0.6
    null = synthetic_fit("y ~ x + (1 | g)", frame, post, chains=CHAINS, draws=DRAWS)
    return {"full": full, "null": null}


def test_add_log_likelihood_makes_arviz_loo_work_and_match_hb_compare(fits):
    for fit in fits.values():
        hb.add_log_likelihood(fit)
        assert {"log_likelihood", "observed_data"} <= set(fit.idata.children)
        np.testing.assert_array_equal(fit.idata["log_likelihood"]["y"].values, hb.log_likelihood(fit).values)
    ours = hb.compare(fits)
    theirs = arviz_stats.compare({k: f.idata for k, f in fits.items()}, round_to="none")
    pd.testing.assert_frame_equal(ours, theirs)
    for name, fit in fits.items():
        loo = arviz_stats.loo(fit.idata)
        assert loo.elpd == pytest.approx(ours.loc[name, "elpd"], rel=1e-12)


def test_add_posterior_predictive_is_seeded_from_the_fit_and_plots(fits, frame):
    fit = fits["full"]
    fit.settings["random_seed"] = 5
    hb.add_posterior_predictive(fit)
    first = fit.idata["posterior_predictive"]["y"].values.copy()
    hb.add_posterior_predictive(fit)
    np.testing.assert_array_equal(fit.idata["posterior_predictive"]["y"].values, first)
    assert first.shape == (CHAINS, DRAWS, len(frame))
    assert fit.idata["observed_data"]["y"].shape == (len(frame),)
    import arviz_plots

    arviz_plots.plot_ppc_dist(fit.idata, num_samples=5)


def test_groups_survive_save_and_load(fits, tmp_path):
    fit = fits["null"]
    hb.add_log_likelihood(fit)
    hb.add_posterior_predictive(fit, random_seed=1)
    path = hb.save(fit, tmp_path / "fit.nc")
    back = hb.load(path)
    for group in ("log_likelihood", "posterior_predictive", "observed_data"):
        np.testing.assert_array_equal(back.idata[group]["y"].values, fit.idata[group]["y"].values)


def test_prior_predictive_of_a_fit_adds_the_prior_groups(fits, frame):
    fit = fits["full"]
    tree = hb.prior_predictive(fit, draws=20, random_seed=3)
    assert {"prior", "prior_predictive"} <= set(fit.idata.children)
    assert fit.idata["prior_predictive"]["y"].shape == (1, 20, len(frame))
    np.testing.assert_array_equal(fit.idata["prior"]["beta"].values, tree["prior"]["beta"].values)
    with pytest.raises(ValueError, match="data="):
        hb.prior_predictive("y ~ x + (1 | g)")


def test_fit_with_log_likelihood_and_posterior_predictive(frame):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 1 chain x 30 draws: diagnostics complain
        fit = hb.fit(
            "y ~ x + (1 | g)", frame, chains=1, draws=30, tune=30, random_seed=2, method="full",
            progressbar=False, log_likelihood=True, posterior_predictive=True,
        )
    assert {"log_likelihood", "posterior_predictive", "observed_data"} <= set(fit.idata.children)
    np.testing.assert_array_equal(fit.idata["log_likelihood"]["y"].values, hb.log_likelihood(fit).values)
    assert fit.idata["posterior_predictive"]["y"].shape == (1, 30, len(frame))


def test_internal_variables_live_outside_the_posterior(synthetic_fit, frame):
    import xarray as xr

    from hierbayes.inference.result import INTERNAL_GROUP, move_internal

    rng = np.random.default_rng(7)
    fit = synthetic_fit("y ~ x + (1 | g)", frame, _posterior(rng), chains=CHAINS, draws=DRAWS)
    post = fit.idata["posterior"].to_dataset()
    post["beta_std"] = post["beta"] * 2.0
    post["z_g"] = post["u_g"] / 0.8
    fit.idata["posterior"] = xr.DataTree(post)
    move_internal(fit.idata)
    assert set(fit.idata["posterior"].data_vars) == {"beta", "sd_g", "u_g", "sigma"}
    assert set(fit.idata[INTERNAL_GROUP].data_vars) == {"beta_std", "z_g"}
    assert {"beta_std", "z_g", "beta"} <= set(fit.posterior.data_vars)  # summaries still see everything
    table = arviz_stats.summary(fit.idata)
    assert not any(str(i).startswith(("beta_std", "z_")) for i in table.index)
