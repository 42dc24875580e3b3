"""Former path of :mod:`pymixnn.model.genomic` (an alias of the same module object)."""

import sys

from pymixnn.model import genomic as _module

sys.modules[__name__] = _module
