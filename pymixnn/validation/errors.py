"""The input-error types and name helpers shared by the checks (numpy only).

>>> closest("Ka", ["ka", "V", "CL"])
'ka'
>>> did_you_mean("Cl", ["ka", "V", "CL"])
" (did you mean 'CL'?)"
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["InputError", "InputTypeError", "closest", "did_you_mean", "show_value", "is_integer", "is_real"]


class InputError(ValueError):
    """An error in what the user gave (data, model, settings), found before any fitting: the
    command line prints it as one line and exits with status 2."""


class InputTypeError(InputError, TypeError):
    """An input of the wrong kind (e.g. ``init`` not a mapping): a TypeError and an InputError."""


def show_value(value: Any) -> str:
    """repr of a value, numpy scalars as plain Python numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def closest(name: Any, choices: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The valid name closest to ``name`` (case-insensitive first, then difflib with ``cutoff``),
    or None."""
    text = str(name)
    for choice in choices:
        if choice.lower() == text.lower():
            return choice
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(text.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[match[0]] if match else None


def did_you_mean(name: Any, choices: Sequence[str], cutoff: float = 0.6) -> str:
    """ " (did you mean 'x'?)" for the closest valid name, or "" when none is close."""
    match = closest(name, [str(c) for c in choices], cutoff)
    return f" (did you mean {match!r}?)" if match is not None else ""


def is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
