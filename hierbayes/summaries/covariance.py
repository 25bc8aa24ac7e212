r"""The marginal covariance of the response implied by a fitted model.

Integrating the random effects out of
:math:`y = X\beta + \sum_k Z_k u_k + e` with :math:`u_{kj} \sim N(0, \Omega_k)` and
:math:`e \sim N(0, \sigma^2 I)` gives

.. math::

    \operatorname{Cov}(y) = \sum_k Z_k (I \otimes \Omega_k) Z_k^\top + \sigma^2 I,
    \qquad
    \operatorname{Cov}(y_r, y_s) = \sum_k [j_k(r) = j_k(s)]\; z_{rk}^\top \Omega_k z_{sk}
    + [r = s]\, \sigma_r^2 .

Two rows are correlated through every grouping factor whose level they share. For the
three-level achievement model (school variance :math:`\nu^2`, child :math:`\tau^2`, residual
:math:`\sigma^2`):

=====================================  =====================================
rows                                   covariance
=====================================  =====================================
the same row                           :math:`\nu^2 + \tau^2 + \sigma^2`
same child, different years            :math:`\nu^2 + \tau^2`
same school, different children        :math:`\nu^2`
different schools                      0
=====================================  =====================================

With random slopes the covariance depends on the covariates: for one factor with
:math:`z = (1, x)` and :math:`\Omega = \begin{pmatrix}\tau_0^2 & \tau_{01}\\ \tau_{01} & \tau_1^2\end{pmatrix}`,
:math:`\operatorname{Cov}(y_r, y_s) = \tau_0^2 + (x_r + x_s)\tau_{01} + x_r x_s \tau_1^2` within a
group, and :math:`\operatorname{Var}(y_r) = \tau_0^2 + 2x_r\tau_{01} + x_r^2\tau_1^2 + \sigma^2`.

For Gaussian models this is exact; the residual variance is :math:`\sigma^2`, or the known
:math:`\sigma_r^2` of each row. For GLMMs it is the covariance of the **latent** variable
:math:`\eta + e` on the link scale, with the latent residual variance of
:mod:`hierbayes.summaries.variance` (logit :math:`\pi^2/3`, probit 1; for the log link
:math:`\log(1 + 1/\mu_r)` per row, with :math:`\mu_r` the row's marginal expected count).

The matrix is computed for every posterior draw; :func:`implied_covariance` returns its
posterior mean (for ``kind="correlation"`` the mean of the per-draw correlation matrices), and
:func:`implied_covariance_draws` the draws themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.exceptions import DataError
from hierbayes.inference.result import Fit
from hierbayes.summaries.variance import group_covariance_draws, latent_residual_draws, scale_label

__all__ = ["implied_covariance", "implied_covariance_draws"]

Kind = Literal["covariance", "correlation"]

#: Largest number of rows :func:`implied_covariance` builds when ``rows`` is not given.
MAX_DEFAULT_ROWS = 100

_CHUNK = 250  # draws per chunk: bounds memory at _CHUNK * m^2 floats


def _positions(fit: Fit, rows: Sequence[object] | None) -> np.ndarray:
    index = fit.data.index
    if rows is None:
        if len(index) > MAX_DEFAULT_ROWS:
            raise DataError(
                f"The data have {len(index)} rows; the implied covariance matrix would be {len(index)} x "
                f"{len(index)}. Choose the rows: rows=[...] with labels of fit.data.index, e.g. "
                f"rows=fit.data.index[:{min(12, len(index))}]."
            )
        return np.arange(len(index))
    labels = list(rows)
    if not labels:
        raise DataError("rows= is empty; give at least one label of fit.data.index.")
    pos = index.get_indexer(labels)
    missing = [lab for lab, p in zip(labels, pos, strict=True) if p < 0]
    if missing:
        raise DataError(
            f"rows= has {len(missing)} label(s) that are not rows used in the fit (e.g. {missing[0]!r}). "
            f"Use labels of fit.data.index (it runs {index[0]!r} ... {index[-1]!r}; rows dropped by "
            "dropna=True are not in it)."
        )
    return np.asarray(pos, dtype=np.int64)


def _labels(fit: Fit, pos: np.ndarray) -> list[str]:
    design = fit.design
    data = design.data
    factors = list(dict.fromkeys(f for g in design.groups for f in g.term.factor))
    slopes: dict[str, np.ndarray] = {}
    for g in design.groups:
        for k, name in enumerate(g.coef_names):
            if name != "Intercept" and name not in slopes:
                slopes[name] = g.Z[:, k]
    out = []
    for p in pos:
        parts = [f"{f}={data[f].iloc[p]}" for f in factors]
        parts += [f"{name}={values[p]:g}" for name, values in slopes.items()]
        parts.append(f"row={data.index[p]}")
        out.append(", ".join(parts))
    return out


def _covariance_chunks(fit: Fit, pos: np.ndarray) -> Iterator[np.ndarray]:
    """Yield the per-draw covariance of the chosen rows, in chunks of shape ``(s, m, m)``."""
    post = fit.posterior
    design = fit.design
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    parts = []
    for g in design.groups:
        omega = group_covariance_draws(post, g).reshape(n_chain * n_draw, len(g.coef_names), len(g.coef_names))
        idx = g.index[pos]
        same = (idx[:, None] == idx[None, :]).astype(float)
        parts.append((g.Z[pos], omega, same))
    resid = latent_residual_draws(fit, pos).reshape(n_chain * n_draw, len(pos))
    m = len(pos)
    for start in range(0, n_chain * n_draw, _CHUNK):
        stop = min(start + _CHUNK, n_chain * n_draw)
        K = np.zeros((stop - start, m, m))
        for Z, omega, same in parts:
            K += np.einsum("ra,sab,tb->srt", Z, omega[start:stop], Z) * same
        K[:, np.arange(m), np.arange(m)] += resid[start:stop]
        yield K


def _to_correlation(K: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.diagonal(K, axis1=-2, axis2=-1))
    return K / d[..., :, None] / d[..., None, :]


def _check_kind(kind: str) -> None:
    if kind not in ("covariance", "correlation"):
        raise ValueError(f"kind must be 'covariance' or 'correlation'; received {kind!r}.")


def implied_covariance(fit: Fit, rows: Sequence[object] | None = None, *, kind: Kind = "covariance") -> pd.DataFrame:
    """Posterior mean of the marginal covariance (or correlation) matrix of chosen rows of ``y``.

    See the module docstring for the formula.

    Parameters
    ----------
    fit
        From :func:`hierbayes.fit`.
    rows
        Labels of ``fit.data.index``; by default all rows when there are at most
        :data:`MAX_DEFAULT_ROWS`.
    kind
        ``"covariance"`` or ``"correlation"`` (the posterior mean of the per-draw correlation).

    Returns
    -------
    pandas.DataFrame
        Square, rows and columns labelled by the grouping factors' values, the varying terms'
        values and the row label, e.g. ``"school=2020, child=1, row=0"``. ``attrs["scale"]``
        states the scale (data scale, or the latent scale of a GLMM).

    Examples
    --------
    >>> hb.implied_covariance(fit, rows=[0, 1, 3, 50], kind="correlation")  # doctest: +SKIP
    """
    _check_kind(kind)
    pos = _positions(fit, rows)
    total = np.zeros((len(pos), len(pos)))
    count = 0
    for K in _covariance_chunks(fit, pos):
        if kind == "correlation":
            K = _to_correlation(K)
        total += K.sum(axis=0)
        count += K.shape[0]
    labels = _labels(fit, pos)
    out = pd.DataFrame(total / count, index=labels, columns=labels)
    out.attrs["scale"] = scale_label(fit)
    out.attrs["kind"] = kind
    return out


def implied_covariance_draws(
    fit: Fit, rows: Sequence[object] | None = None, *, kind: Kind = "covariance"
) -> xr.DataArray:
    """The marginal covariance (or correlation) matrix of chosen rows of ``y``, per posterior draw.

    Parameters are those of :func:`implied_covariance`.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, row, row_)``, both row coordinates holding the labels of
        :func:`implied_covariance`; ``attrs["scale"]`` states the scale.
    """
    _check_kind(kind)
    pos = _positions(fit, rows)
    chunks = [(_to_correlation(K) if kind == "correlation" else K) for K in _covariance_chunks(fit, pos)]
    post = fit.posterior
    values = np.concatenate(chunks, axis=0).reshape(post.sizes["chain"], post.sizes["draw"], len(pos), len(pos))
    labels = _labels(fit, pos)
    return xr.DataArray(
        values,
        dims=("chain", "draw", "row", "row_"),
        coords={
            "chain": post.coords["chain"].values,
            "draw": post.coords["draw"].values,
            "row": labels,
            "row_": labels,
        },
        name=kind,
        attrs={"scale": scale_label(fit), "kind": kind},
    )
