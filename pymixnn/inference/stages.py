"""Estimation stages: the Gaussian stage (start values, Laplace-EM warm-up, minibatch SVI with the
genomic block when there is one, refinement) and the law stage (a non-Gaussian law started from the
Gaussian fit, its SVI and refinement). Each returns a :class:`Stage`."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from pymixnn.data.table import Data
from pymixnn.inference.amortized import amortize_local, distil, program_encoder
from pymixnn.inference.collective import NO_SVI_FALLBACK, collective
from pymixnn.inference.encoder import Encoder
from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.genomic import GenomicBlock, GenomicSetup, converge_genomic, genomic_update
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.laws.base import FAST_SOLVE_ROWS
from pymixnn.inference.level_rounds import converge_levels, level_rounds, level_update
from pymixnn.inference.levels import LevelBlock
from pymixnn.inference.marginal import marginal_likelihood
from pymixnn.inference.newton_gear import NEWTON_GEAR_WARMUP, NEWTON_GEAR_WARMUP_VI, gear_path, newton_gear
from pymixnn.inference.options import EstimationOptions, proposal_vi, sample_sizes
from pymixnn.inference.program import Program, integrates
from pymixnn.inference.records import GenomicPosterior
from pymixnn.inference.refine import REFINERS, prerefine_ode, refine_newton
from pymixnn.inference.regression import regression_stage
from pymixnn.inference.rng import stream
from pymixnn.inference.start import best_start, start_warning, warmup
from pymixnn.inference.svi_options import SVITrace
from pymixnn.model.covariates import CovariateDesign
from pymixnn.model.levels import LevelSetup
from pymixnn.model.named import Model

__all__ = ["Stage", "Context", "gaussian_stage", "law_stage"]

# SVI steps of a non-Gaussian law's stage (from the Gaussian fit: it shapes the law; with an
# encoder, the network's posteriors follow the new law)
LAW_SVI_STEPS = 400
# With an encoder SVI runs all max_steps: the ELBO's plateau stops it before the network's best fit
# (logistic simulation, mean amortization gap: N = 1,000, 2.7 nats at the plateau's 650 steps, 0.57
# after 2,000, 0.50 after 3,000; N = 10,000, 1.17 at the plateau's 3,050 steps, 0.51 after 6,000)


@dataclass
class Context:
    """What every stage of one fit shares."""

    model: Model
    data: Data
    design: CovariateDesign
    options: EstimationOptions
    device: torch.device
    dtype: torch.dtype
    generator: torch.Generator  # the fit's main stream (subsamples, SVI batches, a mixture's EM)
    fallbacks: Fallbacks = field(default_factory=Fallbacks)
    # a conditional flow's (N, c) context: the encoder reads it from the Gaussian stage on
    law_context: np.ndarray | None = None
    gear: str = "svi"  # the Gaussian stage's gear (options.choose_gear)
    gaussian_is_start: bool = False  # it only starts another law's (LawPlugin.gaussian_is_start)


@dataclass
class Stage:
    """What one estimation stage hands on: parameters, local posteriors and bookkeeping."""

    program: Program
    theta: torch.Tensor
    local: LocalPosteriors
    trace: SVITrace
    rounds: int
    seconds: dict
    warnings: list
    law_info: dict = field(default_factory=dict)
    genomic: GenomicPosterior | None = None  # the genomic block's posterior (GenomicBlock.export)
    starts: list = field(default_factory=list)  # start values tried (best_start), best first
    amortized: dict | None = None  # local="amortized": the encoder and its gaps (amortized.py)
    encoder: Encoder | None = None  # local="amortized": the live encoder (a law stage trains a copy)
    levels: LevelBlock | None = None  # grouping levels: the block, exported by finish()
    # the population parameters along the fit: (stage, step or round, theta) in this stage's
    # layout (a law stage carries the Gaussian stage's path, its law parameters at their start)
    path: list = field(default_factory=list)


def gaussian_stage(
    ctx: Context,
    init,
    observation=None,
    genomic: GenomicSetup | None = None,
    levels: LevelSetup | None = None,
) -> Stage:
    """Start values, Laplace-EM warm-up, SVI, refinement of Gaussian random effects (none: regression.py)."""
    if not ctx.model.random:
        return regression_stage(ctx, init, observation, levels)
    t_start = time.perf_counter()
    options, device, generator, fallbacks = ctx.options, ctx.device, ctx.generator, ctx.fallbacks
    seconds: dict[str, float] = {}
    warnings: list[str] = []
    program = Program(ctx.model, ctx.data, ctx.design, device=device, dtype=ctx.dtype,
                      observation=observation, comm=collective(options.distributed))  # fmt: skip
    n = program.n_individuals
    ode = integrates(ctx.model)
    n_start = options.warmup_individuals
    if ode:
        n_start = min(n_start, options.ode_start_individuals)
    sub = program.shard.own(torch.randperm(n, generator=generator)[:n_start].sort().values).to(device)
    optimizer = "newton" if ctx.gear == "newton" else "torch"  # see start.maximize_block
    theta, starts = best_start(program, ctx.model, init, sub, fallbacks, optimizer, options.start_theta)
    if start_warning(starts):
        warnings.append(start_warning(starts))
    local = LocalPosteriors(program, program.omega_tril(theta), fallbacks)
    newton = ctx.gear == "newton"
    if newton:
        program.law.fast_rows = 0  # no SVI minibatch: every pass by L^-1 (LawPlugin.fast_rows)
        local.confirm = False  # no SVI path: no pass that only confirms a mode (laplace.py)
    iters, vi = (NEWTON_GEAR_WARMUP, NEWTON_GEAR_WARMUP_VI) if newton else (options.warmup_iter, 2)
    iters = iters if options.start_theta is None else 1  # a hybrid fit's trained start: 1 EM iteration
    theta = warmup(program, theta, local, sub, iters, fallbacks, optimizer, vi_iter=vi)
    if ode and options.refine and genomic is None and levels is None and options.start_theta is None:
        theta, _ = prerefine_ode(program, theta, local, options, sub, warnings=warnings, fallbacks=fallbacks)
    seconds["start"] = time.perf_counter() - t_start
    if ctx.gear == "newton":
        t0 = time.perf_counter()
        k_opt = sample_sizes(ctx.data, options, ode)[1]
        confirm = not ctx.gaussian_is_start or genomic is not None  # a genomic block is reported from it
        out = newton_gear(program, theta, local, options, k_opt, fallbacks, genomic, confirm=confirm)
        seconds["refine"] = time.perf_counter() - t0
        if out is not None:
            theta, rounds, trace, more, block = out
            stage = Stage(program, theta, local, trace, rounds, seconds, warnings + more, starts=starts)
            stage.path = gear_path(trace, seconds)
            if block is not None:
                t0 = time.perf_counter()
                stage.genomic = block.export()
                seconds["genomic_export"] = time.perf_counter() - t0
            return stage
        if genomic is not None:  # a data-parallel SVI has no genomic block yet: an error
            program.comm.no_fallback(NO_SVI_FALLBACK)
        fallbacks.add("newton_gear_to_svi")  # SVI from the same start: fallbacks.py
        program.law.fast_rows = FAST_SOLVE_ROWS  # SVI's minibatches keep their rounding
        local.confirm = True
        seconds["newton_gear"] = seconds.pop("refine")

    t0 = time.perf_counter()
    block, groups, callback = None, None, None
    if genomic is not None:
        # the genomic block starts from every individual's posterior at the warm-up's theta
        local.refresh(theta, None, max_iter=20)
        block = GenomicBlock(genomic, program)
        genomic_update(block, program, theta, local)
        groups = torch.as_tensor(genomic.cell_genotype[genomic.individual_cell], dtype=torch.long)
        callback = lambda th: genomic_update(block, program, th, local)  # noqa: E731
    lblock = None
    if levels is not None:
        # the levels start from every individual's posterior at the warm-up's theta; during SVI
        # theta is the optimizer's, so the updates leave mu to it
        local.refresh(theta, None, max_iter=20)
        lblock = LevelBlock(levels, program)
        _, theta = level_update(lblock, program, theta, local, move_mu=True)
        if set(lblock.kinds) == {"level"}:  # a field waits for the refinement (see LEVELS_ROUNDS)
            callback = lambda th: level_update(lblock, program, th, local, move_mu=False)[0]  # noqa: E731
    theta_start = theta.clone()
    svi_options = options.svi
    encoder = None
    if options.local == "amortized":
        encoder = program_encoder(program, theta, stream(options.seed, "encoder"), ctx.law_context, ctx.data)
        local.refresh(theta, sub, max_iter=20)  # the subsample's posteriors at the warm-up's end
        distil(encoder, local, sub, generator)
        # the network needs more steps than theta: SVI runs all max_steps (past the ELBO's plateau)
        svi_options = dataclasses.replace(svi_options, min_steps=svi_options.max_steps)
    capped = (
        encoder is None
        and block is None
        and lblock is None
        and n > options.large_n
        and options.large_n_svi_steps is not None
        and options.refine
        and options.large_n_svi_steps < svi_options.max_steps
    )
    ode_capped = (
        ode
        and encoder is None
        and block is None
        and options.refine
        and options.ode_svi_steps is not None
        and options.ode_svi_steps < svi_options.max_steps
    )
    if capped or ode_capped:
        caps = [int(options.large_n_svi_steps)] if capped else []
        steps = min(caps + ([int(options.ode_svi_steps)] if ode_capped else []))
        capped = True
        svi_options = dataclasses.replace(
            svi_options, max_steps=steps, min_steps=min(svi_options.min_steps, steps)
        )
    from pymixnn.inference.svi import run_svi  # Pyro: imported by the fits that run SVI

    theta, trace = run_svi(
        program,
        theta,
        local,
        svi_options,
        generator,
        groups=groups,
        callback=callback,
        fallbacks=fallbacks,
        encoder=encoder,
    )
    amortized = None
    if encoder is not None:
        amortized = amortize_local(program, theta, encoder, local, options, generator)
    if block is not None:
        theta, _ = converge_genomic(block, program, theta, local)  # at the SVI end point
    if lblock is not None:
        theta, _ = converge_levels(lblock, program, theta, local)
    seconds["svi"] = time.perf_counter() - t0
    if not trace.converged and not capped:
        warnings.append(f"SVI reached max_steps={options.svi.max_steps} before the ELBO plateau")

    _, k_opt = sample_sizes(ctx.data, options, integrates(ctx.model))
    t0 = time.perf_counter()
    rounds, notes = 0, dict(warnings=warnings, fallbacks=fallbacks, path=trace.refine)
    if options.refine and block is not None:
        # a genomic fit: the Laplace-EM start predates the genotype offsets, so it is no
        # candidate; the local posteriors were just refreshed at the SVI end point
        theta, rounds = refine_newton(program, theta, local, options, k_opt, centred=True, **notes)
    elif options.refine and lblock is not None:
        refine = lambda th: refine_newton(  # noqa: E731
            program, th, local, options, k_opt, centred=True, **notes
        )
        theta, rounds = level_rounds(lblock, program, theta, local, refine, warnings, fallbacks)
    elif options.refine:
        theta, centred = _safeguard(program, theta, theta_start, local, ctx, k_opt, warnings)
        theta, rounds = refine_newton(program, theta, local, options, k_opt, centred=centred, **notes)
    seconds["refine"] = time.perf_counter() - t0
    stage = Stage(program, theta, local, trace, rounds, seconds, warnings, starts=starts, amortized=amortized)
    stage.path = [("svi", step, th) for step, th in trace.theta] + [
        ("refine", r, th) for r, th in trace.refine
    ]
    stage.encoder = encoder
    stage.levels = lblock
    if block is not None:
        t0 = time.perf_counter()
        stage.genomic = block.export()
        seconds["genomic_export"] = time.perf_counter() - t0
    return stage


def _safeguard(
    program: Program,
    theta: torch.Tensor,
    theta_start: torch.Tensor,
    local: LocalPosteriors,
    ctx: Context,
    k_opt: int,
    warnings: list[str],
):
    """Refine from whichever of the SVI end point and the Laplace-EM start has the higher
    importance-sampling log-likelihood (should SVI ever wander off), scored on a random subsample
    when N is large (the two differ by far more than its noise when SVI has gone wrong). Returns
    the point and whether the local posteriors are centred at it."""
    options, n = ctx.options, program.n_individuals
    rows = None
    if n > options.score_individuals:
        rows = torch.randperm(n, generator=ctx.generator)[: options.score_individuals]
        rows = rows.sort().values.to(ctx.device)
    scores = []
    own = None if rows is None else program.shard.own(rows)  # a data-parallel fit: this process's
    for candidate in (theta_start, theta):  # the SVI end point last: usually kept
        local.refresh(candidate, own, max_iter=50, vi_iter=proposal_vi(options, n))
        scores.append(
            marginal_likelihood(
                program, local, k_opt, stream(options.seed, "proposals"), options.likelihood
            ).total(candidate, rows)
        )
    centred = rows is None  # local posteriors were last updated at theta (all of them)
    if not scores[1] >= scores[0]:
        warnings.append(
            f"SVI lowered the IS log-likelihood ({scores[0]:.2f} -> "
            f"{scores[1]:.2f}); refinement started from the Laplace-EM start"
        )
        theta, centred = theta_start, False
    return theta, centred


def law_stage(gauss: Stage, ctx: Context, law, context=None) -> Stage:
    """Start the law from the Gaussian fit (the law plug-in's ``start``), then minibatch SVI
    (unless the plug-in skips it) and refinement (the plug-in's refiner) with that law."""
    t_start = time.perf_counter()
    options, device, dtype = ctx.options, ctx.device, ctx.dtype
    seconds = {k: v for k, v in gauss.seconds.items()}
    warnings = list(gauss.warnings)
    program = Program(
        ctx.model,
        ctx.data,
        ctx.design,
        device=device,
        dtype=dtype,
        law=law,
        context=context,
        seed=options.seed,
        observation=gauss.program.family,
    )
    # a genomic fit's offsets, held fixed (estimates conditional on the offsets' mean)
    program.set_offsets(gauss.program.offset, None)
    lay = program.layout
    theta = torch.zeros(lay.size, dtype=dtype, device=device)
    theta[lay.core] = gauss.theta
    local = LocalPosteriors(program, gauss.program.omega_tril(gauss.theta), ctx.fallbacks)
    local.loc, local.scale_tril = gauss.local.loc.clone(), gauss.local.scale_tril.clone()
    local.visited[:] = True
    skip = program.law.skip_svi(program.n_individuals, options.svi.batch_size, gauss.trace.steps > 0)
    if skip and gauss.encoder is None:
        program.law.fast_rows = 0  # no SVI minibatch in this stage (LawPlugin.fast_rows)
    theta, law_info = program.law.start(
        program,
        theta,
        local,
        generator=ctx.generator,
        seed=stream(options.seed, "flow_start"),
        fallbacks=ctx.fallbacks,
    )
    seconds["law_start"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    # minibatch SVI with the law: the Gaussian stage has placed theta and the local posteriors,
    # so it only has to shape the law and runs shorter. With an encoder it always runs, all its
    # steps: the network learns the posteriors under the new law (a copy, so that the candidates
    # of a mixture's n_components="auto" each train their own from the Gaussian one)
    trace, encoder, amortized = gauss.trace, None, gauss.amortized
    path = []
    for stage_name, step, th in gauss.path:  # the Gaussian stage's path, in this layout
        full = theta.clone()
        full[lay.core] = th
        path.append((stage_name, step, full))
    if gauss.encoder is not None:
        encoder = copy.deepcopy(gauss.encoder)
    if encoder is not None or not skip:
        steps = min(options.svi.max_steps, LAW_SVI_STEPS)
        law_svi = dataclasses.replace(
            options.svi,
            max_steps=steps,
            min_steps=steps if encoder is not None else min(options.svi.min_steps, 100),
        )
        from pymixnn.inference.svi import run_svi

        theta, trace = run_svi(
            program, theta, local, law_svi, ctx.generator, fallbacks=ctx.fallbacks, encoder=encoder
        )
        path += [(f"svi ({law.name})", step, th) for step, th in trace.theta]
        if not trace.converged and encoder is None:
            warnings.append(
                f"SVI ({law.name} law) reached max_steps={law_svi.max_steps} before the ELBO plateau"
            )
    if encoder is not None:
        amortized = amortize_local(program, theta, encoder, local, options, ctx.generator)
    seconds["svi_law"] = time.perf_counter() - t0
    _, k_opt = sample_sizes(ctx.data, options, integrates(ctx.model))
    t0 = time.perf_counter()
    rounds = 0
    if options.refine:
        refiner = REFINERS[program.law.refiner]
        rounds_path: list = []
        theta, rounds = refiner(
            program,
            theta,
            local,
            options,
            program.law.refine_draws(k_opt),
            centred=False,
            warnings=warnings,
            fallbacks=ctx.fallbacks,
            path=rounds_path,
        )
        path += [(f"refine ({law.name})", r, th) for r, th in rounds_path]
    seconds["refine_law"] = time.perf_counter() - t0
    return Stage(
        program,
        theta,
        local,
        trace,
        rounds,
        seconds,
        warnings,
        law_info,
        gauss.genomic,
        starts=gauss.starts,
        amortized=amortized,
        encoder=encoder,
        path=path,
    )
