"""The fitted law of the random effects as :class:`pymixnn.Results` reports it: its spec, the
density of the individual parameters under it, summaries, correlations, joint log-density,
mixture component probabilities and the plot of the law against the individual estimates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pymixnn.results.scipy_stats import stats

__all__ = ["LawMixin"]


class LawMixin:
    """Methods of :class:`pymixnn.Results` on the fitted random-effects law (uses ``self.evaluator``)."""

    @property
    def random_effects_law(self):
        """The random-effects law spec of the fit (pymixnn.Gaussian / Mixture / Flow); Gaussian for
        fits by other programs (saemix, nlme)."""
        from pymixnn.model.random_effects import Gaussian, from_dict

        if self.external is not None:
            return Gaussian()
        return from_dict(self.estimation.law.get("spec"))

    def re_density(self, *, n_samples: int = 200_000, grid_size: int = 400, seed: int = 0):
        """The fitted law of the individual parameters with a random effect: draws and marginal
        log-densities on a grid (exact for Gaussian and mixture laws, kernel estimates for a
        flow). Returns a :class:`pymixnn.re_density.REDensity` (pandas tables)."""
        from pymixnn.results.re_density import REDensity, marginal_grid

        fm = self.evaluator
        rand = list(self.model.random)
        eta = fm.law_draws(n_samples, seed)
        phi0 = fm.typical_phi()
        pos = [self.model.parameters.index(p) for p in rand]
        phi = eta + phi0[pos]
        law = self.random_effects_law
        rows = []
        psi_cols = {}
        for j, name in enumerate(rand):
            exact = self._exact_marginal(j, phi0[pos[j]]) if law.name != "flow" else None
            grid, logd = marginal_grid(phi[:, j], exact, size=grid_size)
            psi_grid = fm.psi_column(name, grid)
            rows.append(
                pd.DataFrame(
                    {
                        "parameter": name,
                        "phi": grid,
                        "psi": psi_grid,
                        "log_density": logd,
                        "density": np.exp(logd),
                    }
                )
            )
            psi_cols[name] = fm.psi_column(name, phi[:, j])
        return REDensity(
            samples=pd.DataFrame(phi, columns=rand),
            psi_samples=pd.DataFrame(psi_cols),
            grid=pd.concat(rows, ignore_index=True),
            law=law.name,
        )

    def _exact_marginal(self, j: int, centre: float):
        """log-density of the j-th marginal of phi for Gaussian, mixture and latent-class laws
        (closed form; None for latent classes with a flow inside)."""
        import torch
        from scipy.special import logsumexp

        from pymixnn.inference.laws import fitted_law

        if self.random_effects_law.name == "gaussian":
            sd = math.sqrt(self.estimation.omega[j, j])
            return lambda x: stats.norm.logpdf(x, centre, sd)
        record = self.estimation.law
        law, L, raw = fitted_law(record, self.estimation.theta)
        if getattr(law, "flow", None) is not None:  # latent classes with a flow inside: no closed form
            return None
        with torch.no_grad():
            if law.conditional:  # latent classes with membership covariates: weights averaged over them
                w, means, trils = law.components(L, raw, torch.as_tensor(record["context"], dtype=L.dtype))
            else:
                w, means, trils = law.components(L, raw)
            var = (trils @ trils.transpose(-1, -2))[:, j, j]
        # means relative to E[eta] (0 for a mixture; a latent-class law's is moved into mu)
        shift = float(np.asarray(record.get("shift") or np.zeros(L.shape[0]))[j])
        w, m, sd = w.numpy(), means[:, j].numpy() - shift + centre, var.sqrt().numpy()
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
        ``random_effects()``) under the fitted law (another program's fit: N(0, omega))."""
        eta = np.atleast_2d(np.asarray(eta, float))
        if eta.shape[1] != len(self.model.random):
            raise ValueError(
                f"eta must have {len(self.model.random)} columns {list(self.model.random)}, "
                f"got shape {eta.shape}"
            )
        if self.external is not None:
            from pymixnn.results.external import gaussian_logpdf

            return gaussian_logpdf(self.external.omega, eta)
        from pymixnn.inference.laws import log_density_fitted_law

        return log_density_fitted_law(self.estimation.law, self.estimation.theta, eta)

    def component_probabilities(self) -> pd.DataFrame:
        """Mixture laws: posterior probability of each component for each individual."""
        resp = self.law.get("responsibilities") if self.law is not None else None
        if resp is None:
            raise ValueError("component probabilities exist only for random_effects='mixture'")
        resp = np.asarray(resp)
        return pd.DataFrame(
            resp,
            index=pd.Index(self.data.ids, name=self.data.id_col),
            columns=[f"component {k + 1}" for k in range(resp.shape[1])],
        )

    def plot_random_effects(
        self, path: str | Path, *, truth: dict | None = None, n_samples: int = 200_000, seed: int = 0
    ) -> Path:
        """PNG of the fitted law of phi: marginals (fitted density, histograms of the MAP and
        conditional-mean estimates, and the true density when ``truth`` maps a parameter to a
        callable log-density of phi or to an array of true phi values) and pairwise scatter
        plots of law draws against the MAP estimates."""
        from pymixnn.results.plots import plot_random_effects

        return plot_random_effects(self, path, truth=truth, n_samples=n_samples, seed=seed)
