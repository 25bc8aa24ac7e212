import numpy as np
import pandas as pd
import pytest

import hierbayes as hb


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "x": [0.5, 1.5, 0.0, 2.0, 1.0, 3.0, 2.5, 0.2],
            "school": ["A", "A", "A", "B", "B", "B", "C", "C"],
            "child": [1, 1, 2, 1, 2, 2, 1, 1],  # ids reused across schools
        }
    )


def test_index_arrays_and_levels(frame):
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | school/child)"), frame)
    school, child = design.groups
    assert school.levels == ("A", "B", "C")
    np.testing.assert_array_equal(school.index, [0, 0, 0, 1, 1, 1, 2, 2])
    assert child.name == "school:child"
    assert child.levels == ("A:1", "A:2", "B:1", "B:2", "C:1")
    np.testing.assert_array_equal(child.index, [0, 0, 1, 2, 3, 3, 4, 4])
    assert child.parent == "school"
    np.testing.assert_array_equal(child.parent_index, [0, 0, 1, 1, 2])
    assert school.parent is None
    np.testing.assert_array_equal(school.Z, np.ones((8, 1)))
    assert design.fixed_names == ("Intercept", "x")
    np.testing.assert_array_equal(design.X[:, 1], frame["x"])
    np.testing.assert_array_equal(design.y, frame["y"])


def _levels_by_joining_text(data, factor):
    """The levels as the design made them before issue 11: each row's values as text, joined, then factorized."""
    text = data[list(factor)].astype(str)
    joined = text.iloc[:, 0].str.cat([text.iloc[:, k] for k in range(1, text.shape[1])], sep=":")
    codes, uniques = pd.factorize(joined, sort=True)
    return np.asarray(codes, dtype=np.int64), tuple(str(u) for u in uniques)


def test_group_levels_are_the_sorted_texts_of_the_values_and_paths():
    """Level labels and order as text, for ids of every kind (the index is built from the distinct values only)."""
    from types import SimpleNamespace

    from hierbayes.design import _group_index

    rng = np.random.default_rng(0)
    n = 300
    pick = lambda options: np.array([options[k] for k in rng.integers(0, len(options), n)], dtype=object)  # noqa: E731
    data = pd.DataFrame(
        {
            "int": rng.integers(-5, 30, n),  # "-1" < "10" < "2" as text
            "float": rng.integers(0, 12, n) / 4,
            "mixed": pick([1, "1", 2.0, "x", 10]),  # 1 and "1": one level
            "unicode": pick(["é", "e", "Z", "a"]),
            "colon": pick(["a", "a:b", "b"]),  # "a" + "b:c" and "a:b" + "c" join to the same text
            "cat": pd.Categorical(pick(["b", "a", "c"]), categories=["c", "b", "a"]),
            "date": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 9, n), unit="D"),
            "string": pd.array(pick(["t1", "t10", "t2"]), dtype="string"),
        }
    )
    for a in data.columns:
        for factor in [(a,), *((a, b) for b in data.columns), (a, "int", "colon")]:
            codes, levels = _group_index(data, SimpleNamespace(factor=factor))
            expected_codes, expected_levels = _levels_by_joining_text(data, factor)
            assert levels == expected_levels, factor
            np.testing.assert_array_equal(codes, expected_codes)


def test_random_slope_columns(frame):
    design = hb.make_design(hb.parse_formula("y ~ x + (x | school)"), frame)
    (g,) = design.groups
    assert g.coef_names == ("Intercept", "x")
    np.testing.assert_array_equal(g.Z, np.column_stack([np.ones(8), frame["x"]]))


def test_numeric_ids_are_categorical(frame):
    frame = frame.assign(school_id=frame["school"].map({"A": 10, "B": 2, "C": 33}))
    design = hb.make_design(hb.parse_formula("y ~ x + (1 | school_id)"), frame)
    (g,) = design.groups
    assert g.levels == ("10", "2", "33")  # sorted as labels, one level per id, never a slope
    assert g.n_levels == 3


def test_categorical_fixed_effect_uses_treatment_coding(frame):
    design = hb.make_design(hb.parse_formula("y ~ school + (1 | child)"), frame)
    assert design.fixed_names == ("Intercept", "school[T.B]", "school[T.C]")


def test_nested_data_are_detected_without_slash():
    df = pd.DataFrame(
        {"y": np.arange(8.0), "school": list("AAAABBBB"), "child": [1, 1, 2, 2, 3, 3, 4, 4]}
    )
    design = hb.make_design(hb.parse_formula("y ~ 1 + (1 | school) + (1 | child)"), df)
    child = design.group("child")
    assert child.parent == "school"
    np.testing.assert_array_equal(child.parent_index, [0, 0, 1, 1])


def test_reused_ids_without_slash_warn(frame):
    with pytest.warns(hb.NestingWarning, match=r"\(1 \| school/child\)"):
        hb.make_design(hb.parse_formula("y ~ x + (1 | school) + (1 | child)"), frame)


def test_achievement_design_sizes():
    df = hb.datasets.load("achievement")
    design = hb.make_design(
        hb.parse_formula("math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school/child)"),
        df,
    )
    assert design.n_obs == 7230
    assert [g.n_levels for g in design.groups] == [60, 1721]
    assert design.groups[1].parent == "school"


def test_bundled_datasets_load():
    assert set(hb.datasets.available()) >= {"achievement", "guatemalan", "sleepstudy", "eight_schools"}
    assert hb.datasets.load("guatemalan").shape == (2159, 10)
    assert hb.datasets.load("eight_schools").shape == (8, 3)
