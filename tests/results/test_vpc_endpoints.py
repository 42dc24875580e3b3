"""The visual predictive check per endpoint: event data with a concentration ``cp`` (Gaussian,
proportional error) and a Poisson ``count`` are binned, summarised and drawn endpoint by endpoint,
each by the statistic of its own family, and the simulated data sets draw each observation from
its own endpoint's law.

The fast tests use the simulator's truth as the fit (a Results holding an ExternalFit with the
true population parameters, omega and residual error, and each individual's true parameters as
its "MAP" ones): no optimisation runs, and at the truth the VPC is calibrated by construction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pymixnn
from pymixnn.compare.translation import external_results, table_row
from pymixnn.results.external import ExternalFit
from pymixnn.results.plots import vpc_figure
from pymixnn.simulate.pkpd import PKPD_TRUTH, _cp

N_IND = 36
INIT = {"ka": 1.0, "CL": 0.135, "V": 8.0, "E0": 20.0, "IC50": 1.2}


def _count(cp, psi):  # log-rate log(E0 IC50 / (IC50 + cp)); psi: ka, CL, V, E0, IC50
    return torch.log(psi[..., 3]) + torch.log(psi[..., 4]) - torch.log(psi[..., 4] + cp)


def _model():
    return pymixnn.Model.named("pk1cpt_oral", parameters=["E0", "IC50"], outputs={"count": _count}, init=INIT)


def _results_at(df, fixed: dict, omega2: dict, b_cp: float, **data_kw):
    """A Results whose parameters are ``fixed`` (natural scale), ``omega2`` and ``b.cp``, with the
    simulator's individual parameters as the individual estimates."""
    data = pymixnn.Data.from_nonmem(df, **data_kw)
    problem = pymixnn.NLME(data, _model(), error={"cp": "proportional"}, observation={"count": "poisson"})
    model, obs = problem.model, problem.observation
    names = list(model.parameters)
    psi = df.attrs["psi"].loc[list(data.ids), names].to_numpy()
    mu = np.log([fixed[p] for p in names])
    rows = [table_row(p, "fixed", p, fixed[p], 0.01 * fixed[p], "log") for p in names]
    rows += [table_row(f"omega2.{p}", "omega", p, omega2[p], 0.01, "log") for p in names]
    rows.append(table_row("b.cp", "sigma", "b.cp", b_cp, 0.001, "log"))
    natural = obs.natural(torch.log(torch.tensor([b_cp], dtype=torch.float64)), model)
    ext = ExternalFit(
        engine="truth",
        table=rows,
        mu=mu,
        beta=np.zeros(0),
        omega=np.diag([omega2[p] for p in names]),
        error={k: float(v) for k, v in natural.items()},  # as the observation family takes them
        psi_map=psi,
        eta_map=np.log(psi) - mu,
        loglik=float("nan"),
        loglik_method="none",
        seconds=0.0,
        se_method="none",
    )
    return external_results(problem, ext)


@pytest.fixture(scope="module")
def records():
    return pymixnn.simulate.simulate_pkpd(N_IND, design="poisson", seed=5)


@pytest.fixture(scope="module")
def truth_fit(records):
    t = PKPD_TRUTH["poisson"]
    return _results_at(records, t["fixed"], t["omega2"], t["error"]["b.cp"])


@pytest.fixture(scope="module")
def table(truth_fit):
    return truth_fit.vpc(n_sim=200, seed=1)


