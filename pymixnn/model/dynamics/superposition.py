"""Linear compartment models with parameters constant in time: every prediction as a sum over
inputs, vectorized over individuals, requested times and doses (no loop over events).

In the eigenbasis of A (A = V diag(lambda) V^-1) each input acts on each mode separately: a bolus q
gives q e^{lambda u} after u, an infusion of rate q lasting D gives
q e^{lambda (u - m)} (e^{lambda m} - 1) / lambda with m = min(u, D), and the state that a
steady-state series leaves at its record is a geometric sum per mode, 1 / (1 - e^{lambda tau}).
Resets drop the inputs before them. The semantics are those of
:mod:`pymixnn.model.dynamics.engine` (the loop over events, which handles time-varying parameters);
both are checked against deSolve.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pymixnn.model.dynamics.system import DoseInputs

__all__ = ["superpose"]


def _modes_step(lam: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(e^{lambda u} - 1) / lambda, = int_0^u e^{lambda s} ds (lambda < 0 for these models)."""
    return torch.expm1(lam * u) / lam


def superpose(
    system,
    rec: Mapping[str, torch.Tensor],
    psi0: torch.Tensor,
    inputs: DoseInputs,
    request: Mapping[str, torch.Tensor],
    endpoint_map,
) -> torch.Tensor:
    """Predictions (..., B, T); ``inputs`` as computed by :func:`solve_records`."""
    lag, amount, rate, dur = inputs.lag, inputs.amount, inputs.rate, inputs.duration
    is_dose, is_inf, state, tau, running = (
        inputs.is_dose,
        inputs.is_inf,
        inputs.state,
        inputs.tau,
        inputs.running,
    )
    lam, V, Vinv = system.modes(psi0)  # (..., B, S), (..., B, S, S)
    lead = lam.shape[:-2]
    B, K = rec["time"].shape
    S = lam.shape[-1]
    ex = lambda v: v.expand(*lead, *v.shape)  # noqa: E731
    t_rec = ex(rec["time"]).to(lam.dtype)
    valid = ex(rec["valid"])
    evid, ss = ex(rec["evid"]), ex(rec["ss"])
    ks = torch.arange(K, device=lam.device).expand(B, K)
    # mode coordinates of a unit input into each record's compartment: Vinv[:, state_k]
    q_unit = (
        Vinv.unsqueeze(-3)
        .expand(*lead, B, K, S, S)
        .gather(-1, ex(state)[..., None, None].expand(*lead, B, K, S, 1))
        .squeeze(-1)
    )  # (..., B, K, S)
    lam_k = lam.unsqueeze(-2)  # (..., B, 1, S)

    starts, orders, weights, durations, infusion, ok = [], [], [], [], [], []
    # 1. the doses themselves
    starts.append(t_rec + lag)
    orders.append(ex(ks))
    weights.append(q_unit * torch.where(is_inf, rate, amount).unsqueeze(-1))
    durations.append(dur)
    infusion.append(is_inf)
    ok.append(is_dose)
    steady = valid & (ss > 0) & is_dose
    if bool(steady.any()):
        # 2. the state of the series at its record: bolus sum_n e^{lambda (n tau - lag)}; infusion:
        # the running members' input so far plus the finished members' geometric tail
        tau_k = torch.where(steady, tau, torch.ones_like(tau)).unsqueeze(-1)
        lag_k, d_k = lag.unsqueeze(-1), dur.unsqueeze(-1)
        geometric = 1.0 / (-torch.expm1(lam_k * tau_k))
        z = torch.where(is_inf.unsqueeze(-1), 0.0, 1.0) * torch.exp(lam_k * (tau_k - lag_k)) * geometric
        M = running.shape[-1]
        if M:
            n = torch.arange(1, M + 1, dtype=lam.dtype, device=lam.device)
            u_n = (n * tau_k - lag_k).clamp_min(0)  # (..., B, K, M)
            part = _modes_step(lam_k.unsqueeze(-2), u_n.unsqueeze(-1))  # (..., B, K, M, S)
            z_inf = (part * running.unsqueeze(-1)).sum(-2)
            n0 = 1 + running.sum(-1, keepdim=True)
            u0 = n0 * tau_k - lag_k
            z_inf = z_inf + torch.exp(lam_k * (u0 - d_k).clamp_min(0)) * geometric * _modes_step(lam_k, d_k)
            z = torch.where(is_inf.unsqueeze(-1), z_inf, z)
        starts.append(t_rec)
        orders.append(ex(ks))
        weights.append(q_unit * torch.where(is_inf, rate, amount).unsqueeze(-1) * z)
        durations.append(torch.zeros_like(dur))
        infusion.append(torch.zeros_like(is_inf))
        ok.append(steady)
        if M:  # 3. the running members continue from the record to their own end
            n = torch.arange(1, M + 1, dtype=lam.dtype, device=lam.device)
            left = d_k - (n * tau_k - lag_k)  # (..., B, K, M)
            starts.append(t_rec.unsqueeze(-1).expand(*t_rec.shape, M).flatten(-2))
            orders.append(ex(ks).unsqueeze(-1).expand(*lead, B, K, M).flatten(-2))
            weights.append(
                (q_unit * rate.unsqueeze(-1)).unsqueeze(-2).expand(*lead, B, K, M, S).flatten(-3, -2)
            )
            durations.append(left.flatten(-2))
            infusion.append(running.flatten(-2))
            ok.append((running & steady.unsqueeze(-1)).flatten(-2))
    s_j, o_j, w_j = torch.cat(starts, -1), torch.cat(orders, -1), torch.cat(weights, -2)
    d_j, inf_j, ok_j = torch.cat(durations, -1), torch.cat(infusion, -1), torch.cat(ok, -1)
    # only the inputs that exist (for some draw) go on: the (requests x inputs) arrays below are
    # the cost, and most records are no dose and no steady state
    keep = ok_j.reshape(-1, B, ok_j.shape[-1]).any(0)  # (B, J)
    n_keep = max(int(keep.sum(-1).max()), 1)
    idx = torch.argsort((~keep).to(torch.int8), dim=-1, stable=True)[:, :n_keep]
    take = lambda v: v.gather(-1, ex(idx))  # noqa: E731
    s_j, o_j, d_j, inf_j, ok_j = take(s_j), take(o_j), take(d_j), take(inf_j), take(ok_j)
    w_j = w_j.gather(-2, ex(idx).unsqueeze(-1).expand(*lead, B, n_keep, S))

    # requests and the last reset before each
    t = ex(request["time"].to(lam.dtype))  # (..., B, T)
    p = ex(torch.where(request["record"] >= 0, request["record"], torch.full_like(request["record"], K + 1)))
    reset = valid & ((evid == 3) | (evid == 4) | (ss == 1))
    before = (t_rec.unsqueeze(-2) < t.unsqueeze(-1)) | (
        (t_rec.unsqueeze(-2) == t.unsqueeze(-1)) & (ex(ks).unsqueeze(-2) < p.unsqueeze(-1))
    )  # (..., B, T, K)
    last = torch.where(
        reset.unsqueeze(-2) & before, ex(ks).unsqueeze(-2), torch.full_like(before, -1, dtype=torch.long)
    )
    r_idx = last.max(-1).values  # (..., B, T)
    r_time = torch.where(r_idx >= 0, t_rec.gather(-1, r_idx.clamp_min(0)), torch.full_like(t, -float("inf")))

    u = t.unsqueeze(-1) - s_j.unsqueeze(-2)  # (..., B, T, J)
    counts = ok_j.unsqueeze(-2) & ((u > 0) | ((u == 0) & (o_j.unsqueeze(-2) < p.unsqueeze(-1))))
    after = (s_j.unsqueeze(-2) > r_time.unsqueeze(-1)) | (
        (s_j.unsqueeze(-2) == r_time.unsqueeze(-1)) & (o_j.unsqueeze(-2) >= r_idx.unsqueeze(-1))
    )
    counts = counts & after
    u = torch.where(counts, u, torch.zeros_like(u)).unsqueeze(-1)  # (..., B, T, J, 1)
    lam_r = lam.unsqueeze(-2).unsqueeze(-2)  # (..., B, 1, 1, S)
    m = torch.minimum(u, d_j.unsqueeze(-2).unsqueeze(-1).clamp_min(0))
    shape = torch.where(
        inf_j.unsqueeze(-2).unsqueeze(-1),
        torch.exp(lam_r * (u - m)) * _modes_step(lam_r, m),
        torch.exp(lam_r * u),
    )
    modes = (torch.where(counts.unsqueeze(-1), shape, torch.zeros_like(shape)) * w_j.unsqueeze(-3)).sum(-2)
    x = (V.unsqueeze(-3) @ modes.unsqueeze(-1)).squeeze(-1)  # (..., B, T, S)
    out = system.outputs(x, psi0.unsqueeze(-2))
    e = endpoint_map.to(lam.device)[ex(request["endpoint"]).clamp_min(0)]
    return out.gather(-1, e.unsqueeze(-1)).squeeze(-1)


