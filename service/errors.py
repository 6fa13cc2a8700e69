"""Errors of the service layer, each mapped to one HTTP status by the API.

The statuses (shown here) are the API's business: one table at its edge,
`service.api.errors.STATUS`, maps each class to one. Hierarchy::

    Exception
     └── ServiceError            code, message, field
          ├── NotFound           404  unknown set, fit or observation
          ├── Conflict           409  retracting twice, an idempotency key reused differently
          ├── Unauthorized       401  no key or an unknown key
          ├── Forbidden          403  a key without the needed role
          ├── BadRequest         422  refused input, naming the field
          └── NotReady           503  no published posterior yet, database not migrated
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class ServiceError(Exception):
    """Base: carries an error code, a message and the field at fault (if any)."""

    code = "internal_error"

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict:
        """The API's error body."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class NotFound(ServiceError, LookupError):
    """Something named in the request does not exist."""

    code = "not_found"


class Conflict(ServiceError):
    """The request conflicts with the current state."""

    code = "conflict"


class Unauthorized(ServiceError):
    """No API key, or an unknown one."""

    code = "unauthorized"


class Forbidden(ServiceError):
    """The API key's role may not do this."""

    code = "forbidden"


class BadRequest(ServiceError, ValueError):
    """Input refused by validation."""

    code = "invalid"


class NotReady(ServiceError):
    """The resource exists but is not available yet."""

    code = "not_ready"


_LOCATIONS = ("body", "query", "path", "header", "cookie")


def _describe(error: Mapping[str, Any], fields: Sequence[str]) -> tuple[str | None, str]:
    """(field, message) of one pydantic error.

    The field is its location past ``body``, ``query``…, dotted; the message pydantic's, or
    for an unknown key the known fields.
    """
    loc = [str(part) for part in error.get("loc", ())]
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    field = ".".join(loc) or None
    if error.get("type") == "extra_forbidden" and fields:
        return field, f"unknown field; the fields are {', '.join(fields)}"
    return field, str(error.get("msg", "is invalid")).removeprefix("Value error, ")


def refusal(errors: Iterable[Mapping[str, Any]], fields: Sequence[str] = (), *,
            every: bool = True) -> BadRequest:
    """The refusal (a 422 at the API, exit 2 at the CLI) for pydantic validation errors.

    The one translation of pydantic's errors into Signpost's messages.

    Parameters
    ----------
    errors
        ``ValidationError.errors()`` of a body model, or FastAPI's request validation errors.
    fields
        The body model's fields, named when a key is unknown.
    every
        Name every problem, ``; ``-joined (request parameters); else the first only (a body,
        fixed one field at a time). ``field`` is always the first problem's.

    """
    errors = list(errors)
    if any(error.get("type") == "json_invalid" for error in errors):
        return BadRequest("the body is not valid JSON", code="invalid_json")
    described = [_describe(error, fields) for error in (errors if every else errors[:1])]
    message = "; ".join(f"{field}: {text}" if field else text for field, text in described)
    return BadRequest(message or "invalid request", field=described[0][0] if described else None)
