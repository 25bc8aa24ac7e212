"""NUTS with numpyro on a PyMC model, compiled once per model structure.

PyMC's own numpyro route (``pm.sample(nuts_sampler="numpyro")``) bakes the data into the JAX
function as constants, evaluates the log density op by op to jitter the initial points, and
compiles every piece separately (about 150 XLA compilations for a small model). This module
instead

1. lifts the data out of the graph: the data-like constants (see :func:`_is_data`) and the shared
   variables of the model's log density, constrained variables and initial point become
   *arguments* of the compiled functions, so a fit of the same model structure with new data of
   the same shapes reuses them: in this process through :data:`_COMPILED` (keyed by the printed
   graph), in a new one through programs exported with ``jax.export`` to :func:`cache_dir`
   ``/programs`` and JAX's persistent compilation cache (:func:`enable_compilation_cache`);
2. compiles, for one chain, a program that initialises numpyro's NUTS
   (``numpyro.infer.hmc.hmc``: windowed step-size and diagonal mass-matrix adaptation, the same
   kernel ``numpyro.infer.MCMC`` runs) and one that advances it by up to about 50 steps and returns
   the constrained variables and statistics of each step; a chain is a few dozen calls of it
   (tuning, then draws), so a progress bar can follow it. The chains run in parallel threads
   (``cores``; a running JAX program releases Python's lock), each with its own random key and
   start, so a chain's draws do not depend on the number of threads (``jax.vmap`` over chains made
   a program that took several times longer to trace and compile, and every chain waits for the
   longest tree);
3. starts each chain as PyMC's ``_init_jitter`` does (the initial point plus uniform
   :math:`[-1, 1]` jitter on the unconstrained space, drawn again while the log density is not
   finite), the initial point a small compiled program and the log density the potential of
   the NUTS state ``init`` makes; ``init`` and ``steps`` compile at once in two threads;
4. for a GLMM (``rescale``, from :func:`hierbayes.inference.build.rescaled_effects`) samples the
   standardised effects of one-coefficient terms partially centred, :math:`z_m s^{a_m}` instead
   of :math:`z_m`, a change of coordinates inside the sampler (the model and its variables are
   untouched), with exponents set from a pilot's variances (:func:`_partial_centring`). With
   1-3 children per mother (Guatemalan immunisation), non-centred mother effects form a funnel
   with their sd; partially centred, the smallest bulk ESS went from 608, 676 and 674 (seeds
   1-3) to 1,303, 1,409 and 828 for about 15 % more time (the pilot).

The log density and the constrained-space transform are PyMC's graphs, rewritten with PyTensor's
JAX rewrites and translated by ``jax_funcify``: the same posterior as every other backend.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["available_cpus", "cache_dir", "enable_compilation_cache", "sample_numpyro"]

#: Compiled samplers of this process, keyed by the model's structure (rewritten graph, argument
#: types) and the sampler settings; a new fit with the same key reuses the function.
_COMPILED: dict[str, _Compiled] = {}


def cache_dir() -> Path:
    """The cache folder of hierbayes: ``$XDG_CACHE_HOME/hierbayes``, else ``~/.cache/hierbayes``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hierbayes"


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache in :func:`cache_dir` ``/jax``, unless configured.

    Compiled XLA programs are written to disk and read back by later processes, so the second
    fit of a model structure skips XLA's compilation (seconds). Nothing is changed when the user
    set ``jax_compilation_cache_dir`` (or ``JAX_COMPILATION_CACHE_DIR``) already; otherwise every
    program is cached whatever its compile time or size (JAX's defaults skip programs that
    compiled in under a second, which are most of ours). Compilation is deterministic, so a cached
    program computes exactly what a freshly compiled one does.
    """
    import jax

    if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    path = cache_dir() / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: compile every time
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


class _Compiled:
    """The compiled programs of one model structure: ``start``, ``init`` and ``steps`` (one chain).

    Each program is a JAX export (``jax.export``: the traced and lowered StableHLO) stored in
    :func:`cache_dir` ``/programs``, so that a new process skips PyTensor's rewrites and JAX's
    tracing as well as XLA's compilation (the persistent compilation cache). A program is
    always run from its deserialised export, freshly made or read back, so that a first and a
    later run execute the same program and give the same draws.
    """

    def __init__(self, digest: str, build: Callable[[], dict[str, Callable[..., Any]]]) -> None:
        self.digest = digest
        self._build = build
        self._python: dict[str, Callable[..., Any]] | None = None
        self._programs: dict[str, Callable[..., Any]] = {}
        self._exports: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: the parameters' shapes, set from the initial point (see sample_numpyro) before ``init``
        #: and ``steps`` are traced: their flat position vector is unravelled with them
        self.point_shapes: list[tuple[int, ...]] = []
        #: value variables ``(effect, log sd)`` the sampler rescales (see _rescaled_values)
        self.rescaled: list[tuple[int, int]] = []

    def get(self, name: str, *example: Any) -> Callable[..., Any]:
        """The compiled program ``name`` for arguments like ``example`` (exported on first use).

        The program is compiled ahead of time for the example's types (``lower().compile()``),
        so that two programs can be compiled at once in two threads (:func:`_load_programs`):
        XLA's compilation releases Python's lock.
        """
        if name in self._programs:
            return self._programs[name]
        import jax

        exported = self.exported(name, *example)
        program = jax.jit(exported.call if exported is not None else self._python_program(name))
        self._programs[name] = program.lower(*example).compile()
        return self._programs[name]

    def exported(self, name: str, *example: Any) -> Any:
        """The ``jax.export`` of program ``name``: read from the disk cache, else traced and written.

        ``None`` where JAX cannot serialise (no ``flatbuffers``): the program is then compiled
        from its Python function, in this process only.
        """
        if name in self._exports:
            return self._exports[name]
        import jax
        from jax import export

        path = cache_dir() / "programs" / f"{self.digest}-{name}.jaxexport"
        try:
            exported = export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # absent, unreadable, or written by another JAX version: export again
            try:
                blob = export.export(jax.jit(self._python_program(name)))(*example).serialize()
            except ImportError:  # no flatbuffers
                self._exports[name] = None
                return None
            _write(path, bytes(blob))
            exported = export.deserialize(blob)
        self._exports[name] = exported
        return exported

    def _python_program(self, name: str) -> Callable[..., Any]:
        with self._lock:  # the first two programs may be asked for from two threads
            if self._python is None:
                self._python = self._build()
        return self._python[name]


def _write(path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` atomically; a read-only cache is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    except OSError:
        pass


class _Unsupported(Exception):
    """A model this module cannot compile; :func:`sample_numpyro` hands it to PyMC's numpyro route."""


