"""A term with one coefficient stores a scalar ``sd_<g>`` per draw (issue 13).

``(1 | g)`` gives ``sd_g`` with dims ``(chain, draw)`` in the full and the collapsed model, so
ArviZ writes ``sd_g``, not ``sd_g[Intercept]``; terms with several coefficients keep the dim
``<g>__coef``. Fit files written before, with a length-1 ``<g>__coef`` dim, load in the new layout.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierbayes as hb
from hierbayes.inference.collapsed import build as bc
from hierbayes.inference.pointwise import group_cov_cholesky
from hierbayes.inference.posterior import group_sd_draws


@pytest.fixture(scope="module")
def sleepstudy():
    return hb.datasets.load("sleepstudy")


def _design(formula, data):
    return hb.make_design(hb.parse_formula(formula), data)


@pytest.mark.parametrize("builder", [hb.build_model, bc.build_collapsed_model], ids=["full", "collapsed"])
def test_one_coefficient_sd_is_a_scalar_variable(sleepstudy, builder):
    model = builder(_design("Reaction ~ Days + (1 | Subject)", sleepstudy))
    assert model["sd_Subject"].ndim == 0
    assert model.named_vars_to_dims.get("sd_Subject", ()) == ()
    slopes = builder(_design("Reaction ~ Days + (Days | Subject)", sleepstudy))
    assert slopes.named_vars_to_dims["sd_Subject"] == ("Subject__coef",)
    assert model.named_vars_to_dims.get("u_Subject", ("Subject", "Subject__coef")) == ("Subject", "Subject__coef")


def test_a_single_slope_is_a_scalar_too(sleepstudy):
    model = hb.build_model(_design("Reaction ~ Days + (0 + Days | Subject)", sleepstudy))
    assert model["sd_Subject"].ndim == 0
    assert model.named_vars_to_dims["u_Subject"] == ("Subject", "Subject__coef")
    assert model.coords["Subject__coef"] == ("Days",)


def _posterior(chains=2, draws=5, seed=0):
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "sd_g": (("chain", "draw"), rng.uniform(0.5, 1.5, (chains, draws))),
            "sd_h": (("chain", "draw", "h__coef"), rng.uniform(0.5, 1.5, (chains, draws, 2))),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(draws), "h__coef": ["Intercept", "x"]},
    )


@pytest.fixture(scope="module")
def two_terms():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(np.arange(4), 6), "h": np.tile(np.arange(3), 8), "x": rng.normal(size=24)})
    df["y"] = rng.normal(size=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.NestingWarning)
        return _design("y ~ x + (1 | g) + (1 + x | h)", df)


def test_group_sd_draws_restores_the_coefficient_dim(two_terms):
    post = _posterior()
    g, h = two_terms.group("g"), two_terms.group("h")
    sd_g = group_sd_draws(post, g)
    assert sd_g.dims == ("chain", "draw", "g__coef") and list(sd_g["g__coef"].values) == ["Intercept"]
    np.testing.assert_array_equal(sd_g.values[..., 0], post["sd_g"].values)
    sd_h = group_sd_draws(post, h)
    assert sd_h.dims == ("chain", "draw", "h__coef")
    np.testing.assert_array_equal(sd_h.values, post["sd_h"].values)
    # the layout of older files (a length-1 dim, with or without its coordinate) reads the same
    old = post.assign(sd_g=post["sd_g"].expand_dims("g__coef", axis=-1))
    xr.testing.assert_identical(group_sd_draws(old, g), sd_g)
    old = old.assign_coords(g__coef=["Intercept"])
    xr.testing.assert_identical(group_sd_draws(old, g), sd_g)
    with pytest.raises(hb.SpecError, match="h has 2 varying coefficients"):
        group_sd_draws(post.assign(sd_h=post["sd_h"].isel(h__coef=0, drop=True)), h)


def test_random_effect_draws_read_both_layouts():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"school": np.repeat(["a", "b", "c"], 6), "cls": np.repeat([f"c{k}" for k in range(6)], 3)})
    df["x"], df["y"] = rng.normal(size=18), rng.normal(size=18)
    design = _design("y ~ x + (1 | school/cls)", df)
    post = xr.Dataset(
        {
            "beta_std": (("chain", "draw", "coef"), rng.normal(size=(2, 4, 2))),
            "sigma": (("chain", "draw"), rng.uniform(0.5, 1.5, (2, 4))),
            "sd_school": (("chain", "draw"), rng.uniform(0.2, 1.0, (2, 4))),
            "sd_school:cls": (("chain", "draw"), rng.uniform(0.2, 1.0, (2, 4))),
        },
        coords={"chain": np.arange(2), "draw": np.arange(4)},
    )
    old = post.assign({n: post[n].expand_dims(f"{n[3:]}__coef", axis=-1) for n in ("sd_school", "sd_school:cls")})
    xr.testing.assert_equal(
        bc.random_effect_draws(design, post, random_seed=2), bc.random_effect_draws(design, old, random_seed=2)
    )


# ----------------------------------------------------------------------------- fit files


def _with_coef_dim(path, out):
    """Rewrite a fit file as earlier versions wrote it: ``sd_<g>`` of a one-coefficient term with a length-1 dim."""
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load().copy()
    post = tree["posterior"].to_dataset(inherit=False)
    for name in [n for n in post.data_vars if str(n).startswith("sd_") and post[n].ndim == 2]:
        dim = f"{str(name)[3:]}__coef"
        post[name] = post[name].expand_dims({dim: ["Intercept"]}, axis=-1)
    tree["posterior"].dataset = post
    tree.to_netcdf(out, engine="h5netcdf")
    return out


def test_older_fit_files_load_with_a_scalar_sd(synthetic_fit, tmp_path):
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"g": np.repeat(list("abcdef"), 5), "x": rng.normal(size=30)})
    df["y"] = df["x"] + rng.normal(size=30)
    values = {
        "beta": rng.normal(size=(2, 6, 2)),
        "sigma": rng.uniform(0.5, 1.5, (2, 6)),
        "sd_g": rng.uniform(0.5, 1.5, (2, 6)),
        "u_g": rng.normal(size=(2, 6, 6, 1)),
    }
    fit = synthetic_fit("y ~ x + (1 | g)", df, values, chains=2, draws=6)
    new = tmp_path / "new.nc"
    hb.save(fit, new)
    old = _with_coef_dim(new, tmp_path / "old.nc")
    with xr.open_datatree(old, engine="h5netcdf") as tree:
        assert tree["posterior"]["sd_g"].dims == ("chain", "draw", "g__coef")  # the old layout, really
    for path in (new, old):
        loaded = hb.load(path)
        assert loaded.posterior["sd_g"].dims == ("chain", "draw")
        np.testing.assert_array_equal(loaded.posterior["sd_g"].values, values["sd_g"])
        assert loaded.posterior["u_g"].dims == ("chain", "draw", "g", "g__coef")
        pd.testing.assert_frame_equal(hb.summary(loaded).random, hb.summary(fit).random)
        assert "sd_g" in az.summary(loaded.idata, var_names=["sd_g"]).index


# ----------------------------------------------------------------------------- real fits


@pytest.fixture(scope="module")
def intercept_fits(sleepstudy):
    fits = {}
    for method in ("full", "collapsed"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hb.ConvergenceWarning)
            fits[method] = hb.fit(
                "Reaction ~ Days + (1 | Subject)", sleepstudy, chains=2, draws=100, tune=200, random_seed=1,
                method=method, progressbar=False,
            )
    return fits


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "collapsed"])
def test_arviz_summary_names_a_scalar_sd(intercept_fits, method, tmp_path):
    fit = intercept_fits[method]
    assert fit.posterior["sd_Subject"].dims == ("chain", "draw")
    assert fit.posterior["u_Subject"].dims == ("chain", "draw", "Subject", "Subject__coef")
    table = az.summary(fit.idata)
    assert "sd_Subject" in table.index
    assert not any(str(label).startswith("sd_Subject[") for label in table.index)
    # every summary that works per coefficient still does
    random = hb.summary(fit).random
    assert list(random.loc[random["group"] == "Subject", "name"].unique()) == ["Intercept"]
    assert hb.variance_partition(fit).icc.loc["Subject", "mean"] > 0
    L = group_cov_cholesky(fit, "Subject")
    np.testing.assert_allclose(L[:, 0, 0], fit.posterior["sd_Subject"].values.reshape(-1))
    # and a saved fit comes back the same
    fit.save(tmp_path / "fit.nc")
    loaded = hb.load(tmp_path / "fit.nc")
    assert loaded.posterior["sd_Subject"].dims == ("chain", "draw")
    pd.testing.assert_frame_equal(hb.summary(loaded).random, random)


@pytest.mark.slow
def test_random_slopes_keep_their_labels(sleepstudy_collapsed_fit):
    table = az.summary(sleepstudy_collapsed_fit.idata, var_names=["sd_Subject"])
    assert list(table.index) == ["sd_Subject[Intercept]", "sd_Subject[Days]"]
