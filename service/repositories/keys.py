"""API keys: create, verify, list, find, revoke, rotate. Only a key's hash is ever stored.

The secret is returned once, by create and rotate. Nothing caches a key: every request looks
its key up, so a revocation or an expiry holds on every replica from the next request on. The
writes (create, revoke, rotate) record their audit entry in their own transaction when given
an `Actor`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from service.db import ApiKeyRow, aware
from service.errors import BadRequest, Conflict, NotFound
from service.keys import key_state
from service.repositories import audit

if TYPE_CHECKING:
    from service.audit import Actor
    from service.db import Database

__all__ = ["LAST_USED_EVERY", "ROLES", "ApiKey", "create_key", "find_keys", "get_key",
           "list_keys", "resolve_key", "revoke_key", "rotate_key", "verify_key"]

ROLES = ("reader", "analyst", "admin")
LAST_USED_EVERY = timedelta(minutes=1)
"""A key's ``last_used_at`` is written at most this often: polling reads stay read-only."""

log = logging.getLogger("signpost.keys")


@dataclass(frozen=True)
class ApiKey:
    """A verified API key (never the secret itself)."""

    id: int
    prefix: str
    role: str
    name: str


def create_key(db: Database, *, role: str, name: str = "", expires_at: datetime | None = None,
               actor: Actor | None = None) -> str:
    """Create an API key; returns the secret, which is never stored.

    Raises
    ------
    BadRequest
        For an unknown role, or an expiry not in the future.

    """
    if role not in ROLES:
        raise BadRequest(f"role: '{role}' is not a role; use one of {', '.join(ROLES)}",
                         field="role")
    now = db.clock()
    if expires_at is not None and expires_at <= now:
        raise BadRequest(f"expires: {expires_at.isoformat()} is not in the future",
                         field="expires")
    secret, row = _new_key(role=role, name=name, now=now, expires_at=expires_at)
    with db.Session.begin() as session:
        session.add(row)
        session.flush()
        if actor is not None:
            audit.record(session, actor=actor, action="key.create", at=now,
                         target=f"key:{row.id}", detail=_described(row))
    return secret


def verify_key(db: Database, *, secret: str) -> ApiKey | None:
    """The key's identity and role, or None for an unknown, revoked or expired key."""
    presented = _hash_key(secret)
    # The lookup is by the SHA-256 of what was presented, on a unique index: how long it takes
    # depends on that hash, which says nothing about any stored secret (nor, without
    # inverting SHA-256, about any stored hash); the secrets themselves are never compared.
    # The hash found is then compared in constant time, so no early-exit string comparison
    # of key material happens here either.
    with db.Session() as session:
        row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == presented))
    if row is None or not hmac.compare_digest(row.key_hash, presented):
        return None
    now = db.clock()
    if key_state(row, now) != "active":
        return None
    if row.last_used_at is None or aware(row.last_used_at) <= now - LAST_USED_EVERY:
        _touch(db, row.id, now)
    return ApiKey(id=row.id, prefix=row.prefix, role=row.role, name=row.name)


