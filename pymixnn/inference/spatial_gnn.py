"""A graph neural network that maps one field observed at fixed irregular locations to its Matérn
hyperparameters (a neural Bayes estimator in the sense of Sainsbury-Dale, Richards, Zammit-Mangion
and Huser 2024), and its training on fields simulated from a prior.

The graph joins each location to its ``k`` nearest neighbours. Plain torch message passing:

1. a spatial graph convolution whose edge weights are learned functions of distance,
   w_f(d_ij) >= 0 for filters f = 1..F (they depend on the locations only, not on the field),
   aggregating each location's squared increments (u_i - u_j)^2 and products u_i u_j, where
   u = (z - mean z) / sd z is the standardized field: a learned local variogram per filter;
2. a round of message passing (each location's state updated from the mean of its neighbours');
3. mean pooling over locations, with the log of the pooled variogram filters, and a small network
   to the outputs.

The estimates are equivariant by construction: range = exp(m + s g_1) (m, s the prior's log-range
location and scale), sd = sd(z) exp(g_2) and nugget = sd(z) softplus(g_3), so a field shifted or
rescaled gives a shifted or rescaled estimate. The loss is the squared error on the natural scale
of each free hyperparameter divided by its prior standard deviation: the network approximates the
posterior mean, the Bayes estimator under that loss.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from scipy.spatial.distance import cdist
from torch import nn

from pymixnn.inference.field_graph import FieldGraph, field_graph
from pymixnn.inference.training import train_on_simulations
from pymixnn.model.matern import FieldPrior
from pymixnn.simulate.fields import correlation_matrices

__all__ = ["FieldGNN", "candidate_ranges", "train_field_gnn", "load_field_gnn", "gnn_estimates"]

GNN_FILTERS = 8
GNN_HIDDEN = 16
VECCHIA_RANGES = 12


class FieldGNN(nn.Module):
    """Field (B, n) -> raw outputs (B, P); see the module docstring. Node states are laid out
    (n, B, channels) and every aggregation over a graph is one sparse matrix product, so a field
    costs O(n (k + m F)) for the graphs and O(n) for the nodes."""

    def __init__(self, graph: FieldGraph, p: int):
        super().__init__()
        n, f, h, fv = graph.n, GNN_FILTERS, GNN_HIDDEN, len(graph.ranges)
        src = torch.as_tensor(graph.edges[0], dtype=torch.long)
        dst = torch.as_tensor(graph.edges[1], dtype=torch.long)
        k = src.numel() // n  # every location has the same number of neighbours
        self.n, self.k, self.fv = n, k, fv
        self._frozen = None  # the filters' weights and matrix, once estimation starts (eval mode)
        self.register_buffer(
            "length", torch.as_tensor(graph.lengths, dtype=torch.float32)[:, None], persistent=False
        )
        self.register_buffer(
            "mean_nb", self._csr(src, dst, torch.full((src.numel(),), 1.0 / k), n, n), persistent=False
        )
        # the learned filters' matrix (n F x n): row i F + f, the k neighbours of i in order
        rows = (torch.arange(n)[:, None, None] * f + torch.arange(f)[None, :, None]).expand(n, f, k)
        self.register_buffer(
            "filter_idx",
            torch.stack([rows.reshape(-1), dst.reshape(n, 1, k).expand(n, f, k).reshape(-1)]),
            persistent=False,
        )
        vecchia = self._csr(
            torch.as_tensor(graph.vecchia_rows, dtype=torch.long),
            torch.as_tensor(graph.vecchia_cols, dtype=torch.long),
            torch.as_tensor(graph.vecchia_values, dtype=torch.float32),
            fv * n,
            n,
        )
        self.register_buffer("vecchia", vecchia, persistent=False)
        self.register_buffer(
            "mean_log_var", torch.as_tensor(graph.mean_log_var, dtype=torch.float32), persistent=False
        )
        self.weight = nn.Sequential(nn.Linear(1, 32), nn.SiLU(), nn.Linear(32, f), nn.Softplus())
        # node layer on [log variograms, covariances, u^2, log squared Vecchia residuals] and a
        # message-passing layer on [state, neighbours' mean state]
        self.node = nn.Linear(2 * f + 1 + fv, h)
        self.message = nn.Linear(2 * h, h)
        self.head = nn.Sequential(
            nn.Linear(h + f + 2 * fv, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, p)
        )

    @staticmethod
    def _csr(rows, cols, values, m: int, n: int) -> torch.Tensor:
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (m, n), check_invariants=False)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used are stable
            warnings.simplefilter("ignore", UserWarning)
            return coo.coalesce().to_sparse_csr()

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        b, n = u.shape
        frozen = not (self.training or torch.is_grad_enabled())
        if frozen and self._frozen is not None:
            w, a = self._frozen
        else:
            w = self.weight(self.length).reshape(n, self.k, -1)  # (n, k, F), the same for every field
            values = w.permute(0, 2, 1).reshape(-1)
            shape = (n * w.shape[-1], n)
            a = torch.sparse_coo_tensor(
                self.filter_idx, values, shape, check_invariants=False, is_coalesced=True
            )
            if frozen:  # estimation: CSR is faster (it has no gradient for its values), kept for reuse
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    a = a.to_sparse_csr()
                self._frozen = (w, a)
        f = w.shape[-1]
        ut = u.T  # (n, B)
        agg = (a @ torch.cat([ut, ut.square()], 1)).reshape(n, f, 2 * b) / w.sum(1)[:, :, None]
        agg = agg.transpose(1, 2)  # (n, 2B, F)
        au, au2 = agg[:, :b], agg[:, b:]  # (n, B, F)
        u1 = ut[..., None]
        var = (u1.square() + au2 - 2.0 * u1 * au).clamp_min(0.0)  # local variograms, one per filter
        res2 = (self.vecchia @ ut).reshape(n, self.fv, b).transpose(1, 2).square()  # Vecchia residuals^2
        x = torch.cat([torch.log(var + 1e-3), u1 * au, u1.square(), torch.log(res2 + 1e-3)], -1)
        x = nn.functional.silu(self.node(x))  # (n, B, H)
        nb = (self.mean_nb @ x.reshape(n, -1)).reshape(x.shape)
        x = x + nn.functional.silu(self.message(torch.cat([x, nb], -1)))
        log_s = torch.log(res2.mean(0))  # (B, Fv)
        profile = -0.5 * (log_s + self.mean_log_var)  # Vecchia profile log-likelihoods
        pooled = torch.cat([x.mean(0), torch.log(var.mean(0) + 1e-3), profile, log_s], -1)
        return self.head(pooled)


def candidate_ranges(prior: FieldPrior, count: int = VECCHIA_RANGES) -> np.ndarray:
    """The Vecchia filters' candidate ranges: geometric over the prior's range support widened by
    1.5 on each side (the held value when the range is fixed)."""
    lo, hi = prior.bounds("range")
    return np.geomspace(lo / 1.5, hi * 1.5, count)


def standardize(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, sd) with u = (z - mean) / sd per field."""
    zc = z - z.mean(1, keepdim=True)
    sd = zc.square().mean(1, keepdim=True).sqrt().clamp_min(1e-12)
    return zc / sd, sd


