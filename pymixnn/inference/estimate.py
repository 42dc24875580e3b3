"""Estimation pipeline: start values -> Laplace-EM warm-up -> minibatch SVI -> refinement -> SEs, ll.is.

1. Start: fixed effects from the given start values (the user's init over the model's init and
   self-start) and, when they differ, from the self-start alone, each refined by pooled least
   squares (no random effects); the better pooled fit is kept (``_best_start``); Omega and residual error from a few Laplace-EM iterations on a subsample (closed-form
   M-steps), so SVI starts in the right region whatever the scale of the parameters.
2. Minibatch SVI (svi.py) maximizes the ELBO in theta; local posteriors by Newton-type updates.
3. Refinement (``refine=True``): the importance-weighted ELBO with K fixed t-draws per individual
   (common random numbers; K -> inf gives log L) is maximized by Newton steps, after re-centering
   the local posteriors; repeated until theta stops moving. This removes the SGD noise and the bias of
   the Gaussian variational family, so estimates match maximum likelihood (saemix, MixedLM).
4. Observed Fisher information: minus the Hessian of the same importance-sampling log-likelihood;
   standard errors of reported parameters by the delta method; ll.is with fresh draws and its
   Monte Carlo standard error.

Non-Gaussian random-effect laws (random_effects.py, laws.py) start from the Gaussian fit (steps
1-3): a mixture from EM on draws of the individual posteriors, a flow from the identity fitted on
cached importance draws with its penalty chosen by cross-validation (deconvolution.py); then
minibatch SVI with the law (skipped for a flow when one batch holds every individual and the
cached draws covered them all), refinement (Newton for a mixture, L-BFGS over a flow's many
parameters), and step 4 (for a flow, the Hessian over mu, beta, omega and error only).
"""
from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from pymixnn.model.covariates import CovariateDesign
from pymixnn.data.table import Data
from pymixnn.inference.deconvolution import apply_law_fit, cache_draws, choose_penalty, fit_law
from pymixnn.inference.deconvolution import _pack as pack_law
from pymixnn.inference.genomic import GenomicBlock, GenomicSetup
from pymixnn.inference.importance import ImportanceSampler
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.laws import FlowLaw, GaussianLaw, MixtureLaw, fit_gaussian_mixture, raw_from_tril
from pymixnn.inference.program import Program, watch_structural_function
from pymixnn.inference.svi import SVIOptions, run_svi
from pymixnn.model.named import Model
from pymixnn.model import transforms as tr
from pymixnn.model.random_effects import Flow, Gaussian, Mixture
from pymixnn.model.random_effects import to_dict as law_to_dict

__all__ = ["EstimationOptions", "Estimation", "estimate", "resolve_device"]


@dataclass
class EstimationOptions:
    seed: int = 0
    device: str = "cpu"
    dtype: str | None = None
    threads: int | None = None
    svi: SVIOptions = field(default_factory=SVIOptions)
    refine: bool = True
    refine_rounds: int = 5
    refine_tol: float = 0.01
    is_samples: int | None = None
    warmup_iter: int = 10
    warmup_individuals: int = 2000
    # marginal likelihood: "is" (importance sampling, saemix's ll.is), "gq" (adaptive
    # Gauss-Hermite quadrature, saemix's ll.gq / lme4's nAGQ) or "auto" (gq for one or two random
    # effects when the Q^d nodes x observations stay below 2e7, else is)
    likelihood: str = "auto"
    # large N: second derivatives from a fixed random subsample of individuals (the information
    # is additive over individuals): the refinement's Newton metric from ``newton_individuals``
    # (the full-data gradient still fixes the maximum), the observed Fisher information from
    # ``fisher_individuals`` scaled by N/n (relative error of an SE ~ 1/sqrt(n)); None: all
    newton_individuals: int | None = 5_000
    fisher_individuals: int | None = 10_000
    # the refinement's safeguard (SVI end point against the Laplace-EM start) compares the two
    # on this many individuals at most
    score_individuals: int = 5_000
    # beyond ``large_n`` individuals (Gaussian law, no genomic block) SVI stops after
    # ``large_n_svi_steps`` steps: it only has to bring theta into the basin of the
    # refinement, which then does the work in a few full-data Newton passes. Longer SVI does
    # not pay there (logistic, N = 10^5: 450 steps left theta as far from the maximum, a
    # Newton decrement of 1307, as 100 steps did, 1612); None: no cap
    large_n: int = 5_000
    large_n_svi_steps: int | None = 100
    # variational (natural-gradient) steps after the Laplace mode when the proposals of the
    # refinement, the Fisher information and ll.is are re-centred; None: 2 up to ``large_n``
    # individuals, else 0 (Laplace proposals, as the importance sampler only needs a good
    # proposal: at N = 10^4 both gave estimates within 0.002 SE, and the steps cost 6x the mode)
    proposal_vi_iter: int | None = None


# nodes per dimension of the adaptive Gauss-Hermite rule by number of random effects
QUADRATURE_NODES = {1: 25, 2: 15, 3: 7}


def quadrature_nodes(n_random: int, n_obs: int, likelihood: str) -> int:
    """Nodes per dimension for adaptive quadrature, 0 for importance sampling."""
    if likelihood == "is" or n_random not in QUADRATURE_NODES:
        return 0
    q = QUADRATURE_NODES[n_random]
    if likelihood == "gq":
        return q
    return q if n_random <= 2 and n_obs * q**n_random <= 20_000_000 else 0


def _proposal_vi(options: EstimationOptions, n: int) -> int:
    if options.proposal_vi_iter is not None:
        return int(options.proposal_vi_iter)
    return 2 if n <= options.large_n else 0


