r"""Model specs and priors as plain dicts: JSON for saved fits, TOML for model cards.

:func:`spec_to_dict` / :func:`spec_from_dict` round-trip a :class:`~hierbayes.spec.ModelSpec`
exactly (priors included): ``spec_from_dict(spec_to_dict(s)) == s``. :func:`priors_to_dict` /
:func:`priors_from_dict` use the format of a model card's ``[priors]`` table (see
:mod:`hierbayes.cards`): a normal prior :math:`\beta \sim N(b, B)` for the fixed effects as
``{mean = b, sd = s}`` or ``{mean = b, cov = B}``, scale priors as ``{dist = "halfnormal",
scale = 1.0}``, the LKJ prior as ``{eta = 2.0}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hierbayes.exceptions import PriorError, SpecError
from hierbayes.spec.model import GroupTerm, ModelSpec
from hierbayes.spec.priors import (
    FIXED_PRIORS,
    LKJ,
    Normal,
    Priors,
    prior_from_dict,
    prior_to_dict,
    scale_prior_from_dict,
)

__all__ = ["jsonable", "priors_from_dict", "priors_to_dict", "spec_from_dict", "spec_to_dict"]


# ------------------------------------------------------------------------------------ JSON


def jsonable(value: Any) -> Any:
    """Convert tuples, numpy scalars and arrays, paths and dataclasses to JSON types."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# ------------------------------------------------------------------------ spec <-> dict


def _scale_prior_to_dict(prior: Any) -> dict[str, Any]:
    if not hasattr(prior, "scale"):
        return prior_to_dict(prior)
    out: dict[str, Any] = {"dist": prior.kind, "scale": prior.scale}
    for f in dataclasses.fields(prior):
        if f.name not in ("kind", "scale") and f.init:
            out[f.name] = getattr(prior, f.name)
    return out


def _group_sd_to_dict(prior: Any) -> dict[str, Any]:
    if isinstance(prior, tuple):  # per term: {term: prior}
        return {term: _scale_prior_to_dict(p) for term, p in prior}
    return _scale_prior_to_dict(prior)


def _normal_to_dict(prior: Any) -> dict[str, Any]:
    if not isinstance(prior, Normal):
        return prior_to_dict(prior)
    out: dict[str, Any] = {"mean": jsonable(prior.mean)}
    if prior.sd is not None:
        out["sd"] = jsonable(prior.sd)
    if prior.cov is not None:
        out["cov"] = jsonable(prior.cov)
    return out


def priors_to_dict(priors: Priors) -> dict[str, Any]:
    """Represent :class:`~hierbayes.spec.priors.Priors` as plain dicts (JSON and TOML friendly).

    Only the priors that are set appear; a missing key means the data-scaled default. The format
    is the one of a model card's ``[priors]`` table:

    * ``fixed``: ``{"mean": b, "sd": s}`` or ``{"mean": b, "cov": B}`` for all fixed effects, or
      ``{coefficient: {"mean": ..., "sd": ...}}`` for single coefficients; other priors as
      ``{"dist": "studentt", "nu": 3, "mu": 0, "sigma": 2.5}`` (``laplace``, ``flat``,
      ``{"dist": "prior", "name": "Cauchy", "alpha": 0, "beta": 1}``);
    * ``group_sd``: ``{"dist": "halfnormal", "scale": 1.0}`` for every group, ``{group: {...}}``,
      or per term ``{group: {term: {...}}}``; also ``gamma``, ``inversegamma``, ``uniform``,
      ``flat`` and ``prior``;
    * ``sigma``: a scale prior; ``lkj``: ``{"eta": 1.0}``.
    """
    out: dict[str, Any] = {}
    if isinstance(priors.fixed, tuple):
        out["fixed"] = {name: _normal_to_dict(p) for name, p in priors.fixed}
    elif priors.fixed is not None:
        out["fixed"] = _normal_to_dict(priors.fixed)
    if isinstance(priors.group_sd, tuple):
        out["group_sd"] = {name: _group_sd_to_dict(p) for name, p in priors.group_sd}
    elif priors.group_sd is not None:
        out["group_sd"] = _scale_prior_to_dict(priors.group_sd)
    if priors.sigma is not None:
        out["sigma"] = _scale_prior_to_dict(priors.sigma)
    if priors.lkj != LKJ():
        out["lkj"] = {"eta": priors.lkj.eta}
    return out


_NORMAL_KEYS = {"mean": "mean", "b": "mean", "sd": "sd", "cov": "cov", "B": "cov"}


def _normal_from_dict(value: Any, where: str) -> Any:
    if not isinstance(value, Mapping):
        raise PriorError(f"{where} must be a table like {{ mean = 0, sd = 10 }}; received {value!r}.")
    if "dist" in value:
        return prior_from_dict(value, where, FIXED_PRIORS)
    kwargs: dict[str, Any] = {}
    for key, val in value.items():
        if key not in _NORMAL_KEYS:
            raise PriorError(
                f"{where}: unknown key {key!r}; allowed: mean (or b), sd, cov (or B) of the normal prior N(b, B)."
            )
        kwargs[_NORMAL_KEYS[key]] = val
    if "cov" in kwargs:
        kwargs["cov"] = tuple(tuple(row) for row in kwargs["cov"])
    return Normal(**kwargs)


