"""Evidence and coverage: what the stored observations and reviews say, by SQL aggregation.

Evidence is built with ``GROUP BY indicator, period`` over the monthly statistics that
`service.repositories.observations` keeps (``observation_months``), so its cost depends on
periods × indicators, not on the number of rows. Coverage follows `indicators.coverage`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select

from forecast import evidence_through
from indicators import (
    Coverage,
    CoverageRule,
    Evidence,
    Review,
    evidence_from_aggregates,
    latest_reviews,
    make_grid,
    period_floor,
    resolve_coverage,
)
from service.db import ObservationMonthRow, ObservationRow, ReviewIndicatorRow, ReviewRow
from service.repositories.observations import month_index

if TYPE_CHECKING:
    from priors import ScenarioSet
    from service.db import Database

__all__ = ["coverage_of", "coverage_on", "coverages_of", "evidence_of", "live_reviews"]


def coverage_of(db: Database, *, scenario_set: ScenarioSet,
                as_of: dt.date | None = None) -> Coverage:
    """Each of the set's indicators' coverage through ``as_of`` (default today)."""
    return coverages_of(db, scenario_sets=[scenario_set], as_of=as_of)[scenario_set.id]


def coverages_of(db: Database, *, scenario_sets: Sequence[ScenarioSet],
                 as_of: dt.date | None = None) -> dict[str, Coverage]:
    """`coverage_of` for several sets at once (one query of the reviews for all of them)."""
    as_of = as_of or db.today()
    return _coverages(db, [(s, evidence_through(s, as_of)) for s in scenario_sets])


def coverage_on(db: Database, *, scenario_set: ScenarioSet, through: dt.date,
                rule: CoverageRule | None = None) -> Coverage:
    """Each of the set's indicators' coverage on ``through`` (`indicators.coverage`)."""
    return _coverages(db, [(scenario_set, through)], rule)[scenario_set.id]


def _coverages(db: Database, sets: Sequence[tuple[ScenarioSet, dt.date]],
               rule: CoverageRule | None = None) -> dict[str, Coverage]:
    rule = rule or db.coverage_rule
    ids = sorted({i for scenario_set, _ in sets for i in scenario_set.indicator_ids})
    out = {}
    with db.Session() as session:
        latest = latest_reviews(live_reviews(session, ids)) if rule != "as_of" else {}
        for scenario_set, through in sets:
            set_ids = scenario_set.indicator_ids
            newest = _newest_entry(session, set_ids, through) if rule == "reviews" else None
            out[scenario_set.id] = resolve_coverage(set_ids, through, latest, newest, rule)
    return out


def evidence_of(db: Database, *, scenario_set: ScenarioSet, as_of: dt.date | None = None,
                coverage: Coverage | None = None) -> Evidence:
    """The set's evidence through ``as_of`` (default today), by SQL aggregation.

    Each indicator counts up to its coverage date (`coverage`, computed unless given):
    later periods carry nothing for it, and its observations after that date wait for a
    review. Months come from ``observation_months`` (kept by every insert and
    retraction), including the month holding the cut date when none of its live rows is
    later than that day; only an indicator whose cell of that month holds later rows is
    aggregated from its raw rows, cut at that day. The work depends on periods ×
    indicators, not on the number of rows.
    """
    as_of = as_of or db.today()
    through = evidence_through(scenario_set, as_of)
    coverage = coverage or coverage_on(db, scenario_set=scenario_set, through=through)
    grid = make_grid(scenario_set.period, scenario_set.start, through)
    months = grid.months_per_period
    first = month_index(period_floor(scenario_set.period, scenario_set.start)) // months
    by_cut: dict[dt.date, list[str]] = {}
    for indicator, cut in coverage.dates().items():
        if cut is not None:
            by_cut.setdefault(min(cut, through), []).append(indicator)
    rows: list[dict[str, Any]] = []
    with db.Session() as session:
        for cut, ids in sorted(by_cut.items()):
            rows += _aggregates(session, ids, cut, months, first)
    for row in rows:
        row["period"] = int(row["period"])
    return evidence_from_aggregates(grid, scenario_set.catalog_indicators, rows,
                                    as_of=through, coverage=coverage.dates())


def _aggregates(session, ids: list[str], cut: dt.date, months: int,
                first: int) -> list[dict[str, Any]]:
    """Per (indicator, period) sums of the live observations of ``ids`` up to ``cut``."""
    last_month = month_index(cut)
    last_period = last_month // months - first
    m = ObservationMonthRow
    period = (m.month_index // months) - first
    # Months before the one holding `cut`: the kept monthly statistics.
    complete = (
        select(m.indicator, m.stratum, period.label("period"), func.sum(m.n_obs).label("n_obs"),
               func.sum(m.sum_w).label("sum_w"), func.sum(m.sum_wv).label("sum_wv"),
               func.sum(m.sum_wvv).label("sum_wvv"), func.max(m.max_w).label("max_w"))
        .where(m.indicator.in_(ids), m.month_index < last_month)
        .group_by(m.indicator, m.stratum, period)
    )
    # The month holding `cut`: one kept cell per indicator and stratum at most.
    current = (
        select(m.indicator, m.stratum, m.n_obs, m.sum_w, m.sum_wv, m.sum_wvv, m.max_w,
               m.max_date)
        .where(m.indicator.in_(ids), m.month_index == last_month)
    )
    rows = [dict(r._mapping) for r in session.execute(complete)]
    cells = [dict(r._mapping) for r in session.execute(current)]
    late = {cell["indicator"] for cell in cells if cell["max_date"] > cut}
    rows += [{k: v for k, v in cell.items() if k != "max_date"} | {"period": last_period}
             for cell in cells if cell["indicator"] not in late]
    if late:
        # cells holding rows after `cut`: their raw rows, cut at that day
        o = ObservationRow
        w, v = o.weight, o.value
        rows += [dict(r._mapping) | {"period": last_period} for r in session.execute(
            select(o.indicator, o.stratum, func.count(o.id).label("n_obs"),
                   func.sum(w).label("sum_w"), func.sum(w * v).label("sum_wv"),
                   func.sum(w * v * v).label("sum_wvv"), func.max(w).label("max_w"))
            .where(o.indicator.in_(sorted(late)), o.retracted_at.is_(None),
                   o.month_index == last_month, o.date <= cut)
            .group_by(o.indicator, o.stratum))]
    return rows


def live_reviews(session, ids: Sequence[str]) -> list[Review]:
    """The live reviews covering any of ``ids``, each with those of its indicators."""
    by_id: dict[int, tuple[dt.date, list[str]]] = {}
    for indicator, through, review_id in session.execute(
            select(ReviewIndicatorRow.indicator, ReviewRow.through, ReviewRow.id)
            .join(ReviewRow, ReviewRow.id == ReviewIndicatorRow.review_id)
            .where(ReviewIndicatorRow.indicator.in_(list(ids)),
                   ReviewRow.retracted_at.is_(None))):
        by_id.setdefault(review_id, (through, []))[1].append(indicator)
    return [Review(through=through, indicators=tuple(indicators), id=review_id)
            for review_id, (through, indicators) in by_id.items()]


def _newest_entry(session, ids: Sequence[str], through: dt.date) -> dt.date | None:
    """The date of the newest live observation of any of ``ids`` on or before ``through``.

    From the monthly statistics (each cell keeps its latest live date; one query for the
    months before the one holding ``through`` and that month); raw rows only for the month
    holding ``through`` when a cell of it holds a later date.
    """
    m = ObservationMonthRow
    month = month_index(through)
    before, current = session.execute(
        select(func.max(case((m.month_index < month, m.max_date))),
               func.max(case((m.month_index == month, m.max_date))))
        .where(m.indicator.in_(list(ids)), m.month_index <= month)).one()
    if current is not None and current > through:
        o = ObservationRow
        current = session.scalar(select(func.max(o.date)).where(
            o.indicator.in_(list(ids)), o.month_index == month, o.retracted_at.is_(None),
            o.date <= through))
    dates = [d for d in (before, current) if d is not None]
    return max(dates) if dates else None
