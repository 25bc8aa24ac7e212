"""Formulas and model cards are data: reading one from an untrusted source must never run code.

formulaic evaluates formula terms with Python's ``eval`` (builtins included), so hierbayes
refuses, before formulaic sees anything, every term that is not column names, numbers,
arithmetic and the transforms in ``hb.formula.ALLOWED_TRANSFORMS`` (``hierbayes.spec.formula``);
``make_design`` applies the same check again to specs built by hand (or loaded from a file).

Each attack below would create a sentinel file if it ran; the test asserts the refusal is a
``FormulaError`` with a clear message *and* that the sentinel does not exist afterwards.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.cards import load_card, parse_card
from hierbayes.spec.formula import ALLOWED_TRANSFORMS


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.uniform(1, 2, size=n),
            "g": np.repeat(list("abcd"), 10),
            "s": np.ones(n),
            "n": np.full(n, 5),
        }
    )


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "sentinel"
    yield path
    assert not path.exists(), "an attack ran code: the sentinel file was created"


NOT_ALLOWED = r"is not allowed in a formula"

# (formula with {S} for the sentinel path, what the error says)
ATTACKS = [
    ("y ~ __import__('os').system('touch {S}') + (1 | g)", r"The function '__import__' is not allowed"),
    ("y ~ open('{S}', 'w') + (1 | g)", r"The function 'open' is not allowed in a formula; allowed transforms: C, I"),
    ("y ~ {{open('{S}', 'w')}} + (1 | g)", r"Python blocks \{\.\.\.\} are not allowed in a formula"),
    ("y ~ {{__import__('os').system('touch {S}')}} + (1 | g)", r"Python blocks \{\.\.\.\} are not allowed"),
    ("y ~ eval(\"open('{S}', 'w')\") + (1 | g)", r"The function 'eval' is not allowed"),
    ("y ~ exec(\"open('{S}', 'w')\") + (1 | g)", r"The function 'exec' is not allowed"),
    ("y ~ `open('{S}', 'w')` + (1 | g)", r"backtick-quoted names are not allowed in a formula \(received '`'\)"),
    ("y ~ `x` + (1 | g)", r"backtick-quoted names are not allowed"),
    ("y ~ x.__class__ + (1 | g)", r"attribute access 'x\.__class__' is not allowed in a formula"),
    ("y ~ I(x.__class__.__bases__) + (1 | g)", r"attribute access 'x\.__class__\.__bases__' is not allowed"),
    ("y ~ np.os.system('touch {S}') + (1 | g)", r"The function 'np\.os\.system' is not allowed"),
    ("y ~ I(np.__dict__) + (1 | g)", r"attribute access 'np\.__dict__' is not allowed"),
    ("y ~ I((lambda: open('{S}', 'w'))()) + (1 | g)", NOT_ALLOWED),
    ("y ~ I([open('{S}', 'w') for i in [1]]) + (1 | g)", r"The function 'open' is not allowed"),
    ("y ~ I([i for i in x]) + (1 | g)", r"ListComp \('\[i for i in x\]'\) is not allowed in a formula"),
    ("y ~ I(getattr(x, 'sum')) + (1 | g)", r"The function 'getattr' is not allowed"),
    ("y ~ I(__builtins__) + (1 | g)", r"the name '__builtins__' is not allowed in a formula"),
    ("y ~ C(g, contr=open('{S}', 'w')) + (1 | g)", r"The function 'open' is not allowed"),
    ("y ~ C(g, contr.__init__) + (1 | g)", r"attribute access 'contr\.__init__' is not allowed"),
    ("y ~ log(x, out=x) + (1 | g)", r"log\(\) takes exactly one argument and no keywords in a formula"),
    ("y ~ center(x, _state=x) + (1 | g)", r"the keyword '_state' is not allowed in a formula"),
    ("y ~ I(9**9**9**9) + (1 | g)", r"raises a number to a power; write the number itself"),
    ("y ~ I('a' * 10) + (1 | g)", r"strings cannot be used in arithmetic"),
    ("y ~ I(1 << 10) + (1 | g)", r"the operator LShift is not allowed in a formula"),
    ("y ~ I(x if x else x) + (1 | g)", r"IfExp .* is not allowed in a formula"),
    ("y ~ I((s := x)) + (1 | g)", r"NamedExpr .* is not allowed in a formula"),
    # the random term's left-hand side and grouping part
    ("y ~ x + (open('{S}', 'w') | g)", r"The function 'open' is not allowed"),
    ("y ~ x + (1 + __import__('os').system('touch {S}') | g)", r"The function '__import__' is not allowed"),
    ("y ~ x + (1 | open('{S}', 'w'))", r"Grouping factor .* is not a column name"),
    ("y ~ x + (1 | g.__class__)", r"Grouping factor 'g\.__class__': 'g\.__class__' is not a column name"),
    ("y ~ x + (1 | __import__)", r"Grouping factor '__import__': '__import__' is not a column name"),
    # the left-hand side: y | se(...), y | trials(...), cbind(...), and offset()
    ("y | se(open('{S}', 'w')) ~ x + (1 | g)", r"The response .* must be a column name"),
    ("y | se(x.__class__) ~ x + (1 | g)", r"se\(\) must name a column; received 'x\.__class__'"),
    ("y | trials(__import__) ~ x + (1 | g)", r"trials\(\) must name a column; received '__import__'"),
    ("cbind(y, open('{S}', 'w')) ~ x + (1 | g)", r"The response .* must be a column name"),
    ("cbind(open('{S}', 'w'), n) ~ x + (1 | g)", r"The response .* must be a column name"),
    ("open('{S}', 'w') ~ x + (1 | g)", r"The response .* must be a column name"),
    ("y ~ x + offset(open('{S}', 'w')) + (1 | g)", r"offset\(.*\) must name a column"),
]


@pytest.mark.parametrize(("template", "message"), ATTACKS)
def test_formula_attacks_are_refused_before_anything_runs(template, message, data, sentinel):
    formula = template.format(S=sentinel)
    with pytest.raises(hb.FormulaError, match=message) as err:
        hb.parse_formula(formula)
    assert "^" in str(err.value)  # with the position
    with pytest.raises(hb.FormulaError, match=message):
        hb.fit(formula, data)  # the same through the pipeline; nothing is sampled


def test_the_sentinel_would_catch_code_that_ran(tmp_path):
    """Control: the same payload, when Python does evaluate it, creates the file."""
    path = tmp_path / "sentinel"
    eval(f"open({str(path)!r}, 'w').close()")  # deliberately, to validate the check
    assert path.exists()


def _spec_with(fixed=(), terms=()):
    groups = (hb.GroupTerm(factor=("g",), terms=tuple(terms)),)
    return hb.ModelSpec(response="y", fixed=tuple(fixed), groups=groups)


@pytest.mark.parametrize(
    "payload", ["open('{S}', 'w')", "__import__('os').system('touch {S}')", "x + open('{S}', 'w')", "{{open('{S}')}}"]
)
def test_hand_built_specs_are_checked_again_by_make_design(payload, data, sentinel):
    """A spec made without the parser (or loaded from a saved file) cannot smuggle code either."""
    term = payload.format(S=sentinel)
    with pytest.raises(hb.FormulaError, match=r"not allowed in a formula"):
        hb.make_design(_spec_with(fixed=[term]), data)
    with pytest.raises(hb.FormulaError, match=r"not allowed in a formula"):
        hb.make_design(_spec_with(terms=[term]), data)


def test_builder_arguments_are_checked(data, sentinel):
    with pytest.raises(hb.FormulaError, match=r"The function 'open' is not allowed"):
        hb.random_intercept(y="y", group="g", x=f"open('{sentinel}', 'w')")
    with pytest.raises(hb.FormulaError, match=r"The function '__import__' is not allowed"):
        hb.random_slopes(y="y", group="g", slopes=f"__import__('os').system('touch {sentinel}')")


def test_builtins_used_as_bare_names_are_missing_columns(data):
    """A builtin used as a value (not called) is looked up as a column and refused before evaluation."""
    with pytest.raises(hb.DataError, match=r"Column 'eval' named in the model .* is not in the data"):
        hb.make_design(hb.parse_formula("y ~ C(g, contrasts=eval) + (1 | g)"), data)


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ np.log(x) + numpy.exp(x) + sqrt(x) + abs(x - 1.5) + log1p(x) + (1 | g)",
        "y ~ I(x ** 2) + x + I(x > 1.5) + I(-x ** 3 / 2) + (1 | g)",
        "y ~ C(g, contr.treatment('b')) + x + (1 | s:g)",
        "y ~ C(g, contr.sum) + x + (1 | s:g)",
        "y ~ C(g, levels=['d', 'c', 'b', 'a']) + (1 | s:g)",
        "y ~ poly(x, degree=2) + (1 | g)",
        "y ~ center(x) + (1 + scale(x) | g)",
        "y ~ I(g == 'a') + (1 | s:g)",
    ],
)
def test_legitimate_transforms_still_work(formula, data):
    d = hb.make_design(hb.parse_formula(formula), data)
    assert np.isfinite(d.X).all()


def test_allowed_transforms_are_a_fixed_whitelist():
    assert isinstance(ALLOWED_TRANSFORMS, frozenset)
    assert not {"open", "eval", "exec", "getattr", "__import__", "compile", "Q", "hashed"} & ALLOWED_TRANSFORMS


# Model cards -------------------------------------------------------------------------------------------------------


CARD = """\
name = "attack"

