"""The training loop shared by the simulation-trained estimators (:mod:`pymixnn.inference.neural`,
:mod:`pymixnn.inference.spatial_gnn`): Adam with gradients clipped at norm 10, the learning rate
decaying from ``lr`` to lr/100 on a cosine, a fresh simulated batch per step, a validation loss 20
times along the way, and a progress bar that can be turned off."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["train_on_simulations"]


def train_on_simulations(
    net: nn.Module,
    steps: int,
    lr: float,
    step_loss: Callable[[], torch.Tensor],
    validation_loss: Callable[[], float],
    *,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` Adam steps on ``step_loss()`` (which simulates its own batch); returns the training
    losses and the (step, validation loss) pairs."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr / 100)
    losses, val_losses = [], []
    bar = tqdm(total=steps, disable=not progress, desc=desc, leave=False)
    for step in range(steps):
        loss = step_loss()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % max(1, steps // 20) == 0 or step + 1 == steps:
            with torch.no_grad():
                val = float(validation_loss())
            val_losses.append((step + 1, val))
            bar.set_postfix(loss=f"{val:.4f}")
        bar.update(1)
    bar.close()
    return np.asarray(losses), np.asarray(val_losses)
