"""Scenario sets: what is asked, and what the published posterior says."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.api.deps import ServicesDep, SettingsDep, StoreDep, read_access
from service.api.errors import ERROR_RESPONSES
from service.api.models import (
    Forecast,
    History,
    Milestones,
    Paths,
    Posterior,
    Replay,
    ReplayQueued,
    SetDetail,
    SetSummary,
)
from service.api.responses import cached_json, render, rendered_json
from service.errors import NotFound
from service.outlook import (
    find_or_queue_replay,
    forecast_payload,
    milestones_payload,
    parse_date_param,
    path_payload,
    replay_payload,
)
from service.posterior import history_payload, set_detail, set_summary
from service.repositories import fits, sets

router = APIRouter(prefix="/sets", tags=["sets"], dependencies=[Depends(read_access)],
                   responses={s: ERROR_RESPONSES[s] for s in (401, 404)})
_NOT_MODIFIED = {304: {"description": "Not modified: the If-None-Match ETag is current"}}


def _rendered(model: type, description: str) -> dict[int | str, dict]:
    """``responses=`` of a route serving pre-rendered bytes with an ETag.

    The 200 schema is documented; the bytes are not validated again per request.
    """
    return {200: {"model": model, "description": description}} | _NOT_MODIFIED


@router.get("", response_model=list[SetSummary])
def list_sets(store: StoreDep) -> list[dict[str, Any]]:
    """Every loaded scenario set."""
    return [set_summary(s) for s in sets.list_sets(store)]


@router.get("/{set_id}", response_model=SetDetail)
def get_set(set_id: str, store: StoreDep) -> dict[str, Any]:
    """One scenario set in full."""
    return set_detail(sets.get_set(store, set_id=set_id))


@router.get("/{set_id}/posterior",
            responses=_rendered(Posterior, "The newest published posterior, with an ETag"))
async def get_posterior(set_id: str, request: Request, services: ServicesDep) -> Response:
    """The newest published posterior, with an ETag (send If-None-Match to get 304)."""
    store, settings = services.store, services.settings
    # the hot path: memory only (the cache polls the database in the background)
    cache = services.posterior_cache
    rendered = cache.peek_rendered(set_id, store.clock(), settings.stale_after, render)
    if rendered is None:  # not cached yet: the database path fills the cache
        await run_in_threadpool(cache.get, store, set_id, store.clock(), settings.stale_after)
        rendered = cache.peek_rendered(set_id, store.clock(), settings.stale_after, render)
    if rendered is not None:
        return rendered_json(request, rendered)
    await run_in_threadpool(sets.get_set, store, set_id=set_id)  # unknown set: 404 naming set_id
    pending = await run_in_threadpool(fits.pending_fit, store, set_id=set_id)
    hint = (f"fit {pending.id} is {pending.status}" if pending is not None else
            f'an admin can queue one with POST /v1/fits {{"set_id": "{set_id}"}}')
    raise NotFound(f"scenario set '{set_id}' has no published posterior yet; {hint}",
                   code="no_posterior")


@router.get("/{set_id}/history", responses=_rendered(History, "One row per published fit"))
def get_history(set_id: str, request: Request, store: StoreDep) -> Response:
    """One row per published fit, oldest first, with each scenario's probability."""
    scenario_set = sets.get_set(store, set_id=set_id)
    return cached_json(request, history_payload(scenario_set,
                                                fits.fit_history(store, set_id=set_id)))


@router.get("/{set_id}/path", responses=_rendered(Paths, "The filtered path"))
def get_path(set_id: str, request: Request, store: StoreDep) -> Response:
    """The filtered path: P(scenario in force in period t | evidence up to t), every period."""
    return cached_json(request, path_payload(store, sets.get_set(store, set_id=set_id)))


@router.get("/{set_id}/forecast", responses=_rendered(Forecast, "The forecast at a horizon")
            | {422: ERROR_RESPONSES[422]})
def get_forecast(set_id: str, request: Request, store: StoreDep,
                 horizon: Annotated[str, Query(description="a date up to the set's end, "
                                                           "YYYY-MM-DD")]) -> Response:
    """P(scenario in force at the horizon) ("at") and P(reached by then) ("by"), with MCSE."""
    return cached_json(request, forecast_payload(store, sets.get_set(store, set_id=set_id),
                                                 horizon))


@router.get("/{set_id}/milestones",
            responses=_rendered(Milestones, "When each scenario and milestone is reached"))
def get_milestones(set_id: str, request: Request, store: StoreDep) -> Response:
    """When each scenario, each rung "or deeper" and each milestone is first reached."""
    return cached_json(request, milestones_payload(store, sets.get_set(store, set_id=set_id)))


@router.get("/{set_id}/replay", responses={
    200: {"model": Replay, "description": "The stored replay"},
    202: {"model": ReplayQueued, "description": "Replay queued; poll the fit"},
    422: ERROR_RESPONSES[422]})
async def get_replay(set_id: str, store: StoreDep, settings: SettingsDep,
                     as_of: Annotated[str, Query(description="YYYY-MM-DD")]) -> Response:
    """The posterior as it would have been with the evidence up to ``as_of``.

    A stored replay, never the live posterior. Computed on demand by the fit worker: waits up
    to ``SIGNPOST_REPLAY_WAIT`` seconds, then answers 202 with the fit to poll.
    """
    scenario_set = await run_in_threadpool(sets.get_set, store, set_id=set_id)
    when = parse_date_param(scenario_set, as_of, "as_of")
    row = await run_in_threadpool(find_or_queue_replay, store, scenario_set, when)
    deadline = time.monotonic() + settings.replay_wait
    while row.status in ("queued", "running") and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        row = await run_in_threadpool(fits.get_fit, store, fit_id=row.id)
    if row.status in ("queued", "running"):
        return JSONResponse({"set_id": set_id, "fit_id": row.id, "status": row.status,
                             "as_of": when.isoformat()}, status_code=202,
                            headers={"Location": f"/v1/fits/{row.id}"})
    return JSONResponse(replay_payload(store, scenario_set, row))
