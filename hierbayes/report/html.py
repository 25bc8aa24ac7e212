r"""HTML, MathML and figure helpers of :mod:`hierbayes.report.page`, and its model and data sections.

The model section states the fitted model in MathML (rendered by the browser, no script):
the likelihood of :math:`y_i` given the linear predictor :math:`\eta_i`, the linear predictor
with one term per fixed-effect column and random effect :math:`u^{(g)}_{g[i]}`, the
distribution of each grouping factor's effects, and the priors resolved for the data
(:func:`hierbayes.resolve_priors`).
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hierbayes.families import get_family
from hierbayes.inference.priors import resolve_priors
from hierbayes.inference.result import Fit
from hierbayes.spec.priors import Exponential, HalfCauchy, HalfNormal, HalfStudentT

__all__ = [
    "Cell",
    "close_figure",
    "data_section",
    "esc",
    "figure",
    "fmt",
    "model_section",
    "new_figure",
    "plotting",
    "png",
    "table",
]

_RC: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "svg.hashsalt": "hierbayes",
    "path.simplify": True,
}


# ------------------------------------------------------------------------------- helpers


def esc(value: object) -> str:
    """HTML-escape ``value`` as text."""
    return html.escape(str(value), quote=True)


def fmt(x: object) -> str:
    """Four significant digits; scientific notation for very small or large numbers."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(v):
        return "–" if np.isnan(v) else ("∞" if v > 0 else "−∞")
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e5):
        return f"{v:.3e}".replace("-", "−")
    return f"{v:.4g}".replace("-", "−") if a < 1000 else f"{v:.0f}".replace("-", "−")


class Cell(NamedTuple):
    """A table cell with a CSS class."""

    text: str
    cls: str


def table(header: Sequence[str], rows: Iterable[Sequence[object]], *, ident: str | None = None, left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned, cells are escaped."""

    def cls(i: int, extra: str = "") -> str:
        names = " ".join(n for n in ("l" if i < left else "", extra) if n)
        return f' class="{names}"' if names else ""

    def td(i: int, c: object) -> str:
        if isinstance(c, Cell):
            return f"<td{cls(i, c.cls)}>{esc(c.text)}</td>"
        return f"<td{cls(i)}>{esc(c)}</td>"

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(td(i, c) for i, c in enumerate(r)) + "</tr>" for r in rows)
    id_attr = f' id="{esc(ident)}"' if ident else ""
    return f"<table{id_attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def new_figure(width: float, height: float) -> Figure:
    """A new matplotlib figure of ``width`` x ``height`` inches, not registered with pyplot."""
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig: Any, alt: str) -> str:
    """Render a matplotlib figure as an ``<img>`` with a base64 PNG data URI (no timestamp)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    w, h = (round(float(v)) for v in fig.get_size_inches() * 100)
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}" width="{w}" height="{h}">'


def figure(img: str, caption: str) -> str:
    """An HTML ``<figure>`` with an image and its caption."""
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def close_figure(fig: Any) -> None:
    """Close a figure (also when pyplot made it)."""
    import matplotlib.pyplot as plt

    plt.close(fig)


@contextlib.contextmanager
def plotting() -> Iterator[None]:
    """Fixed matplotlib style (independent of the caller's rcParams); ArviZ's advice warnings off."""
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC), warnings.catch_warnings():  # type: ignore[arg-type]
        warnings.filterwarnings("ignore", category=UserWarning, module=r"arviz.*")
        yield


# --------------------------------------------------------------------------- math (MathML)


def _mi(x: str) -> str:
    return f"<mi>{esc(x)}</mi>"


def _mt(x: str) -> str:
    return f"<mtext>{esc(x)}</mtext>"


def _mo(x: str) -> str:
    return f"<mo>{esc(x)}</mo>"


def _mn(x: object) -> str:
    return f"<mn>{esc(x)}</mn>"


def _row(*parts: str) -> str:
    return "<mrow>" + "".join(parts) + "</mrow>"


def _sub(base: str, sub: str) -> str:
    return f"<msub>{base}{sub}</msub>"


def _sup(base: str, sup: str) -> str:
    return f"<msup>{base}{sup}</msup>"


def _subsup(base: str, sub: str, sup: str) -> str:
    return f"<msubsup>{base}{sub}{sup}</msubsup>"


def _math(*parts: str, note: str = "") -> str:
    after = f' <span class="note">{esc(note)}</span>' if note else ""
    return '<div class="math"><math displaystyle="true">' + _row(*parts) + f"</math>{after}</div>"


def _call(name: str, *args: str) -> str:
    inner: list[str] = []
    for k, a in enumerate(args):
        if k:
            inner.append(_mo(","))
        inner.append(a)
    return _row(_mt(name) if len(name) > 1 else _mi(name), _mo("("), *inner, _mo(")"))


_I = _mi("i")


def _col(name: str) -> str:
    """Column ``name`` of row i."""
    return _sub(_mt(name), _I)


