"""Former home of the estimation pipeline, kept for its import paths: the pipeline now lives in
options.py, start.py, stages.py, refine.py, reporting.py and pipeline.py (see pipeline.py)."""

from pymixnn.inference.options import EstimationOptions, resolve_device
from pymixnn.inference.pipeline import estimate
from pymixnn.inference.records import Estimation

__all__ = ["EstimationOptions", "Estimation", "estimate", "resolve_device"]
