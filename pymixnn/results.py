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
        # free parameters: the length of theta (a mixture's K weights have K - 1; a flow counts
        # every parameter of its layers)
        self.df_modelwc = int(len(self.estimation.theta))
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
        law = self.random_effects_law
        if law.name != "gaussian":
            head.insert(2, law.describe() + (
                f"; {self.df_modelwc} free parameters" if law.name == "flow" else ""))
        labels = {"fixed": "Fixed effects", "beta": None, "omega": "Variance of random effects",
                  "sigma": "Residual error", "law": "Mixture components (weights; means on the "
                                                    "natural scale)"}
        if law.name == "flow":
            labels["omega"] = "Variance of random effects under the fitted flow (transformed scale)"
        p = self.params
        lines = []
        fmt = lambda v: "NA" if not np.isfinite(v) else f"{v:.5g}"  # noqa: E731
        width = max(len(str(n)) for n in p.index) + 2
        cols = f"{'':{width}}{'Estimate':>12}{'SE':>12}{'RSE(%)':>9}{'2.5%':>12}{'97.5%':>12}"
        for kind in ("fixed", "law", "omega", "sigma"):
            kinds = ("fixed", "beta") if kind == "fixed" else (kind,)
            block = p[p["kind"].isin(kinds)]
            if block.empty:
                continue
            lines += ["", labels[kind], cols]
            for name, r in block.iterrows():
                # width 12 holds the longest %.5g value (-1.2346e-05) with a separating space
                lines.append(f"{name:{width}}{fmt(r['estimate']):>12}{fmt(r['se']):>12}"
                             f"{(f'{r.rse:.1f}' if np.isfinite(r.rse) else 'NA'):>9}"
                             f"{fmt(r['ci_lower']):>12}{fmt(r['ci_upper']):>12}")
        lik = ["", "Likelihood (importance sampling)",
               f"  ll.is  {self.loglik:.3f}  (Monte Carlo SE {self.loglik_se:.3f}, "
               f"{info['is_samples']} draws per individual)",
               f"  AIC    {self.aic:.3f}", f"  BIC    {self.bic:.3f}  (log of the number of "
                                             "individuals, as saemix)",
               "", f"SEs: {info['se_method']}"]
        selection = self.estimation.law.get("selection")
        if selection:
            lik += ["", f"Number of mixture components chosen by {self.estimation.law['criterion']}:"]
            lik += ["  " + line for line in pd.DataFrame(selection).to_string(index=False).splitlines()]
        lik += [f"warning: {w}" for w in info.get("warnings", [])]
        table = p.drop(columns="kind")
        return Summary("\n".join(head + lines + lik), table)

    @property
    def random_effects_law(self):
        """The random-effects law spec of the fit (pymixnn.Gaussian / Mixture / Flow)."""
        from pymixnn.random_effects import from_dict

        return from_dict(self.estimation.law.get("spec"))

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

    # ---- the law of the random effects -----------------------------------------------------
    def _law_draws(self, n: int, seed: int) -> np.ndarray:
        from pymixnn.inference.laws import sample_fitted_law

        record = self.estimation.law
        if not record or "omega_slice" not in record:
            raise ValueError("these results carry no random-effects law record")
        return sample_fitted_law(record, self.estimation.theta, n, seed)

    def _typical_phi(self) -> np.ndarray:
        """phi at eta = 0 for the average covariate row of the data (transformed scale)."""
        Z = self.design.matrix.mean(axis=0, keepdims=True) if self.design.n_effects else \
            np.zeros((1, 0))
        return self._phi_population(Z)[0]

    def re_density(self, *, n_samples: int = 200_000, grid_size: int = 400, seed: int = 0):
        """The fitted law of the individual parameters with a random effect: draws and marginal
        log-densities on a grid (exact for Gaussian and mixture laws, kernel estimates for a
        flow). Returns a :class:`pymixnn.re_density.REDensity` (pandas tables)."""
        from pymixnn.re_density import REDensity, marginal_grid

        rand = list(self.model.random)
        eta = self._law_draws(n_samples, seed)
        phi0 = self._typical_phi()
        pos = [self.model.parameters.index(p) for p in rand]
        phi = eta + phi0[pos]
        law = self.random_effects_law
        rows = []
        psi_cols = {}
        for j, name in enumerate(rand):
            exact = self._exact_marginal(j, phi0[pos[j]]) if law.name != "flow" else None
            grid, logd = marginal_grid(phi[:, j], exact, size=grid_size)
            psi_grid = self._psi_column(name, grid)
            rows.append(pd.DataFrame({"parameter": name, "phi": grid, "psi": psi_grid,
                                      "log_density": logd, "density": np.exp(logd)}))
            psi_cols[name] = self._psi_column(name, phi[:, j])
        return REDensity(samples=pd.DataFrame(phi, columns=rand),
                         psi_samples=pd.DataFrame(psi_cols), grid=pd.concat(rows, ignore_index=True),
                         law=law.name)

    def _psi_column(self, name: str, phi: np.ndarray) -> np.ndarray:
        import torch

        return tr.forward(self.model.transforms[name], torch.as_tensor(phi, dtype=torch.float64)).numpy()

    def _exact_marginal(self, j: int, centre: float):
        """log-density of the j-th marginal of phi for Gaussian and mixture laws (closed form)."""
        import torch
        from scipy.special import logsumexp

        from pymixnn.inference.laws import fitted_law

        if self.random_effects_law.name == "gaussian":
            sd = math.sqrt(self.estimation.omega[j, j])
            return lambda x: stats.norm.logpdf(x, centre, sd)
        law, L, raw = fitted_law(self.estimation.law, self.estimation.theta)
        with torch.no_grad():
            w, means, trils = law.components(L, raw)
            var = (trils @ trils.transpose(-1, -2))[:, j, j]
        w, m, sd = w.numpy(), means[:, j].numpy() + centre, var.sqrt().numpy()
        return lambda x: logsumexp(np.log(w) + stats.norm.logpdf(np.asarray(x)[:, None], m, sd), axis=1)

    def re_summary(self, *, n_samples: int = 200_000, seed: int = 0) -> pd.DataFrame:
        """Per parameter with a random effect, under the fitted law (average covariates): mean,
        median, sd and skewness of psi (natural scale) and of phi (transformed scale), and the
        number of modes of the marginal density of phi."""
        from pymixnn.re_density import law_table

        dens = self.re_density(n_samples=n_samples, seed=seed)
        return law_table(dens.samples, dens.psi_samples, dens.grid)

    def re_correlation(self, *, scale: str = "psi", n_samples: int = 200_000, seed: int = 0) -> pd.DataFrame:
        """Correlation matrix of the individual parameters with a random effect under the fitted
        law (average covariates), on the natural ("psi") or transformed ("phi") scale."""
        if scale not in ("psi", "phi"):
            raise ValueError(f"scale must be 'psi' or 'phi', got {scale!r}")
        dens = self.re_density(n_samples=n_samples, seed=seed)
        return (dens.psi_samples if scale == "psi" else dens.samples).corr()

    def re_logpdf(self, eta: np.ndarray) -> np.ndarray:
        """Joint log-density of random-effect vectors (rows, transformed scale, centred as
        ``random_effects()``) under the fitted law."""
        from pymixnn.inference.laws import log_density_fitted_law

        eta = np.atleast_2d(np.asarray(eta, float))
        if eta.shape[1] != len(self.model.random):
            raise ValueError(f"eta must have {len(self.model.random)} columns {list(self.model.random)}, "
                             f"got shape {eta.shape}")
        return log_density_fitted_law(self.estimation.law, self.estimation.theta, eta)

    def component_probabilities(self) -> pd.DataFrame:
        """Mixture laws: posterior probability of each component for each individual."""
        resp = self.estimation.law.get("responsibilities")
        if resp is None:
            raise ValueError("component probabilities exist only for random_effects='mixture'")
        resp = np.asarray(resp)
        return pd.DataFrame(resp, index=pd.Index(self.data.ids, name=self.data.id_col),
                            columns=[f"component {k + 1}" for k in range(resp.shape[1])])

    def plot_random_effects(self, path: str | Path, *, truth: dict | None = None,
                            n_samples: int = 200_000, seed: int = 0) -> Path:
        """PNG of the fitted law of phi: marginals (fitted density, histograms of the MAP and
        conditional-mean estimates, and the true density when ``truth`` maps a parameter to a
        callable log-density of phi or to an array of true phi values) and pairwise scatter
        plots of law draws against the MAP estimates."""
        from pymixnn.plots import plot_random_effects

        return plot_random_effects(self, path, truth=truth, n_samples=n_samples, seed=seed)

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
            "random_effects": {**dataclasses.asdict(self.random_effects_law), "df": self.df_modelwc,
                               **({"penalty": self.estimation.law["penalty"]}
                                  if "penalty" in self.estimation.law else {})},
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


