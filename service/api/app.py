"""The HTTP API: ``create_app(settings)``; ``uvicorn service.api.app:app_factory --factory``.

Settings are read when the app is created (at server start), never at import. The lifespan
builds the services, migrates the schema if asked, and starts the refit scheduler if asked;
sampling happens in the scheduler's threads and the worker process, never in a handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service.api import alerts as alert_routes
from service.api import audit as audit_routes
from service.api import fits, health, observations, page, reviews, sets
from service.api import keys as key_routes
from service.api import scores as score_routes
from service.api.errors import ERROR_RESPONSES, BodyLimit, install_error_handlers
from service.api.limits import RateLimits
from service.api.links import install_links
from service.api.metrics import install_metrics
from service.api.polls import PosteriorPolls
from service.api.security import install_security
from service.context import Services
from service.settings import Settings, get_settings

log = logging.getLogger("signpost.api")


async def _poll_posteriors(services: Services) -> None:
    """Keep the posterior cache current: one version check per cached set.

    After each change the change feed hears (a fit published by any process) and at the
    latest every ``SIGNPOST_CACHE_POLL`` seconds (the safety net).
    """
    cache, store, settings = services.posterior_cache, services.store, services.settings
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def heard(topics: set[str]) -> None:  # the feed's thread
        if topics & {"published", "any", "reconnected"}:
            loop.call_soon_threadsafe(changed.set)

    services.change_feed().subscribe(heard)
    failing = False
    while True:
        try:
            await asyncio.wait_for(changed.wait(), settings.cache_poll)
        except TimeoutError:
            pass
        changed.clear()
        try:
            await run_in_threadpool(cache.refresh, store, store.clock(), settings.stale_after)
        except Exception as exc:  # a database hiccup: serve what we have, try again next poll
            if failing:  # once per outage, not a traceback every second
                log.debug("posterior cache refresh still failing: %s", exc)
            else:
                log.exception("posterior cache refresh failed; serving what is cached")
            failing = True
        else:
            if failing:
                log.info("posterior cache refresh recovered")
            failing = False


def create_app(settings: Settings | None = None) -> FastAPI:
    """The Signpost API for ``settings`` (the process's ``SIGNPOST_*`` settings by default)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings, role="api")
        try:
            if settings.migrate_on_start:
                services.store.migrate()
            if settings.scheduler:
                services.start_scheduler()
            app.state.services = services
            poller = asyncio.create_task(_poll_posteriors(services))
            yield
            poller.cancel()
        finally:
            services.close()

    app = FastAPI(
        title="Signpost",
        summary="Scenario probabilities from graded evidence",
        description="Scenario sets, observations, fits and published posteriors. Errors "
                    'have one shape: `{"error": {"code", "message", "field"}}`.',
        version="1",
        lifespan=lifespan,
        responses={s: ERROR_RESPONSES[s] for s in (422, 429, 500)},
    )
    app.state.rate_limits = RateLimits(settings)  # service/api/limits.py; built once
    install_error_handlers(app)
    app.add_middleware(PosteriorPolls)  # first: the innermost, inside every other middleware
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       drain_bytes=settings.max_drain_bytes)
    install_security(app, settings)  # CORS, then the security headers, around the 413s too
    install_metrics(app)  # last: its middleware is the outermost, timing the others too
    app.include_router(health.router)
    app.include_router(page.router)  # HTML at / and /sets/{id}; not in the OpenAPI document
    for module in (sets, observations, reviews, fits):
        app.include_router(module.router, prefix="/v1")
    for module in (alert_routes, score_routes):
        app.include_router(module.router, prefix="/v1")
    for module in (key_routes, audit_routes):
        app.include_router(module.router, prefix="/v1")
    install_links(app)  # after every router: list and create routes link to the id routes
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn service.api.app:app_factory --factory``."""
    return create_app()
