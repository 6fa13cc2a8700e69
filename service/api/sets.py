"""Scenario sets: what is asked, and what the published posterior says."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.analysis import attribution_payload, watchlist_payload, what_if_payload
from service.api.deps import (
    AnalystFitRequest,
    JsonObject,
    ServicesDep,
    SetId,
    SettingsDep,
    StoreDep,
    body_schema,
    read_access,
)
from service.api.downloads import Format, csv_download, csv_ok
from service.api.errors import ERROR_RESPONSES
from service.api.models import (
    Attribution,
    Forecast,
    History,
    Milestones,
    Paths,
    Posterior,
    Replay,
    ReplayQueued,
    SetDetail,
    SetSummary,
    Watchlist,
    WhatIf,
    WhatIfBody,
)
from service.api.responses import cached_json, render, rendered_json
from service.errors import NotFound
from service.exports import history_csv
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
def list_sets(store: StoreDep, settings: SettingsDep) -> list[dict[str, Any]]:
    """Every loaded scenario set."""
    return [set_summary(s, settings.word_table()) for s in sets.list_sets(store)]


@router.get("/{set_id}", response_model=SetDetail)
def get_set(set_id: SetId, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    """One scenario set in full."""
    return set_detail(sets.get_set(store, set_id=set_id), settings.word_table())


@router.get("/{set_id}/posterior",
            responses=_rendered(Posterior, "The newest published posterior, with an ETag"))
async def get_posterior(set_id: SetId, request: Request, services: ServicesDep) -> Response:
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


@router.get("/{set_id}/history",
            responses=csv_ok("One row per published fit: JSON with an ETag, or CSV", History)
            | _NOT_MODIFIED | {422: ERROR_RESPONSES[422]})
def get_history(set_id: SetId, request: Request, store: StoreDep, settings: SettingsDep,
                format_: Format = "json") -> Response:
    """One row per published fit, oldest first, with each scenario's probability.

    ``format=csv``: the same rows, one column per scenario's probability, MCSE and words
    (``p_<id>``, ``mcse_<id>``, ``words_<id>``; docs/exports.md).
    """
    scenario_set = sets.get_set(store, set_id=set_id)
    payload = history_payload(scenario_set, fits.fit_history(store, set_id=set_id),
                              settings.word_table())
    if format_ == "csv":
        return csv_download(history_csv(payload), f"{set_id}-history.csv")
    return cached_json(request, payload)


@router.get("/{set_id}/path", responses=_rendered(Paths, "The filtered path"))
def get_path(set_id: SetId, request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """The filtered path: P(scenario in force in period t | evidence up to t), every period."""
    return cached_json(request, path_payload(store, sets.get_set(store, set_id=set_id),
                                             settings.word_table()))


@router.get("/{set_id}/forecast", responses=_rendered(Forecast, "The forecast at a horizon")
            | {422: ERROR_RESPONSES[422]})
def get_forecast(set_id: SetId, request: Request, store: StoreDep, settings: SettingsDep,
                 horizon: Annotated[str, Query(max_length=10, description=(
                     "a date up to the set's end, YYYY-MM-DD"), examples=["2030-06-30"],
                     json_schema_extra={"format": "date"})]) -> Response:
    """P(scenario in force at the horizon) ("at") and P(reached by then) ("by"), with MCSE."""
    return cached_json(request, forecast_payload(store, sets.get_set(store, set_id=set_id),
                                                 horizon, settings.word_table()))


@router.get("/{set_id}/milestones",
            responses=_rendered(Milestones, "When each scenario and milestone is reached"))
def get_milestones(set_id: SetId, request: Request, store: StoreDep,
                   settings: SettingsDep) -> Response:
    """When each scenario, each rung "or deeper" and each milestone is first reached."""
    return cached_json(request, milestones_payload(store, sets.get_set(store, set_id=set_id),
                                                   settings.word_table()))


@router.get("/{set_id}/replay", responses={
    200: {"model": Replay, "description": "The stored replay"},
    202: {"model": ReplayQueued, "description": "Replay queued; poll the fit"},
    422: ERROR_RESPONSES[422]})
async def get_replay(set_id: SetId, store: StoreDep, settings: SettingsDep,
                     as_of: Annotated[str, Query(max_length=10, description="YYYY-MM-DD",
                                                 examples=["2025-06-30"],
                                                 json_schema_extra={"format": "date"})],
                     ) -> Response:
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
    return JSONResponse(replay_payload(store, scenario_set, row, settings.word_table()))


@router.get("/{set_id}/attribution", response_model=Attribution)
def get_attribution(set_id: SetId, store: StoreDep, settings: SettingsDep) -> dict[str, Any]:
    """Why the published posterior is what it is.

    ``indicators``: each indicator's log marginal likelihood under each scenario held
    throughout (for a static set softmax(log prior + Σ indicators) is the posterior);
    ``observations``: each observation's ``delta_log_probability`` = log P(k | evidence) −
    log P(k | evidence without it), its shift were it graded F6, and ``critical`` when removing
    it changes the most probable scenario (exact for static sets; for dynamic sets exact given
    each posterior draw, PSIS re-weighted over the draws); ``since_previous``: what entered
    since the previous published fit and how each scenario moved.
    """
    return attribution_payload(store, sets.get_set(store, set_id=set_id), settings,
                               settings.word_table())


@router.get("/{set_id}/watchlist", response_model=Watchlist,
            responses={422: ERROR_RESPONSES[422]})
def get_watchlist(set_id: SetId, store: StoreDep, settings: SettingsDep,
                  periods: Annotated[int, Query(ge=1, le=40, description=(
                      "how many periods ahead to look"))] = 4) -> dict[str, Any]:
    """Indicators ranked by ``information_bits``, what their next ``periods`` tell.

    The mutual information between an indicator's observations over the next ``periods``
    periods and the scenario in force at the end of them (exact for static sets; Monte Carlo
    with ``mcse_bits`` for dynamic ones), each with the outcome that would move the posterior most.
    """
    return watchlist_payload(store, sets.get_set(store, set_id=set_id), settings, periods,
                             settings.word_table())


@router.post("/{set_id}/what-if", response_model=WhatIf, openapi_extra=body_schema(WhatIfBody),
             responses={s: ERROR_RESPONSES[s] for s in (403, 413, 422)})
def post_what_if(set_id: SetId, key: AnalystFitRequest, body: JsonObject, store: StoreDep,
                 settings: SettingsDep) -> dict[str, Any]:
    """The posterior as if some changes were logged; nothing is stored.

    ``observations`` as if logged, ``without`` as if retracted, ``reviews`` as if recorded,
    each validated as the real request would be.

    A static set: exact. A dynamic set: the published fit's draws re-weighted (PSIS) when
    their Pareto k̂ ≤ 0.7, else (or with ``"forecast": true``) a fit made here and now.
    """
    del key  # an analyst's question: it stores nothing, but it costs a fit (rate-limited)
    return what_if_payload(store, sets.get_set(store, set_id=set_id), settings, body,
                           settings.word_table())
