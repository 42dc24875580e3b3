"""Hybrid models: neural terms (pymixnn.NeuralTerm) inside closed-form curves and ODEs.

The quick fits use simulate_emax_link (y = E0_i + 8 C / (EC50_i + C) + e): the link is replaced by
a NeuralTerm of C; the acceptance runs are benchmarks/hybrid.py (benchmarks/results/hybrid.md)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.simulate import emax_link, simulate_emax_link
from pymixnn.validation import InputError

FIT = dict(id="id", x="c", y="y", seed=0, progress=False)


def link_model(**term):
    def f(psi, x, neural):
        c = x[..., :1]
        return psi[..., 0] + (neural["link"](c) - neural["link"](torch.zeros_like(c)))[..., 0]

    return pymixnn.Model(
        f, ["E0"], init={"E0": 12.0}, transforms="log", neural={"link": pymixnn.NeuralTerm(1, **term)}
    )


def true_model():
    def f(psi, x):
        return psi[..., 0] + psi[..., 1] * x[..., 0] / (psi[..., 2] + x[..., 0])

    return pymixnn.Model(
        f, ["E0", "Emax", "EC50"], init={"E0": 12, "Emax": 5, "EC50": 1}, transforms="log", random=["E0"]
    )


def heldout_rmse(res, held: pd.DataFrame) -> float:
    psi = res.individual_params(held).loc[held["id"]].to_numpy()
    f = res.evaluator.evaluate(psi, held[["c"]].to_numpy())
    return float(np.sqrt(np.mean((f - held["y"].to_numpy()) ** 2)))


@pytest.fixture(scope="module")
def data():
    return simulate_emax_link(120, seed=1), simulate_emax_link(60, seed=2, id_start=1001)


@pytest.fixture(scope="module")
def hybrid(data):
    # no penalty: the link's own shape is the target here (see test_minimal_penalty)
    return pymixnn.fit(data[0], link_model(penalty=None), **FIT)


def test_neural_term_spec_and_model_columns():
    term = pymixnn.NeuralTerm(2, n_outputs=3, hidden=(8, 4), random_inputs=2, random_weights=True)
    assert term.layer_sizes == (4, 8, 4, 3)
    assert term.n_weights == 4 * 8 + 8 + 8 * 4 + 4 + 4 * 3 + 3  # weights and biases, layer by layer
    assert term.random_names("g") == ["g.u1", "g.u2"] + [f"g.w{j}" for j in range(1, 13)]
    m = link_model(random_inputs=1)
    assert m.parameters == ("E0", "link.u1") and m.random == ("E0", "link.u1")
    assert m.transforms["link.u1"] == "identity" and m.init["link.u1"] == 0.0
    assert m.replace(error="proportional").parameters == m.parameters  # the columns are added once
    ode = pymixnn.ODEModel(
        lambda t, x, psi, cov, neural: -psi[..., :1] * x + neural["g"](x),
        states=["a"], parameters=["k"], outputs={"y": lambda x, psi: x[..., 0]},
        neural={"g": pymixnn.NeuralTerm(1, random_inputs=1)},
    )  # fmt: skip
    assert ode.parameters == ("k", "g.u1") and ode.dynamics.parameters == ("k", "g.u1")
    # the untrained network is the mechanistic model: its last layer starts at zero
    psi = torch.tensor([[[11.0, 0.7]]], dtype=torch.float64)
    x = torch.linspace(0, 10, 5, dtype=torch.float64).reshape(1, 5, 1)
    assert torch.equal(m.function(psi, x), torch.full((1, 5), 11.0, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_inputs=0), "n_inputs must be an integer >= 1"),
        (dict(n_inputs=1, activation="relu"), "activation must be one of"),
        (dict(n_inputs=1, penalty="l1"), "penalty must be one of"),
        (dict(n_inputs=1, hidden=()), "hidden needs at least one layer"),
        (dict(n_inputs=1, random_inputs=-1), "random_inputs must be an integer >= 0"),
    ],
)
def test_neural_term_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        pymixnn.NeuralTerm(**kwargs)


def test_hybrid_errors(data):
    with pytest.raises(InputError, match="must be a pymixnn.NeuralTerm"):
        pymixnn.Model(lambda psi, x, n: psi[..., 0], ["A"], neural={"g": 3})
    with pytest.raises(InputError, match="does not support random_effects='mixture'"):
        pymixnn.fit(data[0], link_model(), random_effects="mixture", n_components=2, **FIT)

    def wrong(psi, x, neural):  # two inputs to a term declared with one
        return psi[..., 0] + neural["link"](x.expand(*x.shape[:-1], 2))[..., 0]

    model = pymixnn.Model(
        wrong, ["E0"], init={"E0": 12.0}, transforms="log", neural={"link": pymixnn.NeuralTerm(1)}
    )
    with pytest.raises(InputError, match=r"neural\['link'\] takes inputs of shape \(..., 1\)"):
        pymixnn.fit(data[0], model, **FIT)


def test_missing_link_recovered(data, hybrid):
    train, held = data
    true = pymixnn.fit(train, true_model(), **FIT)
    flat = pymixnn.fit(
        train,
        pymixnn.Model(
            lambda psi, x: psi[..., 0] + 0 * x[..., 0], ["E0"], init={"E0": 12.0}, transforms="log"
        ),
        **FIT,
    )
    r_true, r_flat, r_nn = heldout_rmse(true, held), heldout_rmse(hybrid, held), heldout_rmse(hybrid, held)
    r_flat = heldout_rmse(flat, held)
    # held-out individual predictions after their own records: measured 0.491 (network) vs 0.489
    # (true link) vs 1.56 (no link) here (vignette 07's quick mode, the same design); the issue's
    # bars, within 10% of the true model and 30% below the misspecified one
    assert r_nn <= 1.10 * r_true and r_nn <= 0.70 * r_flat, (r_nn, r_true, r_flat)
    z = np.linspace(0, 10, 101)[:, None]
    g = hybrid.neural_term("link", z)[:, 0] - hybrid.neural_term("link", np.zeros((1, 1)))[0, 0]
    # the learned link against 8 C / (2 + C) (range 0-6.7): measured largest error 0.53 and 0.57
    # (seeds 0, 1; near C = 0, where the link is steepest and data are fewest)
    assert np.abs(g - emax_link(z[:, 0])).max() < 0.8
    assert abs(hybrid.fixed_effects["E0"] / 10.0 - 1) < 0.05  # E0 within 5% of the truth
    # the networks' weights count in AIC/BIC; the SEs are conditional on the networks
    assert hybrid.df_modelwc == len(hybrid.estimation.theta) + 49
    assert hybrid.aic == pytest.approx(-2 * hybrid.loglik + 2 * hybrid.df_modelwc)
    text = str(hybrid.summary())
    assert "conditional on the trained networks" in text and "link: 1 -> 16 -> 1 (tanh), 49 weights" in text
    assert hybrid.to_dict()["neural"]["n_weights"] == 49
    assert [s["stage"] for s in hybrid.hybrid.stages] == ["mechanistic", "network", "all"]
    assert 0.05 < hybrid.hybrid.share < 0.9  # the link is a real part of the curve


def test_neural_terms_table_and_plot(hybrid, tmp_path):
    table = hybrid.neural_terms
    assert set(table.columns) >= {"term", "level", "z1", "g1"} and (table["level"] == "population").all()
    assert len(table) == 101 and table["z1"].min() >= 0 and table["z1"].max() <= 10
    path = tmp_path / "link.png"
    hybrid.plot_neural_terms(path, truth={"link": lambda z: emax_link(z[:, 0])})
    assert path.stat().st_size > 10_000


def test_minimal_penalty_keeps_the_network_small(data, hybrid):
    # APHYNITY's constrained formulation: the same fit quality with a smaller network (measured
    # residual SD 0.5101 against 0.5085, the network's RMS output 2.0 against 3.6)
    minimal = pymixnn.fit(data[0], link_model(), **FIT)
    rms = lambda r: float(np.sqrt(np.mean(r.neural_terms["g1"] ** 2)))  # noqa: E731
    assert rms(minimal) < 0.8 * rms(hybrid)
    assert float(minimal.sigma.iloc[0]) < 1.03 * float(hybrid.sigma.iloc[0])
    weights = [s["penalty_weight"] for s in minimal.hybrid.stages[1:]]
    assert all(w[0] == 1.0 and w[-1] < 1.0 for w in weights)  # lowered along each stage


def test_neural_steps_sets_the_stages_length(data, hybrid):
    # the default closed-form stages run up to max_steps (4000) and stop early; neural_steps=40
    # caps each (a third, at least 50, for an ODE model's mechanistic stage only)
    assert max(s["steps"] for s in hybrid.hybrid.stages) > 40
    short = pymixnn.fit(data[0], link_model(penalty=None), **FIT, neural_steps=40)
    assert [s["steps"] for s in short.hybrid.stages] == [40, 40, 40]
    # each stage's record keeps the population parameters it ended with (natural scale)
    first = short.hybrid.stages[0]["fixed"]
    assert set(first) >= {"E0"} and 5.0 < first["E0"] < 20.0  # E0's truth: 10
    with pytest.raises(InputError, match="neural_steps must be a positive integer"):
        pymixnn.fit(data[0], link_model(), **FIT, neural_steps=0)


def test_neural_starts_keeps_the_highest_likelihood(data):
    # two starts (seeds 0 and 1) of short trainings: each start is the one-start fit of its seed,
    # exactly, and the kept one has the higher log-likelihood
    short = dict(FIT, neural_steps=40)
    both = pymixnn.fit(data[0], link_model(penalty=None), **short, neural_starts=2)
    starts = both.neural_starts
    assert list(starts["seed"]) == [0, 1] and starts["kept"].sum() == 1
    kept = starts.loc[starts["kept"]].iloc[0]
    assert kept["loglik"] == starts["loglik"].max() == both.loglik
    alone = pymixnn.fit(data[0], link_model(penalty=None), **dict(short, seed=int(kept["seed"])))
    assert np.array_equal(alone.estimation.theta, both.estimation.theta)
    other = starts.loc[~starts["kept"]].iloc[0]
    assert other["loglik"] < kept["loglik"]
    assert both.settings["seed"] == 0 and both.run.seed == 0 and both.settings["neural_starts"] == 2
    assert "2 starts (seeds 0-1)" in str(both.summary())
    assert alone.neural_starts.empty  # one start: no table rows
    with pytest.raises(InputError, match="neural_starts must be a positive integer"):
        pymixnn.fit(data[0], link_model(), **FIT, neural_starts=0)


def test_hybrid_fit_is_reproducible_and_leaves_the_model(data, hybrid):
    model = link_model(penalty=None)
    before = model.function.state.weights["link"].clone()
    again = pymixnn.fit(data[0], model, **FIT)
    assert np.array_equal(again.estimation.theta, hybrid.estimation.theta)
    assert np.array_equal(again.hybrid.weights["link"], hybrid.hybrid.weights["link"])
    assert torch.equal(model.function.state.weights["link"], before)  # the user's model unchanged
    other = pymixnn.fit(data[0], model, **{**FIT, "seed": 1})
    assert not np.array_equal(other.hybrid.weights["link"], hybrid.hybrid.weights["link"])


def test_random_inputs_carry_individual_shapes():
    # individuals differ in EC50 (sd of log EC50 0.7, error sd 0.2): a random input lowers the
    # residual SD by at least 20% (measured 22% here, 24% at N = 200, benchmarks/results/hybrid.md)
    train = simulate_emax_link(150, ec50_sd=0.7, a=0.2, seed=1)
    plain = pymixnn.fit(train, link_model(penalty=None), **FIT)
    shaped = pymixnn.fit(train, link_model(random_inputs=1, penalty=None), **FIT)
    assert float(shaped.sigma.iloc[0]) <= 0.8 * float(plain.sigma.iloc[0])
    u = shaped.individual_params()["link.u1"].to_numpy()
    rho = pd.Series(u).corr(pd.Series(np.log(train.attrs["psi"]["EC50"].to_numpy())), method="spearman")
    # measured 0.72 here (N = 150; ratio of residual SDs 0.776); the benchmark's N = 200: |Spearman|
    # 0.84, the bar of the issue (the sign is the network's)
    assert abs(rho) >= 0.65
    table = shaped.neural_terms
    assert set(table["level"]) == {"population", *train["id"].unique()}


def test_random_weights_carry_individual_amplitudes():
    # individuals differ in Emax (sd of log Emax 0.3, error sd 0.2): random last-layer weights
    # let each individual scale the link; measured residual SD 0.194 against 0.455 without them
    # (true 0.2; ratio 0.43), so 0.6x leaves room for another BLAS; the individual amplitudes
    # g_i(10) - g_i(0) against the true Emax_i: Spearman 0.959 measured, bar 0.8 (the bar
    # for random inputs)
    train = simulate_emax_link(150, a=0.2, emax_sd=0.3, seed=1)
    plain = pymixnn.fit(train, link_model(hidden=(4,), penalty=None), **FIT)
    weighted = pymixnn.fit(train, link_model(hidden=(4,), random_weights=True, penalty=None), **FIT)
    assert float(weighted.sigma.iloc[0]) <= 0.6 * float(plain.sigma.iloc[0])
    assert [p for p in weighted.fixed_effects.index if p.startswith("link.")] == [
        f"link.w{j}" for j in range(1, 5)
    ]
    ends = np.array([[0.0], [10.0]])
    amplitude = [np.ptp(weighted.neural_term("link", ends, individual=i)) for i in train["id"].unique()]
    rho = pd.Series(amplitude).corr(pd.Series(train.attrs["psi"]["Emax"].to_numpy()), method="spearman")
    assert rho >= 0.8
    # the population curve is the network at the weights' fixed effects (eta = 0): measured
    # amplitude 6.58 (truth 8 * 10 / 12 = 6.67), the individuals' quartiles 5.49 and 7.46; with the
    # weights at zero instead (the earlier population curve) it ignored those fixed effects
    typical = float(np.ptp(weighted.neural_term("link", ends)))
    assert np.quantile(amplitude, 0.25) <= typical <= np.quantile(amplitude, 0.75), (typical, amplitude)


def test_saved_hybrid_fit_keeps_its_networks(data, hybrid, tmp_path):
    path = hybrid.save(tmp_path / "hybrid.json")
    with pytest.raises(ValueError, match=r"fitted with neural terms \['link'\]: pass the model"):
        flat = pymixnn.Model(
            lambda psi, x: psi[..., 0] + 0 * x[..., 0], ["E0"], init={"E0": 12.0}, transforms="log"
        )
        pymixnn.Results.load(path, model=flat)
    back = pymixnn.Results.load(path, model=link_model(penalty=None))
    pd.testing.assert_frame_equal(back.neural_terms, hybrid.neural_terms)
    assert back.df_modelwc == hybrid.df_modelwc and back.aic == hybrid.aic
    np.testing.assert_array_equal(
        back.predict(data[1], level="population"), hybrid.predict(data[1], level="population")
    )


MODEL_FILE = """
import torch, pymixnn

