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
# # Amortized inference: one encoder for every individual's posterior
#
# A standard pymixnn fit keeps a Gaussian posterior q_i(eta_i) for every individual and moves it
# by Newton-type steps whenever the individual's minibatch comes round. With
# `local="amortized"` one network, a permutation-invariant **set encoder**, maps an individual's
# records (and covariates) to its posterior instead, trained jointly with the population
# parameters by minibatch SVI. What this buys:
#
# 1. the variational state does not grow with the number of individuals;
# 2. an individual not in the fit gets its posterior from its own records in one forward pass,
#    without refitting (`res.individual_params(newdata)`);
# 3. the **amortization gap** says how far the encoder is from the best per-individual posterior.
#
# This vignette fits simulated logistic growth curves both ways, compares the estimates, looks at
# the amortization gap, predicts individuals that were not in the fit, and reads dosing records.

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
from pymixnn.results.amortized import encode_individuals, posterior_modes
from pymixnn.simulate import simulate_logistic

QUICK = os.environ.get("PYMIXNN_QUICK") == "1"  # quick mode: smaller settings, same checks
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
KEY = {"quick": str(QUICK)}
N = 300 if QUICK else 10_000  # individuals in the fit
MAX_STEPS = 1000 if QUICK else 4000

# %% [markdown]
# ## The data
#
# Logistic growth `y = A / (1 + exp(-(t - B) / C)) + e` with log-normal A, B, C (typical values
# 100, 5, 1.5; variances 0.04, 0.0225, 0.04 on the log scale) and residual SD 2, ten
# observations per individual between t = 0 and 10.

# %%
df = simulate_logistic(n_individuals=N, n_obs=10, seed=3)
new = simulate_logistic(n_individuals=500, n_obs=10, seed=4)  # 500 individuals not in the fit
new["id"] += 10**6
print(df.head())

# %% [markdown]
# ## Two fits of the same data
#
# `refine_steps=2` adds two Newton steps per individual from the encoder's output
# (semi-amortized). The refinement, SEs and log-likelihood of both fits are the same
# maximum-likelihood stages, so the estimates should agree to within a small fraction of an SE.

# %%
t0 = time.perf_counter()
per_individual = pymixnn.fit(
    df, "logistic", id="id", x="t", y="y", seed=0, progress=False, max_steps=MAX_STEPS
)
t_ind = time.perf_counter() - t0
t0 = time.perf_counter()
amortized = pymixnn.fit(
    df, "logistic", id="id", x="t", y="y", seed=0, progress=False, max_steps=MAX_STEPS,
    local="amortized", refine_steps=2,
)  # fmt: skip
t_amo = time.perf_counter() - t0
table = pd.DataFrame(
    {
        "individual": per_individual.params["estimate"],
        "amortized": amortized.params["estimate"],
        "se": per_individual.params["se"],
    }
)
table["diff_in_se"] = (table["amortized"] - table["individual"]) / table["se"]
print(table.round(5))
print(
    f"wall time: per-individual {t_ind:.1f} s, amortized {t_amo:.1f} s; ll {per_individual.loglik:.3f} vs {amortized.loglik:.3f}"
)

# %% [markdown]
# ## The amortization gap
#
# For each individual, the ELBO of the encoder's posterior against that of the best Gaussian
# posterior found for it alone (at the same parameters, over the same Monte Carlo draws). A gap
# of g nats corresponds, for Gaussian posteriors of the right shape, to a location error of
# about sqrt(2 g) posterior SDs.

# %%
gaps = amortized.amortization
print(gaps[["gap", "gap_refined"]].describe().round(4))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(gaps["gap"].clip(upper=6), bins=60, color="tab:blue", alpha=0.8, label="encoder")
ax.axvline(gaps["gap"].mean(), color="k", ls="--", label=f"mean {gaps['gap'].mean():.2f}")
ax.set_xlabel("amortization gap (nats per individual; clipped at 6)")
ax.set_ylabel("individuals")
ax.legend()
fig.tight_layout()
fig.savefig(FIG / "amortization_gap.png", dpi=110)
plt.close(fig)
display(Image(str(FIG / "amortization_gap.png")))

# %% [markdown]
# ## Individuals not in the fit
#
# The encoder reads the new individuals' records; two Newton steps at the fitted parameters
# follow. Each one's own posterior mode (per-individual Newton path to convergence) is the
# reference, and the distance is measured in posterior SDs.


