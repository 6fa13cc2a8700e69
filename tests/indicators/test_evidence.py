import datetime as dt
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indicators import (
    AGGREGATE_COLUMNS,
    AggregateRow,
    Evidence,
    InvalidObservation,
    PeriodGrid,
    SignpostIndicatorError,
    UnknownIndicator,
    aggregate_observations,
    build_evidence,
    evidence_from_aggregates,
    make_grid,
    validate_observation,
    weighted_observations,
)

D = dt.date
DRILL, CUEING, TRADE = 0, 1, 2
YEAR_2024 = make_grid("quarter", D(2024, 1, 1), D(2024, 12, 31))  # 91, 91, 92, 92 days
MID_MAY = D(2024, 5, 15)  # day 45 of the 91 days of 2024Q2
UP_TO_MID_MAY = make_grid("quarter", D(2024, 1, 1), MID_MAY)


def col(evidence, j):
    return evidence.counts[:, j].tolist(), evidence.exposure[:, j].tolist()


# --------------------------------------------------------------------------- zeros, exposure


def test_no_observations_is_evidence_too(small_indicators):
    ev = build_evidence(YEAR_2024, small_indicators, [])
    assert (ev.n_periods, ev.n_indicators) == (4, 3)
    assert ev.indicator_ids == ("drill", "cueing", "trade")
    assert ev.kinds == ("count", "milestone", "signal")
    np.testing.assert_array_equal(ev.counts, np.zeros((4, 3)))
    np.testing.assert_array_equal(ev.exposure, [[1, 1, 0]] * 4)
    np.testing.assert_array_equal(ev.sumsq, np.zeros((4, 3)))
    assert ev.as_of is None
    assert ev.counts.dtype == ev.exposure.dtype == ev.sumsq.dtype == np.float64


def test_the_current_period_enters_with_its_elapsed_fraction(small_indicators):
    ev = build_evidence(UP_TO_MID_MAY, small_indicators, [], as_of=MID_MAY)
    assert ev.exposure[:, DRILL].tolist() == [1.0, 45 / 91]
    assert ev.exposure[:, CUEING].tolist() == [1.0, 45 / 91]
    assert ev.exposure[:, TRADE].tolist() == [0.0, 0.0]
    assert ev.as_of == MID_MAY


def test_as_of_on_the_last_day_finishes_the_period(small_indicators):
    ev = build_evidence(UP_TO_MID_MAY, small_indicators, [], as_of=D(2024, 6, 30))
    assert ev.exposure[:, DRILL].tolist() == [1.0, 1.0]


def test_periods_after_as_of_have_no_exposure(small_indicators):
    ev = build_evidence(YEAR_2024, small_indicators, [], as_of=MID_MAY)
    assert ev.exposure[:, DRILL].tolist() == [1.0, 45 / 91, 0.0, 0.0]
    assert ev.exposure[:, CUEING].tolist() == [1.0, 45 / 91, 0.0, 0.0]


# ------------------------------------------------------------------------------------ counts


def test_counts_are_weighted_sums_per_period(small_indicators):
    observations = [
        (D(2024, 1, 10), "drill", 1, 1.0),
        (D(2024, 2, 1), "drill", 2, 0.5),
        (D(2024, 3, 31), "drill", 1, 0.7225),
        (D(2024, 4, 1), "drill", 3, 0.49),
        (D(2024, 12, 31), "drill", 1, 0.04),
    ]
    ev = build_evidence(YEAR_2024, small_indicators, observations)
    assert ev.counts[:, DRILL].tolist() == pytest.approx([2.7225, 1.47, 0.0, 0.04], abs=1e-15)
    assert ev.exposure[:, DRILL].tolist() == [1.0, 1.0, 1.0, 1.0]
    np.testing.assert_array_equal(ev.sumsq, np.zeros((4, 3)))


