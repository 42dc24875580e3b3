"""Predictions and simulations of a fit on event data (``Data.from_nonmem``) for new dosing records:
:meth:`pymixnn.Results.predict` on new events, :meth:`pymixnn.Results.simulate` of a regimen on
a time grid (population median and interval from the random-effects law; each fitted
individual's curve and interval from its posterior) and :meth:`pymixnn.Results.plot_regimen`.

The fitted model is bound to the new event table (:func:`pymixnn.model.dynamics.models.bind_events`)
and evaluated as :func:`pymixnn.solve` does, at parameters made from the fit: population (the
covariate model, eta = 0) or individual (each fitted individual's MAP eta).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.data.events import EventTable
from pymixnn.data.nonmem import INDEX_COLUMN, match_columns, read_nonmem
from pymixnn.data.table import Data
from pymixnn.model.covariates import design_covariates
from pymixnn.model.dynamics.models import bind_events
from pymixnn.model.dynamics.solve import request_grid
from pymixnn.results.amortized import modes_of

__all__ = [
    "RegimenInputs",
    "is_event_request",
    "regimen_inputs",
    "regimen_phi",
    "predict_events",
    "default_times",
    "simulate_regimen",
    "plot_regimen",
    "dose_times",
    "grid_curves",
    "square_roots",
]

_CHUNK_CELLS = 400_000  # grid cells (rows x times) per call of the structural function


@dataclass(frozen=True)
class RegimenInputs:
    """New event records as a fit evaluates them: the ``events``, the id column, the observation
    rows (columns id, time, endpoint code, individual position, record position; grouped by
    individual as ``Data.frame`` is) and the covariates of the covariate model, one row per
    individual of ``events`` (NaN where unknown)."""

    events: EventTable
    id_col: str
    obs: pd.DataFrame
    covariates: pd.DataFrame


def is_event_request(res, data: Any) -> bool:
    """True when ``data`` asks for predictions at new event records: a Data with events, or a
    DataFrame without the ``_individual`` column given to a fit on event data (a DataFrame with the
    fitted x columns keeps the row-wise path)."""
    if isinstance(data, Data):
        return data.events is not None
    return (
        isinstance(data, pd.DataFrame)
        and getattr(res.data, "events", None) is not None
        and INDEX_COLUMN not in data.columns
    )


def regimen_inputs(res, new: Data | pd.DataFrame, need_obs: bool = True) -> RegimenInputs:
    """``new`` (a Data from ``Data.from_nonmem`` or a NONMEM-style DataFrame, read with the fitted
    data's id, time and DV column names and its time-varying covariates; without a DV column,
    every EVID 0 record is an observation to predict) as :class:`RegimenInputs`."""
    fitted = res.data
    if getattr(fitted, "events", None) is None:
        raise ValueError(
            "predictions at new dosing records need a fit on event data (pymixnn.Data.from_nonmem)"
        )
    cov_cols = list(dict.fromkeys(res.design.columns))
    varying = fitted.events.time_varying
    ind_cols = [c for c in cov_cols if c not in varying]  # individual-level ones
    if isinstance(new, Data):
        if new.events is None:
            raise ValueError("new data without event records: build it with pymixnn.Data.from_nonmem")
        events, id_col, obs = new.events, new.id_col, new.frame[[new.id_col, *new.x_cols]]
        missing = [c for c in ind_cols if c not in new.covariates.columns]
        missing += [c for c in cov_cols if c in varying and c not in events.time_varying]
        if missing:
            raise ValueError(f"covariates {missing} of the covariate model are not in the new data")
        covs = new.covariates[ind_cols].reindex(pd.Index(events.ids))
    elif isinstance(new, pd.DataFrame):
        y, time = fitted.y_col, fitted.x_cols[0]
        if not match_columns(new, {"dv": y}, required=()):
            new = new.assign(**{y: 0.0})  # no DV: the EVID 0 records are the requests
        obs, events = read_nonmem(
            new,
            id=fitted.id_col,
            time=time,
            dv=y,
            covariates=ind_cols,
            time_varying=varying,
        )
        id_col = str(obs.columns[0])
        obs = obs.iloc[np.argsort(obs[INDEX_COLUMN].to_numpy(), kind="stable"), :5]
        covs = (
            new.groupby(id_col, sort=False)[ind_cols].first().reindex(pd.Index(events.ids))
            if ind_cols
            else pd.DataFrame(index=pd.Index(events.ids))
        )
    else:
        raise TypeError(f"new events must be a pymixnn.Data or a DataFrame, got {type(new).__name__}")
    # a time-varying covariate of the covariate model: its value at each individual's first record
    covs = design_covariates(covs, cov_cols, events, events.ids)
    if need_obs and obs.empty:
        raise ValueError("the new records hold no observation record (EVID 0) to predict")
    return RegimenInputs(events=events, id_col=id_col, obs=obs, covariates=covs)


def regimen_phi(
    res, inputs: RegimenInputs, level: str, wanted: np.ndarray | None = None, new=None
) -> np.ndarray:
    """(N, P) phi of the individuals of ``inputs.events`` (rows ``wanted``, default all; others NaN):
    population (covariate model, eta = 0) or individual (the fitted individual's MAP eta; an id
    that was not fitted gets, when ``new`` holds its observations, the encoder's posterior from its
    own records (``local="amortized"``) or its conditional mode at the fitted parameters (Gaussian
    random effects; saemix's ``saemixPredictNewdata``), else it is an error)."""
    if level not in ("population", "individual"):
        raise ValueError(f"level must be 'population' or 'individual', got {level!r}")
    fm, events = res.evaluator, inputs.events
    wanted = np.arange(events.n_individuals) if wanted is None else np.unique(wanted)
    ids = events.ids[wanted]
    covs = inputs.covariates.iloc[wanted]
    if covs.shape[1] and covs.isna().to_numpy().any():
        bad = [i.item() if isinstance(i, np.generic) else i for i in ids[covs.isna().any(axis=1).to_numpy()]]
        raise ValueError(f"covariates {list(covs.columns)} are missing for individuals {bad[:5]}")
    Z = res.design.transform(covs) if res.design.n_effects else np.zeros((len(wanted), 0))
    pos = pd.Index(res.data.ids).get_indexer(ids)
    phi = fm.phi_population(Z) + fm.known_offset({"pos": pos})
    if level == "individual":
        eta_map = np.asarray(res.estimation.eta_map)
        eta = eta_map[np.maximum(pos, 0)]
        if (pos < 0).any():
            encoded = _encoded(res, new, ids[pos < 0])
            eta[pos < 0] = encoded
        phi = phi + fm.eta_full(eta)
    out = np.full((events.n_individuals, phi.shape[1]), np.nan)
    out[wanted] = phi
    return out


def _encoded(res, new, ids: np.ndarray) -> np.ndarray:
    """eta (len(ids), d) of individuals not in the fit from the fit's encoder over their records
    in ``new`` (results.amortized.encode_individuals); a ValueError when the fit has no encoder or
    ``new`` holds no observation of one of them."""
    unknown = [i.item() if isinstance(i, np.generic) else i for i in ids]
    amortized = bool(getattr(res.estimation, "amortized", None))
    y = res.data.y_col
    has_dv = new is not None and (isinstance(new, Data) or bool(match_columns(new, {"dv": y}, required=())))
    if amortized:
        at = np.full(len(unknown), -1)
        if has_dv:
            from pymixnn.results.amortized import encode_individuals

            try:
                enc_ids, eta, _ = encode_individuals(res, new)
                at = pd.Index(enc_ids).get_indexer(list(ids))
            except ValueError as err:  # the new records hold no observation at all
                if "no observation record" not in str(err):
                    raise
        if (at >= 0).all():
            return eta[at]
        unknown = [u for u, a in zip(unknown, at) if a < 0]
        raise ValueError(
            f"individual predictions of ids {unknown[:5]}, not in the fit, need their observations "
            f"(EVID 0 records with {y}) for the encoder: use level='population'"
        )
    if has_dv and (eta := modes_of(res, new, ids)) is not None:  # their modes at the fitted parameters
        return eta
    raise ValueError(
        f"individual predictions need fitted individuals, or the observations (EVID 0 records with {y}) "
        f"of ids {unknown[:5]}, which were not in the fit: use level='population'"
    )


def _evaluate(function, psi: np.ndarray, x: np.ndarray):
    import torch

    with torch.no_grad():
        out = function(torch.as_tensor(psi, dtype=torch.float64), torch.as_tensor(x, dtype=torch.float64))
    return out.numpy()


def _endpoint_names(bound, codes) -> list[str]:
    return [bound.dynamics.endpoints[bound.function.endpoint_map[int(c)]] for c in codes]


def predict_events(
    res, new: Data | pd.DataFrame, level: str = "population", which: str = "mean"
) -> pd.DataFrame:
    """Predictions at every observation record of ``new``: columns id, time, endpoint, prediction
    (as :func:`pymixnn.solve`, in its order: by individual, then record), indexed by the records'
    row labels."""
    if which not in ("mean", "linear"):
        raise ValueError(f"which must be 'mean' or 'linear', got {which!r}")
    inputs = regimen_inputs(res, new, need_obs=True)
    bound = bind_events(res.model, inputs.events)
    x = inputs.obs.iloc[:, 1:5].to_numpy(dtype=np.float64)
    ind = x[:, 2].astype(np.int64)
    psi = res.evaluator.psi(np.nan_to_num(regimen_phi(res, inputs, level, ind, new)))
    f = _evaluate(bound.function, res.evaluator.record_psi(psi[ind], ind, inputs.events), x)
    if which == "mean" and res.observation.name != "gaussian":
        import torch

        aux = {}
        if res.observation.name == "endpoints":  # each record's family: its endpoint's, by name
            names = [inputs.events.endpoints[int(c)] for c in x[:, 1]]
            aux["endpoint"] = np.asarray([res.observation.endpoints.index(n) for n in names])
        with torch.no_grad():
            f = res.observation.mean(*res.evaluator.family_tensors(f, aux)).numpy()
    return pd.DataFrame(
        {
            inputs.id_col: inputs.obs.iloc[:, 0].to_numpy(),
            "time": x[:, 0],
            "endpoint": _endpoint_names(bound, x[:, 1]),
            "prediction": f,
        },
        index=inputs.obs.index,
    )


def dose_times(events: EventTable, individual: int) -> np.ndarray:
    """The dose times (EVID 1 / 4, ADDL doses included) of the individual at position ``individual``."""
    return events.time[events.is_dose & (events.individual == individual)]


def default_times(events: EventTable, fallback: float, n: int = 200) -> np.ndarray:
    """``n`` times from 0 to the last record plus one dosing interval: the last dose's II, else the
    median gap between dose times, else ``fallback`` (the fitted data's last observation time)."""
    doses = events.is_dose
    interval = 0.0
    if doses.any():
        last = np.flatnonzero(doses)[np.argmax(events.time[doses])]
        interval = float(events.ii[last])
        if interval <= 0:
            gaps = np.diff(np.unique(events.time[doses]))
            interval = float(np.median(gaps)) if len(gaps) else 0.0
    if interval <= 0:
        interval = float(fallback)
    return np.linspace(0.0, float(events.time.max()) + interval, n)


def grid_curves(fm, bound, psi: np.ndarray, individual: np.ndarray, times: np.ndarray, codes) -> np.ndarray:
    """(M, T * E) predictions of ``psi`` rows (M, P) for the individuals ``individual`` (M,) of the
    event table of ``bound`` (with the effects of time-varying covariates: FittedModel.record_psi)."""
    template = request_grid(1, times, codes)[0]
    step = max(1, _CHUNK_CELLS // max(len(template), 1))
    out = []
    for start in range(0, len(psi), step):
        rows = slice(start, start + step)
        x = np.repeat(template[None], len(psi[rows]), axis=0)
        x[:, :, 2] = individual[rows, None]
        p = fm.record_psi(psi[rows], individual[rows], bound.function.events)
        out.append(_evaluate(bound.function, p[:, None, :] if p.ndim == 2 else p, x))
    return np.concatenate(out) if out else np.zeros((0, len(template)))


def square_roots(cov: np.ndarray) -> np.ndarray:
    """Factors L L^T = cov of (K, d, d) covariances (Cholesky; symmetric roots with negative
    eigenvalues clipped where a matrix is not positive definite)."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(0.5 * (cov + np.swapaxes(cov, -1, -2)))
        return vecs * np.sqrt(np.clip(vals, 0.0, None))[..., None, :]


def simulate_regimen(
    res,
    new: Data | pd.DataFrame,
    *,
    times: np.ndarray | list | None = None,
    n_draws: int = 500,
    seed: int = 0,
    level_pi: float = 0.9,
) -> pd.DataFrame:
    """Curves of a dosing regimen on a time grid (see :meth:`pymixnn.Results.simulate`)."""
    if not (isinstance(n_draws, (int, np.integer)) and n_draws >= 2):
        raise ValueError(f"n_draws must be an integer >= 2, got {n_draws!r}")
    if not 0 < level_pi < 1:
        raise ValueError(f"level_pi must be in (0, 1), got {level_pi!r}")
    inputs = regimen_inputs(res, new, need_obs=False)
    events, fm = inputs.events, res.evaluator
    if times is None:
        times = default_times(events, float(np.max(res.data.x[:, 0])))
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or not len(times) or not np.isfinite(times).all():
        raise ValueError("times must be a non-empty 1-D sequence of finite numbers")
    bound = bind_events(res.model, events)
    N, codes = events.n_individuals, list(range(len(events.endpoints)))
    individuals = np.arange(N)
    q = [0.5, (1 - level_pi) / 2, (1 + level_pi) / 2]

    phi0 = regimen_phi(res, inputs, "population")
    typical = grid_curves(fm, bound, fm.psi(phi0), individuals, times, codes)
    eta = fm.eta_full(fm.law_draws(int(n_draws), seed=int(seed)))  # (n, P), the same for everyone
    phi = (eta[:, None, :] + phi0[None]).reshape(-1, phi0.shape[1])
    draws = grid_curves(fm, bound, fm.psi(phi), np.tile(individuals, int(n_draws)), times, codes)
    pop = np.quantile(draws.reshape(int(n_draws), N, -1), q, axis=0)  # (3, N, T * E)

    ind = np.full((3, N, typical.shape[1]), np.nan)  # curve, lower, upper
    pos = pd.Index(res.data.ids).get_indexer(events.ids)
    known = np.flatnonzero(pos >= 0)
    cov = getattr(res.estimation, "eta_map_cov", None)
    if len(known):
        phi_map = phi0[known] + fm.eta_full(np.asarray(res.estimation.eta_map))[pos[known]]
        ind[0, known] = grid_curves(fm, bound, fm.psi(phi_map), known, times, codes)
        if cov is not None and len(res.model.random):
            L = square_roots(np.asarray(cov, dtype=np.float64)[pos[known]])  # (K, d, d)
            z = np.random.default_rng(int(seed)).standard_normal((int(n_draws), L.shape[-1]))
            eta_i = np.einsum("kij,nj->nki", L, z)  # (n, K, d): N(0, posterior cov) per individual
            phi_i = (
                phi_map[None]
                + fm.eta_full(eta_i.reshape(-1, L.shape[-1])).reshape(int(n_draws), len(known), -1)
            ).reshape(-1, phi_map.shape[1])
            curves = grid_curves(fm, bound, fm.psi(phi_i), np.tile(known, int(n_draws)), times, codes)
            band = np.quantile(curves.reshape(int(n_draws), len(known), -1), q[1:], axis=0)
            ind[1, known], ind[2, known] = band[0], band[1]

    T, E = len(times), len(codes)
    out = pd.DataFrame(
        {
            inputs.id_col: np.repeat(events.ids, T * E),
            "time": np.tile(times, N * E),
            "endpoint": np.tile(np.repeat(_endpoint_names(bound, codes), T), N),
            "population": typical.ravel(),
            "population_median": pop[0].ravel(),
            "population_lower": pop[1].ravel(),
            "population_upper": pop[2].ravel(),
            "individual": ind[0].ravel(),
            "individual_lower": ind[1].ravel(),
            "individual_upper": ind[2].ravel(),
        }
    )
    out.attrs.update(
        level_pi=float(level_pi),
        n_draws=int(n_draws),
        seed=int(seed),
        individual_interval="posterior" if cov is not None else "none (MAP only)",
    )
    return out


def plot_regimen(
    res,
    new: Data | pd.DataFrame,
    path: str | Path,
    *,
    ids: list | None = None,
    times=None,
    n_draws: int = 500,
    seed: int = 0,
    level_pi: float = 0.9,
    max_panels: int = 12,
) -> Path:
    """PNG of :func:`simulate_regimen`, one panel per individual (and endpoint): the population
    median and band (grey), a fitted individual's curve and band (blue), the doses (triangles)."""
    from pymixnn.results.plots import mark_doses, new_figure, save_figure

    events = regimen_inputs(res, new, need_obs=False).events
    all_ids = list(events.ids)
    chosen = all_ids[:max_panels] if ids is None else list(ids)
    unknown = [i for i in chosen if i not in set(all_ids)]
    if unknown:
        raise ValueError(f"ids {unknown[:5]} are not in the regimen's records")
    table = simulate_regimen(res, new, times=times, n_draws=n_draws, seed=seed, level_pi=level_pi)
    id_col = table.columns[0]
    endpoints = list(dict.fromkeys(table["endpoint"]))
    panels = [(i, e) for i in chosen for e in endpoints]
    ncol = min(4, len(panels))
    nrow = -(-len(panels) // ncol)
    fig = new_figure(figsize=(3.4 * ncol, 2.8 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    pct = f"{round(100 * level_pi)}%"
    for ax, (ind, endpoint) in zip(axes.flat, panels):
        sub = table[(table[id_col] == ind) & (table["endpoint"] == endpoint)]
        t = sub["time"].to_numpy()
        ax.fill_between(
            t,
            sub["population_lower"],
            sub["population_upper"],
            color="0.6",
            alpha=0.3,
            label=f"population {pct}",
        )
        ax.plot(t, sub["population_median"], color="0.2", lw=1, ls="--", label="population median")
        if sub["individual"].notna().any():
            if sub["individual_lower"].notna().any():
                ax.fill_between(
                    t,
                    sub["individual_lower"],
                    sub["individual_upper"],
                    color="C0",
                    alpha=0.25,
                    label=f"individual {pct}",
                )
            ax.plot(t, sub["individual"], color="C0", lw=1.5, label="individual (MAP)")
        mark_doses(ax, dose_times(events, all_ids.index(ind)), t.min(), t.max())
        ax.set_title(f"{id_col} {ind}" + (f", {endpoint}" if len(endpoints) > 1 else ""), fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.supxlabel(res.data.time_label(res.data.x_cols[0]), fontsize=9)
    fig.supylabel(res.data.y_col, fontsize=9)
    fig.suptitle(
        f"regimen: {table.attrs['n_draws']} draws from the fitted law; doses (triangles)", fontsize=9
    )
    fig.tight_layout()
    return save_figure(fig, path)
