r"""Link functions :math:`g` with :math:`g(\mu) = \eta`, and their inverses in numpy and PyTensor.

=========  ==============================  =========================================
link       :math:`g(\mu)`                  :math:`g^{-1}(\eta)`
=========  ==============================  =========================================
identity   :math:`\mu`                     :math:`\eta`
logit      :math:`\log(\mu / (1 - \mu))`   :math:`1 / (1 + e^{-\eta})`
probit     :math:`\Phi^{-1}(\mu)`          :math:`\Phi(\eta)`
log        :math:`\log \mu`                :math:`e^{\eta}`
=========  ==============================  =========================================

:func:`latent_variance`: the residual variance of the latent-variable form of a binary or ordinal
model, :math:`y^* = \eta + \varepsilon`, fixed by the link: :math:`\pi^2/3` for logit (the
variance of the standard logistic distribution) and 1 for probit (standard normal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import special

from hierbayes.exceptions import SpecError

__all__ = ["LINKS", "Link", "get_link", "inverse_link", "latent_variance"]


@dataclass(frozen=True)
class Link:
    """A link function: its name, its inverse on numpy arrays and on PyTensor variables."""

    name: str
    inverse: Callable[[np.ndarray], np.ndarray]
    inverse_pt: Callable[[Any], Any]


#: Every link by name.
LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda eta: eta, lambda eta: eta),
    "logit": Link("logit", special.expit, pm.math.invlogit),
    "probit": Link("probit", special.ndtr, pm.math.invprobit),
    "log": Link("log", np.exp, pt.exp),
}


def get_link(name: str) -> Link:
    """The :class:`Link` called ``name`` (identity, logit, probit, log)."""
    try:
        return LINKS[name]
    except KeyError:
        raise SpecError(f"Unknown link {name!r}; allowed: {', '.join(LINKS)}.") from None


def inverse_link(link: str, eta: np.ndarray) -> np.ndarray:
    r"""The mean :math:`g^{-1}(\eta)` for ``link`` in identity, logit, probit, log."""
    return get_link(link).inverse(eta)


def latent_variance(link: str) -> float:
    r"""Residual variance of the latent scale :math:`y^* = \eta + \varepsilon` of a binary or ordinal model.

    :math:`\operatorname{Var}(\varepsilon) = \pi^2/3` for the logit link (standard logistic
    :math:`\varepsilon`) and 1 for the probit link (standard normal :math:`\varepsilon`).

    Raises
    ------
    SpecError
        For a link without a latent-variable form (identity, log).
    """
    if link == "logit":
        return float(np.pi**2 / 3)
    if link == "probit":
        return 1.0
    raise SpecError(f"The {link!r} link has no latent-variable residual variance; only logit and probit have one.")
