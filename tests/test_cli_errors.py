"""The command line's edges (issue 16, section 5): every input error is one line on stderr and exit
status 2, raised before any fitting; Ctrl-C is one line and 130; result files are written atomically;
hints name the command's flags, and rows of a data file are its line numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import pymixnn
from pymixnn import cli
from pymixnn.cli import main

THEO = [
    "--model",
    "onecpt_oral",
    "--id",
    "Id",
    "--x",
    "Dose,Time",
    "--y",
    "Concentration",
    "--seed",
    "0",
    "--no-progress",
    "--max-steps",
    "100",
]


@pytest.fixture
def theo_csv(tmp_path):
    path = tmp_path / "theo.csv"
    pymixnn.datasets.load("theo").to_csv(path, index=False)
    return path


@pytest.fixture
def no_fit(monkeypatch):
    """pymixnn.fit replaced by a call that fails the test: the error must come before fitting."""

    def fit(*args, **kwargs):
        raise AssertionError("pymixnn.fit was called")

    monkeypatch.setattr(pymixnn, "fit", fit)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err.rstrip("\n")


def with_lines(path, edit) -> None:
    """Rewrite the text file ``path`` after ``edit(list of its lines)`` (line k is lines[k - 1])."""
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


# ---- output paths and input files: checked before any fit ----------------------------------
@pytest.mark.parametrize(
    "flag,target,message",
    [
        ("--json", "missing/sub/fit.json", "--json: directory '{d}/missing/sub' does not exist"),
        ("--plot", "missing/fit.png", "--plot: directory '{d}/missing' does not exist"),
        ("--vpc", "missing/vpc.png", "--vpc: directory '{d}/missing' does not exist"),
        ("--marker-effects", "missing/eff.csv", "--marker-effects: directory '{d}/missing' does not exist"),
        ("--manhattan", "missing/plots", "--manhattan: directory '{d}/missing' does not exist"),
        ("--json", "", "--json: '{d}' is a directory; give a file name"),
        ("--json", "theo.csv/fit.json", "--json: '{d}/theo.csv' is not a directory"),
        ("--manhattan", "theo.csv", "--manhattan: '{d}/theo.csv' is a file, not a directory"),
        ("--plot", "fit.xyz", "--plot: cannot write a '.xyz' image; use one of"),
    ],
)
def test_output_paths_are_checked_before_fitting(tmp_path, theo_csv, no_fit, capsys, flag, target, message):
    started = time.perf_counter()
    code = main(["fit", str(theo_csv), *THEO, flag, str(tmp_path / target)])
    assert code == 2
    assert one_line_error(capsys).startswith("pymixnn: error: " + message.format(d=tmp_path))
    assert time.perf_counter() - started < 10  # no fit (see no_fit): the checks read the CSV at most


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_directory(tmp_path, theo_csv, no_fit, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["fit", str(theo_csv), *THEO, "--json", str(locked / "fit.json")]) == 2
    assert one_line_error(capsys) == f"pymixnn: error: --json: directory '{locked}' is not writable"


def test_demo_checks_its_outputs_too(tmp_path, no_fit, capsys):
    assert main(["demo", "--json", str(tmp_path / "no" / "demo.json")]) == 2
    assert one_line_error(capsys) == f"pymixnn: error: --json: directory '{tmp_path / 'no'}' does not exist"


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--markers", "{d}/nope.csv", "--genotype", "Id", "--genomic-params", "V"],
            "--markers file '{d}/nope.csv' not found",
        ),
        (
            ["--markers", "{d}/m.bed", "--genotype", "Id", "--genomic-params", "V"],
            "--markers: PLINK file '{d}/m.bim' not found",
        ),
        (
            [
                "--markers",
                "{d}/theo.csv",
                "--map",
                "{d}/map.csv",
                "--genotype",
                "Id",
                "--genomic-params",
                "V",
            ],
            "--map file '{d}/map.csv' not found",
        ),
    ],
)
def test_missing_input_files(tmp_path, theo_csv, no_fit, capsys, args, message):
    (tmp_path / "m.bed").write_bytes(b"")
    code = main(["fit", str(theo_csv), *THEO, *[a.format(d=tmp_path) for a in args]])
    assert code == 2
    assert one_line_error(capsys) == "pymixnn: error: " + message.format(d=tmp_path)


def test_missing_data_file_and_directory(tmp_path, no_fit, capsys):
    assert main(["fit", str(tmp_path / "nope.csv"), *THEO]) == 2
    assert one_line_error(capsys) == f"pymixnn: error: data file '{tmp_path / 'nope.csv'}' not found"
    assert main(["fit", str(tmp_path), *THEO]) == 2
    assert one_line_error(capsys) == f"pymixnn: error: data file '{tmp_path}' is not a file"


# ---- reading the CSV -----------------------------------------------------------------------
def test_latin1_csv(tmp_path, theo_csv, monkeypatch, capsys):
    text = theo_csv.read_text().replace("Weight", "Poids_\u00e9", 1)
    path = tmp_path / "latin.csv"
    path.write_bytes(text.encode("latin-1"))
    seen = {}

    def fit(df, model, **kwargs):  # stands for the fit: the frame as the CLI read it
        seen["columns"] = list(df.columns)
        raise ValueError("stop here")

    monkeypatch.setattr(pymixnn, "fit", fit)
    assert main(["fit", str(path), *THEO]) == 2
    at = text.index("\u00e9")  # one byte per character in latin-1
    assert one_line_error(capsys) == (
        f"pymixnn: error: data file '{path}' is not utf-8: byte 0xe9 at "
        f"position {at} (line 1); give its encoding, e.g. --encoding latin-1"
    )
    assert main(["fit", str(path), *THEO, "--encoding", "latin-1"]) == 2
    assert one_line_error(capsys) == "pymixnn: error: stop here"
    assert seen["columns"] == ["Id", "Dose", "Time", "Concentration", "Poids_\u00e9", "Sex"]
    assert main(["fit", str(path), *THEO, "--encoding", "klingon"]) == 2
    assert one_line_error(capsys) == "pymixnn: error: --encoding 'klingon': unknown encoding"


def test_empty_and_malformed_csv(tmp_path, no_fit, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["fit", str(empty), *THEO]) == 2
    assert one_line_error(capsys) == f"pymixnn: error: data file '{empty}' is empty"
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("Id,Time\n1,2\n1,3,4,5\n")
    assert main(["fit", str(ragged), *THEO]) == 2
    assert one_line_error(capsys) == (
        f"pymixnn: error: cannot read data file '{ragged}': Error tokenizing "
        "data. C error: Expected 2 fields in line 3, saw 4"
    )


def test_duplicated_column_names(tmp_path, theo_csv, no_fit, capsys):
    with_lines(theo_csv, lambda lines: lines.__setitem__(0, lines[0].replace("Weight", "Time")))
    assert main(["fit", str(theo_csv), *THEO]) == 2
    assert one_line_error(capsys) == (
        f"pymixnn: error: data file '{theo_csv}': column 'Time' appears twice "
        "in the header (columns 3 and 5); rename one"
    )


def test_rows_are_reported_as_file_lines(theo_csv, capsys):
    # line 4 of the file (the header is line 1) is the third observation; its y becomes text
    with_lines(theo_csv, lambda lines: lines.__setitem__(3, lines[3].replace(",10.5,", ",abc,")))
    assert main(["fit", str(theo_csv), *THEO]) == 2
    assert one_line_error(capsys) == (
        "pymixnn: error: column 'Concentration' must be numeric: line 4 has value 'abc'"
    )
    # a blank line (skipped, as pandas does) moves it to line 5, and the message follows
    with_lines(theo_csv, lambda lines: lines.insert(2, ""))
    assert main(["fit", str(theo_csv), *THEO]) == 2
    assert one_line_error(capsys) == (
        "pymixnn: error: column 'Concentration' must be numeric: line 5 has value 'abc'"
    )


def test_missing_y_hint_names_the_flag(theo_csv, capsys):
    def blank_y(lines):
        fields = lines[5].split(",")
        fields[3] = ""
        lines[5] = ",".join(fields)

    with_lines(theo_csv, blank_y)
    assert main(["fit", str(theo_csv), *THEO]) == 2
    assert one_line_error(capsys) == (
        "pymixnn: error: column 'Concentration' has 1 missing values (first at "
        "line 6); pass --dropna to drop those rows"
    )


# ---- names checked against the model -------------------------------------------------------
@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--init", "Ka=1"],
            "--init Ka: model 'onecpt_oral' has no parameter 'Ka' (did you mean 'ka'?); "
            "its parameters are ['ka', 'V', 'CL']",
        ),
        (
            ["--covariate", "Cl=Weight"],
            "--covariate Cl: model 'onecpt_oral' has no parameter 'Cl' "
            "(did you mean 'CL'?); its parameters are ['ka', 'V', 'CL']",
        ),
        (
            ["--random", "ka,Vol"],
            "--random Vol: model 'onecpt_oral' has no parameter 'Vol' (did you mean 'V'?); "
            "its parameters are ['ka', 'V', 'CL']",
        ),
        (["--init", "ka=fast"], "--init ka='fast': the value must be a number"),
        (["--levels", "a,b"], "--levels applies to --observation ordinal, not 'gaussian'"),
        (
            ["--time", "Hour"],
            "--time 'Hour' is not a column of '{csv}'; its columns are "
            "['Id', 'Dose', 'Time', 'Concentration', 'Weight', 'Sex']",
        ),
    ],
)
def test_names_are_checked_before_fitting(theo_csv, no_fit, capsys, args, message):
    assert main(["fit", str(theo_csv), *THEO, *args]) == 2
    assert one_line_error(capsys) == "pymixnn: error: " + message.format(csv=theo_csv)


def test_new_flags_reach_fit(theo_csv, monkeypatch, capsys):
    seen = {}

    def fit(df, model, **kwargs):
        seen.update(kwargs, model=model, index=list(df.index[:3]))
        raise ValueError("stop here")

    monkeypatch.setattr(pymixnn, "fit", fit)
    assert (
        main(
            [
                "fit",
                str(theo_csv),
                *THEO,
                "--random",
                "ka, CL",
                "--lr",
                "0.05",
                "--observation",
                "ordinal",
                "--levels",
                "1,2,3",
            ]
        )
        == 2
    )
    assert one_line_error(capsys) == "pymixnn: error: stop here"
    assert seen["model"] == "onecpt_oral" and seen["random"] == ["ka", "CL"]
    assert seen["max_steps"] == 100 and seen["lr"] == 0.05
    assert seen["observation"].levels == (1, 2, 3)
    assert seen["index"] == [2, 3, 4]  # the data rows' lines in the file
    assert main(["fit", str(theo_csv), *THEO, "--covariate", "V"]) == 2
    assert one_line_error(capsys) == "pymixnn: error: --covariate must be PARAM=COL, got 'V'"
    # amortized local posteriors
    assert main(["fit", str(theo_csv), *THEO, "--local", "amortized", "--refine-steps", "2"]) == 2
    assert one_line_error(capsys) == "pymixnn: error: stop here"
    assert seen["local"] == "amortized" and seen["refine_steps"] == 2
    assert main(["fit", str(theo_csv), *THEO, "--local", "amortized", "--refine-steps", "two"]) == 2
    assert one_line_error(capsys) == "pymixnn: error: --refine-steps 'two': give a non-negative integer"
    # the gear: passed on when chosen, left to fit()'s "auto" otherwise
    assert "gear" not in seen
    assert main(["fit", str(theo_csv), *THEO, "--gear", "svi"]) == 2
    assert one_line_error(capsys) == "pymixnn: error: stop here"
    assert seen["gear"] == "svi"


def test_unknown_model_lists_the_named_ones(theo_csv, no_fit, capsys):
    args = ["fit", str(theo_csv), "--model", "onecpt", "--id", "Id", "--x", "Time", "--y", "Concentration"]
    assert main(args) == 2
    assert one_line_error(capsys) == (
        "pymixnn: error: --model 'onecpt' is not a named model (did you mean 'onecpt_oral'?); use one of "
        f"{sorted(pymixnn.NAMED_MODELS)}"
    )


def test_usage_errors_are_one_line(theo_csv, no_fit, capsys):
    assert main(["fit", str(theo_csv), "--model", "logistic", "--id", "Id", "--x", "Time"]) == 2
    assert one_line_error(capsys) == (
        "pymixnn fit: error: the following arguments are required: --y (see pymixnn fit --help)"
    )
    assert main(["fit", str(theo_csv), *THEO, "--max-steps", "0"]) == 2
    assert one_line_error(capsys) == (
        "pymixnn fit: error: argument --max-steps: give a positive integer, got '0' (see pymixnn fit --help)"
    )
    assert main(["fit", str(theo_csv), *THEO, "--lr", "nan"]) == 2
    assert "argument --lr: give a positive number, got 'nan'" in one_line_error(capsys)


# ---- what is and is not an input error -----------------------------------------------------
def test_only_input_errors_exit_2(theo_csv, monkeypatch, capsys):
    def fit(*args, **kwargs):
        raise ValueError("init given for unknown\nparameters ['Ka']")

    monkeypatch.setattr(pymixnn, "fit", fit)
    assert main(["fit", str(theo_csv), *THEO]) == 2
    assert one_line_error(capsys) == "pymixnn: error: init given for unknown parameters ['Ka']"

    def fit(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "markers.csv")

    monkeypatch.setattr(pymixnn, "fit", fit)
    assert main(["fit", str(theo_csv), *THEO]) == 2
    assert one_line_error(capsys) == "pymixnn: error: cannot read 'markers.csv': No such file or directory"

    def fit(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(pymixnn, "fit", fit)
    with pytest.raises(RuntimeError, match="a bug"):  # not swallowed: the command prints its traceback
        main(["fit", str(theo_csv), *THEO])


@pytest.mark.parametrize(
    "python,cli_text",
    [
        (
            "column 'y' has 2 missing values (first at row 7); pass dropna=True to drop those rows",
            "column 'y' has 2 missing values (first at line 7); pass --dropna to drop those rows",
        ),
        (
            "no initial value for ['A']: give init={...} (natural scale) or a model with a self_start",
            "no initial value for ['A']: give --init NAME=VALUE (natural scale) or a model with a self_start",
        ),
        (
            "n_components and context apply to random_effects='mixture' / 'flow'",
            "n_components and context apply to --random-effects mixture / 'flow'",
        ),
        (
            "observation='binomial' needs trials=<column with the number of trials>",
            "--observation binomial needs --trials <column with the number of trials>",
        ),
        (
            "Genomic(params=...) names ['X'], which model 'logistic' does not have: add them to random=, now ['A']",
            "--genomic-params names ['X'], which model 'logistic' does not have: add them to --random, now ['A']",
        ),
        (
            "ordinal levels are strings: give pymixnn.Ordinal(levels=['low', 'mid', 'high'])",
            "ordinal levels are strings: give --levels L1,L2,...",
        ),
        ("give levels=['low', 'high']", "give --levels low,high"),
        (
            "1 row(s) of the marker map ('m.csv') have no marker name; first at row 3",
            "1 row(s) of the marker map ('m.csv') have no marker name; first at row 3",
        ),
        ("fitted with pymixnn.Poisson(link='identity')", "fitted with pymixnn.Poisson(link='identity')"),
    ],
)
def test_python_hints_are_said_with_flags(python, cli_text):
    assert cli._cli_text(python, lines=True) == cli_text


def test_demo_keeps_row_labels():
    assert cli._cli_text("column 'y': row 7 has value 'x'", lines=False) == "column 'y': row 7 has value 'x'"


# ---- atomic result files and Ctrl-C --------------------------------------------------------
class _Interrupted:
    """Results whose JSON writer is interrupted half-way through the file."""

    def summary(self) -> str:
        return "summary"

    def to_json(self, path) -> None:
        with open(path, "w") as f:
            f.write('{"model": ')
        raise KeyboardInterrupt


def test_interrupted_write_leaves_no_file(tmp_path, theo_csv, monkeypatch, capsys):
    monkeypatch.setattr(pymixnn, "fit", lambda *args, **kwargs: _Interrupted())
    target = tmp_path / "fit.json"
    before = set(tmp_path.iterdir())
    assert main(["fit", str(theo_csv), *THEO, "--json", str(target)]) == 130
    assert one_line_error(capsys) == "pymixnn: interrupted"
    assert set(tmp_path.iterdir()) == before  # neither the target nor a temporary file
    target.write_text("earlier results\n")
    assert main(["fit", str(theo_csv), *THEO, "--json", str(target)]) == 130
    assert target.read_text() == "earlier results\n"  # an old file is replaced whole or not at all


def test_fit_writes_results_and_line_numbered_warning(tmp_path, theo_csv, capsys):
    def blank_y(lines):
        fields = lines[5].split(",")
        fields[3] = ""
        lines[5] = ",".join(fields)

    with_lines(theo_csv, blank_y)
    out, png = tmp_path / "fit.json", tmp_path / "fit.png"
    code = main(["fit", str(theo_csv), *THEO, "--dropna", "--json", str(out), "--plot", str(png)])
    assert code == 0
    captured = capsys.readouterr()
    assert "pymixnn: warning: dropped 1 rows with a missing 'Concentration' (first at line 6)" in captured.err
    assert f"results written to {out}" in captured.out
    record = json.loads(out.read_text())
    n_obs = len(pymixnn.datasets.load("theo")) - 1
    assert record["n_obs"] == n_obs and record["n_individuals"] == 12 and record["steps"] <= 100
    assert png.stat().st_size > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.json", "fit.png", "theo.csv"]


def _python_m(args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-m", "pymixnn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        **kwargs,
    )


def test_python_m_pymixnn_exits_2_on_input_error(tmp_path):
    proc = _python_m(["fit", str(tmp_path / "nope.csv"), *THEO])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert err.decode() == f"pymixnn: error: data file '{tmp_path / 'nope.csv'}' not found\n"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_exits_130_with_one_line(tmp_path):
    from pymixnn.simulate import simulate_logistic

    data = tmp_path / "growth.csv"
    simulate_logistic(n_individuals=400, n_obs=10, seed=1).to_csv(data, index=False)
    target = tmp_path / "fit.json"
    # with its progress bar on, the fit says when SVI has started: interrupt it then
    proc = _python_m(
        [
            "fit",
            str(data),
            "--model",
            "logistic",
            "--id",
            "id",
            "--x",
            "t",
            "--y",
            "y",
            "--max-steps",
            "1000000",
            "--gear",
            "svi",
            "--json",
            str(target),
        ]
    )
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read1(4096), b"")))
    reader.start()
    deadline = time.monotonic() + 300
    while b"SVI" not in b"".join(chunks) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b"SVI" in b"".join(chunks), b"".join(chunks).decode()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    err = b"".join(chunks).decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [s for s in err.replace("\r", "\n").split("\n") if s.strip() and not s.startswith("SVI")]
    assert lines == ["pymixnn: interrupted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["growth.csv"]  # no result, no temporary file


# ---- pymixnn.simulate after import pymixnn -------------------------------------------------
def test_simulate_is_an_attribute_of_the_package():
    code = (
        "import sys, pymixnn; assert 'pymixnn.simulate' not in sys.modules; "
        "df = pymixnn.simulate.simulate_logistic(n_individuals=3, n_obs=4, seed=1); "
        "print(df.shape, 'simulate' in pymixnn.__all__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(12, 3) True"
