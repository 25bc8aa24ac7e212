r"""Positive, right-skewed responses (reaction times, incomes): :math:`\log y_i \sim N(\eta_i, \sigma^2)`.

The linear predictor is the mean (and :math:`e^{\eta}` the median) of :math:`\log y`, identity
link as in brms; the expected response is :math:`E[y] = e^{\eta + \sigma^2/2}`
(:meth:`LogNormal.response_mean`, what ``predict(kind="mean")`` returns). The default priors are
scaled to :math:`\log y` (its sd :math:`s_{\log y}` and mean), exactly as the Gaussian family's
are to :math:`y`; :math:`\sigma \sim t^+_3(0, 2.5\, s_{\log y})`. Variance partitions are on the
log scale with residual variance :math:`\sigma^2`. Equivalent to the Gaussian family on
``log(y) ~ ...`` (whose log-likelihood carries the same Jacobian); the collapsed sampler is used
only by that Gaussian spelling (``collapses`` is ``False`` here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from hierbayes.exceptions import DataError
from hierbayes.families._base import Family, LikelihoodText, Observed, as_float, scale_rv, show_rows

__all__ = ["LogNormal", "check_positive"]


def check_positive(data: pd.DataFrame, response: str, family: str) -> np.ndarray:
    """The response as floats, all strictly positive; else a :class:`DataError` with the rows."""
    y = as_float(data, response, family)
    bad = ~(y > 0)
    if bad.any():
        raise DataError(
            f"The {family} family needs a strictly positive response, but column {response!r} has zeros or "
            f"negative values. {show_rows(data, bad, [response])} Use a family that allows zeros "
            "(a hurdle or zero-inflated model), or shift the response if zeros are measurement limits."
        )
    return y


class LogNormal(Family):
    """Log-normal response: ``log(y) ~ Normal(eta, sigma)``."""

    name: ClassVar[str] = "lognormal"
    links: ClassVar[tuple[str, ...]] = ("identity",)
    discrete: ClassVar[bool] = False
    data_scaled_priors: ClassVar[bool] = True
    effect_measure: ClassVar[str] = "difference"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("sigma",)`` (the sd of ``log y``)."""
        return ("sigma",)

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Strictly positive numbers."""
        return check_positive(data, response, self.name), None

    def prior_response(self, y: np.ndarray) -> np.ndarray:
        """``log y``: the default priors are scaled to the log of the response."""
        return np.log(y)

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``y ~ LogNormal(eta, sigma)``."""
        sigma = scale_rv("sigma", (sigma_prior,), None)
        pm.LogNormal("y", mu=eta, sigma=sigma, observed=obs.y, dims="obs")

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``lognorm.logpdf(y, s=sigma, scale=exp(eta))``."""
        return stats.lognorm.logpdf(y, s=params["sigma"], scale=np.exp(eta))

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``exp(Normal(eta, sigma))`` draws."""
        return np.exp(rng.normal(eta, params["sigma"]))

    def response_mean(self, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        r""":math:`E[y] = e^{\eta + \sigma^2/2}`."""
        return np.exp(eta + np.asarray(params["sigma"]) ** 2 / 2)

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        r""":math:`\sigma^2` on the log scale."""
        assert params is not None
        return np.asarray(params["sigma"]) ** 2

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The log scale."""
        return "log scale (lognormal: variances of log y; residual variance sigma^2)"

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ LogNormal(η, σ²)``."""
        return LikelihoodText("LogNormal", "η", ("σ²",))
