r"""Conditional effects on a grid, and average comparisons on the response scale.

Notation: :math:`\eta(x) = x^\top\beta + \sum_k z_k(x)^\top u_k + o`, mean :math:`\mu = g^{-1}(\eta)`.

Conditional effects (brms ``conditional_effects``, bambi ``plot_predictions``)
------------------------------------------------------------------------------
:func:`conditional_effects` predicts on a grid: the ``effect`` variable over its range (or its
levels), crossed with the values of ``by``; every other predictor is held at its mean (numeric)
or its most frequent value (categorical and boolean), unless given in ``at``. For draw :math:`s`
the grid row's estimate is :math:`g^{-1}(\eta^{(s)})` (``kind="mean"``) or :math:`\eta^{(s)}`
(``kind="linear"``), summarised by its posterior mean and equal-tailed interval. It is computed
at the **population level** (every :math:`u = 0`, brms ``re_formula = NA``), except when ``by``
is a grouping factor: then each curve is conditional on that level's own effects.

Average comparisons (marginaleffects ``avg_comparisons``, bambi ``interpret.comparisons``)
-------------------------------------------------------------------------------------------
:func:`average_comparison` sets ``variable`` to ``values[1]`` and to ``values[0]`` in every row
of the data (counterfactually) and compares the average expected responses,

.. math::

    \bar\mu_v^{(s)} = \frac1n \sum_i \int g^{-1}\big(\eta_i^{(s)}(v) \big|_{u}\big)\,
    N(u \mid 0, \Omega^{(s)})\,du, \qquad
    \Delta^{(s)} = \bar\mu_{v_1}^{(s)} - \bar\mu_{v_0}^{(s)}
    \ \text{or}\ \frac{\bar\mu_{v_1}^{(s)}/(1 - \bar\mu_{v_1}^{(s)})}{\bar\mu_{v_0}^{(s)}/(1 - \bar\mu_{v_0}^{(s)})}
    \ \text{or}\ \frac{\bar\mu_{v_1}^{(s)}}{\bar\mu_{v_0}^{(s)}},

one number per draw, so one row with its interval: the **population-averaged** comparison
(the integral over :math:`u` by Monte Carlo, as :func:`hierbayes.population_averaged`). With
``population_averaged=False`` the rows' own fitted effects :math:`u_{j[i]}` are used instead
(the in-sample average over the observed groups).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hierbayes.design import required_columns
from hierbayes.exceptions import DataError, SpecError
from hierbayes.families import get_family, inverse_link
from hierbayes.inference.posterior import DEFAULT_PROB, check_prob, interval_stats
from hierbayes.inference.result import Fit
from hierbayes.summaries.population import mc_means
from hierbayes.summaries.prediction import linear_predictor, prediction_rows

__all__ = ["Comparison", "average_comparison", "conditional_effects", "plot_conditional_effects"]

Comparison = Literal["auto", "difference", "ratio", "odds_ratio"]

#: Number of values of a numeric ``by`` variable (its mean - sd, mean, mean + sd, as brms).
_BY_NUMERIC = 3


def predictor_columns(fit: Fit) -> list[str]:
    """Data columns of the fixed part and the random slopes (not the response, not grouping factors)."""
    spec = fit.spec
    skip = {spec.response, spec.trials, spec.failures, spec.known_sigma}
    factors = {c for g in spec.groups for c in g.factor}
    return [c for c in required_columns(spec) if c not in skip and c not in factors and c in fit.design.data]


def _typical(series: pd.Series) -> Any:
    if pd.api.types.is_numeric_dtype(series) and series.dtype != bool:
        return float(series.mean())
    return series.mode().iloc[0]


def _values_of(series: pd.Series, n_points: int, numeric_by: bool = False) -> list[Any]:
    if pd.api.types.is_numeric_dtype(series) and series.dtype != bool:
        if numeric_by:
            m, sd = float(series.mean()), float(series.std())
            return [m - sd, m, m + sd]
        distinct = np.unique(series.to_numpy())
        if distinct.size <= 2:  # a 0/1 indicator
            return list(distinct)
        return list(np.linspace(float(series.min()), float(series.max()), n_points))
    return sorted(series.unique(), key=str)


def conditional_effects(
    fit: Fit,
    effect: str,
    *,
    by: str | None = None,
    at: dict[str, Any] | None = None,
    kind: Literal["mean", "linear"] = "mean",
    n_points: int = 50,
    prob: float = DEFAULT_PROB,
) -> pd.DataFrame:
    r"""Predictions over a grid of one variable (and ``by``), the others held fixed.

    See the module docstring. Computed from the posterior draws; no refitting.

    Parameters
    ----------
    fit
        A fitted model.
    effect
        A predictor column: numeric (``n_points`` values from its minimum to its maximum; a 0/1
        column gives 0 and 1) or categorical (its levels).
    by
        Optional second variable: a predictor (numeric: mean - sd, mean, mean + sd; categorical:
        its levels) or a grouping factor (then one curve per level, conditional on its effects).
    at
        Values for other predictors (default: numeric at the mean, others at their most frequent
        value).
    kind
        ``"mean"`` (response scale, e.g. a probability) or ``"linear"`` (link scale).
    n_points
        Grid size of a numeric ``effect``.
    prob
        Interval probability.

    Returns
    -------
    pandas.DataFrame
        One row per grid point: the predictor columns, then ``mean``, ``sd``, ``lower``,
        ``upper`` of the estimate.

    Raises
    ------
    DataError
        For an ``effect``, ``by`` or ``at`` column the model does not use.
    """
    check_prob(prob)
    if kind not in ("mean", "linear"):
        raise ValueError(f"kind must be 'mean' or 'linear'; received {kind!r}.")
    data = fit.design.data
    predictors = predictor_columns(fit)
    factors = {g.name: g for g in fit.design.groups if len(g.term.factor) == 1}
    for name, what in ((effect, "effect"), (by, "by")):
        if name is None:
            continue
        if name not in predictors and not (what == "by" and name in factors):
            allowed = predictors + ([*factors] if what == "by" else [])
            raise DataError(
                f"{what}={name!r} is not a predictor of this model ({fit.spec.formula()}); use one of: "
                f"{', '.join(allowed)}."
            )
    at = dict(at or {})
    unknown = [c for c in at if c not in predictors]
    if unknown:
        raise DataError(f"at= names {unknown}, which the model does not use; its predictors: {', '.join(predictors)}.")
    grid_axes: dict[str, list[Any]] = {effect: _values_of(data[effect], n_points)}
    if by is not None:
        grid_axes[by] = list(fit.design.group(by).levels) if by in factors else _values_of(data[by], n_points, True)
    index = pd.MultiIndex.from_product(list(grid_axes.values()), names=list(grid_axes))
    grid = index.to_frame(index=False)
    for col in predictors:
        if col not in grid:
            grid[col] = at[col] if col in at else _typical(data[col])
    if by in factors:
        grid[by] = grid[by].astype(str)  # level labels; matched to the fitted levels by label
    eta = linear_predictor(fit, grid, include_group_effects=by in factors).values
    values = eta.reshape(-1, eta.shape[-1])
    if kind == "mean":
        values = inverse_link(str(fit.spec.link), values)
    lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    out = grid[[*grid_axes, *[c for c in predictors if c not in grid_axes]]].copy()
    out["mean"] = values.mean(axis=0)
    out["sd"] = values.std(axis=0, ddof=1)
    out["lower"] = lo
    out["upper"] = hi
    out.attrs = {"effect": effect, "by": by, "kind": kind, "prob": prob, "response": fit.spec.response}
    return out


def plot_conditional_effects(
    fit: Fit | pd.DataFrame,
    effect: str | None = None,
    *,
    by: str | None = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Figure:
    """Plot :func:`conditional_effects`: a line with its interval band per ``by`` value.

    Parameters
    ----------
    fit
        A fit (then ``effect`` is required; ``by`` and ``kwargs`` go to
        :func:`conditional_effects`) or a table from it.
    effect, by
        As :func:`conditional_effects`.
    ax
        Axes to draw on; a new figure by default.
    **kwargs
        Passed to :func:`conditional_effects`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(fit, Fit):
        if effect is None:
            raise ValueError("plot_conditional_effects(fit, effect): name the predictor to vary.")
        table = conditional_effects(fit, effect, by=by, **kwargs)
    else:
        table = fit
    effect = table.attrs.get("effect", effect)
    by = table.attrs.get("by", by)
    if ax is None:
        fig = Figure(figsize=(6.0, 3.8), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    groups = [(None, table)] if by is None else list(table.groupby(by, sort=False))
    numeric = pd.api.types.is_numeric_dtype(table[effect])
    many = len(groups) > 12
    for key, part in groups:
        label = None if key is None or many else f"{by} = {key:.3g}" if isinstance(key, float) else f"{by} = {key}"
        if numeric:
            (line,) = ax.plot(part[effect], part["mean"], lw=1.2 if not many else 0.7, label=label)
            if not many:
                ax.fill_between(part[effect], part["lower"], part["upper"], alpha=0.2, color=line.get_color(), lw=0)
        else:
            x = np.arange(len(part))
            ax.errorbar(
                x,
                part["mean"],
                yerr=[part["mean"] - part["lower"], part["upper"] - part["mean"]],
                fmt="o",
                capsize=3,
                label=label,
            )
            ax.set_xticks(x, [str(v) for v in part[effect]])
    ax.set_xlabel(str(effect))
    kind = table.attrs.get("kind", "mean")
    response = table.attrs.get("response", "y")
    ax.set_ylabel(f"E[{response}]" if kind == "mean" else f"linear predictor of {response}")
    prob = table.attrs.get("prob", DEFAULT_PROB)
    ax.set_title(f"Conditional effect of {effect} (mean, {round(prob * 100)}% interval)", fontsize=10)
    if by is not None and not many:
        ax.legend(frameon=False, fontsize=8)
    return fig


def _comparison_rows(fit: Fit, variable: str, values: tuple[Any, Any] | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    data = fit.design.data
    if variable not in predictor_columns(fit):
        raise DataError(
            f"variable={variable!r} is not a predictor of this model ({fit.spec.formula()}); use one of: "
            f"{', '.join(predictor_columns(fit))}."
        )
    lo, hi = data.copy(), data.copy()
    series = data[variable]
    if values is None:
        if pd.api.types.is_numeric_dtype(series) and series.dtype != bool:
            distinct = np.unique(series.to_numpy())
            if distinct.size == 2:
                values = (distinct[0], distinct[1])
            else:
                lo[variable], hi[variable] = series, series + 1.0
                return lo, hi, f"+1 ({variable} + 1 vs {variable})"
        else:
            levels = sorted(series.unique(), key=str)
            if len(levels) != 2:
                raise SpecError(
                    f"{variable!r} has {len(levels)} levels; pass values=(reference, other) to say which two "
                    "to compare."
                )
            values = (levels[0], levels[1])
    lo[variable], hi[variable] = values[0], values[1]
    return lo, hi, f"{values[1]} - {values[0]}"


def average_comparison(
    fit: Fit,
    variable: str,
    *,
    values: tuple[Any, Any] | None = None,
    comparison: Comparison = "auto",
    population_averaged: bool = True,
    n_draws: int = 100,
    random_seed: int | np.random.Generator | None = None,
    prob: float = DEFAULT_PROB,
) -> pd.DataFrame:
    r"""Average comparison of ``variable`` on the response scale: one row with its interval.

    See the module docstring for the estimand.

    Parameters
    ----------
    fit
        A fitted model.
    variable
        A predictor column.
    values
        The two values compared, ``(v0, v1)``; by default the two values of a binary column or
        the two levels of a categorical one, and for other numeric columns a one-unit increase
        of every row (:math:`x_i + 1` against :math:`x_i`).
    comparison
        ``"difference"`` of the average means, their ``"ratio"``, or the ``"odds_ratio"`` of
        the average probabilities; ``"auto"``: odds ratio for bernoulli/binomial, ratio for log
        links, difference otherwise.
    population_averaged
        Integrate the random effects out (default; Monte Carlo with ``n_draws`` draws of
        :math:`u` per posterior draw), or use the rows' fitted effects (``False``).
    n_draws
        Monte Carlo draws of :math:`u` per posterior draw.
    random_seed
        Seed for the Monte Carlo draws; ``None`` uses the fit's seed.
    prob
        Interval probability.

    Returns
    -------
    pandas.DataFrame
        One row indexed by ``variable``: ``contrast`` (what was compared), ``comparison``,
        ``mean``, ``sd``, ``median``, ``lower``, ``upper``, and ``mean_0``, ``mean_1``, the
        posterior means of the two average responses.
    """
    check_prob(prob)
    if comparison == "auto":
        measure = get_family(fit.spec.family).effect_measure
        comparison = {"odds_ratio": "odds_ratio", "rate_ratio": "ratio"}.get(measure, "difference")  # type: ignore[assignment]
    if comparison not in ("difference", "ratio", "odds_ratio"):
        raise ValueError(f"comparison must be 'auto', 'difference', 'ratio' or 'odds_ratio'; received {comparison!r}.")
    lo, hi, label = _comparison_rows(fit, variable, values)
    n = len(lo)
    stacked = pd.concat([lo, hi], ignore_index=True)
    if population_averaged:
        seed = random_seed if random_seed is not None else fit.settings.get("random_seed")
        rows = prediction_rows(fit, stacked)
        _, means = mc_means(fit, rows, n_draws, np.random.default_rng(seed))
    else:
        eta = linear_predictor(fit, stacked).values
        means = inverse_link(str(fit.spec.link), eta.reshape(-1, eta.shape[-1]))
    m0, m1 = means[:, :n].mean(axis=1), means[:, n:].mean(axis=1)
    if comparison == "difference":
        draws = m1 - m0
    elif comparison == "ratio":
        draws = m1 / m0
    else:
        draws = (m1 / (1 - m1)) / (m0 / (1 - m0))
    stats = interval_stats(draws, prob, median=True)
    row = {"contrast": label, "comparison": comparison} | stats
    row |= {"mean_0": float(m0.mean()), "mean_1": float(m1.mean())}
    return pd.DataFrame([row], index=pd.Index([variable], name="variable"))
