"""Convergence diagnostics in plain words.

After sampling, :func:`diagnose` checks, over the model's parameters (fixed effects, standard
deviations, correlations, residual sd; not the thousands of individual random effects unless
asked):

* divergent transitions (any is a problem: the posterior geometry was not explored);
* R-hat above 1.01 (chains disagree);
* bulk or tail ESS below 100 per chain (too few effective draws for stable intervals);
* tree-depth saturation (the sampler hit its maximum trajectory length);
* E-BFMI below 0.3 in a chain (the energy distribution, and so the posterior's tails, explored poorly);
* too few draws to judge at all (fewer than :data:`MIN_DRAWS` per chain), a single chain (R-hat
  cannot be computed), or a sampler that never moved.

Each problem comes with the concrete next step; :func:`hierbayes.fit` issues them together as one
:class:`~hierbayes.ConvergenceWarning`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.exceptions import ConvergenceWarning

__all__ = [
    "BFMI_MIN",
    "ESS_PER_CHAIN_MIN",
    "MIN_DRAWS",
    "RHAT_MAX",
    "Diagnostics",
    "diagnose",
    "draw_stats",
    "warn_if_problems",
]

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
#: E-BFMI below this (per chain) signals poor exploration of the energy distribution (Betancourt 2016).
BFMI_MIN = 0.3
#: Fewer draws per chain than this and R-hat/ESS are not computed at all (they would be noise).
MIN_DRAWS = 4


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 0/0 warnings for constant chains (reported as NaN and handled here)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def draw_stats(draws: xr.DataArray, prob: float = 0.94) -> dict[str, float]:
    """Mean, sd, equal-tailed ``prob`` interval, R-hat, bulk and tail ESS, MCSE of the mean.

    ``draws`` has dims ``("chain", "draw")`` only. R-hat is NaN for a single chain; R-hat, ESS
    and MCSE are NaN with fewer than :data:`MIN_DRAWS` draws per chain or for constant draws.
    """
    values = draws.values
    lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2])
    single = values.shape[0] < 2
    too_few = values.shape[1] < MIN_DRAWS
    nan = float("nan")
    with _quiet():
        return {
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if values.size > 1 else nan,
            "lower": float(lo),
            "upper": float(hi),
            "r_hat": nan if single or too_few else float(azs.rhat(draws)),
            "ess_bulk": nan if too_few else float(azs.ess(draws)),
            "ess_tail": nan if too_few else float(azs.ess(draws, method="tail")),
            "mcse_mean": nan if too_few else float(azs.mcse(draws)),
        }


@dataclass(frozen=True)
class Diagnostics:
    """Sampler diagnostics of one fit.

    Attributes
    ----------
    divergences, draws, chains
        Number of divergent transitions, draws per chain and chains.
    max_rhat, min_ess_bulk, min_ess_tail
        Worst values over the checked parameters, and the parameter each belongs to.
    treedepth_hits
        Draws that reached the maximum tree depth.
    min_bfmi
        The smallest E-BFMI over the chains (NaN when the sampler reports no energy).
    problems
        One plain-words sentence per problem, each with the next step; empty when all is well.
    """

    divergences: int
    draws: int
    chains: int
    max_rhat: tuple[str, float]
    min_ess_bulk: tuple[str, float]
    min_ess_tail: tuple[str, float]
    treedepth_hits: int
    min_bfmi: float = float("nan")
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _elements(posterior: xr.Dataset, names: Sequence[str], chains: int) -> tuple[pd.DataFrame, int]:
    """R-hat, bulk and tail ESS (arviz_stats) of every scalar element of ``names``, labelled ``name[level]``.

    Constant elements are left out: the unit diagonal of a correlation matrix (constant by
    construction) silently, any other one counted, so that a sampler that never moved is still
    reported. R-hat is ``inf`` for an element with a chain that never moved (R-hat is then 0/0).
    """
    ds = posterior[[n for n in names if n in posterior]]
    with _quiet():
        stats = {
            "rhat": azs.rhat(ds) if chains > 1 else xr.ones_like(ds.isel(chain=0, draw=0, drop=True)),
            "bulk": azs.ess(ds, method="bulk"),
            "tail": azs.ess(ds, method="tail"),
            "sd": ds.std(("chain", "draw")),
            "stuck": (ds.std("draw") == 0).any("chain"),
        }
    rows, constant = {}, 0
    for name in ds.data_vars:
        for label, one in _scalars({k: v[name] for k, v in stats.items()}):
            if one["sd"] == 0:
                constant += 0 if str(name).startswith("corr_") and len(set(label)) == 1 else 1
                continue
            rhat = np.inf if np.isnan(one["rhat"]) or one["stuck"] else one["rhat"]
            key = f"{name}[{', '.join(label)}]" if label else str(name)
            rows[key] = {"rhat": rhat, "bulk": np.nan_to_num(one["bulk"]), "tail": np.nan_to_num(one["tail"])}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["rhat", "bulk", "tail"], dtype=float), constant


def _scalars(stats: dict[str, xr.DataArray]) -> Iterator[tuple[tuple[str, ...], dict[str, float]]]:
    """``(labels of the element, {stat: value})`` for every element of same-shaped statistics."""
    first = next(iter(stats.values()))
    values = {k: v.transpose(*first.dims).values for k, v in stats.items()}
    for idx in np.ndindex(first.shape):
        label = tuple(
            str(first[d].values[i]) if d in first.coords else str(i) for d, i in zip(first.dims, idx, strict=True)
        )
        yield label, {k: float(v[idx]) for k, v in values.items()}


def diagnose(idata: xr.DataTree, var_names: Sequence[str], *, centered_terms: Sequence[str] = ()) -> Diagnostics:
    """Check divergences, R-hat, ESS, E-BFMI and tree depth; describe each problem in plain words.

    R-hat is the rank-normalised split R-hat and ESS the bulk and tail effective sample sizes of
    Vehtari et al. (2021), computed by ``arviz_stats`` over every scalar element of ``var_names``;
    E-BFMI (Betancourt 2016) by ``arviz_stats.bfmi`` from the sampler's energy, per chain.
    R-hat needs two chains or more; neither is computed with fewer than :data:`MIN_DRAWS` draws
    per chain (that is reported as a problem instead). A parameter whose R-hat or ESS cannot be
    computed although its draws vary (a chain that never moved) counts as not converged.

    Parameters
    ----------
    idata
        The sampler's result.
    var_names
        Parameters to check.
    centered_terms
        Names of random terms fitted with the centred parametrisation (for the advice).

    Returns
    -------
    Diagnostics
        With ``problems``: one sentence per problem, each with the next step.
    """
    post = idata["posterior"].to_dataset()
    stats = idata["sample_stats"].to_dataset() if "sample_stats" in idata.children else xr.Dataset()
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    depth_key = next((k for k in ("maxdepth_reached", "reached_max_treedepth") if k in stats), None)
    enough = draws >= MIN_DRAWS
    bfmi = float("nan")
    if enough and "energy" in stats:
        with _quiet():
            bfmi = float(azs.bfmi(stats["energy"]).min())
    table, n_constant = _elements(post, var_names, chains) if enough else (pd.DataFrame(), 0)
    worst: dict[str, Any] = {
        "max_rhat": ("", 1.0) if table.empty else (str(table["rhat"].idxmax()), float(table["rhat"].max())),
        "min_ess_bulk": ("", np.inf) if table.empty else (str(table["bulk"].idxmin()), float(table["bulk"].min())),
        "min_ess_tail": ("", np.inf) if table.empty else (str(table["tail"].idxmin()), float(table["tail"].min())),
    }
    d = Diagnostics(
        divergences=divergences,
        draws=draws,
        chains=chains,
        treedepth_hits=int(stats[depth_key].sum()) if depth_key else 0,
        min_bfmi=bfmi,
        **worst,
    )
    d.problems.extend(_problems(d, checked=not table.empty, constant=n_constant, centered_terms=centered_terms))
    return d


def _problems(d: Diagnostics, *, checked: bool, constant: int, centered_terms: Sequence[str]) -> list[str]:
    """The plain-words sentences, each with the next step, for the problems in ``d``."""
    problems: list[str] = []
    total = d.chains * d.draws
    centred = ", ".join(centered_terms)
    if d.draws < MIN_DRAWS:
        problems.append(
            f"Only {d.draws} draw(s) per chain: far too few to check convergence (R-hat and ESS need at "
            f"least {MIN_DRAWS} draws per chain, and reliable summaries about {ESS_PER_CHAIN_MIN} effective "
            "draws per chain). Draw more: draws=1000 (the default)."
        )
    elif not checked and constant:
        problems.append(
            "The sampler did not move: every draw of every checked parameter is identical. The model "
            "could not be initialised or every proposal was rejected; check the priors and the data "
            "scale, and run more tuning steps (tune=1000)."
        )
    if d.divergences:
        advice = (
            "Raise target_accept (e.g. target_accept=0.95)"
            + (
                f", or switch the centred term(s) {centred} to the non-centred form (centered=False, the default)"
                if centered_terms
                else "; if a group has few levels or weak data, a tighter prior on its sd helps"
            )
            + ". For Gaussian models with an estimated residual sd, method='collapsed' integrates the "
            "random effects out and avoids the funnel altogether."
        )
        problems.append(
            f"{d.divergences} of {total} draws were divergent transitions: the sampler could not "
            f"follow the posterior's curvature, so parts of it may be missed. {advice}"
        )
    label, rhat = d.max_rhat
    if rhat > RHAT_MAX:
        value = (
            "could not be computed (a chain did not move)"
            if np.isinf(rhat)
            else f"is {rhat:.3g} (above {RHAT_MAX})"
            if rhat >= 10
            else f"is {rhat:.3f} (above {RHAT_MAX})"
        )
        problems.append(
            f"R-hat of {label} {value}: the chains have not converged to the same distribution. "
            "Run more tuning and draws (tune=2000, draws=2000)"
            + (f" or make the centred term(s) {centred} non-centred." if centered_terms else ".")
        )
    if d.draws >= MIN_DRAWS and d.chains == 1:
        problems.append(
            "Only one chain: R-hat, which compares chains, cannot be checked, so a chain stuck in one part "
            "of the posterior would go unnoticed. Run several chains (chains=4, the default)."
        )
    need = ESS_PER_CHAIN_MIN * d.chains
    for kind, (ess_label, ess_value) in (("bulk", d.min_ess_bulk), ("tail", d.min_ess_tail)):
        if np.isfinite(ess_value) and ess_value < need:
            problems.append(
                f"The {kind} effective sample size of {ess_label} is {ess_value:.0f}, below {need} "
                f"({ESS_PER_CHAIN_MIN} per chain): its {'mean' if kind == 'bulk' else 'interval'} is not "
                "reliable yet. Draw more (draws=2000 or more chains)"
                + ("; the non-centred form usually mixes better." if centered_terms else ".")
            )
    if d.min_bfmi < BFMI_MIN:
        problems.append(
            f"The energy diagnostic (E-BFMI) of a chain is {d.min_bfmi:.2f}, below {BFMI_MIN}: the sampler "
            "moved between levels of the posterior density too slowly to explore its tails (typically a "
            "funnel between a group sd and its effects, or heavy tails). "
            + (f"Make the centred term(s) {centred} non-centred, or " if centered_terms else "")
            + "put a tighter prior on the sds; for Gaussian models, method='collapsed'."
        )
    if d.treedepth_hits:
        problems.append(
            f"{d.treedepth_hits} of {total} draws hit the maximum tree depth: the sampler needed very "
            "long trajectories (strongly correlated or badly scaled parameters), so it explored slowly. "
            "Consider tighter priors or dropping a redundant term; for Gaussian models, method='collapsed'."
        )
    return problems


def warn_if_problems(diagnostics: Diagnostics) -> None:
    """Issue one :class:`ConvergenceWarning` listing every problem found, if any."""
    if diagnostics.problems:
        text = "\n".join(f"- {p}" for p in diagnostics.problems)
        warnings.warn(f"The posterior draws may not be trustworthy yet:\n{text}", ConvergenceWarning, stacklevel=3)
