r"""A PyMC model whose free variables match a fit's posterior, for PyMC's own tools.

A collapsed fit (:mod:`hierbayes.inference.collapsed.build`) samples a model in which the random
effects are integrated out, and stores exact draws of :math:`u_k` afterwards. Rebuilding the
full model with :func:`hierbayes.build_model` and handing it ``fit.idata`` would make
``pm.sample_posterior_predictive`` *redraw* the random effects from their prior, because the
full model's free variables are the standardised effects :math:`z_k` (``u_k = z_k L_k^\top``),
which the collapsed posterior does not hold.

:func:`pymc_model` returns the full model of the fit's design together with a posterior that
holds every free variable of that model, derived exactly from the stored draws:

.. math::

    \tilde\beta = A^{-1}\beta, \qquad
    z_{kj} = L_k^{-1} u_{kj} \ (\text{full covariance}), \qquad
    z_{kj} = u_{kj} / \mathrm{sd}_k \ (\text{diagonal}),

with :math:`A` the fixed-effect scaling of :func:`hierbayes.inference.build.fixed_scaling` and
:math:`L_k = \mathrm{diag}(\mathrm{sd}_k)\,\mathrm{chol}(R_k)`. Then

>>> model, idata = hb.pymc_model(fit)  # doctest: +SKIP
>>> with model:  # doctest: +SKIP
...     pp = pm.sample_posterior_predictive(idata, var_names=["y"])  # "Sampling: [y]"

replicates ``y`` conditional on the posterior random effects, as for a full fit.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import xarray as xr

from hierbayes.inference.build import build_model, fixed_scaling
from hierbayes.inference.collapsed.build import random_effect_draws
from hierbayes.inference.posterior import group_sd_draws
from hierbayes.inference.result import Fit
from hierbayes.spec import names

__all__ = ["add_log_prior", "pymc_model"]


def _posterior_with_effects(fit: Fit) -> xr.Dataset:
    post = fit.posterior
    missing = [names.u(g.name) for g in fit.design.groups if names.u(g.name) not in post]
    if missing:  # a collapsed fit made with store_random_effects=False: draw them now
        post = post.merge(random_effect_draws(fit.design, post, random_seed=fit.settings.get("random_seed")))
    return post


def _free_variable_draws(fit: Fit, model: pm.Model, post: xr.Dataset) -> xr.Dataset:
    """Draws of every free variable of ``model`` (the full model of the fit's design)."""
    design = fit.design
    out = post.copy()
    if names.BETA in post and names.BETA_STD not in post:
        A_inv = np.linalg.inv(fixed_scaling(design).A)
        beta = post[names.BETA].transpose("chain", "draw", "coef")
        out[names.BETA_STD] = beta.copy(data=np.einsum("kl,cdl->cdk", A_inv, beta.values))
    for g in design.groups:
        name, cdim = g.name, g.coef_dim
        if names.z(name) in post or g.term.centered:
            continue
        u = post[names.u(name)].transpose("chain", "draw", name, cdim).values
        sd = group_sd_draws(post, g).values
        corr_chol_name = names.corr_chol(name)
        if corr_chol_name in model.named_vars:
            if corr_chol_name not in post:
                corr = post[names.corr(name)].transpose("chain", "draw", cdim, f"{cdim}_").values
                chol = np.linalg.cholesky(corr)
                out[corr_chol_name] = (("chain", "draw", f"{corr_chol_name}_dim_0", f"{corr_chol_name}_dim_1"), chol)
            else:
                chol = np.asarray(post[corr_chol_name].values)
            L = sd[..., :, None] * chol  # (c, d, q, q)
            # u_j = L z_j  =>  z_j = L^{-1} u_j, for all levels j at once
            z = np.swapaxes(np.linalg.solve(L, np.swapaxes(u, -1, -2)), -1, -2)
        else:
            z = u / sd[:, :, None, :]
        out[names.z(name)] = post[names.u(name)].transpose("chain", "draw", name, cdim).copy(data=z)
    return out


def pymc_model(fit: Fit) -> tuple[pm.Model, xr.DataTree]:
    r"""The fit's full PyMC model and a posterior holding all of its free variables.

    Use it to run PyMC's own tools (``pm.sample_posterior_predictive``, ``pm.compute_log_likelihood``,
    ``pm.do``/``pm.observe``) on a hierbayes fit, collapsed or not; see the module docstring for
    how the free variables are derived from the stored draws.

    Parameters
    ----------
    fit
        A fitted model (``method="full"`` or ``"collapsed"``; also one loaded from a file).

    Returns
    -------
    tuple of (pymc.Model, xarray.DataTree)
        The model built by :func:`hierbayes.build_model` from ``fit.design`` (non-centred,
        observed ``y``), and a DataTree whose ``posterior`` has draws of every free variable of
        that model (``beta_std``, ``sd_<g>``, ``corr_chol_<g>``, ``z_<g>``, ``sigma`` or
        ``alpha``) next to the fit's own variables, and ``observed_data``. The model is cached
        on the fit (not saved to disk; rebuilt after :func:`hierbayes.load`).

    Examples
    --------
    >>> model, idata = hb.pymc_model(fit)  # doctest: +SKIP
    >>> with model:  # doctest: +SKIP
    ...     pp = pm.sample_posterior_predictive(idata, var_names=["y"], random_seed=1)
    """
    model = fit.__dict__.get("_pymc_model")
    if model is None:
        model = build_model(fit.design)
        fit.__dict__["_pymc_model"] = model
    post = _free_variable_draws(fit, model, _posterior_with_effects(fit))
    free = [rv.name for rv in model.free_RVs]
    absent = [name for name in free if name not in post]
    if absent:  # pragma: no cover - every parametrisation hierbayes builds is covered above
        raise ValueError(f"Could not derive draws of the model's free variables {absent} from this fit.")
    groups = {"posterior": post}
    if "observed_data" in fit.idata.children:
        groups["observed_data"] = fit.idata["observed_data"].to_dataset()
    return model, xr.DataTree.from_dict(groups)


def add_log_prior(fit: Fit) -> Fit:
    r"""Add the log prior density of every posterior draw to ``fit.idata`` (group ``log_prior``).

    For prior sensitivity analysis by power-scaling (``arviz_stats.psense`` and
    ``psense_summary``, Kallioinen et al. 2023), which also needs the ``log_likelihood`` group
    (:func:`hierbayes.add_log_likelihood`). One variable per top-level prior, dims
    ``(chain, draw)``: :math:`\log p(\tilde\beta)` (``beta_std``; the normal prior of the
    fixed effects on the sampler's standardised scale, the same density up to a constant as
    that of :math:`\beta`), :math:`\log p(\mathrm{sd}_k)`, :math:`\log p(R_k)` (LKJ, as its
    Cholesky factor ``corr_chol_<g>``) and :math:`\log p(\sigma)` or :math:`\log p(\alpha)`,
    evaluated on the parameters' own (constrained) scale, without Jacobian. The standardised
    random effects :math:`z_k \sim N(0, I)` are the model's structure, not a prior choice, and
    are left out (as priorsense recommends for hierarchical models).

    Parameters
    ----------
    fit
        A fitted model; changed in place (an existing ``log_prior`` group is replaced).

    Returns
    -------
    Fit
        The same fit, for chaining.

    Examples
    --------
    >>> hb.add_log_likelihood(fit); hb.add_log_prior(fit)  # doctest: +SKIP
    >>> arviz_stats.psense_summary(fit.idata, var_names=["beta", "sd_Subject"])  # doctest: +SKIP
    """
    from pymc.model.transform.conditioning import remove_value_transforms

    model, tree = pymc_model(fit)
    plain = remove_value_transforms(model)
    priors = [rv for rv in plain.free_RVs if not rv.name.startswith("z_")]
    if not priors:
        raise ValueError("This model has no top-level priors to scale.")
    logp = plain.compile_logp(vars=priors, sum=False, jacobian=False)
    post = tree["posterior"]
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    S = chains * draws
    values = {
        plain.rvs_to_values[rv].name: np.asarray(post[rv.name].values).reshape(S, *post[rv.name].shape[2:])
        for rv in plain.free_RVs
    }
    out = np.empty((S, len(priors)))
    for s in range(S):
        terms = logp({name: v[s] for name, v in values.items()})
        out[s] = [float(np.sum(t)) for t in terms]
    coords = {"chain": post.coords["chain"].values, "draw": post.coords["draw"].values}
    ds = xr.Dataset(
        {rv.name: (("chain", "draw"), out[:, k].reshape(chains, draws)) for k, rv in enumerate(priors)},
        coords=coords,
    )
    fit.idata["log_prior"] = xr.DataTree(ds)
    return fit
