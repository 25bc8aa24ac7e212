"""The collapsed (marginalised) Gaussian sampler: model, method choice, exact random-effect draws.

Fast tests check the built PyMC model's log density against a dense multivariate normal plus
the priors computed with scipy, the batched conditional draws against the exact Gaussian
conditional, reproducibility and the method choice. Slow tests compare the collapsed and the
full (non-centred) posteriors on the achievement and sleepstudy models.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import hierbayes as hb
from hierbayes.inference.build import fixed_scaling
from hierbayes.inference.collapsed import build as bc
from hierbayes.inference.collapsed.likelihood import CollapsedFactor, NestedFactors, draw_random_effects

# --------------------------------------------------------------------------------------------
# Small data
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nested_df():
    """4 schools x 2-4 classes, 1-4 rows per class; class ids unique across schools."""
    rng = np.random.default_rng(42)
    rows = []
    cls = 0
    for s, n_cls in enumerate([2, 3, 4, 2]):
        for _ in range(n_cls):
            for _ in range(rng.integers(1, 5)):
                rows.append({"school": f"s{s}", "cls": f"c{cls}", "x": rng.normal(2.0, 3.0)})
            cls += 1
    df = pd.DataFrame(rows)
    df["y"] = 1.0 + 0.5 * df["x"] + rng.normal(size=len(df))
    return df


def _dense_logpdf(design, beta, sds_by_group, sigma):
    """log N(y | X beta, V) with V = sigma^2 I + sum_g Z_g diag(sd_g^2) Z_g' built densely."""
    n = design.n_obs
    V = sigma**2 * np.eye(n)
    for g in design.groups:
        sd = np.asarray(sds_by_group[g.name])
        for a in range(len(g.coef_names)):
            Zd = np.zeros((n, g.n_levels))
            Zd[np.arange(n), g.index] = g.Z[:, a]
            V += sd[a] ** 2 * Zd @ Zd.T
    return stats.multivariate_normal(design.X @ beta, V).logpdf(design.y)


def _halft_logpdf(x, scale, nu):
    return np.log(2.0) + stats.t(df=nu, scale=scale).logpdf(x)


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x || school)", "y ~ x + (1 | school/cls)"])
def test_collapsed_model_logp_matches_dense_mvn_plus_priors(nested_df, formula):
    priors = hb.Priors(
        fixed=hb.Normal(mean=[0.5, -0.2], cov=[[4.0, 0.3], [0.3, 1.0]]),
        group_sd=hb.HalfNormal(scale=2.0),
        sigma=hb.HalfStudentT(scale=3.0, nu=4.0),
    )
    design = hb.make_design(hb.parse_formula(formula, priors=priors), nested_df)
    model = bc.build_collapsed_model(design)
    assert {v.name for v in model.free_RVs} == {"beta_std", "sigma", *(f"sd_{g.name}" for g in design.groups)}
    assert "y_marginal" in {v.name for v in model.potentials}
    scaling = fixed_scaling(design)
    beta_std = np.array([0.7, 1.9])
    sds = {g.name: np.linspace(0.4, 1.3, len(g.coef_names)) for g in design.groups}
    sigma = 0.9
    point = {"beta_std": beta_std, "sigma_log__": np.log(sigma)}
    point.update({f"sd_{k}_log__": np.log(v).squeeze() for k, v in sds.items()})  # q = 1: a scalar sd
    got = model.compile_logp(jacobian=False)(point)

    beta = scaling.A @ beta_std  # the prior N(b, B) is on beta = A beta_std
    expected = stats.multivariate_normal([0.5, -0.2], [[4.0, 0.3], [0.3, 1.0]]).logpdf(beta)
    expected += np.log(abs(np.linalg.det(scaling.A)))
    for g in design.groups:
        expected += stats.halfnorm(scale=2.0).logpdf(sds[g.name]).sum()
    expected += _halft_logpdf(sigma, 3.0, nu=4.0)
    dense = _dense_logpdf(design, beta, sds, sigma)
    # the marginal likelihood term is exact; PyMC's prior densities differ from scipy's in the
    # 9th significant digit (their own rounding), hence rel=1e-9 for the total
    assert model.compile_logp(vars=model.potentials, jacobian=False)(point) == pytest.approx(dense, abs=1e-8)
    assert got == pytest.approx(expected + dense, rel=1e-9)


