"""pymixnn: nonlinear mixed-effects models fitted by minibatch stochastic variational inference.

>>> import pymixnn
>>> df = pymixnn.datasets.load("theo")
>>> res = pymixnn.fit(df, pymixnn.Model.named("onecpt_oral"), id="Id", x=["Dose", "Time"],
...                   y="Concentration", covariates={"V": ["Weight"]}, seed=0,
...                   progress=False)  # doctest: +SKIP
>>> print(res.summary())  # doctest: +SKIP
"""

import gc as _gc

from pymixnn import datasets
from pymixnn.control import Control
from pymixnn.data.shards import read_shard
from pymixnn.data.table import Data
from pymixnn.fitting import fit
from pymixnn.model.dynamics.models import ODEModel
from pymixnn.model.dynamics.solve import solve
from pymixnn.model.genomic import Genomic
from pymixnn.model.levels import Level
from pymixnn.model.named import NAMED_MODELS, Model, named
from pymixnn.model.neural import NeuralTerm
from pymixnn.model.observation import (
    Bernoulli,
    Binomial,
    LogLikelihood,
    NegativeBinomial,
    Normal,
    Ordinal,
    Poisson,
    ZeroInflatedPoisson,
    observation,
)
from pymixnn.model.random_effects import Flow, Gaussian, LatentClass, Mixture
from pymixnn.model.spatial import Spatial
from pymixnn.problem import NLME
from pymixnn.results.diagnostics import ConvergenceWarning, FallbackWarning

__version__ = "0.1.0"


def __getattr__(name):  # Results imports torch and pyro: load it only when asked for
    if name == "Results":
        from pymixnn.results.results import Results

        return Results
    if name == "compare":  # the R bridges (rpy2 is imported only when a bridge is called)
        import importlib

        return importlib.import_module("pymixnn.compare")
    if name == "simulate":  # the simulators (NumPy and pandas only), documented as pymixnn.simulate
        import importlib

        return importlib.import_module("pymixnn.simulate")
    if name == "amortize":  # the neural estimator (torch is imported when it trains)
        from pymixnn.neural_estimator import amortize

        return amortize
    if name == "NeuralEstimator":
        from pymixnn.results.neural import NeuralEstimator

        return NeuralEstimator
    if name == "SpatialEstimator":  # the graph-network estimator of a Matérn field (torch)
        from pymixnn.results.spatial_estimator import SpatialEstimator

        return SpatialEstimator
    if name == "compare_fits":
        from pymixnn.results.results import compare_fits

        return compare_fits
    raise AttributeError(f"module 'pymixnn' has no attribute {name!r}")


__all__ = [
    "fit",
    "NLME",
    "Control",
    "ConvergenceWarning",
    "FallbackWarning",
    "Data",
    "read_shard",
    "Model",
    "ODEModel",
    "NeuralTerm",
    "solve",
    "named",
    "NAMED_MODELS",
    "Results",
    "compare",
    "compare_fits",
    "amortize",
    "NeuralEstimator",
    "Gaussian",
    "Mixture",
    "LatentClass",
    "Flow",
    "Genomic",
    "Level",
    "Spatial",
    "SpatialEstimator",
    "Normal",
    "Poisson",
    "NegativeBinomial",
    "ZeroInflatedPoisson",
    "Binomial",
    "Bernoulli",
    "Ordinal",
    "LogLikelihood",
    "observation",
    "datasets",
    "simulate",
    "__version__",
]

# One full garbage collection before the import returns: the import leaves ~200,000 new objects
# (torch, pandas) that Python's next full collection scans, which otherwise fell inside the first
# fit (77 of its 560 ms, 100 individuals). Collected here, they are long-lived, and the fit's own
# allocations trigger young-generation collections only. Nothing of gc's state is changed.
_gc.collect()
