"""Same seed, same draws with a cold and a warm compilation cache (issue 11).

PyTensor's Numba backend caches every compiled operation on disk (``<base_compiledir>/numba``,
by default ``~/.pytensor/numba``). With fast-math on, the logp function built from freshly
compiled operations (a new machine, a new user) and the one built from cached ones rounded the log
density differently in the last bit, and the first fit on a machine gave other draws than every
later one; :func:`hierbayes.inference.sampling.reproducible_compilation` is the fix.

Two fresh processes fit the same model with the same seed: the first with an empty ``HOME``, an
empty PyTensor compile directory and an empty Numba cache directory, the second with the same
directories, now warm. The draws must agree bit for bit, for nutpie, PyMC's NUTS and numpyro (full
and collapsed model, and a binomial GLMM with its partially centred effects; numpyro's programs
are read back from JAX's persistent compilation cache and hierbayes's exported programs,
:mod:`hierbayes.inference.jax_nuts`, both under ``~/.cache/hierbayes``). The cold compilation
is what costs time (about a minute), hence ``slow``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process; writes every posterior array of every fit to one .npz file.
CHILD = """
import sys, warnings
import numpy as np
warnings.simplefilter("ignore")
import hierbayes as hb

df = hb.datasets.load("sleepstudy")
out = {}
for sampler, method in (("nutpie", "full"), ("pymc", "full"), ("numpyro", "full"), ("numpyro", "collapsed")):
    fit = hb.fit("Reaction ~ Days + (Days | Subject)", df, method=method, sampler=sampler, random_seed=11,
                 draws=20, tune=20, chains=2, cores=1, progressbar=False)
    assert fit.settings["sampler"] == sampler
    for name, da in fit.posterior.data_vars.items():
        out[f"{sampler}-{method}/{name}"] = da.values
# a binomial GLMM: numpyro's pilot, then partially centred herd effects (jax_nuts.PILOT)
fit = hb.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", hb.datasets.load("cbpp"),
             random_seed=11, draws=20, tune=300, chains=2, cores=1, progressbar=False)
assert fit.settings["partially_centred"] == ["z_herd"]
for name, da in fit.posterior.data_vars.items():
    out[f"numpyro-glmm/{name}"] = da.values
np.savez(sys.argv[1], **out)
"""


def _fit_in_fresh_process(cache: Path, out: Path) -> dict[str, np.ndarray]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTENSOR", "NUMBA_", "JAX_", "XDG_CACHE_HOME"))
    }
    env.update(
        HOME=str(cache / "home"),  # ~/.pytensor, ~/.pytensorrc and ~/.cache/hierbayes (JAX's caches) live here
        PYTENSOR_FLAGS=f"base_compiledir={cache / 'pytensor'}",  # explicit, in case HOME is not used
        NUMBA_CACHE_DIR=str(cache / "numba"),
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        MPLBACKEND="Agg",
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert done.returncode == 0, done.stderr[-4000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def test_same_draws_with_cold_and_warm_compile_cache(tmp_path):
    cache = tmp_path / "cache"
    for d in ("home", "pytensor", "numba"):
        (cache / d).mkdir(parents=True)
    cold = _fit_in_fresh_process(cache, tmp_path / "cold.npz")
    assert any((cache / "pytensor").iterdir()), "the compile cache was not used"
    jax_cache = cache / "home" / ".cache" / "hierbayes"
    assert any((jax_cache / "jax").iterdir()) and any((jax_cache / "programs").iterdir()), "JAX's caches were not used"
    warm = _fit_in_fresh_process(cache, tmp_path / "warm.npz")
    runs = {"nutpie-full", "pymc-full", "numpyro-full", "numpyro-collapsed", "numpyro-glmm"}
    assert cold.keys() == warm.keys() and {k.split("/")[0] for k in cold} == runs
    differ = [k for k in cold if cold[k].shape != warm[k].shape or cold[k].tobytes() != warm[k].tobytes()]
    assert not differ, f"cold- and warm-cache fits with the same seed differ in {differ}"
