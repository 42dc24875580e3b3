"""Validation of a long table, row by row, before a :class:`pymixnn.data.table.Data` is built.

Every error names the column, the first offending row (by its DataFrame index label) and the
value found there (:func:`row_error`). :func:`validate_long_table` runs all the checks of
:meth:`Data.from_pandas <pymixnn.data.table.Data.from_pandas>` and returns the kept rows grouped by
individual.

>>> import pandas as pd
>>> as_float(pd.DataFrame({"y": [1, True]}), "y").tolist()
[1.0, 1.0]
>>> as_float(pd.DataFrame({"y": ["1", "a"]}, index=[10, 11]), "y")
Traceback (most recent call last):
...
ValueError: column 'y' must be numeric: row 11 has value 'a'
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from pymixnn.data.dates import elapsed, time_origins
from pymixnn.validation import check_columns_unique, check_ids

__all__ = ["ValidTable", "as_float", "first_row", "nonfinite", "row_error", "show", "validate_long_table"]


def show(value: Any) -> str:
    """repr of a value, with numpy scalars shown as plain Python numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def first_row(values: pd.Series, bad: pd.Series | np.ndarray) -> tuple[str, str]:
    """Index label and value of the first row flagged in ``bad``, both shown for messages."""
    pos = int(np.flatnonzero(np.asarray(bad))[0])
    return show(values.index[pos]), show(values.iloc[pos])


def row_error(column: Hashable, problem: str, values: pd.Series, bad: pd.Series | np.ndarray) -> ValueError:
    """ValueError "column 'c' <problem>: row <label> has value <value>" for the first bad row."""
    row, value = first_row(values, bad)
    return ValueError(f"column {column!r} {problem}: row {row} has value {value}")


def as_float(df: pd.DataFrame, column: Hashable) -> pd.Series:
    """The column as float64; booleans become 0/1, anything else non-numeric is an error."""
    values = df[column]
    if isinstance(values.dtype, pd.CategoricalDtype):  # an R factor: its labels are not numbers
        levels = [show(v)[:20] for v in values.cat.categories[:8]]
        raise ValueError(
            f"column {column!r} is categorical (levels [{', '.join(levels)}"
            f"{', ...' if len(values.cat.categories) > 8 else ''}]); x and y must be "
            "numeric: convert it to numbers, or use it as a covariate"
        )
    if is_bool_dtype(values.dtype):
        return values.astype(np.float64)
    raw = values if is_numeric_dtype(values.dtype) else values.astype(object)
    numeric = pd.to_numeric(raw, errors="coerce")
    bad = numeric.isna() & values.notna()
    if bad.any():
        raise row_error(column, "must be numeric", values, bad)
    return numeric.astype(np.float64)


def nonfinite(values: pd.Series) -> pd.Series:
    """Missing values, plus +-inf in numeric (non-boolean) columns."""
    bad = values.isna()
    if is_numeric_dtype(values.dtype) and not is_bool_dtype(values.dtype):
        bad |= np.isinf(values.astype(np.float64))
    return bad


class ValidTable(NamedTuple):
    """What :func:`validate_long_table` returns."""

    frame: pd.DataFrame  # kept rows, columns id, x..., y, covariates..., aux..., grouped by individual
    n_dropped: int  # rows dropped for a missing y
    source_positions: np.ndarray  # position in the source table of each row of ``frame``
    time_origins: dict  # earliest date of each x column given as dates


