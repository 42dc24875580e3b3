"""Derivatives of each individual's log-density log p(y_i, eta | theta) in eta for the local
posteriors' Newton steps (laplace.py): by autograd (d backward passes give all the d x d blocks
of the block-diagonal Hessian at once), by central differences or Gauss-Newton for a model solved
by an ODE solver, and the eigenvalue floor that makes each Newton matrix positive definite."""

from __future__ import annotations

import torch

from pymixnn.inference.autodiff import batched_grad
from pymixnn.inference.program import Program, integrates

__all__ = ["gradient_and_hessian", "positive_definite", "DERIVATIVE_CHUNK"]

# central-difference step in eta for a model solved by an ODE solver (float64): all the stencil's
# points go through one solve, so they share the solver's steps and the differences are those of
# one smooth function (rounding ~1e-14 / h^2 = 1e-6 on a Hessian entry, truncation ~h^2)
FD_STEP = 1e-4
# up to this many random effects: the stencil's 1 + 2 d^2 points cost less than the d double
# backward passes (~4.5 solves each; turnover PK/PD, 5 random effects, 100 individuals: 0.52 s
# against 1.5 s, the same Hessian to 4e-8; a pass costs ~0.1 s + 0.09 ms per solve, so 8 random
# effects' 129 points ~1.3 s); beyond, autograd
FD_MAX_DIM = 8
# from this many random effects the variational steps' cubature points (2d per individual) take
# a Gauss-Newton Hessian (_gauss_newton: 1 + 2d points each, not 1 + 2d^2); the mode search
# keeps the exact one (Gauss-Newton steps contract slowly where the predictions curve: 50 steps
# did not reach the mode of Michaelis-Menten with 4 random effects, exact Newton took 5)
GAUSS_NEWTON_MIN_DIM = 4


def _stencil(d: int, dtype, device) -> torch.Tensor:
    """Offsets (M, d) of the central-difference stencil: 0, +-e_j, and +-e_j +-e_k (j < k)."""
    eye = torch.eye(d, dtype=dtype, device=device)
    rows = [torch.zeros(d, dtype=dtype, device=device)]
    for j in range(d):
        rows += [eye[j], -eye[j]]
    for j in range(d):
        for k in range(j + 1, d):
            rows += [eye[j] + eye[k], eye[j] - eye[k], -eye[j] + eye[k], -eye[j] - eye[k]]
    return torch.stack(rows)


def _stencil_points(eta: torch.Tensor, offsets: torch.Tensor):
    """eta (..., B, d) + FD_STEP * offsets (M, d), as one batch (M * K, B, d) or (M, B, d); with
    M and eta's leading shape."""
    M, d = offsets.shape
    lead = eta.shape[:-1]
    points = eta.detach().unsqueeze(0) + FD_STEP * offsets.view(M, *([1] * len(lead)), d)
    if len(lead) > 1:  # (M, K, B, d) -> (M * K, B, d)
        points = points.reshape(M * lead[0], *lead[1:], d)
    return points, M, lead


def _fd_gradient_and_hessian(program: Program, theta: torch.Tensor, eta: torch.Tensor, idx):
    """log p(y, eta), its gradient and Hessian in eta by central differences, the 1 + 2d^2
    stencil points in one batched solve without autograd (an ODE model: a double backward pass
    through the solver costs ~4.5 solves per direction; Michaelis-Menten, 100 individuals:
    0.56 s against ~0.12 s for the stencil's forward pass)."""
    d = eta.shape[-1]
    h = FD_STEP
    points, M, lead = _stencil_points(eta, _stencil(d, eta.dtype, eta.device))
    with torch.no_grad():
        f = program.log_joint(theta, points, idx).reshape(M, *lead)
    f0 = f[0]
    grad = torch.stack([(f[1 + 2 * j] - f[2 + 2 * j]) / (2 * h) for j in range(d)], -1)
    hess = eta.new_empty(*lead, d, d)
    for j in range(d):
        hess[..., j, j] = (f[1 + 2 * j] - 2 * f0 + f[2 + 2 * j]) / h**2
    r = 1 + 2 * d
    for j in range(d):
        for k in range(j + 1, d):
            hjk = (f[r] - f[r + 1] - f[r + 2] + f[r + 3]) / (4 * h**2)
            hess[..., j, k] = hess[..., k, j] = hjk
            r += 4
    return f0, grad, hess


