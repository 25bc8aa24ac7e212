"""Crossed grouping factors in the collapsed (marginalised) Gaussian sampler (issue 16).

* fast: the crossed marginal likelihood equals scipy's dense multivariate normal log density
  (1e-8), its gradient matches central differences, the built PyMC model's likelihood term
  equals the dense density, the conditional draws have the exact conditional mean and
  covariance, and ``method="auto"`` collapses crossed Gaussian models and says so;
* ``slow``: collapsed and full posteriors of a small subjects x items model agree within 4
  combined MCSEs; SBC of the crossed collapsed path with 20 simulations (whole pipeline);
* ``sbc`` (``make sbc``): the same SBC with 100 simulations. Every scalar parameter's ranks
  must pass the chi-square uniformity test at p >= 0.001 (4 parameters: Bonferroni 0.4%).
"""

from __future__ import annotations

import dataclasses
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats
from scipy.linalg import block_diag

import hierbayes as hb
from hierbayes.inference.build import build_model, var_names
from hierbayes.inference.calibration import _choose_bins, _scalars
from hierbayes.inference.collapsed import build as bc
from hierbayes.inference.collapsed.likelihood import (
    CollapsedFactor,
    CrossedFactors,
    draw_random_effects,
    marginal_loglik,
)
from hierbayes.inference.priors import resolve_priors

FAST = "FAST_COMPILE"

# --------------------------------------------------------------------------------------------
# Structure-level algebra against dense matrices
# --------------------------------------------------------------------------------------------


def _factors(rng: np.random.Generator, n: int, spec: list[tuple[int, int]]) -> CrossedFactors:
    """Random crossed factors: one (levels, terms) pair per factor; terms beyond 1 are N(0, 1) slopes."""
    out = []
    for k, (G, q) in enumerate(spec):
        index = np.concatenate([np.arange(G), rng.integers(0, G, n - G)])
        rng.shuffle(index)
        Z = np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])
        out.append(CollapsedFactor(index, Z, name=f"f{k}"))
    return CrossedFactors(tuple(out))


def _dense(cf: CrossedFactors, chols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    blocks, covs = [], []
    for f, L in zip(cf.factors, chols, strict=True):
        Z = np.zeros((f.n_rows, f.n_levels * f.n_terms))
        for a in range(f.n_terms):
            Z[np.arange(f.n_rows), f.index * f.n_terms + a] = f.Z[:, a]
        blocks.append(Z)
        covs.append(np.kron(np.eye(f.n_levels), L @ L.T))
    return np.hstack(blocks), block_diag(*covs)


def _chol(rng: np.random.Generator, q: int) -> np.ndarray:
    A = rng.normal(size=(q, q))
    return np.linalg.cholesky(A @ A.T + q * np.eye(q)) * rng.uniform(0.3, 1.2)


CONFIGS = [[(6, 1), (4, 1)], [(7, 2), (5, 1)], [(5, 1), (8, 2)], [(6, 1), (4, 2), (3, 1)]]


@pytest.mark.parametrize("spec", CONFIGS, ids=str)
def test_crossed_logp_matches_dense_mvn(spec):
    rng = np.random.default_rng(len(spec) * 10 + spec[0][1])
    cf = _factors(rng, 50, spec)
    r, sigma = pt.vector("r"), pt.scalar("sigma")
    Ls = [pt.matrix(f"L{k}") for k in range(len(spec))]
    fn = pytensor.function([r, sigma, *Ls], marginal_loglik(r, sigma, cf, tuple(Ls)), mode=FAST)
    for _ in range(3):
        rv, s = rng.normal(scale=2.0, size=50), rng.uniform(0.3, 1.5)
        chols = [_chol(rng, q) for _, q in spec]
        Z, Om = _dense(cf, chols)
        ref = stats.multivariate_normal(np.zeros(50), Z @ Om @ Z.T + s**2 * np.eye(50)).logpdf(rv)
        assert float(fn(rv, s, *chols)) == pytest.approx(ref, abs=1e-8)
    # sd vectors (diagonal covariances) and a zero sd are accepted
    sds = [np.full(q, 0.7) for _, q in spec]
    sds[0][0] = 0.0
    Z, Om = _dense(cf, [np.diag(v) for v in sds])
    ref = stats.multivariate_normal(np.zeros(50), Z @ Om @ Z.T + np.eye(50)).logpdf(rv)
    got = pytensor.function([], marginal_loglik(pt.as_tensor(rv), 1.0, cf, tuple(sds)), mode=FAST)()
    assert float(got) == pytest.approx(ref, abs=1e-8)


def test_crossed_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    cf = _factors(rng, 40, [(6, 2), (4, 1)])
    r, sigma, L0, L1 = pt.vector("r"), pt.scalar("sigma"), pt.matrix("L0"), pt.matrix("L1")
    logp = marginal_loglik(r, sigma, cf, (L0, L1))
    fn = pytensor.function([r, sigma, L0, L1], [logp, *pt.grad(logp, [sigma, L0, L1])], mode=FAST)
    args = [rng.normal(size=40), 0.8, _chol(rng, 2), np.array([[0.6]])]
    _, gs, g0, g1 = fn(*args)
    h = 1e-6
    for k, g in ((1, gs), (2, g0), (3, g1)):
        x = np.asarray(args[k], dtype=float)
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            up, dn = x.copy(), x.copy()
            up[idx] += h
            dn[idx] -= h
            a_up, a_dn = list(args), list(args)
            a_up[k], a_dn[k] = up, dn
            num[idx] = (fn(*a_up)[0] - fn(*a_dn)[0]) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6)


