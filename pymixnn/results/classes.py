"""Latent classes as :class:`pymixnn.Results` reports them (lcmm's ``postprob``, ``summarytable``
and ``predictClass``): posterior class probabilities of the fitted and of new individuals, the
classification table, the table of the number of classes, and the class mean curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ClassesMixin", "adjusted_rand_index", "class_table"]

# posterior-probability thresholds of the classification table (lcmm's postprob)
THRESHOLDS = (0.7, 0.8, 0.9)


def adjusted_rand_index(a, b) -> float:
    """Hubert and Arabie's adjusted Rand index of two partitions (1: identical up to labels,
    about 0 for independent ones)."""
    from scipy.special import comb

    _, ai = np.unique(np.asarray(a), return_inverse=True)
    _, bi = np.unique(np.asarray(b), return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)
    pairs = comb(table, 2).sum()
    rows, cols, total = comb(table.sum(1), 2).sum(), comb(table.sum(0), 2).sum(), comb(ai.size, 2)
    expected = rows * cols / total
    top = 0.5 * (rows + cols)
    return 1.0 if top == expected else float((pairs - expected) / (top - expected))


def class_table(prob: pd.DataFrame) -> pd.DataFrame:
    """lcmm's ``postprob`` from a ``classes()`` table: per class the number and share of
    individuals assigned to it (highest posterior probability), the mean posterior probability
    of the assigned class among them, and the shares of them whose probability exceeds 0.7,
    0.8 and 0.9."""
    P = prob.filter(like="prob.").to_numpy()
    assigned = P.argmax(1)
    rows = []
    for k in range(P.shape[1]):
        p = P[assigned == k, k]
        row = dict(n=int(p.size), percent=100.0 * p.size / P.shape[0])
        row["mean_prob"] = float(p.mean()) if p.size else np.nan
        for t in THRESHOLDS:
            row[f"above_{t}"] = float((p > t).mean()) if p.size else np.nan
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(range(1, P.shape[1] + 1), name="class"))


class ClassesMixin:
    """Methods of :class:`pymixnn.Results` on latent classes (random_effects=LatentClass)."""

    def _class_record(self):
        record = self.law if self.external is None else None
        selection = [r for r in (record or {}).get("selection") or [] if "n_classes" in r]
        if record is None or (record.get("class_prob") is None and not selection):
            raise ValueError("latent classes exist only for random_effects=pymixnn.LatentClass(...)")
        return record

    @property
    def is_latent_class(self) -> bool:
        """Whether the fit has latent classes (random_effects=LatentClass, any K chosen)."""
        try:
            self._class_record()
        except ValueError:
            return False
        return True

    @property
    def n_classes(self) -> int:
        """The number of latent classes (chosen by the criterion with ``n_classes="auto"``)."""
        prob = self._class_record().get("class_prob")
        return 1 if prob is None else int(np.asarray(prob).shape[1])

    def classes(self) -> pd.DataFrame:
        """Posterior class probabilities of each fitted individual, P(class k | y_i, x_i), by
        importance sampling over its random effects (columns ``prob.1`` ... ``prob.K``), and
        ``class``, the most likely class (lcmm's ``pprob``)."""
        prob = self._class_record().get("class_prob")
        P = np.ones((self.data.n_individuals, 1)) if prob is None else np.asarray(prob)
        return _prob_frame(P, pd.Index(self.data.ids, name=self.data.id_col))

    def class_table(self) -> pd.DataFrame:
        """The classification table (lcmm's ``postprob``): class sizes, mean posterior
        probability of the assigned class, shares above 0.7 / 0.8 / 0.9."""
        return class_table(self.classes())

    def class_selection(self) -> pd.DataFrame:
        """With ``n_classes="auto"``: one row per K (log-likelihood, df, AIC, BIC, ICL, relative
        entropy, smallest class) and ``chosen``; a fit with a given K has one row."""
        record = self._class_record()
        rows = record.get("selection")
        if not rows:
            from pymixnn.inference.laws import class_selection_row

            rows = [class_selection_row(self.n_classes, self.estimation, self.data.n_individuals)]
        table = pd.DataFrame(rows).set_index("n_classes")
        table["chosen"] = table.index == self.n_classes
        return table

    def classify(self, newdata: pd.DataFrame, *, n_samples: int | None = None, seed: int = 0) -> pd.DataFrame:
        """Posterior class probabilities of individuals not in the fit from their data and
        covariates alone (lcmm's ``predictClass``): each one's posterior mode (the best of Newton
        paths started at every class mean, or the encoder's forward pass in a fit with
        ``local="amortized"``), then importance sampling of P(k | y_i, x_i) at the fitted
        parameters. ``newdata``: a long table with the fit's id, x, y, membership covariate and
        aux columns. Returns the table of :meth:`classes` for them."""
        from pymixnn.results.class_predict import classify_new

        self._class_record()
        P, ids = classify_new(self, newdata, n_samples=n_samples, seed=seed)
        return _prob_frame(P, ids)

    def plot_classes(self, path: str | Path, *, n_samples: int = 2000, seed: int = 0) -> Path:
        """PNG of the class mean curves: per class, the curve at its typical parameters with a
        90% band of individual curves drawn from the class's law, over the data of the individuals
        assigned to it."""
        from pymixnn.results.class_plots import plot_classes

        self._class_record()
        return plot_classes(self, path, n_samples=n_samples, seed=seed)


def _prob_frame(P: np.ndarray, index: pd.Index) -> pd.DataFrame:
    out = pd.DataFrame(P, index=index, columns=[f"prob.{k + 1}" for k in range(P.shape[1])])
    out["class"] = P.argmax(1) + 1
    return out
