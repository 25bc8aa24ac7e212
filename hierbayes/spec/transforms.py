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
unbounded time (``9**9**9**9``). formulaic's contrast objects (``Treatment("b")``, ``Sum()``,
``Helmert()``, ``Poly()``, ``Diff()``) are allowed inside ``C()`` with constant arguments.

Expressions outside the fixed terms (the response ``log(y)``, ``cbind(incidence, size - incidence)``,
``trials(n - k)``, ``offset(log(exposure))``) are narrower: column names, numbers, ``+ - * / **``,
unary minus and the one-argument functions of :data:`EXPRESSION_FUNCTIONS`. They are never given
to ``eval``: :func:`evaluate_expression` walks the checked syntax tree itself, and also gives the
derivative with respect to one column (the Jacobian of a transformed response) and, for a
transform of a single column, its inverse (:func:`invert_expression`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from hierbayes.exceptions import FormulaError

__all__ = [
    "ALLOWED_TRANSFORMS",
    "CONTRAST_CLASSES",
    "EVAL_CONTEXT",
    "EXPRESSION_FUNCTIONS",
    "NOT_COLUMNS",
    "NUMPY_ALIASES",
    "check_calls",
    "check_chars",
    "check_expression",
    "check_safe",
    "evaluate_expression",
    "expression_columns",
    "formula_error",
    "invert_expression",
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
#: formulaic's contrast classes, allowed inside ``C()`` (``C(g, Treatment("b"))``, ``C(g, Sum())``).
CONTRAST_CLASSES: frozenset[str] = frozenset({"Treatment", "Sum", "Helmert", "Poly", "Diff"})
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
NOT_COLUMNS: frozenset[str] = ALLOWED_TRANSFORMS | NUMPY_ALIASES | CONTRAST_CLASSES | {"contr"}


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
        "or Treatment/Sum/Helmert/Poly/Diff inside C()). Compute other columns in the data first."
    )


def check_calls(text: str, formula: str, pos: int) -> None:
    """Refuse a call of anything but an allowed transform, by name, before formulaic parses the text."""
    for match in _CALL.finditer(text):
        name = match.group(1)
        base = name.split(".", 1)[1] if name.split(".", 1)[0] in NUMPY_ALIASES and "." in name else name
        if (
            base in ALLOWED_TRANSFORMS
            or name in CONTRAST_CLASSES
            or (name.startswith("contr.") and name[len("contr.") :] in _CONTRASTS)
        ):
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
        if fname in CONTRAST_CLASSES:
            for arg in (*node.args, *(kw.value for kw in node.keywords)):
                if not isinstance(arg, ast.Constant) or not isinstance(arg.value, (int, float, str, bool)):
                    raise self.refuse(f'{fname}() takes constant arguments only (a level such as "b").')
            for kw in node.keywords:
                if kw.arg is None or kw.arg.startswith("_"):
                    shown = "**" if kw.arg is None else repr(kw.arg)
                    raise self.refuse(f"the keyword {shown} is not allowed in a formula.")
            return
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


# ----------------------------------------------------------------------------- expressions

#: One-argument functions an expression (response, ``cbind``, ``trials``, ``offset``) may call.
EXPRESSION_FUNCTIONS: frozenset[str] = frozenset({"I", "log", "log2", "log10", "log1p", "exp", "sqrt", "abs"})
_EXPR_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)

# value and derivative of each function at a
_FUNCS: dict[str, Any] = {
    "I": (lambda a: a, lambda a: 1.0),
    "log": (np.log, lambda a: 1.0 / a),
    "log2": (np.log2, lambda a: 1.0 / (a * np.log(2.0))),
    "log10": (np.log10, lambda a: 1.0 / (a * np.log(10.0))),
    "log1p": (np.log1p, lambda a: 1.0 / (1.0 + a)),
    "exp": (np.exp, np.exp),
    "sqrt": (np.sqrt, lambda a: 0.5 / np.sqrt(a)),
    "abs": (np.abs, np.sign),
}
_INVERSES: dict[str, Any] = {
    "I": lambda z: z,
    "log": np.exp,
    "log2": lambda z: 2.0**z,
    "log10": lambda z: 10.0**z,
    "log1p": np.expm1,
    "exp": np.log,
    "sqrt": lambda z: z**2,
}