def test_the_as_of_cut_and_the_grid_cut(small_indicators):
    observations = [
        (D(2023, 12, 31), "drill", 1, 1.0),  # before the grid
        (D(2024, 1, 1), "drill", 1, 1.0),
        (D(2024, 5, 15), "drill", 1, 0.5),  # on as_of: kept
        (D(2024, 5, 16), "drill", 1, 1.0),  # after as_of, same period: cut
        (D(2024, 7, 1), "drill", 1, 1.0),  # after the grid
        (D(2024, 5, 16), "trade", 50.0, 1.0),
    ]
    ev = build_evidence(UP_TO_MID_MAY, small_indicators, observations, as_of=MID_MAY)
    assert col(ev, DRILL) == ([1.0, 0.5], [1.0, 45 / 91])
    assert col(ev, TRADE) == ([0.0, 0.0], [0.0, 0.0])
    # without as_of, the grid alone cuts
    ev = build_evidence(UP_TO_MID_MAY, small_indicators, observations)
    assert col(ev, DRILL) == ([1.0, 1.5], [1.0, 1.0])


def test_observations_of_other_indicators_are_ignored(small_indicators):
    observations = [
        (D(2024, 1, 10), "drill", 1, 1.0),
        (D(2024, 1, 10), "not_used_here", 7, 5.0),  # even an invalid weight: never read
        (D(2024, 1, 10), "not_used_here", 7, float("nan")),
    ]
    ev = build_evidence(YEAR_2024, small_indicators[:1], observations)
    assert ev.indicator_ids == ("drill",)
    assert ev.counts[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]


# -------------------------------------------------------------------------------- milestones


def test_a_milestone_is_at_risk_until_its_first_occurrence(small_indicators):
    observations = [(D(2024, 5, 2), "cueing", 1, 0.5)]
    ev = build_evidence(YEAR_2024, small_indicators, observations)
    assert col(ev, CUEING) == ([0.0, 0.5, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0])


def test_later_reports_corroborate_without_adding_periods(small_indicators):
    observations = [
        (D(2024, 5, 2), "cueing", 1, 0.5),
        (D(2024, 6, 1), "cueing", 1, 0.3),  # worse grade: does not lower the weight
        (D(2024, 11, 20), "cueing", 1, 0.9),  # better grade, later period: raises it
    ]
    ev = build_evidence(YEAR_2024, small_indicators, observations)
    assert col(ev, CUEING) == ([0.0, 0.9, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0])
    ev = build_evidence(YEAR_2024, small_indicators, observations[:2])
    assert col(ev, CUEING) == ([0.0, 0.5, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0])


def test_a_corroborating_report_after_as_of_is_cut(small_indicators):
    observations = [(D(2024, 2, 2), "cueing", 1, 0.5), (D(2024, 5, 20), "cueing", 1, 1.0)]
    ev = build_evidence(UP_TO_MID_MAY, small_indicators, observations, as_of=MID_MAY)
    assert col(ev, CUEING) == ([0.5, 0.0], [1.0, 0.0])


def test_an_occurrence_in_the_unfinished_period(small_indicators):
    a1 = build_evidence(
        UP_TO_MID_MAY, small_indicators, [(D(2024, 4, 10), "cueing", 1, 1.0)], as_of=MID_MAY
    )
    assert col(a1, CUEING) == ([0.0, 1.0], [1.0, 1.0])
    graded = build_evidence(
        UP_TO_MID_MAY, small_indicators, [(D(2024, 4, 10), "cueing", 1, 0.5)], as_of=MID_MAY
    )
    counts, exposure = col(graded, CUEING)
    assert counts == [0.0, 0.5]
    # weight 0.5 of a resolved period + 0.5 of the 45/91 elapsed non-occurrence period
    assert exposure == pytest.approx([1.0, 0.5 + 0.5 * 45 / 91], rel=1e-15)
    assert exposure[1] == pytest.approx(0.7472527472527473, rel=1e-15)


