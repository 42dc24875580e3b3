"""Local posteriors q(eta_i) = N(m_i, S_i), updated by Newton-type steps vectorized over individuals.

Per-individual Adam steps on q's parameters converge slowly because an individual is only visited
when its minibatch comes round. Here each visit moves q_i directly:

1. on a first visit, damped Newton steps to the mode of log p(y_i, eta | theta) (the Laplace
   approximation, S_i = inverse negative Hessian at the mode);
2. then natural-gradient (variational Newton) steps towards the Gaussian that maximizes the ELBO:
   ``S <- (-E_q[hess])^-1``, ``m <- m + S E_q[grad]``, the expectations taken by the degree-3
   spherical cubature rule (the 2d points m +- sqrt(d) L e_j), accepted only where the ELBO rises.
   The Laplace approximation alone is not the ELBO optimum: when the residual variance depends on
   the prediction (proportional/combined error) the log-density is skewed, E_q[grad] != 0 at the
   mode, and EM/SVI with Laplace q drifts along the mu-eta ridge instead of converging.

The Hessian of the summed log-density is block diagonal over individuals (and cubature points),
so d backward passes give all the d x d blocks at once.
"""

from __future__ import annotations

import math

import torch

from pymixnn.inference.autodiff import batched_grad
from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.program import Program, integrates

__all__ = ["LocalPosteriors"]

# a Newton step whose predicted gain in log-density is below this is taken without a pass, for a
# model solved by an adaptive ODE solver (whose values are exact to its tolerance only: such a
# step's check is noise); closed-form models keep exact checks (their fits unchanged)
GAIN_TOL = 1e-9
# longest Newton step towards the mode for a model solved by an ODE solver, in prior standard
# deviations of each random effect (sqrt of Omega's diagonal): from eta = 0 at a poor start the
# full step reached parameters where the solve is stiff and ran to max_steps, and the batch's
# backtracking halved it 25 times at 1.5 s a pass (Michaelis-Menten, 100 individuals: 37 of the
# first mode search's 48 s); a shortened step is counted (``shortened_steps``)
ODE_MODE_MAX_SD = 2.0


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


