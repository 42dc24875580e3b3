"""Test session settings: one torch thread per process (``make test`` runs two pytest workers on
the machine's two cores; fits already default to one thread, this covers results methods too)."""

import os

import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Run the vignettes' quick mode first: `make test` gives each pytest-xdist worker whole files
    in collection order (--no-loadscope-reorder), and these are long; started last they would
    lengthen the run's tail. Their two files (each about 7 minutes) start one per worker."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_vignettes") else 1)


# R's library directories (/usr/lib/x86_64-linux-gnu among them), which rpy2 prepends to
# LD_LIBRARY_PATH when it starts R in a test's process: a Python that a later test starts (gloo
# workers, torchrun, a vignette's kernel) then loads Debian's libpython3.11 instead of this
# interpreter's, and `import ssl` fails there ("undefined symbol: _PyModule_Add"; pyarrow's
# Parquet reader imports it). Each test starts and ends with the session's own value (R, already
# loaded in this process, keeps its libraries).
_LIBRARY_PATH = os.environ.get("LD_LIBRARY_PATH")


def _restore_library_path() -> None:
    if _LIBRARY_PATH is None:
        os.environ.pop("LD_LIBRARY_PATH", None)
    else:
        os.environ["LD_LIBRARY_PATH"] = _LIBRARY_PATH


@pytest.fixture(autouse=True)
def _session_library_path():
    _restore_library_path()
    yield
    _restore_library_path()
