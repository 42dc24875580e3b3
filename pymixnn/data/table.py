"""Data: a validated long table of longitudinal observations.

One row per observation: an individual id, one or more regressors ``x``
(time, dose, ...), a response ``y`` and optional individual-level covariates.
Validation happens when a :class:`Data` is built, before any model or inference
code runs (:mod:`pymixnn.data.checks`), and every error names the column, the
first offending row (by its DataFrame index label) and the value found there.
x columns given as dates are converted to elapsed time (:mod:`pymixnn.data.dates`).

Example
-------
>>> import pandas as pd
>>> from pymixnn.data.table import Data
>>> df = pd.DataFrame({"id": [1, 1, 2, 2], "t": [0.0, 1.0, 0.0, 1.0],
...                    "y": [1.0, 2.0, 1.5, 2.5], "w": [60, 60, 70, 70]})
>>> data = Data.from_pandas(df, id="id", x="t", y="y", covariates=["w"])
>>> data
Data: 2 individuals, 4 observations, x=['t'], y='y', covariates=['w']
>>> data.padded()[0].shape
(2, 2, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.data.checks import as_float, validate_long_table
from pymixnn.data.dates import TIME_UNITS, elapsed, is_datetime, since  # noqa: F401 (TIME_UNITS: former home)
from pymixnn.data.events import EventTable
from pymixnn.data.nonmem import read_nonmem

__all__ = ["Data"]


class Data:
    """A validated long table: id, x columns, y and individual-level covariates.

    Build it with :meth:`from_pandas`, :meth:`from_csv` or :meth:`from_nonmem`; the constructor
    takes a frame that is already validated and grouped by individual.

    Parameters
    ----------
    frame : pandas.DataFrame
        The kept rows (original index labels), columns id, x..., y, covariates..., grouped by
        individual in sorted id order, rows within an individual in their original order.
    id_col, x_cols, y_col, covariate_cols : str, list of str, str, list of str
        Column names of each role.
    n_dropped : int, default 0
        Rows with a missing y dropped from the source table (``dropna=True``).
    aux_cols : dict of str to str, optional
        Observation-level columns by role (``"trials"``, ``"censored"``, ``"endpoint"``).
    source_positions : numpy.ndarray of int, optional
        Each row's position in the source table (default: ``frame`` is in the user's order).
    time_unit : str, optional
        Unit of the x columns given as dates (``time_unit=`` of :meth:`from_pandas`).
    time_origins : dict, optional
        Origin (earliest date) of each x column given as dates.
    events : EventTable, optional
        The event records of NONMEM-style data (:meth:`from_nonmem`); None for a plain table.

    Returns
    -------
    Data
        The table and its arrays: ``frame`` and the constructor's other arguments, ``ids`` (unique
        ids in sorted order; order of first appearance for ids that do not sort together),
        ``n_individuals``, ``n_obs``, ``index`` (0-based individual index of each row, int64),
        ``x`` (n_obs x n_x float64), ``y`` (float64), ``covariates`` (one row per individual,
        indexed by id, covariate columns in their original dtype), ``n_obs_per_individual``, and
        ``user_order`` (position in ``frame`` of each row in the user's row order:
        ``frame.iloc[user_order]`` is the source table's order, see :meth:`to_user_order`).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        id_col: str,
        x_cols: list[str],
        y_col: str,
        covariate_cols: list[str],
        n_dropped: int = 0,
        aux_cols: dict[str, str] | None = None,
        source_positions: np.ndarray | None = None,
        time_unit: str | None = None,
        time_origins: dict | None = None,
        events: EventTable | None = None,
    ) -> None:
        self.id_col = id_col
        self.events = events
        self.x_cols = list(x_cols)
        self.y_col = y_col
        self.covariate_cols = list(covariate_cols)
        self.frame = frame
        self.n_dropped = int(n_dropped)
        self.aux_cols = dict(aux_cols or {})
        self.time_unit = time_unit
        self.time_origins = dict(time_origins or {})
        if source_positions is None:  # a frame already in the user's order
            source_positions = np.arange(len(frame), dtype=np.int64)
        source_positions = np.asarray(source_positions, dtype=np.int64)
        if source_positions.shape != (len(frame),):
            raise ValueError("source_positions must give one position per row of frame")
        self.user_order = np.argsort(source_positions, kind="stable")

        codes, uniques = pd.factorize(frame[id_col])
        if np.any(np.diff(codes) < 0):
            raise ValueError("frame must be grouped by individual; build Data with Data.from_pandas")
        self.index = codes.astype(np.int64)
        self.ids = np.asarray(uniques)
        self.n_individuals = len(self.ids)
        self.n_obs = len(frame)
        counts = np.bincount(self.index, minlength=self.n_individuals)
        self.n_obs_per_individual = counts.astype(np.int64)
        # owned, writable copies (under pandas 3 a frame's arrays are read-only views)
        owned = lambda col: frame[col].to_numpy(dtype=np.float64, copy=True)
        self.x, self.y = owned(self.x_cols), owned(y_col)
        self.aux = {role: owned(col) for role, col in self.aux_cols.items()}

        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.covariates = (
            frame[self.covariate_cols].iloc[self._starts].set_axis(pd.Index(self.ids, name=id_col))
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pandas(
        cls,
        df: pd.DataFrame,
        *,
        id: str,
        x: str | Sequence[str],
        y: str,
        covariates: Sequence[str] | None = None,
        dropna: bool = False,
        aux: dict[str, str] | None = None,
        time_unit: str | None = None,
    ) -> Data:
        """Validate a long DataFrame and build a :class:`Data`.

        Parameters
        ----------
        df
            One row per observation.
        id
            Column identifying the individual.
        x
            Regressor column(s), e.g. ``["Dose", "Time"]``; numeric, finite.
        y
            Response column; numeric, finite (missing values only with ``dropna``).
        covariates
            Individual-level covariate columns, constant within an individual;
            numeric or categorical (strings, pandas Categorical, bool).
        dropna
            Drop rows with a missing ``y`` (with a warning) instead of failing.
        aux
            Observation-level columns of the observation model by role, e.g.
            ``{"trials": "leaves"}`` (binomial) or ``{"censored": "blq"}`` (M3
            censoring); numeric, finite.
        time_unit
            Unit of the elapsed time of x columns given as dates (datetime64 or
            timestamps): "s", "min", "h", "d" or "w". Each such column becomes
            the time since its earliest date (``time_origins``), stated in the
            repr; :meth:`x_matrix` converts new data the same way. A date column
            without ``time_unit`` is an error.

        Raises
        ------
        TypeError
            If ``df`` is not a DataFrame.
        ValueError
            On missing columns, a column used in two roles, an empty frame,
            missing ids, non-numeric or non-finite x/y, missing covariates,
            an individual left without observations, or a covariate that
            varies within an individual.
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        x_cols = [x] if isinstance(x, str) else list(x)
        covariate_cols = [] if covariates is None else list(covariates)
        aux_cols = dict(aux or {})
        valid = validate_long_table(
            df,
            id=id,
            x_cols=x_cols,
            y=y,
            covariate_cols=covariate_cols,
            aux_cols=aux_cols,
            dropna=dropna,
            time_unit=time_unit,
        )
        return cls(
            valid.frame,
            id_col=id,
            x_cols=x_cols,
            y_col=y,
            covariate_cols=covariate_cols,
            n_dropped=valid.n_dropped,
            aux_cols=aux_cols,
            source_positions=valid.source_positions,
            time_unit=time_unit if valid.time_origins else None,
            time_origins=valid.time_origins,
        )

    @classmethod
    def from_csv(
        cls,
        path: str | PathLike[str],
        *,
        id: str,
        x: str | Sequence[str],
        y: str,
        covariates: Sequence[str] | None = None,
        dropna: bool = False,
        encoding: str = "utf-8",
    ) -> Data:
        """Read a CSV file with :func:`pandas.read_csv` (in ``encoding``, e.g. "latin-1" for
        files from older spreadsheets); validate it as :meth:`from_pandas` does."""
        try:
            frame = pd.read_csv(path, encoding=encoding)
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path}: not readable as {encoding} (it holds the byte "
                f"{err.object[err.start : err.start + 1]!r}); pass the file's encoding, e.g. "
                "encoding='latin-1'"
            ) from None
        return cls.from_pandas(frame, id=id, x=x, y=y, covariates=covariates, dropna=dropna)

    @classmethod
    def from_nonmem(
        cls,
        df: pd.DataFrame,
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
    ) -> Data:
        """NONMEM-style event data: dose, observation, reset and other records in one table.

        Column names are matched case-insensitively; absent optional columns take NONMEM's
        defaults (:mod:`pymixnn.data.nonmem`). EVID 0 observation, 1 dose, 2 other, 3 reset,
        4 reset and dose; ADDL/II expanded; SS 1/2 with II; RATE > 0 infusions, -1 / -2 rate /
        duration given by the model's parameters; DVID names the endpoint of each observation.
        ``covariates`` are individual-level (constant within an individual); ``time_varying``
        ones are carried forward from record to record (LOCF) and reach the model's equations.
        ``censoring`` flags observations below the limit of quantification (1, DV holding the
        limit; BLQ, nlmixr2's CENS): the auxiliary role "censored" (M3 likelihood).

        The observations (EVID 0, MDV 0) are the rows of the Data: x columns are
        (time, ``DVID`` endpoint code, ``_individual`` and ``_record``: the individual's and the
        record's positions in the event table), y is DV; :attr:`events` holds every
        record. Individuals with records but no observation stay in :attr:`events` (for
        simulation) and are listed by ``events.individuals_without_observations()``.
        """
        obs, events = read_nonmem(
            df,
            id=id,
            time=time,
            dv=dv,
            amt=amt,
            evid=evid,
            cmt=cmt,
            rate=rate,
            ii=ii,
            addl=addl,
            ss=ss,
            mdv=mdv,
            dvid=dvid,
            covariates=covariates,
            time_varying=time_varying,
            censoring=censoring,
        )
        if obs.empty:
            raise ValueError("the NONMEM table has no observation record (EVID 0 with MDV 0 and a DV)")
        id_col, time_col, end_col, idx_col, rec_col, y_col = list(obs.columns[:6])
        positions = np.arange(len(obs))
        order = np.argsort(obs[idx_col].to_numpy(), kind="stable")
        return cls(
            obs.iloc[order],
            id_col=str(id_col),
            x_cols=[str(time_col), str(end_col), str(idx_col), str(rec_col)],
            y_col=str(y_col),
            covariate_cols=[str(c) for c in obs.columns[6 : len(obs.columns) - (censoring is not None)]],
            source_positions=positions[order],
            aux_cols={"endpoint": str(end_col)}  # the endpoint code of each observation
            | ({"censored": str(obs.columns[-1])} if censoring is not None else {}),
            events=events,
        )

    # ------------------------------------------------------------------ views
    def row_positions(self) -> np.ndarray:
        """Position in ``frame`` of each padded cell, shape (N, max n_i); -1 for padding."""
        t_max = int(self.n_obs_per_individual.max())
        positions = np.full((self.n_individuals, t_max), -1, dtype=np.int64)
        rows = np.arange(self.n_obs, dtype=np.int64)
        positions[self.index, rows - self._starts[self.index]] = rows
        return positions

    def padded_aux(self, role: str, fill: float = 0.0) -> np.ndarray:
        """An auxiliary column (``aux`` role) padded as y, (N, T); ``fill`` on padding."""
        mask = self.row_positions() >= 0
        out = np.full(mask.shape, fill, dtype=np.float64)
        out[mask] = self.aux[role]
        return out

    def padded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Observations padded per individual.

        Returns ``(x_pad, y_pad, mask)`` of shapes (N, T, n_x), (N, T) and (N, T),
        with T the largest number of observations of one individual; individual
        i's observations fill positions ``0..n_i-1`` in frame order, padding is 0
        and ``mask`` is True on observed cells.
        """
        mask = self.row_positions() >= 0
        x_pad = np.zeros((*mask.shape, len(self.x_cols)), dtype=np.float64)
        y_pad = np.zeros(mask.shape, dtype=np.float64)
        # Cells of ``mask`` in row-major order are exactly the rows of ``frame``.
        x_pad[mask] = self.x
        y_pad[mask] = self.y
        return x_pad, y_pad, mask

    def subset(self, ids: Iterable[Any]) -> Data:
        """Data restricted to the given individuals (kept in their original order)."""
        wanted = list(ids)
        known = set(self.ids.tolist())
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise ValueError(f"unknown id(s) {unknown[:5]}; data has {self.n_individuals} individuals")
        if not wanted:
            raise ValueError("subset needs at least one id")
        keep = self.frame[self.id_col].isin(wanted).to_numpy()
        frame = self.frame.loc[keep]
        source = np.empty(self.n_obs, dtype=np.int64)
        source[self.user_order] = np.arange(self.n_obs)
        return type(self)(
            frame,
            id_col=self.id_col,
            x_cols=self.x_cols,
            y_col=self.y_col,
            covariate_cols=self.covariate_cols,
            n_dropped=self.n_dropped,
            aux_cols=self.aux_cols,
            source_positions=source[keep],
            time_unit=self.time_unit,
            time_origins=self.time_origins,
            events=self.events,  # whole: the x column INDEX_COLUMN points into it
        )

    # ------------------------------------------------------------------ the user's order
    def user_frame(self) -> pd.DataFrame:
        """The kept rows in the user's row order, with the user's index labels."""
        return self.frame.iloc[self.user_order]

    def to_user_order(self, values: np.ndarray, name: str | None = None) -> pd.Series:
        """Per-row values in ``frame`` order as a Series in the user's row order, indexed by the
        user's row labels (so it aligns with the source DataFrame)."""
        values = np.asarray(values)
        if values.shape[:1] != (self.n_obs,):
            raise ValueError(f"expected one value per observation ({self.n_obs}), got shape {values.shape}")
        return pd.Series(values[self.user_order], index=self.frame.index[self.user_order], name=name)

    # ------------------------------------------------------------------ dates as elapsed time
    def _since(self, column: str) -> str:
        """ "days since 2021-03-04 00:00" for an x column given as dates."""
        return since(self.time_origins[column], self.time_unit)

    def time_label(self, column: str) -> str:
        """An axis label: the column, with its unit and origin when it was given as dates
        ("date (days since 2021-03-04 00:00)")."""
        return f"{column} ({self._since(column)})" if column in self.time_origins else str(column)

    def time_conversions(self) -> list[str]:
        """One line per x column given as dates, e.g. "x 'date' converted to days since
        2021-03-04 00:00"."""
        return [f"x {column!r} converted to {self._since(column)}" for column in self.time_origins]

    def x_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The x columns of a new table (prediction data, grids) as float64, shape (n, n_x); a
        column given as dates in the fit is converted with the fit's origin and unit (numbers in
        it are taken as elapsed time already)."""
        out = np.empty((len(frame), len(self.x_cols)), dtype=np.float64)
        for j, column in enumerate(self.x_cols):
            if is_datetime(frame[column]):
                if column not in self.time_origins:
                    raise ValueError(
                        f"x column {column!r} holds dates, but it was numeric in the fitted data"
                    )
                out[:, j] = elapsed(frame[column], column, self.time_origins[column], self.time_unit)
            else:
                out[:, j] = as_float(frame, column).to_numpy()
        return out

    def __repr__(self) -> str:
        if self.events is not None:
            c = self.events.counts()
            return (
                f"Data (NONMEM events): {self.n_individuals} individuals, {self.n_obs} observations, "
                f"{c['doses']} doses ({c['addl_doses']} from ADDL), endpoints={list(self.events.endpoints)}, "
                f"covariates={self.covariate_cols}, time_varying={self.events.time_varying}"
            )
        return (
            f"Data: {self.n_individuals} individuals, {self.n_obs} observations, "
            f"x={self.x_cols}, y={self.y_col!r}, covariates={self.covariate_cols}"
        ) + "".join(f"; {line}" for line in self.time_conversions())
