"""A data-parallel fit from shards (``Control(distributed=True, shards=True)``): each process holds
only its own individuals' rows (read by :func:`pymixnn.read_shard`), none the whole table.

Each process checks its rows as a fit checks a table (every error, on any process, is raised on
every process, naming the process that found it, so that none waits for the others at a
collective). Then what a fit derives from the whole table is taken from every process's part:

- the covariate design, from every individual's covariates (one row per individual, gathered:
  the categorical levels, the centring, the constant-covariate check are the whole table's);
- the self-start, from every observation's x and working response (two columns, gathered for the
  start and dropped; its median profiles are not sums);
- the sample sizes (individuals, observations: the Monte Carlo draws per individual, the
  minibatch shares), summed.

The processes' individuals in rank order are then the fit's individuals (the order of the Monte
Carlo draws): with ``read_shard(by="range")`` the whole table's sorted order, so the fit equals the
fit of the whole table. Each process's Results hold its own individuals (individual estimates,
predictions, residuals) and the same population estimates, SEs and log-likelihood as every
other's; ``res.n_individuals``, ``res.nobs`` and BIC are the whole fit's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.control import Control
from pymixnn.model.dynamics.models import is_dynamic
from pymixnn.problem import NLME
from pymixnn.validation import InputError

__all__ = ["ShardedNLME", "sharded_problem", "GlobalSizes", "agree"]


def agree(comm, fn: Callable[[], Any]) -> Any:
    """``fn()`` on every process; an error on any process is raised on every process (a
    ValueError: an InputError naming the first process that failed and its message; that process
    raises its own, a ValueError as it is)."""
    try:
        value, error = fn(), None
    except Exception as exc:  # noqa: BLE001  (every process must learn of it, or the others wait)
        value, error = None, exc
    messages = comm.objects(None if error is None else f"{type(error).__name__}: {error}")
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        rank, message = failed[0]
        if error is not None and isinstance(error, ValueError):
            raise error
        raise InputError(f"process {rank} (of {comm.world}), on its shard: {message}") from error
    return value


class GlobalSizes:
    """This process's Data with the whole fit's sizes ``n_individuals`` and ``n_obs`` (what the
    estimation's sample sizes and the processes' blocks are taken from); the rest is the Data's."""

    def __init__(self, data, n_individuals: int, n_obs: int) -> None:
        self._data, self.n_individuals, self.n_obs = data, int(n_individuals), int(n_obs)

    def __getattr__(self, name: str):
        return getattr(self._data, name)


class ShardedNLME(NLME):
    """An NLME problem on this process's shard; :func:`sharded_problem` builds it."""

    _ready = False

    def __init__(self, comm, **arguments: Any) -> None:
        self._comm = comm
        super().__init__(**arguments)

    def _derive(self, source) -> None:
        if self._ready:  # after every process checked its rows (sharded_problem)
            super()._derive(source)

    def _start_data(self) -> tuple[np.ndarray, np.ndarray]:
        x, response = super()._start_data()
        return tuple(np.concatenate(self._comm.objects(a)) for a in (x, response))

    def check_function(self, values) -> None:
        agree(self._comm, lambda: NLME.check_function(self, values))

    def global_data(self) -> GlobalSizes:
        return GlobalSizes(self.data, self.shard["n_individuals"], self.shard["n_obs"])


def _refused(problem: NLME, control: Control) -> list[str]:
    model = problem.model
    checks = [
        (not control.distributed, "distributed=False (shards are the processes' of a data-parallel fit)"),
        (is_dynamic(model), "an ODE, compartment or event model"),
        (bool(getattr(model, "neural", None)), "neural terms"),
        (not model.random, "a model without random effects (random=[])"),
        (problem.law.name != "gaussian", f"random_effects={problem.law.name!r}"),
        (bool(problem.context_columns), "context="),
        (problem.genomic is not None, "genomic="),
        (bool(problem.levels), "levels="),
        (problem.spatial is not None, "spatial="),
        (control.local != "individual", f"local={control.local!r}"),
    ]
    return [what for bad, what in checks if bad]


def sharded_problem(arguments: dict, control: Control) -> ShardedNLME:
    """The problem of ``fit(**arguments)`` on this process's shard, with the design, start values
    and sizes of every process's (module docstring)."""
    from pymixnn.inference.collective import collective

    comm = collective(True)  # an initialized process group, or its clear error
    names = inspect.signature(NLME).parameters
    problem = agree(comm, lambda: ShardedNLME(comm, **{k: v for k, v in arguments.items() if k in names}))
    refused = _refused(problem, control)
    if refused:
        raise InputError(f"shards=True does not support {', '.join(refused)} yet")
    data = problem.data
    parts = comm.objects((data.covariates, int(data.n_obs)))
    sizes = [len(c) for c, _ in parts]
    if min(sizes) == 0:
        raise InputError(f"process {sizes.index(0)} holds no individual: fewer individuals than processes")
    covariates = pd.concat([c for c, _ in parts])
    repeated = covariates.index[covariates.index.duplicated()]
    if len(repeated):
        raise InputError(
            f"individual {repeated[0]!r} has rows in more than one process's shard: read the shards "
            "with pymixnn.read_shard, which keeps each individual's rows together"
        )
    problem.shard = dict(
        rank=comm.rank,
        world=comm.world,
        n_individuals=int(sum(sizes)),
        n_obs=int(sum(n for _, n in parts)),
        n_individuals_here=int(data.n_individuals),
        first=int(sum(sizes[: comm.rank])),  # this process's first individual in the fit's order
        n_obs_here=int(data.n_obs),
    )
    problem._ready = True
    source = SimpleNamespace(covariates=covariates, events=None, ids=np.asarray(covariates.index))
    agree(comm, lambda: problem._derive(source))
    return problem