def _lift(model: Any) -> tuple[list[Any], list[Any], list[np.ndarray], list[Any], list[Any], list[Any]]:
    """The model's log density, constrained variables and initial point, with their data lifted to inputs.

    Returns ``(values, data_vars, data, logp, constrained, start)``: the value variables
    (unconstrained parameters), the new input variables standing for the data, the data's values,
    the log density (a one-element list), the constrained variables to record (PyMC's default
    variable names, transformed ones left out) and the initial point on the unconstrained space
    (PyMC's ``make_initial_point_expression``, without jitter).
    """
    import pytensor.tensor as pt
    from pymc.initial_point import make_initial_point_expression
    from pymc.util import get_default_varnames
    from pytensor.compile import SharedVariable
    from pytensor.graph.basic import Constant
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import graph_inputs
    from pytensor.tensor import TensorVariable
    from pytensor.tensor.random.type import RandomType

    values = list(model.value_vars)
    constrained = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    start = make_initial_point_expression(
        free_rvs=model.free_RVs,
        rvs_to_transforms=model.rvs_to_transforms,
        initval_strategies=model.rvs_to_initial_values,
        return_transformed=True,
    )
    start = [_without_draws(x) for x in start]
    outputs = [model.logp(), *constrained, *start]
    replace: dict[Any, Any] = {}
    lifted: list[Any] = []
    data: list[np.ndarray] = []
    for var in graph_inputs(outputs):
        if var in replace:
            continue
        if isinstance(var, SharedVariable):
            if isinstance(var.type, RandomType):
                raise _Unsupported("the model's log density or initial point depends on a random generator")
            value = np.asarray(var.get_value(borrow=True))
            if not _is_data(value):  # a dimension's length (PyMC keeps them shared): a constant
                replace[var] = pt.constant(value, dtype=var.type.dtype)
                continue
        elif isinstance(var, Constant) and isinstance(var, TensorVariable) and _is_data(np.asarray(var.data)):
            value = np.asarray(var.data)
        else:
            continue
        replace[var] = var.type.clone(shape=value.shape)()
        lifted.append(replace[var])
        data.append(value)
    new = clone_replace(outputs, replace=replace) if replace else outputs
    n = len(constrained)
    return values, lifted, data, new[:1], new[1 : 1 + n], new[1 + n :]


def _without_draws(start: Any) -> Any:
    """``start``, or zeros of its shape when it is a random draw (a variable with no ``support_point``).

    PyMC starts such a variable (an LKJ correlation) at a prior draw; zero on the unconstrained
    space (identity correlation) plus the jitter is as good a start and needs no random generator.
    """
    import pytensor.tensor as pt
    from pytensor.graph.traversal import graph_inputs
    from pytensor.tensor.random.type import RandomType

    if not any(isinstance(v.type, RandomType) for v in graph_inputs([start])):
        return start
    if any(d is None for d in start.type.shape):
        raise _Unsupported("a variable without support_point has no static shape")
    return pt.zeros(start.type.shape, dtype=start.type.dtype)


