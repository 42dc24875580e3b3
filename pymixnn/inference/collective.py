"""Collectives of a data-parallel fit (torch.distributed): each process owns a contiguous block of
the individuals, and every sum over individuals is the sum of the processes' partial sums.

The sums are made deterministic and bitwise identical on every process: the partial sums are
gathered (``all_gather``) and added in rank order, instead of gloo's ``all_reduce``, whose
order depends on its algorithm. Every decision taken on a reduced value (a Newton step accepted,
a stopping rule) is then the same on every process, which a collective needs: a process taking
another branch would wait forever at the next one.

:class:`Serial` (one process, no process group) is the identity everywhere, so a fit without
``distributed=True`` runs exactly the code it ran before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pymixnn.data.shards import block

__all__ = [
    "Shard",
    "Serial",
    "Collective",
    "collective",
    "shard_bounds",
    "NO_SVI_FALLBACK",
]

NO_SVI_FALLBACK = (
    "the Newton gear did not converge, and a data-parallel fit with a genomic block has no SVI "
    "fallback yet: fit without distributed=True"
)


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """Rows [lo, hi) of process ``rank`` among ``world`` for n individuals: contiguous blocks in
    the data's order, sizes differing by at most one (the first n % world one larger)."""
    return block(n, world, rank)


@dataclass(frozen=True)
class Shard:
    """The rows [lo, hi) of n_global individuals that this process owns."""

    lo: int
    hi: int
    n_global: int

    @property
    def n_local(self) -> int:
        return self.hi - self.lo

    @property
    def whole(self) -> bool:
        return self.lo == 0 and self.hi == self.n_global

    def chunks(self, n: int, size: int):
        """(chunk number, first and last local row, columns) of the global chunks of ``size``
        rows over n individuals that hold rows of this process; columns (chunk width, first and
        last column of these rows) when the chunk is not whole here (its draws are then drawn
        for the whole chunk and sliced, so that they are the single process's), else None."""
        for c, start in enumerate(range(0, n, size)):
            end = min(start + size, n)
            lo, hi = max(start, self.lo), min(end, self.hi)
            if lo < hi:
                whole = lo == start and hi == end
                yield c, lo - self.lo, hi - self.lo, None if whole else (end - start, lo - start, hi - start)

    def chunks_of(self, rows: torch.Tensor, size: int, first: int = 0):
        """(chunk number, local rows, columns) of the chunks of ``size`` of the sorted global
        ``rows`` (a subsample), numbered from ``first``, as :meth:`chunks`: the owned rows of a
        chunk are contiguous in it, since the rows are sorted."""
        for c, start in enumerate(range(0, rows.shape[0], size)):
            part = rows[start : start + size]
            if self.whole:
                yield first + c, part, None
                continue
            a = int(torch.searchsorted(part, self.lo))
            b = int(torch.searchsorted(part, self.hi))
            if a < b:
                yield (
                    first + c,
                    part[a:b] - self.lo,
                    None if b - a == part.shape[0] else (part.shape[0], a, b),
                )

    def own(self, rows: torch.Tensor) -> torch.Tensor:
        """The global ``rows`` this process owns as local rows (``rows`` itself when whole)."""
        return rows if self.whole else self.local(rows)[0]

    def local(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The global ``rows`` this process owns, as local row numbers, and their positions in
        ``rows`` (to slice a tensor drawn for all of them)."""
        keep = (rows >= self.lo) & (rows < self.hi)
        positions = torch.nonzero(keep)[:, 0]
        return rows[positions] - self.lo, positions


class Serial:
    """One process: every collective is the identity."""

    rank, world = 0, 1
    distributed = False

    def shard(self, n: int, local: int | None = None) -> Shard:
        return Shard(0, int(n), int(n))

    def objects(self, obj) -> list:
        """Every process's ``obj`` (picklable), in rank order."""
        return [obj]

    def sum(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tensors

    def sum_float(self, x: float) -> float:
        return x

    def all(self, flag: bool) -> bool:
        return bool(flag)

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def no_fallback(self, message: str) -> None:
        """A fallback the data-parallel fit does not take: its error (none here)."""


class Collective(Serial):
    """The processes of an initialized ``torch.distributed`` group (gloo on CPU)."""

    distributed = True

    def __init__(self) -> None:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "distributed=True needs an initialized torch.distributed process group: start the "
                "fit under torchrun (torchrun --standalone --nproc-per-node=K -m pymixnn fit ...), "
                "or call torch.distributed.init_process_group first"
            )
        self._dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def shard(self, n: int, local: int | None = None) -> Shard:
        """This process's rows of n individuals: its block of the data (every process holds the
        whole table), or, with ``local`` < n rows held here (each process read its own shard,
        pymixnn.read_shard), the processes' rows in rank order."""
        if local is None or int(local) == int(n):
            return Shard(*shard_bounds(n, self.world, self.rank), int(n))
        sizes = [int(s) for s in self.objects(int(local))]
        if sum(sizes) != int(n):
            raise RuntimeError(f"the processes hold {sum(sizes)} individuals in all, not {n}")
        lo = sum(sizes[: self.rank])
        return Shard(lo, lo + sizes[self.rank], int(n))

    def objects(self, obj) -> list:
        """Every process's ``obj`` (picklable), in rank order (all_gather_object)."""
        out = [None] * self.world
        self._dist.all_gather_object(out, obj)
        return out

    def _gather(self, flat: torch.Tensor) -> list[torch.Tensor]:
        parts = [torch.empty_like(flat) for _ in range(self.world)]
        self._dist.all_gather(parts, flat.contiguous())
        return parts

    def sum(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each tensor summed over the processes, in rank order (one all_gather for all)."""
        if not tensors:
            return ()
        dtype = tensors[0].dtype
        flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
        parts = self._gather(flat)
        total = parts[0].clone()
        for p in parts[1:]:
            total = total + p
        out, at = [], 0
        for t in tensors:
            out.append(total[at : at + t.numel()].reshape(t.shape).to(t.dtype))
            at += t.numel()
        return tuple(out)

    def sum_float(self, x: float) -> float:
        return float(self.sum(torch.tensor([float(x)], dtype=torch.float64))[0][0])

    def all(self, flag: bool) -> bool:
        return bool(self.sum(torch.tensor([0.0 if flag else 1.0], dtype=torch.float64))[0][0] == 0.0)

    def no_fallback(self, message: str) -> None:
        raise RuntimeError(message)

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """The processes' blocks of rows (dim 0) concatenated in rank order: the global array."""
        sizes = self._gather(torch.tensor([t.shape[0]], dtype=torch.int64))
        n_max = int(max(int(s[0]) for s in sizes))
        pad = torch.zeros((n_max, *t.shape[1:]), dtype=t.dtype, device=t.device)
        pad[: t.shape[0]] = t
        parts = self._gather(pad)
        return torch.cat([p[: int(s[0])] for p, s in zip(parts, sizes)])


def collective(distributed: bool) -> Serial:
    """The collectives of a fit: over the initialized process group, or :class:`Serial`."""
    return Collective() if distributed else Serial()
