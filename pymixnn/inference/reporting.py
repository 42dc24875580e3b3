"""The end of a fit: observed Fisher information, ll.is, reported parameters with delta-method SEs,
convergence evidence, and the numpy :class:`Estimation` record (no torch object leaves it)."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from pymixnn.inference.hessians import LOUIS_MAX_MISSING, louis_applies, louis_hessian, missing_fraction
from pymixnn.inference.importance import ImportanceSampler
from pymixnn.inference.levels_report import gls_theta_cov, level_table
from pymixnn.inference.marginal import marginal_likelihood
from pymixnn.inference.options import proposal_vi, sample_sizes
from pymixnn.inference.program import integrates
from pymixnn.inference.records import Estimation, LawFit, RunInfo
from pymixnn.inference.rng import stream
from pymixnn.inference.stages import Context, Stage
from pymixnn.model import transforms as tr
from pymixnn.model.random_effects import to_dict as law_to_dict

__all__ = [
    "finish",
    "fisher_information",
    "information_diagnostics",
    "full_gradient",
    "PSEUDO_INVERSE_WARNING",
]

PSEUDO_INVERSE_WARNING = (
    "observed Fisher information is not positive definite: some parameters "
    "are poorly identified; their SEs are unreliable (NaN)"
)

LEVELS_PSEUDO_INVERSE_WARNING = (
    "the information of the grouping levels' covariances is not positive definite (a level "
    "variance at its floor, near 0): their SEs are unreliable"
)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def fisher_information(hess: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Observed information -H, its inverse, and whether that is a pseudo-inverse: taken when the
    information has non-finite entries, is singular, or its inverse has a non-positive diagonal
    (non-finite entries of the information are then set to 0)."""
    info = -hess
    cov, ok = None, bool(torch.isfinite(info).all())
    if ok:
        cov, code = torch.linalg.inv_ex(info)
        ok = int(code) == 0 and bool(torch.all(torch.diagonal(cov) > 0))
    if ok:
        return info, cov, False
    info = torch.nan_to_num(info, nan=0.0, posinf=0.0, neginf=0.0)
    return info, torch.linalg.pinv(info), True


def full_gradient(sampler: ImportanceSampler, theta: torch.Tensor) -> torch.Tensor:
    """Gradient of sum_i log L_i over every individual (one backward pass per chunk)."""
    grad = torch.zeros_like(theta)
    for c, idx in sampler.chunks():
        th = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(sampler.chunk_loglik(th, c, idx).sum(), th)
        grad += g
    return sampler.program.comm.sum(grad)[0]  # every process's individuals


def information_diagnostics(
    info: torch.Tensor, grad: torch.Tensor, cov: torch.Tensor, pseudo_inverse: bool
) -> dict:
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
    return dict(
        newton_decrement=decrement,
        gradient_se=gradient_se,
        information_min_eigenvalue=smallest,
        information_condition=condition,
        pseudo_inverse=bool(pseudo_inverse),
    )


def _se_method(
    sampler: ImportanceSampler, k_fisher: int, fisher_n: int, n: int, note: str, louis: bool = False
) -> str:
    if sampler.program.layout.n_random == 0:
        text = (
            "observed Fisher information: Hessian of the exact log-likelihood (no individual random effects)"
        )
    elif sampler.quadrature:
        text = (
            "observed Fisher information: Hessian of the log-likelihood by adaptive "
            f"Gauss-Hermite quadrature ({sampler.quadrature} nodes per random effect, "
            f"{k_fisher} per individual)"
        )
    else:
        text = (
            "observed Fisher information: Hessian of the importance-sampling "
            f"log-likelihood (K={k_fisher} t4 draws per individual, common random numbers)"
        )
    if louis:
        text += "; by Louis' identity (the nodes or draws held fixed on the scale of phi)"
    if fisher_n < n:
        text += (
            f"; summed over a random subsample of {fisher_n} of the {n} individuals and "
            f"scaled up (subsampling error of an SE of order 1/(2 sqrt(n)) = "
            f"{0.5 / math.sqrt(fisher_n):.1%})"
        )
    return text + note


