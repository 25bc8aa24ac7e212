r"""The lmer-like summary: random-effect variances and fixed effects from the posterior.

For each random term :math:`k` with standard deviations :math:`s_{k\ell}` and correlations
:math:`\rho_{k\ell m}` the table gives the posterior of the variance :math:`s_{k\ell}^2`, of the
standard deviation and of each correlation; for Gaussian models also of the residual variance
:math:`\sigma^2`. Intervals are equal-tailed with probability ``prob`` (default 0.94, a hierbayes
option: ArviZ 1.x's own default is an 89% interval).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.families import get_family
from hierbayes.inference.diagnostics import draw_stats
from hierbayes.inference.posterior import DEFAULT_PROB, group_sd_draws
from hierbayes.inference.result import Fit
from hierbayes.spec import names
from hierbayes.summaries.display import html_block

__all__ = ["DEFAULT_PROB", "Summary", "column_format", "format_summary", "summary", "variance_rows"]

#: Default probability of the posterior intervals in every hierbayes summary.


@dataclass(frozen=True)
class Summary:
    """The summary of a fit; ``print()`` it for the lmer-like text.

    Attributes
    ----------
    random
        One row per variance, sd and correlation: columns ``group``, ``name``, ``quantity``
        (``"variance"``, ``"sd"`` or ``"corr"``), ``mean``, ``sd``, ``lower``, ``upper``,
        ``r_hat``, ``ess_bulk``.
    fixed
        One row per fixed effect (index: coefficient name): ``mean``, ``sd``, ``lower``,
        ``upper``, ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``.
    nobs, ngroups
        Number of observations and of levels per grouping factor.
    formula, family, link, prob
        What was fitted, and the interval probability.
    problems
        Plain-words convergence problems (empty if none).
    """

    random: pd.DataFrame
    fixed: pd.DataFrame
    nobs: int
    ngroups: dict[str, int]
    formula: str
    family: str
    link: str
    prob: float
    problems: tuple[str, ...] = ()

    def __str__(self) -> str:
        return format_summary(self)

    def __repr__(self) -> str:
        return format_summary(self)

    def _repr_html_(self) -> str:

        pct = f"{round(self.prob * 100)}%"
        notes = [
            f"{self.formula} ({self.family}, {self.link} link); {self.nobs} observations",
            f"posterior means and {pct} intervals",
            *self.problems,
        ]
        return html_block(
            "Bayesian multilevel model", notes, [("Random effects", self.random), ("Fixed effects", self.fixed)]
        )


_COLUMNS = ["mean", "sd", "lower", "upper", "r_hat", "ess_bulk"]


def _row(draws: xr.DataArray, prob: float, **labels: str) -> dict[str, object]:
    stats = draw_stats(draws, prob)
    return {**labels, **{k: stats[k] for k in _COLUMNS}}


def summary(fit: Fit, *, prob: float = DEFAULT_PROB) -> Summary:
    """Summarise a fit like lme4's ``summary(lmer(...))``, with posterior intervals.

    Parameters
    ----------
    fit
        From :func:`hierbayes.fit`.
    prob
        Probability of the equal-tailed intervals.

    Returns
    -------
    Summary
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1; received {prob}.")
    post = fit.posterior
    design = fit.design
    rows: list[dict[str, object]] = []
    for g in design.groups:
        sd = group_sd_draws(post, g)
        for name in g.coef_names:
            s = sd.sel({g.coef_dim: name})
            rows.append(_row(s**2, prob, group=g.name, name=name, quantity="variance"))
            rows.append(_row(s, prob, group=g.name, name=name, quantity="sd"))
        corr_name = names.corr(g.name)
        if corr_name in post:
            coefs = g.coef_names
            for i in range(len(coefs)):
                for j in range(i + 1, len(coefs)):
                    r = post[corr_name].isel({g.coef_dim: i, f"{g.coef_dim}_": j})
                    rows.append(_row(r, prob, group=g.name, name=f"{coefs[i]}:{coefs[j]}", quantity="corr"))
    if "sigma" in post:
        rows.append(_row(post[names.SIGMA] ** 2, prob, group="Residual", name="", quantity="variance"))
        rows.append(_row(post[names.SIGMA], prob, group="Residual", name="", quantity="sd"))
    if "alpha" in post:
        rows.append(_row(post["alpha"], prob, group="Shape", name="alpha", quantity="shape"))
    for pname in get_family(fit.spec.family).parameters(known_sigma=fit.spec.known_sigma is not None):
        if pname in ("sigma", "alpha") or pname not in post:  # shown above
            continue
        da = post[pname]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if not extra:
            rows.append(_row(da, prob, group="Family", name=pname, quantity="value"))
            continue
        for label in da.coords[extra[0]].values:
            element = da.sel({extra[0]: label})
            rows.append(_row(element, prob, group="Family", name=f"{pname}[{label}]", quantity="value"))
    random = pd.DataFrame(rows, columns=["group", "name", "quantity", *_COLUMNS])

    fixed_rows = {}
    if "beta" in post:
        for coef in post[names.BETA].coords["coef"].values:
            stats = draw_stats(post[names.BETA].sel(coef=coef), prob)
            fixed_rows[str(coef)] = stats
    fixed = pd.DataFrame.from_dict(fixed_rows, orient="index")
    if not fixed.empty:
        fixed = fixed[["mean", "sd", "lower", "upper", "r_hat", "ess_bulk", "ess_tail", "mcse_mean"]]
    problems = tuple(fit.diagnostics.problems) if fit.diagnostics else ()
    return Summary(
        random=random,
        fixed=fixed,
        nobs=design.n_obs,
        ngroups={g.name: g.n_levels for g in design.groups},
        formula=fit.spec.formula(),
        family=fit.spec.family,
        link=str(fit.spec.link),
        prob=prob,
        problems=problems,
    )


