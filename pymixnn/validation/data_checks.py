"""Checks of the data table against the problem: unique columns, ids, the response's dtype and
support, and the columns an observation family needs."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from pymixnn.validation.errors import InputError, show_value

if TYPE_CHECKING:  # pragma: no cover
    from pymixnn.data.table import Data
    from pymixnn.model.named import Model

__all__ = [
    "BOOLEAN_Y_FAMILIES",
    "check_columns_unique",
    "check_covariates_in_data",
    "check_ids",
    "check_response_dtype",
    "check_response_support",
    "check_observation_columns",
    "check_data_aux",
]

# observation families for which a boolean y has a meaning (0/1 successes, two ordered levels, or
# the user's own log-likelihood); Gaussian and count families reject it
BOOLEAN_Y_FAMILIES = ("bernoulli", "binomial", "ordinal", "loglik")


# ---------------------------------------------------------------------------------- the frame
def check_columns_unique(df: pd.DataFrame, columns: Sequence[Hashable]) -> None:
    """A column name used by the fit that the DataFrame holds more than once (pandas would then
    return a table where one column is expected). Unused duplicated names are left alone."""
    names = list(df.columns)
    for column in dict.fromkeys(c for c in columns if c is not None):
        positions = [k for k, name in enumerate(names) if name == column]
        if len(positions) > 1:
            raise InputError(
                f"column {column!r} appears {len(positions)} times in the data (positions "
                f"{positions}); give the columns unique names, e.g. df.columns = [...]"
            )


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
    label = lambda k: show_value(ids.index[first[k]])  # noqa: E731
    seen: dict[str, int] = {}
    for k, value in enumerate(uniques):
        key = str(value)
        if key in seen:
            j = seen[key]
            raise InputError(
                f"column {column!r} mixes types: row {label(j)} has {show_value(uniques[j])} "
                f"({type(uniques[j]).__name__}) and row {label(k)} has {show_value(value)} "
                f"({type(value).__name__}), two different ids both shown as {key}; convert the "
                f"column to one type, e.g. df[{column!r}] = df[{column!r}].astype(str)"
            )
        seen[key] = k
    stripped: dict[str, int] = {}
    for k, value in enumerate(uniques):
        key = str(value).strip()
        if key in stripped:
            j = stripped[key]
            raise InputError(
                f"column {column!r}: row {label(j)} has {show_value(uniques[j])} and row {label(k)} has "
                f"{show_value(value)}, ids that differ only by surrounding spaces (two individuals); "
                f"strip them: df[{column!r}] = df[{column!r}].astype(str).str.strip()"
            )
        stripped[key] = k
    for k, value in enumerate(uniques):
        if isinstance(value, str) and value != value.strip():
            warnings.warn(
                f"column {column!r}: row {label(k)} has the id {value!r} with surrounding "
                "spaces; it is kept as written",
                UserWarning,
                stacklevel=3,
            )
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
    if boolean and observation.name not in BOOLEAN_Y_FAMILIES:
        raise InputError(
            f"column {y!r} is boolean (True/False), not a measurement for "
            f"observation={observation.name!r}; use observation='bernoulli' for binary "
            f"data, or convert it: df[{y!r}].astype(float)"
        )


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
            row, value = show_value(data.frame.index[bad[0]]), show_value(y[bad[0]])
            if model.error == "exponential":
                raise InputError(
                    f"the exponential error model needs y > 0: column {data.y_col!r}, "
                    f"row {row} has value {value}"
                )
            raise InputError(
                f"the proportional error model needs y > 0 (its sd b*|f| vanishes with f): "
                f"column {data.y_col!r}, row {row} has value {value} ({bad.size} of "
                f"{y.size} rows); use error='combined'"
            )
    if data.n_obs > 1 and np.all(y == y[0]):
        raise InputError(
            f"column {data.y_col!r} takes the single value {show_value(y[0])} in all "
            f"{data.n_obs} rows: there is nothing to fit"
        )


def check_observation_columns(
    frame: Any, observation: Any, trials: Any, censoring: Any, error: Any
) -> dict[str, str]:
    """The auxiliary columns against the family, before any data conversion (``frame``: the
    user's DataFrame or the Data's frame); returns the role -> column mapping."""
    aux: dict[str, str] = {}
    if not observation.has_error_model and error is not None:
        raise InputError(
            f"error={error!r} sets the Gaussian error model; observation="
            f"{observation.name!r} has its own law (drop error=)"
        )
    if censoring is not None:
        if not observation.has_error_model:
            flags = frame[censoring] if censoring in getattr(frame, "columns", []) else None
            where = ""
            if flags is not None:
                on = np.flatnonzero(pd.to_numeric(flags, errors="coerce").fillna(1).to_numpy() != 0)
                if on.size:
                    where = (
                        f": row {show_value(flags.index[on[0]])} has value {show_value(flags.iloc[on[0]])}"
                    )
            raise InputError(
                f"censoring column {censoring!r} flags censored observations{where}; "
                f"left-censoring (M3) needs observation='gaussian', not {observation.name!r}"
            )
        aux["censored"] = censoring
    if "trials" in observation.needs:
        if trials is None:
            raise InputError(
                f"observation={observation.name!r} needs trials=<column with the number of "
                "trials of each observation>"
            )
        aux["trials"] = trials
    elif trials is not None:
        raise InputError(
            f"trials={trials!r} is used only by observation='binomial' (this fit uses {observation.name!r})"
        )
    return aux


def check_covariates_in_data(columns: Sequence[str], data: Data) -> None:
    """The covariate columns among a Data object's individual-level covariates or, for event
    data, its time-varying ones."""
    events = getattr(data, "events", None)
    varying = events.time_varying if events is not None else []
    missing = [c for c in columns if c not in data.covariate_cols and c not in varying]
    if missing:
        raise InputError(
            f"covariates {missing} are not in the Data object (it has {data.covariate_cols}"
            + (f" and time-varying {varying}" if varying else "")
            + "); rebuild it with covariates= (or time_varying= for event data)"
        )


def check_data_aux(data: Data, aux: dict[str, str]) -> None:
    """The auxiliary columns named to fit (``aux``: censoring=, trials=) against those a Data
    object carries; the endpoint codes of event data are not named by the user, and the columns
    of event data are matched case-insensitively, as ``Data.from_nonmem`` matches them."""
    if not aux:
        return
    held = {role: col for role, col in data.aux_cols.items() if role != "endpoint"}
    events = getattr(data, "events", None) is not None
    key = (lambda m: {r: str(c).lower() for r, c in m.items()}) if events else dict
    if key(held) != key(aux):
        how = "Data.from_nonmem(..., censoring=...)" if events else "Data.from_pandas(..., aux=...)"
        raise InputError(f"the Data object has auxiliary columns {held}, not {aux}; rebuild it with {how}")
