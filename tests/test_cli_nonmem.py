"""The command line on NONMEM event data (issue 18): ``pymixnn fit DATA.csv --nonmem --model
pk1cpt_iv`` and ``pymixnn solve``; input errors are one line and exit status 2, naming the line of
the data file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pymixnn
from pymixnn.cli import main

FEW = ["--seed", "0", "--no-progress", "--max-steps", "100"]


def simulated(n: int = 10) -> pd.DataFrame:
    """A one-compartment IV bolus study: 100 at time 0, six samples, CL 2 and V 20 (lognormal
    between-individual variation), 10% proportional error; lowercase column names for dose/conc."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(1, n + 1):
        cl, v = 2.0 * np.exp(0.3 * rng.standard_normal()), 20.0 * np.exp(0.2 * rng.standard_normal())
        rows.append(dict(ID=i, TIME=0.0, dose=100.0, EVID=1, conc=np.nan, WT=60.0 + 2 * i))
        for t in (0.5, 1.0, 2.0, 4.0, 8.0, 12.0):
            c = 100 / v * np.exp(-cl / v * t) * (1 + 0.1 * rng.standard_normal())
            rows.append(dict(ID=i, TIME=t, dose=0.0, EVID=0, conc=round(c, 4), WT=60.0 + 2 * i))
    return pd.DataFrame(rows)


@pytest.fixture
def nm_csv(tmp_path):
    path = tmp_path / "pk.csv"
    simulated().to_csv(path, index=False)
    return path


@pytest.fixture
def no_fit(monkeypatch):
    def fit(*args, **kwargs):
        raise AssertionError("pymixnn.fit was called")

    monkeypatch.setattr(pymixnn, "fit", fit)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err.rstrip("\n")


NM = ["--nonmem", "--model", "pk1cpt_iv", "--dv", "conc", "--column", "AMT=dose"]


def test_fit_nonmem_prints_and_writes_cl_and_v(nm_csv, tmp_path, capsys):
    out = tmp_path / "fit.json"
    code = main(["fit", str(nm_csv), *NM, "--init", "CL=1.5", "V=15", "--json", str(out), *FEW])
    assert code == 0
    printed = capsys.readouterr().out
    assert "model pk1cpt_iv" in printed and "10 individuals, 60 observations" in printed
    fixed = json.loads(out.read_text())["fixed_effects"]
    assert set(fixed) == {"CL", "V"}
    # simulated at CL 2, V 20: a short run lands near them
    assert fixed["CL"]["estimate"] == pytest.approx(2.0, rel=0.25)
    assert fixed["V"]["estimate"] == pytest.approx(20.0, rel=0.25)


