"""From observations (and reviews) to the Evidence of one scenario set (its grid, indicators)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from indicators import (
    DEFAULT_GRADES,
    Coverage,
    CoverageRule,
    Evidence,
    GradeTable,
    Observation,
    Review,
    build_evidence,
    make_grid,
    resolve_coverage,
)
from priors import ScenarioSet


def evidence_through(scenario_set: ScenarioSet, as_of: date | None) -> date:
    """The last date whose evidence counts: ``as_of``, capped at the set's ``end``."""
    if as_of is None:
        if scenario_set.end is None:
            raise ValueError(f"set '{scenario_set.id}' has no end: give as_of")
        return scenario_set.end
    return min(as_of, scenario_set.end) if scenario_set.end else as_of


def set_coverage(scenario_set: ScenarioSet, observations: Iterable[Observation],
                 through: date, reviews: Iterable[Review] = (),
                 rule: CoverageRule = "reviews") -> Coverage:
    """Each of the set's indicators' coverage on ``through`` (`indicators.coverage`).

    The newest entry is the latest date of an observation of any of the set's indicators on
    or before ``through``.
    """
    ids = set(scenario_set.indicator_ids)
    dates = [o.date for o in observations if o.indicator in ids and o.date <= through]
    return resolve_coverage(scenario_set.indicator_ids, through, reviews,
                            max(dates) if dates else None, rule)


def set_evidence(scenario_set: ScenarioSet, observations: Iterable[Observation],
                 as_of: date | None, grades: GradeTable = DEFAULT_GRADES,
                 reviews: Iterable[Review] | None = None,
                 rule: CoverageRule = "reviews") -> Evidence:
    """Aggregate observations into the Evidence of one scenario set.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies the period grid (start, period, end) and the indicators.
    observations : iterable of Observation
        Validated observations; other indicators' and out-of-window ones are ignored.
    as_of : date or None
        Evidence through this date (inclusive); None means through the set's end.
    grades : GradeTable
        Grade → weight table.
    reviews : iterable of Review, optional
        The reviews of the log; each indicator's coverage follows ``rule``
        (`indicators.coverage`). None: no coverage at all, every period through ``as_of``
        counts (the evidence of a complete record, such as a simulated one).
    rule : {"reviews", "reviews_only", "as_of"}
        The coverage rule.

    Returns
    -------
    Evidence

    """
    observations = list(observations)
    through = evidence_through(scenario_set, as_of)
    grid = make_grid(scenario_set.period, scenario_set.start, through)
    coverage = None
    if reviews is not None:
        coverage = set_coverage(scenario_set, observations, through, reviews, rule).dates()
    rows = [(o.date, o.indicator, float(o.value), grades.weight(o.grade or grades.default))
            for o in observations]
    return build_evidence(grid, scenario_set.catalog_indicators, rows, as_of=through,
                          coverage=coverage)
