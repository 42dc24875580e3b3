"""Inference: the only part of pymixnn that imports Pyro.

program.py (log-density in torch) -> laplace.py (local posteriors) -> svi.py (Pyro SVI loop)
-> importance.py (ll.is, refinement, Fisher information) -> estimate.py (the pipeline).
"""
from pymixnn.inference.estimate import Estimation, EstimationOptions, estimate, resolve_device
from pymixnn.inference.svi import SVIOptions

__all__ = ["Estimation", "EstimationOptions", "SVIOptions", "estimate", "resolve_device"]
