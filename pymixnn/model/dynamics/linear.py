"""Linear (affine) systems dx/dt = A(psi) x + b(psi) + r: exact propagation by the matrix
exponential of the augmented matrix [[A, b + r], [0, 0]], and steady states by geometric sums.

The propagator of one step of length h (constant inputs r on it) is
``[x(h); 1] = expm([[A, b + r], [0, 0]] h) [x(0); 1]``; for a dose series of period tau the
infinite sum of its responses is ``sum_n e^{A n tau} v = (I - e^{A tau})^{-1} e^{A tau} v``.

>>> import torch
>>> A = torch.tensor([[-0.1]], dtype=torch.float64)
>>> x = advance(A, torch.tensor([10.0], dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64),
...             torch.zeros(1, dtype=torch.float64))
>>> round(float(x[0]), 6) == round(10 * 2.718281828459045 ** -0.2, 6)
True
"""

from __future__ import annotations

import torch

__all__ = ["advance", "expm", "input_response", "steady_state"]


def expm(A: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """e^{A h}, A (..., S, S), h broadcast over the leading dimensions."""
    return torch.linalg.matrix_exp(A * h[..., None, None])


def _augmented(A: torch.Tensor, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    S = A.shape[-1]
    lead = torch.broadcast_shapes(A.shape[:-2], u.shape[:-1], h.shape)
    M = A.new_zeros(*lead, S + 1, S + 1)
    M[..., :S, :S] = A * h[..., None, None]
    M[..., :S, S] = u * h[..., None]
    return torch.linalg.matrix_exp(M)


def advance(A: torch.Tensor, x: torch.Tensor, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """x(h) from x(0) under dx/dt = A x + u (u constant): A (..., S, S), x and u (..., S), h (...)."""
    E = _augmented(A, u, h)
    S = A.shape[-1]
    return (E[..., :S, :S] @ x.unsqueeze(-1)).squeeze(-1) + E[..., :S, S]


def input_response(A: torch.Tensor, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """int_0^h e^{A s} u ds: the state after h of a constant input u from zero."""
    return _augmented(A, u, h)[..., : A.shape[-1], A.shape[-1]]


def _series(A: torch.Tensor, tau: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(I - e^{A tau})^{-1} v."""
    S = A.shape[-1]
    eye = torch.eye(S, dtype=A.dtype, device=A.device)
    return torch.linalg.solve(eye - expm(A, tau), v.unsqueeze(-1)).squeeze(-1)


def steady_state(
    A: torch.Tensor,
    b: torch.Tensor,
    bolus: torch.Tensor,
    rate: torch.Tensor,
    duration: torch.Tensor,
    tau: torch.Tensor,
    lag: torch.Tensor,
    running: torch.Tensor,
) -> torch.Tensor:
    """The state at time s produced by the dose series at s + lag - n tau, n >= 1 (rule 6 of
    :mod:`pymixnn.model.dynamics.engine`), in excess of the baseline input b's own steady state.

    ``bolus`` (..., S): the amount vector of a bolus dose (zeros for an infusion); ``rate`` (..., S):
    the input vector of an infusion lasting ``duration`` (zeros for a bolus); ``running``
    (..., M) True for the n = 1..M infusions of the series still running at s. A bolus adds
    sum_n e^{A (n tau - lag)} v; an infusion adds, for the running ones, their input so far
    int_0^{u_n} e^{A s} r ds (u_n = n tau - lag) and, for the finished ones (n >= n0),
    e^{A (u_n - D)} int_0^D e^{A s} r ds summed geometrically."""
    del b  # the baseline input is integrated by the propagation itself
    x = expm(A, tau - lag).matmul(_series(A, tau, bolus).unsqueeze(-1)).squeeze(-1)
    if bool((rate != 0).any()):
        M = running.shape[-1]
        n = torch.arange(1, M + 1, dtype=tau.dtype, device=tau.device)
        u = n * tau.unsqueeze(-1) - lag.unsqueeze(-1)  # (..., M)
        part = input_response(A.unsqueeze(-3), rate.unsqueeze(-2), u.clamp_min(0))  # (..., M, S)
        x = x + (part * running.unsqueeze(-1)).sum(-2)
        n0 = 1 + running.sum(-1)
        u0 = n0 * tau - lag
        whole = input_response(A, rate, duration)
        tail = expm(A, (u0 - duration).clamp_min(0)).matmul(_series(A, tau, whole).unsqueeze(-1)).squeeze(-1)
        x = x + tail
    return x
