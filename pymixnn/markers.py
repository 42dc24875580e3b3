"""Former path of :mod:`pymixnn.data.markers` (an alias of the same module object)."""

import sys

from pymixnn.data import markers as _module

sys.modules[__name__] = _module
