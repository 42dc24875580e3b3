"""Former path of :mod:`pymixnn.results.vpc` (an alias of the same module object)."""

import sys

from pymixnn.results import vpc as _module

sys.modules[__name__] = _module
