"""Validation of settings, data and model before any torch work (pymixnn/validation.py), errors of
the user's structural function during the fit, and reloading results (issue 16, sections 3-4).

Each bad input gives one ValueError (or TypeError) whose single line names the setting, column,
row or value; the settings and data checks run before ``fitting._check_function``, the first
torch work of a fit (the ``before_torch`` fixture makes reaching it an error of its own).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import pymixnn
from pymixnn import fitting
from pymixnn.data import Data
from pymixnn.models.observation import Ordinal, resolve_levels
from pymixnn.validation import closest


class Reached(Exception):
    """fit() got past every check to its first torch work."""


@pytest.fixture
def before_torch(monkeypatch):
    def stop(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(fitting, "_check_function", stop)


def _decay_frame(n: int = 12, seed: int = 0) -> pd.DataFrame:
    """Exponential decay y = A exp(-k t) + noise, A ~ 10, k ~ 0.3, five times per individual."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        A, k = 10 * np.exp(0.2 * rng.normal()), 0.3 * np.exp(0.2 * rng.normal())
        rows += [(f"s{i}", t, A * np.exp(-k * t) + 0.2 * rng.normal()) for t in (0.5, 1, 2, 4, 8)]
    return pd.DataFrame(rows, columns=["id", "t", "y"])


def _decay(psi, x):
    return psi[..., 0] * torch.exp(-psi[..., 1] * x[..., 0])


DECAY = pymixnn.Model(_decay, ["A", "k"], init={"A": 9.0, "k": 0.3}, transforms="log")
QUICK = dict(max_steps=150, refine=False, progress=False, likelihood="is", is_samples=50)


def _fit(df=None, model="linear", **kw):
    df = _decay_frame() if df is None else df
    kw = {"id": "id", "x": "t", "y": "y", "progress": False, **kw}
    return pymixnn.fit(df, model, **kw)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# ---- a. random effects ----------------------------------------------------------------------------
def test_no_random_effect_with_a_law_is_an_error_before_torch(before_torch):
    """random=[] is a nonlinear regression (tests/test_spatial_regression.py); with a random-effects
    law that needs random effects it is one error before any torch work."""
    with pytest.raises(
        ValueError, match=r"random=\[\] with random_effects='mixture': a random-effects law needs"
    ) as e:
        _fit(random=[], random_effects="mixture", n_components=2)
    _one_line(e)
    with pytest.raises(ValueError, match=r"random=\[\] with random_effects='flow'"):  # a Model without, too
        _fit(model=DECAY.replace(random=[]), random_effects="flow")


def test_unknown_random_name_gives_the_closest(before_torch):
    with pytest.raises(
        ValueError,
        match=r"random= names 'Ka', not a parameter of model 'onecpt_oral' "
        r"\(did you mean 'ka'\?\); its parameters are \['ka', 'V', 'CL'\]",
    ):
        pymixnn.fit(
            pymixnn.datasets.load("theo"),
            "onecpt_oral",
            id="Id",
            x=["Dose", "Time"],
            y="Concentration",
            random=["Ka"],
            progress=False,
        )
    with pytest.raises(ValueError, match=r"random must be a list of parameter names, e.g. random=\['A'\]"):
        _fit(model=DECAY, random="A")
    with pytest.raises(ValueError, match=r"transforms= names 'kk', .*did you mean 'k'"):
        _fit(model=DECAY, transforms={"kk": "log"})


# ---- b-d. settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("lr", [float("nan"), -0.1, 0, float("inf"), "0.1"])
def test_learning_rate(before_torch, lr):
    with pytest.raises(ValueError, match=rf"lr must be a finite number > 0 .*got {lr!r}$"):
        _fit(lr=lr)


