"""A neural estimator of a whole data set's population parameters (:func:`pymixnn.amortize`).

Neural posterior estimation (Papamakarios & Murray 2016; Greenberg et al. 2019; for NLME with
log-normal random effects, Arruda et al. 2023; neural Bayes estimators, Sainsbury-Dale et al.
2024): data sets of one design are simulated from the model with their population parameters
drawn from the prior, and a network learns the map from a data set to a Gaussian (full covariance)
over those parameters on their unconstrained scale, by maximizing the log-density of the truth
(the expected KL from the true posterior, up to a constant). Trained once, it estimates a new data
set of that design in one forward pass.

The network reads a data set as a set of individuals, each the sequence of its records in time
order (Deep Sets over individuals, Zaheer et al. 2017):

    r_i = (x_ij, y_ij, dy_ij, d2y_ij, |d2y_ij|, present_ij)_j   (standardized per record position)
    g_i = psi(r_i)                                              (an MLP per individual)
    (m, L) = rho(mean_i g_i, mean_i g_i^2, log N)               (an MLP per data set)

so it does not depend on the order of individuals. Targets are standardized by the prior's mean
and sd of each parameter on its unconstrained scale. The simulator is batched torch
(a (B, N, T) tensor of observations per step) and uses the model's own structural function and
transforms; the residual error models are the continuous ones of ``Model.error``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from pymixnn.inference.training import train_on_simulations
from pymixnn.model import transforms as tr
from pymixnn.model.prior import Prior
from pymixnn.model.spec import Model

__all__ = ["SetNet", "NeuralSimulator", "train_estimator", "posterior_draws", "NEURAL_HIDDEN"]

# widths of the record, individual and data-set MLPs
NEURAL_HIDDEN = (128, 128)


class SetNet(nn.Module):
    """Data set (B, N, T, F) with a record mask (N, T) -> Gaussian (loc (B, p), tril (B, p, p))."""

    def __init__(self, n_records: int, n_features: int, p: int, hidden: tuple[int, int] = NEURAL_HIDDEN):
        super().__init__()
        h1, h2 = hidden
        self.p = p
        self.individual = nn.Sequential(
            nn.Linear(n_records * (n_features + 1), h1),
            nn.ReLU(),
            nn.Linear(h1, h1),
            nn.ReLU(),
            nn.Linear(h1, h1),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * h1 + 1, h2),
            nn.ReLU(),
            nn.Linear(h2, h2),
            nn.ReLU(),
            nn.Linear(h2, p + p * (p + 1) // 2),
        )
        rows, cols = torch.tril_indices(p, p)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)

    def forward(self, cells: torch.Tensor, mask: torch.Tensor):
        m = mask.to(cells.dtype).unsqueeze(-1).expand(*cells.shape[:-1], 1)  # (B, N, T, 1)
        rec = torch.cat([cells * m, m], -1).flatten(-2)  # an individual's records in time order
        g = self.individual(rec)  # (B, N, h)
        present = mask.any(-1).to(cells.dtype).unsqueeze(-1)  # individuals with at least one record
        n_ind = present.sum()
        mean = (g * present).sum(-2) / n_ind.clamp_min(1.0)
        second = (g.square() * present).sum(-2) / n_ind.clamp_min(1.0)
        out = self.head(torch.cat([mean, second, torch.log(n_ind).expand(*mean.shape[:-1], 1) / 6.0], -1))
        p = self.p
        loc = out[..., :p]
        tril = torch.zeros(*out.shape[:-1], p, p, dtype=out.dtype, device=out.device)
        tril[..., self.rows, self.cols] = out[..., p:]
        diag = nn.functional.softplus(torch.diagonal(tril, dim1=-2, dim2=-1) - 1.0) + 1e-4
        return loc, torch.tril(tril, -1) + torch.diag_embed(diag)


class NeuralSimulator:
    """Batched simulation of data sets of one design (x (N, T, q), mask (N, T)) from ``model`` at
    population parameters given on the natural scale (B, P) in ``prior.names`` order."""

    def __init__(self, model: Model, prior: Prior, x: torch.Tensor, mask: torch.Tensor):
        self.model, self.prior = model, prior
        self.x, self.mask = x, mask
        names = list(prior.names)
        self.fixed_idx = [names.index(p) for p in model.parameters]
        self.omega_idx = {p: names.index(f"omega2.{p}") for p in model.random}
        self.error_idx = {e: names.index(e) for e in model.error_parameters}

    def __call__(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Observations (B, N, T) at ``theta`` (B, P); the padded records hold zeros."""
        model = self.model
        b, (n, t) = theta.shape[0], self.mask.shape
        dtype, device = theta.dtype, theta.device
        cols = []
        for k, p in enumerate(model.parameters):
            kind = model.transforms[p]
            mu = tr.inverse(kind, theta[:, self.fixed_idx[k]])[:, None].expand(b, n)
            if p in self.omega_idx:
                sd = theta[:, self.omega_idx[p]].sqrt()[:, None]
                eta = torch.randn(b, n, generator=generator, dtype=dtype, device=device)
                mu = mu + sd * eta
            cols.append(tr.forward(kind, mu))
        psi = torch.stack(cols, -1)[:, :, None, :]  # (B, N, 1, P)
        f = model.function(psi, self.x.unsqueeze(0))  # (B, N, T)
        e = torch.randn(b, n, t, generator=generator, dtype=dtype, device=device)
        err = {k: theta[:, i][:, None, None] for k, i in self.error_idx.items()}
        if model.error == "constant":
            y = f + err["a"] * e
        elif model.error == "proportional":
            y = f + err["b"] * f.abs() * e
        elif model.error == "combined":
            y = f + torch.sqrt(err["a"] ** 2 + err["b"] ** 2 * f**2) * e
        else:  # exponential: log y = log f + a e
            y = f * torch.exp(err["a"] * e)
        return torch.where(self.mask, y, torch.zeros_like(y))


