# %% [markdown]
# # Child immunisation in Guatemala: a three-level logistic model
#
# Did a child receive the full set of immunisations? Data from the 1987 Guatemalan survey of family
# health (Pebley, Goldman & Rodríguez 1996; the `guImmun` data of mlmRev): 2159 children of 1595
# mothers in 161 communities. Children of one mother share her attitudes and access to care;
# mothers of one community share its clinics.
#
# ## The model
#
# For child $i$ of mother $j$ in community $k$,
#
# $$
# \operatorname{logit} P(\text{immun}_{ijk} = 1 \mid u, v) = x_{ijk}^\top\beta + v_k + u_{jk}, \qquad
# v_k \sim N(0, \sigma_{\text{cluster}}^2), \quad u_{jk} \sim N(0, \sigma_{\text{mom}}^2).
# $$
#
# Covariates: the child is aged 2 or more (`kid2p`), the mother's and husband's education
# (primary, secondary; reference: none, and for the husband also unknown), a `rural` community and
# the proportion of indigenous people in the community in 1981 (`pcInd81`).
#
# The coefficients are **conditional**: $e^{\beta_k}$ is the odds ratio for two children with the
# same mother and community (the same $u$ and $v$). The **population-averaged** odds ratio, for
# two children picked at random from the population, is smaller in magnitude because averaging the
# logistic curve over the random effects flattens it.
#
# **Priors** (defaults): normal priors with sd $2.5/s_x$ on the logit-scale coefficients and a
# half-Student-$t_3$ with scale 2.5 on each random-effect sd.

# %% tags=["parameters"]
DRAWS = 1000
TUNE = 1000
CHAINS = 4

# %%
import hierbayes as hb

immun = hb.datasets.load("guatemalan")
print(f"{len(immun)} children, {immun.mom.nunique()} mothers, {immun.cluster.nunique()} communities")
print(f"share immunised: {immun.immun.mean():.2f}")

# %% [markdown]
# ## Fit
#
# Mother ids are unique, so `(1 | mom) + (1 | cluster)` is the nested model `(1 | cluster/mom)`.
# With about 1.35 children per mother the mother effects are barely identified by the data of a
# single mother; `target_accept=0.9` helps the sampler with the resulting posterior geometry.

# %%
formula = "immun ~ kid2p + momEdPri + momEdSec + husEdPri + husEdSec + rural + pcInd81 + (1 | mom) + (1 | cluster)"
fit = hb.fit(formula, immun, family="bernoulli", draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1,
             target_accept=0.9)
print(hb.summary(fit))

# %% [markdown]
# **Reading the summary.** Older children (`kid2p`) are much more likely to be fully immunised,
# rural communities and communities with more indigenous people less so. The mother-level sd is
# large (posterior mean about 2.4 on the logit scale, a variance of about 6): mothers differ a lot in
# whether they have their children immunised.
#
# **Compared with lme4.** `glmer` (Laplace approximation) estimates a mother variance of 1.24 (sd
# 1.11) and a `kid2p` coefficient of 1.28. The MCMC posterior puts the mother sd well above that and
# the fixed effects larger in magnitude (`kid2p` about 1.8). This is not a sampling error: with binary outcomes and one
# or two children per mother, the Laplace approximation is known to under-state the variance of the
# random effects, which in turn attenuates the conditional coefficients.
#
# ## Odds ratios
#
# $e^{\beta_k}$, computed draw by draw, is the posterior of the conditional odds ratio. Report its
# median or interval: the posterior mean of $e^{\beta}$ exceeds $e$ to the mean of $\beta$.
# `p_gt_1` is the posterior probability that the odds ratio exceeds 1.

# %%
hb.odds_ratios(fit).round(2)

# %% [markdown]
# ## A combined contrast
#
# How much higher are the odds of full immunisation for a child aged 2 or more whose father has
# primary education, compared with a younger child whose father has none? That is
# $\beta_{\text{kid2p}} + \beta_{\text{husEdPri}}$ on the log-odds scale. Its posterior is computed
# from the joint draws, so it accounts for the correlation between the two coefficients.

# %%
both = hb.contrast(fit, "kid2p + husEdPri")
print(both)

# %% [markdown]
# ## Conditional versus population-averaged effects
#
# The odds ratios above compare two children **of the same mother in the same community**. To
# compare two children drawn at random from the population, average the probabilities over the
# random effects:
#
# $$
# \bar p(x) = \iint \operatorname{logit}^{-1}(x^\top\beta + v + u)\,
#     N(v \mid 0, \sigma^2_{\text{cluster}})\, N(u \mid 0, \sigma^2_{\text{mom}})\, dv\, du .
# $$
#
# `hb.population_averaged` does this integral by Monte Carlo for every posterior draw. Take a
# reference child in a rural community with half of its people indigenous, with and without
# `kid2p`:

# %%
reference = {"kid2p": 0, "momEdPri": 0, "momEdSec": 0, "husEdPri": 0, "husEdSec": 0, "rural": 1, "pcInd81": 0.5}
pa = hb.population_averaged(fit, reference, coef="kid2p", random_seed=2)
pa.effects.drop(columns="measure").T.round(2)

# %% [markdown]
# The population-averaged odds ratio (about 2.6) is much closer to 1 than the conditional one
# (about 6): the large variation between mothers means that, across the population, a child's age explains less of the
# difference between immunised and non-immunised children than it does within one family. The
# `attenuation` row compares the log odds ratios (marginal / conditional), and `approx_attenuation`
# is the logistic-normal approximation $1/\sqrt{1 + c^2\sigma_u^2}$, $c = 16\sqrt{3}/(15\pi)$
# (Zeger, Liang & Albert 1988), with $\sigma_u^2$ the total random-intercept variance; the two
# agree closely here (both about 0.53).
#
# The same for the combined contrast: compare the reference child with one aged 2 or more whose
# father has primary education. The draws of the conditional ($u = 0$) and marginal probabilities
# give both odds ratios, draw by draw.

# %%
import pandas as pd

rows = pd.DataFrame([reference, {**reference, "kid2p": 1, "husEdPri": 1}])
pa2 = hb.population_averaged(fit, rows, random_seed=2)


def odds_ratio(p):
    odds = p / (1 - p)
    return odds.isel(obs=1) / odds.isel(obs=0)


for name, p in {"conditional": pa2.conditional, "population-averaged": pa2.marginal}.items():
    ratio = odds_ratio(p)
    lo, hi = ratio.quantile([0.03, 0.97]).values
    print(f"{name:>20}: odds ratio {float(ratio.median()):.2f} [{lo:.2f}, {hi:.2f}]")

# %% [markdown]
# The conditional odds ratio (about 10) equals $e^{\beta_{\text{kid2p}} + \beta_{\text{husEdPri}}}$
# from `hb.contrast` above (the model has no interactions); the population-averaged one is about 3.
# Which to report depends on the question: a health worker advising one family wants the
# conditional effect; a planner comparing immunisation rates between groups of children wants the
# population-averaged one.
#
# ## Variance partition on the latent scale
#
# The logistic model is a threshold model for a latent variable with residual variance
# $\pi^2/3 \approx 3.29$; on that scale the variance splits between communities, mothers and
# children.

# %%
print(hb.variance_partition(fit))

# %% [markdown]
# On the latent scale more than half of the variance lies between mothers and about a tenth between
# communities: the latent propensities of two children of one mother correlate about 0.7, those of
# two children of one community about 0.1.
