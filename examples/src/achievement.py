# %% [markdown]
# # Math achievement: a three-level model
#
# The US Sustaining Effects Study followed children's math scores over the primary school years
# (Bryk & Raudenbush; the `egsingle` data of the R package mlmRev). 7230 tests of 1721 children in
# 60 schools: test occasions are nested in children, children in schools. Scores rise with the
# school year; children differ, and so do schools.
#
# ## The model
#
# For occasion $t$ of child $i$ in school $j$,
#
# $$
# \text{math}_{tij} = x_{tij}^\top \beta + v_j + u_{ij} + e_{tij}, \qquad
# v_j \sim N(0, \nu^2), \quad u_{ij} \sim N(0, \tau^2), \quad e_{tij} \sim N(0, \sigma^2),
# $$
#
# with fixed effects for the (centred) `year`, whether the child was `retained` in grade, `female`,
# `black`, `hispanic`, and two school-level covariates: enrolment `size` and the percentage of
# low-income students `lowinc`. Three variance components: between schools ($\nu^2$), between
# children of the same school ($\tau^2$) and between occasions of the same child ($\sigma^2$).
#
# **Priors** (hierbayes' defaults, scaled to the data; see the docs' *Priors* section): normal
# priors on the fixed effects with sd $2.5\,s_y/s_x$, half-Student-$t_3$ priors with scale
# $2.5\,s_y$ on $\nu$, $\tau$ and $\sigma$. The sampler sees centred and scaled predictors (so that
# `size`, in the hundreds, and the 0/1 indicators are on one scale); every result is reported on
# the data's own scale.
#
# **Sampling.** For a Gaussian model with two nested factors hierbayes integrates the 60 school and
# 1721 child effects out analytically (`method="collapsed"`, chosen automatically): NUTS explores
# only $\beta$, $\nu$, $\tau$ and $\sigma$, and the effects are then drawn exactly from their
# conditional distribution for every posterior draw.

# %% tags=["parameters"]
DRAWS = 1000
TUNE = 1000
CHAINS = 4

# %%
import pandas as pd

import hierbayes as hb

achievement = hb.datasets.load("achievement")
print(f"{len(achievement)} tests, {achievement.child.nunique()} children, {achievement.school.nunique()} schools")
print("tests per child:", achievement.groupby("child").size().value_counts().sort_index().to_dict())
achievement.head()

# %% [markdown]
# ## The three-level fit
#
# Child ids are unique across schools, so `(1 | school) + (1 | child)` is the nested model; the
# lme4 spelling `(1 | school/child)` and the builder `hb.nested` give the same model, with the inner
# factor named `school:child` (child ids then need only be unique within their school).

# %%
X = ["year", "retained", "female", "black", "hispanic", "size", "lowinc"]
three_level = "math ~ " + " + ".join(X) + " + (1 | school) + (1 | child)"
nested_spec = hb.nested(y="math", groups=["school", "child"], x=X)
print(nested_spec.formula())
assert nested_spec == hb.parse_formula("math ~ " + " + ".join(X) + " + (1 | school/child)")

fit3 = hb.fit(three_level, achievement, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1)
print(hb.summary(fit3))

# %% [markdown]
# **Reading the summary.** The variance components agree with lme4's REML fit of the same model
# (child 0.664, school 0.0875, residual 0.345): with 7230 rows the likelihood dominates these
# priors. A year of school adds about 0.75 points. Children who were retained score about 0.15
# higher at the same year (they are a year older); black and hispanic children score lower
# (about $-0.52$ and $-0.29$), and each percentage point of low-income students in the school
# lowers the school's average by about 0.008 points. Gender and school size have intervals centred
# near zero.
#
# ## How the variance splits: intra-class correlations
#
# The total variance of a score (given the covariates) is $\nu^2 + \tau^2 + \sigma^2$. Two tests of
# the **same child** share $v_j + u_{ij}$ and so correlate
# $(\nu^2 + \tau^2) / (\nu^2 + \tau^2 + \sigma^2)$; two children of the **same school** share
# only $v_j$: $\nu^2 / (\nu^2 + \tau^2 + \sigma^2)$. Both are computed for every posterior draw.

# %%
vp = hb.variance_partition(fit3)
print(vp)

