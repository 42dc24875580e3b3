"""Exact JSON encoding of results: numpy arrays, pandas frames, numpy scalars, NaN.

Python's json writes floats with ``repr``, which round-trips float64 exactly; arrays and frames are
tagged so that ``decode(encode(obj))`` restores their dtype, shape, index and column order.

>>> import numpy as np
>>> a = np.array([[0.1, np.nan], [1e-300, 2.0]])
>>> b = decode(json.loads(json.dumps(encode(a))))
>>> bool(np.array_equal(a, b, equal_nan=True)) and b.dtype == a.dtype
True
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["encode", "decode", "read_record"]


def _column(values: pd.Series | pd.Index) -> dict:
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return {
            "__column__": [encode(v) for v in values.astype(object)],
            "dtype": "category",
            "categories": [encode(v) for v in dtype.categories],
        }
    return {"__column__": [encode(v) for v in values.tolist()], "dtype": str(dtype)}


def _restore_column(spec: dict) -> pd.Series:
    values = [decode(v) for v in spec["__column__"]]
    if spec["dtype"] == "category":
        return pd.Series(pd.Categorical(values, categories=[decode(c) for c in spec["categories"]]))
    return pd.Series(values, dtype=spec["dtype"] if spec["dtype"] != "object" else object)


def encode(obj: Any) -> Any:
    """A JSON-serializable, tagged version of ``obj``."""
    if isinstance(obj, pd.DataFrame):
        return {
            "__frame__": {str(c): _column(obj[c]) for c in obj.columns},
            "columns": [str(c) for c in obj.columns],
            "index": _column(obj.index),
        }
    if isinstance(obj, np.ndarray):
        return {
            "__ndarray__": [encode(v) for v in obj.ravel().tolist()],
            "dtype": str(obj.dtype),
            "shape": list(obj.shape),
        }
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, np.generic):
        return encode(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return {"__float__": repr(obj)}
    return obj


def read_record(path: str | PathLike[str], kind: str = "pymixnn results") -> dict:
    """The decoded JSON object saved at ``path``. A missing file is Python's FileNotFoundError
    (naming the path); a file that is not such a record (not JSON, not UTF-8, not an object, or
    malformed tags) is a one-line ValueError naming the file and, for JSON, the line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"not a {kind} file: {path} is not UTF-8 text (byte "
            f"{err.object[err.start : err.start + 1]!r} at position {err.start})"
        ) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"not a {kind} file: {path}: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(f"not a {kind} file: {path} holds a JSON {type(raw).__name__}, not an object")
    try:
        return decode(raw)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ValueError(
            f"not a {kind} file: {path} has a malformed entry ({type(err).__name__}: {err})"
        ) from None


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__frame__" in obj:
        frame = pd.DataFrame(
            {
                c: _restore_column(obj["__frame__"][c]).to_numpy()
                if obj["__frame__"][c]["dtype"] != "category"
                else _restore_column(obj["__frame__"][c]).array
                for c in obj["columns"]
            }
        )
        frame.index = pd.Index(_restore_column(obj["index"]))
        for c in obj["columns"]:
            spec = obj["__frame__"][c]
            if spec["dtype"] not in ("category", "object"):
                frame[c] = frame[c].astype(spec["dtype"])
        return frame
    if "__ndarray__" in obj:
        values = [decode(v) for v in obj["__ndarray__"]]
        return np.array(values, dtype=obj["dtype"]).reshape(obj["shape"])
    if "__tuple__" in obj:
        return tuple(decode(v) for v in obj["__tuple__"])
    if "__float__" in obj:
        return float(obj["__float__"])
    return {k: decode(v) for k, v in obj.items()}
