"""The structural function watched during a fit: an exception it raises, or a NaN it returns
before the fit fails, becomes a :class:`StructuralFunctionError` naming the function, the
individual and the parameter values (program.py's ``Program.prediction`` records them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = [
    "StructuralFunctionError",
    "FunctionWatch",
    "watch_structural_function",
    "current_watch",
    "function_name",
    "first_line",
]


class StructuralFunctionError(ValueError):
    """The user's structural function raised during the fit, or returned NaN before the fit
    failed; the message names the function, the individual and the parameter values psi."""


def function_name(model) -> str:
    return getattr(model.function, "__name__", None) or model.name or "custom"


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


class FunctionWatch:
    """Where the structural function first returned NaN at an observed cell, for finite psi.

    Such NaNs are not errors by themselves: importance sampling, the Laplace line searches and
    SVI draw eta far in the tails, where a legitimate model can give NaN (onecpt_oral at ka = k,
    inf - inf or inf / inf after an overflow), and those draws are rejected or given weight 0.
    So the watch only records the first one (individual, psi, x), and the error is raised by
    :func:`watch_structural_function` when the fit then fails, naming it next to the failure
    (whose own first line it keeps: a NaN seen earlier need not be the cause). Never recorded:
    +-inf (an overflow), NaN where psi itself is not finite, and padding cells. An exception
    raised by the function is always an error, raised at once (:meth:`Program.prediction`)."""

    def __init__(self) -> None:
        self.first: dict[str, Any] | None = None

    def error(self, err: BaseException) -> StructuralFunctionError:
        rec = self.first
        return StructuralFunctionError(
            f"the fit failed ({first_line(err)}) after the structural function "
            f"{rec['function']} returned NaN for individual {rec['id']!r} at psi "
            f"{rec['psi']} (x = {rec['x']}); make it finite over the support of its parameters "
            "(e.g. guard the expression with torch.where), or change transforms= or init="
        )


_WATCH: ContextVar[FunctionWatch | None] = ContextVar("pymixnn_function_watch", default=None)


@contextmanager
def watch_structural_function() -> Iterator[FunctionWatch]:
    """Programs created inside share one :class:`FunctionWatch`; an exception leaving the block
    after the structural function returned NaN becomes a :class:`StructuralFunctionError` naming
    it (the original exception chained). Scoped to the block: nothing outlives the fit."""
    watch = FunctionWatch()
    token = _WATCH.set(watch)
    try:
        yield watch
    except StructuralFunctionError:
        raise
    except Exception as err:
        if watch.first is None:
            raise
        raise watch.error(err) from err
    finally:
        _WATCH.reset(token)


def current_watch() -> FunctionWatch:
    """The watch of the fit in progress (a fresh one outside a fit)."""
    return _WATCH.get() or FunctionWatch()