def test_no_fixed_effects(nested_df):
    """The sufficient statistics handle a model without fixed effects."""
    priors = hb.Priors(group_sd=hb.HalfNormal(scale=2.0), sigma=hb.HalfNormal(scale=3.0))
    design = hb.make_design(hb.parse_formula("y ~ 0 + (1 | school/cls)", priors=priors), nested_df)
    model = bc.build_collapsed_model(design)
    point = {"sigma_log__": np.log(0.8), "sd_school_log__": np.log(0.5), "sd_school:cls_log__": np.log(1.2)}
    expected = stats.halfnorm(scale=3.0).logpdf(0.8) + stats.halfnorm(scale=2.0).logpdf([0.5, 1.2]).sum()
    dense = _dense_logpdf(design, np.zeros(0), {"school": [0.5], "school:cls": [1.2]}, 0.8)
    assert model.compile_logp(vars=model.potentials, jacobian=False)(point) == pytest.approx(dense, abs=1e-8)
    assert model.compile_logp(jacobian=False)(point) == pytest.approx(expected + dense, rel=1e-9)


def test_default_priors_are_the_full_models():
    """Same prior terms (sds, LKJ, fixed effects, sigma) in the collapsed and the full model."""
    design = hb.make_design(hb.parse_formula("Reaction ~ Days + (Days | Subject)"), hb.datasets.load("sleepstudy"))
    full, coll = hb.build_model(design), bc.build_collapsed_model(design)
    shared = [v.name for v in coll.free_RVs]
    assert set(shared) < {v.name for v in full.free_RVs}
    point = {k: v + 0.1 for k, v in coll.initial_point().items()}
    logp_full = full.compile_logp(vars=[full[n] for n in shared])({**full.initial_point(), **point})
    logp_coll = coll.compile_logp(vars=[coll[n] for n in shared])(point)
    assert logp_coll == pytest.approx(logp_full, abs=1e-12)
    assert set(coll.named_vars_to_dims.items()) <= set(full.named_vars_to_dims.items())


# --------------------------------------------------------------------------------------------
# Batched conditional draws
# --------------------------------------------------------------------------------------------


def _dense_conditional(design, data, beta_std, sigma, chols):
    """Exact p(u | y): Cov = (Z'Z / s^2 + Omega^-1)^-1, mean = Cov Z'r / s^2 (levels x terms, flattened)."""
    n = design.n_obs
    r = design.y - fixed_scaling(design).standardise(design.X) @ beta_std
    Zs, blocks = [], []
    for g, L in zip(data.groups, chols, strict=True):
        q = len(g.coef_names)
        Z = np.zeros((n, g.n_levels * q))
        for a in range(q):
            Z[np.arange(n), g.index * q + a] = g.Z[:, a]
        Zs.append(Z)
        blocks.append(np.kron(np.eye(g.n_levels), L @ L.T))
    Z = np.hstack(Zs)
    Omega = np.zeros((Z.shape[1],) * 2)
    k = 0
    for b in blocks:
        Omega[k : k + b.shape[0], k : k + b.shape[0]] = b
        k += b.shape[0]
    cov = np.linalg.inv(Z.T @ Z / sigma**2 + np.linalg.inv(Omega))
    return cov @ Z.T @ r / sigma**2, cov


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x | cls)", "y ~ x + (1 + x | school) + (1 | school:cls)"])
def test_batched_draws_match_exact_conditional(nested_df, formula):
    design = hb.make_design(hb.parse_formula(formula), nested_df)
    data = bc.collapsed_data(design)
    beta_std, sigma = np.array([0.8, 1.7]), 0.7
    chols = [np.array([[0.9, 0.0], [0.3, 0.5]])[: len(g.coef_names), : len(g.coef_names)] for g in data.groups]
    mean, cov = _dense_conditional(design, data, beta_std, sigma, chols)
    S = 20_000
    v = np.tile(np.concatenate([[1.0], data.beta_ref - beta_std]), (S, 1))
    args = (data, v, np.full(S, sigma), [np.broadcast_to(L, (S, *L.shape)) for L in chols])
    # conditional means (BLUPs at fixed parameters) are exact
    means = bc.conditional_effects(data, v[:1], np.array([sigma]), [L[None] for L in chols])
    np.testing.assert_allclose(np.concatenate([m[0].ravel() for m in means]), mean, rtol=1e-9, atol=1e-10)
    rngs = [np.random.default_rng(s) for s in (1, 2)]
    draws = np.concatenate([u.reshape(S, -1) for u in bc.conditional_effects(*args, rngs)], axis=1)
    # 5 standard errors per entry: the sample mean and covariance of S exact Gaussian draws
    var = np.diag(cov)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 5 * np.sqrt(var / S))
    se_cov = np.sqrt((cov**2 + np.outer(var, var)) / S)
    np.testing.assert_array_less(np.abs(np.cov(draws, rowvar=False) - cov), 5 * se_cov)