def list_keys(db: Database, *, include_revoked: bool = True) -> list[ApiKeyRow]:
    """Every key, oldest first (revoked ones too unless told otherwise)."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.id)
    if not include_revoked:
        query = query.where(ApiKeyRow.revoked.is_(False))
    with db.Session() as session:
        return list(session.scalars(query))


def get_key(db: Database, *, key_id: int) -> ApiKeyRow:
    """One key. Raises NotFound."""
    return db.get(ApiKeyRow, key_id, field="key_id", missing=(
        f"no API key {key_id} (GET /v1/keys or `signpost keys list` lists them)"))


def find_keys(db: Database, *, ref: str) -> list[ApiKeyRow]:
    """The keys ``ref`` may mean: its id (digits), its name, or its prefix (``sp_…``)."""
    ref = ref.strip()
    if not ref:
        return []
    matches = [ApiKeyRow.name == ref]
    if ref.isdigit():
        matches.append(ApiKeyRow.id == int(ref))
    if ref.startswith("sp_"):
        # a prefix as listed (10 characters), a shorter part of it, or a longer paste
        matches.append(ApiKeyRow.prefix.startswith(ref, autoescape=True))
        matches.append(ApiKeyRow.prefix == ref[:10])
    with db.Session() as session:
        return list(session.scalars(select(ApiKeyRow).where(or_(*matches))
                                    .order_by(ApiKeyRow.id)))


def resolve_key(db: Database, *, ref: str, usable: bool = True) -> ApiKeyRow:
    """The one key ``ref`` (id, name or prefix) names; with ``usable``, among those not revoked.

    Raises
    ------
    NotFound
        No key matches.
    Conflict
        ``usable`` and every match is revoked already.
    BadRequest
        ``ambiguous_key``: more than one matches; the message lists them.

    """
    found = find_keys(db, ref=ref)
    if not found:
        raise NotFound(f"key: no API key has the id, name or prefix '{ref}' "
                       "(`signpost keys list` shows them)", field="key")
    candidates = [row for row in found if not row.revoked] if usable else found
    if not candidates:
        row = found[-1]
        raise Conflict(f"key: API key {row.id} ({row.prefix}…{_named(row)}) is already "
                       f"revoked{_revoked_when(row)}", field="key", code="already_revoked")
    if len(candidates) > 1:
        now = db.clock()
        listed = "; ".join(f"id {row.id}: {row.prefix}…{_named(row)}, {row.role}, "
                           f"{key_state(row, now)}" for row in candidates)
        raise BadRequest(f"key: '{ref}' matches {len(candidates)} keys ({listed}); name one "
                         "by its id or prefix", field="key", code="ambiguous_key")
    return candidates[0]


def revoke_key(db: Database, *, key_id: int, actor: Actor | None = None) -> ApiKeyRow:
    """Revoke a key now; every replica refuses it from its next request on.

    Raises
    ------
    NotFound, Conflict
        No such key; already revoked (``already_revoked``).

    """
    now = db.clock()
    with db.Session.begin() as session:
        row = _for_update(session, key_id)
        row.revoked, row.revoked_at = True, now
        if actor is not None:
            audit.record(session, actor=actor, action="key.revoke", at=now,
                         target=f"key:{row.id}", detail=_described(row))
    return row


def rotate_key(db: Database, *, key_id: int, grace: timedelta | None = None,
               expires_at: datetime | None = None,
               actor: Actor | None = None) -> tuple[ApiKeyRow, str, ApiKeyRow]:
    """Replace a key by a new one with its role and name; returns (new, its secret, old).

    Without ``grace`` the old key is revoked now; with it, it expires after ``grace`` (or at
    its own expiry if sooner), so clients can switch over. The new key expires at
    ``expires_at``, else after the old key's lifetime (creation to expiry) if it had one,
    else never.

    Raises
    ------
    NotFound, Conflict
        No such key; revoked already (``already_revoked``).
    BadRequest
        An expiry not in the future.

    """
    now = db.clock()
    if expires_at is not None and expires_at <= now:
        raise BadRequest(f"expires: {expires_at.isoformat()} is not in the future",
                         field="expires")
    with db.Session.begin() as session:
        old = _for_update(session, key_id)
        if expires_at is None and old.expires_at is not None:
            expires_at = now + (aware(old.expires_at) - aware(old.created_at))
        secret, new = _new_key(role=old.role, name=old.name, now=now, expires_at=expires_at)
        new.rotated_from = old.id
        session.add(new)
        if grace:
            until = now + grace
            if old.expires_at is None or aware(old.expires_at) > until:
                old.expires_at = until
        else:
            old.revoked, old.revoked_at = True, now
        session.flush()
        if actor is not None:
            audit.record(session, actor=actor, action="key.rotate", at=now,
                         target=f"key:{old.id}", detail={
                             **_described(old), "new_key_id": new.id,
                             "new_prefix": new.prefix,
                             "grace_seconds": int(grace.total_seconds()) if grace else 0,
                             "old_expires_at": _iso(old.expires_at),
                             "new_expires_at": _iso(new.expires_at)})
    return new, secret, old


def _new_key(*, role: str, name: str, now: datetime,
             expires_at: datetime | None) -> tuple[str, ApiKeyRow]:
    secret = "sp_" + secrets.token_urlsafe(32)
    return secret, ApiKeyRow(key_hash=_hash_key(secret), prefix=secret[:10], role=role,
                             name=name, created_at=now, revoked=False, expires_at=expires_at)


def _for_update(session, key_id: int) -> ApiKeyRow:
    """The key, locked for this transaction (PostgreSQL; SQLite writers are serial)."""
    row = session.get(ApiKeyRow, key_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no API key {key_id} (GET /v1/keys or `signpost keys list` lists "
                       "them)", field="key_id")
    if row.revoked:
        raise Conflict(f"API key {row.id} ({row.prefix}…{_named(row)}) is already "
                       f"revoked{_revoked_when(row)}", field="key_id", code="already_revoked")
    return row


def _touch(db: Database, key_id: int, now: datetime) -> None:
    """Record that a key was used; best effort (a busy database never fails the request)."""
    try:
        with db.Session.begin() as session:
            session.execute(update(ApiKeyRow).where(
                ApiKeyRow.id == key_id,
                or_(ApiKeyRow.last_used_at.is_(None),
                    ApiKeyRow.last_used_at <= now - LAST_USED_EVERY))
                .values(last_used_at=now))
    except SQLAlchemyError:
        log.warning("could not record the use of API key %s", key_id, exc_info=True)


def _described(row: ApiKeyRow) -> dict[str, object]:
    return {"prefix": row.prefix, "name": row.name, "role": row.role,
            "expires_at": _iso(row.expires_at)}


def _iso(value: datetime | None) -> str | None:
    return aware(value).isoformat() if value is not None else None


def _named(row: ApiKeyRow) -> str:
    return f" '{row.name}'" if row.name else ""


def _revoked_when(row: ApiKeyRow) -> str:
    return f" at {aware(row.revoked_at).isoformat()}" if row.revoked_at else ""


def _hash_key(secret: str) -> str:
    # API keys are 256-bit random tokens, so a fast hash is enough (no password stretching)
    return hashlib.sha256(secret.encode()).hexdigest()
