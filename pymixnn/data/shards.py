"""Reading one process's individuals from a long table on disk (a data-parallel fit, issue 25).

:func:`read_shard` reads a CSV or Parquet file batch by batch and keeps only the rows of this
process's individuals, so that no process holds the whole table:

- ``by="range"`` (default): the individuals in sorted id order (the order :class:`Data` uses)
  split in contiguous blocks, sizes differing by at most one (:func:`block`). A first pass
  reads the id column only. The processes' blocks in rank order are the whole table's
  individuals in its own order, so a fit from shards equals the fit of the whole table.
- ``by="hash"``: individual ``i`` goes to process ``crc32(str(i)) % world`` (one pass; the
  blocks' sizes vary). The fit's order of individuals is then the processes' in rank order, so
  its Monte Carlo draws are not those of the whole table's fit: the same model, other draws.

Plain pandas and pyarrow; nothing here imports torch.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.validation.errors import InputError

__all__ = ["read_shard", "block", "shard_ids", "process_rank"]

BATCH_ROWS = 1_000_000  # rows read at a time (a batch is read, filtered, and dropped)


def block(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of process ``rank`` among ``world`` for n items: contiguous blocks, sizes
    differing by at most one (the first n % world one larger)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world} processes")
    base, extra = divmod(int(n), int(world))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def process_rank(rank: int | None = None, world: int | None = None) -> tuple[int, int]:
    """This process's (rank, world): the arguments, else torchrun's RANK and WORLD_SIZE."""
    rank = os.environ.get("RANK") if rank is None else rank
    world = os.environ.get("WORLD_SIZE") if world is None else world
    if rank is None or world is None:
        raise InputError(
            "read_shard needs rank= and world= (or torchrun's RANK and WORLD_SIZE in the environment)"
        )
    r, w = int(rank), int(world)
    if w < 1 or not 0 <= r < w:
        raise InputError(f"rank={r} is not in a world of {w} processes (0 <= rank < world)")
    return r, w


def _hash(ids: np.ndarray) -> np.ndarray:
    return np.fromiter((zlib.crc32(str(i).encode()) for i in ids), dtype=np.int64, count=len(ids))


def _sorted_unique(ids: pd.Series) -> np.ndarray:
    """The unique ids in :class:`Data`'s order: sorted, or in order of first appearance for ids
    of types that do not sort together."""
    try:
        _, uniques = pd.factorize(ids, sort=True)
    except TypeError:
        _, uniques = pd.factorize(ids)
    return np.asarray(uniques)


def shard_ids(ids, world: int, rank: int, by: str = "range") -> np.ndarray:
    """The ids (of all individuals, any order, repeats allowed) that process ``rank`` owns."""
    unique = _sorted_unique(pd.Series(np.asarray(ids)))
    if by == "range":
        lo, hi = block(len(unique), world, rank)
        return unique[lo:hi]
    if by == "hash":
        return unique[_hash(unique) % world == rank]
    raise InputError(f"by must be 'range' or 'hash', got {by!r}")


def _format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in ("csv", "parquet"):
            raise InputError(f"format must be 'csv' or 'parquet', got {format!r}")
        return format
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes:
        return "csv"
    raise InputError(f"{path}: give format='csv' or 'parquet' (the file's suffix says neither)")


def _batches(path: Path, fmt: str, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    """The file's rows in batches of BATCH_ROWS, indexed by their row number in the file (0-based,
    header excluded)."""
    if fmt == "csv":
        yield from pd.read_csv(path, usecols=columns, chunksize=BATCH_ROWS)
        return
    import pyarrow.parquet as pq

    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        frame = batch.to_pandas()
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def _columns(path: Path, fmt: str) -> list[str]:
    if fmt == "csv":
        return list(pd.read_csv(path, nrows=0).columns)
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(path).schema_arrow.names)


def read_shard(
    path: str | os.PathLike,
    id: str,
    *,
    rank: int | None = None,
    world: int | None = None,
    by: str = "range",
    format: str | None = None,
) -> pd.DataFrame:
    """The rows of this process's individuals in a CSV or Parquet long table.

    Parameters
    ----------
    path : str or path-like
        The table: ``.csv`` (``.csv.gz`` too) or ``.parquet``, one row per observation.
    id : str
        The individual column.
    rank, world : int, optional
        This process and the number of processes; default torchrun's ``RANK`` and
        ``WORLD_SIZE``.
    by : {"range", "hash"}, default "range"
        How individuals are assigned: contiguous blocks of the sorted ids (a first pass reads
        the id column only), or ``crc32(str(id)) % world`` (see the module docstring).
    format : {"csv", "parquet"}, optional
        Default: from the file's suffix.

    Returns
    -------
    pandas.DataFrame
        This process's rows in the file's order, indexed by their row number in the file; the
        reading is in ``attrs["shard"]`` (path, rank, world, by, individuals, rows). Fit it with
        ``pymixnn.fit(..., distributed=True, shards=True)`` in every process.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"read_shard: no file {str(path)!r}")
    if by not in ("range", "hash"):
        raise InputError(f"by must be 'range' or 'hash', got {by!r}")
    r, w = process_rank(rank, world)
    fmt = _format(path, format)
    names = _columns(path, fmt)
    if id not in names:
        raise InputError(f"read_shard: {str(path)!r} has no column {id!r}; its columns are {names}")
    if by == "range":
        seen = [pd.unique(b[id]) for b in _batches(path, fmt, [id])]
        everyone = pd.Series(np.concatenate(seen) if seen else np.array([]))
        if everyone.isna().any():
            raise InputError(f"read_shard: {str(path)!r} has a missing {id!r}")
        mine: Any = pd.Index(shard_ids(everyone, w, r, "range"))
        keep = lambda b: b[id].isin(mine)  # noqa: E731
    else:
        keep = lambda b: (_hash(b[id].to_numpy()) % w) == r  # noqa: E731
    parts = [b.loc[np.asarray(keep(b), dtype=bool)] for b in _batches(path, fmt, None)]
    frame = pd.concat(parts) if parts else pd.DataFrame(columns=names)
    if frame[id].isna().any():
        row = frame.index[frame[id].isna().to_numpy()][0]
        raise InputError(f"read_shard: {str(path)!r} row {row} has a missing {id!r}")
    frame.attrs["shard"] = dict(
        path=str(path), rank=r, world=w, by=by, individuals=int(frame[id].nunique()), rows=len(frame)
    )
    return frame
