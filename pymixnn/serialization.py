"""Former path of :mod:`pymixnn.results.serialization` (an alias of the same module object)."""

import sys

from pymixnn.results import serialization as _module

sys.modules[__name__] = _module
