"""Former path of :mod:`pymixnn.model.genomic`, kept so that old imports work (the same module object)."""
import sys

from pymixnn.model import genomic as _module

sys.modules[__name__] = _module
