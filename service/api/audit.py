"""The audit log (admin): who wrote what, when, from where. Read-only here, as everywhere.

There is no route that updates or deletes an entry (the database refuses both too).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field

from service.api.deps import AdminKey, StoreDep
from service.api.errors import ERROR_RESPONSES
from service.api.models import Public
from service.api.responses import page
from service.audit import ACTIONS, audit_dict
from service.errors import BadRequest
from service.repositories.audit import list_audit

router = APIRouter(prefix="/audit", tags=["audit"],
                   responses={s: ERROR_RESPONSES[s] for s in (401, 403, 422)})

RESOURCES = tuple(dict.fromkeys(action.split(".")[0] for action in ACTIONS))


class AuditEntry(Public):
    """One write: who (``actor``, ``actor_key_id``), when, what, and from where."""

    id: int
    at: str
    actor: str = Field(examples=["ana"], description=(
        "the API key's name (its prefix if unnamed), or cli:<user> for the command line"))
    actor_key_id: int | None
    action: str = Field(examples=["observation.create"], description=", ".join(ACTIONS))
    target: str = Field(examples=["observation:42"], description="what it acted on")
    detail: dict[str, Any] = Field(description="what changed (never a secret)")
    client: str | None = Field(description="the client's address (the host, for the CLI)")
    request_id: str | None = Field(description="the request's X-Request-ID header, if sent")


class AuditPage(Public):
    """A page of audit entries, newest first; ``next`` the URL of the next page, or null."""

    items: list[AuditEntry]
    total: int
    next: str | None


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("", response_model=AuditPage)
def get_audit(
    request: Request, store: StoreDep, _: AdminKey,
    actor: Annotated[str | None, Query(max_length=200, description=(
        "a key's name, or cli:<user>"))] = None,
    action: Annotated[str | None, Query(max_length=40, description=(
        "one action (key.revoke) or a resource (key: every key.*)"))] = None,
    target: Annotated[str | None, Query(max_length=200, examples=["observation:42"])] = None,
    since: Annotated[datetime | None, Query(description=(
        "entries at or after this ISO date or time (UTC unless it says)"))] = None,
    until: Annotated[datetime | None, Query(description="entries at or before this")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> dict[str, Any]:
    """Audit entries, newest first: ``{"items", "total", "next"}``, filtered as asked."""
    if action is not None and action not in ACTIONS and action not in RESOURCES:
        raise BadRequest(f"action: '{action}' is not recorded; use one of "
                         f"{', '.join(ACTIONS)} or a resource ({', '.join(RESOURCES)})",
                         field="action")
    since, until = _utc(since), _utc(until)
    if since and until and since > until:
        raise BadRequest(f"until: {until.isoformat()} is before since ({since.isoformat()})",
                         field="until")
    rows, total = list_audit(store, actor=actor, action=action, target=target, since=since,
                             until=until, limit=limit, offset=offset)
    return page(request, [audit_dict(row) for row in rows], total, offset, limit)
