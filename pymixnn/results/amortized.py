"""The encoder of a fit with ``local="amortized"`` as the results use it: the amortization gap per
individual, and the posterior of individuals not in the fit in one forward pass."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pymixnn.data.table import Data

__all__ = [
    "modes_of",
    "amortization_table",
    "encode_individuals",
    "needs_encoder",
    "posterior_modes",
    "new_individual_psi",
    "new_individuals_data",
    "new_program",
]


def needs_encoder(res, what: str) -> dict:
    """The fit's amortized record, or a ValueError saying that ``what`` needs one."""
    record = getattr(res.estimation, "amortized", None)
    if not record:
        raise ValueError(
            f"{what} needs the encoder of a fit with local='amortized' (this fit has per-individual "
            "local posteriors): refit with pymixnn.fit(..., local='amortized')"
        )
    return record


def amortization_table(res) -> pd.DataFrame:
    """Per individual: the ELBO of the encoder's q, of the per-individual optimum q* (Newton steps
    to the mode, then variational steps, at the same theta) and their difference, the
    amortization gap (nats); with ``refine_steps``, the semi-amortized q's ELBO and gap too; the
    effective sample size of the encoder's q as an importance-sampling proposal (``ess``, of
    ``gap_draws`` draws) and whether it was flagged (below 10% of them: the individual then got
    per-individual Newton steps). Beyond ``gap_individuals`` individuals (EstimationOptions,
    10,000) these are measured on that many random individuals: NaN (flagged False) elsewhere."""
    rec = needs_encoder(res, "the amortization gap")
    out = pd.DataFrame(
        {
            "elbo_encoder": np.asarray(rec["elbo_encoder"]),
            "elbo_individual": np.asarray(rec["elbo_individual"]),
        },
        index=pd.Index(res.data.ids, name=res.data.id_col),
    )
    out["gap"] = out["elbo_individual"] - out["elbo_encoder"]
    if rec.get("elbo_refined") is not None:
        out["elbo_refined"] = np.asarray(rec["elbo_refined"])
        out["gap_refined"] = out["elbo_individual"] - out["elbo_refined"]
    if rec.get("ess") is not None:
        out["ess"] = np.asarray(rec["ess"], dtype=float)
        out["flagged"] = np.asarray(rec["flagged"], dtype=bool)
    return out


def new_individuals_data(res, newdata: pd.DataFrame | Data) -> Data:
    """``newdata`` read with the fitted data's columns (id, x, y, covariates, aux): the records
    the encoder reads. For a fit on event data, NONMEM records (a DataFrame read by
    ``Data.from_nonmem`` with the fit's id, time and DV names, its covariates and time-varying
    covariates; or such a Data)."""
    d = res.data
    if getattr(d, "events", None) is not None:
        return _new_event_data(res, newdata)
    if isinstance(newdata, Data):
        return newdata
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame or a Data, got {type(newdata).__name__}")
    return Data.from_pandas(
        newdata,
        id=d.id_col,
        x=d.x_cols,
        y=d.y_col,
        covariates=d.covariate_cols,
        aux=d.aux_cols,
        time_unit=d.time_unit,
    )


def _new_event_data(res, newdata: pd.DataFrame | Data) -> Data:
    """New individuals' NONMEM records as a Data with events (see new_individuals_data)."""
    d = res.data
    if isinstance(newdata, Data):
        if newdata.events is None:
            raise ValueError(
                "this fit is on event data: give the new individuals' NONMEM records "
                "(a DataFrame, or pymixnn.Data.from_nonmem(...))"
            )
        return newdata
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame or a Data, got {type(newdata).__name__}")
    varying = list(d.events.time_varying)
    individual = [c for c in d.covariate_cols if c not in varying]
    return Data.from_nonmem(
        newdata,
        id=d.id_col,
        time=d.x_cols[0],
        dv=d.y_col,
        covariates=individual or None,
        time_varying=varying or None,
        censoring=d.aux_cols.get("censored"),
    )


