"""hierbayes: Bayesian hierarchical (multilevel, mixed-effects) models on PyMC.

>>> import hierbayes as hb
>>> df = hb.datasets.load("sleepstudy")
>>> fit = hb.fit("Reaction ~ Days + (Days | Subject)", df, random_seed=1)  # doctest: +SKIP
>>> print(hb.summary(fit))  # doctest: +SKIP
"""

from hierbayes import datasets
from hierbayes.build import build_model
from hierbayes.builders import glmm, group_means, nested, random_intercept, random_slopes
from hierbayes.design import Design, GroupDesign, NestingWarning, make_design
from hierbayes.diagnostics import Diagnostics, diagnose
from hierbayes.exceptions import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    PriorError,
    SamplerNotInstalledError,
    SpecError,
)
from hierbayes.fitting import Fit, fit, prior_predictive
from hierbayes.formula import parse_formula
from hierbayes.priors import LKJ, Exponential, HalfCauchy, HalfNormal, HalfStudentT, Normal, Priors, resolve_priors
from hierbayes.sample import sample
from hierbayes.spec import GroupTerm, ModelSpec
from hierbayes.summaries.effects import Summary, summary

__version__ = "0.1.0"

__all__ = [
    "LKJ",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "Diagnostics",
    "Exponential",
    "Fit",
    "FormulaError",
    "GroupDesign",
    "GroupTerm",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "ModelSpec",
    "NestingWarning",
    "Normal",
    "PriorError",
    "Priors",
    "SamplerNotInstalledError",
    "SpecError",
    "Summary",
    "build_model",
    "datasets",
    "diagnose",
    "fit",
    "glmm",
    "group_means",
    "make_design",
    "nested",
    "parse_formula",
    "prior_predictive",
    "random_intercept",
    "random_slopes",
    "resolve_priors",
    "sample",
    "summary",
]
