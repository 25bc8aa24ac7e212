"""Convergence diagnostics in plain words.

After sampling, :func:`diagnose` checks, over the model's parameters (fixed effects, standard
deviations, correlations, residual sd; not the thousands of individual random effects unless
asked):

* divergent transitions (any is a problem: the posterior geometry was not explored);
* R-hat above 1.01 (chains disagree);
* bulk or tail ESS below 100 per chain (too few effective draws for stable intervals);
* tree-depth saturation (the sampler hit its maximum trajectory length);
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

import arviz as az
import numpy as np
import xarray as xr

from hierbayes.exceptions import ConvergenceWarning

__all__ = ["ESS_PER_CHAIN_MIN", "MIN_DRAWS", "RHAT_MAX", "Diagnostics", "diagnose", "draw_stats", "warn_if_problems"]

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
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
            "r_hat": nan if single or too_few else float(az.rhat(draws)),
            "ess_bulk": nan if too_few else float(az.ess(draws)),
            "ess_tail": nan if too_few else float(az.ess(draws, method="tail")),
            "mcse_mean": nan if too_few else float(az.mcse(draws)),
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


def _flat(posterior: xr.Dataset, names: Sequence[str]) -> tuple[dict[str, xr.DataArray], int]:
    """Scalar parameters by label; also the number of elements left out for being constant.

    The unit diagonal of a correlation matrix is constant by construction and is left out; so is
    any other constant element (counted, so that a sampler that never moved is still reported).
    """
    out: dict[str, xr.DataArray] = {}
    constant = 0
    for name in names:
        if name not in posterior:
            continue
        da = posterior[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if not extra:
            if float(da.std()) == 0.0:
                constant += 1
            else:
                out[name] = da
            continue
        stacked = da.stack(__i__=extra)
        for i in range(stacked.sizes["__i__"]):
            label = stacked["__i__"].values[i]
            diagonal = isinstance(label, tuple) and len(label) == 2 and label[0] == label[1]
            label = ", ".join(map(str, label)) if isinstance(label, tuple) else str(label)
            one = stacked.isel(__i__=i)
            if float(one.std()) == 0.0:
                constant += 0 if diagonal and name.startswith("corr_") else 1
                continue
            out[f"{name}[{label}]"] = one.drop_vars(["__i__", *extra], errors="ignore")
    return out, constant


def diagnose(idata: xr.DataTree, var_names: Sequence[str], *, centered_terms: Sequence[str] = ()) -> Diagnostics:
    """Check divergences, R-hat, ESS and tree depth; describe each problem in plain words.

    R-hat is the rank-normalised split R-hat and ESS the bulk and tail effective sample sizes of
    Vehtari et al. (2021), as ArviZ computes them, over every scalar element of ``var_names``.
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
    treedepth = int(stats[depth_key].sum()) if depth_key else 0

    flat, n_constant = _flat(post, var_names)
    worst_rhat, worst_bulk, worst_tail = ("", 1.0), ("", np.inf), ("", np.inf)
    enough = draws >= MIN_DRAWS
    with _quiet():
        for label, da in flat.items() if enough else ():
            rhat = float(az.rhat(da)) if chains > 1 else 1.0
            bulk = float(az.ess(da))
            tail = float(az.ess(da, method="tail"))
            if np.isnan(rhat) or bool((da.std("draw") == 0).any()):
                rhat = np.inf  # a chain that never moved: R-hat is undefined (or 0/0 noise)
            bulk = 0.0 if np.isnan(bulk) else bulk
            tail = 0.0 if np.isnan(tail) else tail
            if rhat > worst_rhat[1]:
                worst_rhat = (label, rhat)
            if bulk < worst_bulk[1]:
                worst_bulk = (label, bulk)
            if tail < worst_tail[1]:
                worst_tail = (label, tail)

    problems: list[str] = []
    if not enough:
        problems.append(
            f"Only {draws} draw(s) per chain: far too few to check convergence (R-hat and ESS need at "
            f"least {MIN_DRAWS} draws per chain, and reliable summaries about {ESS_PER_CHAIN_MIN} effective "
            "draws per chain). Draw more: draws=1000 (the default)."
        )
    elif not flat and n_constant:
        problems.append(
            "The sampler did not move: every draw of every checked parameter is identical. The model "
            "could not be initialised or every proposal was rejected; check the priors and the data "
            "scale, and run more tuning steps (tune=1000)."
        )
    if divergences:
        advice = (
            "Raise target_accept (e.g. target_accept=0.95)"
            + (
                f", or switch the centred term(s) {', '.join(centered_terms)} to the non-centred form "
                "(centered=False, the default)"
                if centered_terms
                else "; if a group has few levels or weak data, a tighter prior on its sd helps"
            )
            + ". For Gaussian models with an estimated residual sd, method='collapsed' integrates the "
            "random effects out and avoids the funnel altogether."
        )
        problems.append(
            f"{divergences} of {chains * draws} draws were divergent transitions: the sampler could not "
            f"follow the posterior's curvature, so parts of it may be missed. {advice}"
        )
    if worst_rhat[1] > RHAT_MAX:
        value = (
            "could not be computed (a chain did not move)"
            if np.isinf(worst_rhat[1])
            else f"is {worst_rhat[1]:.3g} (above {RHAT_MAX})"
            if worst_rhat[1] >= 10
            else f"is {worst_rhat[1]:.3f} (above {RHAT_MAX})"
        )
        problems.append(
            f"R-hat of {worst_rhat[0]} {value}: the chains have not converged to the same distribution. "
            "Run more tuning and draws (tune=2000, draws=2000)"
            + (f" or make the centred term(s) {', '.join(centered_terms)} non-centred." if centered_terms else ".")
        )
    if enough and chains == 1:
        problems.append(
            "Only one chain: R-hat, which compares chains, cannot be checked, so a chain stuck in one part "
            "of the posterior would go unnoticed. Run several chains (chains=4, the default)."
        )
    need = ESS_PER_CHAIN_MIN * chains
    for kind, (label, value) in (("bulk", worst_bulk), ("tail", worst_tail)):
        if np.isfinite(value) and value < need:
            problems.append(
                f"The {kind} effective sample size of {label} is {value:.0f}, below {need} "
                f"({ESS_PER_CHAIN_MIN} per chain): its {'mean' if kind == 'bulk' else 'interval'} is not "
                "reliable yet. Draw more (draws=2000 or more chains)"
                + ("; the non-centred form usually mixes better." if centered_terms else ".")
            )
    if treedepth:
        problems.append(
            f"{treedepth} of {chains * draws} draws hit the maximum tree depth: the sampler needed very "
            "long trajectories (strongly correlated or badly scaled parameters), so it explored slowly. "
            "Consider tighter priors or dropping a redundant term; for Gaussian models, method='collapsed'."
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
