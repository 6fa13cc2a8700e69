import datetime as dt
import io
import math
import pickle

import pydantic
import pytest

from indicators import (
    CSV_COLUMNS,
    DEFAULT_GRADES,
    GradeTable,
    InvalidGrade,
    InvalidObservation,
    Observation,
    ObservationFileError,
    SignpostIndicatorError,
    UnknownIndicator,
    read_observations_csv,
    validate_observation,
)

D = dt.date
TODAY = D(2024, 5, 15)


def valid(catalog, **fields):
    data = {"indicator": "joint_exercise", "date": "2024-05-01", **fields}
    return validate_observation(data, catalog, TODAY)


def refused(catalog, data, grades=DEFAULT_GRADES):
    with pytest.raises(InvalidObservation) as info:
        validate_observation(data, catalog, TODAY, grades)
    return info.value


def test_a_count_with_defaults(catalog):
    obs = valid(catalog)
    assert obs == Observation(indicator="joint_exercise", date=D(2024, 5, 1), value=1.0, grade="B2")
    assert (obs.source, obs.url, obs.note, obs.analyst) == ("", "", "", "")


def test_fields_are_normalised(catalog):
    obs = valid(
        catalog,
        indicator=" joint_patrol ",
        date=dt.datetime(2024, 5, 1, 18, 30),
        value="3",
        grade=" c3 ",
        source="MoD",
        url="https://example.org/x",
        note="two legs",
        analyst="ak",
    )
    assert obs.indicator == "joint_patrol"
    assert obs.date == D(2024, 5, 1)
    assert obs.value == 3.0
    assert obs.grade == "C3"
    assert (obs.source, obs.url, obs.note, obs.analyst) == (
        "MoD",
        "https://example.org/x",
        "two legs",
        "ak",
    )


def test_date_objects_and_datetime_strings(catalog):
    assert valid(catalog, date=D(2024, 1, 2)).date == D(2024, 1, 2)
    assert valid(catalog, date="2024-01-02T23:00:00+00:00").date == D(2024, 1, 2)


def test_missing_or_empty_grade_is_the_default(catalog):
    assert valid(catalog, grade=None).grade == "B2"
    assert valid(catalog, grade="  ").grade == "B2"
    custom = GradeTable.from_mapping({"default": "C3"})
    data = {"indicator": "joint_exercise", "date": "2024-05-01"}
    assert validate_observation(data, catalog, TODAY, custom).grade == "C3"


def test_none_value_and_none_text_mean_defaults(catalog):
    obs = valid(catalog, value=None, note=None)
    assert obs.value == 1.0
    assert obs.note == ""


def test_value_zero_is_a_valid_count(catalog):
    assert valid(catalog, value=0).value == 0.0


def test_milestone_value_one(catalog):
    assert valid(catalog, indicator="joint_command", value=1).value == 1.0


@pytest.mark.parametrize("value", [-12.5, 0.0, 1e6, "3.25"])
def test_signals_take_any_finite_number(catalog, value):
    assert valid(catalog, indicator="dual_use_trade_growth", value=value).value == float(value)


