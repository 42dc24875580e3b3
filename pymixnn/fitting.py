"""`fit()`: validate data and model, run the inference pipeline, return a `Results`.

>>> import pymixnn
>>> df = pymixnn.datasets.load("theo")
>>> res = pymixnn.fit(df, pymixnn.Model.named("onecpt_oral"), id="Id", x=["Dose", "Time"],
...                   y="Concentration", covariates={"V": ["Weight"]}, seed=0,
...                   progress=False)  # doctest: +SKIP
>>> round(res.fixed_effects["CL"], 1)  # doctest: +SKIP
2.8
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from pymixnn.model.covariates import CovariateDesign, normalize_mapping
from pymixnn.data.table import Data
from pymixnn.model.named import Model, resolve
from pymixnn.model import transforms as tr
from pymixnn.model.observation import Normal, Ordinal, resolve_levels
from pymixnn.model.observation import observation as resolve_observation
from pymixnn.model.observation import to_dict as observation_to_dict
from pymixnn.validation import (check_columns_unique, check_init, check_names, check_random_effects,
                                check_response_dtype, check_response_support, check_settings)

__all__ = ["fit"]


def _as_data(data, id, x, y, covariate_columns: list[str], dropna: bool,
             aux: dict[str, str], time_unit: str | None = None) -> Data:
    if isinstance(data, Data):
        if time_unit is not None and time_unit != data.time_unit:
            raise ValueError(f"time_unit={time_unit!r} applies to a DataFrame; the Data object has "
                             f"time_unit={data.time_unit!r}: give it to Data.from_pandas")
        missing = [c for c in covariate_columns if c not in data.covariate_cols]
        if missing:
            raise ValueError(f"covariates {missing} are not in the Data object "
                             f"(it has {data.covariate_cols}); rebuild it with covariates=")
        if aux and dict(data.aux_cols) != aux:
            raise ValueError(f"the Data object has auxiliary columns {data.aux_cols}, not {aux}; "
                             "rebuild it with Data.from_pandas(..., aux=...)")
        return data
    if isinstance(data, pd.DataFrame):
        if id is None or x is None or y is None:
            raise ValueError("with a DataFrame, give the columns: fit(df, model, id=..., x=..., y=...)")
        return Data.from_pandas(data, id=id, x=x, y=y, covariates=covariate_columns or None,
                                dropna=dropna, aux=aux or None, time_unit=time_unit)
    raise TypeError(f"data must be a pandas DataFrame or a pymixnn.Data, got {type(data).__name__}")


def _check_model_on_data(model: Model, data: Data, obs) -> None:
    """Column count, support of y for the error model / observation family (clear errors)."""
    if model.x_names is not None and len(model.x_names) != len(data.x_cols):
        raise ValueError(f"model {model.name!r} reads {len(model.x_names)} x column(s) "
                         f"{list(model.x_names)}, but x={data.x_cols} has {len(data.x_cols)}")
    frame = data.frame
    if obs.name != "ordinal":  # ordinal levels are checked, and coded 0..K-1, before Data
        obs.validate(frame[data.y_col], data.y_col,
                     {role: frame[col].rename(col) for role, col in data.aux_cols.items()})
    check_response_support(model, data, obs)


# named models whose x columns have a physical domain: (column position, meaning, lower bound)
_X_DOMAINS = {"onecpt_oral": [(0, "dose", 0.0), (1, "time after the dose", 0.0)]}


def _check_design(model: Model, data: Data, obs) -> None:
    """Before any torch work: x inside a named model's domain (the closed-form one-compartment
    curve is meaningless at negative times: a fit there reported V = 3.8e6 as converged), and
    enough observations per individual for the random effects to be told apart from each other
    and from the residual error (one observation per individual with three random effects gave
    ka = 1.8e-5, CL = 2.7e-7, reported as converged)."""
    for j, meaning, lower in _X_DOMAINS.get(model.name or "", []):
        if j < len(data.x_cols):
            bad = np.flatnonzero(data.x[:, j] < lower)
            if bad.size:
                col = data.x_cols[j]
                raise ValueError(f"column {col!r} is the {meaning} of model {model.name!r} and must "
                                 f"be >= {lower:g}: row {data.frame.index[bad[0]]!r} has value "
                                 f"{data.x[bad[0], j]:g} ({bad.size} such rows)")
    d, most = len(model.random), int(data.n_obs_per_individual.max())
    gaussian = obs.name == "gaussian"
    if d and (most < d or (gaussian and most == 1)):
        why = (f"{d} random effects ({', '.join(model.random)})" if most < d else
               "a random effect and a residual error that one observation cannot tell apart")
        raise ValueError(f"every individual has at most {most} observation(s), too few for {why}: "
                         f"the individual parameters are not identifiable; give fewer random "
                         f"effects (random=[...]) or data with more observations per individual")


def _initial_values(model: Model, data: Data, init: Mapping[str, float] | None,
                    obs) -> dict[str, float]:
    values: dict[str, float] = {}
    if model.self_start is not None:
        # on the scale of the structural function: log counts, logits of proportions, ...
        values.update(model.self_start(data.x, obs.working_response(data.y, data.aux)))
    values.update(model.init or {})
    values.update({str(k): float(v) for k, v in (init or {}).items()})
    missing = [p for p in model.parameters if p not in values]
    if missing:
        raise ValueError(f"no initial value for {missing}: give init={{...}} (natural scale) or a "
                         "model with a self_start")
    for p in model.parameters:
        if not tr.valid_natural(model.transforms[p], values[p]):
            if model.init is None and init is None:  # self-start fell outside the support
                values[p] = {"log": 1.0, "logit": 0.5, "probit": 0.5}.get(model.transforms[p], 0.0)
            else:
                raise ValueError(f"initial value of {p!r} is {values[p]!r}, outside the support of "
                                 f"its {model.transforms[p]!r} transform")
    return {p: float(values[p]) for p in model.parameters}


def _starts(model: Model, data: Data, start: dict[str, float], obs) -> list[tuple[str, dict]]:
    """Candidate start values: the given ones (user's init over the model's init and self-start)
    and, when those differ from it, the data-based self-start alone; the pipeline keeps the one
    with the best pooled fit (inference/estimate.py, _best_start) and says so."""
    starts = [("given", start)]
    if model.self_start is None:
        return starts
    try:
        auto = _initial_values(model.replace(init=None), data, None, obs)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):  # a self-start that fails on these data
        return starts
    if any(not np.isclose(auto[p], start[p], rtol=1e-6) for p in model.parameters):
        try:
            _check_function(model, data, auto)
        except ValueError:
            return starts
        starts.append(("self-start", auto))
    return starts


def _check_function(model: Model, data: Data, init: dict[str, float]) -> None:
    import torch

    psi = torch.tensor([[init[p] for p in model.parameters]], dtype=torch.float64)
    x_pad, _, mask = data.padded()
    x = torch.as_tensor(x_pad[:1], dtype=torch.float64)
    try:
        out = model.function(psi.unsqueeze(-2), x)
    except Exception as err:  # the user's function: report it with the shapes it was given
        raise ValueError(f"the structural function failed on psi of shape {tuple(psi.unsqueeze(-2).shape)} "
                         f"and x of shape {tuple(x.shape)}: {err}") from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape[:-1]):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the structural function must return a tensor of shape {tuple(x.shape[:-1])} "
                         f"for psi {tuple(psi.unsqueeze(-2).shape)} and x {tuple(x.shape)}; got {shape}")
    if not bool(torch.isfinite(out[0][torch.as_tensor(mask[0])]).all()):
        raise ValueError(f"the structural function gives non-finite predictions at the initial values "
                         f"{init} for individual {data.ids[0]!r}; change init")


def fit(data: pd.DataFrame | Data, model: Model | str, *, id: str | None = None,
        x: str | Sequence[str] | None = None, y: str | None = None,
        covariates: Mapping[str, Sequence[str] | str] | None = None, dropna: bool = False,
        time_unit: str | None = None, init: Mapping[str, float] | None = None, error: str | None = None,
        omega: str | None = None, random: Sequence[str] | None = None,
        transforms: Mapping[str, str] | str | None = None,
        random_effects="gaussian", n_components: int | str | None = None,
        context: Sequence[str] | str | None = None,
        observation="gaussian", trials: str | None = None, censoring: str | None = None,
        genotype: str | None = None, genomic=None,
        batch_size: int = 512, max_steps: int = 4000, lr: float = 0.02, num_particles: int = 4,
        refine: bool = True, is_samples: int | None = None, likelihood: str = "auto",
        device: str = "cpu",
        dtype: str | None = None, threads: int | None = None, seed: int = 0,
        progress: bool = True):
    """Fit a nonlinear mixed-effects model by minibatch stochastic variational inference.

    Parameters
    ----------
    data : long-format DataFrame (one row per observation) or a :class:`pymixnn.Data`.
    model : a :class:`pymixnn.Model` or a named model ("onecpt_oral", "logistic", "gompertz",
        "asymptotic", "exp_growth", "emax", "sigmoid_emax", "linear").
    id, x, y : columns of the individual identifier, the covariate(s) of the structural function
        (several for e.g. ["Dose", "Time"]) and the response.
    covariates : covariate model on transformed parameters, ``{"V": ["Weight"]}`` (saemix's
        covariate.model); covariates must be constant within an individual.
    dropna : drop rows with missing y (reported) instead of raising.
    time_unit : "s", "min", "h", "d" or "w": x columns given as dates (datetime64 or timestamps)
        become the time elapsed since their earliest date in this unit (stated in the summary;
        ``predict(newdata)`` converts new dates the same way). Dates without it are an error.
    init : initial fixed effects on the natural scale (override the model's init / self-start).
    error, omega, random, transforms : override the model's error model ("constant",
        "proportional", "combined", "exponential"), covariance ("diagonal", "full"), parameters with
        random effects, and transforms.
    random_effects : law of the random effects: "gaussian" (default), "mixture" (K Gaussian
        components, ``n_components=`` K or "auto" to choose K by BIC), "flow" (a normalizing flow,
        nonparametric: multimodal or skewed laws), or a spec object ``pymixnn.Gaussian()``,
        ``pymixnn.Mixture(...)``, ``pymixnn.Flow(kind=..., n_layers=..., hidden=...)``.
    context : covariate columns the flow's law is conditioned on (a conditional flow), e.g.
        ``context=["scenario"]``; constant within an individual.
    observation : the observation model: "gaussian" (default; the model's error model),
        "poisson", "negative_binomial", "zero_inflated_poisson", "binomial", "bernoulli",
        "ordinal", a spec (``pymixnn.Poisson(link="identity")``, ``pymixnn.Ordinal(levels=[...])``)
        or ``pymixnn.LogLikelihood(function, parameters={...})``. The structural function gives
        the family's linear predictor (log rate, logit of a probability, ...); see
        :mod:`pymixnn.models.observation`.
    trials : column with the number of trials of each binomial observation (e.g. the plant's
        number of leaves when y counts senescent leaves).
    censoring : column flagging left-censored observations (1: below the limit of quantification,
        y holding that limit; 0: observed), fitted by the M3 likelihood (Gaussian observations).
    genotype : column with each individual's genotype (constant within an individual), the rows
        of the marker matrix of ``genomic``.
    genomic : ``pymixnn.Genomic(markers, params=[...], prior="horseshoe"|"ridge", map=None)``:
        marker effects on the named parameters (see :mod:`pymixnn.genomic`); the fit then has
        ``marker_effects``, ``top_markers()``, ``plot_manhattan()``, ``variance_explained``,
        ``genetic_values`` and ``predict_genotypes()``. Minibatches are then made of whole
        genotypes.
    batch_size : individuals per SVI minibatch. max_steps, lr, num_particles : SVI settings
        (Adam with step size decaying from lr to lr/20 over max_steps; ELBO particles).
    refine : maximize the importance-weighted ELBO after SVI (maximum-likelihood accuracy).
    is_samples : importance samples per individual for ll.is and SEs (default from data size).
    likelihood : how the marginal likelihood (refinement, SEs, reported log-likelihood) integrates
        the random effects out: "is" (importance sampling, saemix's ll.is), "gq" (adaptive
        Gauss-Hermite quadrature, saemix's ll.gq and lme4's nAGQ: 25, 15 or 7 nodes per random
        effect for 1, 2 or 3 of them) or "auto" (default: gq for one or two random effects,
        unless the data are so large that the nodes would cost more than 2e7 evaluations).
    device : "cpu", "cuda" or "auto". dtype : "float32" / "float64" (default: float64 on CPU, float32 on CUDA). threads : torch threads during the fit (default 1 below 200,000
        observations, where more threads only add contention).
    seed : random seed; the same seed gives identical results.
    progress : show a tqdm progress bar.

    Returns
    -------
    Results
    """
    from pymixnn.results.results import Results  # results imports inference, which imports pyro

    from pymixnn.model.random_effects import Flow
    from pymixnn.model.random_effects import resolve as resolve_law

    check_settings(lr=lr, max_steps=max_steps, batch_size=batch_size, num_particles=num_particles,
                   is_samples=is_samples, threads=threads, refine=refine, progress=progress, seed=seed,
                   dtype=dtype, device=device, likelihood=likelihood, dropna=dropna)
    mapping = normalize_mapping(covariates)
    model = resolve(model)
    obs = resolve_observation(observation)
    aux = _observation_columns(data, obs, trials, censoring, error)
    law = resolve_law(random_effects, n_components=n_components, context=context)
    overrides = {k: v for k, v in dict(error=error, omega=omega, random=random,
                                       transforms=transforms).items() if v is not None}
    check_names(random, model, "random")
    check_names(transforms if isinstance(transforms, Mapping) else None, model, "transforms")
    if overrides:
        model = model.replace(**overrides)
    check_random_effects(model)
    check_init(init, model)
    context_columns = list(law.context) if isinstance(law, Flow) and law.context else []
    genomic_columns = _genomic_columns(genotype, genomic, model)
    covariate_columns = list(dict.fromkeys([c for cols in mapping.values() for c in cols]
                                           + context_columns + genomic_columns))
    if isinstance(data, pd.DataFrame):
        check_columns_unique(data, [id, *([x] if isinstance(x, str) else list(x or [])), y,
                                    *aux.values(), *covariate_columns])
        check_response_dtype(data, y, obs)
    if isinstance(obs, Ordinal):
        data, obs = _encode_ordinal(data, obs, y)
    _check_genotype_role(genotype, data, id, x, y)
    data = _as_data(data, id, x, y, covariate_columns, dropna, aux, time_unit)
    _check_model_on_data(model, data, obs)
    _check_design(model, data, obs)
    design = CovariateDesign.build(mapping, data.covariates, model.parameters)
    context_matrix = _context_matrix(data, context_columns, model) if context_columns else None
    start = _initial_values(model, data, init, obs)
    if likelihood == "gq" and len(model.random) > 3:
        raise ValueError(f"likelihood='gq' integrates at most 3 random effects (tensor-product "
                         f"nodes); this model has {len(model.random)}: use 'is'")
    markers, setup = (None, None)
    if genomic is not None:  # marker checks (pandas/numpy) before any torch work
        markers, setup = _genomic_setup(genomic, genotype, data)
    _check_function(model, data, start)

    from pymixnn.inference import EstimationOptions, SVIOptions, estimate

    options = EstimationOptions(
        seed=int(seed), device=device, dtype=dtype, threads=threads, refine=refine,
        is_samples=is_samples, likelihood=likelihood,
        svi=SVIOptions(batch_size=int(batch_size), max_steps=int(max_steps), lr=lr,
                       lr_final=lr / 20, num_particles=int(num_particles), progress=progress))
    estimation = estimate(model, data, design, _starts(model, data, start, obs), options, law=law,
                          context=context_matrix,
                          observation=obs, genomic=setup)
    if markers is not None:
        mm = markers["matrix"]
        estimation.genomic.update(
            marker_names=list(mm.names), marker_scale=np.asarray(mm.scale), genotypes=list(mm.genotypes),
            marker_map=None if mm.map is None else {"chr": list(mm.map["chr"]),
                                                    "pos": np.asarray(mm.map["pos"], dtype=float)},
            interaction=genomic.interaction, levels=markers["levels"], report=dict(mm.report),
            genotype_column=genotype, markers_id=genomic.id)
    res = Results(model=model, data=data, design=design, estimation=estimation,
                   settings=dict(seed=int(seed), device=device, batch_size=int(batch_size),
                                 max_steps=int(max_steps), lr=lr, num_particles=int(num_particles),
                                 refine=refine, init=start, covariates=mapping,
                                 context=context_columns, observation=observation_to_dict(obs),
                                 likelihood=likelihood, genotype=genotype,
                                 genomic=None if genomic is None else genomic.to_dict()),
                   observation=obs, markers=markers)
    _warn_diagnostics(res)
    return res


def _warn_diagnostics(res) -> None:
    """Each failed convergence/sanity check as a ConvergenceWarning, and the start kept when it
    is not the given one (a warning the user should see, not only a line in ``res.info``)."""
    import warnings

    from pymixnn.results.diagnostics import ConvergenceWarning

    for message in res.convergence_messages():
        warnings.warn(("fit did not converge: " if not res.converged else "") + message,
                      ConvergenceWarning, stacklevel=3)
    for message in res.info.get("warnings", []):  # the start kept, when not the given one
        if message.startswith("start values:"):
            warnings.warn(message, UserWarning, stacklevel=3)


def _observation_columns(data, obs, trials, censoring, error) -> dict[str, str]:
    """Check the auxiliary columns against the family (before any data conversion); returns the
    role -> column mapping."""
    aux: dict[str, str] = {}
    if not isinstance(obs, Normal) and error is not None:
        raise ValueError(f"error={error!r} sets the Gaussian error model; observation="
                         f"{obs.name!r} has its own law (drop error=)")
    if censoring is not None:
        if not isinstance(obs, Normal):
            frame = data.frame if isinstance(data, Data) else data
            flags = frame[censoring] if censoring in getattr(frame, "columns", []) else None
            where = ""
            if flags is not None:
                on = np.flatnonzero(pd.to_numeric(flags, errors="coerce").fillna(1).to_numpy() != 0)
                if on.size:
                    where = f": row {flags.index[on[0]]!r} has value {flags.iloc[on[0]]!r}"
            raise ValueError(f"censoring column {censoring!r} flags censored observations{where}; "
                             f"left-censoring (M3) needs observation='gaussian', not {obs.name!r}")
        aux["censored"] = censoring
    if "trials" in obs.needs:
        if trials is None:
            raise ValueError(f"observation={obs.name!r} needs trials=<column with the number of "
                             "trials of each observation>")
        aux["trials"] = trials
    elif trials is not None:
        raise ValueError(f"trials={trials!r} is used only by observation='binomial' (this fit uses "
                         f"{obs.name!r})")
    return aux


def _encode_ordinal(data, obs, y):
    """Ordinal y as category codes 0..K-1 (levels given, or the sorted values / an ordered
    categorical's categories); a level outside the given ones is an error naming its row."""
    if isinstance(data, Data):
        frame, column = data.frame, data.y_col
    else:
        if y not in getattr(data, "columns", []):
            return data, obs  # Data.from_pandas reports the missing column
        frame, column = data, y
    values = frame[column]
    obs = resolve_levels(obs, values, column)
    present = values.notna()
    obs.validate(values[present], column, {})
    codes = obs.encode(values)
    if isinstance(data, Data):
        if not np.array_equal(codes, data.y):
            raise ValueError("ordinal data given as a pymixnn.Data must hold the codes 0..K-1 of "
                             f"the levels {list(obs.levels)}; pass the DataFrame instead")
        return data, obs
    out = frame.copy()
    out[column] = codes
    return out, obs


def _context_matrix(data: Data, columns: list[str], model: Model) -> np.ndarray:
    """Context of a conditional flow, one row per individual: numeric covariates standardized,
    categorical ones coded as indicators of their non-reference levels (CovariateDesign's coding)."""
    coded = CovariateDesign.build({model.parameters[0]: columns}, data.covariates, model.parameters)
    matrix = coded.matrix.astype(np.float64)
    sd = matrix.std(axis=0)
    constant = [coded.names[j] for j in np.nonzero(sd == 0)[0]]
    if constant:
        raise ValueError(f"flow context {columns}: {constant} take a single value in the data; "
                         "a conditional flow needs covariates that vary between individuals")
    return (matrix - matrix.mean(axis=0)) / sd


def _genomic_columns(genotype, genomic, model: Model) -> list[str]:
    """Check the genomic arguments against the model; the individual-level columns they need."""
    from pymixnn.model.genomic import Genomic

    if genomic is None:
        if genotype is not None:
            raise ValueError(f"genotype={genotype!r} is used with genomic=pymixnn.Genomic(markers, "
                             "params=[...]): give the marker matrix")
        return []
    if not isinstance(genomic, Genomic):
        raise TypeError(f"genomic must be a pymixnn.Genomic(markers, params=[...]), got "
                        f"{type(genomic).__name__}")
    if genotype is None:
        raise ValueError("genomic=... needs genotype=<column naming each individual's genotype> "
                         "(the rows of the marker matrix)")
    unknown = [p for p in genomic.params if p not in model.parameters]
    if unknown:
        raise ValueError(f"Genomic(params=...) names {unknown}, which model {model.name!r} does not "
                         f"have; its parameters are {list(model.parameters)}")
    fixed = [p for p in genomic.params if p not in model.random]
    if fixed:
        raise ValueError(f"marker effects on {fixed} need a random effect on them (the markers "
                         f"explain between-individual variation): add them to random=, now "
                         f"{list(model.random)}")
    cols = [genotype] + ([genomic.interaction] if genomic.interaction else [])
    if genomic.interaction == genotype:
        raise ValueError(f"Genomic(interaction=...) must be another column than genotype={genotype!r}")
    return cols


def _check_genotype_role(genotype, data, id, x, y) -> None:
    """genotype= naming the id, an x or the y column: an error that names genotype=."""
    if genotype is None:
        return
    if isinstance(data, Data):
        id, x, y = data.id_col, data.x_cols, data.y_col
    roles = {"id": [id], "x": [x] if isinstance(x, str) else list(x or []), "y": [y]}
    for role, columns in roles.items():
        if genotype in columns:
            raise ValueError(f"genotype={genotype!r} is the {role} column: genotype= names the column "
                             "holding each individual's genotype (the rows of the marker matrix), "
                             f"another column than {role}=" + (
                                 f"; if each individual is its own genotype, copy it: "
                                 f"df['genotype'] = df[{genotype!r}]" if role == "id" else ""))


def _genomic_setup(genomic, genotype: str, data: Data):
    """Marker matrix (validated, standardized) and the cells of the genomic block."""
    from pymixnn.inference.genomic import GenomicSetup
    from pymixnn.data.markers import prepare_markers

    ind_genotype = data.covariates[genotype].to_numpy()
    markers = prepare_markers(genomic.markers, pd.unique(ind_genotype), map=genomic.map,
                              id=genomic.id, genotype_column=genotype)
    rows = markers.rows(ind_genotype)
    if genomic.interaction:
        values = data.covariates[genomic.interaction]
        levels = sorted(pd.unique(values), key=str)
        if len(levels) < 2:
            raise ValueError(f"Genomic(interaction={genomic.interaction!r}): the column has a single "
                             f"level {levels!r}; a scenario-by-marker interaction needs two or more")
        level = np.array([levels.index(v) for v in values], dtype=np.int64)
    else:
        levels, level = [None], np.zeros(len(rows), dtype=np.int64)
    pairs = np.stack([rows, level], axis=1)
    cells, individual_cell = np.unique(pairs, axis=0, return_inverse=True)
    n_genotypes = len(np.unique(rows))
    residual = genomic.residual
    if residual == "auto":
        residual = data.n_individuals > n_genotypes
    setup = GenomicSetup(G=markers.values, cell_genotype=cells[:, 0], cell_level=cells[:, 1],
                         n_levels=len(levels), individual_cell=np.asarray(individual_cell).ravel(),
                         params=tuple(genomic.params), prior=genomic.prior, residual=bool(residual),
                         global_scale=float(genomic.global_scale), max_iter=int(genomic.max_iter))
    markers_info = dict(matrix=markers, genotype=genotype, levels=list(levels))
    return markers_info, setup
