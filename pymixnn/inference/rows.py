"""Reported-parameter rows: names, kinds, parameters and CI scales, and the values they take.

The rows of every law start with the fixed effects (each followed by its covariate effects) and
end with the observation-model parameters; each law plug-in (laws/) adds its own rows in between.
``program`` is a :class:`pymixnn.inference.program.Program` (duck-typed here, so that the laws can
use these helpers without importing the program).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from pymixnn.model import transforms as tr
from pymixnn.model.parameters import omega_rows, omega_scale

__all__ = ["Rows", "fixed_values", "omega_values"]


class Rows:
    """Names, kinds, parameters and CI scales of the reported parameters, built block by block."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.kinds: list[str] = []
        self.params: list[str] = []
        self.scales: list[str] = []

    def add(self, name: str, kind: str, param: str, scale: str) -> None:
        self.names.append(name)
        self.kinds.append(kind)
        self.params.append(param)
        self.scales.append(scale)

    def fixed(self, program: Any, design: Any) -> None:
        for p, name in enumerate(program.params):
            self.add(name, "fixed", name, program.transforms[p])
            for j, target in enumerate(design.parameters):
                if target == name:
                    self.add(design.names[j], "beta", name, "identity")

    def omega(self, rand: list[str], full: bool, tag: str = "") -> None:
        for name, param, a, b in omega_rows(rand, full, tag):
            self.add(name, "omega", param, omega_scale(a, b))

    def error(self, names, scales) -> None:
        for name, scale in zip(names, scales):
            self.add(name, "sigma", name, scale)

    def result(self, values: Callable[[torch.Tensor], torch.Tensor]):
        """(names, kinds, params, scales, values): ``values`` maps theta to the reported values."""
        return self.names, self.kinds, self.params, self.scales, values


def fixed_values(program: Any, design: Any, theta: torch.Tensor, shift=None) -> list:
    """h(mu + shift) per parameter, each followed by its covariate effects."""
    out = []
    mu, beta = program.mu_uncentred(theta), theta[program.layout.beta]
    for p in range(program.layout.n_params):
        out.append(tr.forward(program.transforms[p], mu[p] if shift is None else mu[p] + shift[p]))
        for j, target in enumerate(design.parameters):
            if target == program.params[p]:
                out.append(beta[j])
    return out


def omega_values(omega: torch.Tensor, full: bool) -> list:
    """Variances, then (full) the covariances below the diagonal, row by row."""
    out = list(torch.diagonal(omega))
    if full:
        for a in range(omega.shape[0]):
            for b in range(a):
                out.append(omega[a, b])
    return out