def test_a_milestone_reached_before_the_window_is_no_evidence(small_indicators):
    observations = [(D(2023, 12, 30), "cueing", 1, 0.2), (D(2024, 5, 2), "cueing", 1, 1.0)]
    ev = build_evidence(YEAR_2024, small_indicators, observations)
    assert col(ev, CUEING) == ([0.0] * 4, [0.0] * 4)


# ----------------------------------------------------------------------------------- signals


def test_signal_sufficient_statistics(small_indicators):
    observations = [
        (D(2024, 1, 31), "trade", 10.0, 0.5),
        (D(2024, 2, 29), "trade", -4.0, 1.0),
        (D(2024, 9, 30), "trade", 20.0, 0.49),
    ]
    ev = build_evidence(YEAR_2024, small_indicators, observations, as_of=D(2024, 12, 1))
    assert ev.counts[:, TRADE].tolist() == pytest.approx([1.0, 0.0, 9.8, 0.0], rel=1e-15)
    assert ev.exposure[:, TRADE].tolist() == pytest.approx([1.5, 0.0, 0.49, 0.0], rel=1e-15)
    assert ev.sumsq[:, TRADE].tolist() == pytest.approx([66.0, 0.0, 196.0, 0.0], rel=1e-15)
    assert ev.sumsq[:, DRILL].tolist() == [0.0] * 4


# ---------------------------------------------------------------------------- input checking


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ((D(2024, 1, 2), "drill", 1, 0.0), "observation 1: weight: must be in (0, 1], got 0.0"),
        ((D(2024, 1, 2), "drill", 1, 1.5), "observation 1: weight: must be in (0, 1], got 1.5"),
        (
            (D(2024, 1, 2), "trade", float("nan"), 1.0),
            "observation 1: value: must be a finite number, got nan",
        ),
        ((D(2024, 1, 2), "drill", -1, 1.0), "observation 1: value: a count must be ≥ 0, got -1"),
        ((None, "drill", 1, 1.0), "observation 1: date: is missing"),
    ],
)
def test_invalid_used_observations_raise(small_indicators, row, message):
    observations = [(D(2024, 1, 1), "drill", 1, 1.0), row]
    with pytest.raises(InvalidObservation) as info:
        build_evidence(YEAR_2024, small_indicators, observations)
    assert str(info.value) == message


def test_input_shape_errors(small_indicators):
    with pytest.raises(SignpostIndicatorError, match="missing column\\(s\\) 'value', 'weight'"):
        build_evidence(YEAR_2024, small_indicators, pd.DataFrame({"date": [], "indicator": []}))
    with pytest.raises(SignpostIndicatorError, match="expected \\(date, indicator, value, weight"):
        build_evidence(YEAR_2024, small_indicators, [(D(2024, 1, 1), "drill")])
    with pytest.raises(SignpostIndicatorError, match="'drill' is given twice"):
        build_evidence(YEAR_2024, small_indicators + small_indicators[:1], [])
    with pytest.raises(SignpostIndicatorError, match="expected Indicator objects, got str"):
        build_evidence(YEAR_2024, ["drill"], [])


def test_a_dataframe_gives_the_same_evidence_as_tuples(small_indicators):
    tuples = [
        (D(2024, 1, 10), "drill", 2, 0.5),
        (D(2024, 4, 10), "cueing", 1, 0.7),
        (D(2024, 8, 1), "trade", 3.5, 1.0),
    ]
    frame = pd.DataFrame(tuples, columns=["date", "indicator", "value", "weight"])
    expected = build_evidence(YEAR_2024, small_indicators, tuples, as_of=D(2024, 9, 1))
    assert build_evidence(YEAR_2024, small_indicators, frame, as_of=D(2024, 9, 1)) == expected
    stamped = frame.assign(date=pd.to_datetime(frame["date"]) + pd.Timedelta(hours=23))
    assert build_evidence(YEAR_2024, small_indicators, stamped, as_of=D(2024, 9, 1)) == expected
    zoned = stamped.assign(date=stamped["date"].dt.tz_localize("Asia/Shanghai"))
    assert build_evidence(YEAR_2024, small_indicators, zoned, as_of=D(2024, 9, 1)) == expected


