"""PK/PD data with known truth, as NONMEM event records (one oral dose; a concentration endpoint
``cp`` and a pharmacodynamic endpoint), computed without pymixnn's engine: concentrations by the
one-compartment closed form, the turnover response by scipy's ``solve_ivp`` (rtol 1e-10).

Designs:

- ``"turnover"`` (warfarin-like): ka, CL, V; response R with dR/dt = kin (1 - C / (IC50 + C)) -
  kout R, R(0) = R0 = kin / kout; endpoint ``pca`` = R + a e (constant error), ``cp`` with a
  proportional error.
- ``"poisson"``: ``count`` ~ Poisson(E0 IC50 / (IC50 + C)) at the PD times.

>>> from pymixnn.simulate.pkpd import simulate_pkpd
>>> df = simulate_pkpd(n_individuals=3, seed=1)
>>> sorted(df["DVID"].dropna().unique())
['cp', 'pca']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_pkpd", "PKPD_TRUTH"]

PKPD_TRUTH = {
    "turnover": {
        "fixed": {"ka": 1.0, "CL": 0.135, "V": 8.0, "R0": 100.0, "kout": 0.06, "IC50": 1.2},
        "omega2": {"ka": 0.09, "CL": 0.09, "V": 0.04, "R0": 0.01, "IC50": 0.09},
        "error": {"b.cp": 0.1, "a.pca": 3.0},
        "cp_times": [0.5, 1, 2, 3, 6, 12, 24, 48],
        "pd_times": [0, 12, 24, 36, 48, 72, 96, 120, 144, 168],
    },
    "poisson": {
        "fixed": {"ka": 1.0, "CL": 0.135, "V": 8.0, "E0": 20.0, "IC50": 1.2},
        "omega2": {"ka": 0.09, "CL": 0.09, "V": 0.04, "E0": 0.04, "IC50": 0.09},
        "error": {"b.cp": 0.1},
        "cp_times": [0.5, 1, 2, 3, 6, 12, 24, 48],
        "pd_times": [0, 4, 8, 12, 24, 36, 48, 72, 96, 120],
    },
}


def _cp(dose, ka, cl, v, t):
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def _turnover(dose, p, times):
    from scipy.integrate import solve_ivp

    kin = p["R0"] * p["kout"]

    def rhs(t, r):
        c = _cp(dose, p["ka"], p["CL"], p["V"], t)
        return [kin * (1 - c / (p["IC50"] + c)) - p["kout"] * r[0]]

    sol = solve_ivp(
        rhs, (0.0, max(times)), [p["R0"]], t_eval=sorted(times), rtol=1e-10, atol=1e-10, method="LSODA"
    )
    return dict(zip(sorted(times), sol.y[0]))


def simulate_pkpd(
    n_individuals: int = 100, design: str = "turnover", dose: float = 100.0, seed: int = 0
) -> pd.DataFrame:
    """NONMEM records (ID, TIME, AMT, EVID, CMT, DV, MDV, DVID); ``attrs``: ``truth`` (fixed
    effects, omega2, error parameters), ``psi`` (each individual's parameters)."""
    if design not in PKPD_TRUTH:
        raise ValueError(f"design must be one of {list(PKPD_TRUTH)}, got {design!r}")
    truth = PKPD_TRUTH[design]
    rng = np.random.default_rng(seed)
    names = list(truth["fixed"])
    eta = rng.standard_normal((n_individuals, len(names)))
    psi = pd.DataFrame(
        {
            n: truth["fixed"][n] * np.exp(np.sqrt(truth["omega2"].get(n, 0.0)) * eta[:, j])
            for j, n in enumerate(names)
        },
        index=pd.RangeIndex(1, n_individuals + 1, name="ID"),
    )
    rows = []
    for i, p in psi.iterrows():
        rows.append(dict(ID=i, TIME=0.0, AMT=dose, EVID=1, CMT=1, DV=0.0, MDV=1, DVID=None))
        cp = _cp(dose, p["ka"], p["CL"], p["V"], np.asarray(truth["cp_times"], dtype=float))
        cp_obs = cp * (1 + truth["error"]["b.cp"] * rng.standard_normal(cp.size))
        events = [(t, "cp", y) for t, y in zip(truth["cp_times"], cp_obs)]
        pd_times = np.asarray(truth["pd_times"], dtype=float)
        if design == "turnover":
            r = _turnover(dose, p, pd_times)
            y = np.array([r[t] for t in pd_times]) + truth["error"]["a.pca"] * rng.standard_normal(
                pd_times.size
            )
            events += [(t, "pca", v) for t, v in zip(pd_times, y)]
        else:
            c = _cp(dose, p["ka"], p["CL"], p["V"], pd_times)
            lam = p["E0"] * p["IC50"] / (p["IC50"] + c)
            events += [(t, "count", float(v)) for t, v in zip(pd_times, rng.poisson(lam))]
        for t, endpoint, y in sorted(events, key=lambda e: (e[0], e[1])):
            rows.append(dict(ID=i, TIME=float(t), AMT=0.0, EVID=0, CMT=2, DV=float(y), MDV=0, DVID=endpoint))
    out = pd.DataFrame(rows)
    out.attrs["truth"] = {
        "fixed": dict(truth["fixed"]),
        "omega2": dict(truth["omega2"]),
        "error": dict(truth["error"]),
    }
    out.attrs["psi"] = psi
    return out
