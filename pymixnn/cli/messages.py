"""The command line's messages: :class:`InputError`, pymixnn's errors and warnings said the
command line's way (flags for Python keywords, line numbers of the data file for rows)."""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymixnn import validation

__all__ = ["InputError", "PACKAGE", "cli_text", "fail", "warning_printer"]

# pymixnn's own directory: warnings raised from a file under it are pymixnn's
PACKAGE = Path(__file__).resolve().parents[1]


class InputError(validation.InputError):
    """An error in the command line or its files: printed as one line, exit status 2."""


# Python hints in pymixnn's messages, said the command line's way
_HINTS = (
    (re.compile(r"\bdropna=True\b"), "--dropna"),
    (re.compile(r"\binit=\{[^}]*\}"), "--init NAME=VALUE"),
    (re.compile(r"\bchange init\b"), "change --init"),
    (re.compile(r"\bcovariates=\{[^}]*\}"), "--covariate PARAM=COL"),
    (re.compile(r"\bgenomic=(pymixnn\.)?Genomic\([^)]*\)"), "--markers PATH --genomic-params P[,P]"),
    (re.compile(r"\b(pymixnn\.)?Genomic\(params=[^)]*\)"), "--genomic-params"),
    (re.compile(r"\b(pymixnn\.)?Ordinal\(levels=[^)]*\)"), "--levels L1,L2,..."),
)
_FLAGS = (
    "random_effects",
    "n_components",
    "n_classes",
    "membership",
    "context",
    "observation",
    "link",
    "levels",
    "trials",
    "censoring",
    "likelihood",
    "local",
    "gear",
    "refine_steps",
    "error",
    "omega",
    "random",
    "genotype",
    "time",
    "max_steps",
    "lr",
    "seed",
)
_KEYWORD = re.compile(
    r"(?<![\w.(])(" + "|".join(_FLAGS) + r")="
    r"(\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[\w.\-]*)"
)
_ROW = re.compile(r"\brow (\d+)\b(?! \(0-based\))")


def _keyword(match: re.Match) -> str:
    flag, value = "--" + match.group(1).replace("_", "-"), match.group(2)
    if value.startswith("["):  # a list: the comma-separated form of the flag
        value = ",".join(v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip())
    elif value[:1] in ("'", '"'):
        value = value[1:-1]
    if value:
        return f"{flag} {value}"
    following = match.string[match.end() : match.end() + 1]  # e.g. "trials=<column>", "random=, now"
    return flag + (" " if following and not following.isspace() and following not in ",;:.)]" else "")


def cli_text(text: str, lines: bool) -> str:
    """A message of pymixnn's Python API as the command line's user should read it: on one line,
    with flags for Python keywords and, for a data file, its line numbers for rows."""
    text = " ".join(text.split())
    for pattern, flag in _HINTS:
        text = pattern.sub(flag, text)
    text = _KEYWORD.sub(_keyword, text)
    if lines and "marker" not in text:  # marker files number their rows their own way
        text = _ROW.sub(r"line \1", text)
    return text


def fail(err: Exception, lines: bool) -> int:
    """Print ``err`` as the command's one-line error; returns the exit status, 2."""
    print(f"pymixnn: error: {cli_text(str(err), lines)}", file=sys.stderr)
    return 2


def warning_printer(lines: bool) -> Callable[..., None]:
    """``warnings.showwarning`` for the command: pymixnn's own warnings as one line in the
    command line's terms; other libraries' warnings as Python shows them."""
    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if str(filename).startswith(str(PACKAGE)):
            print(f"pymixnn: warning: {cli_text(str(message), lines)}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show
