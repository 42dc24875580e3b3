"""The R bridges never paste user text into R code (issue 16, section 6): setting names are checked
against the R function's arguments, parameter names that saemix uses as column names against R's
rule for syntactic names, and values (settings, paths, package names) reach R as R objects. Only
``r_function`` is R code, by design. The previous pymixnn/compare.py pasted each text below into R
source; the nlme control key, the package name and the temporary path were checked to run their
``system()`` call there (saemix is not installed here). Each marker file must stay absent."""

from __future__ import annotations

import re
import tempfile

import pytest

import pymixnn
from pymixnn import compare, datasets

needs_r = pytest.mark.skipif(
    not compare.r_available(),
    reason="rpy2 cannot be imported (pip install 'rpy2==3.5.17'): the nlme bridge is not available",
)

ORANGE = dict(
    id="Tree",
    x="age",
    y="circumference",
    transforms="identity",
    random=["A"],
    init={"A": 170, "B": 700, "C": 350},
)
THEO = dict(id="Id", x=["Dose", "Time"], y="Concentration")


def _no_r(name):
    raise AssertionError("R was looked for before the user's settings were checked")


def _one_line_error(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@needs_r
def test_nlme_control_key_is_checked_not_pasted(tmp_path):
    marker = tmp_path / "pwned"
    key = f'x=1))); system("touch {marker}"); list(list(list(y'  # closes the old nlmeControl(...) call
    with pytest.raises(ValueError) as err:
        compare.nlme(datasets.load("orange"), "logistic", **ORANGE, control={key: 1})
    assert _one_line_error(err).startswith(
        f"control key {key!r} is not an argument of nlmeControl(); its arguments are ['maxIter', "
    )
    assert not marker.exists()
    # a typo is named with the closest nlmeControl() argument
    with pytest.raises(
        ValueError,
        match=re.escape("control key 'maxiter' is not an argument of nlmeControl(); did you mean 'maxIter'?"),
    ):
        compare.nlme(datasets.load("orange"), "logistic", **ORANGE, control={"maxiter": 100})


@needs_r
def test_nlme_control_values_reach_r_as_objects(tmp_path):
    marker = tmp_path / "pwned"
    value = f'1); system("touch {marker}"); (1'
    with pytest.raises(ValueError) as err:
        compare.nlme(datasets.load("orange"), "logistic", **ORANGE, control={"maxIter": value})
    assert _one_line_error(err) == (
        f"control['maxIter'] must be a number or a list of numbers (the "
        f"default of nlmeControl() is 50), got {value!r}"
    )
    with pytest.raises(ValueError, match=re.escape("control['returnObject'] must be True or False")):
        compare.nlme(datasets.load("orange"), "logistic", **ORANGE, control={"returnObject": 1})
    with pytest.raises(
        ValueError,
        match=re.escape("control['maxIter'] is {'a': 1}: give a number, a string, True/False or a list"),
    ):
        compare.nlme(datasets.load("orange"), "logistic", **ORANGE, control={"maxIter": {"a": 1}})
    # a string where nlmeControl() takes one reaches R as that string, never as code: match.arg fails
    value = f'nlminb"); system("touch {marker}"); ("'
    with pytest.raises(RuntimeError, match=r"^the R fit failed: 'arg' should be one of"):
        compare.nlme(datasets.load("orange"), "logistic", **ORANGE, control={"opt": value})
    assert not marker.exists()


def test_saemix_option_name_is_checked_before_saemix_is_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "_require", _no_r)  # saemix is CRAN-only: the check must not need it
    marker = tmp_path / "pwned"
    key = f'x` = 1)); system("touch {marker}"); list(list(`y'  # closes the old list(`key` = ...)
    with pytest.raises(ValueError) as err:
        compare.saemix(datasets.load("theo"), "onecpt_oral", **THEO, options={key: 1})
    assert _one_line_error(err) == f"options key {key!r} is not an argument of saemixControl()"
    with pytest.raises(ValueError, match=re.escape("options['seed'] is [None]: give a number")):
        compare.saemix(datasets.load("theo"), "onecpt_oral", **THEO, options={"seed": [None]})
    with pytest.raises(TypeError, match="options must be a mapping"):
        compare.saemix(datasets.load("theo"), "onecpt_oral", **THEO, options=[("seed", 1)])
    assert not marker.exists()