def test_batched_means_agree_with_single_draw_algebra(nested_df):
    """Zero-noise draws from _collapsed.draw_random_effects equal the batched conditional means."""
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | school/cls)"), nested_df)
    data = bc.collapsed_data(design)
    beta_std, sigma, chols = np.array([0.5, 2.0]), 0.6, [np.array([[0.8]]), np.array([[1.1]])]
    r = design.y - fixed_scaling(design).standardise(design.X) @ beta_std

    class _Zero(np.random.Generator):
        def standard_normal(self, size=None, *args, **kwargs):
            return np.zeros(size)

    # data.factors carry sums only (no rows): the row-level algebra needs the factors of the rows
    outer, inner = (CollapsedFactor(g.index, g.Z, n_levels=g.n_levels, name=g.name) for g in data.groups)
    rows = NestedFactors(outer, inner, data.groups[1].parent_index)
    u1, u2 = draw_random_effects(_Zero(np.random.PCG64(0)), r, sigma, rows, tuple(chols))
    v = np.concatenate([[1.0], data.beta_ref - beta_std])[None]
    m1, m2 = bc.conditional_effects(data, v, np.array([sigma]), [c[None] for c in chols])
    np.testing.assert_allclose(m1[0], u1, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m2[0], u2, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ x + (1 | cls)",
        "y ~ x + (1 | school/cls)",  # inner levels sorted by outer level
        "y ~ x + (1 | school) + (1 | cls)",  # not sorted ("c10" before "c2"): the permuted path
        "y ~ x + (0 + x | school) + (0 + x | school:cls)",
    ],
)
def test_scalar_draws_equal_general_draws(nested_df, formula):
    """One term per factor: the element-wise draws equal the batched 1 x 1 algebra's, draw for draw.

    Same generators, same normals (same order and shape), so the draws agree to rounding; the
    conditional means (no generator) too. Varying sds and sigma across the S parameter sets.
    """
    design = hb.make_design(hb.parse_formula(formula), nested_df)
    data = bc.collapsed_data(design)
    rng = np.random.default_rng(7)
    S = 50
    v = np.column_stack([np.ones(S), rng.normal(size=(S, data.p))])
    sigma = rng.uniform(0.3, 2.0, S)
    chols = [rng.uniform(0.05, 3.0, (S, 1, 1)) for _ in data.groups]
    ells = [c[:, 0, 0] for c in chols]
    if "(1 | cls)" in formula and "school" in formula:
        assert data.factors.parent_segments[0] is not None
    for seeds in [None, (5, 6)]:
        gens = [None] * len(chols) if seeds is None else [np.random.default_rng(s) for s in seeds[: len(chols)]]
        fast = bc._scalar_conditional_effects(data, v, sigma, ells, gens)
        gens = [None] * len(chols) if seeds is None else [np.random.default_rng(s) for s in seeds[: len(chols)]]
        general = bc._general_conditional_effects(data, v, sigma, chols, gens)
        for a, b in zip(fast, general, strict=True):
            assert a.shape == b.shape == (S, b.shape[1], 1)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def _fake_posterior(design, chains=2, draws=7, seed=0):
    rng = np.random.default_rng(seed)
    data_vars = {
        "beta_std": (("chain", "draw", "coef"), rng.normal(size=(chains, draws, len(design.fixed_names)))),
        "sigma": (("chain", "draw"), rng.uniform(0.5, 1.5, size=(chains, draws))),
    }
    for name in (g.name for g in design.groups):
        data_vars[f"sd_{name}"] = (("chain", "draw"), rng.uniform(0.2, 1.0, (chains, draws)))  # (1 | g): scalar sd
    return xr.Dataset(data_vars, coords={"chain": np.arange(chains), "draw": np.arange(draws)})


