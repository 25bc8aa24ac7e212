"""Saving and loading fits (hierbayes.io) and spec <-> dict (hierbayes.spec.serialise)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierbayes as hb
from hierbayes import io as hio
from hierbayes.cards import load_card
from hierbayes.exceptions import PriorError, SpecError
from hierbayes.inference import store
from hierbayes.spec.serialise import priors_from_dict, priors_to_dict, spec_from_dict, spec_to_dict

MODELS = Path(__file__).resolve().parent.parent / "models"


# ----------------------------------------------------------------------------- spec <-> dict

PRIORS = [
    hb.Priors(),
    hb.Priors(fixed=hb.Normal(mean=0.0, sd=10.0)),
    hb.Priors(fixed=hb.Normal(mean=(1.0, 0.0), cov=((4.0, 0.5), (0.5, 1.0)))),
    hb.Priors(fixed={"year": hb.Normal(mean=0.5, sd=1.0), "Intercept": hb.Normal(mean=0.0, sd=5.0)}),
    hb.Priors(group_sd=hb.HalfNormal(scale=1.0), sigma=hb.HalfStudentT(scale=2.0, nu=4.0)),
    hb.Priors(group_sd={"school": hb.HalfCauchy(scale=5.0), "school:child": hb.Exponential(scale=0.5)}),
    hb.Priors(lkj=hb.LKJ(eta=2.0)),
]


@pytest.mark.parametrize("priors", PRIORS, ids=range(len(PRIORS)))
def test_priors_round_trip_through_json(priors):
    d = json.loads(json.dumps(priors_to_dict(priors)))
    assert priors_from_dict(d) == priors


@pytest.mark.parametrize("card", sorted(MODELS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_card_spec_round_trips(card):
    spec = load_card(card).spec
    assert spec_from_dict(json.loads(json.dumps(spec_to_dict(spec)))) == spec


def test_spec_round_trip_keeps_every_field():
    spec = hb.ModelSpec(
        response="y",
        fixed=("x", "log(z)"),
        groups=(
            hb.GroupTerm(factor=("a",), terms=("x",), covariance="diagonal", centered=True),
            hb.GroupTerm(factor=("a", "b")),
        ),
        family="binomial",
        link="probit",
        trials="n",
        offset="o",
        priors=PRIORS[2],
    )
    d = spec_to_dict(spec)
    assert d["formula"] == spec.formula()
    assert spec_from_dict(d) == spec


def test_spec_from_dict_rejects_unknown_keys():
    d = spec_to_dict(hb.parse_formula("y ~ x + (1 | g)"))
    with pytest.raises(SpecError, match="Unknown model spec field 'colour'"):
        spec_from_dict({**d, "colour": "red"})
    d["groups"][0]["slope"] = True
    with pytest.raises(SpecError, match="Unknown group term field 'slope'"):
        spec_from_dict(d)


def test_priors_from_dict_errors_name_the_key():
    with pytest.raises(PriorError, match="unknown key 'fixd'"):
        priors_from_dict({"fixd": {"mean": 0, "sd": 1}})
    with pytest.raises(PriorError, match=r"priors.fixed: unknown key 'scale'"):
        priors_from_dict({"fixed": {"mean": 0, "scale": 1}})
    with pytest.raises(PriorError, match="unknown prior distribution 'weibull'"):
        priors_from_dict({"sigma": {"dist": "weibull", "scale": 1}})
    with pytest.raises(PriorError, match="lkj must be"):
        priors_from_dict({"lkj": {"shape": 2}})


# ----------------------------------------------------------------------------- data columns


def _odd_frame() -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "i": np.array([1, 2, 3, 4], dtype=np.int64),
            "i32": np.array([1, 2, 3, 4], dtype=np.int32),
            "f": [0.5, np.nan, 1.5, 2.5],
            "b": [True, False, True, True],
            "s": pd.array(["a", "b", None, "d"], dtype="str"),
            "s_na": pd.array(["a", None, "c", "d"], dtype=pd.StringDtype("python", na_value=pd.NA)),
            "o": np.array(["x", None, "y", "z"], dtype=object),
            "c": pd.Categorical(["lo", "hi", "lo", None], categories=["lo", "hi"], ordered=True),
            "n": pd.array([1, None, 3, 4], dtype="Int64"),
            "t": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"]),
            "a/b": [1.0, 2.0, 3.0, 4.0],
            7: [1, 1, 2, 2],
        },
        index=pd.Index([10, 11, 15, 20], name="rowid"),
    )
    return df


@pytest.mark.parametrize("index", ["ids", "range", "strings"])
def test_data_columns_round_trip_with_dtypes(tmp_path, index):
    df = _odd_frame()
    if index == "range":
        df = df.reset_index(drop=True)
    elif index == "strings":
        df.index = pd.Index(["r1", "r2", "r3", "r4"], dtype="str")
    ds = store.data_to_dataset(df)
    path = tmp_path / "d.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as opened:
        back = store.dataset_to_data(opened.load())
    pd.testing.assert_frame_equal(back, df, check_exact=True)


def test_unsupported_column_is_a_clear_error():
    df = pd.DataFrame({"p": pd.period_range("2020-01", periods=3, freq="M")})
    with pytest.raises(hio.FitFileError, match="Cannot save data column 'p'"):
        store.data_to_dataset(df)


# ----------------------------------------------------------------------------- save / load


@pytest.fixture(scope="module")
def saved(tiny_nested_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "posterior.nc"
    tiny_nested_fit.save(path)
    return path


@pytest.mark.slow
def test_round_trip_gives_identical_summary(tiny_nested_fit, saved):
    loaded = hb.load(saved)
    before, after = hb.summary(tiny_nested_fit), hb.summary(loaded)
    pd.testing.assert_frame_equal(after.random, before.random, check_exact=True)
    pd.testing.assert_frame_equal(after.fixed, before.fixed, check_exact=True)
    assert str(after) == str(before)


@pytest.mark.slow
def test_round_trip_keeps_spec_data_settings_and_draws(tiny_nested_fit, saved):
    loaded = hio.load(saved)
    assert loaded.spec == tiny_nested_fit.spec
    pd.testing.assert_frame_equal(loaded.data, tiny_nested_fit.data, check_exact=True)
    assert loaded.data["school"].dtype == tiny_nested_fit.data["school"].dtype  # string ids stay strings
    assert loaded.settings == json.loads(json.dumps(tiny_nested_fit.settings))
    assert loaded.diagnostics == tiny_nested_fit.diagnostics
    np.testing.assert_array_equal(loaded.design.X, tiny_nested_fit.design.X)
    for a, b in zip(loaded.design.groups, tiny_nested_fit.design.groups, strict=True):
        assert a.levels == b.levels
        np.testing.assert_array_equal(a.index, b.index)
    post, orig = loaded.posterior, tiny_nested_fit.posterior
    assert set(post.data_vars) == set(orig.data_vars)
    assert {"sd_school:child", "u_school:child"} <= set(post.data_vars)  # ':' survives NetCDF
    for name in orig.data_vars:
        assert post[name].dims == orig[name].dims and post[name].dtype == orig[name].dtype
        if str(name).startswith(("u_", "z_")):  # random-effect draws are stored as float32
            np.testing.assert_allclose(post[name].values, orig[name].values, rtol=2**-24, atol=0)
            np.testing.assert_array_equal(post[name].values, orig[name].values.astype(np.float32))
        else:
            np.testing.assert_array_equal(post[name].values, orig[name].values)
    assert set(loaded.idata.children) == set(tiny_nested_fit.idata.children)
    assert not any(str(k).startswith("hierbayes_") for k in loaded.idata.attrs)


@pytest.mark.slow
def test_saved_file_is_plain_netcdf(saved):
    with xr.open_datatree(saved, engine="h5netcdf") as tree:
        assert "fit_data" in tree.children and "posterior" in tree.children
        spec = json.loads(tree.attrs["hierbayes_spec"])
        assert spec["formula"].startswith("math ~")
        assert tree.attrs["hierbayes_format"] == 1  # a fit to rows keeps the layout every hierbayes reads
        assert "fit_statistics" not in tree.children
        assert "school:child" in tree["posterior"].dims


@pytest.fixture(scope="module")
def effects_fit(synthetic_fit):
    """A synthetic fit with many draws of random effects on very different scales (1e-3 to 1e4)."""
    rng = np.random.default_rng(7)
    levels = 12
    df = pd.DataFrame({"g": np.repeat([f"g{k}" for k in range(levels)], 4), "x": rng.normal(size=4 * levels)})
    df["y"] = df["x"] + rng.normal(size=4 * levels)
    scale = np.logspace(-3, 4, levels)
    u = rng.normal(loc=scale, scale=scale / 3, size=(4, 500, levels))
    values = {
        "beta": rng.normal(size=(4, 500, 2)),
        "sigma": rng.uniform(0.5, 1.5, (4, 500)),
        "sd_g": rng.uniform(0.5, 1.5, (4, 500)),
        "u_g": u[..., None],
    }
    return synthetic_fit("y ~ x + (1 | g)", df, values, chains=4, draws=500)


def test_random_effects_are_stored_as_float32_far_below_their_monte_carlo_error(effects_fit, tmp_path):
    import arviz_stats
    import h5py

    path = hb.save(effects_fit, tmp_path / "posterior.nc")
    with h5py.File(path, "r") as f:
        stored = f["posterior/u_g"]
        assert stored.dtype == np.float32 and f["posterior/beta"].dtype == np.float64
        assert stored.id.get_storage_size() < 4 * stored.size  # float32, compressed
    loaded = hb.load(path)
    before, after = effects_fit.posterior["u_g"], loaded.posterior["u_g"]
    assert after.dtype == np.float64 and after.dims == before.dims and "hierbayes_stored_as" not in after.attrs
    err = abs(after - before)
    assert float((err / abs(before)).max()) <= 2**-24  # rounding to the nearest float32
    # the largest change of any draw is far below the MCSE of every level's posterior mean
    mcse = arviz_stats.mcse(xr.DataTree.from_dict({"posterior": xr.Dataset({"u_g": before})}), method="mean")["u_g"]
    worst = err.max(("chain", "draw"))
    assert float((worst / mcse).max()) < 1e-4
    # parameters stay float64, bit for bit; every summary works on the reloaded fit
    for name in ("beta", "sigma", "sd_g"):
        np.testing.assert_array_equal(loaded.posterior[name].values, effects_fit.posterior[name].values)
    pd.testing.assert_frame_equal(hb.summary(loaded).random, hb.summary(effects_fit).random, check_exact=True)
    np.testing.assert_allclose(
        hb.predict(loaded).values, hb.predict(effects_fit).values, rtol=1e-6
    )
    a, b = hb.shrinkage(loaded, "g"), hb.shrinkage(effects_fit, "g")
    np.testing.assert_allclose(a.select_dtypes("number").to_numpy(), b.select_dtypes("number").to_numpy(), rtol=1e-6)
    assert hb.variance_partition(loaded).icc.loc["g", "mean"] == hb.variance_partition(effects_fit).icc.loc["g", "mean"]
    # as_stored gives the same draws as the file, in memory
    np.testing.assert_array_equal(
        store.as_stored(effects_fit.idata, effects_fit.design)["posterior"]["u_g"].values, after.values
    )
    assert effects_fit.posterior["u_g"].dtype == np.float64  # the fit itself is not changed


def test_load_rejects_other_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No saved fit"):
        hio.load(tmp_path / "missing.nc")
    other = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0])}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(hio.FitFileError, match="not a fit saved by hierbayes"):
        hio.load(other)
    text = tmp_path / "text.nc"
    text.write_text("hello")
    with pytest.raises(hio.FitFileError, match="Cannot read"):
        hio.load(text)


@pytest.mark.slow
def test_save_needs_an_existing_folder(tiny_nested_fit, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hio.save(tiny_nested_fit, tmp_path / "nope" / "posterior.nc")


@pytest.mark.slow
def test_names_with_a_slash_are_refused_before_writing(tiny_nested_fit, tmp_path):
    # xarray already refuses '/' in variable names; a dim could still carry one
    post = tiny_nested_fit.posterior.rename_dims({"school": "sch/ool"})
    fit = dataclasses.replace(tiny_nested_fit, idata=xr.DataTree.from_dict({"posterior": post}))
    with pytest.raises(hio.FitFileError, match="'sch/ool' in group '/posterior' contains '/'"):
        hio.save(fit, tmp_path / "posterior.nc")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_diagnostics_from_another_version_are_recomputed(tiny_nested_fit, tmp_path):
    path = hio.save(tiny_nested_fit, tmp_path / "posterior.nc")
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load().copy()
    d = json.loads(tree.attrs["hierbayes_diagnostics"])
    d.pop("treedepth_hits")
    tree.attrs["hierbayes_diagnostics"] = json.dumps(d)
    tree.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    loaded = hio.load(tmp_path / "old.nc")
    new, orig = loaded.diagnostics, tiny_nested_fit.diagnostics
    assert (new.divergences, new.treedepth_hits, new.problems) == (orig.divergences, orig.treedepth_hits, orig.problems)
    for field in ("max_rhat", "min_ess_bulk", "min_ess_tail"):
        assert getattr(new, field)[0] == getattr(orig, field)[0]
        assert getattr(new, field)[1] == pytest.approx(getattr(orig, field)[1], rel=1e-12)


# ----------------------------------------------------------------------------- atomic writes


@pytest.mark.slow
def test_crash_while_writing_leaves_no_file(tiny_nested_fit, tmp_path, monkeypatch):
    target = tmp_path / "posterior.nc"

    def crash(self, path, **kwargs):
        Path(path).write_bytes(b"CDF partial")  # half-written file under the temporary name
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", crash)
    with pytest.raises(OSError, match="disk full"):
        hio.save(tiny_nested_fit, target)
    assert list(tmp_path.iterdir()) == []  # neither the final name nor a temporary file


@pytest.mark.slow
def test_crash_while_overwriting_keeps_the_old_file(tiny_nested_fit, tmp_path, monkeypatch):
    target = tmp_path / "posterior.nc"
    hio.save(tiny_nested_fit, target)
    before = target.read_bytes()

    def crash(self, path, **kwargs):
        Path(path).write_bytes(b"CDF partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.DataTree, "to_netcdf", crash)
    with pytest.raises(KeyboardInterrupt):
        hio.save(tiny_nested_fit, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.nc"]


def test_atomic_write_text_permissions(tmp_path):
    path = tmp_path / "a.txt"
    hio.atomic_write_text(path, "one\n")
    assert path.read_text() == "one\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it (mkstemp: 0o600)
    path.chmod(0o640)
    hio.atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n" and path.stat().st_mode & 0o777 == 0o640


@pytest.fixture(scope="module")
def small_collapsed_fit():
    """Sleepstudy's random intercept and slope by the collapsed sampler, 2 chains x 100 draws."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        return hb.fit(
            "Reaction ~ Days + (Days | Subject)",
            hb.datasets.load("sleepstudy"),
            method="collapsed",
            chains=2,
            draws=100,
            tune=100,
            random_seed=5,
            progressbar=False,
        )


