"""Run NUTS on a built model with one of PyMC's sampler backends.

``sampler="auto"`` (the default) takes numpyro (JAX), else nutpie, else PyMC's NUTS. JAX and
numpyro are dependencies of hierbayes (the ``jax`` extra is kept, empty, so that
``pip install "hierbayes[jax]"`` still works) because numpyro was the fastest in every benchmark
case below, cold and warm (and for sleepstudy's first fit: 21.3 s cold / 10.4 s warm against
nutpie's 59 s / 10.5 s, idle machine, before :mod:`hierbayes.inference.jax_nuts`):

* **Full models** (GLMMs, crossed factors: thousands of latent effects, costly gradients):
  numpyro gives about twice the effective draws per second of nutpie or PyMC, which tie.
* **Collapsed Gaussian models** (:mod:`hierbayes.inference.collapsed.build`: a dozen parameters, cheap
  gradients): compilation dominates. nutpie compiles one fused numba function per process (about
  10 s); PyMC's NUTS uses PyTensor's numba backend, which caches each compiled operation on disk:
  7 s when the same model and data were fitted before, 17 s for new data, 69 s on a first run with
  empty caches. numpyro runs through :mod:`hierbayes.inference.jax_nuts`, which compiles one
  program per model *structure* (the data are arguments, not constants) and keeps it on disk
  (``jax.export`` and JAX's persistent compilation cache, in ``~/.cache/hierbayes``): a first fit
  with empty caches compiles once, every later fit of the same structure, with new data of the
  same shapes or in a new process, reuses the program.

First fits (issue 11): ``benchmarks/first_fit.py``, a fresh process each, 4 chains x 1000 draws +
1000 tuning, seed 1; seconds from the start of the process (``import hierbayes`` included) to the
fitted result; cold = empty ``HOME`` and Numba cache, warm = the same directories again; "again" =
a second fit in the same process with new data of the same shapes. Measured on the shared
2-core machine under a load average of 4-6 (other jobs), so absolute times are about twice those
of an idle machine; "before" is PyMC's ``nuts_sampler="numpyro"`` route, run at the same time:

=====================================  =============  =============  ==========
case (method)                          cold (s)       warm (s)       again (s)
=====================================  =============  =============  ==========
sleepstudy (collapsed), this module    18.0           7.6            1.8
  the same, later, load average 2.5    12.5           4.3            1.0
sleepstudy, before                     64.6           30.8           9.7
achievement (collapsed), this module   25.9           15.9           6.1
achievement, before                    15.8           31.2           8.6
guatemalan (full GLMM), this module    46.6           25.7           23.3
guatemalan, before                     34.6           28.9           --
=====================================  =============  =============  ==========

Since then (same script, idle 2-core machine, seed 1):

* **chains in parallel threads** (a compiled JAX program releases Python's lock; each chain's
  draws are the same whatever the number of threads, ``cores=1`` included; crossed collapsed
  fits stay in one thread, where two at once were slower);
* a faster JAX translation of the log density: a vectorising ``softplus`` (PyTensor's nested
  ``where`` did not vectorise: 800 us against 104 us on 52,635 doubles) and one ``softplus``
  pass instead of two for PyMC's Bernoulli with ``logit_p``; the Guatemalan full model's
  value and gradient went from 150 to 96 us (called from Python; about 27 us inside a loop);
* NUTS moves one flat vector instead of a list of arrays (a Guatemalan chain took 2.98 s
  instead of 3.30 s). A leapfrog step then costs 45 us: 28 us of value and gradient and about
  16 us of tree bookkeeping. Both are mostly XLA's per-kernel cost on the CPU (34 kernels for
  the gradient): a lean NUTS written for comparison spent as much as numpyro's on bookkeeping
  (10 us per step at 1,766 parameters), so numpyro's kernel is kept (``benchmarks/README.md``);
* nested (and single) random intercepts in the collapsed model pool the levels of equal size
  (:class:`~hierbayes.inference.collapsed.likelihood.LevelClasses`): the 200,000-row nested
  benchmark samples in 0.3 s instead of 4.4 s, 5.2 s cold / 3.2 s warm in all;
* 4 compiled programs per fit instead of 19 (no ``jnp.asarray`` of the data, the chains'
  random keys built without JAX, one program for tuning and draws);
* GLMMs sample their one-coefficient random effects partially centred (``rescale``,
  :func:`hierbayes.inference.jax_nuts.sample_numpyro`): after a 150-step pilot each effect
  moves as :math:`z_m s^{a_m}` with :math:`a_m = 1 - v_m^{1/2}` from the pilot's variances.
  Guatemalan: smallest bulk ESS 608 -> 1,303, 676 -> 1,409 and 674 -> 828 (seeds 1-3) for
  about 15 % more time, the first change that moved its ESS per second by more than a few per
  cent (``make bench``: 8.0x bambi cold, 7.1x warm, from 4.0x / 3.8x);
* 3 compiled programs per fit (the log-density program is gone: a jittered start is checked by
  ``init``'s potential), ``init`` and ``steps`` compiled at once in two threads: the 200,000-row
  nested benchmark 4.4 s cold / 2.7 s warm (``make bench``, stop 22; same draws).

Sleepstudy 6.1 s cold / 3.1 s warm (was 12.5 / 4.3), guatemalan 12.7 s cold / 9.8 s warm
(8.0 s for a second fit in the process; was 27.3 / 24.5 in ``make bench``). A chain runs as a
few dozen calls of one compiled program (tuning and draws in chunks of about 50 steps), which
lets ``progressbar=True`` show one bar for all chains without a host callback in the program
(a callback could not be exported to the disk cache).

``import hierbayes`` alone: 0.01 s (public names load on first use); it was 2.8 s (idle
machine). The achievement and guatemalan fits are dominated by sampling itself (achievement: 5.2 s
of the 6.1 s "again"; the four chains run one after the other), which this module does not
change: for them the gain is the reuse of the compiled program, not a faster first compilation
(the guatemalan cold fit was slower: one run each under a load of 6, not investigated further).
On an idle machine before this module (same script):
numpyro 21.3 s cold / 10.4 s warm, nutpie 59 s / 10.5 s for sleepstudy. The GLMM and achievement
tables below were measured with PyMC's numpyro route; :mod:`hierbayes.inference.jax_nuts` runs the
same numpyro NUTS kernel and adaptation.

Measurements on a 2-core machine (shared with other jobs: +-30 %), 4 chains x 1000 draws +
1000 tuning; total = design + model + compilation + sampling (``hb.fit``); min ESS = smallest
bulk ESS over the fixed effects and sds; seeds 1 / 2 / 3; no divergences anywhere.

Guatemalan immunisation GLMM, ``immun ~ kid2p + momEdPri + momEdSec + husEdPri + husEdSec +
rural + pcInd81 + (1 | cluster/mom)``, bernoulli, 1,756 latent effects (minimum ESS: always
the mother-level sd):

=========  ==================  ===============  ==================
sampler    total (s)           min ESS          min ESS / s
=========  ==================  ===============  ==================
numpyro    18.3 / 12.8 / 12.8  633 / 429 / 693  34.6 / 33.6 / 54.3
nutpie     24.9 / 24.4 / 25.0  266 / 423 / 426  10.7 / 17.3 / 17.0
pymc       26.0 / 26.2 / 26.2  529 / 392 / 466  20.3 / 15.0 / 17.8
=========  ==================  ===============  ==================

(bambi 0.21 with PyMC's NUTS on the same model: 22.3 / 24.1 / 23.6 ESS/s.) R-hat, seed 1:
numpyro 1.005, pymc 1.009, nutpie 1.016 (its low-ESS seed). A second series under heavier load
gave the same order (numpyro 20-32, nutpie 8-15, pymc 10-14 ESS/s).

Achievement three-level LMM, collapsed (11 parameters), seed 1, total seconds with empty
compilation caches / same data fitted before / new data (a 90 % subsample):
numpyro 6.3 / 7.2 / 6.2, nutpie 19.5 / 11.7 / 20.2, pymc 68.8 / 7.7 / 17.3
(min ESS 4625, 3960, 5133).

**Same seed, same draws, cold or warm cache.** Every backend but numpyro compiles the model with
PyTensor's Numba backend, which by default (``pytensor.config.numba__fastmath=True``) gives LLVM
the fast-math flags ``reassoc``, ``contract``, ``arcp``, ``afn`` and ``nsz``
(``pytensor.link.numba.dispatch.basic.numba_njit``) and caches each compiled operation on disk in
``<base_compiledir>/numba`` (``~/.pytensor/numba``; ``pytensor.link.numba.cache``). With an empty
cache the operations are compiled in this process and their LLVM IR is linked into the caller
(nutpie's logp function, PyMC's logp-and-gradient function), with a warm cache their cached
bitcode is; LLVM then inlines and, allowed to reassociate and contract, vectorises sums and fuses
multiply-adds differently. The log density came out different in its last bit (the gradient did
not), enough to change a NUTS decision within a few warm-up steps and every draw after it: the first
fit on a new machine differed from every later one. :func:`sample` therefore compiles with
``numba__fastmath=False`` (IEEE arithmetic, which inlining cannot change); see
:func:`reproducible_compilation`. ``tests/test_determinism_cache.py`` checks it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings
from collections.abc import Iterator, Mapping
from typing import Literal

import pymc as pm
import pytensor
import xarray as xr

from hierbayes.exceptions import SamplerNotInstalledError, SpecError

__all__ = ["SAMPLERS", "Sampler", "reproducible_compilation", "resolve_sampler", "sample"]

Sampler = Literal["auto", "nutpie", "pymc", "numpyro"]
SAMPLERS: tuple[str, ...] = ("auto", "nutpie", "pymc", "numpyro")

_INSTALL_HINTS = {
    "nutpie": ("nutpie",),
    "numpyro": ("numpyro", "jax"),
}


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@contextlib.contextmanager
def reproducible_compilation() -> Iterator[None]:
    """Compile PyTensor functions so that results do not depend on the state of the compile cache.

    Sets ``pytensor.config.numba__fastmath=False`` for the duration (restored afterwards; no
    environment variable is touched). With fast-math on, the machine code of a function compiled
    with the Numba backend depends on whether its operations came from the on-disk cache
    (``~/.pytensor/numba``) or were compiled in this process, so the same seed gave other draws on a
    first run (see the module docstring). The cache key of each operation includes the flag
    (``..._fastmath0``), so compiled operations are still cached and reused. Functions must be
    compiled inside the block; calling them later is fine.
    """
    with pytensor.config.change_flags(numba__fastmath=False):
        yield


def resolve_sampler(sampler: str) -> str:
    """Map ``"auto"`` to the backend that will run (see the module docstring); check it is installed.

    Raises
    ------
    SpecError
        For an unknown sampler name (a ``ValueError``).
    SamplerNotInstalledError
        With the ``pip install`` command that adds the missing backend.
    """
    if sampler not in SAMPLERS:
        raise SpecError(f"Unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}.")
    if sampler == "auto":
        if _installed("numpyro", "jax"):
            return "numpyro"
        return "nutpie" if _installed("nutpie") else "pymc"
    for module in _INSTALL_HINTS.get(sampler, ()):
        if importlib.util.find_spec(module) is None:
            packages = " ".join(_INSTALL_HINTS[sampler])
            how = f"pip install {packages}"
            raise SamplerNotInstalledError(
                f"The {sampler!r} sampler needs the package {module!r}, which is not installed. "
                f"Install it with: {how}, or use sampler='pymc' (always available)."
            )
    return sampler


def sample(
    model: pm.Model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    target_accept: float = 0.8,
    sampler: Sampler = "auto",
    progressbar: bool | str = True,
    cores: int | None = None,
    rescale: Mapping[str, str] | None = None,
) -> xr.DataTree:
    """Draw posterior samples with NUTS.

    Parameters
    ----------
    model
        From :func:`hierbayes.build_model`.
    draws, tune, chains
        Kept draws per chain, tuning draws per chain, number of chains.
    random_seed
        Seed; the same seed gives the same draws for a given sampler.
    target_accept
        NUTS's target acceptance rate; raise it (0.9, 0.95, 0.99) when there are divergences.
    sampler
        ``"auto"``, ``"nutpie"``, ``"pymc"`` or ``"numpyro"``.
    progressbar
        Show a progress bar.
    cores
        Chains run in parallel on this many cores (default: as many as chains and CPUs; numpyro
        runs them in threads of this process, the other backends as PyMC does).
    rescale
        numpyro only: standardised random effects and their sds (``{"z_g": "sd_g"}``, see
        :func:`hierbayes.inference.build.rescaled_effects`) that each chain samples partially
        centred after a pilot (:func:`hierbayes.inference.jax_nuts.sample_numpyro`); the other
        backends ignore it.

    Returns
    -------
    xarray.DataTree
        PyMC's result (groups ``posterior``, ``sample_stats``, ``observed_data``, ...).
    """
    backend = resolve_sampler(sampler)
    if draws < 1 or tune < 0 or chains < 1:
        raise ValueError(f"draws must be >= 1, tune >= 0 and chains >= 1; received {draws}, {tune}, {chains}.")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must be between 0 and 1; received {target_accept}.")
    if backend == "numpyro":
        from hierbayes.inference.jax_nuts import sample_numpyro

        return sample_numpyro(
            model,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=random_seed,
            target_accept=target_accept,
            cores=cores,
            progressbar=progressbar,
            rescale=rescale,
        )
    with model, reproducible_compilation(), warnings.catch_warnings():
        # ArviZ guesses that dims are swapped whenever chains > draws; PyMC's dims are named, so
        # the guess is noise (too few draws are reported by hierbayes.diagnose instead).
        warnings.filterwarnings("ignore", message="Found chain dimension to be longer than draw dimension")
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            target_accept=target_accept,
            nuts_sampler=backend,
            progressbar=progressbar,
            compute_convergence_checks=False,
        )
