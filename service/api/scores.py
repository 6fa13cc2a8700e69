"""Resolutions (admin) and scores: how each question was answered, how well it was forecast.

Definitions in `service.scores`: Brier and log scores of the published live fits made before
the resolution date, the same at fixed lead times, a reliability table across sets.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field

from service.api.deps import (
    AdminWrite,
    ReadAccess,
    SetId,
    StoreDep,
    body_schema,
    json_model,
)
from service.api.errors import ERROR_RESPONSES
from service.api.models import Public
from service.repositories import audit
from service.scores import ResolutionIn, resolve_set, scores_payload, set_scores_payload

router = APIRouter(tags=["scores"], responses={401: ERROR_RESPONSES[401]})


class Resolution(Public):
    """A set's resolution: the scenario that came true (or void), and when it became known."""

    set_id: str
    status: str = Field(examples=["resolved"], description="resolved or void")
    scenario: str | None
    date: str = Field(examples=["2035-12-31"])
    note: str
    resolved_by: str
    created_at: str


class ResolutionCreated(Resolution):
    """The resolution recorded, and the one it replaced (null: none)."""

    replaced: Resolution | None


class LeadScore(Public):
    """The scores of the fit a reader had ``lead_days`` before the answer (nulls: none)."""

    lead_days: int
    cutoff: str = Field(description="resolution date − lead_days: the newest fit published "
                                    "on or before it is scored")
    fit_id: str | None
    published_at: str | None
    p_resolved: float | None
    brier: float | None
    log_score: float | None
    n_fits: int


class SetScores(Public):
    """A set's resolution and the scores of its published live fits made before it."""

    set_id: str
    status: str = Field(examples=["resolved"], description="resolved, void or unresolved")
    resolution: Resolution | None
    brier: float | None = Field(description="mean over fits of Σ_k (p_k − 1[k = resolved])²")
    log_score: float | None = Field(description="mean over fits of −ln p_resolved")
    n_fits: int
    leads: list[LeadScore]


class ReliabilityBin(Public):
    """One probability bin of the pooled (fit, scenario) forecasts."""

    bin: str = Field(examples=["0.6-0.7"])
    lower: float
    upper: float
    n: int
    mean_forecast: float | None
    observed_frequency: float | None


class Scores(Public):
    """Every resolved or void set, the means over the scored sets, the reliability table."""

    sets: list[SetScores]
    n_scored_sets: int
    n_fits: int
    brier: float | None = Field(description="mean of the scored sets' brier (each set weighs "
                                            "the same)")
    log_score: float | None
    reliability: list[ReliabilityBin]


ResolutionBody = Annotated[ResolutionIn, Depends(json_model(ResolutionIn))]


@router.post("/sets/{set_id}/resolution", status_code=201, response_model=ResolutionCreated,
             openapi_extra=body_schema(ResolutionIn),
             responses={s: ERROR_RESPONSES[s] for s in (403, 404, 409, 413)})
def post_resolution(set_id: SetId, actor: AdminWrite, body: ResolutionBody,
                    store: StoreDep) -> dict[str, Any]:
    """Resolve a set: ``{"scenario", "date", "note"}`` or ``{"void": true, ...}`` (admin).

    A set has one current resolution: a second is 409 unless it carries ``"replace": true``
    (the old one is kept, superseded). Its fits published before ``date`` are then scored.
    """
    resolved = resolve_set(store, set_id=set_id, body=body, resolved_by=actor.name)
    audit.record_now(store, actor=actor, action="set.resolve", target=f"set:{set_id}",
                     detail=body.model_dump(mode="json", exclude_none=True,
                                            include={"scenario", "date", "void", "replace"}))
    return resolved


@router.get("/sets/{set_id}/scores", response_model=SetScores,
            responses={404: ERROR_RESPONSES[404]})
def get_set_scores(set_id: SetId, store: StoreDep, _: ReadAccess) -> dict[str, Any]:
    """A set's Brier and log scores, overall and at lead times 30/90/180/365 days."""
    return set_scores_payload(store, set_id=set_id)


@router.get("/scores", response_model=Scores)
def get_scores(store: StoreDep, _: ReadAccess) -> dict[str, Any]:
    """Every resolved set's scores (void sets listed, not scored) and a reliability table."""
    return scores_payload(store)
