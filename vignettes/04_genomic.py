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
# # Genomic covariates: marker effects and predictions for genotypes never phenotyped
#
# In plant breeding and quantitative genetics every individual (a plant, a line, a pot) belongs
# to a **genotype**, and the genotypes are described by thousands of **markers** (SNPs coded
# 0/1/2, or 0/1 in inbred lines). Two questions come up again and again with longitudinal
# phenotypes such as growth curves:
#
# 1. *Which markers move which parameter of the curve?* (QTL mapping on curve parameters.)
# 2. *What curve should we expect from a genotype we have never phenotyped*, knowing only its
#    markers? (Genomic prediction.)
#
# The classical answer is **two-step**: fit an NLME model (nlme, saemix), take each genotype's
# estimated parameters, then regress them on the markers (ridge regression / GBLUP). pymixnn does
# it in **one step**: the marker effects sit inside the mixed model, on the transformed scale of
# the chosen parameters,
#
# $$\phi_i[p] = \mu_p + X_i\beta + G_{g(i)}\,\gamma_p + u_{g(i)}[p] + \eta_i[p],$$
#
# where $G_g$ are the standardized markers of individual $i$'s genotype $g(i)$, $\gamma_p$ the
# marker effects on parameter $p$ (a **ridge** prior, i.e. GBLUP with its variance estimated, or
# a sparse **horseshoe** prior that reports an inclusion probability per marker), $u_g$ the
# genotype residual (genetic value the markers do not explain; only when genotypes have several
# individuals) and $\eta_i$ the usual individual random effect. You ask for it with two
# arguments of `pymixnn.fit`: `genotype=` (the column naming each individual's genotype) and
# `genomic=pymixnn.Genomic(markers, params=[...], prior=...)`.
#
# This vignette has two parts:
#
# * **Real data** (grav2): 162 *Arabidopsis* recombinant inbred lines with their 234 real
#   markers; marker effects on a root-gravitropism curve, and prediction of the curves of RILs
#   held out of the fit, against the two-step approach and the population curve.
# * **Scale**: a simulation with 250 genotypes x 3 water scenarios and 60,000 markers with known
#   causal markers: time, memory, recovery of the causal markers, predictions for new genotypes,
#   and a limit of the horseshoe at this ratio of markers to genotypes.

# %%
import json
import os
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Image, display

import pymixnn