def test_a_catalog_can_stand_for_the_indicator_list(catalog):
    grid = make_grid("year", D(2020, 1, 1), D(2023, 12, 31))
    ev = build_evidence(grid, catalog, [(D(2021, 3, 1), "joint_patrol", 1, 1.0)])
    assert ev.indicator_ids == catalog.ids
    assert ev.counts[:, ev.column("joint_patrol")].tolist() == [0.0, 1.0, 0.0, 0.0]


def test_empty_grid_and_no_indicators(small_indicators):
    obs = [(D(2024, 1, 10), "drill", 1, 1.0)]
    ev = build_evidence(PeriodGrid("quarter", ()), small_indicators, obs, as_of=D(2023, 1, 1))
    assert ev.counts.shape == ev.exposure.shape == ev.sumsq.shape == (0, 3)
    ev = build_evidence(YEAR_2024, [], obs)
    assert ev.counts.shape == (4, 0)


def test_weighted_observations(catalog, small_indicators):
    today = D(2024, 12, 31)
    raw = [
        {"indicator": "joint_exercise", "date": "2024-02-01", "grade": "A1", "value": 2},
        {"indicator": "joint_exercise", "date": "2024-02-02"},
        {"indicator": "satellite_cueing", "date": "2024-08-02", "grade": "c3"},
    ]
    observations = [validate_observation(r, catalog, today) for r in raw]
    assert weighted_observations(observations) == [
        (D(2024, 2, 1), "joint_exercise", 2.0, 1.0),
        (D(2024, 2, 2), "joint_exercise", 1.0, pytest.approx(0.7225)),
        (D(2024, 8, 2), "satellite_cueing", 1.0, pytest.approx(0.49)),
    ]
    ev = build_evidence(
        YEAR_2024,
        [catalog["joint_exercise"], catalog["satellite_cueing"]],
        weighted_observations(observations),
    )
    assert col(ev, 0)[0] == pytest.approx([2.7225, 0.0, 0.0, 0.0])
    assert col(ev, 1) == ([0.0, 0.0, pytest.approx(0.49), 0.0], [1.0, 1.0, 1.0, 0.0])


# ------------------------------------------------------------------------ the aggregate path

OBSERVATIONS = [
    (D(2023, 11, 5), "drill", 1, 1.0),  # before the grid: ignored
    (D(2024, 1, 10), "drill", 1, 1.0),
    (D(2024, 2, 1), "drill", 2, 0.5),
    (D(2024, 2, 1), "drill", 1, 0.7225),
    (D(2024, 5, 2), "cueing", 1, 0.5),
    (D(2024, 5, 3), "cueing", 1, 0.9),
    (D(2024, 2, 29), "trade", -4.0, 1.0),
    (D(2024, 3, 1), "trade", 10.0, 0.5),
    (D(2024, 4, 2), "trade", 2.0, 0.25),
    (D(2024, 8, 2), "drill", 1, 1.0),  # after as_of: ignored
    (D(2024, 5, 1), "elsewhere", 1, 1.0),  # not an indicator here: ignored
]
AS_OF = D(2024, 6, 10)  # 2024Q2: 30 + 31 + 10 = 71 of 91 days


def test_aggregate_observations_are_the_group_by_rows(small_indicators):
    rows = aggregate_observations(YEAR_2024, small_indicators, OBSERVATIONS, AS_OF)
    assert list(rows.columns) == list(AGGREGATE_COLUMNS)
    records = [tuple(r) for r in rows.itertuples(index=False)]
    assert records == [
        ("drill", 0, 3, 2.2225, pytest.approx(2.7225), pytest.approx(3.7225), 1.0),
        ("cueing", 1, 2, pytest.approx(1.4), pytest.approx(1.4), pytest.approx(1.4), 0.9),
        ("trade", 0, 2, 1.5, 1.0, 66.0, 1.0),
        ("trade", 1, 1, 0.25, 0.5, 1.0, 0.25),
    ]


