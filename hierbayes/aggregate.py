r"""Exact aggregation of count rows on Dask: Bernoulli/binomial to binomial counts, Poisson to summed counts.

Rows that share every covariate and every grouping column share the linear predictor
:math:`\eta`, so their likelihood depends on the responses only through sums:

* **Bernoulli / binomial.** For rows :math:`i \in c` with successes :math:`y_i` out of
  :math:`n_i` trials (:math:`n_i = 1` for Bernoulli) and :math:`p = g^{-1}(\eta_c)`,
  :math:`\prod_i p^{y_i}(1-p)^{n_i-y_i} = p^{Y}(1-p)^{N-Y}` with :math:`Y = \sum y_i`,
  :math:`N = \sum n_i`: one binomial row :math:`Y \sim \mathrm{Bin}(N, p)` gives the same
  posterior (the binomial coefficient does not depend on the parameters).
* **Poisson (log link).** With exposures :math:`E_i = e^{o_i}` (offset :math:`o_i`, or 1),
  :math:`\prod_i \mathrm{Pois}(y_i \mid E_i e^{\eta_c}) \propto
  \mathrm{Pois}(Y \mid E e^{\eta_c})`, :math:`E = \sum_i E_i`: one row with count :math:`Y`
  and offset :math:`\log E`.

The negative binomial (and the Poisson with another link) has no such reduction. The
aggregated rows are collected into a pandas frame, which the in-memory pipeline then fits;
this pays when the number of distinct covariate patterns is far below the number of rows
(categorical or rounded covariates).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from hierbayes.design import check_columns, required_columns
from hierbayes.design_dask.make import plain_frame
from hierbayes.design_dask.scan import check_scan, compute_graph, dask_client, read_dask, scan_data
from hierbayes.exceptions import SpecError
from hierbayes.families import get_family
from hierbayes.spec.model import ModelSpec

__all__ = ["EXPOSURE_COLUMN", "MAX_PATTERNS", "TRIALS_COLUMN", "aggregate_counts"]

#: Largest number of aggregated rows (distinct covariate patterns) collected into memory.
MAX_PATTERNS = 5_000_000
#: Name of the trials column of aggregated Bernoulli rows.
TRIALS_COLUMN = "n_trials"
#: Name of the log-exposure offset column of aggregated Poisson rows.
EXPOSURE_COLUMN = "log_exposure"


def _plan(spec: ModelSpec) -> tuple[ModelSpec, dict[str, tuple[str, str]], dict[str, str]]:
    """The aggregated spec, the named aggregations and the new columns' sources."""
    family, response = spec.family, spec.response
    how = get_family(family).aggregation
    if how == "binomial":
        trials = spec.trials or TRIALS_COLUMN
        aggs = {response: (response, "sum")}
        if spec.failures:
            aggs[spec.failures] = (spec.failures, "sum")
            return spec, aggs, {}
        if spec.trials:
            aggs[trials] = (spec.trials, "sum")
            return spec, aggs, {}
        aggs[trials] = (response, "count")
        return replace(spec, family="binomial", trials=trials), aggs, {}
    if how == "poisson" and spec.link == "log":
        aggs = {response: (response, "sum"), "__exposure": ("__exposure", "sum")}
        return replace(spec, offset=EXPOSURE_COLUMN), aggs, {"__exposure": spec.offset or ""}
    raise SpecError(
        f"The {family} family (link {spec.link}) cannot be fitted from Dask data: it has neither a closed-form "
        "marginal likelihood nor an exact aggregation (Bernoulli/binomial rows become binomial counts, Poisson "
        "rows with the log link summed counts with summed exposure). Fit a sample in memory: "
        "hb.fit(model, ddf.sample(frac=0.01, random_state=1).compute())."
    )


def aggregate_counts(spec: ModelSpec, data: Any, *, progressbar: bool = False) -> tuple[ModelSpec, pd.DataFrame]:
    """Aggregate Bernoulli/binomial or Poisson rows of Dask data exactly (module docstring).

    Parameters
    ----------
    spec
        A Bernoulli, binomial or Poisson (log link) model.
    data
        A ``dask.dataframe.DataFrame`` or a Parquet path/glob.
    progressbar
        Show the progress of the passes over the data.

    Returns
    -------
    (ModelSpec, pandas.DataFrame)
        The spec to fit to the aggregated rows (binomial with trials column
        :data:`TRIALS_COLUMN` for Bernoulli rows; Poisson with offset :data:`EXPOSURE_COLUMN`)
        and the rows, one per distinct combination of covariates and groups.

    Raises
    ------
    SpecError
        For a family without an exact aggregation, or more than :data:`MAX_PATTERNS`
        distinct combinations.
    DataError
        As :func:`hierbayes.make_design` for missing columns, missing or infinite values.
    """
    new_spec, aggs, exposure = _plan(spec)
    ddf = read_dask(data)
    columns = check_columns(spec, [str(c) for c in ddf.columns])
    value_cols = {spec.response, spec.trials, spec.failures, spec.offset} - {None}
    keys = [c for c in required_columns(spec) if c not in value_cols]
    with dask_client() as client:
        scan = scan_data(ddf, client, columns, spec, 0, 0, progressbar)
        check_scan(scan, spec, columns, dropna=False)
        if exposure:
            source = exposure["__exposure"]
            ddf = ddf.assign(__exposure=np.exp(ddf[source]) if source else 1.0)
        grouped = ddf.groupby(keys, dropna=False, observed=True, sort=False).agg(**aggs)
        patterns = int(compute_graph(client, grouped.shape[0], progressbar))
        if patterns > MAX_PATTERNS:
            raise SpecError(
                f"Aggregating the {spec.family} rows by {', '.join(keys)} leaves {patterns} distinct rows (more than "
                f"{MAX_PATTERNS}): the covariates are too fine-grained for an exact aggregation. Round or bin "
                "continuous covariates, or fit a sample in memory: hb.fit(model, ddf.sample(frac=...).compute())."
            )
        frame = compute_graph(client, grouped, progressbar).reset_index()
    if exposure:
        frame[EXPOSURE_COLUMN] = np.log(frame.pop("__exposure"))
    frame = plain_frame(frame)
    sort = [c for c in keys if c in frame.columns]
    frame = frame.sort_values(sort, kind="stable").reset_index(drop=True) if sort else frame
    return new_spec, frame