def test_dates_up_to_one_day_ahead_are_accepted(catalog):
    assert valid(catalog, date="2024-05-16").date == D(2024, 5, 16)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"indicator": "joint_exercize", "date": "2024-05-01"},
            "indicator",
            "indicator: 'joint_exercize' is not in the catalog; did you mean 'joint_exercise'?",
        ),
        (
            {"date": "2024-05-01"},
            "indicator",
            "indicator: is required (an id from the indicator catalog)",
        ),
        (
            {"indicator": "", "date": "2024-05-01"},
            "indicator",
            "indicator: is required (an id from the indicator catalog)",
        ),
        (
            {"indicator": 7, "date": "2024-05-01"},
            "indicator",
            "indicator: expected an indicator id, got int",
        ),
        (
            {"indicator": "joint_exercise"},
            "date",
            "date: is required (YYYY-MM-DD, e.g. '2024-05-01')",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-13-45"},
            "date",
            "date: '2024-13-45' is not a valid date (month must be in 1..12): "
            "use YYYY-MM-DD, e.g. '2024-05-01'",
        ),
        (
            {"indicator": "joint_exercise", "date": "2023-02-29"},
            "date",
            "date: '2023-02-29' is not a valid date (day is out of range for month): "
            "use YYYY-MM-DD, e.g. '2024-05-01'",
        ),
        (
            {"indicator": "joint_exercise", "date": "yesterday"},
            "date",
            "date: 'yesterday' is not a valid date: use YYYY-MM-DD, e.g. '2024-05-01'",
        ),
        (
            {"indicator": "joint_exercise", "date": "01/05/2024"},
            "date",
            "date: '01/05/2024' is not a valid date: use YYYY-MM-DD, e.g. '2024-05-01'",
        ),
        (
            {"indicator": "joint_exercise", "date": 20240501},
            "date",
            "date: expected a date as YYYY-MM-DD, got int 20240501",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-17"},
            "date",
            "date: 2024-05-17 is in the future (today is 2024-05-15); "
            "date an observation by when it happened",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "value": -1},
            "value",
            "value: a count is a whole number of events ≥ 0, got -1 "
            "('joint_exercise' counts exercises; log one row per event)",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "value": 1.5},
            "value",
            "value: a count is a whole number of events ≥ 0, got 1.5 "
            "('joint_exercise' counts exercises; log one row per event)",
        ),
        (
            {"indicator": "basing_rights", "date": "2024-05-01", "value": 2},
            "value",
            "value: a milestone is logged with value 1 (it happened), got 2; "
            "to withdraw a report of 'basing_rights', retract the observation",
        ),
        (
            {"indicator": "basing_rights", "date": "2024-05-01", "value": 0},
            "value",
            "value: a milestone is logged with value 1 (it happened), got 0; "
            "to withdraw a report of 'basing_rights', retract the observation",
        ),
        (
            {"indicator": "dual_use_trade_growth", "date": "2024-05-01", "value": math.nan},
            "value",
            "value: must be a finite number, got nan",
        ),
        (
            {"indicator": "dual_use_trade_growth", "date": "2024-05-01", "value": "inf"},
            "value",
            "value: must be a finite number, got 'inf'",
        ),
        (
            {"indicator": "dual_use_trade_growth", "date": "2024-05-01", "value": -math.inf},
            "value",
            "value: must be a finite number, got -inf",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "value": "abc"},
            "value",
            "value: 'abc' is not a number",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "value": True},
            "value",
            "value: must be a number, not a boolean (True)",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "value": [1]},
            "value",
            "value: must be a number, got list [1]",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "colour": "red"},
            "colour",
            "colour: unknown field; the fields are 'indicator', 'date', 'value', 'grade', "
            "'source', 'url', 'note', 'analyst'",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "sorce": "x"},
            "sorce",
            "sorce: unknown field; did you mean 'source'?; the fields are 'indicator', "
            "'date', 'value', 'grade', 'source', 'url', 'note', 'analyst'",
        ),
        (
            {"indicator": "joint_exercise", "date": "2024-05-01", "source": 5},
            "source",
            "source: input should be a valid string",
        ),
    ],
)
def test_refusals_name_the_field_and_the_reason(catalog, data, field, message):
    error = refused(catalog, data)
    assert error.field == field
    assert str(error) == message
    assert error.reason == message.removeprefix(f"{field}: ")


def test_unknown_indicator_is_its_own_class(catalog):
    error = refused(catalog, {"indicator": "joint_exercize", "date": "2024-05-01"})
    assert isinstance(error, UnknownIndicator)


@pytest.mark.parametrize("grade", ["G7", "B9", "2B", 12])
def test_bad_grades(catalog, grade):
    error = refused(catalog, {"indicator": "joint_exercise", "date": "2024-05-01", "grade": grade})
    assert isinstance(error, InvalidGrade)
    assert error.field == "grade"
    assert str(error) == (
        f"grade: {grade!r} is not an Admiralty grade: use a letter A–F (source "
        "reliability) and a digit 1–6 (credibility), e.g. 'B2'"
    )


def test_non_mapping_input(catalog):
    error = refused(catalog, ["joint_exercise", "2024-05-01"])
    assert str(error) == "observation: expected a mapping of fields, got list"


def test_errors_are_value_errors_and_pickle(catalog):
    error = refused(catalog, {"indicator": "joint_exercise", "date": "yesterday"})
    assert isinstance(error, SignpostIndicatorError)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error.with_row(4)))
    assert str(copy) == (
        "row 4: date: 'yesterday' is not a valid date: use YYYY-MM-DD, e.g. '2024-05-01'"
    )
    assert (copy.field, copy.row) == ("date", 4)


def test_context_prefix():
    error = InvalidObservation("weight", "must be in (0, 1]", context="observation 3")
    assert str(error) == "observation 3: weight: must be in (0, 1]"
    assert error.with_row(9).location == "row 9"


def test_observation_model_is_strict():
    with pytest.raises(pydantic.ValidationError):
        Observation(indicator="x", date=D(2024, 1, 1), colour="red")
    with pytest.raises(pydantic.ValidationError):
        Observation(indicator="x", date=D(2024, 1, 1), value=math.inf)
    with pytest.raises(pydantic.ValidationError):
        Observation(indicator="x", date=D(2024, 1, 1), grade="Z9")
    obs = Observation(indicator="x", date=D(2024, 1, 1), grade="a1")
    assert obs.grade == "A1"
    with pytest.raises(pydantic.ValidationError):
        obs.value = 2.0


# ------------------------------------------------------------------------------------ CSV

GOOD_CSV = """\
date,indicator,value,grade,source,url,note
2024-01-10,joint_exercise,,,MoD,https://example.org/a,
2024-02-01,joint_patrol,2,a1,TASS,,"two legs, one patrol"

2024-03-05,dual_use_trade_growth,-12.5,C3,customs,,
2024-04-01,joint_command,1,,,,
"""


