"""The result of an importance-sampling pass over the individuals (importance.py's ``evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ISResult"]


@dataclass
class ISResult:
    """Per-individual log-likelihood, its Monte Carlo variance, and moments of psi under p(eta|y)."""

    loglik: torch.Tensor  # (N,)
    mc_variance: torch.Tensor  # (N,) variance of each log L_i estimate (delta method)
    psi_mean: torch.Tensor  # (N, P) conditional mean of psi
    psi_sd: torch.Tensor  # (N, P)
    eta_mean: torch.Tensor  # (N, d)
    # (N, K) posterior class probabilities of a law with classes (mixture components, latent
    # classes): the posterior mean of its responsibilities, which is P(k | y_i) exactly
    class_prob: torch.Tensor | None = None
