"""The marginal covariance of y implied by the model (Z Omega Z' + sigma^2 I).

Synthetic posteriors with constant draws give the block table exactly; the slow test checks the
achievement fit's matrix against its own variance partition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb


@pytest.fixture(scope="module")
def three_level():
    """Two schools, two children each (ids unique overall), three years per child."""
    rows = [
        {"school": s, "child": c, "year": t}
        for s, cs in (("s1", (1, 2)), ("s2", (3, 4)))
        for c in cs
        for t in (0, 1, 2)
    ]
    frame = pd.DataFrame(rows)
    frame["y"] = np.arange(len(frame), dtype=float)
    return frame


NU2, TAU2, SIGMA2 = 1.0, 2.0, 1.0  # school, child, residual variances
VALUES = {"beta": [0.0], "sd_school": [np.sqrt(NU2)], "sd_child": [np.sqrt(TAU2)], "sigma": np.sqrt(SIGMA2)}


def _block_table(data: pd.DataFrame) -> np.ndarray:
    """The seed's table: total on the diagonal, nu^2 + tau^2 same child, nu^2 same school, else 0."""
    n = len(data)
    out = np.zeros((n, n))
    for r in range(n):
        for s in range(n):
            a, b = data.iloc[r], data.iloc[s]
            if r == s:
                out[r, s] = NU2 + TAU2 + SIGMA2
            elif a.child == b.child:
                out[r, s] = NU2 + TAU2
            elif a.school == b.school:
                out[r, s] = NU2
    return out


