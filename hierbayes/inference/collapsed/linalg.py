"""Small dense linear algebra for batches of posterior draws (numpy).

Cholesky factors and triangular solves of stacks of ``q x q`` matrices, and sums over nested levels.

Shared by the exact random-effect draws (:mod:`hierbayes.inference.collapsed.build`) and REML/ML
(:mod:`hierbayes.inference.collapsed.reml`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["backward", "chol", "forward", "sum_outer", "swap_last"]


def chol(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of small SPD matrices ``(..., q, q)``."""
    if M.shape[-1] == 1:
        return np.sqrt(M)
    return np.linalg.cholesky(M)


def forward(C: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve :math:`C X = B` for lower-triangular ``C`` (``(..., q, q)``), ``B`` (``(..., q, k)``)."""
    q = C.shape[-1]
    rows: list[np.ndarray] = []
    for i in range(q):
        s = B[..., i, :]
        for k in range(i):
            s = s - C[..., i, k, None] * rows[k]
        rows.append(s / C[..., i, i, None])
    return np.stack(rows, axis=-2)


def backward(C: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve :math:`C' X = B` for lower-triangular ``C``."""
    q = C.shape[-1]
    rows: list[np.ndarray] = [np.empty(0)] * q
    for i in reversed(range(q)):
        s = B[..., i, :]
        for k in range(i + 1, q):
            s = s - C[..., k, i, None] * rows[k]
        rows[i] = s / C[..., i, i, None]
    return np.stack(rows, axis=-2)


def swap_last(a: np.ndarray) -> np.ndarray:
    """Transpose the last two axes."""
    return np.swapaxes(a, -1, -2)


def sum_outer(P: sp.csr_matrix, x: np.ndarray) -> np.ndarray:
    """Sum ``x`` (``(S, J, ...)``) over the inner levels of each outer level: ``(S, K, ...)``."""
    S, J = x.shape[:2]
    flat = np.moveaxis(x, 1, 0).reshape(J, -1)
    out = np.asarray(P @ flat)
    return np.moveaxis(out.reshape(P.shape[0], S, *x.shape[2:]), 0, 1)
