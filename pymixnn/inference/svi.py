"""The Pyro program and the minibatch SVI loop.

Model (one plate over individuals, subsampled):

    eta_i ~ MVN(0, Omega)
    y_ij | eta_i ~ Normal(f(h(mu + Z_i beta + eta_i), x_ij), g(f))   (on log y for exponential error)

The population vector ``theta`` is a ``pyro.param`` of the model (variational EM: it maximizes the
ELBO); the guide is q(eta_i) = N(m_i, S_i), moved by Newton-type (Laplace, then natural-gradient)
updates each time i is in the minibatch (see laplace.py), so each SVI step is a stochastic gradient
of the ELBO in theta.
Adam (ClippedAdam) with an exponentially decaying step size; stopping on the ELBO's plateau; the
returned theta is the average of the iterates over the last two plateau windows.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam
from tqdm.auto import tqdm

from pymixnn.inference.collective import shard_bounds
from pymixnn.inference.encoder import Encoder
from pymixnn.inference.fallbacks import Fallbacks
from pymixnn.inference.laplace import LocalPosteriors
from pymixnn.inference.program import Program
from pymixnn.inference.svi_options import SVIOptions, SVITrace

__all__ = ["SVIOptions", "SVITrace", "run_svi", "pyro_model", "pyro_guide", "amortized_guide"]


# Adam's step size for an encoder's weights (local="amortized"; theta keeps SVIOptions.lr)
ENCODER_LR = 2e-3


class RandomEffectsLaw(dist.TorchDistribution):
    """The law of eta_i for a batch of individuals as a Pyro distribution (log_prob only: in SVI the
    guide supplies the values). Gaussian, mixture or flow, from ``Program.log_prior``."""

    arg_constraints: dict = {}
    support = dist.constraints.real_vector

    def __init__(
        self, program: Program, theta: torch.Tensor, idx: torch.Tensor, batch_shape: torch.Size | None = None
    ):
        self.program, self.theta, self.idx = program, theta, idx
        d = program.layout.n_random
        super().__init__(
            batch_shape=idx.shape if batch_shape is None else torch.Size(batch_shape),
            event_shape=(d,),
            validate_args=False,
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.program.log_prior(self.theta, value, self.idx).expand(value.shape[:-1])

    def expand(self, batch_shape, _instance=None):
        # leading (particle) axes broadcast in log_prob; the last axis stays the batch of individuals
        return RandomEffectsLaw(self.program, self.theta, self.idx, batch_shape)


def pyro_model(program: Program, theta0: torch.Tensor, idx: torch.Tensor) -> None:
    theta = pyro.param("theta", theta0)
    L = program.omega_tril(theta)
    d = L.shape[-1]
    if program.layout.n_law and program.comm.rank == 0:
        # the flow's ridge towards the Gaussian model (a prior on the law's parameters, once per
        # step: on process 0 only in a data-parallel fit, whose gradients are summed)
        pyro.factor("law_penalty", -program.law_penalty(theta))
    with pyro.plate("individuals", program.n_local, subsample=idx):
        if program.layout.n_law or program.law.conditional:
            law = RandomEffectsLaw(program, theta, idx)
        else:
            law = dist.MultivariateNormal(
                torch.zeros(d, dtype=theta.dtype, device=theta.device), scale_tril=L
            )
            if program.offset_cov is not None:  # a genomic fit: see Program.offset_penalty
                pyro.factor("offset_uncertainty", program.offset_penalty(theta, idx))
        eta = pyro.sample("eta", law)
        # the observation model's log-density (any family; padding masked) as a factor
        pyro.factor("y", program.log_likelihood(theta, eta, idx))


def pyro_guide(program: Program, local: LocalPosteriors, idx: torch.Tensor) -> None:
    with pyro.plate("individuals", program.n_local, subsample=idx):
        pyro.sample("eta", dist.MultivariateNormal(local.loc[idx], scale_tril=local.scale_tril[idx]))


def amortized_guide(program: Program, encoder: Encoder, idx: torch.Tensor) -> None:
    """q(eta_i) = N(m(data_i), L(data_i) L(data_i)'): the encoder's weights are Pyro parameters,
    trained with theta by the ELBO's reparameterized gradient."""
    pyro.module("encoder", encoder.net)
    loc, tril = encoder(idx)
    with pyro.plate("individuals", program.n_local, subsample=idx):
        pyro.sample("eta", dist.MultivariateNormal(loc, scale_tril=tril))


def _epoch_order(n: int, groups: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """A random order of the individuals; with ``groups`` (genotype of each individual), whole
    groups in random order, so minibatches are made of genotypes."""
    if groups is None:
        return torch.randperm(n, generator=generator, device="cpu")
    rank = torch.randperm(int(groups.max()) + 1, generator=generator, device="cpu")[groups.cpu()]
    return torch.argsort(rank * n + torch.arange(n), stable=True)


def _zero_nonfinite(grad: torch.Tensor, fallbacks: Fallbacks | None) -> torch.Tensor:
    """The gradient with its non-finite components set to 0, counted in ``fallbacks``."""
    if fallbacks is not None:
        bad = fallbacks.count_nonfinite("svi_zeroed_gradient_steps", grad)
        if bad:
            fallbacks.add("svi_zeroed_gradient_components", bad)
    return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def run_svi(
    program: Program,
    theta0: torch.Tensor,
    local: LocalPosteriors,
    options: SVIOptions,
    generator: torch.Generator,
    *,
    groups: torch.Tensor | None = None,
    callback=None,
    fallbacks: Fallbacks | None = None,
    encoder: Encoder | None = None,
) -> tuple[torch.Tensor, SVITrace]:
    """Minibatch SVI from theta0; returns the final theta and the ELBO trace. ``groups``: batch
    whole groups (genotypes); ``callback(theta)`` runs every ``options.window`` steps (the genomic
    block's update); ``fallbacks`` counts the steps whose non-finite gradient components were
    zeroed; ``encoder``: amortized local posteriors (encoder.py), trained with theta, instead of
    the per-individual ones in ``local`` (then left as they are).

    A data-parallel fit (``program.comm`` over several processes): each process draws its own
    minibatches from its own individuals (its share of the batch, with its own random numbers),
    its ELBO scaled to its shard; theta's gradients and the losses are summed across the
    processes, so every process takes the same Adam step (the shards' sum is unbiased for the
    whole ELBO's gradient)."""
    comm = program.comm
    if comm.world > 1:
        if groups is not None or callback is not None or encoder is not None:
            raise ValueError("a data-parallel SVI has no genomic block, levels or encoder yet")
        seed = int(generator.initial_seed()) * 1_000_003 + comm.rank
        with torch.random.fork_rng(devices=[]):  # the draws of this process's ELBO, its own
            torch.manual_seed(seed)
            own = torch.Generator().manual_seed(seed)  # ctx's generator left as on every process
            return _run_svi(program, theta0, local, options, own, groups, callback, fallbacks, encoder)
    return _run_svi(program, theta0, local, options, generator, groups, callback, fallbacks, encoder)


def _run_svi(program, theta0, local, options, generator, groups, callback, fallbacks, encoder):
    comm = program.comm
    n = program.n_local
    lo, hi = shard_bounds(min(options.batch_size, program.n_individuals), comm.world, comm.rank)
    batch = min(hi - lo, n)
    decay = (options.lr_final / options.lr) ** (1.0 / max(options.max_steps, 1))
    if encoder is None:
        optim = ClippedAdam({"lr": options.lr, "lrd": decay, "clip_norm": 10.0})
    else:
        # the network's weights at a smaller step: Adam's first steps move every weight by about
        # lr at once, which at 0.02 sent the encoder's q (distilled from the start) to eta whose
        # Poisson rates overflowed (rapi: the ELBO per observation from -3 to -7e31 in one step)
        def per_param(name: str) -> dict:
            lr = options.lr if name == "theta" else ENCODER_LR
            return {"lr": lr, "lrd": decay, "clip_norm": 10.0}

        optim = ClippedAdam(per_param)
    elbo = Trace_ELBO(num_particles=options.num_particles, vectorize_particles=True, max_plate_nesting=1)
    trace = SVITrace()
    with pyro.get_param_store().scope():
        param = pyro.param("theta", theta0.detach().clone())
        # a draw far in a tail can overflow the structural model; its non-finite gradient
        # components are dropped for that step instead of poisoning Adam's moments
        param.unconstrained().register_hook(lambda g: comm.sum(_zero_nonfinite(g, fallbacks))[0])
        if encoder is None:
            guide = lambda idx: pyro_guide(program, local, idx)  # noqa: E731
        else:
            guide = lambda idx: amortized_guide(program, encoder, idx)  # noqa: E731
        svi = SVI(lambda idx: pyro_model(program, theta0, idx), guide, optim, elbo)
        order = _epoch_order(n, groups, generator).to(program.device)
        cursor, window_means, calm, recent = 0, [], 0, []
        bar = tqdm(total=options.max_steps, disable=not options.progress, desc="SVI", leave=False)
        trace.theta.append((0, param.detach().clone()))
        for step in range(options.max_steps):
            if cursor + batch > n:
                order = _epoch_order(n, groups, generator).to(program.device)
                cursor = 0
            idx = order[cursor : cursor + batch]
            cursor += batch
            theta = pyro.param("theta").detach()
            # Newton steps to the current mode (warm-started), then a variational correction
            if encoder is None:
                warm = bool(local.visited[idx].all())
                local.batched_rows = True
                try:
                    iters = local.warm_iter if warm else 20
                    local.refresh(theta, idx, max_iter=iters, vi_iter=1 if warm else 2)
                finally:
                    local.batched_rows = False
            loss = comm.sum_float(svi.step(idx))
            trace.elbo.append(-loss / program.n_obs)
            current = pyro.param("theta").detach()
            recent.append(current.clone())
            if len(recent) > 2 * options.window:
                recent.pop(0)
            trace.steps = step + 1
            if fallbacks is not None:
                fallbacks.svi_steps += 1
            bar.update(1)
            if trace.steps % options.window == 0:
                trace.theta.append((trace.steps, current.clone()))
                if callback is not None:
                    callback(pyro.param("theta").detach())
                window_means.append(sum(trace.elbo[-options.window :]) / options.window)
                bar.set_postfix(elbo_per_obs=f"{window_means[-1]:.4f}")
                if len(window_means) >= 2 and trace.steps >= options.min_steps:
                    gain = window_means[-1] - window_means[-2]
                    calm = calm + 1 if gain < options.tol * (1 + abs(window_means[-1])) else 0
                    if calm >= 2:
                        trace.converged = True
                        break
        bar.close()
        # Polyak-Ruppert averaging over the last two windows removes most of Adam's step noise
        theta = torch.stack(recent).mean(0)
    if not math.isfinite(float(theta.sum())):
        raise FloatingPointError(
            "SVI diverged (non-finite parameters); try other initial values or a smaller lr"
        )
    return theta, trace
