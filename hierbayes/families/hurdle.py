r"""Hurdle counts: zeros from one process, positive counts from a zero-truncated Poisson or negative binomial.

.. math::

    P(y_i = 0) = h, \qquad
    P(y_i = k) = (1 - h)\, \frac{f(k \mid \lambda_i)}{1 - f(0 \mid \lambda_i)} \quad (k > 0),

with :math:`\log \lambda_i = \eta_i` the log mean of the untruncated count distribution,
:math:`f` the Poisson or negative binomial pmf and :math:`h` (``hu``, as brms calls it) the
probability of a zero, :math:`h \sim \mathrm{Beta}(1, 1)`; the negative binomial's shape gets
:math:`1/\alpha \sim \mathrm{Exponential}(1)`. Unlike zero inflation, every zero comes from the
hurdle. The expected count is :math:`(1 - h)\lambda_i / (1 - f(0 \mid \lambda_i))`. No
latent-scale residual variance is defined, so variance partitions are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import stats

from hierbayes.exceptions import SpecError
from hierbayes.families._base import LikelihoodText, Observed
from hierbayes.families.poisson import CountsBase

__all__ = ["HurdleNegativeBinomial", "HurdlePoisson"]


class _Hurdle(CountsBase):
    """Shared: the hurdle probability ``hu``, the log-likelihood and draws of the truncated counts."""

    def _logpmf(self, y: Any, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _draws(self, rng: np.random.Generator, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``log(hu)`` at zeros, ``log(1 - hu) + log f(y) - log(1 - f(0))`` elsewhere."""
        hu = np.asarray(params["hu"], dtype=float)
        lam = np.exp(eta)
        log_f0 = self._logpmf(0, lam, params)
        positive = np.log1p(-hu) + self._logpmf(y, lam, params) - np.log(-np.expm1(log_f0))
        return np.where(np.asarray(y) == 0, np.log(hu), positive)

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Zero with probability ``hu``; else a zero-truncated count (redrawn until positive)."""
        lam = np.broadcast_to(np.exp(eta), np.shape(eta))
        out = self._draws(rng, lam, params)
        zero = out == 0
        for _ in range(1000):  # rejection sampling of the truncated counts
            if not zero.any():
                break
            out[zero] = self._draws(rng, lam, params)[zero]
            zero = out == 0
        out[zero] = 1  # lambda so small that a positive draw is (numerically) never seen: its mode
        hu = np.broadcast_to(np.asarray(params["hu"], dtype=float), np.shape(eta))
        return np.where(rng.random(np.shape(eta)) < hu, 0, out).astype(np.int64)

    def response_mean(self, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        r""":math:`(1 - h)\lambda / (1 - f(0 \mid \lambda))`."""
        lam = np.exp(eta)
        return (1.0 - np.asarray(params["hu"])) * lam / -np.expm1(self._logpmf(0, lam, params))

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        """None is defined: a clear :class:`SpecError`."""
        raise SpecError(
            f"The {self.name} family has no latent-scale residual variance (zeros and counts come from two "
            "processes), so variance partitions and ICCs are not defined for it. Report the random-effect sds "
            "(log scale of the count part) from hb.summary instead."
        )

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The log scale of the count part; no residual variance."""
        return f"latent scale ({self.name}, log link of the count part; no residual variance is defined, so no ICC)"


class HurdlePoisson(_Hurdle):
    """Hurdle Poisson counts, probability of a zero ``hu``."""

    name: ClassVar[str] = "hurdle_poisson"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("hu",)``."""
        return ("hu",)

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``hu ~ Beta(1, 1)``, ``y ~ HurdlePoisson(psi = 1 - hu, exp(eta))``."""
        assert obs.y is not None
        hu = pm.Beta("hu", 1.0, 1.0)
        pm.HurdlePoisson("y", psi=1.0 - hu, mu=pt.exp(eta), observed=obs.y.astype(np.int64), dims="obs")

    def _logpmf(self, y: Any, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        return stats.poisson.logpmf(y, lam)

    def _draws(self, rng: np.random.Generator, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        return rng.poisson(lam)

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``hu ~ Beta(1, 1)``."""
        return (("hu", "Beta(1, 1)"),)

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ HurdlePoisson(λ, hu)``."""
        return LikelihoodText("HurdlePoisson", "λ", ("hu",))


class HurdleNegativeBinomial(_Hurdle):
    """Hurdle negative binomial counts: ``hu`` and the shape ``alpha``."""

    name: ClassVar[str] = "hurdle_negative_binomial"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("hu", "alpha")``."""
        return ("hu", "alpha")

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``hu ~ Beta(1, 1)``, ``1/alpha ~ Exponential(1)``, ``y ~ HurdleNegativeBinomial``."""
        assert obs.y is not None
        hu = pm.Beta("hu", 1.0, 1.0)
        inv_alpha = pm.Exponential("inv_alpha", 1.0)
        alpha = pm.Deterministic("alpha", 1.0 / inv_alpha)
        pm.HurdleNegativeBinomial(
            "y", psi=1.0 - hu, mu=pt.exp(eta), alpha=alpha, observed=obs.y.astype(np.int64), dims="obs"
        )

    def _alpha(self, params: Mapping[str, Any] | None) -> Any:
        assert params is not None
        return params["alpha"]

    def _logpmf(self, y: Any, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        a = params["alpha"]
        return stats.nbinom.logpmf(y, a, a / (a + lam))

    def _draws(self, rng: np.random.Generator, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        a = np.broadcast_to(params["alpha"], np.shape(lam))
        return rng.negative_binomial(a, a / (a + lam))

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``hu ~ Beta(1, 1)``, ``1/α ~ Exponential(1)``."""
        return (("hu", "Beta(1, 1)"), ("1/α", "Exponential(mean = 1)"))

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ HurdleNegativeBinomial(λ, α, hu)``."""
        return LikelihoodText("HurdleNegativeBinomial", "λ", ("α", "hu"))
