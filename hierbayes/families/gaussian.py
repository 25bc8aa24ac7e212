r"""The Gaussian family: :math:`y_i \sim N(\eta_i, \sigma^2)`, identity link.

The residual sd :math:`\sigma` gets a scale prior (default :math:`t^+_3(0, 2.5\, s_y)`), or is
known per row (``y | se(s)``, eight-schools style). The only family whose random effects
integrate out in closed form: the collapsed sampler and GLS shrinkage apply. Variance
partitions are on the data scale with residual variance :math:`\sigma^2`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from hierbayes.families._base import Family, LikelihoodText, Observed, as_float, scale_rv

__all__ = ["Gaussian"]


class Gaussian(Family):
    """Normal response, identity link, residual sd ``sigma`` (or known per row)."""

    name: ClassVar[str] = "gaussian"
    links: ClassVar[tuple[str, ...]] = ("identity",)
    discrete: ClassVar[bool] = False
    collapses: ClassVar[bool] = True
    data_scaled_priors: ClassVar[bool] = True

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("sigma",)``, or nothing when the residual sd is known per row."""
        return () if known_sigma else ("sigma",)

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Any real numbers."""
        return as_float(data, response, self.name), None

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``y ~ Normal(eta, sigma)`` with ``sigma`` known per row or drawn from ``sigma_prior``."""
        sigma = obs.known_sigma if obs.known_sigma is not None else scale_rv("sigma", (sigma_prior,), None)
        pm.Normal("y", mu=eta, sigma=sigma, observed=obs.y, dims="obs")

    @staticmethod
    def _sigma(params: Mapping[str, np.ndarray], obs: Observed) -> np.ndarray:
        return obs.known_sigma[None, :] if obs.known_sigma is not None else params["sigma"]

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``norm.logpdf(y, eta, sigma)``."""
        return stats.norm.logpdf(y, loc=eta, scale=self._sigma(params, obs))

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Normal draws around ``eta``."""
        return rng.normal(eta, self._sigma(params, obs))

    def response_variance(self, mu: np.ndarray, params: Mapping[str, np.ndarray], obs: Observed) -> np.ndarray:
        r""":math:`\sigma^2` (or the known sampling variance of each row)."""
        return np.broadcast_to(self._sigma(params, obs) ** 2, mu.shape)

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        r""":math:`\sigma^2` (the data scale is the latent scale)."""
        assert params is not None
        return np.asarray(params["sigma"]) ** 2

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The data scale; with a known sd, the residual is the average known sampling variance."""
        if known_sigma is not None:
            return (
                "data scale (gaussian, identity link; residual = average known sampling variance "
                f"mean({known_sigma}^2))"
            )
        return "data scale (gaussian, identity link)"

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ Normal(η, σ²)``."""
        return LikelihoodText("Normal", "η", ("σ²",))
