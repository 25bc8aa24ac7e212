"""Shared fixtures: real fits are made once per test session and reused by every test file."""

from __future__ import annotations

import warnings

import pytest

import hierbayes as hb

ACHIEVEMENT_3LEVEL = (
    "math ~ year + retained + female + black + hispanic + size + lowinc + (1 | school) + (1 | child)"
)


def _quiet_fit(*args, **kwargs):
    """Fit with progress bars off; convergence warnings are checked by the tests themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hb.ConvergenceWarning)
        return hb.fit(*args, progressbar=False, **kwargs)


@pytest.fixture(scope="session")
def achievement():
    return hb.datasets.load("achievement")


@pytest.fixture(scope="session")
def achievement_fit(achievement):
    """Three-level achievement model, 4 chains x 1000 draws (the issue's acceptance setting)."""
    return _quiet_fit(ACHIEVEMENT_3LEVEL, achievement, chains=4, draws=1000, tune=1000, random_seed=1)


@pytest.fixture(scope="session")
def sleepstudy_fit():
    df = hb.datasets.load("sleepstudy")
    return _quiet_fit("Reaction ~ Days + (Days | Subject)", df, chains=4, draws=1000, tune=1000, random_seed=1)


@pytest.fixture(scope="session")
def eight_schools_fit():
    df = hb.datasets.load("eight_schools")
    spec = hb.group_means(y="y", sigma="sigma", group="school")
    return _quiet_fit(spec, df, chains=4, draws=2000, tune=1000, random_seed=1, target_accept=0.95)
