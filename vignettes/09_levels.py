# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Grouping levels: trees in plots, plants in genotypes
#
# Individuals often come in groups that share something: trees in a plot share its soil, plants of
# one genotype share their genes, patients of one centre its practice. nlme fits this with nested
# random effects (`random = list(plot = Asym ~ 1, tree = Asym + xmid ~ 1)`), lme4 with
# `(1 | plot)` terms, Monolix with its levels of variability. In pymixnn a level is
# `pymixnn.Level(column, params=[...])`: every individual in group g of the level gets the same
# extra random effect $b_g \sim N(0, \Omega_{\text{level}})$ on the named (transformed) parameters,
# on top of its own $\eta_i \sim N(0, \Omega)$:
#
# $$\phi_i = \mu + \beta\,x_i + \sum_{\text{levels}} b_{\text{level}, g(i)} + \eta_i .$$
#
# Levels may be nested (each tree in one plot) or crossed (plants in genotypes and in blocks).
#
# **How the fit integrates the levels out.** Each individual's posterior of its own effects,
# computed by the fit anyway, implies a Gaussian pseudo-likelihood of its total offset; given those,
# the levels are a linear mixed model solved exactly: the level covariances by maximum likelihood,
# the level parameters' fixed effects by generalized least squares (so their SEs include the
# level's variance), the level effects' posterior. The fit alternates this with its usual
# refinement until nothing moves, and the reported log-likelihood integrates the levels out. For a
# linear model everything is exact; for a nonlinear one, it is nlme's LME step with the
# individual's posterior in place of a linearisation.
#
# Three parts: trees in plots against nlme; plants in crossed genotypes and blocks against lme4
# (where both fits should give the same numbers); real maize plants of 90 genotypes in the
# PhenoArch greenhouse. Spatial fields over that greenhouse are vignette 08.

# %%
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display

import pymixnn

QUICK = os.environ.get("PYMIXNN_QUICK") == "1"  # quick mode: smaller settings, same checks
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
KEY = {"quick": str(QUICK)}
REF = Path(pymixnn.__file__).resolve().parents[1] / "tests" / "reference" / "levels"

# %% [markdown]
# ## 1. Trees in plots, against nlme
#
# 40 plots of 6 trees, 7 ages each, simulated by `tests/reference/levels/nested_nlme.R` (logistic
# growth, asymptote 100 with plot and tree effects of SD 10 and 8, inflection age 6 with a tree
# effect of SD 0.6), and nlme's ML fit of it by the same script (Debian's nlme 3.1-162):
#
# ```r
# nlme(y ~ SSlogis(age, Asym, xmid, scal), fixed = Asym + xmid + scal ~ 1,
#      random = list(plot = pdDiag(Asym ~ 1), tree = pdDiag(Asym + xmid ~ 1)), method = "ML")
# ```
#
# pymixnn puts the random effects on the natural scale, as SSlogis does (`transforms=`).

# %%
trees = pd.read_csv(REF / "nested_logistic.csv")
nlme_ref = json.loads((REF / "nested_nlme.json").read_text())
t0 = time.perf_counter()
nested = pymixnn.fit(
    trees,
    "logistic",
    id="tree",
    x="age",
    y="y",
    random=["A", "B"],
    transforms={"A": "identity", "B": "identity"},
    levels=[pymixnn.Level("plot", params=["A"])],
    seed=1,
    progress=False,
)
t_nested = time.perf_counter() - t0
print(nested.summary())

