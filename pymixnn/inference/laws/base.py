"""The interface of a random-effects law plug-in, and the helpers the laws share.

A law reads the Cholesky factor ``L`` of the model's omega block of theta and its own block ``raw``
of theta (empty for the Gaussian law). Besides its density (``log_prob``) and draws (``sample``),
a plug-in answers every question the estimation pipeline asks about a law, so that the pipeline
never branches on the law's class:

* ``fit``: how the law is estimated from the Gaussian fit (one fit, or a choice among several, as
  a mixture's ``n_components="auto"``); ``gaussian_is_start``: whether that Gaussian fit only
  starts the law (never reported), so that its refinement may skip the confirming round;
* ``start``: its start values from the Gaussian fit; ``skip_svi``: whether its SVI stage can be
  skipped; ``refiner`` and ``refine_draws``: which refinement (refine.py) and with how many draws;
* ``moments``: E[eta] and Var[eta] under the law; ``reported``: the reported rows and the map from
  theta to their values;
* ``fisher_index``, ``fisher_draws``, ``se_note``: the observed Fisher information's block, draws
  and note; ``record_extras``: what the fitted law's record (LawFit) keeps besides the common
  fields.

``program`` arguments are a :class:`pymixnn.inference.program.Program` (duck-typed: the program
builds its law, so the laws do not import it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from pymixnn.inference.rows import Rows, fixed_values

__all__ = ["LawPlugin", "tril_from_raw", "raw_from_tril", "gaussian_log_prob", "LOG_2PI"]

LOG_2PI = math.log(2 * math.pi)


def tril_from_raw(raw: torch.Tensor, d: int, full: bool) -> torch.Tensor:
    """Cholesky factor from its log-Cholesky vector (full) or log standard deviations (diagonal)."""
    if not full:
        return torch.diag_embed(torch.exp(raw))
    rows, cols = torch.tril_indices(d, d, device=raw.device)
    L = torch.zeros(d, d, dtype=raw.dtype, device=raw.device).index_put((rows, cols), raw)
    diag = torch.diagonal(L)
    return L - torch.diag_embed(diag) + torch.diag_embed(torch.exp(diag))


def raw_from_tril(L: torch.Tensor, full: bool) -> torch.Tensor:
    """The inverse of :func:`tril_from_raw`."""
    d = L.shape[-1]
    if not full:
        return torch.log(torch.diagonal(L))
    rows, cols = torch.tril_indices(d, d, device=L.device)
    raw = L[rows, cols].clone()
    raw[rows == cols] = torch.log(raw[rows == cols])
    return raw


# rows of eta (draws x individuals) from which gaussian_log_prob multiplies by L^-1 instead of
# solving: the importance sampler's slices (about 25,000 rows) and the Laplace modes of 5,000 or
# more individuals, not an SVI minibatch (4 particles x 512 individuals by default)
FAST_SOLVE_ROWS = 5_000


def gaussian_log_prob(
    L: torch.Tensor, eta: torch.Tensor, fast_rows: int = FAST_SOLVE_ROWS, diagonal: bool = False
) -> torch.Tensor:
    """log N(eta; 0, L L^T) over the last axis; by the product with L^-1 from ``fast_rows``
    rows of eta (see FAST_SOLVE_ROWS; LawPlugin.fast_rows), for a ``diagonal`` L (a diagonal
    Omega: its off-diagonal entries are no parameters) an elementwise one."""
    if L.dim() == 2 and diagonal and eta.numel() >= fast_rows * L.shape[-1]:
        # the same numbers as the product with L^-1 (whose zeros add nothing), one elementwise
        # product and its derivative instead of a (rows x d) (d x d) matrix product's (the
        # bimodal benchmark's mixture, N = 500: the Fisher information's double backward
        # passes spent 40% of their 0.48 s in products with L^-1)
        z = eta * torch.diagonal(L).reciprocal()
        quad = (z * z) @ torch.ones(L.shape[-1], dtype=L.dtype, device=L.device)
    elif L.dim() == 2 and eta.numel() >= fast_rows * L.shape[-1]:
        # one L for all rows: L^-1 once, then a matrix product (solve_triangular broadcast over
        # (draws x individuals) rows copies L into each: the logistic simulation, N = 1,000 x 50
        # draws, 7.8 of a pass's 56 ms, the product 0.3 ms; N = 100, a 312 x 80-row slice of
        # ll.is, 1.9 -> 0.1 ms). Large arrays only: an SVI minibatch keeps solve_triangular's
        # rounding, which its stochastic path amplifies (an amortized encoder after 1,000 steps:
        # median distance to the modes 0.79 or 1.33 posterior SDs with one rounding or the other)
        # and ||z||^2 as a product with ones (a reduction over a last axis of 3: 0.32 ms a
        # 25,000-row slice, the product 0.04)
        eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
        z = eta @ torch.linalg.solve_triangular(L, eye, upper=False).T
        quad = (z * z) @ torch.ones(L.shape[-1], dtype=L.dtype, device=L.device)
    else:
        z = torch.linalg.solve_triangular(L, eta.unsqueeze(-1), upper=False).squeeze(-1)
        quad = (z**2).sum(-1)
    d = L.shape[-1]
    return -0.5 * quad - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1) - 0.5 * d * LOG_2PI


class LawPlugin:
    """Base class of the law plug-ins (gaussian.py, mixture.py, flow.py); see the module docstring."""

    n_params: int = 0
    conditional: bool = False
    d: int
    # the refinement (refine.REFINERS): "newton" (theta is short) or "lbfgs" (a flow's many parameters)
    refiner: ClassVar[str] = "newton"
    # appended to the SE method's description
    se_note: ClassVar[str] = ""
    # whether the Gaussian stage of a fit with this law may take the Newton gear
    # (options.choose_gear): the law's own stages (start, SVI unless skipped, refiner) then
    # shape it from the Gaussian maximum, not from an SVI end point
    newton_gear: ClassVar[bool] = False

    # rows from which log_prob multiplies by L^-1 (gaussian_log_prob): 0 in the stages that run
    # no SVI minibatch (stages.py: the Newton gear's Gaussian stage, a law stage that skips SVI),
    # so every pass takes the product (the logistic simulation, N = 1,000: the broadcast solve
    # and its backward were 18% of a Laplace mode's Newton step, 8.2 -> 6.7 ms)
    fast_rows: int = FAST_SOLVE_ROWS

    # ---- construction and estimation plan ----------------------------------------------------
    @classmethod
    def build(
        cls, spec, d: int, full_omega: bool, *, context_dim: int, dtype, device, seed: int
    ) -> LawPlugin:
        raise NotImplementedError

    @classmethod
    def gaussian_is_start(cls, spec) -> bool:
        """Whether the Gaussian stage only starts this law's stages (its fit never reported): its
        Newton gear then ends on the first round whose Newton steps converged, without the
        round that re-centres the proposals to confirm it (refine.refine_newton's ``confirm``)."""
        return False

    @classmethod
    def fit(cls, spec, *, gaussian: Any, law_stage: Callable, finish: Callable, n_individuals: int):
        """The Estimation: ``finish(stage, spec)`` of ``law_stage(spec)`` (the law's stages after
        the Gaussian fit ``gaussian``)."""
        return finish(law_stage(spec), spec)

    # ---- density -----------------------------------------------------------------------------
    def initial_raw(self, dtype, device) -> torch.Tensor:
        return torch.zeros(0, dtype=dtype, device=device)

    def log_prob(self, L, raw, eta, context=None) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, raw: torch.Tensor, weight: float | None = None) -> torch.Tensor:
        """Penalty on the law's parameters (0; a flow's ridge towards the identity)."""
        return torch.zeros((), dtype=raw.dtype, device=raw.device)

    # ---- stages ------------------------------------------------------------------------------
    def start(
        self,
        program: Any,
        theta: torch.Tensor,
        local: Any,
        *,
        generator: torch.Generator,
        seed: int,
        fallbacks: Any,
    ) -> tuple[torch.Tensor, dict]:
        """theta with the law's start values (from the Gaussian fit) and the record's extras."""
        theta = theta.clone()
        theta[program.layout.law] = self.initial_raw(theta.dtype, theta.device)
        return theta, {}

    def skip_svi(self, n_individuals: int, batch_size: int, after_svi: bool = False) -> bool:
        """Whether the law's SVI stage can be skipped (its start already is a full-data fit);
        ``after_svi``: whether the Gaussian stage ran SVI (not the Newton gear)."""
        return False

    def refine_draws(self, k_opt: int) -> int:
        return k_opt

    # ---- moments and reported parameters -----------------------------------------------------
    def moments(
        self, L: torch.Tensor, raw: torch.Tensor, *, n: int, seed: int, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """E[eta] and Var[eta] under the law (differentiable in L and raw)."""
        raise NotImplementedError

    def program_moments(self, program: Any, theta: torch.Tensor, n: int, seed: int):
        lay = program.layout
        return self.moments(
            program.omega_tril(theta), theta[lay.law], n=n, seed=seed, context=program.context
        )

    def law_rows(self, rows: Rows, program: Any) -> None:
        """The law's own reported rows (between the fixed effects and the error parameters)."""
        raise NotImplementedError

    def law_values(self, program: Any, theta: torch.Tensor, cov: torch.Tensor) -> list:
        """Their values at theta (``cov``: Var[eta] under the law)."""
        raise NotImplementedError

    def reported(self, program: Any, design: Any, moment_seed: int, n_moment: int = 100_000):
        """Names, kinds, parameters, CI scales and the map theta -> reported values: fixed effects
        h(E[phi]), the law's rows, the observation model's parameters."""
        lay = program.layout
        rows = Rows()
        rows.fixed(program, design)
        self.law_rows(rows, program)
        rows.error(lay.error_names, program.family.parameter_scales(program.model))

        def values(theta: torch.Tensor) -> torch.Tensor:
            mean, cov = self.program_moments(program, theta, n_moment, moment_seed)
            shift = torch.zeros(lay.n_params, dtype=theta.dtype, device=theta.device).index_add(
                0, torch.tensor(program.random_index, device=theta.device), mean
            )
            out = fixed_values(program, design, theta, shift)
            out.extend(self.law_values(program, theta, cov))
            out.extend(program.family.reported(theta[lay.error], program.model))
            return torch.stack(out)

        return rows.result(values)

    # ---- Fisher information and the record -----------------------------------------------------
    def fisher_index(self, layout: Any) -> list[int] | None:
        """Entries of theta in the observed information (None: all)."""
        return None

    def fisher_draws(self, k_opt: int, n_individuals: int = 0) -> int:
        return k_opt

    def record_extras(self, program: Any, theta: torch.Tensor, result: Any) -> dict:
        """Fields of the fitted law's record (LawFit) particular to this law (``result``: the
        final importance-sampling pass, an ``importance.ISResult``)."""
        return {}
