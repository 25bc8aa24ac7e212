r"""Model checks as functions: Bayesian :math:`R^2`, leave-one-group-out CV, predictive plots.

Bayesian :math:`R^2` (Gelman, Goodrich, Gabry and Vehtari 2019)
--------------------------------------------------------------
For posterior draw :math:`s`, with :math:`\mu^{(s)}_i = g^{-1}(\eta^{(s)}_i)` the expected
response of row :math:`i` given its random effects and :math:`\mu^{f(s)}_i = g^{-1}(x_i^\top
\beta^{(s)} + o_i)` the fixed part alone (:math:`u = 0`),

.. math::

    R^{2(s)}_{\mathrm{cond}} = \frac{V_i(\mu^{(s)}_i)}{V_i(\mu^{(s)}_i) + \bar v^{(s)}}, \qquad
    R^{2(s)}_{\mathrm{marg}} = \frac{V_i(\mu^{f(s)}_i)}{V_i(\mu^{(s)}_i) + \bar v^{(s)}},

where :math:`V_i` is the variance over rows and :math:`\bar v^{(s)} = n^{-1}\sum_i
\mathrm{Var}(y_i \mid \mu^{(s)}_i)` the model's residual variance: :math:`\sigma^2` (Gaussian;
the per-row known :math:`\sigma_i^2` when given), :math:`\mu(1-\mu)` (bernoulli),
:math:`\mu(1-\mu)/n_i` (binomial, on the proportion scale), :math:`\mu` (poisson),
:math:`\mu + \mu^2/\alpha` (negative binomial). Both share the denominator, an estimate of
the response's variance, so the marginal :math:`R^2` is the share explained by the fixed
effects alone and the conditional one the share explained by fixed and random effects
(Nakagawa and Schielzeth's split, on the response scale). For a Gaussian model they estimate
:math:`\sigma^2_f / (\sigma^2_f + \sigma^2_u + \sigma^2)` and
:math:`(\sigma^2_f + \sigma^2_u) / (\sigma^2_f + \sigma^2_u + \sigma^2)`.

Leave-one-group-out cross-validation
------------------------------------
PSIS-LOO leaves out one *observation* of a known group. To judge predictions for a new
*group*, :func:`kfold` refits the model without each level (or fold of levels) of a grouping
factor and scores the held-out rows with the refit's posterior, the held-out level's effects
drawn from :math:`N(0, \Omega_k^{(s)})` per draw (brms ``kfold(..., group=)`` with
``sample_new_levels = "uncertainty"``):

.. math::

    \widehat{\mathrm{elpd}}_i = \log \frac1S \sum_s p(y_i \mid \theta^{(s)}_{-k(i)}, u^{(s)}_{\mathrm{new}}).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from scipy.special import logsumexp

from hierbayes.exceptions import SpecError
from hierbayes.families import get_family, inverse_link
from hierbayes.inference.fit import fit as refit
from hierbayes.inference.pointwise import (
    add_posterior_predictive,
    family_params,
    observed_rows,
    rows_of_fit,
    stacked_draws,
)
from hierbayes.inference.posterior import DEFAULT_PROB
from hierbayes.inference.result import Fit
from hierbayes.summaries.prediction import linear_predictor, log_likelihood

__all__ = ["GroupCheck", "KFold", "PPCKind", "bayes_r2", "draw_group_check", "group_check", "kfold", "plot_ppc"]

PPCKind = Literal["auto", "dist", "rootogram", "calibration", "pit", "loo_pit", "group"]


# ----------------------------------------------------------------------------- Bayes R2


def _residual_variance(fit: Fit, mu: np.ndarray) -> np.ndarray:
    r"""``(S,)`` mean over rows of the model's :math:`\mathrm{Var}(y_i \mid \mu_i)` (from the family)."""
    rows = rows_of_fit(fit)
    family = get_family(fit.spec.family)
    return np.mean(family.response_variance(mu, family_params(fit, slice(None)), observed_rows(fit, rows)), axis=1)