def test_the_table_has_a_block_per_endpoint_with_its_own_statistic(truth_fit, table):
    assert list(table.columns) == [
        "endpoint",
        "bin",
        "time",
        "time_min",
        "time_max",
        "n_obs",
        "statistic",
        "observed",
        "sim_median",
        "sim_lower",
        "sim_upper",
        "outside",
    ]
    assert table.attrs["endpoints"] == ["cp", "count"]
    stats = table.groupby("endpoint")["statistic"].unique()
    assert list(stats["cp"]) == ["p10", "p50", "p90"]
    assert list(stats["count"]) == ["mean"]
    # bins per endpoint: each endpoint's own sampling times (8 for cp, 10 for the counts)
    t = PKPD_TRUTH["poisson"]
    cp, count = table[table.endpoint == "cp"], table[table.endpoint == "count"]
    assert sorted(set(cp["time"])) == list(map(float, t["cp_times"]))
    assert sorted(set(count["time"])) == list(map(float, t["pd_times"]))
    assert (cp["n_obs"] == N_IND).all() and (count["n_obs"] == N_IND).all()
    assert len(table) == 3 * 8 + 10


def test_each_endpoints_observed_statistic_is_computed_from_its_own_rows(records, table):
    # straight from the NONMEM records, not through pymixnn.Data: observations of each endpoint
    obs = records[records["EVID"] == 0]
    for row in table.itertuples():
        dv = obs[(obs["DVID"] == row.endpoint) & (obs["TIME"] == row.time)]["DV"].to_numpy()
        assert dv.size == row.n_obs
        if row.endpoint == "count":
            assert row.statistic == "mean"
            assert row.observed == pytest.approx(dv.mean(), rel=1e-14)  # summation order only
        else:
            assert row.observed == np.percentile(dv, int(row.statistic[1:]))  # exact


def test_at_the_truth_the_observed_statistics_lie_in_the_simulated_band(table):
    # With the true parameters each observed statistic is one draw from the law the 90% band is
    # taken from: about 10% of the rows fall outside by chance. 34 rows (correlated: the same
    # individuals in every bin); per endpoint at most 30% outside: for independent bins
    # P(>= 4 of 10 outside) = 0.013, P(>= 8 of 24 outside) = 0.004 (seeds fixed: deterministic).
    for endpoint, sub in table.groupby("endpoint"):
        assert sub["outside"].mean() <= 0.3, (endpoint, sub[sub["outside"]])
    assert (table["sim_lower"] <= table["sim_median"]).all()
    assert (table["sim_median"] <= table["sim_upper"]).all()


def test_a_wrong_count_model_shows_in_the_count_endpoint_only(records):
    # E0 doubled: every bin's mean count is far above the observed one; cp is untouched
    t = PKPD_TRUTH["poisson"]
    wrong = _results_at(records, dict(t["fixed"], E0=2 * t["fixed"]["E0"]), t["omega2"], t["error"]["b.cp"])
    table = wrong.vpc(n_sim=100, seed=1)
    count, cp = table[table.endpoint == "count"], table[table.endpoint == "cp"]
    assert count["outside"].all() and (count["observed"] < count["sim_lower"]).all()
    assert cp["outside"].mean() <= 0.3


def test_simulations_draw_each_observation_from_its_own_endpoints_law(records, truth_fit):
    # at the individuals' own (true) parameters: cp ~ N(cp, (0.1 cp)^2) and count ~ Poisson with
    # rate E0 IC50 / (IC50 + cp), cp by the simulator's closed form (not pymixnn's engine)
    d = truth_fit.data
    sims = truth_fit.evaluator.simulated(400, seed=3, level="individual")
    code = d.aux["endpoint"].astype(int)
    psi = records.attrs["psi"].loc[d.frame[d.id_col].to_numpy()]
    t = d.frame["TIME"].to_numpy()
    cp = _cp(100.0, psi["ka"].to_numpy(), psi["CL"].to_numpy(), psi["V"].to_numpy(), t)
    rate = psi["E0"].to_numpy() * psi["IC50"].to_numpy() / (psi["IC50"].to_numpy() + cp)
    is_cp, is_count = code == 0, code == 1
    counts = sims[:, is_count]
    assert np.array_equal(counts, np.round(counts)) and (counts >= 0).all()
    z_count = (counts.mean(0) - rate[is_count]) / np.sqrt(rate[is_count] / sims.shape[0])
    assert np.abs(z_count).max() < 4.5  # 360 rows of standard normal z: max |z| ~ 3
    assert counts.var(0).mean() / rate[is_count].mean() == pytest.approx(1.0, abs=0.05)  # Poisson
    conc = sims[:, is_cp]
    assert not np.array_equal(conc, np.round(conc))
    rel = conc / cp[is_cp] - 1
    assert rel.mean() == pytest.approx(0.0, abs=0.003)
    assert rel.std() == pytest.approx(PKPD_TRUTH["poisson"]["error"]["b.cp"], rel=0.02)