def test_collapsed_random_effects_are_left_out_and_drawn_again_exactly(small_collapsed_fit, tmp_path):
    import json

    fit = small_collapsed_fit
    assert store.regenerable_draws(fit) == ["u_Subject"]
    path = hb.save(fit, tmp_path / "posterior.nc")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        assert "u_Subject" not in tree["posterior"] and "sd_Subject" in tree["posterior"]
        note = json.loads(tree.attrs["hierbayes_regenerated"])
        assert note["variables"] == ["u_Subject"] and note["random_seed"] == 5
    loaded = hb.load(path)
    # the same draws, bit for bit (not rounded to float32: they are drawn again, not read)
    np.testing.assert_array_equal(loaded.posterior["u_Subject"].values, fit.posterior["u_Subject"].values)
    assert loaded.posterior["u_Subject"].dims == fit.posterior["u_Subject"].dims
    pd.testing.assert_frame_equal(hb.summary(loaded).random, hb.summary(fit).random, check_exact=True)
    pd.testing.assert_frame_equal(hb.predict(loaded), hb.predict(fit), check_exact=True)
    # stored instead on request: float32, readable with xarray alone
    kept = hb.save(fit, tmp_path / "kept.nc", random_effects="float32")
    with xr.open_datatree(kept, engine="h5netcdf") as tree:
        assert tree["posterior"]["u_Subject"].dtype == np.float32
        assert "hierbayes_regenerated" not in tree.attrs
    # (the draws do not compress much: the difference is most of their float32 size)
    assert kept.stat().st_size - path.stat().st_size > 0.5 * 4 * fit.posterior["u_Subject"].size


def test_regenerated_draws_warn_when_another_version_saved_them(small_collapsed_fit, tmp_path, monkeypatch):
    path = hb.save(small_collapsed_fit, tmp_path / "posterior.nc")
    monkeypatch.setattr(hio, "__version__", "99.0")
    with pytest.warns(UserWarning, match="drawn again on loading, by hierbayes 99.0"):
        loaded = hb.load(path)
    assert loaded.posterior["u_Subject"].shape == small_collapsed_fit.posterior["u_Subject"].shape


def test_regenerate_is_refused_for_a_fit_whose_draws_cannot_be_drawn_again(effects_fit, tmp_path):
    assert store.regenerable_draws(effects_fit) == []
    with pytest.raises(hio.FitFileError, match="random_effects='regenerate' needs a collapsed fit"):
        hb.save(effects_fit, tmp_path / "posterior.nc", random_effects="regenerate")
    with pytest.raises(ValueError, match="random_effects must be"):
        hb.save(effects_fit, tmp_path / "posterior.nc", random_effects="float16")  # type: ignore[arg-type]
