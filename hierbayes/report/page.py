r"""One self-contained HTML report of a fit.

:func:`report` writes a single HTML file that opens offline: CSS inline, figures as base64 PNG
``data:`` URIs (matplotlib's Agg renderer), the model's equations as MathML, no script and no
external URL (a Content-Security-Policy in the page forbids loading anything that is not inline).

Sections: the model (equations and priors), the data (observations, levels per grouping
factor, nesting), the lmer-like summary tables (:func:`hierbayes.summary`), convergence
diagnostics in plain words (with ArviZ rank plots), posterior predictive checks
(:func:`hierbayes.summaries.prediction.posterior_predictive`), the variance partition
(:func:`hierbayes.variance_partition`), shrinkage (:func:`hierbayes.shrinkage` and
:func:`hierbayes.plot_shrinkage`, Gaussian models), the levels' effects
(:func:`hierbayes.plot_caterpillar`) and the exact settings, seed and library versions.

Posterior predictive checks replicate the data :math:`y^{\mathrm{rep}(s)}` from
:math:`S` posterior draws :math:`s` (evenly spaced over all chains and draws), with the
family's likelihood at the draw's linear predictor
:math:`\eta^{(s)}_i = x_i^\top\beta^{(s)} + \sum_k z_{ik}^\top u^{(s)}_{k,j_k[i]} + o_i`.
The report compares (a) the distribution of :math:`y` with the replicated ones (densities for a
continuous response, bar charts of the frequencies for a binary or count response) and (b) the
observed mean of :math:`y` per level of the first grouping factor with the replicated means.

The report is deterministic: the same fit gives the same bytes (replications use a seed derived
from the fit's own ``random_seed``; PNGs are written without a timestamp), so
``hierbayes report posterior.nc`` rebuilds an identical file from a saved fit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from hierbayes._version import __version__
from hierbayes.exceptions import SpecError
from hierbayes.families import get_family
from hierbayes.inference.diagnostics import ESS_PER_CHAIN_MIN, RHAT_MAX
from hierbayes.inference.result import Fit
from hierbayes.io import atomic_write_text
from hierbayes.report.html import (
    Cell,
    close_figure,
    data_section,
    esc,
    figure,
    fmt,
    model_section,
    new_figure,
    plotting,
    png,
    table,
)
from hierbayes.spec import names
from hierbayes.spec.serialise import jsonable
from hierbayes.summaries.checks import bayes_r2, draw_group_check, group_check
from hierbayes.summaries.conditional import plot_conditional_effects, predictor_columns
from hierbayes.summaries.contrasts import odds_ratios, rate_ratios
from hierbayes.summaries.draws import thinned, with_random_effects
from hierbayes.summaries.effects import DEFAULT_PROB, column_format, summary, variance_rows
from hierbayes.summaries.plots import plot_caterpillar, plot_shrinkage
from hierbayes.summaries.prediction import log_likelihood, posterior_predictive
from hierbayes.summaries.shrinkage import shrinkage
from hierbayes.summaries.variance import variance_partition

__all__ = [
    "CATERPILLAR_EXTREMES",
    "CHECK_DRAWS",
    "EBFMI_MIN",
    "EFFECT_DRAWS",
    "PPC_DRAWS",
    "RANK_PLOT_ROWS",
    "SHRINKAGE_LEVELS",
    "render_report",
    "report",
]

#: Number of posterior draws replicated for the posterior predictive checks.
PPC_DRAWS = 100
#: Most levels drawn in one shrinkage plot (one arrow each); larger factors show an even spread.
SHRINKAGE_LEVELS = 300
#: Posterior draws used when a collapsed fit's random effects have to be drawn for the report.
EFFECT_DRAWS = 1000
#: Levels shown at each end of a caterpillar plot of a large grouping factor (the rest as a histogram).
CATERPILLAR_EXTREMES = 15
#: Posterior draws used for LOO, Bayes R2 and the conditional-effects plot.
CHECK_DRAWS = 1000
#: Most parameters in the rank plot of the fixed effects and correlations.
RANK_PLOT_ROWS = 12
#: E-BFMI below this (per chain) means the sampler explored the energy distribution poorly (Betancourt 2016).
EBFMI_MIN = 0.3

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d8dde6;padding-bottom:.2em;margin-top:2em}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:.9em}
pre{background:#f5f7fa;padding:.8em;overflow-x:auto;border-radius:4px}
table{border-collapse:collapse;margin:.6em 0 1.2em 0;font-size:.92em}
th,td{padding:.25em .7em;border-bottom:1px solid #e3e7ee;text-align:right;vertical-align:top}
th{background:#f0f3f8}td.l,th.l{text-align:left}
.ok{color:#17663a;font-weight:600}.bad{color:#a3261b;font-weight:600}
.math{overflow-x:auto;margin:.4em 0 .4em 1em}math{font-size:1.1em}
.verdict{padding:.6em 1em;border-radius:4px;margin:.6em 0}
.verdict.ok{background:#e8f5ec}.verdict.bad{background:#fbeae8}
nav ol{columns:2;font-size:.95em}figure{margin:1em 0}figcaption{font-size:.9em;color:#4a5468}
img{max-width:100%;height:auto}.note{color:#4a5468;font-size:.92em}
"""


