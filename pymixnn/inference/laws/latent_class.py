"""Latent classes: P(class k | x_i) = softmax_k(gamma_k' [1, x_i]) (gamma_1 = 0), and
eta_i | k ~ N(m_k, L_k L_k^T) with m_k = delta_k on the coordinates ``on`` (delta_1 = 0), 0 elsewhere.

``raw`` = gamma_2..gamma_K (each 1 + c: intercept, then the membership terms) | delta_2..delta_K
(each q = len(on)) | log-Cholesky of L_2..L_K (absent with a shared Omega; L_1 = L). The means are
not centred: mu is class 1's fixed effects and delta_k the class contrasts, as in lcmm, and the
reporting moves E[eta] (over the individuals' membership covariates) into the fixed effects.
The class is summed out exactly: log p(eta | x) = logsumexp_k [log w_k(x) + log N(eta; m_k, L_k L_k')].
Each individual's posterior class probabilities are the posterior expectations of the
responsibilities w_k N_k(eta) / p(eta) (importance.py), which equal P(k | y_i) exactly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from pymixnn.inference.laws.base import LawPlugin, gaussian_log_prob, raw_from_tril, tril_from_raw
from pymixnn.inference.laws.class_em import fit_latent_classes
from pymixnn.inference.laws.flow import FLOW_DRAWS, FlowLaw
from pymixnn.inference.rows import Rows, omega_values
from pymixnn.model import transforms as tr
from pymixnn.model.random_effects import Flow, Gaussian, LatentClass

__all__ = ["LatentClassLaw", "class_selection_row", "RESTART_WARNING"]

# draws of each Gaussian-fit posterior the start's EM runs on
EM_DRAWS = 20
# base draws of the within-class covariance under a flow (reported rows; Monte Carlo error of a
# variance ~1%)
FLOW_MOMENT_DRAWS = 20_000

RESTART_WARNING = (
    "latent classes: a fit ended with an empty class (no individual assigned to it) and was "
    "restarted from new EM starts"
)


def class_selection_row(K: int, est: Any, n: int) -> dict:
    """One row of the K-selection table: log-likelihood, df, AIC, BIC, ICL = BIC + 2 E with E the
    entropy of the posterior classification (McLachlan and Peel's ICL-BIC), ``icl_hard`` = BIC -
    2 sum_i log p_i(assigned class) (Biernacki et al.'s, lcmm's ICL2, mclust's ICL), lcmm's
    relative entropy 1 - E / (N log K), and the smallest class (individuals assigned to it)."""
    df = len(est.theta)
    bic = -2 * est.loglik + math.log(n) * df
    tau = est.law.class_prob if K > 1 else None
    if tau is None:
        E, hard, rel, smallest = 0.0, 0.0, 1.0, n
    else:
        t = torch.as_tensor(tau, dtype=torch.float64).clamp_min(1e-300)
        E = float(-(t * t.log()).sum())
        hard = float(-t.max(-1).values.log().sum())
        rel = 1.0 - E / (n * math.log(K))
        smallest = int(torch.bincount(t.argmax(-1), minlength=K).min())
    return dict(
        n_classes=K,
        loglik=est.loglik,
        df=df,
        aic=-2 * est.loglik + 2 * df,
        bic=bic,
        icl=bic + 2 * E,
        icl_hard=bic + 2 * hard,
        entropy=rel,
        smallest_class=smallest,
        smallest_share=smallest / n,
    )


def _has_empty_class(est: Any, K: int) -> bool:
    prob = torch.as_tensor(est.law.class_prob)
    return bool((torch.bincount(prob.argmax(-1), minlength=K) == 0).any())


class LatentClassLaw(LawPlugin):
    refiner = "newton"

    def __init__(
        self,
        spec: LatentClass,
        d: int,
        full_omega: bool,
        context_dim: int,
        *,
        dtype=None,
        device=None,
        seed=0,
    ):
        self.spec, self.d, self.full, self.c = spec, d, full_omega, context_dim
        # within="flow": one flow T shared by the classes (its parameters last in raw)
        self.flow, self.n_flow = None, 0
        if getattr(spec, "within", "gaussian") == "flow":
            flow_spec = Flow(penalty=float(spec.flow_penalty))
            self.flow = FlowLaw(flow_spec, d, 0, dtype=dtype or torch.float64, device=device, seed=seed)
            self.n_flow = self.flow.n_params
            self.refiner, self.se_note = FlowLaw.refiner, FlowLaw.se_note
        self.conditional = context_dim > 0
        self.K = int(spec.n_classes)
        names = list(getattr(spec, "random_names", ()) or ())
        on = list(spec.on or ())
        self.on = [names.index(p) for p in on] if names and on else list(range(d))
        self.q = len(self.on)
        self.n_omega = d * (d + 1) // 2 if full_omega else d
        K = self.K
        self.n_gamma, self.n_delta = (K - 1) * (1 + self.c), (K - 1) * self.q
        self.n_params = self.n_gamma + self.n_delta + (0 if spec.shared_omega else (K - 1) * self.n_omega)
        self.n_params += self.n_flow

    @classmethod
    def build(
        cls, spec, d: int, full_omega: bool, *, context_dim: int = 0, dtype=None, device=None, seed: int = 0
    ) -> LatentClassLaw:
        return cls(spec, d, full_omega, context_dim, dtype=dtype, device=device, seed=seed)

    @classmethod
    def fit(cls, spec, *, gaussian: Any, law_stage, finish, n_individuals: int):
        """One fit (restarted once from new EM starts if a class ends empty), or with
        ``n_classes="auto"`` the best of K = 1 (the Gaussian fit) .. ``max_classes`` by the
        spec's criterion, the table of every K in the record (``selection``)."""

        def one(spec_k):
            est = finish(law_stage(spec_k), spec_k)
            if _has_empty_class(est, spec_k.n_classes):
                retry = finish(law_stage(spec_k), spec_k)
                if not _has_empty_class(retry, spec_k.n_classes) or retry.loglik > est.loglik:
                    est = retry
                fb = dict(est.run.fallbacks, latent_class_restart=1)
                warn = [*est.warnings, RESTART_WARNING]
                est = dataclasses.replace(
                    est, warnings=warn, run=est.run.replace(fallbacks=fb, warnings=tuple(warn))
                )
            return est

        if spec.n_classes != "auto":
            return one(spec)
        candidates = [(1, finish(gaussian, Gaussian()))]
        for k in range(2, spec.max_classes + 1):
            candidates.append((k, one(dataclasses.replace(spec, n_classes=k))))
        table = [class_selection_row(k, est, n_individuals) for k, est in candidates]
        best = min(range(len(table)), key=lambda i: table[i][spec.criterion])
        chosen = candidates[best][1]
        return dataclasses.replace(chosen, law=chosen.law.replace(selection=table, criterion=spec.criterion))

    # ---- parameters --------------------------------------------------------------------------
    def split(self, raw: torch.Tensor):
        """gamma (K, 1 + c), delta (K, q), the other classes' raw Cholesky factors."""
        K, p = self.K, 1 + self.c
        zero = lambda m: torch.zeros(1, m, dtype=raw.dtype, device=raw.device)  # noqa: E731
        gamma = torch.cat([zero(p), raw[: self.n_gamma].reshape(K - 1, p)])
        delta = torch.cat(
            [zero(self.q), raw[self.n_gamma : self.n_gamma + self.n_delta].reshape(K - 1, self.q)]
        )
        return gamma, delta, raw[self.n_gamma + self.n_delta : raw.shape[0] - self.n_flow]

    def flow_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """The shared flow's parameters (within="flow")."""
        return raw[raw.shape[0] - self.n_flow :]

    def within_log_prob(self, L_k, raw, eta) -> torch.Tensor:
        """log density of eta - m_k within a class: Gaussian, or the shared flow."""
        if self.flow is None:
            return gaussian_log_prob(L_k, eta, self.fast_rows)
        return self.flow.log_prob(L_k, self.flow_raw(raw), eta)

    def means(self, delta: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(self.K, self.d, dtype=delta.dtype, device=delta.device)
        m[:, self.on] = delta
        return m

    def trils(self, L: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        if self.spec.shared_omega:
            return L.expand(self.K, self.d, self.d)
        others = [
            tril_from_raw(rest[k * self.n_omega : (k + 1) * self.n_omega], self.d, self.full)
            for k in range(self.K - 1)
        ]
        return torch.stack([L, *others])

    def log_weights(self, gamma: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """log P(class k | x): (B, K) with membership covariates, else (K,)."""
        if not self.c:
            return torch.log_softmax(gamma[:, 0], 0)
        X = torch.cat([torch.ones_like(context[:, :1]), context], -1)
        return torch.log_softmax(X @ gamma.T, -1)

    def components(self, L: torch.Tensor, raw: torch.Tensor, context: torch.Tensor | None = None):
        """Class weights (K,) (averaged over the ``context`` rows with membership covariates),
        means (K, d) and Cholesky factors (K, d, d)."""
        gamma, delta, rest = self.split(raw)
        lw = self.log_weights(gamma, context) if (context is not None or not self.c) else None
        if lw is None:
            raise ValueError("the class weights of a membership model depend on the covariates")
        w = lw.exp() if lw.dim() == 1 else lw.exp().mean(0)
        return w, self.means(delta), self.trils(L, rest)

    # ---- density -----------------------------------------------------------------------------
    def class_terms(self, L, raw, eta, context=None) -> torch.Tensor:
        """log w_k(x) + log N(eta; m_k, L_k L_k'), (..., B, K)."""
        gamma, delta, rest = self.split(raw)
        means, trils = self.means(delta), self.trils(L, rest)
        dens = torch.stack([self.within_log_prob(trils[k], raw, eta - means[k]) for k in range(self.K)], -1)
        return dens + self.log_weights(gamma, context)

    def log_prob(self, L, raw, eta, context=None):
        return torch.logsumexp(self.class_terms(L, raw, eta, context), -1)

    def responsibilities(self, L, raw, eta, context=None) -> torch.Tensor:
        """P(class k | eta, x), (..., B, K)."""
        return torch.softmax(self.class_terms(L, raw, eta, context), -1)

    def sample(self, L, raw, n: int, generator: torch.Generator, context=None) -> torch.Tensor:
        gamma, delta, rest = self.split(raw)
        means, trils = self.means(delta), self.trils(L, rest)
        w = self.log_weights(gamma, context).exp().detach().cpu()
        if w.dim() == 1:
            k = torch.multinomial(w, n, replacement=True, generator=generator)
        else:
            k = torch.multinomial(w, 1, generator=generator).squeeze(-1)
        k = k.to(L.device)
        if self.flow is not None:
            return means[k] + self.flow.sample(L, self.flow_raw(raw), n, generator)
        z = torch.randn(n, self.d, generator=generator, dtype=L.dtype).to(L.device)
        return means[k] + (trils[k] @ z.unsqueeze(-1)).squeeze(-1)

    # ---- stages ------------------------------------------------------------------------------
    def skip_svi(self, n_individuals: int, batch_size: int, after_svi: bool = False) -> bool:
        """The EM start is a full-data fit; the refinement's Newton steps take it from there (a
        flow within the classes is shaped by SVI first)."""
        return self.flow is None

    def penalty(self, raw: torch.Tensor, weight: float | None = None) -> torch.Tensor:
        """The shared flow's ridge towards the Gaussian (0 without a flow)."""
        if self.flow is None:
            return torch.zeros((), dtype=raw.dtype, device=raw.device)
        return self.flow.penalty(self.flow_raw(raw), weight)

    def refine_draws(self, k_opt: int) -> int:
        return k_opt if self.flow is None else min(k_opt, FLOW_DRAWS)

    def fisher_draws(self, k_opt: int, n_individuals: int = 0) -> int:
        return self.refine_draws(k_opt)

    def fisher_index(self, layout: Any) -> list[int] | None:
        """All of theta, or with a flow within the classes all but the flow's own parameters."""
        if self.flow is None:
            return None
        return list(range(layout.core.stop)) + list(range(layout.law.start, layout.law.stop - self.n_flow))

    def start(self, program, theta, local, *, generator, seed, fallbacks) -> tuple[torch.Tensor, dict]:
        """EM (class_em.py) on draws of each Gaussian-fit posterior; classes ordered by their mean
        of the first parameter in ``on``; class 1's mean moved into mu."""
        lay = program.layout
        theta = theta.clone()
        gen = torch.Generator().manual_seed(int(seed))
        draws = local.loc + (
            local.scale_tril
            @ torch.randn(EM_DRAWS, *local.loc.shape, 1, generator=gen, dtype=theta.dtype).to(theta.device)
        ).squeeze(-1)
        n = local.loc.shape[0]
        ones = torch.ones(n, 1, dtype=theta.dtype, device=theta.device)
        X = ones if not self.c else torch.cat([ones, program.context], -1)
        em = fit_latent_classes(
            draws.reshape(-1, lay.n_random),
            self.K,
            self.on,
            X.repeat(EM_DRAWS, 1),
            generator,
            shared=self.spec.shared_omega,
            full=lay.full_omega,
            n_starts=self.spec.n_starts,
        )
        order = torch.argsort(em["means"][:, self.on[0]])
        gamma, means, covs = em["gamma"][order], em["means"][order], em["covs"][order]
        for _ in range(em["restarts"]):
            fallbacks.add("latent_class_empty_reseed")
        theta[program.random_index] = theta[program.random_index] + means[0]
        theta[lay.omega] = raw_from_tril(torch.linalg.cholesky(covs[0]), lay.full_omega)
        parts = [(gamma[1:] - gamma[0]).reshape(-1), (means[1:, self.on] - means[0, self.on]).reshape(-1)]
        if not self.spec.shared_omega:
            parts += [raw_from_tril(torch.linalg.cholesky(covs[k]), lay.full_omega) for k in range(1, self.K)]
        if self.flow is not None:
            parts.append(self.flow.initial_raw(theta.dtype, theta.device))
        theta[lay.law] = torch.cat(parts)
        local.loc = local.loc - means[0]
        return theta, dict(em_loglik=em["ll"], em_restarts=em["restarts"])

    # ---- moments and reported parameters -----------------------------------------------------
    def moments(self, L, raw, *, n: int = 0, seed: int = 0, context=None):
        """E[eta] and Var[eta] over the classes (their weights averaged over the individuals'
        membership covariates), by the law of total variance."""
        w, means, trils = self.components(L, raw, context)
        covs = trils @ trils.transpose(-1, -2)
        if self.flow is not None:  # the flow's own mean and covariance, by Monte Carlo
            shift, cov = self.flow.moments(L, self.flow_raw(raw), n=n or FLOW_MOMENT_DRAWS, seed=seed)
            means, covs = means + shift, cov.expand(self.K, self.d, self.d)
        mean = (w.unsqueeze(-1) * means).sum(0)
        second = (w.view(-1, 1, 1) * (covs + means.unsqueeze(-1) * means.unsqueeze(-2))).sum(0)
        return mean, second - mean.unsqueeze(-1) * mean.unsqueeze(-2)

    def law_rows(self, rows: Rows, program: Any) -> None:
        """Class probabilities (averaged over individuals), class-specific fixed effects of the
        parameters in ``on`` (natural scale), membership coefficients, Omega (per class or shared)."""
        rand = [program.params[p] for p in program.random_index]
        for k in range(self.K):
            rows.add(f"prob.{k + 1}", "law", f"class {k + 1}", "logit")
        for j in self.on:
            p = program.random_index[j]
            for k in range(self.K):
                rows.add(f"{rand[j]}.class{k + 1}", "class", rand[j], program.transforms[p])
        terms = ["intercept", *self.spec.membership_terms] if self.c else []
        for k in range(1, self.K):
            for term in terms:
                rows.add(f"membership.class{k + 1}.{term}", "membership", f"class {k + 1}", "identity")
        tags = [""] if self.spec.shared_omega else [f"class{k + 1}." for k in range(self.K)]
        for tag in tags:  # under a flow, the full within-class covariance (the flow couples them)
            rows.omega(rand, program.layout.full_omega or self.flow is not None, tag)

    def law_values(self, program: Any, theta: torch.Tensor, cov: torch.Tensor) -> list:
        lay = program.layout
        mu = program.mu_uncentred(theta)
        raw = theta[lay.law]
        L = program.omega_tril(theta)
        w, means, trils = self.components(L, raw, program.context)
        within = None
        if self.flow is not None:  # class means include the flow's mean; its covariance within
            shift, within = self.flow.moments(L, self.flow_raw(raw), n=FLOW_MOMENT_DRAWS, seed=0)
            means = means + shift
        gamma = self.split(raw)[0]
        out = list(w)
        for j in self.on:
            p = program.random_index[j]
            out.extend(tr.forward(program.transforms[p], mu[p] + means[k, j]) for k in range(self.K))
        if self.c:
            out.extend(gamma[1:].reshape(-1))
        if within is not None:
            return out + omega_values(within, True)
        for k in [0] if self.spec.shared_omega else range(self.K):
            out.extend(omega_values(trils[k] @ trils[k].T, lay.full_omega))
        return out

    def record_extras(self, program: Any, theta: torch.Tensor, result: Any) -> dict:
        """Posterior class probabilities P(k | y_i, x_i) (importance sampling, exact in the limit)."""
        prob = result.class_prob.detach().to("cpu", torch.float64)
        return dict(class_prob=prob.numpy().tolist(), responsibilities=prob.numpy().tolist())