def test_random_effect_draws_reproducible_thinned_and_chunk_free(nested_df, monkeypatch):
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | school/cls)"), nested_df)
    post = _fake_posterior(design)
    a = bc.random_effect_draws(design, post, random_seed=3)
    b = bc.random_effect_draws(design, post, random_seed=3)
    assert a["u_school:cls"].dims == ("chain", "draw", "school:cls", "school:cls__coef")
    xr.testing.assert_equal(a, b)
    monkeypatch.setattr(bc, "_CHUNK_FLOATS", 1)  # one draw per chunk: same numbers
    monkeypatch.setattr(bc, "_SCALAR_CHUNK_FLOATS", 1)  # (the element-wise path for one term)
    xr.testing.assert_equal(a, bc.random_effect_draws(design, post, random_seed=3))
    thin = bc.random_effect_draws(design, post, thin=3, random_seed=3)
    assert list(thin["draw"].values) == [0, 3, 6]
    assert not np.allclose(a["u_school"].values, bc.random_effect_draws(design, post, random_seed=4)["u_school"].values)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | school/cls)", "y ~ x + (x | school)"])
def test_random_effect_draws_do_not_depend_on_the_threads(nested_df, monkeypatch, formula):
    """Chunks drawn in 1 thread or in 3 (normals drawn in order by the calling thread): the same draws."""
    design = hb.make_design(hb.parse_formula(formula), nested_df)
    post = _fake_posterior(design, chains=3, draws=11)
    if "x |" in formula:  # (x | school): a 2 x 2 factor per draw (diagonal here; no LKJ draws in the fake)
        post["sd_school"] = post["sd_school"].expand_dims(school__coef=["Intercept", "x"], axis=-1).copy()
    monkeypatch.setattr(bc, "_CHUNK_FLOATS", 50)  # many chunks
    monkeypatch.setattr(bc, "_SCALAR_CHUNK_FLOATS", 50)
    monkeypatch.setattr(bc, "_draw_workers", lambda: 1)
    one = bc.random_effect_draws(design, post, random_seed=3)
    monkeypatch.setattr(bc, "_draw_workers", lambda: 3)
    threaded = bc.random_effect_draws(design, post, random_seed=3)
    xr.testing.assert_equal(one, threaded)


def test_normals_drawn_beforehand_are_handed_out_in_order_and_all_used():
    drawn = bc._Drawn(np.random.default_rng(1).standard_normal(10))
    rng = np.random.default_rng(1)
    np.testing.assert_array_equal(drawn.standard_normal((2, 3)), rng.standard_normal((2, 3)))
    assert not drawn.used_up()
    np.testing.assert_array_equal(drawn.standard_normal((4,)), rng.standard_normal(4))
    assert drawn.used_up()
    with pytest.raises(RuntimeError, match="more normals"):
        drawn.standard_normal((1,))
    with pytest.raises(RuntimeError, match="fewer normals"):
        bc._draw_all(lambda sl, sources: None, slice(0, 1), [bc._Drawn(np.zeros(3))])


@pytest.fixture(scope="module")
def pooled_df():
    """60 schools x 5-7 classes of 2-4 rows: 300+ classes of 3 sizes (their levels pool)."""
    rng = np.random.default_rng(8)
    school = np.repeat(np.arange(60), rng.integers(5, 8, size=60))
    cls = np.repeat(np.arange(school.size), rng.integers(2, 5, size=school.size))
    x = rng.normal(size=cls.size)
    y = 1.0 + 0.5 * x + rng.normal(size=60)[school[cls]] + rng.normal(size=school.size)[cls] + rng.normal(size=cls.size)
    return pd.DataFrame({"y": y, "x": x, "school": school[cls], "cls": cls})


