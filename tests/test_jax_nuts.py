"""numpyro through hierbayes.inference.jax_nuts: data as arguments, compiled programs reused (issue 11)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest

import hierbayes as hb
from hierbayes.inference import jax_nuts

pytestmark = pytest.mark.filterwarnings("ignore::hierbayes.ConvergenceWarning")

SETTINGS = {"draws": 30, "tune": 30, "chains": 2, "progressbar": False, "sampler": "numpyro", "method": "full"}


def _data(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(6), 5)
    return pd.DataFrame({"g": g, "x": rng.normal(size=30), "y": rng.normal(size=30) + 0.5 * g})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "hierbayes"


def test_new_data_of_the_same_shapes_reuses_the_compiled_program(cache):
    first = hb.fit("y ~ x + (1 | g)", _data(0), random_seed=3, **SETTINGS)
    compiled = dict(jax_nuts._COMPILED)
    second = hb.fit("y ~ x + (1 | g)", _data(1), random_seed=3, **SETTINGS)
    assert jax_nuts._COMPILED == compiled, "the second fit compiled a new program"
    # the data are arguments, not constants baked into the program: other data, other draws
    assert not np.array_equal(first.posterior["beta"].values, second.posterior["beta"].values)
    assert any((cache / "programs").iterdir())


def test_result_layout(cache):
    fit = hb.fit("y ~ x + (1 | g)", _data(0), random_seed=3, **SETTINGS)
    stats = fit.idata["sample_stats"]
    assert {"diverging", "energy", "lp", "tree_depth", "n_steps", "reached_max_treedepth"} <= set(stats.data_vars)
    assert stats["diverging"].dtype == bool and stats.sizes == {"chain": 2, "draw": 30}
    assert fit.posterior.sizes["chain"] == 2 and fit.posterior.sizes["draw"] == 30
    assert "observed_data" in fit.idata.children
    # lp is the log density (not its negative, which PyMC's numpyro route stored): the energy is
    # the potential -lp plus a kinetic energy >= 0
    assert (stats["energy"] + stats["lp"] >= -1e-9).all()


@pytest.mark.parametrize(
    ("value", "lifted"),
    [
        (np.array(140.82), True),  # a prior scale set from the data
        (np.array(0.5), False),  # an exponent
        (np.array(np.inf), False),
        (np.array(3), False),  # an integer scalar: a shape
        (np.arange(4), False),  # a short integer vector: a shape
        (np.arange(40), True),  # group indices
        (np.ones(2), True),  # a float vector
        (np.zeros(0), False),  # an empty shape (a reshape to a scalar) must stay a constant
    ],
)
def test_which_constants_are_data(value, lifted):
    assert jax_nuts._is_data(value) is lifted


def test_cache_dir_honours_xdg_and_a_user_setting_is_kept(tmp_path, monkeypatch):
    import jax

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jax_nuts.cache_dir() == tmp_path / "hierbayes"
    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
        jax_nuts.enable_compilation_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_small_integer_constants_are_part_of_the_key():
    """Group indices of 16 rows or fewer stay constants in the program, so they must key it.

    (Printed graphs abbreviate long constants; two data sets whose indices differ must not share
    a program that has the first one's indices in it.)
    """
    from hierbayes.design import make_design
    from hierbayes.inference.build import build_model
    from hierbayes.spec.formula import parse_formula

    spec = parse_formula("y ~ x + (1 | g)")
    base = pd.DataFrame({"g": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], "x": np.linspace(-1, 1, 12)})
    base["y"] = np.arange(12.0)
    # rows 5 and 6 swapped: the same abbreviated print, "[0 0 0 1 1 ... 2 2 3 3 3]"
    other = base.assign(g=[0, 0, 0, 1, 1, 2, 1, 2, 2, 3, 3, 3])
    first, *_ = jax_nuts._compile(build_model(make_design(spec, base)), draws=10, tune=10, target_accept=0.8)
    same, *_ = jax_nuts._compile(build_model(make_design(spec, base)), draws=10, tune=10, target_accept=0.8)
    second, *_ = jax_nuts._compile(build_model(make_design(spec, other)), draws=10, tune=10, target_accept=0.8)
    assert same is first
    assert second is not first


def test_chains_in_threads_give_the_draws_of_one_thread(cache):
    """Each chain's draws depend on its key and start only, not on how many chains run at once."""
    one = hb.fit("y ~ x + (1 | g)", _data(0), random_seed=5, cores=1, **SETTINGS)
    two = hb.fit("y ~ x + (1 | g)", _data(0), random_seed=5, cores=2, **SETTINGS)
    for name in ("beta", "sd_g", "u_g"):
        np.testing.assert_array_equal(one.posterior[name].values, two.posterior[name].values)
    # and the chains differ from each other
    assert not np.array_equal(one.posterior["beta"].values[0], one.posterior["beta"].values[1])


def test_draws_not_a_multiple_of_the_chunk(cache):
    """Tuning and draws run in chunks (for the progress bar); the kept draws are exactly ``draws``."""
    length, count = jax_nuts._chunks(73)
    assert length * count >= 73 and length * (count - 1) < 73
    assert jax_nuts._chunks(1000) == (50, 20)
    settings = {**SETTINGS, "draws": 73, "tune": 61}
    fit = hb.fit("y ~ x + (1 | g)", _data(0), random_seed=2, **settings)
    assert fit.posterior.sizes["draw"] == 73
    assert fit.idata["sample_stats"].sizes["draw"] == 73


def test_progress_bar_counts_every_step(cache, capsys):
    """``progressbar=True`` shows one bar for all chains (tuning and draws) with the divergences."""
    settings = {**SETTINGS, "progressbar": "combined"}
    hb.fit("y ~ x + (1 | g)", _data(0), random_seed=2, **settings)
    err = capsys.readouterr().err
    assert "Sampling (numpyro)" in err
    assert "120/120 steps" in err  # 2 chains x (30 tuning + 30 draws)
    assert "divergences" in err


def test_jax_log_density_equals_pymc_with_one_softplus():
    """The JAX translation (stable softplus, one softplus for Bernoulli) computes PyMC's log density."""
    import jax
    from pytensor.compile import mode
    from pytensor.graph.fg import FunctionGraph
    from pytensor.scalar.math import Softplus
    from pytensor.tensor.elemwise import Elemwise

    from hierbayes.design import make_design
    from hierbayes.inference.build import build_model
    from hierbayes.spec.formula import parse_formula

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(8), 6)
    eta = 8.0 * rng.normal(size=g.size)  # large |eta| too: both tails of softplus
    df = pd.DataFrame({"g": g, "x": eta, "y": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)})
    model = build_model(make_design(parse_formula("y ~ x + (1 | g)", family="bernoulli"), df))
    values, data_vars, data, logp_out, _, _ = jax_nuts._lift(model)
    fgraph = FunctionGraph(inputs=[*values, *data_vars], outputs=logp_out, clone=True)
    mode.JAX.optimizer.rewrite(fgraph)
    jax_nuts._one_softplus_bernoulli(fgraph)
    softplus = [n for n in fgraph.apply_nodes if isinstance(n.op, Elemwise) and isinstance(n.op.scalar_op, Softplus)]
    assert len(softplus) == 1
    logp_jax = jax_nuts._jaxify([*values, *data_vars], logp_out)
    reference = model.compile_logp()
    point = model.initial_point()
    for k, v in point.items():
        point[k] = v + rng.uniform(-2, 2, size=np.shape(v))
    expected = reference(point)
    got = float(logp_jax(*[jax.numpy.asarray(point[v.name]) for v in values], *data)[0])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)


