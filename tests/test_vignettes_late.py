"""Quick mode of the Python vignettes, second half (tests/test_vignettes.py: the first half,
the runner and the checks of their key numbers): a file of its own, so that the two pytest
workers of `make test` run the two halves side by side."""

import pytest
from test_vignettes import LATE, check_key, run_quick


@pytest.mark.parametrize("name", LATE)
def test_vignette_quick_late(name, tmp_path):
    check_key(name, run_quick(name, tmp_path))