def test_crossed_draws_are_exact_conditional_draws():
    rng = np.random.default_rng(5)
    cf = _factors(rng, 40, [(5, 2), (4, 1)])
    chols, sigma = [_chol(rng, 2), np.array([[0.8]])], 0.9
    r = rng.normal(scale=2.0, size=40)
    Z, Om = _dense(cf, chols)
    cov = np.linalg.inv(Z.T @ Z / sigma**2 + np.linalg.inv(Om))
    mean = cov @ Z.T @ r / sigma**2
    gen = np.random.default_rng(123)
    draws = np.array(
        [np.concatenate([u.ravel() for u in draw_random_effects(gen, r, sigma, cf, chols)]) for _ in range(8000)]
    )
    se = np.sqrt(np.diag(cov) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=5 * np.sqrt(2 / draws.shape[0]) * np.abs(cov).max())


# --------------------------------------------------------------------------------------------
# Design-level: the PyMC model, batched draws, method choice
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crossed_df() -> pd.DataFrame:
    """8 subjects x 6 items, one row per pair, a condition that varies within subjects."""
    rng = np.random.default_rng(16)
    subj, item = np.meshgrid(np.arange(8), np.arange(6), indexing="ij")
    subj, item = subj.ravel(), item.ravel()
    cond = np.where(item % 2 == 0, -0.5, 0.5)
    y = 3.0 + 1.0 * cond + rng.normal(0, 1.0, 8)[subj] + rng.normal(0, 0.7, 6)[item] + rng.normal(0, 0.8, 48)
    return pd.DataFrame({"subj": [f"s{s}" for s in subj], "item": [f"i{i}" for i in item], "cond": cond, "y": y})


def _design(df: pd.DataFrame, formula: str) -> hb.Design:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.NestingWarning)
        return hb.make_design(hb.parse_formula(formula), df)


@pytest.mark.parametrize("formula", ["y ~ cond + (1 | subj) + (1 | item)", "y ~ cond + (1 + cond | subj) + (1 | item)"])
def test_model_likelihood_term_equals_dense_density(crossed_df, formula):
    design = _design(crossed_df, formula)
    model = bc.build_collapsed_model(design)
    assert isinstance(bc.collapsed_data(design).factors, CrossedFactors)
    outs = [model.potentials[0], model["beta"], model["sigma"], model["sd_subj"], model["sd_item"]]
    has_corr = "corr_chol_subj" in model.named_vars
    if has_corr:
        outs.append(model["corr_chol_subj"])
    fn = model.compile_fn(outs, inputs=model.value_vars, point_fn=True, mode=FAST, on_unused_input="ignore")
    point = model.initial_point()
    rng = np.random.default_rng(0)
    for _ in range(2):
        pt_ = {k: v + rng.normal(scale=0.3, size=np.shape(v)) for k, v in point.items()}
        logp, beta, sigma, sd_s, sd_i, *rest = fn(pt_)
        sd_s, sd_i = np.atleast_1d(sd_s), np.atleast_1d(sd_i)  # (1 | g): a scalar sd
        L_s = np.diag(sd_s) @ rest[0] if has_corr else np.diag(sd_s)
        V = sigma**2 * np.eye(design.n_obs)
        for g, L in zip(design.groups, [L_s, np.diag(sd_i)], strict=True):
            Z = np.zeros((design.n_obs, g.n_levels * len(g.coef_names)))
            for a in range(len(g.coef_names)):
                Z[np.arange(design.n_obs), g.index * len(g.coef_names) + a] = g.Z[:, a]
            V += Z @ np.kron(np.eye(g.n_levels), L @ L.T) @ Z.T
        ref = stats.multivariate_normal(design.X @ beta, V).logpdf(design.y)
        # float64 rounding of a 600 x 600 dense log density is ~1e-12 relative; 1e-8 absolute is below it
        assert float(logp) == pytest.approx(ref, rel=1e-10)


