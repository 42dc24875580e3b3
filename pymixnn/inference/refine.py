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
from pymixnn.inference.importance import METRIC_DRAWS, REFINE_DRAW_CACHE_CELLS, ImportanceSampler
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.marginal import marginal_likelihood, quadrature_nodes
from pymixnn.inference.newton import PREDICTED_STOP_MIN
from pymixnn.inference.options import EstimationOptions, proposal_vi
from pymixnn.inference.program import Program, integrates
from pymixnn.inference.rng import stream

__all__ = ["refine_newton", "prerefine_ode", "refine_lbfgs", "REFINERS", "NONFINITE_REFINE_WARNING"]

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
    path: list | None = None,
    individuals: torch.Tensor | None = None,
    confirm: bool = True,
) -> tuple[torch.Tensor, int]:
    """Rounds of re-centring and chord-Newton maximization (ImportanceSampler.maximize_report)
    until theta moves less than ``options.refine_tol``; returns theta and the rounds run.
    ``confirm=False``: also stop after a round whose Newton steps converged (the start of another
    law's stages, which re-centre and converge themselves: LawPlugin.gaussian_is_start). A round
    stopped by non-finite derivatives adds a warning; rejected steps are counted. ``path``: a
    list that gets (round, theta) after each round (the parameters' convergence trace).
    ``individuals``: the rounds on that subsample only (the Newton gear's pre-refinement at
    large N, newton_gear.py), with draws of their own stream."""
    desc = "refine" if individuals is None else f"refine ({individuals.shape[0]:,} individuals)"
    bar = tqdm(total=options.refine_rounds, desc=desc, leave=False, disable=not options.svi.progress)
    rounds, metric = 0, None
    seed = stream(options.seed, "proposals" if individuals is None else "presample")
    for rounds in range(1, options.refine_rounds + 1):  # noqa: B007 - the count is returned
        bar.update(1)
        if not centred:
            vi = proposal_vi(options, program.n_individuals)
            own = None if individuals is None else program.shard.own(individuals)  # this process's
            local.refresh(theta, own, max_iter=50, vi_iter=vi)
        centred = False
        sampler = marginal_likelihood(
            program,
            local,
            k_opt,
            seed,
            options.likelihood,
            options.newton_individuals,
            individuals,
        )
        sampler.cache_cells = REFINE_DRAW_CACHE_CELLS  # the round's passes reuse its draws
        ode = integrates(program.model)
        if ode:
            sampler.recentre = _recentre(local, None)
        count = program.n_individuals if individuals is None else individuals.shape[0]
        out = sampler.maximize_report(theta, hessian=metric, predict=count >= PREDICTED_STOP_MIN)
        fallbacks.add("newton_rejected_steps", out.rejected_steps)
        move = float((out.theta - theta).abs().max())
        # the next round starts from this round's last metric (a chord: renewed when its steps
        # stop contracting; logistic simulation, N = 1,000: the second round's 0.2 s metric
        # skipped, the same estimates), except for an ODE model, whose rounds move far
        metric = None if ode else out.hessian
        fallbacks.add("newton_shortened_steps", out.shortened_steps)
        if out.nonfinite_derivatives:
            fallbacks.add("refine_nonfinite_derivatives")
            warnings.append(NONFINITE_REFINE_WARNING)
        theta = out.theta
        if path is not None:
            path.append((rounds, theta.detach().clone()))
        if (
            move < options.refine_tol
            or (sampler.recentre is not None and out.converged)
            or (not confirm and out.converged and not out.nonfinite_derivatives)
        ):
            # re-centred at every step, a round that ends on the Newton decrement has its
            # modes at theta already: another round would only confirm it (Michaelis-Menten,
            # 1,000 individuals: a second round of 47 s moved nothing)
            break
    bar.close()
    return theta, rounds


# rounds of the pre-refinement, and Newton steps per round: the centres follow theta to first
# order only, so far along a ridge a round of many steps climbs a stale approximation
# (Michaelis-Menten, 100 individuals: the first 50-step round took 67 s with 8 steps rejected)
PREREFINE_ROUNDS = 10
# Newton steps to the modes after each accepted step of an ODE model's refinement
RECENTRE_STEPS = 5
PREREFINE_STEPS = 8
# nodes per dimension of its quadrature rule: the rule's scale (the Laplace scale of the last
# re-centring) is held fixed in a round, and with 3 nodes the maximum depends on it enough that
# rounds crept by 0.02-0.03 each (Michaelis-Menten, 100 individuals: 10 rounds, 700 s); with
# many nodes a round costs about the same (a pass over 100-200 individuals is bound by the
# solver's per-step overhead, not its size)
PREREFINE_NODES = 5
# it stops when a round moves theta less than this (the full refinement then converges from there)
PREREFINE_TOL = 0.05


