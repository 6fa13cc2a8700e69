"""One error shape for the whole API: ``{"error": {"code", "message", "field"}}``.

Domain code raises `service.errors.ServiceError` subclasses (and the indicators package its
`InvalidObservation`, which names a field). Two tables here are the only places that decide
what a client sees: `STATUS` maps each domain error class to its HTTP status, and
`service.errors.refusal` (shared with the CLI) turns pydantic validation errors (of a body
model or of the request's parameters) into the message and field. Starlette's HTTP errors
(unknown route, wrong method) and anything unexpected (500, no traceback in the body) get the
same shape; a database that cannot serve now (unreachable, restarting, locked past the busy
timeout: `database_unavailable`) is a 503 with ``Retry-After``, no SQL in the body.
`BodyLimit` answers 413 for bodies over the configured size, whether announced by
Content-Length or found while reading.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indicators import InvalidObservation
from service.api.models import ErrorBody, ErrorDetail
from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotReady,
    ServiceError,
    Unauthorized,
    refusal,
)

__all__ = ["ERROR_RESPONSES", "INTERNAL_ERROR_MESSAGE", "STATUS", "BodyLimit", "ErrorBody",
           "ErrorDetail", "PayloadTooLarge", "RateLimited", "error_body", "error_response",
           "install_error_handlers", "refusal", "status_of"]

log = logging.getLogger("signpost.api")



class PayloadTooLarge(ServiceError):
    """The request body is over ``SIGNPOST_MAX_BODY_BYTES``."""

    code = "payload_too_large"


class RateLimited(ServiceError):
    """Over a rate limit (`service.api.limits`); ``retry_after`` is whole seconds, ≥ 1."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


STATUS: dict[type[Exception], int] = {
    BadRequest: 422,
    InvalidObservation: 422,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    RateLimited: 429,
    NotReady: 503,
    ServiceError: 500,
}
"""The HTTP status of each domain error (a subclass takes its nearest listed base's)."""


def status_of(exc: Exception) -> int:
    """The HTTP status of a domain error, by `STATUS` (500 for anything not listed)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The error shape as a dict."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An error response in the one shape."""
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, ServiceError):
        return JSONResponse(exc.to_dict(), status_code=status, headers=headers)
    assert isinstance(exc, InvalidObservation)
    return error_response(status, "invalid", str(exc), exc.field, headers)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _domain_error(request, refusal(exc.errors()))


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        code = "not_found"
        message = (f"no such endpoint: {request.method} {request.url.path} "
                   "(the API is described at /docs)")
    elif exc.status_code == 405:
        code = "method_not_allowed"
        # Starlette's Allow names the methods of the first route matching the path only
        headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
        allowed = ", ".join(_methods_allowed(request)) or None
        if allowed:
            headers["Allow"] = allowed
        message = f"{request.method} is not allowed on {request.url.path}" + (
            f"; use {allowed}" if allowed else "")
    else:
        code = "http_error"
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=headers or None)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _methods_allowed(request: Request) -> list[str]:
    """Every method some route serves at the request's path (each method has its own route)."""
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


INTERNAL_ERROR_MESSAGE = "internal error; the server log has the details"
"""The whole message of a 500: never the exception, its traceback, SQL or a path."""


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)


DATABASE_RETRY_AFTER = 2
"""Seconds a client is told to wait (``Retry-After``) while the database is unavailable."""

_SQLITE_TRANSIENT = ("locked", "busy", "unable to open database file", "disk I/O error")
"""What SQLite's transient errors say (its driver raises one class for them and for bugs)."""


