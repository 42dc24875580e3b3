"""The states of a fitted ODE model along each individual's trajectory, observed or not
(:meth:`pymixnn.Results.states`): the state at the individual's conditional mode, with an interval
from draws of its random effects' Laplace posterior N(eta_map, eta_map_cov).

A partially observed system (a hidden compartment, an unobserved predator, a velocity) is thus
reconstructed per individual from the states it was observed through.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd

__all__ = ["StatesMixin", "state_trajectories"]

DEFAULT_TIMES = 101


class _StateOutput:
    def __init__(self, j: int):
        self.j = j

    def __call__(self, x, psi):
        return x[..., self.j]


def state_trajectories(
    res, times=None, level_pi: float = 0.9, n_draws: int = 100, seed: int = 0
) -> pd.DataFrame:
    """See :meth:`StatesMixin.states`."""
    from pymixnn.model.dynamics.bound import EventFunction
    from pymixnn.model.dynamics.ode import ODESystem
    from pymixnn.results.regimens import grid_curves, square_roots

    system = getattr(res.model, "dynamics", None)
    if not isinstance(system, ODESystem) or not isinstance(res.model.function, EventFunction):
        raise ValueError("states() needs a fit of a pymixnn.ODEModel on event data")
    if not 0 < level_pi < 1:
        raise ValueError(f"level_pi must be in (0, 1), got {level_pi!r}")
    if not (isinstance(n_draws, (int, np.integer)) and n_draws >= 2):
        raise ValueError(f"n_draws must be an integer >= 2, got {n_draws!r}")
    events = res.model.function.events
    names = [f"state:{s}" for s in system.states]
    ext = replace(
        system,
        endpoints=tuple(system.endpoints) + tuple(names),
        output_fns={**system.output_fns, **{n: _StateOutput(j) for j, n in enumerate(names)}},
    )
    bound = EventFunction(system, events, res.model.function.name)  # the data's endpoints checked
    bound.system = ext  # then the states as outputs: a requested code is the output's index
    bound.endpoint_map = np.arange(len(ext.endpoints))
    bound = SimpleNamespace(function=bound)
    codes = [len(system.endpoints) + j for j in range(len(names))]
    if times is None:
        times = np.linspace(0.0, float(np.max(events.time)), DEFAULT_TIMES)
    times = np.asarray(times, dtype=np.float64)
    fm, N = res.evaluator, res.data.n_individuals
    phi = fm.phi_map()
    individual = np.arange(N)
    center = grid_curves(fm, bound, fm.psi(phi), individual, times, codes)  # (N, T * S)
    rng = np.random.default_rng(seed)
    cov = np.asarray(res.estimation.eta_map_cov)
    root = square_roots(cov)  # (N, d, d)
    z = rng.standard_normal((n_draws, N, cov.shape[-1]))
    eta = np.einsum("nij,knj->kni", root, z)  # deviations from the mode
    draws_phi = (phi[None] + fm.eta_full(eta.reshape(-1, eta.shape[-1])).reshape(n_draws, N, -1)).reshape(
        n_draws * N, -1
    )
    draws = grid_curves(fm, bound, fm.psi(draws_phi), np.tile(individual, n_draws), times, codes)
    draws = draws.reshape(n_draws, N, -1)
    alpha = (1 - level_pi) / 2
    lower, upper = np.nanquantile(draws, alpha, axis=0), np.nanquantile(draws, 1 - alpha, axis=0)
    T, S = len(times), len(names)
    ids = np.asarray(res.data.ids)
    return pd.DataFrame(
        {
            res.data.id_col: np.repeat(ids, T * S),
            "time": np.tile(np.tile(times, S), N),
            "state": np.tile(np.repeat(list(system.states), T), N),
            "estimate": center.ravel(),
            "lower": lower.ravel(),
            "upper": upper.ravel(),
        }
    )


class StatesMixin:
    def states(self, times=None, level_pi: float = 0.9, n_draws: int = 100, seed: int = 0) -> pd.DataFrame:
        """Every state of a fitted ODE model (observed or hidden) for each individual on ``times``
        (default 101 points from 0 to the last record): ``estimate`` at the individual's
        conditional mode, ``lower`` / ``upper`` the ``level_pi`` interval over ``n_draws`` draws of
        its random effects' Laplace posterior (``seed``). Columns id, time, state, estimate,
        lower, upper."""
        return state_trajectories(self, times, level_pi, n_draws, seed)