# --------------------------------------------------------------------------- summary


def _interval(r: Any) -> str:
    return f"{fmt(r['mean'])} [{fmt(r['lower'])}, {fmt(r['upper'])}]"


def _summary_section(fit: Fit) -> str:
    s = summary(fit)
    pct = f"{round(s.prob * 100)}%"
    parts = [f"<p>Posterior means with equal-tailed {pct} intervals.</p>", "<h3>Random effects</h3>"]
    rows = []
    for group, name, var, spread in variance_rows(s):
        first = var if var is not None else spread
        assert first is not None
        rows.append(
            [
                group,
                name,
                _interval(var) if var is not None else "",
                _interval(spread) if spread is not None else "",
                f"{first['r_hat']:.3f}",
                f"{first['ess_bulk']:.0f}",
            ]
        )
    parts.append(
        table(["Groups", "Name", "Variance", "Std.Dev.", "R-hat", "ESS bulk"], rows, ident="summary-random", left=2)
    )
    corr = s.random[s.random.quantity == "corr"]
    if not corr.empty:
        parts.append(
            table(
                ["Groups", "Pair", "Correlation", "R-hat", "ESS bulk"],
                [
                    [
                        r["group"],
                        r["name"].replace(":", " ~ "),
                        _interval(r),
                        f"{r['r_hat']:.3f}",
                        f"{r['ess_bulk']:.0f}",
                    ]
                    for _, r in corr.iterrows()
                ],
                ident="summary-corr",
                left=2,
            )
        )
    groups = "; ".join(f"{k}: {v}" for k, v in s.ngroups.items())
    parts.append(f"<p>Number of observations: {s.nobs}" + (f"; levels: {esc(groups)}" if groups else "") + ".</p>")
    parts.append("<h3>Fixed effects</h3>")
    # one fixed-point format per column, as the text summary (no 5.1e-04 beside 0.0453)
    number = {col: column_format(s.fixed[col]) for col in ("mean", "sd", "lower", "upper", "mcse_mean")}
    parts.append(
        table(
            ["", "Mean", "SD", f"{pct} lower", f"{pct} upper", "R-hat", "ESS bulk", "ESS tail", "MCSE"],
            [
                [
                    name,
                    *(number[col](r[col]) for col in ("mean", "sd", "lower", "upper")),
                    f"{r['r_hat']:.3f}",
                    f"{r['ess_bulk']:.0f}",
                    f"{r['ess_tail']:.0f}",
                    number["mcse_mean"](r["mcse_mean"]),
                ]
                for name, r in s.fixed.iterrows()
            ],
            ident="summary-fixed",
        )
    )
    parts.append(f"<details><summary>As text (lmer-like)</summary><pre>{esc(str(s))}</pre></details>")
    return "\n".join(parts)


# ----------------------------------------------------------------------- diagnostics


def _verdict(ok: bool) -> Cell:
    return Cell("OK", "ok") if ok else Cell("Problem", "bad")


