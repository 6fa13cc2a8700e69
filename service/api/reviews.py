"""Reviews: record that indicators' sources were read through a date (analyst), list, retract.

A review changes what counts as evidence, so it queues refits of the sets it touches.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from service.api.deps import (
    AnalystWrite,
    IdempotencyKey,
    ReadAccess,
    StoreDep,
    body_schema,
    json_model,
)
from service.api.downloads import Format, csv_download, csv_ok
from service.api.errors import ERROR_RESPONSES
from service.api.models import Retraction, ReviewCreate, ReviewPage, ReviewWithRefits
from service.api.responses import page
from service.errors import BadRequest, NotFound
from service.exports import review_lines
from service.repositories import sets
from service.reviews import add_review, list_reviews, retract_review, sets_touching
from service.scheduler import queue_refits

router = APIRouter(prefix="/reviews", tags=["reviews"], responses={401: ERROR_RESPONSES[401]})


ReviewId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ReviewBody = Annotated[ReviewCreate, Depends(json_model(ReviewCreate))]
RetractionBody = Annotated[Retraction, Depends(json_model(Retraction))]


def _with_refits(store, review: dict[str, Any], requested_by: str) -> dict[str, Any]:
    sets = sets_touching(store, review["indicators"])
    return {**review, "sets": sets, "queued_fits": queue_refits(store, sets, requested_by)}


@router.post("", status_code=201, openapi_extra=body_schema(ReviewCreate),
             response_model=ReviewWithRefits,
             responses={200: {"model": ReviewWithRefits,
                              "description": "A retry with a seen Idempotency-Key: the first "
                                             "review; nothing new is stored"}}
             | {s: ERROR_RESPONSES[s] for s in (403, 409, 413)})
def create_review(actor: AnalystWrite, body: ReviewBody, store: StoreDep, response: Response,
                  idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Record a review: 201 with it, the sets it touches and the refits it queued.

    ``{"set_id", "indicators", "through", "note"}``: the sources for these indicators (all
    of the set's when ``indicators`` is absent) were reviewed through ``through`` and
    everything found was logged, so quiet periods up to it count as evidence.
    """
    review, created = add_review(store, body.model_dump(), analyst=actor.name,
                                 idempotency_key=idempotency_key, actor=actor)
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return _with_refits(store, review, requested_by=f"review {review['id']}")


@router.get("", response_model=ReviewPage,
            responses=csv_ok("A page of reviews (JSON), or every matching review (CSV)")
            | {404: ERROR_RESPONSES[404]})
def get_reviews(
    request: Request, store: StoreDep, _: ReadAccess,
    set_id: Annotated[str | None, Query(alias="set", max_length=100,
                                        description="a scenario set id")] = None,
    indicator: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    include_retracted: bool = True,
    format_: Format = "json",
) -> Any:
    """Reviews, newest ``through`` first: ``{"items", "total", "next"}``.

    ``set`` keeps the reviews covering any of that set's indicators (a review of an
    indicator counts for every set that uses it). ``format=csv``: every matching review
    (``limit`` and ``offset`` page the JSON only), the file ``signpost import --reviews``
    reads back (docs/exports.md).
    """
    if indicator is not None:
        try:
            sets.get_catalog(store).get_or_raise(indicator, field="indicator")
        except ValueError as exc:
            raise BadRequest(str(exc), field="indicator") from None
    try:
        if format_ == "csv":
            return csv_download(review_lines(store, set_id=set_id, indicator=indicator,
                                             include_retracted=include_retracted),
                                "reviews.csv")
        items, total = list_reviews(store, set_id=set_id, indicator=indicator, limit=limit,
                                    offset=offset, include_retracted=include_retracted)
    except NotFound as exc:
        raise NotFound(exc.message, field="set") from None
    return page(request, items, total, offset, limit)


@router.post("/{review_id}/retract", openapi_extra=body_schema(Retraction),
             response_model=ReviewWithRefits,
             responses={s: ERROR_RESPONSES[s] for s in (403, 404, 409, 413)})
def retract(review_id: ReviewId, actor: AnalystWrite, body: RetractionBody,
            store: StoreDep) -> dict[str, Any]:
    """Retract a review (it stays stored, flagged, and stops counting towards coverage)."""
    review = retract_review(store, review_id, body.reason, by=actor.name, actor=actor)
    return _with_refits(store, review, requested_by=f"retraction of review {review_id}")