def test_read_a_good_file(catalog, tmp_path):
    path = tmp_path / "observations.csv"
    path.write_text(GOOD_CSV, encoding="utf-8")
    observations, errors = read_observations_csv(path, catalog, TODAY)
    assert errors == []
    assert [(o.date, o.indicator, o.value, o.grade) for o in observations] == [
        (D(2024, 1, 10), "joint_exercise", 1.0, "B2"),
        (D(2024, 2, 1), "joint_patrol", 2.0, "A1"),
        (D(2024, 3, 5), "dual_use_trade_growth", -12.5, "C3"),
        (D(2024, 4, 1), "joint_command", 1.0, "B2"),
    ]
    assert observations[0].source == "MoD"
    assert observations[0].url == "https://example.org/a"
    assert observations[1].note == "two legs, one patrol"


def test_read_from_a_text_stream_with_bom_and_free_column_order(catalog):
    text = "\ufeffIndicator, Date ,analyst\njoint_exercise,2024-01-10,ak\n"
    observations, errors = read_observations_csv(io.StringIO(text), catalog, TODAY)
    assert errors == []
    assert observations[0].analyst == "ak"
    assert observations[0].grade == "B2"


def test_default_grade_comes_from_the_table(catalog):
    text = "date,indicator,grade\n2024-01-10,joint_exercise,\n"
    table = GradeTable.from_mapping({"default": "D4"})
    observations, _ = read_observations_csv(io.StringIO(text), catalog, TODAY, table)
    assert observations[0].grade == "D4"


BAD_CSV = """\
date,indicator,value,grade,source,url,note
2024-01-10,joint_exercise,1,B2,,,
2024-13-45,joint_exercise,1,B2,,,
2024-01-11,joint_exercize,1,B2,,,
"2024-01-12","joint_exercise",1,B2,,,"a note
over two lines"
2024-01-13,joint_exercise,1.5,B2,,,
2024-01-14,joint_exercise,1,G7,,,
2024-01-15,joint_exercise,1,B2,,,,extra
"""

BAD_LINES = [
    "row 3: date: '2024-13-45' is not a valid date (month must be in 1..12): "
    "use YYYY-MM-DD, e.g. '2024-05-01'",
    "row 4: indicator: 'joint_exercize' is not in the catalog; did you mean 'joint_exercise'?",
    "row 7: value: a count is a whole number of events ≥ 0, got '1.5' "
    "('joint_exercise' counts exercises; log one row per event)",
    "row 8: grade: 'G7' is not an Admiralty grade: use a letter A–F (source reliability) "
    "and a digit 1–6 (credibility), e.g. 'B2'",
    "row 9: columns: 8 values but the header has 7 columns (quote text that contains commas)",
]


def test_bad_rows_raise_with_every_line_number(catalog, tmp_path):
    path = tmp_path / "observations.csv"
    path.write_text(BAD_CSV, encoding="utf-8")
    with pytest.raises(ObservationFileError) as info:
        read_observations_csv(path, catalog, TODAY)
    error = info.value
    assert [str(e) for e in error.errors] == BAD_LINES
    assert [e.row for e in error.errors] == [3, 4, 7, 8, 9]
    assert [e.field for e in error.errors] == ["date", "indicator", "value", "grade", "columns"]
    assert str(error) == (
        "observations.csv: 5 errors; nothing was imported:\n"
        + "\n".join(f"  {line}" for line in BAD_LINES)
    )
    assert isinstance(error, SignpostIndicatorError)


def test_skip_bad_returns_the_good_rows_and_the_errors(catalog):
    observations, errors = read_observations_csv(
        io.StringIO(BAD_CSV), catalog, TODAY, skip_bad=True
    )
    assert [o.date for o in observations] == [D(2024, 1, 10), D(2024, 1, 12)]
    assert observations[1].note == "a note\nover two lines"
    assert [str(e) for e in errors] == BAD_LINES


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (
            "indicator,value",
            "missing column(s) 'date' (expected date,indicator,value,grade,source,url,note)",
        ),
        (
            "dat,indicator,valeu",
            "missing column(s) 'date'; unknown column 'dat'; did you mean 'date'?; "
            "unknown column 'valeu'; did you mean 'value'? "
            "(expected date,indicator,value,grade,source,url,note)",
        ),
        (
            "date,indicator,grade,grade",
            "duplicated column(s) 'grade' (expected date,indicator,value,grade,source,url,note)",
        ),
    ],
)
def test_a_wrong_header_names_the_columns(catalog, header, reason):
    text = header + "\n2024-01-10,joint_exercise,1\n"
    with pytest.raises(ObservationFileError) as info:
        read_observations_csv(io.StringIO(text), catalog, TODAY, skip_bad=True)
    (error,) = info.value.errors
    assert (error.field, error.row, error.reason) == ("header", 1, reason)
    assert str(info.value) == f"1 error; nothing was imported:\n  row 1: header: {reason}"


def test_an_empty_file(catalog):
    with pytest.raises(ObservationFileError, match="the file is empty; expected the header"):
        read_observations_csv(io.StringIO(""), catalog, TODAY)


def test_a_header_only_file(catalog):
    assert read_observations_csv(io.StringIO(",".join(CSV_COLUMNS) + "\n"), catalog, TODAY) == (
        [],
        [],
    )
