"""`EventFunction`: a dynamic model's structural function bound to an event table.

It has the ``f(psi, x)`` signature of every structural model, so the inference layer treats it like
a closed-form curve: x (B, T, 4) holds, per requested cell, the time, the endpoint code, the
individual's position in the event table and the record's position among its records (-1 for a
time of one's own, e.g. a prediction grid). The event records of the batch's individuals are
gathered from tensors made once per dtype and device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pymixnn.data.events import EventTable
from pymixnn.model.dynamics.engine import DynamicsError, solve_records
from pymixnn.model.dynamics.ode import ODESolveFailure
from pymixnn.model.dynamics.superposition import superpose_boluses
from pymixnn.model.dynamics.system import System, dosing_table
from pymixnn.validation import InputError
from pymixnn.validation.errors import show_value

__all__ = ["EventFunction", "check_events"]


def check_events(system: System, events: EventTable, name: str) -> np.ndarray:
    """Errors naming the row and value: a dose into a compartment the model lacks, RATE = -1 / -2
    without the model's rate / duration parameter, an endpoint without an output. Returns the map
    data endpoint code -> output index."""
    dose = events.is_dose
    for cmt, row in zip(events.cmt[dose], events.row[dose]):
        if int(cmt) not in system.dose_to:
            raise InputError(
                f"column CMT: row {row!r} doses compartment {int(cmt)}, but model {name!r} has compartments "
                f"{system.describe_compartments()}"
            )
    for code, key, what in (
        (-1, "rate", "RATE = -1 (modeled rate)"),
        (-2, "duration", "RATE = -2 (modeled duration)"),
    ):
        at = dose & (events.rate == code)
        for cmt, row in zip(events.cmt[at], events.row[at]):
            d = system.dosing.get(int(cmt))
            if d is None or getattr(d, key) is None:
                raise InputError(
                    f"column RATE: row {row!r} has {what} into compartment {int(cmt)}, but model "
                    f"{name!r} has no {key} parameter for it "
                    f"(give {key}=True or {key}={{{int(cmt)}: 'name'}})"
                )
    outputs = list(system.endpoints)
    if len(outputs) == 1 and len(events.endpoints) == 1:
        return np.zeros(1, dtype=np.int64)
    if not events.is_observation.any():  # records without observations (a regimen): every output
        return np.arange(len(outputs), dtype=np.int64)
    mapping = []
    for e in events.endpoints:
        if e not in outputs:
            row = events.row[events.endpoint == events.endpoints.index(e)][0]
            raise InputError(
                f"endpoint {e!r} (column DVID) has no output in model {name!r}: row {row!r} has DVID "
                f"{e!r}; its outputs are {outputs}"
            )
        mapping.append(outputs.index(e))
    return np.asarray(mapping, dtype=np.int64)


class EventFunction:
    """``f(psi, x)`` of ``system`` on the records of ``events`` (see module docstring)."""

    def __init__(
        self,
        system: System,
        events: EventTable,
        name: str = "dynamic",
        max_overlap: int = 4,
        tolerate_failures: bool = False,
    ):
        self.system, self.events, self.name = system, events, name
        self.tolerate_failures = tolerate_failures
        self.__name__ = name
        self.endpoint_map = check_events(system, events, name)
        n_cmt = max([*system.dose_to, *(int(c) for c in events.cmt)] or [1])
        self.dosing = dosing_table(system.dosing, system.parameters, n_cmt)
        table = torch.full((n_cmt + 1,), -1, dtype=torch.long)
        for cmt in system.dose_to:
            table[cmt] = system.dose_state(cmt)
        self.dose_state = table
        self.max_overlap = max_overlap
        self._padded = events.padded()
        # the covariates the model reads, in its order (an ODE's rhs gets them by name)
        names = list(getattr(system, "covariate_names", ()))
        missing = [c for c in names if c not in events.time_varying]
        if missing:
            raise InputError(
                f"model {name!r} reads the time-varying covariates {missing}, which the event data lack "
                f"(their time-varying covariates: {events.time_varying}); build the data with "
                f"Data.from_nonmem(..., time_varying={names})"
            )
        self._padded["covariates"] = self._padded["covariates"][
            ..., [events.time_varying.index(c) for c in names]
        ]
        self._cache: dict[Any, dict[str, torch.Tensor]] = {}
        counts = events.counts()
        # boluses only into a linear compartment model: the compact superposition
        # boluses only (steady-state ones and resets included) into a linear compartment model:
        # the compact superposition over the dose records
        self.bolus_only = hasattr(system, "modes") and not counts["infusions"]
        self._steady_lags = _steady_lags(system, events, self._padded)
        if self.bolus_only:
            self._doses = _compact_doses(self._padded)
            self._resets = _compact_resets(self._padded)

    def records(self, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        key = (dtype, str(device))
        if key not in self._cache:
            out = {}
            for name, arr in self._padded.items():
                if arr.dtype == bool:
                    out[name] = torch.as_tensor(arr, device=device)
                elif np.issubdtype(arr.dtype, np.integer):
                    out[name] = torch.as_tensor(arr, dtype=torch.long, device=device)
                else:
                    out[name] = torch.as_tensor(arr, dtype=dtype, device=device)
            self._cache[key] = out
        return self._cache[key]

    def __call__(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one request per row (the results' evaluator): psi (n, P), x (n, 4)
            return self._rows(psi, x)
        individual = x[..., 0, 2].long()
        if self._steady_lags is not None:
            self._check_steady_lags(psi, individual)
        if self.bolus_only and psi.shape[-2] == 1:
            return self._boluses(psi[..., 0, :], x, individual)
        rec_all = self.records(psi.dtype, psi.device)
        rec = {k: v[individual] for k, v in rec_all.items()}
        request = {
            "time": x[..., 0].to(psi.dtype),
            "endpoint": x[..., 1].long(),
            "record": x[..., 3].long(),
        }
        try:
            return solve_records(
                self.system,
                rec,
                psi,
                self.dosing,
                self.dose_state,
                torch.as_tensor(self.endpoint_map),
                request,
                self.max_overlap,
            )
        except ODESolveFailure:
            if not self.tolerate_failures:
                raise
            return self._split(psi, x, request["time"].shape)

    def _check_steady_lags(self, psi: torch.Tensor, individual: torch.Tensor) -> None:
        """A steady-state dose whose lag time exceeds its II: an error naming the individual and
        the row (:func:`pymixnn.model.dynamics.engine.check_steady_lag`)."""
        mask, param, ii, rows = self._steady_lags
        ind = individual.cpu().numpy()
        m = torch.as_tensor(mask[ind])
        if not bool(m.any()):
            return
        lead = psi.shape[:-3]
        p = torch.as_tensor(param[ind], device=psi.device)
        values = psi.detach()
        if values.shape[-2] == 1:
            values = values.expand(*lead, values.shape[-3], p.shape[-1], values.shape[-1])
        lag = values.gather(-1, p.expand(*lead, *p.shape).unsqueeze(-1)).squeeze(-1)
        bad = (m & (lag > torch.as_tensor(ii[ind], dtype=lag.dtype, device=lag.device))).reshape(-1, *p.shape)
        if bool(bad.any()):
            d, b, k = bad.nonzero()[0].tolist()
            raise DynamicsError(
                f"individual {show_value(self.events.ids[ind[b]])}: the steady-state dose of row "
                f"{show_value(rows[ind[b], k])} "
                f"(SS = 1 or 2, II {ii[ind[b], k]:.6g}) has lag time "
                f"{float(lag.reshape(-1, *p.shape)[d, b, k]):.6g}, longer than its II: the doses of its "
                "series still to be absorbed after the record are not supported; give the doses before it "
                "as records (ADDL) instead of SS"
            )

    def _split(self, psi: torch.Tensor, x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """A failed batch solved again in halves (individuals first, then the leading draws), so
        that only the cells whose solve fails are NaN: one stiff importance draw made a whole
        chunk of 100 individuals x 100 draws NaN, and the refinement's log-likelihood
        non-finite (the turnover model, 5 random effects). A single cell that fails is NaN,
        still in the graph (a NaN gradient is zeroed and counted by SVI; a line search steps
        back from a non-finite value). Each failed solve is counted (``ode_failures``)."""
        n = psi.shape[-3]
        if n > 1 and x.shape[0] == n:
            h = n // 2
            return torch.cat([self(psi[..., :h, :, :], x[:h]), self(psi[..., h:, :, :], x[h:])], dim=-2)
        if psi.dim() > 3 and psi.shape[0] > 1:
            h = psi.shape[0] // 2
            return torch.cat([self(psi[:h], x), self(psi[h:], x)], dim=0)
        nan = psi.sum((-2, -1)) * float("nan")
        return nan.unsqueeze(-1).expand(*psi.shape[:-3], *shape)

    def _rows(self, psi: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Rows grouped by individual into the padded layout and back; a row whose time is not
        its record's time (a grid point) is a time of its own (record -1)."""
        ind = x[:, 2].long().cpu().numpy()
        order = np.argsort(ind, kind="stable")
        uniq, start, counts = np.unique(ind[order], return_index=True, return_counts=True)
        T = int(counts.max()) if len(counts) else 1
        slot = np.arange(len(ind)) - np.repeat(start, counts)
        xp = torch.zeros(len(uniq), T, 4, dtype=psi.dtype, device=psi.device)
        o = torch.as_tensor(order, device=psi.device)
        b = torch.as_tensor(np.repeat(np.arange(len(uniq)), counts), device=psi.device)
        j = torch.as_tensor(slot, device=psi.device)
        xp[b, j] = x[o].to(psi.dtype)
        xp[..., 2] = torch.as_tensor(uniq, dtype=psi.dtype, device=psi.device).unsqueeze(-1)
        times = torch.as_tensor(self._padded["time"], dtype=psi.dtype, device=psi.device)
        rec = xp[..., 3].long()
        at_record = times[xp[..., 2].long(), rec.clamp(0, times.shape[1] - 1)]
        xp[..., 3] = torch.where(
            (rec >= 0) & (at_record == xp[..., 0]), xp[..., 3], torch.full_like(xp[..., 3], -1)
        )
        first = torch.as_tensor(order[start], device=psi.device)
        rows = psi[first]  # (U, P), or (U, K, P) with one row per record (time-varying covariates)
        out = self(rows.unsqueeze(-2) if rows.dim() == 2 else rows, xp)  # (U, T)
        result = torch.empty(len(ind), dtype=out.dtype, device=out.device)
        result[o] = out[b, j]
        return result

    def _boluses(self, psi: torch.Tensor, x: torch.Tensor, individual: torch.Tensor) -> torch.Tensor:
        key = ("doses", psi.dtype, str(psi.device))
        if key not in self._cache:
            self._cache[key] = {
                k: torch.as_tensor(v, device=psi.device, dtype=psi.dtype if v.dtype == np.float64 else None)
                for k, v in self._doses.items()
            }
        d = {k: v[individual] for k, v in self._cache[key].items()}
        rkey = ("resets", psi.dtype, str(psi.device))
        if rkey not in self._cache:
            self._cache[rkey] = {
                k: torch.as_tensor(v, device=psi.device, dtype=psi.dtype if v.dtype == np.float64 else None)
                for k, v in self._resets.items()
            }
        resets = {k: v[individual] for k, v in self._cache[rkey].items()}
        P = psi.shape[-1]
        ext = torch.cat([psi, psi.new_zeros(*psi.shape[:-1], 1), psi.new_ones(*psi.shape[:-1], 1)], -1)
        cols = self.dosing.to(psi.device)[d["cmt"]]  # (B, J, 4)
        lead = psi.shape[:-2]
        # without a lag-time (bioavailability) parameter the column is the constant 0 (1): then
        # lag (amount) holds no draws' dimensions, and neither do the (B, T, J) masks built from it
        if bool((cols[..., 0] == P).all()):
            lag = psi.new_zeros(cols.shape[:-1])
        else:
            lag = ext.gather(-1, cols[..., 0].expand(*lead, *cols.shape[:-1]))
        if bool((cols[..., 1] == P + 1).all()):
            amount = d["amt"]
        else:
            amount = ext.gather(-1, cols[..., 1].expand(*lead, *cols.shape[:-1])) * d["amt"]
        d["state"] = self.dose_state.to(psi.device)[d["cmt"]].clamp_min(0)
        request = {"time": x[..., 0], "endpoint": x[..., 1].long(), "record": x[..., 3].long()}
        return superpose_boluses(
            self.system, psi, d, lag, amount, request, torch.as_tensor(self.endpoint_map), resets
        )

    def __repr__(self) -> str:
        return f"EventFunction({self.name!r}, {self.events.n_individuals} individuals)"


