"""Security headers on every response, and CORS only when ``SIGNPOST_CORS_ORIGINS`` lists origins.

`SecurityHeaders` is a pure ASGI middleware (``BaseHTTPMiddleware`` would slow every posterior
poll, the hot path) that adds a precomputed header list to each response that does not carry
the header already:

- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY``, ``Cross-Origin-Opener-Policy`` and
  ``Cross-Origin-Resource-Policy: same-origin``;
- ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'; ...``: the API serves
  JSON, CSV and NetCDF, none of which may load or run anything. The HTML page routes
  (`service.api.page`) send their own, stricter-than-self policy (a per-response nonce for
  their inline style and script, ``connect-src 'self'`` for the poll), which is kept.
  FastAPI's ``/docs`` and ``/redoc`` load their bundles from a CDN and run one inline
  script: they get `DOCS_POLICY`, the script allowed by its SHA-256 (computed from the body,
  which is small), never ``'unsafe-inline'`` scripts;
- ``Cache-Control: no-store`` on every error (status ≥ 400), replacing any other;
- ``Strict-Transport-Security`` only with ``SIGNPOST_BEHIND_TLS`` (a browser that saw it over
  plain HTTP would refuse the service's HTTP for a year).

Starlette answers an unexpected exception outside every middleware (``ServerErrorMiddleware``),
so that 500 would miss the headers: `SecurityHeaders` sends the same generic 500 itself, then
lets the exception go on to the 500 handler (which logs it) and the server.

`Cors` (Starlette's ``CORSMiddleware``, installed by `install_security` only when origins are
listed) answers preflights for the listed origins, allows ``Authorization``,
``If-None-Match``, ``Idempotency-Key`` and ``Content-Type``, exposes ``ETag``, ``Retry-After``,
``Location`` and ``Idempotent-Replayed``, and refuses other preflights in the one error shape.
Without the setting no ``Access-Control-*`` header is ever sent, so browsers keep the
same-origin rule. docs/hardening.md has the reasons.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import INTERNAL_ERROR_MESSAGE, error_body, error_response
from service.settings import Settings

__all__ = ["API_POLICY", "CORS_ALLOWED_HEADERS", "CORS_EXPOSED_HEADERS", "DOCS_POLICY", "Cors",
           "SecurityHeaders", "install_security"]

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""The Content-Security-Policy of every response that does not set its own."""

DOCS_POLICY = ("default-src 'none'; script-src https://cdn.jsdelivr.net{scripts}; "
               "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
               "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.jsdelivr.net; "
               "font-src https://fonts.gstatic.com; connect-src 'self'; worker-src blob:; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
"""The policy of an HTML response without one of its own (FastAPI's /docs and /redoc).

Their stylesheets are injected by the bundles at run time (so ``'unsafe-inline'`` styles);
their one inline script is allowed by its hash, filled in per response."""

CORS_ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "If-None-Match")
CORS_EXPOSED_HEADERS = ("ETag", "Retry-After", "Location", "Idempotent-Replayed")
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

_CSP = b"content-security-policy"
_CACHE_CONTROL = b"cache-control"
_NO_STORE = (_CACHE_CONTROL, b"no-store")
_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every HTTP response (see the module)."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        headers = [(b"x-content-type-options", b"nosniff"),
                   (b"referrer-policy", b"no-referrer"),
                   (b"x-frame-options", b"DENY"),
                   (b"cross-origin-opener-policy", b"same-origin"),
                   (b"cross-origin-resource-policy", b"same-origin")]
        if hsts:
            headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        self.headers = (*headers, (_CSP, API_POLICY.encode()))
        body = json.dumps(error_body("internal_error", INTERNAL_ERROR_MESSAGE)).encode()
        self._internal_error = (body, [(b"content-type", b"application/json"),
                                       (b"content-length", str(len(body)).encode())])

    def secure(self, status: int, headers: Any, present: set[bytes] | None = None) -> list:
        """``headers`` (a new list) with every missing security header added.

        ``present``: the lower-cased names in ``headers``, if the caller has them.
        """
        if present is None:
            present = {name.lower() for name, _ in headers}
        if status >= 400:  # an error is never stored, whatever the route said
            headers = [h for h in headers if h[0].lower() != _CACHE_CONTROL]
            headers.append(_NO_STORE)
        else:
            headers = list(headers)  # never the caller's list: some are reused per response
        headers.extend(h for h in self.headers if h[0] not in present)
        return headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response's start; send the generic 500 if none started."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        held: Message | None = None  # an HTML start without a policy: sent with its body
        body: list[bytes] = []

        async def secured_send(message: Message) -> None:
            nonlocal started, held
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers") or ()
                present, html = set(), False
                for name, value in headers:
                    name = name.lower()
                    present.add(name)
                    html = html or (name == b"content-type" and value.startswith(b"text/html"))
                if html and _CSP not in present:
                    held = message
                    return
                message = {**message,
                           "headers": self.secure(message["status"], headers, present)}
            elif held is not None and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                content = b"".join(body)
                headers = [(_CSP, _docs_policy(content)), *held.get("headers", ())]
                await send({**held, "headers": self.secure(held["status"], headers)})
                held = None
                message = {**message, "body": content}
            await send(message)

        try:
            await self.app(scope, receive, secured_send)
        except Exception:
            if not started:
                content, headers = self._internal_error
                await send({"type": "http.response.start", "status": 500,
                            "headers": self.secure(500, headers)})
                await send({"type": "http.response.body", "body": content})
            raise


def _docs_policy(content: bytes) -> bytes:
    """`DOCS_POLICY` allowing exactly the inline scripts of ``content``, by their SHA-256."""
    hashes = ["'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
              for script in _INLINE_SCRIPT.findall(content)]
    return DOCS_POLICY.format(scripts="".join(" " + h for h in hashes)).encode()


class Cors(CORSMiddleware):
    """Starlette's CORS middleware, refusing a preflight in the API's one error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """The preflight answer; a refusal is 400 with the error body naming what failed."""
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        failed = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {k: v for k, v in response.headers.items()
                   if k.startswith("access-control-") or k == "vary"}
        field = {"origin": "Origin", "method": "Access-Control-Request-Method",
                 "headers": "Access-Control-Request-Headers"}.get(failed.split(",")[0])
        return error_response(
            400, "cors_refused",
            f"cross-origin request refused ({failed} not allowed); SIGNPOST_CORS_ORIGINS "
            f"lists the origins, and {', '.join(CORS_ALLOWED_HEADERS)} are the headers a "
            "browser may send", field=field, headers=headers)


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add CORS (when origins are listed) and then `SecurityHeaders` around it.

    Call after the body limit, so that a 413 and a CORS refusal carry the headers too.
    """
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(Cors, allow_origins=origins, allow_methods=CORS_METHODS,
                           allow_headers=CORS_ALLOWED_HEADERS,
                           expose_headers=CORS_EXPOSED_HEADERS, max_age=600)
    app.add_middleware(SecurityHeaders, hsts=settings.behind_tls)
