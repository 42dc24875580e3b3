"""x columns given as dates: their conversion to the time elapsed since the earliest date.

A datetime x column of :class:`pymixnn.data.table.Data` becomes float64 time elapsed since its
origin (the column's earliest date) in ``time_unit``, one of :data:`TIME_UNITS`.

>>> import pandas as pd
>>> s = pd.Series(pd.to_datetime(["2021-03-04", "2021-03-06"]))
>>> origins = time_origins(pd.DataFrame({"date": s}), ["date"], "d")
>>> elapsed(s, "date", origins["date"], "d").tolist()
[0.0, 2.0]
>>> since(origins["date"], "d")
'days since 2021-03-04 00:00'
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd

__all__ = ["TIME_UNITS", "elapsed", "is_datetime", "since", "time_origins"]

#: ``time_unit`` of a datetime x column -> seconds per unit, and its name in messages
TIME_UNITS = {
    "s": (1.0, "seconds"),
    "min": (60.0, "minutes"),
    "h": (3600.0, "hours"),
    "d": (86400.0, "days"),
    "w": (604800.0, "weeks"),
}


def is_datetime(values: pd.Series) -> bool:
    """datetime64 (with or without a time zone), or an object column of timestamps or dates."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return True
    return values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in (
        "datetime",
        "datetime64",
        "date",
    )


def elapsed(values: pd.Series, column: Hashable, origin: pd.Timestamp, unit: str) -> np.ndarray:
    """Dates as float64 time elapsed since ``origin`` in ``unit`` (NaN where missing)."""
    try:
        delta = pd.to_datetime(values) - origin
    except (TypeError, ValueError) as err:  # mixed or other time zones, unreadable dates
        raise ValueError(
            f"x column {column!r}: its dates cannot be compared with the origin {origin} ({err})"
        ) from None
    return (delta / pd.Timedelta(seconds=TIME_UNITS[unit][0])).to_numpy(dtype=np.float64, na_value=np.nan)


def time_origins(df: pd.DataFrame, x_cols: list, time_unit: str | None) -> dict:
    """Earliest date of each datetime x column (the origin of its elapsed time); a datetime
    column needs ``time_unit``, and ``time_unit`` needs a datetime column."""
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {list(TIME_UNITS)}, got {time_unit!r}")
    dated = [c for c in x_cols if is_datetime(df[c])]
    if dated and time_unit is None:
        raise ValueError(
            f"x column {dated[0]!r} holds dates ({df[dated[0]].dtype}): pass "
            "time_unit='h', 'd', 'min', 's' or 'w' to use the time elapsed since its "
            "earliest date"
        )
    if time_unit is not None and not dated:
        raise ValueError(f"time_unit={time_unit!r} converts dates, but no x column of {x_cols} holds dates")
    origins = {}
    for column in dated:
        try:
            origins[column] = pd.to_datetime(df[column]).min()
        except (TypeError, ValueError) as err:
            raise ValueError(f"x column {column!r}: cannot read its dates ({err})") from None
    return origins


def since(origin: pd.Timestamp, unit: str) -> str:
    """ "days since 2021-03-04 00:00": the unit and origin of an x column given as dates."""
    stamp = origin.strftime("%Y-%m-%d %H:%M" + (":%S" if origin.second else ""))
    zone = f" {origin.tz}" if origin.tz is not None else ""
    return f"{TIME_UNITS[unit][1]} since {stamp}{zone}"
