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
# # Theophylline: pymixnn and saemix side by side
#
# This vignette fits the classic pharmacokinetic example of NLME software, the theophylline data
# (Boeckmann, Sheiner and Beal; saemix's `theo.saemix`, R's `Theoph`), with pymixnn, and puts the
# result next to saemix 3.4 (SAEM) on the same data and model: estimates, standard errors, the
# importance-sampling log-likelihood and the individual fits.
#
# **Data.** 12 subjects received one oral dose of theophylline (`Dose`, mg) and had 10 to 11
# plasma concentrations (`Concentration`, mg/L) measured over 24 hours (`Time`, h); `Weight` (kg)
# is a subject covariate. One row per observation (long format), as in saemix.
#
# **Model.** A one-compartment model with first-order absorption and elimination,
#
# $$ f(t; D, k_a, V, CL) = \frac{D\,k_a}{V k_a - CL}\left(e^{-CL\,t/V} - e^{-k_a t}\right), $$
#
# with log-normal individual parameters, Weight on log V, and a constant (additive) residual error:
#
# $$ \log k_{a,i} = \log k_a + \eta_{1i},\quad \log V_i = \log V + \beta\,W_i + \eta_{2i},\quad
#    \log CL_i = \log CL + \eta_{3i},\quad \eta_i \sim N(0, \Omega),\ \Omega \text{ diagonal},\quad
#    y_{ij} = f(t_{ij}; \psi_i) + a\,\varepsilon_{ij}. $$
#
# This is exactly saemix's documented example (`saemixModel(model1cpt, psi0 = ..., transform.par
# = c(1, 1, 1), covariate.model = matrix(c(0, 1, 0), 1), ...)`). In pymixnn it is the named model
# `"onecpt_oral"`, whose x columns are (dose, time).

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display

import pymixnn

QUICK = os.environ.get("PYMIXNN_QUICK") == "1"  # quick mode: same fit (it is small), same checks
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
ROOT = Path(pymixnn.__file__).resolve().parents[1]  # the repository: committed reference numbers
pd.set_option("display.width", 120)

theo = pymixnn.datasets.load("theo")
theo.head()

# %% [markdown]
# The data, one line per subject (a "spaghetti plot"):

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for _, g in theo.groupby("Id"):
    ax.plot(g["Time"], g["Concentration"], marker="o", ms=3, lw=1)
ax.set_xlabel("Time (h)")
ax.set_ylabel("Concentration (mg/L)")
fig.tight_layout()
fig.savefig(FIG / "theo_data.png", dpi=100)
plt.close(fig)
display(Image(filename=str(FIG / "theo_data.png")))

# %% [markdown]
# ## The fit
#
# `pymixnn.fit` takes the data frame, the model, the column roles (`id`, `x`, `y`) and the
# covariate model (`{"V": ["Weight"]}` is saemix's `covariate.model`). Estimation starts from a
# few Laplace-EM iterations, then maximizes the importance-sampling likelihood (the same quantity
# as saemix's `ll.is`) by Newton steps, re-centring each subject's posterior between rounds (the
# "newton" gear, which `gear="auto"` chooses for Gaussian random effects); standard errors come
# from the observed Fisher information of that likelihood. `seed=` makes the run reproducible.

# %%
fit = pymixnn.fit(
    theo,
    "onecpt_oral",
    id="Id",
    x=["Dose", "Time"],
    y="Concentration",
    covariates={"V": ["Weight"]},
    seed=632545,
    progress=False,
)
print(fit.summary())

# %% [markdown]
# The summary reads like saemix's: fixed effects on the natural scale (`ka`, `V`, `CL` are the
# typical values at Weight = 0 on the log scale, i.e. `V` multiplied by `exp(beta * Weight)`),
# the covariate effect `beta_Weight(V)` on log V, the variances `omega2` of the random effects
# (log scale), and the residual standard deviation `a`. RSE is the relative standard error
# (100 SE / estimate). The 95% intervals are Wald intervals on each parameter's transformed scale
# (log for positive parameters) mapped back, so they stay positive.
#
# ## saemix on the same data and model
#
# saemix is a CRAN-only R package. pymixnn's bridge `pymixnn.compare.saemix` runs it on the same
# data and model through rpy2 when it is installed; otherwise this vignette reads the numbers that
# saemix 3.4 gave (seed 632545), committed with the R script that produced them
# (`tests/reference/theo_saemix.R`).

# %%
from pymixnn import compare

kw = dict(id="Id", x=["Dose", "Time"], y="Concentration", covariates={"V": ["Weight"]})
if compare.r_available() and compare.r_package_available("saemix"):
    saemix_fit = compare.saemix(theo, "onecpt_oral", **kw)
    saemix = {
        "source": "saemix, run live",
        "estimate": saemix_fit.params["estimate"],
        "se": saemix_fit.params["se"],
        "ll_is": saemix_fit.loglik,
        "aic": saemix_fit.aic,
        "bic": saemix_fit.bic,
        "map": saemix_fit.individual_params("map"),
    }
