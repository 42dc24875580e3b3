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


def results_dict(res) -> dict[str, Any]:
    """The documented JSON record of :meth:`pymixnn.Results.to_dict` (see the README)."""
    p = res.params
    fixed = p[p["kind"].isin(["fixed", "beta"])]
    law = res.law or {}
    return {
        "model": res.model.name or getattr(res.model.function, "__name__", "custom"),
        "n_individuals": int(res.data.n_individuals),
        "n_obs": int(res.data.n_obs),
        "fixed_effects": {
            n: {"estimate": _clean(r["estimate"]), "se": _clean(r["se"])} for n, r in fixed.iterrows()
        },
        "omega": {n: float(res.omega.loc[n, n]) for n in res.omega.index},
        "omega_se": {n.split(".", 1)[1]: _clean(r["se"]) for n, r in p.iterrows() if n.startswith("omega2.")},
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
        "run": run_record(res),
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
    }
    path = Path(path)
    path.write_text(json.dumps(encode(record)))
    return path


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
    from pymixnn.model.named import NAMED_MODELS
    from pymixnn.model.observation import from_dict as observation_from_dict
    from pymixnn.results.serialization import read_record
    from pymixnn.validation import check_loaded_model

    record = read_record(path)
    if "format" not in record or not isinstance(record.get("model"), dict):
        raise ValueError(
            f"not a pymixnn results file: {path} has no 'format' and 'model' entries "
            "(write one with Results.save)"
        )
    if record["format"] not in READABLE_FORMATS:
        raise ValueError(f"{path}: unknown results format {record.get('format')!r}")
    spec = record["model"]
    if model is not None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a pymixnn.Model, got {type(model).__name__}")
        check_loaded_model(model, spec, path)
    if model is None:
        if spec["name"] is None or spec["name"] not in NAMED_MODELS:
            raise ValueError(
                f"{path} was fitted with a custom structural function; "
                "pass it: Results.load(path, model=pymixnn.Model(...))"
            )
        model = named(
            spec["name"],
            init=spec["init"],
            transforms=spec["transforms"],
            random=spec["random"],
            omega=spec["omega"],
            error=spec["error"],
            error_init=spec["error_init"],
        )
    dd = record["data"]
    data = Data.from_pandas(
        dd["frame"],
        id=dd["id"],
        x=dd["x"],
        y=dd["y"],
        covariates=dd["covariates"] or None,
        aux=dd.get("aux") or None,
    )
    if dd.get("time_origins"):  # x columns fitted as dates: new dates convert the same way
        data.time_unit = dd["time_unit"]
        data.time_origins = {c: pd.Timestamp(t) for c, t in dd["time_origins"].items()}
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
    )
