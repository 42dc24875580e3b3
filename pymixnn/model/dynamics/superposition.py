"""Linear compartment models with parameters constant in time: every prediction as a sum over
inputs, vectorized over individuals, requested times and doses (no loop over events); for
boluses with many draws the sum runs as a recurrence over each individual's inputs
(:func:`_recurrence`: one vectorized step per input, not per event of the engine's kind).

In the eigenbasis of A (A = V diag(lambda) V^-1) each input acts on each mode separately: a bolus q
gives q e^{lambda u} after u, an infusion of rate q lasting D gives
q e^{lambda (u - m)} (e^{lambda m} - 1) / lambda with m = min(u, D), and the state that a
steady-state series leaves at its record is a geometric sum per mode, 1 / (1 - e^{lambda tau}).
Resets drop the inputs before them. The semantics are those of
:mod:`pymixnn.model.dynamics.engine` (the loop over events, which handles time-varying parameters);
both are checked against deSolve.
"""

from __future__ import annotations

import math
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


# cells (draws x B x T x J) from which the sum over inputs runs as a recurrence (_recurrence):
# below, its loop over inputs costs more operations than the direct sum saves (Phenobarb, one
# draw x 59 x 6 x 15 cells: 1.0 -> 1.3 ms a pass; 4 draws: equal)
RECURRENCE_CELLS = 50_000


