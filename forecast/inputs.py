"""From observations to the Evidence of one scenario set (its grid, its indicators)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from indicators import DEFAULT_GRADES, Evidence, GradeTable, Observation, build_evidence, make_grid
from priors import ScenarioSet


def evidence_through(scenario_set: ScenarioSet, as_of: date | None) -> date:
    """The last date whose evidence counts: ``as_of``, capped at the set's ``end``."""
    if as_of is None:
        if scenario_set.end is None:
            raise ValueError(f"set '{scenario_set.id}' has no end: give as_of")
        return scenario_set.end
    return min(as_of, scenario_set.end) if scenario_set.end else as_of


def set_evidence(scenario_set: ScenarioSet, observations: Iterable[Observation],
                 as_of: date | None, grades: GradeTable = DEFAULT_GRADES) -> Evidence:
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

    Returns
    -------
    Evidence

    """
    through = evidence_through(scenario_set, as_of)
    grid = make_grid(scenario_set.period, scenario_set.start, through)
    rows = [(o.date, o.indicator, float(o.value), grades.weight(o.grade or grades.default))
            for o in observations]
    return build_evidence(grid, scenario_set.catalog_indicators, rows, as_of=through)
