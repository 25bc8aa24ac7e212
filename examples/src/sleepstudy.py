# %% [markdown]
# # Sleep deprivation: random intercepts and slopes
#
# Eighteen subjects were kept to three hours of sleep a night for nine nights (Belenky et al. 2003;
# the `sleepstudy` data of lme4). Each day their average reaction time was measured. Subjects differ
# in their reaction time at the start **and** in how fast it grows: the model lets both the intercept
# and the slope of `Days` vary by subject, with a correlation between them.
#
# ## The model
#
# For day $t$ of subject $j$,
#
# $$
# \text{Reaction}_{tj} = (\beta_0 + u_{0j}) + (\beta_1 + u_{1j})\,\text{Days}_{tj} + e_{tj},
# \qquad e_{tj} \sim N(0, \sigma^2),
# $$
#
# $$
# \begin{pmatrix} u_{0j} \\ u_{1j} \end{pmatrix} \sim N(0, \Omega), \qquad
# \Omega = \begin{pmatrix} s_0 & 0 \\ 0 & s_1 \end{pmatrix}
#          \begin{pmatrix} 1 & \rho \\ \rho & 1 \end{pmatrix}
#          \begin{pmatrix} s_0 & 0 \\ 0 & s_1 \end{pmatrix}.
# $$
#
# $s_0$ is the between-subject sd of the day-0 reaction time, $s_1$ the sd of the subjects' daily
# slopes and $\rho$ their correlation.
#
# **Priors** (defaults): half-Student-$t_3$ on $s_0$ (scale $2.5\,s_y$) and on $s_1$ (scale
# $2.5\,s_y/s_{\text{Days}}$, so the prior is stated in ms per day), an LKJ(1) prior on the
# correlation matrix, which is uniform on $\rho \in (-1, 1)$, and normal priors on $\beta$.
#
# **Sampling.** For a Gaussian model with one grouping factor hierbayes integrates the random
# effects out analytically (`method="collapsed"`, chosen automatically by `method="auto"`):
# marginally $y_j \sim N(X_j\beta, Z_j \Omega Z_j^\top + \sigma^2 I)$, so NUTS explores only
# $\beta$, $s_0$, $s_1$, $\rho$ and $\sigma$, and the $u_j$ are then drawn exactly from their
# conditional distribution given each posterior draw. The result has the same variables as the
# full model.

# %% tags=["parameters"]
DRAWS = 1000
TUNE = 1000
CHAINS = 4

# %%
# %matplotlib inline
import hierbayes as hb

sleep = hb.datasets.load("sleepstudy")
sleep.head()

# %% [markdown]
# The builder `hb.random_slopes` writes the same model as the lme4 formula
# `Reaction ~ Days + (Days | Subject)` (`||` instead of `|`, or `covariance="diagonal"`, would drop
# the correlation).

# %%
spec = hb.random_slopes(y="Reaction", group="Subject", slopes="Days")
assert spec == hb.parse_formula("Reaction ~ Days + (Days | Subject)")

fit = hb.fit(spec, sleep, draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1)
print(hb.summary(fit))

# %% [markdown]
# **Reading the summary.** The average reaction time on day 0 is about 251 ms and grows by about
# 10.4 ms per day of sleep deprivation (lme4: 251.4 and 10.47). Subjects differ a lot: the sd of
# the intercepts is about 27 ms and of the slopes about 6.5 ms per day, so the middle 95% of
# subjects have slopes between roughly $10.4 \pm 2 \times 6.5$, i.e. from about $-3$ to $24$ ms
# per day. The posterior means of the sds are a little larger than lme4's REML estimates (24.7 and
# 5.9): with 18 subjects their posteriors are skewed to the right, and the mean of a skewed
# posterior lies above its mode.
#
# ## The correlation
#
# lme4 estimates $\rho = 0.07$. With 18 subjects the posterior is wide (94% interval about $-0.47$
# to $0.65$): the data say little about whether subjects who start slow also slow down faster.

# %%
rho = fit.posterior["corr_Subject"].sel(Subject__coef="Intercept", Subject__coef_="Days")
print(f"posterior mean of rho {float(rho.mean()):.2f}, P(rho > 0) = {float((rho > 0).mean()):.2f}")

# %% [markdown]
# ## The variance depends on the day
#
# With random slopes the between-subject variance is not one number: at day $d$ it is
# $z^\top \Omega z$ with $z = (1, d)$, i.e. $s_0^2 + 2 d \rho s_0 s_1 + d^2 s_1^2$. On day 0 about
# half of the variance lies between subjects; by day 9 more than 80% does.

# %%
for day in (0, 9):
    icc = hb.variance_partition(fit, at={"Days": day}).icc.loc["Subject"]
    print(f"day {day}: share of the variance between subjects {icc['mean']:.2f}", end=" ")
    print(f"[{icc['lower']:.2f}, {icc['upper']:.2f}]")

# %% [markdown]
# The implied correlation of one subject's reaction times across days shows the same thing:
# neighbouring days correlate strongly, and late days more than early ones.

# %%
first = sleep.index[sleep.Subject == sleep.Subject.iloc[0]]
hb.implied_covariance(fit, rows=list(first[::3]), kind="correlation").round(2)

# %% [markdown]
# ## Each subject's slope: shrinkage
#
# The no-pooling estimate of a subject's slope is the least-squares slope of that subject's ten
# days alone; the model's estimate is pulled towards the average slope.

# %%
slopes = hb.shrinkage(fit, "Subject", coef="Days")
slopes.round(2)

# %% [markdown]
# The pooling factor is the same for every subject (about 0.17): every subject was measured on the
# same ten days with the same residual sd, so every subject's own slope is equally precise. Yet the
# subjects move by different amounts, some even away from the average: the intercept and the slope
# are pooled together, and a subject's least-squares intercept and slope are correlated estimates
# (`Days` is not centred), so pulling the intercept towards the average moves the slope too.

# %%
hb.plot_shrinkage(slopes)

# %%
hb.plot_caterpillar(fit, "Subject", coef="Days", total=True)

# %% [markdown]
# Every subject's slope is positive except perhaps one or two whose intervals include zero: almost
# everybody slows down, at rates that differ by a factor of several.
#
# ## Predictions
#
# What reaction time should we expect on a tenth day of deprivation, for subject 308 and for a new
# subject? `kind="response"` includes the day-to-day noise $\sigma$; for the new subject,
# `new_levels="sample"` draws its intercept and slope from $N(0, \Omega)$, so the interval also
# carries the between-subject variation.

# %%
import pandas as pd

new = pd.DataFrame({"Days": [10, 10], "Subject": [308, "new subject"]})
hb.predict(fit, new, kind="response", new_levels="sample", random_seed=3).round(1)

# %% [markdown]
# Subject 308, a fast decliner, is predicted well above the average; the new subject's interval is
# much wider, because we do not know how fast a new subject slows down.