def test_build_evidence_by_hand(small_indicators):
    ev = build_evidence(YEAR_2024, small_indicators, OBSERVATIONS, AS_OF)
    e = 71 / 91
    assert col(ev, DRILL) == ([pytest.approx(2.7225), 0.0, 0.0, 0.0], [1.0, e, 0.0, 0.0])
    assert col(ev, CUEING) == ([0.0, 0.9, 0.0, 0.0], [1.0, pytest.approx(0.9 + 0.1 * e), 0, 0])
    assert col(ev, TRADE) == ([1.0, 0.5, 0.0, 0.0], [1.5, 0.25, 0.0, 0.0])
    assert ev.sumsq[:, TRADE].tolist() == [66.0, 1.0, 0.0, 0.0]


def assert_same(a, b):
    assert a.grid == b.grid and a.indicator_ids == b.indicator_ids and a.as_of == b.as_of
    np.testing.assert_allclose(a.counts, b.counts, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a.exposure, b.exposure, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a.sumsq, b.sumsq, rtol=1e-13, atol=1e-15)
    assert a.hash() == b.hash()


def per_observation_rows(observations):
    """One aggregate row per observation, keyed by its date (SQL: GROUP BY indicator, date)."""
    return [
        {
            "indicator": indicator,
            "period": day,
            "n_obs": 1,
            "sum_w": w,
            "sum_wv": w * v,
            "sum_wvv": w * v * v,
            "max_w": w,
        }
        for day, indicator, v, w in observations
    ]


def test_build_evidence_equals_evidence_from_hand_made_aggregates(small_indicators):
    expected = build_evidence(YEAR_2024, small_indicators, OBSERVATIONS, AS_OF)
    by_period = [
        AggregateRow("drill", 0, 3, 2.2225, 2.7225, 3.7225, 1.0),
        AggregateRow("cueing", 1, 2, 1.4, 1.4, 1.4, 0.9),
        AggregateRow("trade", 0, 2, 1.5, 1.0, 66.0, 1.0),
        AggregateRow("trade", 1, 1, 0.25, 0.5, 1.0, 0.25),
        AggregateRow("elsewhere", 1, 1, 1.0, 1.0, 1.0, 1.0),
    ]
    assert_same(evidence_from_aggregates(YEAR_2024, small_indicators, by_period, AS_OF), expected)
    frame = pd.DataFrame(by_period)
    assert_same(evidence_from_aggregates(YEAR_2024, small_indicators, frame, AS_OF), expected)
    by_day = per_observation_rows(OBSERVATIONS)
    assert_same(evidence_from_aggregates(YEAR_2024, small_indicators, by_day, AS_OF), expected)


def test_aggregate_rows_for_one_period_are_merged(small_indicators):
    rows = [
        AggregateRow("drill", 2, 1, 0.5, 1.0, 2.0, 0.5),
        AggregateRow("drill", 2, 2, 1.0, 2.0, 2.0, 0.5),
        AggregateRow("cueing", 3, 1, 0.4, 0.4, 0.4, 0.4),
        AggregateRow("cueing", 2, 1, 0.3, 0.3, 0.3, 0.3),
    ]
    ev = evidence_from_aggregates(YEAR_2024, small_indicators, rows)
    assert col(ev, DRILL) == ([0.0, 0.0, 3.0, 0.0], [1.0] * 4)
    assert col(ev, CUEING) == ([0.0, 0.0, 0.4, 0.0], [1.0, 1.0, 1.0, 0.0])


