"""Reporting of a fit with grouping levels (levels.py): the GLS covariance of the level parameters'
fixed effects in theta's covariance, and the levels' rows of the parameter table."""

from __future__ import annotations

import math

import numpy as np
import torch

from pymixnn.inference.records import LevelsFit

__all__ = ["gls_theta_cov", "level_table"]


def gls_theta_cov(cov_theta: torch.Tensor, rec: LevelsFit) -> torch.Tensor:
    """The covariance of theta with the GLS block of the level parameters' fixed effects (mu and
    their covariate effects, ``rec.fixed_index``): that block replaced by the GLS covariance, which
    includes the levels' variance (the refinement's own is conditional on the offsets); their
    correlations with the other entries kept. The reported SEs follow by the delta method."""
    cov = cov_theta.clone()
    idx = torch.tensor(rec.fixed_index, device=cov.device)
    new = torch.as_tensor(rec.fixed_cov, dtype=cov.dtype, device=cov.device)
    old_sd = torch.diagonal(cov)[idx].clamp_min(0).sqrt()
    ratio = torch.where(
        old_sd > 0, torch.diagonal(new).clamp_min(0).sqrt() / old_sd, torch.zeros_like(old_sd)
    )
    scale = torch.ones(cov.shape[0], dtype=cov.dtype, device=cov.device)
    scale[idx] = ratio
    cov = cov * scale.unsqueeze(0) * scale.unsqueeze(1)
    cov[idx.unsqueeze(-1), idx] = new
    return cov


def level_table(rec: LevelsFit, table: list[dict], cov_rep: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """The reported table and its covariance with the levels' rows ``omega2.<level>.<p>`` (and
    ``cov.<level>.<p_b>.<p_a>`` for a full covariance), kind "level", after the others."""
    from pymixnn.model import transforms as tr
    from pymixnn.model.parameters import omega_rows, omega_scale

    rows, start = [], 0
    for name, params, omega, size in zip(rec.names, rec.params, rec.omega, rec.entries_size):
        p = len(params)
        pairs = [(x, y) for x in range(p) for y in range(x)]
        for row_name, param, a, b in omega_rows(params, size > p, f"{name}."):
            k = start + (a if a == b else p + pairs.index((a, b)))
            e = float(omega[a, b])
            se = math.sqrt(max(float(rec.entries_cov[k, k]), 0.0))
            if rec.pseudo_inverse and se < 1e-8:  # a variance at its floor: no information
                se = float("nan")
            scale = omega_scale(a, b)
            est_t, se_t = tr.delta_method(scale, e, se)
            row = dict(name=row_name, kind="level", parameter=param, estimate=e, se=se)
            rows.append((k, dict(row, estimate_transformed=est_t, se_transformed=se_t, scale=scale)))
        start += size
    n0, n1 = len(table), len(rows)
    out = np.zeros((n0 + n1, n0 + n1))
    out[:n0, :n0] = cov_rep
    idx = [k for k, _ in rows]
    out[n0:, n0:] = np.asarray(rec.entries_cov)[np.ix_(idx, idx)]
    return list(table) + [r for _, r in rows], out
