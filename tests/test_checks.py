"""Model checks of a fit: CWRES against their closed form, the prediction-corrected VPC on data
with three dose groups, random effects against covariates, the convergence trace, and the
goodness-of-fit figures (pymixnn/results/checks.py, cwres.py, gof.py, vpc.py).

NPDE themselves are checked against the R package npde in tests/test_npde.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.results.vpc import prediction_correct
from pymixnn.simulate import simulate_dose_groups, simulate_nlme

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def theo_fit():
    df = pymixnn.datasets.load("theo")
    return pymixnn.fit(
        df,
        pymixnn.Model.named("onecpt_oral"),
        id="Id",
        x=["Dose", "Time"],
        y="Concentration",
        covariates={"V": ["Weight"]},
        seed=0,
        progress=False,
    )


def linear(psi, x):
    """y = A + B t: linear in the random effects (identity transforms)."""
    return psi[..., 0] + psi[..., 1] * x[..., 0]


@pytest.fixture(scope="module")
def linear_fit():
    t = np.linspace(0.0, 4.0, 6)
    df = simulate_nlme(
        lambda psi, x: psi[..., 0] + psi[..., 1] * x[..., 0],
        ["A", "B"],
        mu_natural={"A": 10.0, "B": 2.0},
        omega2={"A": 1.0, "B": 0.25},
        transforms={"A": "identity", "B": "identity"},
        x=t,
        n_individuals=30,
        a=0.5,
        seed=3,
    )
    model = pymixnn.Model(linear, ["A", "B"], init={"A": 9.0, "B": 1.5}, omega="full")
    return pymixnn.fit(df, model, id="id", x=["t"], y="y", seed=0, progress=False)


@pytest.mark.parametrize("decorrelation", ["cholesky", "symmetric"])
def test_cwres_equal_their_closed_form_for_a_model_linear_in_eta(linear_fit, decorrelation):
    """For f linear in eta the FOCE linearization is exact: E_i = f(eta = 0) = PRED and
    C_i = Z Omega Z' + a^2 I with Z = [1, t]; CWRES = C_i^(-1/2) (y_i - PRED_i)."""
    res = linear_fit
    table = res.cwres(decorrelation=decorrelation)
    omega = res.estimation.omega
    a2 = res.estimation.error["a"] ** 2
    # tolerance: central differences of a linear function are exact up to rounding (~1e-9 of
    # the values divided by the 1e-5 step), far below 1e-6
    worst = 0.0
    for _, rows in table.groupby("id", sort=False):
        Z = np.column_stack([np.ones(len(rows)), rows["t"].to_numpy()])
        C = Z @ omega @ Z.T + a2 * np.eye(len(rows))
        r = rows["y"].to_numpy() - rows["pred"].to_numpy()
        if decorrelation == "cholesky":
            expected = np.linalg.solve(np.linalg.cholesky(C), r)
        else:
            w, V = np.linalg.eigh(C)
            expected = (V / np.sqrt(w)) @ V.T @ r
        worst = max(worst, float(np.abs(rows["cwres"].to_numpy() - expected).max()))
        np.testing.assert_allclose(rows["epred_foce"], rows["pred"], atol=1e-6)
    assert worst < 1e-6


def test_cwres_of_theophylline_are_standardised(theo_fit):
    """On theophylline (120 observations), CWRES have mean near 0 and variance near 1; the rows
    come in the data's order."""
    table = theo_fit.cwres()
    assert list(table.index) == list(pymixnn.datasets.load("theo").index)
    v = table["cwres"].to_numpy()
    assert np.isfinite(v).all()
    # tolerance: with n = 120 the mean of N(0,1) values has sd 0.09 and the variance sd 0.13;
    # 3 sd bounds (the model is not exactly right for theo: ka's outliers)
    assert abs(v.mean()) < 0.27 and 0.6 < v.var() < 1.4
    with pytest.raises(ValueError, match="decorrelation must be"):
        theo_fit.cwres(decorrelation="qr")


