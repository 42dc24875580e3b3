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

import numpy as np
import torch

from pymixnn.data.events import EventTable
from pymixnn.model.dynamics.bound import EventFunction
from pymixnn.model.dynamics.compartments import COMPARTMENT_MODELS, compartment_system, start_compartmental
from pymixnn.model.dynamics.ode import ODESolveFailure, ODESystem, SolverStats
from pymixnn.model.dynamics.system import Dosing, System
from pymixnn.model.neural import NeuralRHS, NeuralState, UserColumns, check_neural, neural_parameter_names
from pymixnn.model.spec import Model
from pymixnn.validation import InputError
from pymixnn.validation.errors import show_value

__all__ = [
    "ODEModel",
    "pk_model",
    "bind_events",
    "check_solvable",
    "is_dynamic",
    "solver_counts",
    "with_solver",
    "model_covariates",
    "stepwise",
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
    max_steps: int = 2000,
    neural: Mapping[str, Any] | None = None,
    **options: Any,
) -> Model:
    """An ODE structural model, solved on dosing records (:meth:`pymixnn.Data.from_nonmem`).

    Parameters
    ----------
    rhs : callable
        ``rhs(t, state, psi, covariates)`` returns d(state)/dt (..., S) in torch for ``state``
        (..., S) in the order of ``states`` and ``psi`` (..., P) on the natural scale in the order
        of ``parameters``; ``covariates`` is a dict of the time-varying covariates named in
        ``covariates`` (values carried forward from the records).
    states : sequence of str
        Names of the states (compartments), in order.
    parameters : sequence of str
        Names of the individual parameters, in the order ``rhs`` reads them.
    outputs : dict of str to callable
        Each endpoint (DVID value) to ``fn(state, psi)``, its prediction.
    dose_to : dict of int to str, optional
        NONMEM compartment numbers to states (default: CMT k is the k-th state).
    init : dict of str to callable, optional
        States to ``fn(psi)``, their value at time 0 (zero otherwise).
    tlag, F, rate, duration : dict of int to str, optional
        A compartment number to the parameter acting on its doses: lag time, bioavailability,
        infusion rate (RATE = -1) or duration (RATE = -2).
    covariates : sequence of str, default ()
        Time-varying covariate columns handed to ``rhs`` by name.
    linear : bool, default False
        True declares dx/dt = A(psi) x + b(psi), solved exactly by matrix exponentials.
    start : dict of str to float, optional
        Initial fixed effects (natural scale).
    name : str, optional
        A label for summaries.
    max_steps : int, default 2000
        The solver's step budget between two read times (a solve that needs more fails: an error
        naming the individual at the initial values, a non-finite evaluation counted in
        ``ode_failures`` during a fit).
    neural : dict of str to NeuralTerm, optional
        Neural terms (:class:`pymixnn.NeuralTerm`) by name: ``rhs`` is then
        ``rhs(t, state, psi, covariates, neural)`` and ``neural[name](z)`` evaluates a term for
        each individual; outputs and initial states still read the model's own parameters.
    **options
        Other :class:`pymixnn.Model` fields (``transforms``, ``random``, ``error``, ...).

    Returns
    -------
    Model
        A :class:`pymixnn.Model` whose structural function solves the system by dopri5
        (torchdiffeq) between the events that change the state.

    Examples
    --------
    >>> import torch, pymixnn
    >>> def rhs(t, x, psi, cov):
    ...     return -psi[..., 0:1] / psi[..., 1:2] * x
    >>> iv = pymixnn.ODEModel(rhs, states=["central"], parameters=["CL", "V"],
    ...                       outputs={"cp": lambda x, psi: x[..., 0] / psi[..., 1]}, transforms="log")
    >>> iv.parameters
    ('CL', 'V')
    """
    states = tuple(str(s) for s in states)
    parameters = tuple(str(p) for p in parameters)
    if not callable(rhs):
        raise InputError("ODEModel: rhs must be a callable rhs(t, state, psi, covariates)")
    if not outputs:
        raise InputError("ODEModel: give outputs={endpoint: fn(state, psi)}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 10:
        raise InputError(f"ODEModel: max_steps must be an integer >= 10, got {max_steps!r}")
    dose_to = {int(k): str(v) for k, v in (dose_to or {k + 1: s for k, s in enumerate(states)}).items()}
    unknown = sorted({s for s in dose_to.values()} - set(states)) + sorted(set(init or {}) - set(states))
    if unknown:
        raise InputError(f"ODEModel: unknown states {unknown}; states are {list(states)}")
    terms = check_neural(neural)
    extra = tuple(neural_parameter_names(terms))
    if terms:  # the network's random columns follow the model's parameters in psi
        state = NeuralState.initial(terms)
        n_user = len(parameters)
        rhs = NeuralRHS(rhs, n_user, state)
        outputs = {k: UserColumns(v, n_user) for k, v in outputs.items()}
        init = {k: UserColumns(v, n_user, initial=True) for k, v in (init or {}).items()}
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
        parameters=parameters + extra,
        dose_to=dose_to,
        dosing=dosing,
        endpoints=tuple(str(e) for e in outputs),
        rhs=rhs,
        output_fns={str(k): v for k, v in outputs.items()},
        init_fns=dict(init or {}),
        covariate_names=tuple(str(c) for c in covariates),
        is_linear=bool(linear),
        stepwise=bool(linear),
        max_steps=int(max_steps),
    )
    label = name or getattr(rhs, "__name__", None) or "ode"
    fields: dict[str, Any] = dict(
        function=_needs_events(label),
        parameters=parameters + extra,
        neural=terms or None,
        init=start,
        name=label if name else None,
        x_names=X_NAMES,
        time=0,
        dynamics=system,
    )
    fields.update(options)
    return Model(**fields)


