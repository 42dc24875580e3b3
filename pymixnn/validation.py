"""Checks of a fit's settings, and of the model against the data, before any torch work.

Each check raises a one-line :class:`InputError` (a ``ValueError``; :class:`InputTypeError`, also a
``TypeError``, for a wrong kind of object) that names the setting, column, row or value at fault,
and, for a misspelt name, the closest valid one.
:func:`pymixnn.fit` calls them in this order: :func:`check_settings` first (before any data
work), :func:`check_columns_unique` and :func:`check_response_dtype` on the user's DataFrame,
:func:`check_names`, :func:`check_init` and :func:`check_random_effects` on the model,
:func:`check_response_support` once the :class:`pymixnn.Data` is built; :class:`pymixnn.Data`
itself calls :func:`check_columns_unique` and :func:`check_ids`, and ``Results.load`` calls
:func:`check_loaded_model`. This module needs only numpy and pandas.

>>> check_settings(lr=0.02, max_steps=100, batch_size=64, num_particles=4, is_samples=None,
...                threads=None, refine=True, progress=False, seed=0, dtype=None, device="cpu",
...                likelihood="auto", dropna=False)
>>> check_settings(lr=-0.1, max_steps=100, batch_size=64, num_particles=4, is_samples=None,
...                threads=None, refine=True, progress=False, seed=0, dtype=None, device="cpu",
...                likelihood="auto", dropna=False)
Traceback (most recent call last):
...
pymixnn.validation.InputError: lr must be a finite number > 0 (the SVI step size, e.g. lr=0.02), got -0.1
>>> closest("Ka", ["ka", "V", "CL"])
'ka'
"""
from __future__ import annotations

import difflib
import math
import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

if TYPE_CHECKING:  # pragma: no cover
    from pymixnn.data.table import Data
    from pymixnn.model.named import Model

__all__ = ["InputError", "InputTypeError", "closest", "did_you_mean", "check_settings",
           "check_columns_unique", "check_ids", "check_response_dtype",
           "check_names", "check_init", "check_random_effects", "check_response_support",
           "check_loaded_model", "check_design", "check_observation_columns", "check_genomic",
           "check_genotype_role", "X_DOMAINS"]

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda", "auto")
LIKELIHOODS = ("auto", "is", "gq")
# observation families for which a boolean y has a meaning (0/1 successes, two ordered levels, or
# the user's own log-likelihood); Gaussian and count families reject it
_BOOLEAN_Y_FAMILIES = ("bernoulli", "binomial", "ordinal", "loglik")


class InputError(ValueError):
    """An error in what the user gave (data, model, settings), found before any fitting: the
    command line prints it as one line and exits with status 2."""


class InputTypeError(InputError, TypeError):
    """An input of the wrong kind (e.g. ``init`` not a mapping): a TypeError and an InputError."""