@pytest.mark.parametrize("name", ['k"))); system("touch {marker}") #', "k a", "2k", "_k", ".2k", "if", "..."])
def test_saemix_parameter_names_must_be_r_names(tmp_path, monkeypatch, name):
    monkeypatch.setattr(compare, "_require", _no_r)
    marker = tmp_path / "pwned"
    name = name.replace("{marker}", str(marker))
    model = pymixnn.Model(lambda psi, x: psi[..., 0] * x[..., 0], [name], init={name: 0.1})
    with pytest.raises(ValueError) as err:
        compare.saemix(
            datasets.load("orange"),
            model,
            id="Tree",
            x="age",
            y="circumference",
            r_function="function(psi, x) psi[, 1] * x[, 1]",
        )
    assert _one_line_error(err) == (
        f"saemix: parameter name {name!r} is not a syntactic R name "
        "(letters, digits, '.' and '_', starting with a letter, not an R "
        "reserved word)"
    )
    assert not marker.exists()


def test_r_names_accepted():
    for name in ("ka", "V", "CL", "k_a", "E0", ".k", "beta.1", "."):
        assert compare._check_r_name(name, "name") == name


@needs_r
def test_package_name_is_data_not_code(tmp_path):
    marker = tmp_path / "pwned"
    name = f'x", quietly = TRUE))); system("touch {marker}"); isTRUE(identity(c("'
    assert compare.r_package_available(name) is False
    assert not marker.exists()
    assert compare.r_package_available("nlme") is True


@needs_r
def test_r_function_is_r_code_and_its_errors_are_one_line():
    kw = dict(id="Tree", x="age", y="circumference", init={"k": 0.1})
    model = pymixnn.Model(lambda psi, x: psi[..., 0] * x[..., 0], ["k"], init={"k": 0.1})
    with pytest.raises(ValueError) as err:
        compare.nlme(datasets.load("orange"), model, **kw, r_function="function(psi, x) psi[, 1 +")
    assert _one_line_error(err).startswith(
        "r_function is not R code that evaluates: <text>:2:0: unexpected end of input"
    )
    with pytest.raises(
        ValueError,
        match=r"^r_function must be R code giving a function\(psi, x\), "
        r"got an R numeric$",
    ):
        compare.nlme(datasets.load("orange"), model, **kw, r_function="6 * 7")
    with pytest.raises(TypeError, match="r_function must be R code as a string, got int"):
        compare.nlme(datasets.load("orange"), model, **kw, r_function=42)


@needs_r
def test_nlme_fit_with_a_setting_and_a_temp_path_full_of_quotes(tmp_path, monkeypatch):
    """One real fit: a legitimate control setting reaches nlmeControl() unchanged (nlme's warning
    quotes it), and a temporary directory whose name would have closed the old read.csv("...")
    call is read as a path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("a\n1\n")  # what the old code's cut-short read.csv() read
    weird = tmp_path / 'x.csv"); system("touch pwned"); ("'
    weird.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(weird))
    res = compare.nlme(datasets.load("orange"), "logistic", **ORANGE, control={"maxIter": 1})
    assert res.info["warnings"] == [
        "nlme: maximum number of iterations (maxIter = 1) reached without convergence"
    ]
    assert res.params.loc[["A", "B", "C"], "estimate"].notna().all()
    assert not (tmp_path / "pwned").exists()
    assert list(weird.iterdir()) == []  # the bridge's temporary directory is gone