def test_aggregate_rows_after_as_of_or_before_the_grid(small_indicators):
    rows = [
        AggregateRow("drill", 1, 1, 1.0, 1.0, 1.0, 1.0),
        AggregateRow("drill", 2, 1, 1.0, 1.0, 1.0, 1.0),  # period starts after as_of
        AggregateRow("drill", -1, 1, 1.0, 1.0, 1.0, 1.0),  # before the grid
        AggregateRow("cueing", -3, 1, 1.0, 1.0, 1.0, 1.0),  # reached before the window
        AggregateRow("trade", D(2024, 6, 11), 1, 1.0, 5.0, 25.0, 1.0),  # dated after as_of
        AggregateRow("trade", D(2024, 6, 10), 1, 1.0, 3.0, 9.0, 1.0),
    ]
    ev = evidence_from_aggregates(YEAR_2024, small_indicators, rows, AS_OF)
    assert col(ev, DRILL) == ([0.0, 1.0, 0.0, 0.0], [1.0, 71 / 91, 0.0, 0.0])
    assert col(ev, CUEING) == ([0.0] * 4, [0.0] * 4)
    assert col(ev, TRADE) == ([0.0, 3.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0])


def test_aggregate_rows_from_a_database_driver(small_indicators):
    class Row(tuple):  # SQLAlchemy rows expose a mapping view as ._mapping
        @property
        def _mapping(self):
            return dict(zip(AGGREGATE_COLUMNS, self, strict=True))

    rows = [Row(("drill", "2024-04-01", 2, 2.0, 2.0, 2.0, 1.0))]
    ev = evidence_from_aggregates(YEAR_2024, small_indicators, rows)
    assert ev.counts[:, DRILL].tolist() == [0.0, 2.0, 0.0, 0.0]
    assert evidence_from_aggregates(YEAR_2024, small_indicators, []).counts.shape == (4, 3)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            ("drill", 0, 1, 1.0, 1.0, 1.0, 1.5),
            "aggregate row 0: max_w: must be in [0, 1], got 1.5",
        ),
        (
            ("drill", 0, -1, 1.0, 1.0, 1.0, 1.0),
            "aggregate row 0: n_obs: must be a whole number ≥ 0, got -1.0",
        ),
        (
            ("drill", 0, 1, -1.0, 1.0, 1.0, 1.0),
            "aggregate row 0: sum_w: must be ≥ 0, got -1.0",
        ),
        (
            ("drill", 0, 1, 1.0, 1.0, 1.0, 0.0),
            "aggregate row 0: max_w: must be > 0 when n_obs > 0, got 0.0",
        ),
        (
            ("drill", 0.5, 1, 1.0, 1.0, 1.0, 1.0),
            "aggregate row 0: period: expected a whole period index or a date, got 0.5",
        ),
        (("drill", None, 1, 1.0, 1.0, 1.0, 1.0), "aggregate row 0: period: is missing"),
    ],
)
def test_invalid_aggregate_rows(small_indicators, row, message):
    with pytest.raises(InvalidObservation) as info:
        evidence_from_aggregates(YEAR_2024, small_indicators, [row])
    assert str(info.value) == message


def test_aggregate_column_errors(small_indicators):
    frame = pd.DataFrame({"indicator": ["drill"], "period": [0], "n_obs": [1]})
    with pytest.raises(SignpostIndicatorError) as info:
        evidence_from_aggregates(YEAR_2024, small_indicators, frame)
    assert str(info.value) == (
        "aggregates: missing column(s) 'sum_w', 'sum_wv', 'sum_wvv', 'max_w'; expected "
        "'indicator', 'period', 'n_obs', 'sum_w', 'sum_wv', 'sum_wvv', 'max_w'"
    )
    with pytest.raises(SignpostIndicatorError, match="aggregates: expected rows of"):
        evidence_from_aggregates(YEAR_2024, small_indicators, [("drill", 0, 1)])


# ---------------------------------------------------------------------- the Evidence object


@pytest.fixture
def evidence(small_indicators):
    return build_evidence(YEAR_2024, small_indicators, OBSERVATIONS, AS_OF)


def test_column_lookup(evidence):
    assert evidence.column("trade") == 2
    with pytest.raises(UnknownIndicator) as info:
        evidence.column("trad")
    assert str(info.value) == "indicator: 'trad' is not in this evidence; did you mean 'trade'?"


