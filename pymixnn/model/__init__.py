"""The model layer: plain Python specs that know nothing of Pyro.

- :mod:`~pymixnn.model.spec` the structural-model spec :class:`Model`; :mod:`~pymixnn.model.named`
  the registry of named models; :mod:`~pymixnn.model.growth`, :mod:`~pymixnn.model.pk`,
  :mod:`~pymixnn.model.pd` their functions;
- :mod:`~pymixnn.model.transforms` parameter transforms (torch and numpy);
- :mod:`~pymixnn.model.covariates` the covariate model on transformed parameters;
- :mod:`~pymixnn.model.random_effects` the random-effects laws' specs;
- :mod:`~pymixnn.model.observation` observation families;
- :mod:`~pymixnn.model.genomic` the genomic (marker-effects) spec.
"""

from pymixnn.model.named import ERROR_MODELS, NAMED_MODELS, Model, named, resolve

__all__ = ["Model", "ERROR_MODELS", "NAMED_MODELS", "named", "resolve"]
