"""Inference: the only part of pymixnn that imports Pyro.

laws.py (random-effect laws: Gaussian, mixture, flow) -> program.py (log-density in torch)
-> laplace.py (local posteriors) -> svi.py (Pyro SVI loop) -> importance.py (ll.is, refinement,
Fisher information) -> deconvolution.py (a law fitted on cached draws; the flow's CV penalty)
-> estimate.py (the pipeline).
"""
from pymixnn.inference.estimate import Estimation, EstimationOptions, estimate, resolve_device
from pymixnn.inference.svi import SVIOptions

__all__ = ["Estimation", "EstimationOptions", "SVIOptions", "estimate", "resolve_device"]
