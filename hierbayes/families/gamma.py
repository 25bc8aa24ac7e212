r"""Positive, right-skewed responses: the gamma family.

:math:`y_i \sim \mathrm{Gamma}(\text{shape } \alpha, \text{mean } \mu_i)`, :math:`\log \mu_i = \eta_i`.

:math:`\mathrm{Var}(y_i) = \mu_i^2/\alpha` (constant coefficient of variation
:math:`1/\sqrt\alpha`). The shape gets :math:`1/\alpha \sim \mathrm{Exponential}(1)` (the same
choice as the negative binomial's; the squared coefficient of variation is about 1 a priori),
not brms's :math:`\mathrm{Gamma}(0.01, 0.01)`. Latent-scale residual variance: the exact
variance of :math:`\log y` given :math:`\mu`, :math:`\psi_1(\alpha)` (the trigamma function;
Nakagawa, Johnson & Schielzeth 2017). Comparing two predictions gives a ratio of means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy import special, stats

from hierbayes.families._base import Family, LikelihoodText, Observed
from hierbayes.families.lognormal import check_positive

__all__ = ["Gamma"]


class Gamma(Family):
    """Gamma response with a log link and shape ``shape``."""

    name: ClassVar[str] = "gamma"
    links: ClassVar[tuple[str, ...]] = ("log",)
    discrete: ClassVar[bool] = False
    effect_measure: ClassVar[str] = "rate_ratio"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("shape",)``."""
        return ("shape",)

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Strictly positive numbers."""
        return check_positive(data, response, self.name), None

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``1/shape ~ Exponential(1)``, ``y ~ Gamma(shape, rate = shape / exp(eta))``."""
        inv_shape = pm.Exponential("inv_shape", 1.0)
        shape = pm.Deterministic("shape", 1.0 / inv_shape)
        pm.Gamma("y", alpha=shape, beta=shape / pt.exp(eta), observed=obs.y, dims="obs")

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``gamma.logpdf(y, shape, scale=exp(eta)/shape)``."""
        a = params["shape"]
        return stats.gamma.logpdf(y, a, scale=np.exp(eta) / a)

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Gamma draws with mean ``exp(eta)``."""
        a = params["shape"]
        return rng.gamma(np.broadcast_to(a, eta.shape), np.exp(eta) / a)

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        r""":math:`\psi_1(\alpha)`, the variance of :math:`\log y` given its mean."""
        assert params is not None
        return special.polygamma(1, np.asarray(params["shape"], dtype=float))

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The log (latent) scale."""
        return "latent scale (gamma, log link; residual variance trigamma(shape), the variance of log y)"

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``1/shape ~ Exponential(1)``."""
        return (("1/shape", "Exponential(mean = 1)"),)

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ Gamma(μ, shape)``."""
        return LikelihoodText("Gamma", "μ", ("shape",))
