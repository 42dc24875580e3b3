"""`EventTable`: the event records of NONMEM-style data (doses, observations, resets, other), after
ADDL expansion, in time order within each individual, with time-varying covariates carried forward.

Plain numpy; :meth:`EventTable.padded` gives the per-individual arrays (individuals x records) that
the dynamics engine (:mod:`pymixnn.model.dynamics`) turns into tensors. Built by
:func:`pymixnn.data.nonmem.read_nonmem` (``Data.from_nonmem``).

>>> import numpy as np
>>> table = EventTable(
...     ids=np.array([1]), individual=np.array([0, 0]), time=np.array([0.0, 1.0]),
...     evid=np.array([1, 0]), amt=np.array([100.0, 0.0]), cmt=np.array([1, 1]),
...     rate=np.zeros(2), ii=np.zeros(2), ss=np.zeros(2, dtype=int), endpoint=np.array([-1, 0]),
...     row=np.array([0, 1]), endpoints=("1",))
>>> table.padded()["amt"].tolist()
[[100.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["EventTable", "EVID_NAMES"]

EVID_NAMES = {0: "observation", 1: "dose", 2: "other", 3: "reset", 4: "reset and dose"}


@dataclass(frozen=True)
class EventTable:
    """Event records, one per row of the NONMEM table (plus one per ADDL dose), grouped by
    individual (``ids`` order) and sorted by time (ties in file order, ADDL doses after the records
    at their time).

    Fields (one value per record unless said): ``ids`` (the individuals, in order), ``individual``
    (0-based position in ``ids``), ``time``, ``evid`` (0-4), ``amt``, ``cmt`` (NONMEM compartment
    number), ``rate`` (0 bolus, > 0 infusion rate, -1 modeled rate, -2 modeled duration), ``ii``,
    ``ss`` (0, 1, 2), ``endpoint`` (code into ``endpoints`` on observation records, -1 elsewhere),
    ``row`` (the source row's label, for messages; ADDL doses carry their record's), ``endpoints``
    (endpoint names: the DVID values as text), ``covariates`` (time-varying covariates, one row per
    record, carried forward) and ``addl`` (True on doses made by ADDL expansion)."""

    ids: np.ndarray
    individual: np.ndarray
    time: np.ndarray
    evid: np.ndarray
    amt: np.ndarray
    cmt: np.ndarray
    rate: np.ndarray
    ii: np.ndarray
    ss: np.ndarray
    endpoint: np.ndarray
    row: np.ndarray
    endpoints: tuple[str, ...] = ("1",)
    covariates: pd.DataFrame = field(default_factory=pd.DataFrame)
    addl: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.time)
        if self.addl is None:
            object.__setattr__(self, "addl", np.zeros(n, dtype=bool))
        if self.covariates.shape[0] != n:
            object.__setattr__(self, "covariates", pd.DataFrame(index=pd.RangeIndex(n)))

    # ---- views --------------------------------------------------------------------------------
    @property
    def n_individuals(self) -> int:
        return len(self.ids)

    @property
    def is_dose(self) -> np.ndarray:
        return (self.evid == 1) | (self.evid == 4)

    @property
    def is_observation(self) -> np.ndarray:
        return self.endpoint >= 0

    @property
    def has_doses(self) -> bool:
        return bool(self.is_dose.any())

    @property
    def time_varying(self) -> list[str]:
        return [str(c) for c in self.covariates.columns]

    def individuals_without_observations(self) -> list[Any]:
        """Ids with records but no observation (kept for simulation and prediction)."""
        seen = np.zeros(self.n_individuals, dtype=bool)
        seen[self.individual[self.is_observation]] = True
        return [
            self.ids[i].item() if isinstance(self.ids[i], np.generic) else self.ids[i]
            for i in np.flatnonzero(~seen)
        ]

    def counts(self) -> dict[str, int]:
        """Records by kind: doses (ADDL doses included), ADDL doses, observations, resets, other."""
        return {
            "doses": int(self.is_dose.sum()),
            "addl_doses": int(self.addl.sum()),
            "observations": int(self.is_observation.sum()),
            "resets": int(((self.evid == 3) | (self.evid == 4)).sum()),
            "other": int((self.evid == 2).sum()),
            "steady_state_doses": int((self.ss > 0).sum()),
            "infusions": int((self.is_dose & (self.rate != 0)).sum()),
        }

    def padded(self) -> dict[str, np.ndarray]:
        """Per-individual arrays (N, K), K the most records of one individual: every field,
        ``valid`` (False on padding), ``obs_pos`` (the record's position among its individual's
        observations, -1 elsewhere) and ``covariates`` (N, K, C) carried forward into the padding."""
        n = self.n_individuals
        counts = np.bincount(self.individual, minlength=n)
        k = max(int(counts.max()) if n else 0, 1)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        pos = np.arange(len(self.time)) - starts[self.individual]
        out: dict[str, np.ndarray] = {"valid": np.zeros((n, k), dtype=bool)}
        out["valid"][self.individual, pos] = True
        for name in ("time", "amt", "rate", "ii"):
            values = getattr(self, name).astype(np.float64)
            arr = np.zeros((n, k))
            arr[self.individual, pos] = values
            out[name] = arr
        for name in ("evid", "cmt", "ss", "endpoint"):
            arr = np.full((n, k), -1 if name == "endpoint" else 0, dtype=np.int64)
            arr[self.individual, pos] = getattr(self, name)
            out[name] = arr
        obs = self.is_observation
        obs_pos = np.full(len(self.time), -1, dtype=np.int64)
        order = np.zeros(n, dtype=np.int64)
        for r in np.flatnonzero(obs):  # running count of observations per individual
            i = self.individual[r]
            obs_pos[r] = order[i]
            order[i] += 1
        out["obs_pos"] = np.full((n, k), -1, dtype=np.int64)
        out["obs_pos"][self.individual, pos] = obs_pos
        # padding repeats each individual's last time (zero-length steps)
        last = out["time"][np.arange(n), np.maximum(counts - 1, 0)]
        out["time"] = np.where(out["valid"], out["time"], last[:, None])
        cov = (
            self.covariates.to_numpy(dtype=np.float64)
            if self.covariates.shape[1]
            else np.zeros((len(self.time), 0))
        )
        arr = np.zeros((n, k, cov.shape[1]))
        arr[self.individual, pos] = cov
        if cov.shape[1]:
            fill = arr[np.arange(n), np.maximum(counts - 1, 0)]
            arr = np.where(out["valid"][..., None], arr, fill[:, None, :])
        out["covariates"] = arr
        return out

    def subset(self, ids: Iterable[Any]) -> EventTable:
        """The records of the given individuals (in the table's order)."""
        wanted = set(ids)
        keep_ind = np.array([i in wanted for i in self.ids.tolist()], dtype=bool)
        new_index = np.cumsum(keep_ind) - 1
        keep = keep_ind[self.individual]
        return replace(
            self,
            ids=self.ids[keep_ind],
            individual=new_index[self.individual[keep]],
            **{f: getattr(self, f)[keep] for f in _PER_RECORD if f != "individual"},
            covariates=self.covariates.loc[keep].reset_index(drop=True),
        )

    def to_frame(self, id: str = "ID") -> pd.DataFrame:
        """The records as a NONMEM-style DataFrame (ADDL expanded): ID, TIME, EVID, AMT, CMT, RATE,
        II, SS, DVID (endpoint name on observations), ADDL_DOSE and the time-varying covariates."""
        frame = pd.DataFrame(
            {
                id: self.ids[self.individual],
                "TIME": self.time,
                "EVID": self.evid,
                "AMT": self.amt,
                "CMT": self.cmt,
                "RATE": self.rate,
                "II": self.ii,
                "SS": self.ss,
                # object dtype: None off observations (pandas 3 would infer str with NaN)
                "DVID": pd.Series(
                    [self.endpoints[e] if e >= 0 else None for e in self.endpoint], dtype=object
                ),
                "ADDL_DOSE": self.addl,
            }
        )
        for c in self.covariates.columns:
            frame[c] = self.covariates[c].to_numpy()
        return frame

    def dose_compartments(self) -> list[int]:
        return sorted({int(c) for c in self.cmt[self.is_dose]})

    def modeled_rates(self) -> Sequence[int]:
        """The RATE codes -1 / -2 used by dose records."""
        return sorted({int(r) for r in self.rate[self.is_dose] if r < 0})


_PER_RECORD = ("individual", "time", "evid", "amt", "cmt", "rate", "ii", "ss", "endpoint", "row", "addl")
