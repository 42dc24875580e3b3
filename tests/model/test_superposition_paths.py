"""The sum over boluses as a recurrence over each individual's inputs (superposition._recurrence,
what fits with many draws use) against the direct sum over (requests x inputs) it replaces:
on every deSolve scenario that takes the compact bolus path without a lag time (a lag gives the
inputs' times a dimension per draw, and the direct sum serves it), on the EVID 4 reset scenarios
with their lag time left out of the model (resets then reach the recurrence too; these two
compare the paths only, not deSolve), and on Quinidine (136 patients with 1 to 40 dose records,
steady states, 8,000 hours: padded inputs, long spans and fast modes together)."""

from __future__ import annotations

import math

import pytest
import torch
from dynamics_scenarios import NAMES, psi_per_record, scenario
from test_dynamics_desolve import TOL, _closed_form_system, _relative

import pymixnn
from pymixnn.model.dynamics import superposition as sp
from pymixnn.model.dynamics.bound import EventFunction
from pymixnn.model.dynamics.compartments import compartment_system

SERVED = [
    n
    for n in NAMES
    if scenario(n)[1].wt_exponent == 0
    and scenario(n)[0].events.counts()["infusions"] == 0
    and not scenario(n)[1].tlag > 0
]
RESETS = ["reset_evid4_1cpt", "reset_evid4_2cpt"]


def _system(name):
    if name in RESETS:  # without its lag time: bolus-only and draw-free inputs
        p = scenario(name)[1]
        return compartment_system(p.model, F=bool(p.F != 1))
    return _closed_form_system(name)


def _jitter(psi0, n, seed=0):
    """psi0 (B, 1, P) times log-normal jitter (sd 0.3) per draw: (n, B, 1, P), every draw with
    its own eigenvalues."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, *psi0.shape, generator=gen, dtype=torch.float64)
    return psi0 * torch.exp(0.3 * z)


def _evaluate(f, x, psi, monkeypatch, cells):
    """Predictions and the gradient of a weighted sum of them, the recurrence used from
    ``cells`` on (inf: never)."""
    monkeypatch.setattr(sp, "RECURRENCE_CELLS", cells)
    p = psi.clone().requires_grad_(True)
    out = f(p, x)
    weights = torch.linspace(0.5, 1.5, out.shape[-1], dtype=out.dtype)
    (grad,) = torch.autograd.grad((out * weights).sum(), p)
    return out.detach(), grad


def _spy(monkeypatch):
    calls = []
    inner = sp._recurrence
    monkeypatch.setattr(sp, "_recurrence", lambda *a: calls.append(inner(*a)) or calls[-1])
    return calls


def _close(a, b, tol):
    """max |a - b| relative to each draw's largest |b|, over the last two dimensions."""
    scale = b.abs().flatten(-2).amax(-1).clamp_min(1e-300)[..., None, None]
    return float(((a - b).abs() / scale).max()) < tol


def test_the_list_covers_steady_states_and_two_compartments():
    assert len(SERVED) >= 8
    assert any(n.startswith("ss") for n in SERVED)
    assert any(n.endswith("_2cpt") for n in SERVED) and any("oral" in n for n in SERVED)


@pytest.mark.parametrize("name", SERVED + RESETS)
def test_recurrence_equals_the_direct_sum(name, monkeypatch):
    data, params, ref = scenario(name)
    f = EventFunction(_system(name), data.events, name)
    assert f.bolus_only
    x = torch.tensor(data.padded()[0])
    psi0 = psi_per_record(data, params, f.system.parameters)[:, :1]
    psi = _jitter(psi0, 64)
    calls = _spy(monkeypatch)
    direct, g_direct = _evaluate(f, x, psi, monkeypatch, math.inf)
    assert not calls
    rec, g_rec = _evaluate(f, x, psi, monkeypatch, 0)
    assert len(calls) == 1 and calls[0] is not None  # the recurrence did serve
    # the same sum in another order: rounding only (measured below 1e-13 relative); values and
    # gradients to 1e-10 of each draw's largest magnitude
    assert _close(rec, direct, 1e-10) and _close(g_rec, g_direct, 1e-10)
    if name in RESETS:
        assert bool(torch.as_tensor(f._resets["valid"]).any())
        return
    # and at the scenario's own parameters it matches deSolve
    out = f(psi0.unsqueeze(0).expand(2, -1, -1, -1), x)[0, 0][torch.as_tensor(data.padded()[2][0])]
    assert _relative(out.numpy(), ref) < TOL


def test_recurrence_on_quinidine_padded_inputs_long_spans_fast_modes(monkeypatch):
    # 136 patients, 1 to 40 dose records (padded inputs after each one's own), steady-state
    # doses, times up to 8,095 h, and ka up to ~2 /h in the draws: |lambda| x span ~ 10^4, where
    # a factorization e^{lambda t} e^{-lambda s} would overflow. The recurrence's exponents are
    # all <= 0: the same values and gradients as the direct sum, finite everywhere
    data = pymixnn.Data.from_nonmem(pymixnn.datasets.load_nonmem("quinidine"))
    system = compartment_system("pk1cpt_oral")
    f = EventFunction(system, data.events, "pk1cpt_oral")
    x = torch.tensor(data.padded()[0])
    B = x.shape[0]
    base = torch.tensor([0.7, 12.3, 234.5], dtype=torch.float64).expand(B, 1, 3)
    psi = _jitter(base, 6, seed=1)
    calls = _spy(monkeypatch)
    direct, g_direct = _evaluate(f, x, psi, monkeypatch, math.inf)
    rec, g_rec = _evaluate(f, x, psi, monkeypatch, 0)
    assert len(calls) == 1 and calls[0] is not None
    assert bool(torch.isfinite(rec).all()) and bool(torch.isfinite(g_rec).all())
    assert _close(rec, direct, 1e-10) and _close(g_rec, g_direct, 1e-10)


def test_recurrence_declines_a_mask_that_is_not_one_run():
    # request 0 counts inputs 0 and 2 but not 1: not a run of consecutive inputs ending at its
    # last one, so the recurrence declines (None) and the direct sum serves
    lam = -torch.tensor([[0.1]], dtype=torch.float64)  # (B, S)
    coef = torch.ones(1, 1, 3, dtype=torch.float64)
    start = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    order = torch.tensor([[0, 1, 2]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    t = torch.tensor([[3.0]], dtype=torch.float64)
    counts = torch.tensor([[[True, False, True]]])
    assert sp._recurrence(lam, coef, start, order, valid, t, counts) is None
    counts = torch.tensor([[[False, True, True]]])  # a run (after a reset): served, exactly
    out = sp._recurrence(lam, coef, start, order, valid, t, counts)
    assert out.shape == (1, 1, 1)
    assert float(out) == pytest.approx(math.exp(-0.2) + math.exp(-0.1), rel=1e-14)
