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

The two strategies differ only in :meth:`ImportanceSampler.draws` (points and log-weights), the
Monte Carlo variance (0 for quadrature) and the Newton metric; the rest is shared (marginal.py
chooses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from pymixnn.inference import proposals
from pymixnn.inference.hessians import autograd_hessian, difference_hessian, louis_applies, louis_hessian
from pymixnn.inference.is_result import ISResult
from pymixnn.inference.newton import MaximizeResult, newton_maximize
from pymixnn.inference.offsets import offset_expectation
from pymixnn.inference.program import Program, integrates
from pymixnn.inference.proposals import quadrature_rule, scale_draws, standard_t_draws

__all__ = ["ImportanceSampler", "ISResult", "MaximizeResult"]

# draws per individual for the Newton steps' Hessian (a metric only: see _newton_hessian)
METRIC_DRAWS = 20
# nodes per dimension of that metric's quadrature rule for a model solved by an ODE solver, where
# a node costs a whole solve differentiated twice (Michaelis-Menten, 1,000 individuals: 84 s per
# Hessian with the 7 x 7 rule, 17 s with 3 x 3)
ODE_METRIC_NODES = 3
# and for a closed-form model (the rule of METRIC_DRAWS' size: 5 x 5 against 20 draws; Phenobarb
# with its 15 x 15 rule, before Louis' metric below: the refinement 2.0 -> 1.1 s, 35 passes
# instead of 26, the same estimates to 5 digits)
METRIC_NODES = 5
# importance draws, up to METRIC_RULE_DIM random effects, Louis' identity applying: the metric
# by it on a METRIC_RULE_NODES^d rule (theophylline: 18 ms instead of the differences' 54; the
# logistic simulation, N = 100: 23 instead of 44; the same passes, estimates to 1e-5)
METRIC_RULE_NODES = 3
METRIC_RULE_DIM = 3
# cells (draws x observation slots) per chunk for such a model: its autograd graph holds every
# solver step (Michaelis-Menten, 1,000 individuals x 49 nodes x 10 observations in one chunk:
# 9.7 GB for the Hessian, and the fit was killed for memory on a 24 GB machine; 100,000 cells
# keep a chunk near 2 GB)
ODE_CHUNK_CELLS = 100_000
# cells (draws x individuals x observation slots) of one evaluation of the log-density: a
# chunk's draws go through it in slices of this size (ll.is of the logistic simulation, N = 100,
# 5,000 draws: 0.25 s in one 4-million-cell piece, 0.14 s in 250,000-cell slices; 32 MB arrays
# are read from memory at each operation, 2 MB ones from the cache)
SLICE_CELLS = 250_000
# standardized draws (entries) a sampler keeps between passes (the refinement's and the Fisher
# information's passes reuse them): generating them was 10% of a pass (logistic simulation,
# N = 1,000, 50 draws); 32 MB per sampler (with 20 million, 160 MB, the fit of 10^6
# individuals peaked at 4.45 GB instead of 4.07)
DRAW_CACHE_CELLS = 4_000_000
# that limit for the refinement's samplers (refine.refine_newton), whose rounds take several
# passes each: all draws of 10^6 individuals x 20 draws x 3 random effects (~680 MB with their
# log-densities): generating them was ~2 s of each 19 s pass; the fit's peak 2.39 -> 2.64 GB
REFINE_DRAW_CACHE_CELLS = 64_000_000
# largest scale factor w = sqrt(nu / chi2) of a t draw for such a model (the proposal is then the
# t law with w clipped, its density exact: proposals.t_draws): the solver steps a
# batch together, and a draw 10 Laplace SDs out (w ~ 4, 0.7% of t4 draws) gives parameters
# where the whole batch's solve is stiff (turnover PK/PD, 100 individuals x 100 draws: 18,714
# right-hand-side evaluations and 12 s per pass, 4,674 and 2.8 s clipped at 1.5; in the
# refinement a pass took 70 s); beyond the clip the tails are those of N(m, 1.5^2 S)
ODE_MAX_T_SCALE = 1.5


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
        # with n in the thousands its relative error is ~1/sqrt(n) (see hessian_rows); with
        # ``individuals``, a subsample of those
        n = program.n_individuals if individuals is None else int(individuals.shape[0])
        self.hessian_rows = None
        if hessian_individuals is not None and hessian_individuals < n:
            gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
            pick = torch.randperm(n, generator=gen)[: int(hessian_individuals)].sort().values
            self.hessian_rows = (
                pick.to(program.device) if individuals is None else individuals[pick.to(individuals.device)]
            )
        self.set_posteriors(loc, scale_tril)
        self.seed = int(seed)
        self._metric: ImportanceSampler | None = None  # fewer draws for the Newton metric
        # chunk -> its standardized t draws (standard_t_draws), up to ``cache_cells`` entries
        self._draw_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # a data-parallel fit: chunk -> (its width, first and last column of this process's rows)
        self._columns: dict[int, tuple[int, int, int]] = {}
        self._cached_cells, self.cache_cells = 0, DRAW_CACHE_CELLS
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
        self.moving_centre = True  # False: the stored modes are the centres (see ``centre``)
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
        shard = self.program.shard
        subsample = rows if rows is not None else self.individuals
        parts = (
            shard.chunks_of(subsample, self.chunk, 1_000_000 if rows is not None else 0)
            if subsample is not None
            else ((c, torch.arange(lo, hi, device=self.program.device), cols)
                  for c, lo, hi, cols in shard.chunks(self.program.n_individuals, self.chunk))
        )  # fmt: skip
        for c, idx, columns in parts:
            if columns is not None:  # a data-parallel fit: this process's rows of chunk c
                self._columns[c] = columns
            yield c, idx

    def centre(self, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Proposal centre m_i(theta): one Newton step from the stored mode (differentiable in
        theta); the stored mode itself when the sampler is re-centred after every step, or when
        ``moving_centre`` is off (refine.refine_lbfgs)."""
        m0 = self.loc[idx]
        if self.recentre is not None or not self.moving_centre:
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
            std = self._draw_cache.get(-1)  # the rule's nodes for B individuals, every chunk
            if std is None or std[0].shape[1] != idx.shape[0]:
                std = proposals.standard_quadrature_draws(self.nodes, self.log_node_weights, idx.shape[0])
                self._draw_cache[-1] = std
            return scale_draws(std, L)
        width, a, b = self._columns.get(c, (idx.shape[0], 0, idx.shape[0]))
        std = self._draw_cache.get(c)
        if std is None or std[0].shape[1] != idx.shape[0]:
            gen = torch.Generator(device=self.program.device).manual_seed(self.seed * 1_000_003 + c)
            std = standard_t_draws(gen, self.n_samples, width, L.shape[-1], L.dtype, L.device, self.max_scale)
            if width != idx.shape[0]:  # this process's columns of the chunk's draws
                std = (std[0][:, a:b].contiguous(), std[1][:, a:b].contiguous())
            if self._cached_cells + std[0].numel() <= self.cache_cells:
                self._draw_cache[c] = std
                self._cached_cells += std[0].numel()
        return scale_draws(std, L)

    def chunk_log_weights(self, theta: torch.Tensor, c: int, idx: torch.Tensor):
        """log p(y, eta_k | theta) - log q(eta_k), (K, B), and the draws eta_k."""
        offset, log_q = self.draws(c, idx)
        centre = self.centre(theta, idx)
        log_w = self._log_joint(theta, centre + offset, idx) - log_q
        bad = ~torch.isfinite(log_w.detach())
        if bool(bad.any()):
            # far tail draws where the structural model overflows get weight 0; recompute with
            # those draws at the centre so that no NaN enters the gradient
            offset = torch.where(bad.unsqueeze(-1), torch.zeros_like(offset), offset)
            log_w = self._log_joint(theta, centre + offset, idx) - log_q
            log_w = torch.where(bad, torch.full_like(log_w, -math.inf), log_w)
        return log_w, centre + offset

    def _log_joint(self, theta: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """log p(y, eta_k | theta) (K, B) of a chunk's draws, for a closed-form model in slices
        of draws of about ``SLICE_CELLS`` cells: the same numbers, each operation on an array
        that stays in the CPU's cache (an ODE model's solver steps all draws together)."""
        cells = eta.shape[1] * self.program.x.shape[1]
        size = max(1, SLICE_CELLS // max(cells, 1))
        if size >= eta.shape[0] or integrates(self.program.model):
            return self.program.log_joint(theta, eta, idx)
        return torch.cat([self.program.log_joint(theta, part, idx) for part in eta.split(size)])

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
            value = float(sum(self.chunk_loglik(theta, c, idx).sum() for c, idx in self.chunks(rows)))
        return self.program.comm.sum_float(value)

    def maximize(
        self, theta: torch.Tensor, *, max_iter: int = 50, tol: float = 1e-7, decrement_tol: float = 1e-4
    ) -> tuple[torch.Tensor, float]:
        """(theta, value) of :meth:`maximize_report`."""
        out = self.maximize_report(theta, max_iter=max_iter, tol=tol, decrement_tol=decrement_tol)
        return out.theta, out.value

    def maximize_report(
        self,
        theta: torch.Tensor,
        *,
        max_iter: int = 50,
        tol: float = 1e-7,
        decrement_tol: float = 1e-4,
        hessian: torch.Tensor | None = None,
        predict: bool = False,
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
        that last step is taken without a pass, the value updated by its predicted gain (with
        ``predict``, also when the next decrement, predicted from the last two, is below it:
        newton.PREDICTED_STOP_MIN).
        For a model solved by an ODE solver a step moves no entry of theta by more than
        ``newton.ODE_MAX_STEP`` (the decrement is that of the full step).
        Returns the end point, whether non-finite derivatives stopped the steps (the last finite
        point is kept), how many full steps backtracking rejected and how many were shortened.
        ``hessian``: the first metric (an earlier round's), instead of a new one at theta."""
        kw = dict(max_iter=max_iter, tol=tol, decrement_tol=decrement_tol, hessian=hessian)
        return newton_maximize(self, theta, predict=predict, **kw)

    def _newton_hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """The Hessian for a Newton step: with at most ``METRIC_DRAWS`` draws per individual
        (and, large N, from the subsample ``hessian_rows``). It is only the steps' metric: the
        full-data gradient still fixes the maximum, backtracking guards the steps, and a less
        exact metric costs a slower (linear) contraction, not another answer (the logistic
        simulation, N = 100: the refinement's 1,000-draw Hessians took 3.2 of its 4.5 s, with 20
        draws it took 1.2 s, the same estimates to 6 digits). A quadrature rule shrinks likewise,
        to ``METRIC_NODES`` (``ODE_METRIC_NODES``) nodes per dimension. The metric comes from
        differences of the gradient (:meth:`difference_hessian`: a row of the double backward
        pass costs ~2.5 gradient passes, N = 1,000), or, on a quadrature rule
        where Louis' identity applies (hessians.louis_applies), from the whole rule by Louis'
        identity: the quadrature likelihood's exact Hessian, with no derivative of the
        structural model (Phenobarb: 8 passes of the refinement instead of 35, 1.1 -> 0.74 s).
        On the draws themselves Louis' metric is noisier than differences (the logistic
        simulation, N = 100: 5 renewals of the metric instead of 1): with importance draws it
        is taken on a small rule instead (METRIC_RULE_NODES), else from differences."""
        ode = integrates(self.program.model)
        louis = louis_applies(self.program)
        coarse: dict[str, int] | None = None
        if self.quadrature and louis:
            return louis_hessian(self, theta, None, self.hessian_rows)[1]
        if self.quadrature:
            nodes = ODE_METRIC_NODES if ode else METRIC_NODES
            if self.quadrature > nodes:
                coarse = dict(n_samples=1, quadrature=nodes)
        elif louis and self.loc.shape[-1] <= METRIC_RULE_DIM:
            coarse = dict(n_samples=1, quadrature=METRIC_RULE_NODES)
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
        if sampler.quadrature and louis:
            return louis_hessian(sampler, theta, None, self.hessian_rows)[1]
        return sampler.difference_hessian(theta, self.hessian_rows)[1]

    def difference_hessian(
        self,
        theta: torch.Tensor,
        rows: torch.Tensor | None,
        *,
        index: list[int] | None = None,
        central: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and Hessian of sum_i log L_i, the Hessian by differences of the gradient
        (hessians.difference_hessian: the Newton metric and the Fisher information)."""
        return difference_hessian(self, theta, rows, index=index, central=central)

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
        comm = self.program.comm
        return comm.sum_float(total), comm.sum(grad)[0]

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """Gradient of sum_i log L_i, accumulated over chunks."""
        return self.value_and_gradient(theta)[1]

    def gradient_and_hessian(
        self, theta: torch.Tensor, index: list[int] | None = None, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and Hessian of sum_i log L_i by autograd's double backward pass
        (hessians.autograd_hessian: a closed-form model's observed Fisher information)."""
        return autograd_hessian(self, theta, index, rows)

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
