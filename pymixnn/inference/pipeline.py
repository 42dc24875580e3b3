"""The estimation pipeline: start values -> Laplace-EM warm-up -> minibatch SVI -> refinement ->
observed Fisher information, SEs and ll.is.

1. Start (start.py): fixed effects from the given start values (the user's init over the model's
   init and self-start) and, when they differ, from the self-start alone, each refined by pooled
   maximum likelihood (L-BFGS, random effects at zero); the better pooled fit is kept. Omega and
   residual error from a few Laplace-EM iterations on a subsample (closed-form M-steps).
2. Minibatch SVI (svi.py) maximizes the ELBO in theta; local posteriors by Newton-type updates
   (laplace.py); a genomic fit updates its marker block every window (genomic.py). The
   ``"newton"`` gear (newton_gear.py; ``options.choose_gear``) leaves this step out: the
   refinement starts from step 1's Laplace-EM start, and falls back to SVI if it does not
   converge from there.
3. Refinement (refine.py, ``refine=True``): the importance-weighted log-likelihood with K fixed
   t-draws per individual (common random numbers; K -> inf gives log L), or adaptive quadrature
   (marginal.py), is maximized by Newton steps after re-centring the local posteriors, until theta
   stops moving. This removes the SGD noise and the bias of the Gaussian variational family.
4. Reporting (reporting.py): observed Fisher information (minus the Hessian of the same
   log-likelihood), SEs of reported parameters by the delta method, ll.is with fresh draws and
   its Monte Carlo SE.

A non-Gaussian law (laws/) starts from the Gaussian fit (steps 1-3) and has its own stages
(stages.law_stage): the law plug-in's start, SVI unless the plug-in skips it, its refiner, and
step 4 with the plug-in's block of the Fisher information. The fit leaves the caller's global
random states unchanged (rng.py) and counts every fallback it takes (fallbacks.py).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from pymixnn.data.table import Data
from pymixnn.inference.genomic import GenomicSetup
from pymixnn.inference.laws import plugin
from pymixnn.inference.options import EstimationOptions, choose_gear, setup, threads
from pymixnn.inference.program import integrates, watch_structural_function
from pymixnn.inference.records import Estimation
from pymixnn.inference.reporting import finish
from pymixnn.inference.rng import isolated_rng
from pymixnn.inference.stages import Context, gaussian_stage, law_stage
from pymixnn.model.covariates import CovariateDesign
from pymixnn.model.levels import LevelSetup
from pymixnn.model.named import Model
from pymixnn.model.random_effects import Gaussian

__all__ = ["estimate"]


def estimate(
    model: Model,
    data: Data,
    design: CovariateDesign,
    init: dict[str, float],
    options: EstimationOptions,
    *,
    law=None,
    context: np.ndarray | None = None,
    observation=None,
    genomic: GenomicSetup | None = None,
    levels: LevelSetup | None = None,
) -> Estimation:
    """Fit the NLME model; see the module docstring for the steps. ``law`` is a random-effects
    spec (pymixnn.model.random_effects); ``context`` the (N, c) covariates of a conditional flow;
    ``observation`` the observation model (pymixnn.model.observation; default Gaussian);
    ``levels`` grouping levels (pymixnn.model.levels; the Gaussian law only)."""
    t_start = time.perf_counter()
    law = Gaussian() if law is None else law
    fit_law = plugin(law)  # an unknown spec fails here, before any work
    if options.gear == "newton" and levels is not None:
        raise ValueError(
            "gear='newton' has no grouping levels to update: they are updated along minibatch "
            "SVI; use gear='svi' or 'auto'"
        )
    device, dtype, n_threads = setup(data, options)
    gear = choose_gear(
        options,
        device,
        n_individuals=data.n_individuals,
        gaussian=plugin(law).newton_gear,
        ode=integrates(model),
        genomic=genomic is not None,
        levels=levels is not None,
        replicated=genomic is None or genomic.replicated,
    )
    if options.distributed:
        _check_distributed(law, gear, model, levels, options, genomic is not None)
    with isolated_rng(options.seed, device), threads(n_threads), watch_structural_function():
        ctx = Context(
            model,
            data,
            design,
            options,
            device,
            dtype,
            generator=torch.Generator().manual_seed(options.seed),
            law_context=context,
            gear=gear,
            gaussian_is_start=fit_law.gaussian_is_start(law),
        )
        gauss = gaussian_stage(ctx, init, observation, genomic, levels)
        estimation = fit_law.fit(
            law,
            gaussian=gauss,
            n_individuals=data.n_individuals,
            law_stage=lambda spec: law_stage(gauss, ctx, spec, context),
            finish=lambda stage, spec: finish(stage, ctx, spec, threads=n_threads, t_start=t_start),
        )
    seconds = dict(estimation.seconds, total=time.perf_counter() - t_start)
    return dataclasses.replace(estimation, seconds=seconds, run=estimation.run.replace(seconds=dict(seconds)))


def _check_distributed(law, gear: str, model, levels, options: EstimationOptions, genomic: bool) -> None:
    """What a data-parallel fit supports so far: the Gaussian law by the Newton gear (with a
    genomic block) or by minibatch SVI (without), a closed-form model, per-individual local
    posteriors (the refusal names the setting)."""
    refused = [
        (plugin(law) is not plugin(Gaussian()), f"the random-effects law {type(law).__name__}"),
        (gear == "svi" and genomic, "a genomic block updated along SVI (gear 'svi'; the Newton gear is)"),
        (integrates(model), "an ODE or event-loop model"),
        (levels is not None, "grouping levels"),
        (options.local != "individual", f"local={options.local!r}"),
    ]
    named = [what for bad, what in refused if bad]
    if named:
        raise ValueError(f"distributed=True does not support {', '.join(named)} yet")
