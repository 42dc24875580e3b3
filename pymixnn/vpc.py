"""Former path of :mod:`pymixnn.results.vpc`, kept so that old imports work (the same module object)."""
import sys

from pymixnn.results import vpc as _module

sys.modules[__name__] = _module
