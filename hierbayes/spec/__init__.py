"""The specification: a data-free description of a model (:class:`ModelSpec`).

Modules: :mod:`~hierbayes.spec.model` (the spec and its group terms), :mod:`~hierbayes.spec.priors`
(prior values), :mod:`~hierbayes.spec.transforms` (the formula whitelist),
:mod:`~hierbayes.spec.formula` (the lme4-style parser) and :mod:`~hierbayes.spec.serialise`
(spec <-> plain dicts for model cards and fit files).
"""

from hierbayes.spec.model import GroupTerm, ModelSpec

__all__ = ["GroupTerm", "ModelSpec"]
