r"""Random intercepts of small groups integrated out by adaptive Gauss–Hermite quadrature.

For a non-Gaussian GLMM whose innermost grouping factor :math:`g` has a random intercept only
and few rows per level (e.g. 1–3 children per mother), the full model's non-centred effects
of :math:`g` form a funnel with its sd. This path integrates them out, level by level, so
that NUTS explores only the fixed effects, the sds and the other factors' effects (as in the
full model of :mod:`hierbayes.inference.build`, non-centred, same priors and names).

The marginal likelihood of a level
-----------------------------------
Let :math:`\eta_i` be the linear predictor of row :math:`i` without the effect of
:math:`g` (fixed part, other factors' effects, offset) and :math:`s` the sd of :math:`g`'s
intercept. With :math:`u_m = s z_m`, :math:`z_m \sim N(0, 1)`, the rows of level :math:`m`
contribute

.. math::

    L_m = \int \prod_{i \in m} p(y_i \mid \eta_i + s z)\, \phi(z)\, dz
        = \frac{1}{\sqrt{2\pi}} \int e^{f_m(z)}\, dz, \qquad
    f_m(z) = \sum_{i \in m} \log p(y_i \mid \eta_i + s z) - \tfrac{z^2}{2}.

For the families covered (Bernoulli/binomial with logit link, Poisson with log link)
:math:`\log p` is concave in :math:`\eta`, so :math:`f_m` is strongly concave:
:math:`-f_m'' \ge 1`. With its mode :math:`\hat z_m`, :math:`h_m = -f_m''(\hat z_m)` and the
Gauss–Hermite rule :math:`(x_k, w_k)` for the weight :math:`\phi(x)` (probabilists' nodes,
weights summing to one), substituting :math:`z = \hat z_m + x/\sqrt{h_m}` gives the
*adaptive* Gauss–Hermite (AGQ) approximation

.. math::

    \log L_m \approx \operatorname{logsumexp}_k\bigl(\log w_k + f_m(z_{mk}) + x_k^2/2\bigr)
    - \tfrac12 \log h_m, \qquad z_{mk} = \hat z_m + x_k/\sqrt{h_m},

exact when :math:`e^{f_m}` is a Gaussian times a polynomial of degree :math:`< 2K`; with one
node it is the Laplace approximation.

Computation (plain PyTensor tensor ops, for the numba and JAX backends): ``(rows, nodes)``
arrays summed per level by an indexed increment (the numpy functions pad each level's rows
into a ``(levels, max_rows)`` array with a 0/1 mask); the mode is found by
:data:`NEWTON_STEPS` vectorised Newton steps from :math:`z = 0`, each at most
:data:`MAX_STEP` long (no overflow of :math:`e^{\eta}`), with a bisection step whenever a
Newton step leaves the bracket known to hold the mode (no cycles), whose
gradient is not propagated, followed by one more Newton step :math:`z^* = \hat z + f'(\hat z)/H`
with :math:`H = -f''(\hat z)` held constant. Since :math:`\partial z^*/\partial\hat z = 0`,
the gradient of the result is that of the implicit function :math:`\hat z(\theta)` (exact up to
the Newton residual :math:`f'(\hat z)`), at the cost of one Newton step.

Random effects after sampling
-----------------------------
For every posterior draw, :math:`z_m` is drawn exactly from :math:`p(z_m \mid y, \theta)
\propto e^{f_m(z)}` by rejection sampling: strong concavity gives
:math:`f_m(z) \le f_m(\hat z) + f_m'(\hat z)(z - \hat z) - (z - \hat z)^2/2` for every
:math:`\hat z`, a Gaussian envelope :math:`N(\hat z + f_m'(\hat z), 1)` with acceptance
probability :math:`\exp\{f_m(z) - \text{bound}\}`, about :math:`1/\sqrt{h_m}` at the mode.
Levels not accepted after :data:`REJECTION_ROUNDS` rounds (acceptance below about 1e-3,
i.e. :math:`h_m > 10^6`: only for absurd parameter values such as heavy-tailed prior draws)
are drawn by the inverse CDF on 4001 points over :math:`\hat z \pm 12/\sqrt{h_m}`. The draws
are stored as ``u_<g>`` (``s z``), as in the full model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pytensor.gradient import disconnected_grad
from scipy import special

from hierbayes.design import Design, GroupDesign
from hierbayes.exceptions import SpecError
from hierbayes.inference.build import (
    FixedScaling,
    _group_contribution,
    _random_effects,
    covariance_factor,
    fixed_effects,
    fixed_scaling,
    model_coords,
)
from hierbayes.inference.collapsed.build import choose_method as choose_collapsed
from hierbayes.inference.collapsed.build import with_observed_y
from hierbayes.inference.posterior import group_sd_draws, stacked
from hierbayes.inference.priors import ResolvedPriors, resolve_priors
from hierbayes.spec import names

__all__ = [
    "DEFAULT_NODES",
    "MAX_ROWS",
    "METHODS",
    "Method",
    "QuadratureData",
    "add_integrated_effects",
    "agq_loglik",
    "build_quadrature_model",
    "choose_method",
    "choose_nodes",
    "integrated_effect_draws",
    "quadrature_data",
    "quadrature_error",
    "quadrature_problem",
]

Method = Literal["auto", "collapsed", "full", "quadrature"]
METHODS: tuple[str, ...] = ("auto", "collapsed", "full", "quadrature")

#: Gauss–Hermite nodes per level in the sampled model.
DEFAULT_NODES = 5
#: Node counts ``method="auto"`` tries, fewest first.
NODE_CHOICES = (5, 7, 9, 11, 13, 15)
#: Finer rule against which ``method="auto"`` checks the default one.
CHECK_NODES = 25
#: ``method="auto"`` integrates a factor out only if its largest level has at most this many rows.
MAX_ROWS = 10
#: Whether ``method="auto"`` may pick quadrature. Off: on Guatemalan (1,595 mothers with 1-3
#: children) quadrature raised the minimum bulk ESS from 266 to 1,196-1,520 of 4,000, but each
#: gradient costs 6-10x the full model's under numba (1.1-1.6 ms against 0.1-0.2 ms) and ~50x
#: under JAX (4 ms against 77 us), so the fit took 164-226 s against 69 s for the full model with
#: nutpie, and the full model with numpyro (the default sampler) is faster still. Quadrature stays
#: available as ``method="quadrature"`` (better mixing per draw, no funnel). A hand-written JAX
#: version (levels grouped by their number of rows, no padding, no scatter, 6 Newton steps) still
#: took 581 us per value and gradient with 11 nodes (75 us for the value with 1 node, ~23 us more per
#: node) against 122 us for the full model (96 us after the one-softplus Bernoulli rewrite of
#: :mod:`hierbayes.inference.jax_nuts`): the 11 x 2,159 logistic terms cost more than NUTS saves.
AUTO_PICKS_QUADRATURE = False
#: ``method="auto"`` falls back to the full model if the default rule's summed log-likelihood
#: differs from the finer rule's by more than this (nats), at any of the checked points.
MAX_ERROR = 0.05
#: Name of the shared response of :func:`build_quadrature_model` with ``shared_response=True``.
SHARED_RESPONSE = "quadrature_y"
#: Newton steps (without gradient) towards the mode; then one differentiable step.
NEWTON_STEPS = 10
#: Largest Newton step, in prior sds of the standardised effect (the bracket prevents cycles).
MAX_STEP = 1.0

#: Families and links covered: log-likelihood concave in eta.
_KERNELS = {("bernoulli", "logit"): "logit", ("binomial", "logit"): "logit", ("poisson", "log"): "log"}

#: Rounds of rejection sampling before the remaining (absurdly concentrated) levels use a fine grid.
REJECTION_ROUNDS = 2000
#: Floats per intermediate array when the effects are drawn in chunks of posterior draws.
_CHUNK_FLOATS = 4_000_000


# --------------------------------------------------------------------------------------
# Which designs
# --------------------------------------------------------------------------------------


def _intercept_only(g: GroupDesign) -> bool:
    return len(g.coef_names) == 1 and bool(np.all(g.Z[:, 0] == 1.0))


def quadrature_problem(design: Design, *, max_rows: int | None = None) -> tuple[GroupDesign | None, str | None]:
    """The factor to integrate out, or ``(None, why not)``.

    The candidate is the intercept-only factor with the most levels (the innermost one of a
    nested design); ``max_rows`` (``None``: no bound) bounds the rows of its largest level.
    """
    spec = design.spec
    kind = _KERNELS.get((spec.family, str(spec.link)))
    if kind is None:
        covered = ", ".join(f"{f} ({lk} link)" for f, lk in _KERNELS)
        return None, f"quadrature covers {covered}, not {spec.family} ({spec.link} link)"
    if not design.groups:
        return None, "the model has no random effects"
    candidates = [g for g in design.groups if _intercept_only(g) and not g.term.centered]
    if not candidates:
        return None, "no grouping factor has a (non-centred) random intercept only"
    g = max(candidates, key=lambda c: c.n_levels)
    rows = int(np.bincount(g.index, minlength=g.n_levels).max())
    if max_rows is not None and rows > max_rows:
        return None, f"the largest level of {g.name} has {rows} rows (quadrature is chosen up to {max_rows})"
    return g, None


# --------------------------------------------------------------------------------------
# Data: padded rows per level
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QuadratureData:
    r"""The integrated factor's rows, padded per level.

    Attributes
    ----------
    group
        The integrated factor.
    kind
        ``"logit"`` (Bernoulli/binomial) or ``"log"`` (Poisson).
    rows
        ``(levels, max_rows)`` row numbers (padding: row 0).
    mask
        ``(levels, max_rows)``: 1.0 for a row, 0.0 for padding.
    y, trials
        ``(levels, max_rows)`` response and trials (1 for Bernoulli/Poisson; padding: 0 and 1).
    y_rows, trials_rows
        ``(n,)`` response and trials per row.
    constant
        :math:`\sum_i` of the terms of :math:`\log p(y_i)` that do not depend on
        :math:`\eta` (log binomial coefficients, :math:`-\log y_i!`).
    """

    group: GroupDesign
    kind: str
    rows: np.ndarray
    mask: np.ndarray
    y: np.ndarray
    trials: np.ndarray
    constant: float
    y_rows: np.ndarray
    trials_rows: np.ndarray


def quadrature_data(design: Design, group: GroupDesign | None = None) -> QuadratureData:
    """Pad the rows of ``group`` (default: :func:`quadrature_problem`'s choice) per level."""
    if group is None:
        group, problem = quadrature_problem(design)
        if group is None:
            raise SpecError(f"method='quadrature' cannot fit {design.spec.formula()!r}: {problem}.")
    kind = _KERNELS[(design.spec.family, str(design.spec.link))]
    index = group.index
    G = group.n_levels
    counts = np.bincount(index, minlength=G)
    M = int(counts.max())
    order = np.argsort(index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(index.size) - np.repeat(starts, counts)
    rows = np.zeros((G, M), dtype=np.int64)
    mask = np.zeros((G, M))
    rows[index[order], pos] = order
    mask[index[order], pos] = 1.0
    y = np.asarray(design.y, dtype=float)
    n = np.ones_like(y) if design.trials is None else np.asarray(design.trials, dtype=float)
    if kind == "logit":
        const = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
    else:
        const = -special.gammaln(y + 1)
    return QuadratureData(
        group=group,
        kind=kind,
        rows=rows,
        mask=mask,
        y=np.where(mask > 0, y[rows], 0.0),
        trials=np.where(mask > 0, n[rows], 1.0),
        constant=float(const.sum()),
        y_rows=y,
        trials_rows=n,
    )


def hermite_rule(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes :math:`x_k` and weights :math:`w_k` (summing to 1) for :math:`\int g(x)\phi(x)dx`."""
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be a positive integer; received {n_nodes}.")
    x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    return x, w / w.sum()


# --------------------------------------------------------------------------------------
# The log-likelihood kernel and its derivatives in eta (numpy and PyTensor alike)
# --------------------------------------------------------------------------------------


def _kernel_pt(kind: str, y: Any, n: Any, eta: Any) -> tuple[pt.TensorVariable, ...]:
    """``(log p - constant, d/d eta, d2/d eta2)`` elementwise."""
    if kind == "logit":
        p = pt.sigmoid(eta)
        return y * eta - n * pt.softplus(eta), y - n * p, -n * p * (1.0 - p)
    mu = pt.exp(eta)
    return y * eta - mu, y - mu, -mu


def _kernel_np(kind: str, y: np.ndarray, n: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, ...]:
    if kind == "logit":
        p = special.expit(eta)
        return y * eta - n * np.logaddexp(0.0, eta), y - n * p, -n * p * (1.0 - p)
    mu = np.exp(eta)
    return y * eta - mu, y - mu, -mu


def _derivatives(
    kind: str, data: QuadratureData, E: np.ndarray, s: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:math:`f(z)`, :math:`f'(z)`, :math:`-f''(z)` per level (``E``: ``(..., G, M)``, ``z``: ``(..., G)``)."""
    ll, d1, d2 = _kernel_np(kind, data.y, data.trials, E + s[..., None] * z[..., None])
    f = np.sum(data.mask * ll, axis=-1) - 0.5 * z**2
    g = s * np.sum(data.mask * d1, axis=-1) - z
    H = 1.0 - s**2 * np.sum(data.mask * d2, axis=-1)
    return f, g, H


def _group_sum(values: pt.TensorVariable, index: np.ndarray, n_levels: int) -> pt.TensorVariable:
    """Sum the rows of ``values`` (``(n, ...)``) per level ``index`` (``(n,)``): ``(n_levels, ...)``."""
    return pt.inc_subtensor(pt.zeros((n_levels, *[values.shape[k] for k in range(1, values.ndim)]))[index], values)


def agq_loglik(
    data: QuadratureData,
    eta: pt.TensorVariable,
    s: pt.TensorVariable,
    n_nodes: int = DEFAULT_NODES,
    newton_steps: int = NEWTON_STEPS,
    y: Any = None,
) -> pt.TensorVariable:
    r"""PyTensor: :math:`\log L_m` per level by AGQ (see the module docstring), without the constant.

    Evaluated on the rows themselves (``(n, nodes)`` arrays, sums per level by an indexed
    increment), not on the padded layout, which the numpy functions use.

    Parameters
    ----------
    data
        From :func:`quadrature_data`.
    eta
        ``(n,)`` linear predictor of every row without the integrated effects.
    s
        Scalar sd of the integrated intercepts.
    n_nodes
        Gauss–Hermite nodes per level.
    newton_steps
        Newton steps towards the mode before the differentiable one.
    y
        ``(n,)`` response as a tensor (e.g. a shared variable, to refit other responses);
        default: ``data.y_rows``.

    Returns
    -------
    TensorVariable
        ``(levels,)``; add ``data.constant`` for the log-likelihood itself.
    """
    x, w = hermite_rule(n_nodes)
    kind = data.kind
    index = data.group.index
    G = data.group.n_levels
    y = data.y_rows if y is None else y
    n = data.trials_rows

    def derivatives(e: pt.TensorVariable, s_: pt.TensorVariable, z: pt.TensorVariable) -> tuple[pt.TensorVariable, ...]:
        _, d1, d2 = _kernel_pt(kind, y, n, e + s_ * z[index])
        return s_ * _group_sum(d1, index, G) - z, 1.0 - s_**2 * _group_sum(d2, index, G)

    # The Newton steps (no gradient) on the padded (levels, max_rows) layout: dense row sums.
    flat = data.rows.ravel()
    E_c = disconnected_grad(eta)[flat].reshape(data.rows.shape)
    s_c = disconnected_grad(s)
    y_pad = data.y if y is data.y_rows else disconnected_grad(y)[flat].reshape(data.rows.shape)
    mask = data.mask

    def padded(z: pt.TensorVariable) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        _, d1, d2 = _kernel_pt(kind, y_pad, data.trials, E_c + s_c * z[:, None])
        return s_c * pt.sum(mask * d1, axis=1) - z, 1.0 - s_c**2 * pt.sum(mask * d2, axis=1)

    below = data.trials - y_pad if kind == "logit" else pt.exp(E_c)
    lo, hi = -s_c * pt.sum(mask * below, axis=1), s_c * pt.sum(mask * y_pad, axis=1)
    z = pt.zeros(G)
    for _ in range(newton_steps):
        g, H = padded(z)
        lo, hi = pt.switch(g > 0, pt.maximum(lo, z), lo), pt.switch(g < 0, pt.minimum(hi, z), hi)
        new = z + pt.clip(g / H, -MAX_STEP, MAX_STEP)
        z = pt.switch((new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
    z = disconnected_grad(z)
    g, H = derivatives(eta, s, z)
    z = z + g / disconnected_grad(H)  # gradient of the implicit mode (see module docstring)
    _, h = derivatives(eta, s, z)
    nodes = z[:, None] + (1.0 / pt.sqrt(h))[:, None] * x[None, :]  # (G, K)
    ll, _, _ = _kernel_pt(kind, y[:, None], n[:, None], eta[:, None] + s * nodes[index])
    terms = np.log(w) + 0.5 * x**2 + _group_sum(ll, index, G) - 0.5 * nodes**2
    top = disconnected_grad(pt.max(terms, axis=1))  # the result does not depend on it: no gradient through max
    return top + pt.log(pt.sum(pt.exp(terms - top[:, None]), axis=1)) - 0.5 * pt.log(h)


def _bracket(data: QuadratureData, E: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Bounds on the mode, a root of :math:`f'(z) = s\ell'(z) - z`.

    :math:`\ell' \le \sum y_i`, and :math:`\ell' \ge -\sum (n_i - y_i)` (logit) or
    :math:`\ell'(z) \ge -\sum e^{\eta_i}` for :math:`z \le 0` (log).
    """
    below = data.trials - data.y if data.kind == "logit" else np.exp(E)
    return -s * np.sum(data.mask * below, axis=-1), s * np.sum(data.mask * data.y, axis=-1)


def _mode_np(
    data: QuadratureData, E: np.ndarray, s: np.ndarray, steps: int = 200, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mode, :math:`f` and :math:`-f''` there, by safeguarded Newton (``E``: ``(S, G, M)``, ``s``: ``(S,)``)."""
    s = s[:, None]
    lo, hi = _bracket(data, E, s)
    z = np.zeros(E.shape[:-1])
    for _ in range(steps):
        _, g, H = _derivatives(data.kind, data, E, s, z)
        lo, hi = np.where(g > 0, np.maximum(lo, z), lo), np.where(g < 0, np.minimum(hi, z), hi)
        up = MAX_STEP if data.kind == "log" else np.inf  # only e^eta can overflow, and only upwards
        new = z + np.clip(g / H, -np.inf, up)
        new = np.where((new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
        step, z = new - z, new
        if np.max(np.abs(step)) < tol:
            break
    f, _, H = _derivatives(data.kind, data, E, s, z)
    return z, f, H


def agq_loglik_np(data: QuadratureData, E: np.ndarray, s: np.ndarray, n_nodes: int) -> np.ndarray:
    """Numpy AGQ at the converged mode: ``(S, G)`` for ``E`` ``(S, G, M)`` and ``s`` ``(S,)``, without the constant."""
    x, w = hermite_rule(n_nodes)
    z, _, h = _mode_np(data, E, s)
    nodes = z[..., None] + x / np.sqrt(h)[..., None]  # (S, G, K)
    ll, _, _ = _kernel_np(
        data.kind,
        data.y[..., None],
        data.trials[..., None],
        E[..., None] + s[:, None, None, None] * nodes[..., None, :],
    )
    f = np.sum(data.mask[..., None] * ll, axis=-2) - 0.5 * nodes**2
    return special.logsumexp(np.log(w) + 0.5 * x**2 + f, axis=-1) - 0.5 * np.log(h)


# --------------------------------------------------------------------------------------
# The PyMC model
# --------------------------------------------------------------------------------------


def build_quadrature_model(
    design: Design,
    priors: ResolvedPriors | None = None,
    *,
    group: GroupDesign | None = None,
    n_nodes: int = DEFAULT_NODES,
    shared_response: bool = False,
) -> pm.Model:
    r"""The PyMC model with ``group``'s random intercepts integrated out by AGQ.

    Same priors and variable names as :func:`hierbayes.inference.build.build_model`, except
    that ``z_<g>``/``u_<g>`` of the integrated factor are absent (``u_<g>`` is added to the
    posterior by :func:`add_integrated_effects`). The likelihood is a ``pm.Potential`` called
    ``y_marginal``, :math:`\sum_m \log L_m` (see the module docstring).
    ``shared_response=True`` holds the response in a PyTensor shared variable ``quadrature_y``
    (rows in the design's order) so that the compiled model can be refitted to other responses
    (calibration checks); the terms of the log-likelihood free of parameters are then left out.
    """
    priors = priors if priors is not None else resolve_priors(design)
    data = quadrature_data(design, group)
    scaling = fixed_scaling(design)
    with pm.Model(coords=model_coords(design, obs=False)) as model:
        eta: pt.TensorVariable = pt.zeros(design.n_obs)
        beta_std = fixed_effects(design, priors, scaling)
        if beta_std is not None:
            eta = pt.dot(scaling.standardise(design.X), beta_std)
        s = None
        for g in design.groups:
            if g.name == data.group.name:
                s = covariance_factor(g, priors)[0][0]
            else:
                eta = eta + _group_contribution(g, _random_effects(g, priors))
        if design.offset is not None:
            eta = eta + design.offset
        assert s is not None
        if shared_response:
            y = pytensor.shared(data.y_rows, name=SHARED_RESPONSE)
            pm.Potential("y_marginal", pt.sum(agq_loglik(data, eta, s, n_nodes, y=y)))
        else:
            pm.Potential("y_marginal", pt.sum(agq_loglik(data, eta, s, n_nodes)) + data.constant)
    return model


# --------------------------------------------------------------------------------------
# Choosing the method
# --------------------------------------------------------------------------------------


def _glm_start(design: Design, scaling: FixedScaling, kind: str) -> np.ndarray:
    """Fixed effects (standardised) of the GLM without random effects, by a few IRLS steps."""
    X = scaling.standardise(design.X)
    y = np.asarray(design.y, dtype=float)
    n = np.ones_like(y) if design.trials is None else np.asarray(design.trials, dtype=float)
    o = np.zeros_like(y) if design.offset is None else np.asarray(design.offset)
    beta = np.zeros(X.shape[1])
    for _ in range(25):
        _, d1, d2 = _kernel_np(kind, y, n, X @ beta + o)
        beta = beta + np.linalg.lstsq(X.T @ (-d2[:, None] * X) + 1e-6 * np.eye(X.shape[1]), X.T @ d1, rcond=None)[0]
    return beta


def _check_point(design: Design, data: QuadratureData) -> tuple[np.ndarray, float]:
    """A quick point estimate: GLM fixed effects (no random effects) and the sd maximising the likelihood there."""
    scaling = fixed_scaling(design)
    eta = np.zeros(design.n_obs)
    if design.X.shape[1]:
        eta = scaling.standardise(design.X) @ _glm_start(design, scaling, data.kind)
    if design.offset is not None:
        eta = eta + design.offset
    grid = np.exp(np.linspace(np.log(0.05), np.log(8.0), 23))
    E = np.broadcast_to(eta[data.rows], (grid.size, *data.rows.shape))
    profile = agq_loglik_np(data, E, grid, CHECK_NODES).sum(axis=-1)
    return eta, float(grid[int(np.argmax(profile))])


def _errors(design: Design, group: GroupDesign, node_counts: tuple[int, ...]) -> list[float]:
    data = quadrature_data(design, group)
    eta, s_hat = _check_point(design, data)
    s = np.array([s_hat, 1.5 * s_hat])
    E = np.broadcast_to(eta[data.rows], (2, *data.rows.shape))
    ref = agq_loglik_np(data, E, s, CHECK_NODES).sum(axis=-1)
    return [float(np.max(np.abs(agq_loglik_np(data, E, s, k).sum(axis=-1) - ref))) for k in node_counts]


def quadrature_error(design: Design, group: GroupDesign, *, n_nodes: int = DEFAULT_NODES) -> float:
    r"""Largest :math:`|\sum_m \log L_m^{(K)} - \log L_m^{(25)}|` at the points checked.

    The points: the fixed effects of the GLM without random effects (other factors' effects
    at 0) and the integrated factor's sd :math:`\hat s` maximising the 25-node marginal
    likelihood there, and :math:`1.5\hat s` (the upper part of its posterior).
    """
    return _errors(design, group, (n_nodes,))[0]


def choose_nodes(design: Design, group: GroupDesign) -> tuple[int | None, float]:
    """The fewest nodes of :data:`NODE_CHOICES` within :data:`MAX_ERROR` (:func:`quadrature_error`) and its error.

    ``(None, error of the largest)`` when none is.
    """
    errors = _errors(design, group, NODE_CHOICES)
    for k, error in zip(NODE_CHOICES, errors, strict=True):
        if error <= MAX_ERROR:
            return k, error
    return None, errors[-1]


def choose_method(design: Design, method: str) -> tuple[str, str, int]:
    r"""Resolve ``method`` to ``"collapsed"``, ``"quadrature"`` or ``"full"``; return it, a one-line note and the nodes.

    ``"auto"`` picks the collapsed Gaussian path where it applies, else the full model. (With
    :data:`AUTO_PICKS_QUADRATURE` set it would pick quadrature when a random-intercept-only
    factor has at most :data:`MAX_ROWS` rows per level, the family is covered and a rule of at
    most :data:`NODE_CHOICES`\ ``[-1]`` nodes is within :data:`MAX_ERROR` nats of a 25-node rule
    (:func:`choose_nodes`); it is off because quadrature does not yet win on time, see
    :data:`AUTO_PICKS_QUADRATURE`.)
    ``"quadrature"`` forces it (nodes chosen the same way, at most the largest choice).

    Raises
    ------
    SpecError
        For an unknown method, or one that does not cover the design.
    """
    if method not in METHODS:
        raise SpecError(f"Unknown method {method!r}; allowed: {', '.join(METHODS)}.")
    if method == "quadrature":
        g, problem = quadrature_problem(design)
        if g is None:
            raise SpecError(
                f"method='quadrature' cannot fit {design.spec.formula()!r}: {problem}. "
                "Use method='full' (or 'auto', which picks it)."
            )
        k, error = choose_nodes(design, g)
        return "quadrature", _note(g, k or NODE_CHOICES[-1], error), k or NODE_CHOICES[-1]
    chosen, note = choose_collapsed(design, method)
    if method == "full" or chosen == "collapsed" or not AUTO_PICKS_QUADRATURE:
        return chosen, note, 0
    g, problem = quadrature_problem(design, max_rows=MAX_ROWS)
    if g is None:
        return chosen, f"{note[:-2]}; no quadrature: {problem}).", 0
    k, error = choose_nodes(design, g)
    if k is None:
        why = (
            f"{NODE_CHOICES[-1]}-node quadrature of {g.name} is off by {error:.2g} nats from a {CHECK_NODES}-node rule"
        )
        return "full", f"hierbayes: method='full' ({why}, more than {MAX_ERROR}).", 0
    return "quadrature", _note(g, k, error), k


def _note(g: GroupDesign, k: int, error: float) -> str:
    return (
        f"hierbayes: method='quadrature' (random intercepts of {g.name} integrated out by {k}-node adaptive "
        f"Gauss-Hermite quadrature, {error:.1g} nats from a {CHECK_NODES}-node rule; drawn exactly after sampling)."
    )


# --------------------------------------------------------------------------------------
# Exact draws of the integrated effects
# --------------------------------------------------------------------------------------


def _eta_without(design: Design, data: QuadratureData, posterior: xr.Dataset, index: np.ndarray) -> np.ndarray:
    """``(S, n)`` linear predictors without the integrated factor, for stacked draws ``index``."""
    S = index.size
    eta = np.zeros((S, design.n_obs))
    if design.X.shape[1]:
        beta_std = stacked(posterior, names.BETA_STD)[index]
        eta += beta_std @ fixed_scaling(design).standardise(design.X).T
    for g in design.groups:
        if g.name == data.group.name:
            continue
        u = stacked(posterior, names.u(g.name))[index]  # (S, levels, q)
        eta += np.einsum("sng,ng->sn", u[:, g.index, :], g.Z)
    if design.offset is not None:
        eta += design.offset
    return eta


def _exact_draws(data: QuadratureData, E: np.ndarray, s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    r"""Draws of :math:`z_m \propto e^{f_m}` per (draw, level), by rejection (module docstring)."""
    a, fa, _ = _mode_np(data, E, s)
    _, ga, _ = _derivatives(data.kind, data, E, s[:, None], a)
    out = np.full(a.shape, np.nan)
    pending = np.ones(a.shape, dtype=bool)
    for _ in range(REJECTION_ROUNDS):
        idx = np.nonzero(pending)
        if idx[0].size == 0:
            return out
        a_p, g_p = a[idx], ga[idx]
        z = a_p + g_p + rng.standard_normal(a_p.shape)
        ll, _, _ = _kernel_np(data.kind, data.y[idx[1]], data.trials[idx[1]], E[idx] + s[idx[0], None] * z[:, None])
        f = np.sum(data.mask[idx[1]] * ll, axis=-1) - 0.5 * z**2
        bound = fa[idx] + g_p * (z - a_p) - 0.5 * (z - a_p) ** 2
        accept = np.log(rng.random(z.shape)) < np.minimum(f - bound, 0.0)
        out[idx[0][accept], idx[1][accept]] = z[accept]
        pending[idx[0][accept], idx[1][accept]] = False
    idx = np.nonzero(pending)
    if idx[0].size:  # acceptance ~ 1/sqrt(h) below 1e-3 (absurd parameters, e.g. prior draws)
        out[idx] = _grid_draws(data, E, s, a, idx, rng)
    return out


def _grid_draws(
    data: QuadratureData,
    E: np.ndarray,
    s: np.ndarray,
    a: np.ndarray,
    idx: tuple[np.ndarray, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    r"""Inverse-CDF draws on 4001 points over :math:`\hat z \pm 12/\sqrt{h}` (fallback of :func:`_exact_draws`)."""
    _, _, H = _derivatives(data.kind, data, E, s[:, None], a)
    grid = a[idx][:, None] + np.linspace(-12.0, 12.0, 4001)[None, :] / np.sqrt(H[idx])[:, None]  # (P, T)
    eta = E[idx][:, :, None] + s[idx[0], None, None] * grid[:, None, :]  # (P, M, T)
    ll, _, _ = _kernel_np(data.kind, data.y[idx[1]][..., None], data.trials[idx[1]][..., None], eta)
    logd = np.sum(data.mask[idx[1]][..., None] * ll, axis=1) - 0.5 * grid**2
    dens = np.exp(logd - logd.max(axis=1, keepdims=True))
    cdf = np.cumsum(dens, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(len(idx[0]))
    k = np.minimum(np.argmax(cdf >= u[:, None], axis=1), grid.shape[1] - 1)
    return grid[np.arange(len(k)), k]


def integrated_effect_draws(
    design: Design, posterior: xr.Dataset, *, group: str | None = None, random_seed: int | None = None
) -> xr.Dataset:
    """Exact draws of the integrated factor's ``u_<g>`` for every posterior draw.

    Parameters
    ----------
    design
        The fit's design.
    posterior
        With ``beta_std``, ``sd_<g>`` and the other factors' ``u_<h>``.
    group
        The integrated factor (default: :func:`quadrature_problem`'s choice).
    random_seed
        Seed of the draws.

    Returns
    -------
    xarray.Dataset
        ``u_<g>`` with dims ``(chain, draw, <g>, <g>__coef)``.
    """
    g = design.group(group) if group is not None else None
    data = quadrature_data(design, g)
    g = data.group
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    S = chains * draws
    sd = group_sd_draws(posterior, g).values.reshape(S)  # one coefficient: the intercept
    rng = np.random.default_rng(random_seed)
    u = np.empty((S, g.n_levels))
    chunk = max(1, _CHUNK_FLOATS // max(data.rows.size, 1))
    for start in range(0, S, chunk):
        index = np.arange(start, min(S, start + chunk))
        eta = _eta_without(design, data, posterior, index)
        z = _exact_draws(data, eta[:, data.rows], sd[index], rng)
        u[index] = sd[index, None] * z
    coords = {
        "chain": posterior["chain"].values,
        "draw": posterior["draw"].values,
        g.name: np.array(g.levels, dtype=object),
        g.coef_dim: np.array(g.coef_names, dtype=object),
    }
    arr = u.reshape(chains, draws, g.n_levels, 1)
    return xr.Dataset({names.u(g.name): (("chain", "draw", g.name, g.coef_dim), arr)}, coords=coords)


def add_integrated_effects(idata: xr.DataTree, design: Design, *, random_seed: int | None = None) -> xr.DataTree:
    """Add the integrated factor's ``u_<g>`` (exact draws) and the observed ``y`` to a quadrature fit's result."""
    posterior = idata["posterior"].to_dataset()
    posterior = posterior.merge(integrated_effect_draws(design, posterior, random_seed=random_seed))
    idata["posterior"] = xr.DataTree(posterior)
    return with_observed_y(idata, design)
