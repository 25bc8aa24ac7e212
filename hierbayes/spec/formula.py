"""lme4/brms-style model formulas, parsed into a :class:`~hierbayes.spec.ModelSpec`.

Supported syntax
----------------
Left-hand side: ``y``; ``y | se(s)`` (known residual sd per row, brms); ``y | trials(n)`` and
``cbind(successes, failures)`` (binomial). The response, ``trials()`` and both parts of
``cbind()`` may be expressions of columns (``cbind(incidence, size - incidence)``,
``trials(n - k)``, ``log(y)``): column names, numbers, ``+ - * / **`` and the one-argument
functions ``log, log2, log10, log1p, exp, sqrt, abs, I``, evaluated by hierbayes's own
evaluator (:func:`~hierbayes.spec.transforms.evaluate_expression`), never by ``eval``. A
transformed response (``log(y) ~ ...``) is fitted on the transformed scale; its pointwise
log-likelihood adds the Jacobian so that LOO compares on the original scale, and replicated
draws are transformed back (see :func:`hierbayes.log_likelihood`).

Right-hand side: fixed terms in Wilkinson notation as formulaic reads them (``x``, ``x*z``,
``x:z``, ``C(g)``, ``C(g, Treatment("b"))``, ``C(g, Sum())``, ``I(x > 0)``, ``log(x)``, ``0 +``
or ``- 1`` for no intercept), ``offset(x)`` or ``offset(log(exposure))``, and random
terms (a grouping factor may appear in more than one term, lme4's uncorrelated form: the second
term's name and dims get the coefficients' names appended, ``(1 | g) + (0 + x | g)`` gives ``g``
and ``g__x``):

=====================  ===============================================================
``(1 | g)``            random intercept by ``g``
``(1 + x | g)``        correlated random intercept and slope (full covariance, LKJ prior)
``(x | g)``            the same (the intercept is implied, as in lme4)
``(0 + x | g)``        random slope only
``(1 + x || g)``       uncorrelated intercept and slope (diagonal covariance)
``(1 | a/b)``          nested: ``(1 | a) + (1 | a:b)``
``(1 | a:b)``          by the interaction of ``a`` and ``b``
``(1 | a) + (1 | b)``  crossed
=====================  ===============================================================

Grouping factors are always treated as categorical, also when the column is numeric.

Safety: a formula is data. formulaic evaluates terms with Python's ``eval``, so terms may only name
columns, numbers, arithmetic (``+ - * / // % **``; comparisons only inside ``I()``: ``I(x > 0)``)
and the transforms in :data:`~hierbayes.spec.transforms.ALLOWED_TRANSFORMS` (``np.``-prefixed too;
``contr.<name>`` and ``Treatment()``/``Sum()`` contrasts inside ``C()``). Anything else is refused
with a :class:`~hierbayes.FormulaError` before formulaic sees the formula: other function calls
(``open``, ``eval``, ``__import__``), attribute access (``x.__class__``), names starting with
``_``, ``{...}`` Python blocks, backtick-quoted names, lambdas, comprehensions, keyword arguments
of numpy functions (``out=``), string arithmetic and powers of constants (``9**9**9**9`` would run
for ever). The response, ``trials()``, ``cbind()`` and ``offset()`` are expressions of columns
checked by the narrower expression whitelist (no ``eval``); grouping factors and ``se()`` must be
plain column names. :func:`hierbayes.make_design` applies the same check to specs built by hand or
loaded from a file.
"""

from __future__ import annotations

import re

from formulaic import Formula

from hierbayes.exceptions import FormulaError
from hierbayes.spec.model import Covariance, GroupTerm, ModelSpec
from hierbayes.spec.priors import Priors
from hierbayes.spec.transforms import (
    ALLOWED_TRANSFORMS,
    EXPRESSION_FUNCTIONS,
    check_calls,
    check_chars,
    check_expression,
    check_safe,
    formula_error,
    is_column_name,
)

