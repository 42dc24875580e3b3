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

from pymixnn.model.covariates import CovariateDesign
from pymixnn.data.table import Data
from pymixnn.inference import Estimation
from pymixnn.model.named import Model, named
from pymixnn.model import transforms as tr

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
                 estimation: Estimation, settings: dict, info: dict | None = None,
                 observation=None, markers: dict | None = None):
        from pymixnn.model.observation import bind, from_dict

        self.model, self.data, self.design = model, data, design
        if observation is None:
            observation = from_dict(settings.get("observation"))
        self.observation = bind(observation, model)
        self.estimation = estimation
        self.settings = settings
        # a genomic fit: the marker matrix (pymixnn.markers.MarkerMatrix), the Genomic spec, the
        # genotype column and interaction levels (see genomic_results.py)
        self._markers = markers
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
    def diagnostics(self) -> pd.DataFrame:
        """Convergence and sanity checks of the fit (see :mod:`pymixnn.diagnostics`): one row per
        check with ``value``, ``limit``, ``ok``, ``severity`` and ``message``."""
        if getattr(self, "_diagnostics", None) is None:
            from pymixnn.results.diagnostics import convergence_report

            self._diagnostics = convergence_report(self)
        return self._diagnostics

    @property
    def converged(self) -> bool:
        """True when every check of severity "error" in :attr:`diagnostics` passes: the estimates
        maximize the likelihood (Newton decrement, gradient, positive definite information) and
        are sane (no variance at the boundary, no absurd scale, a possible log-likelihood)."""
        d = self.diagnostics
        return bool(d.loc[d["severity"] == "error", "ok"].all())

    def convergence_messages(self) -> list[str]:
        """Messages of the failed checks (errors first, then warnings)."""
        d = self.diagnostics
        bad = d[~d["ok"] & d["severity"].isin(["error", "warning"])]
        return [str(m) for m in bad.sort_values("severity", key=lambda s: s != "error")["message"]]

    @property
    def bse(self) -> pd.Series:
        """Standard errors (statsmodels name)."""
        return self.params["se"]

    @property
    def llf(self) -> float:
        """Log-likelihood (statsmodels name): saemix's ll.is (importance sampling) or ll.gq
        (adaptive Gauss-Hermite quadrature), see ``loglik_method``."""
        return self.loglik

    @property
    def loglik_method(self) -> str:
        """How the log-likelihood was integrated: "is" or "gq"."""
        return getattr(self.estimation, "loglik_method", "is")

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

    def cov_params(self) -> pd.DataFrame:
        """Covariance matrix of the estimates in ``params`` (statsmodels name), on the natural
        scale: the inverse observed Fisher information carried through the delta method, so its
        diagonal is ``bse**2``. Fits that only report SEs (the saemix/nlme bridges, results saved
        before this matrix was kept) have NaN off the diagonal."""
        names = list(self.params.index)
        cov = self.estimation.cov_params
        if cov is None:
            cov = np.full((len(names), len(names)), np.nan)
            np.fill_diagonal(cov, self.params["se"].to_numpy() ** 2)
        return pd.DataFrame(np.asarray(cov, dtype=float), index=names, columns=names)

    def summary(self) -> Summary:
        """A table like saemix's printout: estimate, SE, RSE%, 95% CI, then likelihood."""
        d, info = self.data, self.info
        engine = self.settings.get("engine")
        head = [
            (f"Nonlinear mixed-effects model fitted by {engine} (through pymixnn.compare)" if engine
             else "Nonlinear mixed-effects model (pymixnn): minibatch SVI"
             + (" + importance-weighted refinement" if self.settings.get("refine", True) else "")),
            self._describe_model(),
            f"data: {d.n_individuals} individuals, {d.n_obs} observations; y={d.y_col!r}, "
            f"x={d.x_cols}" + self._covariates_header(),
            (f"seed {info['seed']}, {info['seconds']:.1f} s in R" if engine else
             f"seed {info['seed']}, device {info['device']} ({info['dtype']}), {info['steps']} SVI "
             f"steps, {info['seconds']:.1f} s"),
        ]
        law = self.random_effects_law
        if law.name != "gaussian":
            head.insert(2, law.describe() + (
                f"; {self.df_modelwc} free parameters" if law.name == "flow" else ""))
        labels = {"fixed": "Fixed effects", "beta": None, "omega": "Variance of random effects",
                  "sigma": ("Residual error" if self.observation.name == "gaussian" else
                            f"Observation model ({self.observation.name})"), "law": "Mixture components (weights; means on the "
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
        if self.loglik_method == "gq":
            lik = ["", "Likelihood (adaptive Gauss-Hermite quadrature)",
                   f"  ll.gq  {self.loglik:.3f}  ({self.estimation.quadrature_nodes} nodes per "
                   f"random effect, {info['is_samples']} per individual)"]
        elif self.loglik_method.startswith("nlme"):
            lik = ["", f"Likelihood (nlme, {self.loglik_method.split('.', 1)[1]}, linearisation)",
                   f"  logLik {self.loglik:.3f}"]
        else:
            mc = (f"Monte Carlo SE {self.loglik_se:.3f}, " if np.isfinite(self.loglik_se) else "")
            lik = ["", "Likelihood (importance sampling)",
                   f"  ll.is  {self.loglik:.3f}  ({mc}{info['is_samples']} draws per individual)"]
        lik += [f"  AIC    {self.aic:.3f}", f"  BIC    {self.bic:.3f}  (log of the number of "
                                                  "individuals, as saemix)",
                *(["  AIC and BIC are not comparable with a fit without markers: ll excludes the "
                   "markers' prior (genetic values plugged in)"] if self._is_genomic() else []),
                "", f"SEs: {info['se_method']}"]
        selection = self.estimation.law.get("selection")
        if selection:
            lik += ["", f"Number of mixture components chosen by {self.estimation.law['criterion']}:"]
            lik += ["  " + line for line in pd.DataFrame(selection).to_string(index=False).splitlines()]
        lik += self._genomic_summary()
        lik += ["", "Convergence: " + ("yes (" + "; ".join(
            str(m) for m in self.diagnostics.loc[
                [c for c in ("newton_decrement", "information") if c in self.diagnostics.index],
                "message"]) + ")" if self.converged else "NOT converged")]
        lik += [f"  problem: {m}" for m in self.convergence_messages()]
        lik += [f"warning: {w}" for w in info.get("warnings", [])]
        table = p.drop(columns="kind")
        return Summary("\n".join(head + lines + lik), table)

    def _is_genomic(self) -> bool:
        return bool(getattr(self.estimation, "genomic", None))

    def _covariates_header(self) -> str:
        """", covariates=[...]" of the summary's data line, the genotype column apart, and x
        columns given as dates with their unit and origin."""
        d, genotype = self.data, self.settings.get("genotype")
        covs = [c for c in d.covariate_cols if c != genotype]
        return ((f", covariates={covs}" if covs else "")
                + (f", genotype column {genotype!r}" if genotype else "")
                + "".join(f"; {line}" for line in d.time_conversions()))

    def _genomic_summary(self) -> list[str]:
        gen = getattr(self.estimation, "genomic", None)
        if not gen:
            return []
        rep = gen.get("report", {})
        lines = ["", f"Genomic: marker effects on {gen['params']} ({gen['prior']} prior"
                     + (f", x {gen['interaction']} interaction" if gen.get("interaction") else "")
                     + (", genotype residual" if gen["residual"] else "") + ")",
                 f"  {rep.get('n_markers', len(gen['marker_names']))} markers on "
                 f"{rep.get('n_genotypes', '?')} genotypes ({len(gen['genotype_rows'])} phenotyped, "
                 f"column {gen.get('genotype_column')!r}); {rep.get('n_missing_imputed', 0)} missing "
                 f"values mean-imputed, {rep.get('n_monomorphic', 0)} monomorphic and "
                 f"{rep.get('n_all_missing', 0)} all-missing markers dropped",
                 "  variance of the transformed parameters (markers: over phenotyped genotypes):"]
        var = self.variance_explained
        lines += ["  " + line for line in var.to_string(float_format=lambda v: f"{v:.4g}").splitlines()]
        top = self.top_markers(5)
        keep = [c for c in ["parameter", "rank", "marker", "chr", "pos", "effect", "sd", "inclusion"]
                if c in top]
        lines += ["  top markers:"]
        lines += ["  " + line for line in top[keep].to_string(
            index=False, float_format=lambda v: f"{v:.4g}").splitlines()]
        lines += ["  Omega and the estimates above are conditional on the genetic values' posterior "
                  "(mean plugged in, variance in Omega's update); ll excludes the markers' prior"]
        return lines

    def _describe_model(self) -> str:
        text = self.model.describe()
        obs = self.observation
        n_cens = int(self.data.aux["censored"].sum()) if "censored" in self.data.aux else 0
        if obs.name == "gaussian":
            if n_cens:
                text += (f"; {n_cens} left-censored observations (column "
                         f"{self.data.aux_cols['censored']!r}, M3 likelihood)")
            return text
        head = text.rsplit(";", 1)[0]
        extra = f", trials in {self.data.aux_cols['trials']!r}" if "trials" in self.data.aux_cols else ""
        return f"{head}; {obs.describe(self.model)}{extra}"

    @property
    def random_effects_law(self):
        """The random-effects law spec of the fit (pymixnn.Gaussian / Mixture / Flow)."""
        from pymixnn.model.random_effects import from_dict

        return from_dict(self.estimation.law.get("spec"))

    def __repr__(self) -> str:
        return (f"<pymixnn Results: {self.model.name or 'custom model'}, {self.data.n_individuals} "
                f"individuals, ll.{self.loglik_method} {self.loglik:.3f}>")

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

    def _individual_offset(self) -> np.ndarray:
        """Genotype-level offsets of a genomic fit (posterior means; transformed scale), (N, P);
        zeros otherwise."""
        gen = getattr(self.estimation, "genomic", None)
        if not gen:
            return np.zeros((self.data.n_individuals, len(self.model.parameters)))
        return np.asarray(gen["offset"])

    # ---- genomic fits (genomic_results.py) ---------------------------------------------------
    @property
    def marker_effects(self) -> pd.DataFrame:
        """Marker effects per parameter: parameter, marker, effect, sd (per allele, transformed
        scale), effect_std, sd_std (per marker sd), inclusion (horseshoe), chr, pos (with a map)."""
        from pymixnn.results.genomic import marker_effects

        return marker_effects(self)

    def top_markers(self, n: int = 20, parameter: str | None = None) -> pd.DataFrame:
        """The n strongest markers per parameter (inclusion probability, or |effect| / sd)."""
        from pymixnn.results.genomic import top_markers

        return top_markers(self, n, parameter)

    def plot_manhattan(self, path: str | Path, parameter: str | None = None, *, top: int = 10):
        """Manhattan-style PNG per parameter (a directory, or a .png for one parameter)."""
        from pymixnn.results.genomic import plot_manhattan

        return plot_manhattan(self, path, parameter, top=top)

    @property
    def variance_explained(self) -> pd.DataFrame:
        """Variance of each parameter with marker effects by source, and the markers' share."""
        from pymixnn.results.genomic import variance_explained

        return variance_explained(self)

    @property
    def genetic_values(self) -> pd.DataFrame:
        """Posterior mean genetic value per phenotyped genotype (and scenario) and parameter."""
        from pymixnn.results.genomic import genetic_values

        return genetic_values(self)

    def genotype_parameters(self, markers_new, scenario=None) -> pd.DataFrame:
        """Predicted genetic values (mean, sd) and typical parameters of new genotypes."""
        from pymixnn.results.genomic import genotype_parameters

        return genotype_parameters(self, markers_new, scenario)

    def predict_genotypes(self, markers_new, x_grid, scenario=None, *, level: float = 0.9,
                          n_draws: int = 1000, band: str | None = None,
                          individual: bool | None = None, seed: int = 0) -> pd.DataFrame:
        """Predicted curves with ``level`` bands for genotypes never phenotyped: ``band="mean"``
        for the genotype's typical curve, ``band="individual"`` for one new individual of it
        (wider); see :func:`pymixnn.genomic_results.predict_genotypes`."""
        from pymixnn.results.genomic import predict_genotypes

        return predict_genotypes(self, markers_new, x_grid, scenario, level=level,
                                 n_draws=n_draws, band=band, individual=individual, seed=seed)

    def _known_offset(self, rows: dict) -> np.ndarray:
        """Genotype offsets of the fitted individuals among ``rows`` (0 for new individuals):
        in a genomic fit the genotype's marker-predicted value and residual act like covariates."""
        offset = self._individual_offset()
        pos = rows["pos"]
        return np.where((pos >= 0)[:, None], offset[np.maximum(pos, 0)], 0.0)

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
            phi = (self._phi_population(self.design.matrix) + self._eta_full(self.estimation.eta_map)
                   + self._individual_offset())
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
        from pymixnn.results.re_density import REDensity, marginal_grid

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
        from pymixnn.results.re_density import law_table

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
        from pymixnn.results.plots import plot_random_effects

        return plot_random_effects(self, path, truth=truth, n_samples=n_samples, seed=seed)

    # ---- predictions -------------------------------------------------------------------------
    def _evaluate(self, psi_rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model.function(torch.as_tensor(psi_rows, dtype=torch.float64),
                                      torch.as_tensor(x, dtype=torch.float64))
        return out.numpy()

    def _design_rows(self, data: pd.DataFrame | None):
        """Per row of ``data`` (default: the fitted data): x, individual position of the row, the
        covariate rows per individual, known (fitted) individual of each row and its position,
        auxiliary columns (trials, censoring)."""
        d = self.data
        if data is None:
            return dict(frame=d.frame, x=d.x, row_ind=d.index, Z=self.design.matrix,
                        known=np.ones(d.n_obs, dtype=bool), pos=np.arange(d.n_individuals),
                        aux={k: v for k, v in d.aux.items()})
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
            raise ValueError(f"column {d.x_cols[c]!r}: row {data.index[r]!r} has value {x[r, c]!r}")
        ids = pd.unique(data[d.id_col])
        row_ind = pd.Index(ids).get_indexer(data[d.id_col])
        covs = data.groupby(d.id_col, sort=False)[list(dict.fromkeys(self.design.columns))].first()
        Z = self.design.transform(covs.loc[ids]) if self.design.n_effects else np.zeros((len(ids), 0))
        pos = pd.Index(d.ids).get_indexer(ids)
        aux = {}
        if "trials" in d.aux_cols:
            aux["trials"] = data[d.aux_cols["trials"]].to_numpy(dtype=np.float64)
        return dict(frame=data, x=x, row_ind=row_ind, Z=Z, known=pos[row_ind] >= 0, pos=pos,
                    aux=aux)

    def _family_tensors(self, f: np.ndarray, aux: dict):
        import torch

        return (torch.as_tensor(f, dtype=torch.float64), self._family_params(),
                {k: torch.as_tensor(v, dtype=torch.float64) for k, v in aux.items()})

    def _family_params(self) -> dict:
        """The observation model's parameters as its log-density takes them (natural scale),
        from the observation block of theta (between omega and the law)."""
        import torch

        law = self.estimation.law
        if "omega_slice" not in law:  # results saved before the law record: Gaussian error only
            return {k: torch.tensor(v, dtype=torch.float64) for k, v in self.estimation.error.items()}
        raw = torch.as_tensor(self.estimation.theta[law["omega_slice"][1]:law["law_slice"][0]],
                              dtype=torch.float64)
        return self.observation.natural(raw, self.model)

    def predict(self, data: pd.DataFrame | None = None, level: str = "population",
                which: str = "mean") -> pd.Series:
        """Predictions for each row: population (eta = 0, covariates included) or individual (MAP
        eta; individuals not in the fit get eta = 0). ``which="mean"`` gives E[y | eta] (the
        structural prediction for Gaussian data; the rate, the expected number of successes or
        the expected category index for discrete families), ``which="linear"`` the structural
        function's output f (the linear predictor). ``data`` needs the id and x columns, the
        model's covariates (and the trials column of a binomial fit); default: the fitted data.

        Returns a Series indexed by the rows of ``data`` (default: the fitted data's row labels, in
        the user's row order, whatever the order of the individuals), so it aligns with the source
        DataFrame: ``df["ipred"] = res.predict(level="individual")``."""
        values = self._predict_rows(data, level, which)
        name = {"population": "pred", "individual": "ipred"}.get(level, level)
        if which == "linear":
            name += "_linear"
        if data is None:
            return self.data.to_user_order(values, name=name)
        return pd.Series(values, index=data.index, name=name)

    def _predict_rows(self, data: pd.DataFrame | None, level: str = "population",
                      which: str = "mean") -> np.ndarray:
        """:meth:`predict` as an array in the order of ``data``'s rows (default: the fitted data in
        ``Data.frame`` order, grouped by individual)."""
        if level not in ("population", "individual"):
            raise ValueError(f"level must be 'population' or 'individual', got {level!r}")
        if which not in ("mean", "linear"):
            raise ValueError(f"which must be 'mean' or 'linear', got {which!r}")
        rows = self._design_rows(data)
        phi = (self._phi_population(rows["Z"]) + self._known_offset(rows))[rows["row_ind"]]
        if level == "individual":
            eta = self._eta_full(self.estimation.eta_map)
            pos = rows["pos"][rows["row_ind"]]
            phi = phi + np.where(rows["known"][:, None], eta[np.maximum(pos, 0)], 0.0)
        f = self._evaluate(self._psi(phi), rows["x"])
        if which == "linear" or self.observation.name == "gaussian":
            return f
        import torch

        with torch.no_grad():
            return self.observation.mean(*self._family_tensors(f, rows["aux"])).numpy()

    def residuals(self) -> pd.DataFrame:
        """Per observation: PRED, IPRED (expected values), IRES (y - IPRED) and IWRES: IRES / g(IPRED)
        for Gaussian data (log scale for the exponential error model), the Pearson residual
        (y - E[y]) / sd(y) for discrete families. Ordinal y is the category index. Rows carry the
        data's row labels, in the user's row order."""
        import torch

        d = self.data
        pred, ipred = self._predict_rows(None, "population"), self._predict_rows(None, "individual")
        f_ind = self._predict_rows(None, "individual", which="linear")
        out = d.frame[[d.id_col, *d.x_cols, d.y_col]].copy()
        obs = self.observation
        with torch.no_grad():
            var = obs.variance(*self._family_tensors(f_ind, d.aux)).numpy()
        if obs.name == "gaussian" and self.model.error == "exponential":
            ires = np.log(d.y) - np.log(np.maximum(ipred, 1e-300))
        else:
            ires = d.y - ipred
        out["pred"], out["ipred"], out["ires"] = pred, ipred, ires
        out["iwres"] = ires / np.sqrt(var)
        if "censored" in d.aux:
            out["censored"] = d.aux["censored"].astype(bool)
        return out.iloc[d.user_order]  # the user's row order and row labels

    def simulate(self, n_rep: int = 100, *, seed: int = 0, level: str = "population",
                 data: pd.DataFrame | None = None) -> pd.DataFrame:
        """Replicates of the data set drawn from the fitted model: at ``level="population"`` new
        random effects from the fitted law (each individual keeps its covariates), at
        "individual" the MAP random effects; then observations from the observation model.
        Returns the rows of ``data`` (default: the fitted data) repeated ``n_rep`` times with
        columns ``rep``, id, x and ``y_sim`` (ordinal: the level)."""
        from pymixnn.model.observation import Ordinal

        if not (isinstance(n_rep, (int, np.integer)) and n_rep >= 1):
            raise ValueError(f"n_rep must be a positive integer, got {n_rep!r}")
        if level not in ("population", "individual"):
            raise ValueError(f"level must be 'population' or 'individual', got {level!r}")
        rows = self._design_rows(data)
        sims = self._simulated(n_rep, seed=seed, level=level, rows=rows)
        d = self.data
        frame = rows["frame"][[d.id_col, *d.x_cols]]
        if data is None:  # the fitted data: back in the user's row order
            frame, sims = frame.iloc[d.user_order], sims[:, d.user_order]
        out = pd.concat([frame.assign(rep=r) for r in range(n_rep)], ignore_index=True)
        y_all = np.concatenate(sims)
        if isinstance(self.observation, Ordinal):
            y_all = np.asarray(self.observation.levels, dtype=object)[y_all.astype(int)]
        out["y_sim"] = y_all
        return out[["rep", d.id_col, *d.x_cols, "y_sim"]]

    def _simulated(self, n_rep: int, *, seed: int, level: str = "population", rows=None) -> np.ndarray:
        """(n_rep, n_rows) simulated observations (ordinal: category codes)."""
        import torch

        rows = self._design_rows(None) if rows is None else rows
        n_ind, row_ind = rows["Z"].shape[0], rows["row_ind"]
        phi0 = self._phi_population(rows["Z"]) + self._known_offset(rows)
        gen = torch.Generator().manual_seed(int(seed))
        sims = []
        if level == "population":
            draws = self._law_draws(n_ind * n_rep, seed=int(seed)).reshape(n_rep, n_ind, -1)
        for r in range(n_rep):
            if level == "population":
                eta = self._eta_full(draws[r])
            else:
                known = (rows["pos"] >= 0)[:, None]
                eta = np.where(known, self._eta_full(self.estimation.eta_map[np.maximum(rows["pos"], 0)]),
                               0.0)
            f = self._evaluate(self._psi((phi0 + eta)[row_ind]), rows["x"])
            with torch.no_grad():
                y = self.observation.sample(*self._family_tensors(f, rows["aux"]), gen).numpy()
            sims.append(y)
        return np.stack(sims)

    def vpc(self, *, n_sim: int = 200, bins: int | np.ndarray | None = None, time: str | None = None,
            level_pi: float = 0.9, seed: int = 0) -> pd.DataFrame:
        """Visual predictive check table: per time bin, the observed statistic and the median and
        ``level_pi`` prediction interval of the same statistic over ``n_sim`` data sets simulated
        from the fitted model. The statistic is the mean count (count families), the proportion
        of successes (binomial, bernoulli), the proportion in each category (ordinal: one row per
        bin and level) or the 10th, 50th and 90th percentiles (Gaussian). ``time``: the column to
        bin by; needed when x has several columns and the model declares none (``Model.time``)."""
        from pymixnn.results.vpc import vpc_table

        return vpc_table(self, n_sim=n_sim, bins=bins, time=time, level_pi=level_pi, seed=seed)

    def plot_vpc(self, path: str | Path, *, n_sim: int = 200, bins=None, time: str | None = None,
                 level_pi: float = 0.9, seed: int = 0) -> Path:
        """PNG of :meth:`vpc`: observed statistic (points and line) against the simulated median
        and prediction band, by time bin (one panel per category for ordinal data)."""
        from pymixnn.results.plots import plot_vpc

        table = self.vpc(n_sim=n_sim, bins=bins, time=time, level_pi=level_pi, seed=seed)
        return plot_vpc(self, table, path, level_pi=level_pi)

    @property
    def fittedvalues(self) -> pd.Series:
        """Individual predictions (IPRED) at the data (statsmodels name), indexed by the data's
        row labels in the user's row order."""
        return self.predict(level="individual")

    @property
    def resid(self) -> pd.Series:
        """y - IPRED (statsmodels name), indexed by the data's row labels in the user's row order."""
        d = self.data
        return d.to_user_order(d.y - self._predict_rows(None, "individual"), name="resid")

    # ---- plots -------------------------------------------------------------------------------
    def plot_individuals(self, path: str | Path, *, ids: list | None = None, max_panels: int = 24,
                         time: str | None = None, n_grid: int = 100) -> Path:
        """PNG: observed data and individual (MAP) and population fits, one panel per individual."""
        from pymixnn.results.plots import plot_individual_fits

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
            "observation": self.settings.get("observation", {"name": "gaussian"}),
            "loglik": self.loglik, "loglik_se": self.loglik_se, "loglik_method": self.loglik_method,
            "aic": self.aic, "bic": self.bic,
            "seconds": float(self.info["seconds"]), "device": self.info["device"],
            "seed": self.info["seed"], "steps": int(self.info["steps"]),
            "se_method": self.info["se_method"], "versions": self.info["versions"],
            "converged": self.converged,
            "diagnostics": {name: {"value": clean(r["value"]), "limit": clean(r["limit"]),
                                   "ok": bool(r["ok"]), "severity": r["severity"],
                                   "message": r["message"]}
                            for name, r in self.diagnostics.iterrows()},
            "random_effects": {**dataclasses.asdict(self.random_effects_law), "df": self.df_modelwc,
                               **({"penalty": self.estimation.law["penalty"]}
                                  if "penalty" in self.estimation.law else {})},
            **({"genomic": self._genomic_record()} if getattr(self.estimation, "genomic", None) else {}),
        }

    def _genomic_record(self) -> dict:
        gen = self.estimation.genomic
        top = self.top_markers(10)
        return {"params": list(gen["params"]), "prior": gen["prior"],
                "interaction": gen.get("interaction"), "genotype": gen.get("genotype_column"),
                # aic/bic leave the markers' prior out: not comparable with a fit without markers
                "ic_comparable_with_non_genomic": False,
                "residual": bool(gen["residual"]),
                "markers": {k: int(v) for k, v in gen.get("report", {}).items()},
                "variance_explained": json.loads(self.variance_explained.reset_index().to_json(orient="records")),
                "top_markers": json.loads(top.to_json(orient="records"))}

    def to_json(self, path: str | Path | None = None, **kwargs) -> str:
        text = json.dumps(self.to_dict(), indent=2, **kwargs)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def save(self, path: str | Path) -> Path:
        """Save everything needed to reload the results exactly (JSON; floats round-trip exactly)."""
        from pymixnn.results.serialization import encode

        m = self.model
        record = {
            "format": FORMAT_VERSION,
            "model": {"name": m.name, "parameters": list(m.parameters), "init": m.init,
                      "transforms": dict(m.transforms), "random": list(m.random), "omega": m.omega,
                      "error": m.error, "error_init": m.error_init,
                      "x_names": list(m.x_names) if m.x_names else None},
            "data": {"frame": self.data.user_frame(), "id": self.data.id_col, "x": self.data.x_cols,
                     "y": self.data.y_col, "covariates": self.data.covariate_cols,
                     "aux": self.data.aux_cols, "time_unit": self.data.time_unit,
                     "time_origins": {c: pd.Timestamp(t).isoformat()
                                      for c, t in self.data.time_origins.items()}},
            "design": dataclasses.asdict(self.design),
            "estimation": dataclasses.asdict(self.estimation),
            "settings": self.settings, "info": self.info,
        }
        path = Path(path)
        path.write_text(json.dumps(encode(record)))
        return path

    @classmethod
    def load(cls, path: str | Path, *, model: Model | None = None, observation=None,
             markers=None) -> "Results":
        """Reload saved results. A custom structural function is not saved: pass ``model=``
        (and ``observation=`` for a user log-likelihood). A genomic fit keeps its marker effects,
        genetic values and tables; its marker matrix is not saved: pass the same ``markers=``
        (anything ``Genomic(markers=...)`` accepts) to predict new genotypes again."""
        from pymixnn.model.observation import from_dict as observation_from_dict

        from pymixnn.results.serialization import read_record
        from pymixnn.validation import check_loaded_model

        record = read_record(path)
        if "format" not in record or not isinstance(record.get("model"), dict):
            raise ValueError(f"not a pymixnn results file: {path} has no 'format' and 'model' entries "
                             "(write one with Results.save)")
        if record["format"] != FORMAT_VERSION:
            raise ValueError(f"{path}: unknown results format {record.get('format')!r}")
        spec = record["model"]
        if model is not None:
            if not isinstance(model, Model):
                raise TypeError(f"model must be a pymixnn.Model, got {type(model).__name__}")
            check_loaded_model(model, spec, path)
        if model is None:
            if spec["name"] is None or spec["name"] not in _named_models():
                raise ValueError(f"{path} was fitted with a custom structural function; "
                                 "pass it: Results.load(path, model=pymixnn.Model(...))")
            model = named(spec["name"], init=spec["init"], transforms=spec["transforms"],
                          random=spec["random"], omega=spec["omega"], error=spec["error"],
                          error_init=spec["error_init"])
        dd = record["data"]
        data = Data.from_pandas(dd["frame"], id=dd["id"], x=dd["x"], y=dd["y"],
                                covariates=dd["covariates"] or None, aux=dd.get("aux") or None)
        if dd.get("time_origins"):  # x columns fitted as dates: new dates convert the same way
            data.time_unit = dd["time_unit"]
            data.time_origins = {c: pd.Timestamp(t) for c, t in dd["time_origins"].items()}
        obs = observation_from_dict(record["settings"].get("observation"), observation)
        design = CovariateDesign(**record["design"])
        estimation = Estimation(**record["estimation"])
        marker_info = None
        if markers is not None:
            from pymixnn.results.genomic import reattach_markers

            marker_info = reattach_markers(estimation, markers)
        return cls(model=model, data=data, design=design, estimation=estimation,
                   settings=record["settings"], info=record["info"], observation=obs,
                   markers=marker_info)


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
        names = [r.settings.get("engine") or r.random_effects_law.name for r in results]
        if len(set(names)) < len(names):
            names = [f"{n} ({k + 1})" for k, n in enumerate(names)]
    if len(names) != len(results):
        raise ValueError(f"{len(names)} names for {len(results)} fits")
    head = pd.DataFrame({n: {"engine": r.settings.get("engine") or "pymixnn",
                             "random_effects": r.random_effects_law.name,
                             "df": r.df_modelwc, "ll.is": r.loglik, "ll.is_se": r.loglik_se,
                             "ll.method": r.loglik_method,
                             "AIC": r.aic, "BIC": r.bic, "seconds": r.info["seconds"],
                             "individuals": r.n_individuals}
                         for n, r in zip(names, results)})
    params = pd.DataFrame({n: r.params["estimate"] for n, r in zip(names, results)})
    order = list(dict.fromkeys(i for r in results for i in r.params.index))
    return pd.concat([head, params.loc[order]])


def _named_models():
    from pymixnn.model.named import NAMED_MODELS

    return NAMED_MODELS
