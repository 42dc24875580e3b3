"""Estimation options and the settings derived from them: device, dtype, threads, sample sizes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from pymixnn.data.table import Data
from pymixnn.inference.svi_options import SVIOptions

__all__ = [
    "EstimationOptions",
    "resolve_device",
    "threads",
    "setup",
    "sample_sizes",
    "proposal_vi",
    "choose_gear",
]


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
    # the whole population vector to start from (the layout of program.py), instead of the pooled
    # fits of the start values: a hybrid fit's final stage starts where its networks were trained
    start_theta: tuple | None = None
    # data-parallel over the processes of an initialized torch.distributed group (collective.py)
    distributed: bool = False
    # marginal likelihood: "is" (importance sampling, saemix's ll.is), "gq" (adaptive
    # Gauss-Hermite quadrature, saemix's ll.gq / lme4's nAGQ) or "auto" (gq for one or two random
    # effects when the Q^d nodes x observations stay below 2e7, else is; with three, gq for the
    # reported log-likelihood where its nodes are no more than ll.is's draws); see marginal.py
    likelihood: str = "auto"
    # large N: second derivatives from a fixed random subsample of individuals (the information
    # is additive over individuals): the refinement's Newton metric from ``newton_individuals``
    # (the full-data gradient still fixes the maximum), the observed Fisher information from
    # ``fisher_individuals`` scaled by N/n (relative error of an SE ~ 1/sqrt(n)); None: all
    # (the Newton gear takes its metric from fewer: newton_gear.NEWTON_GEAR_METRIC)
    newton_individuals: int | None = 5_000
    fisher_individuals: int | None = 10_000
    # the refinement's safeguard (SVI end point against the Laplace-EM start) compares the two
    # on this many individuals at most
    score_individuals: int = 5_000
    # beyond ``large_n`` individuals (Gaussian law, no genomic block) SVI stops after
    # ``large_n_svi_steps`` steps: it only has to bring theta into the basin of the refinement,
    # which then does the work in a few full-data Newton passes (longer SVI does not pay there:
    # benchmarks/results/); None: no cap
    large_n: int = 5_000
    large_n_svi_steps: int | None = 100
    # variational (natural-gradient) steps after the Laplace mode when the proposals of the
    # refinement, the Fisher information and ll.is are re-centred; None: 2 up to ``large_n``
    # individuals, else 0 (Laplace proposals: as good for importance sampling at a sixth of the
    # cost at large N, benchmarks/results/)
    proposal_vi_iter: int | None = None
    # a model solved by an ODE solver (each evaluation a whole solve per individual and node):
    # the pooled start, the Laplace-EM warm-up and the pre-refinement (refine.prerefine_ode) on
    # ``ode_start_individuals`` individuals at most; SVI then stops after ``ode_svi_steps``
    # steps when the refinement follows (it starts near the maximum: the refinement does the
    # work); None: no cap
    ode_start_individuals: int = 200
    ode_svi_steps: int | None = 10
    # local posteriors: "individual" (variational parameters per individual, Newton-type updates,
    # laplace.py) or "amortized" (one set encoder for all, trained with theta by SVI, encoder.py;
    # SVI then runs uncapped, to the ELBO's plateau); ``refine_steps`` Newton steps per individual
    # from the encoder's q before the refinement (semi-amortized)
    local: str = "individual"
    refine_steps: int = 0
    # with an encoder, beyond this many individuals the amortization gap and the encoder's
    # effective sample sizes are measured on a random subsample of this many (amortized.py);
    # None: on every individual
    gap_individuals: int | None = 10_000
    # "newton": the refinement straight from the Laplace-EM start (no SVI), "svi": minibatch SVI
    # first, "auto": chosen by choose_gear
    gear: str = "auto"


# "auto" takes the Newton gear up to this many individuals (the largest N measured). Logistic
# simulation, 1 thread: at N = 10,000 the Newton gear took 10.7 s, the SVI gear 22.8; at 10^5 67 s
# against 61, and at 10^6 over 600 s against 445, when SVI's 100 steps visited the individuals
# more cheaply than the refinement's passes; with cheaper passes (2026-12-05) 24 s against 27 at
# 10^5 and 241 s (3.9 GB) against 346 (4.2 GB) at 10^6, the same estimates to 3-4 digits
# (benchmarks/results/scaling.md)
NEWTON_GEAR_MAX_N = 1_000_000


def choose_gear(
    options: EstimationOptions,
    device: torch.device,
    *,
    n_individuals: int,
    gaussian: bool,
    ode: bool,
    genomic: bool,
    levels: bool,
    replicated: bool = True,
) -> str:
    """The gear of a fit: ``options.gear`` when given, else (``"auto"``) "newton" for at most
    ``NEWTON_GEAR_MAX_N`` individuals, a law whose Gaussian stage may take it (``gaussian``:
    the law plug-in's ``newton_gear``: the Gaussian law, mixtures and flows) with per-individual
    local posteriors, no grouping level, a closed-form model and the CPU, else "svi". A genomic
    block is updated between the Newton gear's refinements (newton_gear.py) when its genotypes
    are ``replicated`` (more individuals than genotypes); with one individual per genotype its
    offsets are confounded with the individual random effects and the alternation crawls (grav2,
    162 RILs: 30 rounds without the block settling), so SVI updates it along the way.

    From the Laplace-EM start the refinement's Newton steps reach the same maximum as after SVI
    (to its tolerance, 0.01 on theta): theophylline in 2 rounds, the logistic simulation at
    N = 100, 1,000 and 10,000 in 2 rounds, estimates equal to 5 digits, with SVI's 650 steps
    (7-12 s) gone (benchmarks/results/scaling.md). A mixture's and a flow's stages start from
    the Gaussian maximum either way (a mixture's EM start and Newton refinement, 28.6 -> 3.5 s
    on the bimodal benchmark, the same maximum). SVI stays where it pays: latent classes are
    shaped along it, grouping levels are updated along it, an encoder is
    trained by it, an ODE model's 10 steps follow its pre-refinement, and on a GPU its
    minibatch steps are cheap."""
    if options.gear != "auto":
        return options.gear
    eligible = (
        n_individuals <= NEWTON_GEAR_MAX_N
        and gaussian
        and options.refine
        and options.local == "individual"
        and not (ode or levels)
        and (replicated or not genomic)
        and device.type == "cpu"
    )
    return "newton" if eligible else "svi"


def proposal_vi(options: EstimationOptions, n: int) -> int:
    """Variational steps of the proposals' re-centring for n individuals."""
    if options.proposal_vi_iter is not None:
        return int(options.proposal_vi_iter)
    return 2 if n <= options.large_n else 0


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch finds no CUDA device; use 'cpu' or 'auto'")
    return torch.device(device)


@contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to n inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def setup(data: Data, options: EstimationOptions) -> tuple[torch.device, torch.dtype, int]:
    """Device, dtype and threads of a fit."""
    device = resolve_device(options.device)
    dtype = {"float32": torch.float32, "float64": torch.float64, None: None}[options.dtype]
    if dtype is None:
        # float64 on the CPU: in float32 the refinement's Newton steps cannot resolve the
        # log-likelihood of 10^5 individuals finely enough (benchmarks/results/)
        dtype = torch.float64 if device.type == "cpu" else torch.float32
    n_threads = options.threads or (1 if data.n_obs < 200_000 else torch.get_num_threads())
    return device, dtype, n_threads


# draws per individual of the refinement and the Fisher information for an ODE model (each draw
# is a whole solve, differentiated twice): Laplace-centred t proposals need a few dozen
ODE_K_OPT = 100


# K_opt: draws x observations of one pass of the refinement and the Fisher information, and at
# most this many draws per individual. With Laplace-centred t proposals the maximum's Monte Carlo
# error does not shrink beyond ~200 draws: logistic simulation, estimates over seeds 1-3 spread by
# at most 0.057 SE with 1,000 draws, 0.047 with 200 (N = 100); 0.19, 0.135 and 0.18 SE (sigma)
# with 100, 50 and 20 draws (N = 1,000); SEs from 200, 100 and 50 draws within 0.96% of those
# from 1,000 (an SE's own sampling error at N = 100: 7%). The refinement and Fisher information
# of N = 100 took 3.2 s with 1,000 draws, 0.7 s with 200 (benchmarks/results/scaling.md)
K_OPT_CELLS = 500_000
K_OPT_MAX = 200


def sample_sizes(data: Data, options: EstimationOptions, integrates: bool = False) -> tuple[int, int]:
    """Draws per individual: K for ll.is (no gradient, cheap) and K_opt for the refinement and
    the Fisher information (second-order autograd). With proposals that follow the posterior
    mode a few dozen draws pin the maximum down; ll.is takes at least 200 draws up to 10^6
    observations, then fewer (down to 50), so one pass stays bounded (benchmarks/results/)."""
    floor = int(np.clip(200_000_000 / data.n_obs, 50, 200))
    K = options.is_samples or int(np.clip(5_000_000 / data.n_obs, floor, 5000))
    K_opt = int(min(K, np.clip(K_OPT_CELLS / data.n_obs, 20, K_OPT_MAX)))
    if integrates and options.is_samples is None:
        K_opt = min(K_opt, ODE_K_OPT)  # ``integrates``: an ODE model
    return K, K_opt
