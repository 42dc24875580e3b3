"""The trained neural estimator (:func:`pymixnn.amortize`): estimates of a new data set in one
forward pass, simulation-based calibration, save/load.

``NeuralEstimator.estimate(df)`` returns a :class:`NeuralEstimate` whose ``params`` table has
Results' columns (estimate = posterior mean, se = posterior sd, equal-tailed interval) plus
the posterior median; ``pymixnn.compare_fits(estimate, res)`` puts it beside a likelihood fit.
``NeuralEstimator.sbc()`` runs simulation-based calibration (Talts et al. 2018): data sets
simulated from the prior, the rank of each truth among the network's posterior draws, and a
Kolmogorov-Smirnov test of the ranks' uniformity per parameter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pymixnn.data.padded import PaddedRecords, pad_records
from pymixnn.inference.neural import NeuralSimulator, load_net, posterior_draws
from pymixnn.model.named import resolve
from pymixnn.model.prior import Prior
from pymixnn.model.spec import Model
from pymixnn.results.scipy_stats import stats as st
from pymixnn.validation import InputError

__all__ = ["NeuralEstimator", "NeuralEstimate", "SBC"]


def _kind(name: str, model: Model) -> str:
    if name in model.parameters:
        return "fixed"
    return "omega" if name.startswith("omega2.") else "sigma"


@dataclass(frozen=True)
class NeuralEstimate:
    """One data set's estimates by the neural estimator."""

    params: pd.DataFrame  # kind, estimate (posterior mean), se (posterior sd), ci_lower, ci_upper, median
    draws: pd.DataFrame  # posterior draws, natural scale
    n_individuals: int
    seconds: float
    warnings: list = field(default_factory=list)

    def comparison_head(self) -> dict:
        """compare_fits' rows for this estimate (no likelihood: the network gives none)."""
        return {
            "engine": "neural",
            "random_effects": "gaussian",
            "df": int((self.params["se"] > 0).sum()),
            "ll.is": np.nan,
            "ll.is_se": np.nan,
            "ll.method": "none",
            "AIC": np.nan,
            "BIC": np.nan,
            "seconds": self.seconds,
            "individuals": self.n_individuals,
        }


@dataclass(frozen=True)
class SBC:
    """Simulation-based calibration: ranks (replicates x parameters, 0..n_draws) and per parameter
    the KS statistic and p-value of the (jittered) normalized ranks against U(0, 1)."""

    ranks: pd.DataFrame
    table: pd.DataFrame
    n_draws: int

    def plot(self, path: str | Path | None = None, bins: int = 10):
        """Rank histograms, one panel per parameter, with the uniform's 99% band; saved as PNG
        when ``path`` is given. Returns the matplotlib figure (its own Agg canvas: no pyplot)."""
        from pymixnn.results.plots import new_figure, save_figure

        names = list(self.ranks.columns)
        fig = new_figure(figsize=(2.2 * len(names), 2.4))
        axes = fig.subplots(1, len(names), squeeze=False)[0]
        n = len(self.ranks)
        expect = n / bins
        band = st.binom.ppf([0.005, 0.995], n, 1 / bins)
        for ax, name in zip(axes, names):
            ax.axhspan(band[0], band[1], color="0.85")
            ax.axhline(expect, color="0.4", lw=0.8)
            ax.hist(self.ranks[name], bins=np.linspace(0, self.n_draws + 1, bins + 1), color="C0")
            p = self.table.loc[name, "p_value"]
            ax.set_title(f"{name}\nKS p = {p:.2f}", fontsize=8)
            ax.set_yticks([])
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
        return fig