__all__ = ["ALLOWED_TRANSFORMS", "parse_formula", "split_terms"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _formulaic_error(err: Exception, text: str) -> tuple[str, int]:
    """Formulaic's parse error as one plain line, and the position it marks inside ``text``."""
    message = _ANSI.sub("", str(err))
    first, _, context = message.partition("\n\n")
    marker = context.find("\u29db")
    return first.strip(), (marker if marker >= 0 else 0)


def _top_level_split(text: str, offset: int, formula: str, sep: str = "+") -> list[tuple[str, int]]:
    """Split ``text`` on ``sep`` outside parentheses; return ``(piece, absolute position)``."""
    pieces: list[tuple[str, int]] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise formula_error(formula, offset + i, "Unbalanced parentheses: this ')' has no matching '('.")
        elif ch == sep and depth == 0:
            pieces.append((text[start:i], offset + start))
            start = i + 1
    if depth > 0:
        raise formula_error(formula, offset + len(text), "Unbalanced parentheses: a '(' is never closed.")
    pieces.append((text[start:], offset + start))
    return pieces


def _check_fixed_piece(piece: str, formula: str, pos: int) -> None:
    """Check one top-level fixed term of a formula alone, so that errors point at it exactly."""
    check_chars(piece, formula, pos)
    check_calls(piece, formula, pos)
    if re.fullmatch(r"\(\s*\)", piece):
        raise formula_error(formula, pos, "Empty parentheses: write a term inside, e.g. (x + z).")
    try:
        Formula(piece)
    except Exception as err:
        why, marker = _formulaic_error(err, piece)
        raise formula_error(
            formula,
            pos + marker,
            f"Could not parse the term {piece!r}: {why} Allowed operators: + - * / : ** ^ and "
            "parentheses; random terms are written (terms | group).",
        ) from None


def split_terms(rhs: str, *, formula: str | None = None, pos: int = 0) -> tuple[bool, tuple[str, ...]]:
    """Expand a fixed-effect right-hand side with formulaic into ``(intercept, terms)``.

    Parameters
    ----------
    rhs
        Wilkinson-notation text such as ``"x * z + C(g)"``.
    formula, pos
        The whole formula and the position of ``rhs`` in it, for error messages.
    """
    formula = formula if formula is not None else rhs
    text = rhs.strip()
    if not text:
        raise formula_error(formula, pos, "Empty term: there is nothing between these operators.")
    lead = pos + len(rhs) - len(rhs.lstrip())
    check_chars(text, formula, lead)
    check_calls(text, formula, lead)
    pieces = _top_level_split(text, lead, formula)
    for piece, ppos in pieces:
        if not piece.strip():
            raise formula_error(formula, ppos, "Empty term: there is nothing between these operators.")
        if re.fullmatch(r"\s*\(\s*\)\s*", piece):
            raise formula_error(
                formula, ppos + piece.find("("), "Empty parentheses: write a term inside, e.g. (x + z)."
            )
    try:
        parsed = Formula(text)
    except Exception as err:  # formulaic's own parse errors; point into the piece that fails alone
        where, what, (why, marker) = lead, text, _formulaic_error(err, text)
        for piece, ppos in pieces:
            stripped = piece.strip()
            try:
                Formula(stripped)
            except Exception as piece_err:
                where, what = ppos + len(piece) - len(piece.lstrip()), stripped
                why, marker = _formulaic_error(piece_err, stripped)
                break
        raise formula_error(
            formula,
            where + marker,
            f"Could not parse the term {what!r}: {why} Allowed operators: + - * / : ** ^ and "
            "parentheses; random terms are written (terms | group).",
        ) from None
    intercept = False
    terms: list[str] = []
    for term in parsed:
        name = str(term)
        if name == "1":
            intercept = True
            continue
        for factor in term.factors:
            check_safe(str(factor), formula, pos)
        terms.append(name)
    return intercept, tuple(terms)


def _parse_group(text: str, formula: str, pos: int) -> list[tuple[str, ...]]:
    """``a/b`` -> [(a,), (a, b)]; ``a:b`` -> [(a, b)]; ``a`` -> [(a,)]."""
    text = text.strip()
    if not text:
        raise formula_error(formula, pos, "Empty grouping factor after '|': write e.g. (1 | school).")
    paths = [p.strip() for p in text.split("/")]
    out: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for part in paths:
        cols = tuple(c.strip() for c in part.split(":"))
        for c in cols:
            if not is_column_name(c):
                raise formula_error(
                    formula,
                    pos,
                    f"Grouping factor {text!r}: {c!r} is not a column name; grouping factors are "
                    "column names joined by ':' (interaction) or '/' (nesting).",
                )
        prefix = prefix + cols
        out.append(prefix)
    return out


def _parse_random(inner: str, formula: str, pos: int, centered: bool) -> list[GroupTerm]:
    if "|||" in inner:
        raise formula_error(
            formula,
            pos + 1 + inner.find("|||"),
            f"Random term ({inner}) uses '|||'; write '|' for correlated or '||' for independent effects.",
        )
    double = "||" in inner
    bar = "||" if double else "|"
    pieces = inner.split(bar)
    if len(pieces) != 2:
        raise formula_error(formula, pos, f"Random term ({inner}) must have exactly one '|' or '||'.")
    lhs, group = pieces
    if not lhs.strip():
        raise formula_error(formula, pos, f"Random term ({inner}) has nothing before '{bar}'; write (1 {bar} g).")
    intercept, terms = split_terms(lhs, formula=formula, pos=pos + 1)
    covariance: Covariance = "diagonal" if double else "full"
    return [
        GroupTerm(factor=f, intercept=intercept, terms=terms, covariance=covariance, centered=centered)
        for f in _parse_group(group, formula, pos + 1 + len(lhs) + len(bar))
    ]


def _call_inner(text: str, name: str) -> str | None:
    """The argument text of ``name(...)`` when ``text`` is exactly one such call, else ``None``."""
    text = text.strip()
    if not re.match(rf"^{name}\s*\(", text) or not text.endswith(")"):
        return None
    start = text.index("(")
    depth = 0
    for i, ch in enumerate(text[start:], start):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return text[start + 1 : i] if i == len(text) - 1 else None
    return None


def _parse_lhs(lhs: str, formula: str) -> tuple[str, str | None, str | None, str | None, bool]:
    """``(response, trials, failures, known_sigma, is_cbind)`` of the left-hand side.

    The response, ``cbind()``'s parts and ``trials()`` may be expressions of columns (checked by
    :func:`~hierbayes.spec.transforms.check_expression`); ``se()`` names a column.
    """
    trials = failures = known_sigma = None
    response = lhs
    is_cbind = False
    pieces = _top_level_split(lhs, 0, formula, sep="|")
    if len(pieces) > 2:
        raise formula_error(formula, 0, "The response has more than one '|'; write y | se(s) or y | trials(n).")
    if len(pieces) == 2:
        response = pieces[0][0].strip()
        extra = pieces[1][0].strip()
        se, tr = _call_inner(extra, "se"), _call_inner(extra, "trials")
        if se is not None:
            known_sigma = se.strip()
            if not is_column_name(known_sigma):
                raise formula_error(
                    formula,
                    max(formula.find(known_sigma), 0),
                    f"The response {lhs.strip()!r} must be a column name with se(column): se() must name a column; "
                    f"received {known_sigma!r}. Compute it as a column of the data first.",
                )
        elif tr is not None:
            trials = tr.strip()
            why = check_expression(trials)
            if why is not None:
                raise formula_error(
                    formula,
                    max(formula.find(trials), 0),
                    f"The response {lhs.strip()!r} must be a column name with trials(): trials() must name a column; "
                    f"received {trials!r}, which is neither a column name nor arithmetic of columns ({why}).",
                )
        else:
            raise formula_error(
                formula,
                pieces[1][1],
                f"After '|' in the response, write se(column) or trials(column); received {extra!r}.",
            )
    else:
        inner = _call_inner(lhs, "cbind")
        if inner is not None:
            parts = _top_level_split(inner, 0, formula, sep=",")
            if len(parts) != 2:
                raise formula_error(
                    formula, 0, f"cbind() takes two arguments, successes and failures; received {inner!r}."
                )
            response, failures = parts[0][0].strip(), parts[1][0].strip()
            is_cbind = True
    for part in (response, failures):
        why = None if part is None else check_expression(part)
        if why is not None:
            raise formula_error(
                formula,
                max(formula.find(str(part)), 0),
                f"The response {lhs.strip()!r} must be a column name, an expression of columns with arithmetic "
                f"and {', '.join(sorted(EXPRESSION_FUNCTIONS))} (log(y), cbind(incidence, size - incidence)), "
                f"y | se(s) or y | trials(n): {why}.",
            )
    return response, trials, failures, known_sigma, is_cbind


def parse_formula(
    formula: str,
    *,
    family: str = "gaussian",
    link: str | None = None,
    priors: Priors | None = None,
    centered: bool = False,
) -> ModelSpec:
    """Parse an lme4/brms-style formula into a :class:`ModelSpec`.

    Parameters
    ----------
    formula
        For example ``"math ~ year + female + (1 | school/child)"``.
    family, link
        Response family and link (see :data:`hierbayes.families.FAMILIES`).
    priors
        Priors; ``None`` takes the data-scaled defaults.
    centered
        Use the centred parametrisation for every random term.

    Returns
    -------
    ModelSpec

    Raises
    ------
    FormulaError
        With the formula and a caret under the offending position.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"A formula must be a string like 'y ~ x + (1 | g)'; received {type(formula).__name__}.")
    check_chars(formula, formula, 0)
    if formula.count("~") != 1:
        where = formula.find("~", formula.find("~") + 1) if formula.count("~") > 1 else len(formula)
        raise formula_error(formula, where, "A formula needs exactly one '~' between the response and the terms.")
    lhs, rhs = formula.split("~")
    rhs_pos = len(lhs) + 1
    lhs = lhs.strip()
    if not lhs:
        raise formula_error(formula, 0, "The formula has no response before '~'.")

    response, trials, failures, known_sigma, is_cbind = _parse_lhs(lhs, formula)
    if is_cbind and family == "gaussian":
        family = "binomial"

    fixed_pieces: list[str] = []
    groups: list[GroupTerm] = []
    offset = None
    for piece, ppos in _top_level_split(rhs, rhs_pos, formula):
        stripped = piece.strip()
        lead = ppos + (len(piece) - len(piece.lstrip()))
        if not stripped:
            raise formula_error(formula, ppos, "Empty term: there is nothing between these operators.")
        if stripped.startswith("(") and stripped.endswith(")") and "|" in stripped:
            inner = stripped[1:-1]
            groups.extend(_parse_random(inner, formula, lead, centered))
        elif _call_inner(stripped, "offset") is not None:
            if offset is not None:
                raise formula_error(
                    formula,
                    lead,
                    f"The formula has two offsets (offset({offset}) and {stripped}); add them in one: "
                    f"offset({offset} + ...).",
                )
            offset = str(_call_inner(stripped, "offset")).strip()
            why = check_expression(offset)
            if why is not None:
                raise formula_error(
                    formula,
                    lead,
                    f"offset({offset}) must name a column or an expression of columns with arithmetic and "
                    f"{', '.join(sorted(EXPRESSION_FUNCTIONS))} (e.g. offset(log(exposure))): {why}.",
                )
        elif "|" in stripped:
            raise formula_error(
                formula,
                lead + stripped.find("|"),
                "A '|' outside parentheses: random terms are written in parentheses, e.g. (1 | g).",
            )
        else:
            _check_fixed_piece(stripped, formula, lead)  # early, with the exact position
            fixed_pieces.append(stripped)
    if not fixed_pieces:
        fixed_pieces = ["1"]
    intercept, fixed = split_terms(" + ".join(fixed_pieces), formula=formula, pos=rhs_pos)
    spec = ModelSpec(
        response=response,
        fixed=fixed,
        intercept=intercept,
        groups=tuple(groups),
        family=family,
        link=link,
        trials=trials,
        failures=failures,
        offset=offset,
        known_sigma=known_sigma,
        priors=priors or Priors(),
    )
    return spec
