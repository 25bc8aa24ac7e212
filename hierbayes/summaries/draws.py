"""Posterior draws a summary needs but a fit may not store: thinned fits and random effects."""

from __future__ import annotations

import dataclasses

import xarray as xr

from hierbayes.inference.collapsed.build import random_effect_draws
from hierbayes.inference.result import Fit
from hierbayes.spec import names

__all__ = ["thinned", "with_random_effects"]


def thinned(fit: Fit, n_draws: int) -> Fit:
    """The fit with about ``n_draws`` posterior draws, evenly spaced within each chain."""
    post = fit.posterior
    step = max(1, -(-(post.sizes["chain"] * post.sizes["draw"]) // n_draws))
    if step == 1:
        return fit
    tree = xr.DataTree.from_dict({"posterior": post.isel(draw=slice(None, None, step))})
    return dataclasses.replace(fit, idata=tree)


def with_random_effects(fit: Fit, max_draws: int, *, random_seed: int | None = None) -> tuple[Fit | None, str]:
    """A fit whose posterior holds every ``u_<g>``, and a note when they had to be drawn here.

    A collapsed fit saved without its random effects (``store_random_effects=False``) gets exact
    conditional draws for at most ``max_draws`` evenly spaced posterior draws. ``(None, note)``
    when the draws are missing and cannot be made (a full-model fit without them).
    """
    post = fit.posterior
    missing = [g.name for g in fit.design.groups if names.u(g.name) not in post]
    if not missing:
        return fit, ""
    if fit.settings.get("method") != "collapsed":
        return None, f"The posterior has no draws of the random effects of {', '.join(missing)}."
    sub = thinned(fit, max_draws).posterior
    effects = random_effect_draws(fit.design, sub, random_seed=random_seed)
    tree = xr.DataTree.from_dict({"posterior": sub.merge(effects)})
    note = (
        f"The fit was saved without its random effects; they were drawn here (exactly, given the "
        f"parameters) for {sub.sizes['chain'] * sub.sizes['draw']} evenly spaced posterior draws."
    )
    return dataclasses.replace(fit, idata=tree), note
