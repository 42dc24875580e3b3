"""Individual parameters, predictions, residuals, simulated data sets and the VPC of a fit, as
:class:`pymixnn.Results` reports them (pandas, in the user's row order); the numbers come from
its :class:`pymixnn.results.evaluator.FittedModel` (``res.evaluator``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pymixnn.data.table import Data

__all__ = ["PredictionsMixin"]


class PredictionsMixin:
    """Methods of :class:`pymixnn.Results` on individuals and data rows (uses ``self.evaluator``)."""

    # ---- individual parameters ---------------------------------------------------------------
    def individual_params(self, newdata: pd.DataFrame | str | None = None, kind: str = "map") -> pd.DataFrame:
        """psi_i on the natural scale: "map" (conditional mode) or "mean" (conditional mean, by IS).

        ``newdata``: individuals not in the fit (a long table with the fit's id, x, y, covariate
        and aux columns; for a fit on event data their NONMEM records, doses included), given
        their psi at the encoder's posterior mean in one forward pass, followed by the fit's
        ``refine_steps`` Newton steps towards each one's posterior mode (a fit with
        ``local="amortized"``), or else at their conditional modes given the fitted parameters
        (Newton steps on their own records; Gaussian random effects, as saemix's
        ``saemixPredictNewdata``). A string first argument is read as
        ``kind`` (``individual_params("mean")``)."""
        if isinstance(newdata, str):
            newdata, kind = None, newdata
        cols = list(self.model.parameters)
        if newdata is not None:
            from pymixnn.results.amortized import new_individual_psi

            if kind != "map":
                raise ValueError(
                    f"newdata gives the encoder's posterior mean only: use kind='map', got {kind!r}"
                )
            return new_individual_psi(self, newdata)
        idx = pd.Index(self.data.ids, name=self.data.id_col)
        if kind == "map":
            return pd.DataFrame(self.evaluator.psi(self.evaluator.phi_map()), index=idx, columns=cols)
        if kind == "mean":
            self._needs_conditional_means()
            return pd.DataFrame(self.estimation.psi_mean, index=idx, columns=cols)
        raise ValueError(f"kind must be 'map' or 'mean', got {kind!r}")

    def random_effects(self, kind: str = "map") -> pd.DataFrame:
        """eta_i (transformed scale): conditional mode ("map") or conditional mean ("mean")."""
        if kind not in ("map", "mean"):
            raise ValueError(f"kind must be 'map' or 'mean', got {kind!r}")
        if kind == "mean":
            self._needs_conditional_means()
        eta = self.estimation.eta_map if kind == "map" else self.estimation.eta_mean
        return pd.DataFrame(
            eta, index=pd.Index(self.data.ids, name=self.data.id_col), columns=list(self.model.random)
        )

    def _needs_conditional_means(self) -> None:
        """A ValueError for a fit by another program: the bridges bring back conditional modes only."""
        if self.external is not None:
            from pymixnn.results.external import not_available

            raise not_available(
                self.external.engine,
                'kind="mean" (conditional means by importance sampling)',
                'the bridge brings back the conditional modes only: use kind="map"',
            )

    @property
    def is_amortized(self) -> bool:
        """True for a fit with ``local="amortized"`` (an encoder of the individuals' posteriors)."""
        return bool(getattr(self.estimation, "amortized", None))

    @property
    def amortization(self) -> pd.DataFrame:
        """A fit with ``local="amortized"``: per individual, the ELBO of the encoder's posterior,
        of the per-individual optimum and the amortization gap between them (nats; mean in
        ``.gap.mean()``); a ValueError for other fits."""
        from pymixnn.results.amortized import amortization_table

        return amortization_table(self)

    @property
    def shrinkage(self) -> pd.Series:
        """saemix's shrinkage, 1 - var(eta_MAP) / omega2, per parameter with a random effect (%)."""
        var = self.estimation.eta_map.var(axis=0, ddof=1)
        return pd.Series(
            100 * (1 - var / np.diag(self.estimation.omega)),
            index=list(self.model.random),
            name="shrinkage (%)",
        )

    # ---- predictions -------------------------------------------------------------------------
    def predict(
        self, data: pd.DataFrame | None = None, level: str = "population", which: str = "mean"
    ) -> pd.Series | pd.DataFrame:
        """Predictions for each row: population (eta = 0, covariates included) or individual (MAP
        eta; individuals not in the fit get eta = 0, or, in a fit with ``local="amortized"`` and
        ``data`` holding their y column, the encoder's posterior from their own records, as in
        :meth:`individual_params`). ``which="mean"`` gives E[y | eta] (the
        structural prediction for Gaussian data; the rate, the expected number of successes or
        the expected category index for discrete families), ``which="linear"`` the structural
        function's output f (the linear predictor). ``data`` needs the id and x columns, the
        model's covariates (and the trials column of a binomial fit); default: the fitted data.

        Returns a Series indexed by the rows of ``data`` (default: the fitted data's row labels, in
        the user's row order, whatever the order of the individuals), so it aligns with the source
        DataFrame: ``df["ipred"] = res.predict(level="individual")``.

        A fit on event data also predicts at new dosing records: ``data`` a Data from
        ``Data.from_nonmem`` or a NONMEM-style DataFrame (the fitted id, time and DV column names;
        without DV every EVID 0 record is predicted; the covariates of the covariate model) gives a
        DataFrame like :func:`pymixnn.solve` (id, time, endpoint, prediction) for each
        observation record, the model bound to the new records; "individual" needs fitted ids, or
        in a fit with ``local="amortized"`` the new individuals' observations (their DV), which the
        encoder reads with their doses."""
        from pymixnn.results.regimens import is_event_request, predict_events

        if is_event_request(self, data):
            return predict_events(self, data, level, which)
        new_eta = None
        if level == "individual" and data is not None and getattr(self.estimation, "amortized", None):
            new_rows = data[~data[self.data.id_col].isin(self.data.ids)]
            if len(new_rows) and self.data.y_col in data.columns:
                from pymixnn.results.amortized import encode_individuals

                ids, eta, _ = encode_individuals(self, new_rows)
                new_eta = (ids, eta)
        values = self.evaluator.predict_rows(data, level, which, new_eta=new_eta)
        name = {"population": "pred", "individual": "ipred"}.get(level, level)
        if which == "linear":
            name += "_linear"
        if data is None:
            return self.data.to_user_order(values, name=name)
        return pd.Series(values, index=data.index, name=name)

    @property
    def fittedvalues(self) -> pd.Series:
        """Individual predictions (IPRED) at the data (statsmodels name), indexed by the data's
        row labels in the user's row order."""
        return self.predict(level="individual")

    @property
    def resid(self) -> pd.Series:
        """y - IPRED (statsmodels name), indexed by the data's row labels in the user's row order."""
        d = self.data
        return d.to_user_order(d.y - self.evaluator.predict_rows(None, "individual"), name="resid")

    def residuals(self) -> pd.DataFrame:
        """Per observation: PRED, IPRED (expected values), IRES (y - IPRED) and IWRES: IRES / g(IPRED)
        for Gaussian data (log scale for the exponential error model), the Pearson residual
        (y - E[y]) / sd(y) for discrete families. Ordinal y is the category index. Rows carry the
        data's row labels, in the user's row order; with several endpoints (event data) a column
        ``endpoint`` names each row's, and IWRES uses its own law."""
        import torch

        d, fm = self.data, self.evaluator
        pred, ipred = fm.predict_rows(None, "population"), fm.predict_rows(None, "individual")
        f_ind = fm.predict_rows(None, "individual", which="linear")
        out = d.frame[[d.id_col, *d.x_cols, d.y_col]].copy()
        obs = self.observation
        with torch.no_grad():
            var = obs.variance(*fm.family_tensors(f_ind, d.aux)).numpy()
        if obs.name == "gaussian" and self.model.error == "exponential":
            ires = np.log(d.y) - np.log(np.maximum(ipred, 1e-300))
        else:
            ires = d.y - ipred
        out["pred"], out["ipred"], out["ires"] = pred, ipred, ires
        out["iwres"] = ires / np.sqrt(var)
        if "censored" in d.aux:
            out["censored"] = d.aux["censored"].astype(bool)
        names = getattr(getattr(d, "events", None), "endpoints", ())
        if len(names) > 1 and "endpoint" in d.aux:  # several endpoints: each row's by name
            out.insert(1, "endpoint", np.asarray(names, dtype=object)[d.aux["endpoint"].astype(int)])
        return out.iloc[d.user_order]  # the user's row order and row labels

    # ---- simulation and predictive checks ----------------------------------------------------
    def simulate(
        self,
        n_rep=100,
        *,
        seed: int = 0,
        level: str = "population",
        data: pd.DataFrame | None = None,
        times=None,
        n_draws: int = 500,
        level_pi: float = 0.9,
    ) -> pd.DataFrame:
        """Replicates of the data set drawn from the fitted model: at ``level="population"`` new
        random effects from the fitted law (each individual keeps its covariates), at
        "individual" the MAP random effects; then observations from the observation model.
        Returns the rows of ``data`` (default: the fitted data) repeated ``n_rep`` times with
        columns ``rep``, id, x and ``y_sim`` (ordinal: the level).

        A dosing regimen instead of ``n_rep`` (a fit on event data; new records as
        :meth:`predict` takes them, e.g. ``res.simulate(regimen, times=np.linspace(0, 48, 200))``):
        the model's prediction of each individual of the regimen at ``times`` (default: 200 times
        from 0 to the last record plus one dosing interval), one row per id, time and endpoint:
        ``population`` (eta = 0), ``population_median`` / ``_lower`` / ``_upper`` (median and
        central ``level_pi`` interval over ``n_draws`` random effects drawn from the fitted law,
        seed ``seed``: between-subject variability) and, for fitted individuals, ``individual``
        (MAP eta) with ``individual_lower`` / ``_upper`` from ``n_draws`` draws of eta from the
        individual's Gaussian posterior N(eta_MAP, posterior covariance) of the fit (NaN for
        ids not fitted, and the interval NaN for fits without that covariance: saemix / nlme
        bridge fits report the MAP only; ``attrs["individual_interval"]`` says which). No
        residual error is added."""
        if isinstance(n_rep, (pd.DataFrame, Data)):  # a dosing regimen
            from pymixnn.results.regimens import simulate_regimen

            return simulate_regimen(self, n_rep, times=times, n_draws=n_draws, seed=seed, level_pi=level_pi)
        if not (isinstance(n_rep, (int, np.integer)) and n_rep >= 1):
            raise ValueError(f"n_rep must be a positive integer, got {n_rep!r}")
        if level not in ("population", "individual"):
            raise ValueError(f"level must be 'population' or 'individual', got {level!r}")
        rows = self.evaluator.design_rows(data)
        sims = self.evaluator.simulated(n_rep, seed=seed, level=level, rows=rows)
        d = self.data
        frame = rows["frame"][[d.id_col, *d.x_cols]]
        if data is None:  # the fitted data: back in the user's row order
            frame, sims = frame.iloc[d.user_order], sims[:, d.user_order]
        out = pd.concat([frame.assign(rep=r) for r in range(n_rep)], ignore_index=True)
        out["y_sim"] = self.observation.decode_simulated(np.concatenate(sims))
        return out[["rep", d.id_col, *d.x_cols, "y_sim"]]

    def vpc(
        self,
        *,
        n_sim: int = 200,
        bins: int | np.ndarray | None = None,
        time: str | None = None,
        level_pi: float = 0.9,
        seed: int = 0,
        prediction_corrected: bool = False,
        lower_bound: float = 0.0,
    ) -> pd.DataFrame:
        """Visual predictive check table: per time bin, the observed statistic and the median and
        ``level_pi`` prediction interval of the same statistic over ``n_sim`` data sets simulated
        from the fitted model. The statistic is the mean count (count families), the proportion
        of successes (binomial, bernoulli), the proportion in each category (ordinal: one row per
        bin and level) or the 10th, 50th and 90th percentiles (Gaussian). ``time``: the column to
        bin by; needed when x has several columns and the model declares none (``Model.time``).

        ``prediction_corrected=True``: a prediction-corrected VPC (pcVPC, Bergstrand et al. 2011)
        for data with different doses or covariates: each observed and simulated value ``y``
        becomes ``lb + (y - lb) * (PRED_bin - lb) / (PRED - lb)`` (``PRED`` the row's population
        prediction, ``PRED_bin`` the median PRED of its bin, ``lb`` = ``lower_bound``) before the
        percentiles are taken; rows with PRED at or below ``lower_bound`` are left out with a
        warning and counted in ``attrs["pc_excluded"]`` (continuous observations only)."""
        from pymixnn.results.vpc import vpc_table

        return vpc_table(
            self,
            n_sim=n_sim,
            bins=bins,
            time=time,
            level_pi=level_pi,
            seed=seed,
            prediction_corrected=prediction_corrected,
            lower_bound=lower_bound,
        )

    def plot_vpc(
        self,
        path: str | Path,
        *,
        n_sim: int = 200,
        bins=None,
        time: str | None = None,
        level_pi: float = 0.9,
        seed: int = 0,
        prediction_corrected: bool = False,
        lower_bound: float = 0.0,
    ) -> Path:
        """PNG of :meth:`vpc`: observed statistic (points and line) against the simulated median
        and prediction band, by time bin (one panel per category for ordinal data); with
        ``prediction_corrected=True`` the pcVPC."""
        from pymixnn.results.plots import plot_vpc

        table = self.vpc(
            n_sim=n_sim,
            bins=bins,
            time=time,
            level_pi=level_pi,
            seed=seed,
            prediction_corrected=prediction_corrected,
            lower_bound=lower_bound,
        )
        return plot_vpc(self, table, path, level_pi=level_pi)

    def plot_regimen(
        self,
        new_events,
        path: str | Path,
        *,
        ids: list | None = None,
        times=None,
        n_draws: int = 500,
        seed: int = 0,
        level_pi: float = 0.9,
        max_panels: int = 12,
    ) -> Path:
        """PNG of a dosing regimen (:meth:`simulate` with new records), one panel per individual of
        the regimen (``ids``, default the first ``max_panels``): population median and
        ``level_pi`` band, a fitted individual's curve and band, dose times as triangles."""
        from pymixnn.results.regimens import plot_regimen

        return plot_regimen(
            self,
            new_events,
            path,
            ids=ids,
            times=times,
            n_draws=n_draws,
            seed=seed,
            level_pi=level_pi,
            max_panels=max_panels,
        )

    def plot_individuals(
        self,
        path: str | Path,
        *,
        ids: list | None = None,
        max_panels: int = 24,
        time: str | None = None,
        n_grid: int = 100,
    ) -> Path:
        """PNG: observed data and individual (MAP) and population fits, one panel per individual."""
        from pymixnn.results.plots import plot_individual_fits

        return plot_individual_fits(self, path, ids=ids, max_panels=max_panels, time=time, n_grid=n_grid)
