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
