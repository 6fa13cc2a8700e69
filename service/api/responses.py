"""JSON responses: strict JSON (no NaN) and cacheable bodies with a strong ETag."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def page(request: Request, items: list[Any], total: int, offset: int,
         limit: int) -> dict[str, Any]:
    """A page of a listing: ``{"items", "total", "next"}``, ``next`` the URL of the next page."""
    next_url = None
    if offset + limit < total:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
        params.append(("offset", str(offset + limit)))
        next_url = f"{request.url.path}?{urlencode(params)}"
    return {"items": items, "total": total, "next": next_url}


def canonical_json(payload: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same payload always gives the same bytes."""
    return json.dumps(finite(payload), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (weak comparison, lists, ``*``)."""
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def cached_json(request: Request, payload: Any) -> Response:
    """The payload with a strong ETag (quoted SHA-256 of the body) and ``no-cache``.

    ``no-cache`` makes clients revalidate every time, which the ETag makes cheap: a matching
    ``If-None-Match`` gets ``304 Not Modified`` with no body.
    """
    return rendered_json(request, render(payload))


def render(payload: Any) -> tuple[bytes, str]:
    """The canonical JSON body of ``payload`` and its strong ETag."""
    body = canonical_json(payload)
    return body, f'"{hashlib.sha256(body).hexdigest()}"'


def rendered_json(request: Request, rendered: tuple[bytes, str]) -> Response:
    """A body rendered by `render`: 304 when ``If-None-Match`` matches its ETag."""
    body, etag = rendered
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
