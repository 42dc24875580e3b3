"""The deSolve reference scenarios (tests/reference/dynamics) as pymixnn event data and parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pymixnn.data.table import Data

HERE = Path(__file__).resolve().parents[1] / "reference" / "dynamics"
SCENARIOS = pd.read_csv(HERE / "scenarios.csv")
PARAMETERS = pd.read_csv(HERE / "parameters.csv").set_index("scenario")
REFERENCE = pd.read_csv(HERE / "desolve_reference.csv")
NAMES = list(PARAMETERS.index)


def scenario(name: str) -> tuple[Data, pd.Series, np.ndarray]:
    """(event data with WT time-varying, parameter row, reference concentrations)."""
    records = SCENARIOS[SCENARIOS.scenario == name].drop(columns="scenario").reset_index(drop=True)
    data = Data.from_nonmem(records, time_varying=["WT"])
    ref = REFERENCE[REFERENCE.scenario == name]["conc"].to_numpy()
    return data, PARAMETERS.loc[name], ref


def psi_per_record(data: Data, params: pd.Series, names: tuple[str, ...]) -> torch.Tensor:
    """psi (1, K, P) float64: the scenario's values, CL scaled by (WT / 70) ^ wt_exponent per record."""
    padded = data.events.padded()
    wt = padded["covariates"][0, :, 0]
    rows = []
    for w in wt:
        values = {"V1": params["V"], **{k: params[k] for k in params.index if k != "description"}}
        values["CL"] = params["CL"] * (w / 70.0) ** params["wt_exponent"]
        rows.append([float(values[n]) for n in names])
    return torch.tensor([rows], dtype=torch.float64)


def ode_model(model: str, params: pd.Series, linear: bool = False):
    """The scenario's compartment model written as an ODEModel (the same equations as the R
    reference), with tlag / F / rate / duration on CMT 1 when the scenario uses them."""
    import pymixnn

    oral, two = model.endswith("oral"), model.startswith("pk2")
    names = (("ka",) if oral else ()) + ("CL", "V1" if two else "V") + (("Q", "V2") if two else ())
    states = (("depot",) if oral else ()) + ("central",) + (("peripheral",) if two else ())
    c = int(oral)

    def rhs(t, x, psi, cov):
        p = dict(zip(names, psi.unbind(-1)))
        vc = p["V1" if two else "V"]
        central = x[..., c]
        d = [None] * len(states)
        d[c] = -p["CL"] / vc * central
        if oral:
            d[0] = -p["ka"] * x[..., 0]
            d[c] = d[c] + p["ka"] * x[..., 0]
        if two:
            flow = p["Q"] / vc * central - p["Q"] / p["V2"] * x[..., c + 1]
            d[c] = d[c] - flow
            d[c + 1] = flow
        return torch.stack(d, -1)

    extra = {}
    for key in ("tlag", "F", "rate", "duration"):
        use = (
            (params[key] > 0)
            if key == "tlag"
            else (params[key] != 1)
            if key == "F"
            else not np.isnan(params[key])
        )
        if use:
            extra[key] = {1: key}
    all_names = names + tuple(extra)
    vc_index = all_names.index("V1" if two else "V")
    return pymixnn.ODEModel(
        rhs,
        states=states,
        parameters=all_names,
        outputs={"cp": lambda x, psi: x[..., c] / psi[..., vc_index]},
        linear=linear,
        **extra,
    )
