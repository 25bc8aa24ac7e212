r"""Prior values in textbook form (data-free), and the defaults that are scaled to the data.

Notation (for a model :math:`g(E[y]) = X\beta + \sum_k Z_k u_k`):

.. math::

    \beta \sim N(b, B), \qquad u_{kj} \sim N(0, \Omega_k), \qquad
    \Omega_k = \operatorname{diag}(s_k)\, R_k\, \operatorname{diag}(s_k),

with :math:`B` any symmetric positive-definite matrix (a full :math:`B` couples the fixed
effects), :math:`s_k` the random-effect standard deviations (half-normal, half-Student-t,
half-Cauchy or exponential priors) and :math:`R_k` a correlation matrix with an LKJ prior when
the term's covariance is ``"full"`` (``R_k = I`` when it is ``"diagonal"``).

Defaults (weakly informative, scaled to the data; every one can be overridden)
----------------------------------------------------------------------------------
Write :math:`s_y` for the response scale: the sample standard deviation of ``y`` for the
Gaussian family, and 1 on the link scale for the other families (as rstanarm and bambi do).
For a predictor column :math:`x_k` with sample sd :math:`s_{x_k}` and mean :math:`m_k`:

* slopes: :math:`\beta_k \sim N(0, (2.5\, s_y / s_{x_k})^2)`, independent;
* intercept, stated at the predictors' means (as rstanarm does):
  :math:`\beta_0 + \sum_k \beta_k m_k \sim N(\bar y, (2.5\, s_y)^2)` for the Gaussian family,
  :math:`N(0, 2.5^2)` on the link scale otherwise. On the data's own scale this is exactly a
  multivariate normal :math:`N(b, B)` whose :math:`B` couples the intercept with the slopes;
  :func:`hierbayes.inference.priors.resolve_priors` returns that :math:`(b, B)`;
* random-effect sd of term :math:`k` of a group: :math:`s \sim t^+_3(0, 2.5\, s_y / s_{z_k})`
  (half-Student-t with 3 degrees of freedom, as brms), with :math:`s_{z_k} = 1` for the intercept;
* residual sd (Gaussian): :math:`\sigma \sim t^+_3(0, 2.5\, s_y)`;
* correlations: :math:`R_k \sim \mathrm{LKJ}(\eta = 1)` (uniform over correlation matrices);
* negative-binomial shape: :math:`\alpha \sim \mathrm{Gamma}(0.01, 0.01)` is avoided; we use
  :math:`1/\alpha \sim \mathrm{Exponential}(1)`.

Other priors (every one opt-in; the defaults above do not change)
---------------------------------------------------------------------
* per term of a factor: ``group_sd={"Subject": {"Intercept": HalfNormal(scale=30), "Days":
  HalfNormal(scale=10)}}`` (terms not named keep their default);
* fixed effects: :class:`StudentT` :math:`t_\nu(\mu, \sigma)` and :class:`Laplace`
  :math:`\mathrm{Laplace}(\mu, b)` (density :math:`e^{-|\beta - \mu|/b}/2b`), for all
  coefficients or per coefficient; the non-normal ones are added to the model as a log density
  of :math:`\beta` (the sampler still works on the standardised scale, the map is linear);
* scales (group sds, the residual sd): :class:`Gamma` :math:`(\alpha, \beta)` (rate
  :math:`\beta`), :class:`InverseGamma` :math:`(\alpha, \beta)`, :class:`Uniform` on
  :math:`(\text{lower}, \text{upper})`;
* :class:`Flat`: improper uniform (on the positive half-line for a scale). Constructing one warns
  (:class:`ImproperPriorWarning`): the posterior can be improper, e.g. a flat prior on a group
  sd with few groups;
* :class:`Prior`: any PyMC distribution by name and numeric parameters,
  ``Prior("Gamma", alpha=2, beta=0.1)``; on a scale its support must be positive. It is checked
  when the model is built (the name must be a :class:`pymc.Distribution`), and it serialises to
  model cards and saved fits as ``{dist = "prior", name = "Gamma", alpha = 2, beta = 0.1}``.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hierbayes.exceptions import PriorError

__all__ = [
    "FIXED_PRIORS",
    "LKJ",
    "SCALE_PRIORS",
    "Exponential",
    "FixedPrior",
    "Flat",
    "Gamma",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "ImproperPriorWarning",
    "InverseGamma",
    "Laplace",
    "Normal",
    "Prior",
    "Priors",
    "ScalePrior",
    "StudentT",
    "Uniform",
]

DEFAULT_SCALE = 2.5


def _as_tuple(value: float | Sequence[float] | np.ndarray, what: str) -> float | tuple[float, ...]:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return float(arr)
    if arr.ndim != 1:
        raise PriorError(f"{what} must be a number or a 1-D sequence; received an array of shape {arr.shape}.")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True, kw_only=True)
class Normal:
    r"""Normal prior :math:`\beta \sim N(b, B)` for fixed effects.

    Parameters
    ----------
    mean
        :math:`b`: a number (the same for every coefficient) or one value per coefficient.
    sd
        Standard deviations (diagonal :math:`B = \operatorname{diag}(sd^2)`): a number or one
        per coefficient. Give either ``sd`` or ``cov``.
    cov
        A full covariance matrix :math:`B` (p x p, symmetric positive definite) over all the
        fixed effects, in the order of the model matrix's columns.
    """

    mean: float | tuple[float, ...] = 0.0
    sd: float | tuple[float, ...] | None = None
    cov: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _as_tuple(self.mean, "Normal prior mean b"))
        if self.sd is not None and self.cov is not None:
            raise PriorError("Normal prior: give either sd= (diagonal B) or cov= (full B), not both.")
        if self.sd is None and self.cov is None:
            raise PriorError("Normal prior: give its scale, sd= (diagonal B) or cov= (full B).")
        if self.sd is not None:
            sd = _as_tuple(self.sd, "Normal prior sd")
            if np.any(np.asarray(sd) <= 0) or not np.all(np.isfinite(sd)):
                raise PriorError(f"Normal prior sd must be positive and finite; received {sd}.")
            object.__setattr__(self, "sd", sd)
        if self.cov is not None:
            cov = np.asarray(self.cov, dtype=float)
            if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
                raise PriorError(f"Normal prior cov B must be a square p x p matrix; received shape {cov.shape}.")
            if not np.all(np.isfinite(cov)):
                raise PriorError("Normal prior cov B must hold finite numbers; received inf or NaN.")
            if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
                raise PriorError(
                    "Normal prior cov B must be symmetric; received B with max |B - B.T| = "
                    f"{float(np.abs(cov - cov.T).max()):.3g}. Use (B + B.T) / 2."
                )
            try:
                np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise PriorError(
                    "Normal prior cov B must be positive definite; received B with smallest eigenvalue "
                    f"{float(np.linalg.eigvalsh(cov).min()):.3g}. Check for negative variances or "
                    "correlations outside (-1, 1) (each |B[i, j]| < sqrt(B[i, i] B[j, j]))."
                ) from None
            object.__setattr__(self, "cov", tuple(tuple(float(v) for v in row) for row in cov))
            mean = np.asarray(self.mean)
            if mean.ndim == 1 and mean.shape[0] != cov.shape[0]:
                raise PriorError(
                    f"Normal prior: b has length {mean.shape[0]} but B is {cov.shape[0]} x {cov.shape[0]}."
                )

    def moments(self, p: int, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(b, B)`` broadcast to ``p`` coefficients, checking lengths."""
        b = np.asarray(self.mean, dtype=float)
        b = np.full(p, float(b)) if b.ndim == 0 else b
        if b.shape != (p,):
            raise PriorError(
                f"Normal prior: b has length {b.shape[0]} but the model has {p} fixed effects ({', '.join(names)})."
            )
        if self.cov is not None:
            B = np.asarray(self.cov, dtype=float)
            if B.shape != (p, p):
                raise PriorError(
                    f"Normal prior: B is {B.shape[0]} x {B.shape[1]} but the model has {p} fixed effects "
                    f"({', '.join(names)}); B must be {p} x {p}."
                )
        else:
            sd = np.asarray(self.sd, dtype=float)
            sd = np.broadcast_to(sd, (p,)) if sd.ndim == 0 else sd
            if sd.shape != (p,):
                raise PriorError(
                    f"Normal prior: sd has length {sd.shape[0]} but the model has {p} fixed effects "
                    f"({', '.join(names)})."
                )
            B = np.diag(sd**2)
        return b, B