def test_prediction_correction_removes_the_dose_from_a_bin():
    """Bergstrand's correction y * PRED_bin / PRED: with y proportional to the dose, the corrected
    values of three dose groups coincide at the bin's median PRED; with lower_bound lb the
    correction is lb + (y - lb)(PRED_bin - lb)/(PRED - lb); PRED <= lb rows are left out."""
    pred = np.array([1.0, 3.0, 30.0, 0.0])
    y = np.array([1.1, 3.3, 33.0, 0.2])
    b = np.zeros(4, dtype=int)
    sims = np.vstack([pred * 0.9, pred * 1.2])
    pc_y, pc_sims, keep = prediction_correct(y, sims, pred, b)
    assert keep.tolist() == [True, True, True, False]
    # the median PRED of the kept rows is 3.0: every corrected value is 3.0 * 1.1
    np.testing.assert_allclose(pc_y, [3.3, 3.3, 3.3])
    np.testing.assert_allclose(pc_sims, [[2.7] * 3, [3.6] * 3])
    pc_y, _, _ = prediction_correct(y, sims, pred, b, lower_bound=0.5)
    np.testing.assert_allclose(pc_y, 0.5 + (y[:3] - 0.5) * (3.0 - 0.5) / (pred[:3] - 0.5))


def sqrt_dose_oral(psi, x):
    ka, v, cl = psi[..., 0], psi[..., 1], psi[..., 2]
    dose, t = torch.sqrt(30.0 * x[..., 0]), x[..., 1]
    k = cl / v
    return dose * ka / (v * (ka - k)) * (torch.exp(-k * t) - torch.exp(-ka * t))


# the same two fits run in the quick mode of vignettes/11_diagnostics.py (make test), which
# asserts the same bars; here for make test-all
@pytest.mark.slow
def test_pcvpc_separates_the_right_dose_response_from_a_wrong_one(tmp_path):
    """Three dose groups (10, 30, 300 mg; 30 individuals each): the pcVPC of the right model
    (linear in the dose) keeps the observed percentiles in the simulated 90% bands, a model
    whose exposure rises with sqrt(dose) puts many outside (the full-size run with 60 per group
    and 5 replicates is benchmarks/pcvpc.py; see test_pcvpc_benchmark_results)."""
    df = simulate_dose_groups(n_per_group=30, seed=7)
    correct = pymixnn.Model.named("onecpt_oral", error="proportional")
    wrong = correct.replace(function=sqrt_dose_oral, self_start=None, init={"ka": 1.5, "V": 20.0, "CL": 2.0})
    counts = {}
    for name, model in (("correct", correct), ("wrong", wrong)):
        res = pymixnn.fit(df, model, id="id", x=["Dose", "Time"], y="y", seed=0, progress=False)
        table = res.vpc(prediction_corrected=True, n_sim=300, seed=1)
        assert table.attrs["prediction_corrected"] and table.attrs["pc_excluded"] == 0
        assert len(table) == 24  # 8 distinct times x p10, p50, p90
        counts[name] = int(table["outside"].sum())
    # tolerance: under the right model each of the 24 statistics is outside its 90% band with
    # probability 0.1 (2.4 expected; P(>= 6) = 0.04 for independent ones); the wrong model put
    # 15 of 24 outside at 60 per group, about half that many are expected at 30 per group
    assert counts["correct"] <= 5, counts
    assert counts["wrong"] >= 8, counts
    assert counts["wrong"] >= counts["correct"] + 5, counts


def test_pcvpc_benchmark_results():
    """The committed run of `python -m benchmarks pcvpc` (5 replicates, 60 per dose group):
    the right model has about the chance count of statistics outside the bands, the wrong
    dose-response many more in every replicate, and both figures exist."""
    summary = json.loads((ROOT / "benchmarks" / "results" / "pcvpc.json").read_text())["summary"]
    # tolerance: 2.4 of 24 expected by chance; the mean of 5 replicates above 4 would be rare
    assert summary["correct"]["outside_mean"] <= 4.0
    assert summary["wrong"]["outside_min"] >= 10
    for name in ("correct", "wrong"):
        assert (ROOT / "benchmarks" / "results" / f"pcvpc_{name}.png").stat().st_size > 10_000


def test_pcvpc_needs_continuous_data_and_a_finite_bound(theo_fit):
    with pytest.raises(ValueError, match="lower_bound must be a finite number"):
        theo_fit.vpc(prediction_corrected=True, lower_bound=float("nan"))


