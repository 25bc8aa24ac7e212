"""Convergence diagnostics: every problem is found and explained in plain words, with the next step.

Fast tests use hand-made draws whose problem is known (chains that disagree, sticky chains,
divergences, tree-depth hits, too few draws); slow ones use real bad fits: a centred
eight-schools model with almost no tuning, a tree depth capped at 1, and 1 draw per chain.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pymc as pm
import pytest
import xarray as xr

import hierbayes as hb
from hierbayes.inference.diagnostics import ESS_PER_CHAIN_MIN, MIN_DRAWS, RHAT_MAX, draw_stats, warn_if_problems

CHECK = ["beta", "sd_g", "sigma", "corr_g"]


def tree(beta, *, sd=None, corr=None, diverging=None, depth=None, depth_key="maxdepth_reached"):
    """A DataTree shaped like a hierbayes fit; ``beta`` is (chain, draw) or (chain, draw, coef)."""
    beta = np.asarray(beta, dtype=float)
    if beta.ndim == 2:
        beta = beta[..., None]
    chains, draws, p = beta.shape
    rng = np.random.default_rng(99)
    post = {
        "beta": (("chain", "draw", "coef"), beta),
        "sigma": (("chain", "draw"), 1 + 0.1 * rng.normal(size=(chains, draws))),
        "sd_g": (("chain", "draw", "g__coef"), sd if sd is not None else 1 + 0.1 * rng.normal(size=(chains, draws, 1))),
    }
    if corr is not None:
        post["corr_g"] = (("chain", "draw", "g__coef", "g__coef_"), corr)
    coords = {"coef": [f"b{k}" for k in range(p)], "g__coef": ["Intercept", "x"][: post["sd_g"][1].shape[-1]]}
    if corr is not None:
        coords["g__coef"] = ["Intercept", "x"]
        coords["g__coef_"] = ["Intercept", "x"]
    groups = {"posterior": xr.Dataset(post, coords=coords)}
    stats = {}
    if diverging is not None:
        stats["diverging"] = (("chain", "draw"), diverging)
    if depth is not None:
        stats[depth_key] = (("chain", "draw"), depth)
    if stats:
        groups["sample_stats"] = xr.Dataset(stats)
    return xr.DataTree.from_dict(groups)


def iid(chains=4, draws=500, seed=0):
    return np.random.default_rng(seed).normal(size=(chains, draws))


def test_good_draws_have_no_problems():
    d = hb.diagnose(tree(iid(), diverging=np.zeros((4, 500), bool)), CHECK)
    assert d.ok and d.problems == []
    assert d.divergences == 0 and d.treedepth_hits == 0
    assert d.max_rhat[1] < RHAT_MAX
    assert d.min_ess_bulk[1] > ESS_PER_CHAIN_MIN * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_problems(d)  # nothing to say, no warning


def test_chains_that_disagree_give_rhat_advice():
    beta = iid() + np.array([0.0, 0.0, 0.0, 1.5])[:, None]  # one chain elsewhere
    d = hb.diagnose(tree(beta), CHECK)
    assert d.max_rhat[0] == "beta[b0]" and d.max_rhat[1] > 1.1
    (msg,) = [p for p in d.problems if p.startswith("R-hat")]
    assert "the chains have not converged to the same distribution" in msg
    assert "tune=2000, draws=2000" in msg


def test_sticky_chains_give_ess_advice():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(4, 500))
    beta = np.zeros_like(e)
    for t in range(1, 500):  # AR(1) with phi = 0.97: ESS ~ 500 * 0.03 / 1.97 per chain
        beta[:, t] = 0.97 * beta[:, t - 1] + e[:, t]
    d = hb.diagnose(tree(beta), CHECK)
    assert d.min_ess_bulk[0] == "beta[b0]" and d.min_ess_bulk[1] < 400
    bulk = [p for p in d.problems if p.startswith("The bulk effective sample size of beta[b0]")]
    tail = [p for p in d.problems if p.startswith("The tail effective sample size of beta[b0]")]
    assert len(bulk) == 1 and len(tail) == 1
    assert "below 400 (100 per chain): its mean is not reliable yet. Draw more" in bulk[0]
    assert "its interval is not reliable yet" in tail[0]


def test_divergences_are_counted_and_explained():
    div = np.zeros((4, 500), bool)
    div[1, 10:17] = True
    d = hb.diagnose(tree(iid(), diverging=div), CHECK)
    assert d.divergences == 7
    (msg,) = d.problems
    assert msg.startswith("7 of 2000 draws were divergent transitions")
    assert "target_accept=0.95" in msg and "tighter prior" in msg
    centred = hb.diagnose(tree(iid(), diverging=div), CHECK, centered_terms=["school"])
    assert "switch the centred term(s) school to the non-centred form (centered=False" in centred.problems[0]


@pytest.mark.parametrize("key", ["maxdepth_reached", "reached_max_treedepth"])  # nutpie, PyMC
def test_tree_depth_saturation(key):
    depth = np.zeros((4, 500), bool)
    depth[:, :25] = True
    d = hb.diagnose(tree(iid(), depth=depth, depth_key=key), CHECK)
    assert d.treedepth_hits == 100
    (msg,) = d.problems
    assert msg.startswith("100 of 2000 draws hit the maximum tree depth")


@pytest.mark.parametrize("draws", [1, 2, MIN_DRAWS - 1])
def test_too_few_draws_is_one_plain_problem_without_numpy_noise(draws):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 inside ArviZ
        d = hb.diagnose(tree(iid(draws=draws)), CHECK)
    assert d.problems == [
        f"Only {draws} draw(s) per chain: far too few to check convergence (R-hat and ESS need at least "
        f"{MIN_DRAWS} draws per chain, and reliable summaries about {ESS_PER_CHAIN_MIN} effective draws per "
        "chain). Draw more: draws=1000 (the default)."
    ]


def test_a_single_chain_cannot_check_rhat():
    d = hb.diagnose(tree(iid(chains=1, draws=1000)), CHECK)
    assert d.problems == [
        "Only one chain: R-hat, which compares chains, cannot be checked, so a chain stuck in one part of the "
        "posterior would go unnoticed. Run several chains (chains=4, the default)."
    ]


def test_a_sampler_that_never_moved():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = hb.diagnose(tree(np.zeros((4, 100)), sd=np.ones((4, 100, 1))).pipe(_freeze_sigma), CHECK)
    assert d.problems[0].startswith("The sampler did not move: every draw of every checked parameter is identical")


def _freeze_sigma(dt):
    post = dt["posterior"].to_dataset()
    post["sigma"] = post["sigma"] * 0 + 1.0
    return xr.DataTree.from_dict({"posterior": post})


def test_chains_each_stuck_at_a_different_value():
    beta = np.repeat(np.array([0.0, 0.5, 1.0, 1.5])[:, None], 200, axis=1)  # no chain moves
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = hb.diagnose(tree(beta), CHECK)
    assert d.max_rhat == ("beta[b0]", np.inf)
    assert any(p.startswith("R-hat of beta[b0] could not be computed (a chain did not move)") for p in d.problems)
    assert d.min_ess_bulk[1] < 10


def test_correlation_diagonal_is_not_a_problem():
    rng = np.random.default_rng(3)
    r = np.tanh(0.3 + 0.1 * rng.normal(size=(4, 500)))
    corr = np.ones((4, 500, 2, 2))
    corr[..., 0, 1] = corr[..., 1, 0] = r
    d = hb.diagnose(tree(iid(), sd=1 + 0.1 * rng.normal(size=(4, 500, 2)), corr=corr), CHECK)
    assert d.ok, d.problems


def test_one_warning_lists_every_problem():
    beta = iid() + np.array([0.0, 0.0, 0.0, 1.5])[:, None]
    div = np.zeros((4, 500), bool)
    div[0, 0] = True
    d = hb.diagnose(tree(beta, diverging=div), CHECK)
    assert len(d.problems) >= 2
    first = r"^The posterior draws may not be trustworthy yet:\n- 1 of 2000"
    with pytest.warns(hb.ConvergenceWarning, match=first) as rec:
        warn_if_problems(d)
    assert len(rec) == 1
    assert str(rec[0].message).count("\n- ") == len(d.problems)


def test_draw_stats_is_quiet_on_tiny_or_constant_draws():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = draw_stats(xr.DataArray(np.ones((1, 3)), dims=("chain", "draw")))
        const = draw_stats(xr.DataArray(np.ones((4, 50)), dims=("chain", "draw")))
    assert one["mean"] == 1.0 and np.isnan(one["r_hat"]) and np.isnan(one["ess_bulk"])
    assert const["mean"] == 1.0 and const["sd"] == 0.0
    good = draw_stats(xr.DataArray(iid(), dims=("chain", "draw")))
    assert good["r_hat"] < RHAT_MAX and good["ess_bulk"] > 1000


# Real bad fits ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_schools():
    return hb.datasets.load("eight_schools")


def _fit_recording(*args, **kwargs):
    logging.getLogger("pymc").setLevel(logging.ERROR)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = hb.fit(*args, progressbar=False, **kwargs)
    return fit, rec


@pytest.mark.slow
def test_centred_eight_schools_with_tiny_tune_diverges_and_says_what_to_do(eight_schools):
    spec = hb.group_means(
        y="y", sigma="sigma", group="school", centered=True, priors=hb.Priors(group_sd=hb.HalfNormal(scale=5.0))
    )
    fit, rec = _fit_recording(spec, eight_schools, draws=200, tune=20, chains=2, random_seed=1, sampler="nutpie")
    assert fit.diagnostics.divergences > 0
    assert [w.category for w in rec] == [hb.ConvergenceWarning]  # exactly one warning
    text = str(rec[0].message)
    assert f"{fit.diagnostics.divergences} of 400 draws were divergent transitions" in text
    assert "target_accept=0.95" in text and "switch the centred term(s) school to the non-centred form" in text
    assert text.count("\n- ") == len(fit.diagnostics.problems)


@pytest.mark.slow
def test_one_draw_per_chain_is_reported_not_crashed(eight_schools):
    spec = hb.group_means(y="y", sigma="sigma", group="school")
    fit, rec = _fit_recording(spec, eight_schools, draws=1, tune=50, chains=2, random_seed=1, sampler="nutpie")
    assert [w.category for w in rec] == [hb.ConvergenceWarning]  # and no ArviZ/numpy noise
    assert "Only 1 draw(s) per chain: far too few to check convergence" in str(rec[0].message)
    assert fit.posterior.sizes["draw"] == 1


@pytest.mark.slow
def test_tree_depth_saturation_on_a_real_fit(eight_schools):
    spec = hb.group_means(y="y", sigma="sigma", group="school")
    model = hb.build_model(hb.make_design(spec, eight_schools))
    logging.getLogger("pymc").setLevel(logging.ERROR)
    with model:
        idata = pm.sample(
            draws=100, tune=100, chains=2, random_seed=1, progressbar=False, nuts_sampler="nutpie",
            nuts={"maxdepth": 1}, compute_convergence_checks=False,
        )
    d = hb.diagnose(idata, ["beta", "sd_school"])
    assert d.treedepth_hits == 200
    assert any(p.startswith("200 of 200 draws hit the maximum tree depth") for p in d.problems)


def test_low_e_bfmi_is_explained():
    """E-BFMI = E[(E_t - E_{t-1})^2] / Var(E): a slowly wandering energy (AR(1), phi = 0.95) gives about 0.1."""
    rng = np.random.default_rng(5)
    energy = np.zeros((4, 500))
    for t in range(1, 500):
        energy[:, t] = 0.95 * energy[:, t - 1] + rng.normal(size=4)
    dt = tree(iid())
    dt["sample_stats"] = xr.DataTree(xr.Dataset({"energy": (("chain", "draw"), energy)}))
    d = hb.diagnose(dt, CHECK)
    assert d.min_bfmi < 0.3
    (msg,) = d.problems
    assert msg.startswith(f"The energy diagnostic (E-BFMI) of a chain is {d.min_bfmi:.2f}, below 0.3")
    good = tree(iid())
    good["sample_stats"] = xr.DataTree(xr.Dataset({"energy": (("chain", "draw"), rng.normal(size=(4, 500)))}))
    assert hb.diagnose(good, CHECK).ok and hb.diagnose(good, CHECK).min_bfmi > 1
