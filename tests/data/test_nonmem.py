"""NONMEM-style event data (``Data.from_nonmem``): one clear error per bad input, naming the column,
the row label and the value, raised before any torch work; and the NONMEM conventions accepted."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import pymixnn
from pymixnn.data.nonmem import read_nonmem
from pymixnn.model.dynamics import bound
from pymixnn.model.dynamics.models import bind_events
from pymixnn.validation import InputError


def records(**changes) -> pd.DataFrame:
    """Two individuals, a dose into the depot (CMT 1) then two observations of the central (CMT 2)."""
    df = pd.DataFrame(
        {
            "ID": [1, 1, 1, 2, 2, 2],
            "TIME": [0.0, 1.0, 2.0, 0.0, 1.0, 2.0],
            "AMT": [100.0, 0, 0, 100.0, 0, 0],
            "EVID": [1, 0, 0, 1, 0, 0],
            "CMT": [1, 2, 2, 1, 2, 2],
            "DV": [0.0, 5.0, 3.0, 0.0, 4.0, 2.0],
            "WT": [70.0, 70, 70, 80, 80, 80],
        },
        index=[10, 11, 12, 20, 21, 22],  # labels differ from positions: messages must use labels
    )
    return df.assign(**changes)


def from_nonmem(df: pd.DataFrame, **kw) -> pymixnn.Data:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the valid cases below give no warning unless said
        return pymixnn.Data.from_nonmem(df, **kw)


@pytest.fixture
def no_torch(monkeypatch):
    """bind_events: the model-side checks must fail before any tensor is made."""

    def torch_work(*args, **kwargs):
        raise AssertionError("torch work started before the event checks")

    monkeypatch.setattr(bound, "dosing_table", torch_work)


# ---- errors: data alone (read_nonmem, numpy and pandas only) --------------------------------------
@pytest.mark.parametrize(
    "changes, message",
    [
        (
            dict(AMT=[0.0, 0, 0, 100, 0, 0]),
            "column 'AMT' must be > 0 on dose records (EVID 1 or 4): row 10 has value 0.0",
        ),
        (
            dict(AMT=[100.0, 0, 0, -5, 0, 0]),
            "column 'AMT' must be > 0 on dose records (EVID 1 or 4): row 20 has value -5.0",
        ),
        (
            dict(AMT=[100.0, 7, 0, 100, 0, 0]),
            "column 'AMT' must be 0 or missing on records that are not doses (EVID 0, 2, 3): row 11 has value 7.0",
        ),
        (
            dict(ADDL=[0, 0, 0, 3, 0, 0]),
            "column 'ADDL' > 0 needs an interval II > 0 (column 'II'): row 20 has value 3.0",
        ),
        (
            dict(ADDL=[0, 0, 0, 3, 0, 0], II=0.0),
            "column 'ADDL' > 0 needs an interval II > 0 (column 'II'): row 20 has value 3.0",
        ),
        (
            dict(SS=[1, 0, 0, 0, 0, 0]),
            "column 'SS' steady state needs an interval II > 0 (column 'II'): row 10 has value 1.0",
        ),
        (
            dict(TIME=[0.0, 2.0, 1.0, 0, 1, 2]),
            "column 'TIME' decreases within individual 1: row 12 has value 1.0 after 2.0 (row 11)",
        ),
        (
            dict(EVID=[1, 0, 0, 1, 5, 0]),
            "column 'EVID' must be 0 (observation), 1 (dose), 2 (other), 3 (reset) or 4 (reset and dose): "
            "row 21 has value 5.0",
        ),
        (
            dict(RATE=[0, 0, 0, -3, 0, 0]),
            "column 'RATE' must be >= 0, -1 (modeled rate) or -2 (modeled duration): row 20 has value -3.0",
        ),
        (dict(SS=[0, 0, 0, 3, 0, 0], II=12.0), "column 'SS' must be 0, 1 or 2: row 20 has value 3.0"),
        (dict(TIME=[0, 1, 2, 0, "1h", 2]), "column 'TIME' must be numeric: row 21 has value '1h'"),
        (dict(TIME=[0, 1, np.nan, 0, 1, 2]), "column 'TIME' must be a finite number: row 12 has value nan"),
        (
            dict(DV=[0, np.nan, 3, 0, 4, 2], MDV=[1, 0, 0, 1, 0, 0]),
            "column 'DV' must be a finite number on observation records (EVID 0, MDV 0): row 11 has value nan",
        ),
        (
            dict(CMT=[0, 2, 2, 1, 2, 2]),
            "column 'CMT' must be a compartment number >= 1 on dose records: row 10",
        ),
        (dict(ID=[1, 1, None, 2, 2, 2]), "column 'ID' has a missing id: row 12"),
        (dict(DVID=[0, 1, np.nan, 0, 1, 1]), "column 'DVID' is missing on an observation record: row 12"),
    ],
)
def test_bad_records_name_column_row_and_value(changes, message):
    with pytest.raises(InputError, match=re.escape(message)):
        pymixnn.Data.from_nonmem(records(**changes))


def test_amount_sign_is_checked_without_an_evid_column():
    """Without EVID a non-zero AMT makes a dose (NM-TRAN), so a negative one is reported, not
    silently read as an observation record."""
    df = records(AMT=[100.0, 0, 0, -5, 0, 0]).drop(columns="EVID")
    with pytest.raises(
        InputError, match=re.escape("column 'AMT' must be > 0 on dose records") + ".*row 20 has value -5.0"
    ):
        pymixnn.Data.from_nonmem(df)


def test_decreasing_time_reports_the_individuals_previous_record():
    """Records of two individuals interleaved: 'after' is the individual's own previous record."""
    df = pd.DataFrame(
        {"ID": [1, 2, 1, 2], "TIME": [5.0, 0.0, 3.0, 1.0], "AMT": [100.0, 100, 0, 0], "DV": [0, 0, 1.0, 2]}
    )
    with pytest.raises(
        InputError, match=re.escape("decreases within individual 1: row 2 has value 3.0 after 5.0 (row 0)")
    ):
        pymixnn.Data.from_nonmem(df)


