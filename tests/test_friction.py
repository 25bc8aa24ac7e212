"""Day-to-day friction: warnings that fire only when they mean something."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.inference.fit import _no_blas_warning, _no_creation_traces


def crossed_frame(reps: int) -> pd.DataFrame:
    """Every subject sees every item ``reps`` times (item ids are shared by all subjects, as they should be)."""
    rng = np.random.default_rng(0)
    rows = [(s, i) for s in range(6) for i in range(5) for _ in range(reps)]
    df = pd.DataFrame(rows, columns=["subject", "item"])
    df["y"] = rng.normal(size=len(df))
    return df


def test_crossed_design_with_one_row_per_pair_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", hb.NestingWarning)
        design = hb.make_design(hb.parse_formula("y ~ 1 + (1 | subject) + (1 | item)"), crossed_frame(1))
    assert [g.n_levels for g in design.groups] == [6, 5]


def test_replicated_pairs_warn_unless_declared_crossed():
    spec = hb.parse_formula("y ~ 1 + (1 | subject) + (1 | item)")
    with pytest.warns(hb.NestingWarning, match=r"crossed=True"):
        hb.make_design(spec, crossed_frame(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", hb.NestingWarning)
        design = hb.make_design(spec, crossed_frame(2), crossed=True)
    assert design.group("item").parent is None


def test_blas_warning_is_silenced_only_inside():
    message = "PyTensor could not link to a BLAS installation. Operations that might benefit from BLAS ..."
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _no_blas_warning():
            warnings.warn(message, UserWarning, stacklevel=1)
        with pytest.raises(UserWarning, match="BLAS"):
            warnings.warn(message, UserWarning, stacklevel=1)


def test_graphs_are_built_without_creation_traces_unless_the_user_set_a_limit():
    import pytensor
    import pytensor.tensor as pt

    assert pytensor.config.traceback__limit == 8  # PyTensor's default
    with _no_creation_traces():
        assert pytensor.config.traceback__limit == 0
        assert not (pt.vector("x") + 1).tag.trace
    assert pytensor.config.traceback__limit == 8 and (pt.vector("x") + 1).tag.trace
    with pytensor.config.change_flags(traceback__limit=20), _no_creation_traces():
        assert pytensor.config.traceback__limit == 20  # the user's choice stands


def test_summary_columns_share_one_fixed_format(synthetic_fit):
    df = pd.DataFrame({"y": np.arange(12.0), "x": np.linspace(0, 1, 12), "z": np.arange(12.0) % 5, "g": [1, 2, 3] * 4})
    rng = np.random.default_rng(1)
    beta = np.array([0.04528, 5.116e-4, -1.25]) + rng.normal(0, [0.01, 1e-4, 0.1], size=(1, 200, 3))
    beta -= beta.mean(axis=1) - [0.04528, 5.116e-4, -1.25]  # exact posterior means
    values = {"beta": beta, "sd_g": [0.5], "sigma": 1.0}
    text = str(hb.summary(synthetic_fit("y ~ x + z + (1 | g)", df, values, draws=200)))
    fixed = text.split("Fixed effects:")[1].split("\n\n")[0]
    assert "e-0" not in fixed and "e+0" not in fixed
    means = [line.split()[1] for line in fixed.strip().splitlines()[1:]]
    assert means == ["0.045280", "0.000512", "-1.250000"]


def test_progress_display_is_plain_outside_a_terminal(monkeypatch):
    import sys

    from hierbayes.inference.fit import _progress_display

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert _progress_display(True) is False  # pytest captures stderr: not a terminal
    assert _progress_display(False) is False
    assert _progress_display("split+stats") == "split+stats"
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules["pytest"])  # as in Jupyter
    assert _progress_display(True) == "combined"
