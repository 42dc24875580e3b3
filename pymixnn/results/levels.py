"""Results of a fit with grouping levels (``levels=``): the level effects per group.

The covariances are rows ``omega2.<level>.<p>`` (and ``cov.<level>.<p_b>.<p_a>``) of ``res.params``,
kind "level"; the individuals' predictions include their groups' effects (nlme's innermost level).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["LevelsMixin"]


class LevelsMixin:
    """``level_names`` and ``level_effects(level)`` of :class:`pymixnn.Results`."""

    def _levels_record(self):
        rec = (
            None if getattr(self, "external", None) is not None else getattr(self.estimation, "levels", None)
        )
        if not rec:
            raise ValueError(
                "this fit has no grouping levels: fit with levels=[pymixnn.Level(column, params=[...])]"
            )
        return rec

    @property
    def level_names(self) -> list[str]:
        """The grouping levels' columns ([] for a fit without levels)."""
        try:
            return list(self._levels_record()["names"])
        except ValueError:
            return []

    def level_effects(self, level: str) -> pd.DataFrame:
        """The effects of level ``level`` (its column name) per group: posterior mean and sd of
        each parameter's effect on the transformed scale (columns ``<p>`` and ``<p>.sd``, nlme's
        ``ranef(fit)$<level>``) and the number of individuals in the group, indexed by group."""
        rec = self._levels_record()
        names = list(rec["names"])
        if level not in names:
            raise ValueError(f"no level {level!r} in this fit; its levels are {names}")
        k = names.index(level)
        params = list(rec["params"][k])
        mean, sd = np.asarray(rec["effects"][k]), np.asarray(rec["effects_sd"][k])
        out = pd.DataFrame(
            {
                **{p: mean[:, j] for j, p in enumerate(params)},
                **{f"{p}.sd": sd[:, j] for j, p in enumerate(params)},
            },
            index=pd.Index(list(rec["labels"][k]), name=level),
        )
        out["n_individuals"] = np.bincount(np.asarray(rec["groups"][k]), minlength=len(out))
        return out
