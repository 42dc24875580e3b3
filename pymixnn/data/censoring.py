"""The censoring column of NONMEM-style event data: left-censored observations (M3 likelihood).

NONMEM users flag observations below the limit of quantification in a column such as ``BLQ``,
nlmixr2 and Monolix users in ``CENS``: 1 on an observation record below the limit, its DV holding
the limit; 0 on an observed one. :func:`censoring_flags` checks the column record by record
(numpy and pandas only) and returns the flag of each record; :meth:`pymixnn.Data.from_nonmem`
keeps it on the observations as the auxiliary role ``"censored"``, the role the censored
Gaussian likelihood of a plain table reads (``Data.from_pandas(..., aux={"censored": ...})``).
The flag is read on observation records only (EVID 0, MDV 0 or no MDV column); dose, other and
MDV = 1 records keep whatever value they hold.

>>> import pandas as pd
>>> df = pd.DataFrame({"ID": [1, 1, 1], "TIME": [0, 1, 2], "AMT": [100, 0, 0],
...                    "DV": [0, 5.2, 0.1], "BLQ": [None, 0, 1]})
>>> censoring_flags(df, {"censoring": "BLQ", "dv": "DV"}, pd.Series([1, 0, 0]), df["DV"]).tolist()
[0.0, 0.0, 1.0]
>>> censoring_flags(df.assign(BLQ=[0, 0, -1]), {"censoring": "BLQ", "dv": "DV"},
...                 pd.Series([1, 0, 0]), df["DV"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pymixnn.validation.InputError: column 'BLQ' is -1 (right-censored: above the limit) ...: row 2 has value -1.0
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pymixnn.data.checks import as_float, show
from pymixnn.validation import InputError

__all__ = ["censoring_flags"]


def _error(column: str, problem: str, values: pd.Series, bad) -> InputError:
    pos = int(np.flatnonzero(np.asarray(bad))[0])
    return InputError(
        f"column {column!r} {problem}: row {show(values.index[pos])} has value {show(values.iloc[pos])}"
    )


def censoring_flags(
    df: pd.DataFrame, cols: dict[str, str], code: pd.Series, y: pd.Series
) -> pd.Series | None:
    """The censoring flag of each record of ``df`` as float64 (0 off observation records); None
    without a ``"censoring"`` role in ``cols`` (role -> matched column). ``code``: each record's
    EVID, ``y``: its DV as float. Errors name the column, the row and the value: a flag other than
    0 / 1 on an observation record (-1, right censoring in nlmixr2's and Monolix's CENS, has its
    own message), a censored record without a DV (the limit), a column used in another role."""
    if "censoring" not in cols:
        return None
    column = cols["censoring"]
    other = [role for role, c in cols.items() if c == column and role != "censoring"]
    if other:
        raise InputError(f"censoring={column!r} is also the {other[0].upper()} column; name the flag column")
    try:
        flags = as_float(df, column)
    except InputError:
        raise
    except ValueError as err:
        raise InputError(str(err)) from None
    index = df.index
    code = pd.Series(np.asarray(code), index=index)
    if "mdv" in cols:  # MDV = 1 records are not observations: their flag is not read (M1 datasets)
        mdv = pd.to_numeric(df[cols["mdv"]], errors="coerce").fillna(0.0).to_numpy()
        observation = (code.to_numpy() == 0) & (mdv != 1)
    else:
        observation = code.to_numpy() == 0
    bad = observation & (flags.to_numpy() == -1)
    if bad.any():
        raise _error(
            column,
            "is -1 (right-censored: above the limit) on an observation record; only left "
            "censoring is supported (1: below the limit of quantification, DV holding the limit)",
            flags,
            bad,
        )
    bad = observation & ~flags.isin([0.0, 1.0]).to_numpy()
    if bad.any():
        raise _error(
            column,
            "must be 0 (observed) or 1 (below the limit of quantification, DV holding the limit) "
            "on observation records (EVID 0)",
            flags,
            bad,
        )
    values = pd.Series(np.asarray(y, dtype=np.float64), index=index)
    bad = observation & (flags.to_numpy() == 1) & ~np.isfinite(values.to_numpy())
    if bad.any():
        dv = cols.get("dv", "DV")
        raise _error(
            dv,
            f"must hold the limit of quantification on censored records ({column} = 1)",
            values,
            bad,
        )
    return pd.Series(np.where(observation, flags.to_numpy(), 0.0), index=index)
