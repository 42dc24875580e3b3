"""The law registry: spec class (pymixnn.model.random_effects) -> plug-in class. A new law is one
plug-in module and one line here."""

from __future__ import annotations

import torch

from pymixnn.inference.laws.base import LawPlugin
from pymixnn.inference.laws.flow import FlowLaw
from pymixnn.inference.laws.gaussian import GaussianLaw
from pymixnn.inference.laws.latent_class import LatentClassLaw
from pymixnn.inference.laws.mixture import MixtureLaw
from pymixnn.model.random_effects import Flow, Gaussian, LatentClass, Mixture

__all__ = ["REGISTRY", "plugin", "build_law"]

CPU = torch.device("cpu")

REGISTRY: dict[type, type[LawPlugin]] = {
    Gaussian: GaussianLaw,
    Mixture: MixtureLaw,
    Flow: FlowLaw,
    LatentClass: LatentClassLaw,
}


def plugin(spec) -> type[LawPlugin]:
    """The plug-in class of a law spec."""
    try:
        return REGISTRY[type(spec)]
    except KeyError:
        raise TypeError(f"unknown random-effects law {spec!r}") from None


def build_law(
    spec,
    d: int,
    full_omega: bool,
    *,
    context_dim: int = 0,
    dtype=torch.float64,
    device=CPU,
    seed: int = 0,
) -> LawPlugin:
    """The torch law of ``spec`` for d random effects."""
    return plugin(spec).build(
        spec, d, full_omega, context_dim=context_dim, dtype=dtype, device=device, seed=seed
    )
