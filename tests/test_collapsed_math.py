"""Exactness of the collapsed (random effects integrated out) Gaussian likelihood.

Every quantity of :mod:`hierbayes.inference.collapsed.likelihood` is checked against a dense reference on small
data: the log density against ``scipy.stats.multivariate_normal`` with ``V`` built
explicitly, gradients against central finite differences, and conditional draws of the
random effects against the exact Gaussian conditional (mean and covariance, with Monte Carlo
tolerances derived from the number of draws).

Graphs are compiled in ``FAST_COMPILE`` mode (Python implementations, no JIT) so that the
file stays fast with a cold compilation cache; one test compiles the nested intercept model
with the default backend.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.stats import multivariate_normal

from hierbayes.exceptions import DataError, SpecError
from hierbayes.inference.collapsed.likelihood import (
    CollapsedFactor,
    NestedFactors,
    _nested_general_pt,
    _nested_scalar_pt,
    draw_random_effects,
    level_classes,
    marginal_loglik,
    marginal_loglik_pooled,
    pooled_statistics,
)

FAST = "FAST_COMPILE"
N_DRAWS = 20_000


# ----------------------------------------------------------------------------------------
# Helpers: random structures and dense references
# ----------------------------------------------------------------------------------------


def _random_chol(rng: np.random.Generator, q: int) -> np.ndarray:
    """Lower-triangular factor with positive diagonal and clearly non-zero correlations."""
    L = np.tril(rng.normal(scale=0.6, size=(q, q)), k=-1)
    L[np.diag_indices(q)] = rng.uniform(0.5, 1.5, size=q)
    return L


def _terms(rng: np.random.Generator, n: int, q: int) -> np.ndarray:
    """Intercept plus ``q - 1`` random covariates."""
    return np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])


def _single_factor(rng: np.random.Generator, q: int) -> CollapsedFactor:
    """Unbalanced groups: singletons, one empty level (5) and rows in random order."""
    sizes = np.array([1, 1, 2, 3, 7, 0, 4, 1])
    index = rng.permutation(np.repeat(np.arange(sizes.size), sizes))
    return CollapsedFactor(index, _terms(rng, index.size, q), n_levels=sizes.size, name="g")


def _nested_factors(rng: np.random.Generator, q1: int, q2: int) -> NestedFactors:
    """4 outer levels holding 1, 2, 3, 2 inner levels; inner sizes 1..5; shuffled rows."""
    parent = np.repeat(np.arange(4), [1, 2, 3, 2])
    sizes = np.array([1, 3, 1, 4, 2, 1, 5, 2])
    child = rng.permutation(np.repeat(np.arange(parent.size), sizes))
    n = child.size
    outer = CollapsedFactor(parent[child], _terms(rng, n, q1), name="school")
    inner = CollapsedFactor(child, _terms(rng, n, q2), name="child")
    return NestedFactors(outer, inner, parent)


def _dense_design(f: CollapsedFactor) -> np.ndarray:
    """Dense Z with columns ordered (level, term): column ``j * q + a``."""
    n, q = f.Z.shape
    Z = np.zeros((n, f.n_levels * q))
    for a in range(q):
        Z[np.arange(n), f.index * q + a] = f.Z[:, a]
    return Z


def _dense_structure(factors, chols) -> tuple[np.ndarray, np.ndarray]:
    """Dense (Z, prior covariance of u) for one factor or nested factors."""
    if isinstance(factors, CollapsedFactor):
        factors, chols = [factors], [chols]
    else:
        factors, chols = [factors.outer, factors.inner], list(chols)
    Z = np.hstack([_dense_design(f) for f in factors])
    chols = [np.asarray(L, dtype=np.float64) for L in chols]
    blocks = [np.kron(np.eye(f.n_levels), L @ L.T) for f, L in zip(factors, chols, strict=True)]
    Omega = np.zeros((Z.shape[1], Z.shape[1]))
    start = 0
    for b in blocks:
        Omega[start : start + b.shape[0], start : start + b.shape[0]] = b
        start += b.shape[0]
    return Z, Omega


def _dense_logpdf(r, sigma, factors, chols) -> float:
    Z, Omega = _dense_structure(factors, chols)
    V = Z @ Omega @ Z.T + sigma**2 * np.eye(r.size)
    return float(multivariate_normal(np.zeros(r.size), V).logpdf(r))


def _dense_conditional(r, sigma, factors, chols) -> tuple[np.ndarray, np.ndarray]:
    """Exact p(u | r): Cov = (Z'Z / s^2 + Omega^-1)^-1, mean = Cov Z'r / s^2."""
    Z, Omega = _dense_structure(factors, chols)
    cov = np.linalg.inv(Z.T @ Z / sigma**2 + np.linalg.inv(Omega))
    return cov @ Z.T @ r / sigma**2, cov


def _compile(factors, chol_shapes, *, grad: bool = False, mode=FAST):
    """Compile ``r, sigma, *chols -> logp [, d/dr, d/dsigma, d/dchol...]``."""
    r, sigma = pt.vector("r"), pt.scalar("sigma")
    chols = [pt.tensor(f"L{i}", shape=s, dtype="float64") for i, s in enumerate(chol_shapes)]
    chol_arg = chols[0] if isinstance(factors, CollapsedFactor) else tuple(chols)
    logp = marginal_loglik(r, sigma, factors, chol_arg)
    outs = [logp, *pt.grad(logp, [r, sigma, *chols])] if grad else logp
    return pytensor.function([r, sigma, *chols], outs, mode=mode)


# ----------------------------------------------------------------------------------------
# Log density: exact against the dense multivariate normal
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [1, 2, 3])
def test_single_factor_logp_matches_dense(q):
    rng = np.random.default_rng(10 + q)
    f = _single_factor(rng, q)
    fn = _compile(f, [(q, q)])
    for _ in range(3):
        r = rng.normal(scale=2.0, size=f.n_rows)
        sigma, L = rng.uniform(0.3, 1.5), _random_chol(rng, q)
        assert fn(r, sigma, L) == pytest.approx(_dense_logpdf(r, sigma, f, L), abs=1e-8)


@pytest.mark.parametrize(("q1", "q2"), [(1, 1), (1, 2), (2, 2), (2, 1)])
def test_nested_logp_matches_dense(q1, q2):
    rng = np.random.default_rng(20 + 3 * q1 + q2)
    nf = _nested_factors(rng, q1, q2)
    fn = _compile(nf, [(q1, q1), (q2, q2)])
    for _ in range(3):
        r = rng.normal(scale=2.0, size=nf.n_rows)
        sigma, L1, L2 = rng.uniform(0.3, 1.5), _random_chol(rng, q1), _random_chol(rng, q2)
        expected = _dense_logpdf(r, sigma, nf, (L1, L2))
        assert fn(r, sigma, L1, L2) == pytest.approx(expected, abs=1e-8)


def test_covariance_factor_forms_agree():
    """Scalar sd, (q,) sds and a (q, q) factor describe the same covariance."""
    rng = np.random.default_rng(3)
    f1, f2 = _single_factor(rng, 1), _single_factor(rng, 2)
    r1, r2 = rng.normal(size=f1.n_rows), rng.normal(size=f2.n_rows)
    ref1 = _dense_logpdf(r1, 0.7, f1, np.array([[1.3]]))
    for shape, value in [((), 1.3), ((1,), [1.3]), ((1, 1), [[1.3]])]:
        assert _compile(f1, [shape])(r1, 0.7, value) == pytest.approx(ref1, abs=1e-8)
    sds = np.array([0.8, 1.7])
    ref2 = _dense_logpdf(r2, 0.9, f2, np.diag(sds))
    assert _compile(f2, [(2,)])(r2, 0.9, sds) == pytest.approx(ref2, abs=1e-8)

    nf = _nested_factors(rng, 1, 1)
    r = rng.normal(size=nf.n_rows)
    ref = _dense_logpdf(r, 0.6, nf, (np.array([[0.4]]), np.array([[1.1]])))
    assert _compile(nf, [(), ()])(r, 0.6, 0.4, 1.1) == pytest.approx(ref, abs=1e-8)


def test_any_square_root_of_omega_gives_the_same_density():
    """Only L L' enters: an orthogonally rotated (non-triangular) factor gives the same value."""
    rng = np.random.default_rng(4)
    f = _single_factor(rng, 2)
    r, L = rng.normal(size=f.n_rows), _random_chol(rng, 2)
    c, s = np.cos(0.7), np.sin(0.7)
    L_rot = L @ np.array([[c, -s], [s, c]])
    fn = _compile(f, [(2, 2)])
    assert fn(r, 0.8, L_rot) == pytest.approx(fn(r, 0.8, L), abs=1e-10)


def test_zero_variance_component_is_allowed():
    """A singular factor (zero sd) is the model without that effect: no NaN, exact value."""
    rng = np.random.default_rng(5)
    nf = _nested_factors(rng, 1, 1)
    r = rng.normal(size=nf.n_rows)
    fn = _compile(nf, [(), ()])
    expected = float(multivariate_normal(np.zeros(r.size), 0.8**2 * np.eye(r.size)).logpdf(r))
    assert fn(r, 0.8, 0.0, 0.0) == pytest.approx(expected, abs=1e-8)


def test_default_backend_nested_intercepts():
    """The common case compiles with the default backend (logp and gradient)."""
    rng = np.random.default_rng(6)
    nf = _nested_factors(rng, 1, 1)
    r = rng.normal(size=nf.n_rows)
    args = (r, 0.9, np.array(0.7), np.array(1.2))
    default = _compile(nf, [(), ()], grad=True, mode=None)(*args)
    python = _compile(nf, [(), ()], grad=True)(*args)
    assert default[0] == pytest.approx(_dense_logpdf(r, 0.9, nf, ([[0.7]], [[1.2]])), abs=1e-8)
    for got, want in zip(default, python, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def _scalar_nested_cases(rng: np.random.Generator) -> list[NestedFactors]:
    """q1 = q2 = 1: intercepts, a covariate slope in each factor, and an inner level without rows."""
    nf = _nested_factors(rng, 1, 1)
    n = nf.n_rows
    slopes = NestedFactors(
        CollapsedFactor(nf.outer.index, rng.normal(size=n), name="school"),
        CollapsedFactor(nf.inner.index, rng.normal(size=n), name="child"),
        nf.parent,
    )
    parent = np.append(nf.parent, 2)  # inner level 8 (in outer level 2) has no rows: a_j = c_j = 0
    empty = NestedFactors(nf.outer, CollapsedFactor(nf.inner.index, n_levels=parent.size, name="child"), parent)
    return [nf, slopes, empty]


@pytest.mark.parametrize("case", [0, 1, 2])
def test_scalar_nested_path_matches_general_path(case):
    """The q1 = q2 = 1 path (element-wise, distinct-size logs) equals the general batched path.

    Log density, and its gradient with respect to the sums, sigma and both factors, to 1e-10
    relative; the log density also against the dense multivariate normal.
    """
    rng = np.random.default_rng(40 + case)
    nf = _scalar_nested_cases(rng)[case]
    t1, b2 = pt.vector("t1"), pt.vector("b2")
    rtr, sigma, l1, l2 = pt.scalar("rtr"), pt.scalar("sigma"), pt.scalar("l1"), pt.scalar("l2")
    scalar = _nested_scalar_pt(rtr, t1, b2, sigma, nf, l1, l2)
    general = _nested_general_pt(
        rtr, t1[:, None], b2[:, None], sigma, nf, (l1.reshape((1, 1)), False), (l2.reshape((1, 1)), False)
    )
    inputs = [rtr, t1, b2, sigma, l1, l2]
    fns = []
    for logdet, quad in (scalar, general):
        logp = -0.5 * (logdet + quad)
        fns.append(pytensor.function(inputs, [logp, *pt.grad(logp, inputs)], mode=FAST))
    for sd1, sd2, s in [(0.7, 1.2, 0.9), (3.0, 20.0, 0.05), (0.0, 0.4, 1.3), (0.5, 0.0, 0.8)]:
        r = rng.normal(scale=2.0, size=nf.n_rows)
        t1v = np.bincount(nf.outer.index, weights=nf.outer.Z[:, 0] * r, minlength=nf.outer.n_levels)
        b2v = np.bincount(nf.inner.index, weights=nf.inner.Z[:, 0] * r, minlength=nf.inner.n_levels)
        args = [r @ r, t1v, b2v, s, sd1, sd2]
        got, want = fns[0](*args), fns[1](*args)
        for x, y in zip(got, want, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10 * np.max(np.abs(y)))
        n = nf.n_rows
        dense = _dense_logpdf(r, s, nf, ([[sd1]], [[sd2]]))
        assert float(got[0]) - 0.5 * n * np.log(2 * np.pi) == pytest.approx(dense, rel=1e-10)


def _pooled_cases(rng: np.random.Generator) -> list[CollapsedFactor | NestedFactors]:
    """The scalar nested cases plus one factor: intercepts (an empty level) and a slope."""
    single = _single_factor(rng, 1)
    slope = CollapsedFactor(single.index, rng.normal(size=single.n_rows), n_levels=single.n_levels, name="g")
    return [*_scalar_nested_cases(rng), single, slope]


@pytest.mark.parametrize("case", range(5))
def test_pooled_path_matches_per_level_path(case):
    r"""Levels pooled by their constants give the per-level log density and gradient.

    :func:`marginal_loglik_pooled` from the class sums of :math:`Z_j'R_j` against
    :func:`marginal_loglik` of :math:`r = Rv`, value and gradient with respect to :math:`v`,
    sigma and the factors, to 1e-10 relative, over parameter values that include zero sds and
    :math:`\lambda a_j \gg \sigma^2`.
    """
    rng = np.random.default_rng(70 + case)
    factors = _pooled_cases(rng)[case]
    nested = isinstance(factors, NestedFactors)
    classes = level_classes(factors, force=True)
    assert classes is not None
    inner = factors.inner if nested else factors
    m = 3
    R = rng.normal(size=(factors.n_rows, m))
    ZR = inner.Z[:, :1] * R
    ZtR = np.stack([np.bincount(inner.index, weights=ZR[:, k], minlength=inner.n_levels) for k in range(m)], axis=1)
    S, P = pooled_statistics(classes, ZtR, factors.parent if nested else None)
    assert S.shape == (classes.n_classes, m, m) and P.shape[1:] == (classes.n_classes, m)
    if nested:
        ZR1 = factors.outer.Z[:, :1] * R
        outer_sums = np.stack(
            [np.bincount(factors.outer.index, weights=ZR1[:, k], minlength=factors.outer.n_levels) for k in range(m)],
            axis=1,
        )
    v, sigma, l1, l2 = pt.vector("v"), pt.scalar("sigma"), pt.scalar("l1"), pt.scalar("l2")
    chol = (l1, l2) if nested else l2
    pooled = marginal_loglik_pooled(v, R.T @ R, outer_sums if nested else None, (S, P), sigma, factors, classes, chol)
    direct = marginal_loglik(pt.dot(pt.constant(R), v), sigma, factors, chol)
    inputs = [v, sigma, l1, l2] if nested else [v, sigma, l2]
    fns = [pytensor.function(inputs, [f, *pt.grad(f, inputs)], mode=FAST) for f in (pooled, direct)]
    for sd1, sd2, s in [(0.7, 1.2, 0.9), (3.0, 20.0, 0.05), (0.0, 0.4, 1.3), (0.5, 0.0, 0.8)]:
        args = [rng.normal(size=m), s, sd1, sd2] if nested else [rng.normal(size=m), s, sd2]
        got, want = fns[0](*args), fns[1](*args)
        for x, y in zip(got, want, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10 * np.max(np.abs(y)))


def test_level_classes_pool_only_when_it_pays():
    """Intercepts of many groups of few sizes pool; a continuous slope (every level its own class) does not."""
    rng = np.random.default_rng(3)
    index = np.repeat(np.arange(20), rng.integers(1, 4, size=20))
    intercepts = CollapsedFactor(index, name="g")
    classes = level_classes(intercepts, width=4)
    assert classes is not None and classes.n_classes == 3
    np.testing.assert_array_equal(np.sort(classes.a), [1.0, 2.0, 3.0])
    assert classes.counts.sum() == 20
    assert level_classes(CollapsedFactor(index, rng.normal(size=index.size), name="g"), width=4) is None
    assert level_classes(CollapsedFactor(index, np.ones((index.size, 2)), name="g")) is None


# ----------------------------------------------------------------------------------------
# Gradients: central finite differences
# ----------------------------------------------------------------------------------------


def _finite_difference_check(fn, args, h=1e-5):
    out = fn(*args)
    grads = out[1:]
    for k, (x, g) in enumerate(zip(args, grads, strict=True)):
        x = np.asarray(x, dtype=np.float64)
        g = np.asarray(g)
        assert g.shape == x.shape
        flat = list(np.ndindex(x.shape))
        for pos in flat[:6]:  # first entries of r, all of sigma and of each factor
            up, down = x.copy(), x.copy()
            up[pos] += h
            down[pos] -= h
            a_up, a_down = list(args), list(args)
            a_up[k], a_down[k] = up, down
            fd = (fn(*a_up)[0] - fn(*a_down)[0]) / (2 * h)
            assert g[pos] == pytest.approx(fd, rel=1e-5, abs=1e-6), (k, pos)


def test_gradient_single_factor():
    rng = np.random.default_rng(7)
    f = _single_factor(rng, 2)
    fn = _compile(f, [(2, 2)], grad=True)
    L = _random_chol(rng, 2)
    L[0, 1] = 0.3  # the upper triangle is used as given (Omega = L L'), so test it too
    _finite_difference_check(fn, [rng.normal(size=f.n_rows), np.array(0.8), L])


def test_gradient_single_factor_one_term():
    """The scalar (q = 1) single-factor path: a covariate slope, an empty level; finite differences."""
    rng = np.random.default_rng(9)
    f = _single_factor(rng, 2)
    f1 = CollapsedFactor(f.index, f.Z[:, 1], n_levels=f.n_levels, name="g")
    fn = _compile(f1, [(1, 1)], grad=True)
    r = rng.normal(size=f1.n_rows)
    _finite_difference_check(fn, [r, np.array(0.8), np.array([[1.3]])])
    assert fn(r, 0.8, [[1.3]])[0] == pytest.approx(_dense_logpdf(r, 0.8, f1, [[1.3]]), abs=1e-8)


@pytest.mark.parametrize(("q1", "q2"), [(1, 1), (1, 2), (2, 2)])
def test_gradient_nested(q1, q2):
    rng = np.random.default_rng(8 + q1 + q2)
    nf = _nested_factors(rng, q1, q2)
    fn = _compile(nf, [(q1, q1), (q2, q2)], grad=True)
    args = [
        rng.normal(size=nf.n_rows),
        np.array(0.7),
        _random_chol(rng, q1),
        _random_chol(rng, q2),
    ]
    _finite_difference_check(fn, args)


# ----------------------------------------------------------------------------------------
# Conditional draws: moments against the exact dense conditional
# ----------------------------------------------------------------------------------------


def _assert_moments(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray, z: float = 5.0):
    """Sample mean and covariance within ``z`` standard errors of the exact values."""
    n = draws.shape[0]
    var = np.diag(cov)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), z * np.sqrt(var / n))
    # Var of a Gaussian sample covariance entry: (S_ik^2 + S_ii S_kk) / n
    se_cov = np.sqrt((cov**2 + np.outer(var, var)) / n)
    np.testing.assert_array_less(np.abs(np.cov(draws, rowvar=False) - cov), z * se_cov)