def test_the_plot_has_one_panel_per_endpoint(truth_fit, table, tmp_path):
    fig = vpc_figure(truth_fit, table)
    shown = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in shown] == ["cp: p10, p50, p90", "count: mean"]
    assert [ax.get_ylabel() for ax in shown] == ["cp (percentiles)", "count (mean)"]
    png = truth_fit.plot_vpc(tmp_path / "vpc.png", n_sim=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_single_endpoint_keeps_todays_table(records):
    # only the cp records: one endpoint, no endpoint column, the Gaussian percentiles
    df = records[(records["DVID"] != "count") | (records["EVID"] == 1)].copy()
    df.attrs = records.attrs
    t = PKPD_TRUTH["poisson"]
    data = pymixnn.Data.from_nonmem(df)
    assert data.events.endpoints == ("cp",)
    model = pymixnn.Model.named("pk1cpt_oral", init={p: INIT[p] for p in ("ka", "CL", "V")})
    problem = pymixnn.NLME(data, model, error="proportional")
    names = list(model.parameters)
    mu = np.log([t["fixed"][p] for p in names])
    psi = df.attrs["psi"].loc[list(data.ids), names].to_numpy()
    ext = ExternalFit(
        engine="truth",
        table=[table_row(p, "fixed", p, t["fixed"][p], 0.01, "log") for p in names],
        mu=mu,
        beta=np.zeros(0),
        omega=np.diag([t["omega2"][p] for p in names]),
        error={"b": t["error"]["b.cp"]},
        psi_map=psi,
        eta_map=np.log(psi) - mu,
        loglik=math.nan,
        loglik_method="none",
        seconds=0.0,
        se_method="none",
    )
    table = external_results(problem, ext).vpc(n_sim=50, seed=1)
    assert "endpoint" not in table.columns and "endpoints" not in table.attrs
    assert list(table.columns)[0] == "bin" and set(table["statistic"]) == {"p10", "p50", "p90"}
    assert len(table) == 3 * 8


def test_censored_cp_adds_the_fraction_below_the_limit_to_cp_only(records):
    # cp below 4 flagged BLQ (DV holding the limit): the cp endpoint gets "below limit", counted
    # from its own rows, and its simulations are set to its limit; the counts are untouched
    df = records.copy()
    df.attrs = records.attrs
    blq = (df["DVID"] == "cp") & (df["EVID"] == 0) & (df["DV"] < 4.0)
    df["BLQ"] = blq.astype(int)
    df.loc[blq, "DV"] = 4.0
    t = PKPD_TRUTH["poisson"]
    res = _results_at(df, t["fixed"], t["omega2"], t["error"]["b.cp"], censoring="BLQ")
    table = res.vpc(n_sim=100, seed=1)
    stats = table.groupby("endpoint")["statistic"].unique()
    assert list(stats["cp"]) == ["p10", "p50", "p90", "below limit"] and list(stats["count"]) == ["mean"]
    below = table[table["statistic"] == "below limit"].set_index("time")["observed"]
    obs = df[df["EVID"] == 0]
    expected = obs[obs["DVID"] == "cp"].groupby("TIME")["BLQ"].mean()
    np.testing.assert_array_equal(below.to_numpy(), expected.loc[below.index].to_numpy())
    percentiles = table[table["statistic"].isin(["p10", "p50", "p90"])]
    assert (percentiles["sim_lower"] >= 4.0).all() and (percentiles["sim_lower"] == 4.0).any()
    assert table[table["endpoint"] == "count"]["sim_lower"].min() < 4.0  # counts are not clipped
    assert table[table["statistic"] == "below limit"]["outside"].mean() <= 0.3
    fig = vpc_figure(res, table)
    assert [ax.get_title() for ax in fig.axes if ax.axison] == [
        "cp: p10, p50, p90",
        "cp: below limit",
        "count: mean",
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")  # 30 steps: the fit reports no convergence
def test_a_pymixnn_fit_checks_each_endpoint(records, table, tmp_path):
    # a short fit from the truth (the fit's own parameter vector, law draws and error block in
    # place of the truth's): the same observed statistics, simulations from the fitted parameters
    res = pymixnn.fit(
        pymixnn.Data.from_nonmem(records),
        _model(),
        error={"cp": "proportional"},
        observation={"count": "poisson"},
        max_steps=30,
        refine=False,
        is_samples=50,
        seed=0,
        progress=False,
    )
    fitted = res.vpc(n_sim=200, seed=1)
    assert list(fitted.columns) == list(table.columns)
    assert fitted["observed"].equals(table["observed"])  # the data's statistics, whatever the fit
    assert not fitted["sim_median"].equals(table["sim_median"])
    for endpoint, sub in fitted.groupby("endpoint"):
        assert sub["outside"].mean() <= 0.3, (endpoint, sub[sub["outside"]])
    assert len(vpc_figure(res, fitted).axes) == 2


def test_residuals_name_each_rows_endpoint_and_use_its_law(records, truth_fit):
    # at the truth with the simulator's own individual parameters as the individual estimates:
    # IWRES of a concentration is (y - f) / (b f) (proportional error), of a count the Pearson
    # residual (y - mu) / sqrt(mu) (Poisson); exact up to round-off
    res = truth_fit.residuals()
    assert res.columns[1] == "endpoint" and set(res["endpoint"]) == {"cp", "count"}
    cp, count = res[res["endpoint"] == "cp"], res[res["endpoint"] == "count"]
    b = PKPD_TRUTH["poisson"]["error"]["b.cp"]
    np.testing.assert_allclose(cp["iwres"], (cp["DV"] - cp["ipred"]) / (b * cp["ipred"]), rtol=1e-10)
    np.testing.assert_allclose(
        count["iwres"], (count["DV"] - count["ipred"]) / np.sqrt(count["ipred"]), rtol=1e-10
    )
    assert len(cp) + len(count) == len(records[records["EVID"] == 0])


def test_individual_fits_have_a_panel_per_endpoint(truth_fit, tmp_path, monkeypatch):
    from pymixnn.results import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    truth_fit.plot_individuals(tmp_path / "ind.png", ids=[1, 2])
    titles = [ax.get_title() for ax in figures[0].axes if ax.get_title()]
    assert titles == ["ID 1, cp", "ID 1, count", "ID 2, cp", "ID 2, count"]
    # each panel's points are its own endpoint's observations
    counts = [len(ax.collections[0].get_offsets()) for ax in figures[0].axes if ax.get_title()]
    res = truth_fit.residuals()
    expected = [
        int(((res["ID"] == i) & (res["endpoint"] == e)).sum()) for i in (1, 2) for e in ("cp", "count")
    ]
    assert counts == expected


def test_event_predictions_take_each_endpoints_own_mean(truth_fit, records):
    # predict() on event records of a fit with a Gaussian cp and a Poisson count endpoint: each
    # record's E[y] by its own endpoint's family (this raised KeyError 'endpoint' before)
    new = records[records["ID"] <= 3]
    mean = truth_fit.predict(new, level="population")
    linear = truth_fit.predict(new, level="population", which="linear")
    cp, count = mean["endpoint"] == "cp", mean["endpoint"] == "count"
    assert cp.any() and count.any()
    np.testing.assert_allclose(mean.loc[cp, "prediction"], linear.loc[cp, "prediction"], rtol=1e-12)
    np.testing.assert_allclose(
        mean.loc[count, "prediction"], np.exp(linear.loc[count, "prediction"]), rtol=1e-12
    )
