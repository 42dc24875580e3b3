"""Growth curves: logistic, Gompertz, asymptotic regression, exponential growth to a plateau, linear.

Each named model is a structural function ``f(psi, x)`` (x column 0 is time) plus a self-start that
guesses initial values from pooled data, as nlme's selfStart models do.

>>> import torch
>>> from pymixnn.model.growth import logistic
>>> float(logistic(torch.tensor([100.0, 5.0, 1.5]), torch.tensor([5.0])))
50.0
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "logistic",
    "gompertz",
    "asymptotic",
    "exp_growth",
    "linear",
    "start_sigmoid",
    "start_asymptotic",
    "start_exp_growth",
    "start_linear",
]


def logistic(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = A / (1 + exp(-(t - B) / C)): asymptote A, inflection time B, scale C (nlme SSlogis).

    Named model ``"logistic"``: transforms A log, B log, C log (B > 0: the inflection after time
    0; pass ``transforms={"B": "identity"}`` for an inflection before it); x: (time,).
    """
    # (t - B) / C as t / C - B / C: one fused pass over the cells, 1 / C and B / C per
    # individual (a quotient's derivative costs three passes, a product's one)
    inv_c = 1.0 / psi[..., 2]
    return psi[..., 0] * torch.sigmoid(torch.addcmul(-psi[..., 1] * inv_c, x[..., 0], inv_c))


def gompertz(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = A exp(-exp(-(t - B) / C)): asymptote A, inflection time B, scale C.

    Named model ``"gompertz"``: transforms A log, B log, C log (B > 0, as for "logistic");
    x: (time,).
    """
    z = ((x[..., 0] - psi[..., 1]) / psi[..., 2]).clamp_min(-50.0)  # finite gradients far left
    return psi[..., 0] * torch.exp(-torch.exp(-z))


def asymptotic(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = Asym + (R0 - Asym) exp(-exp(lrc) t) (nlme SSasymp).

    Named model ``"asymptotic"``: transforms Asym identity, R0 identity, lrc identity (lrc is
    already the log of the rate constant, as in nlme); x: (time,).
    """
    return psi[..., 0] + (psi[..., 1] - psi[..., 0]) * torch.exp(-torch.exp(psi[..., 2]) * x[..., 0])


def exp_growth(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = A (1 - B exp(-k t)): plateau A, initial deficit fraction B, rate k.

    Named model ``"exp_growth"``: transforms A log, B identity, k log. B is on the identity scale:
    its estimate and random effect are unbounded (B > 1 gives y(0) < 0; B < 0 a decreasing
    curve); pass ``transforms={"B": "logit"}`` to keep B in (0, 1). x: (time,).
    """
    return psi[..., 0] * (1 - psi[..., 1] * torch.exp(-psi[..., 2] * x[..., 0]))


def linear(psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = intercept + slope t.

    Named model ``"linear"``: transforms intercept identity, slope identity; x: (time,).
    """
    return psi[..., 0] + psi[..., 1] * x[..., 0]


def _time_profile(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median response at each distinct time (pooled over individuals), sorted by time."""
    t = x[:, 0]
    times = np.unique(t)
    if times.size > 50:  # bin continuous times into 20 quantile groups
        edges = np.quantile(t, np.linspace(0, 1, 21))
        groups = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, 19)
        keep = [g for g in range(20) if np.any(groups == g)]
        return (
            np.array([np.median(t[groups == g]) for g in keep]),
            np.array([np.median(y[groups == g]) for g in keep]),
        )
    return times, np.array([np.median(y[t == s]) for s in times])


def start_sigmoid(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A from the top of the pooled profile, B where it crosses A/2, C from the 25-75% rise."""
    t, m = _time_profile(x, y)
    top = max(float(np.max(m)), 1e-8)
    a = 1.05 * top
    frac = m / a

    def crossing(level: float) -> float:
        above = np.nonzero(frac >= level)[0]
        if above.size == 0:
            return float(t[-1])
        j = int(above[0])
        if j == 0:
            return float(t[0])
        f0, f1 = frac[j - 1], frac[j]
        return float(t[j - 1] + (level - f0) / max(f1 - f0, 1e-12) * (t[j] - t[j - 1]))

    b = crossing(0.5)
    c = (crossing(0.75) - crossing(0.25)) / (2 * np.log(3.0))
    span = float(t[-1] - t[0]) or 1.0
    if not np.isfinite(c) or c <= 0:
        c = span / 10
    if b <= 0:
        b = float(t[0]) + span / 2 if t[0] + span / 2 > 0 else span / 2
    return {"A": a, "B": b, "C": float(max(c, span / 100))}


def start_asymptotic(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Asym from the last times, R0 from the first, lrc from the half-way time."""
    t, m = _time_profile(x, y)
    asym, r0 = float(m[-1]), float(m[0])
    half = r0 + 0.5 * (asym - r0)
    reached = np.nonzero((m - half) * np.sign(asym - r0 or 1.0) >= 0)[0]
    t_half = float(t[reached[0]] - t[0]) if reached.size else float(t[-1] - t[0]) / 2
    return {"Asym": asym, "R0": r0, "lrc": float(np.log(np.log(2) / max(t_half, 1e-8)))}


def start_exp_growth(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A from the top, B from the first value, k from the half-way time."""
    start = start_asymptotic(x, y)
    a = max(start["Asym"], 1e-8)
    b = float(np.clip(1 - start["R0"] / a, 0.05, 0.95))
    return {"A": a, "B": b, "k": float(np.exp(start["lrc"]))}


def start_linear(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pooled least squares."""
    slope, intercept = np.polyfit(x[:, 0], y, 1)
    return {"intercept": float(intercept), "slope": float(slope)}
