"""The amortized stage's pieces (``local="amortized"``): the encoder of a Program, its q for every
individual after SVI, the optional per-individual steps from there (``refine_steps``, semi-
amortized) and the amortization gap.

The amortization gap of individual i is ELBO_i(q_i*) - ELBO_i(q_enc,i) at the same theta: q_i* is
the best Gaussian of the per-individual path (LocalPosteriors: Newton steps to the mode, then
natural-gradient variational steps), q_enc,i the encoder's. Both ELBOs are Monte Carlo estimates
over the same standard-normal draws (common random numbers), so their difference is nearly free of
Monte Carlo noise.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from pymixnn.data.table import Data
from pymixnn.inference.encoder import Encoder, data_cells, gaussian_entropy, log_det_tril
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.options import EstimationOptions
from pymixnn.inference.program import Program

__all__ = [
    "program_encoder",
    "encoder_inputs",
    "distil",
    "gaussian_kl",
    "elbo_per_individual",
    "amortize_local",
    "GAP_DRAWS",
]

# an individual whose encoder q has an importance-sampling effective sample size below this share
# of the GAP_DRAWS draws is flagged and gets per-individual Newton steps (amortize_local)
ESS_FLAG = 0.1
# Adam steps of the encoder's distillation from the start's per-individual posteriors (distil)
DISTIL_STEPS = 1000
# draws per individual of each ELBO in the amortization gap (a gap's MC sd ~ 0.02 nat at 64 on
# the logistic simulation with common draws)
GAP_DRAWS = 64


def encoder_inputs(
    program: Program, context: np.ndarray | None = None, data: Data | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cells, mask, individual features) of the program's data: the records (``data_cells``:
    with event data, its doses among them), and the individual's covariate design rows
    (uncentred, as ``CovariateDesign.transform`` gives them for new individuals; the encoder
    standardizes them), then a conditional flow's context columns (``context``, (N, c), as
    ``covariates.context_matrix`` codes them)."""
    events = None if data is None else getattr(data, "events", None)
    x_cols = [] if data is None else list(data.x_cols)
    cells, mask = data_cells(program.x, program.y, program.mask, program.aux, x_cols, events)
    ind = program.Z + program.z_center
    if context is not None:
        ind = torch.cat([ind, torch.as_tensor(context, dtype=ind.dtype, device=ind.device)], dim=-1)
    return cells, mask, ind


def program_encoder(
    program: Program,
    theta: torch.Tensor,
    seed: int,
    context: np.ndarray | None = None,
    data: Data | None = None,
) -> Encoder:
    """A fresh encoder for the program, its q starting at the prior N(0, Omega(theta)); with a
    conditional flow's ``context`` among its individual features and, for event ``data``, the
    doses among its records."""
    L = program.omega_tril(theta).detach()
    init_sd = torch.linalg.norm(L, dim=-1).cpu().numpy()
    cells, mask, ind = encoder_inputs(program, context, data)
    return Encoder(cells, mask, ind, program.layout.n_random, init_sd, seed=seed)


def gaussian_kl(m1, L1, m2, L2) -> torch.Tensor:
    """KL(N(m1, L1 L1') || N(m2, L2 L2')) per row."""
    d = m1.shape[-1]
    A = torch.linalg.solve_triangular(L2, L1, upper=False)
    r = torch.linalg.solve_triangular(L2, (m1 - m2).unsqueeze(-1), upper=False).squeeze(-1)
    logdet = lambda L: torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # noqa: E731
    return 0.5 * ((A**2).sum((-2, -1)) + (r**2).sum(-1) - d) + logdet(L2) - logdet(L1)


def distil(
    encoder: Encoder,
    local: LocalPosteriors,
    rows: torch.Tensor,
    generator: torch.Generator,
    *,
    steps: int = DISTIL_STEPS,
    batch: int = 256,
) -> float:
    """Train the encoder alone to reproduce the per-individual posteriors of ``rows`` (the start's
    Laplace-EM subsample): minimize the mean KL(q_i || q_enc,i) by Adam. No model evaluation, so
    it costs a few seconds, and joint SVI then starts from posteriors as tight as the
    per-individual path's instead of the prior (with broad q, a Poisson fit's first ELBO steps
    overflowed and dragged theta away: rapi's slope went from -0.02 to -0.42 in 200 steps).
    Returns the final mean KL over ``rows``."""
    params = list(encoder.net.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=(1e-3 / 1e-2) ** (1.0 / steps))
    m, L = local.loc[rows].detach(), local.scale_tril[rows].detach()
    n = rows.shape[0]
    for _ in range(steps):
        pick = torch.randint(n, (min(batch, n),), generator=generator).to(rows.device)
        loc, tril = encoder(rows[pick])
        loss = gaussian_kl(m[pick], L[pick], loc, tril).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        loc, tril = encoder(rows)
        return float(gaussian_kl(m, L, loc, tril).mean())


