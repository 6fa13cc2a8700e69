"""The OpenAPI document describes every response, and a running server's responses conform.

A real uvicorn server (in a thread, on a free loopback port) serves the bundled sets with the
sample imported and both sets fitted; every route is called — successes, the 304 of the ETag
path and the error statuses — and each response is checked against the served document by
schemathesis' response conformance checks (status documented, content type, body schema).
The checks are shown to fail on a wrong body, and the document check on an undocumented route.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from indicators import read_observations_csv
from service.api import create_app
from service.api.errors import STATUS, refusal, status_of
from service.context import Services
from service.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    NotReady,
    ServiceError,
    Unauthorized,
)
from service.repositories.fits import create_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observations
from service.repositories.sets import get_catalog, load_bundled_sets
from service.settings import Settings
from tests.service.support import bearer

pytestmark = pytest.mark.slow

TODAY = date(2025, 12, 31)
CONVERGENCE = "sino-russian-convergence"
WORLD = "world-order-2035"
SAMPLE = Path("indicators/data/sample_observations.csv")
GOOD = {"indicator": "joint_exercise", "date": "2025-06-01", "grade": "B2", "source": "Xinhua"}
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
NONCONFORMING = (AssertionError, FailureGroup)


def conforms(schema: OpenApiSchema, template: str, method: str, response: httpx.Response,
             path_params: dict[str, Any] | None = None) -> None:
    """Schemathesis' response checks: status documented, content type, headers, body schema."""
    case = schema[template][method].Case(path_parameters=path_params or {})
    case.validate_response(response, checks=CHECKS)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThreadServer:
    """``uvicorn`` serving ``app`` in a daemon thread on a free loopback port."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.base_url = f"http://127.0.0.1:{_free_port()}"
        port = int(self.base_url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "no server"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Deployment:
    base_url: str
    client: httpx.Client
    services: Services
    schema: OpenApiSchema
    spec: dict[str, Any]
    admin: dict[str, str]
    analyst: dict[str, str]
    reader: dict[str, str]
    fits: dict[str, str]
    checked: set[tuple[str, str, int]] = field(default_factory=set)
    ran: set[str] = field(default_factory=set)

    def call(self, method: str, template: str, status: int, *, path_params: dict | None = None,
             **kwargs: Any) -> httpx.Response:
        """Send a request, assert its status, validate the response against the document."""
        url = template.format(**(path_params or {}))
        response = self.client.request(method, url, **kwargs)
        assert response.status_code == status, (method, url, response.text)
        conforms(self.schema, template, method, response, path_params)
        self.checked.add((method.lower(), template, status))
        return response



@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    var_dir = tmp_path_factory.mktemp("openapi")
    settings = Settings(var_dir=var_dir, database_url=f"sqlite:///{var_dir / 'signpost.db'}",
                        scheduler=False, worker="inline", today=TODAY.isoformat(),
                        replay_wait=0)
    app = create_app(settings)
    with ThreadServer(app) as server, httpx.Client(base_url=server.base_url,
                                                    timeout=30) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        observations, _ = read_observations_csv(SAMPLE, get_catalog(store), today=TODAY)
        add_observations(store, observations=observations, analyst="sample")
        fits = {}
        for set_id in (CONVERGENCE, WORLD):
            fits[set_id] = create_fit(store, set_id=set_id, requested_by="test")
            result = services.runner.run_fit(fits[set_id])
            assert result["status"] == "published", result
        spec = client.get("/openapi.json").json()
        yield Deployment(server.base_url, client, services, schemathesis.openapi.from_dict(spec),
                         spec, admin=bearer(create_key(store, role="admin", name="ada")),
                         analyst=bearer(create_key(store, role="analyst", name="ana")),
                         reader=bearer(create_key(store, role="reader")), fits=fits)


# -- (a) the document ------------------------------------------------------------------------

def undescribed(spec: dict[str, Any]) -> list[str]:
    """Operations whose success responses have no JSON schema, or errors not ErrorBody."""
    problems = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            responses = operation.get("responses", {})
            successes = {s: r for s, r in responses.items() if s.startswith("2")}
            if not successes:
                problems.append(f"{name}: no 2xx response")
            for status, response in responses.items():
                content = response.get("content", {})
                schema = content.get("application/json", {}).get("schema")
                # a download (a fit's NetCDF file) documents its own media type instead
                download = any(media.get("schema") for media in content.values())
                if status.startswith("2") and not (schema or download):
                    problems.append(f"{name} {status}: no schema")
                if status[0] in "45" and (schema or {}).get("$ref") != \
                        "#/components/schemas/ErrorBody":
                    problems.append(f"{name} {status}: not the ErrorBody schema")
    return problems


def test_every_route_documents_its_responses(deployment):
    assert undescribed(deployment.spec) == []
    # the shared error shape is closed: a client may rely on exactly these keys
    detail = deployment.spec["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message", "field"}
    assert detail["additionalProperties"] is False


def test_a_route_without_a_response_model_is_caught():
    app = FastAPI()

    @app.get("/typed/{n}", response_model=dict[str, int])
    def typed(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/bare")
    def bare():  # no annotation, no response_model: no response schema
        return {}

    problems = undescribed(app.openapi())
    # FastAPI's own 422 (HTTPValidationError) is not the API's error shape either
    assert problems == ["GET /typed/{n} 422: not the ErrorBody schema",
                        "GET /bare 200: no schema"]


# -- (b) real responses ----------------------------------------------------------------------

def reads(d: Deployment) -> None:
    d.call("GET", "/healthz", 200)
    d.call("GET", "/readyz", 200)
    d.call("GET", "/v1/sets", 200)
    for set_id in (CONVERGENCE, WORLD):
        p = {"set_id": set_id}
        d.call("GET", "/v1/sets/{set_id}", 200, path_params=p)
        etag = d.call("GET", "/v1/sets/{set_id}/posterior", 200, path_params=p).headers["etag"]
        d.call("GET", "/v1/sets/{set_id}/posterior", 304, path_params=p,
               headers={"If-None-Match": etag})
        for route in ("history", "path", "milestones"):
            d.call("GET", f"/v1/sets/{{set_id}}/{route}", 200, path_params=p)
        d.call("GET", "/v1/sets/{set_id}/forecast", 200, path_params=p,
               params={"horizon": "2030-06-30"})
        d.call("GET", "/v1/sets/{set_id}/attribution", 200, path_params=p)
        d.call("GET", "/v1/sets/{set_id}/watchlist", 200, path_params=p, params={"periods": 2})
        d.call("POST", "/v1/sets/{set_id}/what-if", 200, path_params=p, headers=d.analyst,
               json={"observations": [{"indicator": "joint_exercise", "date": "2025-06-01"}]})
    # a horizon before the current period: what the filter said then, "by" null
    past = d.call("GET", "/v1/sets/{set_id}/forecast", 200, path_params={"set_id": CONVERGENCE},
                  params={"horizon": "2020-06-30"}).json()
    assert past["steps"] < 0 and past["scenarios"][0]["by"] is None
    d.call("GET", "/v1/observations", 200, params={"limit": 3})
    d.call("GET", "/v1/observations", 200, params={"set": WORLD, "since": "2025-01-01"})
    d.call("GET", "/v1/reviews", 200)
    for fit_id in d.fits.values():
        d.call("GET", "/v1/fits/{fit_id}", 200, path_params={"fit_id": fit_id})


def replay(d: Deployment) -> None:
    """Queued (202), then run and stored (200)."""
    p, q = {"set_id": WORLD}, {"as_of": "2025-06-30"}
    queued = d.call("GET", "/v1/sets/{set_id}/replay", 202, path_params=p, params=q).json()
    d.call("GET", "/v1/fits/{fit_id}", 200, path_params={"fit_id": queued["fit_id"]})
    assert d.services.runner.run_fit(queued["fit_id"])["status"] == "published"
    replay = d.call("GET", "/v1/sets/{set_id}/replay", 200, path_params=p, params=q).json()
    assert replay["kind"] == "replay" and replay["as_of"] == "2025-06-30"


def writes(d: Deployment) -> None:
    key = {**d.analyst, "Idempotency-Key": "openapi-1"}
    row = d.call("POST", "/v1/observations", 201, json=GOOD, headers=key).json()
    assert row["coverage"]
    d.call("POST", "/v1/observations", 200, json=GOOD, headers=key)  # the retry
    d.call("POST", "/v1/observations", 409, json={**GOOD, "date": "2025-06-02"}, headers=key)
    retract = "/v1/observations/{observation_id}/retract"
    p = {"observation_id": row["id"]}
    d.call("POST", retract, 200, path_params=p, json={"reason": "test"}, headers=d.analyst)
    d.call("POST", retract, 409, path_params=p, json={"reason": "again"}, headers=d.analyst)

    review_key = {**d.analyst, "Idempotency-Key": "openapi-review"}
    body = {"set_id": WORLD, "through": "2025-12-31", "note": "archives"}
    review = d.call("POST", "/v1/reviews", 201, json=body, headers=review_key).json()
    d.call("POST", "/v1/reviews", 200, json=body, headers=review_key)
    d.call("GET", "/v1/reviews", 200, params={"set": WORLD})
    p = {"review_id": review["id"]}
    d.call("POST", "/v1/reviews/{review_id}/retract", 200, path_params=p,
           json={"reason": "test"}, headers=d.analyst)
    d.call("POST", "/v1/reviews/{review_id}/retract", 409, path_params=p,
           json={"reason": "again"}, headers=d.analyst)

    queued = d.call("POST", "/v1/fits", 202, json={"set_id": WORLD}, headers=d.admin).json()
    d.call("GET", "/v1/fits/{fit_id}", 200, path_params={"fit_id": queued["fit_id"]})


def errors(d: Deployment) -> None:
    nope = {"set_id": "nope"}
    for route in ("", "/posterior", "/history", "/path", "/milestones"):
        d.call("GET", f"/v1/sets/{{set_id}}{route}", 404, path_params=nope)
    d.call("GET", "/v1/sets/{set_id}/forecast", 404, path_params=nope,
           params={"horizon": "2030-01-01"})
    d.call("GET", "/v1/sets/{set_id}/replay", 404, path_params=nope,
           params={"as_of": "2030-01-01"})
    conv = {"set_id": CONVERGENCE}
    d.call("GET", "/v1/sets/{set_id}/forecast", 422, path_params=conv,
           params={"horizon": "2040-01-01"})
    d.call("GET", "/v1/sets/{set_id}/forecast", 422, path_params=conv)
    d.call("GET", "/v1/sets/{set_id}/replay", 422, path_params=conv, params={"as_of": "soon"})
    d.call("GET", "/v1/observations", 422, params={"limit": 0})
    d.call("GET", "/v1/observations", 404, params={"set": "nope"})
    d.call("GET", "/v1/reviews", 404, params={"set": "nope"})
    d.call("GET", "/v1/fits/{fit_id}", 404, path_params={"fit_id": "nope"})

    d.call("POST", "/v1/observations", 401, json=GOOD)
    d.call("POST", "/v1/observations", 403, json=GOOD, headers=d.reader)
    d.call("POST", "/v1/observations", 422, json={**GOOD, "value": -1}, headers=d.analyst)
    d.call("POST", "/v1/observations", 422, content=b"{", headers={
        **d.analyst, "Content-Type": "application/json"})
    d.call("POST", "/v1/observations", 413, headers=d.analyst,
           json={**GOOD, "note": "x" * (2 << 20)})
    retract = "/v1/observations/{observation_id}/retract"
    for status, headers in ((401, {}), (403, d.reader), (404, d.analyst)):
        d.call("POST", retract, status, path_params={"observation_id": 999_999},
               json={"reason": "x"}, headers=headers)
    d.call("POST", retract, 422, path_params={"observation_id": 1}, json={}, headers=d.analyst)
    d.call("POST", retract, 413, path_params={"observation_id": 1}, headers=d.analyst,
           json={"reason": "x" * (2 << 20)})

    body = {"set_id": WORLD, "through": "2025-12-31"}
    d.call("POST", "/v1/reviews", 401, json=body)
    d.call("POST", "/v1/reviews", 403, json=body, headers=d.reader)
    d.call("POST", "/v1/reviews", 422, json={**body, "through": "2026-06-01"},
           headers=d.analyst)
    d.call("POST", "/v1/reviews", 409, json={**body, "through": "2025-11-30"},
           headers={**d.analyst, "Idempotency-Key": "openapi-review"})
    d.call("POST", "/v1/reviews", 413, json={**body, "note": "x" * (2 << 20)},
           headers=d.analyst)
    review_retract = "/v1/reviews/{review_id}/retract"
    for status, headers in ((401, {}), (403, d.reader), (404, d.analyst)):
        d.call("POST", review_retract, status, path_params={"review_id": 999_999},
               json={"reason": "x"}, headers=headers)
    d.call("POST", review_retract, 422, path_params={"review_id": 1}, json={"why": "x"},
           headers=d.analyst)
    d.call("POST", review_retract, 413, path_params={"review_id": 1}, headers=d.analyst,
           json={"reason": "x" * (2 << 20)})

    d.call("POST", "/v1/fits", 401, json={"set_id": WORLD})
    d.call("POST", "/v1/fits", 403, json={"set_id": WORLD}, headers=d.analyst)
    d.call("POST", "/v1/fits", 404, json={"set_id": "nope"}, headers=d.admin)
    d.call("POST", "/v1/fits", 422, json={}, headers=d.admin)
    d.call("POST", "/v1/fits", 413, json={"set_id": "x" * (2 << 20)}, headers=d.admin)


def not_ready(d: Deployment) -> None:
    """503 from a second real server whose database is not migrated."""
    var_dir = Path(d.services.settings.var_dir) / "not-ready"
    var_dir.mkdir()
    settings = Settings(var_dir=var_dir, database_url=f"sqlite:///{var_dir / 'empty.db'}",
                        scheduler=False, worker="inline", migrate_on_start=False)
    with ThreadServer(create_app(settings)) as server:
        response = httpx.get(server.base_url + "/readyz", timeout=10)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "migrations_pending"
    conforms(d.schema, "/readyz", "GET", response)
    d.checked.add(("get", "/readyz", 503))


def alerts_and_scores(d: Deployment) -> None:
    """Alert rules and deliveries (analyst keys), resolutions (admin) and scores."""
    # a public address that no published fit here will take above 0.999
    rule = {"set_id": WORLD, "webhook_url": "http://93.184.216.34/hook",
            "secret": "a-secret-of-some-length", "scenario": "multipolar", "above": 0.999}
    created = d.call("POST", "/v1/alert-rules", 201, json=rule, headers=d.analyst).json()
    d.call("POST", "/v1/alert-rules", 401, json=rule)
    d.call("POST", "/v1/alert-rules", 403, json=rule, headers=d.reader)
    d.call("POST", "/v1/alert-rules", 422, headers=d.analyst,
           json={**rule, "webhook_url": "http://127.0.0.1:9/hook"})
    d.call("GET", "/v1/alert-rules", 200, headers=d.analyst, params={"set_id": WORLD})
    d.call("GET", "/v1/alert-rules", 404, headers=d.analyst, params={"set_id": "nope"})
    p = {"rule_id": created["id"]}
    d.call("GET", "/v1/alert-rules/{rule_id}", 200, path_params=p, headers=d.analyst)
    d.call("DELETE", "/v1/alert-rules/{rule_id}", 200, path_params=p, headers=d.analyst)
    d.call("GET", "/v1/alert-rules/{rule_id}", 404, path_params={"rule_id": 999_999},
           headers=d.analyst)
    d.call("DELETE", "/v1/alert-rules/{rule_id}", 404, path_params={"rule_id": 999_999},
           headers=d.analyst)
    d.call("GET", "/v1/alerts", 200, headers=d.analyst, params={"status": "failed"})
    d.call("GET", "/v1/alerts", 403, headers=d.reader)
    d.call("GET", "/v1/alerts", 422, headers=d.analyst, params={"status": "lost"})

    resolution = "/v1/sets/{set_id}/resolution"
    p = {"set_id": WORLD}
    body = {"scenario": "multipolar", "date": "2025-12-31", "note": "test"}
    d.call("POST", resolution, 403, path_params=p, json=body, headers=d.analyst)
    d.call("POST", resolution, 422, path_params=p, headers=d.admin,
           json={**body, "scenario": "nope"})
    d.call("POST", resolution, 404, path_params={"set_id": "nope"}, json=body,
           headers=d.admin)
    d.call("POST", resolution, 201, path_params=p, json=body, headers=d.admin)
    d.call("POST", resolution, 409, path_params=p, json=body, headers=d.admin)
    d.call("GET", "/v1/sets/{set_id}/scores", 200, path_params=p)
    d.call("GET", "/v1/sets/{set_id}/scores", 200, path_params={"set_id": CONVERGENCE})
    d.call("GET", "/v1/sets/{set_id}/scores", 404, path_params={"set_id": "nope"})
    d.call("GET", "/v1/scores", 200)


def exports(d: Deployment) -> None:
    """CSV beside the JSON (?format=csv), and a published fit's NetCDF file."""
    d.call("GET", "/v1/observations", 200, params={"format": "csv", "set": WORLD})
    d.call("GET", "/v1/observations", 422, params={"format": "xml"})
    d.call("GET", "/v1/reviews", 200, params={"format": "csv"})
    history = "/v1/sets/{set_id}/history"
    d.call("GET", history, 200, path_params={"set_id": WORLD}, params={"format": "csv"})
    d.call("GET", history, 422, path_params={"set_id": WORLD}, params={"format": "xml"})
    artifact = "/v1/fits/{fit_id}/artifact"
    d.call("GET", artifact, 200, path_params={"fit_id": d.fits[WORLD]})
    d.call("GET", artifact, 404, path_params={"fit_id": "nope"})
    queued = create_fit(d.services.store, set_id=WORLD, requested_by="test", kind="replay",
                        as_of=date(2025, 3, 31))
    d.call("GET", artifact, 409, path_params={"fit_id": queued})


