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


def _cp(dose, ka, cl, v, t, dose_times=(0.0,)):
    k = cl / v
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    for td in dose_times:
        s = np.clip(t - td, 0.0, None)
        out = out + dose * ka / (v * (ka - k)) * (np.exp(-k * s) - np.exp(-ka * s))
    return out


def _turnover(dose, p, times, dose_times=(0.0,)):
    from scipy.integrate import solve_ivp

    kin = p["R0"] * p["kout"]

    def rhs(t, r):
        c = _cp(dose, p["ka"], p["CL"], p["V"], t, dose_times)
        return [kin * (1 - c / (p["IC50"] + c)) - p["kout"] * r[0]]

    sol = solve_ivp(
        rhs,
        (0.0, max(times)),
        [p["R0"]],
        t_eval=sorted(times),
        rtol=1e-10,
        atol=1e-10,
        method="LSODA",
        max_step=min(np.diff(sorted({0.0, *dose_times}))) / 4 if len(dose_times) > 1 else np.inf,
    )
    return dict(zip(sorted(times), sol.y[0]))


def simulate_pkpd(
    n_individuals: int = 100,
    design: str = "turnover",
    dose: float = 100.0,
    seed: int = 0,
    dose_times=(0.0,),
    id_start: int = 1,
) -> pd.DataFrame:
    """NONMEM records (ID, TIME, AMT, EVID, CMT, DV, MDV, DVID); ``attrs``: ``truth`` (fixed
    effects, omega2, error parameters), ``psi`` (each individual's parameters). ``dose_times``:
    one oral dose of ``dose`` at each (a multiple-dose regimen, by superposition); ids from
    ``id_start``."""
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
        index=pd.RangeIndex(id_start, id_start + n_individuals, name="ID"),
    )
    rows = []
    dose_times = tuple(float(t) for t in dose_times)
    for i, p in psi.iterrows():
        doses = [dict(ID=i, TIME=td, AMT=dose, EVID=1, CMT=1, DV=0.0, MDV=1, DVID=None) for td in dose_times]
        cp = _cp(dose, p["ka"], p["CL"], p["V"], np.asarray(truth["cp_times"], dtype=float), dose_times)
        cp_obs = cp * (1 + truth["error"]["b.cp"] * rng.standard_normal(cp.size))
        events = [(t, "cp", y) for t, y in zip(truth["cp_times"], cp_obs)]
        pd_times = np.asarray(truth["pd_times"], dtype=float)
        if design == "turnover":
            r = _turnover(dose, p, pd_times, dose_times)
            y = np.array([r[t] for t in pd_times]) + truth["error"]["a.pca"] * rng.standard_normal(
                pd_times.size
            )
            events += [(t, "pca", v) for t, v in zip(pd_times, y)]
        else:
            c = _cp(dose, p["ka"], p["CL"], p["V"], pd_times, dose_times)
            lam = p["E0"] * p["IC50"] / (p["IC50"] + c)
            events += [(t, "count", float(v)) for t, v in zip(pd_times, rng.poisson(lam))]
        obs = [
            dict(ID=i, TIME=float(t), AMT=0.0, EVID=0, CMT=2, DV=float(y), MDV=0, DVID=endpoint)
            for t, endpoint, y in sorted(events, key=lambda e: (e[0], e[1]))
        ]
        rows += sorted(doses + obs, key=lambda r: (r["TIME"], r["EVID"] == 0))  # a dose first at a tie
    out = pd.DataFrame(rows)
    out.attrs["truth"] = {
        "fixed": dict(truth["fixed"]),
        "omega2": dict(truth["omega2"]),
        "error": dict(truth["error"]),
    }
    out.attrs["psi"] = psi
    return out
