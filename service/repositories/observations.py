"""Observations: validate, store (append-only, idempotent), list, count and retract them.

Every insert and retraction keeps the monthly sufficient statistics (``observation_months``)
in the same transaction; `service.repositories.evidence` aggregates them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import and_, delete, func, or_, select, true
from sqlalchemy.exc import IntegrityError

from indicators import Catalog, InvalidObservation, Observation
from indicators import validate_observation as _validate
from indicators.kinds import get_kind
from service.db import ObservationMonthRow, ObservationRow, mark_retracted
from service.errors import BadRequest, Conflict
from service.repositories import audit
from service.repositories.sets import get_catalog, get_set

if TYPE_CHECKING:
    from service.audit import Actor
    from service.db import Database

__all__ = [
    "add_observation",
    "add_observations",
    "add_to_months",
    "count_observations",
    "iter_observations",
    "list_observations",
    "month_index",
    "observation_row",
    "recount_month",
    "retract_observation",
    "validate_observation",
]


def month_index(d: date) -> int:
    """``year·12 + month − 1``: months since year 0."""
    return d.year * 12 + d.month - 1


def validate_observation(db: Database, *, data: Mapping[str, Any],
                         catalog: Catalog | None = None) -> Observation:
    """Validate one observation against the catalog and today's date.

    Raises
    ------
    BadRequest
        Naming the field and the reason.

    """
    try:
        return _validate(data, catalog or get_catalog(db), db.today(), db.grades)
    except InvalidObservation as exc:
        raise BadRequest(str(exc), field=exc.field) from exc


def add_observation(db: Database, *, data: Mapping[str, Any], analyst: str = "",
                    idempotency_key: str | None = None,
                    actor: Actor | None = None) -> tuple[ObservationRow, bool]:
    """Validate and commit one observation (and its audit entry, given the ``actor``).

    Returns
    -------
    (row, created) : created is False when ``idempotency_key`` was seen before, and the
    first row is returned instead of a second one.

    Raises
    ------
    BadRequest
        Refused input (nothing is stored).
    Conflict
        The idempotency key was used for a different observation.

    """
    catalog = get_catalog(db)
    obs = validate_observation(db, data=data, catalog=catalog)
    if idempotency_key:
        existing = _by_key(db, idempotency_key)
        if existing is not None:
            return _replay(existing, obs)
    row = observation_row(db, observation=obs, analyst=analyst,
                          idempotency_key=idempotency_key, catalog=catalog)
    try:
        with db.Session.begin() as session:
            session.add(row)
            session.flush()  # the unique idempotency key fails here, before the stats
            add_to_months(session, rows=[row])
            if actor is not None:
                audit.record(session, actor=actor, action="observation.create",
                             at=row.created_at, target=f"observation:{row.id}",
                             detail=_audited(row))
    except IntegrityError:
        existing = _by_key(db, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, obs)
    return row, True


def add_observations(db: Database, *, observations: Iterable[Observation], analyst: str = "",
                     review: Mapping[str, Any] | None = None,
                     reviews: Sequence[tuple[Mapping[str, Any], str]] = (),
                     actor: Actor | None = None) -> tuple[int, dict[str, Any] | None]:
    """Commit validated observations in one transaction; returns how many (and the review).

    With ``review`` (the fields of `service.reviews.ReviewIn`), the review is validated
    first and committed in the same transaction: both are stored, or neither. ``reviews``
    are more of them, each with its own analyst (``(fields, analyst)``: a reviews file's
    rows), validated and committed the same way. Given the ``actor``, the audit log gets one
    entry for the rows (``observation:FIRST..LAST``, their count) and one per review.
    """
    from service.reviews import add_review, validate_review

    catalog = get_catalog(db)
    rows = [observation_row(db, observation=obs, analyst=analyst, catalog=catalog)
            for obs in observations]
    for fields in ([review] if review is not None else []) + [r for r, _ in reviews]:
        validate_review(db, fields)  # refused before anything is written
    stored = None
    with db.Session.begin() as session:
        session.add_all(rows)
        add_to_months(session, rows=rows)
        if actor is not None and rows:
            session.flush()
            ids = [row.id for row in rows]
            audit.record(session, actor=actor, action="observation.create",
                         at=db.clock(), target=f"observation:{min(ids)}..{max(ids)}",
                         detail={"count": len(rows), "first_id": min(ids),
                                 "last_id": max(ids),
                                 "indicators": sorted({row.indicator for row in rows})})
        if review is not None:
            stored, _ = add_review(db, review, analyst=analyst, session=session, actor=actor)
        for fields, by in reviews:
            add_review(db, fields, analyst=by or analyst, session=session, actor=actor)
    return len(rows), stored


def count_observations(db: Database, *, include_retracted: bool = True) -> int:
    """How many observations are stored."""
    query = select(func.count(ObservationRow.id))
    if not include_retracted:
        query = query.where(ObservationRow.retracted_at.is_(None))
    with db.Session() as session:
        return int(session.scalar(query))


def list_observations(db: Database, *, indicator: str | None = None,
                      set_id: str | None = None, since: date | None = None,
                      until: date | None = None, limit: int = 100, offset: int = 0,
                      include_retracted: bool = True) -> tuple[list[ObservationRow], int]:
    """A page of observations, newest date first, and the total matching.

    Raises
    ------
    NotFound
        An unknown ``set_id``.

    """
    where = _matching(db, indicator=indicator, set_id=set_id, since=since, until=until,
                      include_retracted=include_retracted)
    with db.Session() as session:
        total = int(session.scalar(select(func.count(ObservationRow.id)).where(where)))
        rows = session.scalars(
            select(ObservationRow).where(where)
            .order_by(ObservationRow.date.desc(), ObservationRow.id.desc())
            .limit(limit).offset(offset)
        ).all()
    return list(rows), total


def iter_observations(db: Database, *, indicator: str | None = None,
                      set_id: str | None = None, since: date | None = None,
                      until: date | None = None, include_retracted: bool = True,
                      page_size: int = 500) -> Iterator[list[ObservationRow]]:
    """Every matching observation, in `list_observations`' order, ``page_size`` rows a page.

    Each page is one short query that starts after the last row of the previous page (by
    date and id, not by offset), so memory stays bounded and a row logged meanwhile neither
    repeats nor shifts a row out.

    Raises
    ------
    NotFound
        An unknown ``set_id`` (before the first page).

    """
    where = _matching(db, indicator=indicator, set_id=set_id, since=since, until=until,
                      include_retracted=include_retracted)
    return _pages(db, where, page_size)


def _pages(db: Database, where: Any, page_size: int) -> Iterator[list[ObservationRow]]:
    after: tuple[date, int] | None = None
    while True:
        query = select(ObservationRow).where(where)
        if after is not None:
            last_date, last_id = after
            query = query.where(or_(ObservationRow.date < last_date,
                                    and_(ObservationRow.date == last_date,
                                         ObservationRow.id < last_id)))
        with db.Session() as session:
            rows = list(session.scalars(
                query.order_by(ObservationRow.date.desc(), ObservationRow.id.desc())
                .limit(page_size)))
        if not rows:
            return
        yield rows
        after = (rows[-1].date, rows[-1].id)


def _matching(db: Database, *, indicator: str | None, set_id: str | None, since: date | None,
              until: date | None, include_retracted: bool) -> Any:
    """The WHERE clause of the listing filters (NotFound for an unknown set)."""
    conditions = []
    if indicator:
        conditions.append(ObservationRow.indicator == indicator)
    if set_id:
        conditions.append(ObservationRow.indicator.in_(
            get_set(db, set_id=set_id).indicator_ids))
    if since:
        conditions.append(ObservationRow.date >= since)
    if until:
        conditions.append(ObservationRow.date <= until)
    if not include_retracted:
        conditions.append(ObservationRow.retracted_at.is_(None))
    return and_(*conditions) if conditions else true()


def retract_observation(db: Database, *, observation_id: int, reason: str,
                        by: str = "", actor: Actor | None = None) -> ObservationRow:
    """Mark an observation retracted (it stays stored, and leaves the monthly statistics).

    Raises
    ------
    BadRequest, NotFound, Conflict

    """
    with db.Session.begin() as session:
        row = session.get(ObservationRow, observation_id)
        mark_retracted(row, "observation", observation_id, reason, by, db.clock())
        session.flush()
        recount_month(session, indicator=row.indicator, month=row.month_index)
        if actor is not None:
            audit.record(session, actor=actor, action="observation.retract",
                         at=row.retracted_at, target=f"observation:{row.id}",
                         detail={"indicator": row.indicator, "reason": reason.strip()})
    return row


def _audited(row: ObservationRow) -> dict[str, Any]:
    """What the audit log keeps of a stored observation."""
    return {"indicator": row.indicator, "date": row.date.isoformat(), "value": row.value,
            "grade": row.grade, "source": row.source,
            "idempotency_key": row.idempotency_key}


def observation_row(db: Database, *, observation: Observation, analyst: str = "",
                    idempotency_key: str | None = None,
                    catalog: Catalog | None = None) -> ObservationRow:
    """A new (unsaved) row for a validated observation.

    With its grade's weight, its kind's stratum (`indicators.kinds`) and today's clock.
    """
    obs, key = observation, idempotency_key
    grade = obs.grade or db.grades.default
    indicator = (catalog or get_catalog(db)).get(obs.indicator)
    stratum = 0 if indicator is None else int(
        get_kind(indicator.kind).strata(indicator, np.array([float(obs.value)]))[0])
    return ObservationRow(
        stratum=stratum, indicator=obs.indicator, date=obs.date, month_index=month_index(obs.date),
        value=float(obs.value), grade=grade, weight=db.grades.weight(grade),
        source=obs.source, url=obs.url, note=obs.note,
        analyst=analyst or obs.analyst, created_at=db.clock(), idempotency_key=key,
    )


def _by_key(db: Database, key: str) -> ObservationRow | None:
    with db.Session() as session:
        return session.scalar(select(ObservationRow).where(
            ObservationRow.idempotency_key == key))


def _replay(existing: ObservationRow, obs: Observation) -> tuple[ObservationRow, bool]:
    same = (existing.indicator == obs.indicator and existing.date == obs.date
            and existing.value == float(obs.value))
    if not same:
        raise Conflict("this Idempotency-Key was already used for a different observation "
                       f"(id {existing.id}); use a new key", field="Idempotency-Key",
                       code="idempotency_conflict")
    return existing, False


def add_to_months(session, *, rows: list[ObservationRow]) -> None:
    """Add rows to the monthly sufficient statistics (atomic upserts, same transaction)."""
    cells: dict[tuple[str, int, int], list[Any]] = {}
    for r in rows:
        cell = cells.setdefault((r.indicator, r.month_index, r.stratum or 0),
                                [0, 0.0, 0.0, 0.0, 0.0, r.date])
        w, v = r.weight, r.value
        cell[0] += 1
        cell[1] += w
        cell[2] += w * v
        cell[3] += w * v * v
        cell[4] = max(cell[4], w)
        cell[5] = max(cell[5], r.date)
    if not cells:
        return
    table = ObservationMonthRow.__table__
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
        larger = func.greatest
    else:
        from sqlalchemy.dialects.sqlite import insert
        # SQLite's two-argument max() is the scalar maximum (of ISO date strings too)
        larger = func.max
    values = [{"indicator": i, "month_index": m, "stratum": k, "n_obs": c[0], "sum_w": c[1],
               "sum_wv": c[2], "sum_wvv": c[3], "max_w": c[4], "max_date": c[5]}
              for (i, m, k), c in sorted(cells.items())]  # sorted: one lock order
    statement = insert(table)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.indicator, table.c.month_index, table.c.stratum],
        set_={"n_obs": table.c.n_obs + excluded.n_obs,
              "sum_w": table.c.sum_w + excluded.sum_w,
              "sum_wv": table.c.sum_wv + excluded.sum_wv,
              "sum_wvv": table.c.sum_wvv + excluded.sum_wvv,
              "max_w": larger(table.c.max_w, excluded.max_w),
              "max_date": larger(table.c.max_date, excluded.max_date)})
    for chunk in range(0, len(values), 500):
        session.execute(statement, values[chunk:chunk + 500])


def recount_month(session, *, indicator: str, month: int) -> None:
    """Recompute one month's statistics from the live rows (after a retraction)."""
    # lock the cell first (PostgreSQL), so a concurrent insert's delta lands after us
    session.execute(select(ObservationMonthRow).where(
        ObservationMonthRow.indicator == indicator,
        ObservationMonthRow.month_index == month).with_for_update())
    w, v = ObservationRow.weight, ObservationRow.value
    strata = session.execute(
        select(ObservationRow.stratum, func.count(ObservationRow.id), func.sum(w),
               func.sum(w * v), func.sum(w * v * v), func.max(w), func.max(ObservationRow.date))
        .where(ObservationRow.indicator == indicator, ObservationRow.month_index == month,
               ObservationRow.retracted_at.is_(None))
        .group_by(ObservationRow.stratum)).all()
    session.execute(delete(ObservationMonthRow).where(
        ObservationMonthRow.indicator == indicator,
        ObservationMonthRow.month_index == month))
    for stratum, n_obs, sum_w, sum_wv, sum_wvv, max_w, max_date in strata:
        session.add(ObservationMonthRow(indicator=indicator, month_index=month,
                                        stratum=stratum, n_obs=n_obs, sum_w=sum_w,
                                        sum_wv=sum_wv, sum_wvv=sum_wvv, max_w=max_w,
                                        max_date=max_date))