# at most this many points of the SVI path are evaluated for the trace (evenly spaced; every
# refinement round is kept): the reported values of a flow law cost a Monte Carlo moment each
TRACE_POINTS = 80
# Monte Carlo draws of the law's moments at each point of the trace (the estimates use 100,000):
# a plotted path needs no more (sd/100 error), and 100,000 per point cost a flow fit 10 s
TRACE_MOMENT_DRAWS = 5_000


def parameter_path(stage: Stage, values, names: list[str], final: torch.Tensor) -> dict:
    """The reported population parameters along the fit (``Results.plot_trace``): one row per
    recorded point of ``stage.path`` (SVI every ``window`` steps, each refinement round; at most
    :data:`TRACE_POINTS` SVI points, evenly spaced) and the estimate (stage ``final``)."""
    path = list(stage.path)
    svi = [k for k, p in enumerate(path) if p[0].startswith("svi")]
    if len(svi) > TRACE_POINTS:
        keep = set(np.asarray(svi)[np.unique(np.linspace(0, len(svi) - 1, TRACE_POINTS).round().astype(int))])
        path = [p for k, p in enumerate(path) if k in keep or not p[0].startswith("svi")]
    with torch.no_grad():
        rows = [_numpy(values(th)) for _, _, th in path] + [_numpy(final)]
    return dict(
        names=list(names),
        stage=[p[0] for p in path] + ["final"],
        step=[int(p[1]) for p in path] + [int(stage.trace.steps)],
        values=np.asarray(rows),
    )