def _diagnostics_section(fit: Fit) -> str:
    d = fit.diagnostics
    if d is None:
        return "<p>No diagnostics were recorded for this fit.</p>"
    need = ESS_PER_CHAIN_MIN * d.chains
    rows = [
        ["Divergent transitions", str(d.divergences), "0", _verdict(d.divergences == 0)],
        [
            f"Largest R-hat ({d.max_rhat[0] or '—'})",
            f"{d.max_rhat[1]:.3f}",
            f"≤ {RHAT_MAX}",
            _verdict(d.chains < 2 or d.max_rhat[1] <= RHAT_MAX),
        ],
        [
            f"Smallest bulk ESS ({d.min_ess_bulk[0] or '—'})",
            fmt(d.min_ess_bulk[1]),
            f"≥ {need}",
            _verdict(not np.isfinite(d.min_ess_bulk[1]) or d.min_ess_bulk[1] >= need),
        ],
        [
            f"Smallest tail ESS ({d.min_ess_tail[0] or '—'})",
            fmt(d.min_ess_tail[1]),
            f"≥ {need}",
            _verdict(not np.isfinite(d.min_ess_tail[1]) or d.min_ess_tail[1] >= need),
        ],
        ["Draws at maximum tree depth", str(d.treedepth_hits), "0", _verdict(d.treedepth_hits == 0)],
    ]
    bfmi = _min_bfmi(fit)
    if bfmi is not None:
        rows.append([f"Smallest E-BFMI ({bfmi[0]})", fmt(bfmi[1]), f"≥ {EBFMI_MIN}", _verdict(bfmi[1] >= EBFMI_MIN)])
    checks = table(["Check", "Value", "Wanted", "Verdict"], rows, ident="diagnostics")
    where = f"{d.chains} chain(s) × {d.draws} draws"
    if d.ok:
        verdict = (
            f'<div class="verdict ok">All checks passed ({where}): no divergences, the chains agree '
            "and there are enough effective draws for the means and intervals reported.</div>"
        )
    else:
        items = "".join(f"<li>{esc(p)}</li>" for p in d.problems)
        verdict = (
            f'<div class="verdict bad">{len(d.problems)} problem(s) found ({where}); '
            f"treat the numbers above with care:<ul>{items}</ul></div>"
        )
    return "\n".join([verdict, checks, _rank_plot(fit), _rank_plot_fixed(fit)])


def _min_bfmi(fit: Fit) -> tuple[str, float] | None:
    """The smallest energy Bayesian fraction of missing information over chains (``arviz_stats.bfmi``)."""
    tree = fit.idata
    if "sample_stats" not in tree.children or "energy" not in tree["sample_stats"].data_vars:
        return None
    import arviz_stats

    values = arviz_stats.bfmi(tree).to_dataset()["energy"]
    k = int(np.argmin(values.values))
    return f"chain {values.coords['chain'].values[k]}", float(values.values[k])


def _rank_plot(fit: Fit) -> str:
    post = fit.posterior
    params = [names.sd(g.name) for g in fit.design.groups] + [n for n in ("sigma", "alpha") if n in post]
    params = [n for n in params if n in post]
    if not params or post.sizes["chain"] < 2:
        return ""
    import arviz_plots as azp

    with plotting():
        pc = azp.plot_rank_dist(fit.idata, var_names=params, backend="matplotlib")
        fig = pc.viz["figure"].item()
        img = png(fig, "Rank plots of the standard deviations")
        close_figure(fig)
    return figure(
        img,
        "Posterior densities per chain (left) and rank plots (right) of the standard "
        "deviations: with well-mixed chains the densities overlap and the ranks are uniform.",
    )


