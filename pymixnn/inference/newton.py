"""The refinement's Newton iteration on a sampler's log-likelihood (:meth:`ImportanceSampler.
maximize_report`): chord-Newton steps with backtracking, a step cap for ODE models, and
re-centring of the local posteriors after each accepted step when the sampler asks for it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pymixnn.inference.program import integrates

if TYPE_CHECKING:
    from pymixnn.inference.importance import ImportanceSampler

__all__ = ["ODE_MAX_STEP", "PREDICTED_STOP_MIN", "MaximizeResult", "newton_maximize"]

# longest move of one theta entry in one Newton step of the refinement of such a model (a factor
# e on a log-scale parameter): a full step from far along the Vmax-Km ridge put the solver in a
# stiff region where one trial pass took 150 s and 8.5 GB instead of 6 s (Michaelis-Menten,
# 1,000 individuals); a shorter step is then retried from the new point
ODE_MAX_STEP = 1.0
# from this many individuals (refine.refine_newton's ``predict``), where a pass costs seconds
# (10^6 individuals of the logistic simulation x 20 draws: 17 s), a closed-form model's steps
# also stop when the next Newton decrement, predicted from the last two, is below decrement_tol
# (the chord's secant-updated steps contract superlinearly, d_next ~ d^2 / d_previous; 10^5
# individuals: 101.6, then 0.058, then 4.2e-5 where 3.4e-5 was predicted), and the current one
# is below PREDICTED_STOP_MAX (the step within 0.3 SE of the maximum): the last step is then
# taken without the pass that would only confirm it
PREDICTED_STOP_MIN = 30_000
PREDICTED_STOP_MAX = 0.1


@dataclass
class MaximizeResult:
    """The end point of :meth:`ImportanceSampler.maximize_report` and what happened on the way."""

    theta: torch.Tensor
    value: float
    nonfinite_derivatives: bool = False  # stopped by non-finite derivatives (last finite point kept)
    rejected_steps: int = 0  # full Newton steps rejected by backtracking
    shortened_steps: int = 0  # steps cut to ODE_MAX_STEP (ODE models)
    converged: bool = False  # stopped by the Newton decrement (within 0.01 SE of the maximum)
    hessian: torch.Tensor | None = None  # the last metric of the steps (a next round's chord)


def newton_maximize(
    sampler: ImportanceSampler,
    theta: torch.Tensor,
    *,
    max_iter: int = 50,
    tol: float = 1e-7,
    decrement_tol: float = 1e-4,
    hessian: torch.Tensor | None = None,
    predict: bool = False,
) -> MaximizeResult:
    """The iteration of :meth:`ImportanceSampler.maximize_report` (see there); ``hessian``: a
    metric to start from (an earlier round's, renewed like any chord when the steps stop
    contracting or backtrack) instead of a new one at theta; ``predict``: the predicted stop
    (PREDICTED_STOP_MIN; not for an ODE model)."""

    theta = theta.detach().clone()
    nonfinite, rejected, shortened, converged = False, 0, 0, False
    ode = integrates(sampler.program.model)
    predict = predict and not ode
    value, grad = sampler.value_and_gradient(theta)
    if not math.isfinite(value):
        raise FloatingPointError(
            "importance-sampling log-likelihood is not finite at the starting point of the refinement"
        )
    fresh = hessian is None
    hess = sampler._newton_hessian(theta) if fresh else hessian
    last_decrement = math.inf
    for _ in range(max_iter):
        if not (bool(torch.isfinite(grad).all()) and bool(torch.isfinite(hess).all())):
            nonfinite = True  # the caller warns
            break  # derivatives overflow: keep the last finite point
        vals, vecs = torch.linalg.eigh(-hess)
        vals = torch.maximum(vals.abs(), 1e-8 * vals.abs().max().clamp_min(1.0))
        step = vecs @ ((vecs.T @ grad) / vals)
        decrement = float(grad @ step)
        if not fresh and (sampler.hessian_rows is not None or not ode) and decrement > 0.25 * last_decrement:
            # the chord (old Hessian) contracts slowly, far from the maximum: renew it (not for
            # an ODE model's full-data metric, a whole difference Hessian through the solver)
            hess = sampler._newton_hessian(theta)
            fresh, last_decrement = True, math.inf
            continue
        previous, last_decrement = last_decrement, decrement
        if decrement < decrement_tol or (
            predict
            and math.isfinite(previous)
            and decrement < PREDICTED_STOP_MAX
            and decrement * decrement < decrement_tol * previous
        ):
            theta, value = theta + step, value + 0.5 * decrement
            converged = True
            break
        longest = float(step.abs().max())
        if ode and longest > ODE_MAX_STEP:
            step = step * (ODE_MAX_STEP / longest)  # counted: a shortened step
            shortened += 1
        trial_value, trial_grad = sampler.value_and_gradient(theta + step)
        t = 1.0
        if not (math.isfinite(trial_value) and trial_value >= value - 1e-12):
            rejected += 1
        while not (math.isfinite(trial_value) and trial_value >= value - 1e-12) and t > 1e-6:
            t *= 0.5
            trial_value, trial_grad = sampler.total(theta + t * step), None
        if t <= 1e-6 or (ode and t < 0.25 and not fresh):
            if fresh:
                break
            hess = sampler._newton_hessian(theta)  # stale Hessian: renew, retry
            fresh = True
            continue
        gain = trial_value - value
        theta, value = theta + t * step, trial_value
        if float((t * step).abs().max()) < tol or gain < 1e-10:
            break
        if sampler.recentre is not None:
            # the modes found again at the accepted point: the one-step centre holds near
            # the modes only (see ``recentre``); value and gradient with the new centres
            sampler.set_posteriors(*sampler.recentre(theta))
            sampler.recentred += 1
            value, grad = sampler.value_and_gradient(theta)
        else:
            new_grad = trial_grad if trial_grad is not None else sampler.value_and_gradient(theta)[1]
            if not ode:
                hess = _secant_update(hess, t * step, new_grad - grad)
            grad = new_grad
        fresh = False
        if t < 1.0 and not ode:
            # a backtracked step of the chord: its Hessian, from an earlier point, overshoots
            # (Phenobarb: the start's Hessian halved the curvature in omega2.CL, and each full
            # step overshot by 2x; kept, it took 20 backtracked steps, 46 passes, 5.1 s; renewed
            # at the accepted point, the steps contract again)
            hess = sampler._newton_hessian(theta)
            fresh, last_decrement = True, math.inf
    return MaximizeResult(theta, value, nonfinite, rejected, shortened, converged, hess)


def _secant_update(hess: torch.Tensor, s: torch.Tensor, dg: torch.Tensor) -> torch.Tensor:
    """The BFGS update of the chord's Hessian with the step s and the gradient's change dg: the
    metric then matches the curvature along the steps taken, at no pass (the logistic simulation,
    N = 10,000: the 1,000-individual metric contracted the gradient by ~0.28 per pass, linearly);
    unchanged where -hess is not positive definite along s or the curvature y's = -dg's is not
    positive (then the chord goes on as it was)."""
    B, y = -hess, -dg
    Bs = B @ s
    sBs, sy = float(s @ Bs), float(y @ s)
    if not (sBs > 0 and sy > 1e-12 * float(y @ y) ** 0.5 * float(s @ s) ** 0.5):
        return hess
    B = B - torch.outer(Bs, Bs) / sBs + torch.outer(y, y) / sy
    return -B
