# %% [markdown]
# # Seedlings: comparing genotypes when trays are the experimental unit
#
# Two genotypes of a plant were grown in trays: four trays of each genotype, nine seedlings per
# tray, and each seedling was weighed. **These data are simulated** (see
# `hierbayes/datasets/make_seedlings.py`): the true genotype difference is 2 weight units, the
# tray sd 1 and the seedling sd 1.5, so we can check what the model recovers.
#
# Every seedling of a tray shares the tray's conditions (light, water, position on the bench).
# The genotype was assigned to whole trays, so the genotype comparison rests on 8 trays, not on
# 72 seedlings.
#
# ## The model
#
# For seedling $s$ in tray $t$ of genotype $g$,
#
# $$
# \text{weight}_{gts} = \gamma_g + \tau_{gt} + e_{gts}, \qquad
# \tau_{gt} \sim N(0, \sigma_{\text{tray}}^2), \quad e_{gts} \sim N(0, \sigma^2).
# $$
#
# Tray ids restart within each genotype (tray 1 of genotype A is not tray 1 of B), so the tray
# factor is the interaction `genotype:tray` (8 levels). In the formula the genotype enters with
# treatment coding: `Intercept` is $\gamma_A$ and `genotype[T.B]` the contrast $\gamma_B - \gamma_A$.
#
# $$\texttt{weight ~ genotype + (1 | genotype:tray)}$$

# %% tags=["parameters"]
DRAWS = 1000
TUNE = 1000
CHAINS = 4

# %%
import hierbayes as hb

seedlings = hb.datasets.load("seedlings")
seedlings.groupby(["genotype", "tray"]).weight.mean().unstack().round(2)

# %% [markdown]
# ## Fit

# %%
fit = hb.fit("weight ~ genotype + (1 | genotype:tray)", seedlings, draws=DRAWS, tune=TUNE, chains=CHAINS,
             random_seed=1)
print(hb.summary(fit))

# %% [markdown]
# **Reading the summary.** The genotype contrast `genotype[T.B]` is estimated at about 2.6 (the
# sample means differ by 2.61), and its 94% interval is wide, from about $-0.1$ to 5: it covers the
# true value 2 and just reaches zero, because only four trays per genotype inform it. With 8 trays
# the tray sd is poorly determined (posterior mean about 1.6, 94% interval about 0.7 to 3.2; the
# true value is 1), so its prior matters. The residual sd, informed by 64 within-tray
# differences, is estimated well (about 1.7; true 1.5).
#
# With few trays the posterior of the tray sd reaches towards zero, the region where a sampler that
# explores the tray effects themselves meets a "funnel". For this Gaussian model hierbayes avoids
# it: it integrates the tray effects out analytically (`method="collapsed"`, chosen automatically),
# samples the four remaining parameters and then draws the tray effects exactly.
#
# ## The genotype contrast

# %%
print(hb.contrast(fit, "genotype[T.B]"))

# %% [markdown]
# `p_positive` is the posterior probability that the contrast is positive: genotype B is heavier
# with a probability of about 0.97; how much heavier is uncertain. `hb.contrast` takes any linear
# combination of the coefficients (`"a - b"`, `"(a + b) / 2"`) and computes it draw by draw.
# %% [markdown]
# ## Variance partition
#
# The tray ICC is the correlation of two seedlings of one tray, $\sigma_{\text{tray}}^2 /
# (\sigma_{\text{tray}}^2 + \sigma^2)$. The true value is $1/(1 + 2.25) \approx 0.31$; the
# posterior (mean about 0.43) is wide, from about 0.13 to 0.78.

# %%
print(hb.variance_partition(fit))

# %% [markdown]
# ## What ignoring the trays would do
#
# A model without the tray effect treats the 72 seedlings as independent. Its interval for the
# contrast is about three times narrower (posterior sd about 0.5 instead of 1.4), and wrongly so:
# it ignores that seedlings of one tray share the tray's conditions, so it over-states the evidence
# for a genotype difference (the classic pseudo-replication error).

# %%
naive = hb.fit("weight ~ genotype", seedlings, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1)
for name, f in {"with trays": fit, "ignoring trays": naive}.items():
    row = hb.summary(f).fixed.loc["genotype[T.B]"]
    print(f"{name:>15}: {row['mean']:.2f} [{row['lower']:.2f}, {row['upper']:.2f}]  sd {row['sd']:.2f}")
