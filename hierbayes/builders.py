r"""Named model builders; each returns the same :class:`ModelSpec` as its formula.

=================================  =========================================================
builder                            formula it equals
=================================  =========================================================
``group_means(y=, sigma=, group=)``  ``y | se(sigma) ~ 1 + (1 | group)``
``random_intercept(y=, group=, x=)`` ``y ~ x + (1 | group)``
``random_slopes(y=, group=, slopes=, x=)``  ``y ~ x + (1 + slopes | group)``
``nested(y=, groups=[a, b], x=)``  ``y ~ x + (1 | a/b)``
``glmm(y=, family=, groups=, x=)``   ``y ~ x + (1 | g1) + (1 | g2)`` (or ``(1 | g1/g2)``)
=================================  =========================================================

Passing ``data`` checks the spec against the data at once (the same checks as
:func:`hierbayes.make_design`), so mistakes surface where the model is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd

from hierbayes.design import make_design
from hierbayes.spec.formula import split_terms
from hierbayes.spec.model import GroupTerm, ModelSpec
from hierbayes.spec.priors import Priors

__all__ = ["glmm", "group_means", "nested", "random_intercept", "random_slopes"]


def _fixed(x: str | Sequence[str]) -> tuple[bool, tuple[str, ...]]:
    terms = [x] if isinstance(x, str) else list(x)
    return split_terms(" + ".join(["1", *terms]))


def _finish(spec: ModelSpec, data: pd.DataFrame | None) -> ModelSpec:
    if data is not None:
        make_design(spec, data)
    return spec


def group_means(
    data: pd.DataFrame | None = None,
    *,
    y: str,
    sigma: str,
    group: str,
    priors: Priors | None = None,
    centered: bool = False,
) -> ModelSpec:
    r"""Normal group means with known standard errors (the eight-schools model).

    .. math::

        y_j \sim N(\theta_j, \sigma_j^2), \quad \theta_j = \mu + u_j, \quad u_j \sim N(0, \tau^2)

    with :math:`\sigma_j` known (column ``sigma``); :math:`\mu` is the fixed intercept
    (``beta[Intercept]``) and :math:`\tau` is ``sd_<group>``.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.group_means(y="y", sigma="sigma", group="school") == hb.parse_formula(
    ...     "y | se(sigma) ~ 1 + (1 | school)")
    True
    """
    spec = ModelSpec(
        response=y,
        intercept=True,
        groups=(GroupTerm(factor=(group,), centered=centered),),
        known_sigma=sigma,
        priors=priors or Priors(),
    )
    return _finish(spec, data)


def random_intercept(
    data: pd.DataFrame | None = None,
    *,
    y: str,
    group: str,
    x: str | Sequence[str] = (),
    family: str = "gaussian",
    link: str | None = None,
    priors: Priors | None = None,
    centered: bool = False,
) -> ModelSpec:
    r"""Random-intercept model :math:`g(E[y_{ij}]) = x_{ij}^\top\beta + u_j`, :math:`u_j \sim N(0, \tau^2)`.

    Equals the formula ``y ~ x + (1 | group)``.
    """
    intercept, fixed = _fixed(x)
    spec = ModelSpec(
        response=y,
        fixed=fixed,
        intercept=intercept,
        groups=(GroupTerm(factor=(group,), centered=centered),),
        family=family,
        link=link,
        priors=priors or Priors(),
    )
    return _finish(spec, data)


def random_slopes(
    data: pd.DataFrame | None = None,
    *,
    y: str,
    group: str,
    slopes: str | Sequence[str],
    x: str | Sequence[str] | None = None,
    covariance: Literal["full", "diagonal"] = "full",
    family: str = "gaussian",
    link: str | None = None,
    priors: Priors | None = None,
    centered: bool = False,
) -> ModelSpec:
    r"""Correlated random intercept and slopes.

    .. math::

        g(E[y_{ij}]) = x_{ij}^\top \beta + z_{ij}^\top u_j, \qquad u_j \sim N(0, \Omega),

    with :math:`z_{ij} = (1, \text{slopes}_{ij})` and :math:`\Omega` full (LKJ prior on its
    correlation) or diagonal. ``x`` defaults to the slopes. Equals
    ``y ~ x + (1 + slopes | group)`` (``||`` for diagonal).
    """
    slope_terms = _fixed(slopes)[1]
    intercept, fixed = _fixed(slope_terms if x is None else x)
    spec = ModelSpec(
        response=y,
        fixed=fixed,
        intercept=intercept,
        groups=(
            GroupTerm(factor=(group,), intercept=True, terms=slope_terms, covariance=covariance, centered=centered),
        ),
        family=family,
        link=link,
        priors=priors or Priors(),
    )
    return _finish(spec, data)


def nested(
    data: pd.DataFrame | None = None,
    *,
    y: str,
    groups: Sequence[str],
    x: str | Sequence[str] = (),
    family: str = "gaussian",
    link: str | None = None,
    priors: Priors | None = None,
    centered: bool = False,
) -> ModelSpec:
    r"""Nested random intercepts, outermost factor first (three-level: ``["school", "child"]``).

    .. math::

        y_{tij} = x_{tij}^\top\beta + v_j + u_{ij} + e_{tij}, \quad v_j \sim N(0, \nu^2),\;
        u_{ij} \sim N(0, \tau^2),\; e_{tij} \sim N(0, \sigma^2)

    for occasion :math:`t` of child :math:`i` in school :math:`j`. Equals
    ``y ~ x + (1 | school/child)``: the inner term is ``school:child``, so child ids need only
    be unique within their school.
    """
    if isinstance(groups, str) or len(groups) < 2:
        raise ValueError(
            f"nested() needs at least two grouping factors, outermost first, e.g. groups=['school', 'child']; "
            f"received {groups!r}. Use random_intercept() for one."
        )
    intercept, fixed = _fixed(x)
    terms = tuple(GroupTerm(factor=tuple(groups[: k + 1]), centered=centered) for k in range(len(groups)))
    spec = ModelSpec(
        response=y,
        fixed=fixed,
        intercept=intercept,
        groups=terms,
        family=family,
        link=link,
        priors=priors or Priors(),
    )
    return _finish(spec, data)


def glmm(
    data: pd.DataFrame | None = None,
    *,
    y: str,
    family: str,
    groups: str | Sequence[str],
    x: str | Sequence[str] = (),
    nest: bool = False,
    link: str | None = None,
    trials: str | None = None,
    offset: str | None = None,
    priors: Priors | None = None,
    centered: bool = False,
) -> ModelSpec:
    r"""Generalised linear mixed model with random intercepts.

    .. math::

        g(E[y_i \mid u]) = x_i^\top\beta + \sum_k u_{k, j_k[i]} + o_i, \qquad u_{kj} \sim N(0, \tau_k^2)

    Parameters
    ----------
    data
        Optional data frame to check the spec against at once.
    y
        Response column.
    family
        ``"bernoulli"``, ``"binomial"``, ``"poisson"``, ``"negative_binomial"`` (or ``"gaussian"``).
    groups
        Grouping factors; with ``nest=True`` they are a nesting path, outermost first
        (``["cluster", "mom"]`` equals ``(1 | cluster/mom)``), otherwise separate (crossed or
        already uniquely coded) intercepts ``(1 | g1) + (1 | g2)``.
    x
        Fixed-effect terms.
    nest
        Treat ``groups`` as a nesting path.
    link, trials, offset
        See :class:`ModelSpec`.
    priors
        Priors; ``None`` takes the data-scaled defaults.
    centered
        Centred parametrisation for every random term.
    """
    names = [groups] if isinstance(groups, str) else list(groups)
    if nest:
        terms = tuple(GroupTerm(factor=tuple(names[: k + 1]), centered=centered) for k in range(len(names)))
    else:
        terms = tuple(GroupTerm(factor=(g,), centered=centered) for g in names)
    intercept, fixed = _fixed(x)
    spec = ModelSpec(
        response=y,
        fixed=fixed,
        intercept=intercept,
        groups=terms,
        family=family,
        link=link,
        trials=trials,
        offset=offset,
        priors=priors or Priors(),
    )
    return _finish(spec, data)
