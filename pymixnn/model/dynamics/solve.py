"""`pymixnn.solve`: a dynamic model's predictions at given parameter values, without fitting.

>>> import pandas as pd, pymixnn
>>> records = pd.DataFrame({"ID": 1, "TIME": [0.0, 1.0, 2.0], "AMT": [100.0, 0, 0],
...                         "EVID": [1, 0, 0], "DV": [0.0, 4.5, 4.1]})
>>> out = pymixnn.solve("pk1cpt_iv", records, params={"CL": 2.0, "V": 20.0})
>>> [round(v, 4) for v in out["prediction"]]
[4.5242, 4.0937]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from pymixnn.data.events import EventTable
from pymixnn.data.nonmem import read_nonmem
from pymixnn.data.table import Data
from pymixnn.model.dynamics.models import bind_events, is_dynamic
from pymixnn.model.named import Model, resolve
from pymixnn.validation import InputError

__all__ = ["solve", "parameter_matrix", "request_grid"]


def parameter_matrix(
    params: Mapping[str, Any] | pd.DataFrame, names: Sequence[str], ids: np.ndarray
) -> np.ndarray:
    """(N, P) natural-scale values: a mapping name -> one value (everyone) or one value per id (in
    ``ids`` order), or a DataFrame indexed by id with one column per parameter."""
    if isinstance(params, pd.DataFrame):
        missing = [p for p in names if p not in params.columns]
        absent = [i for i in ids.tolist() if i not in params.index]
        if missing or absent:
            raise InputError(f"params: missing parameters {missing} or ids {absent[:5]}")
        return params.loc[list(ids), list(names)].to_numpy(dtype=np.float64)
    if not isinstance(params, Mapping):
        raise InputError(
            f"params must be a dict of parameter values or a DataFrame, got {type(params).__name__}"
        )
    missing = [p for p in names if p not in params]
    unknown = [p for p in params if p not in names]
    if missing or unknown:
        raise InputError(
            f"params: the model's parameters are {list(names)}; missing {missing}, unknown {unknown}"
        )
    cols = []
    for p in names:
        v = np.asarray(params[p], dtype=np.float64)
        if v.ndim == 0:
            v = np.full(len(ids), float(v))
        if v.shape != (len(ids),):
            raise InputError(
                f"params[{p!r}]: one value, or one per individual ({len(ids)}), got shape {v.shape}"
            )
        cols.append(v)
    return np.stack(cols, axis=1)


def request_grid(n: int, times: np.ndarray, endpoints: Sequence[int]) -> np.ndarray:
    """x (n, T * E, 4) asking every individual for every time of ``times`` and endpoint code."""
    t = np.tile(np.asarray(times, dtype=np.float64), len(endpoints))
    e = np.repeat(np.asarray(endpoints, dtype=np.float64), len(times))
    x = np.zeros((n, len(t), 4))
    x[:, :, 0], x[:, :, 1], x[:, :, 2], x[:, :, 3] = t, e, np.arange(n)[:, None], -1.0
    return x


def solve(
    model: Model | str,
    data: pd.DataFrame | Data,
    params: Mapping[str, Any] | pd.DataFrame,
    *,
    times: Sequence[float] | None = None,
    **nonmem: Any,
) -> pd.DataFrame:
    """Predictions of a compartment or ODE model at given parameter values (natural scale).

    Parameters
    ----------
    model : Model or str
        A compartment model name (``"pk1cpt_iv"``, ``"pk1cpt_oral"``, ...) or a
        :func:`pymixnn.ODEModel`.
    data : pandas.DataFrame or Data
        Event data: a :class:`pymixnn.Data` from :meth:`pymixnn.Data.from_nonmem` or a
        NONMEM-style DataFrame (ID, TIME, AMT, EVID, DV, ...).
    params : dict or pandas.DataFrame
        Natural-scale parameter values: a mapping name -> one value (everyone) or one value per
        individual (in sorted id order), or a DataFrame indexed by id with one column per
        parameter.
    times : sequence of float, optional
        Times to predict at. Without it: one row per observation record.
    **nonmem
        Column names of a NONMEM-style DataFrame, as :meth:`pymixnn.Data.from_nonmem` takes them
        (``id="SUBJ"``, ``amt="DOSE"``, ...).

    Returns
    -------
    pandas.DataFrame
        Columns id, time, endpoint, prediction: one row per observation record, or with ``times``
        every individual (those without observations included) at those times, for every
        endpoint.
    """
    model = resolve(model)
    if not is_dynamic(model):
        raise InputError("solve() takes a compartment model ('pk1cpt_oral', ...) or a pymixnn.ODEModel")
    if isinstance(data, pd.DataFrame):
        if times is not None:  # records without observations are enough: the event table only
            data = read_nonmem(data, **nonmem)[1]
        else:
            data = Data.from_nonmem(data, **nonmem)
    events = data if isinstance(data, EventTable) else getattr(data, "events", None)
    if events is None:
        raise InputError("solve() needs event data: pymixnn.Data.from_nonmem(...) or a NONMEM DataFrame")
    bound = bind_events(model, events)
    psi_all = parameter_matrix(params, model.parameters, events.ids)
    if times is None:
        if not isinstance(data, Data):
            raise InputError(
                "solve() without times= needs observation records (a Data from Data.from_nonmem)"
            )
        x, _, mask = data.padded()
        rows = x[:, 0, 2].astype(int)
    else:
        codes = list(range(len(bound.function.endpoint_map)))
        x = request_grid(events.n_individuals, np.asarray(times, dtype=np.float64), codes)
        mask = np.ones(x.shape[:2], dtype=bool)
        rows = np.arange(events.n_individuals)
    psi = torch.as_tensor(psi_all[rows], dtype=torch.float64).unsqueeze(-2)
    with torch.no_grad():
        pred = bound.function(psi, torch.as_tensor(x, dtype=torch.float64)).numpy()
    ids = events.ids[rows]
    return pd.DataFrame(
        {
            (data.id_col if isinstance(data, Data) else "ID"): np.repeat(ids, mask.sum(1)),
            "time": x[..., 0][mask],
            # the model's output name of each data endpoint (one endpoint without DVID: the output)
            "endpoint": [
                bound.dynamics.endpoints[bound.function.endpoint_map[int(c)]] for c in x[..., 1][mask]
            ],
            "prediction": pred[mask],
        }
    )
