"""Genomic markers (genotypes x markers) as input of a genomic-covariate model.

Three steps:

* :func:`read_markers` reads a marker matrix (a DataFrame, an ``(array, ids[, names])`` tuple, a CSV
  file or a PLINK ``.bed`` file) into a DataFrame indexed by genotype id;
* :func:`read_map` reads a marker map (marker, chromosome, position);
* :func:`prepare_markers` checks the matrix against the genotypes the phenotype data use, drops
  markers that carry no information (missing for every genotype, or monomorphic), mean-imputes the
  remaining missing cells and standardizes every marker to mean 0 and sd 1. It returns a
  :class:`MarkerMatrix`, which also codes new genotypes the same way (:meth:`MarkerMatrix.standardize`).

Genotype ids are compared as strings: ``1``, ``"1"`` and ``1.0`` (an integral float, as pandas reads
an id column that has missing values) are the same genotype.

Reading lives in :mod:`pymixnn.data.markers_io`; :func:`read_markers` and :func:`read_map` are
re-exported here.

>>> import pandas as pd
>>> raw = pd.DataFrame({"m1": [0, 1, 2, None], "m2": [1, 1, 1, 1], "m3": [0, 2, 0, 2]},
...                    index=["g1", "g2", "g3", "g4"])
>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     mm = prepare_markers(raw, ["g1", "g2", "g3"])
>>> mm.names, mm.genotypes
(['m1', 'm3'], ['g1', 'g2', 'g3', 'g4'])
>>> mm.report["n_monomorphic"], mm.report["n_missing_imputed"], mm.report["n_genotypes_unused"]
(1, 1, 1)
>>> mm.rows(["g3", "g1"]).tolist()
[2, 0]
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pymixnn.data.markers_io import first_ids, id_str, read_map, read_markers
from pymixnn.validation.errors import InputError, show_value

__all__ = ["MarkerMatrix", "prepare_markers", "individual_markers", "read_map", "read_markers"]

# Cells (rows x columns) processed at a time: bounds the float64 temporaries to ~32 MB whatever the
# size of the marker matrix.
_CHUNK_CELLS = 1 << 22


# --------------------------------------------------------------------------------------------------
# numeric checks and chunked passes
# --------------------------------------------------------------------------------------------------


def _numeric_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every column numeric (booleans as 0/1); a non-numeric cell raises ValueError.

    Numeric columns are left as they are (no copy); only object/categorical/string columns are
    converted, on a shallow copy.
    """
    converted = {}
    n_bad_cells, bad_cols, first_bad = 0, 0, None
    for j, dt in enumerate(df.dtypes):
        if dt.kind == "c":
            raise ValueError(
                f"marker column {show_value(df.columns[j])} is complex ({dt}); markers must be real numbers"
            )
        if dt.kind in "Mm":
            raise ValueError(
                f"marker column {show_value(df.columns[j])} holds dates or durations ({dt}), not marker codes"
            )
        if pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt):
            continue
        col = df.iloc[:, j].astype(object)
        num = pd.to_numeric(col, errors="coerce")
        bad = np.flatnonzero(pd.isna(num).to_numpy() & ~pd.isna(col).to_numpy())
        if bad.size:
            n_bad_cells += bad.size
            bad_cols += 1
            if first_bad is None:
                first_bad = (df.columns[j], df.index[bad[0]], col.iloc[bad[0]])
            continue
        converted[j] = num.astype(np.float64)
    if first_bad is not None:
        col, row, val = first_bad
        raise ValueError(
            f"non-numeric marker value: column {col!r}, genotype {row!r} has value {val!r} "
            f"({n_bad_cells} non-numeric cell(s) in {bad_cols} marker column(s)); "
            "markers must be numeric codes such as allele counts 0/1/2, with missing values "
            "as NaN"
        )
    if not converted:
        return df
    out = df.copy(deep=False)
    for j, s in converted.items():
        out.isetitem(j, s.to_numpy())
    return out


