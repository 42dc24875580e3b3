"""Results of a fit on NONMEM event data (issue 18): predictions at new dosing records, a new regimen
simulated on a time grid, its plot, dose marks on the individual plots, and save / load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pymixnn
from pymixnn.model.dynamics.models import pk_model
from pymixnn.model.named import named

TIMES = np.array([0.0, 1.0, 6.0, 11.99, 13.0, 23.99, 25.0, 30.0, 36.0])


def _theo_records() -> pd.DataFrame:
    df = pymixnn.datasets.load("theo")
    dose = df.groupby("Id", as_index=False).first()[["Id", "Dose", "Weight"]].assign(TIME=0.0, EVID=1)
    obs = (
        df[["Id", "Time", "Concentration", "Weight"]]
        .rename(columns={"Time": "TIME", "Concentration": "DV"})
        .assign(EVID=0)
    )
    nm = pd.concat([dose.rename(columns={"Dose": "AMT"}), obs]).sort_values(
        ["Id", "TIME", "EVID"], ascending=[True, True, False], kind="stable"
    )
    nm["AMT"] = nm["AMT"].fillna(0)
    return nm.reset_index(drop=True)


@pytest.fixture(scope="module")
def theo():
    nm = _theo_records()
    data = pymixnn.Data.from_nonmem(nm, id="Id", covariates=["Weight"])
    res = pymixnn.fit(
        data, "pk1cpt_oral", covariates={"V": ["Weight"]}, seed=0, progress=False, max_steps=200
    )
    return res, nm


def _regimen(res, ids) -> pd.DataFrame:
    """320 mg every 12 h, three doses (ADDL 2), for ``ids`` with their fitted weights (70 kg if new)."""
    weight = res.data.covariates["Weight"]
    return pd.DataFrame(
        {
            "Id": ids,
            "TIME": 0.0,
            "AMT": 320.0,
            "EVID": 1,
            "ADDL": 2,
            "II": 12.0,
            "Weight": [float(weight.get(i, 70.0)) for i in ids],
        }
    )


def _with_sample(reg: pd.DataFrame) -> pd.DataFrame:
    """The regimen with one sample per individual: pymixnn.solve reads records through
    Data.from_nonmem, which needs an observation (the times= grid is what it predicts)."""
    sample = reg.assign(TIME=36.0, AMT=0.0, EVID=0, ADDL=0, II=0.0, DV=1.0)
    return pd.concat([reg.assign(DV=0.0), sample]).sort_values(["Id", "TIME"], kind="stable")


def _population_params(res, weights: pd.Series) -> pd.DataFrame:
    """Typical parameters by hand from the reported estimates: V = h(mu_V) * exp(beta * Weight)."""
    est = res.params["estimate"]
    return pd.DataFrame(
        {
            "ka": est["ka"],
            "CL": est["CL"],
            "V": est["V"] * np.exp(est["beta_Weight(V)"] * weights.to_numpy(dtype=float)),
        },
        index=weights.index,
    )


def test_predict_at_new_event_records(theo):
    res, nm = theo
    new = nm[nm["Id"].isin([2, 5, 7])].copy()
    new.loc[new["EVID"] == 0, "TIME"] += 0.5  # other sampling times
    new = pd.concat([new, new[new["EVID"] == 1].assign(TIME=24.0), new[new["EVID"] == 0].assign(TIME=30.0)])
    new = new.sort_values(["Id", "TIME"], kind="stable")
    weights = new.groupby("Id")["Weight"].first()

    pop = res.predict(new, level="population")
    assert list(pop.columns) == ["Id", "time", "endpoint", "prediction"]
    assert (pop["endpoint"] == "cp").all() and len(pop) == int((new["EVID"] == 0).sum())
    expected = pymixnn.solve("pk1cpt_oral", new, params=_population_params(res, weights), id="Id")
    np.testing.assert_allclose(pop["prediction"].to_numpy(), expected["prediction"].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(pop["time"].to_numpy(), expected["time"].to_numpy())

    ind = res.predict(new, level="individual")
    expected = pymixnn.solve("pk1cpt_oral", new, params=res.individual_params().loc[[2, 5, 7]], id="Id")
    np.testing.assert_allclose(ind["prediction"].to_numpy(), expected["prediction"].to_numpy(), rtol=1e-12)
    # the same from a Data, and without DV: every EVID 0 record is a request
    data = pymixnn.Data.from_nonmem(new, id="Id", covariates=["Weight"])
    np.testing.assert_array_equal(res.predict(data, level="individual")["prediction"], ind["prediction"])
    no_dv = res.predict(new.drop(columns="DV"), level="population")
    np.testing.assert_array_equal(no_dv["prediction"], pop["prediction"])
    # the fitted records as new events: the fitted individual predictions
    again = res.predict(nm, level="individual")
    np.testing.assert_allclose(
        np.sort(again["prediction"]), np.sort(res.predict(level="individual").to_numpy()), rtol=1e-12
    )
    # a new individual: with its observations, its conditional mode at the fitted parameters
    # (saemix's saemixPredictNewdata), nearer its own data than the population curve; without
    # them, population only (nlme's level = 1 needs known groups)
    stranger = new[new["Id"] == 2].assign(Id=99)
    pop99 = res.predict(stranger, level="population")
    ind99 = res.predict(stranger, level="individual")
    assert np.isfinite(pop99["prediction"]).all()
    dv = stranger.loc[stranger["EVID"] == 0, "DV"].to_numpy()  # the records' order (one individual)
    err = lambda p: float(np.sqrt(np.mean((p["prediction"].to_numpy() - dv) ** 2)))  # noqa: E731
    assert err(ind99) < err(pop99)
    with pytest.raises(ValueError, match=r"ids \[99\], which were not in the fit"):
        res.predict(stranger.drop(columns="DV"), level="individual")
    with pytest.raises(ValueError, match="Weight"):
        res.predict(new.drop(columns="Weight"))


def test_regimen_three_doses_every_12_hours(theo):
    res, _ = theo
    reg = _regimen(res, [1, 4, 99])
    sim = res.simulate(reg, times=TIMES, n_draws=400, seed=3)
    assert list(sim.columns) == [
        "Id",
        "time",
        "endpoint",
        "population",
        "population_median",
        "population_lower",
        "population_upper",
        "individual",
        "individual_lower",
        "individual_upper",
    ]
    assert sim.attrs["individual_interval"] == "posterior" and len(sim) == 3 * len(TIMES)
    after = sim[sim["time"] > 0]
    assert (after["population_lower"] < after["population_median"]).all()
    assert (after["population_median"] < after["population_upper"]).all()
    # typical curve (eta = 0) = solve at the population parameters
    weights = reg.set_index("Id")["Weight"]
    typical = pymixnn.solve(
        "pk1cpt_oral", _with_sample(reg), params=_population_params(res, weights), id="Id", times=TIMES
    )
    np.testing.assert_allclose(sim["population"], typical["prediction"], rtol=1e-12)
    # the trough before dose 3: inside the band, near the typical curve, above the trough before dose 2
    for i in (1, 4, 99):
        s = sim[sim["Id"] == i].set_index("time")
        trough = s.loc[23.99]
        assert trough["population_lower"] < trough["population_median"] < trough["population_upper"]
        assert abs(trough["population_median"] / trough["population"] - 1) < 0.25
        assert trough["population_median"] > s.loc[11.99, "population_median"]
    # a fitted individual: its MAP curve = solve at its MAP parameters, inside its own interval
    known = sim[sim["Id"].isin([1, 4])]
    mine = pymixnn.solve(
        "pk1cpt_oral",
        _with_sample(reg[reg["Id"] != 99]),
        res.individual_params().loc[[1, 4]],
        times=TIMES,
        id="Id",
    )
    np.testing.assert_allclose(known["individual"], mine["prediction"], rtol=1e-12)
    k = known[known["time"] > 0]
    assert (k["individual_lower"] < k["individual"]).all() and (k["individual"] < k["individual_upper"]).all()
    assert sim.loc[sim["Id"] == 99, ["individual", "individual_lower", "individual_upper"]].isna().all().all()
    # reproducible; the default grid: 200 times from 0 to the last dose + one interval (24 + 12)
    np.testing.assert_array_equal(
        res.simulate(reg, times=TIMES, n_draws=400, seed=3)["population_median"], sim["population_median"]
    )
    grid = res.simulate(reg.iloc[:1], n_draws=50)["time"].to_numpy()
    assert len(grid) == 200 and grid[0] == 0.0 and grid[-1] == pytest.approx(36.0)
    # the replicate simulation of the fitted data is unchanged
    assert set(res.simulate(2, seed=0).columns) >= {"rep", "y_sim"}


def test_regimen_plot_and_dose_marks(theo, tmp_path):
    res, _ = theo
    png = res.plot_regimen(_regimen(res, [1, 99]), tmp_path / "regimen.png", n_draws=100)
    assert png.exists() and png.stat().st_size > 10_000
    ind = res.plot_individuals(tmp_path / "individuals.png", ids=[1, 2, 3])
    assert ind.stat().st_size > 10_000
    with pytest.raises(ValueError, match="not in the regimen"):
        res.plot_regimen(_regimen(res, [1]), tmp_path / "x.png", ids=[5], n_draws=10)


def test_save_and_load_keep_the_event_records(theo, tmp_path):
    res, nm = theo
    path = res.save(tmp_path / "theo_events.json")
    record = json.loads(path.read_text())
    assert record["model"]["dynamics"]["kind"] == "compartment"
    loaded = pymixnn.Results.load(path)
    e0, e1 = res.data.events, loaded.data.events
    for field in (
        "ids",
        "individual",
        "time",
        "evid",
        "amt",
        "cmt",
        "rate",
        "ii",
        "ss",
        "endpoint",
        "row",
        "addl",
    ):
        np.testing.assert_array_equal(getattr(e0, field), getattr(e1, field))
    np.testing.assert_array_equal(loaded.data.x, res.data.x)
    np.testing.assert_array_equal(loaded.data.user_order, res.data.user_order)
    for level in ("population", "individual"):
        np.testing.assert_allclose(loaded.predict(level=level), res.predict(level=level), rtol=1e-12)
        np.testing.assert_allclose(
            loaded.predict(nm, level=level)["prediction"],
            res.predict(nm, level=level)["prediction"],
            rtol=1e-12,
        )
    reg = _regimen(res, [1])
    np.testing.assert_allclose(
        loaded.simulate(reg, times=TIMES, n_draws=50).iloc[:, 3:].to_numpy(),
        res.simulate(reg, times=TIMES, n_draws=50).iloc[:, 3:].to_numpy(),
        rtol=1e-12,
    )
    # the model passed back (as a custom or ODE model must be) is checked and bound to the records
    again = pymixnn.Results.load(path, model=named("pk1cpt_oral"))
    np.testing.assert_allclose(again.predict(level="individual"), res.predict(level="individual"), rtol=1e-12)
    # an ODE fit's model is not saved: load asks for it
    record["model"]["dynamics"] = {"kind": "ode"}
    ode = tmp_path / "ode.json"
    ode.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="ODEModel"):
        pymixnn.Results.load(ode)


@pytest.mark.filterwarnings("ignore:fit did not converge")
def test_save_and_load_with_dosing_parameters_and_addl(tmp_path):
    """A model with tlag and F, ADDL doses and time-varying records: identical after load."""
    nm = _theo_records()
    nm = nm[nm["Id"] <= 6].copy()
    # second dose by ADDL at 12 h for half the individuals, then more samples
    nm.loc[(nm["EVID"] == 1) & (nm["Id"] <= 3), ["ADDL", "II"]] = [1, 12.0]
    nm[["ADDL", "II"]] = nm[["ADDL", "II"]].fillna(0)
    data = pymixnn.Data.from_nonmem(nm, id="Id")
    assert data.events.counts()["addl_doses"] == 3
    model = pk_model("pk1cpt_oral", tlag=True, F="Fbio", random=["CL", "V"], init={"Fbio": 0.8})
    res = pymixnn.fit(data, model, seed=1, progress=False, max_steps=60, refine=False)
    loaded = pymixnn.Results.load(res.save(tmp_path / "tlag.json"))
    assert loaded.model.parameters == ("ka", "CL", "V", "tlag", "Fbio")
    assert loaded.data.events.counts() == res.data.events.counts()
    np.testing.assert_allclose(
        loaded.predict(level="individual"), res.predict(level="individual"), rtol=1e-12
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:fit did not converge")
def test_ode_model_fit_loads_with_its_model(tmp_path):
    """An ODEModel is not saved: load names it; given back, predictions and regimens are identical."""
    import torch

    def rhs(t, x, psi, cov):
        ka, cl, v = psi[..., 0:1], psi[..., 1:2], psi[..., 2:3]
        return torch.cat([-ka * x[..., 0:1], ka * x[..., 0:1] - cl / v * x[..., 1:2]], -1)

    model = pymixnn.ODEModel(
        rhs,
        states=["depot", "central"],
        parameters=["ka", "CL", "V"],
        outputs={"cp": lambda x, psi: x[..., 1] / psi[..., 2]},
        linear=True,
        start={"ka": 1.5, "CL": 2.8, "V": 30.0},
        random=["CL", "V"],
    )
    nm = _theo_records()
    data = pymixnn.Data.from_nonmem(nm[nm["Id"] <= 6], id="Id")
    res = pymixnn.fit(data, model, seed=0, progress=False, max_steps=30, refine=False)
    path = res.save(tmp_path / "ode.json")
    with pytest.raises(ValueError, match="ODEModel"):
        pymixnn.Results.load(path)
    loaded = pymixnn.Results.load(path, model=model)
    np.testing.assert_allclose(
        loaded.predict(level="individual"), res.predict(level="individual"), rtol=1e-12
    )
    reg = pd.DataFrame({"Id": [1], "TIME": 0.0, "AMT": 320.0, "EVID": 1, "ADDL": 2, "II": 12.0})
    a = res.simulate(reg, times=TIMES, n_draws=50)
    b = loaded.simulate(reg, times=TIMES, n_draws=50)
    np.testing.assert_allclose(a.iloc[:, 3:].to_numpy(), b.iloc[:, 3:].to_numpy(), rtol=1e-12)
    assert (a["individual_lower"].iloc[1:] < a["individual_upper"].iloc[1:]).all()