def _rank_plot_fixed(fit: Fit) -> str:
    """Rank plots of the fixed effects and the off-diagonal correlations, one row each, chains in the legend."""
    post = fit.idata["posterior"]
    if post.sizes.get("chain", 1) < 2:
        return ""
    columns: dict[str, Any] = {}
    if names.BETA in post.data_vars:
        for coef in post[names.BETA].coords["coef"].values[:RANK_PLOT_ROWS]:
            columns[f"beta[{coef}]"] = post[names.BETA].sel(coef=coef).drop_vars("coef")
    for g in fit.design.groups:
        name = names.corr(g.name)
        if name not in post.data_vars:
            continue
        q = len(g.coef_names)
        for i in range(q):
            for j in range(i + 1, q):
                da = post[name].isel({g.coef_dim: i, f"{g.coef_dim}_": j})
                columns[f"corr_{g.name}[{g.coef_names[i]}, {g.coef_names[j]}]"] = da.drop_vars(
                    [c for c in da.coords if c not in ("chain", "draw")]
                )
    columns = dict(list(columns.items())[:RANK_PLOT_ROWS])
    if not columns:
        return ""
    import arviz_plots as azp

    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(columns)})
    with plotting():
        pc = azp.plot_rank_dist(tree, backend="matplotlib")
        pc.add_legend("chain")
        fig = pc.viz["figure"].item()
        img = png(fig, "Rank plots of the fixed effects and correlations")
        close_figure(fig)
    return figure(
        img,
        "Posterior densities per chain (left) and rank plots (right) of the fixed effects and the "
        "correlations of the random effects (chains in the legend).",
    )


# ------------------------------------------------------------------------------- PPC


def _seed(fit: Fit) -> int:
    seed = fit.settings.get("random_seed")
    return int(seed) if isinstance(seed, int | np.integer) else 0


def _thinned(fit: Fit, n_draws: int) -> Fit:
    return thinned(fit, n_draws)


def _effects_fit(fit: Fit) -> tuple[Fit | None, str]:
    """A fit whose posterior holds every ``u_<g>`` (see :func:`hierbayes.summaries.draws.with_random_effects`)."""
    return with_random_effects(fit, EFFECT_DRAWS, random_seed=_seed(fit))


def _ppc_distribution(fit: Fit, yrep: np.ndarray) -> str:
    y = fit.design.y
    discrete = get_family(fit.spec.family).discrete
    if not discrete:
        import arviz_plots as azp

        tree = xr.DataTree.from_dict(
            {
                "posterior_predictive": xr.Dataset({fit.spec.response: (("chain", "draw", "obs"), yrep[None])}),
                "observed_data": xr.Dataset({fit.spec.response: (("obs",), y)}),
            }
        )
        with plotting():
            pc = azp.plot_ppc_dist(tree, backend="matplotlib")
            fig = pc.viz["figure"].item()
            img = png(fig, "Density of the observed and replicated response")
            close_figure(fig)
        return figure(
            img,
            f"Density of the observed <code>{esc(fit.spec.response)}</code> (black) and of "
            f"{len(yrep)} data sets replicated from the posterior (blue).",
        )
    values = (
        np.arange(0, 2)
        if get_family(fit.spec.family).binary
        else np.arange(0, int(min(max(np.quantile(y, 0.99), 1), 40)) + 1)
    )
    obs = np.array([(y == v).sum() for v in values], dtype=float)
    rep = np.stack([(yrep == v).sum(axis=1) for v in values], axis=1).astype(float)
    lo, mid, hi = np.quantile(rep, [(1 - DEFAULT_PROB) / 2, 0.5, (1 + DEFAULT_PROB) / 2], axis=0)
    with plotting():
        fig = new_figure(min(5.0 + 0.3 * len(values), 11), 3.2)
        ax = fig.add_subplot()
        ax.bar(values, obs, color="#9fb3d1", label="observed")
        ax.errorbar(
            values,
            mid,
            yerr=[mid - lo, hi - mid],
            fmt="o",
            color="#1d2330",
            ms=4,
            label=f"replicated (median, {round(DEFAULT_PROB * 100)}% interval)",
        )
        ax.set_xticks(values)
        ax.set_xlabel(fit.spec.response)
        ax.set_ylabel("number of observations")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        img = png(fig, "Observed and replicated frequencies of the response")
    return figure(
        img,
        f"Frequencies of each value of <code>{esc(fit.spec.response)}</code>: observed (bars) "
        f"and in {len(yrep)} replicated data sets (points and intervals).",
    )


