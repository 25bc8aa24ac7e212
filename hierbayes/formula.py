"""lme4/brms-style model formulas, parsed into a :class:`~hierbayes.spec.ModelSpec`.

Supported syntax
----------------
Left-hand side: ``y``; ``y | se(s)`` (known residual sd per row, brms); ``y | trials(n)`` and
``cbind(successes, failures)`` (binomial).

Right-hand side: fixed terms in Wilkinson notation as formulaic reads them (``x``, ``x*z``,
``x:z``, ``C(g)``, ``log(x)``, ``0 +`` or ``- 1`` for no intercept), ``offset(x)``, and random
terms:

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

Safety: a formula is data. Terms may only name columns, numbers, arithmetic and the
transforms in :data:`ALLOWED_TRANSFORMS`; anything else (attribute access, imports, ``open``,
``{...}`` Python blocks) is refused before formulaic sees it.
"""

from __future__ import annotations

import ast
import re
from formulaic import Formula

from hierbayes.exceptions import FormulaError
from hierbayes.priors import Priors
from hierbayes.spec import GroupTerm, ModelSpec

__all__ = ["ALLOWED_TRANSFORMS", "parse_formula", "split_terms"]

#: Functions a formula term may call (``np.`` prefixed spellings of the numpy ones too).
ALLOWED_TRANSFORMS: frozenset[str] = frozenset(
    {
        "C", "I", "log", "log2", "log10", "log1p", "exp", "sqrt", "abs",
        "center", "scale", "poly", "bs", "cr", "cs", "cc",
    }
)
_NUMPY_ALIASES = {"np", "numpy"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _error(formula: str, pos: int, message: str) -> FormulaError:
    pointer = " " * max(pos, 0) + "^"
    return FormulaError(f"{message}\n  {formula}\n  {pointer}")


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
                raise _error(formula, offset + i, "Unbalanced parentheses: this ')' has no matching '('.")
        elif ch == sep and depth == 0:
            pieces.append((text[start:i], offset + start))
            start = i + 1
    if depth > 0:
        raise _error(formula, offset + len(text), "Unbalanced parentheses: a '(' is never closed.")
    pieces.append((text[start:], offset + start))
    return pieces


def _check_safe(expr: str, formula: str, pos: int) -> None:
    """Refuse anything but column names, numbers, arithmetic and allowed transforms."""
    if any(ch in expr for ch in "{}`;\\"):
        raise _error(
            formula, pos,
            f"Term {expr.strip()!r} uses characters that are not allowed in a formula ({{}}, `, ;).",
        )
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        raise _error(formula, pos, f"Term {expr.strip()!r} is not a valid expression.") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                fname = func.id
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in _NUMPY_ALIASES
            ):
                fname = func.attr
            else:
                fname = ast.unparse(func)
            if fname not in ALLOWED_TRANSFORMS:
                raise _error(
                    formula, pos,
                    f"Function {fname!r} is not allowed in a formula; allowed transforms: "
                    f"{', '.join(sorted(ALLOWED_TRANSFORMS))}. Compute other columns in the data first.",
                )
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id in _NUMPY_ALIASES
                    and node.attr in ALLOWED_TRANSFORMS):
                raise _error(
                    formula, pos,
                    f"Attribute access {ast.unparse(node)!r} is not allowed in a formula.",
                )
        elif isinstance(node, ast.Name):
            if node.id.startswith("__"):
                raise _error(formula, pos, f"Name {node.id!r} is not allowed in a formula.")
        elif not isinstance(
            node,
            (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Load, ast.operator,
             ast.unaryop, ast.keyword, ast.Compare, ast.cmpop),
        ):
            raise _error(
                formula, pos,
                f"Term {expr.strip()!r} contains {type(node).__name__}, which is not allowed in a formula.",
            )


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
        raise _error(formula, pos, "Empty term: there is nothing between these operators.")
    for piece, ppos in _top_level_split(text, pos, formula):
        if not piece.strip():
            raise _error(formula, ppos, "Empty term: there is nothing between these operators.")
    try:
        parsed = Formula(text)
    except Exception as err:  # formulaic's own parse errors
        raise _error(formula, pos, f"Could not parse {text!r}: {err}") from None
    intercept = False
    terms: list[str] = []
    for term in parsed:
        name = str(term)
        if name == "1":
            intercept = True
            continue
        for factor in term.factors:
            _check_safe(str(factor), formula, pos)
        terms.append(name)
    return intercept, tuple(terms)


