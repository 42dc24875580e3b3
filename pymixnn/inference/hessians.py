"""Hessians of the importance-sampling (or quadrature) log-likelihood in theta
(:class:`pymixnn.inference.importance.ImportanceSampler`): by forward differences of its gradient
(the Newton metric; an ODE model's observed Fisher information) or by autograd's double backward
pass (a closed-form model's observed Fisher information, exact to rounding)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pymixnn.inference.autodiff import batched_grad
from pymixnn.inference.program import integrates
from pymixnn.model.observation import Normal

if TYPE_CHECKING:
    from pymixnn.inference.importance import ImportanceSampler

__all__ = [
    "METRIC_STEP",
    "CLOSED_FORM_STEP",
    "difference_hessian",
    "autograd_hessian",
    "louis_applies",
    "louis_hessian",
    "missing_fraction",
    "LOUIS_MAX_MISSING",
]

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


def _scaled(sampler: ImportanceSampler, rows: torch.Tensor | None, grad: torch.Tensor, hess: torch.Tensor):
    """Gradient and symmetrized Hessian, summed over the subsample ``rows`` when given and then
    scaled up to the pass's individuals (the information is a sum over individuals)."""
    if rows is not None:
        n = sampler.program.n_individuals if sampler.individuals is None else sampler.individuals.shape[0]
        scale = n / rows.shape[0]
        grad, hess = grad * scale, hess * scale
    return grad, 0.5 * (hess + hess.T)


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
    return _scaled(sampler, rows, g0, hess)


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
    grad, hess = sampler.program.comm.sum(grad, hess)
    return _scaled(sampler, rows, grad, hess)


# Louis' information is a difference of two terms (the complete-data information less the
# posterior variance of the complete-data score) which nearly cancel where the data say little
# about an individual's parameters, and its Monte Carlo error grows with that fraction of
# missing information: theophylline (posterior variance of eta_V 0.32 of omega2.V), 200 draws,
# over 4 seeds: SE(omega2.V) varied by 2.2% against 0.4% for autograd's Hessian of the
# moving-centre estimator; the logistic simulation (fractions <= 0.09): 0.2% against 0.5% at
# N = 100, 0.1% against 0.1-0.4% at N = 1,000. Beyond this fraction the information is autograd's.
LOUIS_MAX_MISSING = 0.2


def missing_fraction(sampler: ImportanceSampler, theta: torch.Tensor) -> float:
    """The largest, over random effects, of the mean posterior variance (the sampler's Laplace
    scales) relative to the law's base variance (Omega's diagonal)."""
    L = sampler.program.omega_tril(theta.detach())
    base = (L @ L.T).diagonal()
    variances = sampler.covariance.diagonal(dim1=-2, dim2=-1)
    comm = sampler.program.comm
    if comm.distributed:  # the mean over every process's individuals
        posterior = comm.sum(variances.sum(0))[0] / sampler.program.n_individuals
    else:
        posterior = variances.mean(0)
    return float((posterior / base).max())


def louis_applies(program) -> bool:
    """Whether the predictions of a draw do not depend on theta once the draw is fixed on the
    scale of phi (``louis_hessian``): every parameter has a random effect, no covariate
    effect changes along the records, no grouping levels' offsets, a closed-form model."""
    lay = program.layout
    return (
        lay.n_random == lay.n_params
        and program.D is None
        and program.offset_var is None
        and program.offset_coords is None
        and not integrates(program.model)
    )


def _observation_terms(program, theta: torch.Tensor, f: torch.Tensor, idx: torch.Tensor):
    """theta -> log p(y_i | f_ik, error parameters) (K, B) on stored predictions f (K, B, T),
    exact in value, gradient and Hessian at ``theta``: a constant without observation-model
    parameters (Poisson, binomial); for the Gaussian family its second-order expansion in the
    natural error parameters, whose per-draw derivatives come from one backward pass per
    parameter over the cells (the double backward pass over every cell, once per entry of
    theta, took 0.23 of the information's 0.26 s, N = 1,000); else the family's density."""
    lay = program.layout
    if not lay.error_names:
        with torch.no_grad():
            fixed = program.cell_log_prob(theta, f, idx).sum(-1)
        return lambda th: fixed
    if type(program.family) is not Normal:
        return lambda th: program.cell_log_prob(th, f, idx).sum(-1)
    names = list(program.error_params(theta))
    at = torch.stack(list(program.error_params(theta).values())).detach()
    shape = (*f.shape[:-1], 1)
    leaves = [at[j].expand(shape).clone().requires_grad_(True) for j in range(len(names))]
    y = program.y[idx]
    mask = program.mask[idx]
    aux = {k: v[idx] for k, v in program.aux.items()}
    with torch.enable_grad():
        terms = program.family.log_prob(y, f, dict(zip(names, leaves)), aux)
        value = torch.where(mask, terms, torch.zeros_like(terms)).sum(-1)
        first = torch.autograd.grad(value.sum(), leaves, create_graph=True)
        second = [
            torch.stack([s.squeeze(-1) for s in torch.autograd.grad(g.sum(), leaves, retain_graph=True)], -1)
            for g in first
        ]
    value = value.detach()
    score = torch.stack([g.detach().squeeze(-1) for g in first], -1)  # (K, B, n_e)
    curvature = torch.stack([h.detach() for h in second], -2)  # (K, B, n_e, n_e)

    def expansion(th: torch.Tensor) -> torch.Tensor:
        d = torch.stack(list(program.error_params(th).values())) - at
        return value + score @ d + 0.5 * torch.einsum("kbij,i,j->kb", curvature, d, d)

    return expansion