def _is_data(value: np.ndarray) -> bool:
    """Whether a constant of the graph is data, to become an argument of the compiled function.

    Float arrays are data, and so are float scalars other than small multiples of 1/2 and
    infinities (hierbayes's default priors are scaled by the data, so their scales are data too;
    exponents such as 2 or -0.5 stay constants, for PyTensor's rewrites to specialise on). Integer
    arrays longer than :data:`_MAX_STATIC_INT` are data (group indices); shorter ones and integer
    scalars stay constants because JAX needs static shapes (``Reshape``, ``Alloc``).
    """
    if value.size == 0:  # an empty shape (a reshape to a scalar): nothing to lift, and a shape must stay a constant
        return False
    if np.issubdtype(value.dtype, np.floating):
        if value.ndim >= 1:
            return True
        v = float(value)
        return bool(np.isfinite(v) and not (abs(v) <= 16 and float(2 * v).is_integer()))
    return bool(value.ndim >= 1 and value.size > _MAX_STATIC_INT)


#: Integer constants with at most this many elements stay in the graph (shape vectors, small index sets).
_MAX_STATIC_INT = 16


def _jaxify(inputs: list[Any], outputs: list[Any]) -> Callable[..., Any]:
    """A JAX function of ``inputs`` for ``outputs``, after PyTensor's JAX rewrites."""
    from pytensor.compile import mode
    from pytensor.graph.fg import FunctionGraph
    from pytensor.link.jax.dispatch import jax_funcify

    fgraph = FunctionGraph(inputs=inputs, outputs=outputs, clone=True)
    mode.JAX.optimizer.rewrite(fgraph)
    _one_softplus_bernoulli(fgraph)
    _stable_softplus(fgraph)
    return jax_funcify(fgraph)


def _elemwise(var: Any, op: type) -> Any:
    """The input of ``var`` when ``var`` is the output of the one-input elementwise ``op``, else ``None``."""
    from pytensor.tensor.elemwise import Elemwise

    node = var.owner
    if node is not None and isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, op):
        return node.inputs[0]
    return None


def _one_softplus_bernoulli(fgraph: Any) -> None:
    r"""Rewrite ``switch(y, -softplus(-x), -softplus(x))`` as ``switch(y, x, 0) - softplus(x)`` (in place).

    PyMC's Bernoulli log-likelihood with ``logit_p`` evaluates both branches, two softplus
    passes over the rows; since :math:`-\operatorname{softplus}(-x) = x - \operatorname{softplus}(x)`
    one pass does (an absolute difference below one ulp of :math:`x`).
    """
    import pytensor.scalar as ps
    import pytensor.tensor as pt
    from pytensor.scalar.math import Softplus
    from pytensor.tensor.elemwise import Elemwise

    for node in list(fgraph.apply_nodes):
        if not (isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ps.Switch)):
            continue
        cond, yes, no = node.inputs
        a = _elemwise(yes, ps.Neg)
        b = _elemwise(no, ps.Neg)
        if a is None or b is None:
            continue
        a, x = _elemwise(a, Softplus), _elemwise(b, Softplus)
        if a is None or x is None or _elemwise(a, ps.Neg) is not x:
            continue
        (out,) = node.outputs
        new = pt.switch(cond, x, pt.zeros_like(x)) - pt.softplus(x)
        fgraph.replace(out, new.astype(out.dtype), reason="hierbayes_one_softplus", import_missing=True)


def _stable_softplus(fgraph: Any) -> None:
    r"""Replace every ``softplus(x)`` by :math:`\max(x, 0) + \log(1 + e^{-|x|})` (in place).

    The same function, as accurate everywhere (no overflow, no cancellation), but PyTensor's JAX
    translation of ``softplus`` (nested ``where``\ s over three exponentials) does not vectorise:
    on 52,635 doubles it took 800 us against 104 us for this form, and it is the inner loop of
    every logit likelihood (Bernoulli/binomial ``logp``, the quadrature kernel).
    """
    import pytensor.tensor as pt
    from pytensor.scalar.math import Softplus
    from pytensor.tensor.elemwise import Elemwise

    for node in list(fgraph.apply_nodes):
        if isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, Softplus):
            (x,) = node.inputs
            (out,) = node.outputs
            stable = pt.maximum(x, 0.0) + pt.log1p(pt.exp(-pt.abs(x)))
            fgraph.replace(out, stable.astype(out.dtype), reason="hierbayes_stable_softplus", import_missing=True)


