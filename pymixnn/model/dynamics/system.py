"""The interface of a dynamic system (what the event engine needs), and its dosing parameters.

A system has states, maps NONMEM compartment numbers to states (``dose_to``), names the
parameters that act on doses into each compartment (lag time, bioavailability, modeled rate and
duration: :class:`Dosing`), maps endpoints to outputs, and moves its state over a step with
constant inputs (:meth:`System.advance`). Linear systems (compartment models, linear ODEs) do it
exactly with matrix exponentials and have closed-form steady states; other ODE systems integrate
numerically (:mod:`pymixnn.model.dynamics.ode`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Dosing", "DoseInputs", "System", "dosing_table"]


@dataclass(frozen=True)
class Dosing:
    """Parameter names acting on the doses into one compartment (None: no such parameter; lag
    0, bioavailability 1). ``rate`` serves RATE = -1 records, ``duration`` RATE = -2 records."""

    tlag: str | None = None
    F: str | None = None
    rate: str | None = None
    duration: str | None = None


@dataclass(frozen=True)
class DoseInputs:
    """What each record puts into the system, computed once by the event engine from the records
    and the parameters: per record (..., B, K) the lag, the amount F * AMT, the infusion's rate
    and duration (0 for a bolus), whether it is a dose and an infusion, the steady-state interval
    ``tau`` (II); the target state index (B, K) and its one-hot vector (B, K, S); ``running``
    (..., B, K, M): which of the M previous members of a steady-state infusion series still run
    at the record."""

    lag: torch.Tensor
    amount: torch.Tensor
    rate: torch.Tensor
    duration: torch.Tensor
    is_dose: torch.Tensor
    is_inf: torch.Tensor
    state: torch.Tensor
    onehot: torch.Tensor
    tau: torch.Tensor
    running: torch.Tensor


def dosing_table(dosing: Mapping[int, Dosing], parameters: Sequence[str], n_cmt: int) -> torch.Tensor:
    """(n_cmt + 1, 4) long tensor: for each compartment number (row 0 unused), the column of
    (tlag, F, rate, duration) in psi extended by [0, 1] (P: zero, P + 1: one)."""
    P = len(parameters)
    table = torch.tensor([[P, P + 1, P + 1, P + 1]] * (n_cmt + 1), dtype=torch.long)
    for cmt, d in dosing.items():
        for j, name in enumerate((d.tlag, d.F, d.rate, d.duration)):
            if name is not None:
                table[cmt, j] = list(parameters).index(name)
    return table


@dataclass(frozen=True)
class System:
    """Base of the dynamic systems: names and maps; subclasses define the kinetics.

    ``states`` state names; ``parameters`` psi's order; ``dose_to`` NONMEM compartment number ->
    state name; ``dosing`` compartment number -> :class:`Dosing`; ``endpoints`` output names in
    order (an output is ``fn(state, psi)``)."""

    states: tuple[str, ...]
    parameters: tuple[str, ...]
    dose_to: Mapping[int, str]
    dosing: Mapping[int, Dosing] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ("1",)
    #: evaluated event by event (parameters that change with time-varying covariates; a linear
    #: ODE): each evaluation is a loop over the records, and a fit treats it as an ODE solve's
    stepwise: bool = False

    #: True where advance() is exact for constant inputs and steady_state() is closed-form
    linear = False

    @property
    def n_states(self) -> int:
        return len(self.states)

    def dose_state(self, cmt: int) -> int:
        return self.states.index(self.dose_to[int(cmt)])

    def dosing_parameters(self) -> list[str]:
        return [n for d in self.dosing.values() for n in (d.tlag, d.F, d.rate, d.duration) if n]

    def describe_compartments(self) -> str:
        return ", ".join(f"{c} ({s})" for c, s in sorted(self.dose_to.items()))

    # ---- kinetics: overridden ---------------------------------------------------------------
    def generator(self, psi: torch.Tensor, covariates: torch.Tensor | None) -> Any:
        """What advance() needs for parameters psi (..., P) (e.g. the matrix A)."""
        raise NotImplementedError

    def advance(
        self,
        gen: Any,
        x: torch.Tensor,
        h: torch.Tensor,
        r: torch.Tensor,
        t0: torch.Tensor,
        psi: torch.Tensor,
        covariates: torch.Tensor | None,
    ) -> torch.Tensor:
        """The state after a step of length h (..., ) from x (..., S) at time t0 with inputs r."""
        raise NotImplementedError

    def initial(self, psi: torch.Tensor) -> torch.Tensor:
        """The state before the first record (zero unless the system says otherwise)."""
        return psi.new_zeros(*psi.shape[:-1], self.n_states)

    def outputs(self, state: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Every endpoint's prediction, (..., n_endpoints)."""
        raise NotImplementedError

    def steady_state(self, gen: Any, psi: torch.Tensor, covariates, bolus, rate, duration, tau, lag, running):
        """The state at s of the dose series before it (None: the engine iterates dosing cycles)."""
        return None
