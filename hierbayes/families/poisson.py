r"""Poisson counts: :math:`y_i \sim \mathrm{Poisson}(\lambda_i)`, :math:`\log \lambda_i = \eta_i`.

An offset, if any, is part of :math:`\eta`.

Latent-scale residual variance: the log-normal approximation :math:`\log(1 + 1/\lambda)`
(Poisson) and :math:`\log(1 + 1/\lambda + 1/\alpha)` (negative binomial), with :math:`\lambda` the
expected count (Nakagawa, Johnson & Schielzeth 2017). The negative binomial's shape gets
:math:`1/\alpha \sim \mathrm{Exponential}(1)`. Comparing two predictions gives a rate ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from hierbayes.exceptions import DataError
from hierbayes.families._base import Family, LikelihoodText, Observed, as_float, show_rows

__all__ = ["MAX_RATE", "CountsBase", "Poisson", "log_normal_residual_variance"]

#: numpy's Poisson sampler refuses means above about 9.2e18; absurd draws (a wild posterior) are capped.
MAX_RATE = 1e18


def log_normal_residual_variance(mean: Any, alpha: Any = None) -> float | np.ndarray:
    r""":math:`\log(1 + 1/\lambda + 1/\alpha)` (``alpha=None``: Poisson, :math:`\log(1 + 1/\lambda)`)."""
    if mean is None:
        raise ValueError(
            "The latent residual variance of a log-link model depends on the expected count: "
            "pass mean= (lambda > 0), and alpha= for the negative binomial."
        )
    lam = np.asarray(mean, dtype=float)
    extra = 0.0 if alpha is None else 1.0 / np.asarray(alpha, dtype=float)
    out = np.log1p(1.0 / lam + extra)
    return float(out) if out.ndim == 0 else out


class CountsBase(Family):
    """Shared by the count families: log link, response check, latent variance."""

    links: ClassVar[tuple[str, ...]] = ("log",)
    effect_measure: ClassVar[str] = "rate_ratio"

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Non-negative integers."""
        y = as_float(data, response, self.name)
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"The {self.name} family needs non-negative integer counts, but column {response!r} has "
                f"negative or non-integer values. {show_rows(data, bad, [response])}"
            )
        return y, None

    def _alpha(self, params: Mapping[str, Any] | None) -> Any:
        return None

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        r"""Log-normal approximation; ``mean`` is :math:`\lambda` or a function that computes it."""
        lam = mean() if isinstance(mean, Callable) else mean  # type: ignore[arg-type]
        return log_normal_residual_variance(lam, self._alpha(params))

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The latent scale with the log-normal approximation."""
        extra = " + 1/alpha" if self.parameters() else ""
        return (
            f"latent scale ({self.name}, log link; log-normal approximation of the residual variance, "
            f"log(1 + 1/lambda{extra}))"
        )


class Poisson(CountsBase):
    """Poisson counts."""

    name: ClassVar[str] = "poisson"
    aggregation: ClassVar[str | None] = "poisson"

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``y ~ Poisson(exp(eta))``."""
        assert obs.y is not None
        pm.Poisson("y", mu=pt.exp(eta), observed=obs.y.astype(np.int64), dims="obs")

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``poisson.logpmf(y, exp(eta))``."""
        return stats.poisson.logpmf(y, np.exp(eta))

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Poisson draws."""
        return rng.poisson(np.minimum(np.exp(eta), MAX_RATE))

    def response_variance(self, mu: np.ndarray, params: Mapping[str, np.ndarray], obs: Observed) -> np.ndarray:
        r""":math:`\lambda`."""
        return mu

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ Poisson(λ)``."""
        return LikelihoodText("Poisson", "λ")
