"""Inference: the only part of pymixnn that imports Pyro.

laws/ (random-effect laws as plug-ins: Gaussian, mixture, flow) -> program.py (log-density in
torch) -> mode_derivatives.py, laplace.py (local posteriors) -> svi.py (Pyro SVI loop) ->
importance.py and marginal.py (ll.is or quadrature, refinement, Fisher information) ->
deconvolution.py (a law fitted on cached draws; the flow's CV penalty) -> options.py, start.py,
stages.py, refine.py, reporting.py, pipeline.py (the estimation pipeline); records.py (the typed
records it returns), rng.py (seed streams, global random state left unchanged), fallbacks.py
(counted fallbacks).
"""

from pymixnn.inference.options import EstimationOptions, resolve_device
from pymixnn.inference.pipeline import estimate
from pymixnn.inference.records import Estimation, GenomicParamPosterior, GenomicPosterior, LawFit, RunInfo
from pymixnn.inference.svi_options import SVIOptions

__all__ = [
    "Estimation",
    "EstimationOptions",
    "SVIOptions",
    "estimate",
    "resolve_device",
    "LawFit",
    "GenomicPosterior",
    "GenomicParamPosterior",
    "RunInfo",
]