def _compile(
    model: Any, *, draws: int, tune: int, target_accept: float, rescale: Mapping[str, str] | None = None
) -> tuple[_Compiled, list, list[str]]:
    """The compiled sampler for ``model`` (reused when its structure was compiled before).

    Returns ``(compiled, data, names)``: the sampler, the model's data (its arguments) and the
    names of the constrained variables it records, in order. ``rescale`` (see
    :func:`sample_numpyro`) sets ``compiled.rescaled``, the pairs of value variables that apply
    (none when ``tune`` is below :data:`PILOT_MIN_TUNE`).
    """
    import jax
    import pytensor
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import graph_inputs

    values, data_vars, data, logp_out, constrained, start = _lift(model)
    # rescaled only where a pilot will set the exponents: otherwise a = 0 would be work for nothing
    rescaled = _rescaled_values(model, rescale or {}) if tune >= PILOT_MIN_TUNE else []
    inputs = [*values, *data_vars]
    outputs = [*logp_out, *constrained, *start]
    structure = pytensor.dprint(outputs, file="str", print_type=True)
    # the constants left in the graph are part of the program: their values (which dprint may
    # abbreviate) belong in the key
    constants = hashlib.sha256()
    for c in graph_inputs(outputs):
        if isinstance(c, Constant):
            value = np.asarray(c.data)
            constants.update(f"{value.dtype}{value.shape}".encode() + value.tobytes())
    settings = repr((draws, tune, target_accept, rescaled))
    key = "\n".join([str(structure), constants.hexdigest(), repr([(v.name, v.type) for v in inputs]), settings])
    names = [v.name for v in constrained]
    if key in _COMPILED:
        return _COMPILED[key], data, names

    def build() -> dict[str, Callable[..., Any]]:
        return _programs(
            inputs,
            data_vars,
            logp_out,
            constrained,
            start,
            draws=draws,
            tune=tune,
            target_accept=target_accept,
            shapes=compiled.point_shapes,
            rescaled=rescaled,
        )

    versions = repr((jax.__version__, jax.default_backend(), _FORMAT))
    digest = hashlib.sha256("\n".join([key, versions]).encode()).hexdigest()[:32]
    compiled = _Compiled(digest, build)
    compiled.rescaled = rescaled
    _COMPILED[key] = compiled
    return compiled, data, names


def _rescaled_values(model: Any, rescale: Mapping[str, str]) -> list[tuple[int, int]]:
    """The pairs ``(effect, log sd)`` of value variables (positions in ``model.value_vars``) to rescale.

    ``rescale`` maps a standardised effect (``z_<g>``, no transform) to its sd (a scalar with
    PyMC's log transform); pairs of other forms are left out.
    """
    from pymc.logprob.transforms import LogTransform

    pairs = []
    for effect, scale in rescale.items():
        if effect not in model.named_vars or scale not in model.named_vars:
            continue
        rv_e, rv_s = model.named_vars[effect], model.named_vars[scale]
        if rv_e not in model.free_RVs or rv_s not in model.free_RVs or rv_s.ndim != 0:
            continue
        if model.rvs_to_transforms.get(rv_e) is not None:
            continue
        if not isinstance(model.rvs_to_transforms.get(rv_s), LogTransform):
            continue
        values = list(model.value_vars)
        pairs.append((values.index(model.rvs_to_values[rv_e]), values.index(model.rvs_to_values[rv_s])))
    return pairs


def _scale_index(point: list[np.ndarray], pairs: list[tuple[int, int]]) -> np.ndarray:
    """Per entry of the flat parameter vector, the entry of its scale's log (itself if none)."""
    starts = _offsets(point)
    index = np.arange(sum(int(np.size(p)) for p in point))
    for effect, scale in pairs:
        index[starts[effect] : starts[effect] + int(np.size(point[effect]))] = starts[scale]
    return index


#: Changes whenever the programs built by :func:`_programs` change (invalidates the disk cache).
_FORMAT = 7


