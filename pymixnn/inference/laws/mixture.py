"""A finite Gaussian mixture law: eta ~ sum_k w_k N(m_k, L_k L_k^T).

``raw`` = logits of w_2..w_K (w_1's logit is 0) | offsets r_2..r_K (r_1 = 0) | log-Cholesky of
L_2..L_K (L_1 = L; absent when the covariance is shared). Means are centred,
m_k = r_k - sum_j w_j r_j, so E[eta] = 0 and mu stays the mean of phi. Started by EM on draws of
the Gaussian fit's local posteriors; ``n_components="auto"`` fits K = 1 .. max_components and keeps
the best by the spec's criterion.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from pymixnn.inference.laws.base import LOG_2PI, LawPlugin, gaussian_log_prob, raw_from_tril, tril_from_raw
from pymixnn.inference.rows import Rows, omega_values
from pymixnn.model import transforms as tr
from pymixnn.model.random_effects import Gaussian, Mixture

__all__ = ["MixtureLaw", "fit_gaussian_mixture"]


class MixtureLaw(LawPlugin):
    conditional = False
    # from the Gaussian fit's maximum, the EM start and the Newton refinement reach the same
    # maximum as after SVI (bimodal benchmark, N = 500: ll -13726.30 both ways, estimates equal
    # to 4 digits), in 3.5 s instead of 28.6 (benchmarks/results/random_effects.md)
    newton_gear = True

    def __init__(self, spec: Mixture, d: int, full_omega: bool):
        self.spec, self.d, self.full = spec, d, full_omega
        self.K = int(spec.n_components)
        self.n_omega = d * (d + 1) // 2 if full_omega else d
        K = self.K
        self.n_params = (K - 1) + (K - 1) * d + (0 if spec.shared_omega else (K - 1) * self.n_omega)

    @classmethod
    def build(
        cls, spec, d: int, full_omega: bool, *, context_dim: int = 0, dtype=None, device=None, seed: int = 0
    ) -> MixtureLaw:
        return cls(spec, d, full_omega)

    @classmethod
    def fit(cls, spec, *, gaussian: Any, law_stage, finish, n_individuals: int):
        """One fit, or with ``n_components="auto"`` the best of K = 1 (the Gaussian fit) ..
        ``max_components`` by the spec's criterion (the candidates' table in the record)."""
        if spec.n_components != "auto":
            return finish(law_stage(spec), spec)
        candidates = [(1, finish(gaussian, Gaussian()))]
        for k in range(2, spec.max_components + 1):
            spec_k = dataclasses.replace(spec, n_components=k)
            candidates.append((k, finish(law_stage(spec_k), spec_k)))
        table = []
        for k, est in candidates:
            df = len(est.theta)
            table.append(
                dict(
                    n_components=k,
                    loglik=est.loglik,
                    df=df,
                    aic=-2 * est.loglik + 2 * df,
                    bic=-2 * est.loglik + math.log(n_individuals) * df,
                )
            )
        best = min(range(len(table)), key=lambda i: table[i][spec.criterion])
        chosen = candidates[best][1]
        return dataclasses.replace(chosen, law=chosen.law.replace(selection=table, criterion=spec.criterion))

    # ---- parameters --------------------------------------------------------------------------
    def split(self, raw: torch.Tensor):
        K, d = self.K, self.d
        logits = torch.cat([torch.zeros(1, dtype=raw.dtype, device=raw.device), raw[: K - 1]])
        offsets = torch.cat(
            [
                torch.zeros(1, d, dtype=raw.dtype, device=raw.device),
                raw[K - 1 : (K - 1) * (1 + d)].reshape(K - 1, d),
            ]
        )
        rest = raw[(K - 1) * (1 + d) :]
        return logits, offsets, rest

    def components(self, L: torch.Tensor, raw: torch.Tensor):
        """Weights (K,), centred means (K, d), Cholesky factors (K, d, d)."""
        logits, offsets, rest = self.split(raw)
        w = torch.softmax(logits, 0)
        means = offsets - (w.unsqueeze(-1) * offsets).sum(0)
        if self.spec.shared_omega:
            trils = L.expand(self.K, self.d, self.d)
        else:
            others = [
                tril_from_raw(rest[k * self.n_omega : (k + 1) * self.n_omega], self.d, self.full)
                for k in range(self.K - 1)
            ]
            trils = torch.stack([L, *others])
        return w, means, trils

    def initial_raw_from(self, L: torch.Tensor, weights, means, covariances) -> torch.Tensor:
        """raw from component weights/means/covariances (e.g. an EM fit), component 1 = base."""
        w = torch.as_tensor(weights, dtype=L.dtype, device=L.device)
        m = torch.as_tensor(means, dtype=L.dtype, device=L.device)
        parts = [torch.log(w[1:] / w[0]), (m[1:] - m[0]).flatten()]
        if not self.spec.shared_omega:
            for k in range(1, self.K):
                C = torch.as_tensor(covariances[k], dtype=L.dtype, device=L.device)
                if not self.full:
                    C = torch.diag(torch.diagonal(C))
                parts.append(raw_from_tril(torch.linalg.cholesky(C), self.full))
        return torch.cat(parts)

    # ---- density -----------------------------------------------------------------------------
    def log_prob(self, L, raw, eta, context=None):
        w, means, trils = self.components(L, raw)
        terms = [
            torch.log(w[k]) + gaussian_log_prob(trils[k], eta - means[k], self.fast_rows, not self.full)
            for k in range(self.K)
        ]
        return torch.logsumexp(torch.stack(terms), 0)

    def responsibilities(self, L, raw, eta, context=None) -> torch.Tensor:
        w, means, trils = self.components(L, raw)
        # the softmax along a leading axis of K, then moved last (along a last axis of 2 it took
        # 20 ms of the bimodal benchmark's ll.is over 1,000 draws x 400 individuals)
        terms = torch.stack(
            [
                torch.log(w[k]) + gaussian_log_prob(trils[k], eta - means[k], self.fast_rows, not self.full)
                for k in range(self.K)
            ]
        )
        return torch.softmax(terms, 0).movedim(0, -1)

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        w, means, trils = self.components(L, raw)
        k = torch.multinomial(w.detach().cpu(), n, replacement=True, generator=generator).to(L.device)
        z = torch.randn(n, self.d, generator=generator, dtype=L.dtype).to(L.device)
        return means[k] + (trils[k] @ z.unsqueeze(-1)).squeeze(-1)

    # ---- stages ------------------------------------------------------------------------------
    def skip_svi(self, n_individuals: int, batch_size: int, after_svi: bool = False) -> bool:
        """After a Newton-gear Gaussian fit: the EM start is fitted on draws of every
        individual's local posterior and the refinement's Newton steps on the marginal
        likelihood take it from there (bimodal, skewed and Gaussian truths of
        benchmarks/random_effects.py, N = 500: the same maximum as after 400 SVI steps, or a
        higher one: -13726.30, -13746.79, -13732.85 against -13726.31, -13746.79, -13739.03).
        After an SVI Gaussian stage (gear="svi", large N, or a Newton gear that did not
        converge) SVI shapes the law first, as before: where the Newton gear fails the
        likelihood is far from quadratic (Orange, 5 trees: the refinement from the EM start
        ended at ll -133.29, after SVI at -127.05)."""
        return not after_svi

    def start(
        self,
        program: Any,
        theta: torch.Tensor,
        local: Any,
        *,
        generator: torch.Generator,
        seed: int,
        fallbacks: Any,
    ) -> tuple[torch.Tensor, dict]:
        """EM on draws of each local posterior (START_DRAWS, fewer from START_POINTS points on);
        the largest component is the base (L)."""
        lay = program.layout
        theta = theta.clone()
        n_draws = max(2, min(START_DRAWS, START_POINTS // local.loc.shape[0]))
        draws = local.loc + (
            local.scale_tril
            @ torch.randn(n_draws, *local.loc.shape, 1, generator=generator, dtype=theta.dtype).to(
                theta.device
            )
        ).squeeze(-1)
        w, means, cov = fit_gaussian_mixture(
            draws.reshape(-1, lay.n_random), self.K, generator, shared=self.spec.shared_omega
        )
        order = torch.argsort(-w)  # component 1 (the base scale) is the largest
        w, means, cov = w[order], means[order], cov[order]
        centre = (w.unsqueeze(-1) * means).sum(0)
        theta[program.random_index] = theta[program.random_index] + centre
        C0 = cov[0]
        if not lay.full_omega:
            C0 = torch.diag(torch.diagonal(C0))
        theta[lay.omega] = raw_from_tril(torch.linalg.cholesky(C0), lay.full_omega)
        theta[lay.law] = self.initial_raw_from(program.omega_tril(theta), w, means - centre, cov)
        return theta, {}

    # ---- moments and reported parameters -----------------------------------------------------
    def moments(self, L, raw, *, n: int = 0, seed: int = 0, context=None):
        """Closed form: E[eta] = sum w_k m_k (0 by construction), Var by the law of total variance."""
        w, means, trils = self.components(L, raw)
        covs = trils @ trils.transpose(-1, -2)
        mean = (w.unsqueeze(-1) * means).sum(0)
        second = (w.view(-1, 1, 1) * (covs + means.unsqueeze(-1) * means.unsqueeze(-2))).sum(0)
        return mean, second - mean.unsqueeze(-1) * mean.unsqueeze(-2)

    def _tags(self) -> list:
        return [None] if self.spec.shared_omega else list(range(self.K))

    def law_rows(self, rows: Rows, program: Any) -> None:
        """Weights, component means (natural scale) and covariances."""
        rand = [program.params[p] for p in program.random_index]
        for k in range(self.K):
            rows.add(f"prob.{k + 1}", "law", f"component {k + 1}", "logit")
        for k in range(self.K):
            for j, name in enumerate(rand):
                rows.add(f"mean.{k + 1}.{name}", "law", name, program.transforms[program.random_index[j]])
        for k in self._tags():
            rows.omega(rand, program.layout.full_omega, "" if k is None else f"{k + 1}.")

    def law_values(self, program: Any, theta: torch.Tensor, cov: torch.Tensor) -> list:
        lay = program.layout
        mu = program.mu_uncentred(theta)
        w, means, trils = self.components(program.omega_tril(theta), theta[lay.law])
        out = list(w)
        for k in range(self.K):
            for j, p in enumerate(program.random_index):
                out.append(tr.forward(program.transforms[p], mu[p] + means[k, j]))
        for k in [0] if self.spec.shared_omega else range(self.K):
            out.extend(omega_values(trils[k] @ trils[k].T, lay.full_omega))
        return out

    def record_extras(self, program: Any, theta: torch.Tensor, result: Any) -> dict:
        """Posterior component probabilities of each individual: the posterior mean of the
        responsibilities (importance.py), P(component k | y_i)."""
        return dict(responsibilities=result.class_prob.detach().to("cpu", torch.float64).numpy().tolist())


def _points_log_prob(x: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; 0, cov) of points x (n, d) by one product with L^-1 (solve_triangular broadcast
    over 10,000 points took 0.57 of the bimodal benchmark's 0.9 s EM start)."""
    L = torch.linalg.cholesky(cov)
    eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
    z = x @ torch.linalg.solve_triangular(L, eye, upper=False).T
    quad = (z * z) @ torch.ones(L.shape[-1], dtype=L.dtype, device=L.device)  # not a 3-wide sum
    return -0.5 * quad - torch.log(torch.diagonal(L)).sum() - 0.5 * L.shape[-1] * LOG_2PI


