"""A fitted law rebuilt from its record (``Estimation.law``, a LawFit or the former dict) and theta:
draws and log-density of the fitted random-effects law, in numpy."""

from __future__ import annotations

import math

import numpy as np
import torch

from pymixnn.inference.laws.base import tril_from_raw
from pymixnn.inference.laws.registry import build_law
from pymixnn.model.random_effects import from_dict

__all__ = ["fitted_law", "sample_fitted_law", "log_density_fitted_law"]


def fitted_law(record, theta, *, dtype=torch.float64):
    """Rebuild a fitted law from ``Estimation.law`` and theta: (law, L, raw) in torch."""
    spec = from_dict(record.get("spec"))
    theta = torch.as_tensor(theta, dtype=dtype)
    o0, o1 = record["omega_slice"]
    l0, l1 = record["law_slice"]
    full = bool(record["full_omega"])
    raw_omega = theta[o0:o1]
    d = int(round((math.sqrt(8 * raw_omega.numel() + 1) - 1) / 2)) if full else raw_omega.numel()
    context = record.get("context")
    context_dim = 0 if not context else len(context[0])
    law = build_law(spec, d, full, context_dim=context_dim, dtype=dtype, seed=int(record.get("seed", 0)))
    return law, tril_from_raw(raw_omega, d, full), theta[l0:l1]


def sample_fitted_law(record, theta, n: int, seed: int):
    """n draws of eta from the fitted law, centred (E[eta] of the fit subtracted), numpy (n, d).
    A conditional flow is sampled at the contexts of randomly chosen fitted individuals."""
    law, L, raw = fitted_law(record, theta)
    gen = torch.Generator().manual_seed(int(seed))
    context = None
    if law.conditional:
        ctx = torch.as_tensor(record["context"], dtype=L.dtype)
        context = ctx[torch.randint(ctx.shape[0], (n,), generator=gen)]
    with torch.no_grad():
        eta = law.sample(L, raw, n, gen, context)
    return eta.numpy() - np.asarray(record.get("shift", np.zeros(eta.shape[1])))


def log_density_fitted_law(record, theta, eta_centred):
    """Joint log-density of centred eta points (numpy (n, d)) under the fitted law (not for
    conditional flows, whose density depends on the covariates)."""
    law, L, raw = fitted_law(record, theta)
    if law.conditional:
        raise ValueError("the law of a conditional flow depends on its context covariates")
    shift = torch.as_tensor(record.get("shift", np.zeros(L.shape[0])), dtype=L.dtype)
    points = torch.as_tensor(np.asarray(eta_centred, float), dtype=L.dtype) + shift
    with torch.no_grad():
        return law.log_prob(L, raw, points).numpy()