@dataclass(frozen=True, kw_only=True)
class _Scale:
    scale: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise PriorError(f"{type(self).__name__} prior: scale must be a positive number; received {self.scale!r}.")


@dataclass(frozen=True, kw_only=True)
class HalfNormal(_Scale):
    """Half-normal prior on a standard deviation, ``sd ~ |N(0, scale^2)|``."""

    kind: Literal["halfnormal"] = field(default="halfnormal", init=False)

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "HalfNormal", {"sigma": self.scale}


@dataclass(frozen=True, kw_only=True)
class HalfStudentT(_Scale):
    """Half-Student-t prior on a standard deviation, ``sd ~ |t_nu(0, scale)|``."""

    nu: float = 3.0
    kind: Literal["halfstudentt"] = field(default="halfstudentt", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.nu > 0:
            raise PriorError(f"HalfStudentT prior: nu must be positive; received {self.nu!r}.")

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "HalfStudentT", {"nu": self.nu, "sigma": self.scale}


@dataclass(frozen=True, kw_only=True)
class HalfCauchy(_Scale):
    """Half-Cauchy prior on a standard deviation, ``sd ~ |Cauchy(0, scale)|``."""

    kind: Literal["halfcauchy"] = field(default="halfcauchy", init=False)

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "HalfCauchy", {"beta": self.scale}


@dataclass(frozen=True, kw_only=True)
class Exponential(_Scale):
    """Exponential prior on a standard deviation with mean ``scale``."""

    kind: Literal["exponential"] = field(default="exponential", init=False)

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "Exponential", {"scale": self.scale}


class ImproperPriorWarning(UserWarning):
    """A :class:`Flat` (improper) prior was used: the posterior may be improper."""


def _positive(name: str, **values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value) and value > 0):
            raise PriorError(f"{name} prior: {key} must be a positive number; received {value!r}.")