def _show(value: Any) -> str:
    """repr of a value, numpy scalars as plain Python numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def closest(name: Any, choices: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The valid name closest to ``name`` (case-insensitive first, then difflib with ``cutoff``),
    or None."""
    text = str(name)
    for choice in choices:
        if choice.lower() == text.lower():
            return choice
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(text.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[match[0]] if match else None


def did_you_mean(name: Any, choices: Sequence[str], cutoff: float = 0.6) -> str:
    """" (did you mean 'x'?)" for the closest valid name, or "" when none is close."""
    match = closest(name, [str(c) for c in choices], cutoff)
    return f" (did you mean {match!r}?)" if match is not None else ""


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


# ---------------------------------------------------------------------------------- settings
def check_settings(*, lr: Any, max_steps: Any, batch_size: Any, num_particles: Any, is_samples: Any,
                   threads: Any, refine: Any, progress: Any, seed: Any, dtype: Any, device: Any,
                   likelihood: Any, dropna: Any) -> None:
    """Every algorithm setting of :func:`pymixnn.fit`: kind, range and known names. A device
    "cuda" (or "cuda:N") is checked against the CUDA devices torch finds."""
    if not (_is_real(lr) and math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a finite number > 0 (the SVI step size, e.g. lr=0.02), got {lr!r}")
    for name, value in dict(batch_size=batch_size, max_steps=max_steps,
                            num_particles=num_particles).items():
        if not (_is_integer(value) and value >= 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if is_samples is not None and not (_is_integer(is_samples) and is_samples >= 1):
        raise InputError(f"is_samples must be a positive integer (importance samples per individual) "
                         f"or None for the default, got {is_samples!r}")
    if threads is not None and not (_is_integer(threads) and threads >= 1):
        raise InputError(f"threads must be a positive integer (torch threads) or None for the "
                         f"default, got {threads!r}")
    if not (_is_integer(seed) and seed >= 0):
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in dict(refine=refine, progress=progress, dropna=dropna).items():
        if not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{name} must be True or False, got {value!r}")
    if dtype is not None and dtype not in DTYPES:
        raise InputError(f"dtype must be one of {list(DTYPES)} or None (float64 on the CPU, float32 "
                         f"on CUDA), got {dtype!r}")
    if likelihood not in LIKELIHOODS:
        raise InputError(f"likelihood must be 'auto', 'is' or 'gq', got {likelihood!r}")
    _check_device(device)


def _check_device(device: Any) -> None:
    cuda = isinstance(device, str) and (device == "cuda" or (device.startswith("cuda:")
                                                              and device[5:].isdigit()))
    if not (cuda or device in DEVICES):
        raise InputError(f"device must be one of {list(DEVICES)} (or 'cuda:N'), got {device!r}")
    if cuda:
        import torch  # only to ask for CUDA devices

        if not torch.cuda.is_available():
            raise InputError(f"device={device!r} but torch finds no CUDA device (torch "
                             f"{torch.__version__}); use device='cpu' or 'auto'")
        index = int(device[5:]) if device.startswith("cuda:") else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device={device!r} but torch finds {torch.cuda.device_count()} CUDA "
                             f"device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})")


# ---------------------------------------------------------------------------------- the frame
def check_columns_unique(df: pd.DataFrame, columns: Sequence[Hashable]) -> None:
    """A column name used by the fit that the DataFrame holds more than once (pandas would then
    return a table where one column is expected). Unused duplicated names are left alone."""
    names = list(df.columns)
    for column in dict.fromkeys(c for c in columns if c is not None):
        positions = [k for k, name in enumerate(names) if name == column]
        if len(positions) > 1:
            raise InputError(f"column {column!r} appears {len(positions)} times in the data (positions "
                             f"{positions}); give the columns unique names, e.g. df.columns = [...]")


def check_ids(ids: pd.Series, column: Hashable) -> None:
    """Ids that print the same but are different values: 1 and "1" (mixed types), or "3" and
    " 3" (surrounding spaces) would become two individuals; an error naming both rows. An id with
    surrounding spaces that collides with no other is kept, with a UserWarning naming its row."""
    if is_numeric_dtype(ids.dtype) or is_bool_dtype(ids.dtype):
        return
    codes, uniques = pd.factorize(ids)
    uniques = list(np.asarray(uniques, dtype=object))
    if all(isinstance(u, str) and u == u.strip() for u in uniques):
        return  # the common case: clean strings
    _, first = np.unique(codes, return_index=True)  # position of each id's first row
    label = lambda k: _show(ids.index[first[k]])  # noqa: E731
    seen: dict[str, int] = {}
    for k, value in enumerate(uniques):
        key = str(value)
        if key in seen:
            j = seen[key]
            raise InputError(
                f"column {column!r} mixes types: row {label(j)} has {_show(uniques[j])} "
                f"({type(uniques[j]).__name__}) and row {label(k)} has {_show(value)} "
                f"({type(value).__name__}), two different ids both shown as {key}; convert the "
                f"column to one type, e.g. df[{column!r}] = df[{column!r}].astype(str)")
        seen[key] = k
    stripped: dict[str, int] = {}
    for k, value in enumerate(uniques):
        key = str(value).strip()
        if key in stripped:
            j = stripped[key]
            raise InputError(
                f"column {column!r}: row {label(j)} has {_show(uniques[j])} and row {label(k)} has "
                f"{_show(value)}, ids that differ only by surrounding spaces (two individuals); "
                f"strip them: df[{column!r}] = df[{column!r}].astype(str).str.strip()")
        stripped[key] = k
    for k, value in enumerate(uniques):
        if isinstance(value, str) and value != value.strip():
            warnings.warn(f"column {column!r}: row {label(k)} has the id {value!r} with surrounding "
                          "spaces; it is kept as written", UserWarning, stacklevel=3)
            return


def check_response_dtype(df: pd.DataFrame, y: Hashable, observation: Any) -> None:
    """A boolean y column is an error for the Gaussian and count families (it means 0/1 only
    for bernoulli, binomial and ordinal data)."""
    if y not in getattr(df, "columns", []):
        return  # Data.from_pandas names the missing column
    values = df[y]
    if not isinstance(values, pd.Series):
        return  # a duplicated name: check_columns_unique reports it
    boolean = is_bool_dtype(values.dtype) and not isinstance(values.dtype, pd.CategoricalDtype)
    if values.dtype == object:
        present = values.dropna()
        boolean = len(present) > 0 and all(isinstance(v, (bool, np.bool_)) for v in present)
    if boolean and observation.name not in _BOOLEAN_Y_FAMILIES:
        raise InputError(f"column {y!r} is boolean (True/False), not a measurement for "
                         f"observation={observation.name!r}; use observation='bernoulli' for binary "
                         f"data, or convert it: df[{y!r}].astype(float)")


# ---------------------------------------------------------------------------------- the model
def _model_name(model: Model) -> str:
    return model.name or getattr(model.function, "__name__", "custom")


def check_names(names: Any, model: Model, setting: str) -> None:
    """Parameter names given to a setting (``random=``, keys of ``transforms=``): each must be
    one of the model's parameters; the error names the closest one."""
    if names is None or isinstance(names, str) and setting != "random":
        return
    if isinstance(names, str):
        raise InputError(f"random must be a list of parameter names, e.g. random=[{names!r}], "
                         f"got the string {names!r}")
    for name in names:
        if name not in model.parameters:
            raise InputError(f"{setting}= names {name!r}, not a parameter of model {_model_name(model)!r}"
                             f"{did_you_mean(name, model.parameters)}; its parameters are "
                             f"{list(model.parameters)}")


def check_init(init: Any, model: Model) -> None:
    """``init=`` of :func:`pymixnn.fit`: a mapping from the model's parameter names to finite
    numbers (a misspelt key would otherwise be lost silently)."""
    if init is None:
        return
    if not isinstance(init, Mapping):
        raise InputTypeError(f"init must be a mapping {{parameter: value}}, got {type(init).__name__}")
    for key, value in init.items():
        if key not in model.parameters:
            hint = did_you_mean(key, model.parameters)
            if key in model.error_parameters:
                hint = " (a residual error parameter: set it with Model(error_init={...}))"
            raise InputError(f"init names {key!r}, not a parameter of model {_model_name(model)!r}{hint}; "
                             f"its parameters are {list(model.parameters)}")
        if not (_is_real(value) and math.isfinite(value)):
            raise InputError(f"init[{key!r}] must be a finite number, got {value!r}")


def check_random_effects(model: Model) -> None:
    """At least one parameter with a random effect."""
    if not model.random:
        raise InputError(
            "random=[]: at least one parameter needs a random effect (a model without random effects "
            "is a nonlinear regression; fit it with scipy.optimize.curve_fit), e.g. random="
            f"[{model.parameters[0]!r}]; model {_model_name(model)!r} has parameters "
            f"{list(model.parameters)}")


# ---------------------------------------------------------------------------------- y and the model
def check_response_support(model: Model, data: Data, observation: Any) -> None:
    """y against the Gaussian error model: y > 0 for the exponential and proportional error
    models (the proportional model's sd b|f| vanishes with f, so y = 0 where f = 0 makes the
    likelihood unbounded: y all zero gave ll = +2652.8, b = 1.6e13), and a y that varies."""
    if observation.name != "gaussian":
        return
    y = data.y
    if model.error in ("exponential", "proportional"):
        bad = np.flatnonzero(~(y > 0))
        if bad.size:
            row, value = _show(data.frame.index[bad[0]]), _show(y[bad[0]])
            if model.error == "exponential":
                raise InputError(f"the exponential error model needs y > 0: column {data.y_col!r}, "
                                 f"row {row} has value {value}")
            raise InputError(f"the proportional error model needs y > 0 (its sd b*|f| vanishes with f): "
                             f"column {data.y_col!r}, row {row} has value {value} ({bad.size} of "
                             f"{y.size} rows); use error='combined'")
    if data.n_obs > 1 and np.all(y == y[0]):
        raise InputError(f"column {data.y_col!r} takes the single value {_show(y[0])} in all "
                         f"{data.n_obs} rows: there is nothing to fit")


def check_loaded_model(model: Model, saved: Mapping[str, Any], path: Any) -> None:
    """The model given to ``Results.load(path, model=...)`` against the saved model record:
    parameter names and order, transforms, random effects, covariance, error model and the
    meaning of the x columns."""
    given = {"parameters": list(model.parameters), "transforms": dict(model.transforms),
             "random": list(model.random), "omega": model.omega, "error": model.error,
             "x_names": list(model.x_names) if model.x_names else None}
    diffs = []
    for key, value in given.items():
        if key not in saved or (key == "x_names" and (value is None or saved[key] is None)):
            continue
        want = saved[key]
        want = list(want) if isinstance(want, tuple) else want
        if value != want:
            diffs.append(f"{key} {value!r} given, {want!r} saved")
            if key == "parameters":
                break  # transforms and random effects then differ by their names too
    if diffs:
        name = f" of model {saved['name']!r}" if saved.get("name") else ""
        raise InputError(f"{path}: the model given does not match the saved fit{name}: " + "; ".join(diffs))


# ---------------------------------------------------------------------------------- the problem
# named models whose x columns have a physical domain: (column position, meaning, lower bound)
X_DOMAINS = {"onecpt_oral": [(0, "dose", 0.0), (1, "time after the dose", 0.0)]}


def check_design(model: Model, data: Data, observation: Any) -> None:
    """x inside a named model's domain (the closed-form one-compartment curve is meaningless at
    negative times: a fit there reported V = 3.8e6 as converged), and enough observations per
    individual for the random effects to be told apart from each other and from the residual
    error (one observation per individual with three random effects gave ka = 1.8e-5,
    CL = 2.7e-7, reported as converged)."""
    for j, meaning, lower in X_DOMAINS.get(model.name or "", []):
        if j < len(data.x_cols):
            bad = np.flatnonzero(data.x[:, j] < lower)
            if bad.size:
                col = data.x_cols[j]
                raise InputError(f"column {col!r} is the {meaning} of model {model.name!r} and must "
                                 f"be >= {lower:g}: row {data.frame.index[bad[0]]!r} has value "
                                 f"{data.x[bad[0], j]:g} ({bad.size} such rows)")
    d, most = len(model.random), int(data.n_obs_per_individual.max())
    gaussian = observation.name == "gaussian"
    if d and (most < d or (gaussian and most == 1)):
        why = (f"{d} random effects ({', '.join(model.random)})" if most < d else
               "a random effect and a residual error that one observation cannot tell apart")
        raise InputError(f"every individual has at most {most} observation(s), too few for {why}: "
                         f"the individual parameters are not identifiable; give fewer random "
                         f"effects (random=[...]) or data with more observations per individual")


def check_observation_columns(frame: Any, observation: Any, trials: Any, censoring: Any,
                              error: Any) -> dict[str, str]:
    """The auxiliary columns against the family, before any data conversion (``frame``: the
    user's DataFrame or the Data's frame); returns the role -> column mapping."""
    aux: dict[str, str] = {}
    if not observation.has_error_model and error is not None:
        raise InputError(f"error={error!r} sets the Gaussian error model; observation="
                         f"{observation.name!r} has its own law (drop error=)")
    if censoring is not None:
        if not observation.has_error_model:
            flags = frame[censoring] if censoring in getattr(frame, "columns", []) else None
            where = ""
            if flags is not None:
                on = np.flatnonzero(pd.to_numeric(flags, errors="coerce").fillna(1).to_numpy() != 0)
                if on.size:
                    where = f": row {flags.index[on[0]]!r} has value {flags.iloc[on[0]]!r}"
            raise InputError(f"censoring column {censoring!r} flags censored observations{where}; "
                             f"left-censoring (M3) needs observation='gaussian', not {observation.name!r}")
        aux["censored"] = censoring
    if "trials" in observation.needs:
        if trials is None:
            raise InputError(f"observation={observation.name!r} needs trials=<column with the number of "
                             "trials of each observation>")
        aux["trials"] = trials
    elif trials is not None:
        raise InputError(f"trials={trials!r} is used only by observation='binomial' (this fit uses "
                         f"{observation.name!r})")
    return aux


def check_genomic(genotype: Any, genomic: Any, model: Model) -> list[str]:
    """The genomic arguments against the model; returns the individual-level columns they need."""
    from pymixnn.model.genomic import Genomic

    if genomic is None:
        if genotype is not None:
            raise InputError(f"genotype={genotype!r} is used with genomic=pymixnn.Genomic(markers, "
                             "params=[...]): give the marker matrix")
        return []
    if not isinstance(genomic, Genomic):
        raise InputTypeError(f"genomic must be a pymixnn.Genomic(markers, params=[...]), got "
                             f"{type(genomic).__name__}")
    if genotype is None:
        raise InputError("genomic=... needs genotype=<column naming each individual's genotype> "
                         "(the rows of the marker matrix)")
    unknown = [p for p in genomic.params if p not in model.parameters]
    if unknown:
        raise InputError(f"Genomic(params=...) names {unknown}, which model {model.name!r} does not "
                         f"have; its parameters are {list(model.parameters)}")
    fixed = [p for p in genomic.params if p not in model.random]
    if fixed:
        raise InputError(f"marker effects on {fixed} need a random effect on them (the markers "
                         f"explain between-individual variation): add them to random=, now "
                         f"{list(model.random)}")
    cols = [genotype] + ([genomic.interaction] if genomic.interaction else [])
    if genomic.interaction == genotype:
        raise InputError(f"Genomic(interaction=...) must be another column than genotype={genotype!r}")
    return cols


def check_genotype_role(genotype: Any, roles: Mapping[str, Sequence[Any]]) -> None:
    """genotype= naming the id, an x or the y column (``roles``: role -> columns): an error that
    names genotype=."""
    if genotype is None:
        return
    for role, columns in roles.items():
        if genotype in columns:
            raise InputError(f"genotype={genotype!r} is the {role} column: genotype= names the column "
                             "holding each individual's genotype (the rows of the marker matrix), "
                             f"another column than {role}=" + (
                                 f"; if each individual is its own genotype, copy it: "
                                 f"df['genotype'] = df[{genotype!r}]" if role == "id" else ""))
