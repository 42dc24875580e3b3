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
# # A neural estimator of a whole data set
#
# `pymixnn.fit` maximizes the likelihood of one data set; for the next data set of the same
# design it starts again. A **neural estimator** (neural posterior estimation) pays once: data sets
# of the design are simulated from the model with population parameters drawn from a prior, and a
# network learns the map from a data set to the posterior of its parameters (a Gaussian with full
# covariance on their unconstrained scale). A new data set is then estimated in one forward pass,
# in milliseconds, with posterior quantiles.
#
# The network reads a data set as a set of individuals, each the sequence of its records, and
# pools over individuals with means (so the order of individuals does not matter). Its calibration
# is checked by **simulation-based calibration** (SBC): for data sets simulated from the prior, the
# rank of the true value among the posterior draws is uniform when the posterior is right.

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
from pymixnn.simulate import simulate_logistic

QUICK = os.environ.get("PYMIXNN_QUICK") == "1"  # quick mode: smaller settings, same checks
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
KEY = {"quick": str(QUICK)}
N = 50 if QUICK else 200  # individuals per data set
N_SIMULATIONS = 48_000 if QUICK else 480_000  # simulated data sets in training
N_SBC = 100 if QUICK else 200

# %% [markdown]
# ## Design and prior
#
# Logistic growth `y = A / (1 + exp(-(t - B) / C)) + a e` with log-normal A, B, C: every
# individual is observed at ten times between 0 and 10. The prior is one law per population
# parameter, named as in `res.params`.

# %%
times = np.linspace(0, 10, 10)
design = pd.DataFrame({"id": np.repeat(np.arange(1, N + 1), times.size), "t": np.tile(times, N)})
PRIOR = {
    "A": ("uniform", 80.0, 120.0),
    "B": ("uniform", 4.0, 6.0),
    "C": ("uniform", 1.2, 1.8),
    "omega2.A": ("loguniform", 0.02, 0.08),
    "omega2.B": ("loguniform", 0.02, 0.08),
    "omega2.C": ("loguniform", 0.02, 0.08),
    "a": ("uniform", 1.0, 3.0),
}

# %% [markdown]
# ## Training

# %%
t0 = time.perf_counter()
est = pymixnn.amortize("logistic", design, PRIOR, N_SIMULATIONS, x="t", seed=0, progress=False)
t_train = time.perf_counter() - t0
print(est)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(est.training["step"], est.training["validation_loss"], marker="o")
ax.set_xlabel("Adam step")
ax.set_ylabel("held-out -log q(truth)")
fig.tight_layout()
fig.savefig(FIG / "neural_training.png", dpi=110)
plt.close(fig)
display(Image(str(FIG / "neural_training.png")))

# %% [markdown]
# ## A new data set, against the likelihood fit

# %%
df = simulate_logistic(n_individuals=N, n_obs=10, seed=11)
truth = df.attrs["truth"]
neural = est.estimate(df, seed=0)
t0 = time.perf_counter()
res = pymixnn.fit(df, "logistic", id="id", x="t", y="y", seed=0, progress=False)
t_fit = time.perf_counter() - t0
table = pymixnn.compare_fits(neural, res, names=["neural", "likelihood"])
table = table.assign(truth=pd.Series(truth))
print(table)
print(f"neural: {neural.seconds * 1000:.1f} ms; likelihood fit: {t_fit:.1f} s")
print(neural.params.round(4))

# %% [markdown]
# ## Simulation-based calibration

# %%
sbc = est.sbc(n_replicates=N_SBC, n_draws=100, seed=2)
sbc.plot(FIG / "neural_sbc.png")
print(sbc.table)
display(Image(str(FIG / "neural_sbc.png")))

# %% [markdown]
# ## Checks

# %%
fixed = ["A", "B", "C"]
z = {p: (neural.params.loc[p, "estimate"] - truth[p]) / neural.params.loc[p, "se"] for p in fixed}
prior_sd = {"A": 40 / 12**0.5, "B": 2 / 12**0.5, "C": 0.6 / 12**0.5}
KEY.update(
    n=N,
    n_simulations=est.info["n_simulations"],
    train_seconds=t_train,
    estimate_ms=neural.seconds * 1000,
    fit_seconds=t_fit,
    max_abs_z_fixed=float(max(abs(v) for v in z.values())),
    sd_shrinkage_A=float(neural.params.loc["A", "se"] / prior_sd["A"]),
    sbc_min_p=float(sbc.table["p_value"].min()),
)
# the truth within 3 posterior SDs of the network's estimate, for every fixed effect
assert KEY["max_abs_z_fixed"] < 3, (z, neural.params)
# the data moved the posterior: its SD of A well below the prior's (measured 0.34 in quick mode,
# where the likelihood fit's SE is 0.25 of the prior's SD)
assert KEY["sd_shrinkage_A"] < 0.5, KEY
# calibrated: no SBC rank histogram far from uniform (the bar, p > 0.05, applies to the full
# training; the quick one is short and only has to avoid gross miscalibration)
assert KEY["sbc_min_p"] > (0.001 if QUICK else 0.05), sbc.table
# one forward pass: well under the likelihood fit's time
assert KEY["estimate_ms"] < 100, KEY
Path("key_numbers.json").write_text(json.dumps(KEY, indent=2))
print(json.dumps(KEY, indent=2))