def _ppc_groups(fit: Fit, yrep: np.ndarray) -> str:
    design = fit.design
    if not design.groups:
        return ""
    g = design.groups[0]
    check = group_check(design, g, yrep, DEFAULT_PROB)
    what, inside = check.what, check.inside
    pct = f"{round(DEFAULT_PROB * 100)}%"
    with plotting():
        fig = new_figure(5.0, 4.6)
        draw_group_check(fig.add_subplot(), check, fit.spec.response, g.name, DEFAULT_PROB)
        img = png(fig, f"Observed against replicated {what}s per {g.name}")
    return figure(
        img,
        f"Group-level check for <code>{esc(g.name)}</code>: each point is one of its {g.n_levels} levels, the "
        f"observed {what} against the {pct} interval of the replicated {what}s; the red line is equality. "
        f"<b>{inside} of {g.n_levels}</b> levels ({fmt(100 * inside / g.n_levels)}%) have their observed {what} "
        f"inside the interval (about {pct} expected).",
    )


def _ppc_section(fit: Fit, full: Fit | None, note: str) -> str:

    if full is None:
        return f"<p>{esc(note)} Posterior predictive checks need them; they are left out.</p>"
    small = _thinned(full, PPC_DRAWS)
    yrep = np.asarray(posterior_predictive(small, random_seed=_seed(fit)).values, dtype=float)
    yrep = yrep.reshape(-1, yrep.shape[-1])
    intro = (
        f"<p>{len(yrep)} data sets were replicated from evenly spaced posterior draws (seed "
        f"{_seed(fit)}) with <code>hierbayes.summaries.prediction.posterior_predictive</code>. If the model "
        "describes the data, the observed data look like a typical replicated data set.</p>"
    )
    extra = f'<p class="note">{esc(note)}</p>' if note else ""
    return "\n".join([intro, extra, _ppc_distribution(fit, yrep), _ppc_groups(fit, yrep)])


# ---------------------------------------------------------------- variance partition


def _variance_section(fit: Fit) -> str:
    if not fit.design.groups:
        return ""

    try:
        vp = variance_partition(fit)
    except SpecError as err:  # families without a latent residual variance (beta, zero-inflated)
        return f"<p>{esc(str(err))}</p>"
    pct = f"{round(vp.prob * 100)}%"
    rows = []
    for comp in vp.draws.coords["component"].values:
        cells = []
        for q in ("variance", "share", "icc"):
            r = vp.table[(vp.table.component == comp) & (vp.table.quantity == q)]
            cells.append("" if r.empty else _interval(r.iloc[0]))
        rows.append([str(comp), *cells])
    descr = vp.table[vp.table.quantity == "icc"]
    items = "".join(f"<li><b>{esc(r.component)}</b>: {esc(r.description)}</li>" for r in descr.itertuples())
    share = vp.get("share")
    with plotting():
        fig = new_figure(6.0, 0.5 + 0.45 * len(share))
        ax = fig.add_subplot()
        pos = np.arange(len(share))[::-1]
        ax.barh(pos, share["mean"], color="#9fb3d1")
        ax.errorbar(
            share["mean"],
            pos,
            xerr=[share["mean"] - share["lower"], share["upper"] - share["mean"]],
            fmt="none",
            color="#1d2330",
            lw=1,
        )
        ax.set_yticks(pos, [str(c) for c in share.index])
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of the variance (mean, {pct} interval)")
        img = png(fig, "Variance shares")
    return "\n".join(
        [
            f"<p>On the {esc(vp.scale)}; posterior mean [{pct} interval].</p>",
            table(["Component", "Variance", "Share", "ICC"], rows, ident="variance-partition"),
            f"<ul>{items}</ul>" if items else "",
            figure(img, "Share of the total variance of each component."),
        ]
    )


# ------------------------------------------------------------------- group-level effects


def _missing_effects(note: str) -> str:
    return f"<p>{esc(note)} This section needs them and is left out.</p>"


def _fixed_legend(fig: Any) -> None:
    """Put legends in a fixed corner: matplotlib's ``loc="best"`` search is slow with thousands of artists."""
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            legend.set_loc("upper right")


def _some_levels(shrink: Any) -> Any:
    """At most :data:`SHRINKAGE_LEVELS` rows of a shrinkage table, evenly spread over the group sizes."""
    if len(shrink) <= SHRINKAGE_LEVELS:
        return shrink
    order = np.argsort(shrink["n"].to_numpy(), kind="stable")
    keep = np.sort(order[np.linspace(0, len(order) - 1, SHRINKAGE_LEVELS).round().astype(int)])
    return shrink.iloc[keep]


