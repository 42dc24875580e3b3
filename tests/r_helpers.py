"""Run the R reference scripts in tests/reference/ from the Python tests.

Tests that call these helpers skip, with the reason, when ``Rscript`` is not on PATH; any other
failure of the R side (a missing R package, an nlme error) fails the test with R's own message.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

__all__ = ["REFERENCE_DIR", "run_rscript", "nlme_logistic"]

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def run_rscript(script: str | Path, *args: str | Path, timeout: float = 600) -> None:
    """Run ``Rscript script args...``; skip the calling test when Rscript is absent.

    A relative ``script`` is looked up in tests/reference/. Raises RuntimeError with R's stderr
    when the script exits non-zero.
    """
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("Rscript not found on PATH: R reference fits need R (with nlme and jsonlite)")
    path = Path(script)
    if not path.is_absolute():
        path = REFERENCE_DIR / path
    completed = subprocess.run(
        [rscript, str(path), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"Rscript {path.name} exited with status {completed.returncode}:\n{completed.stderr.strip()}"
        )


def nlme_logistic(
    df: pd.DataFrame, *, start: tuple[float, float, float] | None = None, timeout: float = 600
) -> dict:
    """Fit ``df`` (columns id, t, y) with tests/reference/logistic_nlme.R and return its JSON.

    ``start`` gives natural-scale starting values (A, B, C); the script's default is
    (100, 5, 1.5). See the script's header for the keys of the returned dict.
    """
    with tempfile.TemporaryDirectory(prefix="pymixnn-nlme-") as tmp:
        data_path = Path(tmp) / "data.csv"
        out_path = Path(tmp) / "fit.json"
        df[["id", "t", "y"]].to_csv(data_path, index=False, float_format="%.17g")
        extra = [] if start is None else [repr(float(v)) for v in start]
        run_rscript("logistic_nlme.R", data_path, out_path, *extra, timeout=timeout)
        return json.loads(out_path.read_text())