def _gradient_and_hessian(
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
    if integrates(program.model) and eta.dtype == torch.float64:
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


# below this many matrices _positive_definite decomposes each (a few ms): small fits keep their
# Newton matrices bit for bit (the fast path agrees to ~3e-15, but amplified over an encoder's
# 1,000 SGD steps that moved test_amortized's new individuals from 99% to 94% within 0.1 SD)
FAST_PD_MIN = 4096


def _positive_definite(neg_hess: torch.Tensor, floor: float = 1e-8) -> torch.Tensor:
    """Eigenvalue floor so the Newton matrix is positive definite: |eigenvalues| floored at
    ``floor`` x max(1, the largest). From ``FAST_PD_MIN`` matrices, one whose Cholesky factor
    shows that the floor cannot bind (positive definite, det / trace^(d-1) <= its smallest
    eigenvalue above floor x max(1, trace)) is returned as it is, the others decomposed
    (logistic simulation, 10^5 individuals: eigh took 1.6 of the first mode search's 4.4 s)."""
    if neg_hess.numel() == 0:
        return neg_hess
    if neg_hess.dim() == 2:  # one matrix: as a batch of one
        return _positive_definite(neg_hess.unsqueeze(0), floor)[0]
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
    """The eigenvalue floor of :func:`_positive_definite` by the eigendecomposition of each."""
    vals, vecs = torch.linalg.eigh(neg_hess)
    top = vals.abs().amax(-1, keepdim=True).clamp_min(1.0)
    vals = torch.maximum(vals.abs(), floor * top)
    return (vecs * vals.unsqueeze(-2)) @ vecs.transpose(-1, -2)


class LocalPosteriors:
    """Means and Cholesky factors of q(eta_i) for all individuals."""

    def __init__(self, program: Program, omega_tril: torch.Tensor, fallbacks: Fallbacks | None = None):
        n, d = program.n_individuals, program.layout.n_random
        self.program = program
        self.loc = torch.zeros(n, d, dtype=program.dtype, device=program.device)
        self.scale_tril = omega_tril.detach().expand(n, d, d).clone()
        self.visited = torch.zeros(n, dtype=torch.bool, device=program.device)
        ode = integrates(program.model)
        self.gain_tol = GAIN_TOL if ode else 0.0
        # Newton steps when a minibatch revisits individuals (warm start from their last mode):
        # one for an ODE model, where each costs a solve differentiated twice (Newton converges
        # quadratically from a mode that theta's small move has shifted little)
        self.warm_iter = 1 if ode else 3
        self.ode = ode
        self.shortened_steps = 0  # Newton steps to the mode cut to ODE_MODE_MAX_SD (ODE models)
        self.fallbacks = fallbacks  # where those are counted too (``mode_shortened_steps``)
        # Hessian rows in one vectorized pass (SVI's minibatch updates: BATCHED_ROWS_MIN)
        self.batched_rows = False
        # (theta, vi_iter, loc, scale_tril) of the last refresh of every individual (centred)
        self._centred_at: tuple | None = None

    def refresh(
        self,
        theta: torch.Tensor,
        idx: torch.Tensor | None = None,
        *,
        max_iter: int = 20,
        vi_iter: int = 2,
        tol: float = 1e-6,
    ) -> int:
        """Update q_i (i in idx, or all) at ``theta``: up to ``max_iter`` Newton steps to the mode
        (Laplace), then ``vi_iter`` variational steps; returns the number of Newton steps."""
        theta = theta.detach()
        if self.loc.shape[-1] == 0:  # no individual random effects: nothing to update
            self.visited[slice(None) if idx is None else idx] = True
            return 0
        eta = (self.loc if idx is None else self.loc[idx]).clone()
        iterations = 0
        if max_iter > 0:
            eta, covariance, iterations = self._mode(theta, eta, idx, max_iter, tol)
        else:
            tril = self.scale_tril if idx is None else self.scale_tril[idx]
            covariance = tril @ tril.transpose(-1, -2)
        for _ in range(vi_iter):
            eta, covariance = self._variational_step(theta, eta, covariance, idx)
        tril = torch.linalg.cholesky(0.5 * (covariance + covariance.transpose(-1, -2)))
        if idx is None:
            self.loc, self.scale_tril = eta, tril
            self.visited[:] = True
            self._centred_at = (theta.clone(), vi_iter, eta, tril)
        else:
            self.loc[idx], self.scale_tril[idx] = eta, tril
            self.visited[idx] = True
            self._centred_at = None
        return iterations

    def centred(self, theta: torch.Tensor, vi_iter: int, tol: float) -> bool:
        """Whether the posteriors are those of a refresh of every individual with ``vi_iter``
        variational steps at a theta within ``tol`` of ``theta`` (each entry), untouched since
        (a shift of loc, or a refresh of some individuals, replaces or edits the tensors)."""
        if self._centred_at is None:
            return False
        at, vi, loc, tril = self._centred_at
        if vi != vi_iter or loc is not self.loc or tril is not self.scale_tril:
            return False
        return bool(at.shape == theta.shape and (theta.detach() - at).abs().max() < tol)

    def _mode(
        self, theta: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor | None, max_iter: int, tol: float
    ):
        """Damped Newton steps to the mode; returns it and the Laplace covariance there. Each
        individual stops once its step is below ``tol``: later iterations work on the
        individuals still moving only (a few slow ones no longer cost a pass over everyone)."""
        program = self.program
        omega_tril = program.omega_tril(theta)
        prior_sd = (omega_tril @ omega_tril.transpose(-1, -2)).diagonal().sqrt().clamp_min(1e-12)
        value, grad, hess = _gradient_and_hessian(program, theta, eta, idx, batched=self.batched_rows)
        eta = eta.clone()
        active = torch.ones(eta.shape[0], dtype=torch.bool, device=eta.device)
        iterations = 0
        for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is returned
            every = bool(active.all())
            rows = None if every else active.nonzero().flatten()
            sub = idx if every else (rows if idx is None else idx[rows])
            e = eta if every else eta[rows]
            g = grad if every else grad[rows]
            h = hess if every else hess[rows]
            precision = _positive_definite(-h)
            step = torch.linalg.solve(precision, g.unsqueeze(-1)).squeeze(-1)
            if self.ode:
                longest = (step.abs() / (ODE_MODE_MAX_SD * prior_sd)).amax(-1)
                cut = longest > 1
                if bool(cut.any()):
                    step = torch.where(cut.unsqueeze(-1), step / longest.clamp_min(1).unsqueeze(-1), step)
                    self.shortened_steps += int(cut.sum())
                    if self.fallbacks is not None:
                        self.fallbacks.add("mode_shortened_steps", int(cut.sum()))
            # per-individual backtracking: halve the step until the log-density does not decrease.
            # For a model solved by an ODE solver the current point is evaluated again in the
            # same pass as each trial: an adaptive solver's steps depend on the batch, so a value
            # from another batch would differ by the solver's tolerance and could reject every
            # step. A closed-form model's value there is the derivatives' pass's (the same
            # function of each individual whatever the batch: the trials alone cost a pass,
            # half the values). A step whose predicted gain (g'step / 2) is below ``gain_tol``
            # is taken without a pass (it is at the mode).
            current = value if every else value[rows]
            new_e = e.clone()
            gain = 0.5 * (g * step).sum(-1)
            small = gain < self.gain_tol
            new_e[small] = e[small] + step[small]
            pending = (~small).nonzero().flatten()
            alpha = 1.0
            for _ in range(30):
                if pending.shape[0] == 0:
                    break
                if pending.shape[0] == e.shape[0]:  # everyone (a batch-wide failure halves too)
                    base, trial, at, before = e, e + alpha * step, sub, current
                else:
                    base, trial = e[pending], e[pending] + alpha * step[pending]
                    at, before = (pending if sub is None else sub[pending]), current[pending]
                with torch.no_grad():
                    if self.ode:
                        before, after = program.log_joint(theta, torch.stack([base, trial]), at).unbind(0)
                    else:
                        after = program.log_joint(theta, trial, at)
                ok = torch.isfinite(after) & (after >= before - 1e-10)
                new_e[pending[ok]] = trial[ok]
                pending = pending[~ok]
                alpha *= 0.5
            moving = ((new_e - e).abs().amax(-1) >= tol) & ~small
            v, g, h = _gradient_and_hessian(program, theta, new_e, sub, batched=self.batched_rows)
            if every:
                eta, value, grad, hess = new_e, v, g, h
                active = moving
            else:
                eta[rows], value[rows], grad[rows], hess[rows] = new_e, v, g, h
                active[rows] = moving
            if not bool(active.any()):
                break
        return eta, torch.linalg.inv(_positive_definite(-hess)), iterations

    def _variational_step(
        self, theta: torch.Tensor, eta: torch.Tensor, cov: torch.Tensor, idx: torch.Tensor | None
    ):
        """One natural-gradient step of each q_i towards the Gaussian ELBO optimum."""
        program = self.program
        d = eta.shape[-1]

        def points(m, c):
            L = torch.linalg.cholesky(0.5 * (c + c.transpose(-1, -2)))
            cols = math.sqrt(d) * L.transpose(-1, -2)  # row j: sqrt(d) L e_j
            return (
                m + torch.cat([cols, -cols], dim=-2).movedim(-2, 0),
                torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1),
            )

        pts, log_det = points(eta, cov)
        value, grad, hess = _gradient_and_hessian(
            program, theta, pts, idx, gauss_newton=True, batched=self.batched_rows
        )
        elbo = value.mean(0) + log_det  # E_q[log p(y, eta)] + entropy, up to a constant
        new_cov = torch.linalg.inv(_positive_definite(-hess.mean(0)))
        new_eta = eta + (new_cov @ grad.mean(0).unsqueeze(-1)).squeeze(-1)
        new_pts, new_log_det = points(new_eta, new_cov)
        with torch.no_grad():
            new_elbo = program.log_joint(theta, new_pts, idx).mean(0) + new_log_det
        ok = torch.isfinite(new_elbo) & (new_elbo >= elbo - 1e-9)
        return (
            torch.where(ok.unsqueeze(-1), new_eta, eta),
            torch.where(ok.unsqueeze(-1).unsqueeze(-1), new_cov, cov),
        )