def _gauss_newton(program: Program, theta: torch.Tensor, eta: torch.Tensor, idx):
    """log p(y, eta), its gradient in eta and a Gauss-Newton Hessian, for a model solved by an
    ODE solver with ``GAUSS_NEWTON_MIN_DIM`` random effects or more, at the variational steps'
    cubature points (their expected Hessian sets q's covariance): the predictions' Jacobian J in eta
    by central differences (the 1 + 2d points in one batched solve without autograd), then the
    observation terms and the prior by autograd (no solver in their graph). The gradient is
    exact to O(h^2); the Hessian is J' diag(l'') J (the curvature l'' of each observation's
    log-density in its prediction, floored at 0 where it is convex) plus the prior's, without
    the residual-weighted second derivatives of the predictions (FOCE's approximation: the
    Laplace scales at the mode within -3% / +12% of the exact ones on the turnover model;
    turnover PK/PD, 5 random effects, 100 individuals x 10 cubature points: 1.9 s against 3.4 s
    for autograd and ~5 s for the 1 + 2d^2 stencil)."""
    d = eta.shape[-1]
    h = FD_STEP
    # the stencil's first 1 + 2d points: 0 and +-e_j
    points, M, lead = _stencil_points(eta, _stencil(d, eta.dtype, eta.device)[: 1 + 2 * d])
    with torch.no_grad():
        psi = program.psi(program.record_phi(theta, program.individual_phi(theta, points, idx), idx))
        f = program.prediction(psi, idx)
    f = f.reshape(M, *lead, f.shape[-1])
    jac = torch.stack([(f[1 + 2 * j] - f[2 + 2 * j]) / (2 * h) for j in range(d)], -1)  # (..., T, d)
    mask = program.mask if idx is None else program.mask[idx]
    f0 = torch.where(mask, f[0], torch.ones_like(f[0]))  # padding: a harmless value
    jac = torch.where(mask.unsqueeze(-1), jac, torch.zeros_like(jac))
    e = eta.detach().requires_grad_(True)
    with torch.enable_grad():
        fv = f0.requires_grad_(True)
        terms = program.cell_log_prob(theta, fv, idx)
        (d1,) = torch.autograd.grad(terms.sum(), fv, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), fv)  # cellwise: the diagonal of l''
        prior = program.log_prior(theta, e, idx)
        (pg,) = torch.autograd.grad(prior.sum(), e, create_graph=True)
        ph = torch.stack(
            [torch.autograd.grad(pg[..., j].sum(), e, retain_graph=j < d - 1)[0] for j in range(d)], -2
        )
    d1, d2 = d1.detach(), d2.detach().clamp(max=0.0)
    grad = (d1.unsqueeze(-1) * jac).sum(-2) + pg.detach()
    hess = torch.einsum("...tj,...t,...tk->...jk", jac, d2, jac) + ph.detach()
    value = terms.detach().sum(-1) + prior.detach()
    return value, grad, hess


# below this many points (individuals x draws) the Hessian rows are one pass each: the first
# vectorized pass of a process imports torch's symbolic-shape machinery (sympy, 0.45 s), a
# third of a small fit's first call (theophylline), for no gain on so few points. Only SVI's
# minibatch updates take the vectorized pass (LocalPosteriors.batched_rows): on whole data sets
# (the Newton gear's rounds) it gained nothing (logistic simulation, N = 1,000: 1.21 s a fit
# with it, 1.18 without; 10^4: 4.3 s both) and its import cost the first fit 0.2-0.4 s
BATCHED_ROWS_MIN = 256


# individuals per autograd pass of a closed-form model's derivatives: the pass's intermediate
# arrays stay in the CPU's caches (logistic simulation, 10 observations each: 3.7 us an
# individual in passes of 10^4-2x10^4, 4.6 us in one of 10^5, 5.5 us in one of 10^6, whose first
# mode search took 43 s); each individual's derivatives are its own: the same numbers to rounding. An ODE
# model's adaptive solver steps all of a batch together: one pass
DERIVATIVE_CHUNK = 20_000


