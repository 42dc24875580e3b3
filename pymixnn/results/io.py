"""Export and reload of :class:`pymixnn.Results`: the documented JSON record (``to_dict``) and the
exact save format (``save`` / ``load``).

Save format 2 (this version) stores the estimation with its typed records (the fitted law, the
genomic posterior, the run information) as plain dicts; format 1 (pymixnn 0.1, before the typed
records) still loads: its dict records become :class:`~pymixnn.inference.records.LawFit` and
:class:`~pymixnn.inference.records.GenomicPosterior`, and its run information comes from ``info``.
A fit by another program (saemix, nlme through :mod:`pymixnn.compare`) is saved with its
:class:`~pymixnn.results.external.ExternalFit` under ``"external"`` in place of ``"estimation"``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pymixnn.data.table import Data
from pymixnn.inference import Estimation
from pymixnn.model.covariates import CovariateDesign
from pymixnn.model.named import Model, named
from pymixnn.results.external import ExternalFit

__all__ = [
    "FORMAT_VERSION",
    "READABLE_FORMATS",
    "results_dict",
    "save_results",
    "load_parts",
    "estimation_from_record",
    "run_record",
]

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
_RUN_KEYS = {"device", "dtype", "threads", "seconds", "warnings", "steps", "refine_rounds"}


def _clean(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def run_record(res) -> dict[str, Any]:
    """The "run" entry of :func:`results_dict`: seed, device, dtype, threads, seconds (per stage),
    steps and fallback counts."""
    run = res.run
    src, seconds = (res.info, "seconds_by_stage") if run is None else (run, "seconds")
    fallbacks = {} if run is None else run.get("fallbacks") or {}
    return {
        "seed": src.get("seed"),
        "device": src.get("device"),
        "dtype": src.get("dtype"),
        "threads": src.get("threads"),
        "seconds": dict(src.get(seconds) or {}),
        "steps": int(src.get("steps") or 0),
        "fallbacks": {k: int(v) for k, v in fallbacks.items()},
    }


def _estimates(rows) -> dict[str, dict[str, float | None]]:
    return {n: {"estimate": _clean(r["estimate"]), "se": _clean(r["se"])} for n, r in rows.iterrows()}


def results_dict(res) -> dict[str, Any]:
    """The documented JSON record of :meth:`pymixnn.Results.to_dict` (see the user guide, "Command line")."""
    p = res.params
    fixed = p[p["kind"].isin(["fixed", "beta"])]
    law = res.law or {}
    return {
        "model": res.model.name or getattr(res.model.function, "__name__", "custom"),
        "n_individuals": int(res.n_individuals),
        "n_obs": int(res.nobs),
        **({"shard": dict(res.settings["shard"])} if "shard" in res.settings else {}),
        "fixed_effects": {
            n: {"estimate": _clean(r["estimate"]), "se": _clean(r["se"])} for n, r in fixed.iterrows()
        },
        "omega": {n: float(res.omega.loc[n, n]) for n in res.omega.index},
        "omega_se": {
            n.split(".", 1)[1]: _clean(r["se"])
            for n, r in p.iterrows()
            if n.startswith("omega2.") and r["kind"] != "level"
        },
        "sigma": {n: float(v) for n, v in res.sigma.items()},
        "observation": res.settings.get("observation", {"name": "gaussian"}),
        "loglik": res.loglik,
        "loglik_se": res.loglik_se,
        "loglik_method": res.loglik_method,
        "aic": res.aic,
        "bic": res.bic,
        "seconds": float(res.info["seconds"]),
        "device": res.info["device"],
        "seed": res.info["seed"],
        "steps": int(res.info["steps"]),
        "se_method": res.info["se_method"],
        "versions": res.info["versions"],
        "converged": res.converged,
        "diagnostics": {
            name: {
                "value": _clean(r["value"]),
                "limit": _clean(r["limit"]),
                "ok": bool(r["ok"]),
                "severity": r["severity"],
                "message": r["message"],
            }
            for name, r in res.diagnostics.iterrows()
        },
        "random_effects": {
            **dataclasses.asdict(res.random_effects_law),
            "df": res.df_modelwc,
            **({"penalty": law["penalty"]} if "penalty" in law else {}),
        },
        **({"genomic": _genomic_dict(res)} if res.is_genomic else {}),
        **({"levels": _estimates(p[p["kind"] == "level"])} if (p["kind"] == "level").any() else {}),
        **({"spatial": _estimates(p[p["kind"] == "spatial"])} if (p["kind"] == "spatial").any() else {}),
        **({"neural": _neural_dict(res.hybrid)} if getattr(res, "hybrid", None) is not None else {}),
        "run": run_record(res),
    }


def _neural_dict(rec) -> dict:
    """A hybrid fit's networks: their specs, weights counted in df, the share of the dynamics they
    carry, and the training stages."""
    return {
        "terms": rec.terms,
        "n_weights": rec.n_weights,
        "share": float(rec.share),
        "stages": rec.stages,
        **({"starts": rec.starts} if rec.starts else {}),
    }


def _genomic_dict(res) -> dict:
    gen = res.estimation.genomic
    top = res.top_markers(10)
    return {
        "params": list(gen["params"]),
        "prior": gen["prior"],
        "interaction": gen.get("interaction"),
        "genotype": gen.get("genotype_column"),
        # aic/bic leave the markers' prior out: not comparable with a fit without markers
        "ic_comparable_with_non_genomic": False,
        "residual": bool(gen["residual"]),
        "markers": {k: int(v) for k, v in gen.get("report", {}).items()},
        "variance_explained": json.loads(res.variance_explained.reset_index().to_json(orient="records")),
        "top_markers": json.loads(top.to_json(orient="records")),
    }


def save_results(res, path: str | Path) -> Path:
    """Write everything needed to reload ``res`` exactly (JSON; floats round-trip exactly)."""
    from pymixnn.results.serialization import encode

    m, d = res.model, res.data
    record = {
        "format": FORMAT_VERSION,
        "model": {
            "name": m.name,
            "parameters": list(m.parameters),
            "init": m.init,
            "transforms": dict(m.transforms),
            "random": list(m.random),
            "omega": m.omega,
            "error": m.error,
            "error_init": m.error_init,
            "x_names": list(m.x_names) if m.x_names else None,
            **({"dynamics": dynamics_record(m)} if getattr(m, "dynamics", None) is not None else {}),
        },
        "data": {
            "frame": d.user_frame(),
            "id": d.id_col,
            "x": d.x_cols,
            "y": d.y_col,
            "covariates": d.covariate_cols,
            "aux": d.aux_cols,
            "time_unit": d.time_unit,
            "time_origins": {c: pd.Timestamp(t).isoformat() for c, t in d.time_origins.items()},
            **({"events": events_record(d)} if getattr(d, "events", None) is not None else {}),
        },
        "design": dataclasses.asdict(res.design),
        # asdict turns the typed records (law, genomic, run) into plain dicts
        **(
            {"external": res.external.to_dict()}
            if res.external is not None
            else {"estimation": dataclasses.asdict(res.estimation)}
        ),
        "settings": res.settings,
        "info": res.info,
        **({"hybrid": dataclasses.asdict(res.hybrid)} if getattr(res, "hybrid", None) is not None else {}),
    }
    path = Path(path)
    path.write_text(json.dumps(encode(record)))
    return path


def dynamics_record(model: Model) -> dict[str, Any]:
    """How to rebuild a dynamic model: a named compartment model's dosing parameters acting on
    CMT 1 (tlag, F, rate, duration: the parameter's name or None) and output name; "ode" for an
    ODE model (rebuilt by the caller: ``Results.load(path, model=...)``)."""
    from pymixnn.model.dynamics.compartments import COMPARTMENT_MODELS

    system = model.dynamics
    if model.name not in COMPARTMENT_MODELS or not hasattr(system, "n_compartments"):
        return {"kind": "ode"}
    dosing = system.dosing.get(1)
    names = {k: getattr(dosing, k, None) for k in ("tlag", "F", "rate", "duration")}
    return {"kind": "compartment", **names, "endpoint": system.endpoints[0]}


def events_record(data: Data) -> dict[str, Any]:
    """The event records of NONMEM-style data as a NONMEM table that ``Data.from_nonmem`` reads
    back to the same event table and observations: the records in table order with ADDL already
    expanded (ADDL 0), DV and MDV on the observations, the individual-level covariates, each
    record's source row label as the index; the ADDL flags and the user's row order of the
    observations."""
    ev = data.events
    frame = ev.to_frame(id=data.id_col).rename(columns={"TIME": data.x_cols[0]})
    addl = frame.pop("ADDL_DOSE").to_numpy(bool)
    starts = np.concatenate([[0], np.cumsum(np.bincount(ev.individual, minlength=ev.n_individuals))[:-1]])
    at = starts[data.x[:, 2].astype(np.int64)] + data.x[:, 3].astype(np.int64)
    dv, mdv = np.zeros(len(frame)), np.ones(len(frame))
    dv[at], mdv[at] = data.y, 0.0
    frame[data.y_col], frame["MDV"] = dv, mdv
    if "censored" in data.aux_cols:  # the BLQ flag of the observations (Data.from_nonmem(censoring=))
        flag = np.zeros(len(frame))
        flag[at] = data.aux["censored"]
        frame[data.aux_cols["censored"]] = flag
    covs = data.covariates.reindex(pd.Index(ev.ids))  # individuals without observations: the first's
    covs = covs.fillna(data.covariates.iloc[0]) if len(data.covariates.columns) else covs
    for c in data.covariate_cols:
        frame[c] = covs[c].to_numpy()[ev.individual]
    frame.index = pd.Index(ev.row.tolist())
    return {
        "records": frame,
        "time_varying": ev.time_varying,
        "addl": addl,
        "user_order": np.asarray(data.user_order, dtype=np.int64),
    }


def data_from_record(dd: dict[str, Any]) -> Data:
    """The :class:`Data` of a saved data record (a plain table, or event data: see
    :func:`events_record`)."""
    if "events" not in dd:
        return Data.from_pandas(
            dd["frame"],
            id=dd["id"],
            x=dd["x"],
            y=dd["y"],
            covariates=dd["covariates"] or None,
            aux=dd.get("aux") or None,
        )
    ev = dd["events"]
    data = Data.from_nonmem(
        ev["records"],
        id=dd["id"],
        time=dd["x"][0],
        dv=dd["y"],
        **dict(amt="AMT", evid="EVID", cmt="CMT", rate="RATE", ii="II", ss="SS", mdv="MDV", dvid="DVID"),
        covariates=dd["covariates"] or None,
        time_varying=ev["time_varying"] or None,
        censoring=(dd.get("aux") or {}).get("censored"),
    )
    data.events = dataclasses.replace(data.events, addl=np.asarray(ev["addl"], dtype=bool))
    data.user_order = np.asarray(ev["user_order"], dtype=np.int64)
    return data


def _load_model(spec: dict, model: Model | None, path: str | Path) -> Model:
    """The structural model of a saved fit: ``model`` (checked against the record), or the named
    model rebuilt (a compartment model with its dosing parameters)."""
    from pymixnn.model.dynamics.compartments import COMPARTMENT_MODELS
    from pymixnn.model.named import NAMED_MODELS
    from pymixnn.validation import check_loaded_model

    if model is not None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a pymixnn.Model, got {type(model).__name__}")
        check_loaded_model(model, spec, path)
        return model
    dynamics = spec.get("dynamics") or {}
    if dynamics.get("kind") == "ode":
        raise ValueError(
            f"{path} was fitted with an ODE model (pymixnn.ODEModel), which is not saved; "
            "pass it: Results.load(path, model=pymixnn.ODEModel(...))"
        )
    if spec["name"] is None or spec["name"] not in {*NAMED_MODELS, *COMPARTMENT_MODELS}:
        raise ValueError(
            f"{path} was fitted with a custom structural function; "
            "pass it: Results.load(path, model=pymixnn.Model(...))"
        )
    options = {}
    if spec["name"] in COMPARTMENT_MODELS:
        options = {k: dynamics.get(k) or False for k in ("tlag", "F", "rate", "duration")}
        options["endpoint"] = dynamics.get("endpoint", "cp")
    return named(
        spec["name"],
        init=spec["init"],
        transforms=spec["transforms"],
        random=spec["random"],
        omega=spec["omega"],
        error=spec["error"],
        error_init=spec["error_init"],
        **options,
    )


def _record_types() -> dict[str, Any]:
    """The typed record of each Estimation field that has one (none before the typed records)."""
    try:
        from pymixnn.inference.records import GenomicPosterior, LawFit, RunInfo
    except ImportError:  # pragma: no cover
        return {}
    return {"law": LawFit, "genomic": GenomicPosterior, "run": RunInfo}


def estimation_from_record(values: dict, info: dict | None = None) -> Estimation:
    """The :class:`~pymixnn.inference.Estimation` of a saved record (format 1 or 2): dict records
    become typed ones where the Estimation has such a field (a law record without positions in
    theta, e.g. a saemix/nlme bridge's, stays a dict), and a format-1 file's run information is
    built from its ``info``."""
    values = dict(values)
    fields = {f.name for f in dataclasses.fields(Estimation)}
    for key in _RUN_KEYS - fields:  # format 1 kept these on the estimation; now in its RunInfo
        values.pop(key, None)
    types = _record_types()
    law = values.get("law")
    if isinstance(law, dict) and "omega_slice" in law and "law" in types:
        values["law"] = types["law"].from_dict(law)
    gen = values.get("genomic")
    if isinstance(gen, dict) and gen and "genomic" in types:
        values["genomic"] = types["genomic"].from_dict(gen)
    if "run" in fields and "run" in types:
        run = values.get("run")
        if isinstance(run, dict):
            values["run"] = types["run"].from_dict(run)
        elif run is None and info is not None and "seed" in info:
            values["run"] = run_from_info(info)
    return Estimation(**values)


def run_from_info(info: dict):
    """A :class:`~pymixnn.inference.records.RunInfo` from the ``info`` dict of a format-1 file."""
    from pymixnn.inference.records import RunInfo

    return RunInfo(
        seed=info.get("seed"),
        device=info.get("device"),
        dtype=info.get("dtype"),
        threads=info.get("threads"),
        versions=info.get("versions"),
        date=info.get("date"),
        seconds=dict(info.get("seconds_by_stage") or {}),
        steps=int(info.get("steps") or 0),
        refine_rounds=int(info.get("refine_rounds") or 0),
        warnings=tuple(info.get("warnings") or ()),
    )


def load_parts(
    path: str | Path, *, model: Model | None = None, observation=None, markers=None
) -> dict[str, Any]:
    """The keyword arguments of ``Results(...)`` for the file at ``path`` (see
    :meth:`pymixnn.Results.load`)."""
    from pymixnn.model.observation import from_dict as observation_from_dict
    from pymixnn.results.serialization import read_record

    record = read_record(path)
    if "format" not in record or not isinstance(record.get("model"), dict):
        raise ValueError(
            f"not a pymixnn results file: {path} has no 'format' and 'model' entries "
            "(write one with Results.save)"
        )
    if record["format"] not in READABLE_FORMATS:
        raise ValueError(f"{path}: unknown results format {record.get('format')!r}")
    from pymixnn.results.hybrid import restore_hybrid

    hybrid, model = restore_hybrid(record.get("hybrid"), _load_model(record["model"], model, path), path)
    dd = record["data"]
    data = data_from_record(dd)
    if dd.get("time_origins"):  # x columns fitted as dates: new dates convert the same way
        data.time_unit = dd["time_unit"]
        data.time_origins = {c: pd.Timestamp(t) for c, t in dd["time_origins"].items()}
    if getattr(model, "dynamics", None) is not None or data.events is not None:
        from pymixnn.model.dynamics.models import bind_data, with_solver

        model = bind_data(model, data)  # a dynamic model evaluated on the saved event records
        settings = record["settings"]
        if "ode_rtol" in settings:
            model = with_solver(model, settings["ode_rtol"], settings["ode_atol"])
    obs = observation_from_dict(record["settings"].get("observation"), observation)
    if "external" in record:
        estimation = ExternalFit.from_dict(record["external"])
    else:
        estimation = estimation_from_record(record["estimation"], record.get("info"))
    marker_info = None
    if markers is not None:
        from pymixnn.results.genomic import reattach_markers

        marker_info = reattach_markers(estimation, markers)
    return dict(
        model=model,
        data=data,
        design=CovariateDesign(**record["design"]),
        estimation=estimation,
        settings=record["settings"],
        info=record["info"],
        observation=obs,
        markers=marker_info,
        hybrid=hybrid,
    )
