"""Names and order of the reported parameters, shared by pymixnn's own fits and the saemix/nlme
bridges, so that their tables line up row by row (``pymixnn.compare_fits``).

Fixed effects come parameter by parameter, each followed by its covariate effects
(``beta_<covariate>(<parameter>)``, saemix's order); then the random-effect variances
``omega2.<p>`` and, for a full covariance, the covariances ``cov.<p_b>.<p_a>`` (b < a).

>>> omega_rows(["ka", "V"], full=True)
[('omega2.ka', 'ka', 0, 0), ('omega2.V', 'V', 1, 1), ('cov.ka.V', 'ka.V', 1, 0)]
>>> omega_scale(0, 0), omega_scale(1, 0)
('log', 'identity')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["fixed_rows", "omega_rows", "omega_scale"]


def fixed_rows(parameters: Sequence[str], design: Any) -> list[tuple[str, str, str, int | None]]:
    """(name, kind, parameter, j) of the fixed effects in reporting order: kind "fixed" (j None)
    for each parameter, then kind "beta" for each of its covariate effects (j: its column in
    ``design``, a :class:`pymixnn.model.covariates.CovariateDesign`)."""
    rows: list[tuple[str, str, str, int | None]] = []
    for p in parameters:
        rows.append((p, "fixed", p, None))
        rows += [(design.names[j], "beta", p, j) for j, target in enumerate(design.parameters) if target == p]
    return rows


def omega_rows(random: Sequence[str], full: bool, tag: str = "") -> list[tuple[str, str, int, int]]:
    """(name, parameter, a, b) of the random-effect (co)variances: Omega[a, b] is the value; the
    variances first, then (``full``) the covariances; ``tag`` names a block (a mixture's
    component: ``omega2.1.A``)."""
    rows = [(f"omega2.{tag}{p}", p, a, a) for a, p in enumerate(random)]
    if full:
        rows += [
            (f"cov.{tag}{random[b]}.{random[a]}", f"{random[b]}.{random[a]}", a, b)
            for a in range(len(random))
            for b in range(a)
        ]
    return rows


def omega_scale(a: int, b: int) -> str:
    """The scale of an Omega entry's confidence interval: log for a variance, identity for a
    covariance."""
    return "log" if a == b else "identity"
