r"""Regenerate ``naming.csv``: a SIMULATED crossed data set (subjects x words; no one was timed).

Design: 30 subjects each name the same 20 words once (600 rows); 10 words are frequent, 10 rare
(``frequency`` is a property of the word). Model (subject :math:`s`, word :math:`w`):

.. math::

    \log \mathrm{rt}_{sw} = \beta_0 + \beta_1\,\mathrm{rare}_w + a_s + b_w + e_{sw}, \qquad
    a_s \sim N(0, 0.15^2), \quad b_w \sim N(0, 0.06^2), \quad e_{sw} \sim N(0, 0.12^2),

with :math:`\beta_0 = \log 600` and :math:`\beta_1 = 0.08` (rare words take about 8 % longer),
drawn with ``numpy.random.default_rng(20250115)``. Subjects and words are crossed: every word id
appears with every subject, so the model is ``log_rt ~ frequency + (1 | subject) + (1 | word)``.

Run ``python -m hierbayes.datasets.make_naming`` to rewrite the CSV (bit-identical).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N_SUBJECTS = 30
N_WORDS = 20
INTERCEPT = float(np.log(600.0))
RARE = 0.08
SUBJECT_SD = 0.15
WORD_SD = 0.06
SIGMA = 0.12
SEED = 20250115


def simulate(seed: int = SEED) -> pd.DataFrame:
    """Simulate the naming data (see the module docstring)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, SUBJECT_SD, N_SUBJECTS)
    b = rng.normal(0.0, WORD_SD, N_WORDS)
    rare = np.arange(N_WORDS) >= N_WORDS // 2
    rows = []
    for s in range(N_SUBJECTS):
        for w in range(N_WORDS):
            log_rt = INTERCEPT + RARE * rare[w] + a[s] + b[w] + rng.normal(0.0, SIGMA)
            rows.append(
                {
                    "subject": f"s{s + 1:02d}",
                    "word": f"w{w + 1:02d}",
                    "frequency": "rare" if rare[w] else "frequent",
                    "rt": round(float(np.exp(log_rt)), 1),
                }
            )
    out = pd.DataFrame(rows)
    out["log_rt"] = np.log(out["rt"]).round(5)
    return out


if __name__ == "__main__":  # pragma: no cover
    target = Path(__file__).with_name("naming.csv")
    simulate().to_csv(target, index=False)
    print(f"wrote {target}")