def _unconstrained(prior: Prior, theta: torch.Tensor) -> torch.Tensor:
    return torch.stack([tr.inverse(s, theta[..., k]) for k, s in enumerate(prior.scales)], -1)


def _natural(prior: Prior, phi: torch.Tensor) -> torch.Tensor:
    return torch.stack([tr.forward(s, phi[..., k]) for k, s in enumerate(prior.scales)], -1)


def _raw_features(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Records (B, N, T, q + 4) in time order: the x columns, y, y's first and second differences
    along an individual's records (0 where a neighbour is missing) and the second difference's
    absolute value (the residual error's footprint: without it the network learned the
    logistic design's sigma not at all in 10,000 steps)."""
    m = mask.to(y.dtype)
    d1 = torch.zeros_like(y)
    d1[..., 1:] = (y[..., 1:] - y[..., :-1]) * m[..., 1:] * m[..., :-1]
    d2 = torch.zeros_like(y)
    d2[..., 2:] = (d1[..., 2:] - d1[..., 1:-1]) * m[..., 2:] * m[..., 1:-1] * m[..., :-2]
    xs = x.expand(*y.shape, x.shape[-1])
    return torch.cat([xs, y.unsqueeze(-1), d1.unsqueeze(-1), d2.unsqueeze(-1), d2.abs().unsqueeze(-1)], -1)


def _features(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, stats: dict) -> torch.Tensor:
    """Records standardized by each record position's mean and sd over the prior's data sets, so
    that every position, early or late on the curve, reaches the network on the same scale."""
    return (_raw_features(x, y, mask) - stats["f_mean"]) / stats["f_sd"]


def _draw_theta(prior: Prior, rng: np.random.Generator, b: int, dtype) -> torch.Tensor:
    return torch.as_tensor(prior.sample(rng, b), dtype=dtype)


def train_estimator(
    model: Model,
    prior: Prior,
    x: torch.Tensor,
    mask: torch.Tensor,
    *,
    n_simulations: int,
    batch_size: int,
    seed: int,
    lr: float = 2e-3,
    progress: bool = True,
    validation: int = 512,
) -> dict:
    """Train the network on ``n_simulations`` simulated data sets (``batch_size`` per Adam step,
    learning rate decaying from ``lr`` to lr/100 on a cosine); returns its numpy state and the
    training record (losses, seconds). The weights' initialization, the prior draws and the
    simulations come from ``seed`` alone."""
    t0 = time.perf_counter()
    dtype = torch.float32
    x, mask = x.to(dtype), mask.bool()
    sim = NeuralSimulator(model, prior, x, mask)
    free = [k for k, law in enumerate(prior.laws) if law[0] != "fixed"]
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    # standardization from a pilot of 256 prior-predictive data sets
    pilot = _draw_theta(prior, rng, 256, dtype)
    with torch.no_grad():
        y = sim(pilot, gen)
        yy = y[:, mask]
        phi = _unconstrained(prior, _draw_theta(prior, rng, 100_000, torch.float64))[:, free]
    raw = _raw_features(x, y, mask)  # (256, N, T, F)
    m = mask.to(dtype)[None, :, :, None].expand(raw.shape[0], -1, -1, 1)
    cnt = m.sum((0, 1)).clamp_min(1.0)  # (T, 1): records at each position
    f_mean = (raw * m).sum((0, 1)) / cnt
    f_sd = (((raw - f_mean) * m).square().sum((0, 1)) / cnt).sqrt()
    stats = dict(
        f_mean=f_mean,
        f_sd=torch.where(f_sd > 1e-8, f_sd, torch.ones_like(f_sd)),
        t_mean=phi.mean(0).to(dtype),
        t_sd=phi.std(0).clamp_min(1e-8).to(dtype),
    )
    if not torch.isfinite(yy).all():
        raise ValueError("the model gave non-finite observations on draws from the prior; narrow the prior")
    with torch.random.fork_rng(devices=[]):  # the weights' initialization; the caller's state kept
        torch.manual_seed(int(seed))
        net = SetNet(mask.shape[-1], x.shape[-1] + 4, len(free))
    steps = max(1, int(n_simulations) // int(batch_size))

    def loss_of(theta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = (_unconstrained(prior, theta)[:, free] - stats["t_mean"]) / stats["t_sd"]
        loc, tril = net(_features(x, y, mask, stats), mask)
        return -torch.distributions.MultivariateNormal(loc, scale_tril=tril).log_prob(target).mean()

    val_theta = _draw_theta(prior, rng, validation, dtype)
    with torch.no_grad():
        val_y = sim(val_theta, gen)

    def step_loss() -> torch.Tensor:
        theta = _draw_theta(prior, rng, batch_size, dtype)
        with torch.no_grad():
            y = sim(theta, gen)
        return loss_of(theta, y)

    def validation_loss() -> float:
        chunks = range(0, validation, 64)
        return sum(float(loss_of(val_theta[s : s + 64], val_y[s : s + 64])) for s in chunks) / len(chunks)

    losses, val_losses = train_on_simulations(
        net, steps, lr, step_loss, validation_loss, progress=progress, desc="neural estimator"
    )
    return dict(
        weights={k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
        stats={k: v.detach().cpu().numpy() for k, v in stats.items()},
        free=free,
        n_features=x.shape[-1] + 4,
        n_records=mask.shape[-1],
        steps=steps,
        batch_size=int(batch_size),
        n_simulations=steps * int(batch_size),
        loss=losses,
        validation=val_losses,
        seconds=time.perf_counter() - t0,
    )


def load_net(state: dict) -> SetNet:
    """The trained network from its numpy state (its throwaway initialization leaves the caller's
    random state alone)."""
    with torch.random.fork_rng(devices=[]):
        net = SetNet(int(state["n_records"]), int(state["n_features"]), len(state["free"]))
    weights = {k: torch.as_tensor(np.asarray(v)) for k, v in state["weights"].items()}
    for k in ("rows", "cols"):
        weights[k] = weights[k].long()
    net.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in weights.items()})
    return net.eval()


@torch.no_grad()
def posterior_draws(
    net: SetNet,
    state: dict,
    prior: Prior,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    n_draws: int,
    seed: int,
) -> np.ndarray:
    """Posterior draws (B, n_draws, P) on the natural scale for data sets y (B, N, T) of design
    (x, mask); the fixed parameters at their values."""
    stats = {k: torch.as_tensor(np.asarray(v), dtype=torch.float32) for k, v in state["stats"].items()}
    loc, tril = net(_features(x.float(), y.float(), mask.bool(), stats), mask.bool())
    gen = torch.Generator().manual_seed(int(seed))
    eps = torch.randn(loc.shape[0], n_draws, loc.shape[-1], generator=gen)
    z = loc.double()[:, None, :] + (tril.double()[:, None] @ eps.double().unsqueeze(-1)).squeeze(-1)
    phi_free = stats["t_mean"].double() + stats["t_sd"].double() * z
    b = loc.shape[0]
    phi = torch.zeros(b, n_draws, len(prior.names), dtype=torch.float64)
    free = list(state["free"])
    phi[..., free] = phi_free
    out = _natural(prior, phi)
    for k, law in enumerate(prior.laws):
        if law[0] == "fixed":
            out[..., k] = law[1]
    return out.numpy()
