"""hierbayes: Bayesian hierarchical (multilevel, mixed-effects) models on PyMC.

>>> import hierbayes as hb
>>> df = hb.datasets.load("sleepstudy")
>>> fit = hb.fit("Reaction ~ Days + (Days | Subject)", df, random_seed=1)  # doctest: +SKIP
>>> print(hb.summary(fit))  # doctest: +SKIP
"""

from hierbayes import datasets
from hierbayes._version import __version__ as __version__
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