def test_fit_nonmem_equals_the_python_api(nm_csv, tmp_path, capsys, monkeypatch):
    """The command reads the table with Data.from_nonmem and calls pymixnn.fit on it."""
    seen = {}

    def fit(data, model, **kwargs):
        seen.update(data=data, model=model, **kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(pymixnn, "fit", fit)
    args = ["fit", str(nm_csv), *NM, "--covariate", "V=WT", "--dosing", "tlag", "--init", "CL=2"]
    assert main([*args, "--init", "V=20", *FEW]) == 2
    assert one_line_error(capsys) == "pymixnn: error: stop here"
    data = seen["data"]
    assert isinstance(data, pymixnn.Data) and data.events is not None
    assert data.n_individuals == 10 and len(data.frame) == 60 and data.covariate_cols == ["WT"]
    assert seen["model"].parameters == ("CL", "V", "tlag")
    assert seen["init"] == {"CL": 2.0, "V": 20.0} and seen["covariates"] == {"V": ["WT"]}


def test_fit_nonmem_takes_a_covariate_changing_within_an_individual_as_time_varying(
    tmp_path, capsys, monkeypatch
):
    seen = {}

    def fit(data, model, **kwargs):
        seen.update(data=data, **kwargs)
        raise ValueError("stop here")

    monkeypatch.setattr(pymixnn, "fit", fit)
    df = simulated()
    df["lWT"] = np.log(df["WT"] / 70) + df["TIME"] / 100  # changes record by record
    path = tmp_path / "tv.csv"
    df.to_csv(path, index=False)
    args = ["fit", str(path), *NM, "--covariate", "CL=lWT", "--covariate", "V=WT", *FEW]
    assert main(args) == 2 and one_line_error(capsys) == "pymixnn: error: stop here"
    data = seen["data"]
    assert data.covariate_cols == ["WT"] and data.events.time_varying == ["lWT"]
    assert seen["covariates"] == {"CL": ["lWT"], "V": ["WT"]}


@pytest.mark.parametrize("command", ["fit", "solve"])
def test_dose_without_amount_names_the_line(nm_csv, tmp_path, no_fit, capsys, command):
    df = simulated()
    df.loc[14, "dose"] = -5.0  # the third individual's dose: line 16 of the file (header: line 1)
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    extra = ["--params", "CL=2", "V=20"] if command == "solve" else FEW
    assert main([command, str(path), *NM, *extra]) == 2
    assert one_line_error(capsys) == (
        "pymixnn: error: column 'dose' must be > 0 on dose records (EVID 1 or 4): line 16 has value -5.0"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "pk1cpt_iv", "--id", "ID", "--x", "TIME", "--y", "conc"],
            "--model 'pk1cpt_iv' is a compartment model: its data are NONMEM event records; add --nonmem",
        ),
        (["--nonmem", "--model", "logistic"], "--nonmem: model 'logistic' is not a compartment model"),
        (["--nonmem", "--model", "pk1cpt_iv", "--x", "TIME"], "--x does not apply with --nonmem"),
        (["--nonmem", "--model", "pk1cpt_iv", "--dv", "DV"], "--dv: 'DV' is not a column of the data file"),
        (
            ["--nonmem", "--model", "pk1cpt_iv", "--dv", "conc", "--column", "DOSE=dose"],
            "--column DOSE=dose: 'DOSE' is not a NONMEM role",
        ),
        ([*NM, "--dosing", "tlg"], "--dosing 'tlg' is not a dosing parameter (did you mean 'tlag'?)"),
        ([*NM, "--init", "Cl=2"], "--init Cl: model 'pk1cpt_iv' has no parameter 'Cl' (did you mean 'CL'?)"),
        (
            ["--model", "logistic", "--id", "ID", "--x", "TIME", "--y", "conc", "--dosing", "tlag"],
            "--dosing applies to NONMEM data",
        ),
    ],
)
def test_nonmem_input_errors_are_one_line(nm_csv, no_fit, capsys, args, message):
    assert main(["fit", str(nm_csv), *args, *FEW]) == 2
    assert one_line_error(capsys).startswith("pymixnn: error: " + message)


def test_id_x_y_still_required_without_nonmem(nm_csv, no_fit, capsys):
    assert main(["fit", str(nm_csv), "--model", "logistic", "--x", "TIME"]) == 2
    assert one_line_error(capsys) == (
        "pymixnn fit: error: the following arguments are required: --id, --y (see pymixnn fit --help)"
    )


def test_solve_is_the_closed_form(nm_csv, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    args = ["solve", str(nm_csv), *NM, "--params", "CL=2", "V=20", "--times", "0,1,2.5", "--out", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == f"predictions written to {out}"
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["ID", "time", "endpoint", "prediction"] and len(pred) == 30
    np.testing.assert_allclose(pred["prediction"], 100 / 20 * np.exp(-2 / 20 * pred["time"]), rtol=1e-10)
    # at the observation records, to stdout
    assert main(["solve", str(nm_csv), *NM, "--params", "CL=2", "V=20"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "ID,time,endpoint,prediction" and len(lines) == 61


def test_solve_needs_every_parameter(nm_csv, capsys):
    assert main(["solve", str(nm_csv), *NM, "--params", "CL=2"]) == 2
    assert one_line_error(capsys) == (
        "pymixnn: error: --params: no value for ['V']; model 'pk1cpt_iv' needs NAME=VALUE for each of "
        "['CL', 'V']"
    )