def compare_fits(*results: "Results", names: list[str] | None = None) -> pd.DataFrame:
    """Fits side by side: one column per fit; rows are the law, the number of free parameters,
    ll.is (and its Monte Carlo SE), AIC, BIC, seconds, then every fixed effect, variance and
    residual error parameter that any of the fits reports (NaN where a fit does not have it).

    >>> table = pymixnn.compare_fits(res_gauss, res_mix, res_flow)  # doctest: +SKIP
    """
    if not results:
        raise ValueError("compare_fits needs at least one Results")
    if len(results) == 1 and isinstance(results[0], (list, tuple)):
        results = tuple(results[0])
    for r in results:
        if not isinstance(r, Results):
            raise TypeError(f"compare_fits takes Results objects, got {type(r).__name__}")
    if names is None:
        names = [r.random_effects_law.name for r in results]
        if len(set(names)) < len(names):
            names = [f"{n} ({k + 1})" for k, n in enumerate(names)]
    if len(names) != len(results):
        raise ValueError(f"{len(names)} names for {len(results)} fits")
    head = pd.DataFrame({n: {"random_effects": r.random_effects_law.name,
                             "df": r.df_modelwc, "ll.is": r.loglik, "ll.is_se": r.loglik_se,
                             "AIC": r.aic, "BIC": r.bic, "seconds": r.info["seconds"],
                             "individuals": r.n_individuals}
                         for n, r in zip(names, results)})
    params = pd.DataFrame({n: r.params["estimate"] for n, r in zip(names, results)})
    order = list(dict.fromkeys(i for r in results for i in r.params.index))
    return pd.concat([head, params.loc[order]])


def _named_models():
    from pymixnn.models import NAMED_MODELS

    return NAMED_MODELS
