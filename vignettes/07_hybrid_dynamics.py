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
# # Hybrid dynamics: a mechanism with a neural term
#
# A mechanistic model is often right in structure and wrong in one term: an unknown drug-effect
# link, an unknown response of growth to stress. pymixnn lets a model declare small networks,
# `pymixnn.NeuralTerm`, and call them inside its curve or its ODE right-hand side; their weights
# are population parameters, fitted in stages inside one `fit()` (the mechanistic parameters
# first with the networks at zero, then the networks, then everything; early stopping on
# held-out individuals), after which the networks are frozen and the model is refitted, so the
# mechanistic parameters get SEs conditional on the networks and the fit a log-likelihood.
#
# 1. **A missing link**: an exposure-response whose Emax link is replaced by a network of the
#    concentration, against the true model and a model without the link, on held-out
#    individuals.
# 2. **Individuals of different shapes**: a random input fed to the network (`random_inputs=1`);
#    of different amplitudes: random last-layer weights (`random_weights=True`).
# 3. **A hidden state**: a damped pendulum observed through its angle only; the angular velocity
#    reconstructed per individual with intervals (`Results.states`), by the mechanistic ODE and
#    by one whose restoring force is a network.
#
# The PK/PD acceptance runs (an ODE turnover model with its Emax inhibition learned; a
# multiple-dose extrapolation) are in `benchmarks/hybrid.py`; its table closes this vignette.

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
import torch
from IPython.display import Image, display

import pymixnn
from pymixnn.simulate import emax_link, simulate_emax_link, simulate_pendulum

QUICK = os.environ.get("PYMIXNN_QUICK") == "1"  # quick mode: fewer individuals, same checks
FIG = Path("figures")
FIG.mkdir(exist_ok=True)
KEY = {"quick": str(QUICK)}
N = 120 if QUICK else 200
FIT = dict(seed=0, progress=False)

# %% [markdown]
# ## 1. A missing link
#
# y = E0_i + Emax C / (EC50 + C) + e, with E0_i log-normal. The hybrid model keeps E0 and learns
# the link g: its curve is `E0 + g(C) - g(0)`, so that E0 stays the response at C = 0. The link's
# own shape is the target here, so the network is fitted without the "minimal" penalty (which
# would let E0 take what it can near C = 0, where few data are: see the user guide).

# %%
train = simulate_emax_link(N, seed=1)
held = simulate_emax_link(60 if QUICK else 100, seed=2, id_start=1001)


def hybrid_curve(psi, x, neural):
    c = x[..., :1]
    return psi[..., 0] + (neural["link"](c) - neural["link"](torch.zeros_like(c)))[..., 0]


def true_curve(psi, x):
    return psi[..., 0] + psi[..., 1] * x[..., 0] / (psi[..., 2] + x[..., 0])


def no_link(psi, x):
    return psi[..., 0] + 0 * x[..., 0]


models = {
    "true link": pymixnn.Model(true_curve, ["E0", "Emax", "EC50"], init={"E0": 12, "Emax": 5, "EC50": 1},
                               transforms="log", random=["E0"]),
    "no link": pymixnn.Model(no_link, ["E0"], init={"E0": 12}, transforms="log"),
    "neural link": pymixnn.Model(hybrid_curve, ["E0"], init={"E0": 12}, transforms="log",
                                 neural={"link": pymixnn.NeuralTerm(1, penalty=None)}),
}  # fmt: skip


def heldout_rmse(res):
    """Individual predictions of the held-out individuals after their own records (their
    conditional modes at the fitted parameters)."""
    psi = res.individual_params(held).loc[held["id"]].to_numpy()
    f = res.evaluator.evaluate(psi, held[["c"]].to_numpy())
    return float(np.sqrt(np.mean((f - held["y"].to_numpy()) ** 2)))


fits, rows = {}, []
for name, model in models.items():
    t0 = time.perf_counter()
    fits[name] = res = pymixnn.fit(train, model, id="id", x="c", y="y", **FIT)
    rows.append(
        dict(model=name, seconds=time.perf_counter() - t0, E0=res.fixed_effects["E0"], sigma=res.sigma.iloc[0],
             loglik=res.loglik, df=res.df_modelwc, AIC=res.aic, heldout_rmse=heldout_rmse(res))
    )  # fmt: skip
