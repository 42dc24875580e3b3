"""The fitted model as numbers: population and individual parameters, the structural function on
data rows, the observation model's parameters, draws from the fitted random-effects law and data
sets simulated from the fit.

:class:`FittedModel` is what :class:`pymixnn.Results` (``res.evaluator``), the plots, the VPC and
the genomic outputs share; everything it returns is numpy. Notation: ``phi`` is a parameter on
its transformed scale (``psi = h(phi)`` on the natural scale), ``eta`` a random effect (one column
per parameter with a random effect), ``Z`` the covariate design rows of individuals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pymixnn.model import transforms as tr
from pymixnn.model.covariates import record_deviations
from pymixnn.results.external import ExternalFit, gaussian_draws
from pymixnn.results.levels import field_at
from pymixnn.validation.errors import show_value

__all__ = ["FittedModel"]


class FittedModel:
    """Numpy evaluation of a fitted model (``model``, ``data``, covariate ``design``, the
    inference layer's ``estimation`` or another program's
    :class:`~pymixnn.results.external.ExternalFit`, and the bound ``observation`` family)."""

    def __init__(self, *, model, data, design, estimation, observation):
        self.model, self.data, self.design = model, data, design
        self.estimation, self.observation = estimation, observation

    # ---- parameters ------------------------------------------------------------------------
    def phi_population(self, Z: np.ndarray) -> np.ndarray:
        """(n, P) population phi (mu + covariate effects, eta = 0) of individuals with design rows ``Z``."""
        mu = self.estimation.mu
        phi = np.tile(mu, (Z.shape[0], 1))
        for j, p in enumerate(self.design.parameters):
            phi[:, self.model.parameters.index(p)] += Z[:, j] * self.estimation.beta[j]
        return phi

    def psi(self, phi: np.ndarray) -> np.ndarray:
        """(..., P) natural-scale parameters of the transformed-scale rows ``phi`` (..., P)."""
        import torch

        t = torch.as_tensor(phi, dtype=torch.float64)
        return np.stack(
            [
                tr.forward(self.model.transforms[p], t[..., k]).numpy()
                for k, p in enumerate(self.model.parameters)
            ],
            axis=-1,
        )

    def record_psi(self, psi_rows: np.ndarray, individual: np.ndarray, events=None) -> np.ndarray:
        """``psi_rows`` (n, P) of the individuals at positions ``individual`` of ``events`` (default:
        the fitted event table), with the effects of time-varying covariates: one row per record,
        (n, K, P) (:func:`pymixnn.model.covariates.record_deviations`); unchanged without them."""
        import torch

        events = self.data.events if events is None else events
        if events is None:
            return psi_rows
        cache = self.__dict__.setdefault("_deviations", {})
        if id(events) not in cache:  # (the VPC evaluates the fitted table hundreds of times)
            cache[id(events)] = (events, record_deviations(self.design, events, events.ids))
        dev = cache[id(events)][1]
        if dev is None:
            return psi_rows
        S = np.zeros((self.design.n_effects, len(self.model.parameters)))
        for j, p in enumerate(self.design.parameters):
            S[j, self.model.parameters.index(p)] = self.estimation.beta[j]
        t = torch.as_tensor(psi_rows, dtype=torch.float64)
        phi = np.stack(
            [
                tr.inverse(self.model.transforms[p], t[:, k]).numpy()
                for k, p in enumerate(self.model.parameters)
            ],
            axis=-1,
        )
        return self.psi(phi[:, None, :] + dev[np.asarray(individual, dtype=np.int64)] @ S)

    def psi_column(self, name: str, phi: np.ndarray) -> np.ndarray:
        """Parameter ``name`` on the natural scale from its transformed values ``phi``."""
        import torch

        return tr.forward(self.model.transforms[name], torch.as_tensor(phi, dtype=torch.float64)).numpy()

    def individual_offset(self) -> np.ndarray:
        """(N, P) genotype-level offsets of a genomic fit and the grouping levels' effects
        (posterior means, transformed scale); zeros without either."""
        out = np.zeros((self.data.n_individuals, len(self.model.parameters)))
        for rec in (getattr(self.estimation, "genomic", None), getattr(self.estimation, "levels", None)):
            if rec:
                out = out + np.asarray(rec["offset"])
        return out

    def known_offset(self, rows: dict) -> np.ndarray:
        """Genotype offsets of the fitted individuals among ``rows`` (:meth:`design_rows`), 0 for
        new individuals: in a genomic fit the genotype's genetic value acts like a covariate; a
        grouping level's effects likewise, and a new individual of a group in the fit has its
        group's effect (``rows["level_offset"]``)."""
        offset = self.individual_offset()
        pos = rows["pos"]
        new = rows.get("level_offset")
        return np.where((pos >= 0)[:, None], offset[np.maximum(pos, 0)], 0.0 if new is None else new)

    def level_offset(self, covs: pd.DataFrame) -> np.ndarray | None:
        """(n, P) the grouping levels' effects (posterior means) of individuals with the level
        columns ``covs`` (one row each), 0 for a group not in the fit or a column not given; None
        for a fit without levels."""
        rec = getattr(self.estimation, "levels", None)
        if not rec:
            return None
        params = list(self.model.parameters)
        out = np.zeros((len(covs), len(params)))
        kinds = rec.get("kinds") or ["level"] * len(rec["names"])
        coords = list(rec.get("coords") or [])
        for k, name in enumerate(rec["names"]):
            if kinds[k] != "level":  # a field: its value at the individual's location (kriged)
                if coords and all(c in covs.columns for c in coords):
                    j = params.index(rec["params"][k][0])
                    out[:, j] += field_at(rec, k, covs[coords].to_numpy(dtype=np.float64))
                continue
            if name not in covs.columns:
                continue
            g = pd.Index(list(rec["labels"][k])).get_indexer(covs[name])
            effects = np.asarray(rec["effects"][k])
            for j, p in enumerate(rec["params"][k]):
                out[:, params.index(p)] += np.where(g >= 0, effects[np.maximum(g, 0), j], 0.0)
        return out

    def eta_full(self, eta: np.ndarray) -> np.ndarray:
        """(n, P) random effects with zeros in the columns of parameters without one."""
        full = np.zeros((eta.shape[0], len(self.model.parameters)))
        for j, p in enumerate(self.model.random):
            full[:, self.model.parameters.index(p)] = eta[:, j]
        return full

    def phi_map(self) -> np.ndarray:
        """(N, P) phi of the fitted individuals at their MAP random effects (genotype offsets included)."""
        return (
            self.phi_population(self.design.matrix)
            + self.eta_full(self.estimation.eta_map)
            + self.individual_offset()
        )

    def typical_phi(self) -> np.ndarray:
        """(P,) phi at eta = 0 for the average covariate row of the data."""
        return self.phi_population(self.design.average())[0]

    # ---- the fitted law --------------------------------------------------------------------
    def law_draws(self, n: int, seed: int) -> np.ndarray:
        """(n, d) random effects drawn from the fitted law (transformed scale, centred as eta); for
        another program's fit, from N(0, omega) with its omega."""
        if isinstance(self.estimation, ExternalFit):
            return gaussian_draws(self.estimation.omega, n, seed)
        from pymixnn.inference.laws import sample_fitted_law

        record = self.estimation.law
        if not record or "omega_slice" not in record:
            raise ValueError("these results carry no random-effects law record")
        return sample_fitted_law(record, self.estimation.theta, n, seed)

    # ---- the structural function and the observation model ---------------------------------
    def evaluate(self, psi_rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The structural function f(psi, x) on rows (one psi row per x row)."""
        import torch

        if getattr(self.data, "events", None) is not None and x.ndim == 2:
            psi_rows = self.record_psi(psi_rows, x[:, 2])
        with torch.no_grad():
            out = self.model.function(
                torch.as_tensor(psi_rows, dtype=torch.float64), torch.as_tensor(x, dtype=torch.float64)
            )
        return out.numpy()

    def design_rows(self, data: pd.DataFrame | None = None) -> dict[str, Any]:
        """Per row of ``data`` (default: the fitted data): ``frame``, ``x``, the individual of the
        row (``row_ind``), the covariate rows per individual (``Z``), whether the row's individual
        was fitted (``known``) and its position among the fitted ones (``pos``, -1 for new), and
        the auxiliary columns (``aux``: trials, censoring)."""
        d = self.data
        if data is None:
            return dict(
                frame=d.frame,
                x=d.x,
                row_ind=d.index,
                Z=self.design.matrix,
                known=np.ones(d.n_obs, dtype=bool),
                pos=np.arange(d.n_individuals),
                aux={k: v for k, v in d.aux.items()},
            )
        needed = [d.id_col, *d.x_cols, *self.design.columns]
        if "trials" in d.aux_cols:
            needed.append(d.aux_cols["trials"])
        missing = [c for c in dict.fromkeys(needed) if c not in data.columns]
        if missing:
            raise ValueError(f"columns {missing} are needed for prediction")
        x = d.x_matrix(data)  # dates converted as in the fit
        bad = ~np.isfinite(x)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(
                f"column {d.x_cols[c]!r}: row {show_value(data.index[r])} has value {show_value(x[r, c])}"
            )
        ids = pd.unique(data[d.id_col])
        row_ind = pd.Index(ids).get_indexer(data[d.id_col])
        covs = data.groupby(d.id_col, sort=False)[list(dict.fromkeys(self.design.columns))].first()
        Z = self.design.transform(covs.loc[ids]) if self.design.n_effects else np.zeros((len(ids), 0))
        pos = pd.Index(d.ids).get_indexer(ids)
        rec = getattr(self.estimation, "levels", None)
        given = [
            c
            for c in (list(rec["names"]) + list(rec.get("coords") or []) if rec else [])
            if c in data.columns
        ]
        given = list(dict.fromkeys(given))
        level_offset = (
            self.level_offset(data.groupby(d.id_col, sort=False)[given].first().loc[ids]) if rec else None
        )
        aux = {}
        if "trials" in d.aux_cols:
            aux["trials"] = data[d.aux_cols["trials"]].to_numpy(dtype=np.float64)
        if "endpoint" in d.aux_cols:  # several endpoints: each row's law (an x column of event data)
            aux["endpoint"] = data[d.aux_cols["endpoint"]].to_numpy(dtype=np.float64)
        out = dict(frame=data, x=x, row_ind=row_ind, Z=Z, known=pos[row_ind] >= 0, pos=pos, aux=aux)
        return out if level_offset is None else dict(out, level_offset=level_offset)

    def family_params(self) -> dict:
        """The observation model's parameters as its log-density takes them (natural scale, torch),
        from the observation block of theta (between omega and the law); another program's: its
        residual error parameters."""
        import torch

        law = getattr(self.estimation, "law", {})
        if "omega_slice" not in law:  # results saved before the law record: Gaussian error only
            return {k: torch.tensor(v, dtype=torch.float64) for k, v in self.estimation.error.items()}
        raw = torch.as_tensor(
            self.estimation.theta[law["omega_slice"][1] : law["law_slice"][0]], dtype=torch.float64
        )
        return self.observation.natural(raw, self.model)

    def family_tensors(self, f: np.ndarray, aux: dict) -> tuple:
        """(f, family parameters, auxiliary columns) as torch tensors, the arguments of the
        observation model's mean, variance and sample."""
        import torch

        return (
            torch.as_tensor(f, dtype=torch.float64),
            self.family_params(),
            {k: torch.as_tensor(v, dtype=torch.float64) for k, v in aux.items()},
        )

    # ---- predictions and simulations -------------------------------------------------------
    def predict_rows(
        self,
        data: pd.DataFrame | None = None,
        level: str = "population",
        which: str = "mean",
        new_eta: tuple[pd.Index, np.ndarray] | None = None,
    ) -> np.ndarray:
        """:meth:`pymixnn.Results.predict` as an array in the order of ``data``'s rows (default:
        the fitted data in ``Data.frame`` order, grouped by individual); ``new_eta`` (ids, eta):
        the random effects of individuals not in the fit (an amortized fit's encoder)."""
        if level not in ("population", "individual"):
            raise ValueError(f"level must be 'population' or 'individual', got {level!r}")
        if which not in ("mean", "linear"):
            raise ValueError(f"which must be 'mean' or 'linear', got {which!r}")
        rows = self.design_rows(data)
        phi = (self.phi_population(rows["Z"]) + self.known_offset(rows))[rows["row_ind"]]
        if level == "individual":
            eta = self.eta_full(self.estimation.eta_map)
            pos = rows["pos"][rows["row_ind"]]
            phi = phi + np.where(rows["known"][:, None], eta[np.maximum(pos, 0)], 0.0)
            if new_eta is not None:
                where = new_eta[0].get_indexer(rows["frame"][self.data.id_col])
                new = (~rows["known"]) & (where >= 0)
                phi = phi + np.where(new[:, None], self.eta_full(new_eta[1])[np.maximum(where, 0)], 0.0)
        f = self.evaluate(self.psi(phi), rows["x"])
        if which == "linear" or self.observation.name == "gaussian":
            return f
        import torch

        with torch.no_grad():
            return self.observation.mean(*self.family_tensors(f, rows["aux"])).numpy()

    def simulated(
        self, n_rep: int, *, seed: int, level: str = "population", rows: dict | None = None
    ) -> np.ndarray:
        """(n_rep, n_rows) observations simulated at ``rows`` (:meth:`design_rows`; default the
        fitted data): random effects drawn from the fitted law ("population") or the MAP ones
        ("individual"), then the observation model (ordinal: category codes)."""
        import torch

        rows = self.design_rows(None) if rows is None else rows
        n_ind, row_ind = rows["Z"].shape[0], rows["row_ind"]
        phi0 = self.phi_population(rows["Z"]) + self.known_offset(rows)
        gen = torch.Generator().manual_seed(int(seed))
        sims = []
        if level == "population":
            draws = self.law_draws(n_ind * n_rep, seed=int(seed)).reshape(n_rep, n_ind, -1)
        for r in range(n_rep):
            if level == "population":
                eta = self.eta_full(draws[r])
            else:
                known = (rows["pos"] >= 0)[:, None]
                eta = np.where(known, self.eta_full(self.estimation.eta_map[np.maximum(rows["pos"], 0)]), 0.0)
            f = self.evaluate(self.psi((phi0 + eta)[row_ind]), rows["x"])
            with torch.no_grad():
                y = self.observation.sample(*self.family_tensors(f, rows["aux"]), gen).numpy()
            sims.append(y)
        return np.stack(sims)

    def curves(self, phi: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(n, T) structural function of each phi row (n, P) over the x rows (T, k)."""
        T = x.shape[0]
        return self.evaluate(np.repeat(self.psi(phi), T, axis=0), np.tile(x, (phi.shape[0], 1))).reshape(
            phi.shape[0], T
        )
