"""Fits and leases: the fit queue, each attempt's row, and who may fit a set until when."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from service.changes import announce
from service.db import FitRow, LeaseRow
from service.repositories import audit
from service.repositories.sets import get_set

if TYPE_CHECKING:
    from priors import ScenarioSet
    from service.audit import Actor
    from service.db import Database

__all__ = [
    "FIT_STATUSES",
    "acquire_lease",
    "create_fit",
    "fit_history",
    "get_fit",
    "get_lease",
    "latest_finished",
    "latest_published",
    "latest_published_id",
    "pending_fit",
    "pending_statuses",
    "queue_fit",
    "release_lease",
    "renew_lease",
    "replays",
    "runnable_fits",
    "update_fit",
]

FIT_STATUSES = ("queued", "running", "published", "rejected", "failed")


def create_fit(db: Database, *, set_id: str, requested_by: str = "", kind: str = "live",
               as_of: date | None = None, actor: Actor | None = None) -> str:
    """Queue a fit of a loaded set; returns its id. Raises NotFound for an unknown set."""
    return queue_fit(db, scenario_set=get_set(db, set_id=set_id), requested_by=requested_by,
                     kind=kind, as_of=as_of, actor=actor)


def queue_fit(db: Database, *, scenario_set: ScenarioSet, requested_by: str = "",
              kind: str = "live", as_of: date | None = None,
              actor: Actor | None = None) -> str:
    """Queue a fit of a set already read from the database; returns its id.

    A set has at most one queued live fit (a unique index, migration 0006): when another
    writer queued one first, that fit's id is returned. Given the ``actor`` (someone asked
    for this fit), the request is audited (``fit.request``), in the same transaction.
    """
    fit_id = str(uuid.uuid4())
    detail = {"set_id": scenario_set.id, "kind": kind,
              "as_of": as_of.isoformat() if as_of else None}
    try:
        with db.Session.begin() as session:
            session.add(FitRow(id=fit_id, set_id=scenario_set.id, kind=kind, status="queued",
                               requested_by=requested_by, created_at=db.clock(),
                               as_of=as_of, attempts=0))
            session.flush()
            announce(session, "queued", [scenario_set.id])
            if actor is not None:
                audit.record(session, actor=actor, action="fit.request", at=db.clock(),
                             target=f"fit:{fit_id}", detail={**detail, "reused": False})
    except IntegrityError:
        existing = pending_fit(db, set_id=scenario_set.id, kind=kind, statuses=("queued",))
        if kind != "live" or existing is None:
            raise
        if actor is not None:
            audit.record_now(db, actor=actor, action="fit.request", target=f"fit:{existing.id}",
                             detail={**detail, "reused": True})
        return existing.id
    return fit_id


def get_fit(db: Database, *, fit_id: str) -> FitRow:
    """A fit attempt's row. Raises NotFound."""
    return db.get(FitRow, fit_id, missing=f"no fit '{fit_id}'", field="fit_id")


def update_fit(db: Database, *, fit_id: str, **values: Any) -> None:
    """Set columns of a fit row (a publication is announced to every process listening)."""
    with db.Session.begin() as session:
        session.execute(update(FitRow).where(FitRow.id == fit_id).values(**values))
        if values.get("status") == "published":
            announce(session, "published")


def latest_published(db: Database, *, set_id: str, kind: str = "live") -> FitRow | None:
    """The newest published fit of a set."""
    with db.Session() as session:
        return session.scalar(
            select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == kind,
                                 FitRow.status == "published")
            .order_by(FitRow.finished_at.desc(), FitRow.id.desc()).limit(1))


def latest_published_id(db: Database, *, set_id: str) -> str | None:
    """The id of the newest published live fit of a set: the cheap version check."""
    with db.Session() as session:
        return session.scalar(
            select(FitRow.id).where(FitRow.set_id == set_id, FitRow.status == "published",
                                    FitRow.kind == "live")
            .order_by(FitRow.finished_at.desc(), FitRow.id.desc()).limit(1))


def latest_finished(db: Database, *, set_id: str, kind: str = "live") -> FitRow | None:
    """The newest fit of a set that ran to a verdict (published or rejected)."""
    with db.Session() as session:
        return session.scalar(
            select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == kind,
                                 FitRow.status.in_(("published", "rejected")))
            .order_by(FitRow.finished_at.desc(), FitRow.id.desc()).limit(1))


