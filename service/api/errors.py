"""One error shape for the whole API: ``{"error": {"code", "message", "field"}}``.

Domain code raises `service.errors.ServiceError` subclasses (and the indicators package its
`InvalidObservation`, which names a field). Two tables here are the only places that decide
what a client sees: `STATUS` maps each domain error class to its HTTP status, and
`service.errors.refusal` (shared with the CLI) turns pydantic validation errors (of a body
model or of the request's parameters) into the message and field. Starlette's HTTP errors
(unknown route, wrong method) and anything unexpected (500, no traceback in the body) get the
same shape. `BodyLimit` answers 413 for bodies over the configured size, whether announced by
Content-Length or found while reading.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
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

__all__ = ["ERROR_RESPONSES", "STATUS", "BodyLimit", "ErrorBody", "ErrorDetail",
           "PayloadTooLarge", "error_body", "error_response", "install_error_handlers",
           "refusal", "status_of"]

log = logging.getLogger("signpost.api")



class PayloadTooLarge(ServiceError):
    """The request body is over ``SIGNPOST_MAX_BODY_BYTES``."""

    code = "payload_too_large"


STATUS: dict[type[Exception], int] = {
    BadRequest: 422,
    InvalidObservation: 422,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
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
        allowed = headers.get("Allow") or headers.get("allow")
        message = f"{request.method} is not allowed on {request.url.path}" + (
            f"; use {allowed}" if allowed else "")
    else:
        code = "http_error"
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=headers or None)


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error",
                          "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into the one shape."""
    app.add_exception_handler(ServiceError, _domain_error)
    app.add_exception_handler(InvalidObservation, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


class BodyLimit:
    """Pure ASGI middleware: 413 for request bodies over ``max_bytes``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    without one (chunked) is counted while the application reads it, and refused as soon as
    it passes the limit, so an oversized body is never held in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is {size}; the limit is {self.max_bytes:,} bytes. "
            "Send one observation per request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass on with a receive that counts the body's bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.strip().isdigit() \
                and int(declared) > self.max_bytes:
            await _send_error(send, self._too_large(f"{int(declared):,} bytes"))
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"over {self.max_bytes:,} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:  # not turned into a response further in
            if started:
                raise
            await _send_error(send, exc)


async def _send_error(send: Send, exc: ServiceError) -> None:
    body = json.dumps(exc.to_dict()).encode()
    await send({"type": "http.response.start", "status": status_of(exc),
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
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
        (503, "Not available yet: database unreachable or not migrated"),
    )
}
"""OpenAPI descriptions of the error statuses, for routers' ``responses=``."""