@dataclass(frozen=True, kw_only=True)
class Gamma:
    r"""Gamma prior on a scale: shape ``alpha``, rate ``beta`` (mean :math:`\alpha/\beta`)."""

    alpha: float
    beta: float
    kind: Literal["gamma"] = field(default="gamma", init=False)

    def __post_init__(self) -> None:
        _positive("Gamma", alpha=self.alpha, beta=self.beta)

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "Gamma", {"alpha": self.alpha, "beta": self.beta}


@dataclass(frozen=True, kw_only=True)
class InverseGamma:
    r"""Inverse-gamma prior on a scale: shape ``alpha``, scale ``beta`` (density :math:`x^{-\alpha-1} e^{-\beta/x}`)."""

    alpha: float
    beta: float
    kind: Literal["inversegamma"] = field(default="inversegamma", init=False)

    def __post_init__(self) -> None:
        _positive("InverseGamma", alpha=self.alpha, beta=self.beta)

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "InverseGamma", {"alpha": self.alpha, "beta": self.beta}


@dataclass(frozen=True, kw_only=True)
class Uniform:
    """Uniform prior on ``(lower, upper)``; on a scale ``lower`` must be at least 0 (Stan's ``uniform(0, 100)``)."""

    lower: float = 0.0
    upper: float
    kind: Literal["uniform"] = field(default="uniform", init=False)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.upper > self.lower):
            raise PriorError(
                f"Uniform prior: needs finite lower < upper; received lower={self.lower!r}, upper={self.upper!r}."
            )

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "Uniform", {"lower": self.lower, "upper": self.upper}