def superpose_boluses(
    system,
    psi0: torch.Tensor,
    doses: Mapping[str, torch.Tensor],
    lag: torch.Tensor,
    amount: torch.Tensor,
    request: Mapping[str, torch.Tensor],
    endpoint_map,
    resets: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Predictions (..., B, T) of event tables holding only boluses (steady-state ones and resets
    included, no infusion): sum over doses of F AMT V e^{lambda u} V^-1 e_cmt, plus for a
    steady-state dose its series' state at the record (per mode e^{lambda (tau - lag)} /
    (1 - e^{lambda tau})), the inputs before each request's last reset left out. Compact arrays
    (B, J) ``time``, ``state``, ``order`` (record position), ``valid``, ``ii``, ``ss``; ``lag`` and
    ``amount`` (..., B, J); ``resets`` (B, R) ``time``, ``order``, ``valid``."""
    several = len(system.endpoints) > 1
    if several:  # the states (then every output): G = V^-1, the outputs after V below
        lam, V, G = system.modes(psi0)
    else:  # the concentration directly: G = (e_central' V / Vc) * V^-1
        lam, G = system.output_modes(psi0)  # (..., B, S), (..., B, S, S)
    lead = lam.shape[:-2]
    S = lam.shape[-1]
    t = request["time"].to(lam.dtype)
    p = torch.where(request["record"] >= 0, request["record"], torch.full_like(request["record"], 1 << 30))
    state = doses["state"].expand(*lead, *doses["state"].shape)
    coef = G.gather(-1, state.unsqueeze(-2).expand(*lead, G.shape[-3], S, state.shape[-1]))  # (..., B, S, J)
    coef = coef * amount.unsqueeze(-2)
    start = doses["time"].to(lam.dtype) + lag
    order, valid = doses["order"].expand_as(start), doses["valid"].expand_as(start)
    steady = doses["valid"] & (doses["ss"] > 0)
    if bool(steady.any()):  # the series' state at the record, as one more input per mode
        tau = torch.where(steady, doses["ii"].to(lam.dtype), torch.ones_like(start)).unsqueeze(-2)
        z = torch.exp(lam.unsqueeze(-1) * (tau - lag.unsqueeze(-2))) / (-torch.expm1(lam.unsqueeze(-1) * tau))
        coef = torch.cat([coef, coef * z], -1)
        start = torch.cat([start, doses["time"].to(lam.dtype).expand_as(lag)], -1)
        order = torch.cat([order, order], -1)
        valid = torch.cat([valid, steady.expand_as(valid)], -1)
    u = t.unsqueeze(-1) - start.unsqueeze(-2)  # (..., B, T, J)
    counts = valid.unsqueeze(-2) & ((u > 0) | ((u == 0) & (order.unsqueeze(-2) < p.unsqueeze(-1))))
    if resets is not None and bool(resets["valid"].any()):  # inputs before the last reset: gone
        rt, ro = resets["time"].to(lam.dtype).unsqueeze(-2), resets["order"].unsqueeze(-2)  # (B, 1, R)
        before = resets["valid"].unsqueeze(-2) & (
            (rt < t.unsqueeze(-1)) | ((rt == t.unsqueeze(-1)) & (ro < p.unsqueeze(-1)))
        )
        r_time = torch.where(before, rt, torch.full_like(rt, -float("inf"))).max(-1).values  # (B, T)
        r_order = torch.where(before, ro, torch.full_like(ro, -1)).max(-1).values
        after = (start.unsqueeze(-2) > r_time.unsqueeze(-1)) | (
            (start.unsqueeze(-2) == r_time.unsqueeze(-1)) & (order.unsqueeze(-2) >= r_order.unsqueeze(-1))
        )
        counts = counts & after
    decay = torch.exp(
        lam.unsqueeze(-2).unsqueeze(-1) * torch.where(counts, u, torch.zeros_like(u)).unsqueeze(-2)
    )
    if not several:
        return (decay * coef.unsqueeze(-3) * counts.unsqueeze(-2)).sum((-1, -2))  # (..., B, T)
    modes = (decay * coef.unsqueeze(-3) * counts.unsqueeze(-2)).sum(-1)  # (..., B, T, S)
    x = (V.unsqueeze(-3) @ modes.unsqueeze(-1)).squeeze(-1)
    out = system.outputs(x, psi0.unsqueeze(-2))  # (..., B, T, n_outputs)
    e = endpoint_map.to(lam.device)[request["endpoint"].clamp_min(0)]
    return out.gather(-1, e.expand(*out.shape[:-1]).unsqueeze(-1)).squeeze(-1)