def _u(g: str, coef: str | None, index: str) -> str:
    sub = _row(_mt(coef), _mo(","), index) if coef is not None else index
    return _subsup(_mi("u"), sub, _row(_mo("("), _mt(g), _mo(")")))


def _level(g: str) -> str:
    """The level of factor ``g`` for row i, ``g[i]``."""
    return _row(_mt(g), _mo("["), _I, _mo("]"))


def _linear_predictor(fit: Fit) -> str:
    design = fit.design
    terms: list[str] = []
    for name in design.fixed_names:
        if name == "Intercept":
            terms.append(_sub(_mi("β"), _mn(0)))
        else:
            terms.append(_row(_sub(_mi("β"), _mt(name)), _mo("\u2062"), _col(name)))
    for g in design.groups:
        for coef in g.coef_names:
            if len(g.coef_names) == 1 and coef == "Intercept":
                terms.append(_u(g.name, None, _level(g.name)))
            elif coef == "Intercept":
                terms.append(_u(g.name, "0", _level(g.name)))
            else:
                terms.append(_row(_u(g.name, coef, _level(g.name)), _mo("\u2062"), _col(coef)))
    if design.offset is not None:
        terms.append(_col(str(fit.spec.offset)))
    parts: list[str] = []
    for k, t in enumerate(terms or [_mn(0)]):
        if k:
            parts.append(_mo("+"))
        parts.append(t)
    return _math(_sub(_mi("η"), _I), _mo("="), *parts)


def _likelihood(fit: Fit) -> list[str]:
    spec = fit.spec
    y = _col(spec.response)
    eta = _sub(_mi("η"), _I)
    tilde = _mo("∼")
    if spec.known_sigma is not None:
        sd = _sup(_sub(_mi("σ"), _I), _mn(2))
        return [
            _math(y, tilde, _call("Normal", eta, sd)),
            _math(_sub(_mi("σ"), _I), _mo("="), _col(spec.known_sigma), note="(known)"),
        ]
    text = get_family(spec.family).describe(str(spec.link))
    mean = eta if spec.link == "identity" else _sub(_mi(text.mean), _I)
    args = [mean, *(_sup(_mi(e[0]), _mn(2)) if e.endswith("²") else _mi(e) for e in text.extra)]
    if text.trials:
        n = _col(spec.trials) if spec.trials else _row(_col(spec.response), _mo("+"), _col(str(spec.failures)))
        args.insert(0, n)
    lines = [_math(y, tilde, _call(text.distribution, *args))]
    if spec.link == "probit":  # the inverse of the standard normal cdf
        lines.append(_math(_row(_sup(_mi("Φ"), _row(_mo("−"), _mn(1))), _mo("("), mean, _mo(")")), _mo("="), eta))
    elif spec.link != "identity":
        lines.append(_math(_call(str(spec.link), mean), _mo("="), eta))
    return lines


def _group_lines(fit: Fit) -> list[str]:
    lines: list[str] = []
    for g in fit.design.groups:
        j = _mi("j")
        label = f"for each level j of {g.name} ({g.n_levels} levels)"
        sd = _subsup(_mi("s"), _mt(g.name), _mn(2))
        if len(g.coef_names) == 1:
            coef = None if g.coef_names[0] == "Intercept" else g.coef_names[0]
            lines.append(_math(_u(g.name, coef, j), _mo("∼"), _call("Normal", _mn(0), sd), note=label))
            continue
        names = [("0" if c == "Intercept" else c) for c in g.coef_names]
        items: list[str] = []
        for k, c in enumerate(names):
            items.extend([_mo(","), _u(g.name, c, j)] if k else [_u(g.name, c, j)])
        vec = _row(_mo("("), *items, _mo(")"))
        omega = _sub(_mi("Ω"), _mt(g.name))
        lines.append(_math(vec, _mo("∼"), _call("Normal", _mn(0), omega), note=label))
        diag = _call("diag", _sub(_mi("s"), _mt(g.name)))
        if g.term.covariance == "full":
            lines.append(_math(omega, _mo("="), diag, _sub(_mi("R"), _mt(g.name)), diag))
        else:
            lines.append(_math(omega, _mo("="), _sup(diag, _mn(2)), note="(independent effects)"))
    return lines


def _scale_prior_text(prior: Any) -> str:
    if isinstance(prior, HalfStudentT):
        return f"Half-Student-t(ν = {fmt(prior.nu)}, scale = {fmt(prior.scale)})"
    if isinstance(prior, HalfNormal):
        return f"Half-normal(scale = {fmt(prior.scale)})"
    if isinstance(prior, HalfCauchy):
        return f"Half-Cauchy(scale = {fmt(prior.scale)})"
    if isinstance(prior, Exponential):
        return f"Exponential(mean = {fmt(prior.scale)})"
    return str(prior)  # pragma: no cover


