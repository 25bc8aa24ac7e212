"""Open priors (issue 14): per-term group sds, Student-t / Laplace / flat fixed effects, Gamma,
inverse-gamma, uniform and flat scales, and any PyMC distribution by name; all serialise.
A Stan model translated with a uniform prior on tau (eight schools) matches its quadrature."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import integrate, stats

import hierbayes as hb
from hierbayes.inference.diagnostics import draw_stats
from hierbayes.spec.serialise import priors_from_dict, priors_to_dict, spec_from_dict, spec_to_dict


@pytest.fixture(scope="module")
def sleep():
    return hb.datasets.load("sleepstudy")


def test_per_term_group_sd_priors(sleep):
    priors = hb.Priors(group_sd={"Subject": {"Intercept": hb.HalfNormal(scale=30.0), "Days": hb.HalfNormal(scale=7.0)}})
    design = hb.make_design(hb.parse_formula("Reaction ~ Days + (Days | Subject)", priors=priors), sleep)
    rp = hb.resolve_priors(design)
    assert rp.group_sd["Subject"] == (hb.HalfNormal(scale=30.0), hb.HalfNormal(scale=7.0))
    # a term left out keeps its default; mixed distributions are one variable per term, stacked
    mixed = hb.Priors(group_sd={"Subject": {"Days": hb.Gamma(alpha=2.0, beta=0.2)}})
    d2 = hb.make_design(hb.parse_formula("Reaction ~ Days + (Days | Subject)", priors=mixed), sleep)
    first = hb.resolve_priors(d2).group_sd["Subject"][0]
    assert isinstance(first, hb.HalfStudentT)
    model = hb.build_model(d2)
    assert {"sd_Subject", "sd_Subject__0", "sd_Subject__1"} <= set(model.named_vars)
    point = model.initial_point()
    point["sd_Subject__1_log__"] = np.log(3.0)
    logp = model.compile_logp(vars=[model["sd_Subject__1"]], jacobian=False)(point)
    assert logp == pytest.approx(stats.gamma.logpdf(3.0, 2.0, scale=1 / 0.2))
    with pytest.raises(hb.PriorError, match=r"names term 'Weeks', which does not vary by Subject"):
        bad = hb.Priors(group_sd={"Subject": {"Weeks": hb.HalfNormal(scale=1.0)}})
        hb.resolve_priors(hb.make_design(hb.parse_formula("Reaction ~ Days + (Days | Subject)", priors=bad), sleep))


@pytest.mark.parametrize(
    ("prior", "ref"),
    [
        (hb.StudentT(nu=3.0, mu=1.0, sigma=2.0), lambda b: stats.t.logpdf(b, 3.0, 1.0, 2.0)),
        (hb.Laplace(mu=0.5, b=1.5), lambda b: stats.laplace.logpdf(b, 0.5, 1.5)),
        (hb.Prior("Cauchy", alpha=0.0, beta=2.0), lambda b: stats.cauchy.logpdf(b, 0.0, 2.0)),
    ],
)
def test_non_normal_fixed_effect_priors(sleep, prior, ref):
    """The prior term of the model at a point is the prior's log density at beta (the rest keeps N(b, B))."""
    spec = hb.parse_formula("Reaction ~ Days + (1 | Subject)", priors=hb.Priors(fixed={"Days": prior}))
    design = hb.make_design(spec, sleep)
    model = hb.build_model(design)
    rp = hb.resolve_priors(design)
    assert set(rp.fixed_other) == {1}
    point = {"beta_std": np.array([250.0, 0.3])}
    beta = model.compile_fn(model["beta"], inputs=[model["beta_std"]], on_unused_input="ignore")(point)
    got = model.compile_fn(model["beta_prior"], inputs=[model["beta_std"]], on_unused_input="ignore")(point)
    expected = ref(beta[1]) + stats.norm.logpdf(beta[0], rp.b[0], np.sqrt(rp.B[0, 0]))
    assert got == pytest.approx(expected, rel=1e-7)


def test_scale_priors_and_errors(sleep):
    for prior in (hb.Gamma(alpha=2.0, beta=0.1), hb.InverseGamma(alpha=3.0, beta=20.0), hb.Uniform(lower=0, upper=100)):
        spec = hb.parse_formula("Reaction ~ Days + (1 | Subject)", priors=hb.Priors(group_sd=prior, sigma=prior))
        model = hb.build_model(hb.make_design(spec, sleep))
        assert np.isfinite(model.compile_logp()(model.initial_point()))
    with pytest.raises(hb.SpecError, match="puts mass on negative values"):
        normal = hb.Priors(sigma=hb.Prior("Normal", sigma=1.0))
        spec = hb.parse_formula("Reaction ~ Days + (1 | Subject)", priors=normal)
        hb.build_model(hb.make_design(spec, sleep))
    with pytest.raises(hb.SpecError, match="'Potential' is not a PyMC distribution"):
        spec = hb.parse_formula("Reaction ~ Days + (1 | Subject)", priors=hb.Priors(sigma=hb.Prior("Potential")))
        hb.build_model(hb.make_design(spec, sleep))
    with pytest.raises(hb.PriorError, match="name of a PyMC distribution"):
        hb.Prior("__import__")
    with pytest.raises(hb.PriorError, match="finite numbers"):
        hb.Prior("Gamma", alpha="open('x')")
    with pytest.raises(hb.PriorError, match="lower < upper"):
        hb.Uniform(lower=2.0, upper=1.0)
    with pytest.raises(hb.PriorError, match="alpha must be a positive number"):
        hb.Gamma(alpha=-1.0, beta=1.0)


