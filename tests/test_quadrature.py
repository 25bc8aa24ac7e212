"""Random intercepts of small groups integrated out by adaptive Gauss-Hermite quadrature."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate

import hierbayes as hb
from hierbayes.inference import quadrature as Q
from hierbayes.inference.fit import to_spec


def nested_counts(seed: int = 0, n_outer: int = 6, n_inner: int = 40) -> pd.DataFrame:
    """Clusters with mothers of 1-3 rows: Bernoulli, binomial and Poisson responses."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, size=n_inner)
    inner = np.repeat(np.arange(n_inner), sizes)
    outer = inner % n_outer
    x = rng.normal(size=inner.size)
    u = rng.normal(0, 1.5, n_inner)[inner] + rng.normal(0, 0.5, n_outer)[outer]
    eta = 0.3 + 0.8 * x + u
    n = rng.integers(1, 6, size=inner.size)
    return pd.DataFrame(
        {
            "cl": outer,
            "mom": inner,
            "x": x,
            "yb": (rng.random(inner.size) < 1 / (1 + np.exp(-eta))).astype(int),
            "n": n,
            "s": rng.binomial(n, 1 / (1 + np.exp(-eta))),
            "cnt": rng.poisson(np.exp(eta)),
            "logE": rng.normal(0, 0.3, inner.size),
        }
    )


CASES = {
    "bernoulli": ("yb ~ x + (1 | cl/mom)", "bernoulli"),
    "binomial": ("s | trials(n) ~ x + (1 | cl/mom)", "binomial"),
    "poisson": ("cnt ~ x + offset(logE) + (1 | cl/mom)", "poisson"),
}


@functools.cache
def design_of(case: str, seed: int = 0) -> hb.Design:
    formula, family = CASES[case]
    return hb.make_design(to_spec(formula, family=family), nested_counts(seed))


def brute_force(data: Q.QuadratureData, eta: np.ndarray, s: float, m: int) -> float:
    """log of the integral of level m by adaptive scipy quadrature (without the constant)."""
    E = eta[data.rows[m]]

    def integrand(z: float) -> float:
        ll, _, _ = Q._kernel_np(data.kind, data.y[m], data.trials[m], E + s * z)
        return float(np.exp(np.sum(data.mask[m] * ll) - 0.5 * z * z) / np.sqrt(2 * np.pi))

    return float(np.log(integrate.quad(integrand, -15, 15, epsabs=0, epsrel=1e-12, limit=200)[0]))


@functools.cache
def compiled_loglik(case: str, n_nodes: int, grad: bool = False):
    data = Q.quadrature_data(design_of(case))
    eta, s = pt.vector("eta"), pt.scalar("s")
    out = Q.agq_loglik(data, eta, s, n_nodes)
    outputs = [out]
    if grad:
        outputs = [pt.sum(out), *pytensor.grad(pt.sum(out), [eta, s])]
    return pytensor.function([eta, s], outputs)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("s", [0.3, 1.0, 2.5])
def test_agq_matches_numerical_integration(case, s):
    design = design_of(case)
    data = Q.quadrature_data(design)
    assert data.group.name == "cl:mom"
    eta = np.random.default_rng(1).normal(0.2, 1.0, design.n_obs)
    if design.offset is not None:
        eta = eta + design.offset
    exact = np.array([brute_force(data, eta, s, m) for m in range(data.group.n_levels)])
    fine = compiled_loglik(case, 25)(eta, s)[0]
    # 25 nodes: 1e-6 per level up to sd 1; at sd 2.5 a Poisson level with zero counts is skewed
    # (its right tail falls off as exp(-e^(2.5 z))), and 25 nodes give 1e-4
    tol = 1e-6 if s <= 1 else 2e-4
    np.testing.assert_allclose(fine, exact, atol=tol, rtol=0)
    numpy_fine = Q.agq_loglik_np(data, eta[data.rows][None], np.array([s]), 25)[0]
    np.testing.assert_allclose(numpy_fine, exact, atol=tol, rtol=0)
    # 5 nodes: within 5e-3 nats per level up to sd 1, but 0.2 at sd 2.5 (a skewed integrand for
    # 1-3 binary rows), which is why method="auto" checks the rule and takes more nodes there
    default = compiled_loglik(case, Q.DEFAULT_NODES)(eta, s)[0]
    assert np.max(np.abs(default - exact)) < (5e-3 if s <= 1 else 0.2)


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_matches_finite_differences(case):
    design = design_of(case)
    rng = np.random.default_rng(2)
    eta0 = rng.normal(0.0, 1.0, design.n_obs)
    f = compiled_loglik(case, 7, grad=True)
    _, g_eta, g_s = f(eta0, 1.3)
    h = 1e-5
    for i in rng.choice(design.n_obs, 6, replace=False):
        e1, e2 = eta0.copy(), eta0.copy()
        e1[i] += h
        e2[i] -= h
        fd = (f(e1, 1.3)[0] - f(e2, 1.3)[0]) / (2 * h)
        assert abs(fd - g_eta[i]) < 1e-6 * (1 + abs(fd))
    fd_s = (f(eta0, 1.3 + h)[0] - f(eta0, 1.3 - h)[0]) / (2 * h)
    assert abs(fd_s - g_s) < 1e-6 * (1 + abs(fd_s))