def test_eta_covariates_find_an_effect_left_out_of_the_model(tmp_path):
    """Logistic growth whose asymptote A rises with a covariate w (log A = log 100 + 0.3 w) and
    a covariate z unrelated to anything: fitted without covariates, A's random effects
    correlate with w (Spearman) and not with z; the figure is written."""
    rng = np.random.default_rng(11)
    n = 80
    w, z = rng.normal(size=n), rng.normal(size=n)
    t = np.linspace(0, 10, 8)
    A = 100 * np.exp(0.3 * w + 0.1 * rng.normal(size=n))
    f = A[:, None] / (1 + np.exp(-(t[None, :] - 5) / 1.5))
    y = f + 2.0 * rng.normal(size=f.shape)
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n), t.size),
            "t": np.tile(t, n),
            "y": y.ravel(),
            "w": np.repeat(w, t.size),
            "z": np.repeat(z, t.size),
            "group": np.repeat(np.where(w > 0, "high", "low"), t.size),
        }
    )
    res = pymixnn.fit(
        df, pymixnn.Model.named("logistic", random=["A"]), id="id", x=["t"], y="y", seed=0, progress=False
    )
    assert res.eta_covariates().empty  # the fitted data hold no covariate
    table = res.eta_covariates(data=df).set_index(["parameter", "covariate"])
    assert set(table.index.get_level_values("covariate")) == {"w", "z", "group"}
    # tolerance: the true rank correlation of eta_A with w is about 0.95: p is astronomically
    # small; with z it is 0, so p < 0.01 happens 1% of the time (fixed seed)
    assert table.loc[("A", "w"), "test"] == "spearman" and table.loc[("A", "w"), "statistic"] > 0.8
    assert table.loc[("A", "w"), "p_value"] < 1e-10
    assert table.loc[("A", "z"), "p_value"] > 0.01
    assert table.loc[("A", "group"), "test"] == "kruskal" and table.loc[("A", "group"), "p_value"] < 1e-6
    path = res.plot_eta_covariates(tmp_path / "eta.png", covariates=["w", "group"], data=df)
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"covariates \['nope'\] are not columns of data"):
        res.eta_covariates(["nope"], data=df)
    with pytest.raises(ValueError, match=r"covariates \['y'\] vary within individuals"):
        res.eta_covariates(["y"], data=df)


def test_parameter_trace_ends_at_the_estimates_and_survives_save(theo_fit, tmp_path):
    """The trace of a Newton-gear fit has the start, each refinement round, and a final row
    equal to the reported estimates; it is saved and loaded with the fit (an SVI fit's trace:
    tests/inference/test_gears.py)."""
    trace = theo_fit.parameter_trace()
    est = theo_fit.params["estimate"]
    assert list(trace["stage"]) == ["start"] + ["refine"] * theo_fit.info["refine_rounds"] + ["final"]
    assert trace["step"].iloc[0] == 0
    # tolerance: the final row is the estimate itself, computed by the same function
    np.testing.assert_allclose(trace.iloc[-1][list(est.index)].to_numpy(float), est.to_numpy(), rtol=1e-10)
    theo_fit.save(tmp_path / "fit.json")
    again = pymixnn.Results.load(tmp_path / "fit.json")
    pd.testing.assert_frame_equal(again.parameter_trace(), trace)
    assert theo_fit.plot_trace(tmp_path / "trace.png").stat().st_size > 10_000


def test_gof_and_npde_figures(theo_fit, tmp_path):
    """plot_gof with NPDE (8 panels) and with CWRES (no simulation), plot_npde."""
    assert theo_fit.plot_gof(tmp_path / "gof.png", n_sim=200).stat().st_size > 20_000
    assert theo_fit.plot_gof(tmp_path / "gof_cwres.png", npde=False).stat().st_size > 20_000
    assert theo_fit.plot_npde(tmp_path / "npde.png", n_sim=200).stat().st_size > 10_000
    table = theo_fit.npde(200, seed=3)
    assert {"pd", "npde", "pred"} <= set(table.columns)
    assert set(table.attrs["tests"]) >= {"mean", "variance", "normality", "global"}


def test_cli_writes_the_checks(tmp_path, monkeypatch, capsys):
    """`pymixnn fit ... --pcvpc --gof --npde --cwres --trace --eta-covariates` writes each file."""
    from pymixnn.cli import main

    pymixnn.datasets.load("theo").to_csv(tmp_path / "theo.csv", index=False)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "fit",
            "theo.csv",
            "--model",
            "onecpt_oral",
            "--id",
            "Id",
            "--x",
            "Dose,Time",
            "--y",
            "Concentration",
            "--covariate",
            "V=Weight",
            "--no-progress",
            "--pcvpc",
            "pc.png",
            "--gof",
            "gof.png",
            "--npde",
            "npde.csv",
            "--cwres",
            "cwres.csv",
            "--trace",
            "trace.png",
            "--eta-covariates",
            "eta.png",
            "--n-sim",
            "150",
        ]
    )
    assert code == 0, capsys.readouterr()
    for name in ("pc.png", "gof.png", "trace.png", "eta.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    npde = pd.read_csv(tmp_path / "npde.csv")
    cwres = pd.read_csv(tmp_path / "cwres.csv")
    assert len(npde) == len(cwres) == 132 - 12 and npde["npde"].notna().all()