def _steady_lags(system: System, events: EventTable, padded: dict[str, np.ndarray]):
    """(mask, lag parameter index, II, row labels), each (N, K), of the steady-state doses into a
    compartment with a lag-time parameter; None without any."""
    index = {cmt: system.parameters.index(d.tlag) for cmt, d in system.dosing.items() if d.tlag}
    dose = padded["valid"] & ((padded["evid"] == 1) | (padded["evid"] == 4)) & (padded["ss"] > 0)
    mask = dose & np.isin(padded["cmt"], list(index))
    if not mask.any():
        return None
    param = np.zeros(mask.shape, dtype=np.int64)
    for cmt, j in index.items():
        param[padded["cmt"] == cmt] = j
    n = events.n_individuals
    counts = np.bincount(events.individual, minlength=n)
    pos = np.arange(len(events.time)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[events.individual]
    rows = np.empty(mask.shape, dtype=object)
    rows[events.individual, pos] = events.row
    return mask, param, padded["ii"], rows


def _compact_doses(padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each individual's dose records packed to the left, (N, J): time, amt, cmt, order (the
    record's position), valid."""
    dose = padded["valid"] & ((padded["evid"] == 1) | (padded["evid"] == 4))
    n, k = dose.shape
    J = max(int(dose.sum(1).max()), 1)
    out = {
        "time": np.zeros((n, J)),
        "amt": np.zeros((n, J)),
        "cmt": np.ones((n, J), dtype=np.int64),
        "order": np.zeros((n, J), dtype=np.int64),
        "valid": np.zeros((n, J), dtype=bool),
        "ii": np.ones((n, J)),
        "ss": np.zeros((n, J), dtype=np.int64),
    }
    for i in range(n):
        at = np.flatnonzero(dose[i])
        m = len(at)
        for name in ("time", "amt", "cmt", "ii", "ss"):
            out[name][i, :m] = padded[name][i, at]
        out["order"][i, :m] = at
        out["valid"][i, :m] = True
    return out


def _compact_resets(padded: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each individual's resets (EVID 3 or 4, SS = 1) packed to the left, (N, R): time, order,
    valid."""
    reset = padded["valid"] & ((padded["evid"] >= 3) | (padded["ss"] == 1))
    n = reset.shape[0]
    R = max(int(reset.sum(1).max()), 1)
    out = {
        "time": np.zeros((n, R)),
        "order": np.zeros((n, R), dtype=np.int64),
        "valid": np.zeros((n, R), dtype=bool),
    }
    for i in range(n):
        at = np.flatnonzero(reset[i])
        out["time"][i, : len(at)] = padded["time"][i, at]
        out["order"][i, : len(at)] = at
        out["valid"][i, : len(at)] = True
    return out
