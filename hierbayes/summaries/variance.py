r"""Variance partition and intra-class correlations, per posterior draw.

Notation (as in :mod:`hierbayes.spec`): the linear predictor is
:math:`\eta_i = x_i^\top\beta + \sum_k z_{ik}^\top u_{k, j_k[i]}` with
:math:`u_{kj} \sim N(0, \Omega_k)`, :math:`\Omega_k = \operatorname{diag}(s_k) R_k \operatorname{diag}(s_k)`.

At covariate values :math:`z` (``at=``; by default every varying term is 0, so only the
intercepts count) the variance contributed by grouping factor :math:`k` is

.. math::

    v_k = z^\top \Omega_k z \qquad (= s_{k,0}^2 \text{ for a random intercept}),

and the total is :math:`V = \sum_k v_k + \sigma_e^2`. The residual variance
:math:`\sigma_e^2` is

* Gaussian: :math:`\sigma^2`; with known per-row sds (eight schools) the average known
  sampling variance :math:`\overline{\sigma_i^2}`;
* binary/binomial, on the latent scale: :math:`\pi^2/3` (logit) or 1 (probit);
* Poisson / negative binomial, on the latent scale: the log-normal approximation
  :math:`\log(1 + 1/\lambda)` (resp. :math:`\log(1 + 1/\lambda + 1/\alpha)`), with
  :math:`\lambda` the model's marginal expected count averaged over the data's rows,
  :math:`\lambda = n^{-1}\sum_i \exp(x_i^\top\beta + o_i + \tfrac12\sum_k z_{ik}^\top\Omega_k z_{ik})`
  (Nakagawa, Johnson & Schielzeth 2017).

The fixed effects are not part of :math:`V` (these are the variance components of the
random part, as lme4 reports them).

The **share** of component :math:`k` is :math:`v_k / V`. The **intra-class correlation** of
factor :math:`k` is the correlation of two observations (both at :math:`z`) that share the
level of :math:`k`:

.. math::

    \mathrm{ICC}_k = \frac{\sum_{l \in \{k\} \cup A(k)} v_l}{V},

where :math:`A(k)` are the factors :math:`k` is nested in (every level of :math:`k` lies in a
single level of :math:`l`; read from the data's index arrays). For the three-level
achievement model, with school variance :math:`\nu^2`, child variance :math:`\tau^2` and
residual :math:`\sigma^2`: within-child :math:`(\nu^2 + \tau^2)/(\nu^2 + \tau^2 + \sigma^2)`,
within-school :math:`\nu^2 / (\nu^2 + \tau^2 + \sigma^2)`. For crossed factors :math:`A(k)`
is empty and the ICC equals the factor's own share.

Every quantity is computed per draw; the table reports the posterior mean, sd and the
equal-tailed interval (probability ``prob``, default 0.94 as in :func:`hierbayes.summary`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.design import Design, GroupDesign
from hierbayes.exceptions import SpecError
from hierbayes.families import get_family
from hierbayes.inference.posterior import DEFAULT_PROB, group_covariance_draws, interval_stats, values
from hierbayes.inference.result import Fit
from hierbayes.spec import names
from hierbayes.summaries.display import html_block

__all__ = ["VariancePartition", "group_covariance_draws", "nested_in", "variance_partition"]

RESIDUAL = "Residual"


# ----------------------------------------------------------------------------- shared helpers


def nested_in(design: Design, g: GroupDesign) -> list[str]:
    """Names of the other grouping factors that ``g`` is nested in.

    Factor ``l`` counts when every level of ``g`` lies in a single level of ``l`` (checked on the
    data's index arrays, so uniquely coded ids such as ``(1 | school) + (1 | child)`` count too).
    """
    out = []
    for other in design.groups:
        if other is g:
            continue
        pairs = np.unique(np.stack([g.index, other.index], axis=1), axis=0)
        if pairs.shape[0] == g.n_levels:
            out.append(other.name)
    return out


def _fixed_eta(fit: Fit, rows: np.ndarray) -> np.ndarray:
    """Per-draw fixed part plus offset of the linear predictor, shape ``(chain, draw, len(rows))``."""
    design = fit.design
    post = fit.posterior
    X = design.X[rows]
    if X.shape[1] > 0:
        beta = values(post[names.BETA].sel(coef=list(design.fixed_names)), "coef")
        eta = np.einsum("cdp,np->cdn", beta, X)
    else:
        shape = (post.sizes["chain"], post.sizes["draw"], len(rows))
        eta = np.zeros(shape)
    if design.offset is not None:
        eta = eta + design.offset[rows]
    return eta


def _row_group_variance(fit: Fit, rows: np.ndarray) -> np.ndarray:
    r"""Per-draw :math:`\sum_k z_{ik}^\top \Omega_k z_{ik}` for the given rows, ``(chain, draw, len(rows))``."""
    post = fit.posterior
    total = np.zeros((post.sizes["chain"], post.sizes["draw"], len(rows)))
    for g in fit.design.groups:
        omega = group_covariance_draws(post, g)
        Z = g.Z[rows]
        total += np.einsum("na,cdab,nb->cdn", Z, omega, Z)
    return total


def latent_residual_draws(fit: Fit, rows: np.ndarray | None = None) -> np.ndarray:
    r"""Per-draw residual variance :math:`\sigma_e^2` (see the module docstring).

    Parameters
    ----------
    fit
        The fit.
    rows
        Positions of rows in ``fit.data``. ``None``: one value per draw for the whole data
        (``(chain, draw)``); otherwise one value per draw and row (``(chain, draw, len(rows))``),
        which differs between rows for known sds and for the log link.
    """
    design = fit.design
    spec = fit.spec
    post = fit.posterior
    shape = (post.sizes["chain"], post.sizes["draw"])
    per_row = rows is not None
    target = (*shape, len(rows)) if rows is not None else shape
    if design.known_sigma is not None:
        s2 = design.known_sigma**2
        return np.broadcast_to(s2[rows], target).copy() if per_row else np.full(shape, float(np.mean(s2)))
    family = get_family(spec.family)
    scalar = [name for name in family.parameters() if set(post[name].dims) <= {"chain", "draw"}]  # not cutpoints
    params = {name: values(post[name]) for name in scalar}
    if per_row:
        params = {name: value[..., None] for name, value in params.items()}
    idx = np.arange(design.n_obs) if rows is None else np.asarray(rows)

    def mean() -> np.ndarray:
        # The marginal expected count (log link), per row or averaged over the rows.
        lam = np.exp(_fixed_eta(fit, idx) + 0.5 * _row_group_variance(fit, idx))
        return lam if per_row else lam.mean(axis=-1)

    value = family.latent_residual_variance(str(spec.link), mean=mean, params=params)
    return np.broadcast_to(np.asarray(value, dtype=float), target).copy()


def scale_label(fit: Fit) -> str:
    """Plain-words description of the scale of variances for this fit's family."""
    return get_family(fit.spec.family).scale_label(str(fit.spec.link), fit.spec.known_sigma)


# ----------------------------------------------------------------------------- partition


@dataclass(frozen=True)
class VariancePartition:
    """Posterior variance partition of a fit; ``print()`` it for a text table.

    Attributes
    ----------
    table
        Long table, one row per ``(component, quantity)``: ``component`` (a grouping factor or
        ``"Residual"``), ``quantity`` (``"variance"``, ``"share"`` or ``"icc"``), ``mean``,
        ``sd``, ``lower``, ``upper`` and a plain-words ``description``.
    draws
        Per-draw values: an ``xarray.Dataset`` with variables ``variance``, ``share`` and
        ``icc`` (``NaN`` for the residual), dims ``(chain, draw, component)``.
    scale
        The scale of the variances (data scale, or the latent scale of a GLMM and its
        residual variance).
    at
        The values of the varying terms at which the partition is taken (``{}``: all 0).
    prob
        Probability of the equal-tailed intervals.
    """

    table: pd.DataFrame
    draws: xr.Dataset
    scale: str
    at: dict[str, float] = field(default_factory=dict)
    prob: float = DEFAULT_PROB

    def get(self, quantity: str) -> pd.DataFrame:
        """Rows of one quantity (``"variance"``, ``"share"`` or ``"icc"``), indexed by component."""
        if quantity not in ("variance", "share", "icc"):
            raise ValueError(f"quantity must be 'variance', 'share' or 'icc'; received {quantity!r}.")
        part = self.table[self.table["quantity"] == quantity]
        return part.drop(columns="quantity").set_index("component")

    @property
    def icc(self) -> pd.DataFrame:
        """The intra-class correlations, indexed by grouping factor."""
        return self.get("icc")

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:

        at = ", ".join(f"{k}={v:g}" for k, v in self.at.items()) if self.at else "all varying terms at 0"
        return html_block(f"Variance partition, {self.scale}", [f"at {at}"], [("", self.table)])

    def __str__(self) -> str:
        pct = f"{round(self.prob * 100)}%"
        at = ", ".join(f"{k}={v:g}" for k, v in self.at.items()) if self.at else "all varying terms at 0"
        lines = [f"Variance partition, {self.scale}; at {at}", f"(posterior mean [{pct} interval])", ""]
        wide = []
        for comp in self.draws.coords["component"].values:
            cells = []
            for q in ("variance", "share", "icc"):
                r = self.table[(self.table.component == comp) & (self.table.quantity == q)]
                cells.append(
                    "" if r.empty else f"{r['mean'].iloc[0]:.4g} [{r['lower'].iloc[0]:.4g}, {r['upper'].iloc[0]:.4g}]"
                )
            wide.append([str(comp), *cells])
        header = ["Component", "Variance", "Share", "ICC"]
        widths = [max(len(r[i]) for r in [header, *wide]) for i in range(4)]
        for r in [header, *wide]:
            padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            lines.append("  ".join(padded))
        descr = self.table[self.table.quantity == "icc"]
        if not descr.empty:
            lines.append("")
            lines.extend(f"ICC {r.component}: {r.description}" for r in descr.itertuples())
        return "\n".join(lines)


def _at_vector(g: GroupDesign, at: Mapping[str, float]) -> np.ndarray:
    return np.array([1.0 if c == "Intercept" else float(at.get(c, 0.0)) for c in g.coef_names])


def _check_at(design: Design, at: Mapping[str, float]) -> dict[str, float]:
    varying = sorted({c for g in design.groups for c in g.coef_names if c != "Intercept"})
    out = {}
    for key, value in at.items():
        if key not in varying:
            allowed = ", ".join(varying) if varying else "none (the model has random intercepts only)"
            raise SpecError(
                f"at= names {key!r}, which is not a varying term of the model; varying terms: {allowed}. "
                f"Pass at={{'<term>': value}} for the terms listed."
            )
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise SpecError(f"at[{key!r}] must be a number; received {value!r}.") from None
    return out


def variance_partition(
    fit: Fit, *, at: Mapping[str, float] | None = None, prob: float = DEFAULT_PROB
) -> VariancePartition:
    r"""Partition the variance between grouping factors and the residual; intra-class correlations.

    See the module docstring for the formulas.

    Parameters
    ----------
    fit
        From :func:`hierbayes.fit` (any family; GLMMs are partitioned on the latent scale).
    at
        Values of the varying (random-slope) terms at which to take the partition, e.g.
        ``{"Days": 5}``; terms not named are 0. With random slopes the variance of a factor
        depends on these values (:math:`z^\top\Omega z`); the default, all 0, partitions the
        intercepts.
    prob
        Probability of the equal-tailed intervals.

    Returns
    -------
    VariancePartition

    Examples
    --------
    >>> vp = hb.variance_partition(fit)  # doctest: +SKIP
    >>> vp.icc.loc["child", ["mean", "lower", "upper"]]  # doctest: +SKIP
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1; received {prob}.")
    design = fit.design
    if not design.groups:
        raise SpecError(f"The model {fit.spec.formula()} has no random effects, so there is no variance to partition.")
    at_values = _check_at(design, at or {})
    post = fit.posterior

    comps: list[str] = []
    variances: list[np.ndarray] = []
    for g in design.groups:
        z = _at_vector(g, at_values)
        omega = group_covariance_draws(post, g)
        comps.append(g.name)
        variances.append(np.einsum("a,cdab,b->cd", z, omega, z))
    comps.append(RESIDUAL)
    variances.append(latent_residual_draws(fit))
    var = np.stack(variances, axis=-1)
    total = var.sum(axis=-1, keepdims=True)
    share = var / total
    icc = np.full_like(var, np.nan)
    above = {g.name: nested_in(design, g) for g in design.groups}
    for k, g in enumerate(design.groups):
        members = [comps.index(n) for n in [g.name, *above[g.name]]]
        icc[..., k] = var[..., members].sum(axis=-1) / total[..., 0]

    at_text = f" at {', '.join(f'{k}={v:g}' for k, v in at_values.items())}" if at_values else ""
    rows: list[dict[str, object]] = []
    for k, comp in enumerate(comps):
        what = "residual variance" if comp == RESIDUAL else f"variance of the {comp} effects{at_text}"
        rows.append(
            {"component": comp, "quantity": "variance", **interval_stats(var[..., k], prob), "description": what}
        )
        rows.append(
            {
                "component": comp,
                "quantity": "share",
                **interval_stats(share[..., k], prob),
                "description": f"{comp} variance / total",
            }
        )
    for k, g in enumerate(design.groups):
        outer_names = [g.name, *above[g.name]]
        outer = f" (and so the same {', '.join(above[g.name])})" if above[g.name] else ""
        rows.append(
            {
                "component": g.name,
                "quantity": "icc",
                **interval_stats(icc[..., k], prob),
                "description": (
                    f"correlation of two observations in the same {g.name}{outer}: "
                    f"({' + '.join(reversed(outer_names))}) / total"
                ),
            }
        )
    table = pd.DataFrame(rows, columns=["component", "quantity", "mean", "sd", "lower", "upper", "description"])
    dims = ("chain", "draw", "component")
    coords = {"chain": post.coords["chain"].values, "draw": post.coords["draw"].values, "component": comps}
    draws = xr.Dataset(
        {"variance": (dims, var), "share": (dims, share), "icc": (dims, icc)},
        coords=coords,
    )
    return VariancePartition(table=table, draws=draws, scale=scale_label(fit), at=at_values, prob=prob)
