r"""Model comparison by the expected log pointwise predictive density (PSIS-LOO).

For models :math:`M` fitted to the same rows :math:`y_1..y_n`,

.. math::

    \widehat{\mathrm{elpd}}_{\mathrm{loo}}(M) = \sum_i \log p(y_i \mid y_{-i}, M),

estimated by Pareto-smoothed importance sampling from the pointwise log-likelihood
:math:`\log p(y_i \mid \theta^{(s)})` (:func:`hierbayes.log_likelihood`). The comparison table is
ArviZ's (``arviz.compare``); higher ``elpd`` is better, ``elpd_diff`` and ``dse`` are the
difference from the best model and its standard error.

Note: the log-likelihood is conditional on the random effects of the rows' own groups, so
"leave one out" means leaving out one *observation* (a new observation of a known group), not
one group. With few observations per group some Pareto :math:`k` can be high; ArviZ reports
them in ``diag_elpd`` (and warns).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import arviz_stats
import numpy as np
import pandas as pd

from hierbayes.exceptions import SpecError
from hierbayes.inference.result import Fit
from hierbayes.summaries.prediction import with_log_likelihood

__all__ = ["compare"]


def _named(fits: tuple[Fit | Mapping[str, Fit], ...]) -> dict[str, Fit]:
    if len(fits) == 1 and isinstance(fits[0], Mapping):
        named = {str(k): v for k, v in fits[0].items()}
    else:
        named = {}
        for k, fit in enumerate(fits):
            if isinstance(fit, Mapping):
                raise SpecError("Pass either fits as positional arguments or one dict {name: fit}, not a mix.")
            name = fit.spec.formula() if isinstance(fit, Fit) else f"model_{k}"
            named[name if name not in named else f"{name} [{k}]"] = fit
    for name, fit in named.items():
        if not isinstance(fit, Fit):
            raise SpecError(f"Model {name!r} is a {type(fit).__name__}, not a hierbayes Fit (from hb.fit).")
    if len(named) < 2:
        raise SpecError(f"compare needs at least two fits; received {len(named)}.")
    return named


def _check_same_rows(named: dict[str, Fit]) -> None:
    items = list(named.items())
    first_name, first = items[0]
    for name, fit in items[1:]:
        same = fit.design.n_obs == first.design.n_obs and np.array_equal(fit.design.y, first.design.y)
        if not same:
            raise SpecError(
                f"Models {first_name!r} ({first.design.n_obs} rows of {first.spec.response!r}) and {name!r} "
                f"({fit.design.n_obs} rows of {fit.spec.response!r}) were not fitted to the same response; "
                "LOO can only compare models of the same observations (check dropped rows with missing values)."
            )


def compare(
    *fits: Fit | Mapping[str, Fit],
    method: Literal["stacking", "BB-pseudo-BMA", "pseudo-BMA"] = "stacking",
    reference: str | None = None,
    round_to: int | Literal["auto", "none"] = "none",
) -> pd.DataFrame:
    """Compare fits by PSIS-LOO (a thin wrapper of ``arviz.compare``).

    Parameters
    ----------
    *fits
        Two or more fits, named by their formulas, or a single dict ``{name: fit}``.
    method
        How ArviZ computes the model weights.
    reference
        Name of the model the ``elpd_diff`` column is relative to (default: the best).
    round_to
        ArviZ's rounding; ``"none"`` (default here) returns the raw numbers.

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table, best model first (columns ``rank``, ``elpd``, ``p``,
        ``elpd_diff``, ``weight``, ``se``, ``dse``, ...).

    Raises
    ------
    SpecError
        Fewer than two fits, or fits of different data.
    """
    named = _named(fits)
    _check_same_rows(named)
    trees = {name: with_log_likelihood(fit) for name, fit in named.items()}
    return arviz_stats.compare(trees, method=method, var_name="y", reference=reference, round_to=round_to)
