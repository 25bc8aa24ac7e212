"""Shrinkage arrow plot and caterpillar plot: figures with the expected artists, no warnings."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

import hierbayes as hb


@pytest.fixture(scope="module")
def one_factor(synthetic_fit):
    g = np.repeat(["a", "b", "c", "d"], [2, 3, 5, 8])
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"g": g, "y": rng.normal(size=g.size)})
    draws = rng.normal(scale=0.5, size=(2, 30, 4, 1))
    values = {"beta": [0.2], "sd_g": [1.0], "sigma": 1.0, "u_g": draws}
    return synthetic_fit("y ~ 1 + (1 | g)", data, values, chains=2, draws=30)


def test_plot_shrinkage_artists(one_factor):
    fig = hb.plot_shrinkage(one_factor, "g")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 4  # one per level
    assert len([c for c in ax.collections if isinstance(c, PathCollection)]) == 2
    assert len(ax.lines) == 1  # the complete-pooling line
    assert ax.get_xscale() == "log"  # x = group size by default when sizes differ
    table = hb.shrinkage(one_factor, "g")
    assert ax.lines[0].get_ydata()[0] == pytest.approx(table["complete_pooling"].iloc[0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "no pooling",
        "partial pooling (posterior mean)",
        "complete pooling",
    ]


def test_plot_shrinkage_from_table_by_rank(one_factor):
    table = hb.shrinkage(one_factor, "g")
    fig = hb.plot_shrinkage(table, x="rank")
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == ["a", "b", "c", "d"]
    fig.canvas.draw()  # renders without warnings
    with pytest.raises(ValueError, match="x must be"):
        hb.plot_shrinkage(table, x="size")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group="):
        hb.plot_shrinkage(one_factor)


def test_plot_caterpillar_artists_and_order(one_factor):
    fig = hb.plot_caterpillar(one_factor, "g")
    ax = fig.axes[0]
    segments = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(segments) == 1 and len(segments[0].get_segments()) == 4
    assert len(ax.lines) == 2  # posterior means, reference line at 0
    means = ax.lines[0].get_xdata()
    assert np.all(np.diff(means) >= 0)  # sorted
    effects = hb.group_effects(one_factor, "g").sort_values("mean")
    assert [t.get_text() for t in ax.get_yticklabels()] == list(effects.index)
    np.testing.assert_allclose(means, effects["mean"])
    fig.canvas.draw()


def test_plot_caterpillar_into_given_axes_and_many_levels(synthetic_fit):
    g = np.repeat([f"L{i:02d}" for i in range(60)], 2)
    data = pd.DataFrame({"g": g, "y": np.arange(g.size, dtype=float)})
    u = np.random.default_rng(1).normal(size=(1, 5, 60, 1))
    fit = synthetic_fit("y ~ 1 + (1 | g)", data, {"beta": [1.0], "sd_g": [1.0], "sigma": 1.0, "u_g": u}, draws=5)
    fig = Figure()
    ax = fig.add_subplot()
    out = hb.plot_caterpillar(fit, "g", total=True, ax=ax)
    assert out is fig
    assert ax.get_yticks().size == 0  # too many levels to label
    assert "60 levels" in ax.get_ylabel()
    assert ax.lines[1].get_xdata()[0] == pytest.approx(1.0 + u.mean(axis=(0, 1)).mean())
