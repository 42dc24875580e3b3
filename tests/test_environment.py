"""The supported NumPy / pandas range (issue 24): pymixnn itself takes NumPy 2 and pandas 3 (and
still NumPy 1.26 / pandas 2.3); only the R package's Python (.venv-r, install_pymixnn()) keeps
numpy<2 and pandas<3, for Debian's reticulate 1.28. `make test` sets PYMIXNN_EXPECT_NUMPY2=1, so
its run proves the suite ran with NumPy 2 and pandas 3."""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def requirement(name: str) -> str:
    # the quoted requirement strings of [project] dependencies (tomllib is Python 3.11+ only)
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    deps = re.findall(r'^\s*"([^"]+)"', block, re.M)
    found = [d for d in deps if re.match(rf"{name}\b", d)]
    assert len(found) == 1, deps
    return found[0]


@pytest.mark.parametrize("name, major", [("numpy", 2), ("pandas", 3)])
def test_pyproject_does_not_cap_numpy_pandas(name, major):
    req = requirement(name)
    caps = re.findall(r"(<=?|~=|==)\s*([0-9.]+)", req)
    # no upper bound at or below the new major release (a cap above it would be a later decision)
    assert all(int(v.split(".")[0]) > major for _, v in caps), req
    assert re.search(r">=\s*[0-9]", req), f"{req}: keep a lower bound"


def test_torch_stays_pinned():
    assert requirement("torch") == "torch==2.13.0"


def test_running_versions():
    versions = {"numpy": np.__version__, "pandas": pd.__version__}
    print(versions)  # shown with -rP
    if os.environ.get("PYMIXNN_EXPECT_NUMPY2") == "1":  # set by `make test-py`
        assert int(np.__version__.split(".")[0]) >= 2, versions
        assert int(pd.__version__.split(".")[0]) >= 3, versions


def test_r_package_pins_its_own_environment():
    """install_pymixnn() and the Makefile's .venv-r keep numpy<2 / pandas<3 (reticulate 1.28)."""
    python_r = (ROOT / "rpkg" / "R" / "python.R").read_text()
    assert '"numpy>=1.24,<2"' in python_r and '"pandas>=2.0,<3"' in python_r
    makefile = (ROOT / "Makefile").read_text()
    assert 'R_PIN_REQS := "numpy>=1.24,<2" "pandas>=2.0,<3"' in makefile
    assert "RETICULATE_PYTHON=$(abspath $(PY_R))" in makefile
