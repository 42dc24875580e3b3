"""The fit of a model with neural terms (:class:`pymixnn.NeuralTerm`), staged inside one ``fit()``:

1. **mechanistic**: from the pooled fits of the start values and Laplace-EM iterations (as every
   fit starts), the population parameters and local posteriors trained by minibatch SVI
   (inference/hybrid.py) with every term's output at zero (its untrained state);
2. **network**: the networks' weights trained with the population parameters held; in stages
   1-2 the networks' random inputs and weights are at zero;
3. **all**: weights, population parameters and local posteriors trained together;
4. **final**: the networks frozen at the trained weights, the model refitted by the full pipeline
   from stage 3's values: the mechanistic parameters' estimates, SEs (conditional on the
   networks), individual estimates, log-likelihood; AIC and BIC count the networks' weights.

Stages 2 and 3 stop early on held-out individuals (``holdout`` of them, default 20%); every
individual's data enter stages 1 and 4.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings

import numpy as np
import torch

from pymixnn.control import Control
from pymixnn.model import transforms as tr
from pymixnn.model.dynamics.models import check_solvable, with_solver
from pymixnn.model.neural import NeuralState, with_state
from pymixnn.problem import NLME
from pymixnn.validation import InputError

__all__ = ["fit_hybrid", "HOLDOUT"]

HOLDOUT = 0.2
# a model solved by an ODE solver (each evaluation a whole solve, ~0.2-0.5 s for 20-200
# individuals of a 3-state PK/PD model at rtol 1e-6): stages 1-3 solve at rtol 1e-3 / atol 1e-5
# at most (the final stage at the fit's own tolerances) and run at most ODE_TRAIN_STEPS steps
# each unless Control(neural_steps=) says otherwise (the mechanistic stage a third of them: the
# final stage refits), their validation score every 10 steps, the held-out posteriors updated
# every 4th step
TRAIN_RTOL, TRAIN_ATOL, ODE_TRAIN_STEPS = 1e-3, 1e-5, 600
LOG_SD_WEIGHTS = np.log(0.1)  # random last-layer weights start with sd 0.1 (the inputs with sd 1)


def _check_supported(problem: NLME, control: Control) -> None:
    unsupported = [
        ("random_effects=" + repr(problem.law.name), problem.law.name != "gaussian"),
        ("genomic=", problem.genomic is not None),
        ("levels=", bool(problem.levels)),
        ("spatial=", problem.spatial is not None),
        ("local='amortized'", control.local != "individual"),
    ]
    bad = [name for name, on in unsupported if on]
    if bad:
        raise InputError(
            f"a model with neural terms does not support {', '.join(bad)} yet: fit it with Gaussian "
            "random effects and individual local posteriors"
        )


def _with_model(problem: NLME, model, init: dict[str, float]) -> NLME:
    p = copy.copy(problem)
    p.fallbacks = dict(problem.fallbacks)
    p.model, p.init = model, init
    p.start = p.initial_values()
    return p


def _natural(program, theta: np.ndarray) -> dict[str, float]:
    mu = program.mu_uncentred(torch.as_tensor(theta, dtype=program.dtype))
    return {
        p: float(tr.forward(t, mu[j : j + 1])[0])
        for j, (p, t) in enumerate(zip(program.params, program.transforms))
    }


def fit_hybrid(problem: NLME, control: Control):
    """Fit ``problem`` (a model with neural terms) by the four stages of the module docstring,
    ``control.neural_starts`` times (start k with seed ``seed + k``), keeping the fit of highest
    log-likelihood; every start's log-likelihood is in ``res.hybrid.starts``."""
    best, kept, starts = None, 0, []
    for k in range(int(control.neural_starts)):
        seed = int(control.seed) + k
        res = _fit_once(problem, dataclasses.replace(control, seed=seed) if k else control)
        loglik = float(res.loglik)
        share, seconds = float(res.hybrid.share), float(res.hybrid.seconds)
        starts.append(dict(start=k + 1, seed=seed, loglik=loglik, share=share, seconds=seconds))
        # a start whose log-likelihood is not finite (nan) never wins over one whose is
        if best is None or loglik > float(best.loglik) or not np.isfinite(float(best.loglik)):
            best, kept = res, k
    for k, s in enumerate(starts):
        s["kept"] = k == kept
    if len(starts) > 1:  # the fit's seed is the user's (the kept start's is in the starts table)
        best.hybrid.starts = starts
        best.settings.update(seed=int(control.seed), neural_starts=len(starts))
        best.info["seed"] = int(control.seed)
        run = getattr(best.estimation, "run", None)
        if run is not None:
            best.estimation = dataclasses.replace(best.estimation, run=run.replace(seed=int(control.seed)))
    return best


