"""Posterior agreement with known answers: lme4 reference fits and the eight-schools quadrature.

Tolerances follow the project rule: distances are measured in posterior sd (frequentist
reference) or in Monte Carlo standard errors (exact Bayesian reference), never widened to pass.
The reference numbers are copied from ../shared/data/reference_lme4.json (lme4 1.1-31, REML).
"""

import numpy as np
import pytest
from scipy import integrate, stats

import hierbayes as hb
from hierbayes.inference.diagnostics import draw_stats

pytestmark = pytest.mark.slow

# lme4 REML: math ~ year + retained + female + black + hispanic + size + lowinc + (1|school) + (1|child)
ACHIEVEMENT_FIXED = {
    "Intercept": 0.2397,  # published with a 'male' indicator: 0.2398; the sign flip of female moves it by 9e-05
    "year": 0.7483,
    "retained": 0.1481,
    "female": 9.04e-05,
    "black": -0.5182,
    "hispanic": -0.2899,
    "size": -1.028e-04,
    "lowinc": -8.002e-03,
}
ACHIEVEMENT_VARIANCES = {"child": 0.66367, "school": 0.08750, "Residual": 0.34452}

SLEEPSTUDY_FIXED = {"Intercept": 251.405104848485, "Days": 10.467285959596}
SLEEPSTUDY_CORR = 0.0655512382381282


def test_achievement_fixed_effects_match_lme4(achievement_fit):
    table = hb.summary(achievement_fit).fixed
    for name, ref in ACHIEVEMENT_FIXED.items():
        row = table.loc[name]
        z = abs(row["mean"] - ref) / row["sd"]
        assert z < 0.3, f"{name}: posterior mean {row['mean']:.5g}, lme4 {ref:.5g}, {z:.2f} posterior sd apart"


def test_achievement_variances_match_lme4(achievement_fit):
    table = hb.summary(achievement_fit).random
    variances = table[table.quantity == "variance"].set_index("group")["mean"]
    for group, ref in ACHIEVEMENT_VARIANCES.items():
        rel = abs(variances[group] - ref) / ref
        assert rel < 0.15, f"{group} variance {variances[group]:.4f} vs lme4 {ref:.4f} ({rel:.1%})"


def test_achievement_fit_has_no_divergences(achievement_fit):
    assert achievement_fit.diagnostics.divergences == 0
    assert achievement_fit.diagnostics.max_rhat[1] < 1.05


def test_sleepstudy_matches_lme4(sleepstudy_fit):
    s = hb.summary(sleepstudy_fit)
    for name, ref in SLEEPSTUDY_FIXED.items():
        row = s.fixed.loc[name]
        assert abs(row["mean"] - ref) / row["sd"] < 0.3, name
    corr = s.random[s.random.quantity == "corr"].iloc[0]
    assert corr["lower"] < SLEEPSTUDY_CORR < corr["upper"]
    assert sleepstudy_fit.diagnostics.divergences == 0


def _eight_schools_reference(y, sigma, b, B, tau_scale, tau_nu):
    """Posterior means of mu and tau by 1-D quadrature over tau.

    Given tau, y_j ~ N(mu, sigma_j^2 + tau^2) and mu ~ N(b, B) is conjugate, so
    p(tau | y) is proportional to p(tau) N(y | b 1, B 1 1' + diag(sigma^2 + tau^2)) and
    E[mu | tau, y] = (b/B + sum y_j/V_j) / (1/B + sum 1/V_j).
    """

    def log_post(tau):
        cov = B * np.ones((len(y), len(y))) + np.diag(sigma**2 + tau**2)
        log_prior = np.log(2) + stats.t(df=tau_nu, scale=tau_scale).logpdf(tau)
        return log_prior + stats.multivariate_normal(np.full(len(y), b), cov).logpdf(y)

    def mu_given_tau(tau):
        w = 1 / (sigma**2 + tau**2)
        return (b / B + np.sum(w * y)) / (1 / B + np.sum(w))

    shift = log_post(5.0)
    dens = lambda t: np.exp(log_post(t) - shift)  # noqa: E731
    opts = {"limit": 200, "epsabs": 0, "epsrel": 1e-10}
    norm = integrate.quad(dens, 0, np.inf, **opts)[0]
    e_tau = integrate.quad(lambda t: t * dens(t), 0, np.inf, **opts)[0] / norm
    e_mu = integrate.quad(lambda t: mu_given_tau(t) * dens(t), 0, np.inf, **opts)[0] / norm
    return e_mu, e_tau


def test_eight_schools_against_quadrature(eight_schools_fit):
    design = eight_schools_fit.design
    priors = hb.resolve_priors(design)
    (tau_prior,) = priors.group_sd["school"]
    assert isinstance(tau_prior, hb.HalfStudentT)
    e_mu, e_tau = _eight_schools_reference(
        design.y, design.known_sigma, priors.b[0], priors.B[0, 0], tau_prior.scale, tau_prior.nu
    )
    post = eight_schools_fit.posterior
    mu = draw_stats(post["beta"].sel(coef="Intercept"))
    tau = draw_stats(post["sd_school"])
    assert abs(mu["mean"] - e_mu) < 3 * mu["mcse_mean"], (mu, e_mu)
    assert abs(tau["mean"] - e_tau) < 3 * tau["mcse_mean"], (tau, e_tau)
    assert eight_schools_fit.diagnostics.divergences == 0


@pytest.mark.filterwarnings("ignore::hierbayes.ConvergenceWarning")  # 100 draws: too few for the diagnostics
def test_same_seed_same_draws():
    df = hb.datasets.load("eight_schools")
    spec = hb.group_means(y="y", sigma="sigma", group="school")
    a = hb.fit(spec, df, draws=100, tune=100, chains=2, random_seed=7, progressbar=False)
    b = hb.fit(spec, df, draws=100, tune=100, chains=2, random_seed=7, progressbar=False)
    np.testing.assert_array_equal(a.posterior["beta"].values, b.posterior["beta"].values)
    np.testing.assert_array_equal(a.posterior["u_school"].values, b.posterior["u_school"].values)
