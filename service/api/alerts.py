"""Alert rules (create, list, read, delete) and their deliveries; analyst or admin keys only.

A rule's webhook URL may carry a token of its own, so every route here needs an analyst key,
reads too. The secret is never served back: ``secret_hint`` shows its last four characters.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field

from service.alerts import AlertRuleIn, create_rule, delivery_dict, rule_dict
from service.api.deps import (
    AnalystKey,
    AnalystWrite,
    SettingsDep,
    StoreDep,
    body_schema,
    json_model,
)
from service.api.errors import ERROR_RESPONSES
from service.api.models import Public
from service.api.responses import page
from service.audit import rule_detail
from service.repositories import alerts as repo
from service.repositories import audit
from service.repositories.sets import get_set
from service.webhooks import AllowList

router = APIRouter(tags=["alerts"], responses={s: ERROR_RESPONSES[s] for s in (401, 403)})


class AlertRule(Public):
    """A stored alert rule (never its secret)."""

    id: int
    set_id: str
    kind: str = Field(examples=["probability"], description="probability or leader")
    scenario: str | None
    above: float | None
    below: float | None
    min_move: float | None
    webhook_url: str
    secret_hint: str = Field(examples=["…k3Qz"], description="the secret's last 4 characters")
    created_by: str
    created_at: str
    deleted_at: str | None
    reference: dict[str, float] = Field(description=(
        "the probabilities min_move is measured from: the published ones when the rule was "
        "created, then those of the fit it last fired on"))
    reference_fit_id: str | None
    last_fired_at: str | None


class AlertRulePage(Public):
    """A page of alert rules, newest first; ``next`` the URL of the next page, or null."""

    items: list[AlertRule]
    total: int
    next: str | None


class AlertDelivery(Public):
    """One alert: the rule a fit met, the body as sent, and how its delivery went."""

    id: int
    rule_id: int
    set_id: str
    fit_id: str
    scenario: str | None
    reason: str
    status: str = Field(examples=["delivered"], description="pending, delivered or failed")
    attempts: int
    last_status: int | None = Field(description="the last attempt's HTTP status (null: none)")
    last_error: str | None
    next_attempt_at: str | None = Field(description="when a pending delivery is tried next")
    created_at: str
    delivered_at: str | None
    payload: dict[str, Any] = Field(description=(
        "the JSON body as sent: rule_id, set_id, fit_id, scenario, from, to, reason, …"))


class AlertDeliveryPage(Public):
    """A page of deliveries, newest first; ``next`` the URL of the next page, or null."""

    items: list[AlertDelivery]
    total: int
    next: str | None


RuleId = Annotated[int, Path(ge=1, le=2**63 - 1)]
RuleBody = Annotated[AlertRuleIn, Depends(json_model(AlertRuleIn))]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=2**31)]


@router.post("/alert-rules", status_code=201, openapi_extra=body_schema(AlertRuleIn),
             response_model=AlertRule, responses={413: ERROR_RESPONSES[413]})
def post_rule(actor: AnalystWrite, body: RuleBody, store: StoreDep,
              settings: SettingsDep, response: Response) -> dict[str, Any]:
    """Create an alert rule: 201 with it (``id``); its webhook gets one POST per alert.

    ``{"set_id", "webhook_url", "secret", "kind", "scenario", "above", "below",
    "min_move"}``: a ``probability`` rule (the default) fires when a new live fit takes the
    scenario's probability (any scenario's, without ``scenario``) from ≤ ``above`` to above it,
    from ≥ ``below`` to below it, or ``min_move`` or more away from where it was when the rule
    last fired (or was created); a ``leader`` rule when the most probable scenario changes.
    """
    row = create_rule(store, body, AllowList.parse(settings.webhook_allow_hosts), actor.name)
    audit.record_now(store, actor=actor, action="alert_rule.create",
                     target=f"alert_rule:{row.id}", detail=rule_detail(row))
    response.headers["Location"] = f"/v1/alert-rules/{row.id}"
    return rule_dict(row)


@router.get("/alert-rules", response_model=AlertRulePage, responses={404: ERROR_RESPONSES[404]})
def list_rules(request: Request, store: StoreDep, _: AnalystKey,
               set_id: Annotated[str | None, Query(max_length=100)] = None,
               include_deleted: bool = False, limit: Limit = 100,
               offset: Offset = 0) -> dict[str, Any]:
    """Alert rules, newest first: ``{"items", "total", "next"}`` (deleted ones on request)."""
    if set_id is not None:
        get_set(store, set_id=set_id)
    rows, total = repo.list_rules(store, set_id=set_id, include_deleted=include_deleted,
                                  limit=limit, offset=offset)
    return page(request, [rule_dict(r) for r in rows], total, offset, limit)


@router.get("/alert-rules/{rule_id}", response_model=AlertRule,
            responses={404: ERROR_RESPONSES[404]})
def get_rule(rule_id: RuleId, store: StoreDep, _: AnalystKey) -> dict[str, Any]:
    """One alert rule (a deleted one too, with ``deleted_at``)."""
    return rule_dict(repo.get_rule(store, rule_id=rule_id))


@router.delete("/alert-rules/{rule_id}", response_model=AlertRule,
               responses={404: ERROR_RESPONSES[404]})
def delete_rule(rule_id: RuleId, store: StoreDep, actor: AnalystWrite) -> dict[str, Any]:
    """Delete a rule: 200 with it, ``deleted_at`` set (again: the same, nothing changes).

    It stays stored, so its deliveries keep their rule; its pending deliveries are not sent.
    """
    deleted_before = repo.get_rule(store, rule_id=rule_id).deleted_at is not None
    row = repo.delete_rule(store, rule_id=rule_id)
    if not deleted_before:  # audited once: deleting again changes nothing
        audit.record_now(store, actor=actor, action="alert_rule.delete",
                         target=f"alert_rule:{row.id}", detail=rule_detail(row))
    return rule_dict(row)


@router.get("/alerts", response_model=AlertDeliveryPage, responses={404: ERROR_RESPONSES[404]})
def list_deliveries(
    request: Request, store: StoreDep, _: AnalystKey,
    rule_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    set_id: Annotated[str | None, Query(max_length=100)] = None,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: Limit = 100, offset: Offset = 0,
) -> dict[str, Any]:
    """Alert deliveries, newest first, with status, attempts and the last error."""
    if set_id is not None:
        get_set(store, set_id=set_id)
    rows, total = repo.list_deliveries(store, rule_id=rule_id, set_id=set_id, status=status,
                                       limit=limit, offset=offset)
    return page(request, [delivery_dict(r) for r in rows], total, offset, limit)