def validate_long_table(
    df: pd.DataFrame,
    *,
    id: str,
    x_cols: list,
    y: str,
    covariate_cols: list,
    aux_cols: dict,
    dropna: bool,
    time_unit: str | None,
) -> ValidTable:
    """The checks of :meth:`Data.from_pandas <pymixnn.data.table.Data.from_pandas>` (see its Raises).

    x, y and aux columns become float64 (dates: elapsed time in ``time_unit``); rows with a missing
    y are dropped (with a warning, ``dropna``) or refused; individuals are put in sorted id order
    (order of first appearance for ids that do not sort together), rows within an individual in
    their source order. Warnings are attributed to the caller of ``Data.from_pandas``.
    """
    if not x_cols:
        raise ValueError("x must name at least one column")
    roles = [id, *x_cols, y, *covariate_cols, *aux_cols.values()]
    check_columns_unique(df, roles)
    for column in roles:
        if column not in df.columns:
            raise ValueError(f"column {column!r} not found in data; available columns: {list(df.columns)}")
    repeated = sorted({str(c) for c in roles if roles.count(c) > 1})
    if repeated:
        raise ValueError(
            f"column(s) {repeated} used more than once among id, x, y, covariates, trials and censoring"
        )
    if df.empty:
        raise ValueError("data has no rows")

    missing_id = df[id].isna()
    if missing_id.any():
        raise row_error(id, "has a missing id", df[id], missing_id)
    check_ids(df[id], id)

    origins = time_origins(df, x_cols, time_unit)
    frame = df[roles].copy()
    for column in [*x_cols, y, *aux_cols.values()]:
        frame[column] = (
            elapsed(df[column], column, origins[column], time_unit)
            if column in origins
            else as_float(df, column).to_numpy()
        )
    for column in [*x_cols, *covariate_cols, *aux_cols.values()]:
        bad = nonfinite(frame[column])
        if bad.any():
            raise row_error(column, "must be finite and not missing", frame[column], bad)

    response = frame[y]
    infinite = np.isinf(response)
    if infinite.any():
        raise row_error(y, "must be finite", response, infinite)
    missing_y = response.isna()
    n_dropped = int(missing_y.sum())
    if n_dropped:
        first_missing, _ = first_row(response, missing_y)
        if not dropna:
            raise ValueError(
                f"column {y!r} has {n_dropped} missing values (first at row {first_missing}); "
                "pass dropna=True to drop those rows"
            )
        warnings.warn(
            f"dropped {n_dropped} rows with a missing {y!r} (first at row {first_missing})",
            UserWarning,
            stacklevel=3,
        )
    all_ids = pd.unique(frame[id])
    frame = frame.loc[~missing_y.to_numpy()]
    kept_ids = set(frame[id]) if n_dropped else None  # no row dropped: nobody left empty
    empty = [i for i in all_ids if i not in kept_ids] if n_dropped else []
    if empty:
        raise ValueError(
            f"individual {show(empty[0])} has no observation left after dropping rows "
            f"with a missing {y!r} ({len(empty)} such individuals)"
        )

    # individuals in sorted id order (as nlme and lme4 order groups), so that a fit does not
    # depend on the order of the rows: the same data shuffled give the same numbers; ids of
    # types that do not sort together keep their order of first appearance
    try:
        codes, _ = pd.factorize(frame[id], sort=True)
    except TypeError:
        codes, _ = pd.factorize(frame[id])
    grouping = np.argsort(codes, kind="stable")
    frame = frame.iloc[grouping]
    codes = codes[grouping]
    for column in covariate_cols:
        values = frame[column].astype(object)
        earlier = values.groupby(codes).transform("first")
        varies = values != earlier
        if varies.any():
            row, value = first_row(values, varies)
            _, individual = first_row(frame[id], varies)
            _, before = first_row(earlier, varies)
            raise ValueError(
                f"covariate {column!r} varies within individual {individual} "
                f"(row {row} has {value}, earlier rows have {before}); "
                "covariates must be constant within an individual"
            )

    duplicated = _duplicated(frame, codes, [*x_cols, y], id)
    if duplicated.any():
        row, _ = first_row(frame[y], duplicated)
        warnings.warn(
            f"{int(duplicated.sum())} rows repeat an earlier row's id, x and y "
            f"(first at row {row}); they are kept",
            UserWarning,
            stacklevel=3,
        )
    return ValidTable(frame, n_dropped, grouping, origins)


def _duplicated(frame: pd.DataFrame, codes: np.ndarray, value_cols: list, id: str) -> np.ndarray:
    """``frame.duplicated(subset=[id, *value_cols])`` (float columns, ``codes`` the individuals'),
    with pandas' exact check on the rows whose 64-bit hash of (individual, values) is not unique
    only: the hash of equal rows is equal (-0.0 taken as 0.0), so no repeat is missed, and the
    check over all columns runs on the few candidates (10^7 rows: 6.8 s for pandas' check over
    every row; this way 1 s)."""
    key = codes.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for k, column in enumerate(value_cols):
            bits = (frame[column].to_numpy(dtype=np.float64) + 0.0).view(np.uint64)
            key = (key ^ (bits + np.uint64(k + 1))) * np.uint64(0xBF58476D1CE4E5B9)
            key ^= key >> np.uint64(31)
    ordered = np.sort(key)  # the hashes that repeat (a sort: 0.4 s for 10^7, pandas' table 2.8 s)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    out = np.zeros(len(frame), dtype=bool)
    if repeated.size:
        candidates = np.isin(key, repeated)
        out[candidates] = frame.loc[candidates, [id, *value_cols]].duplicated().to_numpy()
    return out
