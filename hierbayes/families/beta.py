r"""Proportions strictly between 0 and 1: the beta family.

:math:`y_i \sim \mathrm{Beta}(\mu_i\phi, (1 - \mu_i)\phi)`, :math:`g(\mu_i) = \eta_i` (logit by
default, or probit).

:math:`E[y_i] = \mu_i`, :math:`\mathrm{Var}(y_i) = \mu_i(1 - \mu_i)/(1 + \phi)`. The precision
gets :math:`\phi \sim \mathrm{Gamma}(2, 0.1)` (mean 20; little mass below 1, where the density
turns U-shaped), not brms's :math:`\mathrm{Gamma}(0.01, 0.01)`. Exact 0s and 1s are refused
(use a zero/one-inflated model, or squeeze: :math:`(y(n - 1) + 0.5)/n`). There is no standard
latent-scale residual variance for the beta family, so variance partitions (ICCs) are refused;
the random-effect sds are reported on the logit scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

from hierbayes.exceptions import DataError, SpecError
from hierbayes.families._base import Family, LikelihoodText, Observed, as_float, show_rows
from hierbayes.families.links import get_link, inverse_link

__all__ = ["Beta"]


class Beta(Family):
    """Beta response, mean ``mu`` on the logit (or probit) scale, precision ``phi``."""

    name: ClassVar[str] = "beta"
    links: ClassVar[tuple[str, ...]] = ("logit", "probit")
    discrete: ClassVar[bool] = False
    effect_measure: ClassVar[str] = "difference"

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """``("phi",)``."""
        return ("phi",)

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Numbers strictly between 0 and 1."""
        y = as_float(data, response, self.name)
        bad = ~((y > 0) & (y < 1))
        if bad.any():
            raise DataError(
                f"The beta family needs a response strictly between 0 and 1, but column {response!r} has values "
                f"outside (0, 1). {show_rows(data, bad, [response])} Exact 0s or 1s: squeeze them, "
                "(y * (n - 1) + 0.5) / n, or model them separately."
            )
        return y, None

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``phi ~ Gamma(2, 0.1)``, ``y ~ Beta(mu phi, (1 - mu) phi)``."""
        phi = pm.Gamma("phi", alpha=2.0, beta=0.1)
        mu = get_link(link).inverse_pt(eta)
        pm.Beta("y", alpha=mu * phi, beta=(1.0 - mu) * phi, observed=obs.y, dims="obs")

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``beta.logpdf(y, mu phi, (1 - mu) phi)``."""
        mu, phi = inverse_link(link, eta), params["phi"]
        return stats.beta.logpdf(y, mu * phi, (1.0 - mu) * phi)

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Beta draws (clipped into the open interval, where floats round to 0 or 1)."""
        mu, phi = inverse_link(link, eta), params["phi"]
        draws = rng.beta(mu * phi, (1.0 - mu) * phi)
        tiny = np.finfo(float).eps
        return np.clip(draws, tiny, 1.0 - tiny)

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        """None is defined: a clear :class:`SpecError`."""
        raise SpecError(
            "The beta family has no standard latent-scale residual variance, so variance partitions and ICCs "
            "are not defined for it. Report the random-effect sds (logit scale) from hb.summary instead."
        )

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The link scale; no residual variance."""
        return f"latent scale (beta, {link} link; no residual variance is defined, so no ICC)"

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """``φ ~ Gamma(2, 0.1)``."""
        return (("φ", "Gamma(2, 0.1)"),)

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ Beta(μ, φ)``."""
        return LikelihoodText("Beta", "μ", ("φ",))
