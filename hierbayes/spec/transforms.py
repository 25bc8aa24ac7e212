"""The formula whitelist: which transforms and operators a formula term may use, in one place.

formulaic evaluates terms with Python's ``eval``, so a formula is code unless it is checked.
This module is the single source of truth for what is allowed: the parser
(:mod:`hierbayes.spec.formula`), the design (:func:`hierbayes.make_design`) and predictions on
new data all use :data:`ALLOWED_TRANSFORMS`, :func:`check_safe` and :data:`EVAL_CONTEXT`, so new
data are transformed by exactly the functions the fit used.

Allowed in a term: column names (no leading ``_``, no dunders), numbers, strings (as arguments
and in comparisons only), ``+ - * / // % **``, comparisons, calls of :data:`ALLOWED_TRANSFORMS`
(``np.``-prefixed numpy ufuncs too; one argument, no keywords, so ``out=`` cannot write into the
data), ``contr.<name>`` contrasts inside ``C()`` and literal lists of constants as transform
arguments. ``**`` between two numbers is refused: it would run while the formula is read, in
unbounded time (``9**9**9**9``).
"""

from __future__ import annotations

import ast
import re
from typing import Any

import numpy as np

from hierbayes.exceptions import FormulaError

__all__ = [
    "ALLOWED_TRANSFORMS",
    "EVAL_CONTEXT",
    "NOT_COLUMNS",
    "NUMPY_ALIASES",
    "check_calls",
    "check_chars",
    "check_safe",
    "formula_error",
    "is_column_name",
]

#: Functions a formula term may call (``np.`` prefixed spellings of the numpy ones too).
ALLOWED_TRANSFORMS: frozenset[str] = frozenset(
    {
        "C", "I", "log", "log2", "log10", "log1p", "exp", "sqrt", "abs",
        "center", "scale", "poly", "bs", "cr", "cs", "cc",
    }
)  # fmt: skip
#: Names under which numpy may be spelled in a term (``np.log(x)``).
NUMPY_ALIASES: frozenset[str] = frozenset({"np", "numpy"})
_NUMPY_UFUNCS = frozenset({"log", "log2", "log10", "log1p", "exp", "sqrt", "abs"})
_CONTRASTS = frozenset({"treatment", "sum", "helmert", "poly", "diff"})
_FORBIDDEN_CHARS = {
    "{": "Python blocks {...}",
    "}": "Python blocks {...}",
    "`": "backtick-quoted names",
    ";": "';'",
    "\\": "'\\'",
}
_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
_ALLOWED_UNARY = (ast.UAdd, ast.USub)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")

#: The names a term is evaluated with, beside the data's columns and formulaic's own transforms
#: (``C``, ``I``, ``log``, ``exp``, ``center``, ``scale``, ``poly``, splines): numpy under its
#: aliases and the numpy ufuncs of the whitelist that formulaic does not define. Used for the
#: fitted data and for new data alike.
EVAL_CONTEXT: dict[str, Any] = {"np": np, "numpy": np, "sqrt": np.sqrt, "abs": np.abs, "log1p": np.log1p}
#: Names in a term that are not data columns.
NOT_COLUMNS: frozenset[str] = ALLOWED_TRANSFORMS | NUMPY_ALIASES | {"contr"}


def is_column_name(name: str) -> bool:
    """A plain column name: identifier characters and dots, no dunders (``x.__class__``)."""
    return bool(_IDENT.match(name)) and not name.startswith("__") and ".__" not in name and "__." not in name


def formula_error(formula: str, pos: int, message: str) -> FormulaError:
    """A :class:`~hierbayes.FormulaError` whose message points a caret at ``pos`` in ``formula``."""
    pointer = " " * max(pos, 0) + "^"
    return FormulaError(f"{message}\n  {formula}\n  {pointer}")


def check_chars(text: str, formula: str, pos: int) -> None:
    """Refuse characters that open Python code or quoted names in formulaic."""
    for i, ch in enumerate(text):
        if ch in _FORBIDDEN_CHARS:
            raise formula_error(
                formula,
                pos + i,
                f"{_FORBIDDEN_CHARS[ch]} are not allowed in a formula (received {ch!r}). Formulas may only "
                "name columns and use arithmetic and the allowed transforms; compute other columns in "
                "the data first, and rename columns whose names are not plain identifiers.",
            )


def _allowed_list() -> str:
    return (
        f"allowed transforms: {', '.join(sorted(ALLOWED_TRANSFORMS))} (and contr.treatment/sum/helmert/poly/diff "
        "inside C()). Compute other columns in the data first."
    )


def check_calls(text: str, formula: str, pos: int) -> None:
    """Refuse a call of anything but an allowed transform, by name, before formulaic parses the text."""
    for match in _CALL.finditer(text):
        name = match.group(1)
        base = name.split(".", 1)[1] if name.split(".", 1)[0] in NUMPY_ALIASES and "." in name else name
        if base in ALLOWED_TRANSFORMS or (name.startswith("contr.") and name[len("contr.") :] in _CONTRASTS):
            continue
        raise formula_error(
            formula,
            pos + match.start(1),
            f"The function {name!r} is not allowed in a formula; {_allowed_list()}",
        )