def _sampler(program: Program, local: LocalPosteriors, n_samples: int, seed: int,
             options: EstimationOptions, hessian_individuals: int | None = None
             ) -> ImportanceSampler:
    """Importance sampler, or adaptive quadrature when ``options.likelihood`` asks for it."""
    q = quadrature_nodes(program.layout.n_random, program.n_obs, options.likelihood)
    return ImportanceSampler(program, local.loc, local.scale_tril, n_samples=n_samples, seed=seed,
                             quadrature=q, hessian_individuals=hessian_individuals)


@dataclass
class Estimation:
    """Plain numpy output of the inference layer (no torch object leaves it)."""

    table: list[dict]  # reported parameters: name, kind, parameter, estimate, se, est_t, se_t, scale
    theta: np.ndarray
    theta_cov: np.ndarray
    mu: np.ndarray  # (P,) transformed scale
    beta: np.ndarray
    omega: np.ndarray  # (d, d)
    error: dict[str, float]
    eta_map: np.ndarray  # (N, d)
    eta_map_cov: np.ndarray  # (N, d, d)
    eta_mean: np.ndarray  # (N, d) conditional mean
    psi_mean: np.ndarray  # (N, P)
    psi_sd: np.ndarray  # (N, P)
    loglik: float
    loglik_se: float
    loglik_individual: np.ndarray
    is_samples: int
    is_samples_fisher: int
    elbo_trace: np.ndarray
    steps: int
    converged: bool
    refine_rounds: int
    seconds: dict[str, float]
    device: str
    dtype: str
    threads: int
    se_method: str
    warnings: list[str]
    # the random-effects law: spec, seed, positions in theta, E[eta] moved into mu ("shift"),
    # mixture responsibilities, and for n_components="auto" the candidates' table
    law: dict = field(default_factory=dict)
    # "is" (importance sampling) or "gq" (adaptive Gauss-Hermite quadrature with
    # ``quadrature_nodes`` nodes per random effect; is_samples is then the nodes per individual)
    loglik_method: str = "is"
    quadrature_nodes: int = 0
    # a genomic fit: the posterior of the marker effects (inference/genomic.py, export())
    genomic: dict | None = None
    # covariance matrix of the reported parameters (``table`` order, natural scale): the inverse
    # observed Fisher information carried through the delta method; None where not computed
    cov_params: np.ndarray | None = None
    # convergence evidence at the estimates (see pymixnn/diagnostics.py): Newton decrement,
    # gradient in SE units, eigenvalues of the observed information, the start values tried
    diagnostics: dict | None = None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch finds no CUDA device; use 'cpu' or 'auto'")
    return torch.device(device)


@contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _initial_theta(program: Program, model: Model, init: dict[str, float]) -> torch.Tensor:
    """theta with mu from ``init``, beta 0, Omega = diag(0.3^2) scaled, error from pooled fit."""
    lay = program.layout
    theta = torch.zeros(lay.size, dtype=program.dtype, device=program.device)
    for p, name in enumerate(program.params):
        theta[p] = float(tr.inverse(program.transforms[p], torch.tensor(init[name], dtype=torch.float64)))
    d = lay.n_random
    sd = []
    for j, p in enumerate(program.random_index):
        mu = float(theta[p])
        sd.append(0.3 if program.transforms[p] != "identity" else max(0.3 * abs(mu), 0.1))
    if lay.full_omega:
        rows, cols = torch.tril_indices(d, d)
        vals = torch.zeros(lay.n_omega, dtype=program.dtype)
        vals[rows == cols] = torch.log(torch.tensor(sd, dtype=program.dtype))
        theta[lay.omega] = vals.to(program.device)
    else:
        theta[lay.omega] = torch.log(torch.tensor(sd, dtype=program.dtype, device=program.device))
    mask = program.mask
    y = program.y[mask].detach().cpu().numpy()
    aux = {k: v[mask].detach().cpu().numpy() for k, v in program.aux.items()}
    raw = program.family.initial_raw(model, y, aux)
    if raw:
        theta[lay.error] = torch.tensor(raw, dtype=program.dtype, device=program.device)
    return theta