def _programs(
    inputs: list[Any],
    data_vars: list[Any],
    logp_out: list[Any],
    constrained: list[Any],
    start: list[Any],
    *,
    draws: int,
    tune: int,
    target_accept: float,
    shapes: list[tuple[int, ...]],
    rescaled: Sequence[tuple[int, int]] = (),
) -> dict[str, Callable[..., Any]]:
    r"""The JAX functions of one model structure; each chain runs ``init`` then ``steps`` repeatedly.

    - ``start(args)``: the initial point (the model's coordinates; data alone);
    - ``init(root_key, chain, point, args, inverse_mass, step_size)``: numpyro's NUTS state
      (random key: ``root_key`` folded with ``chain``; the given initial step size and diagonal
      inverse mass matrix, adapted over ``tune`` steps with numpyro's windowed scheme to
      ``target_accept``, maximum tree depth 10);
    - ``steps(state, args, n)``: ``n`` (at most ``L = _chunks(draws)[0]``, a traced count) NUTS
      steps; returns the new state, the constrained variables and the statistics :data:`_STATS`
      of each step (``L`` rows, the first ``n`` valid).

    A chain is cut into calls of ``steps`` (tuning and draws alike; a few dozen per chain) so that
    a progress bar can follow it; the random stream lives in the state, so the draws are those of
    one uninterrupted loop. One program for tuning and drawing: each program costs a trace, an
    export and an XLA compilation on a first fit.

    NUTS moves one flat vector (the parameters raveled in order; ``shapes``, filled in from the
    initial point before ``init`` and ``steps`` are traced, unravels it): numpyro's per-step work
    on a list of arrays is one small kernel per array; on the Guatemalan GLMM (5 arrays, 1,766
    numbers) a chain of 2,000 steps took 2.98 s instead of 3.30 s and compiled 0.9 s faster.

    With ``rescaled`` pairs ``(e, k)`` (positions in the parameter list: an effect and the log of
    its sd), NUTS moves :math:`y` and the model sees :math:`x_e = y_e \odot e^{-a_e y_k}` (the
    flat exponents :math:`a`, zero or in :math:`[0, 1)`, are the last element of ``args`` in
    ``init`` and ``steps``; every other parameter as it is): for a standardised effect
    :math:`z_m` with sd :math:`s = e^{y_k}` it samples :math:`\tilde z_m = z_m s^{a_m}`,
    partially centred (:func:`_partial_centring`). The potential adds the log Jacobian,
    :math:`U_y(y) = U_x(x) + \sum_{(e, k)} y_k \sum_m a_{e,m}`; with :math:`a = 0` it is the
    model's own.
    """
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    logp_fn = _jaxify(inputs, logp_out)
    post_fn = _jaxify(inputs, constrained)
    start_fn = _jaxify(data_vars, start)
    length, _ = _chunks(draws)

    def unravel(flat: Any) -> list[Any]:
        parts, at = [], 0
        for shape in shapes:
            size = int(np.prod(shape, dtype=np.int64))
            parts.append(flat[at : at + size].reshape(shape))
            at += size
        return parts

    def model_point(y: Any, args: tuple) -> tuple[list[Any], Any, tuple]:
        """``(x, log |dx/dy|, data)`` for the sampler's point ``y`` (``x`` unravelled)."""
        parts = unravel(y)
        if not rescaled:
            return parts, 0.0, args
        *data, a = args
        exponents = unravel(a)
        log_det = 0.0
        for effect, scale in rescaled:
            parts[effect] = parts[effect] * jnp.exp(-exponents[effect] * parts[scale])
            log_det = log_det - parts[scale] * jnp.sum(exponents[effect])
        return parts, log_det, tuple(data)

    def potential_gen(*args: Any) -> Callable[[Any], Any]:
        def potential(y: Any) -> Any:
            x, log_det, data = model_point(y, args)
            return -logp_fn(*x, *data)[0] - log_det

        return potential

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")

    def init(root_key: Any, chain: Any, point: Any, args: tuple, inverse_mass: Any, step_size: Any) -> Any:
        rng_key = jax.random.fold_in(root_key, chain)
        flat = jnp.concatenate([jnp.ravel(p) for p in point])
        return init_kernel(
            flat,
            num_warmup=tune,
            step_size=step_size,
            inverse_mass_matrix=inverse_mass,
            target_accept_prob=target_accept,
            model_args=args,
            rng_key=rng_key,
        )

    def steps(state: Any, args: tuple, n: Any) -> tuple[Any, list, tuple]:
        def step(s: Any, i: Any) -> tuple[Any, tuple]:
            s = jax.lax.cond(i < n, lambda t: sample_kernel(t, model_args=args), lambda t: t, s)
            stats = (s.potential_energy, s.energy, s.num_steps, s.accept_prob, s.diverging, s.adapt_state.step_size)
            x, _, data = model_point(s.z, args)
            return s, (post_fn(*x, *data), stats)

        state, (post, stats) = jax.lax.scan(step, state, jnp.arange(length))
        return state, post, stats

    return {
        "start": lambda args: start_fn(*args),
        "init": init,
        "steps": steps,
    }


