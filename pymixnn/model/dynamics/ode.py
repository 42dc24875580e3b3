"""ODE systems: ``rhs(t, state, psi, covariates)`` integrated between events with torchdiffeq
(dopri5, adaptive steps), or exactly by matrix exponentials when declared ``linear``.

Each step between two events is solved for the whole batch at once on a rescaled time
s in [0, 1] (t = t0 + s h, dx/ds = h (rhs + inputs)), so individuals with different step lengths
share one solve; a step of length 0 leaves the state unchanged.

>>> import torch
>>> from pymixnn.model.dynamics.ode import ODESystem
>>> sys = ODESystem(states=("central",), parameters=("CL", "V"), dose_to={1: "central"},
...     rhs=lambda t, x, psi, cov: -(psi[..., 0] / psi[..., 1]).unsqueeze(-1) * x,
...     output_fns={"cp": lambda x, psi: x[..., 0] / psi[..., 1]}, endpoints=("cp",))
>>> psi = torch.tensor([[2.0, 20.0]], dtype=torch.float64)
>>> f64 = dict(dtype=torch.float64)
>>> x = sys.advance(None, torch.tensor([[100.0]], **f64), torch.tensor([1.0], **f64),
...     torch.zeros(1, 1, **f64), torch.zeros(1, **f64), psi, None)
>>> abs(float(x[0, 0]) - 100 * 2.718281828459045 ** -0.1) < 1e-6
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pymixnn.model.dynamics import linear as lin
from pymixnn.model.dynamics.system import System

__all__ = ["ODESystem", "SolverStats", "ODESolveFailure"]


@dataclass
class SolverStats:
    """Counts of one run: right-hand-side evaluations, solves and failed solves."""

    rhs_evaluations: int = 0
    solves: int = 0
    failures: int = 0
    pseudo_time_solves: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "ode_rhs_evaluations": self.rhs_evaluations,
            "ode_solves": self.solves,
            "ode_failures": self.failures,
            "ode_pseudo_time_solves": self.pseudo_time_solves,
        }


@dataclass(frozen=True)
class ODESystem(System):
    """A system given by its right-hand side (see :class:`pymixnn.ODEModel`)."""

    rhs: Callable[..., torch.Tensor] | None = None
    output_fns: Mapping[str, Callable] = field(default_factory=dict)
    init_fns: Mapping[str, Callable] = field(default_factory=dict)
    covariate_names: tuple[str, ...] = ()
    is_linear: bool = False
    rtol: float = 1e-8
    atol: float = 1e-10
    method: str = "dopri5"
    max_steps: int = 2000
    stats: SolverStats = field(default_factory=SolverStats, compare=False)

    @property
    def linear(self) -> bool:  # type: ignore[override]
        return self.is_linear

    @property
    def integrates(self) -> bool:
        """Solved numerically (the engine then integrates runs of steps in one solve)."""
        return not self.is_linear

    def _cov(self, cov: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if cov is None or not self.covariate_names:
            return {}
        return {name: cov[..., j] for j, name in enumerate(self.covariate_names)}

    def _rhs(self, t, x, psi, cov) -> torch.Tensor:
        self.stats.rhs_evaluations += 1
        out = self.rhs(t, x, psi, self._cov(cov))
        if not isinstance(out, torch.Tensor) or out.shape[-1] != self.n_states:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"rhs must return d(state)/dt of shape (..., {self.n_states}); got {shape}")
        return out

    # ---- kinetics ------------------------------------------------------------------------------
    def generator(self, psi: torch.Tensor, covariates=None) -> Any:
        if not self.is_linear:
            return None
        S = self.n_states
        eye = torch.eye(S, dtype=psi.dtype, device=psi.device)
        t = psi.new_zeros(psi.shape[:-1])
        b = self._rhs(t, psi.new_zeros(*psi.shape[:-1], S), psi, covariates)
        cov_b = (
            None
            if covariates is None
            else covariates.unsqueeze(-2).expand(*covariates.shape[:-1], S, covariates.shape[-1])
        )
        cols = self._rhs(
            t.unsqueeze(-1).expand(*t.shape, S),
            eye.expand(*psi.shape[:-1], S, S),
            psi.unsqueeze(-2).expand(*psi.shape[:-1], S, psi.shape[-1]),
            cov_b,
        )
        A = (cols - b.unsqueeze(-2)).transpose(-1, -2)  # column j: rhs(e_j) - rhs(0)
        return A, b

    def advance(self, gen, x, h, r, t0, psi, covariates):
        self.stats.solves += 1
        if self.is_linear:
            A, b = gen
            return lin.advance(A, x, h, r + b)
        from torchdiffeq import odeint

        hh = h.unsqueeze(-1)

        budget = self._budget(0)

        def f(s, y):
            budget()
            return hh * (self._rhs(t0 + s * h, y, psi, covariates) + r)

        grid = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
        try:
            out = odeint(f, x, grid, rtol=self.rtol, atol=self.atol, method=self.method)[-1]
        except (AssertionError, RuntimeError) as err:
            self.stats.failures += 1
            raise ODESolveFailure(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
        return out

    def advance_run(self, x, h, r, t0, psi, covariates, smooth: bool = False):
        """Several steps in one solve: h, t0 (..., L), r (..., L, S), psi (..., L, P), covariates
        (..., L, C) or None; states after each step (..., L, S).

        When the inputs, parameters and covariates are the same over the run (``smooth``: the
        steps end at observations only; the engine knows), one solve in real time from each
        individual's start, the states read at the distinct elapsed times
        (:meth:`_common_time`). Otherwise, and when that grid would be too large, step m is the
        pseudo-time s in [m, m + 1] (t = t0_m + (s - m) h_m), the integers are output and jump
        points (the solver restarts there: the inputs and the step's speed change); counted in
        ``pseudo_time_solves``."""
        from torchdiffeq import odeint

        L = h.shape[-1]
        self.stats.solves += 1
        if smooth:
            cov0 = None if covariates is None else covariates[..., 0, :]
            out = self._common_time(x, h, r[..., 0, :], t0[..., 0], psi[..., 0, :], cov0)
            if out is not None:
                return out
        self.stats.pseudo_time_solves += 1

        budget = self._budget(L)

        def f(s, y):
            budget()
            m = min(max(int(torch.floor(s)), 0), L - 1)
            hm = h[..., m]
            cov = None if covariates is None else covariates[..., m, :]
            t = t0[..., m] + (s - m) * hm
            return hm.unsqueeze(-1) * (self._rhs(t, y, psi[..., m, :], cov) + r[..., m, :])

        grid = torch.arange(L + 1, dtype=x.dtype, device=x.device)
        options = {"jump_t": grid[1:-1]} if L > 1 else {}
        try:
            out = odeint(f, x, grid, rtol=self.rtol, atol=self.atol, method=self.method, options=options)
        except (AssertionError, RuntimeError) as err:
            self.stats.failures += 1
            raise ODESolveFailure(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
        return torch.movedim(out[1:], 0, -2)

    def _budget(self, jumps: int) -> Callable[[], None]:
        """A counter called at each right-hand-side evaluation of one solve: past the step budget
        (max_steps, and 20 more per restart at a jump point; 6 evaluations per dopri5 step) it
        stops the solve."""
        limit = 6 * (self.max_steps + 20 * jumps) + 10
        count = [0]

        def tick() -> None:
            count[0] += 1
            if count[0] > limit:
                raise ODESolveFailure(f"more than {self.max_steps + 20 * jumps} solver steps (max_steps)")

        return tick

    def _common_time(self, x, h, r, t0, psi, cov):
        """One solve of dx/dt = rhs + r from each individual's t0 (its own clock), read at the
        distinct elapsed times; None when the grid times the state size exceeds COMMON_GRID_LIMIT.
        The elapsed times may depend on the parameters (lag, infusion ends): their derivative
        enters through dx/dt at the read point (exact to first order, the value unchanged)."""
        from torchdiffeq import odeint

        tau = torch.cumsum(h, -1)  # (..., L) elapsed time at each step's end
        grid, where = torch.unique(tau.detach(), sorted=True, return_inverse=True)
        if bool(grid[0] > 0):
            grid = torch.cat([grid.new_zeros(1), grid])
            where = where + 1
        if grid.numel() * x.numel() > COMMON_GRID_LIMIT:
            return None

        budget = self._budget(0)

        def f(s, y):
            budget()
            return self._rhs(t0 + s, y, psi, cov) + r

        if grid.numel() == 1:
            sol = x.unsqueeze(0)
        else:
            try:
                sol = odeint(f, x, grid, rtol=self.rtol, atol=self.atol, method=self.method)
            except (AssertionError, RuntimeError) as err:
                self.stats.failures += 1
                raise ODESolveFailure(str(err).splitlines()[0] if str(err) else type(err).__name__) from err
        S, L = x.shape[-1], h.shape[-1]
        sol = torch.movedim(sol, 0, -2)  # (..., G, S)
        X = sol.gather(-2, where.unsqueeze(-1).expand(*where.shape, S))  # (..., L, S)
        if tau.requires_grad:
            P = psi.shape[-1]
            psi_l = psi.unsqueeze(-2).expand(*psi.shape[:-1], L, P)
            cov_l = None if cov is None else cov.unsqueeze(-2).expand(*cov.shape[:-1], L, cov.shape[-1])
            slope = self._rhs(t0.unsqueeze(-1) + tau, X, psi_l, cov_l) + r.unsqueeze(-2)
            X = X + (tau - tau.detach()).unsqueeze(-1) * slope
        return X

    def steady_state(self, gen, psi, covariates, bolus, rate, duration, tau, lag, running):
        if self.is_linear and not bool((gen[1] != 0).any()):
            return lin.steady_state(gen[0], None, bolus, rate, duration, tau, lag, running)
        return None

    def initial(self, psi: torch.Tensor) -> torch.Tensor:
        x = psi.new_zeros(*psi.shape[:-1], self.n_states)
        if not self.init_fns:
            return x
        cols = [self.init_fns[s](psi) if s in self.init_fns else x[..., j] for j, s in enumerate(self.states)]
        return torch.stack([c.expand(psi.shape[:-1]) for c in cols], -1)

    def outputs(self, state: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.output_fns[e](state, psi) for e in self.endpoints], -1)


COMMON_GRID_LIMIT = 20_000_000  # elements of the solution on the common grid (~160 MB in float64)


class ODESolveFailure(RuntimeError):
    """The ODE solver gave up on a step (the engine names the individual)."""
