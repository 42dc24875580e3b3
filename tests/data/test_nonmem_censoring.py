"""Left-censored observations (BLQ, the M3 likelihood) in NONMEM-style event data:
``Data.from_nonmem(..., censoring="BLQ")`` (nlmixr2's ``CENS`` too), ``fit(nonmem_df, model,
censoring=...)`` and ``pymixnn fit --nonmem --censoring COL``. The flag travels as the Data's
auxiliary role "censored", the role the censored Gaussian likelihood of a plain table reads: the
event-data log-likelihood equals the plain table's at the same parameters, and a fit recovers the
simulation's truth where treating the limits as observations does not (slow)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from benchmarks.dynamics import count_model
from pymixnn.cli import main
from pymixnn.inference.program import Program
from pymixnn.results.io import data_from_record, events_record
from pymixnn.simulate import simulate_censored_pk
from pymixnn.validation import InputError

TIMES = [0.5, 1, 2, 3.5, 5, 7, 9, 12, 18, 24]


def records(**changes) -> pd.DataFrame:
    """Two individuals: a dose into the depot, then three observations, the last one below the
    limit of quantification 0.5 (BLQ = 1, DV holding the limit)."""
    df = pd.DataFrame(
        {
            "ID": [1, 1, 1, 1, 2, 2, 2, 2],
            "TIME": [0.0, 1.0, 2.0, 24.0, 0.0, 1.0, 2.0, 24.0],
            "AMT": [100.0, 0, 0, 0, 100.0, 0, 0, 0],
            "EVID": [1, 0, 0, 0, 1, 0, 0, 0],
            "DV": [np.nan, 5.0, 3.0, 0.5, np.nan, 4.0, 2.0, 0.5],
            "BLQ": [np.nan, 0, 0, 1, np.nan, 0, 0, 1],
        },
        index=[10, 11, 12, 13, 20, 21, 22, 23],  # labels differ from positions: messages use labels
    )
    return df.assign(**changes)


def to_nonmem(df: pd.DataFrame) -> pd.DataFrame:
    """simulate_censored_pk's table (id, dose, time, y, cens) as NONMEM records: one dose record
    (EVID 1, DV missing, BLQ missing) before each individual's samples."""
    rows = []
    for i, g in df.groupby("id", sort=True):
        rows.append(dict(ID=i, TIME=0.0, AMT=g["dose"].iloc[0], EVID=1, DV=np.nan, BLQ=np.nan))
        rows += [
            dict(ID=i, TIME=t, AMT=0.0, EVID=0, DV=y, BLQ=c) for t, y, c in zip(g["time"], g["y"], g["cens"])
        ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- reading
def test_the_flag_is_the_censored_role_of_the_observations():
    data = pymixnn.Data.from_nonmem(records(), censoring="blq")  # matched case-insensitively
    assert data.aux_cols == {"endpoint": "DVID", "censored": "BLQ"}
    assert data.aux["censored"].tolist() == [0, 0, 1, 0, 0, 1]
    assert data.covariate_cols == [] and data.y.tolist() == [5.0, 3.0, 0.5, 4.0, 2.0, 0.5]
    # dose records' values are not read; MDV = 1 records are not observations (their flag neither)
    df = records(BLQ=[7, 0, 0, 1, -3, 0, 0, 1], MDV=[1, 0, 0, 0, 1, 0, 0, 1])
    df.loc[23, "DV"] = np.nan
    data = pymixnn.Data.from_nonmem(df, censoring="BLQ")
    assert data.n_obs == 5 and data.aux["censored"].tolist() == [0, 0, 1, 0, 0]
    # nlmixr2's CENS: 1 is the same left censoring
    cens = pymixnn.Data.from_nonmem(records().rename(columns={"BLQ": "CENS"}), censoring="CENS")
    assert cens.aux_cols["censored"] == "CENS" and cens.aux["censored"].sum() == 2
    # without censoring= the column is not read
    assert pymixnn.Data.from_nonmem(records()).aux_cols == {"endpoint": "DVID"}


@pytest.mark.parametrize(
    ("changes", "column", "message"),
    [
        (
            dict(BLQ=[np.nan, 0, 2, 1, np.nan, 0, 0, 1]),
            "BLQ",
            "column 'BLQ' must be 0 (observed) or 1 (below the limit of quantification, DV holding the "
            "limit) on observation records (EVID 0): row 12 has value 2.0",
        ),
        (
            dict(BLQ=[np.nan, 0, 0, 1, np.nan, np.nan, 0, 1]),
            "BLQ",
            "column 'BLQ' must be 0 (observed) or 1 (below the limit of quantification, DV holding the "
            "limit) on observation records (EVID 0): row 21 has value nan",
        ),
        (
            dict(BLQ=[np.nan, 0, 0, 1, np.nan, 0, 0, "yes"]),
            "BLQ",
            "column 'BLQ' must be numeric: row 23 has value 'yes'",
        ),
        (
            dict(DV=[np.nan, 5.0, 3.0, np.nan, np.nan, 4.0, 2.0, 0.5]),
            "BLQ",
            "column 'DV' must hold the limit of quantification on censored records (BLQ = 1): row 13 "
            "has value nan",
        ),
        (
            dict(DV=[np.nan, 5.0, 3.0, np.nan, np.nan, 4.0, 2.0, 0.5], MDV=[1, 0, 0, 0, 1, 0, 0, 0]),
            "BLQ",
            "column 'DV' must hold the limit of quantification on censored records (BLQ = 1): row 13 "
            "has value nan",
        ),
        ({}, "LOQFLAG", "column 'LOQFLAG' (censoring) is not in the data (case-insensitive); columns are"),
        ({}, "dv", "censoring='DV' is also the DV column; name the flag column"),
    ],
)
def test_bad_flags_name_the_column_row_and_value(changes, column, message):
    with pytest.raises(InputError, match="^" + re.escape(message)):
        pymixnn.Data.from_nonmem(records(**changes), censoring=column)


def test_right_censoring_is_an_error():
    df = records(BLQ=[np.nan, 0, 0, 1, np.nan, 0, 0, -1]).rename(columns={"BLQ": "CENS"})
    with pytest.raises(InputError) as err:
        pymixnn.Data.from_nonmem(df, censoring="CENS")
    assert str(err.value) == (
        "column 'CENS' is -1 (right-censored: above the limit) on an observation record; only left "
        "censoring is supported (1: below the limit of quantification, DV holding the limit): row 23 "
        "has value -1.0"
    )


def test_saved_event_data_keep_the_flag():
    data = pymixnn.Data.from_nonmem(records(), censoring="BLQ")
    record = {"id": data.id_col, "x": data.x_cols, "y": data.y_col, "covariates": [], "aux": data.aux_cols}
    back = data_from_record({**record, "events": events_record(data)})
    assert back.aux_cols == data.aux_cols
    np.testing.assert_array_equal(back.aux["censored"], data.aux["censored"])


# ---------------------------------------------------------------------------------- fit's arguments
def test_fit_reads_the_column_of_a_nonmem_dataframe_or_of_the_data():
    df = records()
    problem = pymixnn.NLME(df, "pk1cpt_oral", censoring="BLQ")  # a DataFrame: Data.from_nonmem
    assert problem.data.aux_cols["censored"] == "BLQ" and problem.data.aux["censored"].sum() == 2
    data = pymixnn.Data.from_nonmem(df, censoring="BLQ")
    assert pymixnn.NLME(data, "pk1cpt_oral", censoring="blq").data is data
    # as with Data.from_pandas(..., aux={"censored": ...}), a Data object's column applies without
    # censoring= (the flag belongs to the data)
    assert pymixnn.NLME(data, "pk1cpt_oral").data.aux_cols["censored"] == "BLQ"
    plain = pymixnn.Data.from_pandas(
        simulate_censored_pk(3, seed=0), id="id", x=["dose", "time"], y="y", aux={"censored": "cens"}
    )
    assert pymixnn.NLME(plain, "onecpt_oral").data.aux_cols == {"censored": "cens"}
    with pytest.raises(InputError) as err:
        pymixnn.NLME(pymixnn.Data.from_nonmem(df), "pk1cpt_oral", censoring="BLQ")
    assert str(err.value) == (
        "the Data object has auxiliary columns {}, not {'censored': 'BLQ'}; rebuild it with "
        "Data.from_nonmem(..., censoring=...)"
    )
    with pytest.raises(InputError, match="^censoring column 'BLQ' flags censored observations"):
        pymixnn.NLME(df, "pk1cpt_oral", censoring="BLQ", observation="poisson")


def _pkpd(**changes) -> pd.DataFrame:
    df = pymixnn.simulate.simulate_pkpd(3, design="poisson", seed=3)
    return df.assign(BLQ=0, **changes)


def test_several_endpoints_censor_the_gaussian_ones_only():
    df = _pkpd()
    cp, count = df.index[df["DVID"] == "cp"][2], df.index[df["DVID"] == "count"][1]
    spec = dict(error={"cp": "proportional"}, observation={"count": "poisson"}, censoring="BLQ")
    flagged = df.assign(BLQ=np.where(df.index == count, 1, 0))
    with pytest.raises(InputError) as err:
        pymixnn.NLME(flagged, count_model(), **spec)
    assert str(err.value) == (
        f"column 'BLQ' flags row {count} as censored (below the limit of quantification), but it is "
        "an observation of endpoint 'count', whose family 'poisson' has no censored likelihood: left "
        "censoring (M3) applies to Gaussian endpoints only"
    )
    # a censored concentration: its cell is log P(y < LOQ) = log Phi((LOQ - f) / (b f))
    problem = pymixnn.NLME(df.assign(BLQ=np.where(df.index == cp, 1, 0)), count_model(), **spec)
    program = _program(problem)
    theta = torch.zeros(program.layout.size, dtype=torch.float64)
    theta[program.layout.error] = math.log(0.2)  # b.cp = 0.2 (Poisson: no parameter)
    f = torch.full(program.y.shape, 3.0, dtype=torch.float64)
    cells = program.cell_log_prob(theta, f, None)
    where = np.argwhere(problem.data.row_positions() == list(problem.data.frame.index).index(cp))[0]
    loq = float(df.loc[cp, "DV"])
    expected = math.log(0.5 * math.erfc(-(loq - 3.0) / (0.2 * 3.0) / math.sqrt(2)))
    assert float(cells[tuple(where)]) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------- likelihood
def _program(problem) -> Program:
    return Program(
        problem.model,
        problem.data,
        problem.design,
        device=torch.device("cpu"),
        dtype=torch.float64,
        observation=problem.observation,
    )


def _loglik(problem, values: dict, a: float, b: float, eta: np.ndarray) -> np.ndarray:
    """log p(y_i | eta_i, theta) per individual; ``eta`` columns in ka, V, CL order."""
    program = _program(problem)
    lay = program.layout
    theta = torch.zeros(lay.size, dtype=torch.float64)
    theta[lay.mu] = torch.log(torch.tensor([values[p] for p in program.params], dtype=torch.float64))
    theta[lay.error] = torch.log(torch.tensor([a, b], dtype=torch.float64))
    order = [("ka", "V", "CL").index(p) for p in program.params]
    eta_t = torch.as_tensor(eta[:, order], dtype=torch.float64)
    with torch.no_grad():
        return program.log_likelihood(theta, eta_t, None).numpy()


def test_event_data_loglik_equals_the_plain_tables():
    """The same single-dose data as a plain table (x = dose, time; onecpt_oral) and as NONMEM
    records (pk1cpt_oral): the censored log-likelihood of each individual agrees at the same
    parameters and random effects, to rounding (two evaluations of the same closed form)."""
    df = simulate_censored_pk(20, times=TIMES, seed=1)
    assert 0.15 < df["cens"].mean() < 0.25
    plain = pymixnn.NLME(
        df, "onecpt_oral", id="id", x=["dose", "time"], y="y", censoring="cens", error="combined"
    )
    events = pymixnn.NLME(to_nonmem(df), "pk1cpt_oral", censoring="BLQ", error="combined")
    rng = np.random.default_rng(0)
    for values, a, b in [
        (dict(ka=1.5, V=30.0, CL=3.0), 0.1, 0.15),
        (dict(ka=0.9, V=25.0, CL=4.0), 0.3, 0.1),
    ]:
        eta = 0.3 * rng.standard_normal((20, 3))
        ll_plain = _loglik(plain, values, a, b, eta)
        ll_events = _loglik(events, values, a, b, eta)
        np.testing.assert_allclose(ll_events, ll_plain, rtol=1e-10)
    # and the censored cells count: the limits taken as observations give another likelihood
    uncensored = pymixnn.NLME(to_nonmem(df).drop(columns="BLQ"), "pk1cpt_oral", error="combined")
    assert abs(_loglik(uncensored, values, a, b, eta).sum() - ll_events.sum()) > 10


# ---------------------------------------------------------------------------------- command line
def test_command_line_passes_the_column(tmp_path, capsys, monkeypatch):
    path = tmp_path / "blq.csv"
    records().to_csv(path, index=False)
    seen = {}

    def fit(data, model, **kwargs):
        seen.update(data=data, model=model, **kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(pymixnn, "fit", fit)
    nm = ["fit", str(path), "--nonmem", "--model", "pk1cpt_oral", "--seed", "0", "--no-progress"]
    assert main([*nm, "--censoring", "blq"]) == 2
    assert capsys.readouterr().err == "pymixnn: error: stop here\n"
    assert seen["data"].aux_cols["censored"] == "BLQ" and seen["censoring"] == "blq"
    assert pymixnn.NLME(seen["data"], seen["model"], censoring=seen["censoring"]).data is seen["data"]
    assert main([*nm, "--censoring", "BLQX"]) == 2
    assert capsys.readouterr().err.startswith(
        "pymixnn: error: --censoring: 'BLQX' is not a column of the data file (did you mean 'BLQ'?)"
    )
    records(BLQ=[np.nan, 0, 3, 1, np.nan, 0, 0, 1]).to_csv(path, index=False)
    assert main([*nm, "--censoring", "BLQ"]) == 2
    assert capsys.readouterr().err == (
        "pymixnn: error: column 'BLQ' must be 0 (observed) or 1 (below the limit of quantification, "
        "DV holding the limit) on observation records (EVID 0): line 4 has value 3.0\n"
    )


# ---------------------------------------------------------------------------------- recovery
@pytest.mark.slow
def test_censored_fit_recovers_the_truth_where_the_limits_as_data_do_not():
    """60 individuals x 10 samples of single-dose oral PK (ka 1.5, V 30, CL 3; combined error),
    the lowest 20% of the concentrations below the LOQ (2.75; their DV holding it: 72% of the
    18 h and 95% of the 24 h samples). The M3 fit on the event records recovers the fixed effects;
    the same fit taking the limits as observations is biased (the censored concentrations, late in
    the terminal phase, read too high: a slower elimination, CL too low, V too high)."""
    df = simulate_censored_pk(60, times=TIMES, seed=1)
    truth = df.attrs["truth"]
    # the 60 individuals' own parameters (their geometric means: ka 1.498, V 30.14, CL 2.783) are
    # what 60 individuals can tell: the population values within about one SE of them
    sample = np.exp(np.log(df.attrs["psi"]).mean())
    nm = to_nonmem(df)
    censored = pymixnn.fit(nm, "pk1cpt_oral", censoring="BLQ", error="combined", seed=0, progress=False)
    naive = pymixnn.fit(nm.drop(columns="BLQ"), "pk1cpt_oral", error="combined", seed=0, progress=False)
    assert censored.data.aux["censored"].sum() == 120
    est, se = censored.params["estimate"], censored.params["se"]
    # measured (M3): ka 1.552 (SE 0.097), CL 2.786 (0.110), V 30.67 (0.92), b 0.151 (truth 0.15):
    # 0.5, 1.95 and 0.7 SEs from the truth, 0.6, 0.03 and 0.6 SEs from the sample's means. The
    # same data as a plain table (onecpt_oral, censoring="cens"): ka 1.552, CL 2.785, V 30.68.
    # Limits as data: ka 2.17, CL 2.11, V 36.2, the truth 3.8, 12.5 and 5.0 SEs away.
    for p in ("ka", "CL", "V"):
        assert abs(est[p] - truth[p]) < 3 * se[p], (p, est[p], se[p])
        assert abs(est[p] - sample[p]) < 1.5 * se[p], (p, est[p], sample[p], se[p])
    assert censored.params["estimate"]["b"] == pytest.approx(truth["b"], rel=0.15)
    bias = {p: abs(math.log(est[p] / truth[p])) for p in ("ka", "CL", "V")}
    naive_est = naive.params["estimate"]
    naive_bias = {p: abs(math.log(naive_est[p] / truth[p])) for p in ("ka", "CL", "V")}
    assert naive_est["CL"] < truth["CL"] - 6 * se["CL"] and naive_est["V"] > truth["V"] + 3 * se["V"]
    assert naive_bias["CL"] > 3 * bias["CL"] and sum(naive_bias.values()) > 2 * sum(bias.values())