@pytest.mark.parametrize(
    "name, value",
    [
        ("is_samples", -5),
        ("is_samples", 0),
        ("is_samples", 2.5),
        ("threads", 0),
        ("threads", -2),
        ("batch_size", 0),
        ("max_steps", 10.0),
        ("num_particles", True),
    ],
)
def test_counts_must_be_positive_integers(before_torch, name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer.*got {value!r}$"):
        _fit(**{name: value})


@pytest.mark.parametrize("name, value", [("refine", 1), ("progress", None), ("dropna", "yes")])
def test_switches_must_be_bool(before_torch, name, value):
    with pytest.raises(ValueError, match=rf"{name} must be True or False, got {value!r}"):
        _fit(**{name: value})


def test_dtype_and_device(before_torch):
    with pytest.raises(ValueError, match=r"dtype must be one of \['float32', 'float64'\] .*got 'float16'"):
        _fit(dtype="float16")
    with pytest.raises(ValueError, match=r"device must be one of \['cpu', 'cuda', 'auto'\] .*got 'gpu'"):
        _fit(device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' but torch finds no CUDA device"):
            _fit(device="cuda")
    with pytest.raises(Reached):  # the valid settings pass
        _fit(dtype="float32", device="auto", threads=1, is_samples=10, seed=3, refine=False)


# ---- e. init --------------------------------------------------------------------------------------
def test_unknown_init_key_names_the_closest_parameter(before_torch):
    with pytest.raises(
        ValueError,
        match=r"init names 'a0', not a parameter of model '_decay' "
        r"\(did you mean 'A'\?\); its parameters are \['A', 'k'\]",
    ) as e:
        _fit(model=DECAY, init={"a0": 1.0})
    _one_line(e)
    with pytest.raises(ValueError, match=r"init names 'a', .*a residual error parameter"):
        _fit(model=DECAY, init={"a": 1.0})
    with pytest.raises(ValueError, match=r"init\['k'\] must be a finite number, got nan"):
        _fit(model=DECAY, init={"k": float("nan")})
    with pytest.raises(ValueError, match=r"init\['k'\] must be a finite number, got '0.3'"):
        _fit(model=DECAY, init={"k": "0.3"})
    assert closest("CL", ["ka", "V", "Cl"]) == "Cl" and closest("zzz", ["ka", "V"]) is None


# ---- f. y against the error model --------------------------------------------------------------------
def test_proportional_error_needs_positive_y(before_torch):
    df = _decay_frame()
    df.loc[7, "y"] = 0.0
    with pytest.raises(
        ValueError,
        match=r"the proportional error model needs y > 0 .*column 'y', row 7 "
        r"has value 0.0 \(1 of 60 rows\); use error='combined'",
    ):
        _fit(df, model=DECAY, error="proportional")
    with pytest.raises(ValueError, match=r"row 0 has value 0.0 \(60 of 60 rows\)"):  # ll +2652.8 before
        _fit(df.assign(y=0.0), model=DECAY, error="proportional")
    with pytest.raises(Reached):  # the combined model accepts the zero
        _fit(df, model=DECAY, error="combined")


def test_constant_y_is_an_error(before_torch):
    with pytest.raises(ValueError, match=r"column 'y' takes the single value 2.5 in all 60 rows"):
        _fit(_decay_frame().assign(y=2.5))


# ---- g. duplicated column names ----------------------------------------------------------------------
def test_duplicated_column_name(before_torch):
    df = _decay_frame()
    twice = pd.concat([df, df[["t"]]], axis=1)
    with pytest.raises(ValueError, match=r"column 't' appears 2 times in the data \(positions \[1, 3\]\)"):
        Data.from_pandas(twice, id="id", x="t", y="y")
    with pytest.raises(ValueError, match=r"column 't' appears 2 times"):
        _fit(twice)
    unused = pd.concat(
        [df, df[["y"]].rename(columns={"y": "note"}), df[["y"]].rename(columns={"y": "note"})], axis=1
    )
    assert Data.from_pandas(unused, id="id", x="t", y="y").n_obs == 60  # an unused duplicate is fine


# ---- h. ids -------------------------------------------------------------------------------------------
def test_mixed_type_ids_are_an_error():
    df = _decay_frame().assign(id=[1] * 30 + ["1"] * 30)
    with pytest.raises(
        ValueError,
        match=r"column 'id' mixes types: row 0 has 1 \(int\) and row 30 has "
        r"'1' \(str\), two different ids both shown as 1",
    ):
        Data.from_pandas(df, id="id", x="t", y="y")


def test_whitespace_ids():
    df = _decay_frame()
    df.loc[5:9, "id"] = " s0"  # individual 1's rows now read " s0": two individuals s0?
    with pytest.raises(
        ValueError,
        match=r"row 0 has 's0' and row 5 has ' s0', ids that differ only by "
        r"surrounding spaces",
    ):
        Data.from_pandas(df, id="id", x="t", y="y")
    df.loc[5:9, "id"] = "s1 "
    with pytest.warns(UserWarning, match=r"column 'id': row 5 has the id 's1 ' with surrounding spaces"):
        data = Data.from_pandas(df, id="id", x="t", y="y")
    assert data.n_individuals == 12


# ---- i. boolean y -------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gaussian", "poisson", "negative_binomial"])
def test_boolean_y_is_an_error_for_measurements_and_counts(before_torch, family):
    df = _decay_frame()
    df["y"] = df["y"] > 5
    with pytest.raises(
        ValueError,
        match=rf"column 'y' is boolean \(True/False\), not a measurement for "
        rf"observation='{family}'",
    ):
        _fit(df, observation=family)


def test_boolean_y_is_fine_for_bernoulli(before_torch):
    df = _decay_frame()
    df["y"] = df["y"] > 5
    with pytest.raises(Reached):
        _fit(df, observation="bernoulli")


# ---- j. ordinal levels --------------------------------------------------------------------------------
def test_ordinal_string_levels_need_an_order(before_torch):
    df = _decay_frame()
    df["y"] = np.tile(["low", "mid", "high", "mid", "low"], 12)
    with pytest.raises(
        ValueError,
        match=r"column 'y': cannot order the ordinal levels \['low', 'mid', "
        r"'high'\] \(not numbers\); give them in increasing order: "
        r"observation=pymixnn.Ordinal\(levels=\['low', 'mid', 'high'\]\)",
    ):
        _fit(df, observation="ordinal")
    unordered = pd.Series(pd.Categorical(df["y"]))
    with pytest.raises(ValueError, match=r"cannot order the ordinal levels \['high', 'low', 'mid'\]"):
        resolve_levels(Ordinal(), unordered, "y")
    ordered = pd.Series(pd.Categorical(df["y"], categories=["low", "mid", "high"], ordered=True))
    assert resolve_levels(Ordinal(), ordered, "y").levels == ("low", "mid", "high")
    numeric = pd.Series(["2", "10", "1", "2"])  # strings of numbers: by value, not "1" < "10" < "2"
    assert resolve_levels(Ordinal(), numeric, "y").levels == ("1", "2", "10")
    assert resolve_levels(Ordinal(), pd.Series([3, 1, 2, 1]), "y").levels == (1, 2, 3)
    with pytest.raises(Reached):
        _fit(df, observation=Ordinal(levels=["low", "mid", "high"]))


# ---- k. errors of the user's structural function during the fit ------------------------------------
def _decay_nan(psi, x):  # NaN for A > 10.5, near the data's individual A's (start 9)
    out = psi[..., 0] * torch.exp(-psi[..., 1] * x[..., 0])
    return torch.where(psi[..., 0] > 10.5, torch.full_like(out, float("nan")), out)


def _decay_raises(psi, x):
    if bool((psi[..., 0] > 10.5).any()):
        raise RuntimeError("A too large\nsecond line")
    return psi[..., 0] * torch.exp(-psi[..., 1] * x[..., 0])


def _decay_tail_nan(psi, x):  # NaN for k > 0.45 (the individuals' k: 0.3 exp(N(0, 0.2^2)))
    out = psi[..., 0] * torch.exp(-psi[..., 1] * x[..., 0])
    return torch.where(psi[..., 1] > 0.45, torch.full_like(out, float("nan")), out)


def _program(function):
    from pymixnn.covariates import CovariateDesign
    from pymixnn.inference.program import Program

    df = _decay_frame(3).iloc[:-2]  # s2 has 3 observations: two padding cells (x = 0)
    data = Data.from_pandas(df, id="id", x="t", y="y")
    model = DECAY.replace(function=function)
    design = CovariateDesign.build({}, data.covariates, model.parameters)
    return Program(model, data, design, device=torch.device("cpu"), dtype=torch.float64)


def _psi(*rows):  # (..., B, 1, P): one parameter row per individual, as Program.prediction takes it
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(-2)


def test_watch_records_nan_on_observed_cells_only():
    from pymixnn.inference.program import StructuralFunctionError, watch_structural_function

    def over_t(psi, x):  # NaN at x = 0: only on padding cells here; NaN for k > 0.45
        t = x[..., 0]
        out = _decay_tail_nan(psi, x) * t / t
        return torch.where(psi[..., 0] > 1e3, torch.full_like(out, float("inf")), out)

    idx = torch.tensor([2, 0])
    program = _program(over_t)
    program.prediction(_psi([9.0, 0.3], [2e3, 0.3]), idx)  # padding NaN, +inf (overflow): nothing
    assert program.watch.first is None
    with pytest.raises(RuntimeError, match="unrelated"):  # no NaN seen: the error goes through as is
        with watch_structural_function():
            _program(over_t).prediction(_psi([9.0, 0.3], [9.0, 0.3]), idx)
            raise RuntimeError("unrelated")
    with (
        pytest.raises(
            StructuralFunctionError,
            match=r"the fit failed \(RuntimeError: later\) after the "
            r"structural function over_t returned NaN for "
            r"individual 's0' at psi \{A: 9, k: 0.5\} "
            r"\(x = \[0.5\]\)",
        ),
        watch_structural_function(),
    ):
        watched = _program(over_t)
        watched.prediction(_psi([[9.0, 0.3], [9.0, 0.3]], [[9.0, 0.3], [9.0, 0.5]]), idx)
        raise RuntimeError("later\nsecond line")


@pytest.fixture(scope="module")
def tail_nan_fit():
    """A fit whose function gives NaN in the tails of the random effects only (k > 0.45, which
    importance sampling and the Laplace steps reach): those draws are rejected, no error."""
    from pymixnn.inference import program

    seen = []
    record = program.Program._record_nan
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            program.Program, "_record_nan", lambda self, *a: (record(self, *a), seen.append(self.watch.first))
        )
        res = _fit(model=DECAY.replace(function=_decay_tail_nan), seed=1, **QUICK)
    return res, seen


def test_nan_in_the_tails_is_not_an_error(tail_nan_fit):
    res, seen = tail_nan_fit
    assert seen and seen[0]["psi"].endswith("}") and float(seen[0]["psi"].split("k: ")[1][:-1]) > 0.45
    # the 12 individuals have A ~ 10 exp(N(0, 0.2^2)), k ~ 0.3 exp(N(0, 0.2^2)): the typical values
    # are within 15% of 10 and 0.3 (SE of a log-mean over 12 individuals: 0.2 / sqrt(12) = 6%)
    fe = res.fixed_effects
    assert abs(fe["A"] / 10 - 1) < 0.15 and abs(fe["k"] / 0.3 - 1) < 0.15


# ---- l. reloading results ----------------------------------------------------------------------------
def test_load_with_another_model_names_the_mismatch(tail_nan_fit, tmp_path):
    res, _ = tail_nan_fit
    path = res.save(tmp_path / "fit.json")
    same = pymixnn.Results.load(path, model=DECAY.replace(function=_decay_tail_nan))
    np.testing.assert_allclose(same.predict(), res.predict())
    other = pymixnn.Model(_decay, ["C0", "k"], init={"C0": 9.0, "k": 0.3}, transforms="log")
    with pytest.raises(
        ValueError,
        match=r"fit.json: the model given does not match the saved fit: "
        r"parameters \['C0', 'k'\] given, \['A', 'k'\] saved$",
    ):
        pymixnn.Results.load(path, model=other)
    with pytest.raises(ValueError, match=r"random \['A'\] given, \['A', 'k'\] saved"):
        pymixnn.Results.load(path, model=DECAY.replace(random=["A"]))
    with pytest.raises(TypeError, match="model must be a pymixnn.Model, got str"):
        pymixnn.Results.load(path, model="linear")


def test_load_corrupted_or_missing_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": 1,\n "model": {"name": "linear",\n')
    with pytest.raises(
        ValueError,
        match=r"not a pymixnn results file: .*broken.json: Expecting property "
        r"name enclosed in double quotes at line 3",
    ) as e:
        pymixnn.Results.load(broken)
    _one_line(e)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"fixed_effects": {}}))
    with pytest.raises(ValueError, match=r"not a pymixnn results file: .*other.json has no 'format'"):
        pymixnn.Results.load(other)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        pymixnn.Results.load(tmp_path / "missing.json")


