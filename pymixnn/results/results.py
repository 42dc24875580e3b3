"""`Results` of a fit: statsmodels-style tables, saemix vocabulary, predictions, save/load.

Everything public is pandas/numpy. Parameters (``params``) are reported like saemix: fixed effects
on the natural scale (``h(mu)``) followed by their covariate effects (``beta_Weight(V)``), the
random-effect variances ``omega2.p`` (and covariances ``cov.p.q`` for a full omega), and the
residual error parameters ``a`` / ``b``. 95% confidence intervals are computed on the transformed
scale (log for variances and error parameters, the parameter's transform for fixed effects) and
mapped back, so they respect each parameter's support.

The class is assembled from one module per concern: the numbers of the fitted model
(:mod:`~pymixnn.results.evaluator`, ``res.evaluator``), predictions and simulations
(:mod:`~pymixnn.results.predictions`), the random-effects law (:mod:`~pymixnn.results.law`),
genomic outputs (:mod:`~pymixnn.results.genomic_view`), the summary
(:mod:`~pymixnn.results.summary`) and export / save / load (:mod:`~pymixnn.results.io`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.data.table import Data
from pymixnn.inference import Estimation
from pymixnn.model import transforms as tr
from pymixnn.model.covariates import CovariateDesign
from pymixnn.model.named import Model
from pymixnn.results.checks import ChecksMixin
from pymixnn.results.classes import ClassesMixin
from pymixnn.results.evaluator import FittedModel
from pymixnn.results.external import ExternalFit, external_info
from pymixnn.results.genomic_view import GenomicMixin
from pymixnn.results.hybrid import HybridMixin
from pymixnn.results.io import FORMAT_VERSION, load_parts, results_dict, run_from_info, save_results
from pymixnn.results.law import LawMixin
from pymixnn.results.levels import LevelsMixin
from pymixnn.results.predictions import PredictionsMixin
from pymixnn.results.states import StatesMixin
from pymixnn.results.summary import Summary, summary_text

__all__ = ["Results", "Summary", "compare_fits", "FORMAT_VERSION"]


def _versions() -> dict[str, str]:
    """Versions of the packages behind a fit (pyro's from its metadata: only the inference layer
    imports pyro)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    import pymixnn

    try:
        pyro_version = version("pyro-ppl")
    except PackageNotFoundError:  # pragma: no cover
        pyro_version = "unknown"
    return {
        "pymixnn": pymixnn.__version__,
        "torch": torch.__version__,
        "pyro": pyro_version,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }


