"""Data with known truth for hybrid (mechanistic + neural) models: an exposure-response whose link
is to be learned (individuals may differ in its shape), and a pendulum observed through its angle
only (the angular velocity hidden), computed without pymixnn's engine (NumPy, scipy's
``solve_ivp`` at rtol 1e-10).

- :func:`simulate_emax_link`: y = E0_i + Emax C / (EC50_i + C) + a e at exposures C ~ U(0, 10);
  E0_i = 10 exp(0.2 eta), EC50_i = 2 exp(``ec50_sd`` eta'), Emax 8, a 0.5 by default.
- :func:`simulate_pendulum`: d(theta)/dt = omega, d(omega)/dt = -k sin(theta) - c_i omega, theta(0)
  = theta0_i, omega(0) = 0; k = 1.5, c_i = 0.3 exp(0.3 eta), theta0_i = 1.5 exp(0.2 eta');
  theta observed at 16 times on [0, 12] with error sd 0.05. NONMEM records (no dose), with the
  hidden omega at the observation times in ``attrs["hidden"]``.

>>> df = simulate_emax_link(n_individuals=3, seed=1)
>>> sorted(df.attrs["truth"])
['E0', 'EC50', 'Emax', 'a', 'omega2']
>>> simulate_pendulum(n_individuals=2, seed=0).attrs["hidden"].shape
(32, 3)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_emax_link", "simulate_pendulum", "PENDULUM_TRUTH", "emax_link"]

PENDULUM_TRUTH = {"k": 1.5, "c": 0.3, "theta0": 1.5, "omega2": {"c": 0.09, "theta0": 0.04}, "a": 0.05}


def emax_link(c, emax: float = 8.0, ec50: float = 2.0):
    """The true link of :func:`simulate_emax_link` (population EC50)."""
    c = np.asarray(c, dtype=float)
    return emax * c / (ec50 + c)


def simulate_emax_link(
    n_individuals: int = 200,
    n_obs: int = 8,
    ec50_sd: float = 0.0,
    a: float = 0.5,
    seed: int = 0,
    id_start: int = 1,
    emax_sd: float = 0.0,
) -> pd.DataFrame:
    """Columns id, c, y; ``attrs``: ``truth`` (E0, Emax, EC50, a, omega2) and ``psi`` (E0, Emax,
    EC50 per individual); ``ec50_sd`` the sd of log EC50 (individual shapes), ``emax_sd`` the sd
    of log Emax (individual amplitudes; drawn from a stream of their own, so the other draws do
    not depend on it), ``a`` the error sd."""
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal((n_individuals, 2))
    e0 = 10.0 * np.exp(0.2 * eta[:, 0])
    ec50 = 2.0 * np.exp(ec50_sd * eta[:, 1])
    emax = 8.0 * np.exp(emax_sd * np.random.default_rng([seed, 1]).standard_normal(n_individuals))
    c = np.sort(rng.uniform(0.0, 10.0, (n_individuals, n_obs)), axis=1)
    y = e0[:, None] + emax_link(c, emax[:, None], ec50[:, None]) + a * rng.standard_normal(c.shape)
    ids = np.arange(id_start, id_start + n_individuals)
    df = pd.DataFrame({"id": np.repeat(ids, n_obs), "c": c.ravel(), "y": y.ravel()})
    df.attrs["truth"] = {
        "E0": 10.0,
        "Emax": 8.0,
        "EC50": 2.0,
        "a": a,
        "omega2": {"E0": 0.04, "Emax": emax_sd**2, "EC50": ec50_sd**2},
    }
    df.attrs["psi"] = pd.DataFrame({"E0": e0, "Emax": emax, "EC50": ec50}, index=pd.Index(ids, name="id"))
    return df


def simulate_pendulum(
    n_individuals: int = 300, n_obs: int = 16, seed: int = 0, id_start: int = 1
) -> pd.DataFrame:
    """NONMEM records (ID, TIME, DV, EVID 0, MDV 0) of the angle; ``attrs``: ``truth``,
    ``psi`` (c, theta0 per individual) and ``hidden`` (ID, TIME, omega: the unobserved angular
    velocity at each observation time)."""
    from scipy.integrate import solve_ivp

    t = PENDULUM_TRUTH
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal((n_individuals, 2))
    c = t["c"] * np.exp(np.sqrt(t["omega2"]["c"]) * eta[:, 0])
    theta0 = t["theta0"] * np.exp(np.sqrt(t["omega2"]["theta0"]) * eta[:, 1])
    times = np.linspace(0.0, 12.0, n_obs)
    ids = np.arange(id_start, id_start + n_individuals)
    rows, hidden = [], []
    for i, ci, th0 in zip(ids, c, theta0):
        sol = solve_ivp(
            lambda _, s, ci=ci: [s[1], -t["k"] * np.sin(s[0]) - ci * s[1]],
            (0.0, times[-1]),
            [th0, 0.0],
            t_eval=times,
            rtol=1e-10,
            atol=1e-12,
        )
        dv = sol.y[0] + t["a"] * rng.standard_normal(times.size)
        rows += [dict(ID=i, TIME=tt, DV=v, EVID=0, MDV=0) for tt, v in zip(times, dv)]
        hidden += [dict(ID=i, TIME=tt, omega=w) for tt, w in zip(times, sol.y[1])]
    df = pd.DataFrame(rows)
    df.attrs["truth"] = dict(t)
    df.attrs["psi"] = pd.DataFrame({"c": c, "theta0": theta0}, index=pd.Index(ids, name="ID"))
    df.attrs["hidden"] = pd.DataFrame(hidden)
    return df
