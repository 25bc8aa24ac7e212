"""``hb.fit``: the thin pipeline spec -> design -> model -> draws -> diagnostics.

Every stage can be called alone (:func:`hierbayes.parse_formula`, :func:`hierbayes.make_design`,
:func:`hierbayes.build_model`, :func:`hierbayes.inference.sampling`, :func:`hierbayes.diagnose`);
:func:`fit` only chains them and keeps what a later summary, report or reload needs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from hierbayes.aggregate import aggregate_counts
from hierbayes.design import Design, make_design
from hierbayes.design_dask import is_dask_input, make_design_dask
from hierbayes.families import get_family
from hierbayes.inference.build import build_model, rescaled_effects, var_names
from hierbayes.inference.collapsed.build import add_random_effects, build_collapsed_model, collapses_crossed
from hierbayes.inference.diagnostics import diagnose, warn_if_problems
from hierbayes.inference.pointwise import add_log_likelihood, add_posterior_predictive
from hierbayes.inference.quadrature import Method, add_integrated_effects, build_quadrature_model, choose_method
from hierbayes.inference.result import Fit, move_internal
from hierbayes.inference.sampling import Sampler, reproducible_compilation, resolve_sampler, sample
from hierbayes.spec.formula import parse_formula
from hierbayes.spec.model import ModelSpec
from hierbayes.spec.priors import Priors

__all__ = ["Fit", "fit", "prior_predictive", "to_spec", "versions"]

#: PyMC's progress-bar layouts, accepted by ``hb.fit(progressbar=...)`` as they are.
ProgressBar = Literal["combined", "split", "combined+stats", "stats+combined", "split+stats", "stats+split"]
_PROGRESS_MIN_COLUMNS = 90

# No handler is attached here (the logging docs' advice for libraries): applications choose.
# The one-line note on the method taken is also shown with the progress output (progressbar=True).
_log = logging.getLogger("hierbayes")


def _jax_cannot(err: BaseException) -> bool:
    """Whether ``err`` says that JAX lacks an operation or a derivative (not a bug of the model).

    PyTensor raises ``NotImplementedError`` for an operation without a JAX translation; JAX raises
    ``ValueError("... gradient with respect to ... not supported")`` (e.g. ``betainc`` in the
    negative binomial's cumulative probability of a hurdle model).
    """
    text = str(err)
    return isinstance(err, NotImplementedError) or "not supported" in text or "No JAX conversion" in text


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a fit depends on."""
    out = {"python": platform.python_version()}
    for pkg in ("hierbayes", "pymc", "pytensor", "arviz", "numpy", "pandas", "xarray", "formulaic", "nutpie"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def to_spec(
    model: str | ModelSpec,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: Priors | None = None,
) -> ModelSpec:
    """Turn a formula string or a spec (plus optional family/link/priors) into a spec."""
    if isinstance(model, ModelSpec):
        spec = model
        if priors is not None:
            spec = spec.with_priors(priors)
        if (family is not None and family != spec.family) or (link is not None and link != spec.link):
            raise ValueError(
                "family= and link= apply to formula strings; this ModelSpec already has family "
                f"{spec.family!r} and link {spec.link!r}. Build the spec with the family you want."
            )
        return spec
    return parse_formula(model, family=family or "gaussian", link=link, priors=priors)


def fit(
    model: str | ModelSpec,
    data: pd.DataFrame | str | Any,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: Priors | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    target_accept: float = 0.8,
    sampler: Sampler = "auto",
    progressbar: bool | ProgressBar = True,
    cores: int | None = None,
    dropna: bool = False,
    method: Method = "auto",
    store_random_effects: bool = True,
    log_likelihood: bool = False,
    posterior_predictive: bool = False,
    crossed: bool = False,
) -> Fit:
    """Fit a Bayesian multilevel model with NUTS.

    Parameters
    ----------
    model
        An lme4-style formula (``"y ~ x + (1 | school/child)"``) or a :class:`ModelSpec`
        from a builder.
    data
        The data frame; or, for data that do not fit in memory, a ``dask.dataframe.DataFrame``
        or a path/glob of Parquet files (``"data/*.parquet"``, read lazily; needs
        ``pip install "hierbayes[dask]"``). Dask data are reduced to sufficient statistics on the
        active ``dask.distributed`` client (or a ``LocalCluster`` sized to the machine) and fitted
        by the collapsed method: Gaussian models with one grouping factor or two nested ones.
        Row-level summaries of such a fit (posterior predictive checks, pointwise
        log-likelihood) use a seeded random sample of the rows (``fit.design``), as the fit's
        note says. Bernoulli/binomial and Poisson (log link) rows on Dask are aggregated
        exactly into counts per distinct covariates and groups
        (:func:`hierbayes.aggregate.aggregate_counts`) and fitted in memory.
    family, link
        For formula strings: ``"gaussian"`` (default), ``"bernoulli"``, ``"binomial"``,
        ``"poisson"``, ``"negative_binomial"`` and their links.
    priors
        :class:`hierbayes.Priors`; ``None`` keeps the spec's (by default scaled to the data).
    draws, tune, chains, random_seed, target_accept, sampler, cores
        Passed to :func:`hierbayes.inference.sampling`. GLMMs fitted by the full model with
        numpyro (the default sampler) and ``tune >= 300`` sample their one-coefficient random
        effects partially centred: each chain first runs a pilot of 150 tuning steps, whose
        variances set how far each level's effect is centred, then its ``tune`` tuning steps
        and ``draws`` draws (:func:`hierbayes.inference.jax_nuts.sample_numpyro`; same model,
        same variables; ``fit.settings["partially_centred"]`` names the effects). On the
        Guatemalan immunisation model the smallest effective sample size went from 608, 676
        and 674 (seeds 1-3) to 1,303, 1,409 and 828.
    progressbar
        ``True`` (default): one progress bar for all chains (PyMC's ``"combined"``: draws, speed,
        time; divergences are reported after sampling) in a terminal at least 90 columns wide and
        in Jupyter; elsewhere (a log file, CI, a narrow terminal), where a live table would be cut
        to ``Dive…`` and ``0.00 draw…``, one plain line when sampling starts and one when it ends.
        ``False``: nothing. PyMC's layouts by name: ``"split"``, ``"combined+stats"``, ...
        (numpyro, the default sampler, shows one bar for all chains with the divergences so far,
        whatever the layout).
    dropna
        Drop (and report) rows with missing values instead of raising an error.
    method
        ``"auto"`` (default): the collapsed sampler (:mod:`hierbayes.inference.collapsed.build`:
        random effects integrated out, then drawn exactly) for every Gaussian model with one
        grouping factor or two nested ones, the full non-centred model otherwise; the choice
        is logged in one line and kept in ``settings["method"]``. ``"quadrature"``
        (:mod:`hierbayes.inference.quadrature`; Bernoulli/binomial with logit link and Poisson
        with log link, when the factor with the most levels has a random intercept only)
        integrates those intercepts out by adaptive Gauss-Hermite quadrature and draws them
        exactly afterwards: better mixing per draw (no funnel), but a costlier gradient, so
        ``"auto"`` does not pick it (see ``quadrature.AUTO_PICKS_QUADRATURE``).
        ``"collapsed"``, ``"quadrature"`` or ``"full"`` force one. For lme4-style REML/ML point
        estimates with BLUPs (no sampling) use :func:`hierbayes.empirical_bayes`.
    store_random_effects
        Collapsed method only (the quadrature path always stores them): store the exact draws
        of the random effects ``u_<g>`` (``chains * draws * levels * terms * 8`` bytes). ``False`` keeps only the other
        parameters; draw them later with :func:`hierbayes.inference.collapsed.build.random_effect_draws`.
    log_likelihood
        Add the pointwise log-likelihood as ``fit.idata["log_likelihood"]`` (see
        :func:`hierbayes.add_log_likelihood`), for ``arviz_stats.loo(fit.idata)``.
    posterior_predictive
        Add replicated responses as ``fit.idata["posterior_predictive"]`` (see
        :func:`hierbayes.add_posterior_predictive`; seeded from ``random_seed``), for
        ``arviz_plots.plot_ppc_dist(fit.idata)``.
    crossed
        Declare separately listed grouping factors crossed (subjects x items): no
        :class:`~hierbayes.NestingWarning` (see :func:`hierbayes.make_design`).

    Returns
    -------
    Fit

    Examples
    --------
    >>> import hierbayes as hb
    >>> df = hb.datasets.load("sleepstudy")
    >>> fit = hb.fit("Reaction ~ Days + (Days | Subject)", df, random_seed=1)  # doctest: +SKIP
    >>> print(hb.summary(fit))  # doctest: +SKIP
    """
    spec = to_spec(model, family=family, link=link, priors=priors)
    if method in ("reml", "ml"):
        raise ValueError(
            f"method={method!r} gives point estimates, not a posterior: use "
            f"hb.empirical_bayes(model, data, method={method!r})."
        )
    if random_seed is None:  # draw one and record it, so the fit can be reproduced
        random_seed = int(np.random.SeedSequence().generate_state(1)[0])
    aggregated = None
    if is_dask_input(data) and not get_family(spec.family).collapses:
        rows = spec
        spec, frame = aggregate_counts(spec, data, progressbar=bool(progressbar))
        design = make_design(spec, frame, dropna=dropna)
        aggregated = (
            f"hierbayes: the {rows.family} rows of the Dask data were aggregated exactly into {len(frame)} rows "
            f"({spec.family} counts per distinct covariates and groups); row-level summaries refer to these rows."
        )
    elif is_dask_input(data):
        if method == "full":
            _dask_note(None, "full", "")  # refused before a pass over the data
        design = make_design_dask(spec, data, dropna=dropna, random_seed=random_seed, progressbar=bool(progressbar))
    else:
        design = make_design(spec, data, dropna=dropna, crossed=crossed)
    chosen, note, n_nodes = choose_method(design, method)
    if design.statistics is not None:
        note = _dask_note(design, chosen, note)
    if aggregated is not None:
        note = f"{note} {aggregated}"
    _log.info(note)
    if progressbar:
        print(note, file=sys.stderr)
    with _no_creation_traces():  # PyMC's graphs, PyTensor's rewrites, the samplers' compilation
        if chosen == "collapsed":
            pm_model = build_collapsed_model(design)
        elif chosen == "quadrature":
            pm_model = build_quadrature_model(design, n_nodes=n_nodes)
        else:
            pm_model = build_model(design)
        backend = resolve_sampler(sampler)
        bar = _progress_display(progressbar)
        if progressbar is True and bar is False:
            _log.info(f"hierbayes: sampling {chains} chain(s) x {tune} tuning + {draws} draws with {backend} ...")
        started = time.perf_counter()
        if cores is None and backend == "numpyro" and chosen == "collapsed" and collapses_crossed(design):
            # numpyro's chains run in threads; two chains of the crossed collapsed likelihood (a dense
            # Schur complement per gradient) ran slower at once than one after the other (subjects x
            # items benchmark, 4 x 2000 steps: 29.6 s in 2 threads, 14.0 s in 1), unlike every other case
            cores = 1
        run: dict[str, Any] = {
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "random_seed": random_seed,
            "cores": cores,
        }
        if chosen == "full":
            run["rescale"] = rescaled_effects(design)
        with _no_blas_warning():
            try:
                idata = sample(pm_model, target_accept=target_accept, sampler=backend, progressbar=bar, **run)  # type: ignore[arg-type]
            except (NotImplementedError, ValueError) as err:
                if sampler != "auto" or backend != "numpyro" or not _jax_cannot(err):
                    raise
                # JAX lacks a derivative or an operation this model needs: the next backend of "auto"
                fallback = resolve_sampler("nutpie")
                note = (
                    f"hierbayes: JAX cannot differentiate this model ({str(err).splitlines()[0]}); "
                    f"sampling with {fallback} instead."
                )
                _log.info(note)
                if progressbar:
                    print(note, file=sys.stderr)
                backend = fallback
                idata = sample(pm_model, target_accept=target_accept, sampler=backend, progressbar=bar, **run)  # type: ignore[arg-type]
    if progressbar is True and bar is False:
        _log.info(f"hierbayes: sampled in {time.perf_counter() - started:.1f} s.")
    if chosen == "collapsed":
        idata = add_random_effects(idata, design, random_seed=random_seed, store_random_effects=store_random_effects)
    elif chosen == "quadrature":
        idata = add_integrated_effects(idata, design, random_seed=random_seed)
    names = var_names(design)
    check = names["fixed"] + names["sd"] + names["corr"] + names["other"]
    centered = [g.name for g in design.groups if g.term.centered]
    diagnostics = diagnose(idata, check, centered_terms=centered)
    warn_if_problems(diagnostics)
    settings = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "random_seed": random_seed,
        "target_accept": target_accept,
        "sampler": backend,
        "method": chosen,
        **({"quadrature_nodes": n_nodes} if chosen == "quadrature" else {}),
        **_partial_centring_settings(idata),
        **({"rows": design.n_total, "row_sample": design.n_obs} if design.statistics is not None else {}),
        "store_random_effects": store_random_effects or chosen != "collapsed",
        "versions": versions(),
    }
    idata = move_internal(idata)  # az.summary(fit.idata) shows only interpretable parameters
    result = Fit(spec=spec, design=design, idata=idata, settings=settings, diagnostics=diagnostics)
    if log_likelihood:
        add_log_likelihood(result)
    if posterior_predictive:
        add_posterior_predictive(result)
    return result


def _partial_centring_settings(idata: xr.DataTree) -> dict[str, Any]:
    """``{"partially_centred": [...], "pilot_steps": n}`` when numpyro rescaled effects, else ``{}``."""
    attrs = idata["posterior"].attrs
    if not attrs.get("partially_centred"):
        return {}
    return {"partially_centred": str(attrs["partially_centred"]).split(","), "pilot_steps": int(attrs["pilot_steps"])}


def _progress_display(progressbar: bool | ProgressBar) -> bool | ProgressBar:
    """What PyMC is asked to show for ``progressbar`` (see :func:`fit`)."""
    if progressbar is not True:
        return progressbar
    if "ipykernel" in sys.modules:  # Jupyter renders the bar as HTML, at any width
        return "combined"
    try:
        width = os.get_terminal_size(sys.stderr.fileno()).columns if sys.stderr.isatty() else 0
    except (OSError, ValueError):  # no terminal, or stderr replaced by an object without a file
        width = 0
    return "combined" if width >= _PROGRESS_MIN_COLUMNS else False


@contextlib.contextmanager
def _no_blas_warning() -> Iterator[None]:
    """Silence PyTensor's "could not link to a BLAS installation" warning, which does not apply here.

    PyTensor warns (three lines, on the first C compilation of each process) when it finds no
    system BLAS (``libblas`` + ``libcblas``, OpenBLAS or MKL) to link its C backend to, which is
    the case for a plain ``pip install``. The samplers hierbayes uses run compiled numba or JAX
    code, whose matrix products use numpy's own BLAS; PyTensor's C backend only evaluates the
    model's starting point and the prior predictive, so the warning announces a slowdown that
    does not happen. ``make blas`` (``libopenblas-dev`` and ``PYTENSOR_FLAGS=blas__ldflags=-lopenblas``)
    links it anyway; see the FAQ in the docs (getting started).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "PyTensor could not link to a BLAS installation", UserWarning)
        yield


@contextlib.contextmanager
def _no_creation_traces() -> Iterator[None]:
    """Build graphs without PyTensor's record of where each variable was created.

    PyTensor keeps, for every variable and node it creates, the last frames of the Python stack
    (``traceback__limit``, 8 by default), for error messages that point at the user's line. The
    graphs of ``hb.fit`` are made by hierbayes and PyMC, not written by the user, and collecting
    those stacks took a quarter of the time of building and lifting the sleepstudy model (about
    0.25 s of a 2.0 s warm fit, in PyMC's graph, PyTensor's rewrites and the JAX translation).
    A limit the user set (anything but PyTensor's default) is kept.
    """
    import pytensor

    if pytensor.config.traceback__limit != _PYTENSOR_TRACEBACK_DEFAULT:
        yield
        return
    with pytensor.config.change_flags(traceback__limit=0):
        yield


#: PyTensor's default ``traceback__limit``.
_PYTENSOR_TRACEBACK_DEFAULT = 8


def _dask_note(design: Design | None, chosen: str, note: str) -> str:
    if chosen != "collapsed":
        raise ValueError(
            f"Dask data are fitted from sufficient statistics by the collapsed method; method={chosen!r} "
            "needs every row in memory. Use method='auto', or fit a sample in memory."
        )
    assert design is not None
    return (
        f"{note} Sufficient statistics of {design.n_total} rows computed with Dask; row-level summaries "
        f"(posterior predictive, pointwise log-likelihood) use a seeded random sample of {design.n_obs} rows."
    )


def prior_predictive(
    model: str | ModelSpec | Fit,
    data: pd.DataFrame | None = None,
    *,
    family: str | None = None,
    link: str | None = None,
    priors: Priors | None = None,
    draws: int = 500,
    random_seed: int | None = None,
) -> xr.DataTree:
    """Draw parameters and data from the prior (for prior predictive checks).

    Parameters
    ----------
    model
        A formula or spec (with ``data``), or a :class:`Fit`: then the fit's own design and
        priors are used and the groups ``prior`` and ``prior_predictive`` are also put into
        ``fit.idata`` (ArviZ's names), next to its posterior, for ``arviz_plots`` and
        ``arviz_stats.psense``.
    data
        The data frame (not used with a ``Fit``).
    family, link, priors
        As for :func:`fit` (formula strings only).
    draws
        Number of prior draws.
    random_seed
        Seed; ``None`` with a ``Fit`` uses the fit's own seed.

    Returns
    -------
    xarray.DataTree
        Groups ``prior`` (parameters) and ``prior_predictive`` (replicated ``y``).
    """
    if isinstance(model, Fit):
        if random_seed is None:
            random_seed = model.settings.get("random_seed")
        with build_model(model.design):
            tree = pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
        for group in ("prior", "prior_predictive"):
            model.idata[group] = xr.DataTree(tree[group].to_dataset())
        return tree
    if data is None:
        raise ValueError("prior_predictive needs data= with a formula or spec (or pass a fitted hb.Fit).")
    spec = to_spec(model, family=family, link=link, priors=priors)
    design = make_design(spec, data)
    with build_model(design), reproducible_compilation(), _no_blas_warning():  # same draws, cold or warm cache
        return pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
