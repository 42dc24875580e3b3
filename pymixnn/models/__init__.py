"""Former home of the structural models, kept so that ``pymixnn.models`` and its submodules still
import: each name is the same object as in :mod:`pymixnn.model`."""

import sys as _sys

from pymixnn.model import growth, observation, pd, pk, spec, transforms
from pymixnn.model.named import ERROR_MODELS, NAMED_MODELS, Model, named, resolve

for _module in (growth, observation, pd, pk, spec, transforms):
    _sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module

__all__ = ["Model", "ERROR_MODELS", "NAMED_MODELS", "named", "resolve"]