def _fit_once(problem: NLME, control: Control):
    """One start: the four stages from ``control.seed``."""
    from pymixnn.fitting import fit_problem
    from pymixnn.inference.hybrid import dynamics_share, hybrid_program, start_theta
    from pymixnn.inference.options import threads
    from pymixnn.inference.rng import isolated_rng
    from pymixnn.results.hybrid import HybridRecord

    _check_supported(problem, control)
    problem.check_function(problem.start)  # the first torch work: the user's function at the start
    check_solvable(
        with_solver(problem.model, control.ode_rtol, control.ode_atol), problem.start, problem.data
    )
    t_start = time.perf_counter()
    model, terms = problem.model, dict(problem.model.neural)
    extra = list(model.neural_parameters)
    state = NeuralState.initial(terms, seed=int(control.seed))
    rtol, atol = max(control.ode_rtol, TRAIN_RTOL), max(control.ode_atol, TRAIN_ATOL)
    full = with_solver(with_state(model, state), rtol, atol, tolerate_failures=True)
    program = hybrid_program(full, problem.data, problem.design, problem.observation, int(control.seed))
    inputs_ = sorted(p for name, t in terms.items() for p in t.random_names(name)[: t.random_inputs])
    log_sd_new = np.array([0.0 if p in inputs_ else LOG_SD_WEIGHTS for p in extra])
    with isolated_rng(int(control.seed), torch.device("cpu")), threads(control.threads or 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the start's own notes; the final fit reports its own
            theta = start_theta(
                program, full, problem.start_candidates(), len(extra), log_sd_new, int(control.seed)
            )
        theta, loc, sd, records = _train(program, state, theta, control, extra, inputs_)

    N = problem.data.n_individuals
    trained = state.copy()
    frozen = with_state(model, trained).replace(neural=None)
    res = fit_problem(_with_model(problem, frozen, _natural(program, theta)), control, start_theta=theta)
    final = hybrid_program(
        with_solver(with_state(model, trained), control.ode_rtol, control.ode_atol, tolerate_failures=True),
        problem.data,
        problem.design,
        problem.observation,
        int(control.seed),
    )
    share, ranges = dynamics_share(
        final, trained, np.asarray(res.estimation.theta), np.asarray(res.estimation.eta_map)
    )
    psi = np.asarray(res.estimation.psi_mean)
    random = psi[:, [list(res.model.parameters).index(p) for p in extra]] if extra else np.zeros((N, 0))
    res.hybrid = HybridRecord(
        terms={k: t.to_dict() for k, t in terms.items()},
        weights={k: v.numpy().copy() for k, v in trained.weights.items()},
        center={k: v.numpy().copy() for k, v in trained.center.items()},
        scale={k: v.numpy().copy() for k, v in trained.scale.items()},
        low={k: None if ranges.get(k, (None,))[0] is None else np.asarray(ranges[k][0]) for k in terms},
        high={k: None if ranges.get(k, (None, None))[1] is None else np.asarray(ranges[k][1]) for k in terms},
        random=random,
        random_names=extra,
        population=np.array([float(res.fixed_effects[p]) for p in extra]),
        share=share,
        stages=records,
        seconds=time.perf_counter() - t_start,
    )
    res.apply_network_parameters()
    return res


def _stage_steps(control: Control, ode: bool) -> int:
    """The most steps of a training stage: ``neural_steps`` when given, else ``max_steps`` (at
    most ODE_TRAIN_STEPS for an ODE model)."""
    if control.neural_steps is not None:
        return int(control.neural_steps)
    return min(int(control.max_steps), ODE_TRAIN_STEPS) if ode else int(control.max_steps)


def _log_sd(program, theta: np.ndarray) -> np.ndarray:
    """Each random effect's prior log sd under ``theta``."""
    L = program.omega_tril(torch.as_tensor(theta, dtype=program.dtype)).detach().cpu().numpy()
    return 0.5 * np.log(np.sum(L * L, axis=1))


def _train(program, state, theta, control: Control, extra: list, random_inputs: list):
    """Stages 1-3 (inference/hybrid.py): the kept theta, local posteriors (mean, sd) and the stage
    records (each with the population parameters it kept, natural scale: ``"fixed"``)."""
    from pymixnn.inference.hybrid import TrainingOptions, record_inputs, train_hybrid
    from pymixnn.inference.program import integrates

    N = program.n_individuals
    loc = np.zeros((N, program.layout.n_random))
    sd = np.tile(np.exp(_log_sd(program, theta)), (N, 1))
    ode = integrates(program.model)
    options = TrainingOptions(
        max_steps=_stage_steps(control, ode),
        window=10 if ode else 25,
        holdout_every=4 if ode else 1,
        lr=float(control.lr),
        batch_size=int(control.batch_size),
        num_particles=int(control.num_particles),
        seed=int(control.seed),
        holdout=HOLDOUT,
        progress=bool(control.progress),
    )
    cols = [program.params.index(p) for p in extra]
    inputs = [program.params.index(p) for p in random_inputs]
    records = []
    # the inputs seen along the trajectories at the start values: the networks' standardization
    # (not after the mechanistic stage, whose fit without the terms can move far: a pendulum
    # without its restoring force fitted its release angle at a sixth of the truth)
    record_inputs(program, state, theta, loc)
    for stage in ("mechanistic", "network", "all"):
        steps = max(options.max_steps // 3, 50) if ode and stage == "mechanistic" else options.max_steps
        stage_options = dataclasses.replace(options, max_steps=steps)
        theta, loc, sd, rec = train_hybrid(program, state, theta, loc, sd, stage, stage_options, cols, inputs)
        records.append({**rec.to_dict(), "fixed": _natural(program, theta)})
    return theta, loc, sd, records
