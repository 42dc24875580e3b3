"""Structural models: the `Model` spec and the named models usable as strings in `fit`.

>>> from pymixnn.model.named import named, NAMED_MODELS
>>> named("logistic").parameters
('A', 'B', 'C')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from pymixnn.model import growth, pd, pk
from pymixnn.model.dynamics.compartments import COMPARTMENT_MODELS
from pymixnn.model.spec import ERROR_MODELS, Model

__all__ = ["Model", "ERROR_MODELS", "NamedModel", "NAMED_MODELS", "named", "resolve"]


@dataclass(frozen=True)
class NamedModel:
    """A named model's record: the torch structural function ``function(psi, x)``, parameter
    names, default transforms (one name for all, or per parameter), the data-based self-start,
    the meaning of each x column and the R twins of the function for the R bridges
    (``r_function``: ``function(psi, x)`` with psi an individuals x parameters matrix on the
    natural scale and x the matrix of x columns, evaluated by saemix and nlme alike).

    Iterating (or indexing 0-4) gives the former 5-tuple (function, parameters, transforms,
    self_start, x_names)."""

    function: Callable
    parameters: tuple[str, ...]
    transforms: str | Mapping[str, str]
    self_start: Callable | None
    x_names: tuple[str, ...]
    r_function: str | None = None

    def _legacy(self) -> tuple:
        return (self.function, self.parameters, self.transforms, self.self_start, self.x_names)

    def __iter__(self) -> Iterator:
        return iter(self._legacy())

    def __getitem__(self, index):
        return self._legacy()[index]

    def __len__(self) -> int:
        return 5


# each function's docstring and the user guide's table of named models (vignettes/docs/guide/
# models.md) state the same transforms
# (tests/test_heldout_findings.py checks both against this registry); tests/test_compare.py checks
# each R twin against the torch function
NAMED_MODELS: dict[str, NamedModel] = {
    "onecpt_oral": NamedModel(
        pk.onecpt_oral,
        ("ka", "V", "CL"),
        "log",
        pk.start_onecpt_oral,
        ("dose", "time"),
        "function(psi, x) { ka <- psi[, 1]; V <- psi[, 2]; k <- psi[, 3] / V; "
        "x[, 1] * ka / (V * (ka - k)) * (exp(-k * x[, 2]) - exp(-ka * x[, 2])) }",
    ),
    "logistic": NamedModel(
        growth.logistic,
        ("A", "B", "C"),
        "log",
        growth.start_sigmoid,
        ("time",),
        "function(psi, x) psi[, 1] / (1 + exp(-(x[, 1] - psi[, 2]) / psi[, 3]))",
    ),
    "gompertz": NamedModel(
        growth.gompertz,
        ("A", "B", "C"),
        "log",
        growth.start_sigmoid,
        ("time",),
        "function(psi, x) psi[, 1] * exp(-exp(-pmax((x[, 1] - psi[, 2]) / psi[, 3], -50)))",
    ),
    "asymptotic": NamedModel(
        growth.asymptotic,
        ("Asym", "R0", "lrc"),
        "identity",
        growth.start_asymptotic,
        ("time",),
        "function(psi, x) psi[, 1] + (psi[, 2] - psi[, 1]) * exp(-exp(psi[, 3]) * x[, 1])",
    ),
    "exp_growth": NamedModel(
        growth.exp_growth,
        ("A", "B", "k"),
        {"A": "log", "B": "identity", "k": "log"},
        growth.start_exp_growth,
        ("time",),
        "function(psi, x) psi[, 1] * (1 - psi[, 2] * exp(-psi[, 3] * x[, 1]))",
    ),
    "emax": NamedModel(
        pd.emax,
        ("E0", "Emax", "ED50"),
        {"E0": "identity", "Emax": "log", "ED50": "log"},
        pd.start_emax,
        ("dose",),
        "function(psi, x) psi[, 1] + psi[, 2] * x[, 1] / (psi[, 3] + x[, 1])",
    ),
    "sigmoid_emax": NamedModel(
        pd.sigmoid_emax,
        ("E0", "Emax", "ED50", "gamma"),
        {"E0": "identity", "Emax": "log", "ED50": "log", "gamma": "log"},
        pd.start_sigmoid_emax,
        ("dose",),
        "function(psi, x) { d <- x[, 1]^psi[, 4]; psi[, 1] + psi[, 2] * d / (psi[, 3]^psi[, 4] + d) }",
    ),
    "linear": NamedModel(
        growth.linear,
        ("intercept", "slope"),
        "identity",
        growth.start_linear,
        ("time",),
        "function(psi, x) psi[, 1] + psi[, 2] * x[, 1]",
    ),
}


def named(name: str, **options) -> Model:
    """A named model with its default transforms and self-start.

    Parameters
    ----------
    name : str
        A name of :data:`pymixnn.NAMED_MODELS` (``"onecpt_oral"``, ``"logistic"``, ...) or of a
        compartment model (``"pk1cpt_iv"``, ``"pk1cpt_oral"``, ``"pk2cpt_iv"``, ``"pk2cpt_oral"``,
        ``"pk3cpt_iv"``, ``"pk3cpt_oral"``; options ``tlag=True``, ``F=True``, ``rate=True``,
        ``duration=True`` add the dosing parameters of compartment 1).
    **options
        :class:`pymixnn.Model` fields that override the named model's (``init``, ``transforms``,
        ``random``, ``omega``, ``error``, ...).

    Returns
    -------
    Model
        The model, with its default transforms, x columns, time column and self-start.

    Examples
    --------
    >>> from pymixnn import named
    >>> named("onecpt_oral", init={"ka": 1, "V": 20, "CL": 0.5}).transforms["V"]
    'log'
    """
    if name in COMPARTMENT_MODELS:  # dynamic: solved on event data (Data.from_nonmem)
        from pymixnn.model.dynamics.models import pk_model

        return pk_model(name, **options)
    if name not in NAMED_MODELS:
        raise ValueError(
            f"unknown model {name!r}; named models are {sorted(NAMED_MODELS)} and the compartment "
            f"models {sorted(COMPARTMENT_MODELS)}, or pass a pymixnn.Model"
        )
    record = NAMED_MODELS[name]
    fields = dict(
        function=record.function,
        parameters=record.parameters,
        transforms=record.transforms,
        name=name,
        self_start=record.self_start,
        x_names=record.x_names,
        time=record.x_names.index("time") if "time" in record.x_names else None,
    )
    fields.update(options)
    return Model(**fields)


def resolve(model: Model | str) -> Model:
    """Accept a Model or the name of a named model."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        return named(model)
    raise TypeError(
        f"model must be a pymixnn.Model or one of {sorted(NAMED_MODELS)}, got {type(model).__name__}"
    )
