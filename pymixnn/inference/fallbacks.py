"""Counted fallbacks: every place where the fit quietly takes a safer path is counted here, by name,
and a warning is raised when a count passes its threshold (``THRESHOLDS``).

Names (all present, 0 when not taken):

* ``svi_zeroed_gradient_steps`` / ``svi_zeroed_gradient_components``: SVI steps (and gradient
  components) whose non-finite gradient entries were set to 0 (a draw far in a tail overflowing);
* ``start_block_nonfinite``: pooled start or warm-up block maximizations that ended non-finite
  and kept the previous values;
* ``law_start_unchanged``: fits of a law on cached draws (deconvolution.py) that ended non-finite
  and returned their start;
* ``lbfgs_zeroed_gradient``: L-BFGS evaluations (a flow's start and refinement) whose non-finite
  gradient entries were set to 0;
* ``newton_rejected_steps``: full Newton steps of the refinement rejected by backtracking;
* ``newton_shortened_steps``: Newton steps of an ODE model's refinement cut to move no entry of
  theta by more than 1 (newton.ODE_MAX_STEP);
* ``mode_shortened_steps``: Newton steps of an ODE model's individual mode searches cut to move
  no random effect by more than 2 prior SDs (laplace.ODE_MODE_MAX_SD), one per individual and
  step;
* ``refine_nonfinite_derivatives``: refinement rounds stopped by non-finite derivatives;
* ``fisher_pseudo_inverse``: observed Fisher information inverted by a pseudo-inverse;
* ``newton_gear_to_svi``: fits whose Newton gear (newton_gear.py) did not converge from the
  Laplace-EM start and ran minibatch SVI from there instead (the ``"svi"`` gear);
* ``genomic_rounds_exhausted``: Newton-gear genomic fits whose alternation of refinement and
  genomic updates ran out of rounds (level_rounds.LEVELS_ROUNDS) before the block stayed (the
  fit then runs SVI: ``newton_gear_to_svi``);
* ``levels_rounds_exhausted``: fits with grouping levels whose alternation of refinement and level
  updates ran out of rounds (stages.LEVELS_ROUNDS) before the levels stayed;
* ``levels_pseudo_inverse``: the level covariances' information, or the GLS information of the
  level parameters' fixed effects, inverted by a pseudo-inverse (a level variance at its floor: no
  information about it; a field confounded with an intercept).
"""

from __future__ import annotations

import torch

__all__ = ["FALLBACKS", "THRESHOLDS", "Fallbacks"]

FALLBACKS = (
    "svi_zeroed_gradient_steps",
    "svi_zeroed_gradient_components",
    "start_block_nonfinite",
    "law_start_unchanged",
    "lbfgs_zeroed_gradient",
    "newton_rejected_steps",
    "newton_shortened_steps",
    "mode_shortened_steps",
    "refine_nonfinite_derivatives",
    "fisher_pseudo_inverse",
    "levels_rounds_exhausted",
    "genomic_rounds_exhausted",
    "levels_pseudo_inverse",
    "latent_class_empty_reseed",
    "latent_class_restart",
    "newton_gear_to_svi",
)

# name -> (threshold, what it is compared with, message). "steps": the count as a share of the SVI
# steps; "count": the count itself. refine_nonfinite_derivatives and fisher_pseudo_inverse have
# their own warnings where they happen (stages.py, reporting.py), as have the levels' two (stages.py,
# levels.py), so they have no entry here.
THRESHOLDS: dict[str, tuple[float, str, str]] = {
    "svi_zeroed_gradient_steps": (
        0.05,
        "steps",
        "SVI zeroed non-finite gradient components in {count} of {steps} steps "
        "({components} components): the structural or observation model overflows at some draws of "
        "eta; check its support, transforms= or init=",
    ),
    "start_block_nonfinite": (
        1,
        "count",
        "start values: {count} pooled/warm-up maximization(s) ended at non-finite "
        "values and kept the previous values",
    ),
    "law_start_unchanged": (
        1,
        "count",
        "the law's start fit on cached draws ended at non-finite values {count} time(s) and kept its start",
    ),
    "lbfgs_zeroed_gradient": (
        1,
        "count",
        "L-BFGS zeroed non-finite gradient components in {count} evaluation(s) (the "
        "flow's start or refinement)",
    ),
    "latent_class_empty_reseed": (
        1,
        "count",
        "latent classes: the start's EM re-seeded an empty class {count} time(s) (fewer classes "
        "than n_classes may be supported by the data: compare K with n_classes='auto')",
    ),
    "newton_gear_to_svi": (
        1,
        "count",
        "the Newton gear did not converge from the Laplace-EM start (the refinement's rounds ran "
        "out or its derivatives were not finite); the fit ran minibatch SVI first (gear='svi')",
    ),
    "newton_rejected_steps": (
        25,
        "count",
        "refinement: {count} Newton steps were rejected by backtracking (a "
        "log-likelihood far from quadratic, or Monte Carlo noise)",
    ),
}


class Fallbacks:
    """Counts of the fallbacks taken during one fit (see the module docstring)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(FALLBACKS, 0)
        self.svi_steps = 0  # SVI steps taken (the base of the "steps" thresholds)

    def add(self, name: str, n: int = 1) -> None:
        if name not in self.counts:
            raise KeyError(f"unknown fallback {name!r}; known: {list(FALLBACKS)}")
        self.counts[name] += int(n)

    def count_nonfinite(self, name: str, grad: torch.Tensor | None) -> int:
        """Count one use of ``name`` when ``grad`` has non-finite entries; returns how many."""
        if grad is None:
            return 0
        bad = int((~torch.isfinite(grad)).sum())
        if bad:
            self.add(name)
        return bad

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def warnings(self, svi_steps: int | None = None) -> list[str]:
        """Human-readable warnings for the counts past their threshold."""
        svi_steps = self.svi_steps if svi_steps is None else svi_steps
        out = []
        for name, (limit, kind, text) in THRESHOLDS.items():
            count = self.counts[name]
            value = count / max(svi_steps, 1) if kind == "steps" else count
            if count and value >= limit:
                out.append(
                    text.format(
                        count=count, steps=svi_steps, components=self.counts["svi_zeroed_gradient_components"]
                    )
                )
        return out
