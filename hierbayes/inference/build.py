r"""Build the PyMC model of a design: the only module that creates PyMC graphs.

The model, in the notation of :mod:`hierbayes.spec` and :mod:`hierbayes.spec.priors`:

.. math::

    \eta_i = x_i^\top \beta + \sum_k z_{ik}^\top u_{k, j_k[i]} + o_i, \qquad
    \beta \sim N(b, B), \qquad u_{kj} \sim N(0, \Omega_k),

with the family's likelihood on :math:`g^{-1}(\eta_i)`.

Parametrisation
---------------
* **Fixed effects are sampled on a standardised scale.** With an intercept, each other column
  is centred and scaled, :math:`\tilde x_k = (x_k - c_k)/s_k`; the sampler explores
  :math:`\tilde\beta` (``beta_std``) and the model reports :math:`\beta = A\tilde\beta`
  (``beta``, dim ``coef``) exactly on the data's scale, where :math:`A_{kk} = 1/s_k` and
  :math:`A_{0k} = -c_k/s_k`. The prior :math:`N(b, B)` is mapped exactly:
  :math:`\tilde\beta \sim N(A^{-1}b, A^{-1}BA^{-\top})`.
* **Random effects are non-centred by default**: :math:`u_{kj} = L_k z_{kj}`,
  :math:`z_{kj} \sim N(0, I)`, with :math:`L_k` the Cholesky factor of :math:`\Omega_k`
  (``diag(sd)`` for diagonal terms). A term with ``centered=True`` samples
  :math:`u_{kj} \sim N(0, \Omega_k)` directly.

Variable names (declared here once): ``beta_std``, ``beta`` (dim ``coef``), ``sigma``,
``sd_<g>`` (dim ``<g>__coef``; a scalar for a term with one coefficient such as ``(1 | g)``,
read both forms with :func:`hierbayes.inference.posterior.group_sd_draws`), ``corr_chol_<g>``
(Cholesky factor of the correlation, LKJ prior) and ``corr_<g>`` (full covariance), ``z_<g>`` and
``u_<g>`` (dims ``(<g>, <g>__coef)``), ``alpha`` (negative binomial), and the observed ``y``.
No per-observation deterministic is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.design import Design, GroupDesign
from hierbayes.families import Observed, get_family, scale_rv
from hierbayes.families._base import pymc_distribution
from hierbayes.inference.priors import ResolvedPriors, resolve_priors
from hierbayes.spec import names

__all__ = [
    "FixedScaling",
    "build_model",
    "covariance_factor",
    "fixed_effects",
    "fixed_scaling",
    "model_coords",
    "rescaled_effects",
    "residual_sd",
    "var_names",
]


@dataclass(frozen=True)
class FixedScaling:
    """The exact linear map between sampled and reported fixed effects, ``beta = A @ beta_std``."""

    center: np.ndarray
    scale: np.ndarray
    A: np.ndarray

    def standardise(self, X: np.ndarray) -> np.ndarray:
        """Return the standardised model matrix."""
        return (X - self.center) / self.scale


def fixed_scaling(design: Design) -> FixedScaling:
    """Centre (when there is an intercept) and scale the fixed-effect columns.

    The intercept column and constant columns are left as they are.
    """
    X = design.X
    p = X.shape[1]
    icol = design.intercept_index
    center = np.zeros(p)
    scale = np.ones(p)
    stats = design.statistics  # all rows of a sampled (Dask) design
    if stats is not None:  # a tiny sd from rounding in the sums is a constant column
        means = stats.means[1 : 1 + p]
        sds = np.where(stats.sd()[1 : 1 + p] > 1e-12 * (1.0 + np.abs(means)), stats.sd()[1 : 1 + p], 0.0)
    else:
        means, sds = None, np.array([np.std(X[:, k]) for k in range(p)])
    for k in range(p):
        if k == icol:
            continue
        sd = float(sds[k])
        if sd > 0:
            scale[k] = sd
            if icol is not None:
                center[k] = float(np.mean(X[:, k])) if means is None else float(means[k])
    A = np.diag(1.0 / scale)
    if icol is not None:
        A[icol, :] -= center / scale
        A[icol, icol] = 1.0
    return FixedScaling(center=center, scale=scale, A=A)


def var_names(design: Design) -> dict[str, list[str]]:
    """Names of the model's variables by role: ``fixed``, ``sd``, ``corr``, ``u``, ``other``."""
    out: dict[str, list[str]] = {"fixed": [names.BETA], "sd": [], "corr": [], "u": [], "other": []}
    for g in design.groups:
        out["sd"].append(names.sd(g.name))
        if _is_full(g):
            out["corr"].append(names.corr(g.name))
        out["u"].append(names.u(g.name))
    family = get_family(design.spec.family)
    out["other"].extend(family.parameters(known_sigma=design.known_sigma is not None))
    return out


