"""Amortized local posteriors: one network q(eta_i | data_i) for every individual (``local="amortized"``).

A permutation-invariant set encoder (Deep Sets: Zaheer et al. 2017; for NLME, the amortized VI of
Li, Prague, Thiebaut & Clairon) maps an individual's observation records, each a vector of
features (its x columns, log|y|, the endpoint, the censoring flag and the number of trials where
the data have them, and y), and its covariates to a Gaussian with full covariance over eta_i:

    h_ij = phi(features_ij)                              (an MLP per record)
    s_i = [mean_j h_ij, log(1 + n_i) scaled, z_i]         (masked mean over the records; z_i: covariates)
    (m_i, L_i) = rho(s_i)                                 (an MLP; L_i lower triangular, diag softplus)

The network is distilled from the start's per-individual posteriors (amortized.distil), then
trained jointly with the population parameters by minibatch SVI (the ELBO's reparameterized
gradient, svi.py), so the variational state does not grow with N and an individual the SVI never
visited, or one not in the fit, gets its posterior in one forward pass. Its last layer starts at
zero: before the distillation every q_i is N(0, Omega) at the start values.

Features are standardized by their mean and sd over the fitted data's observed records (kept
with the weights: new data are scaled the same way). The plain numpy state
(:meth:`Encoder.state` / :meth:`Encoder.from_state`) crosses into the results layer and the
saved file.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["Encoder", "cell_features", "data_cells", "ENCODER_HIDDEN", "DOSE_FEATURES"]

# width of both MLPs (measured on the logistic simulation: 32 left a mean amortization gap of
# 0.9 nat per individual, 64 gave 0.4; 128 0.35 at twice the cost)
ENCODER_HIDDEN = 64
# aux columns (Data.aux_cols) that describe a record and are fed to the encoder
_AUX_FEATURES = ("endpoint", "censored", "trials")
# features of a dose record of event data (data_cells), appended to every record's (zero on
# observations): dose flag, log(1 + AMT), log(1 + RATE) of a given rate, modeled rate or duration
# (RATE -1/-2), CMT, SS, II
DOSE_FEATURES = ("dose", "log1p_amt", "log1p_rate", "modeled_rate", "cmt", "ss", "ii")


def cell_features(x: torch.Tensor, y: torch.Tensor, aux: dict[str, torch.Tensor]) -> torch.Tensor:
    """Features of every padded record, (N, T, F): x's columns, y, log(|y| + 1e-3) and the aux
    columns that describe a record (endpoint code, censoring flag, trials)."""
    xs = x if x.dim() == 3 else x.unsqueeze(-1)
    cols = [xs, torch.log(y.abs() + 1e-3).unsqueeze(-1)]
    cols += [aux[k].unsqueeze(-1) for k in _AUX_FEATURES if k in aux]
    cols.append(y.unsqueeze(-1))
    return torch.cat([c.to(y.dtype) for c in cols], dim=-1)


def _dose_records(events, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dose records (EVID 1 and 4) of the individuals at ``positions`` of the event table,
    packed to the left: times (N, K), DOSE_FEATURES (N, K, 7) and validity (N, K); K >= 1."""
    pad = events.padded()
    dose = pad["valid"] & np.isin(pad["evid"], (1, 4))
    dose = dose[positions]
    order = np.argsort(~dose, axis=1, kind="stable")  # doses first, in time order
    k = max(int(dose.sum(1).max()) if len(positions) else 0, 1)
    take = lambda a: np.take_along_axis(a[positions], order, axis=1)[:, :k]  # noqa: E731
    valid = take(dose)
    rate = take(pad["rate"])
    feats = np.stack(
        [
            np.ones_like(rate),
            np.log1p(np.abs(take(pad["amt"]))),
            np.log1p(np.clip(rate, 0.0, None)),
            (rate < 0).astype(float),
            take(pad["cmt"]).astype(float),
            take(pad["ss"]).astype(float),
            take(pad["ii"]),
        ],
        axis=-1,
    )
    return np.where(valid, take(pad["time"]), 0.0), np.where(valid[..., None], feats, 0.0), valid


