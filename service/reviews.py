"""Reviews: how Signpost tells a quiet period from one nobody looked at.

A review says "these indicators' sources were reviewed through DATE, and everything found was
logged". Append-only, like observations: a mistaken review is retracted (it stays stored,
flagged), never edited. An indicator's coverage follows the rule of `indicators.coverage`: by
default the latest date any live review covers it through, else the set's newest entry. The
functions here take the `Database` handle for its session, clock and catalog; the API and the
CLI call them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, func, select, true
from sqlalchemy.exc import IntegrityError

from indicators import Coverage, CoverageRule, InvalidObservation
from indicators._text import did_you_mean
from service.db import (
    ReviewIndicatorRow,
    ReviewRow,
    aware,
    mark_retracted,
)
from service.errors import BadRequest, Conflict, refusal
from service.repositories import audit
from service.repositories.evidence import coverage_on, coverages_of
from service.repositories.sets import get_catalog, get_set, list_sets, set_ids

if TYPE_CHECKING:
    from priors import ScenarioSet
    from service.audit import Actor
    from service.db import Database

__all__ = [
    "ReviewIn",
    "add_review",
    "coverage",
    "list_reviews",
    "observation_coverage",
    "retract_review",
    "review_dict",
    "validate_review",
]


class ReviewIn(BaseModel):
    """A review as posted: a set and/or indicators, the last day reviewed, a note."""

    model_config = ConfigDict(extra="forbid")

    set_id: str | None = Field(None, max_length=100, description=(
        "the scenario set reviewed; without `indicators`, all of its indicators"),
        examples=["sino-russian-convergence"])
    indicators: list[str] | None = Field(None, max_length=500, description=(
        "the indicators whose sources were reviewed (default: all of the set's)"),
        examples=[["joint_exercise", "joint_patrol"]])
    through: str = Field(description="the last day reviewed, YYYY-MM-DD",
                         examples=["2025-12-31"])
    note: str = Field("", max_length=2000, description="what was read, by whom, any caveat")


def review_dict(row: ReviewRow, indicators: Sequence[str]) -> dict[str, Any]:
    """The API's view of a stored review."""
    return {
        "id": row.id,
        "set_id": row.set_id,
        "indicators": sorted(indicators),
        "through": row.through.isoformat(),
        "note": row.note,
        "analyst": row.analyst,
        "created_at": aware(row.created_at).isoformat(),
        "retracted_at": aware(row.retracted_at).isoformat() if row.retracted_at else None,
        "retraction_reason": row.retraction_reason,
    }


def _parse_through(value: str, today: dt.date) -> dt.date:
    # ReviewIn.through is a str: pydantic refuses a date object before this runs
    try:
        through = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(f"through: '{value}' is not a date; use YYYY-MM-DD",
                         field="through") from None
    if through > today:
        raise BadRequest(f"through: {through} is in the future (today is {today}); a review "
                         "covers what was already read", field="through")
    return through


def validate_review(store: Database, data: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...],
                                                                     dt.date, str]:
    """Check a review against the loaded sets, the catalog and today's date.

    Returns
    -------
    (set_id, indicators, through, note)
        ``indicators`` sorted, without repeats; all of the set's when none were named.

    Raises
    ------
    BadRequest
        Naming the field: an unknown set or indicator, an indicator not in the named set, a
        date that does not parse, lies in the future or before the set's start, no set and
        no indicators.

    """
    try:
        review = ReviewIn.model_validate(dict(data))
    except ValidationError as exc:
        raise refusal(exc.errors(), tuple(ReviewIn.model_fields), every=False) from None
    through = _parse_through(review.through, store.today())
    scenario_set = None
    if review.set_id is not None:
        known = set_ids(store)
        if review.set_id not in known:
            hint = did_you_mean(review.set_id, known)
            raise BadRequest(f"set_id: unknown scenario set '{review.set_id}'{hint} "
                             f"(sets: {', '.join(known) or 'none loaded'})", field="set_id")
        scenario_set = get_set(store, set_id=review.set_id)
    if not review.indicators:
        if scenario_set is None:
            raise BadRequest("indicators: name the indicators reviewed, or give set_id to "
                             "review all of a set's", field="indicators")
        indicators = tuple(sorted(scenario_set.indicator_ids))
    else:
        catalog = get_catalog(store)
        for indicator in review.indicators:
            try:
                catalog.get_or_raise(indicator, field="indicators")
            except InvalidObservation as exc:
                raise BadRequest(str(exc), field="indicators") from None
            if scenario_set is not None and indicator not in scenario_set.indicator_ids:
                hint = did_you_mean(indicator, scenario_set.indicator_ids)
                raise BadRequest(f"indicators: '{indicator}' is not an indicator of "
                                 f"'{scenario_set.id}'{hint}", field="indicators")
        indicators = tuple(sorted(set(review.indicators)))
    sets = [scenario_set] if scenario_set is not None else [
        s for s in list_sets(store) if set(indicators) & set(s.indicator_ids)]
    if sets:
        start = min(s.start for s in sets)
        if through < start:
            where = f"'{sets[0].id}'" if len(sets) == 1 else "every set using these indicators"
            raise BadRequest(f"through: {through} is before the start of {where} ({start}); "
                             "nothing before it counts as evidence", field="through")
    return review.set_id, indicators, through, review.note