# %%
rows = [
    ("A (Asym)", "A", nlme_ref["fixed"]["Asym"], nlme_ref["fixed_se"]["Asym"]),
    ("B (xmid)", "B", nlme_ref["fixed"]["xmid"], nlme_ref["fixed_se"]["xmid"]),
    ("C (scal)", "C", nlme_ref["fixed"]["scal"], nlme_ref["fixed_se"]["scal"]),
    ("omega2 plot (Asym)", "omega2.plot.A", nlme_ref["omega2_plot_Asym"], np.nan),
    ("omega2 tree (Asym)", "omega2.A", nlme_ref["omega2_tree"]["Asym"], np.nan),
    ("omega2 tree (xmid)", "omega2.B", nlme_ref["omega2_tree"]["xmid"], np.nan),
]
p = nested.params
nested_table = pd.DataFrame(
    [
        dict(
            parameter=label,
            pymixnn=p.loc[row, "estimate"],
            pymixnn_se=p.loc[row, "se"],
            nlme=ref_value,
            nlme_se=ref_se,
            rel_diff=p.loc[row, "estimate"] / ref_value - 1,
        )
        for label, row, ref_value, ref_se in rows
    ]
    + [
        dict(
            parameter="sigma",
            pymixnn=nested.sigma["a"],
            nlme=nlme_ref["sigma"],
            rel_diff=nested.sigma["a"] / nlme_ref["sigma"] - 1,
        ),
        dict(parameter="log-likelihood", pymixnn=nested.loglik, nlme=nlme_ref["logLik"]),
    ]
).set_index("parameter")
nested_table

# %% [markdown]
# The two fits agree within 0.3% on the fixed effects, 0.4% on their SEs and 0.3% on the
# variances. The
# log-likelihoods differ by half a unit: nlme linearizes the model at the random effects' modes,
# pymixnn integrates both levels out (the test suite checks its value against brute-force nested
# quadrature, 0.0006 apart), so pymixnn's maximum is the slightly higher one.
#
# The plot effects (nlme's `ranef(fit)$plot`) are `res.level_effects("plot")`, with their
# posterior SDs:

# %%
plot_effects = nested.level_effects("plot")
theirs = pd.Series(nlme_ref["plot_effects"]).loc[plot_effects.index]
print(plot_effects.head())
KEY.update(
    nested_max_rel_fixed=float(
        nested_table.loc[["A (Asym)", "B (xmid)", "C (scal)"], "rel_diff"].abs().max()
    ),
    nested_max_rel_omega=float(nested_table.loc[[r[0] for r in rows[3:]], "rel_diff"].abs().max()),
    nested_loglik_minus_nlme=float(nested.loglik - nlme_ref["logLik"]),
    nested_max_plot_effect_diff=float((plot_effects["A"] - theirs).abs().max()),
    nested_seconds=t_nested,
)

fig, ax = plt.subplots(figsize=(4.5, 4))
ax.errorbar(theirs, plot_effects["A"], yerr=2 * plot_effects["A.sd"], fmt="o", ms=3, alpha=0.7)
lim = [theirs.min() - 3, theirs.max() + 3]
ax.plot(lim, lim, "k--", lw=0.8)
ax.set_xlabel("nlme: plot effect on Asym")
ax.set_ylabel("pymixnn: plot effect (+- 2 posterior SD)")
fig.tight_layout()
fig.savefig(FIG / "plot_effects_vs_nlme.png", dpi=110)
plt.close(fig)
display(Image(str(FIG / "plot_effects_vs_nlme.png")))

# %% [markdown]
# ## 2. Crossed levels in a linear model, against lme4
#
# 240 plants: 30 genotypes x 2 blocks x 4 replicates, 5 times each, linear growth with a genotype
# and a block effect on the intercept, and an intercept and a slope per plant
# (`tests/reference/levels/linear_levels.R`, with lme4's ML fit
# `lmer(y ~ t + (1 | genotype) + (1 | block) + (1 | plant) + (0 + t | plant), REML = FALSE)`).
# In a linear model the pseudo-likelihood is exact, so both programs maximize the same likelihood.