# draws of each local posterior for the EM start, fewer when the points would pass START_POINTS
# (from 250 individuals on): the bimodal benchmark, N = 500, 5,000 points instead of 10,000 (the
# start 0.31 -> 0.19 s, the same maximum after the refinement: ll -13726.3046 both)
START_DRAWS = 20
START_POINTS = 5_000
# EM iterations of each start before the best one alone goes on ("short EM", Biernacki, Celeux
# and Govaert 2003): the bimodal benchmark's 5 starts ran 273 iterations in all to convergence,
# 0.50 s of the mixture's 3 s fit; with 30 the same start wins and ends at the same point in
# 0.32 s (and Orange's, 5 trees). With 10 Orange's best start after 10 iterations was another
# (EM log-likelihood 399.9 against 417.8 at convergence), from which SVI and the refinement
# ended at ll -132.75 instead of -126.89
SHORT_EM_ITERS = 30


def fit_gaussian_mixture(
    x: torch.Tensor,
    K: int,
    generator: torch.Generator,
    *,
    shared: bool = False,
    n_starts: int = 5,
    iters: int = 200,
    tol: float = 1e-6,
):
    """EM for a K-component Gaussian mixture on points x (n, d): ``n_starts`` k-means++ starts
    run ``SHORT_EM_ITERS`` iterations each, then the best of them until the log-likelihood gains
    less than ``tol`` relative in an iteration (at most ``iters`` in all). Returns weights (K,),
    means (K, d), covariances (K, d, d); used to start a mixture law from draws of the Gaussian
    fit's local posteriors, which the refinement then takes to the maximum (bimodal benchmark:
    325 iterations with 1e-8, 0.56 s, and 1e-6, the same maximum)."""
    n, d = x.shape
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    scale = x.var(0).mean().clamp_min(1e-12)
    ridge = 1e-6 * scale * eye  # keeps every covariance positive definite
    runs = []
    for _ in range(n_starts):
        centres = [x[torch.randint(n, (1,), generator=generator).item()]]
        for _ in range(1, K):  # k-means++ seeding
            dist2 = torch.stack([((x - c) ** 2).sum(-1) for c in centres]).amin(0)
            pick = torch.multinomial((dist2 / dist2.sum()).cpu(), 1, generator=generator).item()
            centres.append(x[pick])
        cov = (x.T.cov() + ridge).expand(K, d, d).clone()
        w = torch.full((K,), 1.0 / K, dtype=x.dtype, device=x.device)
        state = (w, torch.stack(centres), cov)
        runs.append(_em(x, state, min(SHORT_EM_ITERS, iters), tol, shared, ridge))
    ll, state, done, used = max(runs, key=lambda run: run[0])
    if not done and used < iters:  # on from where it stopped, as one run of ``iters``
        ll, state, done, used = _em(x, state, iters - used, tol, shared, ridge, ll)
    return state


