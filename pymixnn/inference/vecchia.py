"""A Matérn field in the level block (levels.py) by the nearest-neighbour (Vecchia) approximation:
linear in the number of individuals, for 10^4 to 10^6 of them.

The block's pseudo data (levels.py) give, for the field's parameter, each individual's precision
lambda_i and h_i = (Lam_i (z_i - X_i mu))_slot: its information about f(s_i) + its fixed effects.
With the field f ~ N(0, K) integrated out, the pseudo data's likelihood needs
(K^-1 + Lambda)^-1, which by Woodbury is a statement about the response y = Lambda^-1 h:

    y = f(s) + e,   e ~ N(0, Lambda^-1),   Sigma = K + Lambda^-1,
    h'(K^-1 + Lambda)^-1 h = sum_i h_i^2 / lambda_i - y' Sigma^-1 y,
    log|I + K Lambda| = log|Sigma| + sum_i log lambda_i,

and Sigma's density is approximated by prod_i N(y_i; b_i' y_c(i), d_i) over each individual's m
nearest predecessors c(i) (model/vecchia.py): the last row of the Cholesky factor of Sigma over
(c(i), i), batched (N, m + 1, m + 1), gives d_i and the whitened residual (y_i - b_i' y_c(i)) /
sqrt(d_i). Everything is differentiable in the field's sd and range (and in lambda, for the
joint fit of the individual-level Omega), so the block's L-BFGS and observed information apply
as they are. The approximate Sigma^-1 = B' D^-1 B (its rows: the last rows of the factors'
inverses) gives the field's posterior mean and variance at each individual:
E[f_i | y] = y_i - (Sigma^-1 y)_i / lambda_i, Var = 1 / lambda_i - (Sigma^-1)_ii / lambda_i^2.
"""

from __future__ import annotations

import math

import torch

__all__ = ["VecchiaField", "matern_kernel"]

# a precision below this share of the largest is floored (an individual without information)
LAMBDA_FLOOR = 1e-12


def matern_kernel(h: torch.Tensor, nu: float) -> torch.Tensor:
    """Matérn correlation at scaled distances h = kappa d (nu 0.5, 1.5, 2.5: closed forms)."""
    if nu == 0.5:
        return torch.exp(-h)
    if nu == 1.5:
        return (1.0 + h) * torch.exp(-h)
    return (1.0 + h + h**2 / 3.0) * torch.exp(-h)


class VecchiaField:
    """The conditioning structure of N individuals at ``coords`` (N, k) with conditioning sets
    ``sets`` (N, m; -1 padded), smoothness ``nu``; ``group`` (N,) each individual's location."""

    def __init__(self, coords: torch.Tensor, sets: torch.Tensor, nu: float, group: torch.Tensor, n_loc: int):
        n = coords.shape[0]
        idx = torch.cat([sets, torch.arange(n, device=sets.device).unsqueeze(1)], dim=1)  # (N, m+1)
        self.valid = idx >= 0
        self.idx = idx.clamp_min(0)
        pts = coords[self.idx]
        self.dist = ((pts.unsqueeze(2) - pts.unsqueeze(1)) ** 2).sum(-1).sqrt()  # (N, m+1, m+1)
        self.pair = self.valid.unsqueeze(2) & self.valid.unsqueeze(1)
        self.nu, self.n, self.group, self.n_loc = float(nu), n, group, n_loc
        self.count = torch.zeros(n_loc, dtype=coords.dtype, device=coords.device).index_add_(
            0, group, torch.ones(n, dtype=coords.dtype, device=coords.device)
        )

    def factor(self, sd: torch.Tensor, rng: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Cholesky factors (N, m+1, m+1) of Sigma over each individual's set (padding: identity)."""
        kappa = math.sqrt(8.0 * self.nu) / rng
        K = torch.where(
            self.pair, sd**2 * matern_kernel(kappa * self.dist, self.nu), torch.zeros_like(self.dist)
        )
        noise = torch.where(self.valid, 1.0 / lam[self.idx], torch.ones_like(self.dist[..., 0]))
        return torch.linalg.cholesky(K + torch.diag_embed(noise))

    def whiten(self, L: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(N, c) each individual's whitened residual (y_i - b_i' y_c(i)) / sqrt(d_i) of the
        columns of ``v`` (N, c)."""
        vs = torch.where(self.valid.unsqueeze(-1), v[self.idx], torch.zeros_like(v[self.idx]))
        return torch.linalg.solve_triangular(L, vs, upper=False)[:, -1]

    def solve(self, values: torch.Tensor, mom: dict, mu: torch.Tensor | None) -> dict:
        """The block's _solve for the field: the pseudo data's log-likelihood (the same terms as the
        dense algebra's), the GLS fixed effects (``mu`` None) or the given ones, X' Sigma^-1 X
        (``info``); without gradients (the block's updates and report) also the field's posterior
        mean ``b`` and variance (``LQ``) per location."""
        sd, rng = values[0], values[1]
        lam, h, xs = mom["lam"], mom["h"], mom["xs"]
        lam = lam.clamp_min(LAMBDA_FLOOR * float(lam.detach().max()))
        L = self.factor(sd, rng, lam)
        W = self.whiten(L, torch.cat([(h / lam).unsqueeze(1), xs / lam.unsqueeze(1)], dim=1))
        u, U = W[:, 0], W[:, 1:]
        info = mom["C"] - (xs / lam.unsqueeze(1)).T @ xs + U.T @ U
        if mu is None:  # (a pseudo-inverse: a trial point may confound the field with mu)
            rhs = mom["g"] - (xs * (h / lam).unsqueeze(1)).sum(0) + U.T @ u
            mu = torch.linalg.pinv(info, hermitian=True) @ rhs
        hr = h - xs @ mu
        white = u - U @ mu
        quad = mom["q"] - 2 * mu @ mom["g"] + mu @ mom["C"] @ mu - (hr**2 / lam).sum() + (white**2).sum()
        logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)[:, -1]).sum() + torch.log(lam).sum()
        out = dict(ll=-0.5 * quad - 0.5 * logdet, mu=mu, info=info, b=None, LQ=None)
        if not torch.is_grad_enabled():
            out["b"], out["LQ"] = self._posterior(L, hr / lam, white, lam, sd)
        return out

    def _posterior(self, L, y, white, lam, sd) -> tuple[torch.Tensor, torch.Tensor]:
        """The field's posterior mean and variance per location (averaged over its individuals)."""
        n, m1 = self.idx.shape
        last = torch.zeros(n, m1, 1, dtype=L.dtype, device=L.device)
        last[:, -1] = 1.0
        rows = torch.linalg.solve_triangular(L.transpose(-1, -2), last, upper=True)[..., 0]  # (N, m+1)
        rows = torch.where(self.valid, rows, torch.zeros_like(rows))
        flat = self.idx.reshape(-1)
        sy = torch.zeros(n, dtype=L.dtype, device=L.device).index_add_(
            0, flat, (rows * white.unsqueeze(1)).reshape(-1)
        )
        sdiag = torch.zeros(n, dtype=L.dtype, device=L.device).index_add_(0, flat, (rows**2).reshape(-1))
        mean = y - sy / lam
        var = (1.0 / lam - sdiag / lam**2).clamp(0.0, float(sd) ** 2)
        per = lambda v: (  # noqa: E731
            torch.zeros(self.n_loc, dtype=v.dtype, device=v.device).index_add_(0, self.group, v) / self.count
        )
        return per(mean), per(var)