def _chunks(n: int, target: int = 50) -> tuple[int, int]:
    """``(length, count)``: ``n`` steps in ``count`` calls of at most ``length`` (about ``target``) steps."""
    count = max(1, -(-n // target))
    return -(-n // count), count


def _register_states() -> None:
    """Let ``jax.export`` serialise numpyro's state (named tuples) in a program's arguments and results."""
    from jax import export
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    for cls in (HMCState, HMCAdaptState):
        try:
            export.register_namedtuple_serialization(cls, serialized_name=f"numpyro.{cls.__name__}")
        except ValueError:  # registered already (a second call in this process)
            pass


def sample_numpyro(
    model: Any,
    *,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int | Sequence[int] | None,
    target_accept: float,
    cores: int | None = None,
    progressbar: bool | str = False,
    rescale: Mapping[str, str] | None = None,
) -> Any:
    """Draw with numpyro's NUTS, compiled once per model structure; PyMC's result layout.

    The chains run in ``cores`` threads (default: as many as chains and available CPUs): a
    compiled JAX program releases Python's lock while it runs, so the chains run in parallel,
    and each chain's draws do not depend on how many run at once. ``progressbar`` (any true
    value) shows one bar for all chains (NUTS steps, tuning included; divergences so far).

    ``rescale`` maps standardised random effects to their sds (``{"z_g": "sd_g"}``, an sd with
    PyMC's log transform): with at least :data:`PILOT` tuning steps, each chain first runs
    :data:`PILOT` steps as usual, then samples those effects partially centred
    (:func:`_partial_centring`) from where the pilot ended, with its step size and mass matrix,
    through ``tune`` tuning steps and the draws. The draws are of the same posterior.

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` (the constrained variables), ``sample_stats`` (``lp`` (the log
        density), ``energy``, ``diverging``, ``n_steps``, ``tree_depth``, ``reached_max_treedepth``,
        ``acceptance_rate``, ``step_size``), ``observed_data`` and ``constant_data``, as ``pm.sample`` gives them.
    """
    import jax
    import numpyro
    import pymc as pm
    import pymc.sampling.jax
    from arviz_base import from_dict, make_attrs
    from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations
    from pymc.util import _get_seeds_per_chain

    enable_compilation_cache()
    _register_states()
    try:
        compiled, data, constrained = _compile(
            model, draws=draws, tune=tune, target_accept=target_accept, rescale=rescale
        )
    except _Unsupported:
        return pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=random_seed,
            target_accept=target_accept,
            nuts_sampler="numpyro",
            progressbar=False,
            compute_convergence_checks=False,
            model=model,
        )
    # device_put, not jnp.asarray (a small compiled program per array), and the random key
    # built here as jax.random.PRNGKey(seed) builds it: programs are loaded, not compiled
    args = tuple(jax.device_put(np.asarray(d)) for d in data)
    (seed,) = _get_seeds_per_chain(random_seed, 1)
    seeds = _get_seeds_per_chain(seed, chains)
    base = [np.asarray(v) for v in compiled.get("start", args)(args)]
    compiled.point_shapes[:] = [np.shape(v) for v in base]
    scale_of = _scale_index(base, compiled.rescaled) if compiled.rescaled else None
    if scale_of is not None:  # the exponents a: zero (the model's coordinates) until a pilot sets them
        args = (*args, np.zeros(scale_of.size))
    root_key = np.array([(int(seed) >> 32) & 0xFFFFFFFF, int(seed) & 0xFFFFFFFF], dtype=np.uint32)
    init_p, steps_p = _load_programs(compiled, root_key, base, args)
    started = time.perf_counter()
    states = _jittered(init_p, root_key, base, args, seeds)
    runs = _run_chains(
        init_p,
        steps_p,
        root_key,
        states,
        args,
        scale_of,
        compiled.point_shapes,
        draws=draws,
        tune=tune,
        cores=cores,
        progressbar=progressbar,
    )
    post = [np.stack([np.asarray(r[0][i]) for r in runs]) for i in range(len(runs[0][0]))]
    stats = {k: np.stack([np.asarray(r[1][k]) for r in runs]) for k in runs[0][1]}
    elapsed = time.perf_counter() - started
    n_steps = stats["n_steps"].astype(np.int64)
    sample_stats = {
        "acceptance_rate": stats["accept"],
        "diverging": stats["diverging"].astype(bool),
        "energy": stats["energy"],
        "lp": -stats["potential"],
        "n_steps": n_steps,
        "reached_max_treedepth": n_steps >= 2**_MAX_TREE_DEPTH - 1,
        "step_size": stats["step_size"],
        "tree_depth": np.log2(np.maximum(n_steps, 1)).astype(np.int64) + 1,
    }
    coords, dims = coords_and_dims_for_inferencedata(model)
    groups: dict[str, Any] = {"posterior": dict(zip(constrained, post, strict=True)), "sample_stats": sample_stats}
    observed = find_observations(model)
    if observed:
        groups["observed_data"] = observed
    constant = find_constants(model)
    if constant:
        groups["constant_data"] = constant
    run_attrs: dict[str, Any] = {"sampling_time": elapsed, "tuning_steps": tune}
    if compiled.rescaled:
        run_attrs["pilot_steps"] = PILOT
        run_attrs["partially_centred"] = ",".join(model.value_vars[e].name for e, _ in compiled.rescaled)
    attrs = {"posterior": make_attrs(run_attrs, inference_library=numpyro)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found chain dimension to be longer than draw dimension")
        return from_dict(data=groups, coords=coords, dims=dims, sample_dims=["chain", "draw"], attrs=attrs)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


#: Tuning steps of the pilot that sets the partial centring of rescaled effects (``rescale``):
#: numpyro's first two mass-matrix windows end there (after 75 + 25 + 50 steps, the last 50
#: steps' variances), so the pilot's mass matrix is a variance estimate.
PILOT = 150
#: The pilot runs only when ``tune`` is at least this (shorter tuning: no rescaling).
PILOT_MIN_TUNE = 300


def _partial_centring(variance: np.ndarray) -> np.ndarray:
    r"""The exponents :math:`a = 1 - w` of partially centred effects from their pilot variances.

    For a standardised effect :math:`z_m = u_m / s` the sampler moves
    :math:`\tilde z_m = z_m s^{a_m} = u_m / s^{w_m}`, with prior :math:`N(0, s^{2a_m})`: with
    :math:`w_m = 1` non-centred, :math:`w_m = 0` centred. Papaspiliopoulos, Roberts and Sköld
    (2003) take :math:`w_m` as the share of :math:`u_m`'s posterior variance its prior accounts
    for, i.e. the posterior variance of :math:`z_m`, :math:`v_m \le 1`. On the Guatemalan GLMM
    (Bernoulli, 1-3 children per mother; mother effects partially centred with :math:`v_m` from
    a completed non-centred fit) :math:`w_m = v_m` raised the smallest bulk ESS from 608 to 811
    at seed 1 and :math:`w_m = \sqrt{v_m}` (less centred) to 1,528 (1,114 at seed 2, against
    676), so :math:`w_m = \sqrt{v_m}`, clipped to :math:`[0, 1]`. A weight that follows the
    sampled :math:`s` instead of a fixed one (:math:`w_m = 1/(1 + c s^2 n_m)`) made the geometry
    worse (ESS 21-202).
    """
    return 1.0 - np.sqrt(np.clip(variance, 0.0, 1.0))


def _load_programs(
    compiled: _Compiled, root_key: np.ndarray, point: list[np.ndarray], args: tuple
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The ``init`` and ``steps`` programs, compiled at once in two threads.

    Both are exported first (traced in this thread; ``steps``' example state is the abstract
    output of ``init``'s export), then ``init`` compiles in a worker while this thread compiles
    ``steps``: XLA's compilation releases Python's lock. On a first fit of the 200,000-row
    nested model the two took 0.47 s and 0.94 s one after the other and 1.2 s at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    import jax

    ones = np.ones(sum(int(np.size(v)) for v in point))
    example = (root_key, np.int32(0), point, args, ones, np.float64(1.0))
    exported = compiled.exported("init", *example)
    if exported is not None:
        avals = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in exported.out_avals]
        state = jax.tree.unflatten(exported.out_tree, avals)
    else:
        state = jax.eval_shape(compiled._python_program("init"), *example)
    compiled.exported("steps", state, args, np.int32(1))  # traced before either compiles: no contention
    with ThreadPoolExecutor(max_workers=1) as pool:
        init_future = pool.submit(compiled.get, "init", *example)
        pool.submit(_first_xarray_object)  # after init, while steps compiles (the longer of the two)
        steps_p = compiled.get("steps", state, args, np.int32(1))
        return init_future.result(), steps_p


def _first_xarray_object() -> None:
    """Make a first (tiny) xarray object, so that xarray loads the array libraries it knows.

    On its first array in a process, xarray imports every duck-array library that is installed
    (dask, sparse, cupy, pint): 0.2-0.3 s where dask or sparse is (0.22 s with hierbayes's
    ``dask`` extra; sparse, with bambi, 0.17 s plus numba). :func:`_load_programs` calls this
    in its worker while XLA compiles ``steps`` in the other thread, so that the posterior made
    after sampling does not wait for those imports.
    """
    import xarray as xr

    xr.DataArray(np.zeros(1), coords={"draw": np.arange(1)}, dims=["draw"])


def _run_chains(
    init_p: Callable[..., Any],
    steps_p: Callable[..., Any],
    root_key: np.ndarray,
    states: list[Any],
    args: tuple,
    scale_of: np.ndarray | None,
    shapes: Sequence[tuple[int, ...]],
    *,
    draws: int,
    tune: int,
    cores: int | None,
    progressbar: bool | str,
) -> list[tuple[list[np.ndarray], dict[str, np.ndarray]]]:
    """Run every chain (in threads) from its initial state; per chain the constrained draws and the statistics.

    ``scale_of`` (:func:`_scale_index`; ``None`` when no effect is rescaled) says which entry of
    the flat parameter vector scales which: each chain then runs a pilot of :data:`PILOT`
    steps, the exponents are set from the pooled variances and the chain restarts from the
    pilot's end in the new coordinates (``args``' last element, the exponents, was zero);
    ``shapes`` are the parameters' shapes, to cut the flat vector into the program's point.
    """
    from concurrent.futures import ThreadPoolExecutor

    chains = len(states)
    length, _ = _chunks(draws)
    pilot = PILOT if scale_of is not None else 0
    progress = _Progress(chains * (pilot + tune + draws), enabled=bool(progressbar))

    def advance(s: Any, chain_args: tuple, total: int) -> Any:
        done = 0
        while done < total:
            n = min(length, total - done)
            s, _, _ = steps_p(s, chain_args, np.int32(n))
            s.i.block_until_ready()
            done += n
            progress.advance(n)
        return s

    def pilot_run(c: int) -> Any:
        return advance(states[c], args, pilot)

    def one(c: int) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        s = advance(states[c], chain_args, tune)
        posts: list[list[np.ndarray]] = []
        stats: list[list[np.ndarray]] = []
        done = 0
        while done < draws:
            n = min(length, draws - done)
            s, post, st = steps_p(s, chain_args, np.int32(n))
            posts.append([np.asarray(v)[:n] for v in post])
            stats.append([np.asarray(v)[:n] for v in st])
            done += n
            progress.advance(n, int(np.sum(stats[-1][4])))
        post_all = [np.concatenate([p[i] for p in posts]) for i in range(len(posts[0]))]
        st_all = [np.concatenate([st[i] for st in stats]) for i in range(len(_STATS))]
        return post_all, dict(zip(_STATS, st_all, strict=True))

    workers = max(1, min(chains, cores if cores is not None else available_cpus()))
    chain_args = args
    with progress, ThreadPoolExecutor(max_workers=workers) as pool:
        run = map if workers == 1 else pool.map
        if pilot:
            assert scale_of is not None
            size = scale_of.size
            piloted = list(run(pilot_run, range(chains)))
            # the chains' variance estimates pooled: 4 x 50 draws, not 50
            variance = np.mean([np.asarray(p.adapt_state.inverse_mass_matrix) for p in piloted], axis=0)
            a = _partial_centring(variance)
            # non-centred (a = 0) where the estimate is not a number
            a = np.where((scale_of != np.arange(size)) & np.isfinite(a), a, 0.0)
            chain_args = (*args[:-1], a)
            for c, p in enumerate(piloted):
                log_scale = a * np.asarray(p.z)[scale_of]
                y = np.asarray(p.z) * np.exp(log_scale)
                inverse_mass = np.asarray(p.adapt_state.inverse_mass_matrix) * np.exp(2.0 * log_scale)
                step = np.float64(p.adapt_state.step_size)
                # a key of its own (fold_in with chains + c): the pilot used fold_in with c
                point = _unflatten(y, shapes)
                states[c] = init_p(root_key, np.int32(chains + c), point, chain_args, inverse_mass, step)
        return list(run(one, range(chains)))


def _offsets(point: list[np.ndarray]) -> list[int]:
    """Where each array of ``point`` starts in the flat vector."""
    return [int(v) for v in np.cumsum([0] + [np.size(p) for p in point[:-1]])]


def _unflatten(flat: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """The flat vector ``flat`` cut into arrays of ``shapes`` (numpy, on the host)."""
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
    ends = np.cumsum(sizes)
    return [flat[end - size : end].reshape(shape) for end, size, shape in zip(ends, sizes, shapes, strict=True)]


class _Progress:
    """One progress bar (``rich``, on standard error) for all chains, advanced from the chains' threads."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        import threading

        self._lock = threading.Lock()
        self._enabled = enabled
        self._total = total
        self._divergences = 0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self._enabled:
            import sys

            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("Sampling (numpyro)"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"),
                TextColumn("{task.fields[divergences]} divergences"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("sampling", total=self._total, divergences=0)
        return self

    def advance(self, steps: int, divergences: int = 0) -> None:
        if self._bar is None:
            return
        with self._lock:
            self._divergences += divergences
            self._bar.update(self._task, advance=steps, divergences=self._divergences)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _jittered(
    init_p: Callable[..., Any], root_key: np.ndarray, base: list[np.ndarray], args: tuple, seeds: Sequence[int]
) -> list[Any]:
    """Each chain's initial NUTS state, at PyMC's initial point ``base`` plus uniform jitter on :math:`[-1, 1]`.

    As PyMC's ``_init_jitter``: a point whose log density is not finite is drawn again (with a
    new seed from the chain's generator), up to 10 times; then the last one is used. The log
    density is the potential of the state ``init`` makes (unit mass matrix and step size), so
    no separate program computes it.
    """
    ones, unit = np.ones(sum(int(np.size(v)) for v in base)), np.float64(1.0)
    states = []
    for chain, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        for _ in range(_JITTER_RETRIES + 1):
            point = [v + rng.uniform(-1, 1, size=v.shape) for v in base]
            state = init_p(root_key, np.int32(chain), point, args, ones, unit)
            if np.isfinite(float(state.potential_energy)):
                break
        states.append(state)
    return states


#: The sampler statistics collected per draw, in the order ``one_chain`` returns them.
_STATS = ("potential", "energy", "n_steps", "accept", "diverging", "step_size")

#: numpyro's default maximum tree depth (a tree of that depth takes 2**depth - 1 leapfrog steps).
_MAX_TREE_DEPTH = 10

#: Attempts to find a jittered starting point with a finite log density (PyMC's ``jitter_max_retries``).
_JITTER_RETRIES = 10
