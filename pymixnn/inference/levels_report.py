"""Reporting of a fit with grouping levels (levels.py): the GLS covariance of the level parameters'
fixed effects in theta's covariance, and the levels' rows of the parameter table."""

from __future__ import annotations

import math

import numpy as np
import torch

from pymixnn.inference.fields import ENTRY_NAMES
from pymixnn.inference.offsets import residual_moments
from pymixnn.inference.records import LevelsFit

__all__ = [
    "gls_theta_cov",
    "joint_covariance",
    "joint_moments",
    "level_table",
    "natural_to_omega",
    "omega_entries",
]


def natural_to_omega(values: torch.Tensor, p: int, full: bool) -> torch.Tensor:
    """Omega_l from its reported entries: the variances, then (full) the covariances (b < a)."""
    omega = torch.diag(values[:p])
    if full:
        pairs = [(a, b) for a in range(p) for b in range(a)]
        rows = torch.tensor([a for a, _ in pairs], device=values.device)
        cols = torch.tensor([b for _, b in pairs], device=values.device)
        low = torch.zeros(p, p, dtype=values.dtype, device=values.device).index_put((rows, cols), values[p:])
        omega = omega + low + low.T
    return omega


def omega_entries(omega: torch.Tensor, full: bool) -> torch.Tensor:
    p = omega.shape[0]
    vals = [omega[a, a] for a in range(p)]
    if full:
        vals += [omega[a, b] for a in range(p) for b in range(a)]
    return torch.stack(vals)


def joint_moments(block, theta: torch.Tensor, local):
    """The pseudo data's sufficient statistics as a function of the individual-level Omega' (its
    raw entries in theta's parametrization), each individual's pseudo-likelihood precision being
    Lam_i(Omega') = (Omega' + H_i^-1)^-1 for its data precision H_i (from its posterior at
    theta); returns that function (-> moments, sum_i log|I + M_i Omega' M_i'|) and theta's raw
    Omega entries."""
    from pymixnn.inference.laws import tril_from_raw

    program, f64 = block.program, torch.float64
    lay = program.layout
    if block.direct:  # no individual random effects: with a Gaussian constant error, log a
        return residual_moments(block, theta)
    L = program.omega_tril(theta.detach()).to(f64)
    Linv = torch.linalg.inv(L)
    St = local.scale_tril.detach().to(f64)
    Sw = Linv @ (St @ St.transpose(-1, -2)) @ Linv.T
    r, Q = torch.linalg.eigh(0.5 * (Sw + Sw.transpose(-1, -2)))
    r = r.clamp(1e-10, 1.0)
    keep = 1.0 - r
    white = (Q.transpose(-1, -2) @ (Linv @ local.loc.detach().to(f64).unsqueeze(-1))).squeeze(-1)
    # M_i' M_i = H_i (rows: the posterior's principal directions); M_i des_i without 1/(1 - r)
    M = (keep / r).sqrt().unsqueeze(-1) * (Q.transpose(-1, -2) @ Linv)
    Mdes = torch.where(keep > 1e-12, white / (keep * r).clamp_min(1e-300).sqrt(), torch.zeros_like(white))
    u = (M @ block.pseudo(theta, local)["w"].unsqueeze(-1)).squeeze(-1) + Mdes
    d, full = lay.n_random, lay.full_omega
    eye = torch.eye(d, dtype=f64, device=L.device)

    def moments_at(omega_raw: torch.Tensor):
        Lp = tril_from_raw(omega_raw, d, full)
        cA = torch.linalg.cholesky(eye + M @ (Lp @ Lp.T) @ M.transpose(-1, -2))
        Lam = M.transpose(-1, -2) @ torch.cholesky_solve(M, cA)
        Au = torch.cholesky_solve(u.unsqueeze(-1), cA).squeeze(-1)
        mom = block._moments_from(Lam, (M.transpose(-1, -2) @ Au.unsqueeze(-1)).squeeze(-1), (u * Au).sum())
        return mom, 2 * torch.log(torch.diagonal(cA, dim1=-2, dim2=-1)).sum()

    return moments_at, theta.detach().to(f64)[lay.omega]


