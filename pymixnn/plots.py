"""PNG plots of fitted results (matplotlib, Agg backend)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_individual_fits"]


def plot_individual_fits(res, path: str | Path, *, ids=None, max_panels: int = 24,
                         time: str | None = None, n_grid: int = 100) -> Path:
    """Observed data (points), individual MAP fit (line) and population fit (dashed) per individual.

    ``time`` is the x column on the horizontal axis (default: the last x column, e.g. Time after
    Dose); the other x columns are held at each individual's first value on the curve grid.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = res.data
    time = time or d.x_cols[-1]
    if time not in d.x_cols:
        raise ValueError(f"time={time!r} is not one of the x columns {d.x_cols}")
    ids = list(d.ids[:max_panels]) if ids is None else list(ids)
    unknown = [i for i in ids if i not in set(d.ids)]
    if unknown:
        raise ValueError(f"ids {unknown[:5]} are not in the fitted data")
    ncol = min(6, len(ids))
    nrow = math.ceil(len(ids) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow), squeeze=False,
                             sharex=True)
    frame = d.frame
    for ax, ind in zip(axes.flat, ids):
        rows = frame[frame[d.id_col] == ind]
        t = rows[time].to_numpy(dtype=float)
        grid = pd.DataFrame({time: np.linspace(min(t.min(), 0.0), t.max(), n_grid)})
        for c in d.x_cols:
            if c != time:
                grid[c] = rows[c].iloc[0]
        grid[d.id_col] = ind
        for c in res.design.columns:
            grid[c] = d.covariates.loc[ind, c]
        ax.plot(grid[time], res.predict(grid, level="individual"), color="C0", lw=1.4)
        ax.plot(grid[time], res.predict(grid, level="population"), color="0.4", lw=1, ls="--")
        ax.scatter(t, rows[d.y_col], s=10, color="C3", zorder=3)
        ax.set_title(f"{d.id_col} {ind}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(ids):]:
        ax.axis("off")
    fig.supxlabel(time, fontsize=9)
    fig.supylabel(d.y_col, fontsize=9)
    fig.suptitle("observed (points), individual fit (line), population fit (dashed)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
