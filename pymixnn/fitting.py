"""`fit()`: a nonlinear mixed-effects fit in one call, ``NLME(...).fit(control)``, and
:func:`fit_problem`, which runs the estimation of a resolved :class:`pymixnn.NLME` and returns a
`Results`.

>>> import pymixnn
>>> df = pymixnn.datasets.load("theo")
>>> res = pymixnn.fit(df, pymixnn.Model.named("onecpt_oral"), id="Id", x=["Dose", "Time"],
...                   y="Concentration", covariates={"V": ["Weight"]}, seed=0,
...                   progress=False)  # doctest: +SKIP
>>> round(res.fixed_effects["CL"], 1)  # doctest: +SKIP
2.8
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.control import Control, resolve_control
from pymixnn.data.table import Data
from pymixnn.docstrings import fill_doc
from pymixnn.model.dynamics.models import check_solvable, is_dynamic, solver_counts, with_solver
from pymixnn.model.named import Model
from pymixnn.model.observation import to_dict as observation_to_dict
from pymixnn.problem import NLME
from pymixnn.validation import InputError

__all__ = ["fit", "fit_problem", "problem_of"]


class _Unset:
    """Default of fit()'s algorithm keywords: the value of ``control`` (or Control's default)."""

    def __repr__(self) -> str:
        return "<Control's value>"


UNSET: Any = _Unset()


def problem_of(arguments: Mapping[str, Any]) -> NLME:
    """The :class:`pymixnn.NLME` of a caller's ``arguments`` (its ``locals()``, named as NLME's
    arguments; the others are left out): ``fit``'s, ``compare.nlme``'s and ``compare.saemix``'s."""
    names = inspect.signature(NLME).parameters
    return NLME(**{k: v for k, v in arguments.items() if k in names})


@fill_doc
def fit(
    data: pd.DataFrame | Data,
    model: Model | str,
    *,
    id: str | None = None,
    x: str | Sequence[str] | None = None,
    y: str | None = None,
    covariates: Mapping[str, Sequence[str] | str] | None = None,
    dropna: bool = False,
    time_unit: str | None = None,
    init: Mapping[str, float] | None = None,
    error: str | None = None,
    omega: str | None = None,
    random: Sequence[str] | None = None,
    transforms: Mapping[str, str] | str | None = None,
    random_effects="gaussian",
    n_components: int | str | None = None,
    context: Sequence[str] | str | None = None,
    observation="gaussian",
    trials: str | None = None,
    censoring: str | None = None,
    genotype: str | None = None,
    genomic=None,
    levels=None,
    spatial=None,
    control: Control | None = None,
    batch_size: int = UNSET,
    max_steps: int = UNSET,
    lr: float = UNSET,
    num_particles: int = UNSET,
    refine: bool = UNSET,
    is_samples: int | None = UNSET,
    likelihood: str = UNSET,
    device: str = UNSET,
    dtype: str | None = UNSET,
    threads: int | None = UNSET,
    seed: int = UNSET,
    progress: bool = UNSET,
    ode_rtol: float = UNSET,
    ode_atol: float = UNSET,
    local: str = UNSET,
    refine_steps: int = UNSET,
    gear: str = UNSET,
    distributed: bool = UNSET,
    neural_steps: int | None = UNSET,
    neural_starts: int = UNSET,
    shards: bool = UNSET,
):
    """Fit a nonlinear mixed-effects model by minibatch stochastic variational inference.

    ``fit(data, model, ...)`` is ``NLME(data, model, ...).fit(control)``: the problem is checked
    (data, model, law, observation family) before any computation, then estimated by
    minibatch SVI, a Newton refinement of the importance-weighted ELBO, the observed Fisher
    information and the log-likelihood (see the user guide, "Data, models and the fit").

    Parameters
    ----------
    %(problem_parameters)s
    control : Control, optional
        The algorithm settings as a :class:`pymixnn.Control`. Each setting below can also be given
        as a keyword, which then builds the Control; giving one both ways with different values
        is an error.
    %(control_parameters)s

    Returns
    -------
    Results
        Estimates with standard errors (``params``, ``fixed_effects``, ``omega``, ``sigma``),
        log-likelihood, AIC and BIC, individual estimates, predictions, diagnostics and plots.

    Examples
    --------
    >>> import pymixnn
    >>> df = pymixnn.datasets.load("orange")
    >>> res = pymixnn.fit(df, "logistic", id="Tree", x="age", y="circumference", seed=1,
    ...                   max_steps=300, refine=False, progress=False)
    >>> list(res.fixed_effects.index)
    ['A', 'B', 'C']
    """
    settings = {
        k: v
        for k, v in dict(
            batch_size=batch_size,
            max_steps=max_steps,
            lr=lr,
            num_particles=num_particles,
            refine=refine,
            is_samples=is_samples,
            likelihood=likelihood,
            device=device,
            dtype=dtype,
            threads=threads,
            seed=seed,
            progress=progress,
            ode_rtol=ode_rtol,
            ode_atol=ode_atol,
            local=local,
            refine_steps=refine_steps,
            gear=gear,
            distributed=distributed,
            neural_steps=neural_steps,
            neural_starts=neural_starts,
            shards=shards,
        ).items()
        if v is not UNSET
    }
    control = resolve_control(control, settings)  # the settings are checked before any data work
    if control.shards:  # each process holds its own individuals (sharding.py)
        from pymixnn.sharding import sharded_problem

        return fit_problem(sharded_problem(locals(), control), control)
    return fit_problem(problem_of(locals()), control)