def test_flat_prior_warns_and_builds(sleep):
    with pytest.warns(hb.ImproperPriorWarning, match="improper prior"):
        flat = hb.Flat()
    spec = hb.parse_formula("Reaction ~ Days + (1 | Subject)", priors=hb.Priors(fixed=flat, sigma=flat))
    model = hb.build_model(hb.make_design(spec, sleep))
    assert "beta_prior" not in model.named_vars  # nothing to add: flat everywhere
    assert model["sigma"].owner.op.__class__.__name__.startswith("HalfFlat")


def test_open_priors_serialise_to_cards_and_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ImproperPriorWarning)
        priors = hb.Priors(
            fixed={"Days": hb.StudentT(nu=3.0, sigma=10.0), "Intercept": hb.Flat()},
            group_sd={
                "Subject": {"Intercept": hb.Prior("HalfCauchy", beta=25.0), "Days": hb.InverseGamma(alpha=2, beta=5)}
            },
            sigma=hb.Uniform(lower=0.0, upper=200.0),
        )
        assert priors_from_dict(priors_to_dict(priors)) == priors
        spec = hb.parse_formula("Reaction ~ Days + (Days | Subject)", priors=priors)
        assert spec_from_dict(spec_to_dict(spec)) == spec
    expected = {"dist": "prior", "name": "HalfCauchy", "beta": 25.0}
    assert priors_to_dict(priors)["group_sd"]["Subject"]["Intercept"] == expected
    assert priors_from_dict({"fixed": {"dist": "laplace", "b": 2.0}}).fixed == hb.Laplace(b=2.0)
    gamma = priors_from_dict({"group_sd": {"dist": "gamma", "alpha": 2, "beta": 0.1}}).group_sd
    assert gamma == hb.Gamma(alpha=2, beta=0.1)


# ----------------------------------------------------------------------------- a translated Stan model


def _eight_schools_uniform_tau(y, sigma, b, B, upper):
    """Posterior means of mu and tau by 1-D quadrature for tau ~ Uniform(0, upper), mu ~ N(b, B)."""

    def log_post(tau):
        cov = B * np.ones((len(y), len(y))) + np.diag(sigma**2 + tau**2)
        return stats.multivariate_normal(np.full(len(y), b), cov).logpdf(y)

    def mu_given_tau(tau):
        w = 1 / (sigma**2 + tau**2)
        return (b / B + np.sum(w * y)) / (1 / B + np.sum(w))

    shift = log_post(5.0)
    dens = lambda t: np.exp(log_post(t) - shift)  # noqa: E731
    opts = {"limit": 200, "epsabs": 0, "epsrel": 1e-10}
    norm = integrate.quad(dens, 0, upper, **opts)[0]
    e_tau = integrate.quad(lambda t: t * dens(t), 0, upper, **opts)[0] / norm
    e_mu = integrate.quad(lambda t: mu_given_tau(t) * dens(t), 0, upper, **opts)[0] / norm
    return e_mu, e_tau


@pytest.mark.slow
def test_eight_schools_with_a_uniform_prior_on_tau_matches_quadrature():
    """Stan's eight schools: mu ~ normal(0, 20), tau ~ uniform(0, 40); posterior means within 3 MCSE."""
    df = hb.datasets.load("eight_schools")
    priors = hb.Priors(fixed=hb.Normal(mean=0.0, sd=20.0), group_sd=hb.Uniform(lower=0.0, upper=40.0))
    spec = hb.group_means(y="y", sigma="sigma", group="school").with_priors(priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        fit = hb.fit(spec, df, chains=4, draws=2000, tune=1000, random_seed=3, target_accept=0.95, progressbar=False)
    e_mu, e_tau = _eight_schools_uniform_tau(df["y"].to_numpy(float), df["sigma"].to_numpy(float), 0.0, 400.0, 40.0)
    mu = draw_stats(fit.posterior["beta"].sel(coef="Intercept"))
    tau = draw_stats(fit.posterior["sd_school"])
    assert abs(mu["mean"] - e_mu) < 3 * mu["mcse_mean"], (mu, e_mu)
    assert abs(tau["mean"] - e_tau) < 3 * tau["mcse_mean"], (tau, e_tau)


def test_open_priors_in_a_model_card():
    from hierbayes.cards import parse_card

    card = parse_card(
        """
name = "sleep"
[data]
dataset = "sleepstudy"
[model]
formula = "Reaction ~ Days + (Days | Subject)"
[priors]
fixed.Days = { dist = "studentt", nu = 3, sigma = 10 }
sigma = { dist = "prior", name = "HalfCauchy", beta = 25 }
[priors.group_sd.Subject]
Intercept = { dist = "halfnormal", scale = 30 }
Days = { dist = "gamma", alpha = 2, beta = 0.2 }
"""
    )
    expected = hb.Priors(
        fixed={"Days": hb.StudentT(nu=3, sigma=10)},
        group_sd={"Subject": {"Intercept": hb.HalfNormal(scale=30), "Days": hb.Gamma(alpha=2, beta=0.2)}},
        sigma=hb.Prior("HalfCauchy", beta=25),
    )
    assert card.spec.priors == expected
