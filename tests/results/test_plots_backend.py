"""Plots draw on figures of their own: the user's matplotlib backend and pyplot's figures are
left as they were (issue 17: no global side effects)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

import pymixnn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def pdf_backend():
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    plt.close("all")
    matplotlib.use("pdf")
    yield
    plt.close("all")
    matplotlib.use(before)


def test_plots_leave_backend_and_figures_alone(tmp_path, pdf_backend):
    import matplotlib.pyplot as plt

    res = pymixnn.Results.load(FIXTURES / "saved_v1_theo.json")
    mine = plt.figure()  # a figure of the user's, current
    backend, figs = matplotlib.get_backend(), plt.get_fignums()
    written = [
        res.plot_individuals(tmp_path / "ind.png", max_panels=4),
        res.plot_vpc(tmp_path / "vpc.png", n_sim=5),
        res.plot_random_effects(tmp_path / "re.png", n_samples=2000),
    ]
    assert matplotlib.get_backend() == backend == "pdf"
    assert plt.get_fignums() == figs and plt.gcf() is mine
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_backend_switch_in_library_code():
    root = Path(pymixnn.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "matplotlib.use(" in p.read_text() or "import matplotlib.pyplot" in p.read_text()
    ]
    assert not offenders, offenders
