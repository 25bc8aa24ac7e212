"""Dask data: sufficient statistics, checks and posteriors agree with the in-memory path (small data)."""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.design import design_statistics
from hierbayes.inference.collapsed import build as bc

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """A light 2-worker cluster (threads, no processes) shared by the module."""
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(7)
    K, J, n = 12, 90, 1500
    school_of = rng.integers(0, K, J)
    cls = rng.integers(0, J, n)
    u1, u2 = rng.normal(0, 0.8, K), rng.normal(0, 0.5, J)
    x = rng.normal(10.0, 3.0, n)
    g = rng.choice(["a", "b", "c"], n)
    y = 1.0 + 0.4 * x + (g == "b") * 0.5 + u1[school_of[cls]] + u2[cls] + rng.normal(0, 1.0, n)
    return pd.DataFrame(
        {"y": y, "x": x, "g": g, "school": [f"s{k}" for k in school_of[cls]], "cls": cls % 9, "w": rng.normal(size=n)}
    )


def _ddf(frame, npartitions=4):
    return dd.from_pandas(frame, npartitions=npartitions)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


FORMULAS = [
    "y ~ x + g + (1 | school/cls)",
    "y ~ x + (1 + x | school)",
    "y ~ 0 + x + (1 + w || school/cls)",
    "y ~ x + offset(w) + (1 | school)",
]


@pytest.mark.parametrize("formula", FORMULAS)
def test_statistics_from_dask_equal_in_memory(client, frame, formula):
    spec = hb.parse_formula(formula)
    lazy = hb.make_design_dask(spec, _ddf(frame, 5))
    mem = hb.make_design(spec, frame)
    assert lazy.is_sample is False and lazy.n_total == len(frame)
    assert [g.levels for g in lazy.groups] == [g.levels for g in mem.groups]
    assert [g.parent for g in lazy.groups] == [g.parent for g in mem.groups]
    for a, b in zip(lazy.groups, mem.groups, strict=True):
        if b.parent_index is not None:
            np.testing.assert_array_equal(a.parent_index, b.parent_index)
    s_lazy, s_mem = lazy.statistics, design_statistics(mem)
    assert s_lazy.n == s_mem.n
    assert _rel(s_lazy.means, s_mem.means) < 1e-10
    assert _rel(s_lazy.covariance, s_mem.covariance) < 1e-10
    for a, b in zip(s_lazy.groups, s_mem.groups, strict=True):
        assert _rel(a.gram, b.gram) < 1e-10
    for key, value in s_mem.cross.items():
        assert _rel(s_lazy.cross[key], value) < 1e-10
    # and what the collapsed model reads (shift-free: standardised residual block, R'R, Z'R)
    c_lazy, c_mem = bc.collapsed_data(lazy), bc.collapsed_data(mem)
    assert _rel(c_lazy.RtR, c_mem.RtR) < 1e-10
    for a, b in zip(c_lazy.ZtR, c_mem.ZtR, strict=True):
        assert _rel(a, b) < 1e-10
    np.testing.assert_allclose(c_lazy.beta_ref, c_mem.beta_ref, rtol=1e-10, atol=1e-12)
    assert hb.resolve_priors(lazy).B == pytest.approx(hb.resolve_priors(mem).B, rel=1e-10)


def test_reml_from_dask_equals_in_memory(client, frame):
    eb_lazy = hb.empirical_bayes("y ~ x + (1 | school/cls)", _ddf(frame, 3))
    eb_mem = hb.empirical_bayes("y ~ x + (1 | school/cls)", frame)
    assert eb_lazy.criterion == pytest.approx(eb_mem.criterion, rel=1e-8)


def test_categories_missing_from_the_sample_are_encoded(client, frame):
    """A rare category (absent from the row sample) and C() of numbers get the in-memory columns."""
    rare = frame.assign(g=np.where(np.arange(len(frame)) == 1400, "zz", frame["g"]), k=np.arange(len(frame)) % 4)
    spec = hb.parse_formula("y ~ x + g + C(k) + (1 | school)")
    lazy = hb.make_design_dask(spec, _ddf(rare), sample_rows=50, random_seed=1)
    mem = hb.make_design(spec, rare)
    assert "zz" not in set(lazy.data["g"]) and lazy.fixed_names == mem.fixed_names
    assert _rel(bc.collapsed_data(lazy).RtR, bc.collapsed_data(mem).RtR) < 1e-10


