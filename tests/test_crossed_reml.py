"""REML/ML with crossed grouping factors, and the optimiser's boundary handling (issue 16).

* lme4 references: ``tests/fixtures/lme4_crossed`` (``make_fixtures.R``, lme4 1.1-31, bobyqa
  with ``xtol_abs = 1e-10``, ``ftol_abs = 1e-12``). Tolerances: criterion 1e-6 absolute, fixed
  effects 1e-5 relative, sds and sigma 1e-4 relative (an sd that lme4 puts at 0 must be
  below 1e-4 times sigma).
* 50 simulated data sets shaped like the issue's (schools in areas, a small area sd): the
  REML criterion is never worse than a grid-and-polish reference by more than 1e-6.
* The issue's simulated case gives the same optimum under crossed and nested syntax.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize, minimize_scalar

import hierbayes as hb
import hierbayes.inference.collapsed.build as bc
from hierbayes.exceptions import SingularFitWarning
from hierbayes.inference.collapsed.likelihood import CrossedFactors
from hierbayes.inference.collapsed.reml import _profile, fit_design

FIXTURES = Path(__file__).parent / "fixtures" / "lme4_crossed"
LME4 = {k: v for k, v in json.loads((FIXTURES / "lme4_crossed.json").read_text()).items() if not k.startswith("_")}


def _fit(formula: str, df: pd.DataFrame, **kwargs) -> hb.EmpiricalBayes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularFitWarning)
        warnings.simplefilter("ignore", hb.NestingWarning)  # crossed on purpose
        return hb.empirical_bayes(formula, df, **kwargs)


@pytest.mark.parametrize("case", list(LME4))
def test_crossed_reml_matches_lme4(case):
    ref = LME4[case]
    df = pd.read_csv(FIXTURES / ref["file"])
    eb = _fit(ref["formula"], df)
    assert eb.converged, eb.settings
    assert eb.criterion == pytest.approx(ref["REMLcrit"], abs=1e-6)
    assert eb.criterion <= ref["REMLcrit"] + 1e-9  # never worse than lme4
    for name, value in ref["fixef"].items():
        assert eb.fixed.loc[name, "estimate"] == pytest.approx(value, rel=1e-5), name
    assert eb.sigma == pytest.approx(ref["sigma"], rel=1e-4)
    for key, value in ref["sd"].items():
        group, term = key.split(":")
        got = eb.sd[group][term.replace("(Intercept)", "Intercept")]
        if value == 0:
            assert got < 1e-4 * eb.sigma, key
        else:
            assert got == pytest.approx(value, rel=1e-4), key
    for key, value in (ref["corr"] or {}).items():
        group, a, b = key.split(":")
        assert eb.corr[group].loc[a.replace("(Intercept)", "Intercept"), b] == pytest.approx(value, abs=1e-4)
    assert eb.singular == ref["isSingular"]
    # ML refit: lme4's deviance
    ml = _fit(ref["formula"], df, method="ml")
    assert ml.criterion == pytest.approx(ref["deviance_ml"], abs=1e-6)


def test_singular_fit_warns():
    ref = LME4["singular"]
    df = pd.read_csv(FIXTURES / ref["file"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.NestingWarning)
        with pytest.warns(SingularFitWarning, match=r"item:Intercept.*isSingular"):
            eb = hb.empirical_bayes(ref["formula"], df)
    assert eb.singular and eb.sd["item"]["Intercept"] == 0.0 and eb.converged
    assert eb.criterion == pytest.approx(ref["REMLcrit"], abs=1e-6)


def test_crossed_algebra_equals_nested_algebra():
    """The crossed Woodbury form, forced on nested data, gives the nested path's criterion."""
    df = pd.read_csv(FIXTURES / "small_variance.csv")
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | lea/school)"), df)
    nested = bc.collapsed_data(design)
    assert not isinstance(nested.factors, CrossedFactors)
    orig = bc._ordered_groups
    try:
        bc._ordered_groups = lambda d: None
        crossed = bc.collapsed_data(design)
    finally:
        bc._ordered_groups = orig
    assert isinstance(crossed.factors, CrossedFactors)
    for theta in ([0.0, 0.5], [0.3, 0.1], [2.0, 1.5]):
        for reml in (True, False):
            a = _profile(np.array(theta), nested, reml, 0.0).criterion
            b = _profile(np.array(theta), crossed, reml, 0.0).criterion
            assert a == pytest.approx(b, abs=1e-8)