def pending_fit(db: Database, *, set_id: str, kind: str = "live",
                statuses: tuple[str, ...] = ("queued", "running")) -> FitRow | None:
    """The oldest queued or running fit of a set (or of ``statuses``), if any."""
    with db.Session() as session:
        return session.scalar(
            select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == kind,
                                 FitRow.status.in_(statuses))
            .order_by(FitRow.created_at).limit(1))


def pending_statuses(db: Database, *, set_id: str, kind: str = "live") -> set[str]:
    """Which of "queued" and "running" some fit of the set is in (one query)."""
    with db.Session() as session:
        return set(session.scalars(
            select(FitRow.status).distinct()
            .where(FitRow.set_id == set_id, FitRow.kind == kind,
                   FitRow.status.in_(("queued", "running")))))


def fit_history(db: Database, *, set_id: str, limit: int = 500) -> list[FitRow]:
    """Published live fits of a loaded set, oldest first. Raises NotFound."""
    get_set(db, set_id=set_id)
    with db.Session() as session:
        rows = session.scalars(
            select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == "live",
                                 FitRow.status == "published")
            .order_by(FitRow.finished_at.desc()).limit(limit)).all()
    return list(reversed(rows))


def replays(db: Database, *, set_id: str, as_of: date) -> list[FitRow]:
    """Replay fits of a set as of a date, newest first."""
    with db.Session() as session:
        return list(session.scalars(
            select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == "replay",
                                 FitRow.as_of == as_of)
            .order_by(FitRow.created_at.desc())).all())


def runnable_fits(db: Database) -> list[FitRow]:
    """Queued fits, and running fits whose set's lease has expired (a crashed worker)."""
    now = db.clock()
    with db.Session() as session:
        live_lease = select(LeaseRow.set_id).where(LeaseRow.expires_at > now)
        return list(session.scalars(
            select(FitRow).where(or_(
                FitRow.status == "queued",
                and_(FitRow.status == "running", FitRow.set_id.not_in(live_lease)),
            )).order_by(FitRow.created_at)).all())


# -- leases -----------------------------------------------------------------------------

def acquire_lease(db: Database, *, set_id: str, owner: str, fit_id: str | None,
                  seconds: float) -> bool:
    """Take the set's lease if it is free, expired or already ours.

    Atomic on SQLite and PostgreSQL alike: a conditional UPDATE, or an INSERT that the
    primary key makes fail for all but one contender.
    """
    now = db.clock()
    expires = now + timedelta(seconds=seconds)
    with db.Session.begin() as session:
        result = session.execute(
            update(LeaseRow)
            .where(LeaseRow.set_id == set_id,
                   or_(LeaseRow.expires_at <= now, LeaseRow.owner == owner))
            .values(owner=owner, fit_id=fit_id, expires_at=expires))
        if result.rowcount == 1:
            return True
    try:
        with db.Session.begin() as session:
            exists = session.get(LeaseRow, set_id)
            if exists is not None:
                return False
            session.add(LeaseRow(set_id=set_id, owner=owner, fit_id=fit_id,
                                 expires_at=expires))
        return True
    except IntegrityError:
        return False


def renew_lease(db: Database, *, set_id: str, owner: str, seconds: float) -> bool:
    """Extend our lease; False if it is no longer ours."""
    with db.Session.begin() as session:
        result = session.execute(
            update(LeaseRow).where(LeaseRow.set_id == set_id, LeaseRow.owner == owner)
            .values(expires_at=db.clock() + timedelta(seconds=seconds)))
        return result.rowcount == 1


def release_lease(db: Database, *, set_id: str, owner: str) -> None:
    """Give the lease back (only if it is ours)."""
    with db.Session.begin() as session:
        session.execute(delete(LeaseRow).where(LeaseRow.set_id == set_id,
                                               LeaseRow.owner == owner))


def get_lease(db: Database, *, set_id: str) -> LeaseRow | None:
    """The set's lease row, if any."""
    with db.Session() as session:
        return session.get(LeaseRow, set_id)