def test_arrays_are_read_only(evidence):
    with pytest.raises(ValueError, match="read-only"):
        evidence.counts[0, 0] = 5.0


def test_json_round_trip(evidence):
    data = json.loads(json.dumps(evidence.to_dict()))
    assert data["starts"][0] == "2024-01-01"
    assert data["as_of"] == "2024-06-10"
    back = Evidence.from_dict(data)
    assert back == evidence
    assert back.hash() == evidence.hash()


def test_from_dict_errors(evidence):
    data = evidence.to_dict()
    with pytest.raises(SignpostIndicatorError, match="unknown key 'count'; did you mean 'counts'"):
        Evidence.from_dict({**data, "count": []})
    with pytest.raises(SignpostIndicatorError, match="missing 'sumsq'"):
        Evidence.from_dict({k: v for k, v in data.items() if k != "sumsq"})
    with pytest.raises(SignpostIndicatorError, match="counts: expected 4 × 3 numbers"):
        Evidence.from_dict({**data, "counts": [[1.0]]})


def test_hash_is_sensitive_to_content(evidence, small_indicators):
    digest = evidence.hash()
    assert len(digest) == 64 and int(digest, 16) >= 0
    other_as_of = build_evidence(YEAR_2024, small_indicators, OBSERVATIONS, D(2024, 6, 11))
    assert other_as_of.hash() != digest
    counts = evidence.counts.copy()
    counts[0, DRILL] += 0.01
    changed = Evidence.from_dict({**evidence.to_dict(), "counts": counts})
    assert changed.hash() != digest
    reordered = build_evidence(YEAR_2024, small_indicators[::-1], OBSERVATIONS, AS_OF)
    assert reordered.hash() != digest
    assert {evidence: 1}[Evidence.from_dict(evidence.to_dict())] == 1


def test_hash_ignores_float_noise(evidence):
    noisy = Evidence.from_dict(
        {**evidence.to_dict(), "counts": evidence.counts * (1 + 1e-15), "sumsq": evidence.sumsq}
    )
    assert not np.array_equal(noisy.counts, evidence.counts)
    assert noisy.hash() == evidence.hash()
    sumsq = np.where(evidence.sumsq == 0, -0.0, evidence.sumsq)
    assert np.signbit(sumsq).any()
    negative_zero = Evidence.from_dict({**evidence.to_dict(), "sumsq": sumsq})
    assert negative_zero.hash() == evidence.hash()


