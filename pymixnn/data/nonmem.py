"""NONMEM-style event data: column matching, validation and ADDL expansion (numpy and pandas only).

:func:`read_nonmem` checks a NONMEM table record by record, before any model or torch code, and
returns the observation table that :class:`pymixnn.Data` holds plus the :class:`EventTable` of all
records. Columns are matched case-insensitively; absent optional columns take NONMEM's defaults
(AMT 0, EVID 1 where AMT is non-zero else 0, CMT 1, RATE 0, II 0, ADDL 0, SS 0, MDV 1 off observations,
DVID one endpoint). Every error names the column, the row (its DataFrame index label) and the value.

>>> import pandas as pd
>>> df = pd.DataFrame({"id": [1, 1, 1], "time": [0, 1, 2], "amt": [100, 0, 0],
...                    "dv": [0, 5.2, 3.1]})
>>> obs, events = read_nonmem(df, id="ID", time="TIME", dv="DV", amt="AMT")
>>> obs["DV" if "DV" in obs else "dv"].tolist(), events.counts()["doses"]
([5.2, 3.1], 1)
>>> read_nonmem(df.assign(amt=[-5, 0, 0]), id="ID", time="TIME", dv="DV", amt="AMT")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pymixnn.validation.InputError: column 'amt' must be > 0 on dose records ...: row 0 has value -5.0
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.data.censoring import censoring_flags
from pymixnn.data.checks import as_float, show
from pymixnn.data.events import EventTable
from pymixnn.validation import InputError

__all__ = ["read_nonmem", "match_columns", "describe", "ENDPOINT_COLUMN", "INDEX_COLUMN", "RECORD_COLUMN"]

ENDPOINT_COLUMN = "DVID"  # x column 1 of event data: the endpoint code of each observation
INDEX_COLUMN = "_individual"  # x column 2: the individual's position in the event table
RECORD_COLUMN = "_record"  # x column 3: the observation's position among its individual's records

_OPTIONAL = ("amt", "evid", "cmt", "rate", "ii", "addl", "ss", "mdv", "dvid")


def match_columns(df: pd.DataFrame, names: dict[str, str | None], required: Sequence[str]) -> dict[str, str]:
    """Role -> actual column of ``df``: each given name matched exactly, then case-insensitively.
    A required role without a column is an error listing the columns."""
    lower: dict[str, list[str]] = {}
    for c in df.columns:
        lower.setdefault(str(c).lower(), []).append(c)
    out: dict[str, str] = {}
    for role, name in names.items():
        if name is None:
            continue
        if name in df.columns:
            out[role] = name
            continue
        hits = lower.get(str(name).lower(), [])
        if len(hits) > 1:
            raise InputError(f"{role}={name!r} matches several columns {hits}; name one exactly")
        if hits:
            out[role] = hits[0]
        elif role in required:
            raise InputError(
                f"column {name!r} ({role}) is not in the data (case-insensitive); columns are "
                f"{[str(c) for c in df.columns]}"
            )
    return out


def _error(column: str, problem: str, values: pd.Series, bad) -> InputError:
    pos = int(np.flatnonzero(np.asarray(bad))[0])
    return InputError(
        f"column {column!r} {problem}: row {show(values.index[pos])} has value {show(values.iloc[pos])}"
    )


def _float(df: pd.DataFrame, column: str) -> pd.Series:
    """The column as float64 (booleans 0/1); a non-numeric value is an :class:`InputError`."""
    try:
        return as_float(df, column)
    except InputError:
        raise
    except ValueError as e:
        raise InputError(str(e)) from None


def _numeric(df: pd.DataFrame, column: str, default: float | None = None) -> pd.Series:
    """A numeric column; NaN (NONMEM's '.') becomes ``default`` when one is given."""
    values = _float(df, column) if column in df.columns else pd.Series(default, index=df.index, dtype=float)
    if default is not None:
        values = values.fillna(default)
    return values


def read_nonmem(
    df: pd.DataFrame,
    *,
    id: str = "ID",
    time: str = "TIME",
    dv: str = "DV",
    amt: str = "AMT",
    evid: str = "EVID",
    cmt: str = "CMT",
    rate: str = "RATE",
    ii: str = "II",
    addl: str = "ADDL",
    ss: str = "SS",
    mdv: str = "MDV",
    dvid: str = "DVID",
    covariates: Sequence[str] | None = None,
    time_varying: Sequence[str] | None = None,
    censoring: str | None = None,
) -> tuple[pd.DataFrame, EventTable]:
    """Validate a NONMEM table; return (observation frame, event table).

    The observation frame has one row per observation record (EVID 0, MDV 0): the id, time, the
    endpoint code (:data:`ENDPOINT_COLUMN`), the individual's position in the event table
    (:data:`INDEX_COLUMN`), DV, the individual-level covariates and, last, the ``censoring`` column
    (:mod:`pymixnn.data.censoring`); index labels are the source's.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise InputError("the NONMEM table has no rows")
    names = dict(id=id, time=time, dv=dv, amt=amt, evid=evid, cmt=cmt, rate=rate, ii=ii, addl=addl)
    names.update(ss=ss, mdv=mdv, dvid=dvid, censoring=censoring)
    cols = match_columns(df, names, required=("id", "time", "censoring"))
    covariates = [str(c) for c in (covariates or [])]
    time_varying = [str(c) for c in (time_varying or [])]
    extra = match_columns(df, {c: c for c in covariates + time_varying}, required=covariates + time_varying)
    both = sorted(set(covariates) & set(time_varying))
    if both:
        raise InputError(f"{both} given both as covariates and as time_varying; choose one")

    ids = df[cols["id"]]
    if ids.isna().any():
        raise _error(cols["id"], "has a missing id", ids, ids.isna())
    t = _float(df, cols["time"])
    if not np.isfinite(t).all():
        raise _error(cols["time"], "must be a finite number", t, ~np.isfinite(t))
    amount = _numeric(df, cols["amt"], 0.0) if "amt" in cols else pd.Series(0.0, index=df.index)
    if "evid" in cols:
        code = _float(df, cols["evid"])
        bad = ~code.isin([0, 1, 2, 3, 4])
        if bad.any():
            raise _error(
                cols["evid"],
                "must be 0 (observation), 1 (dose), 2 (other), 3 (reset) or 4 (reset and dose)",
                code,
                bad,
            )
        code = code.astype(np.int64)
    else:
        code = pd.Series(np.where(amount != 0, 1, 0), index=df.index)  # NM-TRAN: a non-zero AMT doses
    is_dose = code.isin([1, 4])
    bad = is_dose & ~(amount > 0)
    if bad.any():
        raise _error(cols.get("amt", amt), "must be > 0 on dose records (EVID 1 or 4)", amount, bad)
    bad = ~is_dose & (amount != 0)
    if bad.any():  # NONMEM: "observation event record may not specify dose"; never a silent drop
        raise _error(
            cols["amt"], "must be 0 or missing on records that are not doses (EVID 0, 2, 3)", amount, bad
        )
    compartment = _numeric(df, cols["cmt"], 1.0) if "cmt" in cols else pd.Series(1.0, index=df.index)
    bad = is_dose & ((compartment < 1) | (compartment != np.round(compartment)))
    if bad.any():
        raise _error(cols["cmt"], "must be a compartment number >= 1 on dose records", compartment, bad)
    infusion = _numeric(df, cols["rate"], 0.0) if "rate" in cols else pd.Series(0.0, index=df.index)
    bad = is_dose & (infusion < 0) & ~infusion.isin([-1, -2])
    if bad.any():
        raise _error(cols["rate"], "must be >= 0, -1 (modeled rate) or -2 (modeled duration)", infusion, bad)
    interval = _numeric(df, cols["ii"], 0.0) if "ii" in cols else pd.Series(0.0, index=df.index)
    if (interval < 0).any():
        raise _error(cols["ii"], "must be >= 0", interval, interval < 0)
    n_addl = _numeric(df, cols["addl"], 0.0) if "addl" in cols else pd.Series(0.0, index=df.index)
    bad = (n_addl < 0) | (n_addl != np.round(n_addl))
    if bad.any():
        raise _error(cols["addl"], "must be a whole number >= 0", n_addl, bad)
    bad = is_dose & (n_addl > 0) & ~(interval > 0)
    if bad.any():
        raise _error(
            cols["addl"], f"> 0 needs an interval II > 0 (column {cols.get('ii', ii)!r})", n_addl, bad
        )
    steady = _numeric(df, cols["ss"], 0.0) if "ss" in cols else pd.Series(0.0, index=df.index)
    bad = ~steady.isin([0, 1, 2])
    if bad.any():
        raise _error(cols["ss"], "must be 0, 1 or 2", steady, bad)
    bad = is_dose & (steady > 0) & ~(interval > 0)
    if bad.any():
        raise _error(
            cols["ss"], f"steady state needs an interval II > 0 (column {cols.get('ii', ii)!r})", steady, bad
        )

    # observations: EVID 0 records with MDV 0 (MDV absent: DV present)
    y = _float(df, cols["dv"]) if "dv" in cols else pd.Series(np.nan, index=df.index)
    censored = censoring_flags(df, cols, code, y)  # None without a censoring column
    if "mdv" in cols:
        missing = _numeric(df, cols["mdv"], 0.0)
        bad = ~missing.isin([0, 1])
        if bad.any():
            raise _error(cols["mdv"], "must be 0 or 1", missing, bad)
        observed = (code == 0) & (missing == 0)
        bad = observed & ~np.isfinite(y)
        if bad.any():
            raise _error(
                cols.get("dv", dv), "must be a finite number on observation records (EVID 0, MDV 0)", y, bad
            )
    else:
        observed = (code == 0) & np.isfinite(y)
        unobserved = (code == 0) & ~np.isfinite(y)
        if "dv" in cols and unobserved.any():
            warnings.warn(
                f"{int(unobserved.sum())} record(s) with EVID 0 have a missing {cols['dv']} and, without an "
                f"MDV column, are not observations (first: row "
                f"{show(y.index[np.flatnonzero(unobserved.to_numpy())[0]])}); they stay in the event table",
                UserWarning,
                stacklevel=3,
            )
    dose_dv = is_dose & np.isfinite(y) & (y != 0)
    if dose_dv.any():
        warnings.warn(
            f"{int(dose_dv.sum())} dose record(s) carry a non-zero DV (first: row "
            f"{show(y.index[np.flatnonzero(dose_dv.to_numpy())[0]])}); the DV of dose records is ignored",
            UserWarning,
            stacklevel=3,
        )
    endpoint, endpoints = _endpoints(df, cols, observed)

    # time order within each individual
    order = pd.Series(np.arange(len(df)), index=df.index)
    codes_id, unique_ids = _factorize_ids(ids)
    for i in range(len(unique_ids)):
        at = np.flatnonzero(codes_id == i)
        decreasing = np.flatnonzero(np.diff(t.to_numpy()[at]) < 0)
        if len(decreasing):
            before, j = at[decreasing[0]], at[decreasing[0] + 1]
            raise InputError(
                f"column {cols['time']!r} decreases within individual {show(unique_ids[i])}: row "
                f"{show(df.index[j])} has value {show(t.iloc[j])} after {show(t.iloc[before])} (row "
                f"{show(df.index[before])}); sort each individual's records by time"
            )
    _check_constant(df, extra, covariates, codes_id)
    tv = _time_varying(df, extra, time_varying, codes_id)

    # ADDL expansion: extra dose records at TIME + k II (SS 0), after the records at their time
    base = pd.DataFrame(
        {
            "individual": codes_id,
            "time": t.to_numpy(),
            "evid": code.to_numpy(),
            "amt": np.where(is_dose, amount, 0.0),
            "cmt": compartment.to_numpy().astype(np.int64),
            "rate": np.where(is_dose, infusion, 0.0),
            "ii": interval.to_numpy(),
            "ss": steady.to_numpy().astype(np.int64),
            "endpoint": endpoint,
            "row": np.asarray(df.index),
            "addl": False,
            "order": order.to_numpy(),
            "late": 0,
        }
    )
    base = pd.concat([base, tv.reset_index(drop=True)], axis=1)
    pieces = [base]
    for k_row in np.flatnonzero(is_dose.to_numpy() & (n_addl.to_numpy() > 0)):
        n = int(n_addl.iloc[k_row])
        rec = base.iloc[[k_row] * n].copy()
        rec["time"] = rec["time"].to_numpy() + interval.iloc[k_row] * np.arange(1, n + 1)
        rec["ss"], rec["addl"], rec["late"] = 0, True, 1
        rec["evid"] = 1
        rec[list(tv.columns)] = np.nan
        pieces.append(rec)
    table = pd.concat(pieces, ignore_index=True).sort_values(
        ["individual", "time", "late", "order"], kind="stable"
    )
    if len(tv.columns):
        table[list(tv.columns)] = table.groupby("individual")[list(tv.columns)].ffill()
    events = EventTable(
        ids=np.asarray(unique_ids),
        individual=table["individual"].to_numpy(np.int64),
        time=table["time"].to_numpy(np.float64),
        evid=table["evid"].to_numpy(np.int64),
        amt=table["amt"].to_numpy(np.float64),
        cmt=table["cmt"].to_numpy(np.int64),
        rate=table["rate"].to_numpy(np.float64),
        ii=table["ii"].to_numpy(np.float64),
        ss=table["ss"].to_numpy(np.int64),
        endpoint=table["endpoint"].to_numpy(np.int64),
        row=np.array(table["row"].tolist() + [None], dtype=object)[:-1],  # labels as Python objects, 1-D
        endpoints=endpoints,
        covariates=table[list(tv.columns)].reset_index(drop=True).astype(np.float64),
        addl=table["addl"].to_numpy(bool),
    )
    position = np.zeros(len(df), dtype=np.float64)
    originals = ~table["addl"].to_numpy(bool)
    position[table["order"].to_numpy()[originals]] = (
        table.groupby("individual").cumcount().to_numpy()[originals]
    )
    obs = pd.DataFrame(
        {
            cols["id"]: ids,
            cols["time"]: t,
            ENDPOINT_COLUMN: endpoint.astype(np.float64),
            INDEX_COLUMN: codes_id.astype(np.float64),
            RECORD_COLUMN: position,
            cols.get("dv", dv): y,
        },
        index=df.index,
    )
    for c in covariates:
        obs[c] = df[extra[c]]
    if censored is not None:
        obs[cols["censoring"]] = censored
    return obs.loc[observed.to_numpy()], events


def _factorize_ids(ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes in sorted id order (order of appearance when ids do not sort together)."""
    try:
        codes, uniques = pd.factorize(ids, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(ids)
    return codes.astype(np.int64), np.asarray(uniques)


def _endpoints(
    df: pd.DataFrame, cols: dict[str, str], observed: pd.Series
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Endpoint code of each record (-1 off observations) and the endpoint names (DVID values as
    text, sorted; one endpoint "1" without a DVID column)."""
    if "dvid" not in cols:
        return np.where(observed, 0, -1).astype(np.int64), ("1",)
    values = df[cols["dvid"]]
    bad = observed & values.isna()
    if bad.any():
        raise _error(cols["dvid"], "is missing on an observation record", values, bad)
    text = values.map(_endpoint_name)
    names = tuple(sorted(pd.unique(text[observed]), key=lambda s: (len(s), s)))
    lookup = {name: k for k, name in enumerate(names)}
    code = np.array([lookup[s] if o else -1 for s, o in zip(text, observed)], dtype=np.int64)
    return code, names or ("1",)


def _endpoint_name(value: Any) -> str:
    """A DVID value as text: whole numbers without a decimal point (2.0 -> "2")."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _check_constant(
    df: pd.DataFrame, extra: dict[str, str], covariates: list[str], codes: np.ndarray
) -> None:
    for c in covariates:
        values = df[extra[c]]
        if values.isna().any():
            raise _error(extra[c], "has a missing covariate value", values, values.isna())
        first = values.groupby(codes).transform("first")
        bad = (values != first).to_numpy()
        if bad.any():
            row = show(values.index[np.flatnonzero(bad)[0]])
            raise InputError(
                f"covariate {c!r} varies within an individual: row {row} has value "
                f"{show(values[bad].iloc[0])}; give it as time_varying=[{c!r}]"
            )


def _time_varying(
    df: pd.DataFrame, extra: dict[str, str], columns: list[str], codes: np.ndarray
) -> pd.DataFrame:
    """Time-varying covariates as float, missing values carried forward within an individual; a
    missing value on an individual's first record is an error."""
    out = pd.DataFrame(index=df.index)
    for c in columns:
        values = _float(df, extra[c])
        filled = values.groupby(codes).ffill()
        if filled.isna().any():
            raise _error(
                extra[c],
                "is missing on an individual's first record (nothing to carry forward)",
                values,
                filled.isna(),
            )
        out[c] = filled
    return out


def describe(events: EventTable) -> dict[str, Any]:
    """Counts of records by kind and the individuals without observations (for reports)."""
    out: dict[str, Any] = dict(events.counts())
    out["individuals_without_observations"] = events.individuals_without_observations()
    return out


def event_time_column(x) -> str:
    """The time column of NONMEM records given as ``x`` ("TIME" when None): a name, or a list of
    one name; records take no other predictor (doses and covariates have their own columns)."""
    if x is None:
        return "TIME"
    if isinstance(x, str):
        return x
    cols = list(x)
    if len(cols) != 1 or not isinstance(cols[0], str):
        raise InputError(
            f"x={cols!r}: with dosing records (a dynamic model on NONMEM columns) x names the "
            "time column only, e.g. x='TIME'; doses, compartments and covariates have their own "
            "columns (AMT, CMT, covariates=)"
        )
    return cols[0]