def data_cells(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    aux: dict[str, torch.Tensor],
    x_cols: list[str],
    events=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's records of a data set's padded tensors: (cells (N, R, F), mask (N, R)).

    Without events, the observation records of :func:`cell_features`. With an event table
    (``Data.from_nonmem``), the x columns that locate a record in it (the individual's and the
    record's positions) are left out, and the individual's dose records join its observations as
    records of their own: the time column holds the dose time and :data:`DOSE_FEATURES` describe
    it (zero on observations), so that the posterior can follow the doses (a doubled dose, an
    infusion instead of a bolus)."""
    from pymixnn.data.nonmem import INDEX_COLUMN, RECORD_COLUMN

    xs = x if x.dim() == 3 else x.unsqueeze(-1)
    if events is None:
        return cell_features(xs, y, aux), mask
    keep = [j for j, c in enumerate(x_cols) if c not in (INDEX_COLUMN, RECORD_COLUMN)]
    cells = cell_features(xs[..., keep], y, aux)
    n, t, f = cells.shape
    positions = xs[:, 0, x_cols.index(INDEX_COLUMN)].round().long().cpu().numpy()
    times, feats, valid = _dose_records(events, positions)
    as_t = lambda a: torch.as_tensor(a, dtype=cells.dtype, device=cells.device)  # noqa: E731
    obs = torch.cat([cells, cells.new_zeros(n, t, len(DOSE_FEATURES))], dim=-1)
    doses = torch.cat([cells.new_zeros(n, times.shape[1], f), as_t(feats)], dim=-1)
    doses[..., 0] = as_t(times)  # x column 0 is time
    valid_t = torch.as_tensor(valid, device=mask.device)
    return torch.cat([obs, doses], dim=1), torch.cat([mask.bool(), valid_t], dim=1)


class _Net(nn.Module):
    def __init__(self, n_cell: int, n_ind: int, d: int, hidden: int, init_sd: np.ndarray):
        super().__init__()
        self.d = d
        self.phi = nn.Sequential(nn.Linear(n_cell, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU())
        self.rho = nn.Sequential(
            nn.Linear(hidden + 1 + n_ind, hidden), nn.ELU(), nn.Linear(hidden, d + d * (d + 1) // 2)
        )
        last = self.rho[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        # softplus(0 + shift) = the start's prior sd: q_i starts as the prior
        sd = torch.as_tensor(init_sd, dtype=torch.float64)
        self.register_buffer("diag_shift", torch.log(torch.expm1(sd.clamp_min(1e-3))))
        rows, cols = torch.tril_indices(d, d)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)

    def forward(self, cells: torch.Tensor, mask: torch.Tensor, ind: torch.Tensor):
        m = mask.to(cells.dtype).unsqueeze(-1)
        h = self.phi(cells) * m
        n = m.sum(-2)
        pooled = h.sum(-2) / n.clamp_min(1.0)
        s = torch.cat([pooled, torch.log1p(n) / 3.0, ind], dim=-1)
        out = self.rho(s)
        d = self.d
        loc, raw = out[..., :d], out[..., d:]
        tril = torch.zeros(*out.shape[:-1], d, d, dtype=out.dtype, device=out.device)
        tril[..., self.rows, self.cols] = raw
        diag = nn.functional.softplus(torch.diagonal(tril, dim1=-2, dim2=-1) + self.diag_shift) + 1e-5
        tril = torch.tril(tril, -1) + torch.diag_embed(diag)
        return loc, tril


def _moments(rows: torch.Tensor, key: str) -> dict:
    """Mean and sd of each column of ``rows`` (n, k) as numpy (0 and 1 where undefined)."""
    k = rows.shape[-1]
    if rows.shape[0] < 2 or k == 0:
        return {f"{key}_mean": np.zeros(k), f"{key}_sd": np.ones(k)}
    return {f"{key}_mean": rows.mean(0).cpu().numpy(), f"{key}_sd": rows.std(0).cpu().numpy()}


class Encoder:
    """The set encoder over one data set's padded tensors, with its standardization."""

    def __init__(
        self,
        cells: torch.Tensor,
        mask: torch.Tensor,
        ind: torch.Tensor,
        d: int,
        init_sd: np.ndarray,
        *,
        hidden: int = ENCODER_HIDDEN,
        seed: int = 0,
        stats: dict | None = None,
    ):
        dtype, device = cells.dtype, cells.device
        if stats is None:
            stats = {**_moments(cells[mask.bool()], "c"), **_moments(ind, "i")}
        self.stats = {k: np.asarray(v, dtype=float) for k, v in stats.items()}
        t = {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in self.stats.items()}
        safe = lambda s: torch.where(s > 1e-12, s, torch.ones_like(s))  # noqa: E731  constant features
        self.cells = (cells - t["c_mean"]) / safe(t["c_sd"]) * mask.unsqueeze(-1).to(dtype)
        self.ind = (ind - t["i_mean"]) / safe(t["i_sd"])
        self.mask = mask
        self.hidden, self.init_sd = int(hidden), np.asarray(init_sd, dtype=float)
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(int(seed))  # the weights' initialization; the caller's state restored
        try:
            self.net = _Net(cells.shape[-1], ind.shape[-1], d, self.hidden, self.init_sd)
        finally:
            torch.random.set_rng_state(gen_state)
        self.net.to(device=device, dtype=dtype)

    def __call__(self, idx: torch.Tensor | None = None):
        """q's location (B, d) and Cholesky factor (B, d, d) for the individuals ``idx`` (None: all)."""
        if idx is None:
            return self.net(self.cells, self.mask, self.ind)
        return self.net(self.cells[idx], self.mask[idx], self.ind[idx])

    @torch.no_grad()
    def all(self, chunk: int = 20_000) -> tuple[torch.Tensor, torch.Tensor]:
        """q for every individual, in chunks (one forward pass each)."""
        n = self.cells.shape[0]
        locs, trils = [], []
        for s in range(0, n, chunk):
            idx = torch.arange(s, min(s + chunk, n), device=self.cells.device)
            loc, tril = self(idx)
            locs.append(loc)
            trils.append(tril)
        return torch.cat(locs), torch.cat(trils)

    def n_weights(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def state(self) -> dict:
        """Plain numpy state: weights, standardization, sizes (for the results and the saved file)."""
        return dict(
            hidden=self.hidden,
            init_sd=self.init_sd.tolist(),
            stats={k: v.tolist() for k, v in self.stats.items()},
            weights={k: v.detach().cpu().numpy().tolist() for k, v in self.net.state_dict().items()},
        )

    @classmethod
    def from_state(
        cls, state: dict, cells: torch.Tensor, mask: torch.Tensor, ind: torch.Tensor, d: int
    ) -> Encoder:
        """The fitted encoder over new data's tensors (scaled by the fitted data's statistics)."""
        enc = cls(
            cells, mask, ind, d, np.asarray(state["init_sd"]), hidden=state["hidden"], stats=state["stats"]
        )
        weights = {k: torch.as_tensor(np.asarray(v), dtype=cells.dtype) for k, v in state["weights"].items()}
        for k in ("rows", "cols"):
            weights[k] = weights[k].long()
        enc.net.load_state_dict(weights)
        return enc


def log_det_tril(tril: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.diagonal(tril, dim1=-2, dim2=-1)).sum(-1)


def gaussian_entropy(tril: torch.Tensor) -> torch.Tensor:
    d = tril.shape[-1]
    return 0.5 * d * (1.0 + math.log(2 * math.pi)) + log_det_tril(tril)