def _parse_group(text: str, formula: str, pos: int) -> list[tuple[str, ...]]:
    """``a/b`` -> [(a,), (a, b)]; ``a:b`` -> [(a, b)]; ``a`` -> [(a,)]."""
    text = text.strip()
    if not text:
        raise _error(formula, pos, "Empty grouping factor after '|': write e.g. (1 | school).")
    paths = [p.strip() for p in text.split("/")]
    out: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for part in paths:
        cols = tuple(c.strip() for c in part.split(":"))
        for c in cols:
            if not _IDENT.match(c):
                raise _error(
                    formula, pos,
                    f"Grouping factor {text!r}: {c!r} is not a column name; grouping factors are "
                    "column names joined by ':' (interaction) or '/' (nesting).",
                )
        prefix = prefix + cols
        out.append(prefix)
    return out


def _parse_random(inner: str, formula: str, pos: int, centered: bool) -> list[GroupTerm]:
    double = "||" in inner
    bar = "||" if double else "|"
    pieces = inner.split(bar)
    if len(pieces) != 2:
        raise _error(formula, pos, f"Random term ({inner}) must have exactly one '|' or '||'.")
    lhs, group = pieces
    if not lhs.strip():
        raise _error(formula, pos, f"Random term ({inner}) has nothing before '{bar}'; write (1 {bar} g).")
    intercept, terms = split_terms(lhs, formula=formula, pos=pos + 1)
    covariance = "diagonal" if double else "full"
    return [
        GroupTerm(factor=f, intercept=intercept, terms=terms, covariance=covariance, centered=centered)
        for f in _parse_group(group, formula, pos + 1 + len(lhs) + len(bar))
    ]


_LHS_SPECIAL = re.compile(r"^(?P<y>[^|]+?)\s*\|\s*(?P<kind>se|trials)\(\s*(?P<col>[^)]+?)\s*\)\s*$")
_CBIND = re.compile(r"^cbind\(\s*(?P<s>[^,]+?)\s*,\s*(?P<f>[^)]+?)\s*\)$")


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
        Response family and link (see :data:`hierbayes.spec.FAMILIES`).
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
    if formula.count("~") != 1:
        where = formula.find("~", formula.find("~") + 1) if formula.count("~") > 1 else len(formula)
        raise _error(formula, where, "A formula needs exactly one '~' between the response and the terms.")
    lhs, rhs = formula.split("~")
    rhs_pos = len(lhs) + 1
    lhs = lhs.strip()
    if not lhs:
        raise _error(formula, 0, "The formula has no response before '~'.")

    trials = known_sigma = failures = None
    response = lhs
    special = _LHS_SPECIAL.match(lhs)
    cbind = _CBIND.match(lhs)
    if special:
        response = special.group("y").strip()
        if special.group("kind") == "se":
            known_sigma = special.group("col")
        else:
            trials = special.group("col")
    elif cbind:
        response, failures = cbind.group("s"), cbind.group("f")
        if family == "gaussian":
            family = "binomial"
    if not _IDENT.match(response):
        raise _error(formula, 0, f"The response {response!r} must be a column name.")

    fixed_pieces: list[str] = []
    groups: list[GroupTerm] = []
    offset = None
    for piece, ppos in _top_level_split(rhs, rhs_pos, formula):
        stripped = piece.strip()
        lead = ppos + (len(piece) - len(piece.lstrip()))
        if not stripped:
            raise _error(formula, ppos, "Empty term: there is nothing between these operators.")
        if stripped.startswith("(") and stripped.endswith(")") and "|" in stripped:
            inner = stripped[1:-1]
            groups.extend(_parse_random(inner, formula, lead, centered))
        elif stripped.startswith("offset(") and stripped.endswith(")"):
            offset = stripped[len("offset("):-1].strip()
            if not _IDENT.match(offset):
                raise _error(formula, lead, f"offset({offset}) must name a column.")
        elif "|" in stripped:
            raise _error(
                formula, lead + stripped.find("|"),
                "A '|' outside parentheses: random terms are written in parentheses, e.g. (1 | g).",
            )
        else:
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
