"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import StoreDep
from service.api.errors import ErrorBody
from service.errors import NotReady

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (touches nothing else)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorBody, "description": "Not ready"}})
def readyz(store: StoreDep) -> dict[str, str]:
    """The database answers and its schema is at the newest migration."""
    if not store.ping():
        raise NotReady("the database does not answer", code="database_unreachable")
    if not store.migrations_current():
        raise NotReady("the database schema is not at the newest migration; run "
                       "`signpost init`", code="migrations_pending")
    return {"status": "ready"}
