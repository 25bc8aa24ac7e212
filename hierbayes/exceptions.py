"""Exceptions and warnings raised by hierbayes.

Every error says what was received, what is allowed, and how to fix it, and names the
column or term involved. All errors subclass :class:`ValueError` or :class:`TypeError` so
that generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "FormulaError",
    "HierBayesError",
    "PriorError",
    "SamplerNotInstalledError",
    "SingularFitWarning",
    "SpecError",
]


class HierBayesError(Exception):
    """Base class of every hierbayes error."""


class FormulaError(HierBayesError, ValueError):
    """A model formula could not be parsed; the message shows the position of the problem."""


class SpecError(HierBayesError, ValueError):
    """A model specification is inconsistent (unknown family, link, covariance, ...)."""


class DataError(HierBayesError, ValueError):
    """The data do not fit the model: missing column, NaN, wrong type, bad levels, ..."""


class PriorError(HierBayesError, ValueError):
    """A prior is malformed: wrong shape, not positive definite, negative scale, ..."""


class SamplerNotInstalledError(HierBayesError, ImportError):
    """The requested sampler backend is not installed; the message says how to install it."""


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics suggest the posterior draws are not trustworthy yet."""


class SingularFitWarning(UserWarning):
    """An ML/REML fit is singular: a variance component at 0 or a correlation at +-1 (lme4's ``isSingular``)."""
