"""`Model`: the structural model of an NLME fit, as a plain Python object (no Pyro).

It mirrors saemix's ``saemixModel``: a structural function ``f(psi, x)``, parameter names, initial
values (``psi0``), per-parameter transforms (``transform.par``), which parameters carry a random effect
(``covariance.model`` diagonal), the random-effect covariance structure (``omega``: "diagonal" or
"full") and the residual error model (``error.model``).

The structural function is vectorized in torch: ``psi`` has shape ``(..., P)`` with the parameters in
the order of ``parameters`` (as saemix's ``psi[, 1]``), ``x`` has shape ``(..., Q)`` with the columns
given as ``x=`` to :func:`pymixnn.fit` (as saemix's ``xidep``); leading dimensions broadcast, and the
result has the broadcast shape without the last axis.

>>> import torch
>>> from pymixnn import Model
>>> def exp_decay(psi, x):
...     return psi[..., 0] * torch.exp(-psi[..., 1] * x[..., 0])
>>> m = Model(exp_decay, ["C0", "k"], init={"C0": 10.0, "k": 0.2}, transforms="log")
>>> m.transforms
{'C0': 'log', 'k': 'log'}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pymixnn.model import transforms as tr

__all__ = ["Model", "ERROR_MODELS"]

ERROR_MODELS = ("constant", "proportional", "combined", "exponential")

StructuralFunction = Callable[..., "object"]
SelfStart = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]


@dataclass(frozen=True)
class Model:
    """Structural model, parameter transforms, random-effect structure and residual error model.

    Parameters
    ----------
    function : callable
        The structural function ``f(psi, x) -> prediction``, vectorized in torch (see the module
        docstring): ``psi`` (..., P) in the order of ``parameters``, ``x`` (..., Q).
    parameters : sequence of str
        Names of the individual parameters, in the order ``f`` reads them.
    init : dict of str to float, optional
        Initial values of the fixed effects on the natural scale (saemix ``psi0``). Named models
        compute them from the data when omitted (a self-start, as nlme's ``SSlogis``).
    transforms : str or dict of str to str, optional
        One name for all parameters, or a mapping name -> "identity" | "log" | "logit" | "probit"
        (or saemix codes 0-3). Default "identity".
    random : sequence of str, optional
        Parameters that carry a random effect (default: all).
    omega : {"diagonal", "full"}, default "diagonal"
        Covariance structure of the random effects.
    error : {"constant", "proportional", "combined", "exponential"}, default "constant"
        Residual error model: y = f + a e, y = f + b f e, y = f + sqrt(a^2 + b^2 f^2) e (saemix's
        combined model) or log y = log f + a e.
    error_init : dict of str to float, optional
        Initial values of the error parameters, ``{"a": ..., "b": ...}``.
    name : str, optional
        A label (the registry name for named models).
    x_names : sequence of str, optional
        What each x column means, for messages and documentation (e.g. ``("dose", "time")``).
    self_start : callable, optional
        ``(x, y) -> {name: value}``: data-based initial values.
    time : int or str, optional
        Which x column is time, used by :meth:`Results.vpc` and :meth:`Results.plot_individuals`
        when x has several columns: its position in x (named models whose x is (dose, time) set 1)
        or its column name in the data. None: not declared (a model with one x column needs none).
    dynamics : object, optional
        The dynamic system of a compartment or ODE model (:mod:`pymixnn.model.dynamics`; set by
        :func:`pymixnn.ODEModel` and the named ``pk*`` models), None for a closed-form curve.
    neural : dict of str to NeuralTerm, optional
        Neural terms by name (:class:`pymixnn.NeuralTerm`); the function is then
        ``f(psi, x, neural)`` and ``neural[name](z)`` evaluates a term for each individual. Their
        random inputs and weights are appended to ``parameters`` (``<name>.u1``, ...; identity
        transform, random effects, start 0).

    Returns
    -------
    Model
        A frozen, checked spec (no torch or Pyro state); :meth:`replace` makes a changed copy and
        :meth:`named` builds a named model.
    """

    function: StructuralFunction
    parameters: Sequence[str]
    init: Mapping[str, float] | None = None
    transforms: Mapping[str, str] | str | None = None
    random: Sequence[str] | None = None
    omega: str = "diagonal"
    error: str = "constant"
    error_init: Mapping[str, float] | None = None
    name: str | None = None
    x_names: Sequence[str] | None = None
    self_start: SelfStart | None = field(default=None, compare=False)
    time: int | str | None = None
    dynamics: Any = field(default=None, compare=False)
    neural: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise TypeError("Model.function must be a callable f(psi, x)")
        params = tuple(str(p) for p in self.parameters)
        if not params:
            raise ValueError("Model needs at least one parameter name")
        if len(set(params)) != len(params):
            raise ValueError(f"parameter names must be unique, got {list(params)}")
        params = self._neural_columns(params)
        object.__setattr__(self, "parameters", params)

        if self.transforms is None or isinstance(self.transforms, (str, int)):
            one = tr.check(self.transforms if self.transforms is not None else "identity")
            trans = {p: one for p in params}
        else:
            unknown = set(self.transforms) - set(params)
            if unknown:
                raise ValueError(
                    f"transforms given for unknown parameters {sorted(unknown)}; "
                    f"parameters are {list(params)}"
                )
            trans = {p: tr.check(self.transforms.get(p, "identity")) for p in params}
        for p in self.neural_parameters:  # a network's random input or weight: on its own scale
            trans[p] = "identity"
        object.__setattr__(self, "transforms", trans)

        random = params if self.random is None else tuple(self.random) + tuple(self.neural_parameters)
        unknown = set(random) - set(params)
        if unknown:
            raise ValueError(
                f"random effects on unknown parameters {sorted(unknown)}; parameters are {list(params)}"
            )
        object.__setattr__(self, "random", tuple(p for p in params if p in random))

        if self.time is not None:
            if isinstance(self.time, bool) or not isinstance(self.time, (int, np.integer, str)):
                raise TypeError(f"Model.time must be an x column's position or name, got {self.time!r}")
            if not isinstance(self.time, str):
                position = int(self.time)
                if position < 0 or (self.x_names is not None and position >= len(self.x_names)):
                    raise ValueError(
                        f"Model.time={self.time!r} is not the position of an x column"
                        + (f" of {list(self.x_names)}" if self.x_names else "")
                    )
                object.__setattr__(self, "time", position)

        if self.omega not in ("diagonal", "full"):
            raise ValueError(f"omega must be 'diagonal' or 'full', got {self.omega!r}")
        if self.error not in ERROR_MODELS:
            raise ValueError(f"error must be one of {list(ERROR_MODELS)}, got {self.error!r}")

        if self.init is not None:
            init = {str(k): float(v) for k, v in self.init.items()}
            unknown = set(init) - set(params)
            if unknown:
                raise ValueError(
                    f"init given for unknown parameters {sorted(unknown)}; parameters are {list(params)}"
                )
            for p, v in init.items():
                if not tr.valid_natural(trans[p], v):
                    raise ValueError(
                        f"init for {p!r} is {v!r}, outside the support of its {trans[p]!r} transform"
                    )
            init.update({p: init.get(p, 0.0) for p in self.neural_parameters})
            object.__setattr__(self, "init", init)
        if self.error_init is not None:
            ei = {str(k): float(v) for k, v in self.error_init.items()}
            bad = [k for k, v in ei.items() if k not in self.error_parameters or not v > 0]
            if bad:
                raise ValueError(
                    f"error_init keys must be {list(self.error_parameters)} with "
                    f"positive values, got {dict(ei)}"
                )
            object.__setattr__(self, "error_init", ei)

    def _neural_columns(self, params: tuple[str, ...]) -> tuple[str, ...]:
        """The neural terms checked, their random columns appended to the parameters (once: a
        replaced copy already has them), and a closed-form function wrapped to take them."""
        from pymixnn.model.neural import NeuralFunction, NeuralState, check_neural, neural_parameter_names

        neural = check_neural(self.neural)
        object.__setattr__(self, "neural", neural or None)
        if not neural:
            return params
        extra = tuple(neural_parameter_names(neural))
        user = tuple(p for p in params if p not in extra)
        if self.dynamics is None and not isinstance(self.function, NeuralFunction):
            object.__setattr__(
                self, "function", NeuralFunction(self.function, len(user), NeuralState.initial(neural))
            )
        return user + extra

    @property
    def neural_parameters(self) -> tuple[str, ...]:
        """The individual parameters of the neural terms (random inputs and weights)."""
        from pymixnn.model.neural import neural_parameter_names

        return tuple(neural_parameter_names(self.neural)) if self.neural else ()

    @property
    def n_network_weights(self) -> int:
        """The neural terms' population weights (0 without neural terms)."""
        return sum(t.n_weights for t in (self.neural or {}).values())

    @property
    def error_parameters(self) -> tuple[str, ...]:
        """Names of the residual error parameters (saemix: a, b)."""
        return {"constant": ("a",), "proportional": ("b",), "combined": ("a", "b"), "exponential": ("a",)}[
            self.error
        ]

    @staticmethod
    def named(name: str, **options) -> Model:
        """A named model ("logistic", "onecpt_oral", ...); ``options`` override its fields."""
        from pymixnn.model.named import named

        return named(name, **options)

    def replace(self, **changes) -> Model:
        """A copy with some fields changed, e.g. ``model.replace(error="combined")``."""
        return replace(self, **changes)

    def describe(self) -> str:
        """One line per setting, for summaries."""
        trans = ", ".join(f"{p}: {t}" for p, t in self.transforms.items())
        return (
            f"model {self.name or getattr(self.function, '__name__', 'custom')}; "
            f"parameters {list(self.parameters)} ({trans}); "
            + (
                f"random effects on {list(self.random)} ({self.omega} omega)"
                if self.random
                else "no individual random effects"
            )
            + f"; {self.error} error model"
        )
