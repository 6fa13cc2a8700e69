"""API keys as operators write and read them: durations, expiry times and the JSON view.

``--expires`` (and ``"expires"`` in a rotation's body) takes a duration from now — a whole
number and a unit, ``s``, ``m``, ``h``, ``d`` or ``w`` (``90s``, ``12h``, ``30d``) — or an ISO
date or timestamp (``2026-12-31``, ``2026-12-31T18:00:00+01:00``; a naive one is UTC, a date
its midnight UTC). ``--grace`` takes a duration. The storage side is
`service.repositories.keys`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.db import ApiKeyRow, aware
from service.errors import BadRequest

__all__ = ["KEY_STATES", "key_dict", "key_state", "parse_duration", "parse_expiry"]

KEY_STATES = ("active", "expired", "revoked")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_DURATION = re.compile(r"(\d{1,9})\s*([smhdw])")


def parse_duration(text: str, *, field: str) -> timedelta:
    """A duration such as ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``.

    Raises
    ------
    BadRequest
        Naming ``field``, for anything else.

    """
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise BadRequest(f"{field}: '{text}' is not a duration; write a whole number and a "
                         "unit: s, m, h, d or w (90s, 12h, 30d)", field=field)
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]])


def parse_expiry(text: str, *, now: datetime, field: str = "expires") -> datetime:
    """When a key given ``text`` (a duration from ``now``, or an ISO date or time) expires.

    Raises
    ------
    BadRequest
        Naming ``field``: not a duration, date or time, or not in the future.

    """
    value = text.strip()
    if _DURATION.fullmatch(value.lower()):
        duration = parse_duration(value, field=field)
        if not duration:
            raise BadRequest(f"{field}: '{text}' is no time at all; give a duration above "
                             "zero", field=field)
        return now + duration
    try:
        when = (datetime.fromisoformat(value) if "T" in value or " " in value
                else datetime.combine(date.fromisoformat(value), datetime.min.time()))
    except ValueError:
        raise BadRequest(f"{field}: '{text}' is neither a duration (90s, 12h, 30d) nor an ISO "
                         "date or time (2026-12-31, 2026-12-31T18:00:00Z)", field=field) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise BadRequest(f"{field}: {when.isoformat()} is not in the future (now is "
                         f"{now.isoformat(timespec='seconds')})", field=field)
    return when


def key_state(row: ApiKeyRow, now: datetime) -> str:
    """``revoked``, ``expired`` or ``active``: whether the key is accepted at ``now``."""
    if row.revoked:
        return "revoked"
    if row.expires_at is not None and aware(row.expires_at) <= now:
        return "expired"
    return "active"


def key_dict(row: ApiKeyRow, now: datetime) -> dict[str, Any]:
    """The API's (and ``signpost keys list --json``'s) view of a key: never its hash."""
    def iso(value: datetime | None) -> str | None:
        return aware(value).isoformat() if value is not None else None

    return {
        "id": row.id,
        "prefix": row.prefix,
        "name": row.name,
        "role": row.role,
        "state": key_state(row, now),
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "revoked_at": iso(row.revoked_at),
        "rotated_from": row.rotated_from,
        "last_used_at": iso(row.last_used_at),
    }
