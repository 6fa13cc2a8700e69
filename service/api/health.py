"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import StoreDep
from service.api.errors import ERROR_RESPONSES
from service.api.models import Health
from service.errors import NotReady

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, Any]:
    """The process is up (touches nothing else)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: ERROR_RESPONSES[503]})
def readyz(store: StoreDep) -> dict[str, Any]:
    """The database answers and its schema is at the newest migration."""
    if not store.ping():
        raise NotReady("the database does not answer", code="database_unreachable")
    if not store.migrations_current():
        raise NotReady("the database schema is not at the newest migration; run "
                       "`signpost init`", code="migrations_pending")
    return {"status": "ready"}
