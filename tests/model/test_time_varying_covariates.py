"""Time-varying covariates on a dynamic model's parameters, against deSolve's wt_tv scenarios:
``ODEModel(covariates=[...])`` hands the carried-forward values to rhs by name (whatever the data's
other time-varying columns and their order); the covariate model (``covariates={"CL": [col]}``)
on a time-varying column acts record by record, in the fit and in the results; errors for a model
reading a column the data lack."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.model.dynamics.models import with_solver
from pymixnn.validation import InputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dynamics_scenarios import SCENARIOS, scenario  # noqa: E402

TOL = 1e-6  # issue 18's acceptance tolerance (relative, every observation)


def _wt_model(two: bool, linear: bool) -> pymixnn.Model:
    """IV bolus into the central compartment, CL(t) = CL * (WT(t) / 70) ^ wt_exponent in rhs."""
    names = ["CL", "V1", "Q", "V2", "wt_exponent"] if two else ["CL", "V", "wt_exponent"]

    def rhs(t, x, psi, cov):
        p = dict(zip(names, psi.unbind(-1)))
        vc = p["V1" if two else "V"]
        cl = p["CL"] * (cov["WT"] / 70.0) ** p["wt_exponent"]
        d = -cl / vc * x[..., 0]
        if not two:
            return d.unsqueeze(-1)
        flow = p["Q"] / vc * x[..., 0] - p["Q"] / p["V2"] * x[..., 1]
        return torch.stack([d - flow, flow], -1)

    return pymixnn.ODEModel(
        rhs,
        states=["central", "peripheral"] if two else ["central"],
        parameters=names,
        outputs={"cp": lambda x, psi: x[..., 0] / psi[..., 1]},
        covariates=["WT"],
        linear=linear,
    )


def _records(name: str) -> pd.DataFrame:
    records = SCENARIOS[SCENARIOS.scenario == name].drop(columns="scenario").reset_index(drop=True)
    # another time-varying column listed first: rhs must still get WT, by name
    return records.assign(AGE=30.0 + records["TIME"] / 100.0)[["AGE", *records.columns]]


@pytest.mark.parametrize("linear", [True, False])
@pytest.mark.parametrize("name", ["wt_tv_1cpt", "wt_tv_2cpt"])
def test_an_ode_reads_its_time_varying_covariate_by_name(name, linear):
    _, p, ref = scenario(name)
    two = name.endswith("2cpt")
    model = _wt_model(two, linear)
    values = {
        "CL": p.CL,
        "wt_exponent": p.wt_exponent,
        **({"V1": p.V, "Q": p.Q, "V2": p.V2} if two else {"V": p.V}),
    }
    data = pymixnn.Data.from_nonmem(_records(name), time_varying=["AGE", "WT"])
    if not linear:  # dopri5 tight enough that its own error stays well inside TOL
        model = with_solver(model, rtol=1e-10, atol=1e-12)
    pred = pymixnn.solve(model, data, params=values)["prediction"].to_numpy()
    err = np.max(np.abs(pred - ref) / np.maximum(np.abs(ref), 1e-6 * np.abs(ref).max()))
    assert err < TOL


def test_an_ode_reading_a_covariate_the_data_lack_is_an_error():
    data = pymixnn.Data.from_nonmem(_records("wt_tv_1cpt"), time_varying=["AGE"])
    with pytest.raises(
        InputError, match=r"reads the time-varying covariates \['WT'\], which the event data lack"
    ):
        pymixnn.solve(_wt_model(False, True), data, params={"CL": 3.0, "V": 25.0, "wt_exponent": 0.75})


def _simulated_wt_study(n: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """``n`` individuals with the wt_tv_1cpt regimen and sampling, each with its own weight path
    (baseline 50-100 kg, then -20%..+20% by the end); CL and V log-normal (omega2 0.09, 0.04),
    CL(t) = 3 (WT(t) / 70) ^ 0.75, proportional error 10%."""
    rng = np.random.default_rng(seed)
    base = _records("wt_tv_1cpt").drop(columns="AGE")
    frames, truth = [], {"CL": 3.0, "V": 25.0, "wt_exponent": 0.75}
    psi = {}
    for i in range(1, n + 1):
        rec = base.assign(ID=i)
        w0, drift = rng.uniform(50, 100), rng.uniform(-0.2, 0.2)
        rec["WT"] = w0 * (1 + drift * rec["TIME"] / rec["TIME"].max())
        frames.append(rec)
        psi[i] = {
            "CL": truth["CL"] * np.exp(rng.normal(0, 0.3)),
            "V": truth["V"] * np.exp(rng.normal(0, 0.2)),
            "wt_exponent": truth["wt_exponent"],
        }
    records = pd.concat(frames, ignore_index=True).astype({"DV": float})
    data = pymixnn.Data.from_nonmem(records, time_varying=["WT"])
    pred = pymixnn.solve(_wt_model(False, True), data, params=pd.DataFrame(psi).T)["prediction"].to_numpy()
    obs = (records["EVID"] == 0) & (records["MDV"] == 0)
    records.loc[obs, "DV"] = pred * (1 + 0.1 * rng.standard_normal(pred.size))
    return records, truth


@pytest.mark.slow
def test_a_time_varying_covariate_effect_is_recovered_and_both_routes_agree():
    # 60 individuals whose weights change within the study (the effect is identified within
    # individuals as well as between them). The covariate model (log CL_k = mu + beta lWT_k) and
    # the ODE with the same effect in rhs (CL (WT / 70) ^ exponent) are one model in two
    # parametrizations: the same maximum (estimates to 1%, log-likelihood to 0.05; the
    # refinement stops on a Newton decrement below 1e-3). Truth: each fixed effect within 3 SEs
    # (measured: CL 2.94 (SE 0.097), beta 0.664 (0.082), V 24.1 (0.64); 40 s per fit), each
    # variance within 30% of the simulated individuals' own (0.0629, 0.0413: RSE ~19%).
    records, _ = _simulated_wt_study(60, seed=1)
    covariate_route = pymixnn.fit(
        records.assign(lWT=np.log(records["WT"] / 70.0)).drop(columns="WT"),
        "pk1cpt_iv",
        covariates={"CL": ["lWT"]},
        error="proportional",
        seed=0,
        progress=False,
    )
    p = covariate_route.params
    for name, value in (("CL", 3.0), ("V", 25.0), ("beta_lWT(CL)", 0.75)):
        assert abs(p.loc[name, "estimate"] - value) < 3 * p.loc[name, "se"], name
    omega2 = np.diag(covariate_route.omega)
    np.testing.assert_allclose(omega2, [0.0629, 0.0413], rtol=0.3)
    assert covariate_route.run.fallbacks.get("ode_failures", 0) == 0

    model = _wt_model(False, True).replace(
        random=["CL", "V"],
        transforms={"CL": "log", "V": "log", "wt_exponent": "none"},
        error="proportional",
        init={"CL": 3.0, "V": 25.0, "wt_exponent": 0.0},
    )
    ode_route = pymixnn.fit(
        pymixnn.Data.from_nonmem(records, time_varying=["WT"]), model, seed=0, progress=False
    )
    q = ode_route.params
    for a, b in (("CL", "CL"), ("V", "V"), ("beta_lWT(CL)", "wt_exponent")):
        assert q.loc[b, "estimate"] == pytest.approx(p.loc[a, "estimate"], rel=0.01), a
    np.testing.assert_allclose(np.diag(ode_route.omega), omega2, rtol=0.01)
    assert abs(ode_route.loglik - covariate_route.loglik) < 0.05


# ---- the covariate model on a time-varying covariate -----------------------------------------------
# covariates={"CL": ["lWT"]} with lWT = log(WT / 70) time-varying: log CL_k = mu + beta lWT_k, the
# wt_tv scenarios' CL (WT / 70) ^ 0.75 with beta = 0.75 and mu = log CL. Checked against deSolve in
# both places that evaluate a fit: the inference's Program (one psi row per record) and the results'
# FittedModel (predictions, a new regimen).


def _lwt_data(name: str) -> pymixnn.Data:
    records = SCENARIOS[SCENARIOS.scenario == name].drop(columns="scenario").reset_index(drop=True)
    records = records.assign(
        lWT=np.log(records["WT"] / 70.0),
        DV=np.where(records["EVID"] == 0, 1.0 + np.arange(len(records)), 0.0),
    )  # any DV
    return pymixnn.Data.from_nonmem(records, time_varying=["lWT"])


def _natural(name: str) -> dict[str, float]:
    _, p, _ = scenario(name)
    if name.endswith("2cpt"):
        return {"CL": p.CL, "V1": p.V, "Q": p.Q, "V2": p.V2}
    return {"CL": p.CL, "V": p.V}


def _problem(name: str):
    from pymixnn.problem import NLME

    model = "pk2cpt_iv" if name.endswith("2cpt") else "pk1cpt_iv"
    return NLME(_lwt_data(name), model, covariates={"CL": ["lWT"]}, random=["CL"])


@pytest.mark.parametrize("name", ["wt_tv_1cpt", "wt_tv_2cpt"])
def test_the_covariate_model_on_a_time_varying_covariate_in_the_program_matches_desolve(name):
    from pymixnn.inference.program import Program
    from pymixnn.model import transforms as tr

    _, _, ref = scenario(name)
    problem = _problem(name)
    assert problem.design.names == ["beta_lWT(CL)"]
    program = Program(
        problem.model, problem.data, problem.design, device=torch.device("cpu"), dtype=torch.float64
    )
    assert program.D is not None and program.D.shape[-1] == 1
    lay = program.layout
    theta = torch.zeros(lay.size, dtype=torch.float64)
    natural = _natural(name)
    mu = [tr.inverse_scalar(problem.model.transforms[p], natural[p]) for p in problem.model.parameters]
    theta[lay.beta] = 0.75
    theta[lay.mu] = torch.tensor(mu, dtype=torch.float64) + (0.75 * program.z_center) @ program.S  # centring
    np.testing.assert_allclose(program.mu_uncentred(theta).numpy(), mu, rtol=1e-12)
    eta = torch.zeros(1, len(problem.model.random), dtype=torch.float64)
    phi = program.record_phi(theta, program.individual_phi(theta, eta, None), None)
    assert phi.shape[-2] == problem.data.events.padded()["time"].shape[1]  # one row per record
    f = program.prediction(program.psi(phi), None)[0][program.mask[0]].numpy()
    err = np.max(np.abs(f - ref) / np.maximum(np.abs(ref), 1e-6 * np.abs(ref).max()))
    assert err < TOL


def _results_at_truth(name: str):
    from pymixnn.compare.translation import external_results, table_row
    from pymixnn.results.external import ExternalFit

    problem = _problem(name)
    natural = _natural(name)
    names = list(problem.model.parameters)
    mu = np.log([natural[p] for p in names])
    ext = ExternalFit(
        engine="truth",
        table=[table_row(p, "fixed", p, natural[p], 0.01, "log") for p in names],
        mu=mu,
        beta=np.array([0.75]),
        omega=np.diag([0.04]),
        error={"a": 0.1},
        psi_map=np.array([[natural[p] for p in names]]),
        eta_map=np.zeros((1, 1)),
        loglik=float("nan"),
        loglik_method="none",
        seconds=0.0,
        se_method="none",
    )
    return external_results(problem, ext)


@pytest.mark.parametrize("name", ["wt_tv_1cpt", "wt_tv_2cpt"])
def test_the_covariate_model_on_a_time_varying_covariate_in_the_results_matches_desolve(name):
    _, _, ref = scenario(name)
    res = _results_at_truth(name)
    rel = lambda f: np.max(np.abs(f - ref) / np.maximum(np.abs(ref), 1e-6 * np.abs(ref).max()))  # noqa: E731
    for level in ("population", "individual"):
        assert rel(res.evaluator.predict_rows(level=level)) < TOL
    # the same records as a new regimen (a DataFrame): predict() and the simulation's typical curve
    assert rel(res.predict(_lwt_records_frame(name), level="population")["prediction"].to_numpy()) < TOL
    sim = res.simulate(_lwt_records_frame(name), times=[2.0, 14.0, 41.0], n_draws=20)
    typical = sim["population"].to_numpy()
    at = [list(res.data.x[:, 0]).index(t) for t in (2.0, 14.0, 41.0)]  # observation times
    np.testing.assert_allclose(typical, ref[at], rtol=TOL)


def _lwt_records_frame(name: str) -> pd.DataFrame:
    records = SCENARIOS[SCENARIOS.scenario == name].drop(columns="scenario").reset_index(drop=True)
    return records.assign(
        lWT=np.log(records["WT"] / 70.0),
        DV=np.where(records["EVID"] == 0, 1.0 + np.arange(len(records)), 0.0),
    )


def test_fit_on_nonmem_columns_takes_a_covariate_changing_within_an_individual_as_time_varying():
    from pymixnn.data.varying import covariate_roles
    from pymixnn.problem import NLME

    df = _lwt_records_frame("wt_tv_1cpt").assign(SEX=1.0)
    df = pd.concat([df, df.assign(ID=2, SEX=0.0, lWT=df["lWT"] + 0.1)], ignore_index=True)
    assert covariate_roles(df, "id", ["lWT", "SEX"]) == {"covariates": ["SEX"], "time_varying": ["lWT"]}
    # an ODE's own covariates are time-varying whatever their values
    assert covariate_roles(df, "ID", ["SEX"], reads=["SEX"]) == {"covariates": None, "time_varying": ["SEX"]}
    problem = NLME(df, "pk1cpt_iv", covariates={"CL": ["lWT"], "V": ["SEX"]})
    assert problem.data.events.time_varying == ["lWT"] and problem.data.covariate_cols == ["SEX"]
    assert problem.design.names == ["beta_lWT(CL)", "beta_SEX(V)"]
    first = df.groupby("ID")["lWT"].first().to_numpy()  # the design row: the first record's value
    np.testing.assert_allclose(problem.design.matrix[:, 0], first)


def test_individual_fits_of_a_time_varying_covariate_model(tmp_path, monkeypatch):
    # the plotted individual curve is the record-by-record prediction (deSolve's at the records)
    from pymixnn.results import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    res = _results_at_truth("wt_tv_1cpt")
    res.plot_individuals(tmp_path / "ind.png")
    line = figures[0].axes[0].lines[0]
    t, f = line.get_xdata(), line.get_ydata()
    _, _, ref = scenario("wt_tv_1cpt")
    times = res.data.x[:, 0]
    k = int(np.argmin(np.abs(t - 41.0)))  # a grid point near an observation without a change
    assert abs(t[k] - 41.0) < 0.5 and np.isfinite(f).all()
    assert f[k] == pytest.approx(np.interp(t[k], times, ref), rel=0.05)


@pytest.mark.filterwarnings("ignore:fit did not converge")
def test_a_time_varying_covariate_fit_saves_and_loads(tmp_path):
    # a short fit (30 SVI steps, no refinement: the numbers are not the point): the loaded results
    # rebuild the record-by-record effect from the saved events and design
    records, _ = _simulated_wt_study(20, seed=2)
    df = records.assign(lWT=np.log(records["WT"] / 70.0)).drop(columns="WT")
    res = pymixnn.fit(
        df,
        "pk1cpt_iv",
        covariates={"CL": ["lWT"]},
        error="proportional",
        seed=0,
        progress=False,
        max_steps=30,
        refine=False,
    )
    loaded = pymixnn.Results.load(res.save(tmp_path / "tv.json"))
    assert loaded.data.events.time_varying == ["lWT"]
    for level in ("population", "individual"):
        np.testing.assert_array_equal(loaded.predict(level=level), res.predict(level=level))
    # the effect's estimate is saved with the fit
    assert float(loaded.params.loc["beta_lWT(CL)", "estimate"]) != 0.0
