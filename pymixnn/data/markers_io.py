"""Reading marker data: a marker matrix (:func:`read_markers`) and a marker map (:func:`read_map`).

:func:`read_markers` reads a marker matrix (a DataFrame, an ``(array, ids[, names])`` tuple, a CSV
file or a PLINK ``.bed`` file) into a DataFrame indexed by genotype id; :func:`read_map` reads a
marker map (marker, chromosome, position). Values are not checked here:
:func:`pymixnn.data.markers.prepare_markers` does.

Genotype ids are compared as strings: ``1``, ``"1"`` and ``1.0`` (an integral float, as pandas reads
an id column that has missing values) are the same genotype (:func:`id_str`).

>>> import pandas as pd
>>> read_markers((pd.DataFrame({"m1": [0, 2]}).to_numpy(), [1.0, "g2"])).index.tolist()
['1', 'g2']
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from pymixnn.validation.errors import show_value

__all__ = ["read_markers", "read_map", "id_str", "first_ids"]


_MAP_ALIASES = {
    "marker": ("marker", "snp", "sid", "marker_name", "name"),
    "chr": ("chr", "chrom", "chromosome"),
    "pos": ("pos", "position", "cm", "bp", "bp_position"),
}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def id_str(value) -> str:
    """A genotype id (or marker name) as str; an integral float ``3.0`` becomes ``'3'``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def first_ids(items: Iterable, k: int = 5) -> str:
    """``'a', 'b', 'c'`` for the first ``k`` items, with ``...`` when there are more."""
    items = list(items)
    text = ", ".join(repr(id_str(x)) for x in items[:k])
    return text + (", ..." if len(items) > k else "")


def _is_missing_scalar(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _duplicates(values: Iterable[str]) -> list[str]:
    """Values occurring more than once, each listed once, in order of first occurrence."""
    s = pd.Series(list(values), dtype=object)
    return list(dict.fromkeys(s[s.duplicated()]))


def _finish_frame(df: pd.DataFrame, source_name: str) -> pd.DataFrame:
    """Index and columns as str, index named 'genotype', and no missing or duplicate labels."""
    idx = list(df.index)
    missing_ids = [i for i, v in enumerate(idx) if _is_missing_scalar(v)]
    if missing_ids:
        raise ValueError(
            f"{len(missing_ids)} row(s) of the marker matrix ({source_name}) have no genotype "
            f"id; first at row {missing_ids[0]} (0-based)"
        )
    ids = [id_str(v) for v in idx]
    names = [id_str(c) for c in df.columns]
    dup = _duplicates(ids)
    if dup:
        raise ValueError(
            f"{len(dup)} duplicate genotype id(s) in the marker matrix ({source_name}): "
            f"{first_ids(dup)}; each genotype must have one row"
        )
    dup = _duplicates(names)
    if dup:
        raise ValueError(
            f"{len(dup)} duplicate marker name(s) in the marker matrix ({source_name}): "
            f"{first_ids(dup)}; each marker must have one column"
        )
    attrs = dict(df.attrs)
    out = df.copy(deep=False)
    out.index = pd.Index(ids, dtype=object, name="genotype")
    out.columns = pd.Index(names, dtype=object)
    out.attrs = attrs
    return out


def _read_bed(path: str) -> pd.DataFrame:
    try:
        from bed_reader import open_bed
    except ImportError as exc:  # pragma: no cover - bed-reader is a dependency
        raise ImportError(
            "reading PLINK .bed files needs the bed-reader package: pip install 'bed-reader>=1.0'"
        ) from exc
    with open_bed(path) as bed:
        # allele counts 0/1/2 (of allele A1), NaN missing; float32 is exact for them and halves memory
        values = bed.read(dtype="float32")
        iid = [str(v) for v in bed.iid]
        sid = [str(v) for v in bed.sid]
        chrom = [str(v) for v in bed.chromosome]
        bp = np.asarray(bed.bp_position, dtype=np.float64)
    df = pd.DataFrame(values, index=iid, columns=sid, copy=False)
    df.attrs["map"] = pd.DataFrame(
        {"chr": chrom, "pos": bp}, index=pd.Index(sid, dtype=object, name="marker")
    )
    return df


_OPENERS = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}


def _comment_lines(path: str) -> tuple[list[int], int]:
    """0-based numbers of the lines whose first non-blank character is '#' (comment lines), and of
    the first other non-blank line (the header; -1 if none). Only whole lines are comments: a '#'
    inside a marker name or genotype id is kept. Compressed files other than .gz, .bz2 and .xz
    are not scanned (comment lines there then fail as a parse error)."""
    import importlib

    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".zip", ".zst", ".tar"):
        return [], -1
    opener = importlib.import_module(_OPENERS[suffix]).open if suffix in _OPENERS else open
    comments, header = [], -1
    with opener(path, "rb") as handle:
        for number, line in enumerate(handle):
            text = line.removeprefix(b"\xef\xbb\xbf").strip()  # a UTF-8 byte-order mark on line 0
            if text.startswith(b"#"):
                comments.append(number)
            elif header < 0 and text:
                header = number
    return comments, header