def _is_full(g: GroupDesign) -> bool:
    return g.term.covariance == "full" and len(g.coef_names) > 1


def covariance_factor(g: GroupDesign, priors: ResolvedPriors) -> tuple[pt.TensorVariable, bool]:
    r"""Declare the sds (and LKJ correlations) of one group; return ``(factor, full)``.

    ``factor`` is the Cholesky factor :math:`L` of :math:`\Omega` (``full=True``, ``(q, q)``)
    or the vector of sds (``full=False``, ``(q,)``, diagonal :math:`\Omega`). Shared by the
    full and the collapsed model (:mod:`hierbayes.inference.collapsed.build`).

    With one coefficient (``(1 | g)``) ``sd_<g>`` is a scalar variable (no ``<g>__coef`` dim, so
    ArviZ shows ``sd_g``, not ``sd_g[Intercept]``); the returned factor is still a vector ``(1,)``.
    """
    name, cdim = g.name, g.coef_dim
    if len(g.coef_names) == 1:
        return pt.reshape(scale_rv(names.sd(name), priors.group_sd[name], None), (1,)), False
    sd = scale_rv(names.sd(name), priors.group_sd[name], cdim)
    if _is_full(g):
        q = len(g.coef_names)
        corr_chol = pm.LKJCorr(names.corr_chol(name), n=q, eta=priors.lkj_eta)
        pm.Deterministic(names.corr(name), pt.dot(corr_chol, corr_chol.T), dims=(cdim, f"{cdim}_"))
        return sd[:, None] * corr_chol, True
    return sd, False


def model_coords(design: Design, *, obs: bool = True) -> dict[str, tuple[str, ...]]:
    """Named dims of the model: ``coef``, ``obs`` (unless ``obs=False``), per group its levels and ``<g>__coef``."""
    coords: dict[str, tuple[str, ...]] = {"coef": design.fixed_names}
    if obs:
        coords["obs"] = tuple(map(str, range(design.n_obs)))
    for g in design.groups:
        coords[g.name] = g.levels
        coords[g.coef_dim] = g.coef_names
        if _is_full(g):
            coords[f"{g.coef_dim}_"] = g.coef_names
    return coords


def fixed_effects(design: Design, priors: ResolvedPriors, scaling: FixedScaling) -> pt.TensorVariable | None:
    """Declare ``beta_std`` (standardised scale) and the reported ``beta``; ``None`` without columns."""
    if design.X.shape[1] == 0:
        return None
    if priors.fixed_other:
        return _fixed_effects_other(design, priors, scaling)
    A_inv = np.linalg.inv(scaling.A)
    mean_std = A_inv @ priors.b
    cov_std = A_inv @ priors.B @ A_inv.T
    if np.allclose(cov_std, np.diag(np.diag(cov_std))):
        beta_std = pm.Normal(names.BETA_STD, mu=mean_std, sigma=np.sqrt(np.diag(cov_std)), dims="coef")
    else:
        chol = np.linalg.cholesky((cov_std + cov_std.T) / 2)
        beta_std = pm.MvNormal(names.BETA_STD, mu=mean_std, chol=chol, dims="coef")
    pm.Deterministic("beta", pt.dot(scaling.A, beta_std), dims="coef")
    return beta_std


def _fixed_effects_other(design: Design, priors: ResolvedPriors, scaling: FixedScaling) -> pt.TensorVariable:
    r"""Fixed effects when some have a non-normal prior (Student-t, Laplace, flat, any PyMC distribution).

    ``beta_std`` is declared flat and the prior is added as a log density of :math:`\beta = A\tilde\beta`
    (``pm.Potential`` ``beta_prior``): the normal part :math:`N(b, B)` over the other coefficients
    (its marginal) plus each non-normal prior at its coefficient. The map is linear, so no
    Jacobian term is needed. Prior-predictive sampling (and SBC) cannot use such a model.
    """
    beta_std = pm.Flat("beta_std", dims="coef")
    beta = pm.Deterministic("beta", pt.dot(scaling.A, beta_std), dims="coef")
    other = sorted(priors.fixed_other)
    normal = [k for k in range(design.X.shape[1]) if k not in priors.fixed_other]
    terms = []
    if normal:
        b, B = priors.b[normal], priors.B[np.ix_(normal, normal)]
        chol = np.linalg.cholesky((B + B.T) / 2)
        terms.append(pm.logp(pm.MvNormal.dist(mu=b, chol=chol), beta[normal]))
    for k in other:
        dist, kwargs = priors.fixed_other[k].pymc()
        if dist != "Flat":
            terms.append(pm.logp(pymc_distribution(dist).dist(**kwargs), beta[k]))
    if terms:
        total = pt.sum(terms[0])
        for t in terms[1:]:
            total = total + pt.sum(t)
        pm.Potential("beta_prior", total)
    return beta_std


