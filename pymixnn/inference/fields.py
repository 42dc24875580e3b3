"""Priors of the spatial fields in the level block (levels.py): a field is a component whose
effects are its values at the locations (``kind="gp"``) or at the cells of a grid
(``kind="ar1xar1"``), with a structured covariance whose few hyperparameters the block estimates.

Each prior is handed to the block as its precision and the log-determinant of its covariance:

- ``gp``: K = sd^2 (rho(d / range) + 1e-8 I) over the locations' distances, rho(d) = exp(-d)
  (exponential) or exp(-d^2) (Gaussian); its inverse and log|K| from a Cholesky (dense, n x n).
  Raw parameters: log sd, and the logit of the range's place between a tenth of the closest two
  locations' distance and three times the farthest (beyond, the field is a constant the
  intercept already holds).
- ``matern``: not a precision; the block's nearest-neighbour algebra (vecchia.py) takes the
  field's (sd, range) themselves, with the gp's raw parameters and bounds.
- ``ar1xar1``: Cov = sd^2 R_row (x) R_col with AR1 correlations rho^|i - j|, whose precision is
  sparse and exact: kron(Q_row, Q_col) / sd^2, Q an AR1 precision (tridiagonal:
  [1, -rho; -rho, 1 + rho^2, -rho; ...; -rho, 1] / (1 - rho^2)), and
  log|Cov| = n log sd^2 + n_col (n_row - 1) log(1 - rho_row^2) + n_row (n_col - 1) log(1 - rho_col^2)
  (closed form, O(1)). Raw parameters: log sd, and r with rho = rho_max tanh(r) for each AR1
  correlation, rho_max = exp(-1 / (3 (n - 1))) over n rows (columns): the correlation across the
  whole grid stays above exp(-1/3), as a gp's range stays below three times the farthest distance
  (beyond, the field is a constant the intercept already holds), and the line search of the
  hyperparameters' L-BFGS cannot reach a singular precision.
"""

from __future__ import annotations

import torch

from pymixnn.model.spatial import kernel_correlation

__all__ = ["ENTRY_NAMES", "ar1_precision", "field_prior", "field_raw_start", "field_values", "floor_raw"]

# the reported entries of a field, rows spatial.<p>.<entry> of the parameter table
ENTRY_NAMES = {"gp": ("sd", "range"), "ar1xar1": ("sd", "rho_row", "rho_col"), "matern": ("sd", "range")}
# the raw value of an AR1 correlation kept within +-RHO_RAW_MAX (tanh: 1 - 1e-5)
RHO_RAW_MAX = 6.0


def rho_max(n: int) -> float:
    """The largest AR1 correlation over n rows (or columns): rho^(n-1) = exp(-1/3)."""
    return float(torch.exp(torch.tensor(-1.0 / (3 * max(n - 1, 1)))))


def range_bounds(dist: torch.Tensor) -> tuple[float, float]:
    """A gp field's range lies between a tenth of the closest two locations' distance and three
    times the farthest."""
    return float(dist[dist > 0].min()) / 10, 3 * float(dist.max())


def field_values(
    kind: str, raw: torch.Tensor, dist: torch.Tensor | None, grid: tuple[int, int] | None = None
) -> torch.Tensor:
    """A field's reported entries (natural scale) from its raw parameters: (sd, range) of a gp,
    (sd, rho_row, rho_col) of an AR1 x AR1 grid (its shape ``grid``); a Matérn field's as a gp's
    (its ``dist`` a summary: smallest, median, largest distance)."""
    if kind in ("gp", "matern"):
        lo, hi = range_bounds(dist)
        return torch.stack([raw[0].exp(), lo + (hi - lo) * torch.sigmoid(raw[1])])
    return torch.stack(
        [raw[0].exp(), rho_max(grid[0]) * torch.tanh(raw[1]), rho_max(grid[1]) * torch.tanh(raw[2])]
    )


def field_raw_start(
    kind: str,
    log_sd: torch.Tensor,
    dist: torch.Tensor | None,
    grid: tuple[int, int] | None = None,
    start_range: float | None = None,
) -> torch.Tensor:
    """Starting raw parameters: the given log sd, a gp or Matérn range ``start_range`` (the
    user's range_init; default a third of the median distance; kept within the range's bounds),
    AR1 correlations of 0.5."""
    if kind in ("gp", "matern"):
        lo, hi = range_bounds(dist)
        r = float(dist[dist > 0].median()) / 3 if start_range is None else start_range
        place = min(max((r - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        return torch.stack(
            [log_sd, torch.logit(torch.tensor(place, dtype=log_sd.dtype, device=log_sd.device))]
        )
    rho = 0.5 / torch.tensor([rho_max(n) for n in grid], dtype=log_sd.dtype, device=log_sd.device)
    rho = rho.atanh()
    return torch.cat([log_sd.reshape(1), rho])


def floor_raw(kind: str, raw: torch.Tensor) -> torch.Tensor:
    """A field's sd floored (a field without variation: its effects stay finite), the raw values
    of its AR1 correlations bounded (their gradient vanishes beyond)."""
    raw = raw.clone()
    raw[0] = raw[0].clamp_min(-12.0)
    if kind == "ar1xar1":
        raw[1:] = raw[1:].clamp(-RHO_RAW_MAX, RHO_RAW_MAX)
    return raw


def ar1_precision(n: int, rho: torch.Tensor) -> torch.Tensor:
    """The (n x n) tridiagonal precision of a stationary AR1 with unit variance and correlation rho."""
    dt = dict(dtype=rho.dtype, device=rho.device)
    diag = (
        torch.ones(n, **dt)
        + rho**2
        * torch.cat([torch.zeros(1, **dt), torch.ones(max(n - 2, 0), **dt), torch.zeros(1, **dt)])[:n]
    )
    off = -rho * torch.ones(n - 1, **dt)
    return (torch.diag(diag) + torch.diag(off, 1) + torch.diag(off, -1)) / (1 - rho**2)


def field_prior(
    kind: str,
    values: torch.Tensor,
    dist: torch.Tensor | None = None,
    kernel: str | None = None,
    grid: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The field's prior precision over its effects and the log-determinant of its covariance,
    from its reported entries ``values``."""
    if kind == "gp":
        sd, rng = values[0], values[1]
        scaled = dist / rng
        rho = kernel_correlation(kernel, scaled)
        eye = torch.eye(rho.shape[0], dtype=rho.dtype, device=rho.device)
        L = torch.linalg.cholesky(sd**2 * (rho + 1e-8 * eye))  # a Gaussian kernel needs the jitter
        return torch.cholesky_inverse(L), 2 * torch.log(torch.diagonal(L)).sum()
    n_row, n_col = grid
    sd, r_row, r_col = values[0], values[1], values[2]
    prec = torch.kron(ar1_precision(n_row, r_row), ar1_precision(n_col, r_col)) / sd**2
    logdet = (
        n_row * n_col * torch.log(sd**2)
        + n_col * (n_row - 1) * torch.log1p(-(r_row**2))
        + n_row * (n_col - 1) * torch.log1p(-(r_col**2))
    )
    return prec, logdet
