r"""Binary responses: :math:`y_i \sim \mathrm{Bernoulli}(p_i)`, logit or probit link.

Everything but the response check, the likelihood and the replication is shared with the
binomial family (:class:`~hierbayes.families.binomial.BinomialBase`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm

from hierbayes.exceptions import DataError
from hierbayes.families._base import LikelihoodText, Observed, as_float, show_rows
from hierbayes.families.binomial import HINT, BinomialBase
from hierbayes.families.links import inverse_link

__all__ = ["Bernoulli"]


class Bernoulli(BinomialBase):
    """0/1 response (or booleans)."""

    name: ClassVar[str] = "bernoulli"
    binary: ClassVar[bool] = True

    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """0/1 values only."""
        y = as_float(data, response, self.name, HINT)
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            values = ", ".join(map(repr, sorted(set(data.loc[bad, response].tolist()))[:5]))
            raise DataError(
                f"The bernoulli family needs a 0/1 response, but column {response!r} has other values "
                f"({values}). Recode it to 0/1, or use family='binomial' with trials= for counts of "
                f"successes. {show_rows(data, bad, [response])}"
            )
        return y, None

    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """``y ~ Bernoulli(p)``."""
        assert obs.y is not None
        pm.Bernoulli("y", observed=obs.y.astype(np.int64), dims="obs", **self._pymc_p(eta, link))

    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """0/1 draws."""
        mu = inverse_link(link, eta)
        return rng.random(mu.shape) < mu

    def describe(self, link: str) -> LikelihoodText:
        """``y ~ Bernoulli(p)``."""
        return LikelihoodText("Bernoulli", "p")
