"""The command line's files before fitting: input files that can be read, output paths that can be
written, and the data file read as a DataFrame indexed by its line numbers."""

from __future__ import annotations

import argparse
import codecs
import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pymixnn.cli.messages import InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "check_input",
    "check_outputs",
    "check_output_file",
    "check_directory",
    "check_image_format",
    "read_csv",
    "csv_lines",
]


def check_input(path: Path, what: str) -> Path:
    """``path`` if it is a readable file, else an InputError naming it as ``what``."""
    if not path.exists():
        raise InputError(f"{what} {str(path)!r} not found")
    if not path.is_file():
        raise InputError(f"{what} {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {str(path)!r} is not readable")
    return path


def check_outputs(args: argparse.Namespace) -> None:
    """Every output path can be written, checked before fitting (not after an hour of it)."""
    for key in ("json", "plot", "vpc", "marker_effects"):
        value = getattr(args, key, None)
        if value:
            flag = "--" + key.replace("_", "-")
            path = check_output_file(value, flag)
            if key in ("plot", "vpc"):
                check_image_format(path, flag)
    if getattr(args, "manhattan", None):
        path = Path(args.manhattan)
        if path.suffix.lower() == ".png":  # one parameter: one file
            check_output_file(args.manhattan, "--manhattan")
        elif path.exists() and not path.is_dir():
            raise InputError(f"--manhattan: {args.manhattan!r} is a file, not a directory")
        else:
            check_directory(path if path.exists() else path.parent, "--manhattan")


def check_output_file(value: str, flag: str) -> Path:
    """The path of ``value``, a file name (not a directory) in a writable directory."""
    path = Path(value)
    if value.endswith(("/", os.sep)) or path.is_dir():
        raise InputError(f"{flag}: {value!r} is a directory; give a file name")
    check_directory(path.parent, flag)
    return path


def check_directory(directory: Path, flag: str) -> None:
    """An InputError unless ``directory`` exists, is a directory and can be written."""
    if not directory.exists():
        raise InputError(f"{flag}: directory {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise InputError(f"{flag}: {str(directory)!r} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{flag}: directory {str(directory)!r} is not writable")


def check_image_format(path: Path, flag: str) -> None:
    """An InputError unless matplotlib can write an image with the suffix of ``path``."""
    if not path.suffix:
        return  # matplotlib's default format, PNG
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in kinds:
        raise InputError(
            f"{flag}: cannot write a {path.suffix!r} image; use one of {sorted('.' + k for k in kinds)}"
        )


def read_csv(path: Path, encoding: str) -> pd.DataFrame:
    """The data file as a DataFrame indexed by line number in the file (the header is line 1), so
    that messages name the line a user sees in an editor; one-line errors for an undecodable,
    empty or malformed file and for a column name repeated in the header."""
    import pandas as pd

    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"--encoding {encoding!r}: unknown encoding") from None
    raw = path.read_bytes()
    try:  # decoded here, not by pandas, to name the byte and the line of an error
        text = raw.decode("utf-8-sig" if codec == "utf-8" else encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise InputError(
            f"data file {str(path)!r} is not {encoding}: byte 0x{raw[err.start]:02x} at "
            f"position {err.start} (line {line}); give its encoding, e.g. --encoding latin-1"
        ) from None
    header, starts = csv_lines(text)
    if header is None:
        raise InputError(f"data file {str(path)!r} is empty")
    seen: dict[str, int] = {}
    for k, name in enumerate(header):
        if name.strip() and name in seen:
            raise InputError(
                f"data file {str(path)!r}: column {name!r} appears twice in the header "
                f"(columns {seen[name] + 1} and {k + 1}); rename one"
            )
        seen.setdefault(name, k)
    try:
        df = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError:
        raise InputError(f"data file {str(path)!r} is empty") from None
    except pd.errors.ParserError as err:
        raise InputError(f"cannot read data file {str(path)!r}: {err}") from None
    if starts is not None and len(starts) == len(df):
        df.index = pd.Index(starts, dtype="int64")
    else:  # a layout the line scan does not follow: lines counted from the header
        df.index = pd.RangeIndex(2, len(df) + 2)
    return df


def csv_lines(text: str) -> tuple[list[str] | None, list[int] | None]:
    """The header fields and the first line (1-based) of each data record, skipping blank lines as
    pandas does (records may span lines inside quotes); (header, None) if the scan fails."""
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    starts: list[int] = []
    done = 0
    try:
        for record in reader:
            start, done = done + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if header is None:
                header = record
            else:
                starts.append(start)
    except csv.Error:
        return header, None
    return header, starts
