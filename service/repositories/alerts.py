"""Alert rules and their deliveries: store, list, soft-delete, fire once per fit, claim, record.

A delivery is claimed before it is attempted: one conditional UPDATE pushes its
``next_attempt_at`` ahead, and only the process whose UPDATE matched attempts it, so any number
of processes may deliver from the same table. A claim left by a crashed process falls due
again when that time passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from service.db import AlertDeliveryRow, AlertRuleRow, FitRow
from service.errors import NotFound

if TYPE_CHECKING:
    from service.db import Database

__all__ = [
    "DELIVERY_STATUSES",
    "add_rule",
    "claim_due",
    "delete_rule",
    "fire",
    "get_delivery",
    "get_rule",
    "list_deliveries",
    "list_rules",
    "live_rules",
    "next_due",
    "previous_published",
    "record_attempt",
]

DELIVERY_STATUSES = ("pending", "delivered", "failed")


def add_rule(db: Database, *, values: Mapping[str, Any]) -> AlertRuleRow:
    """Store a validated rule (`service.alerts.validate_rule` makes ``values``)."""
    row = AlertRuleRow(**values, created_at=db.clock())
    with db.Session.begin() as session:
        session.add(row)
    return row


def get_rule(db: Database, *, rule_id: int) -> AlertRuleRow:
    """A rule, deleted or not. Raises NotFound."""
    return db.get(AlertRuleRow, rule_id, missing=f"no alert rule {rule_id}", field="rule_id")


def list_rules(db: Database, *, set_id: str | None = None, include_deleted: bool = False,
               limit: int = 100, offset: int = 0) -> tuple[list[AlertRuleRow], int]:
    """Rules, newest first, and how many match."""
    query = select(AlertRuleRow)
    if set_id is not None:
        query = query.where(AlertRuleRow.set_id == set_id)
    if not include_deleted:
        query = query.where(AlertRuleRow.deleted_at.is_(None))
    with db.Session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = session.scalars(query.order_by(AlertRuleRow.id.desc())
                               .limit(limit).offset(offset)).all()
    return list(rows), total or 0


def delete_rule(db: Database, *, rule_id: int) -> AlertRuleRow:
    """Soft-delete a rule (again: no change); its pending deliveries are failed, not sent.

    Raises NotFound.
    """
    now = db.clock()
    with db.Session.begin() as session:
        row = session.get(AlertRuleRow, rule_id)
        if row is None:
            raise NotFound(f"no alert rule {rule_id}", field="rule_id")
        if row.deleted_at is None:
            row.deleted_at = now
            session.execute(
                update(AlertDeliveryRow)
                .where(AlertDeliveryRow.rule_id == rule_id,
                       AlertDeliveryRow.status == "pending")
                .values(status="failed", next_attempt_at=None,
                        last_error="not sent: the rule was deleted"))
    return row


def live_rules(db: Database, *, set_id: str, created_before: datetime) -> list[AlertRuleRow]:
    """The set's rules not deleted and created before ``created_before`` (a fit's publication)."""
    with db.Session() as session:
        return list(session.scalars(
            select(AlertRuleRow)
            .where(AlertRuleRow.set_id == set_id, AlertRuleRow.deleted_at.is_(None),
                   AlertRuleRow.created_at < created_before)
            .order_by(AlertRuleRow.id)).all())


def previous_published(db: Database, *, fit: FitRow) -> FitRow | None:
    """The set's newest published live fit before ``fit``."""
    with db.Session() as session:
        return session.scalar(
            select(FitRow)
            .where(FitRow.set_id == fit.set_id, FitRow.kind == "live",
                   FitRow.status == "published", FitRow.id != fit.id,
                   FitRow.finished_at <= fit.finished_at)
            .order_by(FitRow.finished_at.desc(), FitRow.id.desc()).limit(1))


