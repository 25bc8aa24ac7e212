"""Convergence diagnostics in plain words.

After sampling, :func:`diagnose` checks, over the model's parameters (fixed effects, standard
deviations, correlations, residual sd; not the thousands of individual random effects unless
asked):

* divergent transitions (any is a problem: the posterior geometry was not explored);
* R-hat above 1.01 (chains disagree);
* bulk or tail ESS below 100 per chain (too few effective draws for stable intervals);
* tree-depth saturation (the sampler hit its maximum trajectory length).

Each problem comes with the concrete next step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import xarray as xr

from hierbayes.exceptions import ConvergenceWarning

__all__ = ["Diagnostics", "diagnose", "draw_stats", "warn_if_problems"]

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


def draw_stats(draws: xr.DataArray, prob: float = 0.94) -> dict[str, float]:
    """Mean, sd, equal-tailed ``prob`` interval, R-hat, bulk and tail ESS, MCSE of the mean.

    ``draws`` has dims ``("chain", "draw")`` only.
    """
    values = draws.values
    lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2])
    single = values.shape[0] < 2
    return {
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)),
        "lower": float(lo),
        "upper": float(hi),
        "r_hat": float("nan") if single else float(az.rhat(draws)),
        "ess_bulk": float(az.ess(draws)),
        "ess_tail": float(az.ess(draws, method="tail")),
        "mcse_mean": float(az.mcse(draws)),
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
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _flat(posterior: xr.Dataset, names: Sequence[str]) -> dict[str, xr.DataArray]:
    out: dict[str, xr.DataArray] = {}
    for name in names:
        if name not in posterior:
            continue
        da = posterior[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if not extra:
            out[name] = da
            continue
        stacked = da.stack(__i__=extra)
        for i in range(stacked.sizes["__i__"]):
            label = stacked["__i__"].values[i]
            label = ", ".join(map(str, label)) if isinstance(label, tuple) else str(label)
            one = stacked.isel(__i__=i)
            if float(one.std()) == 0.0:  # e.g. the unit diagonal of a correlation matrix
                continue
            out[f"{name}[{label}]"] = one.drop_vars(["__i__", *extra], errors="ignore")
    return out


def diagnose(idata: xr.DataTree, var_names: Sequence[str], *, centered_terms: Sequence[str] = ()) -> Diagnostics:
    """Check divergences, R-hat, ESS and tree depth; describe each problem in plain words.

    Parameters
    ----------
    idata
        The sampler's result.
    var_names
        Parameters to check.
    centered_terms
        Names of random terms fitted with the centred parametrisation (for the advice).
    """
    post = idata["posterior"].to_dataset()
    stats = idata["sample_stats"].to_dataset() if "sample_stats" in idata.children else xr.Dataset()
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    depth_key = next((k for k in ("maxdepth_reached", "reached_max_treedepth") if k in stats), None)
    treedepth = int(stats[depth_key].sum()) if depth_key else 0

    worst_rhat, worst_bulk, worst_tail = ("", 1.0), ("", np.inf), ("", np.inf)
    for label, da in _flat(post, var_names).items():
        rhat = float(az.rhat(da)) if chains > 1 else 1.0
        bulk = float(az.ess(da))
        tail = float(az.ess(da, method="tail"))
        if np.isfinite(rhat) and rhat > worst_rhat[1]:
            worst_rhat = (label, rhat)
        if bulk < worst_bulk[1]:
            worst_bulk = (label, bulk)
        if tail < worst_tail[1]:
            worst_tail = (label, tail)

    problems: list[str] = []
    if divergences:
        advice = (
            "Raise target_accept (e.g. target_accept=0.95)"
            + (
                f", or switch the centred term(s) {', '.join(centered_terms)} to the non-centred form"
                if centered_terms
                else "; if a group has few levels or weak data, a tighter prior on its sd helps"
            )
            + "; for Gaussian models method='collapsed' avoids the funnel altogether."
        )
        problems.append(
            f"{divergences} of {chains * draws} draws were divergent transitions: the sampler could not "
            f"follow the posterior's curvature, so parts of it may be missed. {advice}"
        )
    if worst_rhat[1] > RHAT_MAX:
        problems.append(
            f"R-hat of {worst_rhat[0]} is {worst_rhat[1]:.3f} (above {RHAT_MAX}): the chains have not "
            "converged to the same distribution. Run more tuning and draws (tune=2000, draws=2000)."
        )
    need = ESS_PER_CHAIN_MIN * chains
    for kind, (label, value) in (("bulk", worst_bulk), ("tail", worst_tail)):
        if np.isfinite(value) and value < need:
            problems.append(
                f"The {kind} effective sample size of {label} is {value:.0f}, below {need} "
                f"({ESS_PER_CHAIN_MIN} per chain): its {'mean' if kind == 'bulk' else 'interval'} is not "
                "reliable yet. Draw more (draws=2000 or more chains)"
                + ("; the non-centred form or method='collapsed' usually mixes better." if centered_terms else ".")
            )
    if treedepth:
        problems.append(
            f"{treedepth} draws hit the maximum tree depth: the sampler needed very long trajectories "
            "(strongly correlated or badly scaled parameters). Consider tighter priors, or the "
            "collapsed method for Gaussian models."
        )
    return Diagnostics(
        divergences=divergences,
        draws=draws,
        chains=chains,
        max_rhat=worst_rhat,
        min_ess_bulk=worst_bulk,
        min_ess_tail=worst_tail,
        treedepth_hits=treedepth,
        problems=problems,
    )


def warn_if_problems(diagnostics: Diagnostics) -> None:
    """Issue one :class:`ConvergenceWarning` listing every problem found, if any."""
    if diagnostics.problems:
        text = "\n".join(f"- {p}" for p in diagnostics.problems)
        warnings.warn(f"The posterior draws may not be trustworthy yet:\n{text}", ConvergenceWarning, stacklevel=3)
