"""Former path of :mod:`pymixnn.results.re_density` (an alias of the same module object)."""

import sys

from pymixnn.results import re_density as _module

sys.modules[__name__] = _module
