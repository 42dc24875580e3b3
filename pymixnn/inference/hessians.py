"""Hessians of the importance-sampling (or quadrature) log-likelihood in theta
(:class:`pymixnn.inference.importance.ImportanceSampler`): by forward differences of its gradient
(the Newton metric; an ODE model's observed Fisher information) or by autograd's double backward
pass (a closed-form model's observed Fisher information, exact to rounding)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pymixnn.inference.autodiff import batched_grad
from pymixnn.inference.program import integrates

if TYPE_CHECKING:
    from pymixnn.inference.importance import ImportanceSampler

__all__ = ["METRIC_STEP", "CLOSED_FORM_STEP", "difference_hessian", "autograd_hessian"]

# the step in each entry of theta of that metric's differences (see difference_hessian)
METRIC_STEP = 1e-4
# that step for a closed-form model, whose gradient is exact to rounding (no solver tolerance):
# forward differences err by ~step x the third derivative (with 1e-5 the SEs of theophylline,
# the logistic simulation at N = 1,000 and Phenobarb were within 4e-5 of autograd's Hessian's;
# rounding: ~1e-16 x N / step, negligible)
CLOSED_FORM_STEP = 1e-5


def _batched_rows(g: torch.Tensor, th: torch.Tensor, rows_of: list[int]) -> torch.Tensor | None:
    """The Hessian rows ``rows_of`` of g = d value / d th in one vectorized backward pass (an ODE
    model: 3.5x faster than one pass per row through the solver's graph, 100 individuals x 9
    nodes: 4.4 s against 15.3 s, the same numbers); None when an operation has no batching rule
    (then one pass per row)."""
    basis = torch.zeros(len(rows_of), th.shape[0], dtype=th.dtype, device=th.device)
    basis[torch.arange(len(rows_of)), torch.as_tensor(rows_of)] = 1.0
    return batched_grad(g, th, basis[:, : g.shape[0]])


def difference_hessian(
    sampler: ImportanceSampler,
    theta: torch.Tensor,
    rows: torch.Tensor | None,
    *,
    index: list[int] | None = None,
    central: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian of sum_i log L_i, the Hessian by differences of the gradient in
    steps of ``METRIC_STEP`` (an ODE model: forward, 1 + len(theta) gradient passes, 9e-5
    from autograd's Hessian; ``central``: 1 + 2 len(theta), 6e-7) or ``CLOSED_FORM_STEP``
    (a closed-form model: forward, 2e-5, SEs to 4e-5): the Newton metric, and an ODE model's
    Fisher information. With ``index`` the block of those entries; over ``rows`` scaled up to the
    pass's individuals when given. For a model solved by an ODE solver, where the
    vectorized double backward pass costs ~30 gradient passes whatever the batch and holds
    every solver step for every direction (turnover PK/PD, 13 entries of theta, 100
    individuals x 20 draws: 51 s and 9.8 GB; 100 draws: killed at 24 GB), a gradient pass
    ~1.5 s and 0.8 GB."""
    theta = theta.detach()
    g0 = sampler.value_and_gradient(theta, rows)[1]
    entries = list(range(theta.shape[0])) if index is None else list(index)
    h = METRIC_STEP if integrates(sampler.program.model) else CLOSED_FORM_STEP
    cols = []
    for j in entries:
        e = torch.zeros_like(theta)
        e[j] = h
        up = sampler.value_and_gradient(theta + e, rows)[1]
        if central:
            cols.append((up - sampler.value_and_gradient(theta - e, rows)[1]) / (2 * h))
        else:
            cols.append((up - g0) / h)
    hess = torch.stack(cols, 1)[entries]
    if rows is not None:
        n = sampler.program.n_individuals if sampler.individuals is None else sampler.individuals.shape[0]
        g0, hess = g0 * (n / rows.shape[0]), hess * (n / rows.shape[0])
    return g0, 0.5 * (hess + hess.T)


def autograd_hessian(
    sampler: ImportanceSampler,
    theta: torch.Tensor,
    index: list[int] | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian of sum_i log L_i, accumulated over chunks; with ``index``, the
    Hessian block of those entries of theta only (the others held fixed); with ``rows``,
    both from that subsample of individuals, scaled by N / len(rows) (N: the pass's
    individuals)."""
    theta = theta.detach()
    p = theta.shape[0]
    rows_of = list(range(p)) if index is None else list(index)
    m = len(rows_of)
    grad = torch.zeros(p, dtype=theta.dtype, device=theta.device)
    hess = torch.zeros(m, m, dtype=theta.dtype, device=theta.device)
    batched = integrates(sampler.program.model)
    for c, idx in sampler.chunks(rows):
        th = theta.clone().requires_grad_(True)
        with torch.enable_grad():
            value = sampler.chunk_loglik(th, c, idx).sum()
            (g,) = torch.autograd.grad(value, th, create_graph=True)
            block = _batched_rows(g, th, rows_of) if batched else None
            if block is None:
                lines = [
                    torch.autograd.grad(g[j], th, retain_graph=k < m - 1)[0] for k, j in enumerate(rows_of)
                ]
                block = torch.stack(lines)
        grad += g.detach()
        block = block.detach()
        hess += block if index is None else block[:, rows_of]
    if rows is not None:
        n = sampler.program.n_individuals if sampler.individuals is None else sampler.individuals.shape[0]
        scale = n / rows.shape[0]
        grad, hess = grad * scale, hess * scale
    return grad, 0.5 * (hess + hess.T)