def test_parquet_glob_reads_lazily(client, frame, tmp_path):
    for k, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part-{k}.parquet")
    spec = hb.parse_formula("y ~ x + (1 | school/cls)")
    lazy = hb.make_design_dask(spec, str(tmp_path / "*.parquet"))
    c_lazy, c_mem = bc.collapsed_data(lazy), bc.collapsed_data(hb.make_design(spec, frame))
    assert _rel(c_lazy.RtR, c_mem.RtR) < 1e-10
    assert hb.make_design_dask(spec, tmp_path).n_total == len(frame)  # a folder (pathlib.Path) of Parquet files


def test_row_sample_is_seeded_uniform_and_said(client, frame):
    spec = hb.parse_formula("y ~ x + (1 | school)")
    a = hb.make_design_dask(spec, _ddf(frame), sample_rows=200, random_seed=3)
    b = hb.make_design_dask(spec, _ddf(frame), sample_rows=200, random_seed=3)
    assert a.is_sample and a.n_obs == 200 and a.n_total == len(frame)
    np.testing.assert_array_equal(a.y, b.y)
    pd.testing.assert_frame_equal(a.data, b.data)
    np.testing.assert_array_equal(a.y, frame.loc[a.data.index, "y"])  # the rows are real rows


def _dense_logpdf(frame, design_mem, beta, sd_outer, sd_inner, sigma):
    """log N(y | X beta + o, sigma^2 I + Z_1 Z_1' sd_1^2 + Z_2 Z_2' sd_2^2), dense."""
    n = len(frame)
    V = sigma**2 * np.eye(n)
    for g, sd in zip(design_mem.groups, (sd_outer, sd_inner), strict=True):
        Z = np.zeros((n, g.n_levels))
        Z[np.arange(n), g.index] = 1.0
        V += sd**2 * Z @ Z.T
    offset = design_mem.offset if design_mem.offset is not None else 0.0
    return stats.multivariate_normal(design_mem.X @ beta + offset, V).logpdf(design_mem.y)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | school/cls)", "y ~ x + offset(w) + (1 | school/cls)"])
def test_collapsed_loglik_from_dask_statistics_matches_dense_mvn(client, frame, formula):
    small = frame.iloc[:300]
    spec = hb.parse_formula(formula)
    lazy = hb.make_design_dask(spec, _ddf(small, 3))
    mem = hb.make_design(spec, small)
    model = bc.build_collapsed_model(lazy)
    scaling = bc.collapsed_data(lazy).scaling
    beta_std = np.array([0.3, 1.1])
    point = {"beta_std": beta_std, "sigma_log__": np.log(0.9), "sd_school_log__": np.log([0.7]),
             "sd_school:cls_log__": np.log([0.4])}
    got = model.compile_logp(vars=model.potentials, jacobian=False)(point)
    expected = _dense_logpdf(small, mem, scaling.A @ beta_std, 0.7, 0.4, 0.9)
    assert got == pytest.approx(expected, abs=1e-8)
    # the in-memory design's statistics give the same density
    model_mem = bc.build_collapsed_model(mem)
    assert model_mem.compile_logp(vars=model_mem.potentials, jacobian=False)(point) == pytest.approx(expected, abs=1e-8)


@pytest.mark.filterwarnings("ignore::hierbayes.ConvergenceWarning")  # short chains, compared by their MC error
def test_posterior_from_dask_and_pandas_agree(client, frame, tmp_path):
    kw = {"draws": 300, "tune": 300, "chains": 2, "random_seed": 11, "progressbar": False}
    formula = "y ~ x + g + (1 | school/cls)"
    lazy = hb.fit(formula, _ddf(frame, 4), **kw)
    mem = hb.fit(formula, frame, **kw)
    assert lazy.settings["method"] == "collapsed" and lazy.settings["rows"] == len(frame)
    for name in ["beta", "sigma", "sd_school", "sd_school:cls"]:
        a, b = lazy.posterior[name], mem.posterior[name]
        diff = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))).values
        # Monte Carlo error of each mean (sd / sqrt(ESS), with a conservative ESS of a quarter of the draws)
        mcse = np.sqrt(a.var(("chain", "draw")).values / 150 + b.var(("chain", "draw")).values / 150)
        assert np.all(diff < 4 * mcse), (name, diff, mcse)
    assert lazy.posterior["u_school:cls"].shape == mem.posterior["u_school:cls"].shape
    # row-level summaries of a fit whose design holds a sample of the rows say so
    sampled = dataclasses.replace(
        lazy, design=hb.make_design_dask(lazy.spec, _ddf(frame, 4), sample_rows=100, random_seed=11)
    )
    ll = hb.log_likelihood(sampled)
    assert ll.sizes["obs"] == 100 and "random sample of 100 of the 1500 rows" in ll.attrs["rows"]
    yrep = hb.posterior_predictive(sampled, random_seed=1)
    assert yrep.sizes["obs"] == 100 and "rows" in yrep.attrs
    with pytest.raises(ValueError, match="Cannot save a fit to Dask data"):
        hb.save(sampled, tmp_path / "fit.nc")