def _read_table(path: str, what: str, **kwargs) -> pd.DataFrame:
    """pandas.read_csv whose parse errors become a one-line ValueError naming the file."""
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        hint = " (save it as UTF-8)" if isinstance(err, UnicodeDecodeError) else ""
        raise ValueError(f"cannot read {what} {path!r}: {' '.join(str(err).split())}{hint}") from None


def _read_csv(path: str, id: str | None) -> pd.DataFrame:
    # The header is read as data first: pandas would rename duplicate names ('m1', 'm1.1'), which
    # would hide them. Comment lines ('#' first) are skipped.
    comments, header_line = _comment_lines(path)
    header = _read_table(
        path,
        "the marker matrix",
        header=None,
        nrows=1,
        dtype=str,
        keep_default_na=False,
        skiprows=comments or None,
    ).iloc[0]
    header = [str(h) for h in header]
    if id is None:
        pos = 0
    elif id in header:
        pos = header.index(id)
    else:
        raise ValueError(
            f"id column {id!r} not found in {path!r}; its columns start with {first_ids(header)}"
        )
    skip = sorted(comments + [header_line]) if header_line >= 0 else 1
    df = _read_table(
        path,
        "the marker matrix",
        header=None,
        skiprows=skip,
        names=list(range(len(header))),
        index_col=pos,
        dtype={pos: str},
    )
    df.columns = [header[j] for j in range(len(header)) if j != pos]
    return df


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


def read_markers(source, *, id: str | None = None) -> pd.DataFrame:
    """Marker matrix as a DataFrame: index = genotype ids (str, named ``'genotype'``), columns = marker names.

    ``source`` is one of

    * a pandas DataFrame: genotype ids in column ``id`` if given, else its index;
    * a tuple ``(array, ids)`` or ``(array, ids, names)`` with a 2-D array (genotypes x markers);
      markers are named ``'m0', 'm1', ...`` when ``names`` is not given;
    * a path (str or ``os.PathLike``) to a CSV file: the first column holds the genotype ids unless
      ``id`` names another column; ids are kept as text (``'007'`` stays ``'007'``); lines starting
      with ``#`` are comments and skipped (a ``#`` inside an id or name is kept);
    * a path to a PLINK ``.bed`` file, with its ``.bim`` and ``.fam`` next to it, read with
      ``bed_reader.open_bed``: values are allele counts 0/1/2 (float32, NaN missing), ids are the
      ``.fam`` individual ids and names the ``.bim`` marker ids. The map (chromosome, bp position) is
      attached as ``df.attrs['map']``, a DataFrame indexed by marker with columns ``chr`` and ``pos``.

    A bare numpy array is refused (it carries no genotype ids). Duplicate genotype ids, duplicate
    marker names or missing ids raise ValueError. Values are not checked here
    (:func:`prepare_markers` does); a DataFrame source is not copied more than pandas needs to.
    """
    if isinstance(source, pd.DataFrame):
        if id is not None:
            if id not in source.columns:
                raise ValueError(
                    f"id column {id!r} not found in the marker DataFrame; its columns start "
                    f"with {first_ids(source.columns)}"
                )
            df = source.drop(columns=[id])
            df.index = pd.Index(source[id].to_numpy(), dtype=object)
            df.attrs = dict(source.attrs)
        else:
            df = source
        return _finish_frame(df, "DataFrame")

    if isinstance(source, np.ndarray):
        raise TypeError(
            "a bare numpy array has no genotype ids: pass a DataFrame, "
            "pd.DataFrame(array, index=ids, columns=names), or a tuple (array, ids) or "
            "(array, ids, names)"
        )

    if isinstance(source, tuple):
        if len(source) not in (2, 3):
            raise TypeError(
                f"a tuple source must be (array, ids) or (array, ids, names), got {len(source)} items"
            )
        if id is not None:
            raise TypeError("id= applies to a DataFrame or CSV source, not to an (array, ids) tuple")
        values = np.asarray(source[0])
        if values.ndim != 2:
            raise ValueError(f"the marker array must be 2-D (genotypes x markers), got shape {values.shape}")
        ids = list(source[1])
        if len(ids) != values.shape[0]:
            raise ValueError(f"{len(ids)} genotype ids for a marker array with {values.shape[0]} rows")
        if len(source) == 3:
            names = list(source[2])
            if len(names) != values.shape[1]:
                raise ValueError(
                    f"{len(names)} marker names for a marker array with {values.shape[1]} columns"
                )
        else:
            names = [f"m{j}" for j in range(values.shape[1])]
        df = pd.DataFrame(
            values, index=pd.Index(ids, dtype=object), columns=pd.Index(names, dtype=object), copy=False
        )
        return _finish_frame(df, "array")

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        lower = path.lower()
        if lower.endswith((".bim", ".fam")):
            raise ValueError(f"{path!r}: pass the PLINK .bed file (its .bim and .fam are found next to it)")
        if lower.endswith(".bed"):
            if id is not None:
                raise ValueError("id= does not apply to a PLINK .bed file (ids are the .fam individual ids)")
            return _finish_frame(_read_bed(path), path)
        return _finish_frame(_read_csv(path, id), path)

    raise TypeError(
        f"cannot read markers from a {type(source).__name__}: pass a DataFrame, an (array, ids) "
        "tuple, or the path of a CSV or PLINK .bed file"
    )