def keys_and_audit(d: Deployment) -> None:
    """Keys (list, revoke, rotate) and the audit log: admin keys only."""
    d.call("GET", "/v1/keys", 200, headers=d.admin)
    d.call("GET", "/v1/keys", 401)
    d.call("GET", "/v1/keys", 403, headers=d.analyst)
    d.call("GET", "/v1/keys", 422, headers=d.admin, params={"limit": 0})
    spare = create_key(d.services.store, role="reader", name="openapi-spare")
    spare_id = next(k["id"] for k in d.client.get("/v1/keys", headers=d.admin).json()["items"]
                    if k["prefix"] == spare[:10])
    rotate, revoke = "/v1/keys/{key_id}/rotate", "/v1/keys/{key_id}"
    rotated = d.call("POST", rotate, 201, path_params={"key_id": spare_id}, headers=d.admin,
                     json={"grace": "1h"}).json()
    new = {"key_id": rotated["key"]["id"]}
    d.call("POST", rotate, 422, path_params=new, headers=d.admin, json={"grace": "soon"})
    d.call("POST", rotate, 404, path_params={"key_id": 999_999}, headers=d.admin)
    d.call("DELETE", revoke, 200, path_params=new, headers=d.admin)
    d.call("DELETE", revoke, 409, path_params=new, headers=d.admin)
    d.call("DELETE", revoke, 404, path_params={"key_id": 999_999}, headers=d.admin)
    d.call("DELETE", revoke, 403, path_params=new, headers=d.analyst)
    d.call("POST", rotate, 409, path_params=new, headers=d.admin)
    d.call("GET", "/v1/audit", 200, headers=d.admin, params={"action": "key", "limit": 5})
    d.call("GET", "/v1/audit", 401)
    d.call("GET", "/v1/audit", 403, headers=d.analyst)
    d.call("GET", "/v1/audit", 422, headers=d.admin, params={"action": "nope"})