table = pd.DataFrame(rows).set_index("model")
table.round(4)

# %% [markdown]
# The network recovers what the true link gives on held-out individuals; without the link the
# error is three times larger. AIC counts the network's 49 weights. The summary says which
# SEs are conditional on the network:

# %%
hybrid = fits["neural link"]
print(hybrid.summary())

# %%
z = np.linspace(0, 10, 201)[:, None]
g0 = float(hybrid.neural_term("link", np.zeros((1, 1)))[0, 0])
learned = hybrid.neural_term("link", z)[:, 0] - g0
link_error = float(np.abs(learned - emax_link(z[:, 0])).max())
hybrid.plot_neural_terms(FIG / "emax_link.png", truth={"link": lambda zz: g0 + emax_link(zz[:, 0])})
display(Image(str(FIG / "emax_link.png")))
print(f"largest error of the learned link over 0-10: {link_error:.3f} (the link spans 0-6.7)")
hybrid.neural_terms.head()

# %% [markdown]
# ## 2. Individuals of different shapes
#
# Now EC50 varies between individuals (sd of log EC50 0.7) and the noise is smaller (sd 0.2). A
# network of C alone gives everyone the same link; `random_inputs=1` feeds each individual a
# random effect, so the network can bend the link per individual.

# %%
# quick mode: 150 individuals, no penalty (measured there: residual SD ratio 0.78, Spearman 0.72);
# full size: 200 individuals, the default "minimal" penalty (benchmarks/hybrid.md: 0.76, 0.83)
shapes = simulate_emax_link(150 if QUICK else 200, ec50_sd=0.7, a=0.2, seed=1)
penalty = None if QUICK else "minimal"


def link_fit(data: pd.DataFrame, **term):
    """The emax data fitted with the link a NeuralTerm of C (``term``: its settings)."""
    model = pymixnn.Model(
        hybrid_curve,
        ["E0"],
        init={"E0": 12},
        transforms="log",
        neural={"link": pymixnn.NeuralTerm(1, **term)},
    )
    return pymixnn.fit(data, model, id="id", x="c", y="y", **FIT)


shape_fits = {k: link_fit(shapes, random_inputs=k, penalty=penalty) for k in (0, 1)}
sigma0, sigma1 = (float(shape_fits[k].sigma.iloc[0]) for k in (0, 1))
u = shape_fits[1].individual_params()["link.u1"].to_numpy()
rho = float(pd.Series(u).corr(pd.Series(np.log(shapes.attrs["psi"]["EC50"].to_numpy())), method="spearman"))
print(
    f"residual sd: {sigma0:.3f} without, {sigma1:.3f} with a random input ({100 * (1 - sigma1 / sigma0):.0f}% lower)"
)
print(f"Spearman correlation of the random input with log EC50: {rho:.2f} (its sign is the network's)")
shape_fits[1].plot_neural_terms(FIG / "emax_shapes.png")
display(Image(str(FIG / "emax_shapes.png")))

# %% [markdown]
# ### Individual amplitudes: random weights
#
# When individuals differ in the size of the effect rather than its position (Emax varies, sd
# of log Emax 0.3), `random_weights=True` puts a random effect on each weight of the last layer
# (`link.w1`, ...): each individual's link is its own mixture of the hidden units. A small last
# layer (`hidden=(4,)`) keeps them at four random effects.

# %%
amps = simulate_emax_link(150, emax_sd=0.3, a=0.2, seed=1)
amp_fits = {rw: link_fit(amps, hidden=(4,), random_weights=rw, penalty=None) for rw in (False, True)}
ends = np.array([[0.0], [10.0]])
amplitude = np.array(
    [np.ptp(amp_fits[True].neural_term("link", ends, individual=i)) for i in amps["id"].unique()]
)
rho_amp = float(pd.Series(amplitude).corr(pd.Series(amps.attrs["psi"]["Emax"].to_numpy()), method="spearman"))
amp_sigma = {rw: float(f.sigma.iloc[0]) for rw, f in amp_fits.items()}
print(f"residual sd: {amp_sigma[False]:.3f} without, {amp_sigma[True]:.3f} with random weights (truth 0.2)")
print(f"Spearman correlation of g_i(10) - g_i(0) with the true Emax_i: {rho_amp:.2f}")
amp_fits[True].plot_neural_terms(FIG / "emax_amplitudes.png")
display(Image(str(FIG / "emax_amplitudes.png")))

