"""Steady state of a nonlinear system by iterating dosing cycles to a fixed point.

One cycle runs from s - tau to s: the series' dose at offset tlag, and for an infusion the input
rate at offset u is the rate times the number of the series' infusions running then,
#{m >= 0 : 0 <= u - tlag + m tau < D}. Starting from zero, cycles repeat until the state at the
cycle's end changes by less than 1e-12 absolute + 1e-10 relative (at most ``MAX_CYCLES``); the
converged state is the state at s. Linear systems use the closed form instead
(:func:`pymixnn.model.dynamics.linear.steady_state`).
"""

from __future__ import annotations

import torch

from pymixnn.model.dynamics.engine import DynamicsError

__all__ = ["cycle_steady_state", "MAX_CYCLES"]

MAX_CYCLES = 5000


def cycle_steady_state(system, gen, psi, cov, bolus, rate, duration, tau, lag, active) -> torch.Tensor:
    """The state at s of the dose series (bolus (..., S) or infusion input ``rate`` (..., S)
    during ``duration``) of period ``tau`` and lag ``lag``, for the batch elements in ``active``."""
    M = int(torch.ceil((duration / tau).max()).item()) + 1 if bool((rate != 0).any()) else 0
    m = torch.arange(0, M + 1, dtype=tau.dtype, device=tau.device)
    ends = (
        (lag.unsqueeze(-1) + duration.unsqueeze(-1) - m * tau.unsqueeze(-1))
        if M
        else lag.new_zeros(*lag.shape, 0)
    )
    points = torch.cat([lag.unsqueeze(-1), ends, tau.unsqueeze(-1)], -1)
    points = torch.minimum(points.clamp_min(0.0), tau.unsqueeze(-1))
    is_lag = torch.zeros(points.shape[-1], dtype=torch.bool, device=tau.device)
    is_lag[0] = True
    points, order = torch.sort(points, dim=-1, stable=True)
    lag_at = is_lag[order]
    x = system.initial(psi).expand_as(bolus).clone()
    has_bolus = (bolus != 0).any(-1)
    for _ in range(MAX_CYCLES):
        start = x
        u_prev = torch.zeros_like(tau)
        for i in range(points.shape[-1]):
            u = points[..., i]
            h = u - u_prev
            if bool((h > 0).any()):
                mid = (u + u_prev) / 2
                if M:
                    age = mid.unsqueeze(-1) - lag.unsqueeze(-1) + m * tau.unsqueeze(-1)
                    count = ((age >= 0) & (age < duration.unsqueeze(-1))).sum(-1).to(x.dtype)
                else:
                    count = torch.zeros_like(tau)
                t0 = -tau + u_prev  # time relative to s
                x = system.advance(gen, x, h, count.unsqueeze(-1) * rate, t0, psi, cov)
            add = lag_at[..., i] & has_bolus
            x = x + torch.where(add.unsqueeze(-1), bolus, torch.zeros_like(bolus))
            u_prev = u
        change = (x - start).abs()
        if bool((change <= 1e-12 + 1e-10 * x.abs()).all(-1)[active].all()):
            return x
    raise DynamicsError(f"the steady state did not converge in {MAX_CYCLES} dosing cycles")