def _expr_func_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in NUMPY_ALIASES:
        return func.attr
    return None


def _check_expr_node(node: ast.AST) -> str | None:
    """Why ``node`` is not an allowed expression, or ``None``."""
    if isinstance(node, ast.Name):
        ok = is_column_name(node.id) and node.id not in NUMPY_ALIASES
        return None if ok else f"the name {node.id!r} is not a column name"
    if isinstance(node, ast.Constant):
        ok = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        return None if ok else f"the constant {node.value!r} is not a number"
    if isinstance(node, ast.BinOp):
        if not isinstance(node.op, _EXPR_BINOPS):
            return f"the operator {type(node.op).__name__} is not allowed (allowed: + - * / **)"
        if isinstance(node.op, ast.Pow) and not (_has_name(node.left) or _has_name(node.right)):
            return f"'{ast.unparse(node)}' raises a number to a power; write the number itself"
        return _check_expr_node(node.left) or _check_expr_node(node.right)
    if isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, _ALLOWED_UNARY):
            return f"the operator {type(node.op).__name__} is not allowed"
        return _check_expr_node(node.operand)
    if isinstance(node, ast.Call):
        name = _expr_func_name(node.func)
        if name not in EXPRESSION_FUNCTIONS:
            return (
                f"the function {ast.unparse(node.func)!r} is not allowed here; allowed: "
                f"{', '.join(sorted(EXPRESSION_FUNCTIONS))} (one argument each)"
            )
        if len(node.args) != 1 or node.keywords or isinstance(node.args[0], ast.Starred):
            return f"{name}() takes exactly one argument and no keywords"
        return _check_expr_node(node.args[0])
    return f"{type(node).__name__} ({ast.unparse(node)!r}) is not allowed"


def _parse_expression(expr: str) -> ast.expr:
    """The checked syntax tree of ``expr``; :class:`ValueError` with the reason otherwise."""
    text = expr.strip()
    for ch in text:
        if ch in _FORBIDDEN_CHARS:
            raise ValueError(f"{_FORBIDDEN_CHARS[ch]} are not allowed (received {ch!r})")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ValueError("it is not a valid expression") from None
    why = _check_expr_node(tree.body)
    if why is not None:
        raise ValueError(why)
    return tree.body


def check_expression(expr: str) -> str | None:
    """Why ``expr`` is not an allowed expression of columns, or ``None`` when it is.

    Allowed: column names, numbers, ``+ - * / **``, unary ``-`` and one-argument calls of
    :data:`EXPRESSION_FUNCTIONS` (``np.``-prefixed too), e.g. ``size - incidence``,
    ``log(exposure)``, ``log(y + 1)``.
    """
    try:
        _parse_expression(expr)
    except ValueError as err:
        return str(err)
    return None


def expression_columns(expr: str) -> tuple[str, ...]:
    """The column names used by an allowed expression, in order of appearance."""
    if is_column_name(expr.strip()):
        return (expr.strip(),)
    tree = _parse_expression(expr)
    names: list[str] = []
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in NUMPY_ALIASES and id(node) not in funcs:
            names.append(node.id)
    return tuple(dict.fromkeys(names))