def link(psi, x, neural):
    c = x[..., :1]
    return psi[..., 0] + (neural["link"](c) - neural["link"](torch.zeros_like(c)))[..., 0]

hybrid = pymixnn.Model(link, ["E0"], init={"E0": 12.0}, transforms="log",
                       neural={"link": pymixnn.NeuralTerm(1, hidden=(8,), penalty=None)})
"""


def test_cli_fits_a_model_from_a_python_file(data, tmp_path, capsys):
    from pymixnn.cli import main

    (tmp_path / "models.py").write_text(MODEL_FILE)
    csv = tmp_path / "emax.csv"
    data[0].to_csv(csv, index=False)
    out = tmp_path / "fit.json"
    args = ["fit", str(csv), "--id", "id", "--x", "c", "--y", "y", "--max-steps", "300", "--json", str(out)]
    assert main([*args[:2], "--model", f"{tmp_path / 'models.py'}:hybrid", *args[2:]]) == 0
    record = json.loads(out.read_text())
    assert (
        record["neural"]["n_weights"] == 25 and abs(record["fixed_effects"]["E0"]["estimate"] / 10 - 1) < 0.1
    )
    assert main([*args[:2], "--model", f"{tmp_path / 'models.py'}:missing", *args[2:]]) == 2
    assert "has no pymixnn.Model named 'missing'" in capsys.readouterr().err


def pendulum_rhs(t, x, psi, cov):
    k, c, _ = psi.unbind(-1)
    return torch.stack([x[..., 1], -k * torch.sin(x[..., 0]) - c * x[..., 1]], -1)


def test_states_reconstruct_a_hidden_state():
    # a pendulum observed through its angle only: the angular velocity from the fitted ODE
    df = pymixnn.simulate.simulate_pendulum(12, seed=5)
    model = pymixnn.ODEModel(
        pendulum_rhs, ["theta", "omega"], ["k", "c", "theta0"], {"angle": lambda x, psi: x[..., 0]},
        init={"theta": lambda psi: psi[..., 2]}, transforms="log", random=["c", "theta0"],
        start={"k": 1.0, "c": 0.2, "theta0": 1.2},
    )  # fmt: skip
    res = pymixnn.fit(pymixnn.Data.from_nonmem(df), model, seed=0, progress=False)
    hidden = df.attrs["hidden"]
    states = res.states(times=np.unique(hidden["TIME"]), n_draws=50)
    assert list(states.columns) == ["ID", "time", "state", "estimate", "lower", "upper"]
    assert set(states["state"]) == {"theta", "omega"} and len(states) == 12 * 16 * 2
    omega = states[states["state"] == "omega"].merge(hidden, left_on=["ID", "time"], right_on=["ID", "TIME"])
    # measured 0.9996 with 30 pendulums; the 90% intervals cover the truth (measured 0.90 there)
    assert np.corrcoef(omega["estimate"], omega["omega"])[0, 1] >= 0.99
    assert (omega["lower"] <= omega["estimate"] + 1e-12).all() and (
        omega["estimate"] <= omega["upper"] + 1e-12
    ).all()
    assert 0.6 <= np.mean((omega["lower"] <= omega["omega"]) & (omega["omega"] <= omega["upper"])) <= 1.0
    with pytest.raises(ValueError, match="states\\(\\) needs a fit of a pymixnn.ODEModel"):
        pymixnn.fit(simulate_emax_link(20, seed=1), true_model(), **FIT).states()


@pytest.mark.slow  # 130 s; make test runs its quick form in vignette 07 (16 pendulums, 150 steps)
def test_network_learns_a_missing_restoring_force():
    # the pendulum with its restoring force -1.5 sin(theta) a NeuralTerm of the angle: without the
    # force the start trajectories stay at the release angle (sd ~1e-8 across them), so the angle
    # is scaled by its root mean square around 0, not by that spread (which saturated every unit
    # and made the network blow the swings up: validation 18 -> 1,000 at N = 300)
    df = pymixnn.simulate.simulate_pendulum(24, seed=5)

    def rhs(t, x, psi, cov, neural):
        c, _ = psi.unbind(-1)
        return torch.stack([x[..., 1], neural["force"](x[..., :1])[..., 0] - c * x[..., 1]], -1)

    model = pymixnn.ODEModel(
        rhs, ["theta", "omega"], ["c", "theta0"], {"angle": lambda x, psi: x[..., 0]},
        init={"theta": lambda psi: psi[..., 1]}, transforms="log", start={"c": 0.2, "theta0": 1.2},
        neural={"force": pymixnn.NeuralTerm(1)},
    )  # fmt: skip
    res = pymixnn.fit(pymixnn.Data.from_nonmem(df), model, seed=0, progress=False, max_steps=200)
    assert res.hybrid.center["force"][0] == 0.0 and res.hybrid.scale["force"][0] > 0.1
    hidden = df.attrs["hidden"]
    states = res.states(times=np.unique(hidden["TIME"]), n_draws=20)
    omega = states[states["state"] == "omega"].merge(hidden, left_on=["ID", "time"], right_on=["ID", "TIME"])
    corr = np.corrcoef(omega["estimate"], omega["omega"])[0, 1]
    z = np.linspace(-1.0, 1.0, 21)[:, None]
    force_error = np.abs(res.neural_term("force", z)[:, 0] + 1.5 * np.sin(z[:, 0])).max()
    # measured (seed 0): release angle 1.098 (truth 1.5 after 200 steps), corr 0.955, force error
    # 0.416 on [-1, 1] (force up to 1.26 there): bars with room for another platform's rounding
    assert corr >= 0.9 and force_error < 0.6