def read_map(source) -> pd.DataFrame:
    """Marker map as a DataFrame indexed by marker (str) with columns ``chr`` (str) and ``pos`` (float).

    ``source`` is a DataFrame or the path of a CSV file with columns ``marker``, ``chr`` and ``pos``
    (case-insensitive); lines of the file starting with ``#`` are comments and skipped, and a file
    pandas cannot parse raises a one-line ValueError naming it. Aliases: ``snp``/``sid``/``name``
    for the marker (or an index named ``marker``), ``chrom``/``chromosome`` for the chromosome, and
    ``position``/``cM``/``bp``/``bp_position`` for the position (in whatever unit the file uses;
    missing positions stay NaN).
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        df = _read_table(path, "the marker map", dtype=str, skiprows=_comment_lines(path)[0] or None)
        where = repr(path)
    elif isinstance(source, pd.DataFrame):
        df = source
        where = "the map DataFrame"
    else:
        raise TypeError(
            f"cannot read a marker map from a {type(source).__name__}: pass a DataFrame or a CSV path"
        )

    lower = {}
    for col in df.columns:
        lower.setdefault(str(col).strip().lower(), col)
    found = {}
    for role, aliases in _MAP_ALIASES.items():
        hits = [lower[a] for a in aliases if a in lower]
        plain = any(str(h).strip().lower() in ("pos", "position") for h in hits)
        if role == "pos" and len(hits) > 1 and not plain:
            raise ValueError(
                f"ambiguous position columns in {where}: {first_ids(hits)}; keep one, e.g. "
                f"df.rename(columns={{{str(hits[0])!r}: 'pos'}})"
            )
        if hits:
            found[role] = hits[0]
    index_name = df.index.name
    if "marker" not in found and index_name is not None and str(index_name).lower() in _MAP_ALIASES["marker"]:
        markers = list(df.index)
    elif "marker" in found:
        markers = list(df[found["marker"]])
    else:
        markers = None
    missing = [
        r
        for r in ("marker", "chr", "pos")
        if (r == "marker" and markers is None) or (r != "marker" and r not in found)
    ]
    if missing:
        raise ValueError(
            f"the marker map ({where}) lacks column(s) {missing}: expected columns marker, "
            "chr, pos (aliases: snp/sid/name; chrom/chromosome; position/cM/bp/bp_position; "
            "any case); "
            f"it has {first_ids(df.columns, 10)}"
        )

    bad = [i for i, m in enumerate(markers) if _is_missing_scalar(m)]
    if bad:
        raise ValueError(
            f"{len(bad)} row(s) of the marker map ({where}) have no marker name; first at row {bad[0]}"
        )
    names = [id_str(m) for m in markers]
    dup = _duplicates(names)
    if dup:
        raise ValueError(
            f"{len(dup)} marker(s) listed more than once in the marker map ({where}): {first_ids(dup)}"
        )
    chrom = list(df[found["chr"]])
    bad = [i for i, c in enumerate(chrom) if _is_missing_scalar(c)]
    if bad:
        raise ValueError(
            f"marker {show_value(names[bad[0]])} has no chromosome in the marker map ({where}) "
            f"({len(bad)} marker(s) without one)"
        )
    raw_pos = df[found["pos"]]
    pos = pd.to_numeric(raw_pos, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(pos) & ~pd.isna(raw_pos).to_numpy())
    if bad.size:
        raise ValueError(
            f"marker {show_value(names[bad[0]])} has non-numeric position "
            f"{show_value(raw_pos.iloc[bad[0]])} in the "
            f"marker map ({where}) ({bad.size} such marker(s))"
        )
    return pd.DataFrame(
        {"chr": [id_str(c).strip() for c in chrom], "pos": pos},
        index=pd.Index(names, dtype=object, name="marker"),
    )
