"""Coverage: which rule gives each indicator's date, and evidence that stops there."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from indicators import (
    Coverage,
    Indicator,
    Review,
    build_evidence,
    latest_reviews,
    make_grid,
    resolve_coverage,
)

IDS = ("drills", "patrols", "link")
AS_OF = date(2025, 12, 31)


def test_a_reviewed_indicator_is_covered_through_its_latest_review_date():
    reviews = [Review(date(2025, 6, 30), ("drills", "patrols"), id=1),
               Review(date(2024, 12, 31), ("drills",), id=2),  # a backfill: never shortens
               Review(date(2025, 9, 30), ("patrols",), id=3)]
    assert latest_reviews(reviews) == {"drills": (date(2025, 6, 30), 1),
                                       "patrols": (date(2025, 9, 30), 3)}
    coverage = resolve_coverage(IDS, AS_OF, reviews, newest_entry=date(2025, 11, 2))
    assert coverage.dates() == {"drills": date(2025, 6, 30), "patrols": date(2025, 9, 30),
                                "link": date(2025, 11, 2)}
    assert [c.basis for c in coverage.indicators] == ["review", "review", "newest_entry"]
    assert [c.review_id for c in coverage.indicators] == [1, 3, None]
    assert coverage.complete_through == date(2025, 6, 30)


def test_coverage_never_runs_past_as_of():
    reviews = [Review(date(2025, 12, 31), IDS)]
    coverage = resolve_coverage(IDS, date(2020, 3, 31), reviews, newest_entry=None)
    assert set(coverage.dates().values()) == {date(2020, 3, 31)}
    newest = resolve_coverage(IDS, date(2020, 3, 31), [], newest_entry=date(2021, 1, 1))
    assert set(newest.dates().values()) == {date(2020, 3, 31)}


def test_the_rules_differ_only_for_indicators_never_reviewed():
    reviews = [Review(date(2025, 6, 30), ("drills",))]
    newest = date(2025, 11, 2)
    default = resolve_coverage(IDS, AS_OF, reviews, newest, rule="reviews")
    strict = resolve_coverage(IDS, AS_OF, reviews, newest, rule="reviews_only")
    complete = resolve_coverage(IDS, AS_OF, reviews, newest, rule="as_of")
    assert default.dates()["drills"] == strict.dates()["drills"] == date(2025, 6, 30)
    assert default.dates()["link"] == newest
    assert strict.dates()["link"] is None and strict.complete_through is None
    assert set(complete.dates().values()) == {AS_OF}  # the log is complete by construction
    with pytest.raises(ValueError, match="coverage rule 'everything'"):
        resolve_coverage(IDS, AS_OF, reviews, newest, rule="everything")


def test_an_empty_log_without_reviews_covers_nothing():
    coverage = resolve_coverage(IDS, AS_OF, [], newest_entry=None)
    assert coverage.dates() == dict.fromkeys(IDS)
    assert [c.basis for c in coverage.indicators] == ["none"] * 3


def test_periods_past_coverage_and_the_round_trip():
    grid = make_grid("quarter", date(2012, 1, 1), date(2026, 12, 1))
    coverage = resolve_coverage(IDS, date(2026, 12, 1), [Review(date(2025, 12, 31), IDS)],
                                None)
    assert coverage.periods_past(grid) == 4  # 2026Q1 … Q4 after the last covered quarter
    assert coverage.periods_past(grid, date(2026, 11, 1)) == 0
    data = coverage.to_dict(grid)
    assert data["evidence_complete_through"] == "2025-12-31"
    assert data["periods_past_coverage"] == 4
    assert data["indicators"][0] == {"indicator": "drills", "covered_through": "2025-12-31",
                                     "basis": "review", "review_id": None, "periods_past": 4}
    assert Coverage.from_dict(data) == coverage


# -- evidence that stops at each indicator's coverage -------------------------------------

DRILLS = Indicator(id="drills", name="Drills", kind="count")
LINK = Indicator(id="link", name="Link", kind="milestone")
TRADE = Indicator(id="trade", name="Trade", kind="signal", noise_sd=1.0)


def test_a_partly_covered_period_enters_with_its_covered_fraction():
    grid = make_grid("quarter", date(2025, 1, 1), date(2025, 12, 31))
    rows = [(date(2025, 2, 1), "drills", 1, 1.0), (date(2025, 8, 10), "drills", 1, 1.0),
            (date(2025, 8, 20), "drills", 1, 1.0), (date(2025, 11, 1), "drills", 1, 1.0)]
    covered = {"drills": date(2025, 8, 15)}  # reviewed through mid-August
    evidence = build_evidence(grid, [DRILLS], rows, as_of=date(2025, 12, 31),
                              coverage=covered)
    q3 = (date(2025, 8, 15) - date(2025, 7, 1)).days + 1
    np.testing.assert_allclose(evidence.exposure[:, 0], [1.0, 1.0, q3 / 92, 0.0])
    # the 20 August drill and the November one wait for a review: not evidence yet
    np.testing.assert_allclose(evidence.counts[:, 0], [1.0, 0.0, 1.0, 0.0])
    assert evidence.coverage == (date(2025, 8, 15),)
    assert evidence.coverage_of("drills") == date(2025, 8, 15)


def test_a_period_after_coverage_carries_no_evidence_for_any_kind():
    grid = make_grid("quarter", date(2025, 1, 1), date(2025, 12, 31))
    rows = [(date(2025, 10, 5), "link", 1, 1.0), (date(2025, 10, 6), "trade", 2.5, 1.0),
            (date(2025, 3, 3), "trade", 1.5, 0.5)]
    coverage = {"link": date(2025, 9, 30), "trade": date(2025, 9, 30)}
    evidence = build_evidence(grid, [LINK, TRADE], rows, as_of=date(2025, 12, 31),
                              coverage=coverage)
    # the milestone: at risk through Q3, nothing in Q4 (the October report waits)
    np.testing.assert_allclose(evidence.exposure[:, 0], [1, 1, 1, 0])
    np.testing.assert_allclose(evidence.counts[:, 0], 0.0)
    # the signal: the March value only
    np.testing.assert_allclose(evidence.counts[:, 1], [0.75, 0, 0, 0])
    np.testing.assert_allclose(evidence.exposure[:, 1], [0.5, 0, 0, 0])


def test_an_indicator_without_coverage_has_no_evidence_at_all():
    grid = make_grid("quarter", date(2025, 1, 1), date(2025, 6, 30))
    rows = [(date(2025, 2, 1), "drills", 2, 1.0)]
    evidence = build_evidence(grid, [DRILLS], rows, as_of=date(2025, 6, 30),
                              coverage={"drills": None})
    assert not evidence.counts.any() and not evidence.exposure.any()
    assert evidence.coverage == (None,)


def test_coverage_through_as_of_is_the_evidence_without_coverage():
    grid = make_grid("quarter", date(2025, 1, 1), date(2025, 11, 15))
    rows = [(date(2025, 2, 1), "drills", 2, 1.0), (date(2025, 11, 20), "drills", 1, 1.0)]
    plain = build_evidence(grid, [DRILLS], rows, as_of=date(2025, 11, 15))
    covered = build_evidence(grid, [DRILLS], rows, as_of=date(2025, 11, 15),
                             coverage={"drills": date(2025, 11, 15)})
    np.testing.assert_array_equal(plain.counts, covered.counts)
    np.testing.assert_array_equal(plain.exposure, covered.exposure)
    assert plain.hash() != covered.hash()  # the coverage dates are part of the evidence


def test_coverage_survives_the_dict_round_trip():
    grid = make_grid("quarter", date(2025, 1, 1), date(2025, 12, 31))
    evidence = build_evidence(grid, [DRILLS, LINK], [(date(2025, 2, 1), "drills", 2, 1.0)],
                              as_of=date(2025, 12, 31),
                              coverage={"drills": date(2025, 6, 30), "link": None})
    again = type(evidence).from_dict(evidence.to_dict())
    assert again == evidence and again.hash() == evidence.hash()
    assert again.coverage == (date(2025, 6, 30), None)