def finish(stage: Stage, ctx: Context, spec, *, threads: int, t_start: float) -> Estimation:
    """Observed Fisher information, ll.is, reported parameters and the numpy Estimation of the
    law ``spec`` fitted in ``stage``."""
    program, theta, local = stage.program, stage.theta, stage.local
    options, device, dtype, fallbacks = ctx.options, ctx.device, ctx.dtype, ctx.fallbacks
    law, lay = program.law, program.layout
    seconds, warnings = dict(stage.seconds), list(stage.warnings)
    K, k_opt = sample_sizes(ctx.data, options, integrates(ctx.model))
    t0 = time.perf_counter()
    vi_iter = proposal_vi(options, program.n_individuals)
    if not (
        program.comm.all(local.centred(theta, vi_iter, options.refine_tol))
        and program.offset is None
        and program.offset_var is None
    ):
        # proposals at the modes of theta; a refinement whose last round moved theta less than
        # refine_tol has them already: its proposal centres take one Newton step to theta's
        # modes (ImportanceSampler.centre), and a refresh would only repeat the round's
        # (the logistic simulation, N = 10^5: 0.9 s saved, the same estimates and SEs)
        local.refresh(theta, None, max_iter=50, vi_iter=vi_iter)
    sampler = marginal_likelihood(
        program,
        local,
        law.fisher_draws(k_opt, program.n_individuals),
        stream(options.seed, "fisher"),
        options.likelihood,
        options.fisher_individuals,
    )
    if (
        louis_applies(program)
        and sampler.quadrature == 0
        and sampler.hessian_rows is None
        and options.is_samples is None
        and missing_fraction(sampler, theta) > LOUIS_MAX_MISSING
    ):
        # wide posteriors, where Louis' identity on draws errs (LOUIS_MAX_MISSING): with three
        # random effects, on the reported log-likelihood's quadrature rule where it takes one
        # (marginal.reported_quadrature_nodes), where it has no Monte Carlo error; theophylline:
        # SEs within 0.3% of a 11^3 rule's where autograd's Hessian on 200 draws erred by up to
        # 1.9% (omega2.V), in 0.028 s instead of 0.090
        rule = marginal_likelihood(
            program, local, K, stream(options.seed, "fisher"), options.likelihood, reported=True
        )
        sampler = rule if rule.quadrature else sampler
    k_fisher = sampler.n_samples
    index = law.fisher_index(lay)
    louis = False
    if integrates(ctx.model):
        # no double backward pass through the solver (its memory: killed at 24 GB on the
        # turnover model); forward differences, 9e-5 from autograd's Hessian (SEs to ~1e-4),
        # at half the passes of central ones (Michaelis-Menten, 1,000 individuals: 120 s central)
        grad, hess = sampler.difference_hessian(theta, sampler.hessian_rows, index=index)
    elif louis := louis_applies(program) and (
        sampler.quadrature > 0 or missing_fraction(sampler, theta) <= LOUIS_MAX_MISSING
    ):
        # Louis' identity on the draws held fixed on the scale of phi: no derivative of the
        # structural model (hessians.louis_hessian; 0.88 -> 0.10 s at N = 1,000), where its
        # Monte Carlo error is no larger than autograd's (hessians.LOUIS_MAX_MISSING), and on
        # a quadrature rule, which has none (Phenobarb, 15 x 15 rule: 0.53 -> 0.12 s, SEs
        # within 0.3% of autograd's)
        grad, hess = louis_hessian(sampler, theta, index, sampler.hessian_rows)
    else:
        # autograd's Hessian, exact to rounding: forward differences (2.5x faster) err by ~1e-5
        # relative, which hides a non-identified direction (the information check's smallest
        # eigenvalue, limit 1e-8) and left a flow-within-classes fit without SEs
        grad, hess = sampler.gradient_and_hessian(theta, index=index, rows=sampler.hessian_rows)
    fisher_n = program.n_individuals if sampler.hessian_rows is None else int(sampler.hessian_rows.shape[0])
    if sampler.hessian_rows is not None:  # a subsample's gradient, scaled up, is mostly noise
        grad = full_gradient(sampler, theta)
    info, cov_sub, pseudo_inverse = fisher_information(hess)
    if pseudo_inverse:
        fallbacks.add("fisher_pseudo_inverse")
        warnings.append(PSEUDO_INVERSE_WARNING)
    diagnostics = information_diagnostics(
        info, grad if index is None else grad[index], cov_sub, pseudo_inverse
    )
    diagnostics["starts"] = stage.starts
    if index is None:
        cov_theta = cov_sub
    else:
        cov_theta = torch.zeros(lay.size, lay.size, dtype=dtype, device=device)
        ix = torch.tensor(index, device=device)
        cov_theta[ix.unsqueeze(-1), ix] = cov_sub
    seconds["fisher"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # the reported log-likelihood: with three random effects under "auto" by the 7^3 rule where
    # its nodes are no more than ll.is's draws (marginal.reported_quadrature_nodes), unless
    # the user asked for a number of draws
    final = marginal_likelihood(
        program,
        local,
        K,
        stream(options.seed, "loglik"),
        options.likelihood,
        reported=options.is_samples is None,
    )
    result = final.evaluate(theta)
    loc, scale_tril = local.loc, local.scale_tril
    if program.comm.distributed and not program.sharded:  # every individual, in the data's order
        # (read as shards: each process reports its own individuals, the data it holds)
        gather = program.comm.gather_rows
        result = dataclasses.replace(
            result,
            **{k: gather(v) for k, v in vars(result).items() if isinstance(v, torch.Tensor)},
        )
        loc, scale_tril = gather(loc), gather(scale_tril)
    K = final.n_samples
    seconds["loglik"] = time.perf_counter() - t0

    levels = None
    if stage.levels is not None:  # grouping levels: the GLS covariance of their fixed effects
        levels = stage.levels.export(theta, local, stage.rounds)
        if levels.pseudo_inverse:
            fallbacks.add("levels_pseudo_inverse")
            warnings.append(LEVELS_PSEUDO_INVERSE_WARNING)
        cov_theta = gls_theta_cov(cov_theta, levels)
    names, kinds, params, scales, values = law.reported(program, ctx.design, stream(options.seed, "moments"))
    est = values(theta)
    t0 = time.perf_counter()
    trace_values = law.reported(
        program, ctx.design, stream(options.seed, "moments"), n_moment=TRACE_MOMENT_DRAWS
    )[-1]
    path = parameter_path(stage, trace_values, names, est)
    seconds["trace"] = time.perf_counter() - t0
    J = torch.autograd.functional.jacobian(values, theta)
    cov_rep = J @ cov_theta @ J.T
    var = torch.diagonal(cov_rep)
    se = torch.where(var > 0, var.clamp_min(0).sqrt(), torch.full_like(var, float("nan")))
    table = []
    for k in range(len(names)):
        e, s = float(est[k]), float(se[k])
        est_t, se_t = tr.delta_method(scales[k], e, s)
        table.append(
            dict(
                name=names[k],
                kind=kinds[k],
                parameter=params[k],
                estimate=e,
                se=s,
                estimate_transformed=est_t,
                se_transformed=se_t,
                scale=scales[k],
            )
        )
    ll_sum, mc_variance = result.loglik.sum(), result.mc_variance.sum()
    if program.sharded:  # each process holds its own individuals' terms
        ll_sum, mc_variance = program.comm.sum(ll_sum, mc_variance)
    loglik, cov_np = float(ll_sum), _numpy(cov_rep)
    if levels is not None:  # grouping levels: their rows, and the levels integrated out of ll
        table, cov_np = level_table(levels, table, cov_np)
        loglik += levels.loglik_correction
    with torch.no_grad():
        shift, omega = law.program_moments(program, theta, 100_000, stream(options.seed, "moments"))
    mu = program.mu_uncentred(theta).clone()
    mu[program.random_index] = mu[program.random_index] + shift
    record = dict(
        spec=law_to_dict(spec),
        seed=options.seed,
        **stage.law_info,
        shift=_numpy(shift).tolist(),
        n_theta=int(lay.size),
        n_law=int(lay.n_law),
        law_slice=[lay.law.start, lay.law.stop],
        omega_slice=[lay.omega.start, lay.omega.stop],
        full_omega=bool(lay.full_omega),
        context=None if program.context is None else _numpy(program.context).tolist(),
        **law.record_extras(program, theta, result),
    )
    seconds["total"] = time.perf_counter() - t_start
    fallback_warnings = tuple(fallbacks.warnings())
    warnings.extend(fallback_warnings)
    dtype_name = str(dtype).replace("torch.", "")
    run = RunInfo(
        seed=int(options.seed),
        device=str(device),
        dtype=dtype_name,
        threads=threads,
        seconds=dict(seconds),
        steps=stage.trace.steps,
        refine_rounds=stage.rounds,
        warnings=tuple(warnings),
        fallbacks=fallbacks.snapshot(),
        fallback_warnings=fallback_warnings,
        gear="svi" if fallbacks.counts["newton_gear_to_svi"] else ctx.gear,
        processes=int(program.comm.world),
    )
    return Estimation(
        table=table,
        theta=_numpy(theta),
        theta_cov=_numpy(cov_theta),
        cov_params=cov_np,
        mu=_numpy(mu),
        beta=_numpy(theta[lay.beta]),
        omega=_numpy(omega),
        error={
            k: float(v)
            for k, v in zip(lay.error_names, program.family.reported(theta[lay.error], program.model))
        },
        eta_map=_numpy(loc - shift),
        eta_map_cov=_numpy(scale_tril @ scale_tril.transpose(-1, -2)),
        eta_mean=_numpy(result.eta_mean - shift),
        psi_mean=_numpy(result.psi_mean),
        psi_sd=_numpy(result.psi_sd),
        loglik=loglik,
        loglik_se=float(mc_variance.sqrt()),
        loglik_individual=_numpy(result.loglik),
        is_samples=K,
        is_samples_fisher=k_fisher,
        loglik_method="exact" if lay.n_random == 0 else ("gq" if final.quadrature else "is"),
        quadrature_nodes=final.quadrature,
        elbo_trace=np.asarray(stage.trace.elbo),
        steps=stage.trace.steps,
        converged=stage.trace.converged,
        refine_rounds=stage.rounds,
        seconds=seconds,
        device=str(device),
        dtype=dtype_name,
        threads=threads,
        se_method=_se_method(sampler, k_fisher, fisher_n, program.n_individuals, law.se_note, louis),
        warnings=warnings,
        law=LawFit(**record),
        genomic=stage.genomic,
        levels=levels,
        diagnostics=diagnostics,
        run=run,
        amortized=stage.amortized,
        trace=path,
    )