# ---- m, n. CSV encodings, categorical x and y ----------------------------------------------------------
def test_latin1_csv_needs_its_encoding(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,t,y,site\n1,0,1.0,Besançon\n1,1,2.0,Besançon\n2,0,1.5,Liège\n".encode("latin-1"))
    with pytest.raises(
        ValueError,
        match=r"latin1.csv: not readable as utf-8 \(it holds the byte b'\\xe7'\); "
        r"pass the file's encoding, e.g. encoding='latin-1'",
    ) as e:
        Data.from_csv(path, id="id", x="t", y="y")
    _one_line(e)
    data = Data.from_csv(path, id="id", x="t", y="y", covariates=["site"], encoding="latin-1")
    assert data.covariates["site"].tolist() == ["Besançon", "Liège"]


def test_categorical_x_or_y_is_an_error(before_torch):
    df = _decay_frame()
    df["t"] = pd.Categorical(df["t"].map(lambda v: f"{v:g}"))  # an R factor: labels "0.5", "1", ...
    with pytest.raises(
        ValueError,
        match=r"column 't' is categorical \(levels \['0.5', '1', '2', '4', "
        r"'8'\]\); x and y must be numeric",
    ):
        Data.from_pandas(df, id="id", x="t", y="y")
    df = _decay_frame()
    df["y"] = pd.Categorical(np.tile(["10", "20"], 30))
    with pytest.raises(ValueError, match=r"column 'y' is categorical \(levels \['10', '20'\]\)"):
        _fit(df)