def stepwise(model: Model) -> Model:
    """The dynamic model marked as evaluated event by event (:attr:`System.stepwise`): its
    parameters change with time-varying covariates of the covariate model."""
    return model.replace(dynamics=replace(model.dynamics, stepwise=True))


def model_covariates(model: Model) -> list[str]:
    """The time-varying covariates a dynamic model reads (an ODE's ``covariates``)."""
    return list(getattr(getattr(model, "dynamics", None), "covariate_names", ()))


def with_solver(
    model: Model, rtol: float, atol: float, method: str = "dopri5", tolerate_failures: bool = False
) -> Model:
    """The model with its ODE solver settings (Control's ode_rtol / ode_atol); others unchanged.
    ``tolerate_failures``: a failed solve evaluates to NaN (counted in ``ode_failures``) instead
    of raising, for a fit whose line searches and samples may try parameters the solver cannot
    take; the fit's start is checked strictly before (:func:`check_solvable`)."""
    system = model.dynamics
    if not isinstance(system, ODESystem):
        return model
    function = model.function
    system = replace(system, rtol=float(rtol), atol=float(atol), method=method, stats=SolverStats())
    if isinstance(function, EventFunction):
        function = EventFunction(
            system, function.events, function.name, function.max_overlap, tolerate_failures=tolerate_failures
        )
    return model.replace(dynamics=system, function=function)


def check_solvable(model: Model, values: Mapping[str, float], data: Any) -> None:
    """An ODE model solved for every individual at the start ``values`` (natural scale, random
    effects zero): a failed solve or a non-finite prediction is an error naming the individual."""
    function = model.function
    if not isinstance(model.dynamics, ODESystem) or not isinstance(function, EventFunction):
        return
    x_pad, _, mask = data.padded()
    x = torch.as_tensor(x_pad, dtype=torch.float64)
    row = torch.tensor([float(values[p]) for p in model.parameters], dtype=torch.float64)
    psi = row.expand(x.shape[0], 1, row.shape[0])
    label = function.name

    def failing(rows: np.ndarray) -> tuple[int, str] | None:
        """The first individual among ``rows`` whose solve fails (bisection), with the reason."""
        try:
            with torch.no_grad():
                function(psi[rows], x[rows])
            return None
        except ODESolveFailure as err:
            if rows.size == 1:
                return int(rows[0]), str(err)
            half = rows.size // 2
            return failing(rows[:half]) or failing(rows[half:]) or (int(rows[0]), str(err))

    start = {p: float(values[p]) for p in model.parameters}
    found = failing(np.arange(x.shape[0]))
    if found is not None:
        raise InputError(
            f"the ODE of model {label!r} cannot be solved at the initial values {start} for individual "
            f"{show_value(data.ids[found[0]])} ({found[1]}); change init, or loosen ode_rtol / raise "
            "max_steps"
        )
    with torch.no_grad():
        out = function(psi, x)
    bad = ~torch.isfinite(out) & torch.as_tensor(mask)
    if bool(bad.any()):
        b = int(torch.nonzero(bad)[0, 0])
        raise InputError(
            f"the ODE model {label!r} gives non-finite predictions at the initial values {start} for "
            f"individual {show_value(data.ids[b])}; change init"
        )


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
