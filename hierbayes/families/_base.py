r"""The :class:`Family` interface: everything the pipeline needs to know about a response family.

A family is one object that knows its links, how to check and convert the response, its PyMC
likelihood, its pointwise log-likelihood, how to replicate data, and its residual variance on
the latent scale (for ICCs). Every stage asks the family instead of branching on its name, so
adding a family is one new module in :mod:`hierbayes.families` plus its tests.

Notation: :math:`\eta` the linear predictor, :math:`\mu = g^{-1}(\eta)` the mean, ``params``
the family's own parameters per posterior draw (``sigma``, ``alpha``, ...), each broadcastable
against :math:`\eta` of shape ``(draws, rows)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from hierbayes.exceptions import DataError, SpecError
from hierbayes.families.links import inverse_link

__all__ = ["Family", "LikelihoodText", "Observed", "as_float", "pymc_distribution", "scale_rv", "show_rows"]


@dataclass(frozen=True)
class Observed:
    """The observed response of a model and the row-level quantities its likelihood needs.

    ``trials`` (binomial: trials per row) and ``known_sigma`` (Gaussian with a known residual
    sd per row) are ``None`` where the family or model has none.
    """

    y: np.ndarray | None
    trials: np.ndarray | None = None
    known_sigma: np.ndarray | None = None


@dataclass(frozen=True)
class LikelihoodText:
    """How a report writes the likelihood: ``y ~ distribution([trials,] mean, *extra)``.

    ``mean`` is the symbol of the mean (``"η"`` itself for the identity link), ``extra`` the
    symbols of the family's other parameters.
    """

    distribution: str
    mean: str
    extra: tuple[str, ...] = ()
    trials: bool = False


def show_rows(data: pd.DataFrame, mask: np.ndarray, columns: list[str], limit: int = 5) -> str:
    """The offending rows of ``data`` for an error message."""
    bad = data.loc[mask, columns].head(limit)
    return f"{int(mask.sum())} offending row(s), first ones:\n{bad.to_string()}"


def as_float(data: pd.DataFrame, column: str, family: str, hint: str = ".") -> np.ndarray:
    """Column ``column`` as floats; a clear error for a non-numeric column."""
    series = data[column]
    if series.dtype == bool:
        return np.array(series, dtype=float)
    if not pd.api.types.is_numeric_dtype(series):
        raise DataError(
            f"Response column {column!r} must be numeric for the {family} family; it has dtype "
            f"{series.dtype} (e.g. {series.iloc[0]!r}). Convert it, e.g. "
            f"data[{column!r}] = pd.to_numeric(data[{column!r}])" + hint
        )
    return np.array(series, dtype=float)


def pymc_distribution(name: str) -> Any:
    """The PyMC distribution class called ``name``; a :class:`SpecError` unless it is one (model cards are data)."""
    cls = getattr(pm.distributions, name, None) if name.isidentifier() and not name.startswith("_") else None
    if not (isinstance(cls, type) and issubclass(cls, pm.Distribution)):
        raise SpecError(f"Prior: {name!r} is not a PyMC distribution (e.g. 'Gamma', 'HalfNormal', 'StudentT').")
    return cls


def _positive_support(name: str, cls: Any, kwargs: dict[str, Any]) -> None:
    """Refuse a distribution that puts mass on negative numbers as the prior of a scale."""
    try:
        logp = float(np.max(pm.logp(cls.dist(**kwargs), -1.0).eval()))
    except Exception as err:
        raise SpecError(f"Prior for {name!r}: cannot build {cls.__name__}({kwargs}): {err}") from None
    if np.isfinite(logp):
        raise SpecError(
            f"Prior for {name!r}: {cls.__name__} puts mass on negative values, but {name} is a standard deviation; "
            "use a distribution on positive numbers (HalfNormal, HalfStudentT, Gamma, InverseGamma, Uniform(0, u))."
        )


def scale_rv(name: str, priors: tuple[Any, ...], dims: str | None) -> Any:
    """A PyMC random variable for a standard deviation from scale-prior values (one per term).

    ``priors`` are :mod:`hierbayes.spec.priors` scale priors; each gives its PyMC distribution
    by ``pymc()`` (``Flat`` becomes ``HalfFlat``). With ``dims``, priors of one distribution are
    one vector variable; different distributions per term are separate variables
    ``<name>__<k>`` stacked into the deterministic ``<name>``.
    """
    specs = []
    for prior in priors:
        dist, kwargs = prior.pymc()
        dist = "HalfFlat" if dist == "Flat" else dist
        cls = pymc_distribution(dist)
        if getattr(prior, "kind", None) in ("prior", "uniform"):
            _positive_support(name, cls, kwargs)
        specs.append((cls, kwargs))
    if dims is None:
        cls, kwargs = specs[0]
        return cls(name, **kwargs)
    first_cls, first_kw = specs[0]
    if all(cls is first_cls and set(kw) == set(first_kw) for cls, kw in specs):
        stacked = {k: np.array([kw[k] for _, kw in specs]) for k in first_kw}
        if not stacked:
            return first_cls(name, shape=len(specs), dims=dims)
        return first_cls(name, **stacked, dims=dims)
    parts = [cls(f"{name}__{k}", **kw) for k, (cls, kw) in enumerate(specs)]
    return pm.Deterministic(name, pt.stack(parts), dims=dims)


class Family(ABC):
    """One response family (subclass it, set the class attributes, implement the methods)."""

    #: The family's name, as users write it (``family="poisson"``).
    name: ClassVar[str]
    #: Allowed links; the first is the default.
    links: ClassVar[tuple[str, ...]]
    #: Integer-valued response (replicated draws are int64).
    discrete: ClassVar[bool] = True
    #: The collapsed (random effects integrated out) Gaussian path applies.
    collapses: ClassVar[bool] = False
    #: Default priors are scaled by the sd of ``y`` (identity-link families); else by 1 on the link scale.
    data_scaled_priors: ClassVar[bool] = False
    #: What comparing two predictions gives: ``"odds_ratio"``, ``"rate_ratio"`` or ``"difference"``.
    effect_measure: ClassVar[str] = "difference"
    #: Needs ``trials()`` or ``cbind()`` (binomial).
    needs_trials: ClassVar[bool] = False
    #: A 0/1 response.
    binary: ClassVar[bool] = False
    #: How rows with identical covariates and groups aggregate exactly (Dask data): ``"binomial"``
    #: (successes out of trials), ``"poisson"`` (summed counts over summed exposure) or ``None``.
    aggregation: ClassVar[str | None] = None
    #: The fixed part has an intercept (``False``: ordinal families, whose cutpoints replace it; a
    #: spec of such a family drops the intercept, as brms does).
    fixed_intercept: ClassVar[bool] = True

    def check_link(self, link: str | None) -> str:
        """The link to use (the default for ``None``); a clear error for one the family does not have."""
        link = link or self.links[0]
        if link not in self.links:
            raise SpecError(f"Unknown link {link!r} for family {self.name!r}; allowed: {', '.join(self.links)}.")
        return link

    def parameters(self, *, known_sigma: bool = False) -> tuple[str, ...]:
        """Names of the family's own posterior variables (``("sigma",)``, ``("alpha",)``, or none)."""
        return ()

    @abstractmethod
    def check_response(
        self, data: pd.DataFrame, response: str, *, trials: str | None = None, failures: str | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Check and convert the response; return ``(y, trials or None)``.

        Raises
        ------
        DataError
            Naming the column and showing the offending rows.
        """

    def check_fitted_response(self, y: np.ndarray, response: str) -> None:
        """Checks that only the fitted data must pass, not new data for predictions (default: none).

        Raises
        ------
        DataError
            Naming the response column.
        """
        return None

    @abstractmethod
    def likelihood(self, eta: Any, obs: Observed, link: str, *, sigma_prior: Any = None) -> None:
        """Declare ``y`` (dims ``obs``) and the family's own parameters in the current PyMC model."""

    @abstractmethod
    def log_likelihood(
        self, y: np.ndarray, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        r"""Pointwise :math:`\log p(y_i \mid \eta_i, \theta)`, shape of ``eta``."""

    @abstractmethod
    def replicate(
        self, rng: np.random.Generator, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray], obs: Observed
    ) -> np.ndarray:
        """Draws of ``y`` given ``eta`` (shape of ``eta``)."""

    def latent_residual_variance(
        self, link: str, *, mean: Any = None, params: Mapping[str, Any] | None = None
    ) -> float | np.ndarray:
        """Residual variance on the latent (link) scale, used by variance partitions (ICCs)."""
        raise SpecError(f"The {self.name} family has no latent-scale residual variance.")

    def response_variance(self, mu: np.ndarray, params: Mapping[str, np.ndarray], obs: Observed) -> np.ndarray:
        r""":math:`\mathrm{Var}(y_i \mid \mu_i, \theta)` per draw and row (``mu``: ``(draws, rows)``; Bayes R²)."""
        raise SpecError(f"The {self.name} family does not state Var(y | mu), which Bayesian R^2 needs.")

    def scale_label(self, link: str, known_sigma: str | None = None) -> str:
        """Plain-words description of the scale of variance partitions for this family."""
        return f"latent scale ({self.name}, {link} link)"

    def prior_response(self, y: np.ndarray) -> np.ndarray:
        """The values whose sd and mean scale data-scaled default priors (``y``; lognormal: ``log y``)."""
        return y

    def response_mean(self, eta: np.ndarray, link: str, params: Mapping[str, np.ndarray]) -> np.ndarray:
        r"""The expected response :math:`E[y \mid \eta, \theta]`; by default the inverse link :math:`g^{-1}(\eta)`."""
        return inverse_link(link, eta)

    def fixed_priors(self) -> tuple[tuple[str, str], ...]:
        """Priors of the family's own parameters that users cannot set: ``(parameter, prior)`` rows."""
        return ()

    @abstractmethod
    def describe(self, link: str) -> LikelihoodText:
        """How the report writes the likelihood."""
