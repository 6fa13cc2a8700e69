"""API keys: create one (the secret is shown once, only its hash is kept) and verify one."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from service.db import ApiKeyRow
from service.errors import BadRequest

if TYPE_CHECKING:
    from service.db import Database

__all__ = ["ROLES", "ApiKey", "create_key", "verify_key"]

ROLES = ("reader", "analyst", "admin")


@dataclass(frozen=True)
class ApiKey:
    """A verified API key (never the secret itself)."""

    id: int
    prefix: str
    role: str
    name: str


def create_key(db: Database, *, role: str, name: str = "") -> str:
    """Create an API key; returns the secret, which is never stored.

    Raises
    ------
    BadRequest
        For an unknown role.

    """
    if role not in ROLES:
        raise BadRequest(f"role: '{role}' is not a role; use one of {', '.join(ROLES)}",
                         field="role")
    secret = "sp_" + secrets.token_urlsafe(32)
    with db.Session.begin() as session:
        session.add(ApiKeyRow(key_hash=_hash_key(secret), prefix=secret[:10], role=role,
                              name=name, created_at=db.clock(), revoked=False))
    return secret


def verify_key(db: Database, *, secret: str) -> ApiKey | None:
    """The key's identity and role, or None for an unknown or revoked key."""
    with db.Session() as session:
        row = session.scalar(select(ApiKeyRow).where(
            ApiKeyRow.key_hash == _hash_key(secret), ApiKeyRow.revoked.is_(False)))
    if row is None:
        return None
    return ApiKey(id=row.id, prefix=row.prefix, role=row.role, name=row.name)


def _hash_key(secret: str) -> str:
    # API keys are 256-bit random tokens, so a fast hash is enough (no password stretching)
    return hashlib.sha256(secret.encode()).hexdigest()
