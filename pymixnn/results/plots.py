"""PNG plots of fitted results (matplotlib). Each plot draws on a figure of its own with an Agg
canvas: the user's backend and pyplot's figures are left as they are."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pymixnn.data.nonmem import ENDPOINT_COLUMN
from pymixnn.model.covariates import design_covariates

__all__ = [
    "plot_individual_fits",
    "plot_random_effects",
    "plot_vpc",
    "vpc_figure",
    "manhattan_png",
    "new_figure",
    "save_figure",
    "mark_doses",
]


def new_figure(**kwargs):
    """A matplotlib Figure on its own Agg canvas (no pyplot, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (PNG)."""
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path


def mark_doses(ax, times, lower: float = -np.inf, upper: float = np.inf) -> None:
    """Dose times (those in [lower, upper]) as small triangles on the bottom edge of ``ax`` over
    faint dotted vertical lines."""
    t = np.asarray(times, dtype=float)
    t = np.unique(t[(t >= lower) & (t <= upper)])
    for v in t:
        ax.axvline(v, color="tab:green", lw=0.6, ls=":", alpha=0.6, zorder=0)
    if len(t):
        ax.plot(
            t,
            np.zeros(len(t)),
            "^",
            color="tab:green",
            ms=5,
            clip_on=False,
            transform=ax.get_xaxis_transform(),
            label="dose",
            zorder=4,
        )


def plot_individual_fits(
    res, path: str | Path, *, ids=None, max_panels: int = 24, time: str | None = None, n_grid: int = 100
) -> Path:
    """Observed data (points), individual MAP fit (line) and population fit (dashed) per individual.

    ``time`` is the x column on the horizontal axis: needed when x has several columns and the
    model does not declare which is time (``Model.time``; the named PK models do), see
    :func:`pymixnn.vpc.time_column`; the other x columns are held at each individual's first
    value on the curve grid.
    """
    from pymixnn.results.vpc import time_column

    d = res.data
    time = time_column(d, res.model, time, caller="plot_individuals()", others=False)
    ids = list(d.ids[:max_panels]) if ids is None else list(ids)
    unknown = [i for i in ids if i not in set(d.ids)]
    if unknown:
        raise ValueError(f"ids {unknown[:5]} are not in the fitted data")
    frame, events = d.frame, d.events
    # several endpoints (event data): one panel per individual and endpoint
    names = list(getattr(events, "endpoints", ())) if "endpoint" in d.aux else []
    panels = [(i, k) for i in ids for k in range(len(names))] if len(names) > 1 else [(i, None) for i in ids]
    ncol = min(6, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig = new_figure(figsize=(2.6 * ncol, 2.2 * nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False, sharex=True)
    # the covariate design's values (a time-varying covariate's at the first record: the
    # predictions carry its changes record by record)
    covariates = design_covariates(d.covariates, res.design.columns, events, d.ids)
    for ax, (ind, code) in zip(axes.flat, panels):
        rows = frame[frame[d.id_col] == ind]
        if code is not None:
            rows = rows[d.aux["endpoint"][frame[d.id_col].to_numpy() == ind] == code]
        t = rows[time].to_numpy(dtype=float)
        lo, hi = (min(t.min(), 0.0), t.max()) if len(t) else (0.0, float(frame[time].max()))
        grid = pd.DataFrame({time: np.linspace(lo, hi, n_grid)})
        for c in d.x_cols:
            if c != time:
                grid[c] = rows[c].iloc[0] if len(rows) else frame.loc[frame[d.id_col] == ind, c].iloc[0]
        if code is not None:
            grid[ENDPOINT_COLUMN] = float(code)
        grid[d.id_col] = ind
        if "trials" in d.aux_cols:  # binomial: expected successes at the individual's trials
            grid[d.aux_cols["trials"]] = rows[d.aux_cols["trials"]].iloc[0]
        for c in res.design.columns:
            grid[c] = covariates.loc[ind, c]
        ax.plot(grid[time], res.predict(grid, level="individual"), color="C0", lw=1.4)
        ax.plot(grid[time], res.predict(grid, level="population"), color="0.4", lw=1, ls="--")
        ax.scatter(t, rows[d.y_col], s=10, color="C3", zorder=3)
        if events is not None:  # event data: the individual's doses
            at = int(rows[d.x_cols[2]].iloc[0])
            mark_doses(ax, events.time[events.is_dose & (events.individual == at)], grid[time].min(), t.max())
        ax.set_title(f"{d.id_col} {ind}" + ("" if code is None else f", {names[code]}"), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.supxlabel(d.time_label(time), fontsize=9)
    fig.supylabel(d.y_col, fontsize=9)
    doses = ", doses (triangles)" if events is not None else ""
    fig.suptitle(f"observed (points), individual fit (line), population fit (dashed){doses}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_random_effects(
    res, path: str | Path, *, truth: dict | None = None, n_samples: int = 200_000, seed: int = 0
) -> Path:
    """Fitted law of phi against the individual estimates (and the truth when given).

    Diagonal: the fitted marginal density (line), histograms of the MAP and conditional-mean
    estimates of phi (individuals' eta + typical phi), and the true density (dashed) when
    ``truth[name]`` is a callable log-density of phi or an array of true phi values. Below the
    diagonal: law draws (grey) with the MAP estimates (points) for each pair.
    """
    from pymixnn.results.re_density import count_modes

    dens = res.re_density(n_samples=n_samples, seed=seed)
    rand = list(res.model.random)
    d = len(rand)
    phi0 = res.evaluator.typical_phi()
    pos = [res.model.parameters.index(p) for p in rand]
    shift = phi0[pos]
    eta_map = res.random_effects("map").to_numpy() + shift
    eta_mean = res.random_effects("mean").to_numpy() + shift
    fig = new_figure(figsize=(3.4 * d, 3.0 * d))
    axes = fig.subplots(d, d, squeeze=False)
    draws = dens.samples.to_numpy()[:5000]
    for a in range(d):
        for b in range(d):
            ax = axes[a, b]
            if b > a:
                ax.axis("off")
                continue
            if a == b:
                name = rand[a]
                g = dens.grid[dens.grid["parameter"] == name]
                bins = np.linspace(g["phi"].min(), g["phi"].max(), 40)
                ax.hist(eta_map[:, a], bins=bins, density=True, alpha=0.35, color="tab:blue", label="MAP")
                ax.hist(
                    eta_mean[:, a],
                    bins=bins,
                    density=True,
                    alpha=0.35,
                    color="tab:orange",
                    label="cond. mean",
                )
                ax.plot(
                    g["phi"],
                    g["density"],
                    color="black",
                    lw=1.8,
                    label=f"fitted {dens.law} ({count_modes(g['density'].to_numpy())} mode(s))",
                )
                if truth and name in truth:
                    t = truth[name]
                    if callable(t):
                        ax.plot(g["phi"], np.exp(t(g["phi"].to_numpy())), "r--", lw=1.5, label="truth")
                    else:
                        ax.hist(
                            np.asarray(t, float),
                            bins=bins,
                            density=True,
                            histtype="step",
                            color="red",
                            ls="--",
                            lw=1.5,
                            label="true phi",
                        )
                ax.set_xlabel(f"phi {name} ({res.model.transforms[name]} scale)")
                ax.set_yticks([])
                if a == 0:
                    ax.legend(fontsize=7)
            else:
                ax.scatter(draws[:, b], draws[:, a], s=2, color="0.7", alpha=0.4, rasterized=True)
                ax.scatter(eta_map[:, b], eta_map[:, a], s=5, color="tab:blue", alpha=0.7)
                ax.set_xlabel(f"phi {rand[b]}")
                ax.set_ylabel(f"phi {rand[a]}")
    fig.suptitle(f"Random-effects law: {res.random_effects_law.describe()}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _vpc_panels(table: pd.DataFrame) -> list[tuple[str | None, list[str]]]:
    """(endpoint or None, statistics drawn together) per panel: the percentiles of a Gaussian
    endpoint in one panel (the fraction below the limit in another), every other statistic (a
    mean, a proportion, each ordinal category) in a panel of its own; endpoint after endpoint."""
    endpoints = list(dict.fromkeys(table["endpoint"])) if "endpoint" in table else [None]
    panels = []
    for e in endpoints:
        sub = table if e is None else table[table["endpoint"] == e]
        stats_ = list(dict.fromkeys(sub["statistic"]))
        percentiles = [s for s in stats_ if s[:1] == "p" and s[1:].isdigit()]
        if percentiles:
            panels.append((e, percentiles))
        panels += [(e, [s]) for s in stats_ if s not in percentiles]
    return panels


def vpc_figure(res, table: pd.DataFrame, *, level_pi: float = 0.9):
    """The Figure of :func:`plot_vpc`: one panel per statistic group (:func:`_vpc_panels`),
    titled with its endpoint's name when the data have several endpoints."""
    panels = _vpc_panels(table)
    n = len(panels)
    ncol = min(3, n)
    nrow = math.ceil(n / ncol)
    fig = new_figure(figsize=(max(4.2 * ncol, 7.0), 3.2 * nrow + 0.4))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, (endpoint, group) in zip(axes.flat, panels):
        rows = table if endpoint is None else table[table["endpoint"] == endpoint]
        for k, name in enumerate(group):
            sub = rows[rows["statistic"] == name].sort_values("time")
            colour = f"C{k}" if len(group) > 1 else "C0"
            ax.fill_between(
                sub["time"],
                sub["sim_lower"],
                sub["sim_upper"],
                color=colour,
                alpha=0.2,
                label=f"simulated {int(100 * level_pi)}% PI" if k == 0 else None,
            )
            ax.plot(
                sub["time"],
                sub["sim_median"],
                color="black",
                lw=1,
                ls="--",
                label="simulated median" if k == 0 else None,
            )
            ax.plot(
                sub["time"],
                sub["observed"],
                "o-",
                color="tab:red",
                ms=4,
                lw=1.2,
                label="observed" if k == 0 else None,
            )
        title = ", ".join(group) if len(group) <= 3 else "percentiles"
        if endpoint is not None:
            title = f"{endpoint}: {title}"
            ax.set_ylabel(f"{endpoint} ({'percentiles' if len(group) > 1 else group[0]})", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(table.attrs.get("time_label", table.attrs.get("time", "time")), fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    obs = res.observation
    kind = "Prediction-corrected VPC" if table.attrs.get("prediction_corrected") else "VPC"
    if table.attrs.get("prediction_corrected"):
        for ax in list(axes.flat)[:n]:
            ax.set_ylabel("prediction-corrected value", fontsize=8)
    fig.suptitle(
        f"{kind}: {obs.describe(res.model)}\n{table.attrs.get('n_sim')} simulated data sets; "
        f"{int(table['outside'].sum())} of {len(table)} observed values outside the "
        f"{int(100 * level_pi)}% band",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def plot_vpc(res, table: pd.DataFrame, path: str | Path, *, level_pi: float = 0.9) -> Path:
    """Visual predictive check: per statistic (a panel per ordinal category; with several
    endpoints, panels per endpoint titled with its name), the observed value by time bin (red
    points and line) over the simulated median (black) and prediction band."""
    return save_figure(vpc_figure(res, table, level_pi=level_pi), path)


def _chromosome_order(chrs: pd.Series) -> dict:
    def key(c):
        s = str(c)
        return (0, int(s), s) if s.isdigit() else (1, 0, s)

    return {c: k for k, c in enumerate(sorted(pd.unique(chrs), key=key))}


def manhattan_png(
    block: pd.DataFrame, score: np.ndarray, path: Path, *, ylabel: str, title: str, top: int = 10
) -> Path:
    """Manhattan-style PNG of one parameter's marker ``score`` (rows of ``block``: marker, and chr /
    pos when a map was given, then by chromosome and position in alternating colours), the
    ``top`` markers labelled (see :func:`pymixnn.results.genomic.plot_manhattan`)."""
    fig = new_figure(figsize=(10, 3.6))
    ax = fig.subplots()
    if "chr" in block:
        order = _chromosome_order(block["chr"])
        block = block.assign(_c=block["chr"].map(order))
        block = block.assign(_s=score).sort_values(["_c", "pos"], kind="stable")
        offsets, ticks, labels, start = {}, [], [], 0.0
        for c, grp in block.groupby("_c", sort=True):
            span = float(grp["pos"].max() - grp["pos"].min()) if len(grp) > 1 else 1.0
            offsets[c] = start - float(grp["pos"].min())
            ticks.append(start + span / 2)
            labels.append(str(grp["chr"].iloc[0]))
            start += span * 1.04 + 1e-9
        xpos = block["pos"] + block["_c"].map(offsets)
        colors = np.where(block["_c"] % 2 == 0, "tab:blue", "tab:gray")
        ax.scatter(xpos, block["_s"], s=8, c=colors)
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels)
        ax.set_xlabel("chromosome (position)")
        score_sorted, names, xs = block["_s"].to_numpy(), block["marker"].to_numpy(), xpos.to_numpy()
    else:
        xs = np.arange(len(block))
        ax.scatter(xs, score, s=8, c="tab:blue")
        ax.set_xlabel("marker (matrix order)")
        score_sorted, names = score, block["marker"].to_numpy()
    for k in np.argsort(-score_sorted)[:top]:
        ax.annotate(
            str(names[k]),
            (xs[k], score_sorted[k]),
            fontsize=7,
            rotation=30,
            xytext=(2, 2),
            textcoords="offset points",
        )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)
