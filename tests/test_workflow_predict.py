"""Regression tests (issue 13): new data are transformed exactly as the fitted data were.

Rows copied from the fitted data must give the fitted linear predictor exactly, for stateful
transforms (``center``, ``scale``), whitelisted functions (``sqrt``) and categorical slopes, and
an unseen level gets the population prediction (``u = 0``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.summaries.prediction import prediction_rows


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    df = hb.datasets.load("sleepstudy")
    df = df[df["Subject"].astype(str).isin(sorted(df["Subject"].astype(str).unique())[:5])].copy()
    df["phase"] = np.where(df["Days"] < 3, "early", np.where(df["Days"] < 7, "mid", "late"))
    return df.reset_index(drop=True)


def _values(design, rng):
    values = {"beta": rng.normal(size=(1, 3, len(design.fixed_names))), "sigma": 10.0}
    for g in design.groups:
        q = len(g.coef_names)
        values[f"sd_{g.name}"] = np.ones(q)
        values[f"u_{g.name}"] = rng.normal(size=(1, 3, g.n_levels, q))
    return values


@pytest.mark.parametrize(
    "formula",
    [
        "Reaction ~ Days + (center(Days) | Subject)",
        "Reaction ~ Days + (scale(Days) | Subject)",
        "Reaction ~ Days + (sqrt(Days) | Subject)",
        "Reaction ~ sqrt(Days) + center(Days) + (1 | Subject)",
        "Reaction ~ Days + (phase | Subject)",
        "Reaction ~ Days + (0 + C(phase) | Subject)",
    ],
)
def test_new_rows_copied_from_the_fit_give_the_fitted_linear_predictor(sleep, synthetic_fit, formula):
    spec = hb.parse_formula(formula)
    design = hb.make_design(spec, sleep)
    fit = synthetic_fit(formula, sleep, _values(design, np.random.default_rng(1)))
    fitted = hb.linear_predictor(fit).values
    # the design arrays of the copied rows are bit-for-bit the fitted ones
    rows = prediction_rows(fit, sleep.copy())
    np.testing.assert_array_equal(rows.X, design.X)
    for gr, g in zip(rows.groups, design.groups, strict=True):
        np.testing.assert_array_equal(gr.Z, g.Z)
        np.testing.assert_array_equal(gr.index, g.index)
    # every row at once, one row at a time (scale() of one row would be NaN if refitted), and the
    # rows of one categorical level only (a fresh model matrix would drop the other levels)
    new_all = hb.linear_predictor(fit, sleep.copy()).values
    np.testing.assert_array_equal(new_all, fitted)
    for i in (0, 9, 17):
        one = hb.linear_predictor(fit, sleep.iloc[[i]].copy()).values
        np.testing.assert_allclose(one[..., 0], fitted[..., i], rtol=1e-13, atol=0)  # matmul rounding only
    late = np.flatnonzero(sleep["phase"].to_numpy() == "late")
    sub = hb.linear_predictor(fit, sleep.iloc[late].copy()).values
    np.testing.assert_allclose(sub, fitted[..., late], rtol=1e-13, atol=0)


@pytest.mark.parametrize(
    "formula", ["Reaction ~ Days + (center(Days) | Subject)", "Reaction ~ Days + (phase | Subject)"]
)
def test_unseen_level_gets_the_population_prediction(sleep, synthetic_fit, formula):
    spec = hb.parse_formula(formula)
    design = hb.make_design(spec, sleep)
    values = _values(design, np.random.default_rng(2))
    fit = synthetic_fit(formula, sleep, values)
    new = sleep.iloc[[3, 15]].copy()
    new["Subject"] = 99999
    eta = hb.linear_predictor(fit, new).values
    beta = np.asarray(values["beta"])[0]  # (draws, coef)
    X = np.asarray(design.fixed_model_spec.get_model_matrix(new), dtype=float)
    np.testing.assert_allclose(eta[0], beta @ X.T, rtol=0, atol=1e-12)


def test_new_data_with_a_missing_predictor_value_names_the_column(sleep, synthetic_fit):
    formula = "Reaction ~ Days + (center(Days) | Subject)"
    design = hb.make_design(hb.parse_formula(formula), sleep)
    fit = synthetic_fit(formula, sleep, _values(design, np.random.default_rng(3)))
    new = sleep.iloc[[0, 1]].copy()
    new["Days"] = [1.0, np.nan]
    with pytest.raises(hb.DataError, match="Days"):
        hb.linear_predictor(fit, new)
