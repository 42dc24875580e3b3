"""Numerical checks shared by the tests: the Hessian of an exact negative log-likelihood by central
differences (steps of 1e-4 relative), for SEs against the inverse observed information."""

from __future__ import annotations

import numpy as np


def hessian(f, x: np.ndarray) -> np.ndarray:
    """d^2 f / dx^2 at x by four-point central differences (relative step 1e-4)."""
    x = np.asarray(x, dtype=float)
    k, h = len(x), 1e-4 * np.abs(x)
    H = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            e1, e2 = np.zeros(k), np.zeros(k)
            e1[i], e2[j] = h[i], h[j]
            H[i, j] = (f(x + e1 + e2) - f(x + e1 - e2) - f(x - e1 + e2) + f(x - e1 - e2)) / (4 * h[i] * h[j])
    return H