@dataclass(frozen=True, kw_only=True)
class Flat:
    """Improper flat prior (on the positive half-line when it is the prior of a scale); warns when made."""

    kind: Literal["flat"] = field(default="flat", init=False)

    def __post_init__(self) -> None:
        warnings.warn(
            "Flat() is an improper prior: the posterior may be improper (a flat prior on a group sd with few "
            "groups is the classic case) and prior-predictive checks and SBC cannot use it. Prefer a proper "
            "prior; silence with warnings.filterwarnings('ignore', category=hb.ImproperPriorWarning).",
            ImproperPriorWarning,
            stacklevel=3,
        )

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution: ``Flat`` (for a scale, ``HalfFlat`` is used instead)."""
        return "Flat", {}


@dataclass(frozen=True, kw_only=True)
class StudentT:
    r"""Student-t prior on fixed effects, :math:`\beta \sim t_\nu(\mu, \sigma)`."""

    nu: float
    mu: float = 0.0
    sigma: float
    kind: Literal["studentt"] = field(default="studentt", init=False)

    def __post_init__(self) -> None:
        _positive("StudentT", nu=self.nu, sigma=self.sigma)

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "StudentT", {"nu": self.nu, "mu": self.mu, "sigma": self.sigma}


@dataclass(frozen=True, kw_only=True)
class Laplace:
    r"""Laplace (double-exponential) prior on fixed effects, density :math:`e^{-|\beta - \mu|/b}/(2b)`."""

    mu: float = 0.0
    b: float
    kind: Literal["laplace"] = field(default="laplace", init=False)

    def __post_init__(self) -> None:
        _positive("Laplace", b=self.b)

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return "Laplace", {"mu": self.mu, "b": self.b}


_DIST_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def _numeric(value: object, where: str) -> float | tuple[float, ...]:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.ndim > 1 or not np.all(np.isfinite(arr)):
        raise PriorError(f"{where}: parameters must be finite numbers (or lists of numbers); received {value!r}.")
    return float(arr) if arr.ndim == 0 else tuple(float(v) for v in arr)


@dataclass(frozen=True, init=False)
class Prior:
    """Any PyMC distribution by name and numeric parameters: ``Prior("Gamma", alpha=2, beta=0.1)``.

    The escape hatch for priors hierbayes has no class for (translating a Stan or brms model).
    The name must be a PyMC distribution (checked when the model is built); parameters are
    numbers or lists of numbers. As the prior of a scale its support must be positive.
    """

    dist: str
    params: tuple[tuple[str, float | tuple[float, ...]], ...]
    kind: str = "prior"

    def __init__(self, dist: str, /, **params: Any) -> None:
        if not isinstance(dist, str) or not _DIST_NAME.match(dist):
            raise PriorError(
                f"Prior: the distribution must be the name of a PyMC distribution such as 'Gamma' or 'StudentT'; "
                f"received {dist!r}."
            )
        items = []
        for key, value in sorted(params.items()):
            if not re.match(r"^[a-z][a-z0-9_]*$", key):
                raise PriorError(f"Prior({dist!r}): parameter name {key!r} is not allowed.")
            items.append((key, _numeric(value, f"Prior({dist!r}).{key}")))
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", tuple(items))
        object.__setattr__(self, "kind", "prior")

    def pymc(self) -> tuple[str, dict[str, Any]]:
        """The PyMC distribution and its keyword arguments."""
        return self.dist, dict(self.params)


ScalePrior = HalfNormal | HalfStudentT | HalfCauchy | Exponential | Gamma | InverseGamma | Uniform | Flat | Prior
FixedPrior = Normal | StudentT | Laplace | Flat | Prior

SCALE_PRIORS: dict[str, type] = {
    "halfnormal": HalfNormal,
    "halfstudentt": HalfStudentT,
    "halfcauchy": HalfCauchy,
    "exponential": Exponential,
    "gamma": Gamma,
    "inversegamma": InverseGamma,
    "uniform": Uniform,
    "flat": Flat,
    "prior": Prior,
}
#: Non-normal priors of fixed effects, by the ``dist`` of their dict form.
FIXED_PRIORS: dict[str, type] = {"studentt": StudentT, "laplace": Laplace, "flat": Flat, "prior": Prior}


def prior_from_dict(value: Mapping[str, object], where: str, allowed: Mapping[str, type]) -> Any:
    """Build a prior from its dict form: ``{"dist": "gamma", "alpha": 2, "beta": 0.1}``, ``{"dist": "prior", ...}``."""
    params = dict(value)
    dist = str(params.pop("dist", "")).lower().replace("_", "").replace("-", "")
    if dist not in allowed:
        raise PriorError(
            f"{where}: unknown prior distribution {value.get('dist')!r}; allowed: {', '.join(sorted(allowed))}."
        )
    try:
        if dist == "prior":
            name = params.pop("name", None)
            return Prior(str(name), **params)
        return allowed[dist](**params)
    except TypeError as err:
        raise PriorError(f"{where}: {err}") from None


def scale_prior_from_dict(value: Mapping[str, object], where: str) -> ScalePrior:
    """Build a scale prior from ``{"dist": "halfnormal", "scale": 2.0}`` (model cards)."""
    return prior_from_dict(value, where, SCALE_PRIORS)


def prior_to_dict(prior: Any) -> dict[str, Any]:
    """The dict form of a scale or non-normal fixed-effect prior (inverse of :func:`prior_from_dict`)."""
    if isinstance(prior, Prior):
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in prior.params}
        return {"dist": "prior", "name": prior.dist, **params}
    out: dict[str, Any] = {"dist": prior.kind}
    for f in dataclasses.fields(prior):
        if f.name != "kind" and f.init:
            out[f.name] = getattr(prior, f.name)
    return out


@dataclass(frozen=True, kw_only=True)
class LKJ:
    """LKJ prior on a correlation matrix; ``eta = 1`` is uniform, larger favours independence."""

    eta: float = 1.0

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise PriorError(f"LKJ prior: eta must be positive; received {self.eta!r}.")


def _freeze_map(value: object, what: str, types: tuple[type, ...], *, nested: bool = False) -> object:
    """A prior, or a dict of priors (``nested``: of priors or of dicts of priors) as sorted tuples."""
    if value is None or isinstance(value, types):
        return value
    if isinstance(value, Mapping):
        items = []
        for key, val in value.items():
            if nested and isinstance(val, Mapping | tuple) and not isinstance(val, types):
                val = _freeze_map(val, f"{what}[{key!r}]", types)
            elif not isinstance(val, types):
                raise PriorError(
                    f"Priors.{what}[{key!r}] must be one of {', '.join(t.__name__ for t in types)}"
                    + (" or a dict {term: prior}" if nested else "")
                    + f"; received {type(val).__name__}."
                )
            items.append((str(key), val))
        return tuple(sorted(items, key=lambda kv: kv[0]))
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return tuple(sorted(value, key=lambda kv: kv[0]))
    raise PriorError(
        f"Priors.{what} must be one of {', '.join(t.__name__ for t in types)} or a dict of them; "
        f"received {type(value).__name__}."
    )


@dataclass(frozen=True, kw_only=True)
class Priors:
    """All the priors of a model; ``None`` means the documented data-scaled default.

    Parameters
    ----------
    fixed
        ``Normal(mean=b, cov=B)`` over all fixed effects (in model-matrix order), a
        :class:`StudentT`, :class:`Laplace`, :class:`Flat` or :class:`Prior` for every
        coefficient, or a dict ``{coefficient name: prior}`` overriding single coefficients (the
        rest keep their defaults).
    group_sd
        A scale prior for every random-effect sd, a dict ``{group name: prior}``, or per term
        ``{group name: {term: prior}}`` (``{"Subject": {"Intercept": ..., "Days": ...}}``; terms
        not named keep their default).
    sigma
        Scale prior of the residual sd (Gaussian, Student-t, lognormal).
    lkj
        Prior of the correlation matrices of full-covariance group terms.
    """

    fixed: FixedPrior | tuple[tuple[str, FixedPrior], ...] | None = None
    group_sd: ScalePrior | tuple[tuple[str, ScalePrior | tuple[tuple[str, ScalePrior], ...]], ...] | None = None
    sigma: ScalePrior | None = None
    lkj: LKJ = LKJ()

    def __post_init__(self) -> None:
        fixed_types = (Normal, *FIXED_PRIORS.values())
        object.__setattr__(self, "fixed", _freeze_map(self.fixed, "fixed", fixed_types))
        object.__setattr__(
            self, "group_sd", _freeze_map(self.group_sd, "group_sd", tuple(SCALE_PRIORS.values()), nested=True)
        )
        if self.sigma is not None and not isinstance(self.sigma, tuple(SCALE_PRIORS.values())):
            raise PriorError(f"Priors.sigma must be a scale prior; received {type(self.sigma).__name__}.")
        if not isinstance(self.lkj, LKJ):
            raise PriorError(f"Priors.lkj must be hb.LKJ(eta=...); received {type(self.lkj).__name__}.")

    def check_against(self, fixed_names: Sequence[str], group_names: Sequence[str]) -> None:
        """Check shapes and names against a model's coefficients and groups (no data needed).

        Raises
        ------
        PriorError
            When ``B``/``b`` do not match the number of fixed effects, or a named coefficient or
            group is not in the model.
        """
        names = list(fixed_names)
        if isinstance(self.fixed, Normal):
            self.fixed.moments(len(names), names)
        elif isinstance(self.fixed, tuple):
            for name, prior in self.fixed:
                if name not in names:
                    raise PriorError(
                        f"Priors.fixed names coefficient {name!r}, which is not in the model; "
                        f"coefficients are: {', '.join(names)}."
                    )
                if isinstance(prior, Normal) and prior.cov is not None:
                    raise PriorError(f"Priors.fixed[{name!r}]: a single coefficient takes sd=, not cov=.")
        if isinstance(self.group_sd, tuple):
            for name, _ in self.group_sd:
                if name not in group_names:
                    raise PriorError(
                        f"Priors.group_sd names group {name!r}, which is not in the model; groups are: "
                        f"{', '.join(group_names)}."
                    )
