"""Simulation-based calibration (hierbayes.inference.calibration).

* fast: the rank bookkeeping, the chi-square test and the plots on hand-made ranks;
* ``slow`` (normal suite, < 60 s): a 20-simulation random-intercept check, so the whole
  pipeline (prior draws -> nutpie refits -> ranks) runs in CI;
* ``sbc`` (``make sbc``; excluded from ``make test``): 100 simulations for each of the
  random-intercept, random-slope, nested and logistic builders at small sizes, refitted with
  nutpie and with numpyro (``hb.fit``'s default sampler; 20 simulations of two builders with
  it in the normal suite). Every scalar
  parameter's ranks must pass the chi-square uniformity test at p >= 0.001. With 17 parameters
  over the four models, the chance that a correctly calibrated sampler fails anywhere is at most
  17 x 0.001 = 1.7% per sampler (Bonferroni); a miscalibration large enough to matter (a biased or
  too-narrow posterior) gives p-values far below 0.001 at 100 simulations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

import hierbayes as hb
from hierbayes.inference.calibration import Calibration, _choose_bins


def synthetic(ranks: dict[str, np.ndarray], n_draws: int = 99, bins: int = 10) -> Calibration:
    df = pd.DataFrame(ranks).astype("Int64")
    width = (n_draws + 1) // bins
    pvalues = pd.Series(
        {c: stats.chisquare(np.bincount(df[c].to_numpy(dtype=int) // width, minlength=bins)).pvalue for c in df}
    )
    return Calibration(
        ranks=df,
        truth=df.astype(float),
        n_draws=n_draws,
        bins=bins,
        pvalues=pvalues,
        sims=pd.DataFrame({"divergences": np.zeros(len(df), int)}),
        spec=hb.parse_formula("y ~ x + (1 | g)"),
    )


def test_bins_and_table_on_known_ranks():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 100, size=200)
    biased = np.minimum(rng.integers(0, 100, size=200), rng.integers(0, 100, size=200))  # ranks piled low
    cal = synthetic({"beta[x]": uniform, "sd_Subject[Days]": biased})
    counts = cal.bin_counts()
    assert counts.shape == (10, 2) and (counts.sum() == 200).all()
    np.testing.assert_array_equal(counts["beta[x]"], np.bincount(uniform // 10, minlength=10))
    table = cal.table()
    assert list(table.columns) == ["p_value", "chi2", "expected_per_bin", "min_bin", "max_bin"]
    assert table.loc["beta[x]", "p_value"] > 0.01
    assert table.loc["sd_Subject[Days]", "p_value"] < 1e-6
    assert table.loc["beta[x]", "expected_per_bin"] == 20


def test_choose_bins():
    assert _choose_bins(20) == 4
    assert _choose_bins(100) == 20
    assert _choose_bins(1000) == 20
    assert _choose_bins(3) == 2


def test_plots_return_figures():
    rng = np.random.default_rng(1)
    cal = synthetic({f"p{k}": rng.integers(0, 100, size=50) for k in range(5)})
    fig = cal.plot()
    assert isinstance(fig, Figure)
    assert sum(ax.get_visible() for ax in fig.axes) == 5
    assert "p = " in fig.axes[0].get_title()
    assert isinstance(cal.plot(kind="ecdf"), Figure)
    with pytest.raises(ValueError, match="kind must be 'hist' or 'ecdf'"):
        cal.plot(kind="bars")  # type: ignore[arg-type]


def test_argument_checks():
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0], "g": ["a", "a", "b", "b"]})
    with pytest.raises(ValueError, match="n_sims must be at least 2"):
        hb.check_calibration(hb.parse_formula("y ~ 1 + (1 | g)"), df, n_sims=1)


def small_data(J: int, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"g": np.repeat(np.arange(J), n), "x": rng.normal(size=J * n), "y": rng.normal(size=J * n)})


@pytest.mark.slow
def test_random_intercept_calibration_small():
    """20 simulations: exercises the whole pipeline in the normal suite (about 20 s)."""
    spec = hb.random_intercept(y="y", group="g", x="x")
    cal = hb.check_calibration(spec, small_data(8, 5), n_sims=20, draws=500, thin=10, random_seed=1)
    assert list(cal.ranks.columns) == ["beta[Intercept]", "beta[x]", "sd_g", "sigma"]  # (1 | g): a scalar sd_g
    assert cal.ranks.shape == (20, 4) and cal.truth.shape == (20, 4)
    assert cal.n_draws == 99 and cal.bins == 4
    assert cal.ranks.notna().all().all()
    assert ((cal.ranks >= 0) & (cal.ranks <= cal.n_draws)).all().all()
    assert (cal.sims["divergences"] >= 0).all()
    assert (cal.truth["sd_g"] > 0).all() and (cal.truth["sigma"] > 0).all()
    # 4 parameters at 20 simulations: only a gross error fails (Bonferroni 4 x 0.001).
    assert (cal.pvalues >= 0.001).all(), cal.table()
    assert isinstance(cal.plot(), Figure)


SBC_CASES = {
    "random_intercept": lambda: (hb.random_intercept(y="y", group="g", x="x"), small_data(8, 5, seed=1)),
    "random_slopes": lambda: (hb.random_slopes(y="y", group="g", slopes="x"), small_data(8, 6, seed=2)),
    "nested": lambda: (
        hb.nested(y="y", groups=["school", "child"]),
        pd.DataFrame(
            {
                "school": np.repeat(np.arange(4), 9),
                "child": np.tile(np.repeat(np.arange(3), 3), 4),
                "y": np.random.default_rng(3).normal(size=36),
            }
        ),
    ),
    "logistic": lambda: (
        hb.glmm(y="y", family="bernoulli", groups="g", x="x"),
        small_data(10, 8, seed=4).assign(y=lambda d: (d["x"] + np.random.default_rng(4).normal(size=len(d)) > 0) * 1),
    ),
    # 40 groups of 1-3 rows: the regime numpyro samples partially centred (jax_nuts.PILOT)
    "small_groups": lambda: (
        hb.glmm(y="y", family="bernoulli", groups="g", x="x"),
        pd.DataFrame({"g": np.repeat(np.arange(40), np.random.default_rng(5).integers(1, 4, size=40))}).assign(
            x=lambda d: np.random.default_rng(6).normal(size=len(d)), y=lambda d: (d["x"] > 0) * 1
        ),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["random_intercept", "logistic", "small_groups"])
def test_calibration_small_with_the_default_sampler(builder):
    """20 simulations refitted with numpyro (``hb.fit``'s sampler, compiled once for all refits)."""
    spec, data = SBC_CASES[builder]()
    cal = hb.check_calibration(spec, data, n_sims=20, draws=500, thin=10, random_seed=1, sampler="numpyro")
    assert cal.ranks.notna().all().all() and cal.bins == 4
    assert (cal.pvalues >= 0.001).all(), cal.table()


def test_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="sampler must be 'nutpie' or 'numpyro'"):
        hb.check_calibration(hb.parse_formula("y ~ 1 + (1 | g)"), small_data(3, 2), sampler="pymc")  # type: ignore[arg-type]


@pytest.mark.sbc
@pytest.mark.parametrize("sampler", ["nutpie", "numpyro"])
@pytest.mark.parametrize("builder", list(SBC_CASES))
def test_sbc_builders(builder, sampler):
    spec, data = SBC_CASES[builder]()
    cal = hb.check_calibration(spec, data, n_sims=100, random_seed=2024, sampler=sampler)
    divergent = int((cal.sims["divergences"] > 0).sum())
    print(f"\n{builder} ({sampler}): {cal.n_sims} simulations, {divergent} with divergences")
    print(cal.table().round(4).to_string())
    assert cal.ranks.notna().all().all()
    assert (cal.pvalues >= 0.001).all(), cal.table()
