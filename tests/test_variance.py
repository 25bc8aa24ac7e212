"""Variance partition and intra-class correlations.

Fast tests use synthetic posteriors (constant draws) whose partition is known exactly; slow tests
check the achievement ICCs against lme4 and fit the (simulated) seedlings data set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.datasets.make_seedlings import GAMMA, simulate
from hierbayes.exceptions import SpecError
from hierbayes.families import get_family, latent_residual_variance
from hierbayes.families.links import latent_variance


@pytest.fixture(scope="module")
def three_level():
    """Two schools, two children each (ids unique overall), three years per child."""
    rows = [
        {"school": s, "child": c, "year": t, "y": float(i)}
        for i, (s, c, t) in enumerate(
            (s, c, t) for s, cs in (("s1", (1, 2)), ("s2", (3, 4))) for c in cs for t in (0, 1, 2)
        )
    ]
    return pd.DataFrame(rows)


# School variance 1, child variance 2, residual 1: within-child 3/4, within-school 1/4.
THREE_LEVEL_VALUES = {"beta": [0.0], "sd_school": [1.0], "sd_child": [np.sqrt(2.0)], "sigma": 1.0}


def test_three_level_partition_exact(synthetic_fit, three_level):
    fit = synthetic_fit("y ~ 1 + (1 | school) + (1 | child)", three_level, THREE_LEVEL_VALUES)
    vp = hb.variance_partition(fit)
    var = vp.get("variance")["mean"]
    np.testing.assert_allclose(var[["school", "child", "Residual"]], [1.0, 2.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(vp.get("share")["mean"][["school", "child", "Residual"]], [0.25, 0.5, 0.25])
    icc = vp.icc
    assert icc.loc["child", "mean"] == pytest.approx(0.75, rel=1e-12)
    assert icc.loc["school", "mean"] == pytest.approx(0.25, rel=1e-12)
    assert list(icc.index) == ["school", "child"]  # no ICC for the residual
    assert icc.loc["child", "lower"] == icc.loc["child", "upper"] == pytest.approx(0.75)
    assert "(school + child) / total" in icc.loc["child", "description"]
    assert vp.scale.startswith("data scale")
    assert vp.draws["icc"].sel(component="child").shape == (1, 3)
    text = str(vp)
    assert "0.75 [0.75, 0.75]" in text


def test_nesting_path_gives_the_same_iccs(synthetic_fit, three_level):
    values = {"beta": [0.0], "sd_school": [1.0], "sd_school:child": [np.sqrt(2.0)], "sigma": 1.0}
    fit = synthetic_fit("y ~ 1 + (1 | school/child)", three_level, values)
    icc = hb.variance_partition(fit).icc["mean"]
    np.testing.assert_allclose(icc[["school", "school:child"]], [0.25, 0.75])


@pytest.mark.filterwarnings("ignore::hierbayes.NestingWarning")  # the factors are crossed on purpose
def test_crossed_factors_use_their_own_share(synthetic_fit):
    data = pd.DataFrame(
        [{"a": a, "b": b, "y": float(r)} for a in ("a1", "a2", "a3") for b in ("b1", "b2") for r in range(2)]
    )
    values = {"beta": [0.0], "sd_a": [1.0], "sd_b": [np.sqrt(2.0)], "sigma": 1.0}
    fit = synthetic_fit("y ~ 1 + (1 | a) + (1 | b)", data, values)
    icc = hb.variance_partition(fit).icc["mean"]
    np.testing.assert_allclose(icc[["a", "b"]], [0.25, 0.5])


def test_random_slopes_partition_depends_on_at(synthetic_fit):
    data = pd.DataFrame({"g": np.repeat(["g1", "g2", "g3"], 4), "x": np.tile([0.0, 1.0, 2.0, 3.0], 3)})
    data["y"] = np.arange(12.0)
    # sd (1, 2), correlation 0.5: Var(u0 + u1 x) = 1 + 2 x (0.5 * 1 * 2) + 4 x^2.
    values = {
        "beta": [0.0, 0.0],
        "sd_g": [1.0, 2.0],
        "corr_g": [[1.0, 0.5], [0.5, 1.0]],
        "sigma": 1.0,
    }
    fit = synthetic_fit("y ~ x + (1 + x | g)", data, values)
    at0 = hb.variance_partition(fit)
    assert at0.get("variance").loc["g", "mean"] == pytest.approx(1.0)
    assert at0.icc.loc["g", "mean"] == pytest.approx(0.5)
    at1 = hb.variance_partition(fit, at={"x": 1.0})
    assert at1.get("variance").loc["g", "mean"] == pytest.approx(7.0)
    assert at1.icc.loc["g", "mean"] == pytest.approx(7.0 / 8.0)
    assert at1.at == {"x": 1.0}
    assert "x=1" in str(at1)
    with pytest.raises(hb.SpecError, match=r"'z'.*varying terms: x"):
        hb.variance_partition(fit, at={"z": 1.0})


@pytest.mark.parametrize(("link", "residual"), [("logit", np.pi**2 / 3), ("probit", 1.0)])
def test_binary_models_use_the_latent_scale(synthetic_fit, link, residual):
    data = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 3), "y": [0, 1, 1, 0, 0, 1, 1, 1, 0]})
    fit = synthetic_fit("y ~ 1 + (1 | g)", data, {"beta": [0.0], "sd_g": [np.sqrt(2.0)]}, family="bernoulli", link=link)
    vp = hb.variance_partition(fit)
    assert vp.get("variance").loc["Residual", "mean"] == pytest.approx(residual)
    assert vp.icc.loc["g", "mean"] == pytest.approx(2.0 / (2.0 + residual))
    assert vp.scale.startswith("latent scale") and link in vp.scale


def test_poisson_and_negative_binomial_log_normal_approximation(synthetic_fit):
    data = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 3), "y": [0, 1, 3, 2, 0, 1, 5, 1, 0]})
    b0, v = 0.7, 0.5
    values = {"beta": [b0], "sd_g": [np.sqrt(v)]}
    lam = np.exp(b0 + v / 2)  # marginal expected count, the same for every row here
    fit = synthetic_fit("y ~ 1 + (1 | g)", data, values, family="poisson")
    vp = hb.variance_partition(fit)
    assert vp.get("variance").loc["Residual", "mean"] == pytest.approx(np.log(1 + 1 / lam))
    assert "log-normal" in vp.scale
    fit = synthetic_fit("y ~ 1 + (1 | g)", data, {**values, "alpha": 4.0}, family="negative_binomial")
    vp = hb.variance_partition(fit)
    assert vp.get("variance").loc["Residual", "mean"] == pytest.approx(np.log(1 + 1 / lam + 1 / 4.0))
    assert vp.icc.loc["g", "mean"] == pytest.approx(v / (v + np.log(1 + 1 / lam + 1 / 4.0)))


def test_latent_residual_variance_function():
    assert latent_residual_variance("logit") == pytest.approx(np.pi**2 / 3)
    assert latent_residual_variance("probit") == 1.0
    assert latent_residual_variance("log", mean=2.0) == pytest.approx(np.log(1.5))
    both = latent_residual_variance("log", mean=np.array([1.0, 4.0]), alpha=2.0)
    np.testing.assert_allclose(both, np.log([2.5, 1.75]))
    with pytest.raises(ValueError, match="mean="):
        latent_residual_variance("log")
    with pytest.raises(ValueError, match="allowed"):
        latent_residual_variance("identity")


@pytest.mark.parametrize(("link", "expected"), [("logit", np.pi**2 / 3), ("probit", 1.0)])
def test_one_latent_variance_for_binary_and_ordinal_families(link, expected):
    """Binomial, Bernoulli and cumulative families read the latent variance from links.latent_variance."""
    assert latent_variance(link) == pytest.approx(expected)
    for family in ("binomial", "bernoulli", "cumulative"):
        assert get_family(family).latent_residual_variance(link) == latent_variance(link)
    with pytest.raises(SpecError, match="'identity' link has no latent"):
        latent_variance("identity")


def test_known_sigma_uses_the_average_sampling_variance(synthetic_fit):
    data = pd.DataFrame({"school": list("ABCD"), "y": [1.0, 2.0, 3.0, 4.0], "sigma": [1.0, 2.0, 3.0, 4.0]})
    fit = synthetic_fit("y | se(sigma) ~ 1 + (1 | school)", data, {"beta": [0.0], "sd_school": [3.0]})
    vp = hb.variance_partition(fit)
    assert vp.get("variance").loc["Residual", "mean"] == pytest.approx(7.5)  # mean(1, 4, 9, 16)
    assert vp.icc.loc["school", "mean"] == pytest.approx(9.0 / 16.5)
    assert "known sampling variance" in vp.scale


def test_intervals_are_posterior_quantiles(synthetic_fit, three_level):
    rng = np.random.default_rng(3)
    sd_school = rng.uniform(0.5, 1.5, size=(2, 50, 1))
    values = {**THREE_LEVEL_VALUES, "sd_school": sd_school}
    fit = synthetic_fit("y ~ 1 + (1 | school) + (1 | child)", three_level, values, chains=2, draws=50)
    vp = hb.variance_partition(fit, prob=0.8)
    v = sd_school[..., 0] ** 2
    icc = v / (v + 3.0)
    row = vp.icc.loc["school"]
    assert row["mean"] == pytest.approx(icc.mean())
    assert row["sd"] == pytest.approx(icc.std(ddof=1))
    assert (row["lower"], row["upper"]) == pytest.approx(tuple(np.quantile(icc, [0.1, 0.9])))
    with pytest.raises(ValueError, match="prob"):
        hb.variance_partition(fit, prob=1.5)


def test_seedlings_file_is_the_documented_simulation():
    stored = hb.datasets.load("seedlings")
    expected = simulate()
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
    assert stored.groupby("genotype")["tray"].nunique().to_dict() == {"A": 4, "B": 4}
    assert stored.groupby(["genotype", "tray"]).size().eq(9).all()


# ----------------------------------------------------------------------------- slow


# lme4 (REML) variances of the 3-level achievement model (shared/data/reference_lme4.json).
LME4 = {"child": 0.66367, "school": 0.08750, "Residual": 0.34452}


@pytest.mark.slow
def test_achievement_iccs_match_lme4(achievement_fit):
    vp = hb.variance_partition(achievement_fit)
    total = sum(LME4.values())
    expected = {"child": (LME4["school"] + LME4["child"]) / total, "school": LME4["school"] / total}
    for level, value in expected.items():
        row = vp.icc.loc[level]
        assert row["lower"] <= value <= row["upper"], (level, value, row.to_dict())
        # Frequentist reference: within two posterior sds.
        assert abs(row["mean"] - value) / row["sd"] < 2.0, (level, value, row.to_dict())


@pytest.fixture(scope="module")
def seedlings_fit():
    import warnings

    df = hb.datasets.load("seedlings")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        return hb.fit(
            "weight ~ genotype + (1 | genotype:tray)",
            df,
            chains=2,
            draws=1000,
            tune=1000,
            random_seed=2,
            target_accept=0.95,
            progressbar=False,
        )


@pytest.mark.slow
def test_seedlings_partition_and_genotype_effect(seedlings_fit):
    vp = hb.variance_partition(seedlings_fit)
    assert list(vp.icc.index) == ["genotype:tray"]
    # True values: tray variance 1, residual 2.25 (ICC 0.31); 8 trays give a wide interval.
    row = vp.icc.loc["genotype:tray"]
    assert row["lower"] <= 1.0 / 3.25 <= row["upper"]
    beta = seedlings_fit.posterior["beta"].sel(coef="genotype[T.B]").values.ravel()
    lo, hi = np.quantile(beta, [0.03, 0.97])
    assert lo <= GAMMA["B"] - GAMMA["A"] <= hi


@pytest.mark.slow
def test_seedlings_contrast_covers_the_true_difference(seedlings_fit):
    from hierbayes.summaries.contrasts import contrast

    row = contrast(seedlings_fit, "genotype[T.B]").table.loc["estimate"]
    assert row["lower"] <= GAMMA["B"] - GAMMA["A"] <= row["upper"]
    # The same contrast written as the difference of the two genotype means.
    same = contrast(seedlings_fit, "(Intercept + genotype[T.B]) - Intercept").table.loc["estimate"]
    assert same["mean"] == pytest.approx(row["mean"])
