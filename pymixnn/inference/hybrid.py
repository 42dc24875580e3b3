"""Minibatch SVI of a hybrid model's network and population parameters (neural terms).

The population vector ``theta`` (mu | beta | omega | error; program.py) and the networks' weights
are trained together with Gaussian local posteriors q(eta_i) = N(m_i, diag s_i^2) by the
reparameterized ELBO on minibatches of individuals (Adam; decoupled weight decay 1e-4 on the
weights). Three stages use it (pymixnn/hybrid.py): ``"mechanistic"`` trains theta with the
networks at their start (output zero); ``"network"`` trains the weights with theta held; both
with the networks' random inputs and weights at zero; ``"all"`` trains everything.

Held-out individuals (``holdout`` of them, at least 5) give the early stopping: their local
posteriors are trained along, with theta and the weights detached, and every ``window`` steps
their ELBO on fixed draws (common random numbers) is the validation score; the best state is
kept. With ``penalty="minimal"`` the objective adds ``w * N * mean ||g(z)||^2`` over the
network's calls along the fitted trajectories; each time the validation score stops improving
``w`` is divided by 10 (from 1 to at most 1e-4), so the networks stay as small as the held-out
data allow (APHYNITY's constrained formulation by a validation-driven schedule). The random
inputs' mean is held at 0 and their variance at 1 (their scale is the first layer's), the
random last-layer weights' mean at 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from pymixnn.inference.program import Program, integrates
from pymixnn.model.neural import NeuralState

__all__ = [
    "TrainingOptions",
    "TrainingRecord",
    "train_hybrid",
    "record_inputs",
    "hybrid_program",
    "start_theta",
    "dynamics_share",
]

HOLDOUT_MIN = 5
WEIGHT_DECAY = 1e-4
PENALTY_START, PENALTY_FLOOR, PENALTY_STEP = 1.0, 1e-4, 10.0
VALIDATION_DRAWS = 8
LR_FINAL = 1 / 20
# an input whose sd along the start's trajectories is below this share of its root mean square is
# taken as unexplored there (a pure tanh unit saturates beyond |z| ~ 3: at sd < 0.1 rms a move of
# the input to 0 would already be 10 standard deviations)
SPREAD_MIN = 0.1
# an improvement of the validation score (per held-out individual): 0.1% of its size, at least 1e-3
IMPROVEMENT = 1e-3


@dataclass(frozen=True)
class TrainingOptions:
    max_steps: int = 2000
    lr: float = 0.02
    batch_size: int = 512
    num_particles: int = 4
    seed: int = 0
    holdout: float = 0.2
    window: int = 25
    patience: int = 8
    progress: bool = False
    holdout_every: int = 1  # the held-out posteriors' update every k-th step (an ODE model: 4)


@dataclass
class TrainingRecord:
    """One training stage: steps run, the step of the kept state, the validation scores (negative
    ELBO per held-out individual) and penalty weights per window, why it stopped, seconds."""

    stage: str
    steps: int = 0
    best_step: int = 0
    validation: list = field(default_factory=list)
    penalty_weight: list = field(default_factory=list)
    stopped: str = "max_steps"
    n_holdout: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(
            stage=self.stage,
            steps=self.steps,
            best_step=self.best_step,
            validation=[float(v) for v in self.validation],
            penalty_weight=[float(v) for v in self.penalty_weight],
            stopped=self.stopped,
            n_holdout=self.n_holdout,
            seconds=round(self.seconds, 3),
        )


def record_inputs(program: Program, state: NeuralState, theta: np.ndarray, eta: np.ndarray) -> None:
    """One evaluation at ``theta`` and the individuals' ``eta``: the networks' inputs seen along the
    trajectories set each term's centre (mean) and scale (standard deviation). An input that hardly
    moves there (sd below SPREAD_MIN of its root mean square: a pendulum's angle with no restoring
    force stays at its release angle) has no range to learn from: its centre is 0 and its scale its
    root mean square (1 when that is 0), so that the fitted trajectories' values, unknown yet, do not
    reach the first layer at (theta - mean) / 1e-8 and saturate every unit."""
    state.recorder.reset()
    state.recorder.inputs = True
    with torch.no_grad():
        t = torch.as_tensor(theta, dtype=program.dtype, device=program.device)
        program.log_likelihood(t, torch.as_tensor(eta, dtype=program.dtype, device=program.device), None)
    for name in state.terms:
        n, s1, s2 = state.recorder.moments.get(name, [0, 0.0, 0.0])
        if not n:
            continue
        mean = np.asarray(s1) / n
        rms = np.sqrt(np.maximum(np.asarray(s2) / n, 0.0))
        sd = np.sqrt(np.maximum(rms**2 - mean**2, 0.0))
        flat = sd <= SPREAD_MIN * rms
        state.center[name] = torch.as_tensor(np.where(flat, 0.0, mean), dtype=torch.float64)
        scale = np.where(flat, np.where(rms > 0, rms, 1.0), sd)
        state.scale[name] = torch.as_tensor(scale, dtype=torch.float64)
    state.recorder.reset()


def _theta_masks(program: Program, neural_cols: list[int], inputs: list[int], stage: str) -> torch.Tensor:
    """1 where theta trains: never the neural columns' mu nor the random inputs' log sd; before
    stage "all" none of the neural columns' Omega rows (their effects sit at zero there, where
    the prior alone would shrink their sd to nothing: random_weights started stage "all" with sd
    e^-40 and an ELBO of -1e21)."""
    lay = program.layout
    mask = torch.ones(lay.size, dtype=program.dtype, device=program.device)
    for j in neural_cols:
        mask[lay.mu.start + j] = 0.0
    random = [program.params[k] for k in program.random_index]
    rows, cols = torch.tril_indices(lay.n_random, lay.n_random)
    for j in neural_cols:
        if stage == "all" and j not in inputs:
            continue
        diagonal_only = stage == "all"
        r = random.index(program.params[j])
        if not lay.full_omega:
            mask[lay.omega.start + r] = 0.0
            continue
        at = (rows == r) & (cols == r) if diagonal_only else (rows == r)
        mask[lay.omega.start + torch.nonzero(at)[:, 0]] = 0.0
    return mask


def train_hybrid(
    program: Program,
    state: NeuralState,
    theta0: np.ndarray,
    loc0: np.ndarray,
    sd0: np.ndarray,
    stage: str,
    options: TrainingOptions,
    neural_cols: list[int],
    input_cols: list[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, TrainingRecord]:
    """Train ``stage`` ("network" or "all") from theta0 and the local posteriors (loc0, sd0 (N, d));
    returns the kept theta, loc, sd and the record. The weights in ``state`` are left at the kept
    values (detached)."""
    t0 = time.perf_counter()
    dev, dt = program.device, program.dtype
    offset = {"mechanistic": 0, "network": 1, "all": 2}[stage]
    gen = torch.Generator().manual_seed(int(options.seed) + 7919 * offset)
    rng = np.random.default_rng(int(options.seed) + 11 + offset)
    N = program.n_individuals
    n_val = int(round(options.holdout * N)) if N * options.holdout >= HOLDOUT_MIN else 0
    order = rng.permutation(N)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    record = TrainingRecord(stage=stage, n_holdout=n_val)

    theta = torch.tensor(theta0, dtype=dt, device=dev, requires_grad=stage != "network")
    mask = _theta_masks(program, neural_cols, input_cols, stage)
    loc = torch.tensor(loc0, dtype=dt, device=dev, requires_grad=True)
    log_sd = torch.tensor(np.log(np.maximum(sd0, 1e-6)), dtype=dt, device=dev, requires_grad=True)
    learn = stage != "mechanistic"  # stage 1: the networks at their start (output zero)
    weights = {k: v.detach().to(dev, dt).clone().requires_grad_(learn) for k, v in state.weights.items()}
    state.weights = weights
    state.random_off = stage != "all"
    random_cols = torch.zeros(loc.shape[-1], dtype=torch.bool, device=dev)
    for j in neural_cols:
        random_cols[[program.params[k] for k in program.random_index].index(program.params[j])] = True
    groups = [dict(params=[loc, log_sd], weight_decay=0.0)]
    if learn:
        groups.append(dict(params=list(weights.values()), weight_decay=WEIGHT_DECAY))
    if stage != "network":
        groups.append(dict(params=[theta], weight_decay=0.0))
    opt = torch.optim.AdamW(groups, lr=options.lr)
    # the learning rate decays geometrically to lr / 20 at max_steps (as the SVI loop's)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: LR_FINAL ** (k / max(int(options.max_steps), 1)))
    penalty = {t.penalty for t in state.terms.values()}
    w_pen = PENALTY_START if "minimal" in penalty and learn else 0.0
    l2 = "l2" in penalty and learn
    eps_val = torch.randn(VALIDATION_DRAWS, max(n_val, 1), loc.shape[-1], generator=gen, dtype=dt).to(dev)

    def elbo(idx_np: np.ndarray, th: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(idx_np, device=dev)
        eta = loc[idx] + torch.exp(log_sd[idx]) * draws
        entropy = log_sd[idx]
        if stage != "all":  # the network's random columns at zero, their q left as it is
            eta = torch.where(random_cols, torch.zeros_like(eta), eta)
            entropy = torch.where(random_cols, torch.zeros_like(entropy), entropy)
        value = program.log_likelihood(th, eta, idx) + program.log_prior(th, eta, idx)
        value = torch.where(torch.isfinite(value), value, torch.full_like(value, -1e10))
        return value.mean(0).sum() + entropy.sum()

    def score() -> float:
        if not n_val:
            return float("nan")
        held = state.weights
        state.weights = {k: v.detach() for k, v in held.items()}
        with torch.no_grad():
            value = -float(elbo(val, theta.detach(), eps_val)) / n_val
        state.weights = held
        return value

    B = min(int(options.batch_size), len(train))
    # a model solved by an ODE solver: one draw per individual and step (each draw a whole solve)
    particles = 1 if integrates(program.model) else int(options.num_particles)
    best, best_state, stale = np.inf, None, 0
    bar = tqdm(total=options.max_steps, disable=not options.progress, desc=f"neural ({stage})", leave=False)
    for step in range(1, int(options.max_steps) + 1):
        batch = train if len(train) <= B else np.sort(rng.choice(train, size=B, replace=False))
        draws = torch.randn(particles, len(batch), loc.shape[-1], generator=gen, dtype=dt).to(dev)
        state.recorder.reset()
        state.recorder.squares = bool(w_pen)
        loss = -elbo(batch, theta, draws) * (len(train) / len(batch))
        if w_pen:
            loss = loss + w_pen * len(train) * state.recorder.penalty()
        if l2:
            loss = loss + 0.5 * sum((w * w).sum() for w in weights.values())
        state.recorder.squares = False
        if n_val and step % options.holdout_every == 0:  # the held-out posteriors follow, detached
            vb = np.sort(rng.choice(val, size=min(B, n_val), replace=False))
            vd = torch.randn(particles, len(vb), loc.shape[-1], generator=gen, dtype=dt).to(dev)
            state.weights = {k: v.detach() for k, v in weights.items()}
            loss = loss - elbo(vb, theta.detach(), vd) * (n_val / len(vb))
            state.weights = weights
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if theta.grad is not None:
            theta.grad.mul_(mask)
            theta.grad.nan_to_num_(0.0, 0.0, 0.0)
        for p in [loc, log_sd, *weights.values()]:
            if p.grad is not None:
                p.grad.nan_to_num_(0.0, 0.0, 0.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            log_sd.clamp_(-12.0, 5.0)
        record.steps = step
        bar.update(1)
        if step % options.window and step != options.max_steps:
            continue
        value = score() if n_val else -float(loss.detach()) / max(len(train), 1)
        record.validation.append(value)
        record.penalty_weight.append(w_pen)
        if value < best - IMPROVEMENT * (1.0 + abs(best if np.isfinite(best) else value)):
            best, stale, record.best_step = value, 0, step
            best_state = (
                theta.detach().clone(),
                loc.detach().clone(),
                log_sd.detach().clone(),
                {k: v.detach().clone() for k, v in weights.items()},
            )
        else:
            stale += 1
        if stale >= options.patience:
            if w_pen > PENALTY_FLOOR:
                w_pen, stale = max(w_pen / PENALTY_STEP, PENALTY_FLOOR), 0
                continue
            record.stopped = "patience"
            break
    bar.close()
    if best_state is None:
        best_state = (
            theta.detach(),
            loc.detach(),
            log_sd.detach(),
            {k: v.detach() for k, v in weights.items()},
        )
    th, lc, ls, ws = best_state
    state.weights = {k: v.detach().to(torch.float64).cpu() for k, v in ws.items()}
    state.random_off = False
    state.recorder.reset()
    record.seconds = time.perf_counter() - t0
    return th.cpu().numpy(), lc.cpu().numpy(), np.exp(ls.cpu().numpy()), record


def hybrid_program(model, data, design, observation, seed: int) -> Program:
    """The log-density of a hybrid model's fit, in float64 on the CPU."""
    return Program(
        model,
        data,
        design,
        device=torch.device("cpu"),
        dtype=torch.float64,
        seed=seed,
        observation=observation,
    )