def bayes_r2_draws(fit: Fit) -> xr.Dataset:
    """Per-draw conditional and marginal Bayesian :math:`R^2` (see the module docstring).

    Returns
    -------
    xarray.Dataset
        Variables ``conditional`` and ``marginal``, dims ``(chain, draw)``.
    """
    link = str(fit.spec.link)
    eta = linear_predictor(fit)
    chains, draws = eta.sizes["chain"], eta.sizes["draw"]
    mu = inverse_link(link, eta.values.reshape(chains * draws, -1))
    rows = rows_of_fit(fit)
    eta_f = stacked_draws(fit, "beta", "coef") @ rows.X.T if rows.X.shape[1] else np.zeros_like(mu)
    if rows.offset is not None:
        eta_f = eta_f + rows.offset
    mu_f = inverse_link(link, eta_f)
    var_res = _residual_variance(fit, mu)
    var_mu = mu.var(axis=1, ddof=1)
    total = var_mu + var_res
    shape = (chains, draws)
    return xr.Dataset(
        {
            "conditional": (("chain", "draw"), (var_mu / total).reshape(shape)),
            "marginal": (("chain", "draw"), (mu_f.var(axis=1, ddof=1) / total).reshape(shape)),
        },
        coords={"chain": eta.coords["chain"].values, "draw": eta.coords["draw"].values},
    )


