"""Local posteriors q(eta_i) = N(m_i, S_i): Newton (Laplace) updates vectorized over individuals.

Per-individual Adam steps on q's parameters converge slowly because an individual is only visited
when its minibatch comes round (see ENVIRONMENT.md). Here each visit moves q_i straight to the Laplace
approximation of p(eta_i | y_i, theta): damped Newton steps to the mode (warm-started from the last
visit), and S_i the inverse of the negative Hessian there. The Hessian of the summed log-density is
block diagonal over individuals, so d backward passes give all the d x d blocks at once.
"""
from __future__ import annotations

import torch

from pymixnn.inference.program import Program

__all__ = ["LocalPosteriors"]


def _gradient_and_hessian(program: Program, theta: torch.Tensor, eta: torch.Tensor,
                          idx: torch.Tensor | None):
    eta = eta.detach().requires_grad_(True)
    with torch.enable_grad():
        value = program.log_joint(theta, eta, idx)
        (grad,) = torch.autograd.grad(value.sum(), eta, create_graph=True)
        d = eta.shape[-1]
        rows = [torch.autograd.grad(grad[:, j].sum(), eta, retain_graph=j < d - 1)[0]
                for j in range(d)]
    hess = torch.stack(rows, dim=-2).detach()
    grad = grad.detach()
    # an individual whose derivatives overflow (far from its mode, extreme parameters) takes a
    # plain gradient-free step this round: zero gradient, unit curvature
    bad = ~(torch.isfinite(grad).all(-1) & torch.isfinite(hess).flatten(-2).all(-1))
    if bool(bad.any()):
        eye = torch.eye(hess.shape[-1], dtype=hess.dtype, device=hess.device)
        grad = torch.where(bad.unsqueeze(-1), torch.zeros_like(grad), grad)
        hess = torch.where(bad.unsqueeze(-1).unsqueeze(-1), -eye, hess)
    return value.detach(), grad, 0.5 * (hess + hess.transpose(-1, -2))


def _positive_definite(neg_hess: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """Eigenvalue floor so the Newton matrix is positive definite."""
    vals, vecs = torch.linalg.eigh(neg_hess)
    top = vals.abs().amax(-1, keepdim=True).clamp_min(1.0)
    vals = torch.maximum(vals.abs(), floor * top)
    return (vecs * vals.unsqueeze(-2)) @ vecs.transpose(-1, -2)


class LocalPosteriors:
    """Means and Cholesky factors of q(eta_i) for all individuals."""

    def __init__(self, program: Program, omega_tril: torch.Tensor):
        n, d = program.n_individuals, program.layout.n_random
        self.program = program
        self.loc = torch.zeros(n, d, dtype=program.dtype, device=program.device)
        self.scale_tril = omega_tril.detach().expand(n, d, d).clone()
        self.visited = torch.zeros(n, dtype=torch.bool, device=program.device)

    def refresh(self, theta: torch.Tensor, idx: torch.Tensor | None = None, *,
                max_iter: int = 20, tol: float = 1e-6) -> int:
        """Move q_i (i in idx, or all) to the Laplace approximation at ``theta``; returns iterations."""
        theta = theta.detach()
        program = self.program
        eta = self.loc if idx is None else self.loc[idx]
        eta = eta.clone()
        value, grad, hess = _gradient_and_hessian(program, theta, eta, idx)
        iterations = 0
        for iterations in range(1, max_iter + 1):
            precision = _positive_definite(-hess)
            step = torch.linalg.solve(precision, grad.unsqueeze(-1)).squeeze(-1)
            # per-individual backtracking: halve the step until the log-density does not decrease
            alpha = torch.ones(eta.shape[0], 1, dtype=eta.dtype, device=eta.device)
            accepted = torch.zeros(eta.shape[0], dtype=torch.bool, device=eta.device)
            new_eta, new_value = eta, value
            for _ in range(30):
                trial = eta + alpha * step
                with torch.no_grad():
                    trial_value = program.log_joint(theta, trial, idx)
                ok = torch.isfinite(trial_value) & (trial_value >= value - 1e-10) & ~accepted
                new_eta = torch.where(ok.unsqueeze(-1), trial, new_eta)
                new_value = torch.where(ok, trial_value, new_value)
                accepted |= ok
                if bool(accepted.all()):
                    break
                alpha = torch.where(accepted.unsqueeze(-1), alpha, alpha * 0.5)
            moved = (new_eta - eta).abs().amax().item()
            eta = new_eta
            value, grad, hess = _gradient_and_hessian(program, theta, eta, idx)
            if moved < tol:
                break
        covariance = torch.linalg.inv(_positive_definite(-hess))
        tril = torch.linalg.cholesky(0.5 * (covariance + covariance.transpose(-1, -2)))
        if idx is None:
            self.loc, self.scale_tril = eta, tril
            self.visited[:] = True
        else:
            self.loc[idx], self.scale_tril[idx] = eta, tril
            self.visited[idx] = True
        return iterations
