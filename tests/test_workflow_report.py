"""New report pieces (issue 13), on synthetic posteriors: ratios, fit quality, captions, large factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.report.page import _conditional_section, _fit_quality_section, _pooling_caption, _ratios_section


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 10)
    x = rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x": x, "y": rng.integers(0, 2, g.size), "cnt": rng.poisson(2.0, g.size),
                         "yg": x + rng.normal(size=g.size)})


def _vals(rng, draws=200):
    return {"beta": rng.normal([0.1, 0.5], 0.05, (1, draws, 2)), "u_g": rng.normal(0, 0.1, (1, draws, 8, 1)),
            "sd_g": [0.5]}


def test_ratios_section_for_logit_and_log_links(synthetic_fit, frame):
    rng = np.random.default_rng(1)
    logit = synthetic_fit("y ~ x + (1 | g)", frame, _vals(rng), family="bernoulli", draws=200)
    html = _ratios_section(logit)
    assert 'id="ratios"' in html and "baseline odds" in html and "odds ratio" in html
    pois = synthetic_fit("cnt ~ x + (1 | g)", frame, _vals(rng), family="poisson", draws=200)
    assert "baseline rate" in _ratios_section(pois)
    gauss = synthetic_fit("yg ~ x + (1 | g)", frame, _vals(rng) | {"sigma": 1.0}, draws=200)
    assert _ratios_section(gauss) == ""


def test_fit_quality_and_conditional_sections(synthetic_fit, frame):
    rng = np.random.default_rng(2)
    fit = synthetic_fit("y ~ x + (1 | g)", frame, _vals(rng), family="bernoulli", draws=200)
    html = _fit_quality_section(fit, fit, "")
    for ident in ("loo", "pareto-k", "bayes-r2"):
        assert f'<table id="{ident}">' in html
    assert "Pareto" in html and "conditional" in html and "marginal" in html
    assert "data:image/png;base64," in _conditional_section(fit)


def test_pooling_caption_says_one_value_once():
    assert _pooling_caption(np.array([0.25, 0.25, 0.25])).startswith("pooling factor 0.25 for every level")
    assert "from" in _pooling_caption(np.array([0.1, 0.5, 0.9]))


def test_caterpillar_of_a_large_factor_shows_extremes_and_a_histogram(synthetic_fit):
    rng = np.random.default_rng(3)
    n = 1595
    df = pd.DataFrame({"m": np.repeat(np.arange(n), 2), "y": rng.normal(size=2 * n)})
    vals = {"beta": [0.0], "u_m": rng.normal(size=(1, 5, n, 1)), "sd_m": [1.0], "sigma": 1.0}
    fit = synthetic_fit("y ~ 1 + (1 | m)", df, vals, draws=5)
    fig = hb.plot_caterpillar(fit, "m", extremes=15)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].get_yticklabels()) == 30
    assert "1595" in fig.axes[1].get_title()


def test_result_objects_show_concisely_in_jupyter(synthetic_fit, frame):
    rng = np.random.default_rng(4)
    fit = synthetic_fit("y ~ x + (1 | g)", frame, _vals(rng), family="bernoulli", draws=200)
    fit.settings.update({"method": "full", "random_seed": 1})
    objects = [
        hb.summary(fit),
        hb.variance_partition(fit),
        hb.contrast(fit, "x - Intercept"),
        hb.population_averaged(fit, {"x": [0.0, 1.0]}, coef="x", n_draws=10, random_seed=1),
        fit,
    ]
    for obj in objects:
        text, page = repr(obj), obj._repr_html_()
        assert len(text) < 5_000 and len(page) < 20_000, type(obj).__name__
        assert "array(" not in text and "DataArray" not in text and "Dataset" not in text
        assert page.startswith("<div>")
    assert "posterior" in fit._repr_html_()