@pytest.mark.parametrize("formula", ["y ~ x + (1 | school/cls)", "y ~ x + (1 | cls)"])
def test_pooled_levels_give_the_per_level_model(pooled_df, formula, monkeypatch):
    """Random intercepts of levels of few sizes use the pooled statistics: same log density and gradient.

    Against the per-level model (pooling switched off) and, for the log density, the dense
    multivariate normal; with shared statistics the pooled sums are the shared variables.
    """
    design = hb.make_design(hb.parse_formula(formula), pooled_df)
    data = bc.collapsed_data(design)
    assert data.classes is not None and data.classes.n_classes == 3
    pooled = bc.build_collapsed_model(design)
    shared = bc.build_collapsed_model(design, shared_statistics=True)
    monkeypatch.setattr(bc, "level_classes", lambda *a, **k: None)
    assert bc.collapsed_data(design).classes is None
    per_level = bc.build_collapsed_model(design)
    point = {"beta_std": np.array([0.3, -0.8]), "sigma_log__": np.log(0.9)}
    point.update({f"sd_{g.name}_log__": np.log(0.4 + 0.5 * k) for k, g in enumerate(design.groups)})
    got = [m.compile_logp(vars=m.potentials, jacobian=False)(point) for m in (pooled, per_level, shared)]
    assert got[0] == pytest.approx(got[1], rel=1e-11) and got[2] == got[0]
    grads = [m.compile_dlogp()(point) for m in (pooled, per_level)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-9, atol=1e-9)
    beta = fixed_scaling(design).A @ point["beta_std"]
    sds = {g.name: [0.4 + 0.5 * k] for k, g in enumerate(design.groups)}
    assert got[0] == pytest.approx(_dense_logpdf(design, beta, sds, 0.9), rel=1e-10)
    names = {v.name for v in shared.data_vars} | {v.name for v in _shared_variables(shared)}
    pooled_names = {"collapsed_pooled_S", "collapsed_pooled_P"} if "/" in formula else {"collapsed_pooled_S"}
    assert pooled_names <= names and set(bc.response_statistics(data)) <= names


def _shared_variables(model):
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor.sharedvar import TensorSharedVariable

    return [v for v in ancestors(model.potentials) if isinstance(v, TensorSharedVariable)]


# --------------------------------------------------------------------------------------------
# Method choice
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "family", "expected", "reason"),
    [
        ("y ~ x + (1 + x | school)", "gaussian", "collapsed", "school"),
        ("y ~ x + (1 | school/cls)", "gaussian", "collapsed", "school:cls within school"),
        ("y ~ x + (1 | school) + (1 | cls)", "gaussian", "collapsed", "cls within school"),
        ("y ~ x + (1 | school) + (1 | g2)", "gaussian", "collapsed", "crossed"),
        ("y ~ x", "gaussian", "full", "no random effects"),
        ("b ~ x + (1 | school)", "bernoulli", "full", "bernoulli family"),
        ("y ~ x + (1 | school/cls/g3)", "gaussian", "collapsed", "school, school:cls, school:cls:g3"),
    ],
)
def test_auto_method_choice(nested_df, formula, family, expected, reason):
    df = nested_df.assign(
        b=(nested_df["y"] > 2).astype(int),
        g2=np.arange(len(nested_df)) % 3,
        g3=np.arange(len(nested_df)) % 2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.NestingWarning)  # g2 is crossed with school on purpose
        design = hb.make_design(hb.parse_formula(formula, family=family), df)
    chosen, note = bc.choose_method(design, "auto")
    assert chosen == expected
    assert reason in note
    assert bc.choose_method(design, "full")[0] == "full"
    if expected == "full":
        with pytest.raises(hb.SpecError, match="method='collapsed' cannot fit"):
            bc.choose_method(design, "collapsed")


def test_known_sigma_and_bad_method_are_refused():
    df = hb.datasets.load("eight_schools")
    design = hb.make_design(hb.group_means(y="y", sigma="sigma", group="school"), df)
    assert bc.choose_method(design, "auto")[0] == "full"
    assert "known" in bc.collapse_problem(design)
    with pytest.raises(hb.SpecError, match="allowed: auto, collapsed, full"):
        bc.choose_method(design, "fast")
    with pytest.raises(hb.SpecError, match="cannot fit"):
        hb.fit(hb.group_means(y="y", sigma="sigma", group="school"), df, method="collapsed")


# --------------------------------------------------------------------------------------------
# Slow: collapsed against full posteriors
# --------------------------------------------------------------------------------------------