def _check_amortized(problem: NLME, control: Control) -> None:
    """local="amortized" supports Gaussian, mixture and flow laws (a conditional flow's context
    among the encoder's inputs) without a genomic block (so far): an InputError otherwise, before
    any work."""
    if control.local != "amortized":
        return
    if not problem.model.random:
        raise InputError("local='amortized' needs individual random effects (random=[] has none to encode)")
    if problem.levels or problem.spatial is not None:
        raise InputError(
            f"local='amortized' does not support {'levels=' if problem.levels else 'spatial='} yet (the "
            "level block reads every individual's posterior): use local='individual'"
        )
    if problem.genomic is not None:
        raise InputError(
            "local='amortized' does not support genomic= yet (the marker block updates the "
            "per-individual posteriors): use local='individual'"
        )


def fit_problem(problem: NLME, control: Control, start_theta=None):
    """Run the estimation of ``problem`` with the settings ``control``; a `Results`.
    ``start_theta``: the population vector to start from (a hybrid fit's final stage)."""
    from pymixnn.results.results import Results  # results imports inference, which imports pyro

    if problem.model.neural:  # hybrid: staged, the networks trained (hybrid.py)
        from pymixnn.hybrid import fit_hybrid

        return fit_hybrid(problem, control)

    model, data = with_solver(problem.model, control.ode_rtol, control.ode_atol), problem.data
    # the estimation's copy: a solve failing at a line-search or sampled point is a NaN, counted
    fit_model = with_solver(problem.model, control.ode_rtol, control.ode_atol, tolerate_failures=True)
    if control.likelihood == "gq" and len(model.random) > 3:
        raise InputError(
            f"likelihood='gq' integrates at most 3 random effects (tensor-product "
            f"nodes); this model has {len(model.random)}: use 'is'"
        )
    _check_amortized(problem, control)
    setup = problem.genomic_setup()
    _check_function(problem, problem.start)
    check_solvable(model, problem.start, data)  # an ODE model: every individual, named on failure

    from pymixnn.inference import EstimationOptions, SVIOptions, estimate

    c = control
    options = EstimationOptions(
        seed=int(c.seed),
        device=c.device,
        dtype=c.dtype,
        threads=c.threads,
        refine=c.refine,
        is_samples=c.is_samples,
        likelihood=c.likelihood,
        local=c.local,
        refine_steps=int(c.refine_steps),
        gear=c.gear,
        start_theta=None if start_theta is None else tuple(float(v) for v in start_theta),
        distributed=bool(c.distributed),
        svi=SVIOptions(
            batch_size=int(c.batch_size),
            max_steps=int(c.max_steps),
            lr=c.lr,
            lr_final=c.lr / 20,
            num_particles=int(c.num_particles),
            progress=c.progress,
        ),
    )
    shard = getattr(problem, "shard", None)  # read as shards: the estimation sees the whole fit's sizes
    estimation = estimate(
        fit_model,
        data if shard is None else problem.global_data(),
        problem.design,
        problem.start_candidates(),
        options,
        law=problem.law,
        context=problem.context_matrix,
        observation=problem.observation,
        genomic=setup,
        levels=problem.level_setup,
    )
    markers = None
    if problem.markers is not None:
        estimation = _with_marker_record(estimation, problem)
        markers = {k: problem.markers[k] for k in ("matrix", "genotype", "levels")}
    genomic = problem.genomic
    settings = dict(
        seed=int(c.seed),
        device=c.device,
        batch_size=int(c.batch_size),
        max_steps=int(c.max_steps),
        lr=c.lr,
        num_particles=int(c.num_particles),
        refine=c.refine,
        init=problem.start,
        covariates=problem.covariates,
        context=problem.context_columns,
        observation=observation_to_dict(problem.observation),
        likelihood=c.likelihood,
        genotype=problem.genotype,
        genomic=None if genomic is None else genomic.to_dict(),
    )
    if problem.levels:  # only with levels: other fits' settings are unchanged
        settings["levels"] = [lv.to_dict() for lv in problem.levels]
    if problem.spatial is not None:
        settings["spatial"] = problem.spatial.to_dict()
    if c.local != "individual":  # only when amortized: other fits' settings are unchanged
        settings.update(local=c.local, refine_steps=int(c.refine_steps))
    if c.gear != "auto":  # only when chosen: other fits' settings are unchanged
        settings["gear"] = c.gear
    if shard is not None:  # read as shards: this process's part of the whole fit
        settings["shard"] = dict(shard)
    if any(problem.fallbacks.values()):  # only when one was taken: other fits' settings are unchanged
        settings["fallbacks"] = dict(problem.fallbacks)
    if getattr(estimation, "run", None) is not None:  # one table of counts: inference's and the problem's
        run = estimation.run
        solver = solver_counts(fit_model)  # an ODE model's right-hand-side evaluations, solves, failures
        estimation = dataclasses.replace(
            estimation, run=run.replace(fallbacks={**run.fallbacks, **problem.fallbacks, **solver})
        )
        if is_dynamic(model) and model.dynamics.__class__.__name__ == "ODESystem":
            settings.update(ode_rtol=float(control.ode_rtol), ode_atol=float(control.ode_atol))
    res = Results(
        model=model,
        data=data,
        design=problem.design
        if shard is None
        else problem.design.rows(shard["first"], shard["first"] + shard["n_individuals_here"]),
        estimation=estimation,
        settings=settings,
        observation=problem.observation,
        markers=markers,
    )
    _warn_diagnostics(res)
    return res


