"""The Gaussian law: eta ~ N(0, L L^T), no parameters of its own."""

from __future__ import annotations

from typing import Any

import torch

from pymixnn.inference.laws.base import LawPlugin, gaussian_log_prob
from pymixnn.inference.rows import Rows, fixed_values, omega_values

__all__ = ["GaussianLaw"]


class GaussianLaw(LawPlugin):
    n_params = 0
    conditional = False
    newton_gear = True

    def __init__(self, d: int, diagonal: bool = False):
        self.d = d
        self.diagonal = diagonal  # a diagonal Omega (gaussian_log_prob)

    @classmethod
    def build(
        cls, spec, d: int, full_omega: bool, *, context_dim: int = 0, dtype=None, device=None, seed: int = 0
    ) -> GaussianLaw:
        return cls(d, diagonal=not full_omega)

    @classmethod
    def fit(cls, spec, *, gaussian: Any, law_stage, finish, n_individuals: int):
        """The Gaussian fit itself."""
        return finish(gaussian, spec)

    def log_prob(self, L, raw, eta, context=None):
        return gaussian_log_prob(L, eta, self.fast_rows, self.diagonal)

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        z = torch.randn(n, self.d, generator=generator, dtype=L.dtype).to(L.device)
        return z @ L.T

    def moments(self, L, raw, *, n: int = 0, seed: int = 0, context=None):
        return torch.zeros(self.d, dtype=L.dtype, device=L.device), L @ L.T

    def reported(self, program: Any, design: Any, moment_seed: int = 0, n_moment: int = 0):
        """Natural-scale fixed effects h(mu) with covariate effects, Omega, error parameters."""
        lay = program.layout
        rows = Rows()
        rows.fixed(program, design)
        rows.omega([program.params[p] for p in program.random_index], lay.full_omega)
        rows.error(lay.error_names, program.family.parameter_scales(program.model))

        def values(theta: torch.Tensor) -> torch.Tensor:
            L = program.omega_tril(theta)
            out = fixed_values(program, design, theta) + omega_values(L @ L.T, lay.full_omega)
            out.extend(program.family.reported(theta[lay.error], program.model))
            return torch.stack(out)

        return rows.result(values)
