"""Neural terms: small networks inside a structural model (hybrid mechanistic-neural models).

A :class:`NeuralTerm` is declared by name in a model, ``Model(f, ..., neural={"effect":
NeuralTerm(1)})`` or ``ODEModel(rhs, ..., neural={...})``; the structural function then receives one
more argument, a dict of callables, ``f(psi, x, neural)`` / ``rhs(t, state, psi, covariates,
neural)``, where ``neural["effect"](z)`` maps (..., n_inputs) to (..., n_outputs) for each
individual. The network is a multilayer perceptron whose last layer starts at zero, so the
untrained model is the mechanistic one. Its weights are population parameters (fitted by
:func:`pymixnn.fit`, see :mod:`pymixnn.inference.hybrid`); ``random_inputs=k`` adds k random
effects fed to the network (parameters ``<name>.u1``, ...), ``random_weights=True`` one random
effect per weight of the last layer (``<name>.w1``, ...): individual-specific shapes.

The inputs are standardized inside the network by a centre and a scale fixed before training
(their mean and sd along the trajectories at the start values; an input that hardly moves there,
its root mean square around 0), so that a concentration in mg/L and a time in days both reach the
first layer on the scale of 1.

>>> import torch
>>> term = NeuralTerm(1, hidden=(8,))
>>> term.n_weights, term.layer_sizes
(25, (1, 8, 1))
>>> state = NeuralState.initial({"effect": term}, seed=0)
>>> float(state.view("effect", None)(torch.ones(3, 1)).abs().sum())  # last layer at zero
0.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pymixnn.validation import InputError

__all__ = [
    "NeuralTerm",
    "NeuralState",
    "NeuralRecorder",
    "NeuralFunction",
    "ACTIVATIONS",
    "PENALTIES",
    "check_neural",
    "neural_parameter_names",
    "with_state",
]

ACTIVATIONS = ("tanh", "softplus")
PENALTIES = ("minimal", "l2", None)


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise InputError(f"NeuralTerm: {what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class NeuralTerm:
    """A small neural network usable inside a structural function or an ODE right-hand side.

    Parameters
    ----------
    n_inputs : int
        Number of inputs z the model passes (the last axis of ``neural[name](z)``).
    n_outputs : int, default 1
        Number of outputs.
    hidden : tuple of int, default (16,)
        Widths of the hidden layers.
    activation : {"tanh", "softplus"}, default "tanh"
        The hidden layers' activation.
    random_inputs : int, default 0
        Random effects fed to the network next to z (individual-specific shapes), N(0, 1) while
        the network trains (their scale is the first layer's), their variance estimated given the
        trained network in the final fit.
    random_weights : bool, default False
        A random effect on each weight of the last layer.
    penalty : {"minimal", "l2", None}, default "minimal"
        "minimal": the term's squared norm along the fitted trajectories is penalized with a
        weight lowered while the held-out individuals' fit improves (APHYNITY's constrained
        formulation: the mechanism explains all it can); "l2": a standard normal prior on every
        weight; None: neither (weight decay and early stopping only).

    Returns
    -------
    NeuralTerm
        A frozen spec (no torch state): a model declares it by name, ``neural={"effect": term}``,
        and :func:`pymixnn.fit` trains its weights (``Results.neural_terms``).

    Examples
    --------
    >>> import pymixnn
    >>> pymixnn.NeuralTerm(1, hidden=(16,)).n_weights
    49
    """

    n_inputs: int
    n_outputs: int = 1
    hidden: tuple[int, ...] = (16,)
    activation: str = "tanh"
    random_inputs: int = 0
    random_weights: bool = False
    penalty: str | None = "minimal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_inputs", _positive_int(self.n_inputs, "n_inputs"))
        object.__setattr__(self, "n_outputs", _positive_int(self.n_outputs, "n_outputs"))
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else tuple(self.hidden)
        if not hidden:
            raise InputError("NeuralTerm: hidden needs at least one layer width, e.g. hidden=(16,)")
        object.__setattr__(self, "hidden", tuple(_positive_int(h, "each hidden width") for h in hidden))
        if self.activation not in ACTIVATIONS:
            raise InputError(
                f"NeuralTerm: activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        object.__setattr__(self, "random_inputs", _positive_int(self.random_inputs, "random_inputs", 0))
        if not isinstance(self.random_weights, (bool, np.bool_)):
            raise InputError(f"NeuralTerm: random_weights must be True or False, got {self.random_weights!r}")
        if self.penalty not in PENALTIES:
            raise InputError(f"NeuralTerm: penalty must be one of {list(PENALTIES)}, got {self.penalty!r}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_inputs + self.random_inputs, *self.hidden, self.n_outputs)

    @property
    def n_weights(self) -> int:
        """Population (shared) weights and biases."""
        s = self.layer_sizes
        return int(sum(a * b + b for a, b in zip(s[:-1], s[1:])))

    @property
    def n_random(self) -> int:
        return self.random_inputs + (self.hidden[-1] * self.n_outputs if self.random_weights else 0)

    def random_names(self, name: str) -> list[str]:
        """The individual parameters the term adds (random effects), in psi's order."""
        n_w = self.n_random - self.random_inputs
        return [f"{name}.u{j + 1}" for j in range(self.random_inputs)] + [
            f"{name}.w{j + 1}" for j in range(n_w)
        ]

    def initial_weights(self, rng: np.random.Generator) -> np.ndarray:
        """Glorot-uniform hidden layers, zero biases, and a last layer at zero; the first layer's
        rows of the random inputs at a tenth of that scale (the network trains at zero random
        inputs first, then learns to read them without its output jumping)."""
        s, out = self.layer_sizes, []
        for k, (a, b) in enumerate(zip(s[:-1], s[1:])):
            last = k == len(s) - 2
            bound = 0.0 if last else float(np.sqrt(6.0 / (a + b)))
            w = rng.uniform(-bound, bound, size=(a, b))
            if k == 0 and self.random_inputs:
                w[self.n_inputs :] *= 0.1
            out += [w.ravel(), np.zeros(b)]
        return np.concatenate(out)

    def describe(self, name: str) -> str:
        arch = " -> ".join(str(v) for v in self.layer_sizes)
        extra = (f", {self.random_inputs} random input(s)" if self.random_inputs else "") + (
            ", random last-layer weights" if self.random_weights else ""
        )
        return f"{name}: {arch} ({self.activation}), {self.n_weights} weights{extra}, penalty {self.penalty}"

    def to_dict(self) -> dict:
        return dict(
            n_inputs=self.n_inputs,
            n_outputs=self.n_outputs,
            hidden=list(self.hidden),
            activation=self.activation,
            random_inputs=self.random_inputs,
            random_weights=bool(self.random_weights),
            penalty=self.penalty,
        )