def _em(x: torch.Tensor, state: tuple, iters: int, tol: float, shared: bool, ridge, ll_old=-math.inf):
    """Up to ``iters`` EM iterations from ``state`` (weights, means, covariances), ``ll_old``
    the log-likelihood of the iteration before; returns the last log-likelihood, the state,
    whether the relative gain fell below ``tol``, the iterations run."""
    n, d = x.shape
    w, means, cov = state
    K = w.shape[0]
    ll = -math.inf
    for it in range(1, iters + 1):
        # (K, n): reductions over the components run along the long axis (softmax over a
        # last axis of 2 took 0.13 of the EM's 0.45 s)
        log_r = torch.stack([torch.log(w[k]) + _points_log_prob(x - means[k], cov[k]) for k in range(K)])
        norm = torch.logsumexp(log_r, 0)
        ll = float(norm.sum())
        r = torch.exp(log_r - norm)
        nk = r.sum(1).clamp_min(1e-10)
        w = nk / n
        means = (r @ x) / nk.unsqueeze(-1)
        dev = [x - means[k] for k in range(K)]
        cov = torch.stack([((r[k].unsqueeze(-1) * dev[k]).T @ dev[k]) / nk[k] for k in range(K)]) + ridge
        if shared:
            cov = (w.view(K, 1, 1) * cov).sum(0).expand(K, d, d).clone()
        if ll - ll_old < tol * abs(ll):
            return ll, (w, means, cov), True, it
        ll_old = ll
    return ll, (w, means, cov), False, iters
