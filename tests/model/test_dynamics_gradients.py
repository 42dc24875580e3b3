"""Acceptance of the dynamics issue: gradients. Autograd against central finite differences, relative
error < 1e-4, for every PK parameter (CL, V / V1, ka, Q, V2, tlag, F, modeled rate and duration),
in the closed form (matrix exponentials, geometric sums), the linear ODE path and the general ODE
path (dopri5, steady states by dosing cycles).

Objective: sum_j w_j pred_j over the scenario's observations (float64), w_j fixed random weights in
[0.5, 1.5] (seeded), so no component is a lucky cancellation. psi is constant in time, (1, 1, P),
except in the time-varying WT scenario, where every record's row of psi (1, K, P) is a variable.

Observations at a time where a parameter-dependent event happens (a lagged dose, the end of an
infusion whose duration depends on F / rate / duration / tlag) are left out of the objective: the
prediction there has only one-sided derivatives (the event crosses the observation), and the issue
does not ask for gradients at event crossings. The observations after them stay in, so the
gradient through the moving event times is checked.

Finite differences: step h_p = 1e-5 |psi_p| (relative). Truncation error of central differences is
~h^2 |f'''| / 6, i.e. ~1e-10 relative for these exponentials (elasticities of order 1-10);
round-off is ~1e-16 |f| / h ~1e-11 relative. In the ODE path the solver's own error (at most ~rtol =
1e-10 relative, and not smooth in psi where dopri5's step choice changes) enters divided by 2 h:
at most ~5e-6 relative at h = 1e-5 |psi_p|, inside 1e-4 with a margin, where h = 1e-6 |psi_p| would
allow ~5e-5. Measured, the noise is far below that bound: solved one perturbation at a time
(modeled_duration_1cpt, modeled_rate_2cpt) autograd and differences agree to <= 4e-8 for every
relative step from 1e-4 to 1e-7. All 2 P perturbations are solved here as one batch
(psi (2 P, 1, Kp, P)), which shares dopri5's steps and costs one solve instead of 2 P.
Measured largest relative errors (every scenario): 2e-8 closed form, 5e-7 linear ODE, 1e-7 ODE.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from dynamics_scenarios import ode_model, psi_per_record, scenario

from pymixnn.model.dynamics.bound import EventFunction
from pymixnn.model.dynamics.compartments import compartment_system
from pymixnn.model.dynamics.engine import solve_records

TOL = 1e-4  # the acceptance tolerance (relative, every gradient component)
REL_STEP = 1e-5  # finite-difference step relative to |psi_p| (see module docstring)
ODE_RTOL, ODE_ATOL = 1e-10, 1e-12  # tight: the solver's error enters finite differences divided by h
# Floor of the relative error's denominator, in units of S / |psi_p| with S = sum_j w_j |pred_j|:
# a component whose elasticity d log(objective) / d log(psi_p) is below 1e-3 (a per-record psi row
# that acts on few observations, or on none) is compared to 1e-4 * 1e-3 S / |psi_p| absolutely;
# the finite difference's own absolute error (round-off ~1e-16 S / h, ODE noise ~5e-6 S / |psi_p|
# at worst) cannot resolve a relative error of 1e-4 on components much smaller than that.
FLOOR = 1e-3
EVENT_GAP = 1e-3  # observations closer than this to a moving event time are left out

# scenario -> the parameters it exercises (beyond CL and V / V1, Q, V2 in the 2-compartment ones)
SCENARIOS = {
    "oral_lag_f": "ka, tlag (observations shortly after the lagged doses), F",
    "modeled_duration": "duration (RATE = -2) while infusions run and after, F",
    "modeled_rate": "rate (RATE = -1) while infusions run and after, F",
    "infusion_f": "F through the infusion's duration F * AMT / RATE",
    "infusion_addl_lag": "tlag and F of infusions",
    "ss_bolus_iv": "SS = 1 bolus (reset, geometric sum)",
    "ss_bolus_oral": "SS = 1 oral bolus with F",
    "ss_infusion": "SS = 1 infusion shorter than II",
    "ss_infusion_long": "SS = 1 infusion longer than II (a series infusion running at s)",
    "ss_infusion_vlong": "SS = 1, modeled duration over two II",
    "ss_infusion_lag": "SS = 1 infusion with tlag and F",
    "ss_lag": "SS = 1 oral with tlag and F",
    "ss2_add": "SS = 2 added to a running state",
    "reset_evid3": "EVID 3 reset stopping an infusion",
    "reset_evid4": "EVID 4 reset and dose, oral with tlag and F",
    "depot_then_central": "doses into two compartments",
    "overlap_infusions": "overlapping infusions",
    "wt_tv": "time-varying parameters: every record's psi row",
}
ALL = [f"{s}_{n}cpt" for s in SCENARIOS for n in (1, 2)]
# ODE path (dopri5 at rtol 1e-10: 0.5-7 s a scenario, autograd and the batched differences together):
# a quick set covering CL, V / V1, ka, Q, V2, tlag, F, rate, duration, SS = 1 bolus and infusion longer
# than II, a reset, time-varying psi; the rest in the slow set. Steady states by dosing cycles take 45-50 s
# for the oral 1-compartment ones and are left out for 2 compartments (5-20 s a solve).
ODE_QUICK = [
    f"{s}_1cpt"
    for s in (
        "oral_lag_f",
        "modeled_duration",
        "modeled_rate",
        "ss_bolus_iv",
        "ss_infusion_long",
        "reset_evid3",
        "wt_tv",
    )
] + ["modeled_rate_2cpt"]
ODE_SLOW = [n for n in ALL if n not in ODE_QUICK and not (n.startswith("ss") and n.endswith("_2cpt"))]


def _system(name: str, path: str):
    _, p, _ = scenario(name)
    if path == "closed":
        return compartment_system(
            p.model,
            tlag=bool(p.tlag > 0),
            F=bool(p.F != 1),
            rate=not np.isnan(p.rate),
            duration=not np.isnan(p.duration),
        )
    system = ode_model(p.model, p, linear=path == "linear").dynamics
    return system if path == "linear" else replace(system, rtol=ODE_RTOL, atol=ODE_ATOL)


def _moving_event_times(f: EventFunction, psi: np.ndarray) -> np.ndarray:
    """Times of the events that move with the parameters (constant psi (P,)): lagged doses, and ends
    of infusions whose duration or start depends on psi (those of steady-state series included)."""
    pad = f.events.padded()
    P = len(psi)
    ext = np.concatenate([psi, [0.0, 1.0]])  # the engine's extension: column P is 0, P + 1 is 1
    out = []
    for k in np.flatnonzero(pad["valid"][0] & np.isin(pad["evid"][0], (1, 4))):
        c_lag, c_f, c_rate, c_dur = f.dosing[pad["cmt"][0, k]].tolist()
        t, amt, code, tau = pad["time"][0, k], pad["amt"][0, k], pad["rate"][0, k], pad["ii"][0, k]
        lag, bio = ext[c_lag], ext[c_f]
        if c_lag != P:
            out.append(t + lag)
        if code == 0 or (c_lag == P and c_f == P + 1 and code > 0):
            continue
        dur = bio * amt / code if code > 0 else bio * amt / ext[c_rate] if code == -1 else ext[c_dur]
        out.append(t + lag + dur)
        if pad["ss"][0, k] > 0:
            out.extend(t - n * tau + lag + dur for n in range(1, 6))
    return np.asarray(out)


def _problem(name: str, path: str):
    """(objective(psi batch) -> (batch,), psi (1, Kp, P), S, parameter names)."""
    data, p, _ = scenario(name)
    system = _system(name, path)
    f = EventFunction(system, data.events, name)
    x_pad, _, mask = data.padded()
    x = torch.tensor(x_pad)
    rec = {k: v[x[:, 0, 2].long()] for k, v in f.records(torch.float64, torch.device("cpu")).items()}
    request = {"time": x[..., 0], "endpoint": x[..., 1].long(), "record": x[..., 3].long()}
    psi = psi_per_record(data, p, system.parameters)
    if not name.startswith("wt_tv"):
        psi = psi[:, :1]  # constant in time
        assert p.wt_exponent == 0
    moving = _moving_event_times(f, psi[0, 0].numpy())
    t_obs = x_pad[0, :, 0]
    far = np.array([moving.size == 0 or bool(np.all(np.abs(t - moving) > EVENT_GAP)) for t in t_obs])
    keep = torch.as_tensor(mask[0] & far)
    assert int(keep.sum()) >= 8
    w = torch.as_tensor(np.random.default_rng(20240611).uniform(0.5, 1.5, int(keep.sum())))
    endpoint_map = torch.as_tensor(f.endpoint_map)

    def predictions(ps: torch.Tensor) -> torch.Tensor:  # ps (n, 1, Kp, P) -> (n, kept observations)
        out = solve_records(system, rec, ps, f.dosing, f.dose_state, endpoint_map, request)
        return out[:, 0][:, keep]

    def objective(ps: torch.Tensor) -> torch.Tensor:
        return predictions(ps) @ w

    with torch.no_grad():
        scale = float(predictions(psi.unsqueeze(0)).abs() @ w)
    return objective, psi, scale, system.parameters


def _gradients(name: str, path: str):
    """(autograd gradient, central differences, their relative error), each shaped like psi."""
    objective, psi, scale, _ = _problem(name, path)
    ps = psi.unsqueeze(0).clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(objective(ps).sum(), ps)
    auto = auto[0]
    n = psi.numel()
    steps = REL_STEP * psi.abs().flatten()
    delta = torch.diag(steps).reshape(n, *psi.shape)
    with torch.no_grad():
        values = objective(torch.cat([psi + delta, psi - delta]))
    fd = ((values[:n] - values[n:]) / (2 * steps)).reshape(psi.shape)
    floor = FLOOR * scale / psi.abs()
    rel = (auto - fd).abs() / torch.maximum(fd.abs(), floor)
    return auto, fd, rel


def _check(name: str, path: str):
    auto, fd, rel = _gradients(name, path)
    names = _system(name, path).parameters
    worst = {n: float(rel[..., j].max()) for j, n in enumerate(names)}
    assert torch.isfinite(auto).all()
    assert max(worst.values()) < TOL, f"{name} {path}: relative error per parameter {worst}"
    # every parameter the scenario exercises moves the objective (the check is not vacuous)
    assert (fd.abs().amax(-2) > 0).all()


@pytest.mark.parametrize("name", ALL)
def test_closed_form_gradients(name):
    _check(name, "closed")


@pytest.mark.parametrize("name", ALL)
def test_linear_ode_gradients(name):
    _check(name, "linear")


@pytest.mark.parametrize("name", ODE_QUICK + [pytest.param(n, marks=pytest.mark.slow) for n in ODE_SLOW])
def test_ode_gradients(name):
    _check(name, "ode")


def test_every_parameter_is_covered():
    covered = {p for name in ALL for p in _system(name, "closed").parameters}
    assert covered >= {"CL", "V", "V1", "ka", "Q", "V2", "tlag", "F", "rate", "duration"}
    ode_covered = {p for name in ODE_QUICK for p in _system(name, "ode").parameters}
    assert ode_covered >= {"CL", "V", "V1", "ka", "Q", "V2", "tlag", "F", "rate", "duration"}
