"""The printed summary of a fit (:meth:`pymixnn.Results.summary`): model and data lines, the
parameter table like saemix's printout, the likelihood, a genomic block, convergence, fallbacks."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["Summary", "summary_text", "describe_model"]


class Summary:
    """Printable summary; ``.table`` holds the parameter table as a DataFrame."""

    def __init__(self, text: str, table: pd.DataFrame):
        self.text, self.table = text, table

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def _fmt(v: float) -> str:
    return "NA" if not np.isfinite(v) else f"{v:.5g}"


def summary_text(res) -> str:
    """The text of :meth:`pymixnn.Results.summary`."""
    d, info = res.data, res.info
    engine = res.settings.get("engine")
    head = [
        (
            f"Nonlinear mixed-effects model fitted by {engine} (through pymixnn.compare)"
            if engine
            else (
                "Nonlinear regression (pymixnn): no individual random effects, maximum likelihood "
                "by Newton steps"
                if res.loglik_method == "exact"
                else (
                    "Nonlinear mixed-effects model (pymixnn): Laplace-EM start + Newton steps on "
                    "the importance-sampling log-likelihood (gear 'newton')"
                    if info.get("gear") == "newton"
                    else "Nonlinear mixed-effects model (pymixnn): minibatch SVI"
                    + (" + importance-weighted refinement" if res.settings.get("refine", True) else "")
                )
            )
        ),
        describe_model(res),
        f"data: {res.n_individuals} individuals, {res.nobs} observations; y={d.y_col!r}, "
        f"x={d.x_cols}" + _covariates_header(res) + _shard_header(res),
        (
            ("" if info.get("seed") is None else f"seed {info['seed']}, ") + f"{info['seconds']:.1f} s in R"
            if engine
            else f"seed {info['seed']}, device {info['device']} ({info['dtype']}), "
            + (
                f"no SVI, {info.get('refine_rounds')} refinement rounds"
                if info.get("gear") == "newton"
                else f"{info['steps']} SVI steps"
            )
            + f", {info['seconds']:.2f} s of fitting"
        ),
    ]
    head[2:2] = res.neural_summary_lines() if hasattr(res, "neural_summary_lines") else []
    law = res.random_effects_law
    if law.name != "gaussian":
        head.insert(2, law.describe() + (f"; {res.df_modelwc} free parameters" if law.name == "flow" else ""))
    rec = None if res.external is not None else getattr(res.estimation, "levels", None)
    if rec:
        kinds = rec.get("kinds") or ["level"] * len(rec["names"])
        parts = [
            f"{n} ({len(lab)} groups; random effects on {list(p)}, {'full' if f else 'diagonal'} omega)"
            for n, lab, p, f, k in zip(rec["names"], rec["labels"], rec["params"], rec["full"], kinds)
            if k == "level"
        ]
        if parts:
            head.insert(2, "grouping levels: " + "; ".join(parts))
        sp = res.settings.get("spatial")
        if sp:
            n = len(rec["labels"][[k != "level" for k in kinds].index(True)])
            head.insert(
                2,
                f"spatial field on {sp['params']}: "
                + (
                    f"AR1 x AR1 over the {sp['coords']} grid ({n} cells)"
                    if sp.get("kind") == "ar1xar1"
                    else f"Matérn nu = {sp.get('nu')} over {sp['coords']} ({n} locations; nearest-neighbour "
                    f"approximation, {sp.get('neighbours')} neighbours)"
                    if sp.get("kind") == "matern"
                    else f"exact Gaussian process, {sp['kernel']} kernel over {sp['coords']} ({n} locations)"
                ),
            )

    return "\n".join(head + _parameter_lines(res, law.name) + _class_lines(res) + _likelihood_lines(res))


def _parameter_lines(res, law_name: str) -> list[str]:
    labels = {
        "fixed": "Fixed effects",
        "beta": None,
        "omega": "Variance of random effects",
        "sigma": (
            "Residual error"
            if res.observation.name == "gaussian"
            else f"Observation model ({res.observation.name})"
        ),
        "law": "Mixture components (weights; means on the natural scale)",
        "level": "Variance of random effects at grouping levels (transformed scale)",
        "spatial": "Spatial field (sd on the transformed scale; range in coordinate units, or AR1 rho)",
    }
    if law_name == "flow":
        labels["omega"] = "Variance of random effects under the fitted flow (transformed scale)"
    if law_name == "latent_class":
        labels["law"] = "Class probabilities (averaged over the individuals)"
        labels["omega"] = "Variance of random effects within a class (transformed scale)"
    labels["class"] = "Class-specific fixed effects (natural scale)"
    labels["membership"] = "Class membership (multinomial logit, class 1 the reference)"
    p = res.params
    lines = []
    width = max(len(str(n)) for n in p.index) + 2
    cols = f"{'':{width}}{'Estimate':>12}{'SE':>12}{'RSE(%)':>9}{'2.5%':>12}{'97.5%':>12}"
    for kind in ("fixed", "law", "class", "membership", "omega", "level", "spatial", "sigma"):
        kinds = ("fixed", "beta") if kind == "fixed" else (kind,)
        block = p[p["kind"].isin(kinds)]
        if block.empty:
            continue
        lines += ["", labels[kind], cols]
        for name, r in block.iterrows():
            # width 12 holds the longest %.5g value (-1.2346e-05) with a separating space
            lines.append(
                f"{name:{width}}{_fmt(r['estimate']):>12}{_fmt(r['se']):>12}"
                f"{(f'{r.rse:.1f}' if np.isfinite(r.rse) else 'NA'):>9}"
                f"{_fmt(r['ci_lower']):>12}{_fmt(r['ci_upper']):>12}"
            )
    return lines


def _class_lines(res) -> list[str]:
    """Latent classes: the posterior classification table (lcmm's postprob) and, with
    n_classes="auto", the table of K."""
    rec = None if res.external is not None else res.law
    if not rec:
        return []
    selection = [r for r in rec.get("selection") or [] if "n_classes" in r]
    lines = []
    if rec.get("class_prob") is not None:
        lines += ["", "Posterior classification (highest posterior probability)"]
        lines += ["  " + line for line in res.class_table().round(4).to_string().splitlines()]
    if selection:
        sel = res.class_selection()[["loglik", "df", "bic", "icl", "entropy", "smallest_class", "chosen"]]
        lines += ["", f"Number of classes (chosen by {rec.get('criterion')})"]
        lines += ["  " + line for line in sel.round(3).to_string().splitlines()]
    return lines


def _likelihood_lines(res) -> list[str]:
    info = res.info
    if res.loglik_method == "gq":
        lik = [
            "",
            "Likelihood (adaptive Gauss-Hermite quadrature)",
            f"  ll.gq  {res.loglik:.3f}  ({res.estimation.quadrature_nodes} nodes per "
            f"random effect, {info['is_samples']} per individual)",
        ]
    elif res.loglik_method == "exact":
        lik = ["", "Likelihood (exact: no individual random effects)", f"  ll     {res.loglik:.3f}"]
    elif res.loglik_method.startswith("nlme"):
        lik = [
            "",
            f"Likelihood (nlme, {res.loglik_method.split('.', 1)[1]}, linearisation)",
            f"  logLik {res.loglik:.3f}",
        ]
    else:
        mc = f"Monte Carlo SE {res.loglik_se:.3f}, " if np.isfinite(res.loglik_se) else ""
        lik = [
            "",
            "Likelihood (importance sampling)",
            f"  ll.is  {res.loglik:.3f}  ({mc}{info['is_samples']} draws per individual)",
        ]
    lik += [
        f"  AIC    {res.aic:.3f}",
        f"  BIC    {res.bic:.3f}  (log of the number of individuals, as saemix)",
        *(
            [
                "  AIC and BIC are not comparable with a fit without markers: ll excludes the "
                "markers' prior (genetic values plugged in)"
            ]
            if res.is_genomic
            else []
        ),
        *(
            [
                "  the grouping levels are integrated out through each individual's Gaussian "
                "pseudo-likelihood of its offset (exact for a linear model)",
            ]
            if res.external is None and getattr(res.estimation, "levels", None)
            else []
        ),
        "",
        f"SEs: {info['se_method']}",
        *(
            [
                "  level covariances: observed information of the levels' likelihood; the level "
                "parameters' fixed effects: generalized least squares (their SEs include the levels)"
            ]
            if res.external is None and getattr(res.estimation, "levels", None)
            else []
        ),
    ]
    selection = res.law.get("selection") if res.law else None
    if selection:
        lik += ["", f"Number of mixture components chosen by {res.law['criterion']}:"]
        lik += ["  " + line for line in pd.DataFrame(selection).to_string(index=False).splitlines()]
    lik += _genomic_lines(res)
    amortized = getattr(res.estimation, "amortized", None)
    if amortized:
        gap = res.amortization
        refined = (
            f"; after {amortized['refine_steps']} Newton steps {gap['gap_refined'].mean():.4f}"
            if "gap_refined" in gap
            else ""
        )
        lik += [
            "",
            f"Local posteriors: amortized (a set encoder, {amortized['n_weights']} weights)",
            f"  mean amortization gap {gap['gap'].mean():.3f} nats per individual (median "
            f"{gap['gap'].median():.3f}){refined}",
            *(
                [f"  (gap and effective sample sizes on {amortized['gap_individuals']} random individuals)"]
                if amortized.get("gap_individuals")
                else []
            ),
            f"  {amortized['n_flagged']} individuals flagged (effective sample size of the encoder's "
            f"posterior below 10% of {amortized['gap_draws']} draws) got per-individual steps",
        ]
    lik += [
        "",
        "Convergence: "
        + (
            "yes ("
            + "; ".join(
                str(m)
                for m in res.diagnostics.loc[
                    [
                        c
                        for c in ("newton_decrement", "information", "engine_converged")
                        if c in res.diagnostics.index
                    ],
                    "message",
                ]
            )
            + ")"
            if res.converged
            else "NOT converged"
        ),
    ]
    lik += [f"  problem: {m}" for m in res.convergence_messages()]
    lik += _fallback_lines(res)
    lik += [f"warning: {w}" for w in info.get("warnings", [])]
    return lik


def _fallback_lines(res) -> list[str]:
    """ "Fallbacks: name n, ..." when the run counted any (see :class:`pymixnn.inference.records.RunInfo`)."""
    run = res.run
    counts = {k: int(v) for k, v in (run.get("fallbacks") or {}).items()} if run else {}
    taken = [f"{k} {v}" for k, v in counts.items() if v > 0]
    return ["Fallbacks: " + ", ".join(taken)] if taken else []


def _shard_header(res) -> str:
    """A fit from shards: what this process holds."""
    sh = res.settings.get("shard")
    if not sh:
        return ""
    return (
        f"; read as {sh['world']} shards, this process (rank {sh['rank']}) holds "
        f"{sh['n_individuals_here']} individuals, {sh['n_obs_here']} observations (the individual "
        "tables are theirs)"
    )


def _covariates_header(res) -> str:
    """ ", covariates=[...]" of the summary's data line, the genotype column apart, and x
    columns given as dates with their unit and origin."""
    d, genotype = res.data, res.settings.get("genotype")
    covs = [c for c in d.covariate_cols if c != genotype]
    return (
        (f", covariates={covs}" if covs else "")
        + (f", genotype column {genotype!r}" if genotype else "")
        + "".join(f"; {line}" for line in d.time_conversions())
    )


def _genomic_lines(res) -> list[str]:
    gen = getattr(res.estimation, "genomic", None)
    if not gen:
        return []
    rep = gen.get("report", {})
    lines = [
        "",
        f"Genomic: marker effects on {gen['params']} ({gen['prior']} prior"
        + (f", x {gen['interaction']} interaction" if gen.get("interaction") else "")
        + (", genotype residual" if gen["residual"] else "")
        + ")",
        f"  {rep.get('n_markers', len(gen['marker_names']))} markers on "
        f"{rep.get('n_genotypes', '?')} genotypes ({len(gen['genotype_rows'])} phenotyped, "
        f"column {gen.get('genotype_column')!r}); {rep.get('n_missing_imputed', 0)} missing "
        f"values mean-imputed, {rep.get('n_monomorphic', 0)} monomorphic and "
        f"{rep.get('n_all_missing', 0)} all-missing markers dropped",
        "  variance of the transformed parameters (markers: over phenotyped genotypes):",
    ]
    var = res.variance_explained
    lines += ["  " + line for line in var.to_string(float_format=lambda v: f"{v:.4g}").splitlines()]
    top = res.top_markers(5)
    keep = [c for c in ["parameter", "rank", "marker", "chr", "pos", "effect", "sd", "inclusion"] if c in top]
    lines += ["  top markers:"]
    lines += [
        "  " + line
        for line in top[keep].to_string(index=False, float_format=lambda v: f"{v:.4g}").splitlines()
    ]
    lines += [
        "  Omega and the estimates above are conditional on the genetic values' posterior "
        "(mean plugged in, variance in Omega's update); ll excludes the markers' prior"
    ]
    return lines


def describe_model(res) -> str:
    """The model line of the summary: structural model, error or observation model, censoring."""
    text = res.model.describe()
    obs = res.observation
    n_cens = int(res.data.aux["censored"].sum()) if "censored" in res.data.aux else 0
    if obs.name == "gaussian":
        if n_cens:
            text += (
                f"; {n_cens} left-censored observations (column "
                f"{res.data.aux_cols['censored']!r}, M3 likelihood)"
            )
        return text
    head = text.rsplit(";", 1)[0]
    extra = f", trials in {res.data.aux_cols['trials']!r}" if "trials" in res.data.aux_cols else ""
    return f"{head}; {obs.describe(res.model)}{extra}"