def _complete_data(program, theta: torch.Tensor, f: torch.Tensor, u: torch.Tensor, idx: torch.Tensor):
    """theta -> c_ik(theta) = log p(y_i, phi_ik | theta) (K, B) for draws whose random part of
    phi is ``u`` (K, B, d) and whose predictions are ``f``."""
    observation = _observation_terms(program, theta, f, idx)
    random = program.random_index

    def complete(th: torch.Tensor) -> torch.Tensor:
        eta_th = u - program.phi_population(th, idx)[:, random]
        return observation(th) + program.log_prior(th, eta_th, idx)

    return complete


def louis_hessian(
    sampler: ImportanceSampler,
    theta: torch.Tensor,
    index: list[int] | None = None,
    rows: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian of sum_i log L_i by Louis' identity on the sampler's draws held
    fixed on the scale of phi = mu + covariate effects + eta (where ``louis_applies``).

    With phi_ik fixed, the predictions f(phi_ik) do not depend on theta: the complete-data
    log-density c_ik(theta) = log p(y_i | f_ik, error parameters) + log p(phi_ik | theta) is
    the observation model on stored predictions plus the law's density, and

        d2/dtheta2 log sum_k exp(c_ik(theta) - log q_ik)
            = sum_k w_ik d2 c_ik + sum_k w_ik s_ik s_ik' - g_i g_i'      (s_ik = d c_ik)

    is Louis' observed information of individual i, from the same draws and weights w_ik as
    the sampler's value at theta (equal to it there). One forward pass of the structural model
    per chunk, and the double backward pass through the observation model and the law only:
    the logistic simulation's information at N = 1,000 (50 draws) took 0.82 s by autograd
    through the structural model and the moving proposal centre, 0.1 s this way. It estimates
    the same information (the Hessian of the exact marginal log-likelihood) with another Monte
    Carlo error: SEs within ~1% of autograd's at 50-200 draws; with adaptive quadrature both
    are the exact Hessian to 1e-5 (a linear model, tests/inference/test_importance.py). Its
    error is the larger where the posteriors are wide (see LOUIS_MAX_MISSING). With
    ``index``/``rows`` as :func:`autograd_hessian`."""
    program = sampler.program
    theta = theta.detach()
    p = theta.shape[0]
    rows_of = list(range(p)) if index is None else list(index)
    m = len(rows_of)
    random = program.random_index
    grad = torch.zeros(p, dtype=theta.dtype, device=theta.device)
    hess = torch.zeros(m, m, dtype=theta.dtype, device=theta.device)
    for c, idx in sampler.chunks(rows):
        with torch.no_grad():
            log_w, eta = sampler.chunk_log_weights(theta, c, idx)
            phi = program.individual_phi(theta, eta, idx)
            f = program.prediction(program.psi(program.record_phi(theta, phi, idx)), idx)
            u = eta + program.phi_population(theta, idx)[:, random]  # the draws' phi (random part)

        complete = _complete_data(program, theta, f, u, idx)
        with torch.no_grad():
            shift = log_w - complete(theta)  # -log q_ik (-inf: a draw given weight 0)
        th = theta.clone().requires_grad_(True)
        with torch.enable_grad():
            value = torch.logsumexp(complete(th) + shift, 0).sum()
            (g,) = torch.autograd.grad(value, th, create_graph=True)
            lines = [torch.autograd.grad(g[j], th, retain_graph=k < m - 1)[0] for k, j in enumerate(rows_of)]
        grad += g.detach()
        block = torch.stack(lines).detach()
        hess += block if index is None else block[:, rows_of]
    grad, hess = sampler.program.comm.sum(grad, hess)
    return _scaled(sampler, rows, grad, hess)
