"""A long table's records as padded per-individual arrays (the neural estimator's input).

>>> import pandas as pd
>>> df = pd.DataFrame({"id": [1, 1, 2], "t": [0.0, 1.0, 0.0], "y": [1.0, 2.0, 3.0]})
>>> rec = pad_records(df, id="id", x=["t"], y="y")
>>> rec.x.shape, rec.mask.tolist()
((2, 2, 1), [[True, True], [True, False]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pymixnn.validation import InputError
from pymixnn.validation.errors import show_value

__all__ = ["PaddedRecords", "pad_records"]


@dataclass(frozen=True)
class PaddedRecords:
    """Individuals in order of first appearance, their records in table order, padded to the
    longest: x (N, T, q), y (N, T) or None, mask (N, T); ``ids`` (N,)."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray | None
    mask: np.ndarray

    @property
    def n_individuals(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_records(self) -> int:
        return int(self.mask.shape[1])


def _column(df: pd.DataFrame, name: str, what: str) -> np.ndarray:
    if name not in df.columns:
        raise InputError(f"{what} column {name!r} is not in the data; columns are {list(df.columns)}")
    values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{what} column {name!r} has {int(bad.sum())} missing or non-numeric value(s), the first at row "
            f"{show_value(df.index[row])} ({show_value(df[name].iloc[row])})"
        )
    return values


def pad_records(df: pd.DataFrame, *, id: str, x: Sequence[str], y: str | None) -> PaddedRecords:
    """Pad ``df``'s records per individual; every value of the x (and y) columns must be a finite
    number (an error names the column and the first bad row)."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise InputError("the data have no rows")
    if id not in df.columns:
        raise InputError(f"id column {id!r} is not in the data; columns are {list(df.columns)}")
    if df[id].isna().any():
        row = int(np.flatnonzero(df[id].isna().to_numpy())[0])
        raise InputError(f"id column {id!r} is missing at row {show_value(df.index[row])}")
    xs = np.column_stack([_column(df, c, "x") for c in x])
    ys = _column(df, y, "y") if y is not None else None
    codes, ids = pd.factorize(df[id], sort=False)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(ids))
    n, t = len(ids), int(counts.max())
    pos = np.arange(len(df)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows, cols = codes[order], pos
    xp = np.zeros((n, t, xs.shape[1]))
    xp[rows, cols] = xs[order]
    # padded slots repeat the individual's last record (a valid x for the model), masked out
    last = np.cumsum(counts) - 1
    for k in range(t):
        fill = counts <= k
        xp[fill, k] = xs[order][last[fill]]
    mask = np.zeros((n, t), dtype=bool)
    mask[rows, cols] = True
    yp = None
    if ys is not None:
        yp = np.zeros((n, t))
        yp[rows, cols] = ys[order]
    return PaddedRecords(np.asarray(ids), xp, yp, mask)
