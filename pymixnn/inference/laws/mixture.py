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
    def gaussian_is_start(cls, spec) -> bool:
        """Unless n_components="auto" reports the Gaussian fit as its K = 1 candidate (the bimodal
        benchmark, N = 500: the Gaussian stage 0.31 -> 0.21 s, the same maximum to 1e-6)."""
        return spec.n_components != "auto"

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

    def fisher_draws(self, k_opt: int, n_individuals: int = 0) -> int:
        """Draws of the observed information: at least FISHER_CELLS individual-draws in all."""
        return min(k_opt, max(FISHER_DRAWS, math.ceil(FISHER_CELLS / max(1, n_individuals))))

    def record_extras(self, program: Any, theta: torch.Tensor, result: Any) -> dict:
        """Posterior component probabilities of each individual: the posterior mean of the
        responsibilities (importance.py), P(component k | y_i)."""
        return dict(responsibilities=result.class_prob.detach().to("cpu", torch.float64).numpy().tolist())


# draws of each local posterior for the EM start, fewer when the points would pass START_POINTS
# (from 250 individuals on): the bimodal benchmark, N = 500, 5,000 points instead of 10,000 (the
# start 0.31 -> 0.19 s, the same maximum after the refinement: ll -13726.3046 both)
START_DRAWS = 20
START_POINTS = 5_000
# draws of the observed information (Louis' identity: a double backward pass per parameter,
# twice a Gaussian law's), at most the refinement's: its Monte Carlo error is a sum of independent
# ones over individuals, relative ~1/sqrt(N K), so N K is held at FISHER_CELLS or more. Bimodal
# truth, largest SE deviation from 1,000 draws': N = 500, 0.22% with 100 draws, 0.46% with 64
# (0.34 -> 0.23 s); N = 60, 0.9% with 200, 1.7% with 100, 4.0% with 64 (there it keeps 200)
FISHER_DRAWS = 64
FISHER_CELLS = 32_000
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
    starts = []
    for _ in range(n_starts):
        centres = [x[torch.randint(n, (1,), generator=generator).item()]]
        for _ in range(1, K):  # k-means++ seeding
            dist2 = torch.stack([((x - c) ** 2).sum(-1) for c in centres]).amin(0)
            pick = torch.multinomial((dist2 / dist2.sum()).cpu(), 1, generator=generator).item()
            centres.append(x[pick])
        starts.append(torch.stack(centres))
    S = len(starts)
    w = torch.full((S, K), 1.0 / K, dtype=x.dtype, device=x.device)
    cov = (x.T.cov() + ridge).expand(S, K, d, d).clone()
    # the starts side by side, each as its own run (_em): 5 starts on 5,000 points of two
    # clusters (as the bimodal benchmark's) in 0.09 s instead of 0.16-0.20 one after the other
    ll, state, done, used = _em(
        x, (w, torch.stack(starts), cov), min(SHORT_EM_ITERS, iters), tol, shared, ridge
    )
    best = int(torch.argmax(ll))  # the first of equal ones, as max() over the runs
    ll, state, done, used = float(ll[best]), tuple(t[best] for t in state), bool(done[best]), int(used[best])
    if not done and used < iters:  # on from where it stopped, as one run of ``iters``
        ll, state, done, used = _em(x, state, iters - used, tol, shared, ridge, ll)
    return state


def _em(x: torch.Tensor, state: tuple, iters: int, tol: float, shared: bool, ridge, ll_old=-math.inf):
    """Up to ``iters`` EM iterations from ``state`` (weights (K,), means (K, d), covariances
    (K, d, d)), ``ll_old`` the log-likelihood of the iteration before; returns the last
    log-likelihood, the state, whether the relative gain fell below ``tol``, the iterations run.
    With a leading axis S on the state (and tensors (S,) returned), S runs side by side, each
    held where it stopped."""
    n, d = x.shape
    single = state[0].dim() == 1
    w, means, cov = (t.unsqueeze(0) for t in state) if single else state
    S, K = w.shape
    if not torch.is_tensor(ll_old):
        ll_old = torch.full((S,), ll_old, dtype=x.dtype, device=x.device)
    ll_out = torch.full((S,), -math.inf, dtype=x.dtype, device=x.device)
    used = torch.full((S,), iters, dtype=torch.long, device=x.device)
    active = torch.ones(S, dtype=torch.bool, device=x.device)
    # the points' second moments once: each iteration's E- and M-steps are then products of
    # (n, d + d^2) with S K columns (5 starts on 5,000 points: 2.9 ms an iteration, 3.8 with
    # (S, K, n, d) deviations); x centred first, so that the moments' differences keep their digits
    centre = x.mean(0)
    x = x - centre
    means = means - centre
    xx = (x.unsqueeze(-1) * x.unsqueeze(-2)).reshape(n, d * d)
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    for it in range(1, iters + 1):
        L = torch.linalg.cholesky(cov)
        L_inv = torch.linalg.solve_triangular(L, eye, upper=False)
        P = L_inv.transpose(-1, -2) @ L_inv  # precisions (S, K, d, d)
        Pm = (P @ means.unsqueeze(-1)).squeeze(-1)
        quad = (xx @ P.reshape(S * K, d * d).T - 2 * (x @ Pm.reshape(S * K, d).T)).T.reshape(S, K, n)
        quad = quad + (means * Pm).sum(-1, keepdim=True)
        log_det = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1, keepdim=True)
        log_r = torch.log(w).unsqueeze(-1) - 0.5 * quad - log_det - 0.5 * d * LOG_2PI
        # logsumexp over the K components one slice at a time (a reduction over that short
        # middle axis took 1.7 ms an iteration, 80% of it)
        top = log_r[:, 0]
        for k in range(1, K):
            top = torch.maximum(top, log_r[:, k])
        r = torch.exp(log_r - top.unsqueeze(1))
        total = r[:, 0]
        for k in range(1, K):
            total = total + r[:, k]
        ll = (top + torch.log(total)).sum(-1)
        r = r / total.unsqueeze(1)
        nk = r.sum(-1).clamp_min(1e-10)
        w_new = nk / n
        m_new = (r @ x) / nk.unsqueeze(-1)
        second = ((r @ xx) / nk.unsqueeze(-1)).reshape(S, K, d, d)
        c_new = second - m_new.unsqueeze(-1) * m_new.unsqueeze(-2) + ridge
        if shared:
            c_new = (w_new[..., None, None] * c_new).sum(1, keepdim=True).expand(S, K, d, d).clone()
        keep = active.view(S, 1)
        w = torch.where(keep, w_new, w)
        means = torch.where(keep.unsqueeze(-1), m_new, means)
        cov = torch.where(keep[..., None, None], c_new, cov)
        ll_out = torch.where(active, ll, ll_out)
        stop = active & (ll - ll_old < tol * ll.abs())
        used = torch.where(stop, it, used)
        active = active & ~stop
        ll_old = torch.where(active, ll, ll_old)
        if not bool(active.any()):
            break
    done = ~active
    means = means + centre
    if single:
        return float(ll_out[0]), (w[0], means[0], cov[0]), bool(done[0]), int(used[0])
    return ll_out, (w, means, cov), done, used
