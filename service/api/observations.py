"""Observations: log one (analyst), list them, retract one. Append-only."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from service import exports
from service.api.deps import (
    AnalystWrite,
    IdempotencyKey,
    JsonObject,
    ReadAccess,
    StoreDep,
    body_schema,
    json_model,
)
from service.api.downloads import Format, csv_download, csv_ok
from service.api.errors import ERROR_RESPONSES
from service.api.models import (
    ObservationCreate,
    ObservationCreated,
    ObservationPage,
    ObservationPublic,
    Retraction,
)
from service.api.responses import page
from service.errors import BadRequest, NotFound
from service.repositories import observations, sets
from service.reviews import observation_coverage, sets_touching
from service.scheduler import queue_refits
from service.views import observation_dict

router = APIRouter(prefix="/observations", tags=["observations"],
                   responses={401: ERROR_RESPONSES[401]})
_REPLAYED = {"model": ObservationCreated,
             "description": "A retry with a seen Idempotency-Key: the first row; nothing new "
                            "is stored"}


ObservationId = Annotated[int, Path(ge=1, le=2**63 - 1)]
RetractionBody = Annotated[Retraction, Depends(json_model(Retraction))]


# The body is the core's to validate (its messages name the field, for the API and the CLI's
# import alike), after the strict JSON parser; ObservationCreate documents it.
@router.post("", status_code=201, openapi_extra=body_schema(ObservationCreate),
             response_model=ObservationCreated,
             responses={200: _REPLAYED} | {s: ERROR_RESPONSES[s] for s in (403, 409, 413)})
def create_observation(actor: AnalystWrite, body: JsonObject, store: StoreDep,
                       response: Response,
                       idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Log one observation: 201 with the stored row once it is committed.

    With an ``Idempotency-Key`` header, a retry returns the first row with status 200
    (header ``Idempotent-Replayed: true``) and stores nothing. The row's ``analyst`` is the
    key's name (or prefix). ``coverage`` says, per set using the indicator, through which date
    its evidence is complete and whether this observation is inside it (``counted``); one
    dated later waits for a review (``POST /v1/reviews``). A refit is queued for each set
    whose evidence it changed (one pending fit per set: a burst of observations is one refit).
    """
    row, created = observations.add_observation(store, data=body, analyst=actor.name,
                                                idempotency_key=idempotency_key, actor=actor)
    coverage = observation_coverage(store, row.indicator, row.date)
    if created:
        queue_refits(store, list(coverage), requested_by=f"observation {row.id}")
    else:
        # the first attempt may have committed the row and then failed (the database went
        # away, a 503) before queuing its refit; a no-op when the evidence was fitted
        queue_refits(store, list(coverage), requested_by=f"observation {row.id}")
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return {**observation_dict(row), "coverage": coverage}


@router.get("", response_model=ObservationPage,
            responses=csv_ok("A page of observations (JSON), or every matching row (CSV)")
            | {404: ERROR_RESPONSES[404]})
def list_observations(
    request: Request, store: StoreDep, _: ReadAccess,
    indicator: Annotated[str | None, Query(max_length=100)] = None,
    set_id: Annotated[str | None, Query(alias="set", max_length=100,
                                        description="a scenario set id")] = None,
    since: date | None = None,
    until: date | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    include_retracted: bool = True,
    format_: Format = "json",
) -> Any:
    """A page of observations, newest date first: ``{"items", "total", "next"}``.

    ``format=csv``: every matching row (``limit`` and ``offset`` page the JSON only), in the
    same order, as the file `signpost import` reads back (docs/exports.md).
    """
    if indicator is not None:
        sets.get_catalog(store).get_or_raise(indicator, field="indicator")
    if since and until and since > until:
        raise BadRequest(f"until: {until} is before since ({since})", field="until")
    filters = {"indicator": indicator, "set_id": set_id, "since": since, "until": until,
               "include_retracted": include_retracted}
    try:
        if format_ == "csv":
            pages = observations.iter_observations(store, **filters)
            return csv_download(exports.observation_lines(pages), "observations.csv")
        rows, total = observations.list_observations(store, limit=limit, offset=offset,
                                                     **filters)
    except NotFound as exc:
        raise NotFound(exc.message, field="set") from None
    return page(request, [observation_dict(r) for r in rows], total, offset, limit)


@router.post("/{observation_id}/retract", openapi_extra=body_schema(Retraction),
             response_model=ObservationPublic,
             responses={s: ERROR_RESPONSES[s] for s in (403, 404, 409, 413)})
def retract_observation(observation_id: ObservationId, actor: AnalystWrite,
                        body: RetractionBody,
                        store: StoreDep) -> dict[str, Any]:
    """Retract an observation (it stays stored, flagged, and leaves the evidence).

    A refit is queued for each set whose evidence it changed.
    """
    row = observations.retract_observation(store, observation_id=observation_id,
                                           reason=body.reason, by=actor.name, actor=actor)
    queue_refits(store, sets_touching(store, [row.indicator]),
                 requested_by=f"retraction {row.id}")
    return observation_dict(row)