def _is_table_of_tables(value: Mapping[str, Any]) -> bool:
    return bool(value) and all(isinstance(v, Mapping) for v in value.values())


def _group_sd_from_dict(value: Mapping[str, Any], where: str) -> Any:
    if _is_table_of_tables(value):  # per term
        return {str(k): scale_prior_from_dict(v, f"{where}.{k}") for k, v in value.items()}
    return scale_prior_from_dict(value, where)


def priors_from_dict(value: Mapping[str, Any], where: str = "priors") -> Priors:
    """Build :class:`~hierbayes.spec.priors.Priors` from the dict of :func:`priors_to_dict`.

    Raises
    ------
    PriorError
        For an unknown key or a malformed prior, naming where it is.
    """
    if not isinstance(value, Mapping):
        raise PriorError(f"{where} must be a table; received {type(value).__name__}.")
    allowed = ("fixed", "group_sd", "sigma", "lkj")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise PriorError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}.")
    kwargs: dict[str, Any] = {}
    if "fixed" in value:
        fixed = value["fixed"]
        if isinstance(fixed, Mapping) and _is_table_of_tables(fixed):
            kwargs["fixed"] = {str(k): _normal_from_dict(v, f"{where}.fixed.{k}") for k, v in fixed.items()}
        else:
            kwargs["fixed"] = _normal_from_dict(fixed, f"{where}.fixed")
    if "group_sd" in value:
        gsd = value["group_sd"]
        if not isinstance(gsd, Mapping):
            raise PriorError(f"{where}.group_sd must be a table like {{ dist = 'halfnormal', scale = 1 }}.")
        if _is_table_of_tables(gsd):
            kwargs["group_sd"] = {str(k): _group_sd_from_dict(v, f"{where}.group_sd.{k}") for k, v in gsd.items()}
        else:
            kwargs["group_sd"] = scale_prior_from_dict(gsd, f"{where}.group_sd")
    if "sigma" in value:
        sigma = value["sigma"]
        if not isinstance(sigma, Mapping):
            raise PriorError(f"{where}.sigma must be a table like {{ dist = 'halfstudentt', scale = 2.5 }}.")
        kwargs["sigma"] = scale_prior_from_dict(sigma, f"{where}.sigma")
    if "lkj" in value:
        lkj = value["lkj"]
        if isinstance(lkj, int | float) and not isinstance(lkj, bool):
            lkj = {"eta": lkj}
        if not isinstance(lkj, Mapping) or set(lkj) != {"eta"}:
            raise PriorError(f"{where}.lkj must be {{ eta = 2.0 }} (or a number); received {lkj!r}.")
        kwargs["lkj"] = LKJ(eta=float(lkj["eta"]))
    return Priors(**kwargs)


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """Represent a :class:`~hierbayes.spec.ModelSpec` as a JSON-friendly dict (priors included).

    The dict has every field of the spec (tuples as lists, the group terms as dicts, the priors
    as :func:`priors_to_dict`), plus ``formula`` (for reading only). :func:`spec_from_dict`
    inverts it: ``spec_from_dict(spec_to_dict(s)) == s``.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        val = getattr(spec, f.name)
        if f.name == "groups":
            out["groups"] = [
                {g.name: jsonable(getattr(term, g.name)) for g in dataclasses.fields(term)} for term in val
            ]
        elif f.name == "priors":
            out["priors"] = priors_to_dict(val)
        else:
            out[f.name] = jsonable(val)
    out["formula"] = spec.formula()
    return out


def spec_from_dict(value: Mapping[str, Any]) -> ModelSpec:
    """Rebuild a :class:`~hierbayes.spec.ModelSpec` from :func:`spec_to_dict`'s dict.

    Raises
    ------
    SpecError
        For an unknown key.
    """
    spec_fields = {f.name for f in dataclasses.fields(ModelSpec)}
    term_fields = {f.name for f in dataclasses.fields(GroupTerm)}
    kwargs: dict[str, Any] = {}
    for key, val in value.items():
        if key == "formula":
            continue
        if key not in spec_fields:
            raise SpecError(f"Unknown model spec field {key!r}; allowed: {', '.join(sorted(spec_fields))}.")
        kwargs[key] = val
    groups = []
    for term in kwargs.get("groups", ()):
        unknown = sorted(set(term) - term_fields)
        if unknown:
            raise SpecError(f"Unknown group term field {unknown[0]!r}; allowed: {', '.join(sorted(term_fields))}.")
        groups.append(GroupTerm(**term))
    kwargs["groups"] = tuple(groups)
    kwargs["priors"] = priors_from_dict(kwargs.get("priors", {}))
    return ModelSpec(**kwargs)
