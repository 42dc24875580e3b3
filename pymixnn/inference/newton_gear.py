"""The Newton gear (``gear="newton"``): the refinement's Newton steps on the marginal
log-likelihood straight from the Laplace-EM start, without minibatch SVI.

Each refinement round re-centres every individual's local posterior at theta (batched Newton
steps to the modes, laplace.py) and then maximizes the importance-sampling (or quadrature)
log-likelihood with fixed draws by chord-Newton steps (importance.py): the scheme of Laplace/FOCE
engines (TMB, NONMEM's FOCE), with the exact marginal likelihood in place of its linearization.
From the Laplace-EM start it needs a few passes over the data where SVI took hundreds of
minibatch steps to reach the same maximum.

A genomic block (genomic.py) is updated between refinements: one update at the start, then a
refinement and an update in turn until an update moves no offset by more than GENOMIC_TOL
(level_rounds.alternate, as grouping levels after SVI), then a last refinement; the 350
minibatch steps and their block updates every 50 steps are gone.

A run that does not converge (the rounds run out while theta still moves, or non-finite
derivatives stop it) is not kept: the caller falls back to SVI from the same start and counts it
(``newton_gear_to_svi``).
"""

from __future__ import annotations

import dataclasses
import time

import torch

from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.genomic import GenomicBlock, GenomicSetup, converge_genomic
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.level_rounds import alternate
from pymixnn.inference.options import EstimationOptions
from pymixnn.inference.program import Program
from pymixnn.inference.refine import refine_newton
from pymixnn.inference.rng import stream
from pymixnn.inference.svi_options import SVITrace

__all__ = [
    "NEWTON_GEAR_ROUNDS",
    "NEWTON_GEAR_WARMUP",
    "NEWTON_GEAR_WARMUP_VI",
    "NEWTON_GEAR_METRIC",
    "newton_gear",
    "gear_path",
    "presamples",
]

# refinement rounds of the Newton gear: from the Laplace-EM start the rounds' moves shrink
# quadratically (theophylline and the logistic simulation at N = 100-10,000: 2 rounds, the
# second moving theta by < 0.01), so rounds left beyond options.refine_rounds are a margin
NEWTON_GEAR_ROUNDS = 10
# Laplace-EM iterations of the start (options.warmup_iter, 10, for the SVI gear): the
# refinement's rounds do the rest (theophylline and the logistic simulation at N = 100: 2 rounds
# from 3 iterations as from 10, the estimates equal to 5 digits; the start 0.1 s instead of 0.28)
NEWTON_GEAR_WARMUP = 3
# variational steps after each of their Laplace modes: none, the start has only to land in the
# refinement's basin, whose first round re-centres with them (options.proposal_vi; the logistic
# simulation, N = 1,000: the start 0.26 -> 0.15 s, the estimates equal to 4 digits, the same
# rounds). The SVI gear keeps 2: its path from the start is what its end point depends on
NEWTON_GEAR_WARMUP_VI = 0
# individuals of the refinement's Newton metric (options.newton_individuals, 5,000, for the SVI
# gear): logistic simulation, N = 10,000, 1,000 against 5,000: the same 2 rounds and estimates
# (5 digits), the refinement 4.7 s instead of 7.6; 500 against 1,000: the same rounds, passes and
# estimates at N = 1,000 (the metric 74 -> 44 ms), one pass fewer at 10,000; with 250 a pass more
NEWTON_GEAR_METRIC = 500
# from this many individuals the refinement's rounds run first on nested random subsamples
# (presamples: NEWTON_GEAR_PRESAMPLE individuals, then ten times as many while that is at most a
# third of N; refine_newton's ``individuals``), then on all from the last one's maximum, which
# lies within a few of its SEs of the full one: at large N a full pass costs seconds (logistic
# simulation, 10^5 individuals x 20 draws: 1.9 s; 10^6: 19 s), and from the Laplace-EM start the
# rounds took 10 of them; from the subsample's maximum, 5 at 10^5 and 4 at 10^6 (one round; the
# 10^6 fit 415 -> 204 s, and 171 s with the metric below and the cheaper mode search,
# benchmarks/results/scaling.md). Rounds over this many individuals or
# more also take their Newton metric from options.newton_individuals (5,000) instead of
# NEWTON_GEAR_METRIC: the metric costs the same whatever N, and the better one saves a step
# (10^5: the first full round 4 -> 3 passes of 1.9 s, for a metric of 0.7 s instead of 0.1)
NEWTON_GEAR_PRESAMPLE_MIN = 30_000
NEWTON_GEAR_PRESAMPLE = 10_000
# refinement rounds on each subsample: its maximum need only lie well within the few of its SEs
# that separate it from the next one's, and one round gets there (its steps follow theta through
# the proposal centres' Newton step): a second round moved theta by 0.0027 on 10^4 individuals
# after the first's 0.16, and by < 1e-4 on 10^5 (10^6: the subsample rounds 14.9 -> 12.5 s)
NEWTON_GEAR_PRESAMPLE_ROUNDS = 1
# block updates per round of a genomic fit: the block's own fixed point at each theta is slow
# (updates contract by ~0.87: 60,000-marker scale case, 35 updates and 46 s when converging it
# each round, 9 updates and 17.6 s with one per round, the same causal markers)
GENOMIC_ROUND_UPDATES = 1