def fire(db: Database, *, rule: AlertRuleRow, fit_id: str, scenario: str | None, reason: str,
         payload: Callable[[int], str], reference: Mapping[str, float]
         ) -> AlertDeliveryRow | None:
    """Record that ``fit_id`` met ``rule``: a pending delivery, and the rule's new reference.

    ``payload`` makes the body from the delivery's id. Both rows change in one transaction;
    None (nothing changed) when the rule already fired on this fit — another process got
    there first.
    """
    now = db.clock()
    try:
        with db.Session.begin() as session:
            row = AlertDeliveryRow(rule_id=rule.id, set_id=rule.set_id, fit_id=fit_id,
                                   scenario=scenario, reason=reason, payload="",
                                   status="pending", attempts=0, next_attempt_at=now,
                                   created_at=now)
            session.add(row)
            session.flush()  # the unique (rule, fit) fails here for the second contender
            row.payload = payload(row.id)
            session.execute(update(AlertRuleRow).where(AlertRuleRow.id == rule.id)
                            .values(reference=dict(reference), reference_fit_id=fit_id,
                                    last_fired_at=now))
    except IntegrityError:
        return None
    return row


def get_delivery(db: Database, *, delivery_id: int) -> AlertDeliveryRow:
    """A delivery. Raises NotFound."""
    return db.get(AlertDeliveryRow, delivery_id, missing=f"no alert delivery {delivery_id}",
                  field="delivery_id")


def list_deliveries(db: Database, *, rule_id: int | None = None, set_id: str | None = None,
                    status: str | None = None, limit: int = 100, offset: int = 0
                    ) -> tuple[list[AlertDeliveryRow], int]:
    """Deliveries, newest first, and how many match."""
    query = select(AlertDeliveryRow)
    if rule_id is not None:
        query = query.where(AlertDeliveryRow.rule_id == rule_id)
    if set_id is not None:
        query = query.where(AlertDeliveryRow.set_id == set_id)
    if status is not None:
        query = query.where(AlertDeliveryRow.status == status)
    with db.Session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = session.scalars(query.order_by(AlertDeliveryRow.id.desc())
                               .limit(limit).offset(offset)).all()
    return list(rows), total or 0


def claim_due(db: Database, *, hold_until: datetime, limit: int) -> list[int]:
    """Claim pending deliveries that are due: each is ours until ``hold_until``."""
    now = db.clock()
    with db.Session() as session:
        due = list(session.scalars(
            select(AlertDeliveryRow.id)
            .where(AlertDeliveryRow.status == "pending",
                   AlertDeliveryRow.next_attempt_at <= now)
            .order_by(AlertDeliveryRow.next_attempt_at).limit(limit)))
    claimed = []
    for delivery_id in due:
        with db.Session.begin() as session:
            result = session.execute(
                update(AlertDeliveryRow)
                .where(AlertDeliveryRow.id == delivery_id,
                       AlertDeliveryRow.status == "pending",
                       AlertDeliveryRow.next_attempt_at <= now)
                .values(next_attempt_at=hold_until))
            if result.rowcount == 1:
                claimed.append(delivery_id)
    return claimed


def next_due(db: Database) -> datetime | None:
    """When the earliest pending delivery falls due (None: none is pending)."""
    with db.Session() as session:
        return session.scalar(select(func.min(AlertDeliveryRow.next_attempt_at))
                              .where(AlertDeliveryRow.status == "pending"))


def record_attempt(db: Database, *, delivery_id: int, status: str, http_status: int | None,
                   error: str | None, next_attempt_at: datetime | None) -> None:
    """Count one attempt of a claimed delivery and its outcome.

    ``status`` is ``delivered``, ``failed`` (no more attempts) or ``pending`` (retried at
    ``next_attempt_at``). A delivery failed meanwhile (its rule deleted) is only counted.
    """
    now = db.clock()
    values: dict[str, Any] = {"attempts": AlertDeliveryRow.attempts + 1,
                              "last_status": http_status, "last_error": error}
    with db.Session.begin() as session:
        session.execute(
            update(AlertDeliveryRow)
            .where(AlertDeliveryRow.id == delivery_id, AlertDeliveryRow.status != "pending")
            .values(attempts=AlertDeliveryRow.attempts + 1, last_status=http_status))
        session.execute(
            update(AlertDeliveryRow)
            .where(AlertDeliveryRow.id == delivery_id, AlertDeliveryRow.status == "pending")
            .values(**values, status=status,
                    next_attempt_at=next_attempt_at if status == "pending" else None,
                    delivered_at=now if status == "delivered" else None))
