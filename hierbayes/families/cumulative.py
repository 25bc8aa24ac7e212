r"""Ordinal responses (Likert items, grades): the cumulative model with ordered cutpoints.

For categories :math:`0, 1, \dots, K-1` and ordered cutpoints :math:`c_0 < \dots < c_{K-2}`,

.. math::

    P(y_i \le k) = F(c_k - \eta_i), \qquad
    P(y_i = k) = F(c_k - \eta_i) - F(c_{k-1} - \eta_i),

with :math:`c_{-1} = -\infty`, :math:`c_{K-1} = +\infty` and :math:`F` the standard logistic
(``link="logit"``, the proportional-odds model) or normal (``"probit"``) cdf. Equivalently
:math:`y_i = k` when a latent :math:`y^*_i = \eta_i + \varepsilon_i` falls between
:math:`c_{k-1}` and :math:`c_k`. The cutpoints take the place of the fixed intercept: a spec of
this family has none (as in brms and ``MASS::polr``); random intercepts stay.

Prior: the cutpoints are independent :math:`N(0, 2.5^2)` restricted to the ordered region, i.e.
the order statistics of :math:`K-1` normal draws. They are sampled as ``cutpoints_raw``
(unconstrained) and reported sorted as ``cutpoints`` (dim ``cutpoint``, labelled ``"0|1"``,
``"1|2"``, ...), which is exactly that prior and lets prior-predictive draws (and SBC) use it.

The response is an ordered pandas Categorical (its codes are used; the categories up to the
highest observed one must all be observed, and unobserved top categories are not modelled) or
integers :math:`0..K-1` (write ``y - 1``, as a data column, for a 1..K scale).
Latent-scale residual variance: :math:`\pi^2/3` (logit) or 1 (probit), the variance of
:math:`\varepsilon`. The expected response (``predict(kind="mean")``) is the expected category
:math:`\sum_k k\, P(y_i = k)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy import special

from hierbayes.exceptions import DataError
from hierbayes.families._base import Family, LikelihoodText, Observed, show_rows
from hierbayes.families.links import latent_variance

__all__ = ["CUTPOINT_PRIOR_SD", "Cumulative"]

#: The sd of the normal prior of each cutpoint.
CUTPOINT_PRIOR_SD = 2.5


def _cdf(link: str, x: np.ndarray) -> np.ndarray:
    return special.expit(x) if link == "logit" else special.ndtr(x)


class Cumulative(Family):
    """Ordinal response, cumulative logit or probit model with ordered cutpoints."""

    name: ClassVar[str] = "cumulative"
    links: ClassVar[tuple[str, ...]] = ("logit", "probit")
    discrete: ClassVar[bool] = True
    effect_measure: ClassVar[str] = "odds_ratio"
    fixed_intercept: ClassVar[bool] = False

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("cutpoints",)`` (a vector, dim ``cutpoint``)."""
        return ("cutpoints",)

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Codes of an ordered Categorical, or integers 0..K-1; at least 3 categories, all observed."""
        series = data[response]
        if isinstance(series.dtype, pd.CategoricalDtype):
            if not series.cat.ordered:
                raise DataError(
                    f"Column {response!r} is an unordered Categorical; the cumulative family needs the order of "
                    f"the categories: data[{response!r}] = data[{response!r}].cat.as_ordered() (check the order "
                    "of .cat.categories), or pd.Categorical(values, categories=[...], ordered=True)."
                )
            y = series.cat.codes.to_numpy().astype(float)
        else:
            if not pd.api.types.is_numeric_dtype(series) or series.dtype == bool:
                raise DataError(
                    f"The cumulative family needs ordered categories in column {response!r}: integers 0..K-1 or an "
                    f"ordered Categorical; it has dtype {series.dtype} (e.g. {series.iloc[0]!r}). Use "
                    "pd.Categorical(values, categories=[...in order...], ordered=True)."
                )
            y = series.to_numpy(dtype=float)
            bad = (y < 0) | (y != np.round(y))
            if bad.any():
                raise DataError(
                    f"The cumulative family needs integer categories 0..K-1 in column {response!r}. "
                    f"{show_rows(data, bad, [response])} For a 1..K scale subtract 1 in the data."
                )
        return y, None

    def check_fitted_response(self, y: np.ndarray, response: str) -> None:
        """The fitted data: at least 3 categories, every one of 0..max observed."""
        missing = sorted(set(range(int(y.max()) + 1)) - set(y.astype(int)))
        if missing:
            raise DataError(
                f"Categories (codes) {missing} of column {response!r} (0..{int(y.max())}) are never observed; their "
                "cutpoints cannot be estimated. Recode to consecutive integers 0..K-1, or drop unused categories "
                f"(data[{response!r}].cat.remove_unused_categories())."
            )
        if int(y.max()) < 2:
            raise DataError(
                f"Column {response!r} has {int(y.max()) + 1} categories; the cumulative family needs at least 3 "
                "(use family='bernoulli' for two)."
            )

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """Ordered cutpoints (sorted iid normals) and ``y ~ OrderedLogistic/OrderedProbit(eta, cutpoints)``."""
        assert obs.y is not None
        n_cut = int(obs.y.max())
        model = pm.modelcontext(None)
        model.add_coord("cutpoint", [f"{k}|{k + 1}" for k in range(n_cut)])
        # No initval: pm.observe (SBC refits) cannot carry one; the samplers' jitter separates the cutpoints.
        raw = pm.Normal("cutpoints_raw", 0.0, CUTPOINT_PRIOR_SD, dims="cutpoint")
        cutpoints = pm.Deterministic("cutpoints", pt.sort(raw), dims="cutpoint")
        y = obs.y.astype(np.int64)
        if link == "logit":
            pm.OrderedLogistic("y", eta=eta, cutpoints=cutpoints, compute_p=False, observed=y, dims="obs")
        else:
            pm.OrderedProbit("y", eta=eta, cutpoints=cutpoints, sigma=1.0, compute_p=False, observed=y, dims="obs")

    @staticmethod
    def _cumulative(eta: np.ndarray, link: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """``P(y <= k)`` for k = -1..K-1 along a last axis (0 first, 1 last)."""
        c = np.asarray(params["cutpoints"], dtype=float)
        if c.ndim == np.ndim(eta):  # (draws, K-1) without the row axis
            c = c[..., None, :]
        F = _cdf(link, c - np.asarray(eta)[..., None])
        zeros = np.zeros((*F.shape[:-1], 1))
        return np.concatenate([zeros, F, zeros + 1.0], axis=-1)

    def probabilities(self, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """``P(y = k)`` for k = 0..K-1 along a last axis."""
        return np.diff(self._cumulative(eta, link, params), axis=-1)

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``log(F(c_y - eta) - F(c_{y-1} - eta))``."""
        p = self.probabilities(eta, link, params)
        k = np.broadcast_to(np.asarray(y, dtype=np.int64), p.shape[:-1])[..., None]
        with np.errstate(divide="ignore"):
            return np.log(np.take_along_axis(p, k, axis=-1)[..., 0])

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Categories 0..K-1: the number of cutpoints below a latent draw ``eta + noise``."""
        c = np.asarray(params["cutpoints"], dtype=float)
        if c.ndim == np.ndim(eta):
            c = c[..., None, :]
        noise = rng.logistic(size=np.shape(eta)) if link == "logit" else rng.standard_normal(np.shape(eta))
        return ((np.asarray(eta) + noise)[..., None] > c).sum(axis=-1).astype(np.int64)

    def response_mean(self, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        r"""The expected category :math:`\sum_k k\, P(y = k)`."""
        p = self.probabilities(eta, link, params)
        return (p * np.arange(p.shape[-1])).sum(axis=-1)

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        r""":math:`\pi^2/3` (logit) or 1 (probit): :func:`hierbayes.families.links.latent_variance`."""
        return latent_variance(link)

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The latent scale of :math:`y^*`."""
        resid = f"pi^2/3 = {latent_variance(link):.4f}" if link == "logit" else "1"
        return f"latent scale (cumulative, {link} link; residual variance {resid})"

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """Cutpoints: sorted iid ``N(0, 2.5²)``."""
        return (("cutpoints", f"ordered N(0, {CUTPOINT_PRIOR_SD}²)"),)

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ Cumulative(η, c)``."""
        return LikelihoodText("Cumulative", "η", ("c",))