def _dual(node: ast.AST, columns: Mapping[str, Any], wrt: str | None) -> tuple[Any, Any]:
    """``(value, d value / d wrt)`` of a checked expression node (forward-mode differentiation)."""
    if isinstance(node, ast.Name):
        v = np.asarray(columns[node.id], dtype=float)
        return v, (1.0 if node.id == wrt else 0.0)
    if isinstance(node, ast.Constant):
        return float(node.value), 0.0  # type: ignore[arg-type]  # numbers only, checked before
    if isinstance(node, ast.UnaryOp):
        v, d = _dual(node.operand, columns, wrt)
        return (-v, -d) if isinstance(node.op, ast.USub) else (v, d)
    if isinstance(node, ast.Call):
        name = _expr_func_name(node.func)
        assert name is not None
        f, df = _FUNCS[name]
        v, d = _dual(node.args[0], columns, wrt)
        return f(v), df(v) * d
    assert isinstance(node, ast.BinOp)
    a, da = _dual(node.left, columns, wrt)
    b, db = _dual(node.right, columns, wrt)
    if isinstance(node.op, ast.Add):
        return a + b, da + db
    if isinstance(node.op, ast.Sub):
        return a - b, da - db
    if isinstance(node.op, ast.Mult):
        return a * b, a * db + b * da
    if isinstance(node.op, ast.Div):
        return a / b, (da * b - a * db) / b**2
    value = a**b
    dv = b * a ** (b - 1.0) * da
    if np.any(np.asarray(db) != 0):
        dv = dv + value * np.log(a) * db
    return value, dv


def evaluate_expression(
    expr: str, columns: Mapping[str, Any], *, wrt: str | None = None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Evaluate an allowed expression on columns, without ``eval``.

    Parameters
    ----------
    expr
        For example ``"size - incidence"`` or ``"log(exposure)"`` (checked by
        :func:`check_expression`; a refused expression raises :class:`ValueError`).
    columns
        Column name to values (a DataFrame works).
    wrt
        A column name: also return :math:`\partial e / \partial x_{wrt}` elementwise (the
        Jacobian of a transformed response :math:`z = e(y)` is :math:`|dz/dy|`).

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        The values (float), and their derivatives when ``wrt`` is given.
    """
    tree = _parse_expression(expr)
    with np.errstate(all="ignore"):
        value, deriv = _dual(tree, columns, wrt)
    n = max((np.size(columns[c]) for c in expression_columns(expr)), default=1)
    value = np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()
    if wrt is None:
        return value
    return value, np.broadcast_to(np.asarray(deriv, dtype=float), (n,)).copy()


def _constant(node: ast.AST) -> float:
    return float(_dual(node, {}, None)[0])


def _invert(node: ast.AST, z: Any) -> Any:
    if isinstance(node, ast.Name):
        return z
    if isinstance(node, ast.UnaryOp):
        return _invert(node.operand, -z if isinstance(node.op, ast.USub) else z)
    if isinstance(node, ast.Call):
        name = _expr_func_name(node.func)
        if name not in _INVERSES:
            raise ValueError(f"{name}() is not one-to-one")
        return _invert(node.args[0], _INVERSES[name](z))
    if isinstance(node, ast.BinOp):
        left_var, right_var = _has_name(node.left), _has_name(node.right)
        if left_var == right_var:
            raise ValueError("the column appears on both sides of an operator")
        var, const = (node.left, _constant(node.right)) if left_var else (node.right, _constant(node.left))
        op = node.op
        if isinstance(op, ast.Add):
            return _invert(var, z - const)
        if isinstance(op, ast.Sub):
            return _invert(var, z + const if left_var else const - z)
        if isinstance(op, ast.Mult):
            return _invert(var, z / const)
        if isinstance(op, ast.Div):
            return _invert(var, z * const if left_var else const / z)
        if isinstance(op, ast.Pow):
            return _invert(var, z ** (1.0 / const) if left_var else np.log(z) / np.log(const))
    raise ValueError(f"{ast.unparse(node)!r} cannot be inverted")


def invert_expression(expr: str, z: Any) -> np.ndarray:
    """The column value ``y`` with ``expr(y) = z``, for an expression of one column (``log(y)`` -> ``exp(z)``).

    Raises
    ------
    ValueError
        When ``expr`` names more than one column or is not one-to-one (``abs``, ``y * y``).
    """
    if len(expression_columns(expr)) != 1:
        raise ValueError(f"{expr!r} must use exactly one column to be inverted")
    with np.errstate(all="ignore"):
        return np.asarray(_invert(_parse_expression(expr), np.asarray(z, dtype=float)), dtype=float)
