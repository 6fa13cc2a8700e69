"""The web page: ``/`` (every set) and ``/sets/{set_id}`` (one set), HTML for people.

Outside ``/v1`` and outside the OpenAPI document (HTML, not the JSON API). Reads are guarded
as the API guards them (`read_access`: open, or any valid key under
``SIGNPOST_REQUIRE_READ_KEY``); a refusal, like an unknown set, is an HTML page in the same
style that says what to do, with the API's status. Each page is served with a
Content-Security-Policy that lets it load nothing from anywhere (its stylesheet and script
are inline, with a per-response nonce) and connect only to its own origin (the poll).
"""

from __future__ import annotations

import secrets
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.api.deps import ServicesDep, read_access
from service.context import Services
from service.errors import NotFound, Unauthorized
from service.page import PageCache, index_page, message_page, set_page, set_view
from service.page.html import e
from service.repositories.sets import get_set, list_sets

router = APIRouter(tags=["page"], include_in_schema=False)

_bearer = HTTPBearer(auto_error=False)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_CACHE_LOCK = threading.Lock()


def _page_cache(request: Request) -> PageCache:
    """The app's cache of page parts (made on first use)."""
    with _CACHE_LOCK:
        cache = getattr(request.app.state, "page_cache", None)
        if cache is None:
            cache = request.app.state.page_cache = PageCache()
    return cache


def _html(body: str, nonce: str, status: int = 200,
          headers: dict[str, str] | None = None) -> HTMLResponse:
    policy = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
              "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return HTMLResponse(body, status_code=status, headers={
        "Content-Security-Policy": policy, "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
        **(headers or {})})


async def _refused(request: Request, services: Services, credentials: Credentials,
                   nonce: str) -> HTMLResponse | None:
    """None if the caller may read; else the 401 page (as the API would answer 401)."""
    try:
        await read_access(request, services.store, services.settings, credentials)
    except Unauthorized as exc:
        message = (
            f"<p>{e(exc.message)}.</p><p>This deployment requires a key for every read "
            "(<code>SIGNPOST_REQUIRE_READ_KEY</code>). Send one as a header, "
            "<code>Authorization: Bearer &lt;key&gt;</code> — through a proxy or a browser "
            "extension that adds it — or read the same numbers from the JSON API: "
            "<code>curl -H 'Authorization: Bearer $READER_KEY' /v1/sets</code>. An admin "
            "creates a key with <code>signpost keys create --role reader</code>.</p>")
        return _html(message_page("A reader key is needed", message, nonce=nonce), nonce,
                     status=401, headers={"WWW-Authenticate": "Bearer"})
    return None


def _index(request: Request, services: Services, nonce: str) -> str:
    cache, store, settings = _page_cache(request), services.store, services.settings
    views = [set_view(store, s, settings, services.posterior_cache, cache, full=False)
             for s in list_sets(store)]
    return index_page(views, nonce=nonce)


def _set(request: Request, services: Services, set_id: str, nonce: str) -> HTMLResponse:
    store = services.store
    sets = [(s.id, s.title) for s in list_sets(store)]
    try:
        scenario_set = get_set(store, set_id=set_id)
    except NotFound:
        known = "".join(f'<li><a id="known-{e(sid)}" href="/sets/{e(sid)}">{e(title)}</a> '
                        f'<span class="id">{e(sid)}</span></li>' for sid, title in sets)
        message = (f"<p>There is no scenario set <code>{e(set_id)}</code>.</p>"
                   + (f"<p>The loaded sets:</p><ul>{known}</ul>" if sets else
                      "<p>No set is loaded yet (<code>signpost init</code>).</p>")
                   + '<p><a id="back-home" href="/">All scenario sets</a></p>')
        return _html(message_page("No such scenario set", message, nonce=nonce, sets=sets),
                     nonce, status=404)
    view = set_view(store, scenario_set, services.settings, services.posterior_cache,
                    _page_cache(request))
    return _html(set_page(view, nonce=nonce, sets=sets), nonce)


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, services: ServicesDep,
                credentials: Credentials) -> HTMLResponse:
    """Every set: its probabilities, coverage and last change."""
    nonce = secrets.token_urlsafe(16)
    if (refused := await _refused(request, services, credentials, nonce)) is not None:
        return refused
    return _html(await run_in_threadpool(_index, request, services, nonce), nonce)


@router.get("/sets/{set_id}", response_class=HTMLResponse)
async def scenario_set_page(set_id: str, request: Request, services: ServicesDep,
                            credentials: Credentials) -> HTMLResponse:
    """One set: probabilities, history, forecast fan, milestones, coverage, watchlist."""
    nonce = secrets.token_urlsafe(16)
    if (refused := await _refused(request, services, credentials, nonce)) is not None:
        return refused
    return await run_in_threadpool(_set, request, services, set_id, nonce)
