"""Pharmacokinetic models.

>>> import torch
>>> from pymixnn.model.pk import onecpt_oral
>>> round(float(onecpt_oral(torch.tensor([1.5, 30.0, 3.0]), torch.tensor([320.0, 2.0]))), 4)
8.7879
"""

from __future__ import annotations

import numpy as np
import torch

# numpy's trapezoidal rule under its NumPy 2 name, or its NumPy 1 name (np.trapz is gone from
# NumPy 2.4; the R package's environment keeps numpy < 2); not scipy.integrate, whose import
# cost 0.35 s of `import pymixnn`
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

__all__ = ["onecpt_oral", "start_onecpt_oral"]


def onecpt_oral(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One-compartment model, first-order absorption, single oral dose (saemix's theophylline model).

    C(t) = D ka / (V (ka - k)) (exp(-k t) - exp(-ka t)), k = CL / V; x columns: dose, time.

    Named model ``"onecpt_oral"``: transforms ka log, V log, CL log; x: (dose, time), time
    declared (``Model.time`` = 1) for VPCs and individual plots.
    """
    ka, v, cl = psi[..., 0], psi[..., 1], psi[..., 2]
    dose, t = x[..., 0], x[..., 1]
    k = cl / v
    return dose * ka / (v * (ka - k)) * (torch.exp(-k * t) - torch.exp(-ka * t))


def start_onecpt_oral(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """CL from dose / AUC of the pooled profile, k from its terminal log-linear slope, ka = 3 k."""
    dose, t = x[:, 0], x[:, 1]
    times = np.unique(t) if np.unique(t).size <= 50 else np.quantile(t, np.linspace(0, 1, 25))
    idx = np.clip(np.searchsorted(times, t), 0, times.size - 1)
    prof = np.array([np.median(y[idx == j]) if np.any(idx == j) else np.nan for j in range(times.size)])
    ok = np.isfinite(prof) & (prof > 0)
    tt, cc = times[ok], prof[ok]
    auc = _trapezoid(np.concatenate([[0.0], cc]), np.concatenate([[0.0], tt]))
    tail = slice(max(len(tt) - 3, 0), len(tt))
    k = -np.polyfit(tt[tail], np.log(cc[tail]), 1)[0] if len(tt) >= 2 else 0.1
    k = float(k) if np.isfinite(k) and k > 0 else 0.1
    auc_inf = auc + (cc[-1] / k if len(cc) else 0.0)
    cl = float(np.median(dose) / max(auc_inf, 1e-8))
    return {"ka": 3 * k, "V": cl / k, "CL": cl}
