"""A model without individual random effects (``random=[]``): nonlinear (generalized) least
squares, as nlme's ``gnls``/``gls``, optionally with grouping levels or a spatial field on its
parameters (levels.py), which then carry all of the model's random variation.

Without eta every individual's log-likelihood ll_i(theta) is exact (the importance sampler draws
nothing), so the stage skips the Laplace-EM warm-up and SVI: pooled maximum likelihood from the
start values (start.py), then Newton steps on the exact log-likelihood (refine.py). With levels the
level block's pseudo data come from each individual's score and curvature in its offset
(LevelBlock.pseudo) and the refinement maximizes the expectation of ll_i over the offsets'
posterior (Program.offset_curvature); refinement and level updates alternate as in the Gaussian
stage (level_rounds.py)."""

from __future__ import annotations

import time

import torch

from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.level_rounds import converge_levels, level_rounds, level_update
from pymixnn.inference.levels import LevelBlock
from pymixnn.inference.options import sample_sizes
from pymixnn.inference.program import Program, integrates
from pymixnn.inference.refine import refine_lbfgs, refine_newton
from pymixnn.inference.start import best_start, start_warning
from pymixnn.inference.svi_options import SVITrace
from pymixnn.model.levels import LevelSetup

__all__ = ["regression_stage"]


def regression_stage(ctx, init, observation=None, levels: LevelSetup | None = None):
    """Start values (pooled maximum likelihood on all individuals) and the exact refinement of a
    model without individual random effects; returns a stages.Stage."""
    from pymixnn.inference.stages import Stage  # the Stage record (stages.py imports this module)

    t_start = time.perf_counter()
    options, fallbacks = ctx.options, ctx.fallbacks
    seconds: dict[str, float] = {}
    warnings: list[str] = []
    program = Program(
        ctx.model, ctx.data, ctx.design, device=ctx.device, dtype=ctx.dtype, observation=observation
    )
    everyone = torch.arange(program.n_individuals, device=ctx.device)
    theta, starts = best_start(program, ctx.model, init, everyone, fallbacks)
    if start_warning(starts):
        warnings.append(start_warning(starts))
    local = LocalPosteriors(program, program.omega_tril(theta), fallbacks)
    local.visited[:] = True
    seconds["start"] = time.perf_counter() - t_start
    _, k_opt = sample_sizes(ctx.data, options, integrates(ctx.model))
    t0 = time.perf_counter()
    lblock, rounds = None, 0
    kw = dict(centred=True, warnings=warnings, fallbacks=fallbacks)

    def refine(th: torch.Tensor) -> tuple[torch.Tensor, int]:
        # L-BFGS first: from the pooled start (or after a level update) the residual variance can
        # be far off, where the log-likelihood is far from quadratic in log sigma and the chord
        # Newton steps would backtrack (Oxboys with a Subject level: 44 rejected in the first round)
        th, _ = refine_lbfgs(program, th, local, options, k_opt, max_rounds=1, **kw)
        return refine_newton(program, th, local, options, k_opt, **kw)

    if levels is not None:
        lblock = LevelBlock(levels, program)
        _, theta = level_update(lblock, program, theta, local, move_mu=True)
        theta, _ = converge_levels(lblock, program, theta, local)
        theta, rounds = level_rounds(lblock, program, theta, local, refine, warnings, fallbacks)
    else:
        theta, rounds = refine(theta)
    seconds["refine"] = time.perf_counter() - t0
    stage = Stage(program, theta, local, SVITrace(converged=True), rounds, seconds, warnings, starts=starts)
    stage.levels = lblock
    return stage
