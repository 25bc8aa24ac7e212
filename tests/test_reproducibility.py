"""Same seed, same draws: two fits with the same ``random_seed`` give identical posterior arrays,
for each sampler (nutpie, PyMC's NUTS, numpyro) and each method (the full non-centred model, and the
collapsed one whose random effects are drawn after sampling); another seed gives other draws.
Tiny models and draws: this checks bookkeeping of randomness, not inference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::hierbayes.ConvergenceWarning")]

SETTINGS = {"draws": 30, "tune": 30, "chains": 2, "progressbar": False, "cores": 1}


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(6), 5)
    return pd.DataFrame({"g": g, "x": rng.normal(size=30), "y": rng.normal(size=30) + 0.5 * g})


def models(small):
    return {
        "full": (hb.group_means(y="y", sigma="sigma", group="school"), hb.datasets.load("eight_schools"), "full"),
        "collapsed": ("y ~ x + (1 | g)", small, "collapsed"),
    }


def same(a, b):
    assert set(a.data_vars) == set(b.data_vars)
    return all(np.array_equal(a[v].values, b[v].values) for v in a.data_vars)


@pytest.mark.parametrize("sampler", ["nutpie", "pymc", "numpyro"])
@pytest.mark.parametrize("method", ["full", "collapsed"])
def test_same_seed_same_draws_other_seed_other_draws(small, sampler, method):
    model, data, chosen = models(small)[method]
    first = hb.fit(model, data, random_seed=11, sampler=sampler, method=chosen, **SETTINGS)
    again = hb.fit(model, data, random_seed=11, sampler=sampler, method=chosen, **SETTINGS)
    other = hb.fit(model, data, random_seed=12, sampler=sampler, method=chosen, **SETTINGS)
    assert first.settings["method"] == chosen and first.settings["sampler"] == sampler
    assert same(first.posterior, again.posterior)
    assert not np.array_equal(first.posterior["beta"].values, other.posterior["beta"].values)
    u = next(v for v in first.posterior.data_vars if v.startswith("u_"))
    assert not np.array_equal(first.posterior[u].values, other.posterior[u].values)
