"""Bad input, as a user meets it: each mistake raises (or warns) with a message that names the
column or term, says what was received and what is allowed, and suggests the fix.

Everything here fails before any sampling, so the tests call the public entry points
(``hb.fit``, ``hb.make_design``, ``hb.parse_formula``, the builders) exactly as a user would.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.spec.priors import scale_prior_from_dict


@pytest.fixture
def df():
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
            "g": np.repeat(list("abcd"), 10),
        }
    )


@pytest.fixture
def schools():
    """4 schools x 5 children x 3 occasions; child ids 0..4 reused in every school."""
    rng = np.random.default_rng(1)
    school = np.repeat([1, 2, 3, 4], 15)
    child = np.tile(np.repeat(np.arange(5), 3), 4)
    out = pd.DataFrame({"y": rng.normal(size=60), "school": school, "child": child})
    out["uid"] = out["school"] * 100 + out["child"]  # globally unique child ids
    return out


def design(formula, data, **kwargs):
    family = kwargs.pop("family", "gaussian")
    priors = kwargs.pop("priors", None)
    return hb.make_design(hb.parse_formula(formula, family=family, priors=priors), data, **kwargs)


# 1. a column that is not in the data -------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "missing", "close"),
    [
        ("y ~ xx + (1 | g)", "xx", "x"),  # fixed effect
        ("y ~ x + (1 | gg)", "gg", "g"),  # grouping factor
        ("yy ~ x + (1 | g)", "yy", "y"),  # response
        ("y ~ x + (1 + zz | g)", "zz", "z"),  # varying slope
        ("y ~ log(xx) + (1 | g)", "xx", "x"),  # inside a transform
    ],
)
def test_missing_column_suggests_close_matches(df, formula, missing, close):
    with pytest.raises(hb.DataError, match=rf"Column '{missing}' named in the model .* is not in the data\. "
                                         rf"Did you mean '{close}'\? Available columns: y, x, z, g\."):
        hb.fit(formula, df)


def test_missing_column_without_close_match_lists_columns(df):
    with pytest.raises(hb.DataError, match=r"Column 'weight' .* not in the data\. Available columns: y, x, z, g\.$"):
        design("y ~ weight + (1 | g)", df)


# 2. missing values ------------------------------------------------------------------------------------


def test_missing_values_error_counts_per_column(df):
    df.loc[0, "y"] = np.nan
    df.loc[1, "x"] = np.nan
    df.loc[[1, 2], "g"] = None
    with pytest.raises(
        hb.DataError,
        match=r"Missing values \(NaN/None\) in 3 row\(s\) of the columns the model uses \(y: 1, g: 2, x: 1\)\. "
        r"Nothing is dropped silently: .* pass dropna=True",
    ):
        hb.fit("y ~ x + (1 | g)", df)


def test_missing_values_in_unused_columns_are_ignored(df):
    df["unused"] = np.nan
    assert design("y ~ x + (1 | g)", df).n_obs == 40


def test_dropna_drops_and_reports_exactly(df):
    df.loc[0, "y"] = np.nan
    df.loc[1, "x"] = np.nan
    df.loc[[1, 2], "g"] = None
    dropped = r"^dropna=True: dropped 3 of 40 rows with missing values \(y: 1, g: 2, x: 1\)\.$"
    with pytest.warns(UserWarning, match=dropped):
        d = design("y ~ x + (1 | g)", df, dropna=True)
    assert d.n_obs == 37
    assert d.dropped == {"y": 1, "g": 2, "x": 1}
    assert list(d.data.index) == list(range(3, 40))  # the rows used, original index kept


# 3. non-numeric response; 4. infinite values ------------------------------------------------------------


def test_non_numeric_response_for_gaussian(df):
    df["y"] = df["y"].astype(str)
    with pytest.raises(
        hb.DataError,
        match=r"Response column 'y' must be numeric for the gaussian family; it has dtype .* "
        r"Convert it, e\.g\. data\['y'\] = pd\.to_numeric\(data\['y'\]\)",
    ):
        hb.fit("y ~ x + (1 | g)", df)


def test_non_binary_response_for_bernoulli(df):
    df["y"] = np.tile([0, 1, 2, 1], 10)
    with pytest.raises(hb.DataError, match=r"bernoulli family needs a 0/1 response, but column 'y' has other values"):
        design("y ~ x + (1 | g)", df, family="bernoulli")


@pytest.mark.parametrize("column", ["y", "x"])
def test_infinite_values(df, column):
    df.loc[3, column] = -np.inf
    with pytest.raises(
        hb.DataError,
        match=rf"Column '{column}' has 1 infinite value\(s\) \(e\.g\. row 3\); only finite numbers .* drop or replace",
    ):
        hb.fit("y ~ x + (1 | g)", df)


def test_transform_that_is_undefined_names_the_column(df):
    df.loc[5, "x"] = 0.0
    with pytest.raises(
        hb.DataError,
        match=r"Column 'log\(x\)' of the fixed-effect model matrix has \d+ non-finite value\(s\) .* "
        r"Transform the column in the data first",
    ):
        design("y ~ log(x) + (1 | g)", df)
    with pytest.raises(hb.DataError, match=r"Column 'I\(x \*\* 99999\)' of the fixed-effect model matrix"):
        design("y ~ I(x ** 99999) + (1 | g)", df)


# 5./6. grouping factors with one level, or one level per row ---------------------------------------------


def test_grouping_factor_with_single_level(df):
    df["g"] = "a"
    with pytest.raises(
        hb.DataError,
        match=r"Grouping factor 'g' has a single level \('a'\); a random effect needs at least 2 levels .* "
        r"Remove \(1 \| g\) from the formula\.",
    ):
        hb.fit("y ~ x + (1 | g)", df)


def test_grouping_factor_with_a_level_per_observation(df):
    df["id"] = np.arange(len(df))
    with pytest.raises(
        hb.DataError,
        match=r"Grouping factor 'id' has 40 levels for 40 observations: .* cannot be told apart from the "
        r"residual error .* Remove \(1 \| id\), or give a known residual sd",
    ):
        hb.fit("y ~ x + (1 | id)", df)


def test_a_level_per_observation_is_fine_with_known_sigma():
    schools = hb.datasets.load("eight_schools")
    d = hb.make_design(hb.group_means(y="y", sigma="sigma", group="school"), schools)
    assert d.group("school").n_levels == d.n_obs == 8


# 7. ids reused across parents; nesting paths ---------------------------------------------------------------


def test_reused_ids_warn_that_factors_are_crossed(schools):
    with pytest.warns(
        hb.NestingWarning,
        match=r"Ids of 'child' repeat across levels of 'school': 5 child ids form 20 distinct school:child pairs, "
        r"so \(1 \| school\) \+ \(1 \| child\) treats them as crossed .* write \(1 \| school/child\)",
    ):
        d = design("y ~ 1 + (1 | school) + (1 | child)", schools)
    assert d.group("child").n_levels == 5  # crossed, as written


def test_nesting_path_and_unique_ids_do_not_warn(schools):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nested = design("y ~ 1 + (1 | school/child)", schools)
        unique = design("y ~ 1 + (1 | school) + (1 | uid)", schools)
    assert nested.group("school:child").n_levels == 20
    assert nested.group("school:child").parent == "school"
    assert unique.group("uid").parent == "school"  # detected as nested in school


def test_reversed_nesting_path_is_refused(schools):
    with pytest.raises(
        hb.DataError,
        match=r"In the nesting path uid/school, 'uid:school' has exactly as many levels as 'uid': each uid holds "
        r"a single school, so the path looks reversed\. Did you mean \(school/uid\)\?",
    ):
        hb.fit("y ~ 1 + (1 | uid/school)", schools)


# 8. numeric ids are categorical, never a slope --------------------------------------------------------------


def test_numeric_grouping_column_is_categorical(schools):
    assert pd.api.types.is_integer_dtype(schools["school"])
    d = design("y ~ 1 + (1 | school)", schools)
    g = d.group("school")
    assert g.levels == ("1", "2", "3", "4")
    assert g.coef_names == ("Intercept",)
    np.testing.assert_array_equal(g.Z, np.ones((60, 1)))  # an intercept per school, no slope on the id
    np.testing.assert_array_equal(g.index, schools["school"].to_numpy() - 1)
    assert d.fixed_names == ("Intercept",)  # the id is not a fixed-effect column either
    float_ids = schools.assign(school=schools["school"] * 1.5)
    assert design("y ~ 1 + (1 | school)", float_ids).group("school").levels == ("1.5", "3.0", "4.5", "6.0")


def test_grouping_factors_are_documented_as_categorical():
    import hierbayes.design
    import hierbayes.spec.formula

    assert "always treated as categorical, also when the column is numeric" in hierbayes.spec.formula.__doc__
    assert "always categorical, also when the column holds numbers" in hierbayes.design.__doc__


# 9. formula syntax, with the position -------------------------------------------------------------------------


def caret_column(message: str) -> int:
    lines = message.splitlines()
    return lines[-1].index("^") - 2  # the formula line and the caret line are indented by two


@pytest.mark.parametrize(
    ("formula", "message", "col"),
    [
        ("y ~ x + (1 | g", r"Unbalanced parentheses: a '\(' is never closed\.", 14),
        ("y ~ x + 1 | g)", r"Unbalanced parentheses: this '\)' has no matching '\('\.", 13),
        ("y ~ x + ( | g)", r"Random term \( \| g\) has nothing before '\|'; write \(1 \| g\)\.", 8),
        ("y ~ x + (1 | )", r"Empty grouping factor after '\|': write e\.g\. \(1 \| school\)\.", 12),
        ("y ~ x + () + (1 | g)", r"Empty parentheses: write a term inside", 8),
        ("y ~ x + + z", r"Empty term: there is nothing between these operators\.", 7),
        ("y ~ x $ z + (1 | g)", r"Could not parse the term 'x \$ z': Unknown operator '\$'\. Allowed operators:", 6),
        ("y ~ x & z", r"Could not parse the term 'x & z': Unknown operator '&'\.", 6),
        ("y ~ x + (1 ||| g)", r"uses '\|\|\|'; write '\|' for correlated or '\|\|' for independent effects\.", 11),
        ("y ~ x ~ z", r"A formula needs exactly one '~'", 6),
        ("~ x", r"The formula has no response before '~'\.", 0),
        ("y ~ x + (1 | g h)", r"Grouping factor 'g h': 'g h' is not a column name", 12),
        ("y ~ x + 1 | g", r"A '\|' outside parentheses: random terms are written in parentheses", 10),
        ("y ~ x + foo(z)", r"The function 'foo' is not allowed in a formula; allowed transforms: C, I, abs", 8),
    ],
)
def test_formula_syntax_errors_show_the_position(formula, message, col):
    with pytest.raises(hb.FormulaError, match=message) as err:
        hb.parse_formula(formula)
    text = str(err.value)
    assert formula in text
    assert caret_column(text) == col
    assert "\x1b[" not in text  # no terminal colour codes from formulaic


def test_formula_must_be_a_string():
    with pytest.raises(hb.FormulaError, match=r"A formula must be a string like 'y ~ x \+ \(1 \| g\)'; received int"):
        hb.fit(3, pd.DataFrame({"y": [1.0, 2.0]}))


# 10. prior mistakes -------------------------------------------------------------------------------------------


def test_prior_B_of_the_wrong_size(df):
    priors = hb.Priors(fixed=hb.Normal(mean=0.0, cov=np.eye(3)))
    with pytest.raises(
        hb.PriorError,
        match=r"Normal prior: B is 3 x 3 but the model has 2 fixed effects \(Intercept, x\); B must be 2 x 2\.",
    ):
        hb.fit("y ~ x + (1 | g)", df, priors=priors)
    with pytest.raises(hb.PriorError, match=r"must be a square p x p matrix; received shape \(2, 3\)"):
        hb.Normal(mean=0.0, cov=np.ones((2, 3)))


def test_prior_B_not_symmetric_positive_definite():
    with pytest.raises(hb.PriorError, match=r"must be symmetric; received B with max \|B - B\.T\| = 0\.5\. Use"):
        hb.Normal(mean=0.0, cov=[[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(hb.PriorError, match=r"must be positive definite; received B with smallest eigenvalue -1\. "):
        hb.Normal(mean=0.0, cov=[[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(hb.PriorError, match=r"must hold finite numbers"):
        hb.Normal(mean=0.0, cov=[[np.inf, 0.0], [0.0, 1.0]])


def test_prior_b_of_the_wrong_length(df):
    with pytest.raises(hb.PriorError, match=r"Normal prior: b has length 3 but the model has 2 fixed effects"):
        design("y ~ x + (1 | g)", df, priors=hb.Priors(fixed=hb.Normal(mean=[0.0, 0.0, 0.0], sd=1.0)))
    with pytest.raises(hb.PriorError, match=r"Normal prior: b has length 3 but B is 2 x 2\."):
        hb.Normal(mean=[0.0, 0.0, 0.0], cov=np.eye(2))


def test_prior_negative_scales():
    with pytest.raises(hb.PriorError, match=r"HalfNormal prior: scale must be a positive number; received -1\."):
        hb.HalfNormal(scale=-1)
    with pytest.raises(hb.PriorError, match=r"HalfStudentT prior: scale must be a positive number; received 0"):
        hb.HalfStudentT(scale=0)
    with pytest.raises(hb.PriorError, match=r"Normal prior sd must be positive and finite; received -1\.0\."):
        hb.Normal(mean=0.0, sd=-1.0)
    with pytest.raises(hb.PriorError, match=r"LKJ prior: eta must be positive; received -2"):
        hb.LKJ(eta=-2)


def test_prior_unknown_distribution_and_names(df):
    with pytest.raises(
        hb.PriorError,
        match=r"group_sd: unknown prior distribution 'weibull'; allowed: exponential, flat, gamma, halfcauchy, "
        r"halfnormal",
    ):
        scale_prior_from_dict({"dist": "weibull", "scale": 1.0}, "group_sd")
    with pytest.raises(
        hb.PriorError, match=r"Priors\.fixed names coefficient 'w', which is not in the model; coefficients are: Inter"
    ):
        design("y ~ x + (1 | g)", df, priors=hb.Priors(fixed={"w": hb.Normal(mean=0.0, sd=1.0)}))
    with pytest.raises(
        hb.PriorError, match=r"Priors\.group_sd names group 'school', which is not in the model; groups are: g\."
    ):
        design("y ~ x + (1 | g)", df, priors=hb.Priors(group_sd={"school": hb.HalfNormal(scale=1.0)}))


# 11. family, link, sampler --------------------------------------------------------------------------------------


def test_unknown_family_and_link(df):
    with pytest.raises(
        hb.SpecError, match=r"Unknown family 'gama'; allowed: gaussian, bernoulli, binomial, poisson, negative_binomial"
    ):
        hb.fit("y ~ x + (1 | g)", df, family="gama")
    with pytest.raises(hb.SpecError, match=r"Unknown link 'logit' for family 'poisson'; allowed: log\."):
        hb.fit("y ~ x + (1 | g)", df, family="poisson", link="logit")


def test_unknown_sampler(df):
    with pytest.raises(hb.SpecError, match=r"Unknown sampler 'stan'; allowed: auto, nutpie, pymc, numpyro\."):
        hb.fit("y ~ x + (1 | g)", df, sampler="stan")


@pytest.mark.parametrize(
    ("sampler", "hint"),
    [
        ("numpyro", r"pip install \"hierbayes\[jax\]\" \(or pip install numpyro jax\)"),
        ("nutpie", r"pip install nutpie"),
    ],
)
def test_sampler_not_installed_gives_install_hint(df, monkeypatch, sampler, hint):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == sampler else real(name, *a))
    with pytest.raises(
        hb.SamplerNotInstalledError,
        match=rf"The '{sampler}' sampler needs the package '{sampler}', which is not installed\. "
        rf"Install it with: {hint}, or use sampler='pymc'",
    ):
        hb.fit("y ~ x + (1 | g)", df, sampler=sampler)


# 12. empty data, one row, rank-deficient X -----------------------------------------------------------------------


def test_empty_data_frame(df):
    with pytest.raises(hb.DataError, match=r"The data frame is empty \(0 rows\); nothing to fit\."):
        hb.fit("y ~ x + (1 | g)", df.iloc[:0])


def test_single_row(df):
    with pytest.raises(hb.DataError, match=r"The data have 1 usable row\(s\); a multilevel model needs more than one"):
        hb.fit("y ~ x + (1 | g)", df.iloc[:1])


def test_only_one_row_left_after_dropna(df):
    df.loc[1:, "y"] = np.nan
    with pytest.warns(UserWarning, match="dropped 39 of 40 rows"):
        with pytest.raises(hb.DataError, match=r"The data have 1 usable row\(s\)"):
            design("y ~ x + (1 | g)", df, dropna=True)


def test_constant_predictor_is_named(df):
    df["c"] = 3.0
    with pytest.raises(
        hb.DataError,
        match=r"The fixed-effect matrix is rank deficient: 'c' is constant \(collinear with the intercept\)\. "
        r"Its coefficient cannot be estimated; remove 'c' from the formula",
    ):
        hb.fit("y ~ x + c + (1 | g)", df)


def test_collinear_predictor_is_named(df):
    df["x2"] = 2 * df["x"] - 1
    with pytest.raises(hb.DataError, match=r"rank deficient: 'x2' is a linear combination of the other columns"):
        design("y ~ x + x2 + (1 | g)", df)


def test_more_columns_than_rows():
    small = pd.DataFrame({"y": [1.0, 2.0, 3.0], "a": [1.0, 0.0, 2.0], "b": [0.0, 1.0, 5.0], "c": [3.0, 1.0, 0.0]})
    with pytest.raises(hb.DataError, match=r"The fixed effects have 4 columns but there are only 3 rows"):
        hb.make_design(hb.parse_formula("y ~ a + b + c"), small)


def test_errors_subclass_value_error():
    for cls in (hb.DataError, hb.FormulaError, hb.PriorError, hb.SpecError):
        assert issubclass(cls, ValueError)
    assert issubclass(hb.SamplerNotInstalledError, ImportError)
