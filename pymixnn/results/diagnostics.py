"""Convergence and sanity report of a fit: does it maximize the likelihood, and is it sane?

Every fit carries ``Results.diagnostics``, one row per check with its ``value``, the ``limit`` it is
held to, ``ok``, a ``severity`` and a one-line ``message``. A failed check of severity "error"
makes ``Results.converged`` False; :func:`pymixnn.fit` emits each failed check as a
:class:`ConvergenceWarning`, ``summary()`` lists them, the CLI prints them and its JSON carries them.

The checks (limits and their reasons are in ``LIMITS``):

- ``newton_decrement``: g' I^-1 g / 2 at the estimates, the log-likelihood a Newton step would still
  gain. At a maximum it is the Monte Carlo noise of the importance-sampling gradient, well below
  the limit; a fit stopped early (``refine=False``, too few steps, a start in the wrong basin)
  shows it.
- ``gradient``: the largest gradient component in SE units, |g_j| sd_j.
- ``information``: the observed Fisher information is positive definite (no pseudo-inverse), and
  its smallest eigenvalue in correlation form (unit-free) is above the limit: a parameter the data
  do not identify has an eigenvalue ~0.
- ``variance_boundary``: a random-effect variance collapsed to ~0 (the data do not support it; its
  Wald SE means nothing there): its sd below 1e-3, or below 0.1 with an SE of log omega2 above
  2.5 (a confidence interval reaching 0).
- ``parameter_scale``: a fixed effect moved by more than 10^4-fold from every start tried, or a
  residual error parameter absurd against the spread of y.
- ``loglik_bound``: a log-likelihood above what the error model allows for these data (Gaussian
  data: a residual sd below 1e-6 of the spread of y; discrete data: a probability above 1).
- ``starts``: the start values tried and the one kept (a note, never a failure).

>>> res.diagnostics  # doctest: +SKIP
                       value     limit    ok severity  message
newton_decrement    2.1e-05       0.5  True    error  ...
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["ConvergenceWarning", "FallbackWarning", "LIMITS", "convergence_report"]


class ConvergenceWarning(UserWarning):
    """A fit whose convergence or sanity checks failed (see ``Results.diagnostics``).

    Parameters
    ----------
    *args : str
        The message: the failed check and what it measured.

    Returns
    -------
    ConvergenceWarning
        The warning that :func:`pymixnn.fit` issues once per failed check (filter it with
        :mod:`warnings` as any ``UserWarning``); ``Results.converged`` is then False.
    """


class FallbackWarning(UserWarning):
    """A fit that took a fallback (zeroed non-finite gradients, rejected steps, a replaced start
    value, ...) more often than its threshold; every count is in ``Results.run.fallbacks``.

    Parameters
    ----------
    *args : str
        The message: the fallback, how often it was taken and its threshold.

    Returns
    -------
    FallbackWarning
        The warning that :func:`pymixnn.fit` issues at fit time for each such fallback.
    """


# limits of the checks, each with its reason
LIMITS = {
    # log-likelihood units a Newton step would still gain: 0.5 is the scale at which two fits'
    # log-likelihoods are judged different (a likelihood-ratio chi2 of 1); measured at the optimum
    # on theophylline and simulated logistic fits (the importance-sampling noise): < 1e-2
    "newton_decrement": 0.5,
    # the largest gradient component in SE units: a step of one SE along it gains this much
    "gradient": 1.0,
    # the smallest eigenvalue of the information in correlation form (1 for orthogonal, well
    # identified parameters); 1e-8 means a direction whose SE is ~10^4 times its marginal one
    "information": 1e-8,
    # a random effect's sd on its transformed scale (log scale: a 0.1% spread between
    # individuals) below which its variance is at the boundary of the parameter space
    "variance_boundary": 1e-3,
    # ... or, below a 10% spread, a variance whose SE on the log scale exceeds this: the 95%
    # interval spans a factor e^(3.92 x 2.5) > 10^4, i.e. it reaches 0 (the maximum lies on a
    # flat ridge towards omega2 = 0 where a Newton iteration stops anywhere: a collapsed slope
    # variance ended at 2e-8 or 4e-4 with the same log-likelihood, log-scale SE 5.3)
    "variance_boundary_log_se": 2.5,
    # fold change of a log-scale fixed effect from the nearest start tried: 10^4
    "parameter_scale": math.log(1e4),
    # Gaussian data: the residual sd implied by the log-likelihood, relative to the sd of y
    "loglik_bound": 1e-6,
}


def _row(
    check: str, value: float, limit: float | None, ok: bool, message: str, severity: str = "error"
) -> dict:
    return dict(
        check=check,
        value=float(value) if value is not None else math.nan,
        limit=math.nan if limit is None else float(limit),
        ok=bool(ok),
        severity=severity,
        message=message,
    )


def convergence_report(res) -> pd.DataFrame:
    """The checks of one fit (see the module docstring) as a DataFrame indexed by check name with
    columns ``value``, ``limit``, ``ok``, ``severity`` ("error", "warning" or "note") and
    ``message``. Fits from the saemix/nlme bridges and results saved before these checks existed
    report only what their engine said (``engine_converged``)."""
    est = res.estimation
    diag = getattr(est, "diagnostics", None)
    rows: list[dict] = []
    if not diag:
        ok = bool(est.converged)
        rows.append(
            _row(
                "engine_converged",
                float(ok),
                None,
                ok,
                "the estimation engine reported convergence"
                if ok
                else "the estimation engine did not report convergence",
            )
        )
        return _frame(rows)
    limit = LIMITS["newton_decrement"]
    dec = diag["newton_decrement"]
    ok = math.isfinite(dec) and dec < limit
    hint = (
        ""
        if ok
        else "; the estimates are not at a maximum of the log-likelihood: refit with "
        "refine=True, more max_steps or other init"
    )
    rows.append(
        _row(
            "newton_decrement",
            dec,
            limit,
            ok,
            f"a Newton step would raise the log-likelihood by {dec:.3g} (limit {limit})" + hint,
        )
    )
    limit = LIMITS["gradient"]
    g = diag["gradient_se"]
    rows.append(
        _row(
            "gradient",
            g,
            limit,
            math.isfinite(g) and g < limit,
            f"largest gradient component in SE units {g:.3g} (limit {limit})",
        )
    )
    limit = LIMITS["information"]
    smallest = diag["information_min_eigenvalue"]
    pd_ok = (not diag["pseudo_inverse"]) and math.isfinite(smallest) and smallest > limit
    if pd_ok:
        message = (
            f"observed Fisher information positive definite (smallest eigenvalue in "
            f"correlation form {smallest:.3g}, condition number "
            f"{diag['information_condition']:.3g})"
        )
    else:
        weak = _weak_parameters(res)
        message = (
            f"observed Fisher information is not positive definite (smallest eigenvalue in "
            f"correlation form {smallest:.3g}): the data do not identify "
            + (f"{weak}" if weak else "some parameters")
            + "; their SEs are unreliable: simplify the model (fewer random effects or "
            "parameters)"
        )
    rows.append(_row("information", smallest, limit, pd_ok, message))
    rows += _boundary_rows(res)
    rows += _scale_rows(res, diag)
    rows.append(_loglik_row(res))
    starts = diag.get("starts") or []
    if len(starts) > 1:
        kept = starts[0]
        text = "; ".join(f"{s['start']} {s['pooled_loglik']:.2f}" for s in starts)
        rows.append(
            _row(
                "starts",
                kept["pooled_loglik"],
                None,
                True,
                f"start values tried (pooled log-likelihood): {text}; kept the {kept['start']}",
                severity="note",
            )
        )
    return _frame(rows)


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["check", "value", "limit", "ok", "severity", "message"])
    return frame.set_index("check").rename_axis(None)


def _weak_parameters(res) -> str:
    """The parameters the data do not identify: pairs whose estimates are correlated beyond 0.99
    (confounded), and those whose SE is NaN or whose relative SE exceeds 1000%."""
    p = res.params
    cov = res.cov_params().to_numpy()
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    names = list(p.index)
    pairs = [
        f"{names[i]} and {names[j]} (correlation {corr[i, j]:.4f})"
        for i in range(len(names))
        for j in range(i)
        if np.isfinite(corr[i, j]) and abs(corr[i, j]) > 0.99
    ]
    weak = [str(n) for n in p.index[~np.isfinite(p["se"]) | (p["rse"].abs() > 1000)]]
    parts = ([f"confounded {', '.join(pairs)}"] if pairs else []) + (
        [f"poorly determined {', '.join(weak)}"] if weak else []
    )
    return "; ".join(parts)


def _boundary_rows(res) -> list[dict]:
    """Random-effect variances at ~0 (Gaussian law: the omega diagonal on the transformed scale;
    an identity-scale parameter's sd is taken relative to its fixed effect)."""
    if res.random_effects_law.name != "gaussian":
        return []
    limit = LIMITS["variance_boundary"]
    rows, at = [], []
    omega = np.diag(np.asarray(res.estimation.omega, dtype=float))
    mu = np.asarray(res.estimation.mu, dtype=float)
    params = res.params
    for j, name in enumerate(res.model.random):
        sd = math.sqrt(max(omega[j], 0.0))
        if res.model.transforms[name] == "identity":
            sd /= max(abs(mu[res.model.parameters.index(name)]), 1e-12)
        key = f"omega2.{name}"
        log_se = math.nan
        if key in params.index and omega[j] > 0:
            log_se = float(params.loc[key, "se"]) / omega[j]  # the delta method: SE of log omega2
        if not sd >= limit or (sd < 0.1 and log_se > LIMITS["variance_boundary_log_se"]):
            at.append(f"omega2.{name} = {omega[j]:.3g}")
    value = len(at)
    message = (
        "no random-effect variance at the boundary"
        if not at
        else f"{', '.join(at)}: variance at the boundary (~0), the data do not support a random "
        "effect there and its SE means nothing; refit without it (random=[...])"
    )
    rows.append(_row("variance_boundary", value, 0, not at, message))
    return rows


def _scale_rows(res, diag: dict) -> list[dict]:
    """Fixed effects far from every start tried (log/logit scale) and absurd error parameters."""
    starts = [s["values"] for s in (diag.get("starts") or [])]
    limit = LIMITS["parameter_scale"]
    bad = []
    fixed = res.fixed_effects
    for p in res.model.parameters:
        t = res.model.transforms[p]
        if t != "log" or not starts:
            continue
        value = float(fixed[p])
        if not (value > 0 and math.isfinite(value)):
            bad.append(f"{p} = {value:.3g}")
            continue
        moved = min(abs(math.log(value) - math.log(s[p])) for s in starts if s.get(p, 0) > 0)
        if moved > limit:
            bad.append(f"{p} = {value:.3g} (start {starts[0][p]:.3g})")
    y = np.asarray(res.data.y, dtype=float)
    spread = float(np.std(y)) if y.size > 1 else 0.0
    if res.observation.name == "gaussian" and spread > 0:
        a = res.sigma.get("a")
        b = res.sigma.get("b")
        scale_y = spread if res.model.error != "exponential" else 1.0
        if a is not None and not (1e-8 * scale_y < a < 10 * scale_y):
            bad.append(f"a = {a:.3g} (sd of y {spread:.3g})")
        if b is not None and not (1e-8 < b < 10):
            bad.append(f"b = {b:.3g} (a proportional error above 1000% or below 1e-6%)")
    message = (
        "parameters on the scale of the data and of the start values"
        if not bad
        else f"parameters at absurd scales: {', '.join(bad)}; check the data (units, signs, "
        "times) and the start values (init=)"
    )
    return [_row("parameter_scale", len(bad), 0, not bad, message)]


_DISCRETE = ("poisson", "negative_binomial", "zero_inflated_poisson", "binomial", "bernoulli", "ordinal")


def _loglik_row(res) -> dict:
    """A log-likelihood larger than the data allow."""
    ll, n = float(res.loglik), int(res.nobs)
    if res.observation.name == "gaussian":
        y = np.asarray(res.data.y, dtype=float)
        spread = float(np.std(y if res.model.error != "exponential" else np.log(np.abs(y) + 1e-300)))
        # (a very low ll, as of a diverged fit, implies an infinite sd rather than an overflow)
        log_implied = -(ll / n) - 0.5 * math.log(2 * math.pi * math.e) if math.isfinite(ll) else -math.inf
        implied = math.exp(min(log_implied, 700.0)) if log_implied < 700.0 else math.inf
        limit = LIMITS["loglik_bound"]
        ok = spread > 0 and implied > limit * spread
        message = f"log-likelihood {ll:.4g} implies a residual sd of {implied:.3g} (sd of y {spread:.3g})"
        if not ok:
            message += ": more than the error model allows for these data (a degenerate fit)"
        return _row("loglik_bound", implied / spread if spread > 0 else 0.0, limit, ok, message)
    if res.observation.name not in _DISCRETE:  # a user log-likelihood may be a density
        return _row(
            "loglik_bound",
            ll,
            None,
            True,
            f"log-likelihood {ll:.4g} (not bounded: a {res.observation.name} observation model)",
            severity="note",
        )
    ok = math.isfinite(ll) and ll <= 1e-6
    message = f"log-likelihood {ll:.4g} of {res.observation.name} data" + (
        "" if ok else ": above 0, impossible for probabilities (a degenerate fit)"
    )
    return _row("loglik_bound", ll, 0.0, ok, message)