# --------------------------------------------------------------------------------------
# Partial centring of rescaled effects (issue 11: the Guatemalan GLMM's mother-level funnel)
# --------------------------------------------------------------------------------------


def _funnel() -> pm.Model:
    """A prior-only funnel: ``sd ~ HalfNormal(1)``, ``z ~ N(0, 1)`` (40 of them), nothing observed."""
    with pm.Model() as model:
        pm.HalfNormal("sd", 1.0)
        pm.Normal("z", 0.0, 1.0, shape=40)
    return model


def test_partially_centred_coordinates_sample_the_model_exactly(cache, monkeypatch):
    # exponents a = 0.6 for every effect (the pilot's choice overridden): NUTS moves z * sd**0.6,
    # and the log Jacobian must give back z ~ N(0, 1) independent of sd ~ HalfNormal(1)
    monkeypatch.setattr(jax_nuts, "_partial_centring", lambda variance: np.full_like(variance, 0.6))
    idata = jax_nuts.sample_numpyro(
        _funnel(), draws=1500, tune=400, chains=2, random_seed=5, target_accept=0.95, rescale={"z": "sd"}
    )
    post = idata["posterior"]
    assert post.attrs["partially_centred"] == "z" and post.attrs["pilot_steps"] == jax_nuts.PILOT
    sd, z = post["sd"].values, post["z"].values
    checks = {
        "E[sd]": (sd, np.sqrt(2 / np.pi)),
        "E[log sd]": (np.log(sd), -0.6351814),  # E log|N(0,1)| = -(gamma + log 2) / 2
        "E[z]": (z[..., 0], 0.0),
        "E[z^2]": (z[..., 1] ** 2, 1.0),
        "E[z^2 sd]": (z[..., 2] ** 2 * sd, np.sqrt(2 / np.pi)),  # independence of z and sd
    }
    for label, (draws, truth) in checks.items():
        mcse = float(az.mcse(draws))
        assert abs(float(draws.mean()) - truth) < 4 * mcse, (label, float(draws.mean()), truth, mcse)


