"""Parameter transforms h: phi (unbounded) -> psi (natural scale), as saemix's ``transform.par``.

One table, :data:`TABLE`, holds each transform once: its torch forward h, inverse and derivative
(the model, the inference and the links of observation families), its numpy forward and inverse
(the simulators), its saemix code (0 identity, 1 log (log-normal psi), 2 probit, 3 logit), its R
forward (the R bridges) and the default natural value used when a self-start falls outside its
support. Individual parameters are ``psi_i = h(phi_i)`` with
``phi_i = mu + covariate effects + eta_i``.

>>> import torch
>>> from pymixnn.model.transforms import forward, inverse
>>> float(forward("log", torch.tensor(0.0)))
1.0
>>> float(inverse("logit", torch.tensor(0.5)))
0.0
>>> TABLE["logit"].r_forward.format("p1")
'plogis(p1)'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import torch

__all__ = [
    "Transform",
    "TABLE",
    "TRANSFORMS",
    "SAEMIX_CODES",
    "check",
    "forward",
    "inverse",
    "derivative",
    "delta_method",
    "valid_natural",
    "default_natural",
    "forward_numpy",
    "inverse_scalar",
]


def _erf_cdf(phi: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf, otypes=[float])(phi / math.sqrt(2)))


def _logistic_derivative(phi: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(phi)
    return s * (1 - s)


@dataclass(frozen=True)
class Transform:
    """One transform h: torch forward/inverse/derivative, numpy forward, scalar inverse, the
    support of psi, saemix's code, the R expression of h (``{}`` the argument) and a default
    natural value inside the support."""

    name: str
    saemix_code: int
    forward: Callable[[torch.Tensor], torch.Tensor]
    inverse: Callable[[torch.Tensor], torch.Tensor]
    derivative: Callable[[torch.Tensor], torch.Tensor]
    forward_numpy: Callable[[np.ndarray], np.ndarray]
    inverse_scalar: Callable[[float], float]
    in_support: Callable[[float], bool]
    r_forward: str
    default: float


TABLE: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform(
            "identity",
            0,
            lambda phi: phi,
            lambda psi: psi,
            torch.ones_like,
            lambda phi: phi,
            float,
            math.isfinite,
            "{}",
            0.0,
        ),
        Transform(
            "log", 1, torch.exp, torch.log, torch.exp, np.exp, math.log, lambda v: v > 0, "exp({})", 1.0
        ),
        Transform(
            "probit",
            2,
            torch.special.ndtr,
            torch.special.ndtri,
            lambda phi: torch.exp(-0.5 * phi**2) / math.sqrt(2 * math.pi),
            _erf_cdf,
            NormalDist().inv_cdf,
            lambda v: 0 < v < 1,
            "pnorm({})",
            0.5,
        ),
        Transform(
            "logit",
            3,
            torch.sigmoid,
            torch.logit,
            _logistic_derivative,
            lambda phi: 1 / (1 + np.exp(-phi)),
            lambda v: math.log(v / (1 - v)),
            lambda v: 0 < v < 1,
            "plogis({})",
            0.5,
        ),
    )
}

TRANSFORMS = tuple(TABLE)  # ("identity", "log", "probit", "logit")
SAEMIX_CODES = {name: t.saemix_code for name, t in TABLE.items()}


def _get(name: str) -> Transform:
    if name not in TABLE:
        raise ValueError(f"unknown transform {name!r}")
    return TABLE[name]


def check(name: str | int) -> str:
    """Return the canonical transform name; accepts saemix's integer codes 0-3."""
    if isinstance(name, (int, np.integer)) and not isinstance(name, (bool, np.bool_)):
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
    raise ValueError(f"unknown transform {name!r}; use one of {list(TRANSFORMS)} or saemix codes 0-3")


def forward(name: str, phi: torch.Tensor) -> torch.Tensor:
    """psi = h(phi)."""
    return _get(name).forward(phi)


def inverse(name: str, psi: torch.Tensor) -> torch.Tensor:
    """phi = h^{-1}(psi)."""
    return _get(name).inverse(psi)


def derivative(name: str, phi: torch.Tensor) -> torch.Tensor:
    """dh/dphi, used by the delta method."""
    return _get(name).derivative(phi)


def forward_numpy(name: str, phi: np.ndarray) -> np.ndarray:
    """psi = h(phi) with numpy, elementwise (the simulators)."""
    return _get(name).forward_numpy(phi)


def inverse_scalar(name: str, psi: float) -> float:
    """phi = h^{-1}(psi) for one natural-scale value (python floats); a ValueError outside the
    support (identity: any value)."""
    if name == "identity":
        return float(psi)
    if not _get(name).in_support(psi):
        raise ValueError(f"value {psi!r} is outside the support of the {name!r} transform")
    return _get(name).inverse_scalar(psi)


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
    return bool(_get(name).in_support(value))


def default_natural(name: str) -> float:
    """A natural value inside the support of h (log: 1, logit/probit: 0.5, identity: 0), where a
    self-start outside the support is replaced."""
    return _get(name).default
