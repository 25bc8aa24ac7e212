r"""Regenerate ``birds.csv``: a SIMULATED count data set with unequal effort (no birds were counted).

Design: 40 sites surveyed in each of 5 years (200 rows); each survey lasted ``hours`` (0.5 to 4
hours, so the expected count is a rate per hour times the effort); ``forest`` is the site's forest
cover (0-1, a site-level covariate). Model (site :math:`s`, year :math:`t`):

.. math::

    y_{st} \sim \mathrm{NegBin}(\mu_{st}, \alpha), \qquad
    \log \mu_{st} = \log \mathrm{hours}_{st} + \beta_0 + \beta_1\,\mathrm{forest}_s + u_s, \qquad
    u_s \sim N(0, 0.4^2),

with :math:`\beta_0 = \log 3` (3 birds per hour at a site without forest), :math:`\beta_1 = 0.9`
(full forest: :math:`e^{0.9} \approx 2.5` times the rate) and :math:`\alpha = 5`
(:math:`\operatorname{Var} = \mu + \mu^2/\alpha`: over-dispersed), drawn with
``numpy.random.default_rng(20250116)``. ``log_hours`` is the offset column:
``count ~ forest + offset(log_hours) + (1 | site)``, family ``negative_binomial``.

Run ``python -m hierbayes.datasets.make_birds`` to rewrite the CSV (bit-identical).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N_SITES = 40
YEARS = (2020, 2021, 2022, 2023, 2024)
INTERCEPT = float(np.log(3.0))
FOREST = 0.9
SITE_SD = 0.4
ALPHA = 5.0
SEED = 20250116


def simulate(seed: int = SEED) -> pd.DataFrame:
    """Simulate the bird counts (see the module docstring)."""
    rng = np.random.default_rng(seed)
    forest = rng.uniform(0.0, 1.0, N_SITES).round(2)
    u = rng.normal(0.0, SITE_SD, N_SITES)
    rows = []
    for s in range(N_SITES):
        for year in YEARS:
            hours = round(float(rng.uniform(0.5, 4.0)), 2)
            mu = hours * np.exp(INTERCEPT + FOREST * forest[s] + u[s])
            count = int(rng.negative_binomial(ALPHA, ALPHA / (ALPHA + mu)))
            rows.append({"site": f"site{s + 1:02d}", "year": year, "forest": forest[s], "hours": hours, "count": count})
    out = pd.DataFrame(rows)
    out["log_hours"] = np.log(out["hours"]).round(6)
    return out


if __name__ == "__main__":  # pragma: no cover
    target = Path(__file__).with_name("birds.csv")
    simulate().to_csv(target, index=False)
    print(f"wrote {target}")