# ----------------------------------------------------------------------------- errors as in memory


def _same_error(frame, ddf, formula, exc=hb.DataError):
    spec = hb.parse_formula(formula)
    with pytest.raises(exc) as mem:
        hb.make_design(spec, frame)
    with pytest.raises(exc) as lazy:
        hb.make_design_dask(spec, ddf)
    return str(mem.value), str(lazy.value)


def test_missing_column_same_error(client, frame):
    mem, lazy = _same_error(frame, _ddf(frame), "y ~ xx + (1 | school)")
    assert mem == lazy
    assert "Column 'xx'" in lazy and "Did you mean 'x'" in lazy


def test_nan_in_one_partition_names_column_partition_and_row(client, frame):
    bad = frame.copy()
    bad.loc[1000, "x"] = np.nan  # row 1000 lies in the third of four partitions
    mem, lazy = _same_error(bad, _ddf(bad, 4), "y ~ x + (1 | school)")
    assert lazy.startswith(mem.split(" Nothing is dropped")[0])
    assert "column 'x', partition 2, row 1000" in lazy


def test_nan_dropna_matches_in_memory(client, frame):
    bad = frame.copy()
    bad.loc[[5, 1000], "x"] = np.nan
    spec = hb.parse_formula("y ~ x + (1 | school)")
    with pytest.warns(UserWarning, match="dropped 2 of 1500 rows"):
        lazy = hb.make_design_dask(spec, _ddf(bad), dropna=True)
    with pytest.warns(UserWarning, match="dropped 2 of 1500 rows"):
        mem = hb.make_design(spec, bad, dropna=True)
    assert lazy.dropped == mem.dropped == {"x": 2}
    assert _rel(bc.collapsed_data(lazy).RtR, bc.collapsed_data(mem).RtR) < 1e-10


def test_infinite_value_same_error(client, frame):
    bad = frame.copy()
    bad.loc[700, "x"] = np.inf
    mem, lazy = _same_error(bad, _ddf(bad, 4), "y ~ x + (1 | school)")
    assert mem.split(" (e.g.")[0] == lazy.split(" (e.g.")[0]
    assert "partition 1" in lazy


def test_ids_reused_across_schools_same_warning(client, frame):
    spec = hb.parse_formula("y ~ x + (1 | school) + (1 | cls)")  # cls ids repeat across schools
    with pytest.warns(hb.NestingWarning) as mem:
        hb.make_design(spec, frame)
    with pytest.warns(hb.NestingWarning) as lazy, pytest.raises(hb.SpecError, match="crossed"):
        hb.make_design_dask(spec, _ddf(frame))
    assert str(mem[0].message) == str(lazy[0].message)
    assert re.search(r"\(1 \| school/cls\)", str(lazy[0].message))


def test_reversed_nesting_path_same_error(client):
    df = pd.DataFrame({"y": np.arange(12.0), "school": list("AABBCCDDEEFF"), "district": list("abcdefghijkl")})
    df["y"] += np.sin(np.arange(12))
    mem, lazy = _same_error(df, dd.from_pandas(df, npartitions=3), "y ~ 1 + (1 | district/school)")
    assert mem == lazy


def test_unsupported_models_say_what_to_do(client, frame):
    spec = hb.parse_formula("y ~ x + (1 | school)", family="negative_binomial")
    with pytest.raises(hb.SpecError, match=r"sample\(frac"):
        hb.fit(spec, _ddf(frame.assign(y=np.arange(len(frame)) % 5)), progressbar=False)
    with pytest.raises(ValueError, match="collapsed method"):
        hb.fit("y ~ x + (1 | school)", _ddf(frame), method="full", progressbar=False)


