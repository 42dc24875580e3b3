"""`Control`: the algorithm settings of a fit (lme4's ``glmerControl``, the R package's
``mixnnControl()``), validated once when built.

The fields are the R package's ``mixnnControl()`` arguments, same names, one to one, except
``mixnnControl(dropna=)``, which is a data setting here: ``pymixnn.NLME(..., dropna=)`` /
``pymixnn.fit(..., dropna=)``.

>>> from pymixnn.control import Control
>>> Control(seed=1, max_steps=200).max_steps
200
>>> Control(lr=-1)
Traceback (most recent call last):
...
pymixnn.validation.InputError: lr must be a finite number > 0 (the SVI step size, e.g. lr=0.02), got -1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymixnn.validation import InputError, check_settings

__all__ = ["Control", "CONTROL_FIELDS", "resolve_control"]


@dataclass(frozen=True)
class Control:
    """Settings of the estimation algorithm (see :func:`pymixnn.fit` for each one).

    batch_size : individuals per SVI minibatch. max_steps, lr, num_particles : SVI steps, Adam
        step size (decaying to lr/20) and ELBO particles.
    refine : maximize the importance-weighted ELBO after SVI.
    is_samples : importance samples per individual (None: from the data size).
    likelihood : "auto", "is" (importance sampling) or "gq" (adaptive Gauss-Hermite quadrature).
    device : "cpu", "cuda", "cuda:N" or "auto". dtype : "float32", "float64" or None.
    threads : torch threads during the fit (None: 1 below 200,000 observations).
    seed : random seed; the same seed gives identical results. progress : a progress bar.
    ode_rtol, ode_atol : relative and absolute tolerances of the ODE solver (dopri5) of an
        :func:`pymixnn.ODEModel` (compartment models and linear ODEs are solved exactly).
    local : "individual" (variational parameters per individual) or "amortized" (one set
        encoder network maps each individual's data to its posterior). refine_steps : with
        "amortized", Newton steps per individual from the encoder's output (semi-amortized).
    """

    batch_size: int = 512
    max_steps: int = 4000
    lr: float = 0.02
    num_particles: int = 4
    refine: bool = True
    is_samples: int | None = None
    likelihood: str = "auto"
    device: str = "cpu"
    dtype: str | None = None
    threads: int | None = None
    seed: int = 0
    progress: bool = True
    ode_rtol: float = 1e-6
    ode_atol: float = 1e-8
    local: str = "individual"
    refine_steps: int = 0

    def __post_init__(self) -> None:
        check_settings(dropna=False, **self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict, field by field."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Control:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


CONTROL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Control))


def resolve_control(control: Control | None, flat: Mapping[str, Any]) -> Control:
    """The Control of a fit from ``control=`` and flat algorithm keywords (``max_steps=100``):
    the flat keywords build one (over the defaults) when ``control`` is None; with both given, a
    flat keyword may only repeat the Control's value, otherwise an InputError names it."""
    unknown = [k for k in flat if k not in CONTROL_FIELDS]
    if unknown:
        raise TypeError(
            f"unknown algorithm setting(s) {unknown}; Control's fields are {list(CONTROL_FIELDS)}"
        )
    if control is None:
        return Control(**flat)
    if not isinstance(control, Control):
        raise TypeError(f"control must be a pymixnn.Control(...), got {type(control).__name__}")
    conflicts = {k: v for k, v in flat.items() if getattr(control, k) != v}
    if conflicts:
        shown = ", ".join(f"{k}={v!r} (control has {getattr(control, k)!r})" for k, v in conflicts.items())
        raise InputError(
            f"give each algorithm setting once, in control= or as a keyword, not both "
            f"with different values: {shown}"
        )
    return control
