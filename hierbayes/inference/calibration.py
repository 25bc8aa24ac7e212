r"""Simulation-based calibration (SBC): does the sampler recover the prior, rank by rank.

Talts, Betancourt, Simpson, Vehtari and Gelman (2018), "Validating Bayesian inference algorithms
with simulation-based calibration" (arXiv:1804.06788). For a model :math:`p(\theta)\,p(y\mid\theta)`,

.. math::

    \tilde\theta \sim p(\theta), \quad \tilde y \sim p(y \mid \tilde\theta), \quad
    \theta_1, \dots, \theta_L \sim p(\theta \mid \tilde y)
    \;\Longrightarrow\;
    r = \#\{\ell : \theta_\ell < \tilde\theta\} \sim \mathrm{Uniform}\{0, 1, \dots, L\}

for every scalar parameter, because averaging the posterior over the prior predictive gives back
the prior. A sampler (or model code) that is biased, too narrow or too wide leaves a tell-tale
shape in the histogram of :math:`r` over many simulations: a slope, a U or a hump.

What :func:`check_calibration` does
-----------------------------------
1. builds the design of ``spec`` on ``data`` and resolves the priors **once**: the default priors
   are scaled to the observed response, so they are fixed here and every refit uses exactly
   the same prior (a prior that moved with each simulated :math:`\tilde y` would break the
   identity above);
2. draws ``n_sims`` parameter sets and simulated responses jointly from the prior with
   :func:`pymc.sample_prior_predictive` on the built model (the grouping structure, predictors,
   trials and offsets of ``data`` are kept; only the response is simulated);
3. refits each simulated response with nutpie (or, ``sampler="numpyro"``, with ``hb.fit``'s
   default sampler). The model is compiled once with the response as a shared variable and each
   refit swaps it in (the same as refitting a copy of the data whose response column was
   replaced, without recompiling);
4. thins the draws (every ``thin``-th draw of each chain, so they are close to independent),
   keeps :math:`L` of them with :math:`L + 1` a multiple of the number of bins, and records the
   rank of each true scalar parameter: the fixed effects ``beta``, the group sds ``sd_<g>``,
   the correlations ``corr_<g>`` (upper triangle), ``sigma`` and the negative-binomial
   ``alpha``;
5. tests each parameter's ranks for uniformity with Pearson's chi-square test on ``bins``
   equal-width bins (:func:`scipy.stats.chisquare`).

Running it
----------
>>> import hierbayes as hb
>>> df = hb.datasets.load("sleepstudy")
>>> spec = hb.random_intercept(y="Reaction", group="Subject", x="Days")
>>> cal = hb.check_calibration(spec, df, n_sims=200, random_seed=1)  # doctest: +SKIP
>>> cal.pvalues  # doctest: +SKIP
>>> cal.plot()  # doctest: +SKIP

The test suite runs it for the random-intercept, random-slope, nested and logistic builders
with ``make sbc`` (``pytest -m sbc -o addopts=""``; marked ``sbc`` and excluded from
``make test``); a 20-simulation version runs in the normal suite.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import xarray as xr
from matplotlib.figure import Figure
from pytensor.compile import SharedVariable
from pytensor.graph.traversal import graph_inputs
from scipy import stats

from hierbayes.design import make_design
from hierbayes.inference.build import build_model, rescaled_effects, var_names
from hierbayes.inference.fit import to_spec
from hierbayes.inference.priors import resolve_priors
from hierbayes.inference.quadrature import (
    NODE_CHOICES,
    SHARED_RESPONSE,
    build_quadrature_model,
    choose_nodes,
    quadrature_problem,
)
from hierbayes.inference.sampling import reproducible_compilation, resolve_sampler, sample
from hierbayes.spec.model import ModelSpec

__all__ = ["Calibration", "check_calibration"]

_SHARED_NAME = "hierbayes_sbc_y"


@dataclass(frozen=True, eq=False)
class Calibration:
    """The result of :func:`check_calibration`.

    Attributes
    ----------
    ranks
        ``(n_sims, parameters)`` integer ranks in ``0..n_draws`` (NaN for a failed refit);
        columns are scalar parameter labels such as ``beta[Days]``, ``sd_g`` (``(1 | g)``) or ``sd_Subject[Days]``.
    truth
        The parameter values drawn from the prior, same shape and labels.
    n_draws
        :math:`L`, the number of thinned posterior draws each true value is ranked among.
    bins
        Number of equal-width rank bins of the chi-square test (it divides ``n_draws + 1``).
    pvalues
        Chi-square uniformity p-value per parameter.
    sims
        Per simulation: ``divergences`` and the smallest bulk ESS over the ranked parameters.
    spec
        The model that was checked.
    """

    ranks: pd.DataFrame
    truth: pd.DataFrame
    n_draws: int
    bins: int
    pvalues: pd.Series
    sims: pd.DataFrame
    spec: ModelSpec

    @property
    def n_sims(self) -> int:
        """Number of simulations (failed refits included)."""
        return int(self.ranks.shape[0])

    def bin_counts(self) -> pd.DataFrame:
        """Number of ranks in each of the ``bins`` equal-width bins, per parameter (rows: bins)."""
        width = (self.n_draws + 1) // self.bins
        out = {}
        for col in self.ranks.columns:
            r = self.ranks[col].dropna().to_numpy(dtype=int)
            out[col] = np.bincount(r // width, minlength=self.bins)
        return pd.DataFrame(out, index=pd.RangeIndex(self.bins, name="bin"))

    def table(self) -> pd.DataFrame:
        """Per parameter: the p-value, the chi-square statistic and the smallest and largest bin count."""
        counts = self.bin_counts()
        n = self.ranks.notna().sum()
        return pd.DataFrame(
            {
                "p_value": self.pvalues,
                "chi2": [stats.chisquare(counts[c]).statistic for c in counts.columns],
                "expected_per_bin": n / self.bins,
                "min_bin": counts.min(),
                "max_bin": counts.max(),
            }
        )

    def plot(self, *, kind: Literal["hist", "ecdf"] = "hist", prob: float = 0.99) -> Figure:
        """Rank histograms (``kind="hist"``) or ECDF-difference plots (``kind="ecdf"``).

        ``"hist"``: one panel per parameter, the bin counts, the expected count and the pointwise
        ``prob`` band of a binomial count under uniformity (Talts et al. 2018, fig. 2).
        ``"ecdf"``: the difference between the ECDF of the scaled ranks and the uniform CDF with
        simultaneous bands, drawn by :func:`arviz_plots.plot_ecdf_pit`.

        Returns
        -------
        matplotlib.figure.Figure
        """
        if kind == "ecdf":
            return self._plot_ecdf()
        if kind != "hist":
            raise ValueError(f"kind must be 'hist' or 'ecdf'; received {kind!r}.")
        counts = self.bin_counts()
        labels = list(counts.columns)
        ncols = min(4, len(labels))
        nrows = math.ceil(len(labels) / ncols)
        fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False)
        edges = np.arange(self.bins + 1) * (self.n_draws + 1) / self.bins
        for ax, label in zip(axes.flat, labels, strict=False):
            n = int(self.ranks[label].notna().sum())
            lo, hi = stats.binom.interval(prob, n, 1 / self.bins)
            ax.axhspan(lo, hi, color="0.85", lw=0)
            ax.axhline(n / self.bins, color="0.4", lw=1)
            ax.stairs(counts[label].to_numpy(), edges, color="C0", lw=1.5)
            ax.set_title(f"{label}\np = {self.pvalues[label]:.3g}", fontsize=9)
            ax.set_xlim(0, self.n_draws + 1)
            ax.set_xlabel("rank")
        for ax in list(axes.flat)[len(labels) :]:
            ax.set_visible(False)
        fig.suptitle(
            f"SBC rank histograms: {self.n_sims} simulations, ranks among {self.n_draws} draws "
            f"(band: {prob:.0%} under uniformity)",
            fontsize=10,
        )
        return fig

    def _plot_ecdf(self) -> Figure:
        import arviz_plots as azp

        pit = (self.ranks + 0.5) / (self.n_draws + 1)
        ds = xr.Dataset({c: (("chain", "draw"), pit[c].dropna().to_numpy()[None, :]) for c in pit.columns})
        pc = azp.plot_ecdf_pit(xr.DataTree.from_dict({"prior_sbc": ds}), backend="matplotlib")
        fig = pc.viz["figure"].item()
        assert isinstance(fig, Figure)
        return fig


def _refitter(
    refit: pm.Model,
    shared_name: str,
    sampler: str,
    *,
    draws: int,
    tune: int,
    chains: int,
    target_accept: float,
    rescale: dict[str, str] | None = None,
) -> Callable[[np.ndarray, int], xr.DataTree]:
    """``refit_one(y, seed)``: the posterior of ``refit`` with its shared response set to ``y``.

    ``rescale``: numpyro's partially centred effects, as :func:`hierbayes.fit` passes them.
    """
    if sampler == "nutpie":
        import nutpie

        with reproducible_compilation():
            compiled = nutpie.compile_pymc_model(refit, freeze_model=False)

        def with_nutpie(y: np.ndarray, seed: int) -> xr.DataTree:
            return nutpie.sample(
                compiled.with_data(**{shared_name: y}),
                draws=draws,
                tune=tune,
                chains=chains,
                seed=seed,
                progress_bar=False,
                target_accept=target_accept,
                save_warmup=False,
            )

        return with_nutpie
    (shared,) = (v for v in graph_inputs([refit.logp()]) if isinstance(v, SharedVariable) and v.name == shared_name)

    def with_numpyro(y: np.ndarray, seed: int) -> xr.DataTree:
        shared.set_value(y)
        return sample(
            refit,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            target_accept=target_accept,
            sampler="numpyro",
            progressbar=False,
            rescale=rescale,
        )

    return with_numpyro


def _scalars(ds: xr.Dataset, names: Sequence[str], sample_dims: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each scalar element of ``names`` as a flat array over ``sample_dims`` (upper triangle of ``corr_``)."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name not in ds:
            continue
        da = ds[name].transpose(*sample_dims, ...)
        extra = [d for d in da.dims if d not in sample_dims]
        flat = da.values.reshape(-1, *da.shape[len(sample_dims) :])
        if not extra:
            out[name] = flat
            continue
        if name.startswith("corr_"):
            labels = [str(v) for v in da[extra[0]].values]
            for i in range(len(labels)):
                for j in range(i + 1, len(labels)):
                    out[f"{name}[{labels[i]}, {labels[j]}]"] = flat[:, i, j]
            continue
        labels = [str(v) for v in da[extra[0]].values]
        for i, lab in enumerate(labels):
            out[f"{name}[{lab}]"] = flat[:, i]
    return out


def _choose_bins(n_sims: int) -> int:
    """At least about 5 expected ranks per bin, between 2 and 20 bins."""
    return int(max(2, min(20, n_sims // 5)))


def _min_ess(posterior: xr.Dataset, ranked: list[str]) -> float:
    """The smallest bulk ESS over the ranked parameters of one refit (NaN if none is finite)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # constant corr diagonal: NaN, skipped
        ess = az.ess(posterior[ranked])
    values = np.concatenate([np.ravel(v) for v in ess.data_vars.values()])
    return float(np.nanmin(values)) if np.isfinite(values).any() else np.nan