def _recentre(local: LocalPosteriors, rows: torch.Tensor | None):
    """theta -> the local posteriors (of ``rows``, or all) re-centred at theta: a few Newton
    steps from the last modes (Laplace scale), for ImportanceSampler.recentre."""

    def recentre(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local.refresh(theta, rows, max_iter=RECENTRE_STEPS, vi_iter=0)
        return local.loc, local.scale_tril

    return recentre


def prerefine_ode(
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    options: EstimationOptions,
    rows: torch.Tensor,
    *,
    warnings: list[str],
    fallbacks: Fallbacks,
) -> tuple[torch.Tensor, int]:
    """The refinement's rounds on the start subsample ``rows`` with a small rule
    (``PREREFINE_NODES`` nodes per dimension, or ``METRIC_DRAWS`` draws), for a model
    solved by an ODE solver: from the pooled start the maximum can lie far along a ridge of the
    likelihood (Michaelis-Menten's Vmax and Km), a path the full-data refinement would travel at
    a whole solve per node and individual. Here each step costs a small fraction of that, and the
    full refinement then starts near its maximum. Returns theta and the rounds run."""
    q = quadrature_nodes(program.layout.n_random, program.n_obs, options.likelihood, True)
    rule = dict(n_samples=1, quadrature=min(q, PREREFINE_NODES)) if q else dict(n_samples=METRIC_DRAWS)
    rounds = 0
    for rounds in range(1, PREREFINE_ROUNDS + 1):  # noqa: B007 - the count is returned
        local.refresh(theta, rows, max_iter=50, vi_iter=0)
        sampler = ImportanceSampler(
            program,
            local.loc,
            local.scale_tril,
            seed=stream(options.seed, "prerefine"),
            individuals=rows,
            **rule,
        )
        sampler.recentre = _recentre(local, rows)
        try:
            out = sampler.maximize_report(theta, max_iter=PREREFINE_STEPS)
        except FloatingPointError:
            break  # not finite at the start: the full refinement reports it
        fallbacks.add("newton_rejected_steps", out.rejected_steps)
        fallbacks.add("newton_shortened_steps", out.shortened_steps)
        if out.nonfinite_derivatives:
            break  # the full refinement continues from the last finite point
        move = float((out.theta - theta).abs().max())
        theta = out.theta
        if move < PREREFINE_TOL or out.converged:  # re-centred at every step (see refine_newton)
            break
    return theta, rounds


# a flow's L-BFGS round stops once an iteration gains less than this many units of log-likelihood
# (summed over individuals; it stopped at a change of 1e-10 per individual): far below ll.is's
# Monte Carlo error and the gains compared between laws
LBFGS_GAIN_TOL = 1e-3


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
    path: list | None = None,
) -> tuple[torch.Tensor, int]:
    """Flows: theta is long, so the penalized log-likelihood is maximized by L-BFGS (gradient only)
    after each re-centring of the proposals (Laplace, always re-centred: ``centred`` is unused).
    Non-finite gradient components are zeroed and counted. ``path``: as in :func:`refine_newton`."""
    n_rounds = min(options.refine_rounds, max_rounds)
    bar = tqdm(total=n_rounds, desc="refine (flow)", leave=False, disable=not options.svi.progress)
    rounds = 0
    for rounds in range(1, n_rounds + 1):  # noqa: B007 - the count is returned
        bar.update(1)
        local.refresh(theta, None, max_iter=50)
        sampler = marginal_likelihood(
            program, local, k_opt, stream(options.seed, "proposals"), options.likelihood
        )
        # the proposals stay at the modes found above: a spline flow's density is only C1 in eta,
        # so the centre one Newton step from the mode (ImportanceSampler.centre) jumps with theta
        # where a knot crosses it (bimodal benchmark: a move of 1e-5 in theta moved an
        # individual's centre by 0.01 and its log L_i by 0.02, and the line searches took 25-40
        # passes each). The Fisher information and ll.is keep that centre (a Hessian at one
        # point; with fixed proposals theophylline's flow Hessian from 64 draws was indefinite)
        sampler.moving_centre = False
        scale = 1.0 / program.n_individuals
        new_theta, before, after = _lbfgs_round(program, sampler, theta, scale, max_iter, fallbacks)
        if not (math.isfinite(after) and after <= before):
            break
        move = float((new_theta - theta).abs().max())
        theta = new_theta
        if path is not None:
            path.append((rounds, theta.detach().clone()))
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
        tolerance_change=LBFGS_GAIN_TOL * scale,
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
            if pen.requires_grad:  # a flow's ridge (the Gaussian law has none)
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