def _estimates(raw: torch.Tensor, sd_z: torch.Tensor, prior: FieldPrior, stats: dict) -> torch.Tensor:
    """Natural-scale (B, 3) range, sd, nugget from the network's raw outputs."""
    out = torch.empty(raw.shape[0], 3, dtype=raw.dtype)
    col = 0
    for k, (name, law) in enumerate(zip(prior.names, prior.laws)):
        if law[0] == "fixed":
            out[:, k] = law[1]
            continue
        g = raw[:, col]
        col += 1
        if name == "range":
            out[:, k] = torch.exp(stats["log_range_mean"] + stats["log_range_sd"] * g)
        elif name == "sd":
            out[:, k] = sd_z[:, 0] * torch.exp(g)
        else:
            out[:, k] = sd_z[:, 0] * nn.functional.softplus(g)
    return out


def gnn_estimates(net: FieldGNN, fields: np.ndarray, prior: FieldPrior, stats: dict, batch: int = 256):
    """(m, 3) estimates of ``fields`` (m, n)."""
    out = []
    with torch.no_grad():
        for s in range(0, fields.shape[0], batch):
            u, sd_z = standardize(torch.as_tensor(fields[s : s + batch], dtype=torch.float32))
            out.append(_estimates(net(u), sd_z, prior, stats).double().numpy())
    return np.concatenate(out)


