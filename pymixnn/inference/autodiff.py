"""Autograd helpers shared by the Laplace steps (laplace.py) and the importance sampler
(importance.py)."""

from __future__ import annotations

import warnings

import torch

__all__ = ["batched_grad"]


def batched_grad(outputs: torch.Tensor, inputs: torch.Tensor, basis: torch.Tensor) -> torch.Tensor | None:
    """``torch.autograd.grad(outputs, inputs, grad_outputs=basis)`` for each leading row of
    ``basis`` in one vectorized backward pass (Hessian rows from a gradient built with
    ``create_graph=True``; the graph is retained); None when an operation has no batching rule
    (vmap's slow per-sample fallback is turned into that None), the caller then taking one pass
    per row."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (rows,) = torch.autograd.grad(
                outputs, inputs, grad_outputs=basis, is_grads_batched=True, retain_graph=True
            )
    except (RuntimeError, UserWarning):
        return None
    return rows
