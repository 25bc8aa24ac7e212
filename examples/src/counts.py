# %% [markdown]
# # Bird counts: rates with unequal effort, Poisson and negative binomial
#
# Birds were counted at 40 sites in each of 5 years. The surveys lasted between half an hour and
# four hours, so a raw count says as much about the observer's patience as about the site: the
# quantity of interest is the **rate** (birds per hour) and how it depends on the site's forest
# cover. **These data are simulated** (`hierbayes/datasets/make_birds.py`): 3 birds per hour at a
# site without forest, $e^{0.9} \approx 2.5$ times as many in full forest, a site sd of 0.4 on the
# log scale and negative binomial noise with shape $\alpha = 5$.
#
# ## The model
#
# For site $s$ in year $t$, with survey duration $h_{st}$,
#
# $$
# y_{st} \sim \mathrm{NegBin}(\mu_{st}, \alpha), \qquad
# \log \mu_{st} = \log h_{st} + \beta_0 + \beta_1\, \text{forest}_s + u_s, \qquad u_s \sim N(0, \tau^2),
# $$
#
# so that $\mu_{st} / h_{st}$, the expected rate per hour, is $\exp(\beta_0 + \beta_1 \text{forest}_s +
# u_s)$. $\log h_{st}$ is an **offset**: a term with its coefficient fixed at 1. The negative binomial
# has $\operatorname{Var}(y) = \mu + \mu^2 / \alpha$; the Poisson ($\alpha \to \infty$) has
# $\operatorname{Var}(y) = \mu$.
#
# $$\texttt{count ~ forest + offset(log\_hours) + (1 | site)}$$
#
# `offset()` takes a column name: the data carry `log_hours`, the log of the survey duration
# (computed once with `np.log(birds["hours"])`).

# %% tags=["parameters"]
DRAWS = 1000
TUNE = 1000
CHAINS = 4

# %%
import numpy as np
import pandas as pd

import hierbayes as hb

birds = hb.datasets.load("birds")
birds.head()

# %% [markdown]
# ## Two fits: Poisson and negative binomial

# %%
formula = "count ~ forest + offset(log_hours) + (1 | site)"
poisson = hb.fit(formula, birds, family="poisson", draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1)
negbin = hb.fit(formula, birds, family="negative_binomial", draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1)
print(hb.summary(negbin))

# %% [markdown]
# ## Rate ratios
#
# With a log link, $e^{\beta_1}$ is the **rate ratio**: how many times more birds per hour a fully
# forested site has than a site without forest (with the same site effect).

# %%
pd.concat({"poisson": hb.rate_ratios(poisson), "negative binomial": hb.rate_ratios(negbin)}).round(3)

# %% [markdown]
# The two models agree on the forest rate ratio here (about 2, with the true 2.5 inside both
# intervals), because the Poisson model's site effects absorb part of the extra variation. They
# disagree about single surveys: the Poisson model says that two surveys of the same site differ
# only by Poisson noise.
#
# ## Is there over-dispersion? A posterior predictive check
#
# Replicate the data from each model and compare the variance-to-mean ratio of the counts within a
# site (after dividing by the effort) with the observed one.

# %%
def within_site_dispersion(counts: np.ndarray) -> float:
    """Mean over sites of the within-site variance / mean of the counts per hour."""
    rate = pd.Series(counts / birds["hours"].to_numpy())
    by_site = rate.groupby(birds["site"].to_numpy())
    return float((by_site.var() / by_site.mean()).mean())


observed = within_site_dispersion(birds["count"].to_numpy())
rows = {}
for name, model in {"poisson": poisson, "negative binomial": negbin}.items():
    yrep = hb.posterior_predictive(model).stack(sample=("chain", "draw")).transpose("sample", "obs").values
    replicated = np.array([within_site_dispersion(y) for y in yrep[:: max(1, len(yrep) // 400)]])
    rows[name] = {"observed": observed, "replicated (median)": np.median(replicated),
                  "P(replicated >= observed)": (replicated >= observed).mean()}
pd.DataFrame(rows).T.round(3)

# %% [markdown]
# A posterior predictive probability near 0 says the model cannot produce data as dispersed as
# the observed ones; the negative binomial can.
#
# ## Comparison by PSIS-LOO

# %%
hb.compare({"poisson": poisson, "negative binomial": negbin})

# %% [markdown]
# ## Expected counts for a two-hour survey
#
# For a site we have not surveyed (its effect drawn from $N(0, \tau^2)$ with
# `new_levels="sample"`), with no forest and full forest. The offset column must be given for the
# new rows: `log_hours = log(2)`.

# %%
new = pd.DataFrame({"forest": [0.0, 1.0], "log_hours": np.log(2.0), "site": "a new site"})
hb.predict(negbin, new, kind="mean", new_levels="sample", random_seed=3).round(2)