# %% [markdown]
# ## 3. A hidden state
#
# A damped pendulum, d(theta)/dt = omega, d(omega)/dt = -k sin(theta) - c_i omega, released at
# theta0_i: only the angle is observed. The ODE model's `states()` reconstructs the angular
# velocity of every individual with a 90% interval from its random effects' posterior.

# %%
pend = simulate_pendulum(30 if QUICK else 300, seed=5)
data = pymixnn.Data.from_nonmem(pend)


def pendulum(t, x, psi, cov):
    k, c, _ = psi.unbind(-1)
    return torch.stack([x[..., 1], -k * torch.sin(x[..., 0]) - c * x[..., 1]], -1)


def pendulum_neural(t, x, psi, cov, neural):
    c, _ = psi.unbind(-1)
    return torch.stack([x[..., 1], neural["force"](x[..., :1])[..., 0] - c * x[..., 1]], -1)


angle = {"angle": lambda x, psi: x[..., 0]}
mech = pymixnn.ODEModel(pendulum, ["theta", "omega"], ["k", "c", "theta0"], angle,
                        init={"theta": lambda psi: psi[..., 2]}, transforms="log", random=["c", "theta0"],
                        start={"k": 1.0, "c": 0.2, "theta0": 1.2})  # fmt: skip
t0 = time.perf_counter()
pend_fit = pymixnn.fit(data, mech, **FIT)
pend_seconds = time.perf_counter() - t0
hidden = pend.attrs["hidden"]
states = pend_fit.states(times=np.unique(hidden["TIME"]))
omega = states[states["state"] == "omega"].merge(hidden, left_on=["ID", "time"], right_on=["ID", "TIME"])
hidden_corr = float(np.corrcoef(omega["estimate"], omega["omega"])[0, 1])
print(
    f"{pend_seconds:.1f} s; k = {pend_fit.fixed_effects['k']:.3f} (truth 1.5); hidden omega correlation {hidden_corr:.4f}"
)

fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), sharey=True)
fine = pend_fit.states(times=np.linspace(0, 12, 121))
for ax, i in zip(axes, data.ids[:3]):
    s = fine[(fine["ID"] == i) & (fine["state"] == "omega")]
    ax.fill_between(s["time"], s["lower"], s["upper"], alpha=0.3, label="90% interval")
    ax.plot(s["time"], s["estimate"], label="reconstructed omega")
    h = hidden[hidden["ID"] == i]
    ax.plot(h["TIME"], h["omega"], "k.", label="true (never observed)")
    ax.set_title(f"pendulum {i}")
    ax.set_xlabel("time")
axes[0].set_ylabel("angular velocity")
axes[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG / "pendulum_hidden.png", dpi=100)
plt.close(fig)
display(Image(str(FIG / "pendulum_hidden.png")))

# %% [markdown]
# The same with the restoring force learned: `force` is a network of the angle in place of
# -k sin(theta). Without the force, the start's trajectories stay at the release angles, so the
# network's input shows no spread there: it is scaled by its size around 0
# (`npend.hybrid.center`, `npend.hybrid.scale`). On all 300 pendulums (full mode,
# `python -m benchmarks hybrid --cases pendulum`) the fit recovers the release angle, the damping,
# the force within the typical swing, and the hidden velocity (correlation 0.999).

# %%
neural_pend = pymixnn.ODEModel(pendulum_neural, ["theta", "omega"], ["c", "theta0"], angle,
                               init={"theta": lambda psi: psi[..., 1]}, transforms="log",
                               start={"c": 0.2, "theta0": 1.2}, neural={"force": pymixnn.NeuralTerm(1)})  # fmt: skip