def test_three_level_block_table_exact(synthetic_fit, three_level):
    fit = synthetic_fit("y ~ 1 + (1 | school) + (1 | child)", three_level, VALUES)
    cov = hb.implied_covariance(fit)
    np.testing.assert_allclose(cov.to_numpy(), _block_table(three_level), rtol=0, atol=1e-12)
    assert cov.index[0] == "school=s1, child=1, row=0"
    assert list(cov.columns) == list(cov.index)
    assert cov.attrs["scale"].startswith("data scale")

    corr = hb.implied_covariance(fit, rows=[0, 1, 3, 6], kind="correlation")
    total = NU2 + TAU2 + SIGMA2
    expected = np.array(
        [
            [1.0, (NU2 + TAU2) / total, NU2 / total, 0.0],
            [(NU2 + TAU2) / total, 1.0, NU2 / total, 0.0],
            [NU2 / total, NU2 / total, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(corr.to_numpy(), expected, atol=1e-12)
    assert corr.index[-1] == "school=s2, child=3, row=6"


def test_nesting_path_gives_the_same_table(synthetic_fit, three_level):
    values = {"beta": [0.0], "sd_school": [1.0], "sd_school:child": [np.sqrt(2.0)], "sigma": 1.0}
    fit = synthetic_fit("y ~ 1 + (1 | school/child)", three_level, values)
    np.testing.assert_allclose(hb.implied_covariance(fit).to_numpy(), _block_table(three_level), atol=1e-12)


def test_random_slopes_covariance_depends_on_x(synthetic_fit):
    x = np.tile([0.0, 1.0, 2.0, 3.0], 3)
    data = pd.DataFrame({"g": np.repeat(["g1", "g2", "g3"], 4), "x": x, "y": np.arange(12.0)})
    s0, s1, rho, sigma = 1.0, 2.0, 0.5, 1.5
    values = {"beta": [0.0, 0.0], "sd_g": [s0, s1], "corr_g": [[1.0, rho], [rho, 1.0]], "sigma": sigma}
    fit = synthetic_fit("y ~ x + (1 + x | g)", data, values)
    cov = hb.implied_covariance(fit, rows=list(range(8))).to_numpy()
    s01 = rho * s0 * s1
    for r in range(8):
        for s in range(8):
            same = data.g[r] == data.g[s]
            expected = (s0**2 + (x[r] + x[s]) * s01 + x[r] * x[s] * s1**2) * same + sigma**2 * (r == s)
            assert cov[r, s] == pytest.approx(expected, abs=1e-12)
    assert hb.implied_covariance(fit, rows=[5]).index[0] == "g=g2, x=1, row=5"


def test_known_sigma_on_the_diagonal(synthetic_fit):
    data = pd.DataFrame({"school": list("ABC"), "y": [1.0, 2.0, 3.0], "sigma": [1.0, 2.0, 3.0]})
    fit = synthetic_fit("y | se(sigma) ~ 1 + (1 | school)", data, {"beta": [0.0], "sd_school": [2.0]})
    cov = hb.implied_covariance(fit).to_numpy()
    np.testing.assert_allclose(cov, np.diag([5.0, 8.0, 13.0]), atol=1e-12)


def test_glmm_latent_scale(synthetic_fit):
    data = pd.DataFrame({"g": np.repeat(["a", "b"], 3), "y": [0, 1, 1, 0, 0, 1]})
    fit = synthetic_fit("y ~ 1 + (1 | g)", data, {"beta": [0.0], "sd_g": [1.0]}, family="bernoulli")
    cov = hb.implied_covariance(fit).to_numpy()
    assert cov[0, 0] == pytest.approx(1.0 + np.pi**2 / 3)
    assert cov[0, 1] == pytest.approx(1.0) and cov[0, 3] == 0.0
    assert "latent scale" in hb.implied_covariance(fit).attrs["scale"]

    counts = pd.DataFrame({"g": np.repeat(["a", "b"], 3), "x": [0.0, 1, 2, 0, 1, 2], "y": [0, 1, 3, 1, 2, 4]})
    fit = synthetic_fit("y ~ x + (1 | g)", counts, {"beta": [0.2, 0.5], "sd_g": [1.0]}, family="poisson")
    cov = hb.implied_covariance(fit).to_numpy()
    mu = np.exp(0.2 + 0.5 * counts.x.to_numpy() + 0.5)  # marginal mean of each row
    np.testing.assert_allclose(np.diag(cov), 1.0 + np.log1p(1 / mu))


def test_draws_and_posterior_mean_agree(synthetic_fit, three_level):
    rng = np.random.default_rng(5)
    sigma = rng.uniform(0.5, 2.0, size=(2, 40))
    values = {**VALUES, "sigma": sigma}
    fit = synthetic_fit("y ~ 1 + (1 | school) + (1 | child)", three_level, values, chains=2, draws=40)
    rows = [0, 1, 3, 6]
    draws = hb.implied_covariance_draws(fit, rows=rows)
    assert draws.dims == ("chain", "draw", "row", "row_")
    assert draws.shape == (2, 40, 4, 4)
    np.testing.assert_allclose(draws.values[..., 0, 0], NU2 + TAU2 + sigma**2)
    mean = hb.implied_covariance(fit, rows=rows)
    np.testing.assert_allclose(draws.mean(("chain", "draw")).values, mean.to_numpy())
    corr_draws = hb.implied_covariance_draws(fit, rows=rows, kind="correlation")
    corr = hb.implied_covariance(fit, rows=rows, kind="correlation")
    np.testing.assert_allclose(corr_draws.mean(("chain", "draw")).values, corr.to_numpy())
    np.testing.assert_allclose(corr_draws.values[..., 0, 1], (NU2 + TAU2) / (NU2 + TAU2 + sigma**2))


def test_bad_rows_and_kind(synthetic_fit, three_level):
    fit = synthetic_fit("y ~ 1 + (1 | school) + (1 | child)", three_level, VALUES)
    with pytest.raises(hb.DataError, match=r"not rows used in the fit \(e.g. 99\)"):
        hb.implied_covariance(fit, rows=[0, 99])
    with pytest.raises(hb.DataError, match="empty"):
        hb.implied_covariance(fit, rows=[])
    with pytest.raises(ValueError, match="kind must be"):
        hb.implied_covariance(fit, kind="precision")  # type: ignore[arg-type]


@pytest.mark.slow
def test_achievement_matrix_matches_its_variance_partition(achievement_fit):
    data = achievement_fit.data
    first_school = data[data.school == data.school.iloc[0]]
    child_a = first_school[first_school.child == first_school.child.iloc[0]].index[:2]
    child_b = first_school[first_school.child != first_school.child.iloc[0]].index[:1]
    other = data[data.school != data.school.iloc[0]].index[:1]
    rows = [*child_a, *child_b, *other]
    with pytest.raises(hb.DataError, match="Choose the rows"):
        hb.implied_covariance(achievement_fit)
    cov = hb.implied_covariance(achievement_fit, rows=rows).to_numpy()
    var = hb.variance_partition(achievement_fit).get("variance")["mean"]
    assert cov[0, 0] == pytest.approx(var.sum(), rel=1e-10)
    assert cov[0, 1] == pytest.approx(var["school"] + var["child"], rel=1e-10)
    assert cov[0, 2] == pytest.approx(var["school"], rel=1e-10)
    assert cov[0, 3] == 0.0
    corr = hb.implied_covariance(achievement_fit, rows=rows, kind="correlation").to_numpy()
    icc = hb.variance_partition(achievement_fit).icc["mean"]
    assert corr[0, 1] == pytest.approx(icc["child"], rel=1e-10)
    assert corr[0, 2] == pytest.approx(icc["school"], rel=1e-10)