def _has_name(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if func.value.id in NUMPY_ALIASES and func.attr in ALLOWED_TRANSFORMS:
            return func.attr
        if func.value.id == "contr" and func.attr in _CONTRASTS:
            return f"contr.{func.attr}"
    return ast.unparse(func)


class _Whitelist:
    """Walks a term's AST and refuses every node the whitelist does not name."""

    def __init__(self, text: str, formula: str, pos: int) -> None:
        self.text, self.formula, self.pos = text, formula, pos

    def refuse(self, message: str) -> FormulaError:
        return formula_error(self.formula, self.pos, f"Term {self.text!r}: {message}")

    def visit(self, node: ast.AST, *, in_call_args: bool = False) -> None:
        if isinstance(node, ast.Expression):
            self.visit(node.body)
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise self.refuse(f"the name {node.id!r} is not allowed in a formula (names may not start with '_').")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool)) or isinstance(node.value, complex):
                raise self.refuse(f"the constant {node.value!r} is not allowed in a formula.")
        elif isinstance(node, ast.BinOp):
            self.binop(node)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, _ALLOWED_UNARY):
                raise self.refuse(f"the operator {type(node.op).__name__} is not allowed in a formula.")
            self.visit(node.operand)
        elif isinstance(node, ast.Compare):
            for child in (node.left, *node.comparators):
                self.visit(child)
        elif isinstance(node, (ast.List, ast.Tuple)) and in_call_args:
            self.literal_list(node)
        elif isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.Attribute):
            self.attribute(node)
        else:
            raise self.refuse(f"{type(node).__name__} ({ast.unparse(node)!r}) is not allowed in a formula.")

    def binop(self, node: ast.BinOp) -> None:
        if not isinstance(node.op, _ALLOWED_BINOPS):
            raise self.refuse(
                f"the operator {type(node.op).__name__} is not allowed in a formula; "
                "allowed arithmetic: + - * / // % **."
            )
        for side in (node.left, node.right):
            if isinstance(side, ast.Constant) and isinstance(side.value, str):
                raise self.refuse("strings cannot be used in arithmetic.")
        if isinstance(node.op, ast.Pow) and not (_has_name(node.left) or _has_name(node.right)):
            raise self.refuse(
                f"'{ast.unparse(node)}' raises a number to a power; write the number itself "
                "(powers of constants are refused because they run while the formula is read)."
            )
        self.visit(node.left)
        self.visit(node.right)

    def literal_list(self, node: ast.List | ast.Tuple) -> None:
        for elt in node.elts:
            if not isinstance(elt, ast.Constant) and not (
                isinstance(elt, ast.UnaryOp) and isinstance(elt.operand, ast.Constant)
            ):
                raise self.refuse("lists given to a transform may only hold numbers or strings.")
            self.visit(elt)

    def call(self, node: ast.Call) -> None:
        fname = _call_name(node.func)
        if fname not in ALLOWED_TRANSFORMS and not fname.startswith("contr."):
            raise self.refuse(f"the function {fname!r} is not allowed in a formula; {_allowed_list()}")
        plain = fname in _NUMPY_UFUNCS or fname == "I"
        if plain and (len(node.args) != 1 or node.keywords):
            raise self.refuse(f"{fname}() takes exactly one argument and no keywords in a formula.")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse("*args are not allowed in a formula.")
            self.visit(arg, in_call_args=not plain)
        for kw in node.keywords:
            if kw.arg is None or kw.arg.startswith("_"):
                raise self.refuse(f"the keyword {'**' if kw.arg is None else kw.arg!r} is not allowed in a formula.")
            self.visit(kw.value, in_call_args=True)

    def attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name) and node.value.id == "contr" and node.attr in _CONTRASTS:
            return
        raise self.refuse(
            f"attribute access {ast.unparse(node)!r} is not allowed in a formula "
            "(only np.<transform> and contr.<contrast> calls)."
        )


def check_safe(expr: str, formula: str, pos: int) -> None:
    """Refuse anything but column names, numbers, arithmetic and allowed transforms in ``expr``.

    Parameters
    ----------
    expr
        One factor that formulaic would evaluate (``log(x)``, ``C(g, contr.sum)``).
    formula, pos
        The whole formula and the position of ``expr`` in it, for the error's caret.

    Raises
    ------
    FormulaError
        Naming the term and what is not allowed in it.
    """
    text = expr.strip()
    where = formula.find(text)
    pos = where if where >= 0 else pos
    check_chars(text, formula, pos)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise formula_error(formula, pos, f"Term {text!r} is not a valid expression.") from None
    _Whitelist(text, formula, pos).visit(tree)