else:
    ref = json.loads((ROOT / "tests" / "reference" / "theo_saemix.json").read_text())
    est = {k: v["estimate"] for k, v in ref["fixed_effects"].items()}
    se = {k: v["se"] for k, v in ref["fixed_effects"].items()}
    est.update({f"omega2.{k}": v for k, v in ref["omega2"].items()})
    se.update({f"omega2.{k}": v for k, v in ref["omega2_se"].items()})
    est.update(ref["sigma"])
    se.update(ref["sigma_se"])
    saemix = {
        "source": "saemix 3.4, committed reference (tests/reference/theo_saemix.json)",
        "estimate": pd.Series(est),
        "se": pd.Series(se),
        "ll_is": ref["ll_is"],
        "aic": ref["aic_is"],
        "bic": ref["bic_is"],
        "map": pd.DataFrame(
            {p: ref["map_psi"][p] for p in ("ka", "V", "CL")}, index=[float(i) for i in ref["map_psi"]["id"]]
        ),
    }
print(saemix["source"])

# %%
names = list(fit.params.index)
table = pd.DataFrame(
    {
        "pymixnn": fit.params["estimate"],
        "SE": fit.params["se"],
        "saemix": saemix["estimate"].reindex(names),
        "SE ": saemix["se"].reindex(names),
    }
)
table["(pymixnn - saemix) / SE"] = (table["pymixnn"] - table["saemix"]) / table["SE "]
table.round(4)

# %% [markdown]
# Every estimate agrees with saemix's to a small fraction of its standard error, and the
# standard errors agree too: both are the observed information of the same likelihood (saemix
# linearises the model for its SEs; pymixnn differentiates the importance-sampling likelihood).
#
# The log-likelihoods: saemix's `ll.is` and pymixnn's are estimates of the same integral, each
# with a Monte Carlo error (pymixnn reports its own); AIC and BIC use 8 parameters, and BIC uses
# log(number of subjects), as in saemix.

# %%
ll = pd.DataFrame(
    {
        "log-likelihood": [fit.loglik, saemix["ll_is"]],
        "AIC": [fit.aic, saemix["aic"]],
        "BIC": [fit.bic, saemix["bic"]],
    },
    index=[f"pymixnn (ll.is, MC SE {fit.loglik_se:.3f})", "saemix (ll.is)"],
)
ll.round(3)

# %% [markdown]
# ## Individual estimates and fits
#
# The individual parameters are the conditional modes (MAP, saemix's `map.psi`): each subject's
# most probable parameters given its data and the population law. pymixnn's and saemix's fall on
# the identity line:

# %%
mine = fit.individual_params("map")
theirs = saemix["map"].loc[mine.index]
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, p in zip(axes, ["ka", "V", "CL"]):
    ax.scatter(theirs[p], mine[p], s=18)
    lim = [min(theirs[p].min(), mine[p].min()), max(theirs[p].max(), mine[p].max())]
    ax.plot(lim, lim, color="0.5", lw=1)
    ax.set_xlabel(f"saemix MAP {p}")
    ax.set_ylabel(f"pymixnn MAP {p}")
fig.tight_layout()
fig.savefig(FIG / "theo_map.png", dpi=100)
plt.close(fig)
display(Image(filename=str(FIG / "theo_map.png")))

# %% [markdown]
# Observed concentrations (points), the individual fit (line: the subject's MAP parameters) and the
# population fit (dashed: random effects at zero, the subject's weight kept), one panel per
# subject. Subject 1 lies above the population curve, subject 6 below: the random effects are
# what lets each curve follow its own data.

# %%
fit.plot_individuals(FIG / "theo_individuals.png")
display(Image(filename=str(FIG / "theo_individuals.png")))

# %% [markdown]
# Residual diagnostics: individual weighted residuals (IWRES = (y - individual prediction) / a)
# should scatter around zero with no trend in time or in the prediction.

# %%
r = fit.residuals()
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
axes[0].scatter(r["Time"], r["iwres"], s=10)
axes[0].set_xlabel("Time (h)")
axes[1].scatter(r["ipred"], r["iwres"], s=10)
axes[1].set_xlabel("individual prediction (mg/L)")
for ax in axes:
    ax.axhline(0, color="0.5", lw=1)
    ax.set_ylabel("IWRES")
fig.tight_layout()
fig.savefig(FIG / "theo_residuals.png", dpi=100)
plt.close(fig)
display(Image(filename=str(FIG / "theo_residuals.png")))

# %% [markdown]
# ## Did it converge, and how do we know?
#
# Every fit carries a convergence and sanity report, `fit.diagnostics`: the log-likelihood a
# Newton step would still gain at the estimates (the Newton decrement), the largest gradient
# component in SE units, the smallest eigenvalue of the observed Fisher information in correlation
# form (near 0 when the data do not identify a parameter), random-effect variances collapsed to 0,
# parameters at absurd scales, a log-likelihood the data cannot produce, and the start values
# tried. `fit.converged` is True only when every check passes; a failed check is also a Python
# warning (`pymixnn.ConvergenceWarning`), a line of `summary()` and of the CLI's JSON.