def add_review(store: Database, data: Mapping[str, Any], analyst: str = "",
               idempotency_key: str | None = None, session: Any = None,
               actor: Actor | None = None) -> tuple[dict[str, Any], bool]:
    """Validate and commit one review (and its audit entry, given the ``actor``).

    With ``session``, the review joins that transaction (an import and its review commit
    together) instead of committing alone.

    Returns
    -------
    (review, created) : created is False for a retry with a seen ``idempotency_key``.

    Raises
    ------
    BadRequest
        Refused input; nothing is stored.
    Conflict
        The idempotency key was used for a different review.

    """
    set_id, indicators, through, note = validate_review(store, data)
    if idempotency_key:
        existing = _by_key(store, idempotency_key)
        if existing is not None:
            return _replay(store, existing, through, indicators)
    row = ReviewRow(set_id=set_id, through=through, note=note, analyst=analyst,
                    created_at=store.clock(), idempotency_key=idempotency_key)

    def write(s) -> None:
        s.add(row)
        s.flush()  # the row's id, and a reused idempotency key fails here
        s.add_all(ReviewIndicatorRow(review_id=row.id, indicator=i) for i in indicators)
        if actor is not None:
            audit.record(s, actor=actor, action="review.create", at=row.created_at,
                         target=f"review:{row.id}", detail={
                             "set_id": set_id, "through": through.isoformat(),
                             "indicators": list(indicators),
                             "idempotency_key": idempotency_key})

    if session is not None:
        write(session)
        return review_dict(row, indicators), True
    try:
        with store.Session.begin() as s:
            write(s)
    except IntegrityError:
        existing = _by_key(store, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(store, existing, through, indicators)
    return review_dict(row, indicators), True


def _by_key(store: Database, key: str) -> ReviewRow | None:
    with store.Session() as session:
        return session.scalar(select(ReviewRow).where(ReviewRow.idempotency_key == key))


def _indicators_of(session, review_ids: Iterable[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    ids = list(review_ids)
    if not ids:
        return out
    for review_id, indicator in session.execute(
            select(ReviewIndicatorRow.review_id, ReviewIndicatorRow.indicator)
            .where(ReviewIndicatorRow.review_id.in_(ids))):
        out.setdefault(review_id, []).append(indicator)
    return out


def _replay(store: Database, existing: ReviewRow, through: dt.date,
            indicators: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    with store.Session() as session:
        stored = _indicators_of(session, [existing.id]).get(existing.id, [])
    if existing.through != through or tuple(sorted(stored)) != indicators:
        raise Conflict("this Idempotency-Key was already used for a different review "
                       f"(id {existing.id}); use a new key", field="Idempotency-Key",
                       code="idempotency_conflict")
    return review_dict(existing, stored), False


def list_reviews(store: Database, set_id: str | None = None, indicator: str | None = None,
                 limit: int = 100, offset: int = 0,
                 include_retracted: bool = True) -> tuple[list[dict[str, Any]], int]:
    """A page of reviews, newest ``through`` first, and the total matching.

    ``set_id`` keeps the reviews that cover any of that set's indicators (wherever they were
    made: a review of an indicator counts for every set that uses it).
    """
    conditions = []
    wanted: set[str] | None = None
    if set_id:
        wanted = set(get_set(store, set_id=set_id).indicator_ids)
    if indicator:
        wanted = {indicator} if wanted is None else wanted & {indicator}
    if wanted is not None:
        conditions.append(ReviewRow.id.in_(
            select(ReviewIndicatorRow.review_id)
            .where(ReviewIndicatorRow.indicator.in_(sorted(wanted)))))
    if not include_retracted:
        conditions.append(ReviewRow.retracted_at.is_(None))
    where = and_(*conditions) if conditions else true()
    with store.Session() as session:
        total = int(session.scalar(select(func.count(ReviewRow.id)).where(where)))
        rows = session.scalars(select(ReviewRow).where(where)
                               .order_by(ReviewRow.through.desc(), ReviewRow.id.desc())
                               .limit(limit).offset(offset)).all()
        indicators = _indicators_of(session, [r.id for r in rows])
    return [review_dict(r, indicators.get(r.id, [])) for r in rows], total


def retract_review(store: Database, review_id: int, reason: str, by: str = "",
                   actor: Actor | None = None) -> dict[str, Any]:
    """Mark a review retracted: it stays stored and stops counting towards coverage.

    Raises
    ------
    BadRequest, NotFound, Conflict

    """
    with store.Session.begin() as session:
        row = session.get(ReviewRow, review_id)
        mark_retracted(row, "review", review_id, reason, by, store.clock())
        indicators = _indicators_of(session, [row.id]).get(row.id, [])
        if actor is not None:
            audit.record(session, actor=actor, action="review.retract", at=row.retracted_at,
                         target=f"review:{row.id}", detail={"reason": reason.strip()})
    return review_dict(row, indicators)


def observation_coverage(store: Database, indicator: str,
                         day: dt.date) -> dict[str, dict[str, Any]]:
    """For each set using ``indicator``: its coverage today, and whether ``day`` is inside it.

    An observation dated after its indicator's coverage is stored but is not evidence until a
    review covers it: what the analyst who just logged it needs to know.
    """
    touching = [s for s in list_sets(store) if indicator in s.indicator_ids]
    out = {}
    for set_id, set_coverage in coverages_of(store, scenario_sets=touching).items():
        covered = set_coverage.dates()[indicator]
        out[set_id] = {"covered_through": None if covered is None else covered.isoformat(),
                       "counted": covered is not None and day <= covered}
    return out


def sets_touching(store: Database, indicators: Iterable[str]) -> list[str]:
    """Ids of the loaded sets that use any of ``indicators``."""
    wanted = set(indicators)
    return [s.id for s in list_sets(store) if wanted & set(s.indicator_ids)]


def coverage(store: Database, scenario_set: ScenarioSet, through: dt.date,
             rule: CoverageRule | None = None) -> Coverage:
    """Each of the set's indicators' coverage on ``through`` (`indicators.coverage`)."""
    return coverage_on(store, scenario_set=scenario_set, through=through, rule=rule)
