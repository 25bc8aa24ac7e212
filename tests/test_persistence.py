"""A saved and loaded fit is the fit: same summaries, same predictions, same rows (hierbayes.io).

One small fit with missing values dropped (``dropna=True``) is saved and loaded; the data stored
must be the rows actually used, and the drop counts must survive. A file whose stored spec was
tampered with to carry code is refused on load, before anything runs.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierbayes as hb
from hierbayes.inference.store import as_stored, regenerable_draws

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(8), 6)
    out = pd.DataFrame({"g": g, "x": rng.normal(size=48), "y": rng.normal(size=48) + 0.3 * g})
    out.index = pd.RangeIndex(100, 148)  # a non-default index, to check it is kept
    out.loc[[101, 120], "y"] = np.nan
    out.loc[[101, 130, 131], "x"] = np.nan
    return out


@pytest.fixture(scope="module")
def saved(raw, tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        with pytest.warns(UserWarning, match=r"dropped 4 of 48 rows with missing values \(y: 2, x: 3\)"):
            fit = hb.fit(
                "y ~ x + (1 | g)", raw, dropna=True, draws=100, tune=100, chains=2, random_seed=3, progressbar=False
            )
    path = tmp_path_factory.mktemp("fit") / "posterior.nc"
    hb.save(fit, path)
    return fit, path


def test_loaded_fit_has_identical_summaries(saved):
    fit, path = saved
    loaded = hb.load(path)
    # u_g, z_g as float32, or, for a collapsed fit, u_g drawn again exactly on loading
    stored = dataclasses.replace(fit, idata=as_stored(fit.idata, fit.design, exact=regenerable_draws(fit))).posterior
    for name in fit.posterior.data_vars:
        np.testing.assert_array_equal(loaded.posterior[name].values, stored[name].values)
        np.testing.assert_allclose(loaded.posterior[name].values, fit.posterior[name].values, rtol=2**-24, atol=0)
    a, b = hb.summary(fit), hb.summary(loaded)
    pd.testing.assert_frame_equal(a.fixed, b.fixed)
    pd.testing.assert_frame_equal(a.random, b.random)
    assert str(a) == str(b)
    assert loaded.spec == fit.spec
    assert loaded.diagnostics == fit.diagnostics
    assert loaded.settings == fit.settings


def test_loaded_fit_predicts_the_same(saved):
    fit, path = saved
    loaded = hb.load(path)
    as_saved = dataclasses.replace(fit, idata=as_stored(fit.idata, fit.design, exact=regenerable_draws(fit)))
    new = pd.DataFrame({"g": [0, 3, 99], "x": [0.0, 1.0, -1.0]})  # 99 is a new level
    pd.testing.assert_frame_equal(hb.predict(loaded, new, random_seed=1), hb.predict(as_saved, new, random_seed=1))
    pd.testing.assert_frame_equal(hb.predict(loaded), hb.predict(as_saved))
    pd.testing.assert_frame_equal(hb.predict(loaded), hb.predict(fit), rtol=1e-6)


def test_dropna_rows_are_preserved(saved, raw):
    fit, path = saved
    loaded = hb.load(path)
    used = raw.dropna(subset=["y", "x"])
    assert list(loaded.data.index) == list(used.index) == list(fit.data.index)
    assert {101, 120, 130, 131}.isdisjoint(loaded.data.index)
    pd.testing.assert_frame_equal(loaded.data, fit.data)
    assert loaded.design.n_obs == 44
    assert loaded.design.dropped == fit.design.dropped == {"y": 2, "x": 3}
    np.testing.assert_array_equal(loaded.design.y, fit.design.y)
    np.testing.assert_array_equal(loaded.design.X, fit.design.X)


def test_tampered_file_with_code_in_the_spec_is_refused(saved, tmp_path):
    _, path = saved
    sentinel = tmp_path / "sentinel"
    with xr.open_datatree(path, engine="h5netcdf") as opened:
        tree = opened.load().copy()
    spec = json.loads(tree.attrs["hierbayes_spec"])
    spec["fixed"] = ["x", f"open('{sentinel}', 'w')"]
    spec.pop("formula", None)
    tree.attrs = {**tree.attrs, "hierbayes_spec": json.dumps(spec)}
    bad = tmp_path / "tampered.nc"
    tree.to_netcdf(bad, engine="h5netcdf")
    with pytest.raises(hb.FormulaError, match=r"The function 'open' is not allowed in a formula"):
        hb.load(bad)
    assert not sentinel.exists()