def test_draws_single_factor_match_exact_conditional():
    rng = np.random.default_rng(11)
    f = _single_factor(rng, 2)
    r, sigma, L = rng.normal(scale=2.0, size=f.n_rows), 0.9, _random_chol(rng, 2)
    gen = np.random.default_rng(12345)
    draws = np.array([draw_random_effects(gen, r, sigma, f, L).ravel() for _ in range(N_DRAWS)])
    assert draws.shape == (N_DRAWS, f.n_levels * 2)
    mean, cov = _dense_conditional(r, sigma, f, L)
    _assert_moments(draws, mean, cov)


@pytest.mark.parametrize(("q1", "q2"), [(1, 2), (2, 1)])
def test_draws_nested_match_exact_conditional(q1, q2):
    rng = np.random.default_rng(13 + q1)
    nf = _nested_factors(rng, q1, q2)
    r, sigma = rng.normal(scale=2.0, size=nf.n_rows), 0.8
    chols = (_random_chol(rng, q1), _random_chol(rng, q2))
    gen = np.random.default_rng(54321)
    draws = []
    for _ in range(N_DRAWS):
        u1, u2 = draw_random_effects(gen, r, sigma, nf, chols)
        draws.append(np.concatenate([u1.ravel(), u2.ravel()]))
    draws = np.array(draws)
    assert u1.shape == (nf.outer.n_levels, q1) and u2.shape == (nf.inner.n_levels, q2)
    mean, cov = _dense_conditional(r, sigma, nf, chols)
    _assert_moments(draws, mean, cov)