def _pooling_caption(factor: np.ndarray) -> str:
    """The pooling factors in words; one value (balanced data) is said once, not as a range."""
    if not factor.size:
        return "no level has a no-pooling estimate"
    lo, hi = float(factor.min()), float(factor.max())
    if fmt(lo) == fmt(hi):
        return f"pooling factor {fmt(lo)} for every level (all levels have the same amount of data)"
    return f"pooling factor median {fmt(np.median(factor))} (from {fmt(lo)} to {fmt(hi)})"


def _shrinkage_section(fit: Fit, full: Fit | None, note: str) -> str:
    if not get_family(fit.spec.family).collapses or not fit.design.groups:
        return ""
    if full is None:
        return _missing_effects(note)

    parts = [
        "<p>Each level's own (no-pooling) estimate against the model's partial-pooling estimate "
        "(<code>hierbayes.shrinkage</code>): levels with little data are pulled most towards the "
        "population. The pooling factor is 0 for no pooling and 1 for complete pooling.</p>",
        f'<p class="note">{esc(note)}</p>' if note else "",
    ]
    for g in fit.design.groups:
        for coef in g.coef_names:
            shrink = shrinkage(full, g.name, coef=coef)
            factor = shrink["shrinkage"].to_numpy(dtype=float)
            factor = factor[np.isfinite(factor)]
            shown = _some_levels(shrink)
            with plotting():
                fig = plot_shrinkage(shown)
                _fixed_legend(fig)
                img = png(fig, f"Shrinkage of {coef} by {g.name}")
            stats = _pooling_caption(factor)
            subset = (
                f" The plot shows {len(shown)} of the {len(shrink)} levels, evenly spread over the group sizes."
                if len(shown) < len(shrink)
                else ""
            )
            parts.append(figure(img, f"<code>{esc(g.name)}</code>, {esc(coef)}: {g.n_levels} levels; {stats}.{subset}"))
    return "\n".join(parts)


def _effects_section(fit: Fit, full: Fit | None, note: str) -> str:
    if not fit.design.groups:
        return ""
    if full is None:
        return _missing_effects(note)

    scale = "" if fit.spec.link == "identity" else f" (on the {esc(fit.spec.link)} scale)"
    parts = [
        f"<p>The estimated effect of every level{scale}, sorted, with its {round(DEFAULT_PROB * 100)}% interval "
        "(<code>hierbayes.plot_caterpillar</code>).</p>",
        f'<p class="note">{esc(note)}</p>' if note else "",
    ]
    for g in fit.design.groups:
        for coef in g.coef_names:
            many = g.n_levels > 2 * CATERPILLAR_EXTREMES + 20
            with plotting():
                fig = plot_caterpillar(full, g.name, coef=coef, extremes=CATERPILLAR_EXTREMES if many else None)
                img = png(fig, f"Effects of the levels of {g.name} on {coef}")
            extra = (
                f" With {g.n_levels} levels, the {CATERPILLAR_EXTREMES} lowest and highest are shown with "
                "their intervals, and the histogram shows the posterior means of all levels."
                if many
                else ""
            )
            parts.append(figure(img, f"<code>{esc(g.name)}</code>: effects on the {esc(coef)}.{extra}"))
    return "\n".join(parts)


# ------------------------------------------------------------ ratios, fit quality, effects


def _ratios_section(fit: Fit) -> str:
    """Odds ratios (logit link) or rate ratios (log link) of the fixed effects."""
    if fit.spec.link == "logit":
        tab, what = odds_ratios(fit), "odds ratios"
    elif fit.spec.link == "log":
        tab, what = rate_ratios(fit), "rate ratios"
    else:
        return ""
    if tab.empty:
        return ""
    pct = f"{round(DEFAULT_PROB * 100)}%"
    rows = [
        [
            name,
            r["quantity"],
            fmt(r["mean"]),
            fmt(r["median"]),
            fmt(r["lower"]),
            fmt(r["upper"]),
            "" if not np.isfinite(r["p_gt_1"]) else fmt(r["p_gt_1"]),
        ]
        for name, r in tab.iterrows()
    ]
    return "\n".join(
        [
            f"<p>Conditional {what} <i>exp(β)</i> (for the same level of every grouping factor), posterior mean, "
            f"median and {pct} interval (<code>hierbayes.{what.replace(' ', '_')}</code>). The intercept row is the "
            "baseline (every predictor 0, random effects 0), not a ratio. Population-averaged comparisons: "
            "<code>hierbayes.average_comparison</code>.</p>",
            table(
                ["", "Quantity", "Mean", "Median", f"{pct} lower", f"{pct} upper", "P(ratio > 1)"],
                rows,
                ident="ratios",
                left=2,
            ),
        ]
    )


