"""The event engine: a system's state moved from event to event for a batch of individuals, and
its outputs at the observation records.

Semantics (NONMEM's; tested scenario by scenario against deSolve in
``tests/reference/dynamics``):

1. Records are in time order within an individual, ties in file order; ADDL doses are records.
2. A bolus adds F * AMT to its compartment at TIME + tlag (tlag and F of that compartment).
3. RATE > 0: input RATE during F * AMT / RATE from TIME + tlag; RATE = -1: at the modeled
   rate during F * AMT / rate; RATE = -2: during the modeled duration at F * AMT / duration.
4. EVID 3 sets every state to 0 and stops every running infusion; EVID 4 does so, then doses.
5. SS = 1 at TIME s with II tau: a reset, then the state that the dose series at s + tlag - n tau
   (n >= 1) has produced at s, the infusions of the series still running at s continuing to
   their own end; then the record's own dose. SS = 2: the same state added, without reset.
6. An observation listed before a dose at the same time sees the pre-dose state.
7. Between events the inputs are constant and the parameters are those of the last record
   (time-varying parameters and covariates are carried forward).

Events: each record at its time, each dose at its (lagged) time, each infusion's end, and the ends
of the running infusions of steady-state series; their times depend on the parameters (lag,
duration), so they are sorted per individual and per draw. Shapes: psi (..., B, Kp, P) with Kp = 1
(parameters constant in time) or K (one row per record); records (B, K).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pymixnn.model.dynamics.system import DoseInputs, System

__all__ = ["solve_records", "DynamicsError", "check_steady_lag"]


class DynamicsError(ValueError):
    """A system that cannot be solved (a failed ODE solve, too many overlapping infusions)."""


def check_steady_lag(lag: torch.Tensor, tau: torch.Tensor, steady: torch.Tensor) -> None:
    """A steady-state dose whose lag time exceeds its II: the series' doses given before the record
    but absorbed after it would be inputs after the record, which rule 5 does not model (it would
    propagate them backwards in time: wrong predictions until they arrive). An error, not a guess."""
    bad = steady & (lag > tau)
    if bool(bad.any()):
        at = bad.nonzero()[0].tolist()
        raise DynamicsError(
            f"a steady-state dose (SS = 1 or 2) has lag time {float(lag[tuple(at)]):.6g} longer than its II "
            f"{float(tau[tuple(at)]):.6g} (individual position {at[-2]}, record {at[-1]}): the doses of its "
            "series still to be absorbed after the record are not supported; give the doses before it "
            "as records (ADDL) instead of SS"
        )


def _at(values: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """values (..., B, K[, C]) at record k (..., B)."""
    if values.dim() == k.dim() + 1:
        return values.gather(-1, k.unsqueeze(-1)).squeeze(-1)
    idx = k[..., None, None].expand(*k.shape, 1, values.shape[-1])
    return values.gather(-2, idx).squeeze(-2)


def _interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([a, b], dim=-1).flatten(-2)


def solve_records(
    system: System,
    rec: Mapping[str, torch.Tensor],
    psi: torch.Tensor,
    dosing: torch.Tensor,
    dose_state: torch.Tensor,
    endpoint_map: torch.Tensor,
    request: Mapping[str, torch.Tensor],
    max_overlap: int = 4,
) -> torch.Tensor:
    """Predictions (..., B, T) at the requested times.

    ``rec``: (B, K) tensors valid, time, amt, rate, ii, evid, cmt, ss and covariates (B, K, C);
    ``dosing``: :func:`dosing_table`; ``dose_state``: compartment number -> state index;
    ``endpoint_map``: data endpoint code -> system output index; ``request``: (B, T) tensors
    ``time``, ``endpoint`` (data endpoint code) and ``record`` (the position of an observation
    record among its individual's records, which fixes its place among records at the same
    time; -1 for a time of one's own, taken after every record at that time)."""
    lead = psi.shape[:-3]
    B, K = rec["time"].shape
    Kp, P = psi.shape[-2], psi.shape[-1]
    S = system.n_states
    ex = lambda v: v.expand(*lead, *v.shape)  # noqa: E731
    dt = psi.dtype
    ext = torch.cat([psi, psi.new_zeros(*psi.shape[:-1], 1), psi.new_ones(*psi.shape[:-1], 1)], -1)
    cmt = rec["cmt"].clamp(0, dosing.shape[0] - 1)
    cols = dosing.to(cmt.device)[cmt]  # (B, K, 4)

    def by_record(col: torch.Tensor) -> torch.Tensor:  # (B, K) column index -> (..., B, K)
        if Kp == 1:
            return ext[..., 0, :].gather(-1, ex(col) if lead else col)
        return ext.gather(-1, ex(col).unsqueeze(-1)).squeeze(-1)

    valid = ex(rec["valid"])
    evid, ss = ex(rec["evid"]), ex(rec["ss"])
    is_dose = valid & ((evid == 1) | (evid == 4))
    lag = torch.where(is_dose, by_record(cols[..., 0]), 0.0)
    amount = by_record(cols[..., 1]) * ex(rec["amt"])
    code = ex(rec["rate"])
    is_inf = is_dose & (code != 0)
    one = torch.ones((), dtype=dt, device=psi.device)
    r_mod, d_mod = by_record(cols[..., 2]), by_record(cols[..., 3])
    rate = torch.where(
        code > 0, code, torch.where(code == -1, r_mod, amount / torch.where(is_inf, d_mod, one))
    )
    dur = torch.where(
        code > 0,
        amount / torch.where(is_inf, code, one),
        torch.where(code == -1, amount / torch.where(is_inf, r_mod, one), d_mod),
    )
    rate, dur = torch.where(is_inf, rate, 0.0), torch.where(is_inf, dur, 0.0)
    state = dose_state.to(cmt.device)[cmt].clamp_min(0)  # (B, K)
    onehot = torch.nn.functional.one_hot(state, S).to(dt)  # (B, K, S)
    tau = ex(rec["ii"]).to(dt)
    check_steady_lag(lag, tau, is_dose & (ss > 0))

    t_rec = ex(rec["time"]).to(dt)
    t_dose = t_rec + lag
    t_end = t_dose + dur
    ss_inf = valid & is_inf & (ss > 0)
    M = max_overlap if bool(ss_inf.any()) else 0
    n = torch.arange(1, M + 1, dtype=dt, device=psi.device)
    elapsed = n * tau.unsqueeze(-1) - lag.unsqueeze(-1)  # (..., B, K, M): age at s of series dose n
    running = ss_inf.unsqueeze(-1) & (elapsed >= 0) & (elapsed < dur.unsqueeze(-1))
    if M and bool((ss_inf & ((M + 1) * tau - lag < dur)).any()):
        raise DynamicsError(
            f"a steady-state infusion lasts more than {M} dosing intervals; at most {M} overlapping "
            "infusions of one series are supported"
        )
    t_ss_end = t_rec.unsqueeze(-1) - elapsed + dur.unsqueeze(-1)
    doses = DoseInputs(lag, amount, rate, dur, is_dose, is_inf, state, onehot, tau, running)

    if Kp == 1 and hasattr(system, "modes"):  # compartments, constant in time: superposition
        from pymixnn.model.dynamics.superposition import superpose

        return superpose(system, rec, psi[..., 0, :], doses, request, endpoint_map)
    T = request["time"].shape[-1]
    req_rec = request["record"]
    own = ex(req_rec < 0)
    t_req = ex(request["time"].to(dt))
    times = torch.cat([_interleave(t_rec, t_dose), t_end, t_ss_end.flatten(-2), t_req], -1)
    ok = torch.cat([_interleave(valid, is_dose), is_inf, running.flatten(-2), own], -1)
    ks = torch.arange(K, device=psi.device)
    kind = torch.cat(
        [
            torch.tensor([0, 1], device=psi.device).repeat(K),
            torch.full((K + K * M + T,), 2, device=psi.device),
        ]
    )
    kind[3 * K :] = 3
    kind[3 * K + K * M :] = 4  # a requested time of its own: nothing happens there
    krec = torch.cat(
        [
            ks.repeat_interleave(2),
            ks,
            ks.repeat_interleave(M),
            torch.zeros(T, dtype=torch.long, device=psi.device),
        ]
    )
    slot = torch.cat(
        [
            torch.zeros(2 * K, dtype=torch.long, device=psi.device),
            ks,
            K + torch.arange(K * M, device=psi.device),
            torch.zeros(T, dtype=torch.long, device=psi.device),
        ]
    )
    key = torch.where(ok, times, torch.full_like(times, float("inf")))
    key, perm = torch.sort(key.detach(), dim=-1, stable=True)
    # where each request's state is read: after its observation record, or after its own event
    where_slot = torch.where(
        req_rec >= 0, 2 * req_rec.clamp_min(0), 3 * K + K * M + torch.arange(T, device=psi.device)
    )
    sorted_at = torch.argsort(perm, dim=-1).gather(-1, ex(where_slot))  # (..., B, T)
    ts = times.gather(-1, perm)
    vs = ok.gather(-1, perm)
    kind, krec, slot = kind[perm], krec[perm], slot[perm]
    n_steps = int(ok.sum(-1).max())

    # per-slot input rates and their target states
    slot_rate = torch.cat([rate, rate.unsqueeze(-1).expand(*rate.shape, M).flatten(-2)], -1)
    slot_state = torch.cat([onehot, onehot.repeat_interleave(M, dim=-2)], -2)  # (B, NS, S)
    flags = torch.zeros_like(slot_rate)
    cov = rec.get("covariates")
    has_cov = cov is not None and cov.shape[-1] > 0
    cov = ex(cov.to(dt)) if has_cov else None
    varying = Kp > 1 or has_cov
    if varying:  # the record in force over the step ending at each event (LOCF)
        prev = torch.cat([ts[..., :1], ts[..., :-1]], -1)
        seg = (torch.searchsorted(t_rec.contiguous(), prev.contiguous(), right=True) - 1).clamp(0, K - 1)
    psi0 = psi[..., 0, :]
    prev_t = torch.cat([ts[..., :1], ts[..., :-1]], -1)
    hs = torch.where(vs, ts - prev_t, torch.zeros_like(ts))  # valid events come first: prev is valid

    def segment(j: int):
        """Parameters, covariates and generator of the step ending at event j."""
        if not varying:
            return psi0, None
        kk = seg[..., j]
        return (_at(psi, kk) if Kp > 1 else psi0), (_at(cov, kk) if has_cov else None)

    def inputs(flags: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...bn,...bns->...bs", flags * slot_rate, slot_state)

    def act(j: int, x, flags):
        """The actions of event j: resets, steady states, doses (state), infusion starts and ends
        (flags). With x None, the flags only (events without a state action)."""
        vj, k, kd = vs[..., j], krec[..., j], kind[..., j]
        at_rec = vj & (kd == 0)
        ev, sk = _at(evid, k), _at(ss, k)
        if x is not None:
            reset = at_rec & ((ev == 3) | (ev == 4) | (sk == 1))
            if bool(reset.any()):
                x = torch.where(reset.unsqueeze(-1), system.initial(_at(psi, k) if Kp > 1 else psi0), x)
                flags = torch.where(reset.unsqueeze(-1), torch.zeros_like(flags), flags)
            steady = at_rec & (sk > 0)
            if bool(steady.any()):
                x, flags = _steady(system, x, flags, steady, k, psi, cov, doses)
        dose = vj & (kd == 1)
        if bool(dose.any()):
            inf_k = _at(is_inf, k)
            if x is not None:
                bolus = (dose & ~inf_k).to(dt) * _at(amount, k)
                x = x + bolus.unsqueeze(-1) * _at(onehot.expand(*lead, B, K, S), k)
            flags = _set(flags, k, dose & inf_k, 1.0)
        ends = vj & ((kd == 2) | (kd == 3))
        if bool(ends.any()):
            flags = _set(flags, slot[..., j], ends, 0.0)
        return x, flags

    # events that change the state (a bolus, a reset, a steady state) anywhere in the batch end a
    # run: between them an ODE system integrates all its steps in one solve
    k_all = krec[..., :n_steps]
    kd_all, v_all = kind[..., :n_steps], vs[..., :n_steps]
    state_action = v_all & (
        ((kd_all == 0) & ((evid.gather(-1, k_all) >= 3) | (ss.gather(-1, k_all) > 0)))
        | ((kd_all == 1) & ~is_inf.gather(-1, k_all))
    )
    jump = state_action.reshape(-1, n_steps).any(0).tolist()
    # events that change the inputs (an infusion's start or end) anywhere in the batch
    starts_ends = v_all & (((kd_all == 1) & is_inf.gather(-1, k_all)) | (kd_all == 2) | (kd_all == 3))
    change = starts_ends.reshape(-1, n_steps).any(0).tolist()
    run = system.advance_run if getattr(system, "integrates", False) else None
    x = system.initial(psi0)
    states = []
    j = 0
    while j < n_steps:
        J = j
        if run is not None:
            while n_steps - 1 > J and not jump[J]:
                J += 1
        rs, psis, covs = [], [], []
        for k in range(j, J + 1):  # the inputs of step k: the flags after event k - 1
            rs.append(inputs(flags))
            p_k, c_k = segment(k)
            psis.append(p_k)
            covs.append(c_k)
            if k < J:
                _, flags = act(k, None, flags)
        h = hs[..., j : J + 1]
        # a zero-length step changes no value, but its length may depend on the parameters (an
        # observation exactly at a lagged dose or an infusion's end): keep it in the graph
        if bool((h > 0).any()) or h.requires_grad:
            if run is not None:
                X = run(
                    x,
                    h,
                    torch.stack(rs, -2),
                    prev_t[..., j : J + 1],
                    torch.stack(psis, -2),
                    None if not has_cov else torch.stack(covs, -2),
                    # covariates are data: equal values over the run are the same inputs
                    smooth=Kp == 1
                    and not any(change[j:J])
                    and (not has_cov or all(torch.equal(covs[0], c) for c in covs[1:])),
                )
                states.extend(X[..., i, :] for i in range(J - j))
                x = X[..., -1, :]
            else:
                x = system.advance(
                    system.generator(psis[0], covs[0]), x, h[..., 0], rs[0], prev_t[..., j], psis[0], covs[0]
                )
        else:
            states.extend(x for _ in range(J - j))
        x, flags = act(J, x, flags)
        states.append(x)
        j = J + 1
    if not states:
        return psi.new_zeros(*lead, B, T)
    X = torch.stack(states, -2)  # (..., B, n, S)
    X = X.gather(-2, sorted_at.clamp_max(n_steps - 1).unsqueeze(-1).expand(*sorted_at.shape, S))
    if Kp == 1:
        psi_req = psi.expand(*lead, B, T, P)
    else:
        k_req = (torch.searchsorted(t_rec.contiguous(), t_req.contiguous(), right=True) - 1).clamp(0, K - 1)
        k_req = torch.where(ex(req_rec >= 0), ex(req_rec.clamp_min(0)), k_req)
        psi_req = _at_many(psi, k_req)
    out = system.outputs(X, psi_req)  # (..., B, T, n_outputs)
    e = endpoint_map.to(psi.device)[ex(request["endpoint"]).clamp_min(0)]
    return out.gather(-1, e.unsqueeze(-1)).squeeze(-1)


def _at_many(values: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """values (..., B, K, P) at records k (..., B, n) -> (..., B, n, P)."""
    return values.gather(-2, k.unsqueeze(-1).expand(*k.shape, values.shape[-1]))


def _set(flags: torch.Tensor, index: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    current = flags.gather(-1, index.unsqueeze(-1)).squeeze(-1)
    new = torch.where(mask, torch.full_like(current, value), current)
    return flags.scatter(-1, index.unsqueeze(-1), new.unsqueeze(-1))


def _steady(system, x, flags, steady, k, psi, cov, inputs: DoseInputs):
    """Add the steady state of the series of record k (rule 5) and start its running infusions;
    psi (..., B, Kp, P), cov (..., B, K, C) or None."""
    lead = x.shape[:-2]
    B, S = x.shape[-2], x.shape[-1]
    K, M = inputs.amount.shape[-1], inputs.running.shape[-1]
    amount, rate, dur, tau, lag = inputs.amount, inputs.rate, inputs.duration, inputs.tau, inputs.lag
    is_inf, running = inputs.is_inf, inputs.running
    psi_k = _at(psi, k) if psi.shape[-2] > 1 else psi[..., 0, :]
    cov_k = _at(cov, k) if cov is not None else None
    e = _at(inputs.onehot.expand(*lead, B, K, S), k)
    inf_k = _at(is_inf, k)
    bolus = torch.where(inf_k, 0.0, _at(amount, k)).unsqueeze(-1) * e
    r = torch.where(inf_k, _at(rate, k), 0.0).unsqueeze(-1) * e
    tau_k, lag_k, dur_k = _at(tau, k), _at(lag, k), _at(dur, k)
    run_k = (
        running.gather(-2, k[..., None, None].expand(*k.shape, 1, M)).squeeze(-2)
        if M
        else x.new_zeros(*k.shape, 0, dtype=torch.bool)
    )
    gen = system.generator(psi_k, cov_k)
    tau_safe = torch.where(steady, tau_k, torch.ones_like(tau_k))
    x_ss = system.steady_state(gen, psi_k, cov_k, bolus, r, dur_k, tau_safe, lag_k, run_k)
    if x_ss is None:
        from pymixnn.model.dynamics.cycles import cycle_steady_state

        x_ss = cycle_steady_state(system, gen, psi_k, cov_k, bolus, r, dur_k, tau_safe, lag_k, steady)
        # a cycled state is the whole state: SS=1 takes it (the reset has cleared x), SS=2 adds the
        # part above the system's own initial state
        x_ss = x_ss - system.initial(psi_k)
    x = x + torch.where(steady.unsqueeze(-1), x_ss, torch.zeros_like(x_ss))
    for m in range(M):
        flags = _set(flags, K + k * M + m, steady & run_k[..., m], 1.0)
    return x, flags