_SIGNIFICANT = 4  # digits shown of a column's smallest number
_MAX_DECIMALS = 6


def column_format(values: Iterable[float]) -> Callable[[float], str]:
    """One fixed-point format for a whole column: 4 significant digits of its smallest non-zero number.

    So a column never mixes ``5.115e-04`` with ``0.04528``: both read ``0.000512`` and ``0.045280``
    (at most 6 decimals). Scientific notation is used, for the whole column, only when a number
    would show as 0 in 6 decimals or reaches 1e7.
    """
    finite = np.abs([v for v in values if np.isfinite(v) and v != 0])
    if finite.size == 0:
        return lambda x: "nan" if not np.isfinite(x) else "0"
    if finite.min() < 10.0**-_MAX_DECIMALS or finite.max() >= 1e7:
        return lambda x: "nan" if not np.isfinite(x) else f"{x:.3e}"
    decimals = min(max(_SIGNIFICANT - 1 - int(np.floor(np.log10(finite.min()))), 0), _MAX_DECIMALS)
    return lambda x: "nan" if not np.isfinite(x) else f"{x:.{decimals}f}"


def variance_rows(s: Summary) -> list[tuple[str, str, pd.Series | None, pd.Series | None]]:
    """One ``(group, name, variance row, sd-or-shape row)`` per random-effect term of ``s.random``.

    Correlations are left out; ``name`` is ``"(Intercept)"`` for intercepts, as lme4 prints it.
    Shared by the text summary and the HTML report.
    """
    out = []
    for (group, name), part in s.random.groupby(["group", "name"], sort=False):
        cells = {q: part[part.quantity == q].iloc[0] for q in part.quantity}
        if "corr" in cells:
            continue
        label = "(Intercept)" if name == "Intercept" else str(name)
        out.append((str(group), label, cells.get("variance"), cells.get("sd", cells.get("shape", cells.get("value")))))
    return out


def _intervals(rows: list[pd.Series | None]) -> list[str]:
    """``mean [lower, upper]`` for each row, all in one format (see :func:`column_format`)."""
    fmt = column_format(v for r in rows if r is not None for v in (r["mean"], r["lower"], r["upper"]))
    return ["" if r is None else f"{fmt(r['mean'])} [{fmt(r['lower'])}, {fmt(r['upper'])}]" for r in rows]


def format_summary(s: Summary) -> str:
    """Render a :class:`Summary` as lmer-like text."""
    pct = f"{round(s.prob * 100)}%"
    lines = [
        f"Bayesian multilevel model ({s.family}, {s.link} link), fitted with NUTS",
        f"Formula: {s.formula}",
        "",
        f"Random effects (posterior mean [{pct} interval]):",
    ]
    vrows = variance_rows(s)
    variances, spreads = _intervals([r[2] for r in vrows]), _intervals([r[3] for r in vrows])
    table = [[group, name, v, sd] for (group, name, _, _), v, sd in zip(vrows, variances, spreads, strict=True)]
    corr = s.random[s.random.quantity == "corr"]
    header = ["Groups", "Name", "Variance", "Std.Dev."]
    lines.extend(_grid(header, table))
    if not corr.empty:
        lines.append("")
        lines.append(f"Correlations of random effects (posterior mean [{pct} interval]):")
        crows = [r for _, r in corr.iterrows()]
        ctable = [[r["group"], r["name"].replace(":", " ~ "), c] for r, c in zip(crows, _intervals(crows), strict=True)]
        lines.extend(_grid(["Groups", "Pair", "Corr"], ctable))
    groups = "; ".join(f"{k}, {v}" for k, v in s.ngroups.items())
    lines.append(f"Number of obs: {s.nobs}" + (f", groups: {groups}" if groups else ""))
    lines.append("")
    lines.append("Fixed effects:")
    fmt = {c: column_format(s.fixed[c]) for c in ("mean", "sd", "lower", "upper")}
    ftable = [
        [
            str(name),
            *(fmt[c](r[c]) for c in ("mean", "sd", "lower", "upper")),
            f"{r['r_hat']:.3f}",
            f"{r['ess_bulk']:.0f}",
        ]
        for name, r in s.fixed.iterrows()
    ]
    lines.extend(_grid(["", "Mean", "SD", f"{pct} lower", f"{pct} upper", "R-hat", "ESS bulk"], ftable, left=1))
    if s.problems:
        lines.append("")
        lines.append("Convergence warnings:")
        lines.extend(f"- {p}" for p in s.problems)
    return "\n".join(lines)


def _grid(header: list[str], rows: list[list[str]], *, left: int = 2) -> list[str]:
    """Align a table: the first ``left`` columns (labels) to the left, the numbers to the right."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]

    def fmt(r: list[str]) -> str:
        cells = (
            str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        return " " + "  ".join(cells)

    return [fmt(header)] + [fmt(r) for r in rows]
