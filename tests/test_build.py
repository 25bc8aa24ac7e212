import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.inference.build import fixed_scaling


@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    n = 24
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(2.0, 3.0, size=n),
            "g": np.repeat(["a", "b", "c", "d"], 6),
        }
    )


def test_graph_names_and_dims():
    df = hb.datasets.load("sleepstudy")
    design = hb.make_design(hb.parse_formula("Reaction ~ Days + (Days | Subject)"), df)
    model = hb.build_model(design)
    free = {v.name for v in model.free_RVs}
    assert free == {"beta_std", "sd_Subject", "corr_chol_Subject", "z_Subject", "sigma"}
    dets = {v.name for v in model.deterministics}
    assert dets == {"beta", "corr_Subject", "u_Subject"}
    dims = model.named_vars_to_dims
    assert dims["beta"] == ("coef",)
    assert dims["u_Subject"] == ("Subject", "Subject__coef")
    assert dims["sd_Subject"] == ("Subject__coef",)
    assert model.coords["coef"] == ("Intercept", "Days")
    assert len(model.coords["Subject"]) == 18
    assert "y" in {v.name for v in model.observed_RVs}


def test_centered_switch_per_term():
    df = hb.datasets.load("achievement")
    spec = hb.parse_formula("math ~ year + (1 | school) + (1 | child)")
    spec = dataclasses.replace(spec, groups=(spec.groups[0], hb.GroupTerm(factor=("child",), centered=True)))
    model = hb.build_model(hb.make_design(spec, df))
    free = {v.name for v in model.free_RVs}
    assert "z_school" in free and "u_child" in free and "z_child" not in free


def test_logp_matches_scipy(small):
    priors = hb.Priors(
        fixed=hb.Normal(mean=[0.5, -0.2], cov=[[4.0, 0.3], [0.3, 1.0]]),
        group_sd=hb.HalfNormal(scale=2.0),
        sigma=hb.HalfStudentT(scale=3.0, nu=4.0),
    )
    spec = hb.parse_formula("y ~ x + (1 | g)", priors=priors)
    design = hb.make_design(spec, small)
    model = hb.build_model(design)
    scaling = fixed_scaling(design)
    beta_std = np.array([0.3, -0.4])
    z = np.array([0.5, -1.0, 0.2, 1.3])
    sd, sigma = 0.7, 1.1
    point = {"beta_std": beta_std, "sd_g_log__": np.log(sd), "z_g": z[:, None], "sigma_log__": np.log(sigma)}
    got = model.compile_logp()(point)

    beta = scaling.A @ beta_std  # the prior N(b, B) is on beta = A beta_std
    expected = stats.multivariate_normal([0.5, -0.2], [[4.0, 0.3], [0.3, 1.0]]).logpdf(beta)
    expected += np.log(abs(np.linalg.det(scaling.A)))
    expected += stats.halfnorm(scale=2.0).logpdf(sd) + np.log(sd)
    expected += np.log(2 * stats.t(df=4.0, scale=3.0).pdf(sigma))  # half-Student-t
    expected += np.log(sigma)
    expected += stats.norm.logpdf(z).sum()
    idx = design.groups[0].index
    mu = design.X @ beta + sd * z[idx]
    expected += stats.norm(mu, sigma).logpdf(small["y"]).sum()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_fixed_scaling_is_exact(small):
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | g)"), small)
    scaling = fixed_scaling(design)
    beta_std = np.array([0.3, -0.4])
    np.testing.assert_allclose(scaling.standardise(design.X) @ beta_std, design.X @ (scaling.A @ beta_std))


def test_default_priors_are_scaled_to_the_data(small):
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | g)"), small)
    pr = hb.resolve_priors(design)
    s_y, s_x, m_x = small["y"].std(), small["x"].std(), small["x"].mean()
    slope_var = (2.5 * s_y / s_x) ** 2
    np.testing.assert_allclose(pr.B[1, 1], slope_var)
    # intercept at the predictors' means ~ N(mean y, (2.5 s_y)^2), independent of the slope
    a = np.array([1.0, m_x])
    np.testing.assert_allclose(a @ pr.B @ a, (2.5 * s_y) ** 2)
    np.testing.assert_allclose(a @ pr.B[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(a @ pr.b, small["y"].mean())
    assert pr.group_sd["g"][0].scale == pytest.approx(2.5 * s_y)
    assert pr.sigma.scale == pytest.approx(2.5 * s_y)


def test_prior_overrides_and_errors(small):
    priors = hb.Priors(fixed={"x": hb.Normal(mean=1.0, sd=0.5)})
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | g)", priors=priors), small)
    pr = hb.resolve_priors(design)
    assert pr.b[1] == 1.0 and pr.B[1, 1] == 0.25 and pr.B[0, 1] == 0.0
    with pytest.raises(hb.PriorError, match="B is 3 x 3 but the model has 2 fixed effects"):
        bad = hb.Priors(fixed=hb.Normal(cov=np.eye(3)))
        hb.resolve_priors(hb.make_design(hb.parse_formula("y ~ x + (1 | g)", priors=bad), small))
    with pytest.raises(hb.PriorError, match="positive definite"):
        hb.Normal(cov=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(hb.PriorError, match="symmetric"):
        hb.Normal(cov=[[1.0, 0.5], [0.2, 1.0]])
    with pytest.raises(hb.PriorError, match="scale must be a positive number"):
        hb.HalfNormal(scale=-1.0)


def test_prior_predictive_draws(small):
    prior = hb.prior_predictive("y ~ x + (1 | g)", small, draws=50, random_seed=2)
    assert prior["prior_predictive"]["y"].shape == (1, 50, 24)
    again = hb.prior_predictive("y ~ x + (1 | g)", small, draws=50, random_seed=2)
    np.testing.assert_array_equal(prior["prior"]["beta"].values, again["prior"]["beta"].values)
