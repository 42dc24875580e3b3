"""The dynamics issue's joint PK/PD acceptance fit (point 4), slow: a 3-state ODE (oral PK and a
turnover response with Imax inhibition), 100 simulated individuals, 5 random effects, 13
parameters, fitted by the full pipeline (benchmarks/dynamics.py ``pkpd_turnover``; about 10-16
minutes on one thread). Its quick counterparts are the ODE pipeline's pieces in test_ode_solves.py
and the turnover model's solve in test_endpoints.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import pymixnn
from pymixnn.model.pd import turnover_model


@pytest.mark.slow
def test_joint_pkpd_turnover_recovers_the_truth():
    df = pymixnn.simulate.simulate_pkpd(100, design="turnover", seed=4)
    truth = df.attrs["truth"]
    res = pymixnn.fit(
        pymixnn.Data.from_nonmem(df),
        turnover_model(  # as benchmarks/dynamics.py: start values off the truth by 10-40%
            random=["ka", "CL", "V", "R0", "IC50"],
            start={"ka": 0.7, "CL": 0.2, "V": 10.0, "R0": 90.0, "kout": 0.05, "IC50": 1.0},
        ),
        error={"cp": "proportional", "pca": "constant"},
        seed=1,
        progress=False,
    )
    fixed = res.fixed_effects
    wide = res.conf_int(alpha=0.0027)  # 3 SEs
    for p, v in truth["fixed"].items():
        # within 3 SEs of the truth, and within 10%: measured CL, V, R0, kout, IC50 within 2.5%
        # (the 5%); ka 7.3% above, 2.2 SEs (its 95% CI misses), as the exact closed-form
        # pk1cpt_oral fit of the same data's cp records alone (ka 1.089, 95% CI 1.021-1.161):
        # this sample's, not the ODE fit's, deviation
        assert wide.loc[p, "lower"] <= v <= wide.loc[p, "upper"], (p, fixed[p], v)
        assert abs(fixed[p] / v - 1) < 0.10, (p, fixed[p], v)
    omega2 = dict(zip(res.model.random, np.diag(res.omega)))
    for p, v in truth["omega2"].items():
        # the 25%: measured -19% (R0) to +8% (IC50)
        assert abs(omega2[p] / v - 1) < 0.25, (p, omega2[p], v)
    assert math.isfinite(res.loglik)
