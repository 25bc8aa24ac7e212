"""hierbayes: Bayesian hierarchical (multilevel, mixed-effects) models on PyMC.

>>> import hierbayes as hb
>>> df = hb.datasets.load("sleepstudy")
>>> fit = hb.fit("Reaction ~ Days + (Days | Subject)", df, random_seed=1)  # doctest: +SKIP
>>> print(hb.summary(fit))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hierbayes._version import __version__ as __version__

if TYPE_CHECKING:
    from hierbayes import datasets
    from hierbayes.aggregate import aggregate_counts
    from hierbayes.builders import glmm, group_means, nested, random_intercept, random_slopes
    from hierbayes.design import Design, GroupDesign, NestingWarning, design_statistics, make_design
    from hierbayes.design_dask import make_design_dask
    from hierbayes.exceptions import (
        ConvergenceWarning,
        DataError,
        FormulaError,
        PriorError,
        SamplerNotInstalledError,
        SingularFitWarning,
        SpecError,
    )
    from hierbayes.inference.build import build_model
    from hierbayes.inference.calibration import Calibration, check_calibration
    from hierbayes.inference.collapsed.reml import EmpiricalBayes, empirical_bayes
    from hierbayes.inference.diagnostics import Diagnostics, diagnose
    from hierbayes.inference.fit import fit, prior_predictive
    from hierbayes.inference.pointwise import add_log_likelihood, add_posterior_predictive
    from hierbayes.inference.priors import resolve_priors
    from hierbayes.inference.pymc_model import add_log_prior, pymc_model
    from hierbayes.inference.result import Fit
    from hierbayes.inference.sampling import sample
    from hierbayes.io import load, save
    from hierbayes.spec.formula import parse_formula
    from hierbayes.spec.model import GroupTerm, ModelSpec
    from hierbayes.spec.priors import (
        LKJ,
        Exponential,
        Flat,
        Gamma,
        HalfCauchy,
        HalfNormal,
        HalfStudentT,
        ImproperPriorWarning,
        InverseGamma,
        Laplace,
        Normal,
        Prior,
        Priors,
        StudentT,
        Uniform,
    )
    from hierbayes.statistics import SufficientStatistics
    from hierbayes.summaries.checks import KFold, bayes_r2, kfold, plot_ppc
    from hierbayes.summaries.compare import compare
    from hierbayes.summaries.conditional import average_comparison, conditional_effects, plot_conditional_effects
    from hierbayes.summaries.contrasts import Contrast, contrast, odds_ratios, rate_ratios
    from hierbayes.summaries.covariance import implied_covariance, implied_covariance_draws
    from hierbayes.summaries.effects import Summary, summary
    from hierbayes.summaries.plots import plot_caterpillar, plot_shrinkage
    from hierbayes.summaries.population import PopulationAveraged, population_averaged
    from hierbayes.summaries.prediction import (
        linear_predictor,
        log_likelihood,
        posterior_predictive,
        predict,
        with_log_likelihood,
    )
    from hierbayes.summaries.shrinkage import group_effects, shrinkage
    from hierbayes.summaries.variance import VariancePartition, variance_partition

#: Where each public name lives; imported on first use (PEP 562), so that ``import hierbayes`` is
#: fast and PyMC, PyTensor, JAX and ArviZ load only when a function that needs them is called.
_LAZY: dict[str, str] = {
    "aggregate_counts": "hierbayes.aggregate",
    "glmm": "hierbayes.builders",
    "group_means": "hierbayes.builders",
    "nested": "hierbayes.builders",
    "random_intercept": "hierbayes.builders",
    "random_slopes": "hierbayes.builders",
    "Design": "hierbayes.design",
    "GroupDesign": "hierbayes.design",
    "NestingWarning": "hierbayes.design",
    "design_statistics": "hierbayes.design",
    "make_design": "hierbayes.design",
    "make_design_dask": "hierbayes.design_dask",
    "ConvergenceWarning": "hierbayes.exceptions",
    "DataError": "hierbayes.exceptions",
    "FormulaError": "hierbayes.exceptions",
    "PriorError": "hierbayes.exceptions",
    "SamplerNotInstalledError": "hierbayes.exceptions",
    "SingularFitWarning": "hierbayes.exceptions",
    "SpecError": "hierbayes.exceptions",
    "build_model": "hierbayes.inference.build",
    "Calibration": "hierbayes.inference.calibration",
    "check_calibration": "hierbayes.inference.calibration",
    "EmpiricalBayes": "hierbayes.inference.collapsed.reml",
    "empirical_bayes": "hierbayes.inference.collapsed.reml",
    "Diagnostics": "hierbayes.inference.diagnostics",
    "diagnose": "hierbayes.inference.diagnostics",
    "fit": "hierbayes.inference.fit",
    "prior_predictive": "hierbayes.inference.fit",
    "add_log_likelihood": "hierbayes.inference.pointwise",
    "add_posterior_predictive": "hierbayes.inference.pointwise",
    "resolve_priors": "hierbayes.inference.priors",
    "add_log_prior": "hierbayes.inference.pymc_model",
    "pymc_model": "hierbayes.inference.pymc_model",
    "Fit": "hierbayes.inference.result",
    "sample": "hierbayes.inference.sampling",
    "load": "hierbayes.io",
    "save": "hierbayes.io",
    "parse_formula": "hierbayes.spec.formula",
    "GroupTerm": "hierbayes.spec.model",
    "ModelSpec": "hierbayes.spec.model",
    "LKJ": "hierbayes.spec.priors",
    "Exponential": "hierbayes.spec.priors",
    "Flat": "hierbayes.spec.priors",
    "Gamma": "hierbayes.spec.priors",
    "HalfCauchy": "hierbayes.spec.priors",
    "HalfNormal": "hierbayes.spec.priors",
    "HalfStudentT": "hierbayes.spec.priors",
    "ImproperPriorWarning": "hierbayes.spec.priors",
    "InverseGamma": "hierbayes.spec.priors",
    "Laplace": "hierbayes.spec.priors",
    "Normal": "hierbayes.spec.priors",
    "Prior": "hierbayes.spec.priors",
    "Priors": "hierbayes.spec.priors",
    "StudentT": "hierbayes.spec.priors",
    "Uniform": "hierbayes.spec.priors",
    "SufficientStatistics": "hierbayes.statistics",
    "KFold": "hierbayes.summaries.checks",
    "bayes_r2": "hierbayes.summaries.checks",
    "kfold": "hierbayes.summaries.checks",
    "plot_ppc": "hierbayes.summaries.checks",
    "compare": "hierbayes.summaries.compare",
    "average_comparison": "hierbayes.summaries.conditional",
    "conditional_effects": "hierbayes.summaries.conditional",
    "plot_conditional_effects": "hierbayes.summaries.conditional",
    "Contrast": "hierbayes.summaries.contrasts",
    "contrast": "hierbayes.summaries.contrasts",
    "odds_ratios": "hierbayes.summaries.contrasts",
    "rate_ratios": "hierbayes.summaries.contrasts",
    "implied_covariance": "hierbayes.summaries.covariance",
    "implied_covariance_draws": "hierbayes.summaries.covariance",
    "Summary": "hierbayes.summaries.effects",
    "summary": "hierbayes.summaries.effects",
    "plot_caterpillar": "hierbayes.summaries.plots",
    "plot_shrinkage": "hierbayes.summaries.plots",
    "PopulationAveraged": "hierbayes.summaries.population",
    "population_averaged": "hierbayes.summaries.population",
    "linear_predictor": "hierbayes.summaries.prediction",
    "log_likelihood": "hierbayes.summaries.prediction",
    "posterior_predictive": "hierbayes.summaries.prediction",
    "predict": "hierbayes.summaries.prediction",
    "with_log_likelihood": "hierbayes.summaries.prediction",
    "group_effects": "hierbayes.summaries.shrinkage",
    "shrinkage": "hierbayes.summaries.shrinkage",
    "VariancePartition": "hierbayes.summaries.variance",
    "variance_partition": "hierbayes.summaries.variance",
}

__all__ = [
    "LKJ",
    "Calibration",
    "Contrast",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "Diagnostics",
    "EmpiricalBayes",
    "Exponential",
    "Fit",
    "Flat",
    "FormulaError",
    "Gamma",
    "GroupDesign",
    "GroupTerm",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "ImproperPriorWarning",
    "InverseGamma",
    "KFold",
    "Laplace",
    "ModelSpec",
    "NestingWarning",
    "Normal",
    "PopulationAveraged",
    "Prior",
    "PriorError",
    "Priors",
    "SamplerNotInstalledError",
    "SingularFitWarning",
    "SpecError",
    "StudentT",
    "SufficientStatistics",
    "Summary",
    "Uniform",
    "VariancePartition",
    "add_log_likelihood",
    "add_log_prior",
    "add_posterior_predictive",
    "aggregate_counts",
    "average_comparison",
    "bayes_r2",
    "build_model",
    "check_calibration",
    "compare",
    "conditional_effects",
    "contrast",
    "datasets",
    "design_statistics",
    "diagnose",
    "empirical_bayes",
    "fit",
    "glmm",
    "group_effects",
    "group_means",
    "implied_covariance",
    "implied_covariance_draws",
    "kfold",
    "linear_predictor",
    "load",
    "log_likelihood",
    "make_design",
    "make_design_dask",
    "nested",
    "odds_ratios",
    "parse_formula",
    "plot_caterpillar",
    "plot_conditional_effects",
    "plot_ppc",
    "plot_shrinkage",
    "population_averaged",
    "posterior_predictive",
    "predict",
    "prior_predictive",
    "pymc_model",
    "random_intercept",
    "random_slopes",
    "rate_ratios",
    "resolve_priors",
    "sample",
    "save",
    "shrinkage",
    "summary",
    "variance_partition",
    "with_log_likelihood",
]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (``hb.fit``, ``hb.datasets``, ...)."""
    if name == "datasets":
        module = importlib.import_module("hierbayes.datasets")
        globals()[name] = module
        return module
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hierbayes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
