"""Options and trace of minibatch SVI (svi.py), without Pyro: a fit that runs no SVI step (the
Newton gear) imports neither (pyro's import: 0.08 s of a first fit)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SVIOptions", "SVITrace"]


@dataclass
class SVIOptions:
    batch_size: int = 512
    max_steps: int = 4000
    min_steps: int = 300
    lr: float = 0.02
    lr_final: float = 0.001
    num_particles: int = 4
    window: int = 50
    tol: float = 1e-4
    progress: bool = True


@dataclass
class SVITrace:
    """ELBO per step (full-data scale, from the minibatch) and why the loop stopped; ``theta``:
    (step, theta) at the start and every ``window`` steps, ``refine``: (round, theta) after each
    refinement round (the convergence trace of the population parameters, ``Results.plot_trace``)."""

    elbo: list[float] = field(default_factory=list)
    steps: int = 0
    converged: bool = False
    theta: list = field(default_factory=list)
    refine: list = field(default_factory=list)
    # the Newton gear's rounds on a subsample before the full ones (newton_gear.py): (round,
    # theta) after each, and their seconds
    presample: list = field(default_factory=list)
    presample_seconds: float = 0.0