# %%
_, mode, sd = posterior_modes(amortized, new)  # each one's own posterior mode and SD
t0 = time.perf_counter()
_, eta_enc, _ = encode_individuals(amortized, new, steps=0)
us_encoder = 1e6 * (time.perf_counter() - t0) / new.id.nunique()
psi_new = amortized.individual_params(new)  # the encoder, then the fit's 2 Newton steps
eta_semi = np.log(psi_new.to_numpy()) - amortized.estimation.mu
z_enc, z_semi = np.abs(eta_enc - mode) / sd, np.abs(eta_semi - mode) / sd
print(f"encoder alone: median |z| {np.median(z_enc):.3f}; {us_encoder:.0f} us per individual")
print(
    f"with 2 Newton steps: {100 * np.mean(np.all(z_semi < 0.1, axis=1)):.1f}% within 0.1 SD in every random effect"
)

ipred = amortized.predict(new, level="individual")
pred = amortized.predict(new, level="population")
rmse_ipred = float(np.sqrt(np.mean((ipred - new.y) ** 2)))
rmse_pred = float(np.sqrt(np.mean((pred - new.y) ** 2)))
print(f"new individuals: RMSE of individual predictions {rmse_ipred:.2f}, of population ones {rmse_pred:.2f}")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
for j, name in enumerate(amortized.model.random):
    ax = axes[j]
    ax.scatter(mode[:, j], eta_enc[:, j], s=6, alpha=0.5, label="encoder")
    ax.scatter(mode[:, j], eta_semi[:, j], s=6, alpha=0.5, label="+ 2 Newton steps")
    lim = [mode[:, j].min(), mode[:, j].max()]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set_xlabel(f"posterior mode of eta[{name}]")
    ax.set_ylabel("estimate")
axes[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG / "new_individuals.png", dpi=110)
plt.close(fig)
display(Image(str(FIG / "new_individuals.png")))

# %% [markdown]
# ## A flexible random-effects law with the encoder
#
# The encoder works with mixtures and normalizing flows too. The fit starts with Gaussian random
# effects as above; the law stage then trains a copy of the encoder jointly with the flow, so
# its posteriors follow the new law, and the amortization gap is measured under it. Here log A
# is bimodal (a 40/60 mixture of two Gaussians 4 SDs apart, the random-effects benchmark's
# truth): both fits find the two modes and the same log-likelihood.

# %%
from pymixnn.simulate import NormalMixture1D  # noqa: E402

N_FLOW = 150 if QUICK else 500
bimodal = simulate_logistic(N_FLOW, 10, laws={"A": NormalMixture1D.separated(0.4, 4.0, 0.1)}, seed=0)
FLOW_FIT = dict(id="id", x="t", y="y", random_effects="flow", seed=0, progress=False)
flow_steps = {"individual": 600 if QUICK else 4000, "amortized": 1000 if QUICK else 4000}
flow_fits = {
    local: pymixnn.fit(bimodal, "logistic", local=local, max_steps=steps, **FLOW_FIT)
    for local, steps in flow_steps.items()
}
for local, res in flow_fits.items():
    print(
        f"{local:10s} ll.is {res.loglik:.2f} (MC SE {res.loglik_se:.2f}); modes of log A: "
        f"{res.re_summary().loc['A', 'n_modes']}"
    )
print(f"mean amortization gap under the flow: {flow_fits['amortized'].amortization.gap.mean():.3f} nats")

# %% [markdown]
# ## Dosing records: the encoder reads the doses
#
# On NONMEM-style event data (`pymixnn.Data.from_nonmem`) the encoder's records are the
# observations and the doses, each dose a record of its own (time, amount, rate, compartment,
# steady state, interval), so an individual's posterior follows its dosing history. New
# individuals come as NONMEM records too. Theophylline with a one-compartment oral model (V on
# body weight): copies of the twelve subjects under new ids, read by the encoder alone, against
# the fitted subjects; then the same records with the dose doubled.

