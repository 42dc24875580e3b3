"""What a fit with neural terms adds to :class:`pymixnn.Results`: the trained networks, the learned
functions on a grid of their inputs (population and per individual), their plot, the share of the
fitted dynamics they carry, and the stages of the fit.

The networks are frozen at their trained weights in the final stage, so the SEs of the
mechanistic parameters are conditional on them; ``df_modelwc`` (and AIC, BIC) count their weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pymixnn.model.neural import NeuralState, NeuralTerm

__all__ = ["HybridRecord", "HybridMixin", "restore_hybrid"]

GRID_1D, GRID_2D, GRID_EACH, MAX_INDIVIDUAL_LINES = 101, 21, 51, 60


@dataclass
class HybridRecord:
    """A hybrid fit's networks (numpy) and stages. ``random`` (N, r): each individual's estimated
    random inputs and weights (conditional means) in ``random_names`` order; ``population`` (r,):
    their values at eta = 0 (the final stage's fixed effects of those columns; None: zero)."""

    terms: dict
    weights: dict
    center: dict
    scale: dict
    low: dict
    high: dict
    random: np.ndarray
    random_names: list
    share: float
    stages: list = field(default_factory=list)
    seconds: float = 0.0
    population: np.ndarray | None = None
    starts: list = field(default_factory=list)

    def state(self) -> NeuralState:
        f64 = dict(dtype=torch.float64)
        return NeuralState(
            {k: NeuralTerm(**{**t, "hidden": tuple(t["hidden"])}) for k, t in self.terms.items()},
            {k: torch.as_tensor(v, **f64) for k, v in self.weights.items()},
            {k: torch.as_tensor(v, **f64) for k, v in self.center.items()},
            {k: torch.as_tensor(v, **f64) for k, v in self.scale.items()},
        )

    @property
    def n_weights(self) -> int:
        return int(sum(np.asarray(w).size for w in self.weights.values()))

    def columns(self, name: str) -> list[int]:
        return [j for j, p in enumerate(self.random_names) if p.startswith(f"{name}.")]

    def typical(self, name: str) -> torch.Tensor | None:
        """Term ``name``'s random columns at eta = 0 (the population network), None when it has none."""
        cols = self.columns(name)
        if not cols:
            return None
        at = np.zeros(len(self.random_names)) if self.population is None else np.asarray(self.population)
        return torch.as_tensor(at[cols], dtype=torch.float64)


def _grid(term: NeuralTerm, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input points (G, n_inputs) over the observed range and, per point, the input varied (-1
    for a full grid)."""
    k = term.n_inputs
    if k == 1:
        return np.linspace(low[0], high[0], GRID_1D)[:, None], np.full(GRID_1D, -1)
    if k == 2:
        a, b = np.meshgrid(
            np.linspace(low[0], high[0], GRID_2D), np.linspace(low[1], high[1], GRID_2D), indexing="ij"
        )
        return np.column_stack([a.ravel(), b.ravel()]), np.full(a.size, -1)
    mid = (low + high) / 2
    pts, varied = [], []
    for j in range(k):
        g = np.tile(mid, (GRID_EACH, 1))
        g[:, j] = np.linspace(low[j], high[j], GRID_EACH)
        pts.append(g)
        varied += [j] * GRID_EACH
    return np.vstack(pts), np.asarray(varied)


class HybridMixin:
    """Results of a fit with neural terms (``self.hybrid`` is None for other fits)."""

    hybrid: HybridRecord | None = None

    def apply_network_parameters(self) -> None:
        """AIC and BIC with the networks' weights counted as parameters."""
        self.df_modelwc = int(self.df_modelwc) + self.hybrid.n_weights
        self.aic = -2 * self.loglik + 2 * self.df_modelwc
        self.bic = -2 * self.loglik + math.log(self.n_individuals) * self.df_modelwc

    @property
    def neural_starts(self) -> pd.DataFrame:
        """Control(neural_starts=k > 1): each start's seed, log-likelihood, share of the dynamics
        the networks carry, seconds, and which was kept (the highest log-likelihood); no rows for
        one start."""
        cols = ["start", "seed", "loglik", "share", "seconds", "kept"]
        return pd.DataFrame(list(self._need_hybrid().starts), columns=cols)

    def _need_hybrid(self) -> HybridRecord:
        if self.hybrid is None:
            raise ValueError("this fit has no neural terms (pymixnn.NeuralTerm)")
        return self.hybrid

    def neural_term(self, name: str, z, individual=None) -> np.ndarray:
        """Term ``name`` at inputs ``z`` (n, n_inputs): the population network (random inputs and
        weights at their fixed effects, eta = 0) or, with ``individual`` (an id), that individual's."""
        rec = self._need_hybrid()
        if name not in rec.terms:
            raise ValueError(f"no neural term {name!r}; terms are {sorted(rec.terms)}")
        z = np.atleast_2d(np.asarray(z, dtype=float))
        state = rec.state()
        random = rec.typical(name)
        if individual is not None:
            ids = list(self.data.ids)
            if individual not in ids:
                raise ValueError(f"unknown individual {individual!r}")
            cols = rec.columns(name)
            random = torch.as_tensor(rec.random[ids.index(individual), cols], dtype=torch.float64)
        with torch.no_grad():
            return state.evaluate(name, torch.as_tensor(z, dtype=torch.float64), random).numpy()

    @property
    def neural_terms(self) -> pd.DataFrame:
        """Each learned function on a grid of its inputs over the range seen along the fitted
        trajectories: one row per term, level ("population", or an individual's id when the term
        has random inputs or weights) and input point; columns ``z1..`` and ``g1..``."""
        rec = self._need_hybrid()
        state, frames = rec.state(), []
        for name, term in state.terms.items():
            low, high = rec.low.get(name), rec.high.get(name)
            if low is None:
                continue
            z, varied = _grid(term, np.asarray(low, float), np.asarray(high, float))
            zt = torch.as_tensor(z, dtype=torch.float64)
            cols = rec.columns(name)
            levels = [("population", rec.typical(name))] + (
                [(i, rec.random[n, cols]) for n, i in enumerate(self.data.ids)] if cols else []
            )
            for level, r in levels:
                with torch.no_grad():
                    r = None if r is None else torch.as_tensor(r, dtype=torch.float64)
                    g = state.evaluate(name, zt, r)
                frame = pd.DataFrame(z, columns=[f"z{j + 1}" for j in range(term.n_inputs)])
                for j in range(term.n_outputs):
                    frame[f"g{j + 1}"] = g[:, j].numpy()
                frame.insert(0, "varied", varied)
                frame.insert(0, "level", level)
                frame.insert(0, "term", name)
                frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def plot_neural_terms(self, path: str | Path | None = None, truth: dict | None = None):
        """One panel per term (first output against the first input; other inputs at their mid
        range): the population curve, individual curves when the term has random inputs or
        weights, and ``truth`` {name: fn(z (n, n_inputs)) -> (n,)} dashed when given. Saved as PNG
        when ``path`` is given; returns the figure."""
        from pymixnn.results.plots import new_figure, save_figure

        rec = self._need_hybrid()
        table = self.neural_terms
        names = list(rec.terms)
        fig = new_figure(figsize=(5 * len(names), 4))
        axes = fig.subplots(1, len(names), squeeze=False)
        for ax, name in zip(axes[0], names):
            t = table[table["term"] == name]
            if t.empty:
                continue
            if rec.terms[name]["n_inputs"] > 1:  # the first input varied, the others at mid range
                second = t["z2"].to_numpy()
                t = (
                    t[np.isclose(second, np.median(np.unique(second)))]
                    if t["varied"].iloc[0] < 0
                    else t[t["varied"] == 0]
                )
            for n, (_, part) in enumerate(t[t["level"] != "population"].groupby("level", sort=False)):
                if n >= MAX_INDIVIDUAL_LINES:
                    break
                ax.plot(part["z1"], part["g1"], color="0.7", lw=0.6, label="individuals" if n == 0 else None)
            pop = t[t["level"] == "population"]
            ax.plot(pop["z1"], pop["g1"], color="C0", lw=2.2, label="learned (population)")
            if truth and name in truth:
                zz = pop[[c for c in pop.columns if c.startswith("z")]].to_numpy()
                ax.plot(pop["z1"], np.asarray(truth[name](zz)).reshape(-1), "k--", lw=1.5, label="truth")
            ax.set_xlabel(f"{name}: input z1 (range seen along the fitted trajectories)")
            ax.set_ylabel(f"{name}(z)")
            ax.set_title(f"neural term {name!r} (share of dynamics {100 * rec.share:.1f}%)")
            ax.legend(fontsize=8)
        fig.tight_layout()
        if path is not None:
            save_figure(fig, path)
        return fig

    def neural_summary_lines(self) -> list[str]:
        rec = self.hybrid
        if rec is None:
            return []
        state = rec.state()
        lines = [f"neural term {t.describe(n)}" for n, t in state.terms.items()]
        stop = "; ".join(f"{s['stage']} {s['steps']} steps ({s['stopped']})" for s in rec.stages)
        if rec.starts:
            kept = next(s for s in rec.starts if s["kept"])
            logliks = ", ".join(f"{s['loglik']:.2f}" for s in rec.starts)
            lines.append(
                f"{len(rec.starts)} starts (seeds {rec.starts[0]['seed']}-{rec.starts[-1]['seed']}), "
                f"log-likelihoods {logliks}: kept start {kept['start']} (seed {kept['seed']})"
            )
        return lines + [
            f"networks: {rec.n_weights} weights, counted in AIC/BIC (df {self.df_modelwc}); share of the "
            f"fitted dynamics they carry {100 * rec.share:.1f}%; training: {stop}; {rec.seconds:.1f} s in "
            "all stages",
            "SEs of the mechanistic parameters are conditional on the trained networks",
        ]


def restore_hybrid(record: dict | None, model, path):
    """A saved fit's networks (:meth:`pymixnn.Results.load`): the HybridRecord and ``model`` (the
    user's model with its neural terms, passed as ``model=``) frozen at the saved weights; (None,
    model) for a fit without neural terms."""
    if record is None:
        return None, model
    from pymixnn.model.neural import with_state

    rec = HybridRecord(**record)
    if not getattr(model, "neural", None) or set(model.neural) != set(rec.terms):
        raise ValueError(
            f"{path} was fitted with neural terms {sorted(rec.terms)}: pass the model that declares "
            "them, Results.load(path, model=...)"
        )
    return rec, with_state(model, rec.state()).replace(neural=None)