@torch.no_grad()
def elbo_per_individual(
    program: Program,
    theta: torch.Tensor,
    loc: torch.Tensor,
    tril: torch.Tensor,
    z: torch.Tensor,
    chunk: int = 2000,
    individuals: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """E_q[log p(y_i, eta)] + H(q_i) for q_i = N(loc_i, tril_i tril_i') over the draws z (S, n, d),
    and the effective sample size of q_i as an importance-sampling proposal over the same draws,
    (sum w)^2 / sum w^2 with w = p(y_i, eta) / q_i(eta) (between 1 and S). Row r of loc, tril and
    z is individual ``individuals[r]`` (None: individual r)."""
    n, d = loc.shape
    elbo, ess = [], []
    for s in range(0, n, chunk):
        r = torch.arange(s, min(s + chunk, n), device=loc.device)
        idx = r if individuals is None else individuals[r]
        eta = loc[r] + (tril[r] @ z[:, r].unsqueeze(-1)).squeeze(-1)
        v = program.log_likelihood(theta, eta, idx) + program.log_prior(theta, eta, idx)
        v = torch.where(torch.isfinite(v), v, torch.full_like(v, -1e30))
        elbo.append(v.mean(0) + gaussian_entropy(tril[r]))
        log_q = -0.5 * (z[:, r] ** 2).sum(-1) - log_det_tril(tril[r]) - 0.5 * d * math.log(2 * math.pi)
        w = v - log_q
        ess.append(torch.exp(2 * torch.logsumexp(w, 0) - torch.logsumexp(2 * w, 0)))
    return torch.cat(elbo), torch.cat(ess)


def _on_all(values: torch.Tensor, rows: torch.Tensor | None, n: int) -> np.ndarray:
    """Per-individual numpy array of length n: ``values`` at ``rows`` (None: all), NaN (False for
    booleans) elsewhere."""
    v = values.detach().cpu().numpy()
    if rows is None:
        return v
    out = np.zeros(n, dtype=bool) if v.dtype == bool else np.full(n, np.nan)
    out[rows.cpu().numpy()] = v
    return out


def amortize_local(
    program: Program,
    theta: torch.Tensor,
    encoder: Encoder,
    local: LocalPosteriors,
    options: EstimationOptions,
    generator: torch.Generator,
) -> dict:
    """Hand the encoder's q to ``local`` (every individual, one forward pass per chunk), measure
    the amortization gap against the per-individual optimum, then leave ``local`` at the encoder's
    q plus ``options.refine_steps`` Newton steps per individual (up to 20 for the individuals flagged by a
    low effective sample size of the encoder's q as a proposal). With more than
    ``options.gap_individuals`` individuals the gap and the effective sample sizes are measured on that
    many random ones (NaN elsewhere in the record; the flagged are among them): the per-individual
    optimum is a Newton solve per individual and the two ELBOs 64 draws each, which at N = 10^5
    cost 33 of the fit's 196 s. Returns the record of the amortized stage (plain numpy: encoder
    state, gaps, seconds)."""
    t0 = time.perf_counter()
    refine_steps, gap_individuals = options.refine_steps, options.gap_individuals
    theta = theta.detach()
    loc, tril = encoder.all()
    seconds = {"encode": time.perf_counter() - t0}
    n, d = loc.shape
    rows = None
    if gap_individuals is not None and n > gap_individuals:
        rows = torch.randperm(n, generator=generator)[:gap_individuals].sort().values.to(loc.device)
    sub = torch.arange(n, device=loc.device) if rows is None else rows
    z = torch.randn((GAP_DRAWS, sub.shape[0], d), generator=generator, dtype=torch.float64).to(loc)
    t0 = time.perf_counter()
    elbo_enc, ess = elbo_per_individual(program, theta, loc[sub], tril[sub], z, individuals=sub)
    # the per-individual optimum, from the encoder's q
    local.loc, local.scale_tril = loc.clone(), tril.clone()
    local.visited[:] = True
    local.refresh(theta, rows, max_iter=50, vi_iter=5)
    elbo_opt, _ = elbo_per_individual(
        program, theta, local.loc[sub], local.scale_tril[sub], z, individuals=sub
    )
    seconds["gap"] = time.perf_counter() - t0
    elbo_semi = None
    local.loc, local.scale_tril = loc.clone(), tril.clone()
    if refine_steps:
        local.refresh(theta, None, max_iter=int(refine_steps), vi_iter=1)
        elbo_semi, _ = elbo_per_individual(
            program, theta, local.loc[sub], local.scale_tril[sub], z, individuals=sub
        )
    # individuals the encoder fits poorly as a proposal get per-individual steps whatever
    # refine_steps says
    flagged = ess < ESS_FLAG * GAP_DRAWS
    if bool(flagged.any()):
        local.refresh(theta, sub[flagged], max_iter=20, vi_iter=1)
    gap = elbo_opt - elbo_enc
    return dict(
        encoder=encoder.state(),
        n_weights=encoder.n_weights(),
        elbo_encoder=_on_all(elbo_enc, rows, n),
        elbo_individual=_on_all(elbo_opt, rows, n),
        elbo_refined=None if elbo_semi is None else _on_all(elbo_semi, rows, n),
        ess=_on_all(ess, rows, n),
        flagged=_on_all(flagged, rows, n),
        n_flagged=int(flagged.sum()),
        gap=_on_all(gap, rows, n),
        mean_gap=float(gap.mean()),
        gap_individuals=None if rows is None else int(rows.shape[0]),
        refine_steps=int(refine_steps),
        gap_draws=GAP_DRAWS,
        seconds=seconds,
    )
