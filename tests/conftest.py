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
    return _quiet_fit(ACHIEVEMENT_3LEVEL, achievement, chains=4, draws=1000, tune=1000, random_seed=1, method="full")


@pytest.fixture(scope="session")
def sleepstudy_fit():
    df = hb.datasets.load("sleepstudy")
    return _quiet_fit(
        "Reaction ~ Days + (Days | Subject)", df, chains=4, draws=1000, tune=1000, random_seed=1, method="full",
        target_accept=0.9,  # the full non-centred model: a smaller step avoids the odd divergence
    )


@pytest.fixture(scope="session")
def eight_schools_fit():
    df = hb.datasets.load("eight_schools")
    spec = hb.group_means(y="y", sigma="sigma", group="school")
    # non-centred: at target_accept 0.95 numpyro gave 1 divergence in 8,000 draws
    return _quiet_fit(spec, df, chains=4, draws=2000, tune=1000, random_seed=1, target_accept=0.99)


def _synthetic_fit(formula, data, values, *, family="gaussian", link=None, chains=1, draws=3):
    """A Fit whose posterior is given, not sampled: for summaries with exactly known answers.

    ``values`` maps posterior variable names (``beta``, ``sigma``, ``alpha``, ``sd_<g>``,
    ``corr_<g>``, ``u_<g>``) to arrays of the variable's own shape (repeated for every draw) or
    with leading ``(chain, draw)`` dims. Shapes follow hierbayes.inference.build: ``beta`` (coef,),
    ``sd_<g>`` (<g>__coef,), ``corr_<g>`` (q, q), ``u_<g>`` (levels, q). A term with one
    coefficient stores ``sd_<g>`` as a scalar per draw; its value may be given as a scalar or
    with the length-1 coefficient axis (``[1.0]``), which is then dropped.
    """
    import numpy as np
    import xarray as xr

    spec = hb.parse_formula(formula, family=family, link=link)
    design = hb.make_design(spec, data)
    dims: dict[str, tuple[str, ...]] = {"beta": ("coef",), "sigma": (), "alpha": ()}
    coords: dict[str, object] = {"chain": np.arange(chains), "draw": np.arange(draws), "coef": list(design.fixed_names)}
    for g in design.groups:
        dims[f"sd_{g.name}"] = (g.coef_dim,) if len(g.coef_names) > 1 else ()
        dims[f"corr_{g.name}"] = (g.coef_dim, f"{g.coef_dim}_")
        dims[f"u_{g.name}"] = (g.name, g.coef_dim)
        coords[g.name] = list(g.levels)
        coords[g.coef_dim] = list(g.coef_names)
        coords[f"{g.coef_dim}_"] = list(g.coef_names)
    data_vars = {}
    for name, value in values.items():
        value = np.asarray(value, dtype=float)
        d = dims[name]
        if name.startswith("sd_") and not d and value.ndim in (1, 3) and value.shape[-1] == 1:
            value = value[..., 0]  # one coefficient: the scalar sd
        if value.ndim == len(d):
            value = np.broadcast_to(value, (chains, draws, *value.shape))
        data_vars[name] = (("chain", "draw", *d), np.array(value))
    used = {dim for d, _ in data_vars.values() for dim in d}
    ds = xr.Dataset(data_vars, coords={k: v for k, v in coords.items() if k in used})
    return hb.Fit(spec=spec, design=design, idata=xr.DataTree.from_dict({"posterior": ds}))


@pytest.fixture(scope="session")
def synthetic_fit():
    """Factory ``synthetic_fit(formula, data, values, family=, link=, chains=, draws=)`` (see _synthetic_fit)."""
    return _synthetic_fit


GUATEMALAN = (
    "immun ~ kid2p + momEdPri + momEdSec + husEdPri + husEdSec + rural + pcInd81 + (1 | cluster/mom)"
)


@pytest.fixture(scope="session")
def guatemalan_fit():
    """Three-level logistic model of child immunisation, 4 chains x 1000 draws, non-centred.

    target_accept=0.9 (as models/guatemalan.toml): the mother-level sd, with ~1.35 children per
    mother, mixes slowly; at 0.8 its bulk ESS was 266 (R-hat 1.016), at 0.9 390 (1.0095), same cost.
    """
    df = hb.datasets.load("guatemalan")
    return _quiet_fit(
        GUATEMALAN, df, family="bernoulli", chains=4, draws=1000, tune=1000, random_seed=1, target_accept=0.9,
        method="full",
    )  # fmt: skip


@pytest.fixture(scope="session")
def guatemalan_quadrature_fit():
    """The Guatemalan model with the mothers' intercepts integrated out (method="quadrature"), 4 x 1000 draws.

    nutpie: the quadrature gradient is ~3x cheaper under numba than under JAX (hierbayes.inference.quadrature).
    """
    df = hb.datasets.load("guatemalan")
    return _quiet_fit(
        GUATEMALAN, df, family="bernoulli", chains=4, draws=1000, tune=1000, random_seed=2, method="quadrature",
        sampler="nutpie",
    )  # fmt: skip


@pytest.fixture(scope="session")
def achievement_collapsed_fit(achievement):
    """The three-level achievement model fitted by the collapsed sampler, 4 chains x 1000 draws."""
    return _quiet_fit(
        ACHIEVEMENT_3LEVEL, achievement, chains=4, draws=1000, tune=1000, random_seed=1, method="collapsed"
    )


@pytest.fixture(scope="session")
def sleepstudy_collapsed_fit():
    """Sleepstudy random intercept and slope by the collapsed sampler, 4 chains x 1000 draws."""
    df = hb.datasets.load("sleepstudy")
    return _quiet_fit(
        "Reaction ~ Days + (Days | Subject)", df, chains=4, draws=1000, tune=1000, random_seed=1, method="collapsed"
    )


@pytest.fixture(scope="session")
def tiny_nested_fit(achievement):
    """A small real fit for save/load, report and CLI tests: 8 schools, ``(1 | school/child)``.

    School ids are strings (a string column must survive saving), the names ``sd_school:child``
    and the dim ``school:child`` contain ':'; 2 chains x 100 draws (diagnostics will complain).
    method="full" (11 s here, mostly compilation; the collapsed sampler's compilation takes 19 s).
    """
    df = achievement[achievement["school"].isin(sorted(achievement["school"].unique())[:8])].copy()
    df["school"] = ("s" + df["school"].astype(str)).astype("str")
    return _quiet_fit(
        "math ~ year + female + (1 | school/child)", df, chains=2, draws=100, tune=100, random_seed=3, method="full"
    )
