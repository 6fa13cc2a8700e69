"""One error shape for the whole API: ``{"error": {"code", "message", "field"}}``.

Domain code raises `service.errors.ServiceError` subclasses (and the indicators package its
`InvalidObservation`, which names a field); this module maps them, FastAPI's
request validation errors, Starlette's HTTP errors (unknown route, wrong method) and anything
unexpected (500, no traceback in the body) to that shape. `BodyLimit` answers 413 for bodies
over the configured size, whether announced by Content-Length or found while reading.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indicators import InvalidObservation
from service.errors import ServiceError

log = logging.getLogger("signpost.api")

_LOCATIONS = ("body", "query", "path", "header", "cookie")


class ErrorDetail(BaseModel):
    """What went wrong, and which field (if any) is at fault."""

    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class PayloadTooLarge(ServiceError):
    """The request body is over ``SIGNPOST_MAX_BODY_BYTES``."""

    status = 413
    code = "payload_too_large"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The error shape as a dict."""
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An error response in the one shape."""
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)


def _invalid_observation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidObservation)
    return error_response(422, "invalid", str(exc), exc.field)


def _field_of(loc: tuple[Any, ...]) -> str | None:
    """The last element of a pydantic error location that names a field."""
    names = [part for part in loc if isinstance(part, str)]
    if names and names[0] in _LOCATIONS:
        names = names[1:]
    return names[-1] if names else None


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(422, "invalid_json", "the body is not valid JSON")
    parts = []
    for error in errors:
        field = _field_of(tuple(error.get("loc", ())))
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    field = _field_of(tuple(errors[0].get("loc", ()))) if errors else None
    return error_response(422, "invalid", "; ".join(parts) or "invalid request", field)


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
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(InvalidObservation, _invalid_observation)
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
    await send({"type": "http.response.start", "status": exc.status,
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
    )
}
"""OpenAPI descriptions of the error statuses, for routers' ``responses=``."""