def simulate(seed: int, nl: int = 131, ns: int = 2410, n: int = 31022) -> pd.DataFrame:
    """The issue's simulation (schools in areas; area sd 0.12, school sd 1.08, residual 2.27)."""
    rng = np.random.default_rng(seed)
    lea_of_school = rng.integers(0, nl, ns)
    school = rng.integers(0, ns, n)
    lea = lea_of_school[school]
    x = rng.normal(0, 2, n)
    y = 5.6 + 2.47 * x + rng.normal(0, 0.12, nl)[lea] + rng.normal(0, 1.08, ns)[school] + rng.normal(0, 2.27, n)
    return pd.DataFrame({"y": y, "x": x, "school": school, "lea": lea})


def _reference_optimum(design: hb.Design) -> float:
    """Grid over the area factor's theta, the school's profiled out by a bounded 1-D search, then a polish."""
    data = bc.collapsed_data(design)
    names = [g.name for g in data.groups]
    i_lea, i_school = names.index("lea"), names.index("school")

    def crit(t_lea: float, t_school: float) -> float:
        theta = np.zeros(2)
        theta[i_lea], theta[i_school] = t_lea, t_school
        return _profile(theta, data, True, float(np.linalg.slogdet(data.scaling.A)[1])).criterion

    best = (np.inf, 0.0, 0.0)
    for t_lea in np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 30)]):
        res = minimize_scalar(
            lambda t, a=t_lea: crit(a, t), bounds=(0.0, 3.0), method="bounded", options={"xatol": 1e-9}
        )
        best = min(best, (float(res.fun), float(t_lea), float(res.x)))
    polish = minimize(
        lambda t: crit(*t),
        np.array(best[1:]),
        method="Nelder-Mead",
        bounds=[(0, None), (0, None)],
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
    )
    return min(best[0], float(polish.fun), crit(0.0, best[2]))


@pytest.mark.parametrize("chunk", range(5))
def test_never_worse_than_grid_reference(chunk):
    """50 simulated data sets (10 per test) with a small area sd, 3000 rows each."""
    gaps = []
    for seed in range(10 * chunk, 10 * chunk + 10):
        df = simulate(100 + seed, nl=30, ns=300, n=3000)
        eb = _fit("y ~ x + (1 | school) + (1 | lea)", df)
        ref = _reference_optimum(eb.design)
        gaps.append(eb.criterion - ref)
        assert eb.converged, (seed, eb.settings)
    assert max(gaps) <= 1e-6, gaps


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_issue_case_same_optimum_for_both_syntaxes(seed):
    df = simulate(seed)
    crossed = _fit("y ~ x + (1 | school) + (1 | lea)", df)
    nested = _fit("y ~ x + (1 | lea/school)", df)
    assert crossed.converged and nested.converged
    assert crossed.criterion == pytest.approx(nested.criterion, abs=1e-6)
    assert crossed.sd["lea"].iloc[0] == pytest.approx(nested.sd["lea"].iloc[0], rel=1e-4, abs=1e-6)
    assert crossed.sd["school"].iloc[0] == pytest.approx(nested.sd["lea:school"].iloc[0], rel=1e-4)
    np.testing.assert_allclose(crossed.fixed["estimate"], nested.fixed["estimate"], rtol=1e-6)
    # the area sd is not stuck at the boundary (the issue's failure: 0 with a worse criterion)
    assert crossed.sd["lea"].iloc[0] > 0.05


def test_sampler_falls_back_to_full_beyond_the_work_limit():
    rng = np.random.default_rng(1)
    n = 6000
    df = pd.DataFrame({"y": rng.normal(size=n), "a": rng.integers(0, 1000, n), "b": rng.integers(0, 400, n)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.NestingWarning)
        design = hb.make_design(hb.parse_formula("y ~ 1 + (1 | a) + (1 | b)"), df)
    chosen, note = bc.choose_method(design, "auto")
    assert chosen == "full" and "operations per log density" in note
    assert bc.collapse_problem(design, sampler=False) is None  # REML still fits it


def test_too_large_crossed_design_is_refused_with_reason():
    rng = np.random.default_rng(0)
    n = 10000
    df = pd.DataFrame({"y": rng.normal(size=n), "a": rng.integers(0, 4000, n), "b": rng.integers(0, 3000, n)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.NestingWarning)
        design = hb.make_design(hb.parse_formula("y ~ 1 + (1 | a) + (1 | b)"), df)
    with pytest.raises(hb.SpecError, match=r"method='reml' cannot fit .*coefficients besides the largest factor"):
        fit_design(design)
    chosen, note = bc.choose_method(design, "auto")
    assert chosen == "full" and "not collapsible" in note and "coefficients besides" in note
