"""Checks of the algorithm settings (``pymixnn.Control``, the flat keywords of ``fit``).

>>> check_settings(lr=0.02, max_steps=100, batch_size=64, num_particles=4, is_samples=None,
...                threads=None, refine=True, progress=False, seed=0, dtype=None, device="cpu",
...                likelihood="auto", dropna=False)
>>> check_settings(lr=-0.1, max_steps=100, batch_size=64, num_particles=4, is_samples=None,
...                threads=None, refine=True, progress=False, seed=0, dtype=None, device="cpu",
...                likelihood="auto", dropna=False)
Traceback (most recent call last):
...
pymixnn.validation.InputError: lr must be a finite number > 0 (the SVI step size, e.g. lr=0.02), got -0.1
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pymixnn.validation.errors import InputError, is_integer, is_real

__all__ = ["DTYPES", "DEVICES", "LIKELIHOODS", "LOCALS", "GEARS", "check_settings", "check_device"]

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda", "auto")
LIKELIHOODS = ("auto", "is", "gq")
LOCALS = ("individual", "amortized")
GEARS = ("auto", "newton", "svi")


def check_settings(
    *,
    lr: Any,
    max_steps: Any,
    batch_size: Any,
    num_particles: Any,
    is_samples: Any,
    threads: Any,
    refine: Any,
    progress: Any,
    seed: Any,
    dtype: Any,
    device: Any,
    likelihood: Any,
    dropna: Any,
    ode_rtol: Any = 1e-6,
    ode_atol: Any = 1e-8,
    local: Any = "individual",
    refine_steps: Any = 0,
    gear: Any = "auto",
    distributed: Any = False,
    neural_steps: Any = None,
    neural_starts: Any = 1,
    shards: Any = False,
) -> None:
    """Every algorithm setting of :func:`pymixnn.fit`: kind, range and known names. A device
    "cuda" (or "cuda:N") is checked against the CUDA devices torch finds."""
    if not isinstance(distributed, (bool, np.bool_)):
        raise InputError(
            f"distributed must be True or False (data-parallel over torch.distributed), got {distributed!r}"
        )
    if neural_steps is not None and not (is_integer(neural_steps) and neural_steps >= 1):
        raise InputError(
            f"neural_steps must be a positive integer (steps per training stage of a model with "
            f"neural terms) or None for the default, got {neural_steps!r}"
        )
    if not isinstance(shards, (bool, np.bool_)):
        raise InputError(
            f"shards must be True or False (each process passes its own individuals), got {shards!r}"
        )
    if shards and not distributed:
        raise InputError(
            "shards=True is a data-parallel fit's (each process passes its own individuals, "
            "pymixnn.read_shard): give distributed=True too"
        )
    if not (is_integer(neural_starts) and neural_starts >= 1):
        raise InputError(
            f"neural_starts must be a positive integer (independent trainings of a model with neural "
            f"terms, the one of highest log-likelihood kept), got {neural_starts!r}"
        )
    if not (is_real(lr) and math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a finite number > 0 (the SVI step size, e.g. lr=0.02), got {lr!r}")
    for name, value in dict(batch_size=batch_size, max_steps=max_steps, num_particles=num_particles).items():
        if not (is_integer(value) and value >= 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if is_samples is not None and not (is_integer(is_samples) and is_samples >= 1):
        raise InputError(
            f"is_samples must be a positive integer (importance samples per individual) "
            f"or None for the default, got {is_samples!r}"
        )
    if threads is not None and not (is_integer(threads) and threads >= 1):
        raise InputError(
            f"threads must be a positive integer (torch threads) or None for the default, got {threads!r}"
        )
    for name, value in dict(ode_rtol=ode_rtol, ode_atol=ode_atol).items():
        if not (is_real(value) and math.isfinite(value) and 0 < value < 1):
            raise InputError(f"{name} must be a number in (0, 1) (an ODE solver tolerance), got {value!r}")
    if not (is_integer(seed) and seed >= 0):
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    for name, value in dict(refine=refine, progress=progress, dropna=dropna).items():
        if not isinstance(value, (bool, np.bool_)):
            raise InputError(f"{name} must be True or False, got {value!r}")
    if dtype is not None and dtype not in DTYPES:
        raise InputError(
            f"dtype must be one of {list(DTYPES)} or None (float64 on the CPU, float32 "
            f"on CUDA), got {dtype!r}"
        )
    if likelihood not in LIKELIHOODS:
        raise InputError(f"likelihood must be 'auto', 'is' or 'gq', got {likelihood!r}")
    if local not in LOCALS:
        raise InputError(
            f"local must be one of {list(LOCALS)} (per-individual local posteriors, or one encoder "
            f"network for all individuals), got {local!r}"
        )
    if not (is_integer(refine_steps) and refine_steps >= 0):
        raise InputError(
            f"refine_steps must be a non-negative integer (Newton steps per individual from the "
            f"encoder's output), got {refine_steps!r}"
        )
    if refine_steps and local != "amortized":
        raise InputError(
            f"refine_steps={refine_steps!r} refines the encoder's output: it needs local='amortized', got "
            f"local={local!r}"
        )
    if gear not in GEARS:
        raise InputError(
            f"gear must be one of {list(GEARS)} (Newton steps on the marginal likelihood from the "
            f"Laplace-EM start, minibatch SVI first, or chosen by the problem), got {gear!r}"
        )
    if gear == "newton" and not refine:
        raise InputError(
            "gear='newton' maximizes the marginal likelihood by the refinement's Newton steps: it "
            "needs refine=True, got refine=False"
        )
    if gear == "newton" and local != "individual":
        raise InputError(
            f"gear='newton' keeps local posteriors per individual; local={local!r} trains an encoder "
            "by SVI: use gear='svi' or 'auto'"
        )
    check_device(device)


def check_device(device: Any) -> None:
    cuda = isinstance(device, str) and (
        device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
    )
    if not (cuda or device in DEVICES):
        raise InputError(f"device must be one of {list(DEVICES)} (or 'cuda:N'), got {device!r}")
    if cuda:
        import torch  # only to ask for CUDA devices

        if not torch.cuda.is_available():
            raise InputError(
                f"device={device!r} but torch finds no CUDA device (torch "
                f"{torch.__version__}); use device='cpu' or 'auto'"
            )
        index = int(device[5:]) if device.startswith("cuda:") else 0
        if index >= torch.cuda.device_count():
            raise InputError(
                f"device={device!r} but torch finds {torch.cuda.device_count()} CUDA "
                f"device(s) (cuda:0 .. cuda:{torch.cuda.device_count() - 1})"
            )