def encode_individuals(
    res, newdata: pd.DataFrame, steps: int | None = None
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """(ids, eta (n, d), its covariance (n, d, d)) of the individuals of ``newdata`` from the fitted
    encoder: one forward pass, then ``steps`` Newton steps per individual towards its posterior
    mode at the fitted parameters (default: the fit's ``refine_steps``; 0: the encoder alone).
    ``newdata`` needs the fit's id, x and y columns, its covariates and aux columns (endpoint,
    censoring, trials)."""
    import torch

    from pymixnn.inference.encoder import Encoder, data_cells

    rec = needs_encoder(res, "newdata")
    steps = int(rec.get("refine_steps", 0)) if steps is None else int(steps)
    data = new_individuals_data(res, newdata)
    x, y, mask = data.padded()
    aux = {role: data.padded_aux(role, fill=1.0 if role == "trials" else 0.0) for role in data.aux_cols}
    as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    cells, mask = data_cells(
        as_t(x),
        as_t(y),
        torch.as_tensor(mask),
        {k: as_t(v) for k, v in aux.items()},
        list(data.x_cols),
        getattr(data, "events", None),
    )
    Z = new_design_rows(res, data)
    context = new_context(res, data)
    # a conditional flow's context follows the design rows among the encoder's inputs (encoder_inputs)
    ind = Z if context is None else np.concatenate([Z, context], axis=1)
    d = len(res.model.random)
    enc = Encoder.from_state(rec["encoder"], cells, mask, as_t(ind), d)
    with torch.no_grad():
        loc, tril = enc.all()
    if steps:
        loc, tril = _newton_steps(res, data, loc, tril, steps, context=context, Z=Z)
    shift = np.asarray(res.estimation.law.get("shift", np.zeros(d)) if res.estimation.law else np.zeros(d))
    eta = loc.numpy() - shift
    cov = (tril @ tril.transpose(-1, -2)).numpy()
    return pd.Index(data.ids, name=data.id_col), eta, cov


def new_design_rows(res, data: Data) -> np.ndarray:
    """The covariate design rows (uncentred, the fitted coding) of the individuals of ``data``; a
    time-varying covariate at each one's first record (event data)."""
    from pymixnn.model.covariates import design_covariates

    design = res.evaluator.design
    if not design.n_effects:
        return np.zeros((data.n_individuals, 0))
    covariates = data.covariates
    events = getattr(data, "events", None)
    if events is not None:
        covariates = design_covariates(covariates, list(design.columns), events, data.ids)
    return design.transform(covariates)


def new_context(res, data: Data) -> np.ndarray | None:
    """A conditional flow's context (a latent-class law's membership design) of the individuals of
    ``data``, coded and scaled as the fitted individuals' (None for other laws)."""
    from pymixnn.model.covariates import context_matrix, membership_matrix

    law = res.random_effects_law
    columns = list(law.context_columns or ())
    if not columns:
        return None
    missing = [c for c in columns if c not in data.covariates.columns]
    if missing:
        raise ValueError(f"newdata lacks the law's covariate column(s) {missing}")
    if law.name == "latent_class":  # the membership design, coded as the fit's
        return membership_matrix(res.data.covariates, columns, res.model, new_covariates=data.covariates)[0]
    return context_matrix(res.data.covariates, columns, res.model, new_covariates=data.covariates)


def new_program(res, data: Data, context=None, Z=None):
    """The inference layer's Program of the fitted model on the individuals of ``data`` (their
    design rows ``Z``, computed when None; ``context``: a conditional law's rows) and the fitted
    theta, torch."""
    import dataclasses

    import torch

    from pymixnn.inference.program import Program
    from pymixnn.model.random_effects import from_dict

    record = res.estimation.law or {}
    model = res.model
    if getattr(data, "events", None) is not None:  # the fitted model on the new individuals' events
        from pymixnn.model.dynamics.models import bind_data

        model = bind_data(model, data)
    fitted = res.evaluator.design
    Z = new_design_rows(res, data) if Z is None else Z
    program = Program(
        model,
        data,
        dataclasses.replace(fitted, matrix=np.asarray(Z, dtype=np.float64)),
        device=torch.device("cpu"),
        dtype=torch.float64,
        observation=res.observation,
        law=from_dict(record.get("spec")),  # the fitted law: a mixture's or flow's theta has its block
        context=context,
        seed=int(record.get("seed", 0)),
    )
    if fitted.n_effects:  # theta's mu is centred at the fitted individuals' mean covariates
        program.z_center = torch.as_tensor(fitted.matrix.mean(axis=0), dtype=torch.float64)
        program.Z = torch.as_tensor(np.asarray(Z, dtype=np.float64)) - program.z_center
    theta = torch.as_tensor(np.asarray(res.estimation.theta), dtype=torch.float64)
    return program, theta


def _newton_steps(res, data: Data, loc, tril, steps: int, vi_iter: int = 0, context=None, Z=None):
    """``steps`` Newton steps per individual of ``data`` from q = N(loc, tril tril') at the fitted
    parameters (the inference layer's Laplace path on the individuals' records); loc None: from
    eta = 0 with the prior's factor; ``context``: a conditional flow's (new_context); ``Z``: the
    individuals' design rows (new_design_rows; computed when None). Returns the new (loc, tril),
    torch."""
    from pymixnn.inference.laplace import LocalPosteriors

    program, theta = new_program(res, data, context, Z)
    local = LocalPosteriors(program, program.omega_tril(theta))
    if loc is not None:
        local.loc, local.scale_tril = loc.clone(), tril.clone()
        local.visited[:] = True
    local.refresh(theta, None, max_iter=steps, vi_iter=vi_iter)
    return local.loc, local.scale_tril


def new_individual_psi(res, newdata: pd.DataFrame | Data) -> pd.DataFrame:
    """psi (natural scale) of the individuals of ``newdata`` at the encoder's posterior (then the
    fit's ``refine_steps`` Newton steps), or, without an encoder (Gaussian random effects), at
    their conditional modes given the fitted parameters: ``Results.individual_params(newdata)``."""
    data = new_individuals_data(res, newdata)
    if getattr(res.estimation, "amortized", None) or res.random_effects_law.name != "gaussian":
        ids, eta, _ = encode_individuals(res, data)
    else:  # their conditional modes at the fitted parameters (saemix's saemixPredictNewdata)
        ids, eta, _ = posterior_modes(res, data)
    ev = res.evaluator
    phi = ev.phi_population(new_design_rows(res, data)) + ev.eta_full(eta)
    return pd.DataFrame(ev.psi(phi), index=ids, columns=list(res.model.parameters))


def posterior_modes(res, newdata: pd.DataFrame, steps: int = 100) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """(ids, eta mode (n, d), Laplace posterior SD (n, d)) of the individuals of ``newdata`` at the
    fitted parameters, by the per-individual Newton path from eta = 0 (up to ``steps`` steps),
    without the encoder: the reference the encoder's estimates are measured against
    (benchmarks/amortized.py, vignette 07, the tests). Gaussian random effects."""
    data = new_individuals_data(res, newdata)
    loc, tril = _newton_steps(res, data, None, None, steps, context=new_context(res, data))
    cov = (tril @ tril.transpose(-1, -2)).numpy()
    return pd.Index(data.ids, name=data.id_col), loc.numpy(), np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))


def modes_of(res, new, ids) -> np.ndarray | None:
    """eta (len(ids), d) of the individuals ``ids``, not in the fit, at their conditional modes
    given the fitted parameters from their records in ``new`` (Gaussian random effects; saemix's
    ``saemixPredictNewdata``); None when that cannot be (another law, no observation of one)."""
    if res.random_effects_law.name != "gaussian":
        return None
    try:
        mode_ids, eta, _ = posterior_modes(res, new)
    except ValueError as err:  # the new records hold no observation at all
        if "no observation record" not in str(err):
            raise
        return None
    at = pd.Index(mode_ids).get_indexer(list(ids))
    return eta[at] if (at >= 0).all() else None