def test_batched_conditional_means_match_dense(crossed_df):
    design = _design(crossed_df, "y ~ cond + (1 + cond | subj) + (1 | item)")
    data = bc.collapsed_data(design)
    rng = np.random.default_rng(2)
    S = 3
    v = np.column_stack([np.ones(S), rng.normal(scale=0.1, size=(S, data.p))])
    sigma = rng.uniform(0.5, 1.0, S)
    chols = [np.stack([_chol(rng, 2) for _ in range(S)]), rng.uniform(0.3, 1.0, (S, 1, 1))]
    means = bc.conditional_effects(data, v, sigma, chols)
    Xs = data.scaling.standardise(design.X)
    R = np.column_stack([design.y - Xs @ data.beta_ref, Xs])
    for s in range(S):
        Z, Om = _dense(data.factors, [c[s] for c in chols])
        r = R @ v[s]
        cov = np.linalg.inv(Z.T @ Z / sigma[s] ** 2 + np.linalg.inv(Om))
        ref = cov @ Z.T @ r / sigma[s] ** 2
        got = np.concatenate([m[s].ravel() for m in means])
        np.testing.assert_allclose(got, ref, atol=1e-10)


def test_auto_collapses_crossed_and_says_so(crossed_df):
    design = _design(crossed_df, "y ~ cond + (1 | subj) + (1 | item)")
    chosen, note = bc.choose_method(design, "auto")
    assert chosen == "collapsed"
    assert note == (
        "hierbayes: method='collapsed' (random effects of subj, item integrated out jointly as crossed "
        "factors; drawn exactly after sampling)."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.NestingWarning)
        bern = hb.make_design(
            hb.parse_formula("b ~ cond + (1 | subj) + (1 | item)", family="bernoulli"),
            crossed_df.assign(b=(crossed_df["y"] > 3).astype(int)),
        )
    chosen, note = bc.choose_method(bern, "auto")
    assert chosen == "full" and "bernoulli" in note


# --------------------------------------------------------------------------------------------
# Slow: collapsed against full posteriors; SBC
# --------------------------------------------------------------------------------------------


def _quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        warnings.simplefilter("ignore", hb.NestingWarning)
        return hb.fit(*args, progressbar=False, **kwargs)


@pytest.mark.slow
def test_collapsed_matches_full_crossed(crossed_df):
    formula = "y ~ cond + (1 | subj) + (1 | item)"
    kw = {"chains": 4, "draws": 1000, "tune": 1000, "random_seed": 3, "target_accept": 0.95}
    full = _quiet_fit(formula, crossed_df, method="full", **kw)
    coll = _quiet_fit(formula, crossed_df, method="auto", **kw)
    assert coll.settings["method"] == "collapsed" and full.settings["method"] == "full"
    worst = 0.0
    for name in ("beta", "sd_subj", "sd_item", "sigma", "u_subj", "u_item"):
        a, b = full.posterior[name], coll.posterior[name]
        assert a.dims == b.dims
        se = np.hypot(az.mcse(a), az.mcse(b))
        z = (np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))) / se).values
        worst = max(worst, float(z.max()))
        assert np.all(z <= 4.0), (name, z)
    print(f"\ncrossed collapsed vs full: worst |difference| / combined MCSE = {worst:.2f}")


