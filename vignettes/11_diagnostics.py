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
# # Diagnostics: NPDE, CWRES, goodness of fit, pcVPC, covariates, convergence
#
# How good is a fit? saemix, Monolix, nlmixr2 and Pumas users look at the same few things, and a
# pymixnn fit gives each of them:
#
# * **NPDE** (normalised prediction distribution errors; Brendel et al. 2006, Comets et al. 2008):
#   each observation's rank among data sets simulated from the fitted model, after decorrelating
#   each individual's observations, mapped to N(0, 1). `res.npde()` computes them exactly as the
#   R package npde does (checked to 1e-14 on the same simulations, `tests/test_npde.py`), with
#   npde's tests of mean 0, variance 1 and normality.
# * **CWRES** (conditional weighted residuals; Hooker et al. 2007): the observations decorrelated
#   by the model linearized around each individual's conditional modes (NONMEM's FOCE).
# * **Goodness-of-fit panels**: observations against population (PRED) and individual (IPRED)
#   predictions, IWRES against time and IPRED (saemix's four), NPDE against time and PRED, QQ
#   plot and histogram.
# * **pcVPC** (prediction-corrected VPC; Bergstrand et al. 2011) for data with several doses:
#   each observed and simulated value is scaled by the bin's median population prediction over
#   its own, so that doses do not widen the bins.
# * **Random effects against covariates**, to build the covariate model.
# * **The convergence trace** of each population parameter along the SVI steps and refinement.

# %%
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import torch
from IPython.display import Image, display

import pymixnn
from pymixnn.simulate import simulate_dose_groups

QUICK = os.environ.get("PYMIXNN_QUICK") == "1"  # quick mode: fewer simulations and individuals
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
KEY = {"quick": str(QUICK)}
N_SIM = 300 if QUICK else 1000

# %% [markdown]
# ## 1. Theophylline: NPDE, CWRES and the goodness-of-fit panels

# %%
theo = pymixnn.datasets.load("theo")
fit = pymixnn.fit(
    theo,
    pymixnn.Model.named("onecpt_oral"),
    id="Id",
    x=["Dose", "Time"],
    y="Concentration",
    covariates={"V": ["Weight"]},
    seed=0,
    progress=False,
)
npde = fit.npde(N_SIM, seed=1)
tests = pd.DataFrame.from_dict(npde.attrs["tests"], orient="index")
tests

# %% [markdown]
# The mean and variance of the NPDE are those of N(0, 1) (npde's adjusted p-values near 1); the
# Shapiro-Wilk test rejects normality: a few large NPDE in the absorption phase (the first two
# hours, see the panels below), where individual curves rise faster than the model's spread of ka
# allows.

# %%
fit.plot_gof(FIG / "gof.png", n_sim=N_SIM, seed=1)
display(Image(str(FIG / "gof.png")))

# %%
cw = fit.cwres()
KEY.update(
    npde_mean=float(npde["npde"].mean()),
    npde_var=float(npde["npde"].var()),
    npde_p_mean=float(tests.loc["mean", "p_value"]),
    npde_p_variance=float(tests.loc["variance", "p_value"]),
    cwres_mean=float(cw["cwres"].mean()),
    cwres_var=float(cw["cwres"].var()),
)
cw.head()

# %% [markdown]
# ## 2. The convergence trace and random effects against covariates
#
# Each population parameter every 50 SVI steps (the iterate, not the Polyak average the stage
# returns), then each refinement round (shaded), against the estimate (dashed) and its 95%
# interval (dotted).

# %%
fit.plot_trace(FIG / "trace.png")
display(Image(str(FIG / "trace.png")))

# %%
print(fit.eta_covariates(data=theo))
fit.plot_eta_covariates(FIG / "eta_covariates.png", data=theo)
display(Image(str(FIG / "eta_covariates.png")))

# %% [markdown]
# ## 3. A prediction-corrected VPC on three dose groups
#
# Simulated one-compartment data, linear in the dose (10, 30, 300 mg). The right model scales
# the concentration with the dose; a wrong dose-response lets exposure rise with the square root
# of the dose. Its random effects on V and CL widen to absorb the misfit, and the fit converges
# without complaint; the pcVPC shows it.

# %%
df = simulate_dose_groups(n_per_group=30 if QUICK else 60, seed=0)
correct = pymixnn.Model.named("onecpt_oral", error="proportional")


def sqrt_dose_oral(psi, x):
    ka, v, cl = psi[..., 0], psi[..., 1], psi[..., 2]
    dose, t = torch.sqrt(30.0 * x[..., 0]), x[..., 1]
    k = cl / v
    return dose * ka / (v * (ka - k)) * (torch.exp(-k * t) - torch.exp(-ka * t))


wrong = correct.replace(function=sqrt_dose_oral, self_start=None, init={"ka": 1.5, "V": 20.0, "CL": 2.0})
outside = {}
for name, model in (("correct", correct), ("wrong", wrong)):
    res = pymixnn.fit(df, model, id="id", x=["Dose", "Time"], y="y", seed=0, progress=False)
    table = res.vpc(prediction_corrected=True, n_sim=N_SIM // 2, seed=1)
    outside[name] = int(table["outside"].sum())
    res.plot_vpc(FIG / f"pcvpc_{name}.png", prediction_corrected=True, n_sim=N_SIM // 2, seed=1)
    display(Image(str(FIG / f"pcvpc_{name}.png")))
KEY.update(pcvpc_outside_correct=outside["correct"], pcvpc_outside_wrong=outside["wrong"])
outside

# %% [markdown]
# ## Checks

# %%
# NPDE: mean 0 and variance 1 not rejected on theophylline (npde's adjusted p-values)
assert KEY["npde_p_mean"] > 0.05 and KEY["npde_p_variance"] > 0.05, KEY
# CWRES: standardised (n = 120: 3-sd bounds on the mean and variance)
assert abs(KEY["cwres_mean"]) < 0.27 and 0.6 < KEY["cwres_var"] < 1.4, KEY
# pcVPC: about 2.4 of 24 statistics outside by chance under the right model; many more under
# the wrong dose-response (benchmarks/pcvpc.py: 0-2 against 14 in 5 replicates at 60 per group)
assert KEY["pcvpc_outside_correct"] <= 5 and KEY["pcvpc_outside_wrong"] >= 8, KEY
Path("key_numbers.json").write_text(json.dumps(KEY, indent=2))
print(json.dumps(KEY, indent=2))
