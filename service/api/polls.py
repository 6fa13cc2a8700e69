"""The polling path: ``GET /v1/sets/{set_id}/posterior`` answered from memory, before routing.

Dashboards poll the posterior, mostly to hear "not modified". The route (`service.api.sets`)
already serves bytes rendered once per fit; what a poll still cost was FastAPI's routing,
dependency resolution and response objects — ~60 % of the request next to an async handler that
returns the same bytes (`make bench-http`). `PosteriorPolls` is a pure ASGI middleware, the
innermost one, so every outer middleware (metrics, security headers, CORS) applies to it as to
any route: for a cached set it sends the rendered body (or 304) itself; for anything else — a
set not cached yet, an unknown set, keys required for reads, another method — it passes the
request on to the route unchanged, so auth, the error shape and staleness stay the route's.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.responses import etag_matches, render
from service.api.sets import router

PREFIX, SUFFIX = "/v1/sets/", "/posterior"


class PosteriorPolls:
    """Pure ASGI middleware: cached posteriors sent without routing (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # per set: (the rendered (body, etag) these headers are for, 200 headers, 304 headers)
        self._headers: dict[str, tuple[Any, list, list]] = {}
        self._route: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send a cached posterior, or pass the request on."""
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX) and path.endswith(SUFFIX) and not scope.get("root_path"):
                set_id = path[len(PREFIX):-len(SUFFIX)]
                if set_id and "/" not in set_id and await self._send_cached(scope, send, set_id):
                    return
        await self.app(scope, receive, send)

    async def _send_cached(self, scope: Scope, send: Send, set_id: str) -> bool:
        app = scope.get("app")
        services = getattr(getattr(app, "state", None), "services", None)
        if services is None or services.settings.require_read_key \
                or services.settings.rate_limit_reads:
            return False  # keys (or a read limit) checked by the route's dependency
        settings = services.settings
        rendered = services.posterior_cache.peek_rendered(
            set_id, services.store.clock(), settings.stale_after, render)
        if rendered is None:
            return False  # the route reads the database (and fills the cache) or says why not
        memo = self._headers.get(set_id)
        if memo is None or memo[0] is not rendered:
            body, etag = rendered
            common = [(b"etag", etag.encode()), (b"cache-control", b"no-cache")]
            memo = (rendered,
                    [(b"content-type", b"application/json"),
                     (b"content-length", str(len(body)).encode()), *common],
                    common)
            self._headers[set_id] = memo
        if self._route is None:
            self._route = _posterior_route(app)
        if self._route is not None:
            scope["route"] = self._route  # what the metrics label the request by
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
                break
        rendered_body, etag = rendered
        if etag_matches(if_none_match, etag):
            await send({"type": "http.response.start", "status": 304, "headers": memo[2]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": memo[1]})
            await send({"type": "http.response.body", "body": rendered_body})
        return True


def _posterior_route(app: Any) -> Any:
    """The route these requests would have reached (for whoever labels requests by route)."""
    for route in router.routes:
        if getattr(route, "path", "").endswith("/{set_id}" + SUFFIX):
            return route
    return None