def dynamics_share(program: Program, state: NeuralState, theta: np.ndarray, eta: np.ndarray) -> tuple:
    """The share of the fitted dynamics the neural terms carry: ||g - g0|| / ||g|| over every
    evaluation of the right-hand side (an ODE) or of the curve (closed form) along the
    individuals' fitted trajectories, g with the terms and g0 with their outputs at zero; and each
    term's input range along them {name: (low, high)}."""
    rec = state.recorder
    rec.reset()
    rec.share = rec.inputs = True
    try:
        with torch.no_grad():
            t, e = (torch.as_tensor(v, dtype=program.dtype) for v in (theta, eta))
            program.log_likelihood(t, e, None)
        total, part = rec.total, rec.neural_part
        ranges = {name: (rec.low.get(name), rec.high.get(name)) for name in state.terms}
    finally:
        rec.reset()
    return (float(np.sqrt(part / total)) if total > 0 else float("nan")), ranges


def start_theta(
    program: Program, model, candidates, n_new: int, log_sd_new: np.ndarray, seed: int
) -> np.ndarray:
    """The mechanistic stage's start: the pooled fits of the start candidates (best kept;
    inference/start.py), then Laplace-EM iterations on a subsample; the networks' random columns
    then get mean 0 and log sd ``log_sd_new``."""
    from pymixnn.inference.laplace import LocalPosteriors
    from pymixnn.inference.laws import raw_from_tril
    from pymixnn.inference.start import best_start, warmup

    gen = torch.Generator().manual_seed(int(seed))
    n = program.n_individuals
    sub = torch.randperm(n, generator=gen)[: (200 if integrates(program.model) else 2000)].sort().values
    theta, _ = best_start(program, model, candidates, sub)
    local = LocalPosteriors(program, program.omega_tril(theta))
    theta = warmup(program, theta, local, sub, 10)
    lay = program.layout
    d1 = lay.n_random - n_new
    L = program.omega_tril(theta).detach().clone()
    L[d1:, :] = 0.0
    L[:, d1:] = 0.0
    L[d1:, d1:] = torch.diag(torch.exp(torch.as_tensor(log_sd_new, dtype=L.dtype)))
    theta = theta.detach().clone()
    theta[lay.omega] = raw_from_tril(L, lay.full_omega)
    theta[lay.n_params - n_new : lay.n_params] = 0.0
    return theta.cpu().numpy()
