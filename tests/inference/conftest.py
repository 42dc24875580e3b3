"""A linear Gaussian random-intercept problem whose marginal likelihood and posteriors are known in
closed form: y_ij = m_i + e_ij, m_i = mu + eta_i, eta_i ~ N(0, w^2), e_ij ~ N(0, s^2), so
y_i ~ N(mu 1, w^2 11' + s^2 I) and eta_i | y_i ~ N(v n_i (ybar_i - mu) / s^2, v),
v = 1 / (n_i / s^2 + 1 / w^2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import pymixnn
from pymixnn.data.table import Data
from pymixnn.model.covariates import CovariateDesign

MU, W, S = 1.1, 0.4, 0.5


@dataclass
class LinearProblem:
    model: pymixnn.Model
    data: Data
    design: CovariateDesign
    frame: pd.DataFrame
    theta: torch.Tensor  # mu, log w, log s

    def program(self, **kwargs):
        from pymixnn.inference.program import Program

        return Program(
            self.model, self.data, self.design, device=torch.device("cpu"), dtype=torch.float64, **kwargs
        )

    def series(self):
        return [g["y"].to_numpy() for _, g in self.frame.groupby("id", sort=False)]

    def marginal_loglik(self, mu=MU, w=W, s=S) -> np.ndarray:
        out = []
        for y in self.series():
            n = len(y)
            cov = w**2 * np.ones((n, n)) + s**2 * np.eye(n)
            out.append(stats.multivariate_normal(np.full(n, mu), cov).logpdf(y))
        return np.array(out)

    def posterior(self, mu=MU, w=W, s=S):
        mean, var = [], []
        for y in self.series():
            v = 1 / (len(y) / s**2 + 1 / w**2)
            mean.append(v * (y - mu).sum() / s**2)
            var.append(v)
        return np.array(mean), np.array(var)


def linear_data(n_id: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_id):
        n = 3 + i % 4  # unequal series lengths
        m = MU + rng.normal(0, W)
        rows.append(
            pd.DataFrame({"id": f"s{i:03d}", "t": np.arange(n, dtype=float), "y": m + rng.normal(0, S, n)})
        )
    return pd.concat(rows, ignore_index=True)


@pytest.fixture
def linear() -> LinearProblem:
    frame = linear_data()
    model = pymixnn.Model(lambda psi, x: psi[..., 0] + 0.0 * x[..., 0], ["m"], init={"m": 1.0})
    data = Data.from_pandas(frame, id="id", x="t", y="y")
    design = CovariateDesign.build({}, data.covariates, model.parameters)
    theta = torch.tensor([MU, np.log(W), np.log(S)], dtype=torch.float64)
    return LinearProblem(model, data, design, frame, theta)
