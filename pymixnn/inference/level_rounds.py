"""The alternation of a fit with grouping levels or a spatial field (levels.py): level updates
(offsets handed to the Program, the level parameters' fixed effects moved with them) and
refinements of theta, in turn until the levels stay."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.levels import LevelBlock
from pymixnn.inference.program import Program

__all__ = [
    "LEVELS_ROUNDS",
    "LEVELS_TOL",
    "LEVELS_UPDATES",
    "level_update",
    "converge_levels",
    "level_rounds",
    "alternate",
]

# Rounds of refinement and level updates in turn, stopped when an update at the refined theta moves
# no level effect by more than LEVELS_TOL (transformed scale), then a last refinement; each round's
# updates stop likewise (LEVELS_UPDATES at most). The fixed effects of the level parameters move
# with the level effects (their GLS estimate), so mu and the level effects' mean do not trade off
# slowly as an alternation holding mu would
LEVELS_ROUNDS = 30
LEVELS_TOL = 1e-3
LEVELS_UPDATES = 20


def level_update(
    block: LevelBlock, program: Program, theta: torch.Tensor, local: LocalPosteriors, move_mu: bool
) -> tuple[float, torch.Tensor]:
    """One update of the level block, its offsets handed to the program; theta with the fixed
    effects' GLS shift (``move_mu``) and the largest change."""
    change, shift = block.update(theta, local, move_mu)
    program.set_offsets(block.offset, None, block.offset_var, block.level_params if block.direct else None)
    if shift is not None:
        theta = theta + shift
    return change, theta


def converge_levels(
    block: LevelBlock, program: Program, theta: torch.Tensor, local: LocalPosteriors
) -> tuple[torch.Tensor, float]:
    """The level block, the level parameters' fixed effects and the local posteriors converged at
    theta's other parameters; returns theta and the first update's largest change."""
    first = None
    for _ in range(LEVELS_UPDATES):
        local.refresh(theta, None, max_iter=20)
        change, theta = level_update(block, program, theta, local, move_mu=True)
        first = change if first is None else first
        if change < LEVELS_TOL:
            break
    local.refresh(theta, None, max_iter=20)
    return theta, first


def level_rounds(
    block: LevelBlock,
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    refine: Callable[[torch.Tensor], tuple[torch.Tensor, int]],
    warnings: list[str],
    fallbacks: Fallbacks,
) -> tuple[torch.Tensor, int]:
    """Refinement (``refine``: theta -> theta, rounds) and level updates in turn until the levels
    stay (the levels' fixed point depends on theta), then a last refinement: theta maximizes the
    reported likelihood given the levels' posterior (the updates' GLS shift of mu is the
    pseudo-likelihood's). Returns theta and the refinement rounds run."""
    return alternate(
        refine,
        lambda th: converge_levels(block, program, th, local),
        theta,
        what="the grouping levels",
        updates="level updates",
        counter="levels_rounds_exhausted",
        warnings=warnings,
        fallbacks=fallbacks,
    )


def alternate(
    refine: Callable[[torch.Tensor], tuple[torch.Tensor, int]],
    converge: Callable[[torch.Tensor], tuple[torch.Tensor, float]],
    theta: torch.Tensor,
    *,
    what: str,
    updates: str,
    counter: str,
    warnings: list[str],
    fallbacks: Fallbacks,
    max_rounds: int = LEVELS_ROUNDS,
    tol: float = LEVELS_TOL,
) -> tuple[torch.Tensor, int]:
    """``refine`` (theta -> theta, rounds) and ``converge`` (a block's updates at theta -> theta,
    the first update's largest change) in turn until an update moves the block by less than
    ``tol``, then a last refinement. Running out of rounds is counted as ``counter`` with a
    warning naming ``what`` and its ``updates``. Returns theta and the refinement rounds run."""
    rounds = 0
    for _ in range(max_rounds):
        theta, r = refine(theta)
        rounds += r
        theta, change = converge(theta)
        if change < tol:
            break
    else:
        fallbacks.add(counter)
        warnings.append(
            f"{what} still moved after {max_rounds} rounds of refinement and "
            f"{updates}: estimates are from the last round"
        )
    theta, r = refine(theta)
    return theta, rounds + r
