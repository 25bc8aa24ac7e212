r"""Population-averaged (marginal) effects next to the conditional ones.

Notation: :math:`g(E[y_i \mid u]) = x_i^\top\beta + \sum_k z_{ik}^\top u_{k,j_k[i]} + o_i`
with :math:`u_{kj} \sim N(0, \Omega_k)` (see :mod:`hierbayes.spec`).

Conditional (cluster-specific) versus marginal (population-averaged) effects
-----------------------------------------------------------------------------
In a mixed model with a non-identity link the coefficients are **conditional**: for a logit
model :math:`\exp(\beta_k)` is the odds ratio for a unit change in :math:`x_k` *for the same
cluster* (same :math:`u`), e.g. the same mother and community. A **marginal** or
population-averaged effect compares the *average* probability over all clusters,

.. math::

    \bar p(x) = \int g^{-1}\big(x^\top\beta + z^\top u\big)\, N(u \mid 0, \Omega)\, du ,

which is what a GEE or a model without random effects estimates. Because :math:`g^{-1}` is
non-linear, averaging over :math:`u` flattens the curve: marginal log-odds ratios are
attenuated towards zero. For a logit link with random intercepts of total variance
:math:`\sigma_u^2` a good approximation (Zeger, Liang & Albert 1988) is

.. math::

    \beta^{\mathrm{marginal}} \approx \beta / \sqrt{1 + c^2\sigma_u^2},
    \qquad c = \frac{16\sqrt{3}}{15\pi} \approx 0.588 .

With the Guatemalan immunisation model (:math:`\sigma_u^2 \approx 1.2 + 6.0`) the factor is
about 0.53: the conditional odds ratio of being 2 or older (:math:`e^{1.77} \approx 5.9`) is a
statement about one child's odds within one family; the population-averaged one is about
:math:`e^{0.94} \approx 2.6`. Neither is "right": they answer different questions. With an
identity link the two coincide, and with a log link and random intercepts they differ only by
a constant factor :math:`e^{\sigma_u^2/2}` in the mean, so rate ratios are unchanged.

:func:`population_averaged` computes :math:`\bar p(x)` by Monte Carlo: for every posterior
draw :math:`s` it draws :math:`u^{(s,m)}_k \sim N(0, \Omega_k^{(s)})`, :math:`m = 1..M`, for
every random term and averages :math:`g^{-1}` over :math:`m` (the same :math:`u` draws for
every row, so contrasts between rows have little Monte Carlo noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.exceptions import DataError, SpecError
from hierbayes.families import get_family
from hierbayes.inference.posterior import DEFAULT_PROB, check_prob, fixed_effect_draws, interval_stats
from hierbayes.inference.result import Fit
from hierbayes.summaries.contrasts import ATTENUATION_C
from hierbayes.summaries.display import html_block
from hierbayes.summaries.prediction import as_frame, group_cov_cholesky, inverse_link, prediction_rows

__all__ = ["PopulationAveraged", "population_averaged"]


@dataclass(frozen=True)
class PopulationAveraged:
    r"""Conditional (``u = 0``) and marginal (population-averaged) means, and optionally effects.

    Attributes
    ----------
    table
        One row per data row: ``conditional_mean``, ``conditional_lower``, ``conditional_upper``,
        ``marginal_mean``, ``marginal_lower``, ``marginal_upper`` (posterior means and intervals
        of the mean response, e.g. a probability).
    conditional, marginal
        Their draws, dims ``(chain, draw, obs)``.
    effects
        With ``coef=``: one row per data row comparing ``coef`` at ``at[1]`` with ``at[0]``
        (everything else as in the row): ``measure`` (``odds_ratio`` for bernoulli/binomial,
        ``rate_ratio`` for log links, ``difference`` for the identity link), conditional and
        marginal ``*_mean``, ``*_lower``, ``*_upper``, and ``attenuation``, the posterior mean
        ``mean(log marginal OR) / mean(log conditional OR)`` over the posterior (odds ratios only),
        and for the logit link ``approx_attenuation``, the posterior mean of
        :math:`1/\sqrt{1 + c^2\tau_i^2}` with :math:`\tau_i^2 = \sum_k z_{ik}^\top\Omega_k z_{ik}`
        (the approximation of the module docstring). ``None`` without ``coef``.
    n_draws
        Monte Carlo draws of the random effects per posterior draw.
    prob
        Interval probability.
    """

    table: pd.DataFrame
    conditional: xr.DataArray
    marginal: xr.DataArray
    effects: pd.DataFrame | None
    n_draws: int
    prob: float

    def __repr__(self) -> str:
        eff = "" if self.effects is None else f", effects ({self.effects['measure'].iloc[0]})"
        head = self.table.head(5).to_string(float_format=lambda v: f"{v:.4g}")
        more = f"\n... {len(self.table)} rows" if len(self.table) > 5 else ""
        return (
            f"<hierbayes.PopulationAveraged {len(self.table)} row(s){eff}; {self.n_draws} Monte Carlo draws "
            f"of u per posterior draw, {round(self.prob * 100)}% intervals>\n{head}{more}"
        )

    def _repr_html_(self) -> str:

        tables = [("Conditional (u = 0) and population-averaged means", self.table)]
        if self.effects is not None:
            tables.append(("Effects", self.effects))
        notes = [f"{self.n_draws} Monte Carlo draws of u per posterior draw; {round(self.prob * 100)}% intervals"]
        return html_block("Population-averaged predictions", notes, tables)


_MC_CHUNK = 4_000_000


def mc_means(fit: Fit, rows: Any, n_draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(S, n)`` conditional and Monte Carlo marginal means of the rows."""
    post = fit.posterior
    S = int(post.sizes["chain"] * post.sizes["draw"])
    link = str(fit.spec.link)
    if rows.X.shape[1]:
        beta = fixed_effect_draws(fit).values.reshape(S, -1)
        fixed = beta @ rows.X.T
    else:
        fixed = np.zeros((S, rows.n))
    if rows.offset is not None:
        fixed = fixed + rows.offset
    chols = [group_cov_cholesky(fit, gr.design.name) for gr in rows.groups]
    conditional = inverse_link(link, fixed)
    marginal = np.empty_like(conditional)
    step = max(1, _MC_CHUNK // (n_draws * rows.n))
    for start in range(0, S, step):
        sl = slice(start, min(S, start + step))
        c = sl.stop - sl.start
        re = np.zeros((c, n_draws, rows.n))
        for gr, L in zip(rows.groups, chols, strict=True):
            z = rng.standard_normal((c, n_draws, L.shape[1]))
            u = np.einsum("cqr,cmr->cmq", L[sl], z)
            re += np.einsum("cmq,nq->cmn", u, gr.Z)
        marginal[sl] = inverse_link(link, fixed[sl][:, None, :] + re).mean(axis=1)
    return conditional, marginal


def _random_variance(fit: Fit, rows: Any) -> np.ndarray:
    r"""``(S, n)`` variance :math:`\sum_k z_{ik}^\top \Omega_k z_{ik}` of each row's random part."""
    post = fit.posterior
    out = np.zeros((int(post.sizes["chain"] * post.sizes["draw"]), rows.n))
    for gr in rows.groups:
        L = group_cov_cholesky(fit, gr.design.name)
        out += (np.einsum("sqr,nq->snr", L, gr.Z) ** 2).sum(axis=-1)
    return out


def _effect(p1: np.ndarray, p0: np.ndarray, measure: str) -> np.ndarray:
    if measure == "odds_ratio":
        return (p1 / (1 - p1)) / (p0 / (1 - p0))
    if measure == "rate_ratio":
        return p1 / p0
    return p1 - p0


def population_averaged(
    fit: Fit,
    data: pd.DataFrame | dict[str, Any] | None = None,
    *,
    coef: str | None = None,
    at: tuple[float, float] = (0.0, 1.0),
    n_draws: int = 200,
    random_seed: int | np.random.Generator | None = None,
    prob: float = DEFAULT_PROB,
) -> PopulationAveraged:
    r"""Marginal (population-averaged) mean responses next to the conditional (:math:`u = 0`) ones.

    See the module docstring for what the two mean. For each posterior draw the random effects
    of every term are drawn ``n_draws`` times from :math:`N(0, \Omega_k)` and the inverse link
    is averaged (Monte Carlo integration); the conditional mean sets :math:`u = 0`.

    Parameters
    ----------
    fit
        A fitted model (any family; for the identity link both are equal).
    data
        Covariate values: a DataFrame or a dict of columns (scalars give one row), with the
        columns of the fixed part (and of random slopes; grouping factors are not needed).
        ``None`` uses the fit's own rows (cost grows with rows x draws x ``n_draws``).
    coef
        A numeric predictor column; if given, ``effects`` compares each row with ``coef`` set
        to ``at[1]`` against ``at[0]`` (e.g. ``kid2p`` 1 vs 0): the conditional odds ratio
        (:math:`e^{\beta}` for a logit model without interactions) next to the
        population-averaged one.
    at
        The two values of ``coef`` to compare.
    n_draws
        Monte Carlo draws of :math:`u` per posterior draw (Monte Carlo sd of a marginal
        probability at one draw is at most :math:`0.5/\sqrt{n\_draws}`; far less for the
        posterior mean, which also averages over draws).
    random_seed
        Seed or generator for the Monte Carlo draws.
    prob
        Interval probability.

    Returns
    -------
    PopulationAveraged
    """
    check_prob(prob)
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1; received {n_draws}.")
    rng = np.random.default_rng(random_seed)
    frame = fit.design.data if data is None else as_frame(data)
    frame = frame.copy()
    for g in fit.design.groups:  # levels are integrated over, so the factors need not be given
        for col in g.term.factor:
            if col not in frame.columns:
                frame[col] = "__population__"
    frames = [frame]
    measure = None
    if coef is not None:
        if coef not in frame.columns:
            raise DataError(
                f"coef={coef!r} is not a column of the data; columns: {', '.join(map(str, frame.columns))}."
            )
        lo, hi = frame.copy(), frame.copy()
        lo[coef], hi[coef] = at[0], at[1]
        frames += [lo, hi]
        measure = get_family(fit.spec.family).effect_measure
    stacked = pd.concat(frames, ignore_index=True)
    rows = prediction_rows(fit, stacked)
    n = len(frame)
    if coef is not None and np.array_equal(rows.X[n : 2 * n], rows.X[2 * n :]):
        raise SpecError(
            f"coef={coef!r} does not enter the fixed part of this model ({fit.spec.formula()}); "
            "changing it changes nothing."
        )
    cond, marg = mc_means(fit, rows, n_draws, rng)
    tau2 = _random_variance(fit, rows)[:, :n]
    post = fit.posterior
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    coords = {"chain": post.coords["chain"].values, "draw": post.coords["draw"].values, "obs": rows.obs[:n]}

    def as_da(values: np.ndarray, name: str) -> xr.DataArray:
        return xr.DataArray(values.reshape(chains, draws, -1), dims=("chain", "draw", "obs"), coords=coords, name=name)

    table_rows = []
    for i in range(n):
        c, m = interval_stats(cond[:, i], prob, median=True), interval_stats(marg[:, i], prob, median=True)
        table_rows.append(
            {f"conditional_{k}": c[k] for k in ("mean", "lower", "upper")}
            | {f"marginal_{k}": m[k] for k in ("mean", "lower", "upper")}
        )
    table = pd.DataFrame(table_rows, index=frame.index)
    effects = None
    if coef is not None and measure is not None:
        ce = _effect(cond[:, 2 * n :], cond[:, n : 2 * n], measure)
        me = _effect(marg[:, 2 * n :], marg[:, n : 2 * n], measure)
        eff_rows = []
        for i in range(n):
            c, m = interval_stats(ce[:, i], prob, median=True), interval_stats(me[:, i], prob, median=True)
            row: dict[str, object] = {"measure": measure}
            row |= {f"conditional_{k}": c[k] for k in ("mean", "lower", "upper")}
            row |= {f"marginal_{k}": m[k] for k in ("mean", "lower", "upper")}
            if measure == "odds_ratio":
                row["attenuation"] = float(np.mean(np.log(me[:, i])) / np.mean(np.log(ce[:, i])))
                if fit.spec.link == "logit":
                    row["approx_attenuation"] = float(np.mean(1.0 / np.sqrt(1.0 + ATTENUATION_C**2 * tau2[:, i])))
            eff_rows.append(row)
        effects = pd.DataFrame(eff_rows, index=frame.index)
    return PopulationAveraged(
        table=table,
        conditional=as_da(cond[:, :n], "conditional"),
        marginal=as_da(marg[:, :n], "marginal"),
        effects=effects,
        n_draws=n_draws,
        prob=prob,
    )