def check_neural(neural: Any) -> dict[str, NeuralTerm]:
    if neural is None:
        return {}
    if not isinstance(neural, Mapping) or not neural:
        raise InputError(
            "neural= must be a dict {name: pymixnn.NeuralTerm(...)}, e.g. {'effect': NeuralTerm(1)}"
        )
    out = {}
    for name, term in neural.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise InputError(f"neural term names must be identifiers, got {name!r}")
        if not isinstance(term, NeuralTerm):
            raise InputError(f"neural[{name!r}] must be a pymixnn.NeuralTerm, got {type(term).__name__}")
        out[name] = term
    return out


def neural_parameter_names(neural: Mapping[str, NeuralTerm]) -> list[str]:
    return [p for name, term in neural.items() for p in term.random_names(name)]


class NeuralRecorder:
    """What the network calls of one evaluation leave behind: the sum of squared outputs (for the
    "minimal" penalty, differentiable), the inputs' range (for the standardization and the grid
    of ``Results.neural_terms``) and, when ``share`` is on, the norms of the dynamics with and
    without the terms (the share they carry)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.squares = False  # sum the squared outputs (the "minimal" penalty)
        self.inputs = False  # the inputs' range and moments (one pass, set by the fit)
        self.square: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.low: dict[str, np.ndarray] = {}
        self.high: dict[str, np.ndarray] = {}
        self.moments: dict[str, list] = {}
        self.share = False
        self.total = 0.0
        self.neural_part = 0.0

    def add(self, name: str, z: torch.Tensor, out: torch.Tensor) -> None:
        if self.squares:
            sq = (out * out).sum()
            self.square[name] = self.square[name] + sq if name in self.square else sq
            self.count[name] = self.count.get(name, 0) + out.numel()
        if not self.inputs:
            return
        zz = z.detach().reshape(-1, z.shape[-1])
        zz = zz[torch.isfinite(zz).all(-1)]
        if zz.shape[0]:
            lo, hi = zz.min(0).values.cpu().numpy(), zz.max(0).values.cpu().numpy()
            self.low[name] = lo if name not in self.low else np.minimum(self.low[name], lo)
            self.high[name] = hi if name not in self.high else np.maximum(self.high[name], hi)
            m = self.moments.setdefault(name, [0, 0.0, 0.0])
            m[0] += zz.shape[0]
            m[1] = m[1] + zz.sum(0).cpu().numpy()
            m[2] = m[2] + (zz * zz).sum(0).cpu().numpy()

    def penalty(self) -> torch.Tensor | float:
        """Mean squared output, summed over the terms (0 before any call)."""
        return sum((self.square[k] / max(self.count[k], 1) for k in self.square), 0.0)


_ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "softplus": torch.nn.functional.softplus,
}


@dataclass
class NeuralState:
    """The terms' current weights (flat, one tensor each), the inputs' centre and scale, and a
    recorder. A fit owns its own state: a user's model is never changed by a fit."""

    terms: dict[str, NeuralTerm]
    weights: dict[str, torch.Tensor]
    center: dict[str, torch.Tensor]
    scale: dict[str, torch.Tensor]
    recorder: NeuralRecorder = field(default_factory=NeuralRecorder)
    random_off: bool = False  # the random inputs and weights held at zero (a training stage)
    zero: bool = False  # every term's output zero (the share's mechanistic-only evaluation)

    @classmethod
    def initial(cls, terms: Mapping[str, NeuralTerm], seed: int = 0) -> NeuralState:
        rng = np.random.default_rng(seed)
        f64 = dict(dtype=torch.float64)
        return cls(
            dict(terms),
            {k: torch.as_tensor(t.initial_weights(rng), **f64) for k, t in terms.items()},
            {k: torch.zeros(t.n_inputs, **f64) for k, t in terms.items()},
            {k: torch.ones(t.n_inputs, **f64) for k, t in terms.items()},
        )

    def copy(self) -> NeuralState:
        """A detached copy of the weights, centres and scales (a fresh recorder)."""
        return NeuralState(
            dict(self.terms),
            {k: v.detach().clone() for k, v in self.weights.items()},
            {k: v.clone() for k, v in self.center.items()},
            {k: v.clone() for k, v in self.scale.items()},
        )

    def view(self, name: str, random: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        term = self.terms[name]

        def call(z: torch.Tensor) -> torch.Tensor:
            if not isinstance(z, torch.Tensor) or z.shape[-1:] != (term.n_inputs,):
                shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise ValueError(
                    f"neural[{name!r}] takes inputs of shape (..., {term.n_inputs}); got {shape}"
                )
            out = self.evaluate(name, z, None if self.random_off else random)
            self.recorder.add(name, z, out)
            return torch.zeros_like(out) if self.zero else out

        return call

    def evaluate(self, name: str, z: torch.Tensor, random: torch.Tensor | None) -> torch.Tensor:
        """The network of term ``name`` at inputs z (..., n_inputs) with the individual random
        columns ``random`` (..., n_random) broadcast against z (None: at zero)."""
        term, w = self.terms[name], self.weights[name].to(dtype=z.dtype, device=z.device)
        h = (z - self.center[name].to(z)) / self.scale[name].to(z)
        k = term.random_inputs
        lead = h.shape[:-1]
        if k:
            u = h.new_zeros(*lead, k) if random is None else random[..., :k]
            lead = torch.broadcast_shapes(lead, u.shape[:-1])
            h = torch.cat([h.expand(*lead, h.shape[-1]), u.expand(*lead, k)], -1)
        sizes, at, act = term.layer_sizes, 0, _ACT[term.activation]
        for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            W = w[at : at + a * b].reshape(a, b)
            bias = w[at + a * b : at + a * b + b]
            at += a * b + b
            if j < len(sizes) - 2:
                h = act(h @ W + bias)
            elif term.random_weights and random is not None:
                dW = random[..., k:].reshape(*random.shape[:-1], a, b)
                h = (h.unsqueeze(-2) @ (W + dW)).squeeze(-2) + bias
            else:
                h = h @ W + bias
        return h


def _split(psi: torch.Tensor, n_user: int, state: NeuralState) -> tuple[torch.Tensor, dict]:
    views, at = {}, n_user
    for name, term in state.terms.items():
        n = term.n_random
        views[name] = state.view(name, psi[..., at : at + n] if n else None)
        at += n
    return psi[..., :n_user], views


class NeuralFunction:
    """``f(psi, x)`` of a closed-form model with neural terms: the user's ``f(psi, x, neural)``
    on psi's first ``n_user`` columns; the others are the terms' random columns."""

    def __init__(self, user: Callable, n_user: int, state: NeuralState):
        self.user, self.n_user, self.state = user, n_user, state
        self.__name__ = getattr(user, "__name__", "neural_model")

    def __call__(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mech, views = _split(psi, self.n_user, self.state)
        out = self.user(mech, x, views)
        if self.state.recorder.share:
            with torch.no_grad():
                self.state.zero = True
                try:
                    base = self.user(mech, x, _split(psi, self.n_user, self.state)[1])
                finally:
                    self.state.zero = False
            _share(self.state.recorder, out.detach(), base)
        return out


def _share(recorder: NeuralRecorder, full: torch.Tensor, base: torch.Tensor) -> None:
    ok = torch.isfinite(full) & torch.isfinite(base)
    recorder.total += float((full[ok] ** 2).sum())
    recorder.neural_part += float(((full - base)[ok] ** 2).sum())


class NeuralRHS:
    """``rhs(t, state, psi, covariates)`` of an ODE model with neural terms (see NeuralFunction);
    with the recorder's ``share`` on, the norms of d(state)/dt with and without the terms."""

    def __init__(self, user: Callable, n_user: int, state: NeuralState):
        self.user, self.n_user, self.state = user, n_user, state
        self.__name__ = getattr(user, "__name__", "neural_rhs")

    def __call__(self, t, x, psi, cov):
        mech, views = _split(psi, self.n_user, self.state)
        out = self.user(t, x, mech, cov, views)
        if self.state.recorder.share:
            with torch.no_grad():
                self.state.zero = True
                try:
                    base = self.user(t, x, mech, cov, _split(psi, self.n_user, self.state)[1])
                finally:
                    self.state.zero = False
            _share(self.state.recorder, out.detach(), base)
        return out


class UserColumns:
    """An output or initial-state function of an ODE model called on the user's psi columns."""

    def __init__(self, user: Callable, n_user: int, initial: bool = False):
        self.user, self.n_user, self.initial = user, n_user, initial

    def __call__(self, *args):
        if self.initial:
            return self.user(args[0][..., : self.n_user])
        return self.user(args[0], args[1][..., : self.n_user])


def with_state(model, state: NeuralState):
    """``model`` (a :class:`pymixnn.Model` with neural terms, bound to event data or not) with its
    terms evaluated from ``state``: a fit's own copy, the user's model unchanged."""
    from dataclasses import replace

    if model.dynamics is None:
        fn = model.function
        return model.replace(function=NeuralFunction(fn.user, fn.n_user, state))
    from pymixnn.model.dynamics.bound import EventFunction
    from pymixnn.model.dynamics.models import bind_events

    system = model.dynamics
    rhs = system.rhs
    new = model.replace(dynamics=replace(system, rhs=NeuralRHS(rhs.user, rhs.n_user, state)))
    if isinstance(model.function, EventFunction):
        new = bind_events(new, model.function.events)
    return new