def collapsed_sbc(df: pd.DataFrame, formula: str, n_sims: int, *, draws: int, thin: int, seed: int) -> pd.Series:
    """SBC of the collapsed sampler (crossed or nested): prior draws from the full model, refits collapsed.

    As :func:`hierbayes.check_calibration` (fixed priors, nutpie, thinned ranks, chi-square per
    scalar parameter), but every refit uses :func:`hierbayes.inference.collapsed.build.build_collapsed_model`
    compiled once with shared sufficient statistics. Returns the p-values.
    """
    import nutpie

    design = _design(df, formula)
    priors = resolve_priors(design)
    names = var_names(design)
    ranked = names["fixed"] + names["sd"] + names["other"]
    full = build_model(design, priors=priors)
    ss = np.random.SeedSequence(seed).generate_state(n_sims + 1)
    prior = pm.sample_prior_predictive(draws=n_sims, model=full, random_seed=int(ss[0]))
    truth = _scalars(prior["prior"].to_dataset(), ranked, ("chain", "draw"))
    y_sim = prior["prior_predictive"]["y"].values.reshape(n_sims, -1)
    compiled = nutpie.compile_pymc_model(
        bc.build_collapsed_model(design, priors, shared_statistics=True), freeze_model=False
    )
    bins = _choose_bins(n_sims)
    available = 2 * len(range(0, draws, thin))
    n_draws = (available + 1) // bins * bins - 1
    ranks = {k: np.zeros(n_sims, int) for k in truth}
    for s in range(n_sims):
        stats_s = bc.response_statistics(bc.collapsed_data(dataclasses.replace(design, y=y_sim[s])))
        trace = nutpie.sample(
            compiled.with_data(**stats_s),
            draws=draws,
            tune=500,
            chains=2,
            seed=int(ss[s + 1]),
            progress_bar=False,
            target_accept=0.9,
        )
        post = _scalars(trace["posterior"].to_dataset().isel(draw=slice(None, None, thin)), ranked, ("chain", "draw"))
        for k, true in truth.items():
            ranks[k][s] = int(np.sum(post[k][:n_draws] < true[s]))
    width = (n_draws + 1) // bins
    return pd.Series({k: stats.chisquare(np.bincount(v // width, minlength=bins)).pvalue for k, v in ranks.items()})


@pytest.mark.slow
def test_crossed_collapsed_sbc_small(crossed_df):
    """20 simulations: the whole crossed collapsed pipeline in the normal suite."""
    p = collapsed_sbc(crossed_df, "y ~ cond + (1 | subj) + (1 | item)", 20, draws=500, thin=10, seed=1)
    print("\n" + p.round(4).to_string())
    assert len(p) == 5 and (p >= 0.001).all(), p


@pytest.fixture(scope="module")
def pooled_nested_df() -> pd.DataFrame:
    """6 schools x 8 classes of 2 or 3 rows: the class levels pool (two classes, by size)."""
    rng = np.random.default_rng(21)
    school = np.repeat(np.arange(6), 8)
    cls = np.repeat(np.arange(48), rng.integers(2, 4, size=48))
    x = rng.normal(size=cls.size)
    y = 1.0 + 0.5 * x + rng.normal(0, 0.8, 6)[school[cls]] + rng.normal(0, 0.6, 48)[cls] + rng.normal(0, 1.0, cls.size)
    return pd.DataFrame({"school": school[cls], "cls": cls, "x": x, "y": y})


@pytest.mark.slow
def test_pooled_nested_collapsed_sbc_small(pooled_nested_df):
    """20 simulations of the pooled nested path, refitted through its shared class sums."""
    formula = "y ~ x + (1 | school/cls)"
    assert bc.collapsed_data(_design(pooled_nested_df, formula)).classes is not None
    p = collapsed_sbc(pooled_nested_df, formula, 20, draws=500, thin=10, seed=1)
    print("\n" + p.round(4).to_string())
    assert len(p) == 5 and (p >= 0.001).all(), p


@pytest.mark.sbc
def test_pooled_nested_collapsed_sbc(pooled_nested_df):
    p = collapsed_sbc(pooled_nested_df, "y ~ x + (1 | school/cls)", 100, draws=1000, thin=20, seed=2024)
    print("\n" + p.round(4).to_string())
    assert (p >= 0.001).all(), p


@pytest.mark.sbc
def test_crossed_collapsed_sbc(crossed_df):
    p = collapsed_sbc(crossed_df, "y ~ cond + (1 | subj) + (1 | item)", 100, draws=1000, thin=20, seed=2024)
    print("\n" + p.round(4).to_string())
    assert (p >= 0.001).all(), p
