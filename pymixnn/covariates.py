"""Former path of :mod:`pymixnn.model.covariates` (an alias of the same module object)."""

import sys

from pymixnn.model import covariates as _module

sys.modules[__name__] = _module