# %%
crossed_ref = json.loads((REF / "linear_levels.json").read_text())["crossed"]
plants = pd.read_csv(REF / "crossed_linear.csv")
crossed = pymixnn.fit(
    plants,
    "linear",
    id="plant",
    x="t",
    y="y",
    levels=[pymixnn.Level("genotype", params=["intercept"]), pymixnn.Level("block", params=["intercept"])],
    seed=1,
    progress=False,
)
cp = crossed.params
crossed_table = pd.DataFrame(
    {
        "pymixnn": [
            cp.loc["intercept", "estimate"],
            cp.loc["intercept", "se"],
            cp.loc["omega2.genotype.intercept", "estimate"],
            cp.loc["omega2.block.intercept", "estimate"],
            cp.loc["omega2.intercept", "estimate"],
            cp.loc["omega2.slope", "estimate"],
            crossed.sigma["a"],
            crossed.loglik,
        ],
        "lme4": [
            crossed_ref["fixed"]["(Intercept)"],
            crossed_ref["fixed_se"]["(Intercept)"],
            crossed_ref["omega2_genotype"],
            crossed_ref["omega2_block"],
            crossed_ref["omega2_plant"]["intercept"],
            crossed_ref["omega2_plant"]["t"],
            crossed_ref["sigma"],
            crossed_ref["logLik"],
        ],
    },
    index=[
        "intercept",
        "SE(intercept)",
        "omega2 genotype",
        "omega2 block",
        "omega2 plant (intercept)",
        "omega2 plant (slope)",
        "sigma",
        "log-likelihood",
    ],
)
crossed_table["diff"] = crossed_table["pymixnn"] - crossed_table["lme4"]
KEY.update(
    crossed_loglik_minus_lmer=float(crossed.loglik - crossed_ref["logLik"]),
    crossed_max_rel_omega=float((crossed_table["pymixnn"] / crossed_table["lme4"] - 1).iloc[2:7].abs().max()),
)
crossed_table

# %% [markdown]
# Note the SE of the intercept, 0.53: it is dominated by the 30 genotypes and 2 blocks, not by the
# 240 plants. Holding the level effects at their estimates would give a far smaller, wrong SE;
# pymixnn takes the level parameters' fixed-effect SEs from the generalized least squares of the
# levels' model.
#
# ## 3. Maize plants in genotypes (PhenoArch)
#
# The PhenoArch greenhouse data (`pymixnn.datasets.load("phenoarch")`, from the statgenHTP
# package): daily leaf area of 1,673 maize plants of 90 genotypes, well watered (WW) or under water
# deficit (WD). Each plant follows a logistic curve $A / (1 + e^{-(t - B)/C})$ with log-normal
# parameters, a scenario effect on A and B, and a proportional error. Without levels, the genotypes
# are invisible to the model: all variation between plants is one $\Omega$. With
# `Level("Genotype", params=["A", "B", "C"])`, the variation splits into a genotype part and a
# plant-within-genotype part. (Quick mode: the first 12 genotypes.)

# %%
maize = pymixnn.datasets.load("phenoarch")
if QUICK:
    maize = maize[maize["Genotype"].isin(sorted(maize["Genotype"].unique())[:12])]
print(
    maize["plant"].nunique(), "plants,", maize["Genotype"].nunique(), "genotypes,", len(maize), "observations"
)
maize_args = dict(
    id="plant",
    x="day",
    y="LeafArea",
    covariates={"A": ["Scenario"], "B": ["Scenario"]},
    error="proportional",
    seed=1,
    progress=False,
)
t0 = time.perf_counter()
plain = pymixnn.fit(maize, "logistic", **maize_args)
t_plain = time.perf_counter() - t0
t0 = time.perf_counter()
genotypes = pymixnn.fit(
    maize, "logistic", levels=[pymixnn.Level("Genotype", params=["A", "B", "C"])], **maize_args
)
t_geno = time.perf_counter() - t0
print(genotypes.summary())

# %%
print(pymixnn.compare_fits(plain, genotypes, names=["no levels", "genotype level"]).T.head(12))

# %% [markdown]
# The genotype level raises the log-likelihood by several hundred units for 3 extra parameters.
# How much of the variation between plants is genetic? The share of each parameter's variance
# (transformed scale) that the genotype level carries:

# %%
gp = genotypes.params
shares = pd.DataFrame(
    {
        "omega2 genotype": [gp.loc[f"omega2.Genotype.{q}", "estimate"] for q in "ABC"],
        "omega2 plant": [gp.loc[f"omega2.{q}", "estimate"] for q in "ABC"],
        "omega2 without levels": [plain.params.loc[f"omega2.{q}", "estimate"] for q in "ABC"],
    },
    index=list("ABC"),
)
shares["genetic share"] = shares["omega2 genotype"] / (shares["omega2 genotype"] + shares["omega2 plant"])
ses = pd.DataFrame(
    {
        "SE without levels": plain.params.loc[["A", "beta_Scenario[WW](A)", "B"], "se"],
        "SE with the genotype level": gp.loc[["A", "beta_Scenario[WW](A)", "B"], "se"],
    }
)
display(shares)
display(ses)

# %% [markdown]
# Most of the variation of the asymptote between plants is genetic, and the two variances add up
# to roughly the single $\Omega$ of the fit without levels. The SEs of the fixed effects change
# too: the typical asymptote is estimated from 90 genotypes, not from 1,673 independent plants,
# so its SE grows; the scenario effect is estimated within genotypes (each genotype grew in both
# scenarios), so its SE shrinks.
#
# The genotypes' effects on the asymptote, with two posterior SDs (the genetic values of a
# genotype-level random-effects model, nlme's `ranef(fit)$Genotype`):

# %%
geno_effects = genotypes.level_effects("Genotype").sort_values("A")
fig, ax = plt.subplots(figsize=(7, 3.2))
xs = np.arange(len(geno_effects))
ax.errorbar(xs, geno_effects["A"], yerr=2 * geno_effects["A.sd"], fmt="o", ms=3, lw=0.8)
ax.axhline(0, color="k", lw=0.6)
ax.set_xlabel("genotype (sorted)")
ax.set_ylabel("effect on log A")
ax.set_title("Genotype effects on the leaf-area asymptote")
fig.tight_layout()
fig.savefig(FIG / "genotype_effects.png", dpi=110)
plt.close(fig)
display(Image(str(FIG / "genotype_effects.png")))

# %% [markdown]
# A spatial field over the greenhouse, on top of this genotype level, is vignette 08
# (`08_spatial.py`).
#
# ## Checks

# %%
KEY.update(
    maize_plants=int(maize["plant"].nunique()),
    maize_genotypes=int(maize["Genotype"].nunique()),
    maize_loglik_gain=float(genotypes.loglik - plain.loglik),
    maize_aic_gain=float(plain.aic - genotypes.aic),
    maize_genetic_share_A=float(shares.loc["A", "genetic share"]),
    maize_se_ratio_A=float(ses.iloc[0, 1] / ses.iloc[0, 0]),
    maize_se_ratio_scenario=float(ses.iloc[1, 1] / ses.iloc[1, 0]),
    maize_seconds_plain=t_plain,
    maize_seconds_levels=t_geno,
)
# trees in plots: the bars against nlme, 2% on fixed effects and 15% on variances
# (measured 0.3% and 0.3%); pymixnn's log-likelihood at least nlme's (its maximum, exact
# integration) and within 1 unit; plot effects within 0.1 (posterior SD ~3)
assert KEY["nested_max_rel_fixed"] < 0.02 and KEY["nested_max_rel_omega"] < 0.15, KEY
assert -0.05 < KEY["nested_loglik_minus_nlme"] < 1.0 and KEY["nested_max_plot_effect_diff"] < 0.1, KEY
# crossed levels in a linear model: the same maximum as lme4 (measured 1e-5 units, 1e-4 relative)
assert abs(KEY["crossed_loglik_minus_lmer"]) < 0.01 and KEY["crossed_max_rel_omega"] < 0.01, KEY
# maize: the genotype level is strongly supported (AIC lower by > 100 with 12 genotypes, > 300
# with 90), most of the asymptote's variance between plants is genetic (> 40%), and the SE of
# the typical asymptote grows while the within-genotype scenario effect's shrinks
assert KEY["maize_aic_gain"] > (100 if QUICK else 300), KEY
assert KEY["maize_genetic_share_A"] > 0.4, KEY
assert KEY["maize_se_ratio_A"] > 1.0 and KEY["maize_se_ratio_scenario"] < 1.0, KEY
Path("key_numbers.json").write_text(json.dumps(KEY, indent=2))
print(json.dumps(KEY, indent=2))