GROUPS = {"reads": reads, "replay": replay, "writes": writes, "errors": errors,
          "not_ready": not_ready, "alerts_and_scores": alerts_and_scores, "exports": exports,
          "keys_and_audit": keys_and_audit}


def run_group(d: Deployment, name: str) -> None:
    """Each group once per module (the last test runs those a selection left out)."""
    if name not in d.ran:
        d.ran.add(name)
        GROUPS[name](d)


@pytest.mark.parametrize("group", list(GROUPS))
def test_real_responses_conform(deployment, group):
    run_group(deployment, group)


def test_every_operation_was_checked(deployment):
    """A route added without a call here fails; so does a documented success never seen."""
    for name in GROUPS:
        run_group(deployment, name)
    called = {(method, path) for method, path, _ in deployment.checked}
    operations = {(method, path) for path, item in deployment.spec["paths"].items()
                  for method in item}
    assert operations - called == set()
    for method, path in operations:  # every documented success status was answered
        documented = {int(s) for s in deployment.spec["paths"][path][method]["responses"]
                      if s.startswith("2")}
        answered = {s for m, p, s in deployment.checked if (m, p) == (method, path)}
        assert documented <= answered, (method, path, documented - answered)


# -- the checks can fail ---------------------------------------------------------------------

def _tampered(response: httpx.Response, body: Any) -> httpx.Response:
    return httpx.Response(response.status_code, headers={"content-type": "application/json"},
                          content=json.dumps(body).encode(), request=response.request)