class Results(
    PredictionsMixin, ChecksMixin, LawMixin, ClassesMixin, GenomicMixin, LevelsMixin, HybridMixin, StatesMixin
):
    """Estimates, uncertainty, likelihood, individual estimates and predictions of one fit.

    Made by :func:`pymixnn.fit`, :meth:`pymixnn.NLME.fit`, the R bridges of :mod:`pymixnn.compare`
    and :meth:`load`, not by hand. Feature groups: ``res.evaluator`` (the fitted model as numbers),
    ``res.law`` (the fitted law record), ``res.genomic`` (genomic outputs, None without markers),
    ``res.run`` (how the fit ran: seed, device, seconds, fallback counts).

    Parameters
    ----------
    model, data, design : Model, Data, CovariateDesign
        The fitted model, its data and covariate design.
    estimation : Estimation or ExternalFit
        The inference layer's record of a pymixnn fit, or the fit of another program (saemix,
        nlme), then also ``res.external``: such a fit has no parameter vector, ELBO trace or
        importance-sampling output, and what needs them raises a ValueError naming the program.
    settings : dict
        The fit's settings (seed, law, observation family, ...) as saved by :meth:`save`.
    info : dict, optional
        What the fit recorded (seed, device, versions, seconds per stage, warnings).
    observation : Observation, optional
        The observation family (default: from ``settings``).
    markers : dict, optional
        A genomic fit's marker matrix, spec, genotype column and interaction levels.

    Returns
    -------
    Results
        The fit's tables (statsmodels' names where they exist): ``params`` (estimate, se, rse,
        ci_lower, ci_upper per parameter), ``fixed_effects`` (natural scale), ``omega`` (random-effects
        covariance, transformed scale), ``sigma`` (residual error and observation parameters),
        ``loglik`` / ``llf`` and ``loglik_se``, ``aic``, ``bic``, ``df_modelwc``, ``info``, and the
        methods and properties below.
    """

    def __init__(
        self,
        *,
        model: Model,
        data: Data,
        design: CovariateDesign,
        estimation: Estimation | ExternalFit,
        settings: dict,
        info: dict | None = None,
        observation=None,
        markers: dict | None = None,
    ):
        from pymixnn.model.observation import bind, from_dict

        self.model, self.data, self.design = model, data, design
        if observation is None:
            observation = from_dict(settings.get("observation"))
        self.observation = bind(observation, model)
        self.estimation = estimation
        # a fit by another program (saemix, nlme): its record; None for a pymixnn fit
        self.external = estimation if isinstance(estimation, ExternalFit) else None
        self.settings = settings
        # a genomic fit: the marker matrix (pymixnn.markers.MarkerMatrix), the Genomic spec, the
        # genotype column and interaction levels (see genomic_view.py)
        self._markers = markers
        est = estimation
        if info is None and self.external is not None:
            info = external_info(
                self.external, settings, _versions(), _dt.datetime.now(_dt.timezone.utc).isoformat()
            )
        self.info = info or {
            "seed": settings.get("seed"),
            "device": est.device,
            "dtype": est.dtype,
            "threads": est.threads,
            "seconds": est.seconds["total"],
            "seconds_by_stage": est.seconds,
            "steps": est.steps,
            "converged": est.converged,
            "refine_rounds": est.refine_rounds,
            "gear": getattr(getattr(est, "run", None), "gear", None),
            "processes": getattr(getattr(est, "run", None), "processes", 1),
            "is_samples": est.is_samples,
            "se_method": est.se_method,
            "warnings": est.warnings,
            "versions": _versions(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        }
        self._build_tables()

    # ---- feature groups ----------------------------------------------------------------------
    @property
    def engine(self) -> str:
        """The program that fitted: "pymixnn", or e.g. "nlme 3.1-164" for a bridge fit."""
        return self.external.engine if self.external is not None else "pymixnn"

    @property
    def evaluator(self) -> FittedModel:
        """The fitted model as numbers (:class:`pymixnn.results.evaluator.FittedModel`): population
        and individual parameters, the structural function on data rows, law draws, simulations."""
        return FittedModel(
            model=self.model,
            data=self.data,
            design=self.design,
            estimation=self.estimation,
            observation=self.observation,
        )

    @property
    def law(self):
        """The fitted random-effects law record (:class:`pymixnn.inference.records.LawFit`: spec,
        positions in theta, ``penalty`` and ``penalty_cv`` of a flow, ``selection`` of
        ``n_components="auto"``, mixture ``responsibilities``); None for fits by other programs
        (saemix, nlme: Gaussian random effects with their ``omega``)."""
        if self.external is not None:
            return None
        return self.estimation.law

    @property
    def run(self):
        """How the fit ran (:class:`pymixnn.inference.records.RunInfo`: seed, device, dtype,
        threads, seconds per stage, steps, warnings, fallback counts); None for fits by other
        programs (saemix, nlme)."""
        if self.external is not None:
            return None
        run = getattr(self.estimation, "run", None)
        if run is not None:
            return run
        if self.settings.get("engine") or "seed" not in self.info:
            return None
        return run_from_info(self.info)

    # ---- tables ------------------------------------------------------------------------------
    def _build_tables(self) -> None:
        tab = pd.DataFrame(self.estimation.table).set_index("name")
        tab.index.name = None
        self._table = tab
        est, se = tab["estimate"], tab["se"]
        self.params = pd.DataFrame({"estimate": est, "se": se, "rse": 100 * se / est.abs()})
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
        # every parameter of its layers); another program's: the rows of its parameter table
        ext = self.external
        self.df_modelwc = int(ext.n_free if ext is not None else len(self.estimation.theta))
        levels = None if ext is not None else getattr(self.estimation, "levels", None)
        if levels:  # the level covariances' entries are free parameters too
            self.df_modelwc += int(levels["n_hyper"])
        self.aic = -2 * self.loglik + 2 * self.df_modelwc
        self.bic = -2 * self.loglik + math.log(self.n_individuals) * self.df_modelwc

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
        """How the log-likelihood was integrated: "is" or "gq" (a bridge fit: saemix's "is", or
        "nlme.ML" / "nlme.REML")."""
        return getattr(self.estimation, "loglik_method", "is")

    @property
    def n_individuals(self) -> int:
        """The fit's individuals (a fit from shards: every process's; ``data`` holds this one's)."""
        return int(self.settings.get("shard", {}).get("n_individuals", self.data.n_individuals))

    @property
    def nobs(self) -> int:
        """The fit's observations (a fit from shards: every process's)."""
        return int(self.settings.get("shard", {}).get("n_obs", self.data.n_obs))

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals on each parameter's transformed scale, mapped back to the natural scale."""
        import torch

        z = NormalDist().inv_cdf(1 - alpha / 2)  # the stdlib's: scipy.stats loads in 0.5 s
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
        cov = None if self.external is not None else self.estimation.cov_params
        if cov is None:
            cov = np.full((len(names), len(names)), np.nan)
            np.fill_diagonal(cov, self.params["se"].to_numpy() ** 2)
        return pd.DataFrame(np.asarray(cov, dtype=float), index=names, columns=names)

    def summary(self) -> Summary:
        """A table like saemix's printout: estimate, SE, RSE%, 95% CI, then likelihood."""
        return Summary(summary_text(self), self.params.drop(columns="kind"))

    def __repr__(self) -> str:
        return (
            f"<pymixnn Results: {self.model.name or 'custom model'}, {self.data.n_individuals} "
            f"individuals, ll.{self.loglik_method} {self.loglik:.3f}>"
        )

    # ---- export ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The documented JSON record (user guide, "Command line"): estimates, SEs, likelihood, run info."""
        return results_dict(self)

    def to_json(self, path: str | Path | None = None, **kwargs) -> str:
        text = json.dumps(self.to_dict(), indent=2, **kwargs)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def comparison_head(self) -> dict:
        """The rows :func:`compare_fits` shows above the parameters."""
        return {
            "engine": self.settings.get("engine") or "pymixnn",
            "random_effects": self.random_effects_law.name,
            "df": self.df_modelwc,
            "ll.is": self.loglik,
            "ll.is_se": self.loglik_se,
            "ll.method": self.loglik_method,
            "AIC": self.aic,
            "BIC": self.bic,
            "seconds": self.info["seconds"],
            "individuals": self.n_individuals,
        }

    def save(self, path: str | Path) -> Path:
        """Save everything needed to reload the results exactly (JSON; floats round-trip exactly)."""
        return save_results(self, path)

    @classmethod
    def load(cls, path: str | Path, *, model: Model | None = None, observation=None, markers=None) -> Results:
        """Reload saved results (this format or pymixnn 0.1's). A custom structural function is
        not saved: pass ``model=`` (and ``observation=`` for a user log-likelihood); so is an
        ``ODEModel``'s (a named compartment model is rebuilt with its dosing parameters, and
        a dynamic model is bound again to the saved event records). A genomic fit
        keeps its marker effects, genetic values and tables; its marker matrix is not saved: pass
        the same ``markers=`` (anything ``Genomic(markers=...)`` accepts) to predict new
        genotypes again."""
        parts = load_parts(path, model=model, observation=observation, markers=markers)
        hybrid = parts.pop("hybrid")
        res = cls(**parts)
        if hybrid is not None:  # a fit with neural terms: its trained networks, counted in df
            res.hybrid = hybrid
            res.apply_network_parameters()
        return res


def compare_fits(*results: Results, names: list[str] | None = None) -> pd.DataFrame:
    """Fits side by side, e.g. a Gaussian, a mixture and a flow law, or pymixnn against saemix.

    Parameters
    ----------
    *results : Results
        The fits (a list of them is taken too), or neural estimates
        (:meth:`pymixnn.NeuralEstimator.estimate`).
    names : list of str, optional
        Column names (default: the law's name, or the engine of a bridge fit).

    Returns
    -------
    pandas.DataFrame
        One column per fit; rows are the engine, the law, the number of free parameters, ll.is
        (and its Monte Carlo SE), AIC, BIC, seconds, then every fixed effect, variance and
        residual error parameter that any of the fits reports (NaN where a fit does not have it).

    Examples
    --------
    >>> import pymixnn
    >>> table = pymixnn.compare_fits(res_gauss, res_mix, res_flow)  # doctest: +SKIP
    """
    if not results:
        raise ValueError("compare_fits needs at least one Results")
    if len(results) == 1 and isinstance(results[0], (list, tuple)):
        results = tuple(results[0])
    for r in results:
        if not hasattr(r, "comparison_head"):
            raise TypeError(f"compare_fits takes Results (or neural estimates), got {type(r).__name__}")
    if names is None:
        names = [
            r.comparison_head()["engine"]
            if r.comparison_head()["engine"] != "pymixnn"
            else r.random_effects_law.name
            for r in results
        ]
        if len(set(names)) < len(names):
            names = [f"{n} ({k + 1})" for k, n in enumerate(names)]
    if len(names) != len(results):
        raise ValueError(f"{len(names)} names for {len(results)} fits")
    head = pd.DataFrame({n: r.comparison_head() for n, r in zip(names, results)})
    params = pd.DataFrame({n: r.params["estimate"] for n, r in zip(names, results)})
    order = list(dict.fromkeys(i for r in results for i in r.params.index))
    return pd.concat([head, params.loc[order]])