def _recurrence(lam, coef, start, order, valid, t, counts) -> torch.Tensor | None:
    """sum_j counts[b, t, j] coef[..., b, s, j] e^{lambda_s (t - start_j)}, (..., B, T, S), by the
    recurrence over each individual's inputs in time order: X_j = keep_j X_{j-1}
    e^{lambda (start_j - start_{j-1})} + coef_j (keep_j = 0 where a reset falls between j - 1 and j),
    then each request's sum is X at its last counted input times e^{lambda (t - start_last)}.
    Every exponent is <= 0 (no overflow whatever lambda and the time span), the exponentials
    are (..., B, S, J) + (..., B, T, S) instead of (..., B, T, S, J), and the loop runs over the
    inputs. A pass with its gradient: Phenobarb (225 nodes x 59 neonates x 6 requests x 15
    doses) 58 -> 16 ms; Quinidine (167 nodes x 136 patients x 11 requests x 49 inputs) 2.0 ->
    0.22 s, its fit 60 -> 10 s with the same estimates. It needs the inputs
    that count for each request to be one run of consecutive inputs ending at its last one
    before the request, which the mask is checked against: None where it is not (then the
    direct sum). ``start``, ``order``, ``valid`` (B, J) and ``counts`` (B, T, J) hold no draws."""
    B, T, J = counts.shape
    # valid inputs first, in time then record order (a permutation of data only)
    p1 = torch.argsort(order, dim=-1, stable=True)
    p2 = torch.argsort(start.gather(-1, p1), dim=-1, stable=True)
    perm = p1.gather(-1, p2)
    perm = perm.gather(-1, torch.argsort((~valid.gather(-1, perm)).to(torch.int8), dim=-1, stable=True))
    s = start.gather(-1, perm)
    m = counts.gather(-1, perm.unsqueeze(-2).expand(B, T, J))
    j = torch.arange(J, device=counts.device)
    has = m.any(-1)  # (B, T)
    last = torch.where(m, j, torch.full_like(m, -1, dtype=torch.long)).amax(-1)  # (B, T)
    # a run starts at input j where some request counts j but not j - 1
    breaks = torch.cat([torch.ones_like(m[:, 0, :1]), (m[..., 1:] & ~m[..., :-1]).any(-2)], -1)  # (B, J)
    run = torch.cumsum(breaks.to(torch.long), -1)
    li = last.clamp_min(0)
    implied = (j <= last.unsqueeze(-1)) & (run.unsqueeze(-2) == run.gather(-1, li).unsqueeze(-1))
    if not torch.equal(implied & has.unsqueeze(-1), m):
        return None
    n_used = int(last.max()) + 1
    if n_used <= 0:
        return torch.zeros(*lam.shape[:-2], B, T, lam.shape[-1], dtype=lam.dtype, device=lam.device)
    lead = coef.shape[:-3]
    c = coef.gather(-1, perm[..., :n_used].unsqueeze(-2).expand(*lead, B, coef.shape[-2], n_used))
    # an individual's invalid inputs (after its valid ones, up to n_used; no request reads X
    # there): coefficient 0, decay 0 and gap 0 (their padded times would give negative gaps,
    # e^{-lambda |gap|} overflows, and its 0 * inf is a NaN gradient)
    on = valid.gather(-1, perm)[:, :n_used]
    c = c * on.unsqueeze(-2)
    keep = on[:, 1:] & ~breaks[:, 1:n_used]
    gap = torch.where(keep, s[:, 1:n_used] - s[:, : n_used - 1], torch.zeros_like(s[:, 1:n_used]))
    decay = torch.exp(lam.unsqueeze(-1) * gap.unsqueeze(-2)) * keep.unsqueeze(-2)  # (..., B, S, n_used - 1)
    # inputs first, each step a contiguous slice; unbind, whose backward stacks the slices'
    # gradients once (an index per step would add a whole zero array per step)
    c, decay = c.movedim(-1, 0).contiguous().unbind(0), decay.movedim(-1, 0).contiguous().unbind(0)
    X = [c[0]]
    for k in range(1, n_used):
        X.append(torch.addcmul(c[k], X[-1], decay[k - 1]))
    Xs = torch.stack(X, -1)  # (..., B, S, n_used)
    li = li.clamp_max(n_used - 1)
    at = Xs.gather(-1, li.unsqueeze(-2).expand(*Xs.shape[:-1], T))  # (..., B, S, T)
    dt = torch.where(has, t - s.gather(-1, li), torch.zeros_like(t))
    out = at * torch.exp(lam.unsqueeze(-1) * dt.unsqueeze(-2)) * has.unsqueeze(-2)
    return out.transpose(-1, -2)


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
    st = doses["state"]
    if bool((st == st.reshape(-1)[0]).all()):  # every dose into one state: one column of G
        coef = G[..., int(st.reshape(-1)[0])].unsqueeze(-1) * amount.unsqueeze(-2)  # (..., B, S, J)
    else:
        state = st.expand(*lead, *st.shape)
        coef = G.gather(-1, state.unsqueeze(-2).expand(*lead, G.shape[-3], S, state.shape[-1]))
        coef = coef * amount.unsqueeze(-2)
    start = doses["time"].to(lam.dtype) + lag
    order, valid = doses["order"].expand_as(start), doses["valid"].expand_as(start)
    steady = doses["valid"] & (doses["ss"] > 0)
    if bool(steady.any()):  # the series' state at the record, as one more input per mode
        # for the steady-state doses only, packed to the left (B, J_ss): Quinidine has 40 dose
        # records per patient and at most 9 of them steady-state
        n_ss = int(steady.sum(-1).max())
        pick = torch.argsort((~steady).to(torch.int8), dim=-1, stable=True)[:, :n_ss]  # (B, J_ss)

        def take(v: torch.Tensor) -> torch.Tensor:
            return v.gather(-1, pick.expand(*v.shape[:-2], *pick.shape) if v.dim() > 2 else pick)

        on = take(steady)
        tau = torch.where(on, take(doses["ii"]).to(lam.dtype), torch.ones_like(on, dtype=lam.dtype))
        lag_s = take(lag)
        z = torch.exp(lam.unsqueeze(-1) * (tau - lag_s).unsqueeze(-2)) / (
            -torch.expm1(lam.unsqueeze(-1) * tau.unsqueeze(-2))
        )
        coef_s = coef.gather(-1, pick.unsqueeze(-2).expand(*coef.shape[:-1], n_ss))
        coef = torch.cat([coef, coef_s * z], -1)
        time_s = take(doses["time"]).to(lam.dtype)
        start = torch.cat([start, time_s.expand(*start.shape[:-1], n_ss)], -1)
        order = torch.cat([order, take(doses["order"]).expand(*order.shape[:-1], n_ss)], -1)
        valid = torch.cat([valid, on.expand(*valid.shape[:-1], n_ss)], -1)
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
    modes = None
    if counts.dim() == 3 and math.prod(lam.shape[:-2]) * counts.numel() >= RECURRENCE_CELLS:
        modes = _recurrence(lam, coef, start, order, valid, t, counts)
    if modes is None:
        # e^{lambda u} times the mask of the inputs that count, u set to 0 where the mask is 0
        # (an exp of -inf, or of a large negative number, takes a slow path: 3x the time)
        u = torch.where(counts, u, torch.zeros_like(u)).unsqueeze(-2)  # (..., B, T, 1, J)
        decay = torch.exp(lam.unsqueeze(-2).unsqueeze(-1) * u) * counts.unsqueeze(-2)  # (..., B, T, S, J)
        modes = (decay * coef.unsqueeze(-3)).sum(-1)  # (..., B, T, S)
    if not several:  # (..., B, T); one mode: no reduction (a sum over a last axis of 1 is a slow copy)
        return modes.squeeze(-1) if S == 1 else modes.sum(-1)
    x = (V.unsqueeze(-3) @ modes.unsqueeze(-1)).squeeze(-1)
    out = system.outputs(x, psi0.unsqueeze(-2))  # (..., B, T, n_outputs)
    e = endpoint_map.to(lam.device)[request["endpoint"].clamp_min(0)]
    return out.gather(-1, e.expand(*out.shape[:-1]).unsqueeze(-1)).squeeze(-1)