def test_draws_are_reproducible_and_accept_sd_forms():
    rng = np.random.default_rng(15)
    nf = _nested_factors(rng, 1, 1)
    r = rng.normal(size=nf.n_rows)
    a = draw_random_effects(np.random.default_rng(1), r, 0.7, nf, (0.5, 1.2))
    b = draw_random_effects(np.random.default_rng(1), r, 0.7, nf, ([[0.5]], [1.2]))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------------------------------
# Structure descriptions and input validation
# ----------------------------------------------------------------------------------------


def test_structure_defaults_and_caches():
    f = CollapsedFactor(np.array([2, 0, 0, 2]))
    assert (f.n_rows, f.n_terms, f.n_levels) == (4, 1, 3)
    np.testing.assert_array_equal(f.gram[:, 0, 0], [2.0, 0.0, 2.0])
    assert f.gram is f.gram
    assert not f.index.flags.writeable

    rng = np.random.default_rng(16)
    nf = _nested_factors(rng, 1, 2)
    inferred = NestedFactors(nf.outer, nf.inner)
    np.testing.assert_array_equal(inferred.parent, nf.parent)
    assert nf.cross_gram.shape == (nf.inner.n_levels, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"index": np.array([0.0, 1.0])}, "integer"),
        ({"index": np.array([[0, 1]])}, "1-D"),
        ({"index": np.array([0, 3]), "n_levels": 2}, "0..1"),
        ({"index": np.array([0, -1])}, "0.."),
        ({"index": np.array([0, 1]), "Z": np.ones((3, 1))}, "shape"),
        ({"index": np.array([0, 1]), "Z": np.array([1.0, np.nan])}, "NaN"),
    ],
)
def test_factor_validation(kwargs, match):
    with pytest.raises(DataError, match=match):
        CollapsedFactor(**kwargs)


