"""Coverage: through which date each indicator's log is known to be complete.

A period without entries is evidence of quiet only if someone looked (indications-and-warning
practice: a negative indicator counts only when the sources were reviewed). A *review* says
"the sources for these indicators were reviewed through DATE, and everything found was
logged". An indicator's coverage is the date its log is complete through; evidence after it is
missing, not zero (docs/decisions/010-coverage.md).

The rule, a setting (``SIGNPOST_COVERAGE``):

=================  ==========================================  ================================
rule               a reviewed indicator                        an indicator never reviewed
=================  ==========================================  ================================
``reviews``        the latest date any review covers it        the newest observation of any of
(default)          through                                     the set's indicators: the log is
                                                               taken to be complete up to its
                                                               newest entry
``reviews_only``   the same                                    nothing: no evidence at all
``as_of``          ``as_of`` (every period counts: the log     ``as_of``
                   is complete by construction)
=================  ==========================================  ================================

Coverage is never later than ``as_of`` (nor, for a replay, later than the replay's date).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from indicators.periods import PeriodGrid

__all__ = [
    "COVERAGE_RULES",
    "Coverage",
    "CoverageRule",
    "IndicatorCoverage",
    "Review",
    "resolve_coverage",
]

CoverageRule = Literal["reviews", "reviews_only", "as_of"]
COVERAGE_RULES: tuple[str, ...] = get_args(CoverageRule)
Basis = Literal["review", "newest_entry", "as_of", "none"]


@dataclass(frozen=True)
class Review:
    """One review: these indicators' sources were read through ``through``, all finds logged.

    Attributes
    ----------
    through : datetime.date
        The last day reviewed.
    indicators : tuple of str
        The indicators reviewed.
    id : int or None
        The stored review's id, where there is one.

    """

    through: dt.date
    indicators: tuple[str, ...]
    id: int | None = None


@dataclass(frozen=True)
class IndicatorCoverage:
    """One indicator's coverage: the date its log is complete through, and why.

    ``covered_through`` is None when nothing is covered (``reviews_only`` and no review).
    ``basis`` is ``review`` (``review_id`` says which), ``newest_entry``, ``as_of`` or
    ``none``.
    """

    indicator: str
    covered_through: dt.date | None
    basis: Basis
    review_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"indicator": self.indicator,
                "covered_through": _iso(self.covered_through),
                "basis": self.basis, "review_id": self.review_id}


@dataclass(frozen=True)
class Coverage:
    """Every indicator's coverage for one evidence date, and what that means for the grid.

    Attributes
    ----------
    rule : str
        The coverage rule applied (`COVERAGE_RULES`).
    as_of : datetime.date
        The evidence date.
    indicators : tuple of IndicatorCoverage
        In the order of the indicators asked for.

    """

    rule: CoverageRule
    as_of: dt.date
    indicators: tuple[IndicatorCoverage, ...] = field(default_factory=tuple)

    def dates(self) -> dict[str, dt.date | None]:
        """``{indicator: covered_through}``."""
        return {c.indicator: c.covered_through for c in self.indicators}

    @property
    def complete_through(self) -> dt.date | None:
        """The earliest coverage: every indicator's evidence is complete through it.

        None if some indicator has no coverage at all.
        """
        dates = [c.covered_through for c in self.indicators]
        if not dates or any(d is None for d in dates):
            return None
        return min(dates)

    def periods_past(self, grid: PeriodGrid, through: dt.date | None = None) -> int:
        """How many periods of ``grid`` the nowcast runs past ``through``.

        ``through`` defaults to the earliest coverage; 0 when its period is the grid's last.
        """
        through = self.complete_through if through is None else through
        if not len(grid):
            return 0
        if through is None or through < grid.starts[0]:
            return len(grid)
        return max(0, len(grid) - 1 - grid.offset_of(through))

    def to_dict(self, grid: PeriodGrid | None = None) -> dict[str, Any]:
        """JSON-friendly form.

        With ``grid``, also how many periods the nowcast runs past each indicator's coverage
        and past the earliest.
        """
        items = []
        for c in self.indicators:
            item = c.to_dict()
            if grid is not None:
                item["periods_past"] = self.periods_past(grid, c.covered_through)
            items.append(item)
        out = {"rule": self.rule, "as_of": self.as_of.isoformat(),
               "evidence_complete_through": _iso(self.complete_through),
               "indicators": items}
        if grid is not None:
            out["periods_past_coverage"] = self.periods_past(grid)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Coverage:
        """Rebuild from `to_dict` output (extra keys are ignored)."""
        return cls(rule=data["rule"], as_of=dt.date.fromisoformat(data["as_of"]),
                   indicators=tuple(IndicatorCoverage(
                       indicator=item["indicator"],
                       covered_through=_date(item["covered_through"]),
                       basis=item["basis"], review_id=item.get("review_id"))
                       for item in data["indicators"]))


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def latest_reviews(reviews: Iterable[Review]) -> dict[str, tuple[dt.date, int | None]]:
    """Per indicator, the latest date any review covers it through (and that review's id).

    A later-dated review wins; among reviews of the same date, the one logged last (highest
    id). A review of an older stretch (a backfill) never shortens coverage.
    """
    best: dict[str, tuple[dt.date, int | None]] = {}
    for review in reviews:
        for indicator in review.indicators:
            current = best.get(indicator)
            key = (review.through, -1 if review.id is None else review.id)
            if current is None or key > (current[0], -1 if current[1] is None else current[1]):
                best[indicator] = (review.through, review.id)
    return best


def resolve_coverage(indicator_ids: Sequence[str], as_of: dt.date,
                     reviews: Mapping[str, tuple[dt.date, int | None]] | Iterable[Review],
                     newest_entry: dt.date | None, rule: CoverageRule = "reviews") -> Coverage:
    """Each indicator's coverage on ``as_of``.

    Parameters
    ----------
    indicator_ids : sequence of str
        The set's indicators.
    as_of : datetime.date
        The evidence date; no coverage runs past it.
    reviews : mapping or iterable of Review
        ``{indicator: (through, review id)}`` as `latest_reviews` returns, or the reviews.
    newest_entry : datetime.date or None
        The date of the newest live observation of any of the set's indicators dated on or
        before ``as_of`` (None if there is none).
    rule : {"reviews", "reviews_only", "as_of"}
        See the module docstring.

    Returns
    -------
    Coverage

    Raises
    ------
    ValueError
        For an unknown rule.

    """
    if rule not in COVERAGE_RULES:
        raise ValueError(f"coverage rule {rule!r} is not one of {', '.join(COVERAGE_RULES)}")
    latest = reviews if isinstance(reviews, Mapping) else latest_reviews(reviews)
    items = []
    for indicator in indicator_ids:
        if rule == "as_of":
            items.append(IndicatorCoverage(indicator, as_of, "as_of"))
            continue
        reviewed = latest.get(indicator)
        if reviewed is not None:
            through, review_id = reviewed
            items.append(IndicatorCoverage(indicator, min(through, as_of), "review", review_id))
        elif rule == "reviews" and newest_entry is not None:
            items.append(IndicatorCoverage(indicator, min(newest_entry, as_of), "newest_entry"))
        else:
            items.append(IndicatorCoverage(indicator, None, "none"))
    return Coverage(rule=rule, as_of=as_of, indicators=tuple(items))
