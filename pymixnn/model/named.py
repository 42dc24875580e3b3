"""Structural models: the `Model` spec and the named models usable as strings in `fit`.

>>> from pymixnn.model.named import named, NAMED_MODELS
>>> named("logistic").parameters
('A', 'B', 'C')
"""
from __future__ import annotations

from pymixnn.model import growth, pd, pk
from pymixnn.model.spec import ERROR_MODELS, Model

__all__ = ["Model", "ERROR_MODELS", "NAMED_MODELS", "named", "resolve"]

# name -> (function, parameters, default transforms, self-start, meaning of x columns); each
# function's docstring and the README's table of named models state the same transforms
# (tests/test_heldout_findings.py checks both against this registry)
NAMED_MODELS = {
    "onecpt_oral": (pk.onecpt_oral, ("ka", "V", "CL"), "log", pk.start_onecpt_oral, ("dose", "time")),
    "logistic": (growth.logistic, ("A", "B", "C"), "log", growth.start_sigmoid, ("time",)),
    "gompertz": (growth.gompertz, ("A", "B", "C"), "log", growth.start_sigmoid, ("time",)),
    "asymptotic": (growth.asymptotic, ("Asym", "R0", "lrc"), "identity", growth.start_asymptotic,
                   ("time",)),
    "exp_growth": (growth.exp_growth, ("A", "B", "k"), {"A": "log", "B": "identity", "k": "log"},
                   growth.start_exp_growth, ("time",)),
    "emax": (pd.emax, ("E0", "Emax", "ED50"), {"E0": "identity", "Emax": "log", "ED50": "log"},
             pd.start_emax, ("dose",)),
    "sigmoid_emax": (pd.sigmoid_emax, ("E0", "Emax", "ED50", "gamma"),
                     {"E0": "identity", "Emax": "log", "ED50": "log", "gamma": "log"},
                     pd.start_sigmoid_emax, ("dose",)),
    "linear": (growth.linear, ("intercept", "slope"), "identity", growth.start_linear, ("time",)),
}


def named(name: str, **options) -> Model:
    """A named model with its default transforms and self-start; ``options`` override Model fields.

    >>> named("onecpt_oral", init={"ka": 1, "V": 20, "CL": 0.5}).transforms["V"]
    'log'
    """
    if name not in NAMED_MODELS:
        raise ValueError(f"unknown model {name!r}; named models are {sorted(NAMED_MODELS)}, "
                         "or pass a pymixnn.Model")
    function, params, transforms, start, x_names = NAMED_MODELS[name]
    fields = dict(function=function, parameters=params, transforms=transforms, name=name,
                  self_start=start, x_names=x_names,
                  time=x_names.index("time") if "time" in x_names else None)
    fields.update(options)
    return Model(**fields)


def resolve(model: "Model | str") -> Model:
    """Accept a Model or the name of a named model."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        return named(model)
    raise TypeError(f"model must be a pymixnn.Model or one of {sorted(NAMED_MODELS)}, "
                    f"got {type(model).__name__}")