@pytest.mark.parametrize("drop, role", [("TIME", "time"), ("ID", "id")])
def test_missing_required_column(drop, role):
    with pytest.raises(
        InputError, match=rf"column '{drop}' \({role}\) is not in the data \(case-insensitive\)"
    ):
        pymixnn.Data.from_nonmem(records().drop(columns=drop))


def test_non_numeric_time_is_an_input_error_before_any_fit():
    with pytest.raises(InputError, match=r"column 'TIME' must be numeric: row 11 has value 'a'"):
        read_nonmem(records(TIME=[0, "a", 2, 0, 1, 2]))


def test_covariate_varying_within_an_individual_suggests_time_varying():
    df = records(WT=[70.0, 72, 70, 80, 80, 80])
    message = (
        "covariate 'WT' varies within an individual: row 11 has value 72.0; give it as time_varying=['WT']"
    )
    with pytest.raises(InputError, match=re.escape(message)):
        pymixnn.Data.from_nonmem(df, covariates=["WT"])
    assert from_nonmem(df, time_varying=["WT"]).events.time_varying == ["WT"]


def test_time_varying_covariate_missing_on_first_record():
    df = records(WT=[70.0, 70, 70, np.nan, 80, 80])
    message = "column 'WT' is missing on an individual's first record (nothing to carry forward): row 20 has value nan"
    with pytest.raises(InputError, match=re.escape(message)):
        pymixnn.Data.from_nonmem(df, time_varying=["WT"])


def test_covariate_both_constant_and_time_varying():
    with pytest.raises(InputError, match=re.escape("['WT'] given both as covariates and as time_varying")):
        pymixnn.Data.from_nonmem(records(), covariates=["WT"], time_varying=["WT"])


# ---- errors: what the model cannot take (bind_events, before any tensor) --------------------------
def test_unknown_compartment(no_torch):
    data = from_nonmem(records(CMT=[1, 2, 2, 3, 2, 2]))
    message = "column CMT: row 20 doses compartment 3, but model 'pk1cpt_oral' has compartments 1 (depot), 2 (central)"
    with pytest.raises(InputError, match=re.escape(message)):
        bind_events(pymixnn.Model.named("pk1cpt_oral"), data.events)


def test_endpoint_without_an_output(no_torch):
    data = from_nonmem(records(DVID=[0, 1, 2, 0, 1, 2]))
    assert data.events.endpoints == ("1", "2")
    with pytest.raises(
        InputError, match=r"endpoint '1' \(column DVID\) has no output in model 'pk1cpt_oral'.*\['cp'\]"
    ):
        bind_events(pymixnn.Model.named("pk1cpt_oral"), data.events)


