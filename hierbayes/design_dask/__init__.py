r"""Designs from data that do not fit in memory: Dask data frames and Parquet files.

:func:`make_design_dask` does what :func:`hierbayes.make_design` does, on the Dask graph, in
two passes over the data:

1. **Scan** (one task per partition, merged in a tree): the number of rows; per column the
   count of missing and of infinite values with the first partition and row; the distinct
   combinations of the grouping columns; the distinct values of the categorical columns; and
   a seeded uniform sample of rows (a reservoir per partition, merged exactly: from two
   uniform samples of :math:`n_a` and :math:`n_b` rows the count kept from the first is
   hypergeometric).
2. **Statistics**: per partition, the fixed-effect and varying-term matrices (the formulaic
   spec fixed on the client, so every partition is encoded alike), the level codes (a hash
   lookup in the table of combinations) and the sufficient statistics of
   :mod:`hierbayes.statistics`, added in a tree.

Levels, nesting and data checks run on the client on the combinations, with the same code
and the same errors as in memory (:mod:`hierbayes.design`), naming the partition and row
where that is known. The returned :class:`~hierbayes.design.Design` holds the statistics of
all rows (:attr:`~hierbayes.design.Design.statistics`) and, as its row-level arrays, the seeded
random sample, which is what row-level summaries (posterior predictive checks, pointwise
log-likelihood) then use.

:func:`design_from_statistics` rebuilds that design without Dask from the sample and the
statistics, levels, nesting and categories of all rows (what a saved fit holds; :func:`hierbayes.load`).

Dask is optional (``pip install "hierbayes[dask]"``) and imported only here, when Dask data
or a Parquet path is given. The computation runs on the active ``dask.distributed`` client if
there is one, else on a ``LocalCluster`` sized to the machine, closed afterwards.
"""

from hierbayes.design_dask.make import design_from_statistics, make_design_dask
from hierbayes.design_dask.scan import DEFAULT_SAMPLE_ROWS, dask_client, is_dask_input, read_dask

__all__ = [
    "DEFAULT_SAMPLE_ROWS",
    "dask_client",
    "design_from_statistics",
    "is_dask_input",
    "make_design_dask",
    "read_dask",
]
