r"""Binomial responses: :math:`y_i \sim \mathrm{Binomial}(n_i, p_i)`.

Links: :math:`\mathrm{logit}(p_i) = \eta_i` or :math:`\Phi^{-1}(p_i) = \eta_i`.

Latent-scale residual variance (for ICCs): :math:`\pi^2/3` for the logit link (the variance of
the standard logistic distribution), 1 for the probit link. Comparing two predictions gives an
odds ratio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
from scipy import special

from hierbayes.exceptions import DataError
from hierbayes.families._base import Family, LikelihoodText, Observed, as_float, show_rows
from hierbayes.families.links import inverse_link, latent_variance

__all__ = ["Binomial", "BinomialBase"]

HINT = " or (data[col] == 'yes').astype(int)."


class BinomialBase(Family):
    """Links, log-likelihood and latent variance shared by the Bernoulli and binomial families."""

    links: ClassVar[tuple[str, ...]] = ("logit", "probit")
    effect_measure: ClassVar[str] = "odds_ratio"
    aggregation: ClassVar[str | None] = "binomial"

    @staticmethod
    def _trials(y: np.ndarray, obs: Observed) -> np.ndarray:
        return np.ones_like(y) if obs.trials is None else obs.trials

    def _pymc_p(self, eta: Any, link: str) -> dict[str, Any]:
        return {"logit_p": eta} if link == "logit" else {"p": pm.math.invprobit(eta)}

    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """``binom.logpmf`` written on the link scale (``log_expit``/``log_ndtr``): finite for extreme eta."""
        n = self._trials(y, obs)
        log_choose = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
        if link == "logit":
            log_p, log_q = special.log_expit(eta), special.log_expit(-eta)
        else:
            log_p, log_q = special.log_ndtr(eta), special.log_ndtr(-eta)
        return log_choose + y * log_p + (n - y) * log_q

    def response_variance(self, mu: np.ndarray, params: Mapping[str, np.ndarray], obs: Observed) -> np.ndarray:
        """:math:`p(1 - p)/n`: the variance of the proportion of successes (``n = 1`` for Bernoulli)."""
        n = 1.0 if obs.trials is None else obs.trials[None, :]
        return mu * (1 - mu) / n

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        r""":math:`\pi^2/3` (logit) or 1 (probit): :func:`hierbayes.families.links.latent_variance`."""
        return latent_variance(link)

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """The latent scale and its residual variance."""
        if link == "logit":
            return f"latent scale ({self.name}, logit link; residual variance pi^2/3 = {latent_variance(link):.4f})"
        return f"latent scale ({self.name}, probit link; residual variance 1)"


class Binomial(BinomialBase):
    """Integer successes out of ``trials`` (``y | trials(n)`` or ``cbind(successes, failures)``)."""

    name: ClassVar[str] = "binomial"
    needs_trials: ClassVar[bool] = True

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Integer successes ``0 <= y <= trials`` and ``trials >= 1``."""
        y = as_float(data, response, self.name, HINT)
        if failures is not None:
            n = y + as_float(data, failures, self.name, HINT)
            cols = [response, failures]
        else:
            assert trials is not None
            n = as_float(data, trials, self.name, HINT)
            cols = [response, trials]
        bad = (y < 0) | (y > n) | (y != np.round(y)) | (n != np.round(n)) | (n < 1)
        if bad.any():
            raise DataError(
                f"The binomial family needs integer successes 0 <= {response} <= trials and trials >= 1 "
                f"(columns {', '.join(map(repr, cols))}). {show_rows(data, bad, cols)}"
            )
        return y, n

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``y ~ Binomial(trials, p)``."""
        assert obs.y is not None and obs.trials is not None
        pm.Binomial(
            "y", n=obs.trials.astype(np.int64), observed=obs.y.astype(np.int64), dims="obs", **self._pymc_p(eta, link)
        )

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Binomial draws with the rows' trials."""
        assert obs.trials is not None
        return rng.binomial(obs.trials.astype(np.int64)[None, :], inverse_link(link, eta))

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ Binomial(n, p)``."""
        return LikelihoodText("Binomial", "p", trials=True)
