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

from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.mode_derivatives import gradient_and_hessian, positive_definite
from pymixnn.inference.program import Program, integrates

__all__ = ["LocalPosteriors"]

# a Newton step whose predicted gain in log-density is below this is taken without a pass, for a
# model solved by an adaptive ODE solver (whose values are exact to its tolerance only: such a
# step's check is noise)
GAIN_TOL = 1e-9
# that gain for a closed-form model where the modes need no confirming pass (``confirm`` off:
# the Newton gear): the individual then stops. The gain is half the step's squared length in
# posterior SDs: a step below 0.003 SD, which leaves the mode within ~1e-6 SD (Newton converges
# quadratically; logistic simulation: 6e-7) and the Laplace covariance, from the Hessian one
# such step back, within ~3e-4 of its largest entry. SVI's paths keep exact checks (SGD
# amplifies any difference: an encoder's new individuals within 0.1 posterior SD fell from
# 99.6% to 81% with this rule during SVI)
CLOSED_FORM_GAIN_TOL = 5e-6
# longest Newton step towards the mode for a model solved by an ODE solver, in prior standard
# deviations of each random effect (sqrt of Omega's diagonal): from eta = 0 at a poor start the
# full step reached parameters where the solve is stiff and ran to max_steps, and the batch's
# backtracking halved it 25 times at 1.5 s a pass (Michaelis-Menten, 100 individuals: 37 of the
# first mode search's 48 s); a shortened step is counted (``shortened_steps``)
ODE_MODE_MAX_SD = 2.0


class LocalPosteriors:
    """Means and Cholesky factors of q(eta_i) for all individuals."""

    def __init__(self, program: Program, omega_tril: torch.Tensor, fallbacks: Fallbacks | None = None):
        n, d = program.n_local, program.layout.n_random
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
        # Hessian rows in one vectorized pass (SVI's minibatch updates: mode_derivatives.BATCHED_ROWS_MIN)
        self.batched_rows = False
        # (theta, vi_iter, loc, scale_tril) of the last refresh of every individual (centred)
        self._centred_at: tuple | None = None
        self.confirm = True  # see CLOSED_FORM_GAIN_TOL and :meth:`_mode`

    @property
    def confirm(self) -> bool:
        """Whether every individual's derivatives are taken at its last point (a closed-form
        model's steps checked exactly); off (the Newton gear): a closed-form step whose
        predicted gain is below CLOSED_FORM_GAIN_TOL is taken without a pass, and an individual
        that stops keeps the derivatives of its last point (theophylline and the logistic
        simulation at N = 100: 1-2 passes fewer per refresh, the estimates equal to 5 digits)."""
        return self._confirm

    @confirm.setter
    def confirm(self, value: bool) -> None:
        self._confirm = bool(value)
        if not self.ode:
            self.gain_tol = 0.0 if value else CLOSED_FORM_GAIN_TOL

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
        value, grad, hess = gradient_and_hessian(program, theta, eta, idx, batched=self.batched_rows)
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
            precision = positive_definite(-h)
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
            if every:
                eta, active = new_e, moving
            else:
                eta[rows], active[rows] = new_e, moving
            # derivatives at the new points of this iteration's individuals (``confirm``: their
            # covariance at their last point), else of those still moving only
            keep = moving if not self.confirm else torch.ones_like(moving)
            if bool(keep.any()):
                here = None if every else rows  # positions of the individuals evaluated
                if not bool(keep.all()):
                    here = keep.nonzero().flatten() if every else rows[keep]
                at = idx if here is None else (here if idx is None else idx[here])
                v, g, h = gradient_and_hessian(
                    program, theta, eta if here is None else eta[here], at, batched=self.batched_rows
                )
                if here is None:
                    value, grad, hess = v, g, h
                else:
                    value[here], grad[here], hess[here] = v, g, h
            if not bool(active.any()):
                break
        return eta, torch.linalg.inv(positive_definite(-hess)), iterations

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
        value, grad, hess = gradient_and_hessian(
            program, theta, pts, idx, gauss_newton=True, batched=self.batched_rows
        )
        elbo = value.mean(0) + log_det  # E_q[log p(y, eta)] + entropy, up to a constant
        new_cov = torch.linalg.inv(positive_definite(-hess.mean(0)))
        new_eta = eta + (new_cov @ grad.mean(0).unsqueeze(-1)).squeeze(-1)
        new_pts, new_log_det = points(new_eta, new_cov)
        with torch.no_grad():
            new_elbo = program.log_joint(theta, new_pts, idx).mean(0) + new_log_det
        ok = torch.isfinite(new_elbo) & (new_elbo >= elbo - 1e-9)
        return (
            torch.where(ok.unsqueeze(-1), new_eta, eta),
            torch.where(ok.unsqueeze(-1).unsqueeze(-1), new_cov, cov),
        )
