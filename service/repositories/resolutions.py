"""Resolutions: how each set's question was answered, and the fits a resolution scores.

Every resolution is kept; a set's current one is its row not superseded (a partial unique
index, migration 0007). Replacing one supersedes the old row in the same transaction.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from service.db import FitRow, ResolutionRow, aware
from service.errors import Conflict

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["current_resolution", "current_resolutions", "resolve", "scored_fits"]


def current_resolution(db: Database, *, set_id: str) -> ResolutionRow | None:
    """The set's current resolution, if any."""
    with db.Session() as session:
        return session.scalar(select(ResolutionRow).where(
            ResolutionRow.set_id == set_id, ResolutionRow.superseded_at.is_(None)))


def current_resolutions(db: Database) -> list[ResolutionRow]:
    """The current resolution of every resolved (or voided) set, by set id."""
    with db.Session() as session:
        return list(session.scalars(
            select(ResolutionRow).where(ResolutionRow.superseded_at.is_(None))
            .order_by(ResolutionRow.set_id)).all())


def resolve(db: Database, *, set_id: str, scenario: str | None, void: bool, on: date,
            note: str, resolved_by: str, replace: bool) -> tuple[ResolutionRow,
                                                                  ResolutionRow | None]:
    """Record a set's resolution; returns it and the one it replaced (if any).

    Raises
    ------
    Conflict
        The set is resolved already and ``replace`` is false (or another writer resolved it
        at the same moment).

    """
    now = db.clock()
    try:
        with db.Session.begin() as session:
            current = session.scalar(select(ResolutionRow).where(
                ResolutionRow.set_id == set_id, ResolutionRow.superseded_at.is_(None)))
            if current is not None:
                if not replace:
                    answer = "void" if current.void else f"'{current.scenario}'"
                    raise Conflict(
                        f"{set_id} was resolved as {answer} on {current.date} (at "
                        f"{aware(current.created_at).isoformat()}); send \"replace\": true to "
                        "replace that resolution (it is kept, superseded)",
                        field="set_id", code="already_resolved")
                session.execute(update(ResolutionRow).where(ResolutionRow.id == current.id)
                                .values(superseded_at=now))
                current.superseded_at = now
            row = ResolutionRow(set_id=set_id, scenario=scenario, void=void, date=on,
                                note=note, resolved_by=resolved_by, created_at=now)
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict(f"{set_id} was resolved by another request just now; read its scores "
                       "and send \"replace\": true to replace that resolution",
                       field="set_id", code="already_resolved") from None
    return row, current


def scored_fits(db: Database, *, set_id: str, before: datetime) -> list[FitRow]:
    """The set's published live fits published before ``before``, oldest first."""
    with db.Session() as session:
        return list(session.scalars(
            select(FitRow)
            .where(FitRow.set_id == set_id, FitRow.kind == "live",
                   FitRow.status == "published", FitRow.finished_at < before)
            .order_by(FitRow.finished_at, FitRow.id)).all())