# %%
print(fit.diagnostics[["value", "limit", "ok"]].to_string())
print("converged:", fit.converged)

# %% [markdown]
# Predictions, fitted values and residuals are indexed by the data's own row labels, in the
# user's row order, so they can be assigned straight back to the data frame, even when its rows
# are not grouped by subject (here: shuffled).

# %%
shuffled = theo.sample(frac=1.0, random_state=1)
shuffled["ipred"] = fit.predict(shuffled, level="individual")
shuffled["ipred_fitted"] = fit.fittedvalues  # aligned on the row labels
mae = float((shuffled["Concentration"] - shuffled["ipred"]).abs().mean())
print(f"mean |y - IPRED| on the shuffled rows: {mae:.3f} mg/L")

# %% [markdown]
# ## Two gears, one maximum
#
# The same fit with `gear="svi"` runs minibatch stochastic variational inference first (the
# engine of mixtures, flows, genomic blocks and encoders) and the same Newton refinement after
# it. Both end at the maximum of the same importance-sampling likelihood (common draws), so the
# estimates agree to a small fraction of an SE; the Newton gear gets there without SVI's
# hundreds of minibatch steps. `fit.run.gear` and `fit.run.seconds` say what ran and how long.

# %%
svi_fit = pymixnn.fit(theo, "onecpt_oral", **kw, seed=632545, progress=False, gear="svi")
gears = pd.DataFrame(
    {
        "newton": fit.params["estimate"],
        "svi": svi_fit.params["estimate"],
        "difference / SE": (fit.params["estimate"] - svi_fit.params["estimate"]) / fit.params["se"],
    }
)
print(gears.round(4).to_string())
for f in (fit, svi_fit):
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in f.run.seconds.items() if k != "total")
    print(f"gear {f.run.gear}: {f.run.steps} SVI steps, {f.run.refine_rounds} refinement rounds; {stages}")

# %% [markdown]
# ## Checks
#
# The numbers this vignette states, asserted (the quick mode of `make test` runs them too):

# %%
z = table["(pymixnn - saemix) / SE"].abs()
# fixed effects and variances within half of saemix's SE: two estimates of the same maximum,
# each with Monte Carlo error (measured: 0.19 SE at most)
assert z.max() < 0.5, z
# SEs within 15% of saemix's for the fixed effects (saemix's are by linearisation)
fixed = ["ka", "V", "beta_Weight(V)", "CL"]
assert ((table.loc[fixed, "SE"] / table.loc[fixed, "SE "] - 1).abs() < 0.15).all()
# ll.is within 0.5 of saemix's -171.32 (each has an MC SE of about 0.03-0.1)
assert abs(fit.loglik - saemix["ll_is"]) < 0.5
# individual MAP estimates within 10% of saemix's (every subject and parameter): they follow the
# population estimates, which differ by a fraction of an SE; subject 9's ka (about 6, on few
# early points) is the least determined (the same bound as tests/test_fit.py)
assert ((mine / theirs - 1).abs().to_numpy().max()) < 0.10
# the fit converged: a Newton step would gain less than 0.05 log-likelihood units (measured
# 1e-3: importance-sampling noise), the information is well conditioned
assert fit.converged and fit.diagnostics.loc["newton_decrement", "value"] < 0.05
# predictions on shuffled rows align with the rows: IPRED by row label equals fittedvalues
assert np.allclose(shuffled["ipred"], shuffled["ipred_fitted"], rtol=1e-12)
assert mae < 1.0  # the residual sd a is 0.73 mg/L

# the two gears end at the same maximum: both stop within 0.01 SE of it (the Newton decrement),
# so 0.05 SE leaves room for both; the Newton gear ran no SVI step
assert gears["difference / SE"].abs().max() < 0.05, gears
assert fit.run.gear == "newton" and fit.run.steps == 0 and svi_fit.run.gear == "svi" and svi_fit.run.steps > 0

KEY = {
    "ka": float(fit.fixed_effects["ka"]),
    "V": float(fit.fixed_effects["V"]),
    "CL": float(fit.fixed_effects["CL"]),
    "beta_Weight(V)": float(fit.fixed_effects["beta_Weight(V)"]),
    "a": float(fit.sigma["a"]),
    "loglik": float(fit.loglik),
    "aic": float(fit.aic),
    "max_abs_z_vs_saemix": float(z.max()),
    "loglik_minus_saemix": float(fit.loglik - saemix["ll_is"]),
    "max_rel_map_vs_saemix": float((mine / theirs - 1).abs().to_numpy().max()),
    "saemix_source": saemix["source"],
    "seconds": float(fit.info["seconds"]),
    "converged": bool(fit.converged),
    "newton_decrement": float(fit.diagnostics.loc["newton_decrement", "value"]),
    "mae_shuffled": mae,
}
Path("key_numbers.json").write_text(json.dumps(KEY, indent=1))
KEY
