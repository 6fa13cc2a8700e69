"""``GET /metrics`` (Prometheus' text format) and the request-latency middleware.

`install_metrics` gives an app its own registry (`service.metrics.metrics_registry`: the
database's metrics, read at scrape time, and the process's), the route, and `RequestMetrics`,
which times every request by method, route *template* (``/v1/sets/{set_id}/posterior``, never
the raw path: label values must stay few) and status.

``/metrics`` is open like the other reads, and needs a key when ``SIGNPOST_REQUIRE_READ_KEY``
is set (it carries the same probabilities as the posterior). It is not in the OpenAPI
document: it is Prometheus' text format, not part of the JSON API.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.deps import ReadAccess
from service.metrics import metrics_registry

__all__ = ["REQUEST_BUCKETS", "RequestMetrics", "install_metrics", "router"]

# seconds: a cached posterior poll is well under a millisecond, a what-if some seconds
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
UNROUTED = "unrouted"  # the route label of a request answered before routing (a 404, a 413)
# a client may send any token as its method: others are labelled "other" (labels stay few)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def get_metrics(request: Request, _: ReadAccess) -> Response:
    """The process's metrics: Prometheus text, or OpenMetrics when the scraper asks for it."""
    encoder, content_type = choose_encoder(request.headers.get("accept"))
    return Response(encoder(request.app.state.metrics_registry), media_type=content_type)


class RequestMetrics:
    """Pure ASGI middleware: each HTTP request's seconds in ``duration``.

    Labelled ``method``, ``route`` (the template of the route that answered; ``unrouted`` for
    a request answered before any route was chosen: an unknown path, a body refused by its
    Content-Length) and ``status``. Pure ASGI rather than ``BaseHTTPMiddleware``, which would
    slow every posterior poll.
    """

    def __init__(self, app: ASGIApp, duration: Histogram) -> None:
        self.app = app
        self.duration = duration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request; its status is the one the response starts with (500 if none)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.duration.labels(method, self._template(scope), str(status)).observe(
                time.perf_counter() - started)

    @staticmethod
    def _template(scope: Scope) -> str:
        """The full template of the route that answered, e.g. ``/v1/sets/{set_id}/posterior``.

        The router puts the route on the shared scope. A route of a router included under a
        prefix may carry only its own part (FastAPI 0.16x): the prefix is then the start of
        the path that its pattern does not match (a literal prefix, like ``/v1``).
        """
        route = scope.get("route")
        template = getattr(route, "path_format", None)
        if template is None:
            return UNROUTED
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        for start, char in enumerate(path):
            if char == "/" and route.path_regex.match(path[start:]):
                return path[:start] + template
        return template


def install_metrics(app: FastAPI) -> CollectorRegistry:
    """Give ``app`` its registry (``app.state.metrics_registry``), the middleware and the route.

    Add it after the other middleware, so that it is the outermost and times them too.
    """
    registry = metrics_registry(lambda: getattr(app.state, "services", None))
    app.state.metrics_registry = registry
    duration = Histogram("signpost_request_duration_seconds",
                         "Seconds from a request's arrival to its response's end, by method, "
                         "route template and status (this process)",
                         ("method", "route", "status"), registry=registry,
                         buckets=REQUEST_BUCKETS)
    app.add_middleware(RequestMetrics, duration=duration)
    app.include_router(router)
    return registry
