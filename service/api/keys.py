"""API keys (admin): list them, revoke one, rotate one. Never a hash; a secret only once.

Keys are created with ``signpost keys create`` (the secret must reach its holder some other
way than this API). A revoked key is refused (401) by every replica from its next request on:
no process caches keys. Revoking a key twice is 409 ``already_revoked``, like retracting an
observation twice: the first revocation's time is kept.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.api.deps import AdminKey, AdminWrite, StoreDep, parse_json_object
from service.api.errors import ERROR_RESPONSES
from service.api.models import Public
from service.api.responses import page
from service.errors import refusal
from service.keys import key_dict, parse_duration, parse_expiry
from service.repositories import keys

router = APIRouter(prefix="/keys", tags=["keys"],
                   responses={s: ERROR_RESPONSES[s] for s in (401, 403)})

KeyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the key's id")]


class ApiKeyPublic(Public):
    """An API key as an admin sees it: never its secret or its hash."""

    id: int
    prefix: str = Field(examples=["sp_Xk3Qz9a"], description="the secret's first 10 characters")
    name: str
    role: str = Field(examples=["analyst"], description="reader, analyst or admin")
    state: str = Field(examples=["active"], description="active, expired or revoked")
    created_at: str
    expires_at: str | None = Field(description="when it stops being accepted (null: never)")
    revoked_at: str | None
    rotated_from: int | None = Field(description="the key this one replaced by rotation")
    last_used_at: str | None = Field(description="its last use, to the minute (null: never)")


class ApiKeyPage(Public):
    """The keys, oldest first; ``next`` the URL of the next page, or null."""

    items: list[ApiKeyPublic]
    total: int
    next: str | None


class KeyRotation(BaseModel):
    """How to rotate: the old key's grace period, and the new key's expiry (both optional)."""

    model_config = ConfigDict(extra="forbid")

    grace: str | None = Field(default=None, max_length=40, examples=["1h"], description=(
        "the old key keeps working this long (90s, 15m, 12h, 30d); absent: revoked now"))
    expires: str | None = Field(default=None, max_length=40, examples=["90d"], description=(
        "the new key's expiry: a duration or an ISO date or time; absent: the old key's "
        "lifetime, if it had one"))


class RotatedKey(Public):
    """The new key with its secret (shown this once), and the old key as it is now."""

    key: ApiKeyPublic
    secret: str = Field(description="the new key; only its hash is stored")
    previous: ApiKeyPublic


async def rotation_body(request: Request) -> KeyRotation:
    """The optional body of a rotation: none (or ``{}``) rotates with no grace period."""
    raw = await request.body()
    data = parse_json_object(raw) if raw.strip() else {}
    try:
        return KeyRotation.model_validate(data)
    except ValidationError as exc:
        raise refusal(exc.errors(), tuple(KeyRotation.model_fields), every=False) from None


RotationBody = Annotated[KeyRotation, Depends(rotation_body)]


@router.get("", response_model=ApiKeyPage, responses={422: ERROR_RESPONSES[422]})
def list_keys(request: Request, store: StoreDep, _: AdminKey,
              include_revoked: bool = True,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              offset: Annotated[int, Query(ge=0, le=2**31)] = 0) -> dict[str, Any]:
    """Every key, oldest first, with its state, expiry and last use."""
    rows = keys.list_keys(store, include_revoked=include_revoked)
    now = store.clock()
    return page(request, [key_dict(row, now) for row in rows[offset:offset + limit]],
                len(rows), offset, limit)


@router.delete("/{key_id}", response_model=ApiKeyPublic,
               responses={s: ERROR_RESPONSES[s] for s in (404, 409)})
def revoke(key_id: KeyId, store: StoreDep, actor: AdminWrite) -> dict[str, Any]:
    """Revoke a key: 200 with it, ``revoked_at`` set; 409 ``already_revoked`` the second time."""
    row = keys.revoke_key(store, key_id=key_id, actor=actor)
    return key_dict(row, store.clock())


@router.post("/{key_id}/rotate", status_code=201, response_model=RotatedKey,
             openapi_extra={"requestBody": {"required": False, "content": {
                 "application/json": {"schema": KeyRotation.model_json_schema()}}}},
             responses={s: ERROR_RESPONSES[s] for s in (404, 409, 413)})
def rotate(key_id: KeyId, store: StoreDep, actor: AdminWrite, body: RotationBody,
           response: Response) -> dict[str, Any]:
    """Replace a key by a new one (same role and name): 201 with its secret, shown once.

    Without ``grace`` the old key is revoked now; with it, the old key keeps working that
    long. The new key expires at ``expires``, else after the old key's lifetime if it had one.
    """
    now = store.clock()
    grace = parse_duration(body.grace, field="grace") if body.grace else None
    expires = parse_expiry(body.expires, now=now, field="expires") if body.expires else None
    new, secret, old = keys.rotate_key(store, key_id=key_id, grace=grace, expires_at=expires,
                                       actor=actor)
    response.headers["Cache-Control"] = "no-store"  # the body holds a secret
    return {"key": key_dict(new, now), "secret": secret, "previous": key_dict(old, now)}
