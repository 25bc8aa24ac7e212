r"""Odds ratios, rate ratios and linear contrasts of the fixed effects.

Notation: :math:`g(E[y_i \mid u]) = x_i^\top\beta + \sum_k z_{ik}^\top u_{k,j_k[i]} + o_i`
with :math:`u_{kj} \sim N(0, \Omega_k)` (see :mod:`hierbayes.spec`). Every quantity is computed
draw by draw from the joint posterior of :math:`(\beta, \Omega)`, so correlations between
coefficients are carried into every interval. Intervals are equal-tailed with probability
``prob`` (0.94 by default, as in every hierbayes summary).

Population-averaged (marginal) effects are in :mod:`hierbayes.summaries.population`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from formulaic.utils.constraints import LinearConstraints

from hierbayes.exceptions import SpecError
from hierbayes.inference.posterior import DEFAULT_PROB, check_prob, fixed_effect_draws, interval_stats
from hierbayes.inference.result import Fit
from hierbayes.summaries.display import html_block

__all__ = [
    "ATTENUATION_C",
    "Contrast",
    "contrast",
    "odds_ratios",
    "parse_contrast",
    "rate_ratios",
]

#: The constant of the logistic-normal attenuation approximation, :math:`16\sqrt{3}/(15\pi)`.
ATTENUATION_C = 16.0 * np.sqrt(3.0) / (15.0 * np.pi)

_RATIO_NAME = {"logit": "odds_ratio", "log": "rate_ratio"}


def _ratio_table(fit: Fit, prob: float, baseline: str, ratio_name: str) -> pd.DataFrame:
    beta = fixed_effect_draws(fit)
    rows = {}
    for coef in beta.coords["coef"].values:
        ratio = np.exp(beta.sel(coef=coef).values)
        stats = interval_stats(ratio, prob, median=True)
        is_baseline = str(coef) == "Intercept"
        row: dict[str, object] = {"quantity": baseline if is_baseline else ratio_name}
        row |= {k: stats[k] for k in ("mean", "median", "lower", "upper")}
        # the intercept is a level (odds or rate at the reference), not a ratio: "> 1" means nothing
        row["p_gt_1"] = float("nan") if is_baseline else float(np.mean(ratio > 1))
        rows[str(coef)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def odds_ratios(fit: Fit, *, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    r"""Posterior odds ratios :math:`\exp(\beta_k)` of a logit model, one row per fixed effect.

    These are conditional (cluster-specific) odds ratios; see the module docstring and
    :func:`population_averaged` for population-averaged ones. The ``Intercept`` row is not a
    ratio: it is the baseline odds :math:`\exp(\beta_0)` when every predictor is 0 and
    :math:`u = 0` (``quantity == "baseline odds"``, ``p_gt_1`` NaN).

    Parameters
    ----------
    fit
        A bernoulli or binomial fit with the logit link.
    prob
        Probability of the equal-tailed interval.

    Returns
    -------
    pandas.DataFrame
        Index: coefficient; columns ``quantity`` (``"odds ratio"``, or ``"baseline odds"`` for
        the intercept), ``mean``, ``median``, ``lower``, ``upper`` of :math:`\exp(\beta_k)` and
        ``p_gt_1``, the posterior probability that the ratio exceeds 1 (NaN for the baseline).

    Raises
    ------
    SpecError
        For any other link.
    """
    check_prob(prob)
    if fit.spec.link != "logit":
        hint = (
            " For a log link (poisson, negative_binomial) exp(beta) is a rate ratio: use hb.rate_ratios(fit)."
            if fit.spec.link == "log"
            else " Probit coefficients are shifts on the standard-normal (z) scale; report them as they are."
        )
        raise SpecError(
            f"Odds ratios need a logit link; this model is {fit.spec.family} with the {fit.spec.link} link.{hint}"
        )
    return _ratio_table(fit, prob, "baseline odds", "odds ratio")


def rate_ratios(fit: Fit, *, prob: float = DEFAULT_PROB) -> pd.DataFrame:
    r"""Posterior rate ratios :math:`\exp(\beta_k)` of a log-link model, one row per fixed effect.

    The ``Intercept`` row is not a ratio but the baseline rate (per unit of exposure when
    there is a log-exposure offset) when every predictor is 0 and :math:`u = 0`: its
    ``quantity`` is ``"baseline rate"`` and its ``p_gt_1`` NaN. Other rows have ``quantity``
    ``"rate ratio"``. Columns as :func:`odds_ratios`.

    Raises
    ------
    SpecError
        For a model without a log link.
    """
    check_prob(prob)
    if fit.spec.link != "log":
        hint = " For a logit link use hb.odds_ratios(fit)." if fit.spec.link == "logit" else ""
        raise SpecError(
            f"Rate ratios are for log links (poisson, negative_binomial); this model is {fit.spec.family} "
            f"with the {fit.spec.link} link.{hint}"
        )
    return _ratio_table(fit, prob, "baseline rate", "rate ratio")


# ----------------------------------------------------------------------------- contrasts


_PLACEHOLDER = "_hb_coef_{}_"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Python constructs refused before formulaic sees the expression, with what to say about them.
_NOT_ALLOWED = (
    (re.compile(r"\blambda\b"), "Lambda is not allowed"),
    (re.compile(r"[\w)\]]\s*\("), "function calls are not allowed"),
    (re.compile(r"\.\s*[A-Za-z_]"), "attribute access is not allowed"),
    (re.compile(r"\["), "indexing is not allowed"),
)
_OPERATORS = {"**": "Pow", "//": "FloorDiv", "%": "Mod", "@": "MatMult", ":": "Slice", "|": "BitOr", "&": "BitAnd"}


def _expr_error(expr: str, what: str, names: list[str]) -> SpecError:
    return SpecError(
        f"Contrast {expr!r}: {what.rstrip('.')}. A contrast is a linear combination of coefficient names with "
        f"numbers, e.g. 'a + b', 'a - b', '2*a - b', '(a + b)/2'; names that are not Python "
        f"identifiers go in backticks (`x:z`). Coefficients: {', '.join(names)}."
    )


def parse_contrast(expr: str, names: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Parse a linear combination of coefficient names into ``{name: weight}``.

    The expression is read by formulaic's linear-constraint parser
    (:class:`formulaic.utils.constraints.LinearConstraints`); nothing is evaluated. Allowed:
    names of coefficients, numbers, ``+``, ``-``, ``*`` and ``/`` by a number, parentheses;
    ``a = b`` reads as ``a - b``. Names that are not Python identifiers (``C(g)[T.b]``, ``x:z``)
    can be written as they are or in backticks.

    Raises
    ------
    SpecError
        For anything else (calls, attributes, unknown names, products of coefficients,
        constants on their own), with the list of coefficients.
    """
    names = [str(n) for n in names]
    if not isinstance(expr, str) or not expr.strip():
        raise _expr_error(str(expr), "the expression is empty", names)
    text, lookup = expr, {}
    for k, name in sorted(enumerate(names), key=lambda kv: -len(kv[1])):  # longest first: `a:b` before `a`
        placeholder = _PLACEHOLDER.format(k)
        lookup[placeholder] = name
        pattern = re.escape(name) if not name.isidentifier() else rf"(?<![\w.]){re.escape(name)}(?![\w(])"
        text = re.sub(rf"`{re.escape(name)}`|{pattern}", placeholder, text)
    for refused, what in _NOT_ALLOWED:
        if refused.search(text):
            raise _expr_error(expr, what, names)
    try:
        constraints = LinearConstraints.from_spec(text, variable_names=list(lookup))
    except KeyError as err:
        unknown = str(err.args[0]).strip("`")
        close = difflib.get_close_matches(unknown, names, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise _expr_error(expr, f"{unknown!r} is not a coefficient of this model.{hint}", names) from None
    except ZeroDivisionError:
        raise _expr_error(expr, "division by zero", names) from None
    except RuntimeError as err:  # formulaic: a product of, or a division by, a coefficient
        what = "dividing by a coefficient" if "division" in str(err) else "a product of two coefficients"
        raise _expr_error(expr, f"{what} is not linear", names) from None
    except Exception as err:  # FormulaSyntaxError and the like
        message = _ANSI.sub("", str(err)).splitlines()[0]
        if m := re.match(r"Unknown operator '(.+)'", message):
            symbol = m[1]
            named = f"{_OPERATORS[symbol]} is not allowed ({symbol!r}; " if symbol in _OPERATORS else None
            what = f"the operator {named or repr(symbol) + ' is not allowed ('}use + - * / and parentheses)"
            if symbol in ("<", ">", "<=", ">="):
                what += "; for the probability that a > b, write 'a - b' and read p_positive"
        else:
            what = f"it is not a valid expression ({message})"
        raise _expr_error(expr, what, names) from None
    if constraints.constraint_matrix.shape[0] != 1:
        raise _expr_error(expr, "give one linear combination at a time (no commas)", names)
    if constraints.constraint_values[0] != 0:
        raise _expr_error(expr, "a constant term is not a contrast of coefficients", names)
    weights = {lookup[n]: float(w) for n, w in zip(lookup, constraints.constraint_matrix[0], strict=True) if w != 0}
    if not weights:
        raise _expr_error(expr, "the coefficients cancel (every weight is 0)", names)
    return {n: weights[n] for n in names if n in weights}


@dataclass(frozen=True)
class Contrast:
    r"""The posterior of a linear combination :math:`c = \sum_k w_k \beta_k`.

    Attributes
    ----------
    expr
        The expression as given.
    weights
        ``{coefficient: weight}``.
    draws
        Draws of :math:`c`, dims ``(chain, draw)``, from the joint posterior.
    table
        Rows ``estimate`` (link scale) and, for logit/log links, ``odds_ratio`` /
        ``rate_ratio`` (:math:`e^c`); columns ``mean``, ``sd``, ``median``, ``lower``,
        ``upper`` and ``p_positive`` (the posterior probability that :math:`c > 0`, i.e. that
        the ratio exceeds 1).
    prob
        Interval probability.
    """

    expr: str
    weights: dict[str, float]
    draws: xr.DataArray
    table: pd.DataFrame
    prob: float

    def __str__(self) -> str:
        pct = f"{round(self.prob * 100)}%"
        combo = " ".join(f"{'+' if w >= 0 else '-'} {abs(w):g}*{k}" for k, w in self.weights.items())
        return f"Contrast {self.expr!r} = {combo.lstrip('+ ')} (posterior, {pct} intervals)\n{self.table.to_string()}"

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:

        return html_block(f"Contrast {self.expr}", [f"{round(self.prob * 100)}% intervals"], [("", self.table)])


def contrast(fit: Fit, expr: str, *, prob: float = DEFAULT_PROB) -> Contrast:
    """Posterior of a linear combination of fixed effects, e.g. ``"kid2p + husEdPri"``, ``"a - b"``.

    The combination is computed draw by draw from the joint posterior, so it accounts for the
    correlation between the coefficients (a sum of negatively correlated coefficients is more
    precise than their separate intervals suggest).

    Parameters
    ----------
    fit
        A fitted model.
    expr
        Coefficient names combined with numbers, ``+``, ``-``, ``*``, ``/`` and parentheses;
        parsed with :func:`parse_contrast`, never evaluated.
    prob
        Interval probability.

    Returns
    -------
    Contrast
    """
    check_prob(prob)
    beta = fixed_effect_draws(fit)
    names = [str(c) for c in beta.coords["coef"].values]
    weights = parse_contrast(expr, names)
    w = xr.DataArray([weights.get(n, 0.0) for n in names], dims="coef", coords={"coef": beta.coords["coef"]})
    draws = (beta * w).sum("coef").rename("contrast")
    values = draws.values
    rows = {"estimate": interval_stats(values, prob, median=True) | {"p_positive": float(np.mean(values > 0))}}
    ratio = _RATIO_NAME.get(str(fit.spec.link))
    if ratio is not None:
        rows[ratio] = interval_stats(np.exp(values), prob, median=True) | {"p_positive": rows["estimate"]["p_positive"]}
    table = pd.DataFrame.from_dict(rows, orient="index")
    return Contrast(expr=expr, weights=weights, draws=draws, table=table, prob=prob)
