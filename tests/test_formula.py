import pytest

import hierbayes as hb
from hierbayes.spec import GroupTerm, ModelSpec


def test_fixed_and_random_terms():
    spec = hb.parse_formula("math ~ year + female + (1 | school) + (1 | child)")
    assert spec.response == "math"
    assert spec.intercept is True
    assert spec.fixed == ("year", "female")
    assert spec.groups == (GroupTerm(factor=("school",)), GroupTerm(factor=("child",)))
    assert spec.family == "gaussian" and spec.link == "identity"


def test_nesting_expands_to_interaction():
    spec = hb.parse_formula("y ~ x + (1 | school/child)")
    assert [g.factor for g in spec.groups] == [("school",), ("school", "child")]
    assert [g.name for g in spec.groups] == ["school", "school:child"]
    assert spec == hb.parse_formula("y ~ x + (1 | school) + (1 | school:child)")


def test_three_level_nesting_path():
    spec = hb.parse_formula("y ~ 1 + (1 | a/b/c)")
    assert [g.name for g in spec.groups] == ["a", "a:b", "a:b:c"]


def test_correlated_and_uncorrelated_slopes():
    full = hb.parse_formula("Reaction ~ Days + (Days | Subject)")
    (g,) = full.groups
    assert g.intercept and g.terms == ("Days",) and g.covariance == "full"
    assert full == hb.parse_formula("Reaction ~ Days + (1 + Days | Subject)")
    diag = hb.parse_formula("Reaction ~ Days + (1 + Days || Subject)")
    assert diag.groups[0].covariance == "diagonal"
    slope_only = hb.parse_formula("Reaction ~ Days + (0 + Days | Subject)")
    assert slope_only.groups[0].intercept is False
    assert slope_only.groups[0].coef_names == ("Days",)


def test_interactions_categoricals_and_no_intercept():
    spec = hb.parse_formula("y ~ x * C(g) + (1 | s)")
    assert spec.fixed == ("x", "C(g)", "x:C(g)")
    assert hb.parse_formula("y ~ 0 + x + (1 | s)").intercept is False
    assert hb.parse_formula("y ~ x - 1 + (1 | s)").intercept is False


def test_crossed_factors():
    spec = hb.parse_formula("y ~ 1 + (1 | item) + (1 | subject)")
    assert [g.name for g in spec.groups] == ["item", "subject"]


def test_brms_style_left_hand_sides():
    spec = hb.parse_formula("y | se(sigma) ~ 1 + (1 | school)")
    assert spec.response == "y" and spec.known_sigma == "sigma"
    spec = hb.parse_formula("s | trials(n) ~ x + (1 | g)", family="binomial")
    assert spec.trials == "n"
    spec = hb.parse_formula("cbind(s, f) ~ x + (1 | g)")
    assert spec.family == "binomial" and spec.failures == "f"
    spec = hb.parse_formula("count ~ x + offset(logt) + (1 | g)", family="poisson")
    assert spec.offset == "logt"


def test_formula_round_trips():
    for text in [
        "math ~ year + female + (1 | school) + (1 | school:child)",
        "Reaction ~ Days + (Days | Subject)",
        "Reaction ~ Days + (1 + Days || Subject)",
        "y | se(sigma) ~ 1 + (1 | school)",
    ]:
        spec = hb.parse_formula(text)
        assert hb.parse_formula(spec.formula()) == spec


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ x + (1 | g", r"never closed"),
        ("y ~ x + 1 | g)", r"no matching"),
        ("y ~ x + ( | g)", r"nothing before"),
        ("y ~ x + (1 | )", r"Empty grouping factor"),
        ("y ~ x + + z", r"Empty term"),
        ("y x + (1 | g)", r"exactly one '~'"),
        ("y ~ x + 1 | g", r"outside parentheses"),
    ],
)
def test_syntax_errors_point_at_the_problem(formula, message):
    with pytest.raises(hb.FormulaError, match=message) as err:
        hb.parse_formula(formula)
    assert "^" in str(err.value)  # a caret under the position


def test_family_and_link_validation():
    with pytest.raises(hb.SpecError, match="Unknown family 'weibull'"):
        hb.parse_formula("y ~ x + (1 | g)", family="weibull")
    with pytest.raises(hb.SpecError, match="Unknown link 'log' for family 'bernoulli'"):
        hb.parse_formula("y ~ x + (1 | g)", family="bernoulli", link="log")
    assert hb.parse_formula("y ~ x + (1 | g)", family="bernoulli", link="probit").link == "probit"


def test_same_factor_twice_gets_distinct_names():
    """lme4's uncorrelated form: the second term of a factor is named g__x (its own sd, dims)."""
    spec = hb.parse_formula("y ~ x + (1 | g) + (0 + x | g)")
    assert [t.name for t in spec.groups] == ["g", "g__x"]
    assert [t.factor for t in spec.groups] == [("g",), ("g",)]
    assert hb.parse_formula(spec.formula()) == spec
    with pytest.raises(hb.SpecError, match="the varying coefficient 'Intercept' appears in"):
        hb.parse_formula("y ~ x + (1 | g) + (1 + x | g)")


def test_builders_equal_formulas():
    assert hb.group_means(y="y", sigma="sigma", group="school") == hb.parse_formula(
        "y | se(sigma) ~ 1 + (1 | school)"
    )
    assert hb.random_intercept(y="math", group="school", x=["year", "female"]) == hb.parse_formula(
        "math ~ year + female + (1 | school)"
    )
    assert hb.random_slopes(y="Reaction", group="Subject", slopes="Days") == hb.parse_formula(
        "Reaction ~ Days + (Days | Subject)"
    )
    assert hb.random_slopes(
        y="Reaction", group="Subject", slopes=["Days"], covariance="diagonal"
    ) == hb.parse_formula("Reaction ~ Days + (1 + Days || Subject)")
    assert hb.nested(
        y="math", groups=["school", "child"], x=["year", "retained", "female", "black", "hispanic", "size", "lowinc"]
    ) == hb.parse_formula(
        "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school/child)"
    )
    assert hb.glmm(
        y="immun", family="bernoulli", groups=["cluster", "mom"], nest=True, x=["kid2p", "rural"]
    ) == hb.parse_formula("immun ~ kid2p + rural + (1 | cluster/mom)", family="bernoulli")


def test_builder_with_data_checks_columns():
    df = hb.datasets.load("sleepstudy")
    with pytest.raises(hb.DataError, match=r"Column 'Dayz'.*Did you mean 'Days'"):
        hb.random_slopes(df, y="Reaction", group="Subject", slopes="Dayz")


def test_spec_is_frozen():
    spec = hb.parse_formula("y ~ x + (1 | g)")
    with pytest.raises(AttributeError):
        spec.response = "z"  # type: ignore[misc]
    assert isinstance(spec, ModelSpec)