def _tampered(response: httpx.Response, body: Any, status: int | None = None) -> httpx.Response:
    tampered = httpx.Response(status or response.status_code,
                              headers={"content-type": "application/json"},
                              content=json.dumps(body).encode(), request=response.request)
    tampered.elapsed = response.elapsed
    return tampered


def _set_probability(body: dict) -> None:
    body["scenarios"][0]["probability"] = "high"


def _drop_p_by_end(body: dict) -> None:
    del body["reach"]["crisis"]["p_by_end"]


@pytest.mark.parametrize("template, params, change", [
    ("/v1/sets/{set_id}/posterior", {}, _set_probability),
    ("/v1/sets/{set_id}/posterior", {}, lambda b: b.pop("stale")),
    ("/v1/sets/{set_id}/forecast", {"horizon": "2030-06-30"}, lambda b: b.update(steps=1.5)),
    ("/v1/sets/{set_id}/milestones", {}, _drop_p_by_end),
    ("/v1/sets/{set_id}", {}, lambda b: b.update(dynamics=[])),
    ("/v1/sets", {}, lambda b: b[0].update(has_dynamics="yes")),
], ids=["probability-string", "no-stale", "steps-fraction", "no-p_by_end", "dynamics-list",
        "summary-flag"])
def test_a_wrong_body_is_rejected(deployment, template, params, change):
    where = {"set_id": CONVERGENCE} if "{set_id}" in template else {}
    response = deployment.client.get(template.format(**where), params=params)
    conforms(deployment.schema, template, "GET", response, where)  # the real one conforms
    body = response.json()
    change(body)
    with pytest.raises(NONCONFORMING):
        conforms(deployment.schema, template, "GET", _tampered(response, body), where)