@pytest.mark.parametrize(
    "code, key, what", [(-1, "rate", "modeled rate"), (-2, "duration", "modeled duration")]
)
def test_modeled_rate_without_the_parameter(no_torch, code, key, what):
    data = from_nonmem(records(CMT=1, RATE=[0, 0, 0, code, 0, 0]))
    message = (
        f"column RATE: row 20 has RATE = {code} ({what}) into compartment 1, but model 'pk1cpt_iv' has no "
        f"{key} parameter for it (give {key}=True"
    )
    with pytest.raises(InputError, match=re.escape(message)):
        bind_events(pymixnn.Model.named("pk1cpt_iv"), data.events)


def test_modeled_rate_with_the_parameter_binds():
    data = from_nonmem(records(CMT=1, RATE=[-1, 0, 0, -1, 0, 0]))
    bound_model = bind_events(pymixnn.Model.named("pk1cpt_iv", rate=True), data.events)
    assert bound_model.function.endpoint_map.tolist() == [0]


# ---- accepted NONMEM conventions --------------------------------------------------------------------
def test_dv_of_dose_records_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match=r"2 dose record\(s\) carry a non-zero DV \(first: row 10\)"):
        data = pymixnn.Data.from_nonmem(records(DV=[9.0, 5, 3, 9, 4, 2]))
    assert data.n_obs == 4 and data.y.tolist() == [5.0, 3.0, 4.0, 2.0]
    from_nonmem(records())  # DV 0 on doses: no warning


def test_mdv_one_rows_are_not_observations():
    data = from_nonmem(records(DV=[0, 5.0, np.nan, 0, 4, 2], MDV=[1, 0, 1, 1, 1, 0]))
    assert data.n_obs == 2 and data.y.tolist() == [5.0, 2.0]
    assert data.events.counts()["observations"] == 2
    assert len(data.events.time) == 6  # the MDV 1 records stay in the event table


def test_missing_dv_without_mdv_is_not_an_observation_and_is_reported():
    with pytest.warns(
        UserWarning, match=r"1 record\(s\) with EVID 0 have a missing DV .*not observations \(first: row 12\)"
    ):
        data = pymixnn.Data.from_nonmem(records(DV=[0, 5.0, np.nan, 0, 4, 2]))
    assert data.n_obs == 3 and data.events.counts()["observations"] == 3
    assert (data.events.to_frame()["EVID"] == 0).sum() == 4


def test_individual_without_observations_is_kept():
    extra = pd.DataFrame(
        {"ID": [3], "TIME": [0.0], "AMT": [50.0], "EVID": [1], "CMT": [1], "DV": [0.0], "WT": [90.0]}
    )
    data = from_nonmem(pd.concat([records(), extra], ignore_index=True))
    assert data.n_individuals == 2 and data.events.n_individuals == 3
    assert data.events.individuals_without_observations() == [3]
    assert data.events.counts()["doses"] == 3


def test_column_names_match_case_insensitively():
    df = records().rename(
        columns={"ID": "id", "TIME": "time", "AMT": "amt", "DV": "dv", "CMT": "Cmt", "WT": "wt"}
    )
    data = from_nonmem(df, covariates=["WT"])
    assert data.n_obs == 4 and data.events.counts()["doses"] == 2
    assert data.events.cmt.tolist() == [1, 2, 2, 1, 2, 2]
    assert data.covariates.shape[0] == 2


def test_absent_optional_columns_take_nonmem_defaults():
    df = records()[["ID", "TIME", "AMT", "DV"]]
    data = from_nonmem(df)
    ev = data.events
    assert ev.evid.tolist() == [1, 0, 0, 1, 0, 0]  # EVID from AMT
    assert ev.cmt.tolist() == [1] * 6 and ev.rate.tolist() == [0.0] * 6
    assert ev.ii.tolist() == [0.0] * 6 and ev.ss.tolist() == [0] * 6
    assert ev.endpoints == ("1",) and ev.counts()["addl_doses"] == 0
    assert data.n_obs == 4


def test_missing_optional_values_are_nonmem_dots():
    """NaN in AMT / CMT / RATE / II / ADDL / SS / MDV reads as NONMEM's '.' (the default)."""
    df = records(
        CMT=[1, np.nan, 2, 1, 2, 2],
        RATE=np.nan,
        II=np.nan,
        ADDL=np.nan,
        SS=np.nan,
        MDV=[1, np.nan, 0, 1, 0, 0],
    )
    data = from_nonmem(df)
    assert data.n_obs == 4 and data.events.cmt.tolist() == [1, 1, 2, 1, 2, 2]


