"""The audit log: record an entry (in the caller's transaction, or alone) and list entries.

Append-only: there are only these two ways in, `record` and `record_now`, and `list_audit`
out; nothing here (or anywhere) updates or deletes an entry, and the database refuses it
(migration 0008's triggers).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select, true

from service.audit import ACTIONS, Actor
from service.db import AuditRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from service.db import Database

__all__ = ["list_audit", "record", "record_now"]


def record(session: Session, *, actor: Actor, action: str, at: datetime, target: str = "",
           detail: Mapping[str, Any] | None = None) -> AuditRow:
    """Add one entry to ``session``: it commits with the write it records, or not at all.

    Raises
    ------
    ValueError
        An action not in `service.audit.ACTIONS` (a programming error, never user input).

    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to service.audit.ACTIONS")
    row = AuditRow(at=at, actor=actor.name[:200], actor_key_id=actor.key_id, action=action,
                   target=target[:200], detail=dict(detail or {}),
                   client=(actor.client or None) and actor.client[:200],
                   request_id=(actor.request_id or None) and actor.request_id[:200])
    session.add(row)
    return row


def record_now(db: Database, *, actor: Actor, action: str, target: str = "",
               detail: Mapping[str, Any] | None = None) -> None:
    """Record one entry in a transaction of its own (for a write that has none to join)."""
    with db.Session.begin() as session:
        record(session, actor=actor, action=action, at=db.clock(), target=target,
               detail=detail)


def list_audit(db: Database, *, actor: str | None = None, action: str | None = None,
               target: str | None = None, since: datetime | None = None,
               until: datetime | None = None, limit: int = 100,
               offset: int = 0) -> tuple[list[AuditRow], int]:
    """A page of entries, newest first, and how many match.

    ``action`` is one action (``key.revoke``) or a resource (``key``: every ``key.*``);
    ``since`` and ``until`` bound ``at`` (both included).
    """
    conditions = []
    if actor is not None:
        conditions.append(AuditRow.actor == actor)
    if action is not None:
        conditions.append(AuditRow.action == action if "." in action
                          else AuditRow.action.startswith(action + ".", autoescape=True))
    if target is not None:
        conditions.append(AuditRow.target == target)
    if since is not None:
        conditions.append(AuditRow.at >= since)
    if until is not None:
        conditions.append(AuditRow.at <= until)
    where = and_(*conditions) if conditions else true()
    with db.Session() as session:
        total = int(session.scalar(select(func.count(AuditRow.id)).where(where)))
        rows = session.scalars(select(AuditRow).where(where).order_by(AuditRow.id.desc())
                               .limit(limit).offset(offset)).all()
    return list(rows), total
