r"""Overdispersed counts: :math:`y_i \sim \mathrm{NegBin}(\lambda_i, \alpha)`.

:math:`\mathrm{Var} = \lambda + \lambda^2/\alpha`, :math:`\log \lambda_i = \eta_i`.

The shape gets :math:`1/\alpha \sim \mathrm{Exponential}(1)`. Latent-scale residual variance:
:math:`\log(1 + 1/\lambda + 1/\alpha)` (log-normal approximation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from hierbayes.families._base import LikelihoodText, Observed
from hierbayes.families.poisson import MAX_RATE, CountsBase

__all__ = ["NegativeBinomial"]


class NegativeBinomial(CountsBase):
    """Overdispersed counts, shape ``alpha``."""

    name: ClassVar[str] = "negative_binomial"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("alpha",)``."""
        return ("alpha",)

    def _alpha(self, params: Mapping[str, Any] | None) -> Any:
        assert params is not None
        return params["alpha"]

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``1/alpha ~ Exponential(1)``, ``y ~ NegBin(exp(eta), alpha)``."""
        assert obs.y is not None
        inv_alpha = pm.Exponential("inv_alpha", 1.0)
        alpha = pm.Deterministic("alpha", 1.0 / inv_alpha)
        pm.NegativeBinomial("y", mu=pt.exp(eta), alpha=alpha, observed=obs.y.astype(np.int64), dims="obs")

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``nbinom.logpmf(y, alpha, alpha / (alpha + mu))``."""
        a = params["alpha"]
        return stats.nbinom.logpmf(y, a, a / (a + np.exp(eta)))

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Negative binomial draws."""
        a = params["alpha"]
        # As a gamma-Poisson mixture: numpy's negative_binomial fails for a huge shape.
        return rng.poisson(np.minimum(rng.gamma(a, np.exp(eta) / a), MAX_RATE))

    def response_variance(self, mu: np.ndarray, params: Mapping[str, np.ndarray], obs: Observed) -> np.ndarray:
        r""":math:`\lambda + \lambda^2/\alpha`."""
        return mu + mu**2 / params["alpha"]

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``1/α ~ Exponential(mean = 1)``."""
        return (("1/α", "Exponential(mean = 1)"),)

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ NegativeBinomial(λ, α)``."""
        return LikelihoodText("NegativeBinomial", "λ", ("α",))