def train_field_gnn(
    loc: np.ndarray,
    prior: FieldPrior,
    nu: float,
    *,
    n_simulations: int,
    k: int = 16,
    ranges_per_batch: int = 16,
    fields_per_range: int = 4,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train on ``n_simulations`` fields drawn from ``prior`` at ``loc``: each Adam step draws
    ``ranges_per_batch`` ranges (one Cholesky each) and ``fields_per_range`` fields per range with
    their own sd and nugget; the learning rate decays from ``lr`` to lr/100 on a cosine. Returns the
    network's numpy state and the training record (losses, seconds)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    graph = field_graph(loc, nu, candidate_ranges(prior), k=k)
    dist = cdist(loc, loc)
    free = [j for j, law in enumerate(prior.laws) if law[0] != "fixed"]
    pilot = prior.sample(rng, 100_000)
    stats = {
        "log_range_mean": float(np.log(pilot[:, 0]).mean()),
        "log_range_sd": float(max(np.log(pilot[:, 0]).std(), 1e-3)),
        "loss_scale": [float(max(pilot[:, j].std(), 1e-8)) for j in range(3)],
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = FieldGNN(graph, len(free))
    per_step = ranges_per_batch * fields_per_range
    steps = max(1, int(n_simulations) // per_step)
    scale_t = torch.tensor(stats["loss_scale"], dtype=torch.float32)[free]

    def draw(m_ranges: int) -> tuple[np.ndarray, np.ndarray]:
        theta = prior.sample(rng, m_ranges * fields_per_range)
        theta[:, 0] = np.repeat(theta[::fields_per_range, 0], fields_per_range)
        chol = np.linalg.cholesky(correlation_matrices(dist, theta[::fields_per_range, 0], nu))
        eps = rng.standard_normal((m_ranges, fields_per_range, loc.shape[0]))
        f = np.einsum("bij,brj->bri", chol, eps).reshape(-1, loc.shape[0])
        z = theta[:, 1:2] * f + theta[:, 2:3] * rng.standard_normal(f.shape)
        return theta, z

    def loss_of(theta: np.ndarray, z: np.ndarray) -> torch.Tensor:
        u, sd_z = standardize(torch.as_tensor(z, dtype=torch.float32))
        est = _estimates(net(u), sd_z, prior, stats)[:, free]
        truth = torch.as_tensor(theta[:, free], dtype=torch.float32)
        return ((est - truth) / scale_t).square().mean()

    val_theta, val_z = draw(max(1, 512 // fields_per_range))
    losses, val_losses = train_on_simulations(
        net,
        steps,
        lr,
        lambda: loss_of(*draw(ranges_per_batch)),
        lambda: loss_of(val_theta, val_z),
        progress=progress,
        desc="spatial estimator",
    )
    return dict(
        weights={k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
        stats=stats,
        k=int(k),
        scale=graph.scale,
        steps=steps,
        n_simulations=steps * per_step,
        loss=losses,
        validation=val_losses,
        seconds=time.perf_counter() - t0,
    )


def load_field_gnn(state: dict, loc: np.ndarray, prior: FieldPrior, nu: float) -> FieldGNN:
    """The trained network from its numpy state (a throwaway initialization that leaves the
    caller's random state alone)."""
    graph = field_graph(loc, nu, candidate_ranges(prior), k=int(state["k"]))
    with torch.random.fork_rng(devices=[]):
        net = FieldGNN(graph, len(prior.free))
    weights = {k: torch.as_tensor(np.asarray(v)) for k, v in state["weights"].items()}
    net.load_state_dict(weights)
    return net.eval()
