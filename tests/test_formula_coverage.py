"""What lme4 and brms users write (issue 14): arithmetic in cbind(), offset(log(x)), trials(n - k),
transformed responses with a Jacobian-aware log-likelihood, comparisons, formulaic contrasts, and
the same grouping factor in two terms. The expression whitelist still refuses code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import hierbayes as hb
from hierbayes.inference.build import build_model
from hierbayes.inference.collapsed import build as bc
from hierbayes.inference.collapsed.build import choose_method
from hierbayes.spec.serialise import spec_from_dict, spec_to_dict


@pytest.fixture
def frame():
    rng = np.random.default_rng(3)
    n = 24
    size = rng.integers(4, 12, n)
    return pd.DataFrame(
        {
            "g": np.repeat(list("abcdef"), 4),
            "x": rng.normal(size=n),
            "size": size,
            "inc": rng.binomial(size, 0.3),
            "exposure": rng.uniform(0.5, 3.0, n),
            "y": np.exp(rng.normal(size=n)),
        }
    )


def test_cbind_with_arithmetic_equals_trials(frame):
    a = hb.make_design(hb.parse_formula("cbind(inc, size - inc) ~ x + (1 | g)"), frame)
    b = hb.make_design(hb.parse_formula("inc | trials(size) ~ x + (1 | g)", family="binomial"), frame)
    c = hb.make_design(hb.parse_formula("inc | trials(size + 0) ~ x + (1 | g)", family="binomial"), frame)
    assert a.spec.family == "binomial" and a.spec.failures == "size - inc"
    np.testing.assert_array_equal(a.trials, frame["size"])
    np.testing.assert_array_equal(a.trials, b.trials)
    np.testing.assert_array_equal(c.trials, b.trials)
    np.testing.assert_array_equal(a.y, frame["inc"])


def test_offset_with_a_transform(frame):
    spec = hb.parse_formula("inc ~ x + offset(log(exposure)) + (1 | g)", family="poisson")
    assert spec.offset == "log(exposure)" and "exposure" in spec.columns
    d = hb.make_design(spec, frame)
    np.testing.assert_allclose(d.offset, np.log(frame["exposure"]))
    assert hb.parse_formula(spec.formula(), family="poisson") == spec
    with pytest.raises(hb.FormulaError, match="two offsets"):
        hb.parse_formula("inc ~ x + offset(exposure) + offset(x)", family="poisson")


def test_offset_that_is_not_finite_names_the_expression(frame):
    frame.loc[3, "exposure"] = 0.0
    with pytest.raises(hb.DataError, match=r"expression 'log\(exposure\)' is not finite in 1 row"):
        hb.make_design(hb.parse_formula("inc ~ x + offset(log(exposure))", family="poisson"), frame)


def test_comparisons_and_formulaic_contrasts(frame):
    d = hb.make_design(hb.parse_formula('y ~ I(x > 0) + C(g, Treatment("b")) + (1 | g)'), frame)
    assert "I(x > 0)" in d.fixed_names
    np.testing.assert_array_equal(d.X[:, d.fixed_names.index("I(x > 0)")], (frame["x"] > 0).astype(float))
    assert not any("[T.b]" in n for n in d.fixed_names) and any("[T.a]" in n for n in d.fixed_names)
    s = hb.make_design(hb.parse_formula("y ~ C(g, Sum()) + x"), frame)
    assert sum("[S." in n for n in s.fixed_names) == 5
    for formula in ("y ~ C(g, Sum) + x", "y ~ C(g, Helmert()) + x", "y ~ C(g, Treatment(reference='c')) + x"):
        assert hb.make_design(hb.parse_formula(formula), frame).X.shape[1] == 7


def test_same_factor_in_two_terms_is_lme4s_uncorrelated_form(frame):
    spec = hb.parse_formula("y ~ x + (1 | g) + (0 + x | g)")
    d = hb.make_design(spec, frame)
    assert [g.name for g in d.groups] == ["g", "g__x"]
    assert d.groups[0].levels == d.groups[1].levels
    model = build_model(d)
    names = set(model.named_vars)
    assert {"sd_g", "sd_g__x", "u_g", "u_g__x"} <= names
    assert model.named_vars_to_dims["u_g__x"] == ("g__x", "g__x__coef")
    # the collapsed path integrates both terms out jointly (the crossed-factor algebra), exactly:
    chosen, why = choose_method(d, "auto")
    assert chosen == "collapsed" and "crossed" in why
    _collapsed_equals_dense_density(d)
    assert spec_from_dict(spec_to_dict(spec)) == spec


def test_expressions_round_trip_through_the_saved_spec(frame):
    spec = hb.parse_formula("cbind(inc, size - inc) ~ x + offset(log(exposure)) + (1 | g)")
    assert spec_from_dict(spec_to_dict(spec)) == spec


@pytest.mark.parametrize(
    "formula",
    [
        "cbind(inc, open('s', 'w')) ~ x",
        "cbind(inc, size - __import__('os').system('x')) ~ x",
        "cbind(inc, size.__class__) ~ x",
        "inc | trials(eval('1')) ~ x",
        "inc ~ x + offset(log(x, out=x))",
        "inc ~ x + offset(np.os.system('x'))",
        "inc ~ x + offset(9 ** 9 ** 9)",
        "inc ~ x + offset(C(g))",
        "log(y, out=y) ~ x",
        "exec('x') ~ x",
        "y[0] ~ x",
        "(lambda: y)() ~ x",
    ],
)
def test_expressions_outside_terms_are_whitelisted(formula):
    with pytest.raises(hb.FormulaError, match=r"not allowed|not a column name|raises a number|exactly one argument"):
        hb.parse_formula(formula, family="poisson" if "offset" in formula else "gaussian")


def test_hand_built_spec_with_code_in_an_expression_is_refused():
    with pytest.raises(hb.FormulaError, match="not allowed"):
        hb.ModelSpec(response="inc", family="poisson", offset="open('x')")


def test_transformed_response_is_fitted_on_its_scale_and_scored_on_y(frame, synthetic_fit):
    spec = hb.parse_formula("log(y) ~ x + (1 | g)")
    assert spec.response_transformed and spec.response_column == "y"
    rng = np.random.default_rng(0)
    vals = {
        "beta": rng.normal(size=(1, 4, 2)),
        "sigma": np.abs(rng.normal(1, 0.1, size=(1, 4))),
        "sd_g": np.abs(rng.normal(size=(1, 4, 1))),
        "u_g": rng.normal(size=(1, 4, 6, 1)),
    }
    fit = synthetic_fit("log(y) ~ x + (1 | g)", frame, vals, draws=4)
    np.testing.assert_allclose(fit.design.y, np.log(frame["y"]))
    eta = hb.linear_predictor(fit).values.reshape(4, -1)
    ll = hb.log_likelihood(fit).values.reshape(4, -1)
    sigma = vals["sigma"].reshape(4, 1)
    expected = stats.lognorm.logpdf(frame["y"].to_numpy()[None, :], s=sigma, scale=np.exp(eta))
    np.testing.assert_allclose(ll, expected, rtol=1e-10)
    # new data: the same
    ll_new = hb.log_likelihood(fit, data=frame.iloc[:5]).values.reshape(4, -1)
    np.testing.assert_allclose(ll_new, expected[:, :5], rtol=1e-10)
    rep = hb.posterior_predictive(fit, random_seed=1)
    assert isinstance(rep, xr.DataArray) and (rep.values > 0).all()  # back on the scale of y
    with pytest.raises(hb.SpecError, match="continuous families"):
        hb.parse_formula("log(inc) ~ x", family="poisson")
    with pytest.raises(hb.SpecError, match="exactly one column"):
        hb.parse_formula("log(y / x) ~ g")


def test_log_response_and_lognormal_family_have_the_same_loo_scale(frame, synthetic_fit):
    """Gaussian on log(y) (with its Jacobian) and the lognormal family: equal pointwise log-likelihood."""
    rng = np.random.default_rng(5)
    vals = {
        "beta": rng.normal(size=(1, 3, 2)),
        "sigma": np.abs(rng.normal(1, 0.1, size=(1, 3))),
        "sd_g": np.abs(rng.normal(size=(1, 3, 1))),
        "u_g": rng.normal(size=(1, 3, 6, 1)),
    }
    a = synthetic_fit("log(y) ~ x + (1 | g)", frame, vals)
    b = synthetic_fit("y ~ x + (1 | g)", frame, vals, family="lognormal")
    np.testing.assert_allclose(hb.log_likelihood(a).values, hb.log_likelihood(b).values, rtol=1e-10)
    # the lognormal's expected response is exp(eta + sigma^2 / 2)
    eta = hb.linear_predictor(b).values.reshape(3, -1)
    mean = hb.predict(b, kind="mean")["mean"].to_numpy()
    np.testing.assert_allclose(mean, np.exp(eta + vals["sigma"].reshape(3, 1) ** 2 / 2).mean(axis=0), rtol=1e-10)


def _collapsed_equals_dense_density(d):
    """The collapsed model's likelihood term equals the dense multivariate-normal density of y."""
    model = bc.build_collapsed_model(d)
    outs = [model.potentials[0], model["beta"], model["sigma"], *(model[f"sd_{g.name}"] for g in d.groups)]
    fn = model.compile_fn(outs, inputs=model.value_vars, point_fn=True, on_unused_input="ignore")
    rng = np.random.default_rng(3)
    point = model.initial_point()
    for _ in range(2):
        logp, beta, sigma, *sds = fn({k: v + rng.normal(scale=0.3, size=np.shape(v)) for k, v in point.items()})
        V = sigma**2 * np.eye(d.n_obs)
        for g, s in zip(d.groups, sds, strict=True):
            Z = np.zeros((d.n_obs, g.n_levels))
            Z[np.arange(d.n_obs), g.index] = g.Z[:, 0]
            V += float(np.ravel(s)[0]) ** 2 * Z @ Z.T
        ref = stats.multivariate_normal(d.X @ beta, V).logpdf(d.y)
        assert float(logp) == pytest.approx(ref, rel=1e-10)
