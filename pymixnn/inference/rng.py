"""Random numbers of a fit: named seed streams, and isolation of the global generators.

Every draw of a fit comes from a generator seeded by ``stream(seed, name)`` or, for Pyro's own
sampling, from torch's global generator seeded inside :func:`isolated_rng`, which restores the
caller's ``random``, ``numpy.random`` and torch (CPU and the fit's CUDA device) states afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["STREAMS", "stream", "isolated_rng"]

# offsets of the seeds of the fit's streams from the user's seed (values fixed: changing one
# changes the numbers of every fit)
STREAMS: dict[str, int] = {
    "proposals": 1,  # the refinement's importance draws (and the safeguard's scores)
    "flow_start": 7,  # a flow's start: cached draws, CV folds
    "fisher": 1000,  # the observed Fisher information's draws
    "loglik": 2000,  # ll.is with fresh draws
    "moments": 3000,  # Monte Carlo moments of eta under a flow
    "prerefine": 4000,  # an ODE model's pre-refinement on the start subsample (its t draws)
    "encoder": 5000,  # local="amortized": the encoder's initial weights
    "presample": 6000,  # the Newton gear's pre-refinement at large N: its subsample and draws
}


def stream(seed: int, name: str) -> int:
    """The seed of stream ``name`` for a fit with ``seed``."""
    return int(seed) + STREAMS[name]


@contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed ``random``, numpy and torch with ``seed`` (as ``pyro.set_rng_seed``) inside the block;
    restore the caller's states after it."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices: list[int] = []
    if torch.cuda.is_available() and (device.type == "cuda" or torch.cuda.is_initialized()):
        devices = list(range(torch.cuda.device_count()))  # torch.manual_seed seeds every one
    try:
        with torch.random.fork_rng(devices=devices):
            # pyro.set_rng_seed's three calls, without importing Pyro (a Newton-gear fit runs none)
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
