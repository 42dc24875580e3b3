"""Former path of :mod:`pymixnn.results.diagnostics` (an alias of the same module object)."""

import sys

from pymixnn.results import diagnostics as _module

sys.modules[__name__] = _module
