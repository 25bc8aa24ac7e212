"""Shrinkage tables: no pooling, complete pooling, partial pooling and the pooling factor.

Synthetic posteriors (constant draws) check every column against a hand computation; the slow
tests check eight schools and the achievement schools.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

import hierbayes as hb


def test_one_factor_with_a_covariate(synthetic_fit):
    rng = np.random.default_rng(1)
    g = np.repeat(["a", "b", "c"], [2, 3, 5])
    x = rng.normal(size=10)
    y = rng.normal(size=10)
    data = pd.DataFrame({"g": g, "x": x, "y": y})
    tau, sigma, b0, b1 = 2.0, 1.0, 1.0, 0.5
    u = np.array([[0.3], [-0.2], [0.1]])
    values = {"beta": [b0, b1], "sd_g": [tau], "sigma": sigma, "u_g": u}
    fit = synthetic_fit("y ~ x + (1 | g)", data, values)
    table = hb.shrinkage(fit, "g")

    y_tilde = pd.Series(y - b1 * x)  # other fixed effects at their posterior means
    n = np.array([2, 3, 5])
    assert list(table.index) == ["a", "b", "c"] and table.index.name == "g"
    np.testing.assert_array_equal(table["n"], n)
    np.testing.assert_allclose(table["no_pooling"], y_tilde.groupby(g).mean().to_numpy())
    np.testing.assert_allclose(table["complete_pooling"], y_tilde.mean())
    np.testing.assert_allclose(table["partial_pooling"], b0 + u[:, 0])
    np.testing.assert_allclose(table["lower"], b0 + u[:, 0])
    np.testing.assert_allclose(table["population"], b0)
    v = sigma**2 / n
    np.testing.assert_allclose(table["shrinkage"], v / (tau**2 + v))
    assert np.all(np.diff(table["shrinkage"]) < 0)  # larger groups are pooled less


def test_known_sigma_one_row_per_group(synthetic_fit):
    y = np.array([28.0, 8.0, -3.0, 7.0])
    sigma = np.array([15.0, 10.0, 16.0, 11.0])
    data = pd.DataFrame({"school": list("ABCD"), "y": y, "sigma": sigma})
    tau = 5.0
    fit = synthetic_fit(
        "y | se(sigma) ~ 1 + (1 | school)", data, {"beta": [4.0], "sd_school": [tau], "u_school": np.zeros((4, 1))}
    )
    table = hb.shrinkage(fit, "school")
    np.testing.assert_allclose(table["no_pooling"], y)
    w = 1 / sigma**2
    np.testing.assert_allclose(table["complete_pooling"], np.sum(w * y) / np.sum(w))
    np.testing.assert_allclose(table["shrinkage"], sigma**2 / (sigma**2 + tau**2))
    np.testing.assert_array_equal(table["n"], 1)


@pytest.fixture(scope="module")
def unbalanced_three_level():
    """School s1: children 1 (1 row) and 2 (3 rows); school s2: children 3 and 4 (2 rows each)."""
    sizes = {("s1", 1): 1, ("s1", 2): 3, ("s2", 3): 2, ("s2", 4): 2}
    rows = [{"school": s, "child": c} for (s, c), k in sizes.items() for _ in range(k)]
    frame = pd.DataFrame(rows)
    frame["y"] = np.random.default_rng(2).normal(size=len(frame))
    return frame


def test_nested_outer_factor_uses_precision_weighted_child_means(synthetic_fit, unbalanced_three_level):
    data = unbalanced_three_level
    nu2, tau2, sigma2 = 1.0, 2.0, 1.0
    values = {
        "beta": [0.5],
        "sd_school": [np.sqrt(nu2)],
        "sd_child": [np.sqrt(tau2)],
        "sigma": np.sqrt(sigma2),
        "u_school": [[0.2], [-0.2]],
        "u_child": [[0.1], [0.0], [-0.3], [0.4]],
    }
    fit = synthetic_fit("y ~ 1 + (1 | school) + (1 | child)", data, values)
    table = hb.shrinkage(fit, "school")
    child = data.groupby(["school", "child"])["y"].agg(["mean", "size"]).reset_index()
    child["w"] = child["size"] / (sigma2 + child["size"] * tau2)  # precision of a child mean about the school
    expected, shrink = [], []
    for _, part in child.groupby("school"):
        expected.append(np.sum(part.w * part["mean"]) / part.w.sum())
        v = 1 / part.w.sum()
        shrink.append(v / (nu2 + v))
    np.testing.assert_allclose(table["no_pooling"], expected)
    np.testing.assert_allclose(table["shrinkage"], shrink)
    np.testing.assert_allclose(table["complete_pooling"], np.sum(child.w * child["mean"]) / child.w.sum())
    np.testing.assert_allclose(table["partial_pooling"], [0.7, 0.3])
    np.testing.assert_array_equal(table["n"], [4, 4])

    # The inner factor is pooled towards its school: population = beta + school effect.
    inner = hb.shrinkage(fit, "child")
    np.testing.assert_allclose(inner["population"], [0.7, 0.7, 0.3, 0.3])
    np.testing.assert_allclose(inner["partial_pooling"], [0.8, 0.7, 0.0, 0.7])
    np.testing.assert_allclose(inner["no_pooling"], child["mean"])
    v = sigma2 / child["size"].to_numpy()
    np.testing.assert_allclose(inner["shrinkage"], v / (tau2 + v))
    effects = hb.group_effects(fit, "child")
    np.testing.assert_allclose(effects["mean"], [0.1, 0.0, -0.3, 0.4])
    np.testing.assert_allclose(hb.group_effects(fit, "child", total=True)["mean"], [0.8, 0.7, 0.0, 0.7])


def test_random_slope_shrinkage(synthetic_fit):
    rng = np.random.default_rng(4)
    x = np.tile([0.0, 1.0, 2.0, 3.0], 3)
    g = np.repeat(["g1", "g2", "g3"], 4)
    data = pd.DataFrame({"g": g, "x": x, "y": rng.normal(size=12) + x})
    s0, s1, rho, sigma = 1.0, 0.5, 0.3, 2.0
    omega = np.array([[s0**2, rho * s0 * s1], [rho * s0 * s1, s1**2]])
    u = rng.normal(size=(3, 2))
    values = {"beta": [1.0, 2.0], "sd_g": [s0, s1], "corr_g": [[1, rho], [rho, 1]], "sigma": sigma, "u_g": u}
    fit = synthetic_fit("y ~ x + (1 + x | g)", data, values)
    table = hb.shrinkage(fit, "g", coef="x")
    Z = np.column_stack([np.ones(4), x[:4]])
    slopes = [np.linalg.lstsq(Z, data.y[g == lev], rcond=None)[0][1] for lev in ("g1", "g2", "g3")]
    np.testing.assert_allclose(table["no_pooling"], slopes)
    Zall = np.column_stack([np.ones(12), x])
    np.testing.assert_allclose(table["complete_pooling"], np.linalg.lstsq(Zall, data.y, rcond=None)[0][1])
    np.testing.assert_allclose(table["partial_pooling"], 2.0 + u[:, 1])
    V = sigma**2 * np.linalg.inv(Z.T @ Z)
    S = V @ np.linalg.inv(omega + V)
    np.testing.assert_allclose(table["shrinkage"], S[1, 1])
    assert table.attrs["coef"] == "x"


def test_errors(synthetic_fit, unbalanced_three_level):
    data = unbalanced_three_level
    values = {"beta": [0.0], "sd_school": [1.0], "sd_child": [1.0], "sigma": 1.0}
    fit = synthetic_fit("y ~ 1 + (1 | school) + (1 | child)", data, values)
    with pytest.raises(hb.SpecError, match=r"No grouping factor 'class'.*'school', 'child'"):
        hb.shrinkage(fit, "class")
    with pytest.raises(hb.SpecError, match=r"'x' does not vary by 'school'.*Intercept"):
        hb.shrinkage(fit, "school", coef="x")
    binary = data.assign(y=(data.y > 0).astype(int))
    glmm = synthetic_fit("y ~ 1 + (1 | school)", binary, {"beta": [0.0], "sd_school": [1.0]}, family="bernoulli")
    with pytest.raises(hb.SpecError, match=r"Gaussian model.*bernoulli.*group_effects"):
        hb.shrinkage(glmm, "school")
    with pytest.raises(ValueError, match="prob"):
        hb.group_effects(fit, "school", prob=0)


# ----------------------------------------------------------------------------- slow


def _coefficient_mcse(fit: hb.Fit, group: str) -> np.ndarray:
    post = fit.posterior
    draws = post["beta"].sel(coef="Intercept") + post[f"u_{group}"].sel({f"{group}__coef": "Intercept"})
    return np.asarray(az.mcse(draws).values)


@pytest.mark.slow
def test_eight_schools_shrinkage(eight_schools_fit):
    table = hb.shrinkage(eight_schools_fit, "school")
    data = eight_schools_fit.data
    np.testing.assert_allclose(table["no_pooling"], data["y"])  # one row per school: y_j
    w = 1 / data["sigma"] ** 2
    np.testing.assert_allclose(table["complete_pooling"], np.sum(w * data["y"]) / np.sum(w))
    # Partial pooling lies between no pooling and complete pooling (up to 3 Monte Carlo se).
    tol = 3 * _coefficient_mcse(eight_schools_fit, "school")
    lo = np.minimum(table["no_pooling"], table["complete_pooling"]) - tol
    hi = np.maximum(table["no_pooling"], table["complete_pooling"]) + tol
    assert np.all((table["partial_pooling"] >= lo) & (table["partial_pooling"] <= hi)), table
    # All n = 1; the known sigma_j sets the information: larger sigma_j, more shrinkage, exactly
    # (sigma_j^2 / (sigma_j^2 + tau^2) is increasing in sigma_j for every draw).
    assert spearmanr(data["sigma"], table["shrinkage"]).statistic == pytest.approx(1.0)
    assert np.all((table["shrinkage"] > 0) & (table["shrinkage"] < 1))


@pytest.mark.slow
def test_achievement_school_shrinkage(achievement_fit):
    table = hb.shrinkage(achievement_fit, "school")
    assert table["n"].sum() == achievement_fit.design.n_obs
    # The model pools each school towards the population intercept, which differs a little from
    # the separate complete-pooling estimate (|difference| = `gap`), and the posterior means carry
    # Monte Carlo error. A school whose no-pooling estimate lies within gap + 3 MCSE of complete
    # pooling can therefore sit just outside the segment; every other school must lie on it.
    mcse = _coefficient_mcse(achievement_fit, "school")
    gap = abs(float(table["population"].iloc[0] - table["complete_pooling"].iloc[0]))
    clear = (table["no_pooling"] - table["complete_pooling"]).abs() > gap + 3 * mcse
    lo = np.minimum(table["no_pooling"], table["complete_pooling"])
    hi = np.maximum(table["no_pooling"], table["complete_pooling"])
    between = (table["partial_pooling"] >= lo) & (table["partial_pooling"] <= hi)
    assert between[clear].all(), table[clear & ~between]
    assert clear.sum() >= 50  # the exceptions are few (60 schools)
    # Every school lies between its no-pooling estimate and the population value, up to 3 MCSE.
    lo = np.minimum(table["no_pooling"], table["population"]) - 3 * mcse
    hi = np.maximum(table["no_pooling"], table["population"]) + 3 * mcse
    assert ((table["partial_pooling"] >= lo) & (table["partial_pooling"] <= hi)).all()
    # Bigger schools are pooled less.
    assert spearmanr(table["n"], table["shrinkage"]).statistic < -0.9
