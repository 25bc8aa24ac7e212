"""Sufficient statistics (:func:`hierbayes.statistics.compute_statistics`) against direct sums."""

from __future__ import annotations

import numpy as np

from hierbayes.statistics import compute_statistics


def test_level_sums_match_direct_loops():
    """Per-level Gram, Z'T and nested cross blocks equal explicit sums over each level's rows.

    The varying columns mix an intercept (ones: counted, not multiplied) and a covariate; one
    level has no rows; rows are in random order.
    """
    rng = np.random.default_rng(3)
    n, G, K = 400, 13, 4
    inner = rng.integers(0, G - 1, n)  # level G - 1 has no rows
    parent = np.arange(G) % K
    outer = parent[inner]
    D = rng.normal(size=(n, 3)) + np.array([5.0, -2.0, 0.0])
    Z_in = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z_out = np.ones((n, 1))
    stats = compute_statistics(
        D, ["y", "a", "b"], [("o", outer, K, Z_out), ("i", inner, G, Z_in)], [("i", "o")], shift=np.zeros(3)
    )
    T = np.column_stack([np.ones(n), D])
    for name, index, levels, Z in [("o", outer, K, Z_out), ("i", inner, G, Z_in)]:
        g = stats.group(name)
        for j in range(levels):
            rows = index == j
            np.testing.assert_allclose(g.gram[j], Z[rows].T @ Z[rows], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(g.ZtT[j], Z[rows].T @ T[rows], rtol=1e-12, atol=1e-12)
    cross = stats.cross["i", "o"]
    for j in range(G):
        rows = inner == j
        np.testing.assert_allclose(cross[j], Z_in[rows].T @ Z_out[rows], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.TtT, T.T @ T, rtol=1e-12)
    assert stats.group("i").gram[G - 1].sum() == 0.0
