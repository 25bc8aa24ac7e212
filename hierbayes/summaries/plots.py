"""Plots of a fit's group-level estimates; each function returns a matplotlib ``Figure``.

* :func:`plot_shrinkage` -- the classic shrinkage arrow plot: for every level an arrow from its
  no-pooling estimate to the model's partial-pooling estimate, with the complete-pooling
  estimate as a horizontal line (data from :func:`hierbayes.shrinkage`).
* :func:`plot_caterpillar` -- the levels' effects with their intervals, sorted (data from
  :func:`hierbayes.group_effects`).

Nothing is shown (no ``plt.show()``); save the figure or display it in a notebook. Figures are
created with :class:`matplotlib.figure.Figure` directly, not through ``pyplot``'s global state,
unless an ``ax`` is passed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from hierbayes.inference.posterior import DEFAULT_PROB
from hierbayes.inference.result import Fit
from hierbayes.summaries.shrinkage import group_effects, shrinkage

__all__ = ["plot_caterpillar", "plot_shrinkage"]

#: Above this many levels the level labels are left off the caterpillar plot's axis.
MAX_LABELLED_LEVELS = 40

XAxis = Literal["auto", "n", "rank"]


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_shrinkage(
    fit: Fit | pd.DataFrame,
    group: str | None = None,
    *,
    coef: str = "Intercept",
    x: XAxis = "auto",
    ax: Axes | None = None,
) -> Figure:
    """Arrows from each level's no-pooling estimate to its partial-pooling estimate.

    Parameters
    ----------
    fit
        A Gaussian fit (then ``group`` is required), or a table from :func:`hierbayes.shrinkage`.
    group, coef
        Passed to :func:`hierbayes.shrinkage` when ``fit`` is a fit.
    x
        Horizontal position of each level: ``"n"`` (group size, jittered a little when sizes
        repeat), ``"rank"`` (rank of the no-pooling estimate), or ``"auto"``: ``"n"`` unless
        every level has the same size (eight schools), then ``"rank"``.
    ax
        Draw into these axes instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        One arrow (a ``FancyArrowPatch``) per level with a no-pooling estimate, two scatter
        collections (no pooling, partial pooling) and a horizontal complete-pooling line.
    """
    if isinstance(fit, pd.DataFrame):
        table = fit
    else:
        if group is None:
            raise ValueError("plot_shrinkage(fit, group): name the grouping factor, e.g. group='school'.")
        table = shrinkage(fit, group, coef=coef)
    if x not in ("auto", "n", "rank"):
        raise ValueError(f"x must be 'auto', 'n' or 'rank'; received {x!r}.")
    table = table[np.isfinite(table["no_pooling"])]
    n = table["n"].to_numpy(dtype=float)
    if x == "auto":
        x = "rank" if np.all(n == n[0]) else "n"
    if x == "n":
        rng = np.random.default_rng(0)  # fixed: the jitter only separates repeated sizes
        xs = n * np.exp(rng.uniform(-0.04, 0.04, size=n.size)) if len(np.unique(n)) < n.size else n
        xlabel = "group size (rows, log scale)"
    else:
        xs = table["no_pooling"].rank(method="first").to_numpy()
        xlabel = "rank of the no-pooling estimate"

    fig, ax = _axes(ax, (7.0, 4.5))
    no_pool = table["no_pooling"].to_numpy()
    partial = table["partial_pooling"].to_numpy()
    for xi, a, b in zip(xs, no_pool, partial, strict=True):
        ax.add_patch(
            FancyArrowPatch((xi, a), (xi, b), arrowstyle="-|>", mutation_scale=8, color="0.45", lw=0.8, zorder=1)
        )
    ax.scatter(xs, no_pool, facecolors="none", edgecolors="C0", label="no pooling", zorder=2)
    ax.scatter(xs, partial, color="C1", s=18, label="partial pooling (posterior mean)", zorder=3)
    complete = float(table["complete_pooling"].iloc[0])
    ax.axhline(complete, color="C2", ls="--", lw=1, label="complete pooling", zorder=0)
    if x == "n":
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    if x == "rank" and len(table) <= MAX_LABELLED_LEVELS:
        ax.set_xticks(xs, [str(v) for v in table.index], rotation=90 if len(table) > 12 else 0)
    name = table.index.name or "level"
    what = table.attrs.get("coef", coef)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{what} of each {name}")
    ax.set_title(f"Shrinkage of {what} by {name}")  # no plural suffix: "Days" would become "Dayss"
    ax.legend(loc="best", fontsize="small")
    return fig


def plot_caterpillar(
    fit: Fit,
    group: str,
    *,
    coef: str = "Intercept",
    total: bool = False,
    prob: float = DEFAULT_PROB,
    ax: Axes | None = None,
    extremes: int | None = None,
) -> Figure:
    """The levels' effects with equal-tailed intervals, sorted by posterior mean.

    Parameters
    ----------
    fit
        From :func:`hierbayes.fit` (GLMMs on the link scale).
    group, coef, total, prob
        Passed to :func:`hierbayes.group_effects`: by default the effects :math:`u_j` of the
        intercept with 94% intervals; ``total=True`` plots the levels' total coefficients.
    ax
        Draw into these axes instead of a new figure (not with ``extremes``).
    extremes
        For factors with more than ``2 * extremes`` levels (1,595 mothers): plot only the
        ``extremes`` lowest and highest levels, labelled, and next to them a histogram of the
        posterior means of all levels, so the plot stays readable. ``None`` plots every level.

    Returns
    -------
    matplotlib.figure.Figure
        One line collection (the intervals), one line of points (the posterior means) and a
        vertical reference line (0, or the average of the levels' means when ``total=True``);
        with ``extremes`` a second axes with the histogram.
    """
    effects = group_effects(fit, group, coef=coef, total=total, prob=prob).sort_values("mean")
    if extremes is not None and len(effects) > 2 * extremes:
        return _caterpillar_extremes(effects, group, coef, total, prob, extremes)
    n = len(effects)
    fig, ax = _axes(ax, (6.0, min(12.0, max(3.0, 0.22 * n + 1.0)) if n <= MAX_LABELLED_LEVELS else 6.0))
    pos = np.arange(n)
    ax.hlines(pos, effects["lower"], effects["upper"], color="C0", lw=1.0 if n <= 200 else 0.4)
    ax.plot(effects["mean"], pos, "o", color="C0", ms=3 if n <= 200 else 1)
    ref = 0.0 if not total else float(effects["mean"].mean())
    ax.axvline(ref, color="0.5", ls="--", lw=1)
    if n <= MAX_LABELLED_LEVELS:
        ax.set_yticks(pos, [str(v) for v in effects.index])
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n} levels of {group}, sorted")
    pct = f"{round(prob * 100)}%"
    ax.set_xlabel(f"{coef if total else 'u, ' + coef}: posterior mean and {pct} interval")
    what = f"total {coef} of each level" if total else f"effects on the {coef} (deviations from the population)"
    ax.set_title(f"{group}: {what}", fontsize="medium")
    return fig


def _caterpillar_extremes(
    effects: pd.DataFrame, group: str, coef: str, total: bool, prob: float, extremes: int
) -> Figure:
    """The lowest and highest ``extremes`` levels with labels, and a histogram of all levels' means."""
    n = len(effects)
    shown = pd.concat([effects.iloc[:extremes], effects.iloc[-extremes:]])
    fig = Figure(figsize=(9.0, max(4.0, 0.2 * len(shown) + 1.2)), layout="constrained")
    ax, hist = fig.subplots(1, 2, width_ratios=(3, 2))
    pos = np.arange(len(shown))
    pos = np.where(pos >= extremes, pos + 1, pos)  # a gap between the two ends
    ax.hlines(pos, shown["lower"], shown["upper"], color="C0", lw=1.0)
    ax.plot(shown["mean"], pos, "o", color="C0", ms=3)
    ref = 0.0 if not total else float(effects["mean"].mean())
    ax.axvline(ref, color="0.5", ls="--", lw=1)
    ax.axhline(extremes, color="0.8", lw=6)
    ax.set_yticks(pos, [str(v) for v in shown.index], fontsize="small")
    pct = f"{round(prob * 100)}%"
    ax.set_xlabel(f"{coef if total else 'u, ' + coef}: posterior mean and {pct} interval")
    ax.set_title(f"{group}: the {extremes} lowest and highest of {n} levels", fontsize="medium")
    hist.hist(effects["mean"], bins=min(60, max(10, n // 20)), color="#9fb3d1", orientation="vertical")
    hist.axvline(ref, color="0.5", ls="--", lw=1)
    for value in (shown["mean"].iloc[extremes - 1], shown["mean"].iloc[extremes]):
        hist.axvline(float(value), color="C0", lw=0.8)
    hist.set_xlabel("posterior mean of each level")
    hist.set_ylabel("number of levels")
    hist.set_title(f"all {n} levels", fontsize="medium")
    return fig
