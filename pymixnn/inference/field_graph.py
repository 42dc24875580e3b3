"""The graphs a spatial estimator's network runs on, built once from the locations:

- a multi-scale neighbour graph (each location joined to its neighbours of distance ranks spread
  geometrically from the nearest to n/4), on which the network learns variogram filters;
- Vecchia conditioning sets (Vecchia 1988; Guinness 2018): in a maximin ordering of the locations,
  each one's ``m`` nearest predecessors, with the Matérn kriging weights and conditional variances
  at a grid of candidate ranges. A field's standardized prediction residuals under candidate range
  r, e_i = (u_i - sum_j a_ij(r) u_j) / sqrt(v_i(r)), give the Vecchia approximation of its profile
  log-likelihood at r, -n/2 log(mean e^2) - 1/2 sum log v_i(r): one sparse product per field.

Everything here depends on the locations (and nu and the candidate ranges), never on a field, and
is recomputed identically when a saved estimator is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from pymixnn.model.matern import matern_correlation
from pymixnn.simulate.fields import JITTER

__all__ = ["FieldGraph", "field_graph", "maximin_order"]


@dataclass(frozen=True)
class FieldGraph:
    """Edges (2, E) sorted by source then target with lengths / scale; the Vecchia residual
    operator as (n F x n) sparse triplets (row i F + f: location i, candidate range f) sorted by
    row then column, and the mean log
    conditional variance per candidate range (F,)."""

    n: int
    edges: np.ndarray
    lengths: np.ndarray
    scale: float
    vecchia_rows: np.ndarray
    vecchia_cols: np.ndarray
    vecchia_values: np.ndarray
    mean_log_var: np.ndarray
    ranges: np.ndarray


def _neighbours(loc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    n = loc.shape[0]
    top = min(n - 1, max(int(k), n // 4))
    ranks = np.unique(np.round(np.geomspace(1, top, int(k))).astype(int))
    dist, idx = cKDTree(loc).query(loc, k=top + 1)
    order = np.argsort(idx[:, ranks], axis=1)  # each location's neighbours in index order
    dst = np.take_along_axis(idx[:, ranks], order, 1).reshape(-1)
    d = np.take_along_axis(dist[:, ranks], order, 1).reshape(-1)
    src = np.repeat(np.arange(n), ranks.size)
    scale = float(d.max())
    return np.stack([src, dst]), d / scale, scale


def maximin_order(loc: np.ndarray) -> np.ndarray:
    """A maximin ordering: first the location nearest the centroid, then each time the one
    farthest from all chosen so far (O(n^2) time, O(n) memory)."""
    n = loc.shape[0]
    first = int(np.argmin(((loc - loc.mean(0)) ** 2).sum(1)))
    order = np.empty(n, dtype=int)
    order[0] = first
    mind = np.sqrt(((loc - loc[first]) ** 2).sum(1))
    mind[first] = -1.0
    for s in range(1, n):
        nxt = int(np.argmax(mind))
        order[s] = nxt
        mind = np.minimum(mind, np.sqrt(((loc - loc[nxt]) ** 2).sum(1)))
        mind[order[: s + 1]] = -1.0
    return order


def _conditioning_sets(loc: np.ndarray, order: np.ndarray, m: int) -> list[np.ndarray]:
    """Each location's (up to) m nearest predecessors in ``order``, by location index."""
    sets = [np.empty(0, dtype=int)] * loc.shape[0]
    for s in range(1, len(order)):
        prev = order[:s]
        d = ((loc[prev] - loc[order[s]]) ** 2).sum(1)
        take = prev if s <= m else prev[np.argpartition(d, m)[:m]]
        sets[order[s]] = np.sort(take)
    return sets


def field_graph(loc: np.ndarray, nu: float, ranges: np.ndarray, k: int = 16, m: int = 10) -> FieldGraph:
    """The graphs of ``loc`` (n, d) for a Matérn field of smoothness ``nu``, with Vecchia filters at
    the candidate ``ranges``."""
    n = loc.shape[0]
    edges, lengths, scale = _neighbours(loc, k)
    sets = _conditioning_sets(loc, maximin_order(loc), m)
    rows, cols, vals = [], [], []
    mean_log_var = np.empty(len(ranges))
    for f, r in enumerate(np.asarray(ranges, dtype=float)):
        kappa = np.sqrt(8.0 * nu) / r
        log_v = np.zeros(n)
        for i, c in enumerate(sets):
            if c.size == 0:
                a, v = np.empty(0), 1.0 + JITTER
            else:
                kcc = matern_correlation(kappa * cdist(loc[c], loc[c]), nu) + JITTER * np.eye(c.size)
                kic = matern_correlation(kappa * np.sqrt(((loc[c] - loc[i]) ** 2).sum(1)), nu)
                a = np.linalg.solve(kcc, kic)
                v = max(1.0 + JITTER - float(kic @ a), JITTER)
            log_v[i] = np.log(v)
            idx = np.concatenate([c, [i]])
            w = np.concatenate([-a, [1.0]]) / np.sqrt(v)
            o = np.argsort(idx)
            rows.append(np.full(idx.size, i * len(ranges) + f))
            cols.append(idx[o])
            vals.append(w[o])
        mean_log_var[f] = log_v.mean()
    rows_a, cols_a, vals_a = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    o = np.lexsort((cols_a, rows_a))
    return FieldGraph(
        n=n,
        edges=edges,
        lengths=lengths,
        scale=scale,
        vecchia_rows=rows_a[o],
        vecchia_cols=cols_a[o],
        vecchia_values=vals_a[o],
        mean_log_var=mean_log_var,
        ranges=np.asarray(ranges, dtype=float),
    )
