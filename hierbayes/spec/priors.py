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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hierbayes.exceptions import PriorError

__all__ = [
    "LKJ",
    "Exponential",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Priors",
    "ScalePrior",
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
                raise PriorError(
                    f"Normal prior cov B must be a square p x p matrix; received shape {cov.shape}."
                )
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
                f"Normal prior: b has length {b.shape[0]} but the model has {p} fixed effects "
                f"({', '.join(names)})."
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
            raise PriorError(
                f"{type(self).__name__} prior: scale must be a positive number; received {self.scale!r}."
            )


@dataclass(frozen=True, kw_only=True)
class HalfNormal(_Scale):
    """Half-normal prior on a standard deviation, ``sd ~ |N(0, scale^2)|``."""

    kind: Literal["halfnormal"] = field(default="halfnormal", init=False)


@dataclass(frozen=True, kw_only=True)
class HalfStudentT(_Scale):
    """Half-Student-t prior on a standard deviation, ``sd ~ |t_nu(0, scale)|``."""

    nu: float = 3.0
    kind: Literal["halfstudentt"] = field(default="halfstudentt", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.nu > 0:
            raise PriorError(f"HalfStudentT prior: nu must be positive; received {self.nu!r}.")


@dataclass(frozen=True, kw_only=True)
class HalfCauchy(_Scale):
    """Half-Cauchy prior on a standard deviation, ``sd ~ |Cauchy(0, scale)|``."""

    kind: Literal["halfcauchy"] = field(default="halfcauchy", init=False)


@dataclass(frozen=True, kw_only=True)
class Exponential(_Scale):
    """Exponential prior on a standard deviation with mean ``scale``."""

    kind: Literal["exponential"] = field(default="exponential", init=False)


ScalePrior = HalfNormal | HalfStudentT | HalfCauchy | Exponential

SCALE_PRIORS: dict[str, type] = {
    "halfnormal": HalfNormal,
    "halfstudentt": HalfStudentT,
    "halfcauchy": HalfCauchy,
    "exponential": Exponential,
}


def scale_prior_from_dict(value: Mapping[str, object], where: str) -> ScalePrior:
    """Build a scale prior from ``{"dist": "halfnormal", "scale": 2.0}`` (model cards)."""
    params = dict(value)
    dist = str(params.pop("dist", "")).lower().replace("_", "").replace("-", "")
    if dist not in SCALE_PRIORS:
        raise PriorError(
            f"{where}: unknown prior distribution {value.get('dist')!r}; "
            f"allowed: {', '.join(sorted(SCALE_PRIORS))}."
        )
    try:
        return SCALE_PRIORS[dist](**params)
    except TypeError as err:
        raise PriorError(f"{where}: {err}") from None


@dataclass(frozen=True, kw_only=True)
class LKJ:
    """LKJ prior on a correlation matrix; ``eta = 1`` is uniform, larger favours independence."""

    eta: float = 1.0

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise PriorError(f"LKJ prior: eta must be positive; received {self.eta!r}.")


def _freeze_map(value: object, what: str, types: tuple[type, ...]) -> object:
    if value is None or isinstance(value, types):
        return value
    if isinstance(value, Mapping):
        items = []
        for key, val in value.items():
            if not isinstance(val, types):
                raise PriorError(
                    f"Priors.{what}[{key!r}] must be one of {', '.join(t.__name__ for t in types)}; "
                    f"received {type(val).__name__}."
                )
            items.append((str(key), val))
        return tuple(sorted(items))
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return tuple(sorted(value))
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
        ``Normal(mean=b, cov=B)`` over all fixed effects (in model-matrix order), or a dict
        ``{coefficient name: Normal(mean, sd)}`` overriding single coefficients (the rest keep
        their defaults).
    group_sd
        A scale prior for every random-effect sd, or a dict ``{group name: prior}``.
    sigma
        Scale prior of the residual sd (Gaussian family).
    lkj
        Prior of the correlation matrices of full-covariance group terms.
    """

    fixed: Normal | tuple[tuple[str, Normal], ...] | None = None
    group_sd: ScalePrior | tuple[tuple[str, ScalePrior], ...] | None = None
    sigma: ScalePrior | None = None
    lkj: LKJ = LKJ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", _freeze_map(self.fixed, "fixed", (Normal,)))
        object.__setattr__(
            self, "group_sd", _freeze_map(self.group_sd, "group_sd", tuple(SCALE_PRIORS.values()))
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
                if prior.cov is not None:
                    raise PriorError(f"Priors.fixed[{name!r}]: a single coefficient takes sd=, not cov=.")
        if isinstance(self.group_sd, tuple):
            for name, _ in self.group_sd:
                if name not in group_names:
                    raise PriorError(
                        f"Priors.group_sd names group {name!r}, which is not in the model; groups are: "
                        f"{', '.join(group_names)}."
                    )
