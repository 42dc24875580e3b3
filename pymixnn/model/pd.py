"""Pharmacodynamic dose-response models (saemix's PD1/PD2 examples).

>>> import torch
>>> from pymixnn.model.pd import emax
>>> float(emax(torch.tensor([10.0, 100.0, 20.0]), torch.tensor([20.0])))
60.0
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["emax", "sigmoid_emax", "start_emax", "start_sigmoid_emax", "turnover_rhs", "turnover_model"]


def emax(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E = E0 + Emax d / (ED50 + d); x column 0 is the dose (or concentration).

    Named model ``"emax"``: transforms E0 identity, Emax log, ED50 log; x: (dose,).
    """
    d = x[..., 0]
    return psi[..., 0] + psi[..., 1] * d / (psi[..., 2] + d)


def sigmoid_emax(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """E = E0 + Emax d^gamma / (ED50^gamma + d^gamma).

    Named model ``"sigmoid_emax"``: transforms E0 identity, Emax log, ED50 log, gamma log;
    x: (dose,).
    """
    d = x[..., 0]
    positive = d > 0
    # d ** gamma with a finite derivative in gamma at dose 0 (0 * log 0 would give NaN)
    dg = torch.where(
        positive, torch.where(positive, d, torch.ones_like(d)) ** psi[..., 3], torch.zeros_like(d)
    )
    return psi[..., 0] + psi[..., 1] * dg / (psi[..., 2] ** psi[..., 3] + dg)


def start_emax(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """E0 from the lowest dose, Emax from the range, ED50 from the dose giving half of it."""
    d = x[:, 0]
    doses = np.unique(d)
    m = np.array([np.median(y[d == s]) for s in doses])
    e0 = float(m[0])
    top = float(m[-1])
    span = top - e0 if abs(top - e0) > 1e-8 else 1.0
    half = np.nonzero((m - e0) / span >= 0.5)[0]
    ed50 = (
        float(doses[half[0]])
        if half.size and doses[half[0]] > 0
        else float(np.median(doses[doses > 0]) if np.any(doses > 0) else 1.0)
    )
    return {"E0": e0, "Emax": abs(span) * 1.2, "ED50": max(ed50, 1e-6)}


def start_sigmoid_emax(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {**start_emax(x, y), "gamma": 1.0}


def turnover_rhs(t, x: torch.Tensor, psi: torch.Tensor, cov=None) -> torch.Tensor:
    """Right-hand side of the warfarin-like PK/PD model for :func:`pymixnn.ODEModel`: one-compartment
    oral PK and an indirect response whose production the concentration inhibits (Imax 1),
    dR/dt = R0 kout (1 - C / (IC50 + C)) - kout R, C = central / V. States depot, central, R;
    psi: ka, CL, V, R0, kout, IC50 (the design ``"turnover"`` of
    :func:`pymixnn.simulate.simulate_pkpd`)."""
    ka, cl, v, r0, kout, ic50 = psi.unbind(-1)
    # the solver's trial stages can take the central amount a rounding error below 0, where
    # C / (IC50 + C) has a pole at C = -IC50: the effect sees C >= 0
    c = (x[..., 1] / v).clamp_min(0.0)
    return torch.stack(
        [
            -ka * x[..., 0],
            ka * x[..., 0] - cl / v * x[..., 1],
            r0 * kout * (1 - c / (ic50 + c)) - kout * x[..., 2],
        ],
        -1,
    )


def turnover_model(**options):
    """The :func:`pymixnn.ODEModel` of :func:`turnover_rhs`: outputs ``cp`` (central / V) and ``pca``
    (R), R(0) = R0, log transforms; ``options`` (random, start, error, ...) go to ODEModel."""
    from pymixnn.model.dynamics.models import ODEModel

    return ODEModel(
        turnover_rhs,
        states=["depot", "central", "R"],
        parameters=["ka", "CL", "V", "R0", "kout", "IC50"],
        outputs={"cp": lambda x, psi: x[..., 1] / psi[..., 2], "pca": lambda x, psi: x[..., 2]},
        init={"R": lambda psi: psi[..., 3]},
        **{"transforms": "log", **options},
    )