def test_nesting_validation():
    outer = CollapsedFactor(np.array([0, 0, 1, 1]), name="school")
    crossed = CollapsedFactor(np.array([0, 1, 1, 2]), name="child")
    with pytest.raises(DataError, match="not nested"):
        NestedFactors(outer, crossed)
    inner = CollapsedFactor(np.array([0, 1, 2, 2]), n_levels=4, name="child")
    with pytest.raises(DataError, match="without rows"):
        NestedFactors(outer, inner)
    with pytest.raises(DataError, match="not nested"):
        NestedFactors(outer, inner, parent=np.array([0, 1, 1, 0]))
    with pytest.raises(DataError, match="shape"):
        NestedFactors(outer, inner, parent=np.array([0, 0, 1]))
    assert NestedFactors(outer, inner, parent=np.array([0, 0, 1, 0])).parent[3] == 0


def test_argument_validation():
    rng = np.random.default_rng(17)
    f = _single_factor(rng, 2)
    nf = _nested_factors(rng, 1, 1)
    r = pt.vector("r")
    with pytest.raises(SpecError, match="scalar factor"):
        marginal_loglik(r, 1.0, f, pt.scalar("sd"))
    with pytest.raises(SpecError, match="shape"):
        marginal_loglik(r, 1.0, f, pt.matrix("L", shape=(3, 3)))
    with pytest.raises(SpecError, match="chol_outer, chol_inner"):
        marginal_loglik(r, 1.0, nf, pt.scalar("sd"))
    with pytest.raises(SpecError, match="CollapsedFactor or NestedFactors"):
        marginal_loglik(r, 1.0, "g", pt.scalar("sd"))
    with pytest.raises(DataError, match="entries"):
        marginal_loglik(pt.vector("r", shape=(3,)), 1.0, f, np.eye(2))
    with pytest.raises(DataError, match="shape"):
        draw_random_effects(rng, np.zeros(3), 1.0, f, np.eye(2))
    with pytest.raises(SpecError, match="positive"):
        draw_random_effects(rng, np.zeros(f.n_rows), 0.0, f, np.eye(2))
    with pytest.raises(SpecError, match="expected"):
        draw_random_effects(rng, np.zeros(f.n_rows), 1.0, f, np.eye(3))
