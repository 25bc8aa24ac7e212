r"""Zero-inflated counts: a point mass at zero mixed with a Poisson or negative binomial.

.. math::

    P(y_i = 0) = \pi + (1 - \pi)\, f(0 \mid \lambda_i), \qquad
    P(y_i = k) = (1 - \pi)\, f(k \mid \lambda_i) \quad (k > 0),

with :math:`\log \lambda_i = \eta_i` (offsets allowed), :math:`f` the Poisson or negative
binomial pmf and :math:`\pi` (``zi``) the probability of a structural zero, with the prior
:math:`\pi \sim \mathrm{Beta}(1, 1)` (uniform). The negative binomial's shape gets
:math:`1/\alpha \sim \mathrm{Exponential}(1)` as in the plain family. The expected count is
:math:`(1 - \pi)\lambda_i`; comparing two predictions gives a rate ratio. No latent-scale
residual variance is defined for a zero-inflated mixture, so variance partitions are refused
with an error that says so.
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

__all__ = ["ZeroInflatedNegativeBinomial", "ZeroInflatedPoisson"]


class _ZeroInflated(CountsBase):
    """Shared: the zero-inflation probability ``zi`` and the mixture's log-likelihood."""

    def _count_logpmf(self, y: np.ndarray, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _count_draws(self, rng: np.random.Generator, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``log(zi + (1 - zi) f(0))`` at zeros, ``log(1 - zi) + log f(y)`` elsewhere."""
        zi = np.asarray(params["zi"], dtype=float)
        count = self._count_logpmf(y, np.exp(eta), params)
        zero = np.logaddexp(np.log(zi), np.log1p(-zi) + count)
        return np.where(np.asarray(y) == 0, zero, np.log1p(-zi) + count)

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """A structural zero with probability ``zi``, else a count draw."""
        zi = np.broadcast_to(np.asarray(params["zi"], dtype=float), np.shape(eta))
        counts = self._count_draws(rng, np.exp(eta), params)
        return np.where(rng.random(np.shape(eta)) < zi, 0, counts).astype(np.int64)

    def response_mean(self, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        r""":math:`(1 - \pi)\lambda`."""
        return (1.0 - np.asarray(params["zi"])) * np.exp(eta)

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        """None is defined: a clear :class:`SpecError`."""
        raise SpecError(
            f"The {self.name} family has no latent-scale residual variance (a zero-inflated mixture has no "
            "single latent scale), so variance partitions and ICCs are not defined for it. Report the "
            "random-effect sds (log scale of the count part) from hb.summary instead."
        )

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The log scale of the count part; no residual variance."""
        return f"latent scale ({self.name}, log link of the count part; no residual variance is defined, so no ICC)"


class ZeroInflatedPoisson(_ZeroInflated):
    """Zero-inflated Poisson counts, zero-inflation probability ``zi``."""

    name: ClassVar[str] = "zero_inflated_poisson"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("zi",)``."""
        return ("zi",)

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``zi ~ Beta(1, 1)``, ``y ~ ZeroInflatedPoisson(psi = 1 - zi, exp(eta))``."""
        assert obs.y is not None
        zi = pm.Beta("zi", 1.0, 1.0)
        pm.ZeroInflatedPoisson("y", psi=1.0 - zi, mu=pt.exp(eta), observed=obs.y.astype(np.int64), dims="obs")

    def _count_logpmf(self, y: np.ndarray, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        return stats.poisson.logpmf(y, lam)

    def _count_draws(self, rng: np.random.Generator, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        return rng.poisson(lam)

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``zi ~ Beta(1, 1)``."""
        return (("zi", "Beta(1, 1)"),)

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ ZeroInflatedPoisson(λ, zi)``."""
        return LikelihoodText("ZeroInflatedPoisson", "λ", ("zi",))


class ZeroInflatedNegativeBinomial(_ZeroInflated):
    """Zero-inflated negative binomial counts: ``zi`` and the shape ``alpha``."""

    name: ClassVar[str] = "zero_inflated_negative_binomial"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("zi", "alpha")``."""
        return ("zi", "alpha")

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``zi ~ Beta(1, 1)``, ``1/alpha ~ Exponential(1)``, ``y ~ ZeroInflatedNegativeBinomial``."""
        assert obs.y is not None
        zi = pm.Beta("zi", 1.0, 1.0)
        inv_alpha = pm.Exponential("inv_alpha", 1.0)
        alpha = pm.Deterministic("alpha", 1.0 / inv_alpha)
        pm.ZeroInflatedNegativeBinomial(
            "y", psi=1.0 - zi, mu=pt.exp(eta), alpha=alpha, observed=obs.y.astype(np.int64), dims="obs"
        )

    def _alpha(self, params: Mapping[str, Any] | None) -> Any:
        assert params is not None
        return params["alpha"]

    def _count_logpmf(self, y: np.ndarray, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        a = params["alpha"]
        return stats.nbinom.logpmf(y, a, a / (a + lam))

    def _count_draws(self, rng: np.random.Generator, lam: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        a = np.broadcast_to(params["alpha"], np.shape(lam))
        return rng.negative_binomial(a, a / (a + lam))

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``zi ~ Beta(1, 1)``, ``1/α ~ Exponential(1)``."""
        return (("zi", "Beta(1, 1)"), ("1/α", "Exponential(mean = 1)"))

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ ZeroInflatedNegativeBinomial(λ, α, zi)``."""
        return LikelihoodText("ZeroInflatedNegativeBinomial", "λ", ("α", "zi"))
