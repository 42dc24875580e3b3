"""Former path of :mod:`pymixnn.results.genomic` (an alias of the same module object)."""

import sys

from pymixnn.results import genomic as _module

sys.modules[__name__] = _module