[data]
dataset = "sleepstudy"

[model]
formula = "{formula}"
"""


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("Reaction ~ Days + __import__('os').system('touch {S}') + (1 | Subject)", r"'__import__' is not allowed"),
        ("Reaction ~ Days + open('{S}', 'w') + (1 | Subject)", r"The function 'open' is not allowed"),
        ("Reaction ~ Days + (open('{S}', 'w') | Subject)", r"The function 'open' is not allowed"),
        ("Reaction ~ Days + {{open('{S}', 'w')}} + (1 | Subject)", r"Python blocks"),
    ],
)
def test_model_card_with_code_in_its_formula_is_refused(formula, message, sentinel, tmp_path):
    text = CARD.format(formula=formula.format(S=sentinel).replace("'", "\\u0027"))
    with pytest.raises(hb.FormulaError, match=message):
        parse_card(text)
    card_file = tmp_path / "attack.toml"
    card_file.write_text(text)
    with pytest.raises(hb.FormulaError, match=message):
        load_card(card_file)


def test_model_card_builder_arguments_are_checked(sentinel):
    text = f"""\
[data]
dataset = "sleepstudy"

[model]
builder = "random_intercept"

[model.args]
y = "Reaction"
group = "Subject"
x = ["Days", "open('{sentinel}', 'w')"]
"""
    with pytest.raises(hb.FormulaError, match=r"The function 'open' is not allowed"):
        parse_card(text)
