"""Parameter transforms h: phi (unbounded) -> psi (natural scale), as saemix's ``transform.par``.

saemix codes: 0 identity, 1 log (log-normal psi), 2 probit, 3 logit. Individual parameters are
``psi_i = h(phi_i)`` with ``phi_i = mu + covariate effects + eta_i``.

>>> import torch
>>> from pymixnn.model.transforms import forward, inverse
>>> float(forward("log", torch.tensor(0.0)))
1.0
>>> float(inverse("logit", torch.tensor(0.5)))
0.0
"""
from __future__ import annotations

import math

import torch

__all__ = ["TRANSFORMS", "SAEMIX_CODES", "check", "forward", "inverse", "derivative"]

TRANSFORMS = ("identity", "log", "probit", "logit")
SAEMIX_CODES = {"identity": 0, "log": 1, "probit": 2, "logit": 3}


def check(name: str | int) -> str:
    """Return the canonical transform name; accepts saemix's integer codes 0-3."""
    if isinstance(name, int) and not isinstance(name, bool):
        codes = {v: k for k, v in SAEMIX_CODES.items()}
        if name in codes:
            return codes[name]
    elif isinstance(name, str):
        lowered = name.lower()
        if lowered in ("normal", "none"):
            return "identity"
        if lowered in ("lognormal", "log-normal"):
            return "log"
        if lowered in TRANSFORMS:
            return lowered
    raise ValueError(
        f"unknown transform {name!r}; use one of {list(TRANSFORMS)} or saemix codes 0-3"
    )


def forward(name: str, phi: torch.Tensor) -> torch.Tensor:
    """psi = h(phi)."""
    if name == "identity":
        return phi
    if name == "log":
        return torch.exp(phi)
    if name == "probit":
        return torch.special.ndtr(phi)
    if name == "logit":
        return torch.sigmoid(phi)
    raise ValueError(f"unknown transform {name!r}")


def inverse(name: str, psi: torch.Tensor) -> torch.Tensor:
    """phi = h^{-1}(psi)."""
    if name == "identity":
        return psi
    if name == "log":
        return torch.log(psi)
    if name == "probit":
        return torch.special.ndtri(psi)
    if name == "logit":
        return torch.logit(psi)
    raise ValueError(f"unknown transform {name!r}")


def derivative(name: str, phi: torch.Tensor) -> torch.Tensor:
    """dh/dphi, used by the delta method."""
    if name == "identity":
        return torch.ones_like(phi)
    if name == "log":
        return torch.exp(phi)
    if name == "probit":
        return torch.exp(-0.5 * phi**2) / math.sqrt(2 * math.pi)
    if name == "logit":
        s = torch.sigmoid(phi)
        return s * (1 - s)
    raise ValueError(f"unknown transform {name!r}")


def delta_method(name: str, estimate: float, se: float) -> tuple[float, float]:
    """A natural-scale estimate and SE carried to the transformed scale phi = h^-1(psi):
    (h^-1(estimate), se / h'(phi)); NaN SE where h' vanishes."""
    estimate, se = float(estimate), float(se)
    if name == "identity" or not math.isfinite(estimate):
        return estimate, se
    phi = float(inverse(name, torch.tensor(estimate, dtype=torch.float64)))
    slope = float(derivative(name, torch.tensor(phi, dtype=torch.float64)))
    return phi, (se / slope if slope > 0 else float("nan"))


def valid_natural(name: str, value: float) -> bool:
    """Whether ``value`` lies in the support of h (e.g. > 0 for log)."""
    if name == "identity":
        return math.isfinite(value)
    if name == "log":
        return value > 0
    return 0 < value < 1
