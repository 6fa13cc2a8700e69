"""The ceiling of the HTTP benchmark: what the best polling endpoint FastAPI can serve does.

An async handler returning bytes rendered once, with a strong ETag, and ``304 Not Modified``
for a matching ``If-None-Match`` — no database, no auth, no middleware. Signpost's
``GET /v1/sets/{id}/posterior`` is measured against it (issue 15: ≥ 0.7× its throughput).
"""

import hashlib
import json

from fastapi import FastAPI, Request, Response

app = FastAPI()
BODY = json.dumps({"set_id": "constant", "scenarios": [{"id": "a", "probability": 0.5}]},
                  separators=(",", ":")).encode()
ETAG = f'"{hashlib.sha256(BODY).hexdigest()}"'
HEADERS = {"ETag": ETAG, "Cache-Control": "no-cache"}


@app.get("/const")
async def constant(request: Request) -> Response:
    """Pre-rendered bytes with their ETag (304 when the client has them)."""
    if request.headers.get("if-none-match") == ETAG:
        return Response(status_code=304, headers=HEADERS)
    return Response(BODY, media_type="application/json", headers=HEADERS)