def _chunks(df: pd.DataFrame, cols: np.ndarray | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """Column blocks of ``df`` (all columns, or the positions ``cols``) as float64 arrays, NaN missing."""
    n_cols = df.shape[1] if cols is None else len(cols)
    step = max(1, _CHUNK_CELLS // max(1, df.shape[0]))
    for start in range(0, n_cols, step):
        sl = slice(start, min(start + step, n_cols))
        block = df.iloc[:, sl] if cols is None else df.iloc[:, cols[sl]]
        yield sl, block.to_numpy(dtype=np.float64, na_value=np.nan)


def _raise_infinite(block: np.ndarray, df: pd.DataFrame, col_positions: np.ndarray) -> None:
    r, c = np.argwhere(np.isinf(block))[0]
    raise ValueError(
        f"infinite marker value: column {show_value(df.columns[col_positions[c]])}, genotype "
        f"{show_value(df.index[r])} has value {show_value(block[r, c])}; markers must be finite "
        "(NaN for missing)"
    )


# --------------------------------------------------------------------------------------------------
# MarkerMatrix
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MarkerMatrix:
    """Standardized marker matrix of a genomic-covariate model, built by :func:`prepare_markers`.

    ``values[i, j] = (raw[i, j] - center[j]) / scale[j]``, with missing raw cells imputed by
    ``center[j]`` (so they are 0). All rows of the input matrix are kept, including genotypes no
    phenotyped individual uses (they can be predicted).
    """

    genotypes: list  # genotype ids in row order (str)
    names: list[str]  # markers kept, in input order
    values: np.ndarray  # float32 (n_genotypes, n_markers), standardized
    center: np.ndarray  # float64 per-marker mean of the observed raw values
    scale: np.ndarray  # float64 per-marker sd (ddof=0) of the imputed raw values
    map: pd.DataFrame | None  # index = names, columns chr, pos; None without a map
    report: dict  # counts, see prepare_markers

    @property
    def n_genotypes(self) -> int:
        return len(self.genotypes)

    @property
    def n_markers(self) -> int:
        return len(self.names)

    def rows(self, genotypes) -> np.ndarray:
        """int64 row of each genotype id (ids compared as str); an unknown id raises ValueError."""
        if isinstance(genotypes, (str, bytes)):
            raise TypeError("genotypes must be a list of ids, e.g. mm.rows([" + repr(genotypes) + "])")
        ids = [id_str(g) for g in genotypes]
        pos = pd.Index(self.genotypes, dtype=object).get_indexer(ids)
        missing = list(dict.fromkeys(g for g, p in zip(ids, pos) if p < 0))
        if missing:
            raise ValueError(
                f"{len(missing)} genotype(s) have no row in the marker matrix: {first_ids(missing)}"
            )
        return pos.astype(np.int64)

    def standardize(self, markers) -> np.ndarray:
        """New genotypes' raw markers in the fitted standardized coding (float32, genotypes x kept markers).

        ``markers`` is a DataFrame like :func:`read_markers` returns (genotypes x markers; anything
        ``read_markers`` accepts works). Columns are matched by marker name (extra columns are
        ignored); missing cells are imputed with the training mean, i.e. coded 0. Non-numeric or
        infinite values raise ValueError, as in :func:`prepare_markers`.
        """
        df = read_markers(markers)
        pos = pd.Index(df.columns, dtype=object).get_indexer(self.names)
        absent = [m for m, p in zip(self.names, pos) if p < 0]
        if absent:
            raise ValueError(
                f"{len(absent)} of the {self.n_markers} fitted markers are missing from the "
                f"new marker matrix: {first_ids(absent)}"
            )
        df = _numeric_frame(df.iloc[:, pos])
        out = np.empty((df.shape[0], self.n_markers), dtype=np.float32)
        cols = np.arange(self.n_markers)
        for sl, block in _chunks(df):
            if np.isinf(block).any():
                _raise_infinite(block, df, cols[sl])
            dev = block - self.center[sl]  # never in place: ``block`` may be a view of the caller's data
            dev /= self.scale[sl]
            np.nan_to_num(dev, copy=False, nan=0.0)
            out[:, sl] = dev
        return out

    def describe(self) -> str:
        """One-paragraph summary of the preparation report."""
        r = self.report
        dropped = r["n_markers"] != r["n_markers_input"]
        parts = [
            f"{r['n_markers']} markers on {r['n_genotypes']} genotypes"
            + (f" (of {r['n_markers_input']} markers in the input)" if dropped else "")
        ]
        if r["n_monomorphic"]:
            parts.append(f"{r['n_monomorphic']} monomorphic dropped")
        if r["n_all_missing"]:
            parts.append(f"{r['n_all_missing']} missing for every genotype dropped")
        cells = r["n_genotypes"] * r["n_markers"]
        if r["n_missing_imputed"]:
            pct = 100 * r["n_missing_imputed"] / cells
            parts.append(f"{r['n_missing_imputed']} missing values ({pct:.1f}%) mean-imputed")
        else:
            parts.append("no missing values")
        if r["n_genotypes_unused"]:
            parts.append(
                f"{r['n_genotypes_unused']} genotypes not used by the phenotype data (kept for prediction)"
            )
        text = "; ".join(parts) + "."
        if self.map is not None:
            text += f" Map: {self.map['chr'].nunique()} chromosomes."
        return text


def prepare_markers(
    markers, genotypes_needed, *, map=None, id: str | None = None, genotype_column: str = "genotype"
) -> MarkerMatrix:
    """Check, clean and standardize a marker matrix for the genotypes of the phenotype data.

    ``markers`` is anything :func:`read_markers` accepts (``id`` is passed on); ``genotypes_needed``
    the genotype ids of the phenotype data (iterable, repeats allowed, compared as str);
    ``genotype_column`` only names that column in error messages. ``map`` is anything
    :func:`read_map` accepts; without it, a map attached by :func:`read_markers` (PLINK) is used.

    Checks, in this order, all before the standardization pass:

    1. every needed genotype has a row in the matrix (ValueError with the count and first ids);
    2. every value is numeric (booleans count as 0/1) and finite (ValueError naming the marker column,
       the genotype and the value);
    3. markers missing for every genotype are dropped (UserWarning with the count and first names);
    4. a genotype missing for every marker raises ValueError naming it;
    5. the remaining missing cells of the kept markers are imputed with the marker mean (UserWarning
       with the count and percentage);
    6. monomorphic markers (a single observed value, sd 0 after imputation) are dropped (UserWarning);
       ValueError if no marker remains;
    7. every kept marker is in the map (ValueError otherwise); the map is reordered to the kept markers.

    All rows are kept, also unused genotypes. Memory: besides the input frame and the float32 result,
    only column blocks of about 32 MB are materialized.

    ``report`` counts: ``n_genotypes``, ``n_markers_input``, ``n_markers``, ``n_missing_imputed``
    (cells of kept markers), ``n_monomorphic``, ``n_all_missing``, ``n_genotypes_unused``.
    """
    if isinstance(genotypes_needed, (str, bytes)):
        raise TypeError("genotypes_needed must be a list (or Series) of genotype ids, not a single string")
    df = read_markers(markers, id=id)
    n_rows, n_input = df.shape
    genotype_index = pd.Index(df.index, dtype=object)

    # 1. needed genotypes present
    needed = list(dict.fromkeys(id_str(g) for g in genotypes_needed))
    present = genotype_index.get_indexer(needed) >= 0
    if not present.all():
        absent = [g for g, ok in zip(needed, present) if not ok]
        raise ValueError(
            f"{len(absent)} of {len(needed)} genotypes in column {genotype_column!r} have no "
            f"row in the marker matrix: {first_ids(absent)}"
        )
    if n_input == 0:
        raise ValueError("the marker matrix has no marker column")
    if n_rows == 0:
        raise ValueError("the marker matrix has no genotype row")

    # 2. numeric and finite; pass 1 gathers the per-marker statistics
    df = _numeric_frame(df)
    n_obs = np.empty(n_input, dtype=np.int64)
    total = np.empty(n_input, dtype=np.float64)
    vmin = np.empty(n_input, dtype=np.float64)
    vmax = np.empty(n_input, dtype=np.float64)
    row_obs = np.zeros(n_rows, dtype=np.int64)
    all_cols = np.arange(n_input)
    for sl, block in _chunks(df):
        if np.isinf(block).any():
            _raise_infinite(block, df, all_cols[sl])
        obs = ~np.isnan(block)
        n_obs[sl] = obs.sum(axis=0)
        row_obs += obs.sum(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
            total[sl] = np.nansum(block, axis=0)
            vmin[sl] = np.nanmin(block, axis=0)
            vmax[sl] = np.nanmax(block, axis=0)

    # 3. markers missing for every genotype
    all_missing = n_obs == 0
    n_all_missing = int(all_missing.sum())
    if n_all_missing == n_input:
        raise ValueError(f"all {n_input} markers are missing for every genotype")
    if n_all_missing:
        warnings.warn(
            f"{n_all_missing} marker(s) missing for every genotype dropped: "
            f"{first_ids(df.columns[all_missing])}",
            UserWarning,
            stacklevel=2,
        )

    # 4. genotypes missing for every marker
    empty_rows = np.flatnonzero(row_obs == 0)
    if empty_rows.size:
        raise ValueError(
            f"genotype {show_value(df.index[empty_rows[0]])} is missing for every marker "
            f"({empty_rows.size} such genotype(s): {first_ids(df.index[empty_rows])}); "
            "remove it from the marker matrix"
        )

    # 5. imputation (counted over the markers finally kept) and 6. monomorphic markers
    monomorphic = ~all_missing & (vmin == vmax)
    n_monomorphic = int(monomorphic.sum())
    keep = ~all_missing & ~monomorphic
    n_missing = int((n_rows - n_obs[keep]).sum())
    if n_missing:
        pct = 100.0 * n_missing / (n_rows * int(keep.sum())) if keep.any() else 0.0
        warnings.warn(
            f"{n_missing} missing marker value(s) ({pct:.1f}% of the kept markers' cells) imputed "
            "with the marker mean",
            UserWarning,
            stacklevel=2,
        )
    if n_monomorphic:
        warnings.warn(
            f"{n_monomorphic} monomorphic marker(s) (a single observed value) dropped: "
            f"{first_ids(df.columns[monomorphic])}",
            UserWarning,
            stacklevel=2,
        )
    if not keep.any():
        raise ValueError(
            f"no marker remains: of {n_input} markers, {n_all_missing} are missing for every "
            f"genotype and {n_monomorphic} are monomorphic"
        )
    kept_cols = np.flatnonzero(keep)
    names = [str(df.columns[j]) for j in kept_cols]

    # 7. map
    if map is None:
        map = df.attrs.get("map")
    marker_map = None
    if map is not None:
        marker_map = read_map(map)
        absent = [m for m, p in zip(names, marker_map.index.get_indexer(names)) if p < 0]
        if absent:
            raise ValueError(
                f"{len(absent)} of the {len(names)} kept markers are not in the marker map: "
                f"{first_ids(absent)}"
            )
        marker_map = marker_map.loc[names]

    # pass 2: standardize the kept markers into the float32 result
    center = total[kept_cols] / n_obs[kept_cols]
    scale = np.empty(len(kept_cols), dtype=np.float64)
    values = np.empty((n_rows, len(kept_cols)), dtype=np.float32)
    for sl, block in _chunks(df, kept_cols):
        dev = block - center[sl]  # never in place: ``block`` may be a view of the caller's data
        np.nan_to_num(dev, copy=False, nan=0.0)  # imputed cells: deviation 0
        sd = np.sqrt(np.einsum("ij,ij->j", dev, dev) / n_rows)
        scale[sl] = sd
        dev /= sd
        values[:, sl] = dev

    needed_set = set(needed)
    report = {
        "n_genotypes": int(n_rows),
        "n_markers_input": int(n_input),
        "n_markers": len(names),
        "n_missing_imputed": n_missing,
        "n_monomorphic": n_monomorphic,
        "n_all_missing": n_all_missing,
        "n_genotypes_unused": int(sum(g not in needed_set for g in df.index)),
    }
    return MarkerMatrix(
        genotypes=list(df.index),
        names=names,
        values=values,
        center=center,
        scale=scale,
        map=marker_map,
        report=report,
    )


def individual_markers(genomic, genotype: str, data) -> dict:
    """The marker matrix (validated, standardized), each individual's cell (genotype x level of
    the interaction column) and the levels: numpy and pandas only."""
    ind_genotype = data.covariates[genotype].to_numpy()
    markers = prepare_markers(
        genomic.markers, pd.unique(ind_genotype), map=genomic.map, id=genomic.id, genotype_column=genotype
    )
    rows = markers.rows(ind_genotype)
    if genomic.interaction:
        values = data.covariates[genomic.interaction]
        levels = sorted(pd.unique(values), key=str)
        if len(levels) < 2:
            raise InputError(
                f"Genomic(interaction={genomic.interaction!r}): the column has a single "
                f"level {levels!r}; a scenario-by-marker interaction needs two or more"
            )
        level = np.array([levels.index(v) for v in values], dtype=np.int64)
    else:
        levels, level = [None], np.zeros(len(rows), dtype=np.int64)
    cells, individual_cell = np.unique(np.stack([rows, level], axis=1), axis=0, return_inverse=True)
    return dict(
        matrix=markers,
        genotype=genotype,
        levels=list(levels),
        cells=cells,
        individual_cell=np.asarray(individual_cell).ravel(),
        n_genotypes=len(np.unique(rows)),
    )