def gradient_and_hessian(
    program: Program,
    theta: torch.Tensor,
    eta: torch.Tensor,
    idx: torch.Tensor | None,
    gauss_newton=False,
    batched: bool = False,
):
    """log p(y, eta | theta), its gradient and Hessian in eta; for an ODE model by differences
    (the stencil, or Gauss-Newton when ``gauss_newton`` and from GAUSS_NEWTON_MIN_DIM random
    effects), otherwise by autograd (``batched``: the Hessian rows in one vectorized pass for
    a minibatch, see BATCHED_ROWS_MIN)."""
    d = eta.shape[-1]
    n = eta.shape[-2] if eta.dim() > 1 else 1
    ode = integrates(program.model)
    if n > DERIVATIVE_CHUNK and not ode:
        rows = torch.arange(n, device=eta.device) if idx is None else idx
        cut = [slice(s, s + DERIVATIVE_CHUNK) for s in range(0, n, DERIVATIVE_CHUNK)]
        parts = [
            gradient_and_hessian(program, theta, eta[..., c, :], rows[c], gauss_newton, batched) for c in cut
        ]
        return tuple(torch.cat(p, dim=k) for p, k in zip(zip(*parts), (-1, -2, -3)))
    if ode and eta.dtype == torch.float64:
        if gauss_newton and d >= GAUSS_NEWTON_MIN_DIM:
            value, grad, hess = _gauss_newton(program, theta.detach(), eta, idx)
            return value, *_guard(grad, hess)
        if d <= FD_MAX_DIM:
            value, grad, hess = _fd_gradient_and_hessian(program, theta.detach(), eta, idx)
            return value, *_guard(grad, hess)
    eta = eta.detach().requires_grad_(True)
    with torch.enable_grad():
        value = program.log_joint(theta, eta, idx)
        (grad,) = torch.autograd.grad(value.sum(), eta, create_graph=True)
        rows = None
        if batched and BATCHED_ROWS_MIN * d <= eta.numel() <= 20_000 * d:
            # small batches (SVI's minibatches): the d Hessian rows in one vectorized backward
            # pass (fewer autograd calls: ~1.5x faster at 512 individuals, slower at 10^5);
            # an operation without a batching rule falls back to one pass per row
            basis = (
                torch.eye(d, dtype=eta.dtype, device=eta.device)
                .view(d, *([1] * (eta.dim() - 1)), d)
                .expand(d, *eta.shape)
            )
            batched = batched_grad(grad, eta, basis)
            rows = None if batched is None else batched.unbind(0)
        if rows is None:
            rows = [torch.autograd.grad(grad[..., j].sum(), eta, retain_graph=j < d - 1)[0] for j in range(d)]
    hess = torch.stack(rows, dim=-2).detach()
    return value.detach(), *_guard(grad.detach(), hess)


def _guard(grad: torch.Tensor, hess: torch.Tensor):
    """Gradient and symmetrized Hessian, an individual with non-finite ones given a plain step."""
    # derivatives that overflow (far from the mode, extreme parameters): zero gradient, unit curvature
    bad = ~(torch.isfinite(grad).all(-1) & torch.isfinite(hess).flatten(-2).all(-1))
    if bool(bad.any()):
        eye = torch.eye(hess.shape[-1], dtype=hess.dtype, device=hess.device)
        grad = torch.where(bad.unsqueeze(-1), torch.zeros_like(grad), grad)
        hess = torch.where(bad.unsqueeze(-1).unsqueeze(-1), -eye, hess)
    return grad, 0.5 * (hess + hess.transpose(-1, -2))


# below this many matrices positive_definite decomposes each (a few ms): small fits keep their
# Newton matrices bit for bit (the fast path agrees to ~3e-15, but amplified over an encoder's
# 1,000 SGD steps that moved test_amortized's new individuals from 99% to 94% within 0.1 SD)
FAST_PD_MIN = 4096


def positive_definite(neg_hess: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """Eigenvalue floor so the Newton matrix is positive definite: |eigenvalues| floored at
    ``floor`` x max(1, the largest). From ``FAST_PD_MIN`` matrices, one whose Cholesky factor
    shows that the floor cannot bind (positive definite, det / trace^(d-1) <= its smallest
    eigenvalue above floor x max(1, trace)) is returned as it is, the others decomposed
    (logistic simulation, 10^5 individuals: eigh took 1.6 of the first mode search's 4.4 s)."""
    if neg_hess.numel() == 0:
        return neg_hess
    if neg_hess.dim() == 2:  # one matrix: as a batch of one
        return positive_definite(neg_hess.unsqueeze(0), floor)[0]
    if neg_hess[..., 0, 0].numel() < FAST_PD_MIN:
        return _eigen_floor(neg_hess, floor)
    chol, info = torch.linalg.cholesky_ex(neg_hess)
    d = neg_hess.shape[-1]
    trace = torch.diagonal(neg_hess, dim1=-2, dim2=-1).sum(-1)
    det = torch.diagonal(chol, dim1=-2, dim2=-1).prod(-1) ** 2
    safe = (info == 0) & (det >= floor * trace.clamp_min(1.0) * trace ** (d - 1))
    if bool(safe.all()):
        return neg_hess
    out = neg_hess.clone()
    out[~safe] = _eigen_floor(neg_hess[~safe], floor)
    return out


def _eigen_floor(neg_hess: torch.Tensor, floor: float) -> torch.Tensor:
    """The eigenvalue floor of :func:`positive_definite` by the eigendecomposition of each."""
    vals, vecs = torch.linalg.eigh(neg_hess)
    top = vals.abs().amax(-1, keepdim=True).clamp_min(1.0)
    vals = torch.maximum(vals.abs(), floor * top)
    return (vecs * vals.unsqueeze(-2)) @ vecs.transpose(-1, -2)