def test_a_wrong_error_body_or_status_is_rejected(deployment):
    template = "/v1/sets/{set_id}/posterior"
    where = {"set_id": "nope"}
    response = deployment.client.get("/v1/sets/nope/posterior")
    conforms(deployment.schema, template, "GET", response, where)
    body = response.json()
    body["error"]["trace"] = "..."  # a key the one shape does not have
    with pytest.raises(NONCONFORMING):
        conforms(deployment.schema, template, "GET", _tampered(response, body), where)
    with pytest.raises(NONCONFORMING):  # a status the route does not document
        conforms(deployment.schema, template, "GET", _tampered(response, response.json(), 418),
                 where)


# -- the two tables --------------------------------------------------------------------------

def test_one_table_maps_domain_errors_to_statuses():
    class Gone(NotFound):
        pass

    assert [status_of(cls("x")) for cls in (BadRequest, Unauthorized, Forbidden, NotFound,
                                            Conflict, NotReady, ServiceError, Gone)] == [
        422, 401, 403, 404, 409, 503, 500, 404]
    assert status_of(RuntimeError("x")) == 500
    assert all(not hasattr(cls, "status") for cls in STATUS)


def test_one_translation_of_validation_errors():
    errors = [{"type": "missing", "loc": ("body", "through"), "msg": "Field required"},
              {"type": "extra_forbidden", "loc": ("colour",), "msg": "Extra inputs"}]
    every = refusal(errors, ("set_id", "through"))
    assert (str(every), every.field) == (
        "through: Field required; colour: unknown field; the fields are set_id, through",
        "through")
    first = refusal(errors[1:], ("set_id", "through"), every=False)
    assert str(first) == "colour: unknown field; the fields are set_id, through"
    query = refusal([{"type": "value_error", "loc": ("query", "limit"),
                      "msg": "Value error, too big"}])
    assert (str(query), query.field, query.code) == ("limit: too big", "limit", "invalid")
    assert refusal([{"type": "json_invalid", "loc": ("body", 1), "msg": "x"}]).code == \
        "invalid_json"
