"""Former path of :mod:`pymixnn.results.plots` (an alias of the same module object)."""

import sys

from pymixnn.results import plots as _module

sys.modules[__name__] = _module
