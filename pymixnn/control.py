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

from pymixnn.docstrings import fill_doc
from pymixnn.validation import InputError, check_settings

__all__ = ["Control", "CONTROL_FIELDS", "resolve_control"]


@fill_doc
@dataclass(frozen=True)
class Control:
    """Settings of the estimation algorithm (lme4's ``glmerControl``, the R package's
    ``mixnnControl()``), checked when built; give it to :func:`pymixnn.fit` or :meth:`NLME.fit`.

    Parameters
    ----------
    %(control_parameters)s

    Returns
    -------
    Control
        A frozen record of the settings; :meth:`replace` makes a changed copy (checked again).

    Examples
    --------
    >>> import pymixnn
    >>> control = pymixnn.Control(seed=1, max_steps=2000)
    >>> control.replace(lr=0.01).lr, control.max_steps
    (0.01, 2000)
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
    gear: str = "auto"
    distributed: bool = False
    neural_steps: int | None = None
    neural_starts: int = 1
    shards: bool = False

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
