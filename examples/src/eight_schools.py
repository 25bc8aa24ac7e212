# %% [markdown]
# # Eight schools: partial pooling of estimated effects
#
# Eight high schools each ran an experiment on coaching for the SAT-V test (Rubin 1981;
# Gelman et al., *Bayesian Data Analysis*, ch. 5). Each reported an estimated coaching effect
# $y_j$ and its standard error $\sigma_j$; the raw data are gone. Should we believe school A's
# 28 points, or the pooled average of about 8 points, or something in between?
#
# ## The model
#
# $$
# y_j \sim N(\theta_j, \sigma_j^2), \qquad \theta_j = \mu + u_j, \qquad u_j \sim N(0, \tau^2),
# \qquad j = 1, \dots, 8,
# $$
#
# with $\sigma_j$ **known**. $\mu$ is the average effect (reported as `beta[Intercept]`) and
# $\tau$ the between-school standard deviation (`sd_school`). $\tau = 0$ is complete pooling
# (every school has effect $\mu$); $\tau \to \infty$ is no pooling ($\theta_j = y_j$). The model
# learns $\tau$ from the data, and each $\theta_j$ is pulled towards $\mu$ by a factor that
# depends on $\sigma_j^2 / (\sigma_j^2 + \tau^2)$.
#
# hierbayes samples the **non-centred** form $u_j = \tau z_j$, $z_j \sim N(0, 1)$, which avoids
# the "funnel" between $\tau$ and the $u_j$ that makes the centred form diverge when $\tau$ is small.
#
# **Priors.** With eight groups the prior on $\tau$ matters. We follow Gelman (2006) and use a
# half-Cauchy with scale 5 points; $\mu$ keeps hierbayes' default, a normal centred at the mean of
# $y$ with sd $2.5\,\mathrm{sd}(y)$.

# %% tags=["parameters"]
DRAWS = 1000
TUNE = 1000
CHAINS = 4

# %%
# %matplotlib inline
import numpy as np

import hierbayes as hb

schools = hb.datasets.load("eight_schools")
schools

# %% [markdown]
# ## Writing the model
#
# The builder `hb.group_means` and the formula `y | se(sigma) ~ 1 + (1 | school)` (the brms
# notation for a known standard error) give the same `ModelSpec`.

# %%
priors = hb.Priors(group_sd=hb.HalfCauchy(scale=5.0))
spec = hb.group_means(y="y", sigma="sigma", group="school", priors=priors)
assert spec == hb.parse_formula("y | se(sigma) ~ 1 + (1 | school)", priors=priors)
spec.formula()

# %% [markdown]
# ## Prior predictive check
#
# Before fitting, draw parameters and data from the prior: do the implied effects look like
# plausible coaching effects? A half-Cauchy(5) puts half its mass on $\tau < 5$ points but allows
# large values too.

# %%
prior = hb.prior_predictive(spec, schools, draws=500, random_seed=2)
tau_prior = prior["prior"]["sd_school"].values.ravel()
y_prior = prior["prior_predictive"]["y"].values.ravel()
print(f"prior tau: median {np.median(tau_prior):.1f}, 90% quantile {np.quantile(tau_prior, 0.9):.1f}")
print(f"prior predictive y: 5%-95% range {np.quantile(y_prior, 0.05):.0f} to {np.quantile(y_prior, 0.95):.0f} points")

# %% [markdown]
# ## Fit
#
# `target_accept=0.95` makes the step size smaller, which helps with the remaining curvature
# at small $\tau$.

# %%
fit = hb.fit(spec, schools, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1, target_accept=0.95)
print(hb.summary(fit))

# %% [markdown]
# **Reading the summary.** The average effect $\mu$ is about 8 points with a wide interval
# (roughly 0 to 16): the experiments together say coaching helps a little, but not by how much.
# The between-school sd $\tau$ has its mass near zero with a long right tail (mean about 3.6,
# 94% interval from almost 0 to about 11): the data are compatible with no real differences
# between schools, and with moderate ones.
#
# ## Shrinkage
#
# Each school's effect $\theta_j$ is a compromise between its own estimate $y_j$ (no pooling)
# and the precision-weighted mean of all schools (complete pooling). The `shrinkage` column is
# the pooling factor $\sigma_j^2/(\sigma_j^2 + \tau^2)$, averaged over the posterior: 0 means the
# school's own data decide, 1 means it is pulled all the way to the population mean.

# %%
shrink = hb.shrinkage(fit, "school")
shrink.round(2)

# %%
hb.plot_shrinkage(shrink)

# %% [markdown]
# School A's 28 points become an estimate of about 9 points: with a standard error of 15, its
# own estimate carries little weight against the seven other schools. Every school is pulled most
# of the way (pooling factors 0.84 to 0.94) because $\tau$ is probably small compared with the
# standard errors; schools with the largest $\sigma_j$ (A, C, H) are pulled the most.
#
# ## Questions the posterior answers directly
#
# Any function of the parameters has a posterior: compute it draw by draw. Here
# $\theta_j = \mu + u_j$ for every draw.

# %%
post = fit.posterior
theta = post["beta"].sel(coef="Intercept") + post["u_school"].sel(school__coef="Intercept")
p_a_best = float((theta.argmax("school") == 0).mean())
print(f"P(school A has the largest effect) = {p_a_best:.2f}")
print(f"P(theta_A > theta_C) = {float((theta.sel(school='A') > theta.sel(school='C')).mean()):.2f}")
print(f"P(tau < 5) = {float((post['sd_school'] < 5).mean()):.2f}")

# %% [markdown]
# School A has the largest effect with a probability of only about 0.2 (one in eight would be
# 0.125), and beats school C, 31 points apart in the raw estimates, with a probability of about
# 0.6: the data do not single out a "best" programme.
