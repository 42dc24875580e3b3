"""Refinement: maximize the importance-sampling (or quadrature) log-likelihood of theta after the
SVI stage. The proposals are re-centred at theta each round, and the same draws are used every
round (seed fixed), so only the proposals' centre and scale change: Newton steps for a short
theta, L-BFGS for a flow's many parameters (``REFINERS``, chosen by the law's ``refiner``)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.importance import ImportanceSampler
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.marginal import marginal_likelihood
from pymixnn.inference.options import EstimationOptions, proposal_vi
from pymixnn.inference.program import Program
from pymixnn.inference.rng import stream

__all__ = ["refine_newton", "refine_lbfgs", "REFINERS", "NONFINITE_REFINE_WARNING"]

NONFINITE_REFINE_WARNING = (
    "refinement stopped early: non-finite derivatives of the marginal "
    "log-likelihood (an observation model overflowing far in a tail); "
    "estimates are from the SVI stage"
)


def refine_newton(
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    options: EstimationOptions,
    k_opt: int,
    *,
    centred: bool,
    warnings: list[str],
    fallbacks: Fallbacks,
) -> tuple[torch.Tensor, int]:
    """Rounds of re-centring and chord-Newton maximization (ImportanceSampler.maximize_report)
    until theta moves less than ``options.refine_tol``; returns theta and the rounds run. A round
    stopped by non-finite derivatives adds a warning; rejected steps are counted."""
    bar = tqdm(total=options.refine_rounds, desc="refine", leave=False, disable=not options.svi.progress)
    rounds = 0
    for rounds in range(1, options.refine_rounds + 1):  # noqa: B007 - the count is returned
        bar.update(1)
        if not centred:
            local.refresh(theta, None, max_iter=50, vi_iter=proposal_vi(options, program.n_individuals))
        centred = False
        sampler = marginal_likelihood(
            program,
            local,
            k_opt,
            stream(options.seed, "proposals"),
            options.likelihood,
            options.newton_individuals,
        )
        out = sampler.maximize_report(theta)
        fallbacks.add("newton_rejected_steps", out.rejected_steps)
        fallbacks.add("newton_shortened_steps", out.shortened_steps)
        if out.nonfinite_derivatives:
            fallbacks.add("refine_nonfinite_derivatives")
            warnings.append(NONFINITE_REFINE_WARNING)
        move = float((out.theta - theta).abs().max())
        theta = out.theta
        if move < options.refine_tol:
            break
    bar.close()
    return theta, rounds


def refine_lbfgs(
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    options: EstimationOptions,
    k_opt: int,
    *,
    centred: bool,
    warnings: list[str],
    fallbacks: Fallbacks,
    max_iter: int = 60,
    max_rounds: int = 3,
) -> tuple[torch.Tensor, int]:
    """Flows: theta is long, so the penalized log-likelihood is maximized by L-BFGS (gradient only)
    after each re-centring of the proposals (Laplace, always re-centred: ``centred`` is unused).
    Non-finite gradient components are zeroed and counted."""
    n_rounds = min(options.refine_rounds, max_rounds)
    bar = tqdm(total=n_rounds, desc="refine (flow)", leave=False, disable=not options.svi.progress)
    rounds = 0
    for rounds in range(1, n_rounds + 1):  # noqa: B007 - the count is returned
        bar.update(1)
        local.refresh(theta, None, max_iter=50)
        sampler = marginal_likelihood(
            program, local, k_opt, stream(options.seed, "proposals"), options.likelihood
        )
        scale = 1.0 / program.n_individuals
        new_theta, before, after = _lbfgs_round(program, sampler, theta, scale, max_iter, fallbacks)
        if not (math.isfinite(after) and after <= before):
            break
        move = float((new_theta - theta).abs().max())
        theta = new_theta
        if move < options.refine_tol or before - after < 1e-4 * scale:
            break
    bar.close()
    return theta, rounds


def _lbfgs_round(
    program: Program,
    sampler: ImportanceSampler,
    theta: torch.Tensor,
    scale: float,
    max_iter: int,
    fallbacks: Fallbacks,
) -> tuple[torch.Tensor, float, float]:
    """One L-BFGS run from theta on the penalized log-likelihood (times ``scale``) with the
    sampler's fixed draws; returns the end point and the objective before and after."""
    free = theta.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [free],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_change=1e-10,
    )

    def closure():
        opt.zero_grad()
        total = torch.zeros((), dtype=theta.dtype, device=theta.device)
        with torch.enable_grad():
            for c, idx in sampler.chunks():
                value = -(sampler.chunk_loglik(free, c, idx).sum()) * scale
                value.backward()
                total = total + value.detach()
            pen = program.law_penalty(free) * scale
            pen.backward()
        if free.grad is not None:
            fallbacks.count_nonfinite("lbfgs_zeroed_gradient", free.grad)
            free.grad = torch.nan_to_num(free.grad, nan=0.0, posinf=0.0, neginf=0.0)
        return total + pen.detach()

    before = float(closure())
    opt.step(closure)
    after = float(closure())
    return free.detach(), before, after


REFINERS: dict[str, Callable[..., tuple[torch.Tensor, int]]] = {
    "newton": refine_newton,
    "lbfgs": refine_lbfgs,
}