def _uniformity_pvalues(ranks: pd.DataFrame, n_draws: int, bins: int) -> pd.Series:
    """Chi-square p-value of uniform ranks in ``bins`` equal bins, per parameter."""
    width = (n_draws + 1) // bins
    pvalues = {}
    for label in ranks.columns:
        r = ranks[label].dropna().to_numpy(dtype=int)
        pvalues[label] = float(stats.chisquare(np.bincount(r // width, minlength=bins)).pvalue) if r.size else np.nan
    return pd.Series(pvalues, name="p_value")


def check_calibration(
    spec: ModelSpec | str,
    data: pd.DataFrame,
    *,
    n_sims: int = 200,
    draws: int = 1000,
    tune: int = 500,
    chains: int = 2,
    thin: int = 20,
    bins: int | None = None,
    target_accept: float = 0.8,
    family: str | None = None,
    random_seed: int | None = None,
    method: Literal["full", "quadrature"] = "full",
    sampler: Literal["nutpie", "numpyro"] = "nutpie",
) -> Calibration:
    """Simulation-based calibration of a model on the design of ``data`` (see the module docstring).

    Parameters
    ----------
    spec
        A :class:`ModelSpec` (from a builder or :func:`hierbayes.parse_formula`) or a formula.
    data
        Data whose predictors, groups, trials and offsets define the design; its response is
        only used to scale the default priors (fixed once for all simulations).
    n_sims
        Number of simulated data sets (each refitted once).
    draws, tune, chains
        Per refit, passed to the sampler (the draws per chain kept after tuning).
    thin
        Keep every ``thin``-th draw of each chain before ranking. The defaults keep 100 draws
        of 2000, far enough apart for the random-effect sds (whose ESS can be 1/20 of the
        draws) to leave the ranks nearly independent; ``Calibration.sims`` shows the ESS.
    bins
        Bins of the chi-square test; by default ``n_sims // 5`` clipped to 2..20.
    target_accept
        NUTS target acceptance rate of the refits.
    family
        For a formula ``spec``: the family.
    random_seed
        Seeds the prior draws and every refit; the same seed gives the same result.
    method
        The model refitted: ``"full"`` (default) or ``"quadrature"``
        (:mod:`hierbayes.inference.quadrature`, with the node count ``hb.fit`` would choose for
        ``data``); the data are always simulated from the full model's prior, so the ranks
        check the marginalised likelihood as well as the sampler.
    sampler
        The refits' sampler: ``"nutpie"`` (default; the model is compiled once and each refit
        swaps the response in) or ``"numpyro"``, ``hb.fit``'s default
        (:mod:`hierbayes.inference.jax_nuts`: its program is compiled once per model structure,
        so every refit after the first reuses it; the refits' chains run in threads).

    Returns
    -------
    Calibration
        Ranks, prior draws, p-values and :meth:`Calibration.plot`.

    Raises
    ------
    ValueError
        For ``n_sims < 2`` or too few kept draws for the number of bins.
    """
    if sampler not in ("nutpie", "numpyro"):
        raise ValueError(f"sampler must be 'nutpie' or 'numpyro'; received {sampler!r}.")
    resolve_sampler(sampler)  # a clear install hint if it is missing
    if n_sims < 2:
        raise ValueError(f"n_sims must be at least 2; received {n_sims}.")
    spec = to_spec(spec, family=family)
    design = make_design(spec, data)
    priors = resolve_priors(design)
    model = build_model(design, priors=priors)
    names = var_names(design)
    ranked = names["fixed"] + names["sd"] + names["corr"] + names["other"]

    bins = bins or _choose_bins(n_sims)
    available = chains * len(range(0, draws, thin))
    n_draws = (available + 1) // bins * bins - 1
    if n_draws < bins:
        raise ValueError(f"Only {available} thinned draws per refit for {bins} bins; raise draws= or lower thin=.")

    seeds = np.random.SeedSequence(random_seed).generate_state(n_sims + 1)
    with reproducible_compilation():  # same draws with a cold or warm compile cache (hierbayes.inference.sampling)
        prior = pm.sample_prior_predictive(draws=n_sims, model=model, random_seed=int(seeds[0]))
    truth = _scalars(prior["prior"].to_dataset(), ranked, ("chain", "draw"))
    y_sim = prior["prior_predictive"]["y"].values.reshape(n_sims, -1)

    if method == "quadrature":
        group, problem = quadrature_problem(design)
        if group is None:
            raise ValueError(f"method='quadrature' cannot fit {spec.formula()!r}: {problem}.")
        n_nodes = choose_nodes(design, group)[0] or NODE_CHOICES[-1]
        refit = build_quadrature_model(design, priors, group=group, n_nodes=n_nodes, shared_response=True)
        shared_name = SHARED_RESPONSE
    elif method == "full":
        y_shared = pytensor.shared(np.asarray(model.rvs_to_values[model["y"]].data), name=_SHARED_NAME)
        refit, shared_name = pm.observe(model, {"y": y_shared}), _SHARED_NAME
    else:
        raise ValueError(f"method must be 'full' or 'quadrature'; received {method!r}.")
    refit_one = _refitter(
        refit,
        shared_name,
        sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        rescale=rescaled_effects(design) if method == "full" else None,
    )

    ranks = {label: np.full(n_sims, np.nan) for label in truth}
    divergences = np.full(n_sims, -1)
    min_ess = np.full(n_sims, np.nan)
    failed: list[str] = []
    for s in range(n_sims):
        try:
            trace = refit_one(y_sim[s].astype(float) if method == "quadrature" else y_sim[s], int(seeds[s + 1]))
        except Exception as err:  # a refit that fails is reported, not hidden
            failed.append(f"simulation {s}: {type(err).__name__}: {err}")
            continue
        post = trace["posterior"].to_dataset().isel(draw=slice(None, None, thin))
        posterior = _scalars(post, ranked, ("chain", "draw"))
        for label, true in truth.items():
            kept = posterior[label][:n_draws]
            ranks[label][s] = int(np.sum(kept < true[s]))
        divergences[s] = int(trace["sample_stats"]["diverging"].sum())
        min_ess[s] = _min_ess(trace["posterior"].to_dataset(), [n for n in ranked if n in post])
    if failed:
        warnings.warn(
            f"{len(failed)} of {n_sims} SBC refits failed and are left out of the ranks; first: {failed[0]}",
            UserWarning,
            stacklevel=2,
        )

    rank_df = pd.DataFrame(ranks).rename_axis(index="simulation").astype("Int64")
    pvalues = _uniformity_pvalues(rank_df, n_draws, bins)
    return Calibration(
        ranks=rank_df,
        truth=pd.DataFrame(truth).rename_axis(index="simulation"),
        n_draws=n_draws,
        bins=bins,
        pvalues=pvalues,
        sims=pd.DataFrame({"divergences": divergences, "min_ess_bulk": min_ess}).rename_axis(index="simulation"),
        spec=spec,
    )
