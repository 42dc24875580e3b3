"""The EM that starts a latent-class fit: a K-class Gaussian mixture on points eta (draws of the
Gaussian fit's individual posteriors) whose class means differ only in the coordinates ``on``,
with class probabilities from a multinomial logit on each point's membership covariates.

Each of ``n_starts`` starts seeds the class means by k-means++ on the ``on`` coordinates; a class
whose weight falls below :data:`EMPTY_SHARE` of the points is re-seeded at the worst-fitted point
(counted in ``restarts``). The start with the highest mixture log-likelihood is kept.
"""

from __future__ import annotations

import math

import torch

from pymixnn.inference.laws.base import gaussian_log_prob

__all__ = ["fit_latent_classes", "membership_newton", "EMPTY_SHARE"]

# a class holding less than this share of the points is empty: re-seeded (0.2% of 600
# individuals x 20 draws is 24 draws, about one individual)
EMPTY_SHARE = 0.002
# ridge on the membership coefficients (a class separated perfectly by a covariate would send them
# to infinity); 1e-6 moves a coefficient of size 1 by far less than its SE
MEMBERSHIP_RIDGE = 1e-6


def membership_newton(
    X: torch.Tensor, r: torch.Tensor, gamma: torch.Tensor, steps: int = 8, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Multinomial-logit coefficients (K, 1 + c), class 1 the reference (row 0 = 0), maximizing
    sum_i sum_k r_ik log softmax(X_i gamma')_k by Newton steps from ``gamma``; X (n, 1 + c)."""
    K, p = gamma.shape
    free = gamma[1:].reshape(-1).clone()

    def objective(v: torch.Tensor) -> torch.Tensor:
        g = torch.cat([torch.zeros(1, p, dtype=v.dtype, device=v.device), v.reshape(K - 1, p)])
        lw = torch.log_softmax(X @ g.T, -1)
        val = (r * lw).sum(-1)
        if weights is not None:
            val = val * weights
        return val.sum() - 0.5 * MEMBERSHIP_RIDGE * (v**2).sum()

    value = objective(free)
    for _ in range(steps):
        grad = torch.autograd.functional.jacobian(objective, free)
        hess = torch.autograd.functional.hessian(objective, free)
        step = torch.linalg.solve(-hess, grad)
        t = 1.0
        while t > 1e-4:
            cand = free + t * step
            new = objective(cand)
            if bool(new >= value):
                break
            t *= 0.5
        else:
            break
        moved = float((cand - free).abs().max())
        free, value = cand, new
        if moved < 1e-9:
            break
    return torch.cat([torch.zeros(1, p, dtype=free.dtype, device=free.device), free.reshape(K - 1, p)])


def _seed_means(x: torch.Tensor, on: list[int], K: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeds (K, d): on the ``on`` coordinates (scaled by their sd), the overall mean on
    the others."""
    n = x.shape[0]
    scale = x[:, on].std(0).clamp_min(1e-12)
    z = x[:, on] / scale
    picks = [torch.randint(n, (1,), generator=generator).item()]
    for _ in range(1, K):
        dist2 = torch.stack([((z - z[i]) ** 2).sum(-1) for i in picks]).amin(0)
        picks.append(torch.multinomial((dist2 / dist2.sum()).cpu(), 1, generator=generator).item())
    means = x.mean(0).expand(K, -1).clone()
    means[:, on] = x[picks][:, on]
    return means


def _covariances(x, r, means, nk, shared: bool, full: bool, ridge: torch.Tensor) -> torch.Tensor:
    K, d = means.shape
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    covs = torch.stack([((r[:, k : k + 1] * (x - means[k])).T @ (x - means[k])) / nk[k] for k in range(K)])
    if shared:
        covs = ((nk / nk.sum()).view(K, 1, 1) * covs).sum(0).expand(K, d, d).clone()
    if not full:
        covs = torch.diag_embed(torch.diagonal(covs, dim1=-2, dim2=-1))
    return covs + ridge * eye


def fit_latent_classes(
    x: torch.Tensor,
    K: int,
    on: list[int],
    X: torch.Tensor,
    generator: torch.Generator,
    *,
    shared: bool,
    full: bool,
    n_starts: int,
    iters: int = 200,
) -> dict:
    """EM for K latent classes on points x (n, d) with membership design X (n, 1 + c): class means
    free on ``on``, common elsewhere. Returns gamma (K, 1 + c), means (K, d), covs (K, d, d), the
    log-likelihood ``ll`` and the number of empty-class re-seeds ``restarts``."""
    n, d = x.shape
    off = [j for j in range(d) if j not in on]
    ridge = 1e-6 * x.var(0).mean().clamp_min(1e-12)
    best, restarts = None, 0
    for _ in range(n_starts):
        means = _seed_means(x, on, K, generator)
        covs = (x.T.cov().reshape(d, d) + ridge * torch.eye(d, dtype=x.dtype)).expand(K, d, d).clone()
        if not full:
            covs = torch.diag_embed(torch.diagonal(covs, dim1=-2, dim2=-1))
        gamma = torch.zeros(K, X.shape[1], dtype=x.dtype, device=x.device)
        ll_old, reseeds = -math.inf, 0
        for _ in range(iters):
            comp = torch.stack(
                [gaussian_log_prob(torch.linalg.cholesky(covs[k]), x - means[k]) for k in range(K)], -1
            )
            log_r = torch.log_softmax(X @ gamma.T, -1) + comp
            dens = torch.logsumexp(log_r, -1)
            ll = float(dens.sum())
            r = torch.softmax(log_r, -1)
            nk = r.sum(0)
            empty = [k for k in range(K) if float(nk[k]) < EMPTY_SHARE * n]
            if empty and reseeds < 3 * K:
                worst = torch.argsort(dens)[: len(empty)]
                for k, i in zip(empty, worst.tolist()):
                    means[k, on] = x[i, on]
                    gamma[k] = 0.0
                reseeds += len(empty)
                ll_old = -math.inf
                continue
            nk = nk.clamp_min(1e-10)
            means = means.clone()
            means[:, on] = (r.T @ x[:, on]) / nk.unsqueeze(-1)
            if off:
                means[:, off] = x[:, off].mean(0)
            covs = _covariances(x, r, means, nk, shared, full, ridge)
            gamma = membership_newton(X, r, gamma, steps=3) if X.shape[1] > 1 else _log_weights(nk)
            if ll - ll_old < 1e-8 * abs(ll):
                break
            ll_old = ll
        restarts += reseeds
        nk_final = torch.softmax(torch.log_softmax(X @ gamma.T, -1) + comp, -1).sum(0)
        degenerate = bool((nk_final < EMPTY_SHARE * n).any())
        if best is None or (not degenerate and (best["degenerate"] or ll > best["ll"])):
            best = dict(gamma=gamma, means=means, covs=covs, ll=ll, degenerate=degenerate)
    best["restarts"] = restarts
    return best


def _log_weights(nk: torch.Tensor) -> torch.Tensor:
    """Intercept-only membership: gamma (K, 1) = log(w_k / w_1)."""
    lw = torch.log(nk / nk.sum())
    return (lw - lw[0]).unsqueeze(-1)
