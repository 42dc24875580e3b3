"""``SpatialEstimator``: a graph neural network trained on Matérn fields simulated at fixed
irregular locations, which maps an observed field (or per-individual parameter estimates at those
locations) to the field's range, sd and nugget in one forward pass, beside the exact likelihood's
estimates (:mod:`pymixnn.inference.spatial_gnn`, :mod:`pymixnn.inference.field_likelihood`).

>>> import numpy as np, pymixnn
>>> loc = np.random.default_rng(0).random((500, 2))
>>> est = pymixnn.SpatialEstimator(kind="matern", locations=loc, nu=1.5,
...     prior={"range": ("uniform", 0.05, 0.5), "sd": ("uniform", 0.5, 2.0)})
>>> est.train(n_simulations=256_000, progress=False)  # doctest: +SKIP
>>> est.estimate(fields)  # doctest: +SKIP
>>> est.compare(n_fields=1000).table  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import cdist

from pymixnn.inference.field_likelihood import field_ml
from pymixnn.inference.spatial_gnn import gnn_estimates, load_field_gnn, train_field_gnn
from pymixnn.model.matern import FIELD_PARAMETERS, FieldPrior, check_fields, check_locations
from pymixnn.simulate.fields import simulate_matern
from pymixnn.validation import InputError

__all__ = ["SpatialEstimator", "SpatialComparison", "SPATIAL_SIMULATIONS"]

# default training budget (500 locations, one CPU thread: ~0.11 s per Adam step of 64 fields)
SPATIAL_SIMULATIONS = 128_000
FORMAT = "pymixnn.spatial_estimator/1"


@dataclass(frozen=True)
class SpatialComparison:
    """The network beside the likelihood on fields simulated from the prior: ``table`` (one row per
    method and hyperparameter: rmse, bias, mean absolute error, seconds per field), ``fields`` (one
    row per field: the truth and both methods' estimates)."""

    table: pd.DataFrame
    fields: pd.DataFrame
    training_seconds: float
    threads: int

    def frame(self) -> pd.DataFrame:
        """``table`` with ``method`` and ``parameter`` as columns."""
        return self.table.reset_index()

    def ratios(self) -> dict:
        """RMSE of the network over the likelihood's per hyperparameter, and the likelihood's time
        per field over the network's."""
        t = self.table
        out = {}
        for p in t.index.get_level_values("parameter").unique():
            out[f"rmse_ratio.{p}"] = float(t.loc[("gnn", p), "rmse"] / t.loc[("likelihood", p), "rmse"])
        g, m = t.xs("gnn")["seconds_per_field"].iloc[0], t.xs("likelihood")["seconds_per_field"].iloc[0]
        out["speedup"] = float(m / g)
        return out

    def plot(self, path: str | Path | None = None):
        """Estimates against the truth, one panel per hyperparameter, both methods (PNG when
        ``path`` is given). Returns the matplotlib figure (its own Agg canvas: no pyplot)."""
        from pymixnn.results.plots import new_figure, save_figure

        names = list(self.table.index.get_level_values("parameter").unique())
        fig = new_figure(figsize=(4.2 * len(names), 4))
        for k, p in enumerate(names):
            ax = fig.add_subplot(1, len(names), k + 1)
            truth = self.fields[f"true.{p}"]
            for method, colour in (("likelihood", "tab:blue"), ("gnn", "tab:orange")):
                ax.scatter(truth, self.fields[f"{method}.{p}"], s=6, alpha=0.5, c=colour, label=method)
            lo, hi = float(truth.min()), float(truth.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            ax.set_xlabel(f"true {p}")
            ax.set_ylabel(f"estimated {p}")
            ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
        return fig


class SpatialEstimator:
    """A neural estimator of a Matérn field's hyperparameters at fixed locations.

    Parameters
    ----------
    kind : {"matern"}, default "matern"
        The field's covariance (the only kind).
    locations : numpy.ndarray or pandas.DataFrame
        (n, 1-3) coordinates, one row per location, at least 10, each once.
    coords : list of str, optional
        The coordinate columns of a ``locations`` DataFrame (default: all its columns).
    nu : float, default 1.5
        The Matérn smoothness, fixed (0.5 exponential, 1.5, 2.5 closed forms; others by K_nu).
    prior : dict, optional
        Laws of ``range`` (coordinate units: sqrt(8 nu) / kappa), ``sd`` and ``nugget`` (the sd of
        independent noise, default 0); see :mod:`pymixnn.model.prior`. Default: range uniform
        between 5% and 50% of the locations' bounding-box diagonal, sd loguniform on (0.1, 10).
    neighbours : int, default 16
        Locations in each one's neighbourhood on the graph (multi-scale ranks), 4 to 64.

    Returns
    -------
    SpatialEstimator
        An untrained estimator: :meth:`train` fits its network on fields simulated from the prior,
        then :meth:`estimate` gives range, sd and nugget of new fields in one forward pass,
        :meth:`likelihood` the maximum-likelihood estimates beside, :meth:`compare` both.
    """

    def __init__(
        self,
        kind: str = "matern",
        locations=None,
        *,
        coords=None,
        nu: float = 1.5,
        prior: Mapping[str, object] | None = None,
        neighbours: int = 16,
    ):
        if kind != "matern":
            raise InputError(f"SpatialEstimator kind must be 'matern', got {kind!r}")
        if locations is None:
            raise InputError("SpatialEstimator needs locations= (an (n, 2) array or a table of coordinates)")
        if not (isinstance(nu, (int, float)) and not isinstance(nu, bool) and 0 < float(nu) <= 10):
            raise InputError(f"nu must be a number in (0, 10], got {nu!r}")
        if not (isinstance(neighbours, int) and 4 <= neighbours <= 64):
            raise InputError(f"neighbours must be an integer from 4 to 64, got {neighbours!r}")
        self.locations, self.coords = check_locations(locations, None if coords is None else tuple(coords))
        self.kind, self.nu, self.neighbours = kind, float(nu), int(neighbours)
        if prior is None:
            diag = float(np.linalg.norm(self.locations.max(0) - self.locations.min(0)))
            prior = {"range": ("uniform", 0.05 * diag, 0.5 * diag), "sd": ("loguniform", 0.1, 10.0)}
        try:
            self.prior = FieldPrior.of(prior)
        except (TypeError, ValueError) as err:
            raise InputError(str(err)) from None
        self.state: dict | None = None
        self._net = None
        self._dist: np.ndarray | None = None

    def __repr__(self) -> str:
        trained = (
            f"trained on {self.state['n_simulations']} fields in {self.state['seconds']:.0f} s"
            if self.state
            else "not trained"
        )
        return (
            f"SpatialEstimator(matern nu={self.nu:g} at {len(self.locations)} locations; "
            f"estimates {self.prior.free}; {trained})"
        )

    # -- training and estimation -------------------------------------------------------------
    def train(
        self,
        n_simulations: int = SPATIAL_SIMULATIONS,
        *,
        seed: int = 0,
        progress: bool = True,
        lr: float = 2e-3,
    ) -> SpatialEstimator:
        """Train the network on ``n_simulations`` fields simulated from the prior; ``seed`` fixes
        the weights' initialization and every simulation. Returns self."""
        if not (isinstance(n_simulations, (int, np.integer)) and n_simulations >= 64):
            raise InputError(f"n_simulations must be an integer >= 64, got {n_simulations!r}")
        self.state = train_field_gnn(
            self.locations,
            self.prior,
            self.nu,
            n_simulations=int(n_simulations),
            k=self.neighbours,
            seed=int(seed),
            progress=progress,
            lr=lr,
        )
        self.state["threads"] = torch.get_num_threads()
        self._net = None
        return self

    def _network(self):
        if self.state is None:
            raise InputError("the spatial estimator is not trained: call .train() first")
        if self._net is None:
            self._net = load_field_gnn(self.state, self.locations, self.prior, self.nu)
        return self._net

    def _table(self, est: np.ndarray, seconds: float) -> pd.DataFrame:
        out = pd.DataFrame(est, columns=list(FIELD_PARAMETERS))
        out.index.name = "field"
        out.attrs["seconds"] = seconds
        return out

    def estimate(self, fields) -> pd.DataFrame:
        """The network's estimates (range, sd, nugget) of each field: ``fields`` (m, n) or one field
        (n,), the values at the locations in their order. ``attrs["seconds"]``: the time taken."""
        z = check_fields(fields, len(self.locations))
        net = self._network()
        t0 = time.perf_counter()
        est = gnn_estimates(net, z, self.prior, self.state["stats"])
        return self._table(est, time.perf_counter() - t0)

    def likelihood(self, fields) -> pd.DataFrame:
        """Maximum-likelihood estimates of each field (exact dense Gaussian likelihood, constant mean
        and sd profiled, range inside the prior's support): range, sd, nugget, mean, loglik,
        evaluations, seconds."""
        z = check_fields(fields, len(self.locations))
        if self._dist is None:
            self._dist = cdist(self.locations, self.locations)
        fits = [field_ml(row, self._dist, self.nu, self.prior) for row in z]
        out = pd.DataFrame([vars(f) for f in fits])
        out.index.name = "field"
        out.attrs["seconds"] = float(out["seconds"].sum())
        return out

    def simulate(self, n_fields: int, *, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
        """``n_fields`` draws from the prior and their fields at the locations (m, n)."""
        rng = np.random.default_rng(seed)
        theta = self.prior.sample(rng, int(n_fields))
        z = simulate_matern(self.locations, theta, self.nu, seed=rng)
        return pd.DataFrame(theta, columns=list(FIELD_PARAMETERS)), z

    def compare(self, n_fields: int = 1000, *, seed: int = 1) -> SpatialComparison:
        """Both methods on ``n_fields`` fields simulated from the prior (``seed``): RMSE, bias and
        time per field of each (the network's time in batches, after training)."""
        truth, z = self.simulate(n_fields, seed=seed)
        gnn = self.estimate(z)
        ml = self.likelihood(z)
        rows, per_field = [], {f"true.{p}": truth[p] for p in FIELD_PARAMETERS}
        for method, est, secs in (
            ("gnn", gnn, gnn.attrs["seconds"]),
            ("likelihood", ml, ml.attrs["seconds"]),
        ):
            for p in self.prior.free:
                err = est[p].to_numpy() - truth[p].to_numpy()
                rows.append(
                    dict(
                        method=method,
                        parameter=p,
                        rmse=float(np.sqrt(np.mean(err**2))),
                        bias=float(err.mean()),
                        mae=float(np.abs(err).mean()),
                        seconds_per_field=secs / len(z),
                    )
                )
                per_field[f"{method}.{p}"] = est[p]
        table = pd.DataFrame(rows).set_index(["method", "parameter"])
        return SpatialComparison(
            table, pd.DataFrame(per_field), float(self.state["seconds"]), torch.get_num_threads()
        )

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """The locations, settings and trained weights (JSON)."""
        if self.state is None:
            raise InputError("the spatial estimator is not trained: nothing to save")
        path = Path(path)
        state = {k: v for k, v in self.state.items() if k not in ("weights", "loss", "validation")}
        blob = dict(
            format=FORMAT,
            kind=self.kind,
            nu=self.nu,
            neighbours=self.neighbours,
            coords=list(self.coords),
            locations=self.locations.tolist(),
            prior=self.prior.to_dict(),
            weights={k: np.asarray(v).tolist() for k, v in self.state["weights"].items()},
            state=state,
            validation=np.asarray(self.state["validation"]).tolist(),
        )
        path.write_text(json.dumps(blob))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SpatialEstimator:
        try:
            blob = json.loads(Path(path).read_text())
        except json.JSONDecodeError:
            blob = {}
        if blob.get("format") != FORMAT:
            raise InputError(f"{str(path)!r} is not a saved pymixnn spatial estimator")
        prior = {k: tuple(v) if isinstance(v, list) else v for k, v in blob["prior"].items()}
        est = cls(
            blob["kind"],
            np.asarray(blob["locations"]),
            coords=blob["coords"],
            nu=blob["nu"],
            prior=prior,
            neighbours=blob["neighbours"],
        )
        est.state = dict(
            blob["state"],
            weights={k: np.asarray(v, dtype=np.float32) for k, v in blob["weights"].items()},
            validation=np.asarray(blob["validation"]),
        )
        return est
