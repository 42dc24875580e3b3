"""The model checks of a fit that NLME users look at (saemix, Monolix, nlmixr2, xpose):
normalised prediction distribution errors, conditional weighted residuals, goodness-of-fit
panels, random effects against covariates and the convergence trace (mixed into
:class:`pymixnn.Results`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["ChecksMixin"]


class ChecksMixin:
    """NPDE, CWRES, goodness-of-fit and convergence plots of :class:`pymixnn.Results`."""

    def npde(self, n_sim: int = 1000, *, seed: int = 0, decorr_method: str = "cholesky") -> pd.DataFrame:
        """Normalised prediction distribution errors (Brendel et al. 2006; Comets et al. 2008),
        computed as the R package npde computes them.

        Parameters
        ----------
        n_sim : int, default 1000
            Data sets simulated from the fitted model (new random effects from the fitted law,
            new residual errors), as npde's ``nrep``.
        seed : int, default 0
            Seed of the simulations: the same seed gives the same NPDE.
        decorr_method : {"cholesky", "inverse", "polar"}, default "cholesky"
            How each individual's observations and simulations are decorrelated (npde's
            ``decorr.method``).

        Returns
        -------
        pandas.DataFrame
            One row per observation, in the user's row order: the id, x and y columns, ``ypred``
            (mean of the simulations), ``pd`` (prediction discrepancy), ``npd``, ``npde`` and
            ``pred`` (population prediction). ``attrs["tests"]`` holds npde's tests of the NPDE
            as a dict by test (``pandas.DataFrame.from_dict(t.attrs["tests"], orient="index")``
            makes it a table): mean 0 (t-test), variance 1 (Fisher's test), normality
            (Shapiro-Wilk) and the global test, with npde's Bonferroni-adjusted ``p_value`` and
            ``p_value_raw``; ``attrs["summary"]`` their mean, variance, skewness and kurtosis.
        """
        from pymixnn.results.npde import npde_results

        out = npde_results(self, n_sim=n_sim, seed=seed, decorr_method=decorr_method)
        if "pred" not in out.columns:
            d = self.data
            out["pred"] = d.to_user_order(self.evaluator.predict_rows(None, "population")).to_numpy()
        out.attrs.setdefault("n_sim", int(n_sim))
        return out

    def cwres(self, *, decorrelation: str = "cholesky") -> pd.DataFrame:
        """Conditional weighted residuals (CWRES, Hooker et al. 2007): the observations
        decorrelated by the model linearized around each individual's MAP random effects (FOCE).

        Parameters
        ----------
        decorrelation : {"cholesky", "symmetric"}, default "cholesky"
            The inverse square root of each individual's covariance: inverse Cholesky factor or
            inverse symmetric square root.

        Returns
        -------
        pandas.DataFrame
            One row per observation, in the user's row order: id, x and y columns, ``pred``,
            ``ipred``, ``epred_foce`` (the linearized model's mean) and ``cwres``.
        """
        from pymixnn.results.cwres import cwres_table

        return cwres_table(self, decorrelation=decorrelation)

    def parameter_trace(self) -> pd.DataFrame:
        """The population parameters along the fit.

        Returns
        -------
        pandas.DataFrame
            One row per recorded point: ``stage`` ("start"; "svi" every 50 SVI steps;
            "presample" after each refinement round on a subsample, the Newton gear beyond
            30,000 individuals; "refine" after each refinement round; a law's stages labelled
            with the law; "final"), ``step`` and one column per reported parameter (natural
            scale, saemix names).
        """
        from pymixnn.results.gof import trace_table

        return trace_table(self)

    def eta_covariates(
        self, covariates: list[str] | None = None, *, kind: str = "map", data: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Tests of association between the random effects and candidate covariates.

        Parameters
        ----------
        covariates : list of str, optional
            Columns to test (default: every column of ``data`` constant within individuals
            other than the id, x and y columns).
        kind : {"map", "mean"}, default "map"
            Which individual random effects: conditional modes or conditional means.
        data : pandas.DataFrame, optional
            A table with the id column and the candidate covariates (long or one row per
            individual), e.g. the data frame the model was fitted to; default: the fitted data,
            which holds only the covariates of the model.

        Returns
        -------
        pandas.DataFrame
            One row per random effect and covariate: ``test`` (Spearman's rank correlation for a
            numeric covariate with more than 5 values, Kruskal-Wallis otherwise), ``statistic``
            and ``p_value``.
        """
        from pymixnn.results.gof import eta_covariate_table

        return eta_covariate_table(self, covariates, kind, data)

    def plot_gof(
        self,
        path: str | Path,
        *,
        npde: bool = True,
        n_sim: int = 1000,
        seed: int = 0,
        time: str | None = None,
    ) -> Path:
        """Goodness-of-fit panels (PNG): observations vs population (PRED) and individual
        (IPRED) predictions, IWRES vs time and vs IPRED (saemix's four), NPDE vs time and vs
        PRED, QQ plot and histogram of NPDE, with lowess smoothers.

        Parameters
        ----------
        path : str or pathlib.Path
            Where the PNG is written.
        npde : bool, default True
            Compute NPDE (``n_sim`` simulations) for the last four panels; False: CWRES there
            instead (no simulation; IWRES for a non-Gaussian family).
        n_sim : int, default 1000
            Simulations for the NPDE.
        seed : int, default 0
            Seed of the simulations.
        time : str, optional
            The time column (needed when x has several columns and the model declares none).

        Returns
        -------
        pathlib.Path
            The PNG written.
        """
        from pymixnn.results.gof import gof_figure, write
        from pymixnn.results.vpc import time_column

        time = time_column(self.data, self.model, time, caller="plot_gof()")
        resid = self.residuals()
        if npde:
            table, label = self.npde(n_sim, seed=seed), "NPDE"
        elif self.observation.name == "gaussian" and "censored" not in self.data.aux:
            table, label = self.cwres().rename(columns={"cwres": "npde"}), "CWRES"
        else:
            table, label = None, "IWRES"
        return write(gof_figure(self, resid, table, time, label), path)

    def plot_npde(
        self, path: str | Path, *, n_sim: int = 1000, seed: int = 0, time: str | None = None
    ) -> Path:
        """The npde package's plot (PNG): QQ plot and histogram of NPDE, NPDE vs time and vs
        PRED, with the tests' p-values.

        Parameters
        ----------
        path : str or pathlib.Path
            Where the PNG is written.
        n_sim : int, default 1000
            Simulations for the NPDE.
        seed : int, default 0
            Seed of the simulations.
        time : str, optional
            The time column (as in :meth:`plot_gof`).

        Returns
        -------
        pathlib.Path
            The PNG written.
        """
        from pymixnn.results.gof import npde_figure, write
        from pymixnn.results.vpc import time_column

        time = time_column(self.data, self.model, time, caller="plot_npde()")
        return write(npde_figure(self, self.npde(n_sim, seed=seed), time), path)

    def plot_eta_covariates(
        self,
        path: str | Path,
        *,
        covariates: list[str] | None = None,
        kind: str = "map",
        data: pd.DataFrame | None = None,
    ) -> Path:
        """Random effects against covariates (PNG), to build the covariate model: scatter and
        lowess for numeric covariates, boxes for categorical ones, each panel titled with the
        p-value of :meth:`eta_covariates`.

        Parameters
        ----------
        path : str or pathlib.Path
            Where the PNG is written.
        covariates : list of str, optional
            Columns to plot against (default: every column of ``data`` constant within
            individuals other than the id, x and y columns).
        kind : {"map", "mean"}, default "map"
            Conditional modes or conditional means of the random effects.
        data : pandas.DataFrame, optional
            The id column and candidate covariates (default: the fitted data), as in
            :meth:`eta_covariates`.

        Returns
        -------
        pathlib.Path
            The PNG written.
        """
        from pymixnn.results.gof import candidate_covariates, eta_covariates_figure, write

        covs = candidate_covariates(self, covariates, data)
        if not covs:
            raise ValueError(
                "no column constant within individuals to plot the random effects against: pass "
                "data= (e.g. the data frame of the fit) with the candidate covariates"
            )
        return write(eta_covariates_figure(self, covs, kind, data), path)

    def plot_trace(self, path: str | Path) -> Path:
        """Convergence trace (PNG): each population parameter along the SVI steps and the
        refinement rounds, with the estimate and its 95% confidence interval, and the ELBO.

        Parameters
        ----------
        path : str or pathlib.Path
            Where the PNG is written.

        Returns
        -------
        pathlib.Path
            The PNG written.
        """
        from pymixnn.results.gof import trace_figure, write

        return write(trace_figure(self, self.parameter_trace()), path)
