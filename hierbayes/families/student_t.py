r"""Heavy-tailed continuous responses: :math:`y_i \sim t_\nu(\eta_i, \sigma)`, identity link.

Location :math:`\eta_i`, scale :math:`\sigma` (the data-scaled default
:math:`t^+_3(0, 2.5\, s_y)`, as the Gaussian's residual sd, or known per row with
``y | se(s)``) and degrees of freedom :math:`\nu \sim \mathrm{Gamma}(2, 0.1)` (brms's default;
mean 20, most mass between 2 and 50). Latent-scale residual variance (ICCs on the data scale):
the variance of the t distribution, :math:`\sigma^2 \nu/(\nu - 2)`, defined for :math:`\nu > 2`
(NaN for draws with :math:`\nu \le 2`, where the variance is infinite).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from hierbayes.families._base import Family, LikelihoodText, Observed, as_float, scale_rv

__all__ = ["StudentT"]


class StudentT(Family):
    """Student-t response, identity link, scale ``sigma`` and degrees of freedom ``nu``."""

    name: ClassVar[str] = "student_t"
    links: ClassVar[tuple[str, ...]] = ("identity",)
    discrete: ClassVar[bool] = False
    data_scaled_priors: ClassVar[bool] = True

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("sigma", "nu")``, or ``("nu",)`` when the scale is known per row."""
        return ("nu",) if known_sigma else ("sigma", "nu")

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Any real numbers."""
        return as_float(data, response, self.name), None

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``nu ~ Gamma(2, 0.1)``, ``y ~ StudentT(nu, eta, sigma)``."""
        sigma = obs.known_sigma if obs.known_sigma is not None else scale_rv("sigma", (sigma_prior,), None)
        nu = pm.Gamma("nu", alpha=2.0, beta=0.1)
        pm.StudentT("y", nu=nu, mu=eta, sigma=sigma, observed=obs.y, dims="obs")

    @staticmethod
    def _sigma(params: Mapping[str, np.ndarray], obs: Observed) -> np.ndarray:
        return obs.known_sigma[None, :] if obs.known_sigma is not None else params["sigma"]

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``t.logpdf(y, nu, eta, sigma)``."""
        return stats.t.logpdf(y, df=params["nu"], loc=eta, scale=self._sigma(params, obs))

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``eta + sigma * t_nu`` draws."""
        nu = np.broadcast_to(params["nu"], eta.shape)
        return eta + self._sigma(params, obs) * rng.standard_t(nu)

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        r""":math:`\sigma^2 \nu / (\nu - 2)` for :math:`\nu > 2`, NaN otherwise."""
        assert params is not None
        nu = np.asarray(params["nu"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(nu > 2, np.asarray(params["sigma"]) ** 2 * nu / (nu - 2), np.nan)

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The data scale; the residual variance is the t distribution's."""
        return "data scale (student_t, identity link; residual variance sigma^2 nu/(nu - 2), defined for nu > 2)"

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``ν ~ Gamma(2, 0.1)``."""
        return (("ν", "Gamma(2, 0.1)"),)

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ StudentT(ν, η, σ)``."""
        return LikelihoodText("StudentT", "η", ("σ", "ν"))