def joint_covariance(block, theta: torch.Tensor, local, entries: torch.Tensor, sizes: list[int]):
    """Covariance of theta's Omega block (its raw log-Cholesky / log-sd entries) and the levels'
    reported entries, from the observed information of the pseudo data's likelihood in both (mu
    profiled out; joint_moments): the individual variances and the levels' trade off (a field on
    a parameter against its individual variance: 2 x the conditional SE when each location has
    one individual). Returns it and whether a pseudo-inverse was needed."""
    moments_at, omega_raw = joint_moments(block, theta, local)
    n_o = len(omega_raw)

    def objective(vec: torch.Tensor) -> torch.Tensor:
        mom, logdet_a = moments_at(vec[:n_o])
        return block._solve(block.priors_from_entries(vec[n_o:], sizes), mom, None)["ll"] - 0.5 * logdet_a

    H = torch.autograd.functional.hessian(objective, torch.cat([omega_raw, entries]))
    info = -0.5 * (H + H.T)
    try:
        cov = torch.linalg.inv(info)
        if not bool(torch.all(torch.diagonal(cov) > 0)):
            raise RuntimeError("not positive")
        return cov, False
    except RuntimeError:  # a variance at its floor: no information about it
        return torch.linalg.pinv(info), True


def gls_theta_cov(cov_theta: torch.Tensor, rec: LevelsFit) -> torch.Tensor:
    """The covariance of theta with the levels' blocks: the level parameters' fixed effects (mu and
    their covariate effects, ``rec.fixed_index``) take the GLS covariance, which includes the
    levels' variance, and Omega (``rec.omega_index``) the joint information's (joint_covariance);
    the refinement's own are conditional on the offsets. Their correlations with the other
    entries are kept. The reported SEs follow by the delta method."""
    cov = cov_theta.clone()
    blocks = [(rec.fixed_index, rec.fixed_cov)]
    if rec.omega_index is not None:
        blocks.append((rec.omega_index, rec.omega_cov))
    scale = torch.ones(cov.shape[0], dtype=cov.dtype, device=cov.device)
    for index, block in blocks:
        idx = torch.tensor(index, device=cov.device)
        new = torch.as_tensor(block, dtype=cov.dtype, device=cov.device)
        old_sd = torch.diagonal(cov_theta)[idx].clamp_min(0).sqrt()
        new_sd = torch.diagonal(new).clamp_min(0).sqrt()
        scale[idx] = torch.where(old_sd > 0, new_sd / old_sd, torch.zeros_like(old_sd))
    cov = cov * scale.unsqueeze(0) * scale.unsqueeze(1)
    for index, block in blocks:
        idx = torch.tensor(index, device=cov.device)
        cov[idx.unsqueeze(-1), idx] = torch.as_tensor(block, dtype=cov.dtype, device=cov.device)
    return cov


def _row(name: str, kind: str, param: str, e: float, rec: LevelsFit, k: int, scale: str) -> dict:
    """One reported row: estimate e with the SE from entry k of the levels' information (NaN for
    a variance at its floor)."""
    from pymixnn.model import transforms as tr

    se = math.sqrt(max(float(rec.entries_cov[k, k]), 0.0))
    if rec.pseudo_inverse and se < 1e-8:  # a variance at its floor: no information
        se = float("nan")
    est_t, se_t = tr.delta_method(scale, float(e), se)
    return dict(
        name=name,
        kind=kind,
        parameter=param,
        estimate=float(e),
        se=se,
        estimate_transformed=est_t,
        se_transformed=se_t,
        scale=scale,
    )


