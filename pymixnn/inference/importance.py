"""Importance sampling of the marginal likelihood (saemix's ``ll.is``) and its maximization.

For individual i the proposal is a multivariate Student t (nu = 4 degrees of freedom, heavier tails
than the posterior, as in saemix) with the Laplace scale S_i of the local posterior, centred on
``m_i(theta) = m_i + S_i grad_eta log p(y_i, m_i | theta)``: one Newton step from the stored mode m_i,
so the centre follows the posterior mode as theta moves (exactly to first order). The standardized
draws of one chunk are a fixed function of (seed, chunk) and come in antithetic pairs, so ``log L(theta)``
is a smooth deterministic function of theta (common random numbers), maximizable by Newton steps and
differentiable twice for the observed Fisher information. Because the draws move with the posterior,
maximizing it does not chase the Monte Carlo noise of draws held at fixed places (which biases
simulated maximum likelihood with a fixed proposal).

    log L_i(theta) ~ log (1/K) sum_k p(y_i, eta_ik | theta) / t_i(eta_ik)

With ``quadrature=Q`` the draws are replaced by adaptive Gauss-Hermite quadrature (saemix's
``ll.gq``, lme4's ``nAGQ``): the Q^d nodes of the tensor-product rule for N(0, I), mapped through
the same moving centre and Laplace scale, with their weights. For one or two random effects this is
deterministic and, for smooth posteriors, exact to many digits with 15-25 nodes per dimension.

The two strategies differ only in :meth:`ImportanceSampler.draws` (the points and log-weights of
each individual's integral), the Monte Carlo variance (0 for quadrature) and the Newton metric's
draws; everything else (moving centre, chunks, maximization, derivatives) is shared, so one class
serves both and marginal.py chooses between them in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from pymixnn.inference.autodiff import batched_grad
from pymixnn.inference.newton import MaximizeResult, newton_maximize
from pymixnn.inference.offsets import offset_expectation
from pymixnn.inference.program import Program, integrates
from pymixnn.inference.proposals import quadrature_draws, quadrature_rule, t_draws

__all__ = ["ImportanceSampler", "ISResult", "MaximizeResult"]

# draws per individual for the Newton steps' Hessian (a metric only: see _newton_hessian)
METRIC_DRAWS = 20
# nodes per dimension of that metric's quadrature rule for a model solved by an ODE solver, where
# a node costs a whole solve differentiated twice (Michaelis-Menten, 1,000 individuals: 84 s per
# Hessian with the 7 x 7 rule, 17 s with 3 x 3)
ODE_METRIC_NODES = 3
# cells (draws x observation slots) per chunk for such a model: its autograd graph holds every
# solver step (Michaelis-Menten, 1,000 individuals x 49 nodes x 10 observations in one chunk:
# 9.7 GB for the Hessian, and the fit was killed for memory on a 24 GB machine; 100,000 cells
# keep a chunk near 2 GB)
ODE_CHUNK_CELLS = 100_000
# the step in each entry of theta of that metric's differences (see difference_hessian)
METRIC_STEP = 1e-4
# largest scale factor w = sqrt(nu / chi2) of a t draw for such a model (the proposal is then the
# t law with w clipped, its density exact: proposals.t_draws): the solver steps a
# batch together, and a draw 10 Laplace SDs out (w ~ 4, 0.7% of t4 draws) gives parameters
# where the whole batch's solve is stiff (turnover PK/PD, 100 individuals x 100 draws: 18,714
# right-hand-side evaluations and 12 s per pass, 4,674 and 2.8 s clipped at 1.5; in the
# refinement a pass took 70 s); beyond the clip the tails are those of N(m, 1.5^2 S)
ODE_MAX_T_SCALE = 1.5


@dataclass
class ISResult:
    """Per-individual log-likelihood, its Monte Carlo variance, and moments of psi under p(eta|y)."""

    loglik: torch.Tensor  # (N,)
    mc_variance: torch.Tensor  # (N,) variance of each log L_i estimate (delta method)
    psi_mean: torch.Tensor  # (N, P) conditional mean of psi
    psi_sd: torch.Tensor  # (N, P)
    eta_mean: torch.Tensor  # (N, d)
    # (N, K) posterior class probabilities of a law with classes (mixture components, latent
    # classes): the posterior mean of its responsibilities, which is P(k | y_i) exactly
    class_prob: torch.Tensor | None = None


def _batched_rows(g: torch.Tensor, th: torch.Tensor, rows_of: list[int]) -> torch.Tensor | None:
    """The Hessian rows ``rows_of`` of g = d value / d th in one vectorized backward pass (an ODE
    model: 3.5x faster than one pass per row through the solver's graph, 100 individuals x 9
    nodes: 4.4 s against 15.3 s, the same numbers); None when an operation has no batching rule
    (then one pass per row)."""
    basis = torch.zeros(len(rows_of), th.shape[0], dtype=th.dtype, device=th.device)
    basis[torch.arange(len(rows_of)), torch.as_tensor(rows_of)] = 1.0
    return batched_grad(g, th, basis[:, : g.shape[0]])


class ImportanceSampler:
    """Fixed-draw importance sampler over individuals, in chunks that bound memory."""

    def __init__(
        self,
        program: Program,
        loc: torch.Tensor,
        scale_tril: torch.Tensor,
        *,
        n_samples: int,
        seed: int,
        chunk_cells: int = 4_000_000,
        quadrature: int = 0,
        hessian_individuals: int | None = None,
        individuals: torch.Tensor | None = None,
    ):
        self.program = program
        # the individuals of every pass (a subsample: the ODE pre-refinement), None: all
        self.individuals = individuals
        # second derivatives (Newton steps, observed information) from a fixed random subsample
        # of individuals, scaled up by N / n: the information is a sum over individuals, so
        # with n in the thousands its relative error is ~1/sqrt(n) (see hessian_rows)
        n = program.n_individuals
        self.hessian_rows = None
        if hessian_individuals is not None and hessian_individuals < n:
            gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
            self.hessian_rows = (
                torch.randperm(n, generator=gen)[: int(hessian_individuals)].sort().values.to(program.device)
            )
        self.set_posteriors(loc, scale_tril)
        self.seed = int(seed)
        self._metric: ImportanceSampler | None = None  # fewer draws for the Newton metric
        # theta -> (loc, scale_tril) of the local posteriors re-centred there, called after each
        # accepted Newton step of :meth:`maximize_report` (an ODE model's refinement): the
        # centre m_i + S_i grad follows the posterior mode to first order only, and for a
        # banana-shaped posterior (Michaelis-Menten's V and Vmax) a move of 0.07 in log Vmax
        # sent it from the mode (-0.35, 0.61) to (4.2, 1.6): the log-likelihood fell by 1e6
        # where +6 was predicted, and rounds crept by 0.02 each. Re-centred at every step, the
        # nodes stay at the stored modes (:meth:`centre`): the rule integrates the same
        # function, and a step is no longer limited by the first-order centre's reach
        self.recentre: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
        self.recentred = 0
        self.quadrature = int(quadrature)
        if self.quadrature:
            self.nodes, self.log_node_weights = quadrature_rule(
                self.quadrature, self.loc.shape[-1], program.dtype, program.device
            )
            n_samples = self.nodes.shape[0]
        self.n_samples = int(n_samples)
        self.max_scale = ODE_MAX_T_SCALE if integrates(program.model) else math.inf
        cells_per_individual = max(1, n_samples * program.x.shape[1])
        if integrates(program.model):
            chunk_cells = min(chunk_cells, ODE_CHUNK_CELLS)
        n_rows = program.n_individuals if individuals is None else int(individuals.shape[0])
        self.chunk = max(1, min(n_rows, chunk_cells // cells_per_individual))

    def set_posteriors(self, loc: torch.Tensor, scale_tril: torch.Tensor) -> None:
        """The local posteriors the draws are centred and scaled by (the metric's follow)."""
        self.loc, self.scale_tril = loc.detach().clone(), scale_tril.detach().clone()
        self.covariance = self.scale_tril @ self.scale_tril.transpose(-1, -2)
        if getattr(self, "_metric", None) is not None:
            self._metric.set_posteriors(loc, scale_tril)

    def chunks(self, rows: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """(chunk number, individuals) over all individuals, or over ``rows`` (a subsample: its
        chunks are numbered from 1,000,000 so their draws differ from the full pass's)."""
        if rows is not None:
            for c, start in enumerate(range(0, rows.shape[0], self.chunk)):
                yield 1_000_000 + c, rows[start : start + self.chunk]
            return
        if self.individuals is not None:
            for c, start in enumerate(range(0, self.individuals.shape[0], self.chunk)):
                yield c, self.individuals[start : start + self.chunk]
            return
        n = self.program.n_individuals
        for c, start in enumerate(range(0, n, self.chunk)):
            yield c, torch.arange(start, min(start + self.chunk, n), device=self.program.device)

    def centre(self, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Proposal centre m_i(theta): one Newton step from the stored mode (differentiable in
        theta); the stored mode itself when the sampler is re-centred after every step."""
        m0 = self.loc[idx]
        if self.recentre is not None:
            return m0
        with torch.enable_grad():
            m = m0.detach().requires_grad_(True)
            value = self.program.log_joint(theta, m, idx).sum()
            (grad,) = torch.autograd.grad(value, m, create_graph=theta.requires_grad)
        return m0 + (self.covariance[idx] @ grad.unsqueeze(-1)).squeeze(-1)

    def draws(self, c: int, idx: torch.Tensor):
        """Offsets from the proposal centre (K, B, d) and the log proposal density of each draw
        (proposals.py: the quadrature rule's nodes, or chunk c's antithetic t draws)."""
        L = self.scale_tril[idx]
        if self.quadrature:
            return quadrature_draws(self.nodes, self.log_node_weights, L)
        gen = torch.Generator(device=self.program.device).manual_seed(self.seed * 1_000_003 + c)
        return t_draws(gen, self.n_samples, L, self.max_scale)

    def chunk_log_weights(self, theta: torch.Tensor, c: int, idx: torch.Tensor):
        """log p(y, eta_k | theta) - log q(eta_k), (K, B), and the draws eta_k."""
        offset, log_q = self.draws(c, idx)
        centre = self.centre(theta, idx)
        log_w = self.program.log_joint(theta, centre + offset, idx) - log_q
        bad = ~torch.isfinite(log_w.detach())
        if bool(bad.any()):
            # far tail draws where the structural model overflows get weight 0; recompute with
            # those draws at the centre so that no NaN enters the gradient
            offset = torch.where(bad.unsqueeze(-1), torch.zeros_like(offset), offset)
            log_w = self.program.log_joint(theta, centre + offset, idx) - log_q
            log_w = torch.where(bad, torch.full_like(log_w, -math.inf), log_w)
        return log_w, centre + offset

    def chunk_loglik(self, theta: torch.Tensor, c: int, idx: torch.Tensor) -> torch.Tensor:
        """log L_i of the chunk (B,); with grouping levels, the expectation of log L_i over the
        offsets' posterior (Program.offset_curvature), which the refinement maximizes."""
        log_w, eta = self.chunk_log_weights(theta, c, idx)
        value = torch.logsumexp(log_w, 0) - math.log(self.n_samples)
        if self.program.offset_coords is not None:  # no individual random effects (offsets.py)
            value = value + offset_expectation(self.program, theta, idx)
        elif self.program.offset_var is not None:
            value = value + self.program.offset_curvature(theta, log_w, eta, idx)
        return value

    def total(self, theta: torch.Tensor, rows: torch.Tensor | None = None) -> float:
        """sum_i log L_i over all individuals, or over ``rows`` only (not rescaled)."""
        with torch.no_grad():
            return float(sum(self.chunk_loglik(theta, c, idx).sum() for c, idx in self.chunks(rows)))

    def maximize(
        self, theta: torch.Tensor, *, max_iter: int = 50, tol: float = 1e-7, decrement_tol: float = 1e-4
    ) -> tuple[torch.Tensor, float]:
        """(theta, value) of :meth:`maximize_report`."""
        out = self.maximize_report(theta, max_iter=max_iter, tol=tol, decrement_tol=decrement_tol)
        return out.theta, out.value

    def maximize_report(
        self, theta: torch.Tensor, *, max_iter: int = 50, tol: float = 1e-7, decrement_tol: float = 1e-4
    ) -> MaximizeResult:
        """argmax_theta sum_i log L_i(theta) by Newton steps (theta is short).

        The Hessian (made positive definite; from ``hessian_rows`` when set) is computed at the
        start and renewed only when the steps stop contracting or fail; other iterations reuse
        it with a fresh gradient (a chord method). A full step is tried with one pass that
        gives the value and the gradient there, so an accepted step costs one forward-backward
        pass over the data; backtracking (values only) rejects non-finite or lower values.
        Stops when the Newton decrement g' (-H)^-1 g falls below ``decrement_tol``: twice the
        gain still to be had, and the squared distance to the maximum in standard-error units
        (1e-4: within 0.01 SE whatever N, which a criterion on the step or the gain is not);
        that last step is taken without a pass, the value updated by its predicted gain.
        For a model solved by an ODE solver a step moves no entry of theta by more than
        ``newton.ODE_MAX_STEP`` (the decrement is that of the full step).
        Returns the end point, whether non-finite derivatives stopped the steps (the last finite
        point is kept), how many full steps backtracking rejected and how many were shortened."""
        return newton_maximize(self, theta, max_iter=max_iter, tol=tol, decrement_tol=decrement_tol)

    def _newton_hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The Hessian for a Newton step: with at most ``METRIC_DRAWS`` draws per individual
        (and, large N, from the subsample ``hessian_rows``). It is only the steps' metric: the
        full-data gradient still fixes the maximum, backtracking guards the steps, and a less
        exact metric costs a slower (linear) contraction, not another answer (the logistic
        simulation, N = 100: the refinement's 1,000-draw Hessians took 3.2 of its 4.5 s, with 20
        draws it took 1.2 s, the same estimates to 6 digits). For a model solved by an ODE
        solver a quadrature rule also shrinks, to ``ODE_METRIC_NODES`` nodes per dimension, and
        the metric comes from differences of the gradient (:meth:`difference_hessian`)."""
        ode = integrates(self.program.model)
        coarse: dict[str, int] | None = None
        if self.quadrature:
            if ode and self.quadrature > ODE_METRIC_NODES:
                coarse = dict(n_samples=1, quadrature=ODE_METRIC_NODES)
        elif self.n_samples > METRIC_DRAWS:
            coarse = dict(n_samples=METRIC_DRAWS)
        sampler = self
        if coarse is not None:
            if self._metric is None:
                self._metric = ImportanceSampler(
                    self.program,
                    self.loc,
                    self.scale_tril,
                    seed=self.seed,
                    individuals=self.individuals,
                    **coarse,
                )
            sampler = self._metric
        if ode:
            return sampler.difference_hessian(theta, self.hessian_rows)[1]
        return sampler.gradient_and_hessian(theta, rows=self.hessian_rows)[1]

    def difference_hessian(
        self,
        theta: torch.Tensor,
        rows: torch.Tensor | None,
        *,
        index: list[int] | None = None,
        central: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and Hessian of sum_i log L_i, the Hessian by differences of the gradient in
        steps of ``METRIC_STEP`` (forward: 1 + len(theta) gradient passes, 9e-5 from autograd's
        Hessian, the Newton metric and the Fisher information; ``central``: 1 + 2 len(theta),
        6e-7); with
        ``index`` the block of those entries; over ``rows`` scaled up to the pass's individuals
        when given. For a model solved by an ODE solver, where the vectorized double backward
        pass costs ~30 gradient passes whatever the batch and holds every solver step for every
        direction (turnover PK/PD, 13 entries of theta, 100 individuals x 20 draws: 51 s and
        9.8 GB; 100 draws: killed at 24 GB), a gradient pass ~1.5 s and 0.8 GB."""
        theta = theta.detach()
        g0 = self.value_and_gradient(theta, rows)[1]
        entries = list(range(theta.shape[0])) if index is None else list(index)
        cols = []
        for j in entries:
            e = torch.zeros_like(theta)
            e[j] = METRIC_STEP
            up = self.value_and_gradient(theta + e, rows)[1]
            if central:
                cols.append((up - self.value_and_gradient(theta - e, rows)[1]) / (2 * METRIC_STEP))
            else:
                cols.append((up - g0) / METRIC_STEP)
        hess = torch.stack(cols, 1)[entries]
        if rows is not None:
            n = self.program.n_individuals if self.individuals is None else self.individuals.shape[0]
            g0, hess = g0 * (n / rows.shape[0]), hess * (n / rows.shape[0])
        return g0, 0.5 * (hess + hess.T)

    def value_and_gradient(
        self, theta: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[float, torch.Tensor]:
        """sum_i log L_i and its gradient, accumulated over chunks (one forward-backward pass);
        over ``rows`` only when given (not rescaled)."""
        theta = theta.detach()
        grad = torch.zeros_like(theta)
        total = 0.0
        for c, idx in self.chunks(rows):
            th = theta.clone().requires_grad_(True)
            with torch.enable_grad():
                value = self.chunk_loglik(th, c, idx).sum()
                grad += torch.autograd.grad(value, th)[0]
            total += float(value.detach())
        return total, grad

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """Gradient of sum_i log L_i, accumulated over chunks."""
        return self.value_and_gradient(theta)[1]

    def gradient_and_hessian(
        self, theta: torch.Tensor, index: list[int] | None = None, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and Hessian of sum_i log L_i, accumulated over chunks; with ``index``, the
        Hessian block of those entries of theta only (the others held fixed); with ``rows``,
        both from that subsample of individuals, scaled by N / len(rows) (N: the pass's
        individuals)."""
        theta = theta.detach()
        p = theta.shape[0]
        rows_of = list(range(p)) if index is None else list(index)
        m = len(rows_of)
        grad = torch.zeros(p, dtype=theta.dtype, device=theta.device)
        hess = torch.zeros(m, m, dtype=theta.dtype, device=theta.device)
        batched = integrates(self.program.model)
        for c, idx in self.chunks(rows):
            th = theta.clone().requires_grad_(True)
            with torch.enable_grad():
                value = self.chunk_loglik(th, c, idx).sum()
                (g,) = torch.autograd.grad(value, th, create_graph=True)
                block = _batched_rows(g, th, rows_of) if batched else None
                if block is None:
                    lines = [
                        torch.autograd.grad(g[j], th, retain_graph=k < m - 1)[0]
                        for k, j in enumerate(rows_of)
                    ]
                    block = torch.stack(lines)
            grad += g.detach()
            block = block.detach()
            hess += block if index is None else block[:, rows_of]
        if rows is not None:
            n = self.program.n_individuals if self.individuals is None else self.individuals.shape[0]
            scale = n / rows.shape[0]
            grad, hess = grad * scale, hess * scale
        return grad, 0.5 * (hess + hess.T)

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """d^2/dtheta^2 of sum_i log L_i at theta (observed information = minus this)."""
        return self.gradient_and_hessian(theta)[1]

    def evaluate(self, theta: torch.Tensor) -> ISResult:
        """log L_i with Monte Carlo variances, and conditional moments of psi (self-normalized).

        The log of the mean weight underestimates log L_i (Jensen), by about Var(mean w) /
        (2 mean^2) per individual. No correction is added: estimated from the same draws, it
        over-corrects with the t4 proposals' heavy-tailed weights (benchmarks/results/)."""
        out = {k: [] for k in ("ll", "var", "pm", "ps", "em", "cp")}
        program = self.program
        law = program.law
        classes = hasattr(law, "responsibilities")
        with torch.no_grad():
            for c, idx in self.chunks():
                log_w, eta = self.chunk_log_weights(theta, c, idx)
                K = self.n_samples
                ll = torch.logsumexp(log_w, 0) - math.log(K)
                w = torch.exp(log_w - ll)  # weights relative to their mean
                out["ll"].append(ll)
                # var(log mean w) ~ var(w) / (K mean^2); antithetic pairs are the independent units
                half = K // 2
                pairs = 0.5 * (w[:half] + w[half : 2 * half]) if half > 1 else w
                if self.quadrature or K == 1:  # deterministic (K = 1: nothing to integrate)
                    out["var"].append(torch.zeros_like(ll))
                else:
                    out["var"].append(pairs.var(0, unbiased=True) / pairs.shape[0])
                wn = torch.softmax(log_w, 0).unsqueeze(-1)
                psi = program.psi(program.individual_phi(theta, eta, idx))
                mean = (wn * psi).sum(0)
                out["pm"].append(mean)
                out["ps"].append(((wn * (psi - mean) ** 2).sum(0)).sqrt())
                out["em"].append((wn * eta).sum(0))
                if classes:
                    context = program.context[idx] if law.conditional else None
                    resp = law.responsibilities(
                        program.omega_tril(theta), theta[program.layout.law], eta, context
                    )
                    out["cp"].append((wn * resp).sum(0))
        cat = {k: torch.cat(v) for k, v in out.items() if v}
        return ISResult(cat["ll"], cat["var"], cat["pm"], cat["ps"], cat["em"], cat.get("cp"))
