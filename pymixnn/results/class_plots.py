"""The class mean curves of a latent-class fit (``Results.plot_classes``), PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pymixnn.results.plots import new_figure, save_figure

__all__ = ["plot_classes", "class_curves"]


def class_curves(res, grid: np.ndarray, *, n_samples: int = 2000, seed: int = 0) -> dict:
    """Per class k: the curve at its typical parameters (average covariates, eta at the class
    mean) and the 5% / 95% quantiles of individual curves drawn from the class's law, on ``grid``
    (T, q) of the structural function's x; a dict k -> (typical, lower, upper)."""
    import torch

    from pymixnn.inference.laws import fitted_law

    fm = res.evaluator
    spec = res.random_effects_law
    rand = [res.model.parameters.index(p) for p in res.model.random]
    shift = np.asarray(res.law.get("shift", np.zeros(len(rand))))
    base = fm.typical_phi()
    base[rand] -= shift  # mu of class 1 (the means are the class contrasts)
    law = None
    if spec.name != "latent_class":
        means, trils = np.zeros((1, len(rand))), np.linalg.cholesky(np.asarray(res.estimation.omega))[None]
    else:
        law, L, raw = fitted_law(res.law, res.estimation.theta)
        with torch.no_grad():
            _, delta, rest = law.split(raw)
            means, trils = law.means(delta).numpy(), law.trils(L, rest).numpy()
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(means.shape[0]):
        typical = base.copy()
        typical[rand] += means[k]
        phi = np.tile(typical, (n_samples, 1))
        if law is not None and law.flow is not None:  # draws of the shared flow within the class
            with torch.no_grad():
                gen = torch.Generator().manual_seed(seed + k)
                phi[:, rand] += law.flow.sample(L, law.flow_raw(raw), n_samples, gen).numpy()
        else:
            phi[:, rand] += rng.standard_normal((n_samples, len(rand))) @ trils[k].T
        curves = fm.curves(phi, grid)
        lower, upper = np.nanquantile(curves, [0.05, 0.95], axis=0)
        out[k + 1] = (fm.curves(typical[None], grid)[0], lower, upper)
    return out


def plot_classes(res, path: str | Path, *, n_samples: int = 2000, seed: int = 0) -> Path:
    """One panel per class: the data of the individuals assigned to it (grey), the class mean
    curve and its 90% band of individual curves; see ``Results.plot_classes``."""
    data = res.data
    if len(data.x_cols) != 1 or getattr(data, "events", None) is not None:
        raise ValueError("plot_classes draws curves of a closed-form model of one x column")
    frame = data.frame
    xcol, ycol = data.x_cols[0], data.y_col
    grid = np.linspace(float(frame[xcol].min()), float(frame[xcol].max()), 100)[:, None]
    curves = class_curves(res, grid, n_samples=n_samples, seed=seed)
    assigned = res.classes()["class"]
    K = len(curves)
    fig = new_figure(figsize=(4.2 * K, 3.6))
    axes = fig.subplots(1, K, sharey=True, squeeze=False)
    by_id = frame.groupby(data.id_col, sort=False)
    for k, ax in zip(range(1, K + 1), axes[0]):
        members = assigned.index[assigned == k]
        for i in members[:200]:
            rows = by_id.get_group(i)
            ax.plot(rows[xcol], rows[ycol], color="0.6", lw=0.5, alpha=0.5)
        typical, lower, upper = curves[k]
        ax.fill_between(grid[:, 0], lower, upper, color="C0", alpha=0.25, label="90% of individual curves")
        ax.plot(grid[:, 0], typical, color="C0", lw=2, label="class mean curve")
        ax.set_title(f"class {k}: {len(members)} individuals")
        ax.set_xlabel(xcol)
    axes[0][0].set_ylabel(ycol)
    axes[0][0].legend(loc="best", fontsize=8)
    return save_figure(fig, path)