# quick mode: the first 16 pendulums and at most 150 steps per training stage
ndata = pymixnn.Data.from_nonmem(pend[pend["ID"] <= 16]) if QUICK else data
t0 = time.perf_counter()
npend = pymixnn.fit(ndata, neural_pend, **FIT, **(dict(max_steps=150) if QUICK else {}))
npend_seconds = time.perf_counter() - t0
nstates = npend.states(times=np.unique(hidden["TIME"]))
nomega = nstates[nstates["state"] == "omega"].merge(hidden, left_on=["ID", "time"], right_on=["ID", "TIME"])
neural_hidden_corr = float(np.corrcoef(nomega["estimate"], nomega["omega"])[0, 1])
lo, hi = float(npend.hybrid.low["force"][0]), float(npend.hybrid.high["force"][0])
zz = np.linspace(lo, hi, 201)[:, None]
force_error = float(np.abs(npend.neural_term("force", zz)[:, 0] + 1.5 * np.sin(zz[:, 0])).max())
npend.plot_neural_terms(FIG / "pendulum_force.png", truth={"force": lambda z: -1.5 * np.sin(z[:, 0])})
display(Image(str(FIG / "pendulum_force.png")))
print(
    f"{npend_seconds:.1f} s; hidden omega correlation {neural_hidden_corr:.4f}; force error {force_error:.3f}"
)

# %% [markdown]
# ## 4. The PK/PD acceptance runs
#
# `python -m benchmarks hybrid` fits the turnover PK/PD model (200 simulated individuals, an
# ODE) three ways and predicts 100 held-out individuals and a three-dose regimen; its table:

# %%
bench = Path(pymixnn.__file__).resolve().parents[1] / "benchmarks" / "results" / "hybrid.md"
print(bench.read_text() if bench.exists() else "(benchmarks/results/hybrid.md not found)")

# %% [markdown]
# ## Checks

# %%
KEY.update(
    {
        "link_rmse_neural": float(table.loc["neural link", "heldout_rmse"]),
        "link_rmse_true": float(table.loc["true link", "heldout_rmse"]),
        "link_rmse_none": float(table.loc["no link", "heldout_rmse"]),
        "link_max_abs_error": link_error,
        "link_network_weights": int(hybrid.hybrid.n_weights),
        "shape_sigma_ratio": sigma1 / sigma0,
        "shape_spearman": rho,
        "amplitude_sigma_ratio": amp_sigma[True] / amp_sigma[False],
        "amplitude_spearman": rho_amp,
        "pendulum_hidden_corr": hidden_corr,
        "pendulum_neural_hidden_corr": neural_hidden_corr,
        "pendulum_force_max_abs_error": force_error,
        "pendulum_force_center": float(npend.hybrid.center["force"][0]),
        "pendulum_force_scale": float(npend.hybrid.scale["force"][0]),
        "pendulum_seconds": pend_seconds,
        "pendulum_neural_seconds": npend_seconds,
    }
)
Path("key_numbers.json").write_text(json.dumps(KEY, indent=1))
print(KEY)
# the network within 10% of the true link's held-out error and 30% below the model without it
assert KEY["link_rmse_neural"] <= 1.10 * KEY["link_rmse_true"]
assert KEY["link_rmse_neural"] <= 0.70 * KEY["link_rmse_none"]
assert KEY["link_max_abs_error"] < 1.0  # measured 0.53 (N = 120) on a link spanning 0-6.7
assert KEY["shape_sigma_ratio"] <= 0.8 and abs(KEY["shape_spearman"]) >= (0.65 if QUICK else 0.8)
assert KEY["amplitude_sigma_ratio"] <= 0.6 and KEY["amplitude_spearman"] >= 0.8  # measured 0.43, 0.96
assert KEY["pendulum_hidden_corr"] >= 0.9 and KEY["pendulum_neural_hidden_corr"] >= 0.9
# the angle, flat along the start's force-less trajectories, scaled by its size around 0 (scaled by
# its 1e-8 spread the network blew the swings up)
assert KEY["pendulum_force_center"] == 0.0 and KEY["pendulum_force_scale"] > 0.1
Path("key_numbers.json").write_text(json.dumps(KEY, indent=1))
KEY