# ----------------------------------------------------------------------------- exact count aggregation


@pytest.mark.filterwarnings("ignore::hierbayes.ConvergenceWarning")  # short chains, compared by their MC error
def test_bernoulli_rows_aggregate_to_binomial_counts(client):
    rng = np.random.default_rng(5)
    n, G = 2000, 15
    grp = rng.integers(0, G, n)
    x = rng.integers(0, 3, n).astype(float)  # few covariate patterns
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.7, G)[grp]
    df = pd.DataFrame({"y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), "x": x, "grp": grp})
    spec, agg = hb.aggregate_counts(hb.parse_formula("y ~ x + (1 | grp)", family="bernoulli"), _ddf(df, 4))
    assert spec.family == "binomial" and spec.trials == "n_trials"
    assert agg["n_trials"].sum() == n and agg["y"].sum() == df["y"].sum()
    assert len(agg) == len(df.groupby(["x", "grp"]))
    kw = {"draws": 400, "tune": 400, "chains": 2, "random_seed": 2, "progressbar": False}
    counts = hb.fit("y ~ x + (1 | grp)", _ddf(df, 4), family="bernoulli", **kw)
    rows = hb.fit("y ~ x + (1 | grp)", df, family="bernoulli", **kw)
    assert counts.spec.family == "binomial"
    for name in ["beta", "sd_grp"]:
        a, b = counts.posterior[name], rows.posterior[name]
        diff = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))).values
        mcse = np.sqrt(a.var(("chain", "draw")).values / 200 + b.var(("chain", "draw")).values / 200)
        assert np.all(diff < 4 * mcse), (name, diff, mcse)


def test_poisson_rows_aggregate_with_summed_exposure(client):
    df = pd.DataFrame({"y": [1, 2, 0, 3, 4, 1], "x": [0.0, 0.0, 1.0, 1.0, 0.0, 0.0], "grp": list("aabbba"),
                       "logE": np.log([1.0, 2.0, 1.0, 3.0, 1.0, 0.5])})
    spec, agg = hb.aggregate_counts(hb.parse_formula("y ~ x + offset(logE) + (1 | grp)", family="poisson"),
                                    dd.from_pandas(df, npartitions=2))
    assert spec.offset == "log_exposure"
    row = agg[(agg.grp == "a") & (agg.x == 0.0)].iloc[0]
    assert row.y == 4 and np.exp(row.log_exposure) == pytest.approx(3.5)


def test_no_warning_leaks(client, frame):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hb.make_design_dask(hb.parse_formula("y ~ x + (1 | school)"), _ddf(frame))


def test_install_hint_without_dask(monkeypatch, frame):
    import sys

    monkeypatch.setitem(sys.modules, "dask.dataframe", None)  # as if dask were not installed
    with pytest.raises(ImportError, match=r'pip install "hierbayes\[dask\]"'):
        hb.make_design_dask(hb.parse_formula("y ~ x + (1 | school)"), "data/*.parquet")


def test_progress_is_shown(client, frame, capsys):
    hb.make_design_dask(hb.parse_formula("y ~ x + (1 | school)"), _ddf(frame), progressbar=True)
    assert "100% Completed" in capsys.readouterr().out  # distributed's text progress bar, one per pass


def test_row_sample_merge_is_uniform():
    """The per-partition reservoirs merged pairwise give each row the same chance, k / n."""
    from hierbayes.design_dask.scan import _merge_scans, _scan_partition

    a = pd.DataFrame({"y": np.arange(30.0), "g": 0})
    b = pd.DataFrame({"y": np.arange(30.0, 100.0), "g": 0})
    hits = np.zeros(100)
    for seed in range(400):
        sa = _scan_partition(a, 0, ["y"], ["g"], [], 10, seed)
        sb = _scan_partition(b, 1, ["y"], ["g"], [], 10, seed)
        merged = _merge_scans(sa, sb, 0, 10, seed)
        assert len(merged.sample) == 10 and merged.sample["y"].is_unique
        hits[merged.sample["y"].to_numpy(dtype=int)] += 1
    # each row is kept with probability 0.1: 40 of 400 on average, binomial sd 6
    assert abs(hits[:30].mean() - 40) < 3 and abs(hits[30:].mean() - 40) < 2
    assert abs(hits[:50].mean() - hits[50:].mean()) < 4  # no preference for early rows