# %% [markdown]
# Of the variance not explained by the covariates, about 60% lies between children of the same
# school, 8% between schools and 31% within children over time: two tests of the same child
# correlate about 0.69, two children of one school about 0.08.
#
# The same numbers appear in the marginal covariance matrix the model implies for the rows of the
# data, with the random effects integrated out. Take two tests of one child, a test of another child
# in the same school and a test of a child in another school:

# %%
first_school = achievement.school.iloc[0]
child_a, child_b = achievement.loc[achievement.school == first_school, "child"].unique()[:2]
rows = [
    *achievement.index[achievement.child == child_a][:2],
    achievement.index[achievement.child == child_b][0],
    achievement.index[achievement.school != first_school][0],
]
hb.implied_covariance(fit3, rows=rows, kind="correlation").round(2)

# %% [markdown]
# ## Two levels instead of three
#
# What is lost by leaving a level out? We fit the two two-level models:
#
# * **school only**: `(1 | school)`: a child's repeated tests are treated as independent given
#   the school;
# * **child only**: `(1 | child)`: the children of one school are treated as independent.
#
# The school-only model is written with the `random_intercept` builder, to show that it equals the
# formula.

# %%
school_only = hb.random_intercept(y="math", group="school", x=X)
assert school_only == hb.parse_formula("math ~ " + " + ".join(X) + " + (1 | school)")
child_only = "math ~ " + " + ".join(X) + " + (1 | child)"

fit_school = hb.fit(school_only, achievement, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1)
fit_child = hb.fit(child_only, achievement, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1)
fits = {"school + child": fit3, "school only": fit_school, "child only": fit_child}
summaries = {name: hb.summary(f) for name, f in fits.items()}

variances = pd.concat(
    {name: s.random.query("quantity == 'variance'").set_index("group")["mean"] for name, s in summaries.items()},
    axis=1,
)
variances.round(3)

# %% [markdown]
# Variance does not disappear when a level is left out; it moves:
#
# * Without the child level, the children's variance lands in the residual, which grows from about
#   0.34 to about 0.97; the tests of one child are then wrongly treated as independent.
# * Without the school level, the child variance absorbs the school variance: about 0.75, close to
#   0.66 + 0.09.
#
# What moves matters for the fixed effects. Compare their posterior sds:

# %%
fixed_sd = pd.concat({name: s.fixed["sd"] for name, s in summaries.items()}, axis=1)
fixed_sd.loc[["year", "black", "size", "lowinc"]]

# %% [markdown]
# * **School only**: treating a child's 4 or 5 tests as independent pretends there are far more
#   independent children than there are, so the child-level covariates (`black`, `hispanic`,
#   `female`, `retained`) get intervals that are much too narrow, while `year`, which varies
#   within children, gets an interval that is too wide (its residual variance is inflated by the
#   child variance): compare the sds of `black` (0.048 against 0.083) and of `year` (0.0084 against
#   0.0054).
# * **Child only**: the school-level covariates `size` and `lowinc` get intervals that are too
#   narrow, about half the three-level model's sds, because the 1721 children are treated as
#   independent when they come from only 60 schools.
#
# ## Predictive comparison
#
# `hb.compare` ranks the models by their expected log predictive density, estimated by
# Pareto-smoothed importance-sampling leave-one-out cross-validation (PSIS-LOO, through ArviZ).
# Here "one" is one test: the question is how well each model predicts a new test of a child and
# school it has seen. Higher `elpd` is better; `elpd_diff` and `dse` are the difference from the best
# model and its standard error.

# %%
comparison = hb.compare(fits)
comparison[["rank", "elpd", "p", "elpd_diff", "dse", "weight"]].round(1)

# %% [markdown]
# The three-level model predicts best: by far against the school-only model, which does not know
# each child's own level, and by a small margin against the child-only model (an `elpd_diff` of
# about $-8$ with a standard error `dse` of about 5): for a new test of a known child, the child's
# effect already carries most of what the school effect would add. ArviZ warns about high Pareto
# $\hat k$ for some tests of the models with child effects: with 2 to 6 tests per child, leaving one
# out moves that child's effect a lot and importance sampling becomes unreliable for it; a K-fold
# cross-validation that leaves out whole children would be the more robust check.
#
# The frequentist likelihood-ratio tests tell the same story: lme4's ML fits give $\chi^2_1 = 3788$
# for dropping the child level and $\chi^2_1 = 102$ for dropping the school level. Both levels are
# needed.