def database_unavailable(exc: BaseException) -> bool:
    """Whether a SQLAlchemy error means the database cannot serve now, rather than a bug.

    A connection refused, dropped or timed out (PostgreSQL stopped or restarting), the pool
    exhausted, SQLite's lock still held by another process after the busy timeout. SQLite's
    driver raises its OperationalError for some bugs too ("too many SQL variables"): only
    its transient ones count.
    """
    if isinstance(exc, InterfaceError | PoolTimeout):
        return True
    if isinstance(exc, OperationalError):
        if type(exc.orig).__module__ != "sqlite3":
            return True  # psycopg: the connection or the server's state (SQLSTATE 08, 53, 57)
        return any(transient in str(exc.orig) for transient in _SQLITE_TRANSIENT)
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """503 with ``Retry-After`` while the database is unavailable; any other one is a 500."""
    if not database_unavailable(exc):
        return _unexpected_error(request, exc)
    # one line and no traceback: an outage makes many of these, and the body gets none of it
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason)
    return error_response(
        503, "database_unavailable",
        "the database is unavailable (unreachable, restarting or locked by another writer); "
        f"retry in {DATABASE_RETRY_AFTER} s. A write retried with the same Idempotency-Key "
        "is stored once", headers={"Retry-After": str(DATABASE_RETRY_AFTER)})


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into the one shape."""
    app.add_exception_handler(ServiceError, _domain_error)
    app.add_exception_handler(InvalidObservation, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)


DRAIN_SECONDS = 10.0
"""The longest `BodyLimit` spends reading the rest of a refused body before it answers."""


class BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over ``max_bytes``, read by every client.

    A declared ``Content-Length`` over the limit is refused before the application sees the
    request; a body without one (chunked) is counted while the application reads it, and
    refused as soon as it passes the limit, so an oversized body is never held in memory.

    Before the 413 goes out, the rest of the body is read and discarded, up to ``drain_bytes``
    and `DRAIN_SECONDS`. A client that sends its whole body before it reads (Python's urllib
    and http.client) would otherwise fail in its send: a server that closes a socket holding
    unread data makes the kernel reset the connection, and the 413 is lost. A body longer than
    that (or slower) is answered at once with ``Connection: close``; so is a client that sent
    ``Expect: 100-continue``, which has sent no body yet and now sends none.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = 8 << 20) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is {size}; the limit is {self.max_bytes:,} bytes. "
            "Send one observation per request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass on with a receive that counts the body's bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() \
                and int(declared) > self.max_bytes:
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            drained = (not waiting and int(declared) <= self.drain_bytes
                       and await _drain(receive, self.drain_bytes))
            await _send_error(send, self._too_large(f"{int(declared):,} bytes"),
                              close=not drained)
            return

        received = 0
        started = False
        unread = False  # a refused body left partly unread: the connection must close

        async def limited_receive() -> Message:
            nonlocal received, unread
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        unread = not await _drain(receive, self.drain_bytes - received)
                    raise self._too_large(f"over {self.max_bytes:,} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if unread:
                    message = {**message, "headers": [*message.get("headers", ()),
                                                      (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:  # not turned into a response further in
            if started:
                raise
            await _send_error(send, exc, close=unread)


async def _drain(receive: Receive, budget: int) -> bool:
    """Read and discard the rest of a request body: whether it ended within ``budget`` bytes.

    False too when it took longer than `DRAIN_SECONDS` or the client went away.
    """

    async def read() -> bool:
        left = budget
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect
                return False
            if not message.get("more_body", False):
                return True
            left -= len(message.get("body", b""))
            if left < 0:
                return False

    try:
        return await asyncio.wait_for(read(), DRAIN_SECONDS)
    except TimeoutError:
        return False


async def _send_error(send: Send, exc: ServiceError, *, close: bool) -> None:
    body = json.dumps(exc.to_dict()).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status_of(exc),
                "headers": headers + [(b"connection", b"close")] if close else headers})
    await send({"type": "http.response.body", "body": body})


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "No API key, or an unknown one"),
        (403, "The key's role may not do this"),
        (404, "Unknown set, fit or observation"),
        (409, "Conflicts with the current state: retracted twice, Idempotency-Key reused"),
        (413, "Body over the size limit"),
        (422, "Refused input; `field` names the field"),
        (500, "Internal error (details in the server log only)"),
        (503, "Not available: the database is unreachable, restarting or locked (retry "
              "after `Retry-After` seconds), or not migrated"),
    )
} | {429: {"model": ErrorBody, "description": (
    "Over a rate limit (SIGNPOST_RATE_LIMIT_WRITES, _FITS or _READS); nothing was stored"),
    "headers": {"Retry-After": {"description": "Whole seconds until a request fits again",
                                "schema": {"type": "integer", "minimum": 1}}}}}
"""OpenAPI descriptions of the error statuses, for routers' ``responses=``."""