def level_table(rec: LevelsFit, table: list[dict], cov_rep: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """The reported table and its covariance with the levels' rows ``omega2.<level>.<p>`` (and
    ``cov.<level>.<p_b>.<p_a>`` for a full covariance), kind "level", after the others."""
    from pymixnn.model.parameters import omega_rows, omega_scale

    rows, start = [], 0
    kinds = rec.kinds or ["level"] * len(rec.names)
    for c, (name, params, omega, size) in enumerate(zip(rec.names, rec.params, rec.omega, rec.entries_size)):
        p = len(params)
        if kinds[c] != "level":  # a spatial field: rows spatial.<p>.<entry>
            for j, what in enumerate(ENTRY_NAMES[kinds[c]]):
                k = start + j
                scale = "identity" if what.startswith("rho") else "log"  # sd, range: log-scale CIs
                row = _row(
                    f"spatial.{params[0]}.{what}", "spatial", params[0], rec.entries[c][j], rec, k, scale
                )
                rows.append((k, row))
            start += size
            continue
        pairs = [(x, y) for x in range(p) for y in range(x)]
        for row_name, param, a, b in omega_rows(params, size > p, f"{name}."):
            k = start + (a if a == b else p + pairs.index((a, b)))
            rows.append((k, _row(row_name, "level", param, float(omega[a, b]), rec, k, omega_scale(a, b))))
        start += size
    n0, n1 = len(table), len(rows)
    out = np.zeros((n0 + n1, n0 + n1))
    out[:n0, :n0] = cov_rep
    idx = [k for k, _ in rows]
    out[n0:, n0:] = np.asarray(rec.entries_cov)[np.ix_(idx, idx)]
    return list(table) + [r for _, r in rows], out


def export(self, theta: torch.Tensor, local, rounds: int) -> LevelsFit:
    """Numpy record at theta and the (refreshed) local posteriors: estimates and SEs of the
    level covariances, the GLS fixed effects' covariance, the level effects' posterior means
    and sds, and the log-likelihood correction (the levels integrated out)."""
    ps = self.pseudo(theta, local)
    mom = self._moments(ps)
    from pymixnn.inference.laws import tril_from_raw

    priors = [(pr.detach(), ld.detach()) for pr, ld in self._priors(self.raw)]
    # reported entries: a level's variances and covariances, a field's (sd and range, or sd and
    # the AR1 correlations)
    entries, omegas = [], []
    for k, (r, full, kind) in enumerate(zip(self.raw, self.setup.full, self.kinds)):
        if kind == "level":
            Lt = tril_from_raw(r, self.sizes[k][1], full)
            omegas.append(Lt @ Lt.T)
            entries.append(omega_entries(omegas[-1], full))
        else:
            entries.append(self._field_values(k, r).detach())
            omegas.append(entries[-1][:1] ** 2)
    sizes = [len(e) for e in entries]
    flat = torch.cat(entries)

    cov_joint, pseudo_inverse = joint_covariance(self, theta, local, flat, sizes)
    n_o = cov_joint.shape[0] - len(flat)  # theta's entries fitted with the levels (joint_slice)
    cov_hyper, omega_cov = cov_joint[n_o:, n_o:], cov_joint[:n_o, :n_o]
    with torch.no_grad():
        at_theta = self._solve(priors, mom, ps["mu"])
        gls = self._solve(priors, mom, None)
    # ll_i(o_i) - log N(z_i; o_i, V_i) + log N(z~; J mu, Sigma): the log|Lambda_i| and 2 pi
    # terms cancel; at theta's mu (the individuals' ll are evaluated there)
    correction = float(at_theta["ll"])
    try:  # the GLS covariance; singular where a field is confounded with an intercept
        fixed_cov = torch.linalg.inv(gls["info"])
    except RuntimeError:
        fixed_cov, pseudo_inverse = (
            torch.linalg.pinv(gls["info"], hermitian=True),
            True,
        )  # its quadratic form is z'Lam z - sum des'Lam des
    b, b_sd = at_theta["b"], self._posterior_cov(at_theta["LQ"])[1].clamp_min(0).sqrt()
    np_ = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    effects, effects_sd, start = [], [], 0
    for g, p in self.sizes:
        effects.append(np_(b[start : start + g * p]).reshape(g, p))
        effects_sd.append(np_(b_sd[start : start + g * p]).reshape(g, p))
        start += g * p
    return LevelsFit(
        names=list(self.setup.names),
        params=[list(p) for p in self.setup.params],
        full=list(self.setup.full),
        omega=[np_(o).reshape(len(p), len(p)) for o, p in zip(omegas, self.setup.params)],
        entries=[np_(e) for e in entries],
        kinds=list(self.kinds),
        kernels=list(self.kernels),
        coords=list(self.setup.coords),
        entries_cov=np_(cov_hyper),
        entries_size=sizes,
        labels=[np.asarray(lab).tolist() for lab in self.setup.labels],
        groups=[np.asarray(g) for g in self.setup.groups],
        effects=effects,
        effects_sd=effects_sd,
        fixed_index=list(self.fixed_index),
        fixed_gls=np_(gls["mu"]),
        fixed_cov=np_(fixed_cov),
        omega_index=list(range(self.joint_slice.start, self.joint_slice.stop)) if n_o else None,
        omega_cov=np_(omega_cov) if n_o else None,
        offset=np_(self._offsets(b)),
        loglik_correction=correction,
        n_hyper=int(sum(sizes)),
        updates=self.updates,
        rounds=rounds,
        pseudo_inverse=pseudo_inverse,
    )
