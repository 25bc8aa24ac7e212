r"""The model specification: one frozen value that every entry point produces.

A :class:`ModelSpec` describes a generalised linear mixed model without holding any data:

.. math::

    g(E[y_i \mid u]) = x_i^\top \beta + \sum_{k} z_{ik}^\top u_{k, j_k[i]} + o_i, \qquad
    u_{kj} \sim N(0, \Omega_k),

where :math:`j_k[i]` is the level of grouping factor :math:`k` for row :math:`i`, :math:`z_{ik}`
the varying terms of that factor, :math:`o_i` an optional offset and :math:`g` the link. For
the Gaussian family :math:`y_i \sim N(\mu_i, \sigma^2)`, or :math:`N(\mu_i, \sigma_i^2)` with a
known per-row :math:`\sigma_i` (the eight-schools model).

Both the lme4-style formula parser (:func:`hierbayes.parse_formula`) and the named builders
(:mod:`hierbayes.builders`) return a ``ModelSpec``; everything downstream has one path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from hierbayes.exceptions import FormulaError, SpecError
from hierbayes.families import get_family
from hierbayes.spec.priors import Priors
from hierbayes.spec.transforms import EXPRESSION_FUNCTIONS, check_expression, expression_columns, is_column_name

__all__ = ["GroupTerm", "ModelSpec"]

Covariance = Literal["full", "diagonal"]


@dataclass(frozen=True, kw_only=True)
class GroupTerm:
    """One random-effect term ``(terms | factor)``.

    Parameters
    ----------
    factor
        The grouping factor's columns; more than one means their interaction, e.g.
        ``("school", "child")`` for ``school:child`` (a child within a school).
    intercept
        Whether the intercept varies by the factor.
    terms
        The other varying terms (slopes), as formula terms (``"Days"``, ``"x:z"``).
    covariance
        ``"full"`` (correlated effects, LKJ prior) or ``"diagonal"`` (independent, lme4's ``||``).
    centered
        Centred parametrisation ``u ~ N(0, Omega)`` instead of the default non-centred
        ``u = L z, z ~ N(0, I)``.
    label
        The term's name when its factor appears in more than one term (lme4's uncorrelated
        ``(1 | g) + (0 + x | g)``); :class:`ModelSpec` sets it (``"g__x"``) for every term of a
        factor after the first, so that each term has its own variables and dims.
    """

    factor: tuple[str, ...]
    intercept: bool = True
    terms: tuple[str, ...] = ()
    covariance: Covariance = "full"
    centered: bool = False
    label: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.factor, str):
            object.__setattr__(self, "factor", tuple(self.factor.split(":")))
        object.__setattr__(self, "factor", tuple(f.strip() for f in self.factor))
        object.__setattr__(self, "terms", tuple(self.terms))
        if not self.factor or any(not f for f in self.factor):
            raise SpecError(f"GroupTerm: the grouping factor is empty in {self.factor!r}.")
        if not self.intercept and not self.terms:
            raise SpecError(
                f"GroupTerm for {self.name!r}: nothing varies (no intercept and no terms); "
                "use (1 | g) for a random intercept."
            )
        if self.covariance not in ("full", "diagonal"):
            raise SpecError(
                f"GroupTerm for {self.name!r}: covariance must be 'full' or 'diagonal'; received {self.covariance!r}."
            )

    @property
    def factor_name(self) -> str:
        """The grouping factor: its columns joined by ``:``."""
        return ":".join(self.factor)

    @property
    def name(self) -> str:
        """The term's name and the dim of its levels: factor columns joined by ``:`` (or the ``label``)."""
        return self.label or self.factor_name

    @property
    def coef_names(self) -> tuple[str, ...]:
        """Names of the varying coefficients (``Intercept`` first)."""
        return (("Intercept",) if self.intercept else ()) + self.terms

    def formula(self) -> str:
        """The term in lme4 syntax."""
        lhs = " + ".join((["1"] if self.intercept else ["0"]) + list(self.terms))
        bar = "||" if self.covariance == "diagonal" and len(self.coef_names) > 1 else "|"
        return f"({lhs} {bar} {self.factor_name})"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    r"""A complete, data-free model specification.

    Parameters
    ----------
    response
        Name of the response column (for ``binomial``, the successes column), or an expression
        of one column (``"log(y)"``; see :func:`hierbayes.spec.transforms.check_expression`):
        the model is fitted to the transformed response, :func:`hierbayes.log_likelihood` adds
        the log Jacobian :math:`\log|dz/dy|` so that it is a density of the original ``y``, and
        replicated draws are transformed back to ``y``'s scale. Continuous families only.
    fixed
        Fixed-effect terms other than the intercept, as formula terms (``"year"``, ``"x:z"``,
        ``"C(g)"``); they are expanded into columns by formulaic.
    intercept
        Whether the fixed part has an intercept.
    groups
        The random-effect terms.
    family, link
        Response distribution and link (see :data:`hierbayes.families.FAMILIES`); ``link=None`` takes the default.
    trials
        Column (or expression of columns, ``"n - k"``) with the number of trials (``binomial``).
    failures
        Column or expression with the number of failures (``binomial`` from lme4's
        ``cbind(successes, failures)``, e.g. ``"size - incidence"``); give ``trials`` or ``failures``.
    offset
        Column or expression added to the linear predictor as is (``"log(exposure)"`` for ``poisson``).
    known_sigma
        Column holding a known residual sd per row (Gaussian; eight schools).
    priors
        The priors; defaults are scaled to the data (see :mod:`hierbayes.spec.priors`).
    """

    response: str
    fixed: tuple[str, ...] = ()
    intercept: bool = True
    groups: tuple[GroupTerm, ...] = ()
    family: str = "gaussian"
    link: str | None = None
    trials: str | None = None
    failures: str | None = None
    offset: str | None = None
    known_sigma: str | None = None
    priors: Priors = field(default_factory=Priors)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", tuple(self.fixed))
        object.__setattr__(self, "groups", tuple(self.groups))
        if not self.response:
            raise SpecError("ModelSpec: the response column name is empty.")
        family = self.family.lower().replace("-", "_")
        aliases = {
            "normal": "gaussian", "logistic": "bernoulli", "negbinomial": "negative_binomial",
            "student": "student_t", "studentt": "student_t", "t": "student_t", "ordinal": "cumulative",
            "zip": "zero_inflated_poisson", "zinb": "zero_inflated_negative_binomial",
            "zero_inflated_negbinomial": "zero_inflated_negative_binomial",
            "hurdle_negbinomial": "hurdle_negative_binomial",
        }  # fmt: skip
        family = aliases.get(family, family)
        fam = get_family(family)
        object.__setattr__(self, "family", family)
        object.__setattr__(self, "link", fam.check_link(self.link))
        if not fam.fixed_intercept and self.intercept:  # ordinal: the cutpoints replace the intercept
            object.__setattr__(self, "intercept", False)
        if self.known_sigma is not None and "sigma" not in fam.parameters():
            raise SpecError(
                f"known_sigma (a known residual sd per row) only applies to families with a residual sd "
                f"(gaussian); received family {family!r}."
            )
        if (self.trials is not None or self.failures is not None) and not fam.needs_trials:
            raise SpecError(
                f"trials={self.trials or self.failures!r} only applies to the binomial family; "
                f"received family {family!r}."
            )
        if self.trials is not None and self.failures is not None:
            raise SpecError("Give the binomial trials either as trials= or as failures=, not both.")
        if fam.needs_trials and self.trials is None and self.failures is None:
            raise SpecError(
                "The binomial family needs the number of trials: trials='n' in a builder, or "
                "cbind(successes, failures) on the left of the formula."
            )
        for what, expr in (
            ("response", self.response),
            ("trials", self.trials),
            ("failures", self.failures),
            ("offset", self.offset),
        ):
            why = None if expr is None else check_expression(expr)
            if why is not None:
                raise FormulaError(
                    f"ModelSpec {what} {expr!r} must be a column name or an expression of columns with arithmetic "
                    f"and {', '.join(sorted(EXPRESSION_FUNCTIONS))}: {why}."
                )
        if self.response_transformed:
            cols = expression_columns(self.response)
            if len(cols) != 1 or fam.discrete:
                raise SpecError(
                    f"The response {self.response!r} is a transform; "
                    + (
                        f"transforms of the response apply to continuous families, not {family!r}. "
                        if fam.discrete
                        else f"it must use exactly one column (it uses {', '.join(cols)}). "
                    )
                    + "Compute the response as a column of the data first."
                )
        object.__setattr__(self, "groups", _label_groups(self.groups))

    def with_priors(self, priors: Priors) -> ModelSpec:
        """Return a copy of the spec with other priors."""
        return replace(self, priors=priors)

    def formula(self) -> str:
        """The model in lme4/brms syntax (round-trips through :func:`hierbayes.parse_formula`)."""
        lhs = self.response
        if self.known_sigma is not None:
            lhs = f"{lhs} | se({self.known_sigma})"
        if self.trials is not None:
            lhs = f"{lhs} | trials({self.trials})"
        if self.failures is not None:
            lhs = f"cbind({self.response}, {self.failures})"
        rhs = " + ".join((["1"] if self.intercept else ["0"]) + list(self.fixed) + [g.formula() for g in self.groups])
        if self.offset is not None:
            rhs = f"{rhs} + offset({self.offset})"
        return f"{lhs} ~ {rhs}"

    @property
    def response_transformed(self) -> bool:
        """Whether the response is a transform of a column (``log(y)``) rather than the column itself."""
        return not is_column_name(self.response)

    @property
    def response_column(self) -> str:
        """The data column of the response (``"y"`` for ``log(y)``)."""
        return expression_columns(self.response)[0]

    @property
    def columns(self) -> tuple[str, ...]:
        """Data columns named by the spec (response, factors, trials, offset, sigma; inside expressions too)."""
        cols: list[str] = list(expression_columns(self.response))
        for g in self.groups:
            cols.extend(g.factor)
        for expr in (self.trials, self.failures, self.offset):
            if expr is not None:
                cols.extend(expression_columns(expr))
        if self.known_sigma is not None:
            cols.append(self.known_sigma)
        return tuple(dict.fromkeys(cols))