def _scalar_draws(post: xr.Dataset, names: list[str]) -> dict[str, xr.DataArray]:
    out = {}
    for name in names:
        da = post[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if not extra:
            out[name] = da
            continue
        flat = da.stack(__i__=extra)
        for i in range(flat.sizes["__i__"]):
            one = flat.isel(__i__=i)
            if float(one.std()) > 0:  # drop the unit diagonal of correlation matrices
                out[f"{name}[{flat['__i__'].values[i]}]"] = one.drop_vars(["__i__", *extra], errors="ignore")
    return out


def _compare_hyper(full, coll, names, z=4.0):
    """Posterior means agree within z combined MCSEs: |m_a - m_b| <= z sqrt(mcse_a^2 + mcse_b^2)."""
    a, b = _scalar_draws(full.posterior, names), _scalar_draws(coll.posterior, names)
    assert a.keys() == b.keys()
    worst = 0.0
    for key in a:
        se = np.hypot(float(az.mcse(a[key])), float(az.mcse(b[key])))
        dist = abs(float(a[key].mean()) - float(b[key].mean())) / se
        worst = max(worst, dist)
        assert dist <= z, (key, dist)
    return worst


def _compare_effects(full, coll, name, z=5.0):
    """Per level and term: means within z combined MCSEs of the mean, sds within z combined MCSEs of the sd.

    z = 5 for thousands of levels: a two-sided 5-sigma band has false-alarm probability 5.7e-7 per
    comparison, so about 2e-3 over the ~3600 comparisons of the achievement model (Bonferroni).
    """
    ua, ub = full.posterior[name], coll.posterior[name]
    for method, stat in (("mean", "mean"), ("sd", "std")):
        diff = np.abs(getattr(ua, stat)(("chain", "draw")) - getattr(ub, stat)(("chain", "draw")))
        se = np.hypot(az.mcse(ua, method=method), az.mcse(ub, method=method))
        ratio = (diff / se).values
        assert np.all(ratio <= z), (name, method, float(ratio.max()))


@pytest.mark.slow
def test_collapsed_matches_full_achievement(achievement_fit, achievement_collapsed_fit):
    full, coll = achievement_fit, achievement_collapsed_fit
    assert full.settings["method"] == "full" and coll.settings["method"] == "collapsed"
    assert int(coll.idata["sample_stats"]["diverging"].sum()) == 0
    _compare_hyper(full, coll, ["beta", "sd_school", "sd_child", "sigma"])
    for name in ("u_school", "u_child"):
        assert coll.posterior[name].dims == full.posterior[name].dims
        _compare_effects(full, coll, name)
    # the collapsed sampler removes the school-effect / school-predictor confounding
    ess_full = float(az.ess(full.posterior["beta"].sel(coef="size")))
    ess_coll = float(az.ess(coll.posterior["beta"].sel(coef="size")))
    assert ess_coll > 2 * ess_full and ess_coll > 2000


@pytest.mark.slow
def test_collapsed_matches_full_sleepstudy(sleepstudy_fit, sleepstudy_collapsed_fit):
    full, coll = sleepstudy_fit, sleepstudy_collapsed_fit
    assert int(coll.idata["sample_stats"]["diverging"].sum()) == 0
    _compare_hyper(full, coll, ["beta", "sd_Subject", "corr_Subject", "sigma"])
    _compare_effects(full, coll, "u_Subject")
    assert coll.idata["observed_data"]["y"].shape == (180,)


@pytest.mark.slow
def test_store_random_effects_false(sleepstudy_collapsed_fit):
    idata = xr.DataTree.from_dict({"posterior": sleepstudy_collapsed_fit.posterior.drop_vars("u_Subject")})
    out = bc.add_random_effects(idata, sleepstudy_collapsed_fit.design, random_seed=1, store_random_effects=False)
    assert "u_Subject" not in out["posterior"].to_dataset()
    again = bc.add_random_effects(idata.copy(), sleepstudy_collapsed_fit.design, random_seed=1)
    # reproducible from the fit's seed
    np.testing.assert_array_equal(
        again["posterior"]["u_Subject"].values, sleepstudy_collapsed_fit.posterior["u_Subject"].values
    )
