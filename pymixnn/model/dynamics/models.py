"""Dynamic structural models as :class:`pymixnn.Model` specs: the named compartment models and
:func:`ODEModel`; :func:`bind_events` attaches a model to the event table it is fitted on.

>>> import torch, pymixnn
>>> m = pymixnn.ODEModel(
...     lambda t, x, psi, cov: -(psi[..., 0] / psi[..., 1]).unsqueeze(-1) * x,
...     states=["central"], parameters=["CL", "V"],
...     outputs={"cp": lambda x, psi: x[..., 0] / psi[..., 1]}, dose_to={1: "central"})
>>> m.parameters, m.dynamics.states
(('CL', 'V'), ('central',))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pymixnn.data.events import EventTable
from pymixnn.model.dynamics.bound import EventFunction
from pymixnn.model.dynamics.compartments import COMPARTMENT_MODELS, compartment_system, start_compartmental
from pymixnn.model.dynamics.ode import ODESystem, SolverStats
from pymixnn.model.dynamics.system import Dosing, System
from pymixnn.model.spec import Model
from pymixnn.validation import InputError

__all__ = [
    "ODEModel",
    "pk_model",
    "bind_events",
    "is_dynamic",
    "solver_counts",
    "with_solver",
    "X_NAMES",
    "COMPARTMENT_MODELS",
]

X_NAMES = ("time", "endpoint", "individual", "record")
_DOSING_TRANSFORMS = {"tlag": "log", "F": "logit", "rate": "log", "duration": "log"}


def _needs_events(name: str) -> Callable:
    def unbound(psi, x):
        raise InputError(
            f"model {name!r} needs dosing records: build the data with pymixnn.Data.from_nonmem(...)"
        )

    unbound.__name__ = name
    return unbound


def is_dynamic(model: Model) -> bool:
    return getattr(model, "dynamics", None) is not None


def pk_model(
    name: str,
    *,
    tlag: bool | str = False,
    F: bool | str = False,
    rate: bool | str = False,
    duration: bool | str = False,
    endpoint: str = "cp",
    parameters: Sequence[str] = (),
    outputs: Mapping[str, Callable] | None = None,
    **options: Any,
) -> Model:
    """A named linear compartment model (``"pk1cpt_iv"``, ``"pk1cpt_oral"``, ``"pk2cpt_iv"``,
    ``"pk2cpt_oral"``, ``"pk3cpt_iv"``, ``"pk3cpt_oral"``), solved exactly; ``tlag``, ``F``,
    ``rate``, ``duration`` add those dosing parameters on CMT 1 (True: that name). ``endpoint``
    names the concentration's endpoint; ``outputs`` adds endpoints computed from it,
    {name: fn(cp, psi)} (a direct-effect PD model, a count's log-rate), reading the extra
    ``parameters`` from psi (in the order of ``model.parameters``). Transforms: log, F logit.
    ``options`` are :class:`pymixnn.Model` fields (init, random, error, ...)."""
    if name not in COMPARTMENT_MODELS:
        raise InputError(f"unknown compartment model {name!r}; known: {sorted(COMPARTMENT_MODELS)}")
    system = compartment_system(
        name,
        tlag=tlag,
        F=F,
        rate=rate,
        duration=duration,
        endpoint=endpoint,
        parameters=tuple(str(p) for p in parameters),
        outputs=outputs,
    )
    transforms = {p: "log" for p in system.parameters}
    for key, value in dict(tlag=tlag, F=F, rate=rate, duration=duration).items():
        if value:
            transforms[key if value is True else str(value)] = _DOSING_TRANSFORMS[key]
    fields: dict[str, Any] = dict(
        function=_needs_events(name),
        parameters=system.parameters,
        transforms=transforms,
        name=name,
        x_names=X_NAMES,
        time=0,
        dynamics=system,
    )
    fields.update(options)
    return Model(**fields)


def _per_compartment(value: Mapping[int, str] | None) -> dict[int, str]:
    return {int(k): str(v) for k, v in (value or {}).items()}


def ODEModel(
    rhs: Callable[..., Any],
    states: Sequence[str],
    parameters: Sequence[str],
    outputs: Mapping[str, Callable],
    dose_to: Mapping[int, str] | None = None,
    init: Mapping[str, Callable] | None = None,
    *,
    tlag: Mapping[int, str] | None = None,
    F: Mapping[int, str] | None = None,
    rate: Mapping[int, str] | None = None,
    duration: Mapping[int, str] | None = None,
    covariates: Sequence[str] = (),
    linear: bool = False,
    start: Mapping[str, float] | None = None,
    name: str | None = None,
    **options: Any,
) -> Model:
    """An ODE structural model.

    ``rhs(t, state, psi, covariates)`` returns d(state)/dt (..., S) for ``state`` (..., S) in the
    order of ``states`` and ``psi`` (..., P) on the natural scale in the order of ``parameters``;
    ``covariates`` is a dict of the time-varying covariates named in ``covariates`` (values
    carried forward from the records). ``outputs`` maps each endpoint (DVID value) to
    ``fn(state, psi)``; ``dose_to`` maps NONMEM compartment numbers to states (default: CMT k is
    the k-th state); ``init`` maps states to ``fn(psi)`` (zero otherwise). ``tlag``, ``F``,
    ``rate``, ``duration`` map a compartment number to the parameter acting on its doses.
    ``linear=True`` declares dx/dt = A(psi) x + b(psi), solved exactly by matrix exponentials.
    ``start``: initial fixed effects (natural scale); ``options``: other :class:`pymixnn.Model`
    fields (transforms, random, error, ...)."""
    states = tuple(str(s) for s in states)
    parameters = tuple(str(p) for p in parameters)
    if not callable(rhs):
        raise InputError("ODEModel: rhs must be a callable rhs(t, state, psi, covariates)")
    if not outputs:
        raise InputError("ODEModel: give outputs={endpoint: fn(state, psi)}")
    dose_to = {int(k): str(v) for k, v in (dose_to or {k + 1: s for k, s in enumerate(states)}).items()}
    unknown = sorted({s for s in dose_to.values()} - set(states)) + sorted(set(init or {}) - set(states))
    if unknown:
        raise InputError(f"ODEModel: unknown states {unknown}; states are {list(states)}")
    dosing: dict[int, Dosing] = {}
    for key, table in dict(tlag=tlag, F=F, rate=rate, duration=duration).items():
        for cmt, pname in _per_compartment(table).items():
            if pname not in parameters:
                raise InputError(
                    f"ODEModel: {key} parameter {pname!r} is not in parameters {list(parameters)}"
                )
            dosing[cmt] = replace(dosing.get(cmt, Dosing()), **{key: pname})
    system = ODESystem(
        states=states,
        parameters=parameters,
        dose_to=dose_to,
        dosing=dosing,
        endpoints=tuple(str(e) for e in outputs),
        rhs=rhs,
        output_fns={str(k): v for k, v in outputs.items()},
        init_fns=dict(init or {}),
        covariate_names=tuple(str(c) for c in covariates),
        is_linear=bool(linear),
    )
    label = name or getattr(rhs, "__name__", None) or "ode"
    fields: dict[str, Any] = dict(
        function=_needs_events(label),
        parameters=parameters,
        init=start,
        name=label if name else None,
        x_names=X_NAMES,
        time=0,
        dynamics=system,
    )
    fields.update(options)
    return Model(**fields)


def with_solver(model: Model, rtol: float, atol: float, method: str = "dopri5") -> Model:
    """The model with its ODE solver settings (Control's ode_rtol / ode_atol); others unchanged."""
    system = model.dynamics
    if not isinstance(system, ODESystem):
        return model
    function = model.function
    system = replace(system, rtol=float(rtol), atol=float(atol), method=method, stats=SolverStats())
    if isinstance(function, EventFunction):
        function = EventFunction(system, function.events, function.name, function.max_overlap)
    return model.replace(dynamics=system, function=function)


def solver_counts(model: Model) -> dict[str, int]:
    """An ODE model's solver counts since it was bound (empty for other models)."""
    system = getattr(model, "dynamics", None)
    stats = getattr(system, "stats", None)
    return stats.as_dict() if stats is not None else {}


def bind_events(model: Model, events: EventTable | None) -> Model:
    """The model evaluated on ``events``: its function an :class:`EventFunction`; a compartment
    model's self-start reads the doses. Errors naming row and value for what the model cannot
    take (unknown CMT, RATE -1/-2 without the parameter, an endpoint without an output)."""
    label = model.name or getattr(model.function, "__name__", "dynamic")
    if events is None:
        raise InputError(
            f"model {label!r} needs dosing records: build the data with pymixnn.Data.from_nonmem(...)"
        )
    system: System = model.dynamics
    function = EventFunction(system, events, label)
    self_start = model.self_start
    if model.name in COMPARTMENT_MODELS and self_start is None:

        def self_start(x, y, _system=system, _events=events):
            return start_compartmental(_system, _events, x[:, 0], y, x[:, 2].astype(int))

    return model.replace(function=function, self_start=self_start)


def bind_data(model: Model, data: Any) -> Model:
    """A compartment or ODE model bound to the event records of ``data`` (a Data); a closed-form
    model on event data with doses (which it would ignore) is an error; others unchanged."""
    events = getattr(data, "events", None)
    if is_dynamic(model):
        return bind_events(model, events)
    if events is not None and events.has_doses:
        raise InputError(
            f"the data hold {events.counts()['doses']} dose records, which the closed-form model "
            f"{model.name or 'custom'!r} would ignore; use a compartment model (e.g. 'pk1cpt_oral') "
            "or a pymixnn.ODEModel"
        )
    return model