def _priors_table(fit: Fit) -> str:
    design = fit.design
    spec = fit.spec
    rp = resolve_priors(design)
    user = spec.priors
    rows: list[list[str]] = []
    fixed_src = "set in the model" if user.fixed is not None else "default (scaled to the data)"
    sd = np.sqrt(np.diag(rp.B))
    for k, name in enumerate(design.fixed_names):
        rows.append([f"β[{name}]", f"Normal(mean = {fmt(rp.b[k])}, sd = {fmt(sd[k])})", fixed_src])
    gsrc = "set in the model" if user.group_sd is not None else "default (scaled to the data)"
    for g in design.groups:
        for prior, coef in zip(rp.group_sd[g.name], g.coef_names, strict=True):
            rows.append([f"s[{g.name}, {coef}]", _scale_prior_text(prior), gsrc])
        if g.term.covariance == "full" and len(g.coef_names) > 1:
            src = "set in the model" if user.lkj != type(user.lkj)() else "default"
            rows.append([f"R[{g.name}]", f"LKJ(η = {fmt(rp.lkj_eta)})", src])
    if rp.sigma is not None:
        rows.append(
            [
                "σ",
                _scale_prior_text(rp.sigma),
                "set in the model" if user.sigma is not None else "default (scaled to the data)",
            ]
        )
    for param, prior_text in get_family(spec.family).fixed_priors():
        rows.append([param, prior_text, "default"])
    note = ""
    off = rp.B - np.diag(np.diag(rp.B))
    if np.any(off != 0):
        note = (
            '<p class="note">The fixed effects have a joint normal prior N(b, B) with a non-diagonal B '
            "(the default states the intercept's prior at the predictors' means); the table shows each "
            "coefficient's marginal prior.</p>"
        )
    return table(["Parameter", "Prior", "Source"], rows, ident="priors", left=3) + note


def model_section(fit: Fit) -> str:
    """The report's model section: formula, likelihood, linear predictor, group terms and priors."""
    parts = [
        f"<p>Formula (lme4 syntax): <code>{esc(fit.spec.formula())}</code>; family "
        f"<b>{esc(fit.spec.family)}</b>, link <b>{esc(fit.spec.link)}</b>.</p>",
        *_likelihood(fit),
        _linear_predictor(fit),
        *_group_lines(fit),
        "<p>Priors:</p>",
        _priors_table(fit),
    ]
    return "\n".join(parts)


# ------------------------------------------------------------------------------ data


def data_section(fit: Fit) -> str:
    """The report's data section: rows, response summary and group sizes."""
    design = fit.design
    spec = fit.spec
    y = design.y
    parts = [f"<p><b>{design.n_obs}</b> observations; response <code>{esc(spec.response)}</code>.</p>"]
    if get_family(spec.family).binary:
        parts.append(f"<p>Proportion of 1s: {fmt(np.mean(y))} ({int(np.sum(y))} of {design.n_obs}).</p>")
    else:
        parts.append(
            table(
                ["", "mean", "sd", "min", "median", "max"],
                [
                    [
                        spec.response,
                        fmt(np.mean(y)),
                        fmt(np.std(y, ddof=1) if y.size > 1 else 0.0),
                        fmt(np.min(y)),
                        fmt(np.median(y)),
                        fmt(np.max(y)),
                    ]
                ],
                ident="data-response",
            )
        )
    if design.dropped:
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(design.dropped.items()))
        parts.append(f"<p>Rows dropped for missing values (column: rows): {esc(dropped)}.</p>")
    rows = []
    for g in design.groups:
        counts = np.bincount(g.index, minlength=g.n_levels)
        rows.append(
            [
                g.name,
                g.parent or "—",
                ", ".join(g.coef_names),
                g.n_levels,
                int(counts.min()),
                fmt(np.median(counts)),
                int(counts.max()),
            ]
        )
    if rows:
        parts.append("<p>Grouping factors:</p>")
        parts.append(
            table(
                ["Factor", "Nested in", "Varying", "Levels", "Obs/level min", "median", "max"],
                rows,
                ident="data-groups",
                left=3,
            )
        )
    nested = [g for g in design.groups if g.parent]
    for g in nested:
        per_parent = np.bincount(np.asarray(g.parent_index), minlength=design.group(str(g.parent)).n_levels)
        parts.append(
            f"<p>Every level of <code>{esc(g.name)}</code> lies in a single level of "
            f"<code>{esc(g.parent)}</code> ({fmt(np.mean(per_parent))} per {esc(g.parent)} on average, "
            f"{int(per_parent.min())} to {int(per_parent.max())}).</p>"
        )
    cols = [(k, n) for k, n in enumerate(design.fixed_names) if n != "Intercept"]
    if cols:
        X = design.X
        parts.append("<p>Fixed-effect columns (model matrix):</p>")
        parts.append(
            table(
                ["Column", "mean", "sd", "min", "max"],
                [
                    [
                        n,
                        fmt(X[:, k].mean()),
                        fmt(X[:, k].std(ddof=1) if len(X) > 1 else 0.0),
                        fmt(X[:, k].min()),
                        fmt(X[:, k].max()),
                    ]
                    for k, n in cols
                ],
                ident="data-fixed",
            )
        )
    return "\n".join(parts)
