"""Test session settings: one torch thread per process (``make test`` runs two pytest workers on
the machine's two cores; fits already default to one thread, this covers results methods too)."""

import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Run the vignettes' quick mode first: `make test` gives each pytest-xdist worker whole files
    in collection order (--no-loadscope-reorder), and these are long; started last they would
    lengthen the run's tail. Their two files (each about 7 minutes) start one per worker."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_vignettes") else 1)