def test_partial_centring_exponents_from_pilot_variances():
    variance = np.array([1.0, 1.3, 0.64, 0.25, 0.0])
    np.testing.assert_allclose(jax_nuts._partial_centring(variance), [0.0, 0.0, 0.2, 0.5, 1.0])


def test_rescaled_pairs_need_an_untransformed_effect_and_a_log_scaled_scalar_sd():
    with pm.Model() as model:
        sd = pm.HalfNormal("sd", 1.0)
        pm.HalfNormal("sds", 1.0, shape=2)
        pm.Normal("z", 0.0, 1.0, shape=3)
        pm.HalfNormal("h", sd, shape=3)
    rescale = {"z": "sd", "h": "sd", "missing": "sd"}
    assert jax_nuts._rescaled_values(model, rescale) == [(2, 0)]
    assert jax_nuts._rescaled_values(model, {"z": "sds"}) == []
    point = [np.zeros(()), np.zeros(2), np.zeros(3), np.zeros(3)]
    np.testing.assert_array_equal(jax_nuts._scale_index(point, [(2, 0)]), [0, 1, 2, 0, 0, 0, 6, 7, 8])


def _small_groups(seed: int = 11) -> pd.DataFrame:
    """Bernoulli, 200 groups of 1-3 rows (sd 1.5): the Guatemalan mothers' regime."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, size=200)
    g = np.repeat(np.arange(200), sizes)
    x = rng.normal(size=g.size)
    eta = -0.3 + 0.8 * x + 1.5 * rng.normal(size=200)[g]
    return pd.DataFrame({"g": g, "x": x, "y": (rng.uniform(size=g.size) < 1 / (1 + np.exp(-eta))).astype(int)})


@pytest.mark.slow
def test_partially_centred_glmm_agrees_with_the_non_centred_one(cache, monkeypatch):
    data = _small_groups()
    kw = {"family": "bernoulli", "draws": 1000, "tune": 500, "chains": 4, "random_seed": 2, "progressbar": False}
    rescaled = hb.fit("y ~ x + (1 | g)", data, sampler="numpyro", **kw)
    assert rescaled.settings["partially_centred"] == ["z_g"] and rescaled.settings["pilot_steps"] == jax_nuts.PILOT
    monkeypatch.setattr("hierbayes.inference.fit.rescaled_effects", lambda design: {})
    plain = hb.fit("y ~ x + (1 | g)", data, sampler="numpyro", **kw)
    assert "partially_centred" not in plain.settings
    for name in ("beta", "sd_g", "u_g"):
        a, b = rescaled.posterior[name], plain.posterior[name]
        se = np.sqrt(np.asarray(az.mcse(a)) ** 2 + np.asarray(az.mcse(b)) ** 2)
        z = np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values) / se
        if name == "u_g":  # 200 levels: a few beyond 3 combined MCSE by chance, none beyond 5
            assert np.mean(z > 3) < 0.03 and z.max() < 5, (np.mean(z > 3), z.max())
        else:
            assert np.all(z < 4), (name, z)


def test_an_unusable_pilot_estimate_leaves_the_effects_non_centred(cache, monkeypatch):
    monkeypatch.setattr(jax_nuts, "_partial_centring", lambda variance: np.full_like(variance, np.nan))
    idata = jax_nuts.sample_numpyro(
        _funnel(), draws=200, tune=300, chains=2, random_seed=5, target_accept=0.95, rescale={"z": "sd"}
    )
    z = idata["posterior"]["z"].values
    assert np.isfinite(z).all() and abs(float(z.mean())) < 0.2 and 0.8 < float(z.var()) < 1.2


def test_short_tuning_runs_no_pilot_and_no_rescaling(cache):
    idata = jax_nuts.sample_numpyro(
        _funnel(), draws=20, tune=30, chains=1, random_seed=5, target_accept=0.9, rescale={"z": "sd"}
    )
    assert "partially_centred" not in idata["posterior"].attrs and "pilot_steps" not in idata["posterior"].attrs
    compiled, *_ = jax_nuts._compile(_funnel(), draws=20, tune=30, target_accept=0.9, rescale={"z": "sd"})
    assert compiled.rescaled == []


def test_a_jittered_start_with_no_density_is_drawn_again(cache):
    """PyMC's _init_jitter: a start where the log density is -inf is drawn again (here x > 0.3)."""
    import pytensor.tensor as pt

    with pm.Model() as model:
        x = pm.Normal("x", 0.0, 1.0)
        pm.Potential("cut", pt.switch(x > 0.3, -np.inf, 0.0))
    compiled, data, _ = jax_nuts._compile(model, draws=10, tune=10, target_accept=0.8)
    args = tuple(data)
    base = [np.asarray(v) for v in compiled.get("start", args)(args)]
    compiled.point_shapes[:] = [np.shape(v) for v in base]
    root_key = np.zeros(2, dtype=np.uint32)
    init_p, _ = jax_nuts._load_programs(compiled, root_key, base, args)
    seeds = list(range(8))
    states = jax_nuts._jittered(init_p, root_key, base, args, seeds)
    first = [float(base[0] + np.random.default_rng(s).uniform(-1, 1)) for s in seeds]
    redrawn = [f > 0.3 for f in first]
    assert any(redrawn) and not all(redrawn)
    for state, start, again in zip(states, first, redrawn, strict=True):
        assert np.isfinite(float(state.potential_energy))
        z = float(np.asarray(state.z)[0])
        assert z <= 0.3 and (again or z == start)
    idata = jax_nuts.sample_numpyro(model, draws=20, tune=20, chains=4, random_seed=1, target_accept=0.8)
    assert np.isfinite(idata["sample_stats"]["lp"].values).all() and (idata["posterior"]["x"].values <= 0.3).all()


def test_without_serialisation_the_programs_compile_in_process_with_the_same_draws(cache, monkeypatch):
    """No ``flatbuffers`` (``jax.export`` cannot serialise): compiled from the Python functions, same draws."""
    import jax.export

    kw = {"draws": 50, "tune": 50, "chains": 2, "random_seed": 5, "target_accept": 0.9}
    monkeypatch.setattr(jax_nuts, "_COMPILED", {})
    exported = jax_nuts.sample_numpyro(_funnel(), **kw)

    def no_flatbuffers(*args, **kwargs):
        raise ImportError("flatbuffers is not installed")

    monkeypatch.setattr(jax_nuts, "_COMPILED", {})
    monkeypatch.setattr(jax.export, "export", no_flatbuffers)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parent / "empty"))  # nothing exported to read back
    local = jax_nuts.sample_numpyro(_funnel(), **kw)
    assert not (cache.parent / "empty" / "hierbayes" / "programs").exists()
    np.testing.assert_array_equal(exported["posterior"]["z"].values, local["posterior"]["z"].values)