def _maximize_block(program: Program, theta: torch.Tensor, block: list[int], eta: torch.Tensor,
                    idx: torch.Tensor | None, *, prior: bool, max_iter: int = 100) -> torch.Tensor:
    """Maximize the log-density over the entries ``block`` of theta with eta fixed (L-BFGS)."""
    free = theta[block].clone().requires_grad_(True)
    opt = torch.optim.LBFGS([free], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective():
        full = theta.index_put((torch.tensor(block, device=theta.device),), free)
        value = program.log_likelihood(full, eta, idx).sum()
        if prior:
            value = value + program.log_prior(full, eta).sum()
        return -value / eta.shape[-2]

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    out = theta.clone()
    if torch.isfinite(free).all():
        out[block] = free.detach()
    return out


def _warmup(program: Program, theta: torch.Tensor, local: LocalPosteriors, idx: torch.Tensor,
            iters: int) -> torch.Tensor:
    """Variational EM on a subsample: local posteriors updated (laplace.py), then closed-form
    updates of mu, beta (parameters with random effects) and Omega, and the error parameters."""
    lay = program.layout
    Z = program.Z[idx]
    error_block = list(range(lay.error.start, lay.error.stop))
    for _ in range(iters):
        local.refresh(theta, idx, max_iter=20)
        m, L = local.loc[idx], local.scale_tril[idx]
        phi = program.phi_population(theta, idx)[:, program.random_index] + m
        resid = torch.empty_like(phi)
        for j, p in enumerate(program.random_index):
            on_p = (program.S[:, p] > 0).nonzero().flatten()
            X = torch.cat([torch.ones_like(phi[:, :1]), Z[:, on_p]], dim=1)
            # normal equations (LAPACK's least-squares drivers are not bit-reproducible here)
            coef = torch.linalg.solve(X.T @ X, X.T @ phi[:, j]).flatten()
            theta[p] = coef[0]
            if on_p.numel():
                theta[lay.beta.start + on_p] = coef[1:]
            resid[:, j] = phi[:, j] - X @ coef
        omega = (resid.T @ resid + (L @ L.transpose(-1, -2)).sum(0)) / idx.shape[0]
        chol = torch.linalg.cholesky(omega + 1e-10 * torch.eye(omega.shape[0], dtype=omega.dtype,
                                                                  device=omega.device))
        if lay.full_omega:
            rows, cols = torch.tril_indices(lay.n_random, lay.n_random)
            raw = chol[rows, cols].clone()
            raw[rows == cols] = torch.log(raw[rows == cols])
            theta[lay.omega] = raw
        else:
            theta[lay.omega] = torch.log(torch.sqrt(torch.diagonal(omega)))
        if error_block:
            theta = _maximize_block(program, theta, error_block, local.loc[idx], idx, prior=False,
                                    max_iter=20)
    return theta


def _best_start(program: Program, model: Model, init, idx: torch.Tensor):
    """theta after the pooled fit from each candidate start (``init``: one dict of start values,
    or a list of (label, dict), the given one first); keeps the one with the highest pooled
    log-likelihood (random effects at zero), the given one unless another beats it by more than
    0.5 (a difference of optimizer tolerance is no reason to leave the user's start). Returns
    theta and one record per start, the kept one first."""
    candidates = [("given", init)] if isinstance(init, dict) else list(init)
    eta0 = torch.zeros(idx.shape[0], program.layout.n_random, dtype=program.dtype, device=program.device)
    records, thetas = [], []
    for label, values in candidates:
        theta = _pooled_start(program, _initial_theta(program, model, values), idx)
        with torch.no_grad():
            score = float(program.log_likelihood(theta, eta0, idx).sum())
        thetas.append(theta)
        records.append(dict(start=label, pooled_loglik=score if math.isfinite(score) else -math.inf,
                            values={k: float(v) for k, v in values.items()}))
    best = 0
    for k in range(1, len(records)):
        if records[k]["pooled_loglik"] > records[best]["pooled_loglik"] + 0.5:
            best = k
    order = [best] + [k for k in range(len(records)) if k != best]
    return thetas[best], [records[k] for k in order]


def _pooled_start(program: Program, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Fixed effects and residual error by pooled maximum likelihood (random effects at zero)."""
    lay = program.layout
    block = list(range(lay.mu.start, lay.mu.stop)) + list(range(lay.error.start, lay.error.stop))
    eta0 = torch.zeros(idx.shape[0], lay.n_random, dtype=program.dtype, device=program.device)
    return _maximize_block(program, theta, block, eta0, idx, prior=False)


class _Rows:
    """Names, kinds, parameters and CI scales of the reported parameters, built block by block."""

    def __init__(self):
        self.names, self.kinds, self.params, self.scales = [], [], [], []

    def add(self, name, kind, param, scale):
        self.names.append(name), self.kinds.append(kind), self.params.append(param)
        self.scales.append(scale)

    def fixed(self, program: Program, design: CovariateDesign):
        for p, name in enumerate(program.params):
            self.add(name, "fixed", name, program.transforms[p])
            for j, target in enumerate(design.parameters):
                if target == name:
                    self.add(design.names[j], "beta", name, "identity")

    def omega(self, rand: list[str], full: bool, tag: str = ""):
        for name in rand:
            self.add(f"omega2.{tag}{name}", "omega", name, "log")
        if full:
            for a in range(len(rand)):
                for b in range(a):
                    self.add(f"cov.{tag}{rand[b]}.{rand[a]}", "omega", f"{rand[b]}.{rand[a]}", "identity")

    def error(self, names, scales):
        for name, scale in zip(names, scales):
            self.add(name, "sigma", name, scale)

    def result(self, values):
        return self.names, self.kinds, self.params, self.scales, values


def _fixed_values(program: Program, design: CovariateDesign, theta: torch.Tensor, shift=None) -> list:
    """h(mu + shift) per parameter, each followed by its covariate effects."""
    out = []
    mu, beta = program.mu_uncentred(theta), theta[program.layout.beta]
    for p in range(program.layout.n_params):
        out.append(tr.forward(program.transforms[p], mu[p] if shift is None else mu[p] + shift[p]))
        for j, target in enumerate(design.parameters):
            if target == program.params[p]:
                out.append(beta[j])
    return out


def _omega_values(omega: torch.Tensor, full: bool) -> list:
    out = list(torch.diagonal(omega))
    if full:
        for a in range(omega.shape[0]):
            for b in range(a):
                out.append(omega[a, b])
    return out


def reported_parameters(program: Program, design: CovariateDesign):
    """Names, kinds and the map theta -> reported values (natural-scale fixed effects, omega2...)."""
    lay = program.layout
    rows = _Rows()
    rows.fixed(program, design)
    rows.omega([program.params[p] for p in program.random_index], lay.full_omega)
    rows.error(lay.error_names, program.family.parameter_scales(program.model))

    def values(theta: torch.Tensor) -> torch.Tensor:
        L = program.omega_tril(theta)
        out = _fixed_values(program, design, theta) + _omega_values(L @ L.T, lay.full_omega)
        out.extend(program.family.reported(theta[lay.error], program.model))
        return torch.stack(out)

    return rows.result(values)

def _setup(data: Data, options: EstimationOptions):
    device = resolve_device(options.device)
    dtype = {"float32": torch.float32, "float64": torch.float64, None: None}[options.dtype]
    if dtype is None:
        # float64 on the CPU: in float32 the refinement's Newton steps cannot resolve the
        # log-likelihood of 10^5 individuals (~1e6 in size) finely enough (benchmarks: 1.6% bias)
        dtype = torch.float64 if device.type == "cpu" else torch.float32
    threads = options.threads or (1 if data.n_obs < 200_000 else torch.get_num_threads())
    return device, dtype, threads


def _sample_sizes(data: Data, options: EstimationOptions) -> tuple[int, int]:
    # draws per individual: K for ll.is (no gradient, cheap) and K_opt for the refinement and
    # the Fisher information (second-order autograd); with proposals that follow the posterior
    # mode, a few dozen draws already pin the maximum down (logistic simulation, N=1000:
    # K=20, 50 and 500 gave estimates within 0.2 SE of each other)
    # (ll.is: at least 200 draws up to 10^6 observations, then fewer, down to 50 from 4x10^6
    # observations on: the cost of one pass stays bounded)
    floor = int(np.clip(200_000_000 / data.n_obs, 50, 200))
    K = options.is_samples or int(np.clip(5_000_000 / data.n_obs, floor, 5000))
    K_opt = int(min(K, np.clip(1_000_000 / data.n_obs, 20, 1000)))
    return K, K_opt


@dataclass
class _Stage:
    """What one estimation stage hands on: parameters, local posteriors and bookkeeping."""

    program: Program
    theta: torch.Tensor
    local: LocalPosteriors
    trace: object
    rounds: int
    seconds: dict
    warnings: list
    law_info: dict = field(default_factory=dict)
    genomic: dict | None = None  # the genomic block's posterior (GenomicBlock.export)
    starts: list = field(default_factory=list)  # start values tried (_best_start), best first


def _gaussian_stage(model, data, design, init, options, device, dtype, generator,
                    observation=None, genomic: GenomicSetup | None = None) -> _Stage:
    """Start values, Laplace-EM warm-up, SVI and refinement for Gaussian random effects."""
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    warnings: list[str] = []
    program = Program(model, data, design, device=device, dtype=dtype, observation=observation)
    n = program.n_individuals
    sub = torch.randperm(n, generator=generator)[:options.warmup_individuals].sort().values
    sub = sub.to(device)
    theta, starts = _best_start(program, model, init, sub)
    if starts[0]["start"] != "given":
        given = next(r for r in starts if r["start"] == "given")
        warnings.append("start values: the given start reached a pooled log-likelihood of "
                        f"{given['pooled_loglik']:.2f} against {starts[0]['pooled_loglik']:.2f} "
                        f"from the {starts[0]['start']}; the fit started from the {starts[0]['start']}")
    local = LocalPosteriors(program, program.omega_tril(theta))
    theta = _warmup(program, theta, local, sub, options.warmup_iter)
    seconds["start"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    block, groups, callback = None, None, None
    if genomic is not None:
        # the genomic block starts from every individual's posterior at the warm-up's theta
        local.refresh(theta, None, max_iter=20)
        block = GenomicBlock(genomic, program)
        block.update(theta, local)
        groups = torch.as_tensor(genomic.cell_genotype[genomic.individual_cell], dtype=torch.long)
        callback = lambda th: block.update(th, local)  # noqa: E731
    theta_start = theta.clone()
    svi_options = options.svi
    capped = (block is None and n > options.large_n and options.large_n_svi_steps is not None
              and options.refine and options.large_n_svi_steps < svi_options.max_steps)
    if capped:
        steps = int(options.large_n_svi_steps)
        svi_options = dataclasses.replace(svi_options, max_steps=steps,
                                          min_steps=min(svi_options.min_steps, steps))
    theta, trace = run_svi(program, theta, local, svi_options, generator, groups=groups,
                           callback=callback)
    if block is not None:
        # converge the genomic block and the local posteriors at the SVI end point
        for _ in range(20):
            local.refresh(theta, None, max_iter=20)
            if block.update(theta, local) < 1e-3:
                break
        local.refresh(theta, None, max_iter=20)
    seconds["svi"] = time.perf_counter() - t0
    if not trace.converged and not capped:
        warnings.append(f"SVI reached max_steps={options.svi.max_steps} before the ELBO plateau")

    _, K_opt = _sample_sizes(data, options)
    t0 = time.perf_counter()
    rounds = 0
    if options.refine and block is not None:
        # a genomic fit: the Laplace-EM start predates the genotype offsets, so it is no
        # candidate; the local posteriors were just refreshed at the SVI end point
        theta, rounds = _refine_newton(program, theta, local, options, K_opt, True, warnings)
    elif options.refine:
        # safeguard: refine from whichever of the SVI end point and the Laplace-EM start has
        # the higher importance-sampling log-likelihood (should SVI ever wander off)
        # (on a random subsample of individuals when N is large: the two points differ by far
        # more than the subsample's noise when SVI has gone wrong)
        rows = None
        if n > options.score_individuals:
            rows = torch.randperm(n, generator=generator)[:options.score_individuals]
            rows = rows.sort().values.to(device)
        scores = []
        for candidate in (theta_start, theta):  # the SVI end point last: usually kept
            local.refresh(candidate, rows, max_iter=50, vi_iter=_proposal_vi(options, n))
            scores.append(_sampler(program, local, K_opt, options.seed + 1, options)
                          .total(candidate, rows))
        centred = rows is None  # local posteriors were last updated at theta (all of them)
        if not scores[1] >= scores[0]:
            warnings.append(f"SVI lowered the IS log-likelihood ({scores[0]:.2f} -> "
                            f"{scores[1]:.2f}); refinement started from the Laplace-EM start")
            theta, centred = theta_start, False
        theta, rounds = _refine_newton(program, theta, local, options, K_opt, centred, warnings)
    seconds["refine"] = time.perf_counter() - t0
    stage = _Stage(program, theta, local, trace, rounds, seconds, warnings, starts=starts)
    if block is not None:
        t0 = time.perf_counter()
        stage.genomic = block.export()
        seconds["genomic_export"] = time.perf_counter() - t0
    return stage


def _refine_newton(program, theta, local, options, K_opt, centred, warnings=None):
    """Re-centre the proposals at theta, maximize the IS log-likelihood by chord-Newton steps; the
    same draws each round (seed fixed), so only the proposal's centre and scale change. A round
    stopped by non-finite derivatives adds a warning to ``warnings``."""
    bar = tqdm(total=options.refine_rounds, desc="refine", leave=False,
               disable=not options.svi.progress)
    rounds = 0
    for rounds in range(1, options.refine_rounds + 1):
        bar.update(1)
        if not centred:
            local.refresh(theta, None, max_iter=50,
                          vi_iter=_proposal_vi(options, program.n_individuals))
        centred = False
        sampler = _sampler(program, local, K_opt, options.seed + 1, options,
                           options.newton_individuals)
        new_theta, _ = sampler.maximize(theta)
        if sampler.nonfinite_derivatives and warnings is not None:
            warnings.append("refinement stopped early: non-finite derivatives of the marginal "
                            "log-likelihood (an observation model overflowing far in a tail); "
                            "estimates are from the SVI stage")
        move = float((new_theta - theta).abs().max())
        theta = new_theta
        if move < options.refine_tol:
            break
    bar.close()
    return theta, rounds


def _refine_lbfgs(program, theta, local, options, K_opt, *, max_iter: int = 60, max_rounds: int = 3):
    """Flows: theta is long, so the penalized IS log-likelihood is maximized by L-BFGS (gradient
    only) after each re-centring of the proposals."""
    n_rounds = min(options.refine_rounds, max_rounds)
    bar = tqdm(total=n_rounds, desc="refine (flow)", leave=False, disable=not options.svi.progress)
    rounds = 0
    for rounds in range(1, n_rounds + 1):
        bar.update(1)
        local.refresh(theta, None, max_iter=50)
        sampler = _sampler(program, local, K_opt, options.seed + 1, options)
        free = theta.detach().clone().requires_grad_(True)
        opt = torch.optim.LBFGS([free], lr=1.0, max_iter=max_iter, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_change=1e-10)
        scale = 1.0 / program.n_individuals

        def closure():
            opt.zero_grad()
            total = torch.zeros((), dtype=theta.dtype, device=theta.device)
            with torch.enable_grad():
                for c, idx in sampler.chunks():
                    value = -(sampler.chunk_loglik(free, c, idx).sum()) * scale
                    value.backward()
                    total = total + value.detach()
                pen = program.law_penalty(free) * scale
                pen.backward()
            if free.grad is not None:
                free.grad = torch.nan_to_num(free.grad, nan=0.0, posinf=0.0, neginf=0.0)
            return total + pen.detach()

        before = float(closure())
        opt.step(closure)
        after = float(closure())
        new_theta = free.detach()
        if not (math.isfinite(after) and after <= before):
            break
        move = float((new_theta - theta).abs().max())
        theta = new_theta
        if move < options.refine_tol or before - after < 1e-4 * scale:
            break
    bar.close()
    return theta, rounds


def _law_stage(gauss: _Stage, model, data, design, law, context, options, device, dtype,
               generator) -> _Stage:
    """Start the law from the Gaussian fit (a flow at the identity, a mixture from EM on draws of
    the local posteriors), then minibatch SVI and refinement with that law."""
    t_start = time.perf_counter()
    seconds = {k: v for k, v in gauss.seconds.items()}
    warnings = list(gauss.warnings)
    program = Program(model, data, design, device=device, dtype=dtype, law=law, context=context,
                      seed=options.seed, observation=gauss.program.family)
    # a genomic fit's offsets, held fixed (their uncertainty's Omega correction is for the
    # Gaussian law only: with a mixture or flow, estimates are conditional on the offsets' mean)
    program.offset = gauss.program.offset
    lay = program.layout
    theta = torch.zeros(lay.size, dtype=dtype, device=device)
    theta[lay.core] = gauss.theta
    local = LocalPosteriors(program, gauss.program.omega_tril(gauss.theta))
    local.loc, local.scale_tril = gauss.local.loc.clone(), gauss.local.scale_tril.clone()
    local.visited[:] = True
    if isinstance(law, Mixture):
        draws = (local.loc + (local.scale_tril @ torch.randn(
            20, *local.loc.shape, 1, generator=generator, dtype=dtype).to(device)).squeeze(-1))
        w, means, cov = fit_gaussian_mixture(draws.reshape(-1, lay.n_random), program.law.K,
                                             generator, shared=law.shared_omega)
        order = torch.argsort(-w)  # component 1 (the base scale) is the largest
        w, means, cov = w[order], means[order], cov[order]
        centre = (w.unsqueeze(-1) * means).sum(0)
        theta[program.random_index] = theta[program.random_index] + centre
        C0 = cov[0]
        if not lay.full_omega:
            C0 = torch.diag(torch.diagonal(C0))
        theta[lay.omega] = raw_from_tril(torch.linalg.cholesky(C0), lay.full_omega)
        theta[lay.law] = program.law.initial_raw_from(program.omega_tril(theta), w, means - centre, cov)
    else:
        theta[lay.law] = program.law.initial_raw(dtype, device)
    law_info: dict = {}
    if isinstance(law, Flow):
        # the flow's start: fitted on cached importance draws of the Gaussian fit (deconvolution.py),
        # with its ridge weight chosen by cross-validation over individuals unless given
        seed = options.seed + 7
        if law.penalty == "cv":
            best, table, x = choose_penalty(program, theta, local, grid=law.penalty_grid,
                                            folds=law.cv_folds, seed=seed)
            program.law.penalty_weight = best
            law_info.update(penalty=best, penalty_cv=table)
        else:
            gen = torch.Generator().manual_seed(seed)
            rows = torch.randperm(program.n_individuals, generator=gen)[:2000].sort().values
            cache = cache_draws(program, theta, local, n_samples=100, seed=seed, rows=rows.to(device))
            x = fit_law(program, pack_law(program, theta), cache,
                        torch.arange(rows.shape[0], device=device), float(law.penalty))
            law_info.update(penalty=float(law.penalty))
        theta = apply_law_fit(program, theta, local, x)
    seconds["law_start"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    # minibatch SVI with the law: the Gaussian stage has placed theta and the local posteriors,
    # so it only has to shape the law and runs shorter. A flow already fitted on the cached
    # draws of every individual (N <= 2,000) skips it when the whole data set fits in one batch:
    # the importance-weighted refinement below then finishes the job
    trace = gauss.trace
    if not (isinstance(law, Flow) and program.n_individuals <= 2000
            and options.svi.batch_size >= program.n_individuals):
        law_svi = dataclasses.replace(options.svi, max_steps=min(options.svi.max_steps, 400),
                                      min_steps=min(options.svi.min_steps, 100))
        theta, trace = run_svi(program, theta, local, law_svi, generator)
        if not trace.converged:
            warnings.append(f"SVI ({law.name} law) reached max_steps={law_svi.max_steps} before "
                            "the ELBO plateau")
    seconds["svi_law"] = time.perf_counter() - t0
    _, K_opt = _sample_sizes(data, options)
    t0 = time.perf_counter()
    rounds = 0
    if options.refine:
        if isinstance(law, Flow):
            # L-BFGS over the flow's many parameters: fewer draws per individual than the
            # Newton refinement (the proposals follow the posterior mode, so 64 suffice)
            theta, rounds = _refine_lbfgs(program, theta, local, options, min(K_opt, 64))
        else:
            theta, rounds = _refine_newton(program, theta, local, options, K_opt, centred=False,
                                           warnings=warnings)
    seconds["refine_law"] = time.perf_counter() - t0
    return _Stage(program, theta, local, trace, rounds, seconds, warnings, law_info, gauss.genomic,
                  starts=gauss.starts)


def _law_moments(program: Program, theta: torch.Tensor, n: int, seed: int):
    """E[eta] and Var[eta] under the fitted law (closed form, or a fixed Monte Carlo sample for a
    flow: differentiable in theta for the delta method)."""
    lay = program.layout
    L = program.omega_tril(theta)
    law = program.law
    if isinstance(law, MixtureLaw):
        w, means, trils = law.components(L, theta[lay.law])
        covs = trils @ trils.transpose(-1, -2)
        mean = (w.unsqueeze(-1) * means).sum(0)
        second = (w.view(-1, 1, 1) * (covs + means.unsqueeze(-1) * means.unsqueeze(-2))).sum(0)
        return mean, second - mean.unsqueeze(-1) * mean.unsqueeze(-2)
    if isinstance(law, FlowLaw):
        gen = torch.Generator().manual_seed(seed)
        u = torch.randn(n // 2, lay.n_random, generator=gen, dtype=theta.dtype).to(theta.device)
        u = torch.cat([u, -u])
        context = None
        if law.conditional:
            rows = torch.randint(program.n_individuals, (u.shape[0],), generator=gen).to(theta.device)
            context = program.context[rows]
        eta = law.transform(theta[lay.law], u, context) @ L.T
        mean = eta.mean(0)
        centred = eta - mean
        return mean, centred.T @ centred / (eta.shape[0] - 1)
    return torch.zeros(lay.n_random, dtype=theta.dtype, device=theta.device), L @ L.T


def reported_parameters_law(program: Program, design: CovariateDesign, moment_seed: int,
                            n_moment: int = 100_000):
    """Reported parameters for non-Gaussian laws: fixed effects h(E[phi]); for a mixture its
    weights, component means (natural scale) and covariances; for a flow the covariance of eta
    under the fitted law."""
    lay = program.layout
    law = program.law
    rand = [program.params[p] for p in program.random_index]
    rows = _Rows()
    rows.fixed(program, design)
    if isinstance(law, MixtureLaw):
        for k in range(law.K):
            rows.add(f"prob.{k + 1}", "law", f"component {k + 1}", "logit")
        for k in range(law.K):
            for j, name in enumerate(rand):
                rows.add(f"mean.{k + 1}.{name}", "law", name,
                         program.transforms[program.random_index[j]])
        for k in ([None] if law.spec.shared_omega else range(law.K)):
            rows.omega(rand, lay.full_omega, "" if k is None else f"{k + 1}.")
    else:  # flow: moments of eta under the fitted law (a flow couples every pair)
        rows.omega(rand, True)
    rows.error(lay.error_names, program.family.parameter_scales(program.model))

    def values(theta: torch.Tensor) -> torch.Tensor:
        mean, cov = _law_moments(program, theta, n_moment, moment_seed)
        shift = torch.zeros(lay.n_params, dtype=theta.dtype, device=theta.device).index_add(
            0, torch.tensor(program.random_index, device=theta.device), mean)
        out = _fixed_values(program, design, theta, shift)
        if isinstance(law, MixtureLaw):
            mu = program.mu_uncentred(theta)
            w, means, trils = law.components(program.omega_tril(theta), theta[lay.law])
            out.extend(w)
            for k in range(law.K):
                for j, p in enumerate(program.random_index):
                    out.append(tr.forward(program.transforms[p], mu[p] + means[k, j]))
            for k in ([0] if law.spec.shared_omega else range(law.K)):
                out.extend(_omega_values(trils[k] @ trils[k].T, lay.full_omega))
        else:
            out.extend(_omega_values(cov, True))
        out.extend(program.family.reported(theta[lay.error], program.model))
        return torch.stack(out)

    return rows.result(values)

def _finish(stage: _Stage, design: CovariateDesign, data: Data, options: EstimationOptions, *,
            device, dtype, threads, t_start: float, law_record: dict) -> Estimation:
    """Observed Fisher information, ll.is, reported parameters and the numpy Estimation."""
    program, theta, local = stage.program, stage.theta, stage.local
    lay = program.layout
    seconds, warnings = dict(stage.seconds), list(stage.warnings)
    K, K_opt = _sample_sizes(data, options)
    is_flow = isinstance(program.law, FlowLaw)
    t0 = time.perf_counter()
    local.refresh(theta, None, max_iter=50,
                  vi_iter=_proposal_vi(options, program.n_individuals))
    # a flow's own parameters (hundreds) are held fixed: SEs conditional on the law's shape;
    # 64 draws per individual as in its refinement (second derivatives through the flow are costly)
    K_fisher = min(K_opt, 64) if is_flow else K_opt
    sampler = _sampler(program, local, K_fisher, options.seed + 1000, options,
                       options.fisher_individuals)
    K_fisher = sampler.n_samples
    index = list(range(lay.core.stop)) if is_flow else None
    grad, hess = sampler.gradient_and_hessian(theta, index=index, rows=sampler.hessian_rows)
    fisher_n = (program.n_individuals if sampler.hessian_rows is None
                else int(sampler.hessian_rows.shape[0]))
    if sampler.hessian_rows is not None:  # a subsample's gradient, scaled up, is mostly noise
        grad = _full_gradient(sampler, theta)
    info = -hess
    pseudo_inverse = False
    try:
        if not bool(torch.isfinite(info).all()):
            raise RuntimeError
        cov_sub = torch.linalg.inv(info)
        if not bool(torch.all(torch.diagonal(cov_sub) > 0)):
            raise RuntimeError
    except RuntimeError:
        info = torch.nan_to_num(info, nan=0.0, posinf=0.0, neginf=0.0)
        cov_sub = torch.linalg.pinv(info)
        pseudo_inverse = True
        warnings.append("observed Fisher information is not positive definite: some "
                        "parameters are poorly identified; their SEs are unreliable (NaN)")
    diagnostics = _information_diagnostics(info, grad if index is None else grad[index], cov_sub,
                                           pseudo_inverse)
    diagnostics["starts"] = stage.starts
    if index is None:
        cov_theta = cov_sub
    else:
        cov_theta = torch.zeros(lay.size, lay.size, dtype=dtype, device=device)
        ix = torch.tensor(index, device=device)
        cov_theta[ix.unsqueeze(-1), ix] = cov_sub
    seconds["fisher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    final = _sampler(program, local, K, options.seed + 2000, options)
    result = final.evaluate(theta)
    K = final.n_samples
    seconds["loglik"] = time.perf_counter() - t0

    if isinstance(program.law, GaussianLaw):
        names, kinds, params, scales, values = reported_parameters(program, design)
    else:
        names, kinds, params, scales, values = reported_parameters_law(program, design,
                                                                       options.seed + 3000)
    est = values(theta)
    J = torch.autograd.functional.jacobian(values, theta)
    cov_rep = J @ cov_theta @ J.T
    var = torch.diagonal(cov_rep)
    se = torch.where(var > 0, var.clamp_min(0).sqrt(), torch.full_like(var, float("nan")))
    table = []
    for k in range(len(names)):
        e, s = float(est[k]), float(se[k])
        scale = scales[k]
        est_t, se_t = tr.delta_method(scale, e, s)
        table.append(dict(name=names[k], kind=kinds[k], parameter=params[k], estimate=e, se=s,
                          estimate_transformed=est_t, se_transformed=se_t, scale=scale))
    np_ = lambda t: t.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    with torch.no_grad():
        shift, omega = _law_moments(program, theta, 100_000, options.seed + 3000)
    mu = program.mu_uncentred(theta).clone()
    mu[program.random_index] = mu[program.random_index] + shift
    record = dict(law_record)
    record.update(stage.law_info)
    record.update(shift=np_(shift).tolist(), n_theta=int(lay.size), n_law=int(lay.n_law),
                  law_slice=[lay.law.start, lay.law.stop], omega_slice=[lay.omega.start, lay.omega.stop],
                  full_omega=bool(lay.full_omega))
    if program.context is not None:
        record["context"] = np_(program.context).tolist()
    if isinstance(program.law, MixtureLaw):
        with torch.no_grad():
            resp = program.law.responsibilities(program.omega_tril(theta), theta[lay.law],
                                                result.eta_mean)
        record["responsibilities"] = np_(resp).tolist()
    seconds["total"] = time.perf_counter() - t_start
    if final.quadrature:
        se_method = ("observed Fisher information: Hessian of the log-likelihood by adaptive "
                     f"Gauss-Hermite quadrature ({final.quadrature} nodes per random effect, "
                     f"{K_fisher} per individual)")
    else:
        se_method = ("observed Fisher information: Hessian of the importance-sampling "
                     f"log-likelihood (K={K_fisher} t4 draws per individual, common random numbers)")
    if fisher_n < program.n_individuals:
        se_method += (f"; summed over a random subsample of {fisher_n} of the "
                      f"{program.n_individuals} individuals and scaled up (subsampling error of an "
                      f"SE of order 1/(2 sqrt(n)) = {0.5 / math.sqrt(fisher_n):.1%})")
    if is_flow:
        se_method += ("; the flow's own parameters held fixed (SEs conditional on the shape of the "
                      "fitted law)")
    return Estimation(
        table=table, theta=np_(theta), theta_cov=np_(cov_theta), cov_params=np_(cov_rep), mu=np_(mu),
        beta=np_(theta[lay.beta]), omega=np_(omega),
        error={k: float(v) for k, v in zip(lay.error_names, program.family.reported(
            theta[lay.error], program.model))},
        eta_map=np_(local.loc - shift), eta_map_cov=np_(local.scale_tril @ local.scale_tril.transpose(-1, -2)),
        eta_mean=np_(result.eta_mean - shift), psi_mean=np_(result.psi_mean), psi_sd=np_(result.psi_sd),
        loglik=float(result.loglik.sum()), loglik_se=float(result.mc_variance.sum().sqrt()),
        loglik_individual=np_(result.loglik), is_samples=K, is_samples_fisher=K_fisher,
        loglik_method="gq" if final.quadrature else "is", quadrature_nodes=final.quadrature,
        elbo_trace=np.asarray(stage.trace.elbo), steps=stage.trace.steps,
        converged=stage.trace.converged, refine_rounds=stage.rounds, seconds=seconds,
        device=str(device), dtype=str(dtype).replace("torch.", ""), threads=threads,
        se_method=se_method, warnings=warnings, law=record, genomic=stage.genomic,
        diagnostics=diagnostics)


def _full_gradient(sampler: ImportanceSampler, theta: torch.Tensor) -> torch.Tensor:
    """Gradient of sum_i log L_i over every individual (one backward pass per chunk)."""
    grad = torch.zeros_like(theta)
    for c, idx in sampler.chunks():
        th = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(sampler.chunk_loglik(th, c, idx).sum(), th)
        grad += g
    return grad


def _information_diagnostics(info: torch.Tensor, grad: torch.Tensor, cov: torch.Tensor,
                             pseudo_inverse: bool) -> dict:
    """Evidence that theta maximizes the marginal log-likelihood: the Newton decrement
    g' I^-1 g / 2 (the log-likelihood a Newton step would still gain), the largest gradient
    component in SE units (|g_j| sqrt(cov_jj)), and the eigenvalues of the information in
    correlation form (unit-free: D^-1/2 I D^-1/2), whose smallest is ~0 for a parameter the data
    do not identify."""
    info64, g = info.detach().double().cpu(), grad.detach().double().cpu()
    cov64 = cov.detach().double().cpu()
    finite_g = bool(torch.isfinite(g).all())
    decrement = float(0.5 * g @ cov64 @ g) if finite_g else math.inf
    sd = torch.diagonal(cov64).clamp_min(0).sqrt()
    gradient_se = float((g.abs() * sd).max()) if finite_g and g.numel() else math.inf
    d = torch.diagonal(info64)
    if bool((d > 0).all()) and bool(torch.isfinite(info64).all()):
        scaled = info64 / torch.sqrt(d.unsqueeze(0) * d.unsqueeze(1))
        eig = torch.linalg.eigvalsh(0.5 * (scaled + scaled.T))
        smallest, largest = float(eig.min()), float(eig.max())
    else:  # a non-positive diagonal entry: that parameter has no information at all
        smallest, largest = float(d.min()) if d.numel() else math.nan, math.nan
    condition = largest / smallest if smallest > 0 else math.inf
    return dict(newton_decrement=decrement, gradient_se=gradient_se,
                information_min_eigenvalue=smallest, information_condition=condition,
                pseudo_inverse=bool(pseudo_inverse))


def estimate(model: Model, data: Data, design: CovariateDesign, init: dict[str, float],
             options: EstimationOptions, *, law=None, context: np.ndarray | None = None,
             observation=None, genomic: GenomicSetup | None = None) -> Estimation:
    """Fit the NLME model; see the module docstring for the steps. ``law`` is a random-effects
    spec (pymixnn.random_effects); ``context`` the (N, c) covariates of a conditional flow;
    ``observation`` the observation model (pymixnn.models.observation; default Gaussian)."""
    t_start = time.perf_counter()
    law = Gaussian() if law is None else law
    device, dtype, threads = _setup(data, options)
    pyro.set_rng_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    with _threads(threads), watch_structural_function():
        gauss = _gaussian_stage(model, data, design, init, options, device, dtype, generator,
                                observation, genomic)
        finish = lambda stage, record: _finish(  # noqa: E731
            stage, design, data, options, device=device, dtype=dtype, threads=threads,
            t_start=t_start, law_record=record)
        if isinstance(law, Gaussian):
            return finish(gauss, dict(spec=law_to_dict(law), seed=options.seed))
        if isinstance(law, Mixture) and law.n_components == "auto":
            candidates = [(1, finish(gauss, dict(spec=law_to_dict(Gaussian()), seed=options.seed)))]
            for k in range(2, law.max_components + 1):
                spec = dataclasses.replace(law, n_components=k)
                stage = _law_stage(gauss, model, data, design, spec, None, options, device, dtype,
                                   generator)
                candidates.append((k, finish(stage, dict(spec=law_to_dict(spec), seed=options.seed))))
            table = []
            for k, est in candidates:
                df = len(est.theta)
                table.append(dict(n_components=k, loglik=est.loglik, df=df,
                                  aic=-2 * est.loglik + 2 * df,
                                  bic=-2 * est.loglik + math.log(data.n_individuals) * df))
            best = min(range(len(table)), key=lambda i: table[i][law.criterion])
            chosen = candidates[best][1]
            chosen.law["selection"] = table
            chosen.law["criterion"] = law.criterion
            chosen.seconds["total"] = time.perf_counter() - t_start
            return chosen
        stage = _law_stage(gauss, model, data, design, law, context, options, device, dtype,
                           generator)
        return finish(stage, dict(spec=law_to_dict(law), seed=options.seed))