def _label_groups(groups: tuple[GroupTerm, ...]) -> tuple[GroupTerm, ...]:
    """Give every term of a factor after its first a distinct ``label`` (``g__x``); refuse repeated coefficients."""
    out: list[GroupTerm] = []
    seen: dict[str, list[GroupTerm]] = {}
    for term in groups:
        earlier = seen.setdefault(term.factor_name, [])
        for other in earlier:
            common = sorted(set(other.coef_names) & set(term.coef_names))
            if common:
                raise SpecError(
                    f"Grouping factor {term.factor_name!r}: the varying coefficient {common[0]!r} appears in "
                    f"{other.formula()} and in {term.formula()}; each coefficient may vary by a factor once. "
                    f"Put them in one term, e.g. (1 + x | {term.factor_name}), or use "
                    f"(1 | {term.factor_name}) + (0 + x | {term.factor_name}) for independent effects."
                )
        if earlier and term.label is None:
            base = term.factor_name + "__" + "_".join(re.sub(r"\W+", "_", c).strip("_") for c in term.coef_names)
            taken = {t.name for ts in seen.values() for t in ts}
            label, k = base, 2
            while label in taken:
                label, k = f"{base}.{k}", k + 1
            term = replace(term, label=label)
        earlier.append(term)
        out.append(term)
    names = [t.name for t in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"Two random terms have the name {dup[0]!r}; give them distinct labels.")
    return tuple(out)