# %%
theo_raw = pymixnn.datasets.load_nonmem("theo")
theo = pymixnn.fit(
    pymixnn.Data.from_nonmem(theo_raw, covariates=["Weight"]),
    "pk1cpt_oral",
    covariates={"V": ["Weight"]},
    local="amortized",
    max_steps=600 if QUICK else 2000,
    seed=0,
    progress=False,
)
copies = theo_raw.assign(ID=lambda d: d.ID + 100)
_, eta_copies, _ = encode_individuals(theo, copies, steps=0)
_, eta_doubled, _ = encode_individuals(theo, copies.assign(AMT=2 * copies.AMT), steps=0)
_, mode_copies, _ = encode_individuals(theo, copies, steps=100)
ipred_copies = theo.predict(copies, level="individual")["prediction"].to_numpy()
ipred_fitted = theo.predict(theo_raw, level="individual")["prediction"].to_numpy()
above = ipred_fitted > 1
theo_rel = np.abs(ipred_copies / ipred_fitted - 1)[above]
print("encoder alone against the posterior modes (log scale), largest per parameter:")
print(pd.Series(np.abs(eta_copies - mode_copies).max(0), index=theo.model.random).round(4))
print(f"individual predictions of the copies: within {100 * theo_rel.max():.1f}% of the fitted subjects'")
print(f"doubled dose: the encoder's eta moves by up to {np.abs(eta_doubled - eta_copies).max():.3f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
obs = theo_raw[theo_raw.EVID == 0]
ax.scatter(obs.TIME, obs.DV, s=8, color="0.5", label="observed")
ax.scatter(obs.TIME, ipred_fitted, s=8, color="tab:blue", label="fitted subjects (IPRED)")
ax.scatter(obs.TIME, ipred_copies, s=8, marker="x", color="tab:red", label="copies, encoder")
ax.set_xlabel("time (h)")
ax.set_ylabel("theophylline (mg/L)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG / "events_new_individuals.png", dpi=110)
plt.close(fig)
display(Image(str(FIG / "events_new_individuals.png")))

# %% [markdown]
# A flow conditioned on covariates (`context=`) works the same way: the context joins the
# encoder's inputs (user guide, "Amortized inference").

# %% [markdown]
# ## Checks

# %%
KEY.update(
    n=N,
    max_abs_diff_in_se=float(table["diff_in_se"].abs().max()),
    loglik_diff=float(amortized.loglik - per_individual.loglik),
    mean_gap=float(gaps["gap"].mean()),
    mean_gap_refined=float(gaps["gap_refined"].mean()),
    new_encoder_median_abs_z=float(np.median(z_enc)),
    new_semi_share_within_0_1_sd=float(np.mean(np.all(z_semi < 0.1, axis=1))),
    new_rmse_ipred=rmse_ipred,
    new_rmse_pred=rmse_pred,
    seconds_individual=t_ind,
    seconds_amortized=t_amo,
    flow_loglik_diff=float(flow_fits["amortized"].loglik - flow_fits["individual"].loglik),
    flow_mean_gap=float(flow_fits["amortized"].amortization.gap.mean()),
    flow_modes=int(flow_fits["amortized"].re_summary().loc["A", "n_modes"]),
    events_ipred_max_rel=float(theo_rel.max()),
    events_doubled_dose_shift=float(np.abs(eta_doubled - eta_copies).max()),
)
# the same maximum likelihood (the bar: 0.25 SE; ll within 0.05 at the same theta)
assert KEY["max_abs_diff_in_se"] < 0.25 and abs(KEY["loglik_diff"]) < 0.05, KEY
# semi-amortized posteriors at the per-individual optimum (bar 0.1 nat), the encoder within a
# few nats (measured 0.4-1.2 in the user guide's table)
assert KEY["mean_gap_refined"] < 0.1 and KEY["mean_gap"] < 3.0, KEY
# new individuals: 95% within 0.1 posterior SD after 2 Newton steps; predictions from their own
# records far better than the population curve
assert KEY["new_semi_share_within_0_1_sd"] >= 0.95, KEY
assert KEY["new_rmse_ipred"] < 0.4 * KEY["new_rmse_pred"], KEY
# the flow law with the encoder: the per-individual fit's log-likelihood within the 2
# units (measured -0.06 to -0.16 at N = 150, -0.50 at 500), the two modes, a gap of at most
# 1.5 nats (measured 0.78 and 1.09 at N = 150 after 1,000 steps in two runs; 0.54 at 500)
assert abs(KEY["flow_loglik_diff"]) < 2 and KEY["flow_modes"] == 2 and KEY["flow_mean_gap"] < 1.5, KEY
# event data: new individuals read from their NONMEM records, predictions within 10% of the
# fitted subjects' (measured 3.9% with 600 steps), and the doses are read (a doubled dose moved
# ka by 0.074)
assert KEY["events_ipred_max_rel"] < 0.1 and KEY["events_doubled_dose_shift"] > 0.02, KEY
Path("key_numbers.json").write_text(json.dumps(KEY, indent=2))
print(json.dumps(KEY, indent=2))