def test_hash_is_stable_across_processes(evidence):
    script = (
        "import json, sys\n"
        "from indicators import Evidence\n"
        "print(Evidence.from_dict(json.loads(sys.stdin.read())).hash())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(evidence.to_dict()),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert result.stdout.strip() == evidence.hash()


def test_to_frame(evidence):
    frame = evidence.to_frame()
    assert len(frame) == 12
    row = frame[(frame["period"] == "2024Q1") & (frame["indicator"] == "trade")].iloc[0]
    assert (row["counts"], row["exposure"], row["sumsq"], row["kind"]) == (1.0, 1.5, 66.0, "signal")
    assert row["start"] == D(2024, 1, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"counts": np.zeros((3, 3))}, "counts has shape (3, 3), expected (4, 3)"),
        ({"kinds": ("count", "milestone")}, "2 kinds for 3 indicators"),
        ({"kinds": ("count", "milestone", "sign")}, "kind 'sign' is not one of"),
        ({"indicator_ids": ("a", "a", "b")}, "indicator_ids repeat"),
        ({"exposure": np.full((4, 3), np.nan)}, "exposure holds NaN or infinite values"),
        ({"exposure": -np.ones((4, 3))}, "exposure and sumsq must be ≥ 0"),
        ({"counts": np.full((4, 3), 2.0)}, "a milestone's counts exceed its exposure"),
        ({"counts": np.full((4, 3), -1.0)}, "counts of counts and milestones must be ≥ 0"),
        ({"sumsq": np.ones((4, 3))}, "sumsq must be 0 for counts and milestones"),
    ],
)
def test_evidence_validates_its_arrays(change, message):
    fields = {
        "grid": YEAR_2024,
        "indicator_ids": ("d", "m", "s"),
        "kinds": ("count", "milestone", "signal"),
        "counts": np.zeros((4, 3)),
        "exposure": np.ones((4, 3)),
        "sumsq": np.zeros((4, 3)),
    }
    with pytest.raises(
        SignpostIndicatorError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        Evidence(**{**fields, **change})


def test_evidence_equality():
    fields = {
        "grid": YEAR_2024,
        "indicator_ids": ("d",),
        "kinds": ("count",),
        "counts": np.zeros((4, 1)),
        "exposure": np.ones((4, 1)),
        "sumsq": np.zeros((4, 1)),
    }
    assert Evidence(**fields) == Evidence(**fields)
    assert Evidence(**fields) != Evidence(**{**fields, "exposure": np.full((4, 1), 0.5)})
    assert Evidence(**fields) != Evidence(**{**fields, "as_of": D(2024, 12, 31)})
    assert Evidence(**fields) != "evidence"


# ------------------------------------------------------------------- properties and scale

KNOWN = ("drill", "trade")
DAYS = st.dates(min_value=D(2023, 10, 1), max_value=D(2025, 3, 31))
OBSERVATION = st.tuples(
    DAYS,
    st.sampled_from(KNOWN + ("cueing", "unknown")),
    st.integers(min_value=0, max_value=5).map(float),
    st.sampled_from([1.0, 0.85, 0.7225, 0.49, 0.2, 0.04]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    observations=st.lists(OBSERVATION, max_size=60),
    freq=st.sampled_from(["month", "quarter", "year"]),
    as_of=st.one_of(st.none(), DAYS),
)
def test_shape_and_totals_whatever_the_observations(small_indicators, observations, freq, as_of):
    grid = make_grid(freq, D(2024, 1, 1), D(2024, 12, 31))
    ev = build_evidence(grid, small_indicators, observations, as_of)
    assert ev.counts.shape == ev.exposure.shape == ev.sumsq.shape == (len(grid), 3)
    for j, indicator in ((DRILL, "drill"), (TRADE, "trade")):
        expected = sum(
            v * w
            for day, ind, v, w in observations
            if ind == indicator
            and D(2024, 1, 1) <= day <= D(2024, 12, 31)
            and (as_of is None or day <= as_of)
        )
        assert ev.counts[:, j].sum() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    milestone = ev.counts[:, CUEING]
    assert (milestone <= ev.exposure[:, CUEING] + 1e-12).all()
    assert np.count_nonzero(milestone) <= 1
    rows = per_observation_rows(observations)
    assert_same(evidence_from_aggregates(grid, small_indicators, rows, as_of), ev)


def test_large_inputs_are_aggregated_vectorised(small_indicators):
    rng = np.random.default_rng(7)
    n = 200_000
    days = np.datetime64("2012-01-01") + rng.integers(0, 365 * 13, n).astype("timedelta64[D]")
    frame = pd.DataFrame(
        {
            "date": days,
            "indicator": rng.choice(["drill", "trade", "cueing", "other"], n),
            "value": rng.integers(0, 4, n).astype(float),
            "weight": rng.choice([1.0, 0.7225, 0.49], n),
        }
    )
    grid = make_grid("month", D(2012, 1, 1), D(2024, 6, 30))
    started = time.perf_counter()
    ev = build_evidence(grid, small_indicators, frame, as_of=D(2024, 6, 30))
    elapsed = time.perf_counter() - started
    assert ev.counts.shape == (150, 3)
    in_window = (frame["date"] <= "2024-06-30") & (frame["indicator"] == "drill")
    expected = (frame["value"] * frame["weight"])[in_window].sum()
    assert ev.counts[:, DRILL].sum() == pytest.approx(expected, rel=1e-12)
    assert elapsed < 5.0