QUICK = os.environ.get("PYMIXNN_QUICK") == "1"  # quick mode: smaller settings, same checks
FIG = Path("figures")
FIG.mkdir(exist_ok=True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# the marker matrix of grav2 has 1.4% missing cells: pymixnn mean-imputes them and says so in a
# UserWarning (the count is also in res.summary()); silence the repeats
warnings.filterwarnings("ignore", message=".*missing marker value")
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook check
KEY = {"quick": float(QUICK)}
T_START = time.perf_counter()

# %% [markdown]
# ## Part 1: grav2, root gravitropism of 162 Ler x Cvi RILs
#
# **Data.** Moore et al. (2013, *Genetics* 195:1077) photographed *Arabidopsis thaliana*
# seedlings every 2 minutes for 8 hours after turning them by 90 degrees and measured the angle
# of the root tip as it bent back towards gravity. The lines are 162 recombinant inbred lines
# (RILs) from the cross Landsberg *erecta* (Ler) x Cape Verde Islands (Cvi); each RIL's curve
# is the mean of several seedlings, so here **one RIL = one individual = one genotype**. The
# markers are 234 genotyped loci on the 5 chromosomes, coded 0 = Ler allele, 1 = Cvi allele
# (1.4% missing), with a genetic map in cM. The data come from R/qtl2 (`grav2.zip`) and ship
# with pymixnn.

# %%
pheno = pymixnn.datasets.load("grav2")  # id, time_h, angle_deg (long format)
markers = pymixnn.datasets.load_markers("grav2")  # 162 RILs x 234 markers, index = RIL id
gmap = pymixnn.datasets.load_map("grav2")  # marker, chr, pos (cM)
# ids as strings everywhere (pymixnn compares genotype ids as strings)
pheno = pheno.assign(id=pheno["id"].astype(str))
pheno["genotype"] = pheno["id"]  # one individual per RIL
markers.index = markers.index.astype(str)
times = np.sort(pheno["time_h"].unique())
print(
    f"{pheno['id'].nunique()} RILs, {len(times)} time points "
    f"({times[0]:.2f} to {times[-1]:.2f} h), {len(pheno)} observations"
)
print(
    f"markers: {markers.shape[0]} RILs x {markers.shape[1]} markers, "
    f"{int(markers.isna().sum().sum())} missing cells; map: {gmap['chr'].nunique()} chromosomes"
)
markers.iloc[:4, :6]

# %% [markdown]
# **Model.** The angle rises from near 0 towards a plateau, which nlme's asymptotic regression
# `SSasymp` describes (pymixnn's named model `"asymptotic"`):
#
# $$y_{ij} = \mathrm{Asym}_i + (R0_i - \mathrm{Asym}_i)\,\exp(-e^{\mathrm{lrc}_i} t_{ij}) + \varepsilon_{ij},$$
#
# with the plateau `Asym` (degrees), the starting angle `R0` and the log rate constant `lrc`,
# all three with random effects (identity transforms), and a constant residual error. The marker
# effects go on the two biologically interesting parameters: how far the root bends (`Asym`)
# and how fast (`lrc`).
#
# **Thinning the time points.** With one image every 2 minutes, consecutive residuals of a curve
# are strongly autocorrelated (the root moves smoothly; the model's independent-error
# assumption fails), so the 241 points carry much less information than their number suggests
# and would make the SEs too optimistic and the fit 4 times slower. We fit every 4th point
# (8 minutes apart; every 16th in quick mode) and check the autocorrelation below. Predictions
# are evaluated on **all** the observed points.

# %%
THIN = 16 if QUICK else 4
# SVI step cap, for the fits that run SVI (gear="svi"; the default Newton gear takes none)
STEPS = 300 if QUICK else 4000
fit_df = pheno[pheno["time_h"].isin(times[::THIN])].reset_index(drop=True)
kw = dict(id="id", x="time_h", y="angle_deg", seed=1, progress=False, max_steps=STEPS)
print(f"fitting on {fit_df['time_h'].nunique()} time points, {len(fit_df)} observations")

# %% [markdown]
# **Training and held-out RILs.** To answer the prediction question honestly we set 20% of the
# RILs aside *before* any fitting (32 of 162, drawn at random with a fixed seed): they play the
# genotypes never phenotyped, whose markers are known but whose curves the fits never see. Every
# fit below uses the other 130 RILs only.

# %%
rng = np.random.default_rng(1)
ril_ids = np.asarray(sorted(pheno["id"].unique(), key=int))
held = sorted(rng.choice(ril_ids, size=int(round(0.2 * len(ril_ids))), replace=False), key=int)
train = fit_df[~fit_df["id"].isin(held)].reset_index(drop=True)
test = pheno[pheno["id"].isin(held)].sort_values(["id", "time_h"]).reset_index(drop=True)
print(
    f"training: {train['id'].nunique()} RILs, {len(train)} observations; held out: "
    f"{len(held)} RILs, {len(test)} observed points (all 2-minute points)"
)

# %% [markdown]
# ### Marker effects (horseshoe prior)
#
# First the QTL question. The **horseshoe** prior shrinks most marker effects to (almost) zero
# and leaves a few large: it suits traits with a handful of QTL, and it reports for each marker
# an **inclusion probability** $1-\kappa$ (1 - its shrinkage factor: near 1, the data keep the
# effect; near 0, it is shrunk away). The map is only used for the plots and tables.

# %%
t0 = time.perf_counter()
res = pymixnn.fit(
    train,
    "asymptotic",
    **kw,
    genotype="genotype",
    genomic=pymixnn.Genomic(markers, params=["Asym", "lrc"], prior="horseshoe", map=gmap),
)
KEY["grav2_fit_seconds"] = time.perf_counter() - t0
print(res.summary())

# %% [markdown]
# The summary reads like saemix's: fixed effects $\mu$ (the typical RIL: a plateau near 120
# degrees, a rate $e^{\mathrm{lrc}}$ near 0.24 per hour), the variances $\omega^2$ of the
# individual random effects, the residual sd `a` (degrees), the log-likelihood (`ll.is`, with the
# genetic values plugged in). The genomic block then lists the marker counts (the 545 missing
# cells were mean-imputed), the variance decomposition and the top markers. The marker matrix
# holds all 162 RILs: the 32 held-out rows are kept for prediction.
#
# **Is the thinning justified?** The lag-1 autocorrelation of the individual residuals (observed
# minus the RIL's fitted curve) of the training RILs, on the full 2-minute series and on the
# thinned series used by the fit:


# %%
def lag1_autocorrelation(df, fitted):
    r = df.assign(r=df["angle_deg"].to_numpy() - fitted).sort_values(["id", "time_h"])
    lagged = r.groupby("id")["r"].shift(1)
    ok = lagged.notna()
    return float(np.corrcoef(r["r"][ok], lagged[ok])[0, 1])


train_all_times = pheno[~pheno["id"].isin(held)]
ac_full = lag1_autocorrelation(train_all_times, res.predict(train_all_times, level="individual"))
ac_thin = lag1_autocorrelation(train, res.predict(level="individual"))
KEY["grav2_resid_lag1_2min"], KEY["grav2_resid_lag1_thinned"] = ac_full, ac_thin
print(
    f"lag-1 autocorrelation of residuals: 2-minute spacing {ac_full:.2f}, "
    f"{2 * THIN}-minute spacing {ac_thin:.2f}"
)

# %% [markdown]
# At 2 minutes the residuals form an almost smooth curve (autocorrelation close to 1): a
# 2-minute point adds little to its neighbours. Thinning lowers it, but the residuals stay
# autocorrelated (a RIL's curve deviates from the `SSasymp` shape for stretches of time), so the
# SEs of this fit are still somewhat optimistic; the marker ranking and the predictions below
# do not rely on them.
#
# ### Top markers and the Manhattan plot
#
# `res.top_markers(n)` ranks the markers of each parameter by inclusion probability.
# `effect` is per allele (Cvi minus Ler, in degrees for `Asym`, in log-rate units for `lrc`),
# `effect_std` per standard deviation of the marker, `sd` its posterior sd.

# %%
top = res.top_markers(8)
KEY["grav2_top_Asym_marker"] = str(top[top["parameter"] == "Asym"]["marker"].iloc[0])
KEY["grav2_top_lrc_marker"] = str(top[top["parameter"] == "lrc"]["marker"].iloc[0])
top[["parameter", "rank", "marker", "chr", "pos", "effect", "sd", "inclusion"]].round(3)

# %%
pngs = res.plot_manhattan(FIG)  # one PNG per parameter: FIG/manhattan_Asym.png, ..._lrc.png
for p in pngs:
    display(Image(filename=str(p)))

# %% [markdown]
# **How to read it.** One dot per marker, placed by chromosome and cM position (chromosomes in
# alternating colours), height = inclusion probability; the 10 highest are labelled. Unlike a
# single-marker scan's LOD curve, neighbouring markers on a RIL chromosome are strongly
# correlated (few recombinations between them), so the horseshoe gives a QTL's effect to one or
# a few markers of the region rather than drawing a smooth peak: read the plot by *region* (a
# cluster of high dots) rather than by single marker. Markers without signal sit on a common
# floor (the inclusion probability that the global shrinkage gives a marker with no effect), well
# below the few markers the data keep. The markers above 0.6, by chromosome:

# %%
strong = res.marker_effects.query("inclusion > 0.6").sort_values(["parameter", "chr", "pos"])
for p, grp in strong.groupby("parameter"):
    print(
        f"{p:5s}",
        "; ".join(f"chr {r.chr} {r.pos:.0f} cM {r.marker} ({r.inclusion:.2f})" for r in grp.itertuples()),
    )


def rank_in_top(marker, p):
    r = top[(top["parameter"] == p) & (top["marker"] == marker)]["rank"]
    return int(r.iloc[0]) if len(r) else 99  # 99: not among the top 8


rank_CH284C = {p: rank_in_top("CH.284C", p) for p in ["Asym", "lrc"]}
KEY["grav2_rank_CH284C_Asym"] = rank_CH284C["Asym"]
KEY["grav2_rank_CH284C_lrc"] = rank_CH284C["lrc"]

# %% [markdown]
# For the plateau the leading markers lie on chromosome 2 (BF.325L near 6 cM and CH.284C near
# 20 cM, with effects of opposite sign), chromosome 4 (AD.307C), chromosome 5 (CC.277L-Col) and,
# more weakly in full mode, the top of chromosome 1 (EC.480C). For the rate, CH.284C leads,
# followed by AD.106L-Col (chromosome 1, 37 cM): the Cvi allele at CH.284C lowers the plateau
# and raises the rate, a root that bends faster but less far. Each estimate comes with its
# posterior sd (table above): an allele effect of 5-8 degrees with an sd of about 3.5 is a real
# but imprecise QTL, as expected with 130 lines (the exact order of the top few differs between
# this full-mode fit and the quick-mode one on 16 time points).
#
# ### Variance explained
#
# `res.variance_explained` splits the variance of each (transformed) parameter into covariates
# (none here), markers (the variance over RILs of $G_g\gamma_p$), the genotype residual
# $s^2_u$ and the individual random effect $\omega^2$. With one individual per RIL the genotype
# residual cannot be told apart from $\eta_i$, so pymixnn leaves it out and $\omega^2$ holds
# everything the markers do not explain (non-marker genetics, environment, measurement).
# `share_markers` = markers / total is then the fraction of the between-RIL variance of the
# parameter that the markers account for (a genomic "heritability" of the curve parameter).

# %%
var = res.variance_explained
KEY["grav2_share_markers_Asym"] = float(var.loc["Asym", "share_markers"])
KEY["grav2_share_markers_lrc"] = float(var.loc["lrc", "share_markers"])
var[["markers", "individual", "share_markers"]].round(4)

# %% [markdown]
# ### Predicting the held-out RILs: one-step against two-step
#
# Now the prediction question: the curves of the 32 held-out RILs **from their markers alone**.
# Three predictors, all evaluated against every observed 2-minute point of the held-out RILs
# (root-mean-square error in degrees):
#
# * **one-step** (pymixnn): `res.predict_genotypes(new_markers, x_grid=...)` returns, for each new
#   genotype, the curve of a typical plant at its predicted genetic value (`pred`) and a 90% band
#   (`lower`, `upper`) of the kind chosen by `band=` (column `band`): `band="mean"` for the RIL's
#   typical curve, `band="individual"` (used here) also draws a new plant's random effect, so it
#   is a prediction interval for one new curve of that RIL. `res.genotype_parameters(...)`
#   gives the predicted genetic values themselves. We use the horseshoe fit above and, in full
#   mode, a second fit with the **ridge** prior (GBLUP, the usual choice for prediction when
#   many loci of small effect are expected).
# * **two-step**: an NLME fit without markers gives each training RIL's parameters (its MAP
#   estimates, as `coef()` in nlme); a ridge regression of `Asym` and `lrc` on the standardized
#   markers, with its penalty chosen by leave-one-out cross-validation, predicts them for the
#   held-out RILs; `R0` stays at its population value.
# * **population curve**: the fixed effects, the same curve for every RIL (the floor that markers
#   must beat).

# %%
PRIORS = ["horseshoe"] if QUICK else ["horseshoe", "ridge"]
one_step = {"horseshoe": res}
for prior in PRIORS[1:]:
    t0 = time.perf_counter()
    one_step[prior] = pymixnn.fit(
        train,
        "asymptotic",
        **kw,
        genotype="genotype",
        genomic=pymixnn.Genomic(markers, params=["Asym", "lrc"], prior=prior),
    )
    print(f"one-step {prior}: fitted in {time.perf_counter() - t0:.1f} s")
pred = test[["id", "time_h", "angle_deg"]].copy()
for prior in PRIORS:
    curves = one_step[prior].predict_genotypes(
        markers.loc[held], x_grid=times, n_draws=300, band="individual", seed=1
    )
    curves = curves.rename(
        columns={
            "genotype": "id",
            "pred": f"one-step {prior}",
            "lower": f"lower {prior}",
            "upper": f"upper {prior}",
        }
    )
    keep = ["id", "time_h", f"one-step {prior}", f"lower {prior}", f"upper {prior}"]
    pred = pred.merge(curves[keep], on=["id", "time_h"], how="left")
res.genotype_parameters(markers.loc[held[:3]]).round(3)

# %% [markdown]
# `genotype_parameters` gives each new RIL's predicted genetic value on the transformed scale
# (`value`, an offset from $\mu$), its sd (the uncertainty of the marker effects plus, when there
# is one, the unknown genotype residual) and `psi`, the parameter of a typical plant of that RIL.
#
# The two-step baseline, written out (about 20 lines): step 1 is a plain pymixnn NLME fit (any
# NLME software would do), step 2 a ridge regression with its penalty chosen by exact
# leave-one-out CV through the eigendecomposition of $GG'$.


# %%
def standardize(raw, ref):
    """Markers standardized with the training rows' means and sds (missing -> the mean)."""
    mean, sd = ref.mean(), ref.std(ddof=0).replace(0, 1.0)
    return ((raw.fillna(mean) - mean) / sd).to_numpy()


def ridge_loo(X, y, grid=np.logspace(-3, 5, 81)):
    """Ridge regression of y on X, penalty by exact leave-one-out CV; returns a predictor."""
    y_mean = y.mean()
    s, U = np.linalg.eigh(X @ X.T)  # X centred: the constant vector is an eigenvector
    s = np.clip(s, 0, None)
    k0 = np.argmax(np.abs(U.sum(axis=0)))  # ... with eigenvalue 0, fitted by the intercept
    Uy = U.T @ (y - y_mean)
    loo = []
    for lam in grid * X.shape[1] / 100:
        r = lam / (s + lam)  # 1 - eigenvalues of the ridge hat matrix
        r[k0] = 0.0  # the intercept's direction is fitted exactly
        # LOO residual e_i / (1 - h_ii), both computed in the eigenbasis (no cancellation)
        loo.append(np.mean(((U @ (r * Uy)) / ((U**2) @ r)) ** 2))
    lam = grid[int(np.argmin(loo))] * X.shape[1] / 100
    coef = X.T @ (U @ (Uy / (s + lam)))  # dual form: markers >> lines
    return lambda X_new: y_mean + X_new @ coef


def asymptotic(Asym, R0, lrc, t):
    return Asym + (R0 - Asym) * np.exp(-np.exp(lrc) * t)


t0 = time.perf_counter()
base = pymixnn.fit(train, "asymptotic", **kw)  # step 1: NLME without markers
est = base.individual_params("map")  # per-RIL estimates (Asym, R0, lrc)
train_ids = list(est.index.astype(str))
X_train = standardize(markers.loc[train_ids], markers.loc[train_ids])
X_held = standardize(markers.loc[held], markers.loc[train_ids])
mu = base.fixed_effects  # population values
two = pd.DataFrame(
    {p: ridge_loo(X_train, est[p].to_numpy())(X_held) for p in ["Asym", "lrc"]}, index=held
)  # step 2: ridge on markers
two["R0"] = mu["R0"]
t_of = test["time_h"].to_numpy()
p_of = two.loc[test["id"]]
pred["two-step"] = asymptotic(p_of["Asym"].to_numpy(), p_of["R0"].to_numpy(), p_of["lrc"].to_numpy(), t_of)
pred["population"] = asymptotic(mu["Asym"], mu["R0"], mu["lrc"], t_of)
print(f"two-step: {time.perf_counter() - t0:.1f} s")
base.fixed_effects.round(3)

# %% [markdown]
# **Results** on the held-out RILs: RMSE over all their observed points, correlation over RILs of
# the predicted and observed mean angle (how well the ranking of RILs is predicted), and the
# coverage of the one-step 90% band for a new plant.

# %%
methods = [f"one-step {p}" for p in PRIORS] + ["two-step", "population"]
per_ril = pred.groupby("id").mean(numeric_only=True)
rows = []
for m in methods:
    row = {
        "method": m,
        "rmse_deg": float(np.sqrt(np.mean((pred[m] - pred["angle_deg"]) ** 2))),
        "corr_ril_mean": (
            float(np.corrcoef(per_ril[m], per_ril["angle_deg"])[0, 1]) if m != "population" else np.nan
        ),
    }
    if m.startswith("one-step"):
        p = m.split()[1]
        row["coverage_90"] = float(np.mean(pred["angle_deg"].between(pred[f"lower {p}"], pred[f"upper {p}"])))
    rows.append(row)
table = pd.DataFrame(rows).set_index("method")
for m in methods:
    KEY[f"grav2_rmse_{m.replace(' ', '_').replace('-', '_')}"] = table.loc[m, "rmse_deg"]
for m in methods[:-1]:
    KEY[f"grav2_corr_ril_mean_{m.replace(' ', '_').replace('-', '_')}"] = table.loc[m, "corr_ril_mean"]
for p in PRIORS:
    KEY[f"grav2_coverage90_one_step_{p}"] = table.loc[f"one-step {p}", "coverage_90"]
table.round(3)

# %%
show = held[:8]
fig, axes = plt.subplots(2, 4, figsize=(12, 5.6), sharex=True, sharey=True)
for ax, i in zip(axes.ravel(), show):
    d = pred[pred["id"] == i]
    ax.plot(d["time_h"], d["angle_deg"], ".", ms=2, color="0.55", label="observed (held out)")
    ax.fill_between(
        d["time_h"],
        d["lower horseshoe"],
        d["upper horseshoe"],
        color="tab:blue",
        alpha=0.15,
        label="one-step 90% band (a new plant)",
    )
    ax.plot(d["time_h"], d["one-step horseshoe"], color="tab:blue", label="one-step horseshoe")
    if "one-step ridge" in d:
        ax.plot(d["time_h"], d["one-step ridge"], color="tab:green", lw=1, label="one-step ridge")
    ax.plot(d["time_h"], d["two-step"], color="tab:orange", ls="--", label="two-step")
    ax.plot(d["time_h"], d["population"], color="k", ls=":", label="population curve")
    ax.set_title(f"RIL {i}", fontsize=9)
for ax in axes[-1]:
    ax.set_xlabel("time (h)")
for ax in axes[:, 0]:
    ax.set_ylabel("root angle (deg)")
fig.suptitle("Held-out RILs: curves predicted from markers alone")
handles, labels = axes[0, 0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
fig.tight_layout(rect=(0, 0.05, 1, 1))
fig.savefig(FIG / "grav2_heldout.png", dpi=100)
plt.close(fig)
display(Image(filename=str(FIG / "grav2_heldout.png")))

# %% [markdown]
# **How to read it.** Grey dots: the observed angles of RILs that the fits never saw. Black
# dotted: the population curve, identical for all RILs. Blue: the one-step prediction from the
# RIL's markers, with its 90% band for a new plant of that RIL (wide: most of the variation
# between RIL curves is not predicted by these 234 markers, see `share_markers` above). Orange
# dashed: the two-step prediction (green in full mode: the one-step ridge fit). The marker-based
# curves leave the population curve in the direction of the observed one for some RILs (their
# alleles at the leading markers push the plateau or the rate up or down) and stay close to it
# for others, whose deviation the markers do not capture (RIL 40's late rise, for instance).
#
# **What the numbers say** (full mode; the quick mode's numbers are similar). All
# marker-based predictions beat the population curve (RMSE 9.54 degrees): one-step horseshoe
# 9.10, one-step ridge 8.84, two-step 8.17. The gains are modest: with 20-30% of the parameter
# variance explained by the markers, most of a held-out RIL's deviation from the typical curve
# cannot be predicted, and the 90% bands for a new plant, which cover 98-99% of the held-out
# points, are correspondingly wide (slightly conservative). **On grav2 the two-step approach
# predicts best**, also for the ranking of the RILs (correlation of predicted and observed
# mean angle 0.54, against 0.43-0.46 for one step). The 5-fold cross-validation of the benchmark
# suite (`python -m benchmarks genomic`, the user guide's Validation section: one-step ridge 8.89,
# one-step horseshoe 9.19, two-step 8.54, population 9.53 degrees) found the same ordering with
# smaller gaps; a single 20% split, as here, is noisier than a 5-fold average. So on these data
# one step is not the better predictor; what it adds is a single model with coherent
# uncertainty (marker effects with posterior sds and inclusion probabilities, prediction bands,
# Omega estimated jointly with the marker effects). With replicated plants per genotype, where
# the genotype's value is better separated from the plant's, the recovery benchmark (user guide)
# found the one-step horseshoe ahead of two-step on simulated curves (correlation with the true
# genetic values of held-out genotypes 0.86 vs 0.81 on the grav2 marker matrix).
#
# ## Part 2: scale, 250 genotypes x 3 scenarios x 60,000 markers
#
# A breeding program fits curves on hundreds of genotypes with tens of thousands of SNPs. We
# simulate such a trial with `pymixnn.simulate`:
#
# * `simulate_markers(n, m)`: unlinked biallelic SNPs coded 0/1/2 (Hardy-Weinberg, minor-allele
#   frequency uniform on 0.05-0.5);
# * `simulate_genomic(markers, n_scenarios=3)`: logistic growth curves $A/(1+e^{-(t-B)/C})$ over
#   21 days for every genotype x water scenario (well-watered `WW`, `WD`, `SD`; one plant each),
#   with log-normal A, B, C; 10 causal markers per parameter with equal effects of random sign,
#   scaled so that the markers explain a variance of 0.04 (log A), 0.02 (log B) and 0.01 (log C)
#   over genotypes; a genotype residual (0.01, 0.005, 0.005), plant random effects (0.01 each),
#   a scenario effect on log A (0, -0.2, -0.5) and a residual sd of 2.
#
# We also simulate 50 extra genotypes whose markers are known but whose plants we never grow:
# their true genetic values let us check predictions for genotypes never phenotyped. The fit
# puts horseshoe marker effects on all three parameters and the scenario as a covariate on A.
# In quick mode the trial is smaller (150 genotypes x 2 scenarios x 2,000 markers).

# %%
N_GENO, N_NEW = (150, 30) if QUICK else (250, 50)
N_MARKERS, N_SCEN = (2_000, 2) if QUICK else (60_000, 3)
from pymixnn.simulate import simulate_genomic, simulate_markers  # noqa: E402

t0 = time.perf_counter()
all_markers = simulate_markers(N_GENO + N_NEW, N_MARKERS, seed=1)
full = simulate_genomic(all_markers, n_scenarios=N_SCEN, seed=1)
truth = full.attrs["truth"]
phenotyped, new_genos = all_markers.index[:N_GENO], all_markers.index[N_GENO:]
sim = full[full["genotype"].isin(phenotyped)].reset_index(drop=True)
print(
    f"simulated in {time.perf_counter() - t0:.1f} s: {sim['id'].nunique()} plants "
    f"({N_GENO} genotypes x {N_SCEN} scenarios), {len(sim)} observations, {N_MARKERS} markers; "
    f"{len(new_genos)} genotypes never phenotyped"
)
sim.head()

# %%
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GB (Linux: KiB)
t0 = time.perf_counter()
big = pymixnn.fit(
    sim,
    "logistic",
    id="id",
    x="t",
    y="y",
    covariates={"A": ["scenario"]},
    genotype="genotype",
    genomic=pymixnn.Genomic(all_markers.loc[phenotyped], params=["A", "B", "C"], prior="horseshoe"),
    seed=1,
    progress=False,
    max_steps=STEPS,
)
fit_seconds = time.perf_counter() - t0
top_big = big.top_markers(20)
var_big = big.variance_explained
new_pred = big.genotype_parameters(all_markers.loc[new_genos], scenario="WW")
total_seconds = time.perf_counter() - t0
peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
KEY.update(
    scale_n_genotypes=N_GENO,
    scale_n_markers=N_MARKERS,
    scale_fit_seconds=fit_seconds,
    scale_total_seconds=total_seconds,
    scale_peak_rss_gb=peak_gb,
)
print(
    f"fit {fit_seconds:.1f} s (gear {big.run.gear}: {int(big.info['steps'])} SVI steps, "
    f"{big.info['refine_rounds']} refinement rounds), with outputs "
    f"{total_seconds:.1f} s; peak resident memory of this process {peak_gb:.2f} GB "
    f"({rss_before:.2f} GB before this fit)"
)
big.params.round(4)

# %% [markdown]
# `scenario` enters as a categorical covariate on log A: the fixed effect `A` is the typical
# asymptote in the reference level (the first in alphabetical order) and
# `beta_scenario[level](A)` the shift of log A in each other level. Back on the natural scale,
# against the simulation (A = 100 e^{0, -0.2, -0.5} in WW, WD, SD; B = 8 and C = 2.5 days;
# plant-level variance 0.01 on each log parameter):

# %%
est_big = big.params["estimate"]
check = pd.DataFrame(
    {
        "true": [100 * np.exp(e) for e in truth["scenario_effect"]] + [8.0, 2.5, 0.01, 0.01, 0.01],
        "estimate": [
            est_big["A"] * np.exp(est_big.get(f"beta_scenario[{lv}](A)", 0.0)) for lv in truth["levels"]
        ]
        + [est_big[k] for k in ["B", "C", "omega2.A", "omega2.B", "omega2.C"]],
    },
    index=[f"A in {lv}" for lv in truth["levels"]] + ["B", "C", "omega2.A", "omega2.B", "omega2.C"],
)
check.round(4)

# %% [markdown]
# The population parameters are recovered within a few percent. The time and memory printed
# above cover the whole fit (the genomic updates between the Newton gear's refinements, SEs,
# log-likelihood) and the outputs; the memory is the peak of the whole Python process (torch and
# the grav2 fits included; the scale fit raised it from the value "before"). The user guide's
# benchmark measured 21.7 s and 0.8 GB for this fit in a fresh process on an idle 2-core machine; the time printed
# here depends on the load of the machine that rendered this page.
#
# **Causal markers recovered.** Of the 10 causal markers of each parameter, how many are in the
# horseshoe's top 20 (out of 60,000; by chance one would expect 0.003)?

# %%
hits = {
    p: sorted(set(top_big[top_big["parameter"] == p]["marker"]) & set(truth["causal"][p]))
    for p in ["A", "B", "C"]
}
recovery = pd.DataFrame(
    {
        "true marker variance": [truth["var_markers"][p] for p in "ABC"],
        "causal in top 20": [len(hits[p]) for p in "ABC"],
        "estimated marker variance": [var_big.loc[p, "markers"] for p in "ABC"],
        "estimated genotype residual": [var_big.loc[p, "genotype_residual"] for p in "ABC"],
        "true genotype residual": [truth["var_residual"][p] for p in "ABC"],
        "share_markers_of_genetic": [var_big.loc[p, "share_markers_of_genetic"] for p in "ABC"],
    },
    index=pd.Index(list("ABC"), name="parameter"),
)
for p in "ABC":
    KEY[f"scale_causal_in_top20_{p}"] = len(hits[p])
    KEY[f"scale_var_markers_{p}"] = float(var_big.loc[p, "markers"])
recovery.round(4)

# %%
eff = big.marker_effects
fig, axes = plt.subplots(3, 1, figsize=(10, 6.6), sharex=True)
for ax, p in zip(axes, ["A", "B", "C"]):
    e = eff[eff["parameter"] == p].reset_index(drop=True)
    is_causal = e["marker"].isin(truth["causal"][p]).to_numpy()
    ax.scatter(
        np.flatnonzero(~is_causal),
        e["inclusion"][~is_causal],
        s=3,
        c="0.6",
        rasterized=True,
        label="null marker",
    )
    ax.scatter(
        np.flatnonzero(is_causal),
        e["inclusion"][is_causal],
        s=25,
        c="tab:red",
        label="simulated causal marker",
    )
    ax.set_ylabel(f"inclusion, {p}")
axes[-1].set_xlabel("marker (index in the matrix)")
fig.suptitle(f"Horseshoe inclusion probabilities, {N_MARKERS:,} markers")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
fig.tight_layout(rect=(0, 0.04, 1, 1))
fig.savefig(FIG / "scale_inclusion.png", dpi=100)
plt.close(fig)
display(Image(filename=str(FIG / "scale_inclusion.png")))

# %% [markdown]
# **How to read it.** The same display as `res.plot_manhattan` (which, without a map, plots the
# markers in matrix order), with the simulated causal markers in red. Look at the vertical axes:
# in full mode (60,000 markers) every inclusion probability lies between about 0.004 and 0.005.
# The causal markers of A and B stand above the cloud of null markers, so the *ranking* works,
# but no marker is "included" in absolute terms. (In quick mode, 2,000 markers, the causal
# markers sit near 1 and the null ones near 0.1, the picture one expects from a horseshoe.)
#
# **Genotypes never phenotyped.** The predicted genetic values of the held-back genotypes
# (`genotype_parameters`, well-watered scenario) against their simulated marker values:

# %%
rows = []
for p in ["A", "B", "C"]:
    g = new_pred[new_pred["parameter"] == p].set_index("genotype")
    true_value = truth["genetic"][p].loc[g.index]
    causal_eff = eff[(eff["parameter"] == p) & eff["marker"].isin(truth["causal"][p])]
    rows.append(
        {
            "parameter": p,
            "corr(predicted, true)": np.corrcoef(g["value"], true_value)[0, 1],
            "sd of predictions": g["value"].std(),
            "sd of true values": true_value.std(),
            "mean predictive sd": g["sd"].mean(),
            "mean |effect_std| of causal markers": causal_eff["effect_std"].abs().mean(),
            "true |effect_std|": np.abs(truth["effects"][p]).mean(),
        }
    )
    KEY[f"scale_corr_new_{p}"] = float(rows[-1]["corr(predicted, true)"])
pd.DataFrame(rows).set_index("parameter").round(4)

# %% [markdown]
# **What happened at 60,000 markers** (full mode). The ranking works: 9 of the 10 causal markers
# of A and 8 of B are in the top 20 of 60,000 (by chance one would expect 0.003), 5 of C (whose
# causal markers each explain a variance of only 0.001). But the posterior mean effects of the
# causal markers are about 0.0001-0.0002 per marker sd against the true 0.03-0.06: the fitted
# horseshoe stayed in its globally shrunk state, where every marker gets about the same small
# prior variance. It then behaves like ridge regression (GBLUP) on 60,000 markers; a ridge fit of
# the same data, run while writing this vignette, gave the same variance split and the same
# accuracy for new genotypes to two digits. The consequences, in the tables above:
#
# * the variance attributed to the markers (0.013 for log A) is a third of the truth (0.04), and
#   the genotype residual takes up most of the rest (0.022, truth 0.01);
# * the genotypes never phenotyped get predictions close to 0 (their sd is a few percent of the
#   sd of the true values) that hardly correlate with the truth (about 0.04 for A). This is what
#   GBLUP can do here: with 250 genotypes and 60,000 unlinked markers its expected accuracy,
#   $\sqrt{N h^2/(N h^2 + M)}$ (Daetwyler et al. 2008), is about 0.05.
#
# With fewer markers per genotype the same code separates the causal markers. In this
# vignette's quick mode (150 genotypes, 2,000 markers) the causal markers' inclusion
# probabilities are near 1, all 10 causal markers of A and B are in the top 20, the marker
# variance is found (slightly over-estimated, 0.06 for A) and the correlation for new genotypes
# is 0.98 for A; with 250 genotypes and 10,000 markers (measured separately) it was 10 of 10 and
# 0.97. So at 60,000 markers and 250 genotypes read the top-marker ranking, not the effect
# sizes or inclusion probabilities at face value, and check prediction accuracy by
# cross-validation before predicting new genotypes.
#
# ## Checks
#
# These assertions run in both modes (the quick-mode test runs this file). Each tolerance is set
# from values measured in both modes, with margin.

# %%
# every fit finished with finite, positive SEs
for r in [res, base, *one_step.values(), big]:
    assert np.isfinite(r.params["se"]).all() and (r.params["se"] > 0).all(), r.params

# --- grav2 ---
# thinning: the 2-minute residuals are almost a smooth curve (measured 0.99 in both modes);
# the thinned ones less autocorrelated (0.93 at 8 min, 0.51 at 32 min)
assert ac_full > 0.95 and ac_thin < ac_full, (ac_full, ac_thin)
# the markers explain a real share of both parameters (measured 0.22 / 0.29 full, 0.36 / 0.46
# quick; the benchmark's fit on all 162 RILs gave 0.33 / 0.22): wide bounds, the share moves
# with the data's thinning
assert 0.1 < KEY["grav2_share_markers_Asym"] < 0.6, var
assert 0.1 < KEY["grav2_share_markers_lrc"] < 0.7, var
# CH.284C (chr 2) is among the top 8 markers of both parameters (measured rank 2 / 1 full,
# 5 / 1 quick)
assert rank_CH284C["Asym"] <= 8 and rank_CH284C["lrc"] <= 8, rank_CH284C
# held-out RILs from markers alone beat the population curve: one-step by more than 0.2
# degrees (measured gaps 0.43 horseshoe and 0.69 ridge full, 0.65 quick), two-step by more than
# 0.5 (measured 1.37 full, 1.51 quick)
pop = table.loc["population", "rmse_deg"]
for p in PRIORS:
    assert table.loc[f"one-step {p}", "rmse_deg"] < pop - 0.2, table
assert table.loc["two-step", "rmse_deg"] < pop - 0.5, table
# honest ordering on this split: two-step is best; one-step horseshoe within 20% of it
# (measured ratio 1.11 in both modes)
assert table.loc["one-step horseshoe", "rmse_deg"] < 1.2 * table.loc["two-step", "rmse_deg"], table
# the 90% band for a new plant covers most held-out points (measured 0.98 / 0.99 full, 0.94
# quick; the benchmark's 5-fold 0.97 / 0.98)
for p in PRIORS:
    assert 0.85 < table.loc[f"one-step {p}", "coverage_90"] <= 1.0, table

# --- scale simulation ---
# population parameters: A per scenario within 3% (measured at most 1.0%), B and C within 5%
# (measured at most 2.1%); omega2 within 25% (full; measured at most 9%) or 35% (quick, 150
# genotypes x 2 scenarios; measured at most 26%, about 2 SEs)
rel = (check["estimate"] / check["true"] - 1).abs()
assert (rel[[i for i in rel.index if i.startswith("A in")]] < 0.03).all(), check
assert rel["B"] < 0.05 and rel["C"] < 0.05, check
assert (rel[["omega2.A", "omega2.B", "omega2.C"]] < (0.35 if QUICK else 0.25)).all(), check
# causal markers in the top 20 (measured A 9, B 8 full; 10, 10 quick): margin of 2
assert len(hits["A"]) >= (8 if QUICK else 7) and len(hits["B"]) >= (8 if QUICK else 6), hits
# genotypes never phenotyped: accurate where the horseshoe separates the causal markers (quick,
# 2,000 markers: measured 0.98 for A); at 60,000 markers it does not (measured 0.04, see above),
# which is reported, not asserted
if QUICK:
    assert KEY["scale_corr_new_A"] > 0.9, KEY["scale_corr_new_A"]
print("all checks passed")

# %%
KEY["total_seconds"] = time.perf_counter() - T_START
Path("key_numbers.json").write_text(json.dumps(KEY, indent=1))
pd.Series(KEY, name="value").to_frame()
