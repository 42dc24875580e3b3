"""Which covariate columns of a NONMEM-style table are time-varying: for ``pymixnn.fit(df, model)``
on NONMEM columns, where the user names covariates (the covariate model, a dynamic model's
``covariates``) but not their kind."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pymixnn.data.nonmem import match_columns

__all__ = ["covariate_roles"]


def covariate_roles(
    df: pd.DataFrame, id: str, columns: Sequence[str], reads: Sequence[str] = ()
) -> dict[str, list[str] | None]:
    """``Data.from_nonmem``'s ``covariates`` and ``time_varying`` for ``columns``: a column the
    model reads over time (``reads``: an ODE's rhs) or whose values change within an individual
    (missing values aside: NONMEM tables often leave them blank on dose records) is time-varying,
    the others individual-level. Columns absent from ``df`` stay individual-level (the reader's
    error names them)."""
    wanted = list(dict.fromkeys([*columns, *reads]))
    found = match_columns(df, {"id": id, **{c: c for c in wanted}}, required=())
    varying = []
    for c in wanted:
        if c not in found:
            continue
        if c in reads or ("id" in found and bool((df.groupby(found["id"])[found[c]].nunique() > 1).any())):
            varying.append(c)
    constant = [c for c in wanted if c not in varying]
    return {"covariates": constant or None, "time_varying": varying or None}
