"""Quick mode of the Python vignettes (issue 8): each vignette is rendered to HTML by
vignettes/render.py with PYMIXNN_QUICK=1 (smaller settings: a Jupyter kernel runs its cells).
The vignettes assert their key numbers themselves (a "Checks" cell: estimates against
saemix/lme4 references or a simulation truth, flow against Gaussian, ...), so a wrong number fails
the run; here the run must succeed and leave its key numbers, which are then checked for
completeness and a few headline values. The HTML is kept in build/vignettes-quick, where `make
docs` (run after pytest by `make test`) finds it for the documentation's gallery. `make
vignettes` renders the full versions."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VIGNETTES = Path(__file__).resolve().parents[1] / "vignettes"
PYTHON_VIGNETTES = sorted(p.name for p in VIGNETTES.glob("[0-9][0-9]_*.py"))
# the quick renders, for the documentation's gallery (make docs)
QUICK_HTML = VIGNETTES.parent / "build" / "vignettes-quick"


def run_quick(name: str, tmp_path: Path) -> dict:
    env = dict(os.environ, PYMIXNN_QUICK="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(VIGNETTES / "render.py"), "--quick", "--out", str(tmp_path), name],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    stem = Path(name).stem
    work = tmp_path / "work" / stem
    key = json.loads((work / "key_numbers.json").read_text())
    numbers = {k: v for k, v in key.items() if isinstance(v, (int, float))}
    assert numbers and all(math.isfinite(v) for v in numbers.values()), key
    assert list((work / "figures").glob("*.png")), f"{name} wrote no figure"
    QUICK_HTML.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / f"{stem}.html", QUICK_HTML / f"{stem}.html")
    return key


def test_six_python_vignettes_exist():
    assert PYTHON_VIGNETTES == [
        "01_theophylline.py",
        "02_random_effects.py",
        "03_discrete.py",
        "04_genomic.py",
        "06_dynamics.py",
        "07_amortized.py",
        "07_hybrid_dynamics.py",
        "08_neural_estimator.py",
        "08_spatial.py",
        "09_levels.py",
        "10_latent_classes.py",
        "11_diagnostics.py",
        "12_distributed.py",
    ]
    assert (VIGNETTES / "05_from_R.Rmd").exists()


# the vignettes in two files of about equal time (quick mode, one thread: 08_spatial 260 s, 07
# 157 s, 02 117 s, 10 97 s, 11 90 s, 06 88 s, 09 70 s, 04 55 s, 03 50 s, 08_neural 23 s, 01 16 s), so that `make
# test`'s two pytest workers each start with one (tests/conftest.py runs them first)
LATE = [
    "02_random_effects.py",
    "03_discrete.py",
    "07_amortized.py",
    "08_neural_estimator.py",
    "09_levels.py",
    "11_diagnostics.py",
]


@pytest.mark.parametrize("name", [n for n in PYTHON_VIGNETTES if n not in LATE])
def test_vignette_quick(name, tmp_path):
    check_key(name, run_quick(name, tmp_path))


def check_key(name: str, key: dict) -> None:
    """A few headline values of a vignette's key numbers (the vignette asserts its own)."""
    if name == "06_dynamics.py":
        # multiple doses against nlme, a regimen's accumulation, two endpoints recovered
        assert (
            abs(key["phenobarb_V_rel_diff_vs_nlme"]) < 0.05
            and key["regimen_trough_24h"] > key["regimen_trough_12h"]
        )
    if name == "07_amortized.py":
        # the encoder's fit is the per-individual one; new individuals near their own modes
        assert key["max_abs_diff_in_se"] < 0.25 and key["new_semi_share_within_0_1_sd"] >= 0.95
        assert abs(key["flow_loglik_diff"]) < 2 and key["flow_modes"] == 2
    if name == "07_hybrid_dynamics.py":
        # the learned link as good as the true one on held-out individuals; the hidden state found
        assert key["link_rmse_neural"] <= 1.10 * key["link_rmse_true"] and key["shape_sigma_ratio"] <= 0.8
        assert key["pendulum_hidden_corr"] >= 0.9 and key["pendulum_neural_hidden_corr"] >= 0.9
        assert key["pendulum_force_center"] == 0.0 and key["pendulum_force_scale"] > 0.1  # a flat input
        assert key["amplitude_sigma_ratio"] <= 0.6  # random weights carry individual amplitudes
    if name == "08_neural_estimator.py":
        # the truth within 3 posterior SDs; one data set in one forward pass
        assert key["max_abs_z_fixed"] < 3 and key["estimate_ms"] < 100
    if name == "08_spatial.py":
        # the AR1 x AR1 field on the greenhouse grid: supported, and better on held-out plants
        assert key["aic_gain"] > 10 and key["cv_rmse_field"] < key["cv_rmse_no_field"]
        # the graph-network estimator of the plants' field: as accurate as the likelihood, faster
        assert key["gnn_rmse_ratio"]["rmse_ratio.range"] <= 1.3 and key["gnn_rmse_ratio"]["speedup"] >= 100
        # the Matérn field by nearest neighbours on simulated sites: range and sd near the truth
        assert abs(key["matern_range"] / 0.05 - 1) < 0.15 and abs(key["matern_sd"] / 0.3 - 1) < 0.15
        # Wheat2 without individual random effects: nlme's gls (issue 22 point 1)
        assert max(abs(v) for v in key["wheat2_rel_diff_vs_nlme"].values()) < 0.05
        assert max(abs(v) for v in key["wheat2_loglik_minus_nlme"].values()) < 1
    if name == "10_latent_classes.py":
        # K = 3 by ICL, lcmm's hlme reproduced, senescence strategies of new plants
        assert key["growth_chosen_k"] == 3 and key["growth_ari"] >= 0.9
        assert abs(key["hlme_loglik_minus_lcmm"]) < 0.01 and key["senescence_new_correct"] >= 0.9
    if name == "09_levels.py":
        # trees in plots against nlme, crossed levels against lme4, the maize genotype level
        assert key["nested_max_rel_omega"] < 0.15 and abs(key["crossed_loglik_minus_lmer"]) < 0.01
        assert key["maize_aic_gain"] > 100
    if name == "11_diagnostics.py":
        # NPDE and CWRES standardised on theophylline; the pcVPC flags the wrong dose-response only
        assert key["npde_p_mean"] > 0.05 and key["npde_p_variance"] > 0.05
        assert key["pcvpc_outside_correct"] <= 5 and key["pcvpc_outside_wrong"] >= 8
    if name == "12_distributed.py":
        # two processes, each reading its own shard of the file: the one-process fit
        assert key["max_rel_diff_csv_range"] < 1e-8 and key["max_rel_diff_whole"] < 1e-8
    if name == "01_theophylline.py":
        # the headline of the vignette: pymixnn and saemix 3.4 agree within half an SE
        assert key["max_abs_z_vs_saemix"] < 0.5 and abs(key["loglik_minus_saemix"]) < 0.5