@pytest.mark.parametrize("case", list(CASES))
def test_exact_draws_match_conditional_moments(case):
    design = design_of(case)
    data = Q.quadrature_data(design)
    eta = np.random.default_rng(3).normal(0.0, 1.0, design.n_obs)
    s, S = 1.8, 4000
    E = np.broadcast_to(eta[data.rows], (S, *data.rows.shape)).copy()
    z = Q._exact_draws(data, E, np.full(S, s), np.random.default_rng(4))
    assert np.isfinite(z).all()
    for m in range(0, data.group.n_levels, 7):
        e = eta[data.rows[m]]

        def density(t: float, m: int = m, e: np.ndarray = e) -> float:
            ll, _, _ = Q._kernel_np(data.kind, data.y[m], data.trials[m], e + s * t)
            return float(np.exp(np.sum(data.mask[m] * ll) - 0.5 * t * t))

        moments = [integrate.quad(lambda t, k=k: t**k * density(t), -15, 15, epsrel=1e-11)[0] for k in range(3)]
        mean = moments[1] / moments[0]
        sd = np.sqrt(moments[2] / moments[0] - mean**2)
        draws = z[:, m]
        # 4 Monte Carlo standard errors of the mean and of the sd (normal approximation)
        assert abs(draws.mean() - mean) < 4 * sd / np.sqrt(S)
        assert abs(draws.std() - sd) < 4 * sd / np.sqrt(2 * S) * 1.5


def test_auto_does_not_pick_quadrature_while_it_loses_on_time():
    design = design_of("bernoulli")
    assert not Q.AUTO_PICKS_QUADRATURE
    assert Q.choose_method(design, "auto")[0] == "full"
    chosen, _, k = Q.choose_method(design, "quadrature")
    assert chosen == "quadrature" and k in Q.NODE_CHOICES


def test_choose_method(monkeypatch):
    monkeypatch.setattr(Q, "AUTO_PICKS_QUADRATURE", True)  # the selection rule, as auto would apply it
    design = design_of("bernoulli")
    chosen, note, k = Q.choose_method(design, "auto")
    assert chosen == "quadrature" and k in Q.NODE_CHOICES and "cl:mom" in note
    assert Q.choose_method(design, "full")[0] == "full"
    gauss = hb.make_design(to_spec("x ~ 1 + (1 | cl/mom)"), nested_counts())
    assert Q.choose_method(gauss, "auto")[0] == "collapsed"
    with pytest.raises(hb.SpecError, match="quadrature covers"):
        Q.choose_method(gauss, "quadrature")
    with pytest.raises(hb.SpecError, match="Unknown method"):
        Q.choose_method(design, "laplace")
    big = pd.DataFrame({"g": np.repeat(np.arange(5), 20), "y": np.arange(100) % 2})
    chosen, note, _ = Q.choose_method(hb.make_design(to_spec("y ~ 1 + (1 | g)", family="bernoulli"), big), "auto")
    assert chosen == "full" and "20 rows" in note


def test_model_has_full_model_names():
    design = design_of("poisson")
    model = Q.build_quadrature_model(design, n_nodes=5)
    free = {rv.name for rv in model.free_RVs}
    assert free == {"beta_std", "sd_cl", "z_cl", "sd_cl:mom"}
    full = hb.build_model(design)
    assert {rv.name for rv in full.free_RVs} - free == {"z_cl:mom"}
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))


def test_quadrature_fit_draws_effects():
    design_df = nested_counts(5)
    with warnings.catch_warnings():  # 2 x 200 draws: the point is the draws' shape, not their ESS
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        fit = hb.fit(
            "yb ~ x + (1 | cl/mom)", design_df, family="bernoulli", draws=200, tune=200, chains=2, random_seed=3,
            progressbar=False, method="quadrature",
        )  # fmt: skip
    assert fit.settings["method"] == "quadrature" and fit.settings["quadrature_nodes"] in Q.NODE_CHOICES
    u = fit.posterior["u_cl:mom"]
    assert u.shape == (2, 200, 40, 1) and np.isfinite(u.values).all()
    assert "z_cl:mom" not in fit.posterior
    text = str(hb.summary(fit))
    # the integrated factor's variance is in the random-effects table like any other
    assert "Std.Dev." in text
    assert any(line.split()[:2] == ["cl:mom", "(Intercept)"] for line in text.splitlines())


