r"""Regenerate ``seedlings.csv``: a SIMULATED two-level data set (no real seedlings were weighed).

Design: two genotypes (A, B), four trays of each genotype, nine seedlings per tray (72 rows).
Model (seedling :math:`s` in tray :math:`t` of genotype :math:`g`):

.. math::

    y_{gts} = \gamma_g + \tau_{gt} + e_{gts}, \qquad
    \tau_{gt} \sim N(0, 1^2), \qquad e_{gts} \sim N(0, 1.5^2),

with :math:`\gamma_A = 10`, :math:`\gamma_B = 12` (so :math:`\gamma_B - \gamma_A = 2`), drawn with
``numpy.random.default_rng(20240607)``. Tray ids 1-4 repeat within each genotype, so the tray
factor is ``genotype:tray``; fit it with ``weight ~ genotype + (1 | genotype:tray)``.

Run ``python -m hierbayes.datasets.make_seedlings`` to rewrite the CSV (bit-identical).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

GAMMA = {"A": 10.0, "B": 12.0}
TRAY_SD = 1.0
SIGMA = 1.5
TRAYS_PER_GENOTYPE = 4
SEEDLINGS_PER_TRAY = 9
SEED = 20240607


def simulate(seed: int = SEED) -> pd.DataFrame:
    """Simulate the seedlings data (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = []
    for genotype, gamma in GAMMA.items():
        for tray in range(1, TRAYS_PER_GENOTYPE + 1):
            tau = rng.normal(0.0, TRAY_SD)
            for seedling in range(1, SEEDLINGS_PER_TRAY + 1):
                weight = gamma + tau + rng.normal(0.0, SIGMA)
                rows.append({"genotype": genotype, "tray": tray, "seedling": seedling, "weight": round(weight, 3)})
    return pd.DataFrame(rows)


if __name__ == "__main__":  # pragma: no cover
    out = Path(__file__).with_name("seedlings.csv")
    simulate().to_csv(out, index=False)
    print(f"wrote {out}")