def bayes_r2(fit: Fit, *, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    r"""Bayesian :math:`R^2`, conditional and marginal (Gelman et al. 2019).

    See the module docstring for the definitions; the residual variance is the model's own
    (for a Gaussian model :math:`\sigma^2`), so :math:`R^2` lies in :math:`[0, 1]` for every draw.

    Parameters
    ----------
    fit
        A fitted model with the draws of its random effects.
    prob
        Probability of the equal-tailed interval.

    Returns
    -------
    pandas.DataFrame
        Index ``conditional`` (fixed and random effects) and ``marginal`` (fixed effects
        alone); columns ``mean``, ``sd``, ``lower``, ``upper``.
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1; received {prob}.")
    ds = bayes_r2_draws(fit)
    out = {}
    for name in ("conditional", "marginal"):
        v = ds[name].values.ravel()
        lo, hi = np.quantile(v, [(1 - prob) / 2, (1 + prob) / 2])
        out[name] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "lower": float(lo), "upper": float(hi)}
    return pd.DataFrame.from_dict(out, orient="index")


# ----------------------------------------------------------------------------- leave-one-group-out


@dataclass(frozen=True)
class KFold:
    r"""Result of :func:`kfold`.

    Attributes
    ----------
    elpd, se
        Estimated expected log predictive density of the held-out rows, summed over rows, and
        its standard error :math:`\sqrt{n}\,\mathrm{sd}_i(\widehat{\mathrm{elpd}}_i)`.
    pointwise
        ``elpd_i`` per row (the fit's data index).
    folds
        One row per fold: the held-out levels, the number of rows and the fold's elpd.
    group
        The grouping factor whose levels were held out.
    """

    elpd: float
    se: float
    pointwise: pd.Series
    folds: pd.DataFrame
    group: str

    def __repr__(self) -> str:
        return f"<hierbayes.KFold group={self.group!r} folds={len(self.folds)} elpd={self.elpd:.2f} se={self.se:.2f}>"


def _fold_seed(seed: int, k: int) -> int:
    """The seed of fold ``k``'s refit (documented in :func:`kfold`)."""
    return int(seed) + 1 + k


def kfold(
    fit: Fit,
    group: str,
    *,
    folds: int | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    random_seed: int | None = None,
) -> KFold:
    r"""Leave-one-group-out (or K-fold over levels) cross-validation by refitting.

    For fold :math:`k` the model is refitted to the rows whose ``group`` level is not in the
    fold (same formula, priors, method and sampler settings), with seed ``random_seed + 1 + k``;
    the held-out rows are scored by :func:`hierbayes.log_likelihood` with
    ``new_levels="sample"`` and seed ``random_seed + 1 + k`` (their level is new to the refit), and
    :math:`\widehat{\mathrm{elpd}}_i = \log S^{-1}\sum_s \exp \ell^{(s)}_i`.

    Parameters
    ----------
    fit
        A fitted model.
    group
        A grouping factor of the model (``"school"``); for a nested factor, its name
        (``"school:child"``) holds out one inner level at a time.
    folds
        ``None`` (default): one fold per level. An integer :math:`K`: the sorted levels are
        dealt into :math:`K` folds in turn (level :math:`j` to fold :math:`j \bmod K`).
    draws, tune, chains
        The refits' sampler settings; by default the fit's own.
    random_seed
        Base seed; by default the fit's own.

    Returns
    -------
    KFold

    Raises
    ------
    SpecError
        For a ``group`` that is not a grouping factor of the model, or fewer than 2 folds.
    """
    names = [g.name for g in fit.design.groups]
    if group not in names:
        raise SpecError(f"kfold: {group!r} is not a grouping factor of this model; it has: {', '.join(names)}.")
    g = fit.design.group(group)
    n_folds = g.n_levels if folds is None else int(folds)
    if not 2 <= n_folds <= g.n_levels:
        raise SpecError(f"kfold: folds must be between 2 and the {g.n_levels} levels of {group!r}; received {folds}.")
    settings = fit.settings
    seed = int(random_seed if random_seed is not None else settings.get("random_seed", 0) or 0)
    fold_of_level = np.arange(g.n_levels) % n_folds
    fold_of_row = fold_of_level[g.index]
    data = fit.design.data
    pointwise = np.empty(fit.design.n_obs)
    rows = []
    for k in range(n_folds):
        held = fold_of_row == k
        kw: dict[str, Any] = {
            "draws": draws or settings.get("draws", 1000),
            "tune": tune or settings.get("tune", 1000),
            "chains": chains or settings.get("chains", 4),
            "random_seed": _fold_seed(seed, k),
            "progressbar": False,
        }
        if "target_accept" in settings:
            kw["target_accept"] = settings["target_accept"]
        if settings.get("method") in ("full", "collapsed", "quadrature"):
            kw["method"] = settings["method"]
        fit_k = refit(fit.spec, data.loc[~held], **kw)
        ll = log_likelihood(fit_k, data.loc[held], new_levels="sample", random_seed=_fold_seed(seed, k)).values
        flat = ll.reshape(-1, ll.shape[-1])
        pointwise[held] = logsumexp(flat, axis=0) - np.log(flat.shape[0])
        levels = [g.levels[j] for j in np.flatnonzero(fold_of_level == k)]
        rows.append({"levels": levels, "n_obs": int(held.sum()), "elpd": float(pointwise[held].sum())})
    n = pointwise.size
    return KFold(
        elpd=float(pointwise.sum()),
        se=float(np.sqrt(n) * pointwise.std(ddof=1)),
        pointwise=pd.Series(pointwise, index=data.index, name="elpd"),
        folds=pd.DataFrame(rows),
        group=group,
    )


# ----------------------------------------------------------------------------- predictive plots


def _with_predictive(fit: Fit, random_seed: int | None) -> xr.DataTree:
    tree = fit.idata
    if "posterior_predictive" not in tree.children or random_seed is not None:
        copy = dataclasses.replace(fit, idata=fit.idata.copy())
        add_posterior_predictive(copy, random_seed=random_seed)
        tree = copy.idata
    return tree


@dataclass(frozen=True)
class GroupCheck:
    """Observed and replicated means per level of one grouping factor (the group-level PPC)."""

    obs: np.ndarray
    lo: np.ndarray
    mid: np.ndarray
    hi: np.ndarray
    what: str  # "mean", or "mean proportion" for binomial counts
    inside: int  # levels whose observed mean lies in the interval


def group_check(design: Any, g: Any, yrep: np.ndarray, prob: float) -> GroupCheck:
    """Per level of ``g``: the observed mean of ``y`` and the median and ``prob`` interval of replicated means.

    ``yrep`` is ``(draws, rows)``; binomial counts are divided by their trials first.
    """
    y = design.y.astype(float)
    what = "mean"
    if design.trials is not None:
        y, yrep, what = y / design.trials, yrep / design.trials, "mean proportion"
    counts = np.bincount(g.index, minlength=g.n_levels).astype(float)
    obs = np.bincount(g.index, weights=y, minlength=g.n_levels) / counts
    reps = np.stack([np.bincount(g.index, weights=r, minlength=g.n_levels) for r in yrep]) / counts
    lo, mid, hi = np.quantile(reps, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
    return GroupCheck(obs, lo, mid, hi, what, int(np.sum((obs >= lo) & (obs <= hi))))


def draw_group_check(ax: Any, check: GroupCheck, response: str, group: str, prob: float) -> None:
    """Observed against replicated means with their intervals, and the line of equality."""
    c = check
    ax.errorbar(c.obs, c.mid, yerr=[c.mid - c.lo, c.hi - c.mid], fmt="o", ms=3, lw=0.8, color="#3a5a8c", alpha=0.8)
    span = [float(min(c.obs.min(), c.lo.min())), float(max(c.obs.max(), c.hi.max()))]
    ax.plot(span, span, color="#a3261b", lw=1)
    ax.set_xlabel(f"observed {c.what} of {response} per {group}")
    ax.set_ylabel(f"replicated {c.what} (median, {round(prob * 100)}% interval)")


def _group_check(fit: Fit, tree: xr.DataTree, group: str | None, prob: float) -> Figure:
    design = fit.design
    if not design.groups:
        raise SpecError("kind='group' needs a model with a grouping factor.")
    g = design.group(group) if group is not None else design.groups[0]
    yrep = np.asarray(tree["posterior_predictive"]["y"].values, dtype=float)
    check = group_check(design, g, yrep.reshape(-1, yrep.shape[-1]), prob)
    fig = Figure(figsize=(5.0, 4.6), layout="constrained")
    ax = fig.add_subplot()
    draw_group_check(ax, check, fit.spec.response, g.name, prob)
    ax.set_title(f"{check.inside} of {g.n_levels} levels inside the interval", fontsize=9)
    return fig


def plot_ppc(
    fit: Fit,
    kind: PPCKind = "auto",
    *,
    group: str | None = None,
    prob: float = DEFAULT_PROB,
    random_seed: int | None = None,
) -> Figure:
    """Posterior predictive check plot, drawn by ``arviz_plots`` on the fit's own groups.

    Parameters
    ----------
    fit
        A fitted model. Its ``posterior_predictive`` group is used when present (see
        :func:`hierbayes.add_posterior_predictive`); otherwise replicates are drawn for the plot
        (seeded from the fit) without changing the fit.
    kind
        ``"dist"``: densities of the observed and replicated response (``plot_ppc_dist``);
        ``"rootogram"``: observed and replicated counts per value (``plot_ppc_rootogram``);
        ``"calibration"``: PAVA-calibration curve of a binary response (``plot_ppc_pava``);
        ``"pit"``: ECDF of the probability integral transform (``plot_ppc_pit``);
        ``"loo_pit"``: the same, leave-one-out (``plot_loo_pit``; adds the log-likelihood);
        ``"group"``: observed against replicated mean per level of ``group`` (the report's
        group-level check); ``"auto"``: ``"dist"`` for Gaussian, ``"calibration"`` for a
        binary, ``"rootogram"`` for a count response.
    group
        Grouping factor for ``kind="group"`` (default: the first).
    prob
        Interval probability for ``kind="group"``.
    random_seed
        Seed of replicates drawn for the plot (then the fit's own group is not used).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import arviz_plots as azp

    family = get_family(fit.spec.family)
    if kind == "auto":
        kind = "calibration" if family.binary else "rootogram" if family.discrete else "dist"
    tree = _with_predictive(fit, random_seed)
    if family.discrete:  # the response is stored as floats; arviz_plots tells discrete data by dtype
        tree = tree.copy()
        observed = tree["observed_data"].to_dataset()
        tree["observed_data"] = xr.DataTree(observed.assign(y=observed["y"].round().astype(np.int64)))
    if kind == "group":
        return _group_check(fit, tree, group, prob)
    if kind == "calibration" and not family.binary:
        raise SpecError(
            f"kind='calibration' is for a binary response (bernoulli); this model is {fit.spec.family}. "
            "Use kind='rootogram' or 'pit'."
        )
    if kind == "rootogram" and not family.discrete:
        raise SpecError("kind='rootogram' is for a count response; this model is gaussian. Use kind='dist' or 'pit'.")
    if kind == "loo_pit" and "log_likelihood" not in tree.children:
        tree = tree.copy()
        tree["log_likelihood"] = xr.DataTree(xr.Dataset({"y": log_likelihood(fit)}))
    functions: dict[str, Any] = {
        "dist": azp.plot_ppc_dist,
        "rootogram": azp.plot_ppc_rootogram,
        "calibration": azp.plot_ppc_pava,
        "pit": azp.plot_ppc_pit,
        "loo_pit": azp.plot_loo_pit,
    }
    if kind not in functions:
        allowed = ", ".join(map(repr, ["auto", *functions, "group"]))
        raise ValueError(f"kind must be one of {allowed}; received {kind!r}.")
    extra: dict[str, Any] = {}
    if kind == "dist":  # at most the replicates there are (arviz_plots draws 50 by default)
        pp = tree["posterior_predictive"]
        extra["num_samples"] = min(50, int(pp.sizes["chain"] * pp.sizes["draw"]))
    pc = functions[kind](tree, var_names=["y"], backend="matplotlib", **extra)
    fig = pc.viz["figure"].item()
    import matplotlib.pyplot as plt

    plt.close(fig)  # returned, not shown: keep pyplot's global list of open figures empty
    return fig
