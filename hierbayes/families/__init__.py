r"""Response families, one module each, looked up by name in one registry.

===================================  =============  ==================================================================
family                               links          response
===================================  =============  ==================================================================
``gaussian``                         identity       real numbers; :math:`y \sim N(\mu, \sigma^2)`
``bernoulli``                        logit, probit  0/1 (or booleans); :math:`y \sim \mathrm{Bernoulli}(p)`
``binomial``                         logit, probit  successes :math:`0 \le y \le n` of ``trials`` :math:`n`
``poisson``                          log            non-negative integers, optional ``offset``
``negative_binomial``                log            non-negative integers; :math:`\mathrm{Var} = \mu + \mu^2/\alpha`
``student_t``                        identity       real numbers, heavy tails; :math:`t_\nu(\mu, \sigma)`
``lognormal``                        identity       positive; :math:`\log y \sim N(\mu, \sigma^2)`
``gamma``                            log            positive; :math:`\mathrm{Var} = \mu^2/\alpha` (shape :math:`\alpha`)
``beta``                             logit, probit  proportions in (0, 1); precision :math:`\phi`
``cumulative``                       logit, probit  ordered categories 0..K-1 (ordinal), ordered cutpoints
``zero_inflated_poisson``            log            counts with extra zeros (probability ``zi``)
``zero_inflated_negative_binomial``  log            overdispersed counts with extra zeros
``hurdle_poisson``                   log            zeros from a hurdle (probability ``hu``), positive counts truncated
``hurdle_negative_binomial``         log            the same with a zero-truncated negative binomial
===================================  =============  ==================================================================

Default priors of the families' own parameters: Student-t :math:`\nu \sim \mathrm{Gamma}(2, 0.1)`;
gamma :math:`1/\alpha \sim \mathrm{Exponential}(1)`; beta :math:`\phi \sim \mathrm{Gamma}(2, 0.1)`;
cutpoints sorted iid :math:`N(0, 2.5^2)`; zero inflation :math:`\mathrm{zi} \sim \mathrm{Beta}(1, 1)`;
hurdle :math:`\mathrm{hu} \sim \mathrm{Beta}(1, 1)`.
Only the Gaussian family has the collapsed sampler (``lognormal`` users may fit the Gaussian
``log(y) ~ ...`` for it).

Latent-scale residual variances (used by variance partitions): logit :math:`\pi^2/3`,
probit 1 (binomial, bernoulli, cumulative); Poisson and negative binomial use the log-normal
approximation :math:`\log(1 + 1/\lambda)` (resp. :math:`\log(1 + 1/\lambda + 1/\alpha)`);
Student-t :math:`\sigma^2\nu/(\nu - 2)`; lognormal :math:`\sigma^2` (log scale); gamma
:math:`\psi_1(\alpha)`. None is defined for ``beta``, the zero-inflated and the hurdle families: their
variance partitions raise an error that says so.

Adding a family: write a module with a :class:`~hierbayes.families._base.Family` subclass
(see ``CONTRIBUTING.md``) and add one line to :data:`FAMILIES` below; nothing else in the
pipeline branches on a family's name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierbayes.exceptions import SpecError
from hierbayes.families._base import Family, LikelihoodText, Observed, scale_rv
from hierbayes.families.bernoulli import Bernoulli
from hierbayes.families.beta import Beta
from hierbayes.families.binomial import Binomial
from hierbayes.families.cumulative import Cumulative
from hierbayes.families.gamma import Gamma
from hierbayes.families.gaussian import Gaussian
from hierbayes.families.hurdle import HurdleNegativeBinomial, HurdlePoisson
from hierbayes.families.links import LINKS, Link, get_link, inverse_link, latent_variance
from hierbayes.families.lognormal import LogNormal
from hierbayes.families.negative_binomial import NegativeBinomial
from hierbayes.families.poisson import Poisson, log_normal_residual_variance
from hierbayes.families.student_t import StudentT
from hierbayes.families.zero_inflated import ZeroInflatedNegativeBinomial, ZeroInflatedPoisson

__all__ = [
    "FAMILIES",
    "LINKS",
    "Family",
    "LikelihoodText",
    "Link",
    "Observed",
    "check_response",
    "get_family",
    "get_link",
    "inverse_link",
    "latent_residual_variance",
    "scale_rv",
]

#: The registry: every family by name.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Gaussian(), Bernoulli(), Binomial(), Poisson(), NegativeBinomial(),
        StudentT(), LogNormal(), Gamma(), Beta(), Cumulative(), ZeroInflatedPoisson(), ZeroInflatedNegativeBinomial(),
        HurdlePoisson(), HurdleNegativeBinomial(),
    )
}  # fmt: skip


def get_family(name: str) -> Family:
    """The family called ``name``; a clear error naming the allowed ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise SpecError(f"Unknown family {name!r}; allowed: {', '.join(FAMILIES)}.") from None


def check_response(
    family: str,
    data: pd.DataFrame,
    response: str,
    *,
    trials: str | None = None,
    failures: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check and convert the response for ``family``; return ``(y, trials or None)``.

    Raises
    ------
    DataError
        Naming the column and showing the offending rows.
    """
    return get_family(family).check_response(data, response, trials=trials, failures=failures)


def latent_residual_variance(
    link: str,
    *,
    mean: float | np.ndarray | None = None,
    alpha: float | np.ndarray | None = None,
) -> float | np.ndarray:
    r"""Residual variance on the latent (link) scale, used by variance partitions.

    Parameters
    ----------
    link
        ``"logit"`` (:math:`\pi^2/3`, the variance of the standard logistic distribution),
        ``"probit"`` (1) or ``"log"`` (Poisson and negative binomial).
    mean
        For ``"log"``: the expected count :math:`\lambda` (a number or an array, e.g. one value
        per posterior draw); the log-normal approximation gives :math:`\log(1 + 1/\lambda)`
        (Nakagawa, Johnson & Schielzeth 2017).
    alpha
        For the negative binomial (:math:`\mathrm{Var} = \mu + \mu^2/\alpha`): the shape, which
        adds :math:`1/\alpha`: :math:`\log(1 + 1/\lambda + 1/\alpha)`. ``None`` for Poisson.

    Returns
    -------
    float or numpy.ndarray
        A float for logit and probit; for the log link the shape of ``mean`` (and ``alpha``).
    """
    if link in ("logit", "probit"):
        return latent_variance(link)
    if link == "log":
        return log_normal_residual_variance(mean, alpha)
    raise ValueError(f"No latent residual variance for link {link!r}; allowed: logit, probit, log.")