def _check_function(problem: NLME, values: Mapping[str, float]) -> None:
    """The first torch work of a fit: the structural function evaluated at the start values."""
    problem.check_function(values)


def _with_marker_record(estimation, problem: NLME):
    """The estimation with the marker matrix's description added to its genomic record (names,
    scaling, genotypes, map, interaction levels) that prediction for new genotypes needs."""
    mm, genomic = problem.markers["matrix"], problem.genomic
    extra = dict(
        marker_names=list(mm.names),
        marker_scale=np.asarray(mm.scale),
        genotypes=list(mm.genotypes),
        marker_map=None
        if mm.map is None
        else {"chr": list(mm.map["chr"]), "pos": np.asarray(mm.map["pos"], dtype=float)},
        interaction=genomic.interaction,
        levels=problem.markers["levels"],
        report=dict(mm.report),
        genotype_column=problem.genotype,
        markers_id=genomic.id,
    )
    record = estimation.genomic
    if hasattr(record, "replace"):  # a frozen GenomicPosterior record
        return dataclasses.replace(estimation, genomic=record.replace(**extra))
    record.update(extra)  # the former dict record
    return estimation


def _warn_diagnostics(res) -> None:
    """Each failed convergence/sanity check as a ConvergenceWarning, and the start kept when it
    is not the given one (a warning the user should see, not only a line in ``res.info``)."""
    import warnings

    from pymixnn.results.diagnostics import ConvergenceWarning, FallbackWarning

    fallback_messages = tuple(getattr(res.run, "fallback_warnings", ()) if res.run is not None else ())
    for message in fallback_messages:
        warnings.warn(message, FallbackWarning, stacklevel=3)
    for message in res.convergence_messages():
        warnings.warn(
            ("fit did not converge: " if not res.converged else "") + message,
            ConvergenceWarning,
            stacklevel=3,
        )
    for message in res.info.get("warnings", []):  # the start kept, when not the given one
        if message.startswith("start values:") and message not in fallback_messages:
            warnings.warn(message, UserWarning, stacklevel=3)
