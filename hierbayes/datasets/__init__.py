"""Data sets bundled with hierbayes (see ``README.md`` in this folder for sources and columns).

=================  ========================================================================
name               what it is
=================  ========================================================================
``achievement``    math scores: 7230 tests of 1721 children in 60 schools (mlmRev egsingle)
``guatemalan``     child immunisation: 2159 children of 1595 mothers in 161 communities
``sleepstudy``     reaction times of 18 subjects over 10 days of sleep deprivation (lme4)
``eight_schools``  SAT coaching effects with known standard errors (Rubin 1981)
``seedlings``      SIMULATED: seedling weights, 2 genotypes x 4 trays x 9 seedlings
``naming``         SIMULATED: word naming times, 30 subjects x 20 words, crossed
``birds``          SIMULATED: bird counts at 40 sites x 5 years, unequal survey hours
``cbpp``           contagious bovine pleuropneumonia: 56 herd-periods of 15 herds (lme4)
=================  ========================================================================
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["available", "load", "path"]

_FILES = {
    "achievement": "achievement.csv",
    "guatemalan": "guatemalan.csv",
    "sleepstudy": "sleepstudy.csv",
    "eight_schools": "eight_schools.csv",
    "seedlings": "seedlings.csv",
    "naming": "naming.csv",
    "birds": "birds.csv",
    "cbpp": "cbpp.csv",
}
# Columns read as categories (strings), as R has them: cbpp's period is a factor, not a number.
_DTYPES: dict[str, dict[str, type]] = {"cbpp": {"herd": str, "period": str}}


def available() -> list[str]:
    """Names of the bundled data sets."""
    return sorted(_FILES)


def path(name: str) -> str:
    """Filesystem path of a bundled data set's CSV file."""
    if name not in _FILES:
        raise KeyError(f"No bundled data set {name!r}; available: {', '.join(available())}.")
    return str(resources.files(__name__).joinpath(_FILES[name]))


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a DataFrame.

    Parameters
    ----------
    name
        One of :func:`available` (``"achievement"``, ``"guatemalan"``, ``"sleepstudy"``,
        ``"eight_schools"``, ``"seedlings"``, ``"cbpp"``).

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.datasets.load("sleepstudy").shape
    (180, 3)
    """
    return pd.read_csv(path(name), dtype=_DTYPES.get(name))
