"""Calls from the R package (rpkg/, through reticulate), with Python's warnings and errors as data.

reticulate turns a Python exception into an R error but prints Python warnings to the console,
where R's ``tryCatch`` and ``withCallingHandlers`` cannot see them. :func:`call` runs a function,
records the warnings it raises and catches the exception it ends with, and returns both in an
:class:`Outcome`; the R side turns each recorded warning into an R ``warning()`` and the error
into one R ``stop()`` (its messages translated into R syntax there).

Example
-------
>>> import warnings
>>> from pymixnn.rbridge import call
>>> def noisy(x):
...     warnings.warn("dropped 2 rows", UserWarning)
...     return x + 1
>>> out = call(noisy, 1)
>>> out.value, out.warnings, out.categories, out.error
(2, ['dropped 2 rows'], ['UserWarning'], None)
>>> call(int, "a").error_type
'ValueError'
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Outcome", "call"]


@dataclass(frozen=True)
class Outcome:
    """What a call returned, the warnings it raised (in order) and the exception it ended with.

    value : the function's return value (None when it raised).
    warnings : the message of each warning raised during the call.
    categories : each warning's class name (``UserWarning``, ``ConvergenceWarning``, ...).
    error : the exception's message (None when the call returned).
    error_type : the exception's class name.
    traceback : the formatted traceback of the exception, for debugging (R keeps it in the
        condition).
    """

    value: Any = None
    warnings: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None


def call(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Outcome:
    """``function(*args, **kwargs)`` with its warnings recorded and its exception caught.

    The active warning filters decide which warnings are recorded (as they decide which are shown
    in Python); the filters are restored afterwards. Only :class:`Exception` is caught:
    KeyboardInterrupt and SystemExit propagate.
    """
    with warnings.catch_warnings(record=True) as caught:
        try:
            value = function(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - handed to R as one error with its message
            return Outcome(
                warnings=[str(w.message) for w in caught],
                categories=[w.category.__name__ for w in caught],
                error=str(err) if str(err) else repr(err),
                error_type=type(err).__name__,
                traceback="".join(traceback.format_exception(err)),
            )
    return Outcome(
        value=value,
        warnings=[str(w.message) for w in caught],
        categories=[w.category.__name__ for w in caught],
    )