class NeuralEstimator:
    """A network trained on simulated data sets of one design (made by :func:`pymixnn.amortize`
    or :meth:`load`, not by hand).

    Parameters
    ----------
    model : Model
        The structural and error model the data sets were simulated from.
    prior : Prior
        The prior of the population parameters (:mod:`pymixnn.model.prior`).
    design : PaddedRecords
        The training design: individuals and their x records, padded.
    x_names : list of str
        The x columns of the design.
    state : dict
        The network's weights, standardization and validation trace.
    info : dict
        How it was trained (simulated data sets, steps, seconds, seed).

    Returns
    -------
    NeuralEstimator
        The estimator: :meth:`estimate` and :meth:`sample` for a data set of the design,
        :meth:`sbc` for simulation-based calibration, :meth:`save` / :meth:`load`.
    """

    def __init__(self, model: Model, prior: Prior, design: PaddedRecords, x_names, state: dict, info: dict):
        self.model, self.prior, self.design = model, prior, design
        self.x_names = list(x_names)
        self.state = state
        self.info = dict(info)
        self._net = load_net(state)

    def __repr__(self) -> str:
        d = self.design
        return (
            f"NeuralEstimator({self.model.name or 'custom'}: {d.n_individuals} individuals x up to "
            f"{d.n_records} records; {self.info['n_simulations']} simulated data sets, "
            f"{self.info['seconds']:.0f} s; parameters {self.prior.free})"
        )

    @property
    def training(self) -> pd.DataFrame:
        """Validation loss (mean negative log posterior density on held-out simulations) by step."""
        v = np.asarray(self.state["validation"]).reshape(-1, 2)
        return pd.DataFrame({"step": v[:, 0].astype(int), "validation_loss": v[:, 1]})

    def _records(self, data: pd.DataFrame, id: str, y: str) -> tuple[PaddedRecords, list]:
        rec = pad_records(data, id=id, x=self.x_names, y=y)
        d, warnings = self.design, []
        if rec.n_records > d.n_records:
            raise InputError(
                f"an individual has {rec.n_records} records; the estimator was trained on at most "
                f"{d.n_records}"
            )
        if rec.n_individuals != d.n_individuals:
            warnings.append(
                f"{rec.n_individuals} individuals; the estimator was trained on data sets of "
                f"{d.n_individuals}"
            )
        same = rec.mask.shape == d.mask.shape and np.array_equal(rec.mask, d.mask)
        if same and not np.allclose(rec.x[rec.mask], d.x[d.mask]):
            same = False
        if not same and rec.n_individuals == d.n_individuals:
            warnings.append("the records' x values differ from the training design")
        return rec, warnings

    def _tensors(self, rec: PaddedRecords):
        pad = self.design.n_records - rec.n_records
        x = np.pad(rec.x, ((0, 0), (0, pad), (0, 0)), mode="edge")
        mask = np.pad(rec.mask, ((0, 0), (0, pad)))
        y = np.pad(rec.y, ((0, 0), (0, pad))) if rec.y is not None else None
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(mask), y

    def sample(self, data: pd.DataFrame, n_draws: int = 4000, *, id: str = "id", y: str = "y", seed: int = 0):
        """Posterior draws for ``data`` (a DataFrame of the design's columns and y), natural scale."""
        rec, _ = self._records(data, id, y)
        x, mask, yy = self._tensors(rec)
        draws = posterior_draws(
            self._net, self.state, self.prior, x, torch.as_tensor(yy)[None], mask, n_draws, seed
        )
        return self.prior.frame(draws[0])

    def estimate(
        self,
        data: pd.DataFrame,
        *,
        id: str = "id",
        y: str = "y",
        n_draws: int = 4000,
        level: float = 0.95,
        seed: int = 0,
    ) -> NeuralEstimate:
        """Population estimates of one data set: posterior mean, sd, median and the equal-tailed
        ``level`` interval of each parameter, from ``n_draws`` draws of the network's posterior."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}")
        t0 = time.perf_counter()
        rec, warnings = self._records(data, id, y)
        x, mask, yy = self._tensors(rec)
        d = posterior_draws(
            self._net, self.state, self.prior, x, torch.as_tensor(yy)[None], mask, n_draws, seed
        )[0]
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        params = pd.DataFrame(
            {
                "kind": [_kind(n, self.model) for n in self.prior.names],
                "estimate": d.mean(0),
                "se": d.std(0, ddof=1),
                "ci_lower": np.quantile(d, lo, axis=0),
                "ci_upper": np.quantile(d, hi, axis=0),
                "median": np.median(d, axis=0),
            },
            index=pd.Index(self.prior.names, name="parameter"),
        )
        for name, law in zip(self.prior.names, self.prior.laws):
            if law[0] == "fixed":  # exactly its value (a mean of 4,000 copies is off in the last digits)
                params.loc[name, ["estimate", "ci_lower", "ci_upper", "median"]] = law[1]
                params.loc[name, "se"] = 0.0
        return NeuralEstimate(
            params, self.prior.frame(d), rec.n_individuals, time.perf_counter() - t0, warnings
        )

    def simulate(self, n: int, *, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
        """``n`` parameter draws from the prior (DataFrame) and data sets simulated at them,
        (n, N, T) on the training design."""
        theta = self.prior.sample(np.random.default_rng(seed), n)
        x, mask, _ = self._tensors(self.design)
        sim = NeuralSimulator(self.model, self.prior, x, mask)
        with torch.no_grad():
            y = sim(torch.as_tensor(theta, dtype=torch.float32), torch.Generator().manual_seed(int(seed)))
        return self.prior.frame(theta), y.numpy()

    def sbc(self, n_replicates: int = 200, n_draws: int = 100, *, seed: int = 1, chunk: int = 50) -> SBC:
        """Simulation-based calibration over ``n_replicates`` data sets from the prior."""
        truth, y = self.simulate(n_replicates, seed=seed)
        x, mask, _ = self._tensors(self.design)
        free = self.prior.free
        ranks = []
        for s in range(0, n_replicates, chunk):
            d = posterior_draws(
                self._net,
                self.state,
                self.prior,
                x,
                torch.as_tensor(y[s : s + chunk]),
                mask,
                n_draws,
                seed + s + 1,
            )
            t = truth.to_numpy()[s : s + chunk]
            ranks.append((d < t[:, None, :]).sum(1))
        ranks = pd.DataFrame(np.concatenate(ranks), columns=list(self.prior.names))[free]
        rng = np.random.default_rng(seed)
        rows = {}
        for name in free:
            u = (ranks[name].to_numpy() + rng.random(n_replicates)) / (n_draws + 1)  # jittered to continuous
            res = st.kstest(u, "uniform")
            rows[name] = dict(ks_statistic=float(res.statistic), p_value=float(res.pvalue))
        table = pd.DataFrame(rows).T.rename_axis("parameter")
        table["n_replicates"], table["n_draws"] = n_replicates, n_draws
        return SBC(ranks, table, n_draws)

    # save / load ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Everything needed to reload the estimator (JSON; a custom structural function is not
        saved: pass ``model=`` to :meth:`load`)."""
        path = Path(path)
        d = self.design
        blob = dict(
            format="pymixnn.neural/1",
            model=dict(name=self.model.name, error=self.model.error, transforms=dict(self.model.transforms)),
            prior=self.prior.to_dict(),
            x_names=self.x_names,
            design=dict(ids=[str(i) for i in d.ids], x=d.x.tolist(), mask=d.mask.tolist()),
            state=_plain(self.state),
            info=_plain(self.info),
        )
        path.write_text(json.dumps(blob))
        return path

    @classmethod
    def load(cls, path: str | Path, *, model: Model | None = None) -> NeuralEstimator:
        """An estimator saved by :meth:`save`; ``model=`` for one with a custom structural function."""
        blob = json.loads(Path(path).read_text())
        if blob.get("format") != "pymixnn.neural/1":
            raise ValueError(f"{path} is not a saved pymixnn neural estimator")
        if model is None:
            if not blob["model"]["name"]:
                raise ValueError("the estimator's model is a custom one: pass model= to load it")
            model = resolve(blob["model"]["name"]).replace(
                error=blob["model"]["error"], transforms=blob["model"]["transforms"]
            )
        prior = Prior.of(model, {k: tuple(v) if isinstance(v, list) else v for k, v in blob["prior"].items()})
        d = blob["design"]
        design = PaddedRecords(
            np.asarray(d["ids"]), np.asarray(d["x"], dtype=float), None, np.asarray(d["mask"])
        )
        return cls(model, prior, design, blob["x_names"], blob["state"], blob["info"])


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
