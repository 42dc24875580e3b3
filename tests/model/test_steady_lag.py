"""Steady-state doses (SS = 1) with a lag time: below II the series' state matches a long explicit
dose history; above II (doses of the series still to be absorbed after the record) an error naming
the individual and the row, in the closed-form and the ODE paths, rather than a wrong curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn.model.dynamics.engine import DynamicsError
from pymixnn.model.dynamics.models import pk_model

OBS = [0.25, 0.5, 1.0, 2.0, 3.0, 5.0]
PARAMS = {"ka": 1.0, "CL": 5.0, "V": 10.0}  # k = 0.5 /h: 80 explicit doses leave e^-40 of the series


def _oral_ode():
    def rhs(t, x, psi, cov):
        ka, cl, v = psi[..., 0], psi[..., 1], psi[..., 2]
        return torch.stack([-ka * x[..., 0], ka * x[..., 0] - cl / v * x[..., 1]], -1)

    return pymixnn.ODEModel(
        rhs,
        states=["depot", "central"],
        parameters=["ka", "CL", "V", "tlag"],
        outputs={"cp": lambda x, psi: x[..., 1] / psi[..., 2]},
        tlag={1: "tlag"},
    )


def _records(start: float, ss: int, addl: int, ident: int = 1) -> pd.DataFrame:
    n = len(OBS)
    return pd.DataFrame(
        {
            "ID": [ident] * (n + 1),
            "TIME": [0.0] + [start + t for t in OBS],
            "AMT": [100.0] + [0.0] * n,
            "EVID": [1] + [0] * n,
            "CMT": [1] + [2] * n,
            "SS": [ss] + [0] * n,
            "ADDL": [addl] + [0] * n,
            "II": [1.0] + [0.0] * n,
            "DV": [0.0] + [1.0] * n,
        }
    )


def _solve(model, df, lag):
    out = pymixnn.solve(model, pymixnn.Data.from_nonmem(df), params={**PARAMS, "tlag": lag})
    return out["prediction"].to_numpy()


@pytest.mark.parametrize("lag", [0.3, 0.99, 1.0])
def test_steady_state_with_a_lag_up_to_ii_matches_an_explicit_dose_history(lag):
    # 80 doses q1h before the record (SS = 0) against SS = 1 at time 0: equal to 1e-9 relative
    # in both paths (the series' remainder is e^-40; the ODE at its default tolerance gets 1e-6)
    explicit = _solve(pk_model("pk1cpt_oral", tlag=True), _records(80.0, 0, 80), lag)
    steady = _solve(pk_model("pk1cpt_oral", tlag=True), _records(0.0, 1, 0), lag)
    np.testing.assert_allclose(steady, explicit, rtol=1e-9)
    ode = _solve(_oral_ode(), _records(0.0, 1, 0), lag)
    np.testing.assert_allclose(ode, explicit, rtol=1e-5)


@pytest.mark.parametrize("ode", [False, True])
def test_steady_state_with_a_lag_longer_than_ii_is_an_error_naming_the_row(ode):
    model = _oral_ode() if ode else pk_model("pk1cpt_oral", tlag=True)
    df = pd.concat([_records(0.0, 0, 0, ident=1), _records(0.0, 1, 0, ident=7)], ignore_index=True)
    with pytest.raises(
        DynamicsError, match=r"individual 7: the steady-state dose of row 7 .* lag time 1\.5, longer"
    ):
        _solve(model, df, 1.5)
    _solve(model, df.iloc[:7], 1.5)  # no steady-state dose: a lag longer than II is fine
