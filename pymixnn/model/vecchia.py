"""Nearest-neighbour (Vecchia) conditioning sets for a Matérn field on many irregular locations.

The joint density of the individuals' data about the field is approximated as

    p(z_1, ..., z_N) ~ prod_i p(z_i | z_c(i)),   c(i) the m nearest predecessors of i in an order,

(Vecchia 1988; Katzfuss & Guinness 2021): each factor a Gaussian conditional over m + 1 values, so
the likelihood costs O(N m^3) time and O(N m) memory. The order is a random permutation (fixed:
the same locations give the same sets), which Guinness (2018) found as accurate as maximin
orderings and far better than coordinate orderings; ties (individuals at one location) are
broken by the order.

The m nearest predecessors are found with k-d trees over prefixes of the order, in doubling
bands: the individuals at positions [a, 2a) query a tree over the first 2a, so that at least
half of the points they see are predecessors, and ask again with twice as many neighbours until
m predecessors are found (O(N log N) expected).

>>> import numpy as np
>>> loc = np.random.default_rng(1).uniform(size=(50, 2))
>>> sets = vecchia_sets(loc, 5)
>>> sets.shape, int((sets[:, 0] >= 0).sum())
((50, 5), 49)
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["vecchia_order", "vecchia_sets", "distance_summary"]

# positions of the order whose predecessors are searched by brute force
BRUTE = 512


def vecchia_order(n: int) -> np.ndarray:
    """The fixed random order of n individuals (a permutation; seed 0: the same for every fit)."""
    return np.random.default_rng(0).permutation(n)


def _brute(points: np.ndarray, m: int) -> np.ndarray:
    """(n, m) for each position s of ``points`` (in order) its m nearest among positions < s, as
    positions, nearest first (-1 where fewer than m)."""
    n = len(points)
    out = np.full((n, m), -1, dtype=np.int64)
    for s in range(1, n):
        d = ((points[:s] - points[s]) ** 2).sum(1)
        k = min(m, s)
        near = np.argpartition(d, k - 1)[:k] if k < s else np.arange(s)
        out[s, :k] = near[np.argsort(d[near], kind="stable")]
    return out


def vecchia_sets(locations: np.ndarray, m: int) -> np.ndarray:
    """(N, m) each individual's conditioning set: its m nearest predecessors in
    :func:`vecchia_order` (individual indices, nearest first; -1 where it has fewer, which only
    the first m individuals of the order have)."""
    loc = np.asarray(locations, dtype=np.float64).reshape(len(locations), -1)
    n = len(loc)
    order = vecchia_order(n)
    pts = loc[order]
    pos = np.full((n, m), -1, dtype=np.int64)
    head = min(n, BRUTE)
    pos[:head] = _brute(pts[:head], m)
    start = head
    while start < n:
        stop = min(n, 2 * start)
        tree = cKDTree(pts[:stop])
        todo = np.arange(start, stop)
        k = min(stop, 2 * m + 2)
        while todo.size:
            _, idx = tree.query(pts[todo], k=k)
            idx = idx.reshape(len(todo), -1)
            before = idx < todo[:, None]  # predecessors, nearest first
            found = before.sum(1)
            done = (found >= m) | (k >= stop)
            for row in np.flatnonzero(done):
                take = idx[row][before[row]][:m]
                pos[todo[row], : len(take)] = take
            todo = todo[~done]
            k = min(stop, 2 * k)
        start = stop
    sets = np.where(pos >= 0, order[np.clip(pos, 0, None)], -1)
    out = np.empty_like(sets)
    out[order] = sets
    return out


def distance_summary(locations: np.ndarray) -> np.ndarray:
    """(3,) the smallest distance between two distinct locations, the median distance between
    two individuals (over up to 2,000 sampled ones, fixed seed) and the largest (the bounding
    box's diagonal, at least the largest): the bounds and start of a field's range."""
    loc = np.asarray(locations, dtype=np.float64).reshape(len(locations), -1)
    distinct = np.unique(loc, axis=0)
    d_near, _ = cKDTree(distinct).query(distinct, k=2)
    sample = loc[np.random.default_rng(0).permutation(len(loc))[:2000]]
    pair = np.sqrt(((sample[:, None, :] - sample[None, :, :]) ** 2).sum(-1))
    med = float(np.median(pair[np.triu_indices(len(sample), 1)]))
    span = float(np.sqrt(((distinct.max(0) - distinct.min(0)) ** 2).sum()))
    return np.array([float(d_near[:, 1].min()), med, span])