def _fit_quality_section(fit: Fit, full: Fit | None, note: str) -> str:
    """PSIS-LOO with its Pareto k diagnostics, and Bayes R2 (conditional and marginal)."""
    import warnings

    import arviz_stats

    if full is None:
        return f"<p>{esc(note)} LOO and Bayes R² need them; they are left out.</p>"
    small = _thinned(full, CHECK_DRAWS)
    tree = small.idata.copy()
    tree["log_likelihood"] = xr.DataTree(xr.Dataset({"y": log_likelihood(small)}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # high Pareto k is reported in the table, not as a warning
        loo = arviz_stats.loo(tree, pointwise=True)
    k = np.asarray(loo.pareto_k).ravel()
    good = float(loo.good_k)
    counts = [int(np.sum(k <= good)), int(np.sum((k > good) & (k <= 1))), int(np.sum(k > 1))]
    n = k.size
    loo_rows = [
        ["elpd (LOO)", fmt(loo.elpd), fmt(loo.se)],
        ["effective number of parameters p", fmt(loo.p), ""],
    ]
    k_rows = [
        [f"k ≤ {fmt(good)} (good)", str(counts[0]), f"{fmt(100 * counts[0] / n)}%"],
        [f"{fmt(good)} < k ≤ 1 (unreliable)", str(counts[1]), f"{fmt(100 * counts[1] / n)}%"],
        ["k > 1 (bad)", str(counts[2]), f"{fmt(100 * counts[2] / n)}%"],
    ]
    r2 = bayes_r2(small)
    pct = f"{round(DEFAULT_PROB * 100)}%"
    r2_rows = [[name, fmt(r["mean"]), fmt(r["lower"]), fmt(r["upper"])] for name, r in r2.iterrows()]
    draws = small.posterior.sizes["chain"] * small.posterior.sizes["draw"]
    return "\n".join(
        [
            f"<p>Pareto-smoothed importance-sampling leave-one-out cross-validation (<code>arviz_stats.loo</code>) "
            f"from {draws} posterior draws: each observation is left out of its own known group. For new groups "
            "use <code>hierbayes.kfold(fit, group=...)</code> (refits).</p>",
            table(["", "Estimate", "SE"], loo_rows, ident="loo", left=1),
            table(["Pareto k", "Observations", "Share"], k_rows, ident="pareto-k", left=1),
            "<p>The Pareto k diagnostic says how reliable each observation's LOO estimate is; with many large "
            "k values (common with few observations per level) prefer K-fold cross-validation.</p>",
            f"<p>Bayesian R² (Gelman et al. 2019, <code>hierbayes.bayes_r2</code>): the share of the variance "
            f"explained by the fixed and random effects (conditional) and by the fixed effects alone (marginal), "
            f"posterior mean and {pct} interval.</p>",
            table(["R²", "Mean", f"{pct} lower", f"{pct} upper"], r2_rows, ident="bayes-r2", left=1),
        ]
    )


def _conditional_section(fit: Fit) -> str:
    """Conditional effect of the first predictor at the population level."""
    predictors = predictor_columns(fit)
    if not predictors or "beta" not in fit.posterior:
        return ""
    first = predictors[0]
    small = _thinned(fit, CHECK_DRAWS)
    with plotting():
        fig = plot_conditional_effects(small, first, n_points=40)
        img = png(fig, f"Conditional effect of {first}")
    others = [p for p in predictors if p != first]
    held = (
        f" Other predictors are held at their means (numeric) or most frequent values: {esc(', '.join(others))}."
        if others
        else ""
    )
    scale = "expected response" if fit.spec.link == "identity" else f"expected response (inverse {fit.spec.link} link)"
    return figure(
        img,
        f"The {scale} as <code>{esc(first)}</code> varies, at the population level (random "
        f"effects 0), with its {round(DEFAULT_PROB * 100)}% interval "
        f"(<code>hierbayes.conditional_effects</code>).{held}",
    )


# ------------------------------------------------------------------------- settings


def _json_text(value: Any) -> str:

    value = jsonable(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _settings_section(fit: Fit) -> str:

    settings = dict(fit.settings)
    versions = settings.pop("versions", {}) or {}
    card = settings.pop("card", None)
    parts = []
    if isinstance(card, dict) and card.get("name"):
        parts.append(f"<p>Model card: <code>{esc(card['name'])}</code>.</p>")
    parts.append(
        table(["Setting", "Value"], [[k, _json_text(settings[k])] for k in sorted(settings)], ident="settings", left=2)
    )
    parts.append(
        table(
            ["Library", "Version at fit time"], [[k, versions[k]] for k in sorted(versions)], ident="versions", left=2
        )
    )
    attrs = fit.idata["posterior"].attrs
    keys = ("created_at", "inference_library", "inference_library_version", "sampling_time", "tuning_steps")
    rows = [[k, _json_text(attrs[k])] for k in keys if k in attrs]
    if rows:
        parts.append(table(["Posterior attribute", "Value"], rows, ident="posterior-attrs", left=2))
    parts.append(f'<p class="note">Report written by hierbayes {esc(__version__)}.</p>')
    return "\n".join(parts)


# ---------------------------------------------------------------------------- report


def _sections(fit: Fit) -> list[tuple[str, str, str]]:
    full, note = _effects_fit(fit)
    candidates = [
        ("model", "Model", model_section(fit)),
        ("data", "Data", data_section(fit)),
        ("summary", "Summary", _summary_section(fit)),
        ("ratios", "Odds and rate ratios", _ratios_section(fit)),
        ("diagnostics", "Convergence diagnostics", _diagnostics_section(fit)),
        ("ppc", "Posterior predictive checks", _ppc_section(fit, full, note)),
        ("fit-quality", "Predictive performance: LOO and Bayes R²", _fit_quality_section(fit, full, note)),
        ("conditional", "Conditional effects", _conditional_section(fit)),
        ("variance", "Variance partition", _variance_section(fit)),
        ("shrinkage", "Shrinkage", _shrinkage_section(fit, full, note)),
        ("effects", "Group-level effects", _effects_section(fit, full, note)),
        ("settings", "Settings, seed and versions", _settings_section(fit)),
    ]
    return [c for c in candidates if c[2]]


def render_report(fit: Fit) -> str:
    """Return the report of ``fit`` as one HTML string (see the module docstring)."""
    card = fit.settings.get("card")
    name = card.get("name") if isinstance(card, dict) else None
    description = card.get("description") if isinstance(card, dict) else None
    title = f"{name}: Bayesian multilevel model" if name else "Bayesian multilevel model"
    sections = _sections(fit)
    nav = "".join(f'<li><a href="#{key}">{esc(label)}</a></li>' for key, label, _ in sections)
    body = "\n".join(
        f'<section id="{key}"><h2>{k + 1}. {esc(label)}</h2>\n{content}\n</section>'
        for k, (key, label, content) in enumerate(sections)
    )
    lead = f"<p>{esc(description)}</p>" if description else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1>{lead}"
        f"<p><code>{esc(fit.spec.formula())}</code></p></header>\n"
        f"<nav><ol>{nav}</ol></nav>\n{body}\n</body></html>\n"
    )


def report(fit: Fit, path: str | os.PathLike[str]) -> Path:
    """Write the HTML report of ``fit`` to ``path`` (one self-contained file, written atomically).

    Parameters
    ----------
    fit
        From :func:`hierbayes.fit` or :func:`hierbayes.io.load`.
    path
        Destination file, conventionally ``report.html``; replaced if it exists.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    atomic_write_text(path, render_report(fit))
    return path
