"""Fitting a random-effects law on cached importance draws, and choosing a flow's penalty by CV.

With the structural and error parameters held at a fit's values, draw ``eta_ik`` (k = 1..K) from each
individual's t proposal (importance.py) and cache ``c_ik = log p(y_i | eta_ik) - log q_i(eta_ik)``.
Then for any law g,

    log L_i(g) ~ logsumexp_k [log g(eta_ik) + c_ik] - log K,

so the law alone can be fitted without evaluating the structural model again (the deconvolution
step of nonparametric maximum likelihood, Laird 1978, here for a flow). Because the proposals do
not depend on g, the same cache scores the law on held-out individuals: ``choose_penalty`` picks the
flow's ridge weight by K-fold cross-validation of that held-out log-likelihood, and ``fit_law`` gives
the starting point of the law's SVI stage. The law's location (a shift ``s`` of eta) and base scale
``L`` are fitted with it; the shift is then moved into mu.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.importance import ImportanceSampler
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.laws import raw_from_tril, tril_from_raw
from pymixnn.inference.program import Program

__all__ = ["DrawCache", "cache_draws", "pack", "fit_law", "heldout_loglik", "choose_penalty", "apply_law_fit"]


@dataclass
class DrawCache:
    rows: torch.Tensor  # (n,) individuals (a subsample for large N)
    eta: torch.Tensor  # (K, n, d)
    base: torch.Tensor  # (K, n): log p(y | eta) - log q(eta)
    context: torch.Tensor | None  # (n, c)


def cache_draws(
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    *,
    n_samples: int,
    seed: int,
    rows: torch.Tensor,
) -> DrawCache:
    sampler = ImportanceSampler(program, local.loc, local.scale_tril, n_samples=n_samples, seed=seed)
    etas, bases = [], []
    with torch.no_grad():
        for c, start in enumerate(range(0, rows.shape[0], sampler.chunk)):
            idx = rows[start : start + sampler.chunk]
            offset, log_q = sampler.draws(c, idx)
            eta = local.loc[idx] + offset
            bases.append(program.log_likelihood(theta, eta, idx) - log_q)
            etas.append(eta)
    context = None if program.context is None else program.context[rows]
    base = torch.cat(bases, 1)
    base = torch.where(torch.isfinite(base), base, torch.full_like(base, -math.inf))
    return DrawCache(rows, torch.cat(etas, 1), base, context)


def pack(program: Program, theta: torch.Tensor) -> torch.Tensor:
    """The vector fitted here: the law's parameters | omega block | shift (0)."""
    lay = program.layout
    d = lay.n_random
    return torch.cat(
        [theta[lay.law], theta[lay.omega], torch.zeros(d, dtype=theta.dtype, device=theta.device)]
    )


def _unpack(program: Program, x: torch.Tensor):
    lay = program.layout
    n_law, n_omega = lay.n_law, lay.n_omega
    raw, omega = x[:n_law], x[n_law : n_law + n_omega]
    shift = x[n_law + n_omega :]
    return raw, tril_from_raw(omega, lay.n_random, lay.full_omega), shift


def _loglik(program: Program, x: torch.Tensor, cache: DrawCache, cols: torch.Tensor) -> torch.Tensor:
    raw, L, shift = _unpack(program, x)
    ctx = None if cache.context is None else cache.context[cols]
    log_g = program.law.log_prob(L, raw, cache.eta[:, cols] - shift, ctx)
    return torch.logsumexp(log_g + cache.base[:, cols], 0) - math.log(cache.eta.shape[0])


def fit_law(
    program: Program,
    x0: torch.Tensor,
    cache: DrawCache,
    cols: torch.Tensor,
    penalty: float,
    *,
    max_iter: int = 40,
    fallbacks: Fallbacks | None = None,
) -> torch.Tensor:
    """Maximize sum_{i in cols} log L_i(g) - penalty term, over the law's parameters, L and s.
    Non-finite gradient components are zeroed (counted as ``lbfgs_zeroed_gradient``); a
    non-finite end point returns the start ``x0`` (counted as ``law_start_unchanged``)."""
    x = x0.detach().clone().requires_grad_(True)
    law = program.law
    n_law = program.layout.n_law
    scale = 1.0 / max(1, cols.shape[0])
    # the penalty is a prior on the whole data set: the share of it that these rows carry
    share = cols.shape[0] / program.n_individuals
    opt = torch.optim.LBFGS(
        [x], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe", tolerance_change=1e-9
    )

    def closure():
        opt.zero_grad()
        with torch.enable_grad():
            value = (
                -(_loglik(program, x, cache, cols).sum() - share * law.penalty(x[:n_law], weight=penalty))
                * scale
            )
            value.backward()
        if fallbacks is not None:
            fallbacks.count_nonfinite("lbfgs_zeroed_gradient", x.grad)
        x.grad = torch.nan_to_num(x.grad, nan=0.0, posinf=0.0, neginf=0.0)
        return value

    opt.step(closure)
    out = x.detach()
    if bool(torch.isfinite(out).all()):
        return out
    if fallbacks is not None:
        fallbacks.add("law_start_unchanged")
    return x0


def heldout_loglik(program: Program, x: torch.Tensor, cache: DrawCache, cols: torch.Tensor) -> float:
    with torch.no_grad():
        return float(_loglik(program, x, cache, cols).sum())


def choose_penalty(
    program: Program,
    theta: torch.Tensor,
    local: LocalPosteriors,
    *,
    grid,
    folds: int,
    seed: int,
    n_samples: int = 24,
    max_individuals: int = 2000,
    fallbacks: Fallbacks | None = None,
):
    """K-fold cross-validated penalty for the flow; returns (penalty, table of mean held-out
    log-likelihood per individual for each candidate, the law fitted on all rows (x), cache)."""
    n = program.n_individuals
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(n, generator=gen)[:max_individuals].sort().values.to(program.device)
    cache = cache_draws(program, theta, local, n_samples=n_samples, seed=seed, rows=rows)
    m = rows.shape[0]
    fold_of = torch.randperm(m, generator=gen).to(program.device) % folds
    x0 = pack(program, theta)
    table = []
    # from the strongest penalty (nearest the Gaussian start) down, each fold's fit warm-starting
    # from its fit at the previous penalty: a path of solutions, as glmnet computes the lasso
    starts = [x0] * folds
    for penalty in sorted(grid, reverse=True):
        held = 0.0
        for f in range(folds):
            train = (fold_of != f).nonzero().flatten()
            test = (fold_of == f).nonzero().flatten()
            starts[f] = fit_law(program, starts[f], cache, train, penalty, fallbacks=fallbacks)
            held += heldout_loglik(program, starts[f], cache, test)
        table.append({"penalty": float(penalty), "heldout_loglik": held / m})
    table.sort(key=lambda r: r["penalty"])
    best = max(table, key=lambda r: r["heldout_loglik"])["penalty"]
    x = fit_law(program, x0, cache, torch.arange(m, device=program.device), best, fallbacks=fallbacks)
    return best, table, x


def apply_law_fit(program: Program, theta: torch.Tensor, local: LocalPosteriors, x: torch.Tensor):
    """theta with the fitted law, L and the shift folded into mu; local posteriors moved along."""
    lay = program.layout
    raw, L, shift = _unpack(program, x)
    theta = theta.clone()
    theta[lay.law] = raw
    theta[lay.omega] = raw_from_tril(L, lay.full_omega)
    theta[program.random_index] = theta[program.random_index] + shift
    local.loc = local.loc - shift
    return theta