def newton_gear(
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    options: EstimationOptions,
    k_opt: int,
    fallbacks: Fallbacks,
    genomic: GenomicSetup | None = None,
    confirm: bool = True,
) -> tuple[torch.Tensor, int, SVITrace, list[str], GenomicBlock | None] | None:
    """Refinement rounds from the start ``theta`` until theta moves less than
    ``options.refine_tol`` (with ``genomic``: alternated with the genomic block's convergence);
    returns (theta, rounds, trace, warnings, genomic block or None), the trace holding no SVI
    step, its ``theta`` the start and its ``refine`` the rounds' path; None when the rounds did
    not converge (the caller then runs SVI; the program's genomic offsets are cleared).
    ``confirm=False``: the rounds on all individuals as refine.refine_newton's (a law's start)."""
    trace = SVITrace(converged=True)
    trace.theta.append((0, theta.detach().clone()))
    warnings: list[str] = []
    metric = options.newton_individuals
    rounds_options = dataclasses.replace(
        options,
        refine_rounds=NEWTON_GEAR_ROUNDS,
        newton_individuals=NEWTON_GEAR_METRIC if metric is None else min(metric, NEWTON_GEAR_METRIC),
    )

    # rounds over NEWTON_GEAR_PRESAMPLE_MIN individuals or more: the metric from more (see there)
    wide_options = dataclasses.replace(rounds_options, newton_individuals=metric)

    def refine(
        start: torch.Tensor, centred: bool, individuals=None, path=trace.refine
    ) -> tuple[torch.Tensor, int]:
        count = program.n_individuals if individuals is None else individuals.shape[0]
        opts = wide_options if count >= NEWTON_GEAR_PRESAMPLE_MIN else rounds_options
        if individuals is not None:
            opts = dataclasses.replace(opts, refine_rounds=NEWTON_GEAR_PRESAMPLE_ROUNDS)
        return refine_newton(
            program,
            start,
            local,
            opts,
            k_opt,
            centred=centred,
            warnings=warnings,
            fallbacks=fallbacks,
            path=path,
            individuals=individuals,
            confirm=confirm or individuals is not None,
        )

    block = None
    start = theta  # the full rounds' start (after the subsample's rounds when they run)
    try:
        if genomic is None:
            t0 = time.perf_counter()
            for rows in presamples(program.n_individuals, options.seed):
                start, _ = refine(start, False, rows.to(program.device), trace.presample)
            trace.presample_seconds = time.perf_counter() - t0
            new, rounds = refine(start, False)
        else:
            # the block from every individual's posterior at the start
            local.refresh(theta, None, max_iter=20)
            block = GenomicBlock(genomic, program)
            start, _ = converge_genomic(block, program, theta, local, GENOMIC_ROUND_UPDATES)
            new, rounds = alternate(
                lambda th: refine(th, True),  # converge_genomic re-centred the posteriors
                lambda th: converge_genomic(block, program, th, local, GENOMIC_ROUND_UPDATES),
                start,
                what="the genomic block",
                updates="genomic updates",
                counter="genomic_rounds_exhausted",
                warnings=warnings,
                fallbacks=fallbacks,
            )
    except FloatingPointError:
        new, rounds = None, 0  # not finite at the start: SVI starts from there with its own safeguards
    path = [start if genomic is None else theta] + [th for _, th in trace.refine]
    moved = float((path[-1] - path[-2]).abs().max()) if len(path) > 1 else float("inf")
    if (
        new is None
        or warnings
        or not bool(torch.isfinite(new).all())
        or (genomic is None and rounds >= NEWTON_GEAR_ROUNDS and moved >= options.refine_tol)
    ):
        if genomic is not None:
            program.set_offsets(None, None)
        return None
    return new, rounds, trace, warnings, block


def presamples(n: int, seed: int) -> list[torch.Tensor]:
    """The nested random subsamples (sorted rows) of the rounds before the full ones: of
    NEWTON_GEAR_PRESAMPLE individuals, then ten times as many, while a subsample is at most a
    third of n (10^5 individuals: 10^4; 10^6: 10^4, then 10^5); none below
    NEWTON_GEAR_PRESAMPLE_MIN."""
    if n < NEWTON_GEAR_PRESAMPLE_MIN:
        return []
    order = torch.randperm(n, generator=torch.Generator().manual_seed(stream(seed, "presample")))
    sizes, size = [], NEWTON_GEAR_PRESAMPLE
    while 3 * size <= n:
        sizes.append(size)
        size *= 10
    return [order[:size].sort().values for size in sizes]


def gear_path(trace: SVITrace, seconds: dict) -> list:
    """The Newton gear's path of theta (Stage.path: the start, the subsample's rounds, the
    rounds on all); ``seconds``: the subsample's rounds taken out of the refinement's."""
    if trace.presample:
        seconds.update(presample=trace.presample_seconds, refine=seconds["refine"] - trace.presample_seconds)
    return (
        [("start", 0, trace.theta[0][1])]
        + [("presample", r, th) for r, th in trace.presample]
        + [("refine", r, th) for r, th in trace.refine]
    )