def test_addl_expansion():
    df = records(ADDL=[2, 0, 0, 0, 0, 0], II=[0.75, 0, 0, 0, 0, 0], SS=[1, 0, 0, 0, 0, 0])
    ev = from_nonmem(df).events
    frame = ev.to_frame()
    first = frame[frame.ID == 1]
    doses = first[first.EVID == 1]
    assert doses.TIME.tolist() == [0.0, 0.75, 1.5]
    assert doses.ADDL_DOSE.tolist() == [False, True, True]
    assert doses.SS.tolist() == [1, 0, 0] and doses.AMT.tolist() == [100.0] * 3
    assert first.TIME.tolist() == [0.0, 0.75, 1.0, 1.5, 2.0]  # in time order among the records
    assert ev.counts()["addl_doses"] == 2 and ev.counts()["doses"] == 4
    assert ev.counts()["steady_state_doses"] == 1


def test_addl_dose_at_a_record_time_comes_after_it():
    df = records(ADDL=[1, 0, 0, 0, 0, 0], II=[1.0, 0, 0, 0, 0, 0])
    first = from_nonmem(df).events.to_frame().query("ID == 1")
    assert first.TIME.tolist() == [0.0, 1.0, 1.0, 2.0]
    assert first.EVID.tolist() == [1, 0, 1, 0]


def test_time_varying_covariates_carried_forward():
    df = records(WT=[70.0, np.nan, 72, 80, np.nan, np.nan], ADDL=[0, 0, 0, 1, 0, 0], II=[0, 0, 0, 1.5, 0, 0])
    frame = from_nonmem(df, time_varying=["WT"]).events.to_frame()
    assert frame.query("ID == 1").WT.tolist() == [70.0, 70.0, 72.0]  # across NaN
    second = frame.query("ID == 2")
    assert second.TIME.tolist() == [0.0, 1.0, 1.5, 2.0]
    assert second.WT.tolist() == [80.0] * 4  # onto the ADDL dose at 1.5
    assert not frame.WT.isna().any()


def test_time_varying_value_changes_reach_the_addl_dose():
    df = records(WT=[70.0, 75, 76, 80, 80, 80], ADDL=[1, 0, 0, 0, 0, 0], II=[1.5, 0, 0, 0, 0, 0])
    first = from_nonmem(df, time_varying=["WT"]).events.to_frame().query("ID == 1")
    assert first.TIME.tolist() == [0.0, 1.0, 1.5, 2.0]
    assert first.WT.tolist() == [70.0, 75.0, 75.0, 76.0]  # the dose at 1.5 takes the value at 1.0


def test_dvid_endpoint_names():
    floats = from_nonmem(records(DVID=[np.nan, 1.0, 2.0, np.nan, 2.0, 1.0]))
    assert floats.events.endpoints == ("1", "2")
    assert floats.events.to_frame().DVID.tolist() == [None, "1", "2", None, "2", "1"]
    strings = from_nonmem(records(DVID=["", "cp", "effect", "", "effect", "cp"]))
    assert strings.events.endpoints == ("cp", "effect")
    assert strings.x[:, 1].tolist() == [0.0, 1.0, 1.0, 0.0]


def test_single_endpoint_binds_to_the_single_output():
    data = from_nonmem(records(DVID=[0, 1, 1, 0, 1, 1]))
    bound_model = bind_events(pymixnn.Model.named("pk1cpt_oral"), data.events)
    assert bound_model.function.endpoint_map.tolist() == [0]


def test_row_labels_in_the_event_table_are_plain():
    ev = from_nonmem(records()).events
    assert [repr(r) for r in ev.row] == ["10", "11", "12", "20", "21", "22"]


def test_fit_on_nonmem_columns_takes_its_time_column_from_x():
    """pymixnn.fit on a DataFrame with NONMEM columns and a dynamic model: x names the time column
    (a name, or a list of one name as for a closed-form curve); more than one name is an error
    naming x, raised before any torch work."""
    df = pymixnn.datasets.load_nonmem("theo").rename(columns={"TIME": "t"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 SVI steps, no refinement: not converged, and says so
        fits = [
            pymixnn.fit(df, "pk1cpt_oral", x=x, refine=False, max_steps=5, progress=False, seed=0)
            for x in ("t", ["t"])
        ]
    # the records' 120 observations (12 individuals) read from column t both times
    assert fits[0].data.n_obs == fits[1].data.n_obs == int((df["EVID"] == 0).sum()) == 120
    assert fits[0].fixed_effects.to_dict() == fits[1].fixed_effects.to_dict()
    with pytest.raises(InputError, match=r"x=\['t', 'AMT'\].*time column only"):
        pymixnn.fit(df, "pk1cpt_oral", x=["t", "AMT"], progress=False)
