"""`Results` of a fit: statsmodels-style tables, saemix vocabulary, predictions, save/load.

Everything public is pandas/numpy. Parameters (``params``) are reported like saemix: fixed effects
on the natural scale (``h(mu)``) followed by their covariate effects (``beta_Weight(V)``), the
random-effect variances ``omega2.p`` (and covariances ``cov.p.q`` for a full omega), and the
residual error parameters ``a`` / ``b``. 95% confidence intervals are computed on the transformed
scale (log for variances and error parameters, the parameter's transform for fixed effects) and
mapped back, so they respect each parameter's support.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pymixnn.covariates import CovariateDesign
from pymixnn.data import Data
from pymixnn.inference import Estimation
from pymixnn.models import Model, named
from pymixnn.models import transforms as tr

__all__ = ["Results", "Summary"]

FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    import pyro
    import torch

    import pymixnn

    return {"pymixnn": pymixnn.__version__, "torch": torch.__version__, "pyro": pyro.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "python": platform.python_version()}


class Summary:
    """Printable summary; ``.table`` holds the parameter table as a DataFrame."""

    def __init__(self, text: str, table: pd.DataFrame):
        self.text, self.table = text, table

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


class Results:
    """Estimates, uncertainty, likelihood, individual estimates and predictions of one fit."""

    def __init__(self, *, model: Model, data: Data, design: CovariateDesign,
                 estimation: Estimation, settings: dict, info: dict | None = None):
        self.model, self.data, self.design = model, data, design
        self.estimation = estimation
        self.settings = settings
        est = estimation
        self.info = info or {
            "seed": settings.get("seed"), "device": est.device, "dtype": est.dtype,
            "threads": est.threads, "seconds": est.seconds["total"], "seconds_by_stage": est.seconds,
            "steps": est.steps, "converged": est.converged, "refine_rounds": est.refine_rounds,
            "is_samples": est.is_samples, "se_method": est.se_method, "warnings": est.warnings,
            "versions": _versions(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        }
        self._build_tables()

    # ---- tables ------------------------------------------------------------------------------
    def _build_tables(self) -> None:
        tab = pd.DataFrame(self.estimation.table).set_index("name")
        tab.index.name = None
        self._table = tab
        est, se = tab["estimate"], tab["se"]
        self.params = pd.DataFrame({"estimate": est, "se": se,
                                    "rse": 100 * se / est.abs()})
        ci = self.conf_int(0.05)
        self.params["ci_lower"], self.params["ci_upper"] = ci["lower"], ci["upper"]
        self.params.insert(0, "kind", tab["kind"])
        fixed = tab["kind"].isin(["fixed", "beta"])
        self.fixed_effects = est[fixed].rename("estimate")
        rand = list(self.model.random)
        self.omega = pd.DataFrame(self.estimation.omega, index=rand, columns=rand)
        self.sigma = pd.Series(self.estimation.error, name="sigma")
        self.loglik = float(self.estimation.loglik)
        self.loglik_se = float(self.estimation.loglik_se)
        self.df_modelwc = int(len(tab))
        self.aic = -2 * self.loglik + 2 * self.df_modelwc
        self.bic = -2 * self.loglik + math.log(self.data.n_individuals) * self.df_modelwc

    @property
    def bse(self) -> pd.Series:
        """Standard errors (statsmodels name)."""
        return self.params["se"]

    @property
    def llf(self) -> float:
        """Log-likelihood by importance sampling (statsmodels name; saemix's ll.is)."""
        return self.loglik

    @property
    def n_individuals(self) -> int:
        return self.data.n_individuals

    @property
    def nobs(self) -> int:
        return self.data.n_obs

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals on each parameter's transformed scale, mapped back to the natural scale."""
        import torch

        z = stats.norm.ppf(1 - alpha / 2)
        rows = {}
        for name, r in self._table.iterrows():
            lo = r["estimate_transformed"] - z * r["se_transformed"]
            hi = r["estimate_transformed"] + z * r["se_transformed"]
            back = [float(tr.forward(r["scale"], torch.tensor(v, dtype=torch.float64))) for v in (lo, hi)]
            rows[name] = back
        return pd.DataFrame.from_dict(rows, orient="index", columns=["lower", "upper"])

    def summary(self) -> Summary:
        """A table like saemix's printout: estimate, SE, RSE%, 95% CI, then likelihood."""
        d, info = self.data, self.info
        head = [
            "Nonlinear mixed-effects model (pymixnn): minibatch SVI"
            + (" + importance-weighted refinement" if self.settings.get("refine", True) else ""),
            self.model.describe(),
            f"data: {d.n_individuals} individuals, {d.n_obs} observations; y={d.y_col!r}, "
            f"x={d.x_cols}" + (f", covariates={d.covariate_cols}" if d.covariate_cols else ""),
            f"seed {info['seed']}, device {info['device']} ({info['dtype']}), {info['steps']} SVI "
            f"steps, {info['seconds']:.1f} s",
        ]
        labels = {"fixed": "Fixed effects", "beta": None, "omega": "Variance of random effects",
                  "sigma": "Residual error"}
        p = self.params
        lines = []
        fmt = lambda v: "NA" if not np.isfinite(v) else f"{v:.5g}"  # noqa: E731
        width = max(len(str(n)) for n in p.index) + 2
        cols = f"{'':{width}}{'Estimate':>11}{'SE':>11}{'RSE(%)':>9}{'2.5%':>11}{'97.5%':>11}"
        for kind in ("fixed", "omega", "sigma"):
            kinds = ("fixed", "beta") if kind == "fixed" else (kind,)
            block = p[p["kind"].isin(kinds)]
            if block.empty:
                continue
            lines += ["", labels[kind], cols]
            for name, r in block.iterrows():
                lines.append(f"{name:{width}}{fmt(r['estimate']):>11}{fmt(r['se']):>11}"
                             f"{(f'{r.rse:.1f}' if np.isfinite(r.rse) else 'NA'):>9}"
                             f"{fmt(r['ci_lower']):>11}{fmt(r['ci_upper']):>11}")
        lik = ["", "Likelihood (importance sampling)",
               f"  ll.is  {self.loglik:.3f}  (Monte Carlo SE {self.loglik_se:.3f}, "
               f"{info['is_samples']} draws per individual)",
               f"  AIC    {self.aic:.3f}", f"  BIC    {self.bic:.3f}  (log of the number of "
                                             "individuals, as saemix)",
               "", f"SEs: {info['se_method']}"]
        lik += [f"warning: {w}" for w in info.get("warnings", [])]
        table = p.drop(columns="kind")
        return Summary("\n".join(head + lines + lik), table)

    def __repr__(self) -> str:
        return (f"<pymixnn Results: {self.model.name or 'custom model'}, {self.data.n_individuals} "
                f"individuals, ll.is {self.loglik:.3f}>")

    # ---- individual parameters ---------------------------------------------------------------
    def _phi_population(self, Z: np.ndarray) -> np.ndarray:
        mu = self.estimation.mu
        phi = np.tile(mu, (Z.shape[0], 1))
        for j, p in enumerate(self.design.parameters):
            phi[:, self.model.parameters.index(p)] += Z[:, j] * self.estimation.beta[j]
        return phi

    def _psi(self, phi: np.ndarray) -> np.ndarray:
        import torch

        t = torch.as_tensor(phi, dtype=torch.float64)
        return np.column_stack([tr.forward(self.model.transforms[p], t[:, k]).numpy()
                                for k, p in enumerate(self.model.parameters)])

    def _eta_full(self, eta: np.ndarray) -> np.ndarray:
        full = np.zeros((eta.shape[0], len(self.model.parameters)))
        for j, p in enumerate(self.model.random):
            full[:, self.model.parameters.index(p)] = eta[:, j]
        return full

    def individual_params(self, kind: str = "map") -> pd.DataFrame:
        """psi_i on the natural scale: "map" (conditional mode) or "mean" (conditional mean, by IS)."""
        cols = list(self.model.parameters)
        idx = pd.Index(self.data.ids, name=self.data.id_col)
        if kind == "map":
            phi = self._phi_population(self.design.matrix) + self._eta_full(self.estimation.eta_map)
            return pd.DataFrame(self._psi(phi), index=idx, columns=cols)
        if kind == "mean":
            return pd.DataFrame(self.estimation.psi_mean, index=idx, columns=cols)
        raise ValueError(f"kind must be 'map' or 'mean', got {kind!r}")

    def random_effects(self, kind: str = "map") -> pd.DataFrame:
        """eta_i (transformed scale): conditional mode ("map") or conditional mean ("mean")."""
        eta = {"map": self.estimation.eta_map, "mean": self.estimation.eta_mean}.get(kind)
        if eta is None:
            raise ValueError(f"kind must be 'map' or 'mean', got {kind!r}")
        return pd.DataFrame(eta, index=pd.Index(self.data.ids, name=self.data.id_col),
                            columns=list(self.model.random))

    @property
    def shrinkage(self) -> pd.Series:
        """saemix's shrinkage, 1 - var(eta_MAP) / omega2, per parameter with a random effect (%)."""
        var = self.estimation.eta_map.var(axis=0, ddof=1)
        return pd.Series(100 * (1 - var / np.diag(self.estimation.omega)),
                         index=list(self.model.random), name="shrinkage (%)")

    # ---- predictions -------------------------------------------------------------------------
    def _evaluate(self, psi_rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model.function(torch.as_tensor(psi_rows, dtype=torch.float64),
                                      torch.as_tensor(x, dtype=torch.float64))
        return out.numpy()

    def predict(self, data: pd.DataFrame | None = None, level: str = "population") -> np.ndarray:
        """Predictions f(psi, x) for each row: population (eta = 0, covariates included) or
        individual (MAP eta; individuals not in the fit get eta = 0). ``data`` needs the id and x
        columns (and the covariates of the model); default: the fitted data."""
        if level not in ("population", "individual"):
            raise ValueError(f"level must be 'population' or 'individual', got {level!r}")
        d = self.data
        if data is None:
            frame, row_ind = d.frame, d.index
            x = d.x
            Z_ind = self.design.matrix
            known = np.ones(len(frame), dtype=bool)
        else:
            needed = [d.id_col, *d.x_cols, *self.design.columns]
            missing = [c for c in dict.fromkeys(needed) if c not in data.columns]
            if missing:
                raise ValueError(f"columns {missing} are needed for prediction")
            frame = data
            x = frame[d.x_cols].to_numpy(dtype=np.float64)
            bad = ~np.isfinite(x)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise ValueError(f"column {d.x_cols[c]!r}: row {frame.index[r]!r} has value {x[r, c]!r}")
            ids = pd.unique(frame[d.id_col])
            row_ind = pd.Index(ids).get_indexer(frame[d.id_col])
            covs = frame.groupby(d.id_col, sort=False)[list(dict.fromkeys(self.design.columns))].first()
            Z_ind = self.design.transform(covs.loc[ids]) if self.design.n_effects else np.zeros((len(ids), 0))
            fitted = pd.Index(d.ids)
            pos = fitted.get_indexer(ids)
            known = pos[row_ind] >= 0
        phi = self._phi_population(Z_ind)[row_ind]
        if level == "individual":
            eta = self._eta_full(self.estimation.eta_map)
            if data is None:
                phi = phi + eta[row_ind]
            else:
                phi = phi + np.where(known[:, None], eta[np.maximum(pos[row_ind], 0)], 0.0)
        return self._evaluate(self._psi(phi), x)

    def _residual_scale(self, f: np.ndarray) -> np.ndarray:
        e = self.estimation.error
        if self.model.error in ("constant", "exponential"):
            return np.full_like(f, e["a"])
        if self.model.error == "proportional":
            return np.maximum(e["b"] * np.abs(f), 1e-10)
        return np.sqrt(e["a"] ** 2 + e["b"] ** 2 * f**2)

    def residuals(self) -> pd.DataFrame:
        """Per observation: PRED, IPRED, IRES (y - IPRED) and IWRES (IRES / g(IPRED))."""
        d = self.data
        pred, ipred = self.predict(level="population"), self.predict(level="individual")
        if self.model.error == "exponential":
            ires = np.log(d.y) - np.log(np.maximum(ipred, 1e-300))
        else:
            ires = d.y - ipred
        out = d.frame[[d.id_col, *d.x_cols, d.y_col]].copy()
        out["pred"], out["ipred"], out["ires"] = pred, ipred, ires
        out["iwres"] = ires / self._residual_scale(ipred)
        return out

    @property
    def fittedvalues(self) -> np.ndarray:
        """Individual predictions (IPRED) at the data (statsmodels name)."""
        return self.predict(level="individual")

    @property
    def resid(self) -> np.ndarray:
        """y - IPRED (statsmodels name)."""
        return self.data.y - self.fittedvalues

    # ---- plots -------------------------------------------------------------------------------
    def plot_individuals(self, path: str | Path, *, ids: list | None = None, max_panels: int = 24,
                         time: str | None = None, n_grid: int = 100) -> Path:
        """PNG: observed data and individual (MAP) and population fits, one panel per individual."""
        from pymixnn.plots import plot_individual_fits

        return plot_individual_fits(self, path, ids=ids, max_panels=max_panels, time=time,
                                    n_grid=n_grid)

    # ---- export ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The documented JSON record (see the README): estimates, SEs, likelihood, run info."""
        p = self.params
        fixed = p[p["kind"].isin(["fixed", "beta"])]
        clean = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
        return {
            "model": self.model.name or getattr(self.model.function, "__name__", "custom"),
            "n_individuals": int(self.data.n_individuals), "n_obs": int(self.data.n_obs),
            "fixed_effects": {n: {"estimate": clean(r["estimate"]), "se": clean(r["se"])}
                              for n, r in fixed.iterrows()},
            "omega": {n: float(self.omega.loc[n, n]) for n in self.omega.index},
            "omega_se": {n.split(".", 1)[1]: clean(r["se"]) for n, r in p.iterrows()
                         if n.startswith("omega2.")},
            "sigma": {n: float(v) for n, v in self.sigma.items()},
            "loglik": self.loglik, "loglik_se": self.loglik_se, "aic": self.aic, "bic": self.bic,
            "seconds": float(self.info["seconds"]), "device": self.info["device"],
            "seed": self.info["seed"], "steps": int(self.info["steps"]),
            "se_method": self.info["se_method"], "versions": self.info["versions"],
        }

    def to_json(self, path: str | Path | None = None, **kwargs) -> str:
        text = json.dumps(self.to_dict(), indent=2, **kwargs)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def save(self, path: str | Path) -> Path:
        """Save everything needed to reload the results exactly (JSON; floats round-trip exactly)."""
        from pymixnn.serialization import encode

        m = self.model
        record = {
            "format": FORMAT_VERSION,
            "model": {"name": m.name, "parameters": list(m.parameters), "init": m.init,
                      "transforms": dict(m.transforms), "random": list(m.random), "omega": m.omega,
                      "error": m.error, "error_init": m.error_init,
                      "x_names": list(m.x_names) if m.x_names else None},
            "data": {"frame": self.data.frame, "id": self.data.id_col, "x": self.data.x_cols,
                     "y": self.data.y_col, "covariates": self.data.covariate_cols},
            "design": dataclasses.asdict(self.design),
            "estimation": dataclasses.asdict(self.estimation),
            "settings": self.settings, "info": self.info,
        }
        path = Path(path)
        path.write_text(json.dumps(encode(record)))
        return path

    @classmethod
    def load(cls, path: str | Path, *, model: Model | None = None) -> "Results":
        """Reload saved results. A custom structural function is not saved: pass ``model=``."""
        from pymixnn.serialization import decode

        record = decode(json.loads(Path(path).read_text()))
        if record.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown results format {record.get('format')!r}")
        spec = record["model"]
        if model is None:
            if spec["name"] is None or spec["name"] not in _named_models():
                raise ValueError(f"{path} was fitted with a custom structural function; "
                                 "pass it: Results.load(path, model=pymixnn.Model(...))")
            model = named(spec["name"], init=spec["init"], transforms=spec["transforms"],
                          random=spec["random"], omega=spec["omega"], error=spec["error"],
                          error_init=spec["error_init"])
        dd = record["data"]
        data = Data.from_pandas(dd["frame"], id=dd["id"], x=dd["x"], y=dd["y"],
                                covariates=dd["covariates"] or None)
        design = CovariateDesign(**record["design"])
        estimation = Estimation(**record["estimation"])
        return cls(model=model, data=data, design=design, estimation=estimation,
                   settings=record["settings"], info=record["info"])


def _named_models():
    from pymixnn.models import NAMED_MODELS

    return NAMED_MODELS
