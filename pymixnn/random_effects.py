"""Former path of :mod:`pymixnn.model.random_effects` (an alias of the same module object)."""

import sys

from pymixnn.model import random_effects as _module

sys.modules[__name__] = _module
