r"""Response families: response checks and the scales used downstream.

=====================  ===========  =====================================================
family                 links        response
=====================  ===========  =====================================================
``gaussian``           identity     real numbers; :math:`y \sim N(\mu, \sigma^2)`
``bernoulli``          logit,       0/1 (or booleans); :math:`y \sim \mathrm{Bernoulli}(p)`
                       probit
``binomial``           logit,       integer successes :math:`0 \le y \le n` with ``trials``
                       probit       :math:`n` (or ``failures`` :math:`n - y`)
``poisson``            log          non-negative integers, optional ``offset``
``negative_binomial``  log          non-negative integers; :math:`\mathrm{Var} = \mu + \mu^2/\alpha`
=====================  ===========  =====================================================

Latent-scale residual variances (used by variance partitions): logit :math:`\pi^2/3`,
probit 1; Poisson and negative binomial use the log-normal approximation
:math:`\log(1 + 1/\lambda)` (resp. :math:`\log(1 + 1/\lambda + 1/\alpha)`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierbayes.exceptions import DataError

__all__ = ["check_response", "latent_residual_variance"]


def _show_rows(data: pd.DataFrame, mask: np.ndarray, columns: list[str], limit: int = 5) -> str:
    bad = data.loc[mask, columns].head(limit)
    return f"{int(mask.sum())} offending row(s), first ones:\n{bad.to_string()}"


def _as_float(data: pd.DataFrame, column: str, family: str) -> np.ndarray:
    series = data[column]
    if series.dtype == bool:
        return np.array(series, dtype=float)
    if not pd.api.types.is_numeric_dtype(series):
        raise DataError(
            f"Response column {column!r} must be numeric for the {family} family; it has dtype "
            f"{series.dtype} (e.g. {series.iloc[0]!r}). Convert it, e.g. "
            f"data[{column!r}] = pd.to_numeric(data[{column!r}])"
            + (" or (data[col] == 'yes').astype(int)." if family in ("bernoulli", "binomial") else ".")
        )
    return np.array(series, dtype=float)


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
    y = _as_float(data, response, family)
    if family == "gaussian":
        return y, None
    if family == "bernoulli":
        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            values = ", ".join(map(repr, sorted(set(data.loc[bad, response].tolist()))[:5]))
            raise DataError(
                f"The bernoulli family needs a 0/1 response, but column {response!r} has other values "
                f"({values}). Recode it to 0/1, or use family='binomial' with trials= for counts of "
                f"successes. {_show_rows(data, bad, [response])}"
            )
        return y, None
    if family == "binomial":
        if failures is not None:
            n = y + _as_float(data, failures, family)
            cols = [response, failures]
        else:
            assert trials is not None
            n = _as_float(data, trials, family)
            cols = [response, trials]
        bad = (y < 0) | (y > n) | (y != np.round(y)) | (n != np.round(n)) | (n < 1)
        if bad.any():
            raise DataError(
                f"The binomial family needs integer successes 0 <= {response} <= trials and trials >= 1 "
                f"(columns {', '.join(map(repr, cols))}). {_show_rows(data, bad, cols)}"
            )
        return y, n
    if family in ("poisson", "negative_binomial"):
        bad = (y < 0) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"The {family} family needs non-negative integer counts, but column {response!r} has "
                f"negative or non-integer values. {_show_rows(data, bad, [response])}"
            )
        return y, None
    raise DataError(f"Unknown family {family!r}.")  # pragma: no cover - ModelSpec validates


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
    if link == "logit":
        return float(np.pi**2 / 3)
    if link == "probit":
        return 1.0
    if link == "log":
        if mean is None:
            raise ValueError(
                "The latent residual variance of a log-link model depends on the expected count: "
                "pass mean= (lambda > 0), and alpha= for the negative binomial."
            )
        lam = np.asarray(mean, dtype=float)
        extra = 0.0 if alpha is None else 1.0 / np.asarray(alpha, dtype=float)
        out = np.log1p(1.0 / lam + extra)
        return float(out) if out.ndim == 0 else out
    raise ValueError(f"No latent residual variance for link {link!r}; allowed: logit, probit, log.")