def _sbc_case() -> tuple[object, pd.DataFrame]:
    return hb.parse_formula("yb ~ x + (1 | cl/mom)", family="bernoulli"), nested_counts(7, n_outer=5, n_inner=30)


@pytest.mark.slow
def test_quadrature_calibration_small():
    """20 simulations of the marginalised (quadrature) model: only a gross error fails."""
    spec, data = _sbc_case()
    cal = hb.check_calibration(spec, data, n_sims=20, draws=500, thin=10, random_seed=11, method="quadrature")
    assert cal.ranks.notna().all().all()
    assert (cal.pvalues >= 0.001).all(), cal.table()


@pytest.mark.sbc
def test_sbc_quadrature():
    spec, data = _sbc_case()
    cal = hb.check_calibration(spec, data, n_sims=100, random_seed=2025, method="quadrature")
    print(f"\nquadrature: {cal.n_sims} simulations, {int((cal.sims['divergences'] > 0).sum())} with divergences")
    print(cal.table().round(4).to_string())
    assert cal.ranks.notna().all().all()
    assert (cal.pvalues >= 0.001).all(), cal.table()


def _hyper_agree(a, b, names: list[str], z: float = 4.0) -> None:
    """Every scalar of ``names``: posterior means within z combined MCSEs."""
    import arviz as az

    for name in names:
        da, db = a.posterior[name], b.posterior[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        for idx in np.ndindex(*[da.sizes[d] for d in extra]):
            xa = da.isel(dict(zip(extra, idx, strict=True)))
            xb = db.isel(dict(zip(extra, idx, strict=True)))
            se = np.hypot(float(az.mcse(xa)), float(az.mcse(xb)))
            assert abs(float(xa.mean()) - float(xb.mean())) <= z * se, (name, idx)


def _effects_agree(a, b, name: str, z: float = 5.0) -> None:
    """Per level: means and sds of the effects within z combined MCSEs (z = 5: thousands of levels)."""
    import arviz as az

    ua, ub = a.posterior[name], b.posterior[name]
    for method, stat in (("mean", "mean"), ("sd", "std")):
        diff = np.abs(getattr(ua, stat)(("chain", "draw")) - getattr(ub, stat)(("chain", "draw")))
        se = np.hypot(az.mcse(ua, method=method), az.mcse(ub, method=method))
        assert np.all((diff / se).values <= z), (name, method)


# About 7 minutes on 2 cores (the full model and the 11-node quadrature model, 4 x 1000 draws each):
# run with the long statistical runs (make sbc) to keep make test well under its time budget; the
# Poisson comparison below and the 20-simulation SBC run in make test.
@pytest.mark.sbc
def test_quadrature_matches_full_guatemalan(guatemalan_fit, guatemalan_quadrature_fit):
    full, quad = guatemalan_fit, guatemalan_quadrature_fit
    assert full.settings["method"] == "full" and quad.settings["method"] == "quadrature"
    _hyper_agree(full, quad, ["beta", "sd_cluster", "sd_cluster:mom"])
    _effects_agree(full, quad, "u_cluster")
    _effects_agree(full, quad, "u_cluster:mom")


@pytest.mark.slow
def test_quadrature_matches_full_poisson():
    rng = np.random.default_rng(8)
    sizes = rng.integers(1, 4, size=300)
    g = np.repeat(np.arange(300), sizes)
    x = rng.normal(size=g.size)
    df = pd.DataFrame({"g": g, "x": x, "logE": rng.normal(0, 0.3, g.size)})
    df["y"] = rng.poisson(np.exp(0.5 + 0.4 * x + df["logE"] + rng.normal(0, 0.8, 300)[g]))
    kw = dict(family="poisson", chains=4, draws=1000, tune=1000, random_seed=5, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        full = hb.fit("y ~ x + offset(logE) + (1 | g)", df, method="full", target_accept=0.9, **kw)
        quad = hb.fit("y ~ x + offset(logE) + (1 | g)", df, method="quadrature", sampler="nutpie", **kw)
    assert quad.settings["method"] == "quadrature"
    _hyper_agree(full, quad, ["beta", "sd_g"])
    _effects_agree(full, quad, "u_g")