def residual_sd(priors: ResolvedPriors) -> pt.TensorVariable:
    """Declare the residual sd ``sigma`` of the Gaussian family."""
    assert priors.sigma is not None
    return scale_rv("sigma", (priors.sigma,), None)


def _random_effects(g: GroupDesign, priors: ResolvedPriors) -> pt.TensorVariable:
    """Declare the sds, correlations and effects of one group; return ``u`` (levels x q)."""
    name, cdim = g.name, g.coef_dim
    factor, full = covariance_factor(g, priors)
    if full:
        q = len(g.coef_names)
        chol = factor
        if g.term.centered:
            return pm.MvNormal(names.u(name), mu=np.zeros(q), chol=chol, dims=(name, cdim))
        z = pm.Normal(names.z(name), 0.0, 1.0, dims=(name, cdim))
        return pm.Deterministic(names.u(name), pt.dot(z, chol.T), dims=(name, cdim))
    if g.term.centered:
        return pm.Normal(names.u(name), 0.0, factor, dims=(name, cdim))
    z = pm.Normal(names.z(name), 0.0, 1.0, dims=(name, cdim))
    return pm.Deterministic(names.u(name), z * factor, dims=(name, cdim))


def rescaled_effects(design: Design) -> dict[str, str]:
    r"""The non-centred effects the sampler may partially centre: ``{z_<g>: sd_<g>}``.

    Every grouping factor with one coefficient and a non-centred term (:math:`u_j = s z_j`) of
    a model whose family has no collapsed form (GLMMs). numpyro's sampler moves
    :math:`z_j s^{a_j}` instead of :math:`z_j` for exponents :math:`a_j` set by a pilot run
    (:func:`hierbayes.inference.jax_nuts.sample_numpyro`); the model and its variables stay
    as they are.
    """
    if get_family(design.spec.family).collapses:
        return {}
    return {names.z(g.name): names.sd(g.name) for g in design.groups if len(g.coef_names) == 1 and not g.term.centered}


def _group_contribution(g: GroupDesign, u: pt.TensorVariable) -> pt.TensorVariable:
    if len(g.coef_names) == 1 and np.all(g.Z[:, 0] == 1.0):
        return u[:, 0][g.index]  # a 1-d gather (cheaper than rows of a matrix, and its gradient too)
    return (u[g.index] * g.Z).sum(axis=1)


def build_model(design: Design, priors: ResolvedPriors | None = None) -> pm.Model:
    """Build the PyMC model of ``design`` (see the module docstring for the math).

    Parameters
    ----------
    design
        From :func:`hierbayes.make_design`.
    priors
        Resolved priors; by default :func:`hierbayes.spec.priors.resolve_priors` of the design.

    Returns
    -------
    pymc.Model
        With named dims ``coef``, one per grouping factor (its levels) and ``<g>__coef``.
    """
    priors = priors if priors is not None else resolve_priors(design)
    scaling = fixed_scaling(design)
    with pm.Model(coords=model_coords(design)) as model:
        eta: pt.TensorVariable = pt.zeros(design.n_obs)
        beta_std = fixed_effects(design, priors, scaling)
        if beta_std is not None:
            eta = pt.dot(scaling.standardise(design.X), beta_std)
        for g in design.groups:
            eta = eta + _group_contribution(g, _random_effects(g, priors))
        if design.offset is not None:
            eta = eta + design.offset
        _likelihood(design, priors, eta)
    return model


def _likelihood(design: Design, priors: ResolvedPriors, eta: pt.TensorVariable) -> None:
    """The family's likelihood of ``y`` (see :mod:`hierbayes.families`)."""
    observed = Observed(y=design.y, trials=design.trials, known_sigma=design.known_sigma)
    get_family(design.spec.family).likelihood(eta, observed, str(design.spec.link), sigma_prior=priors.sigma)
