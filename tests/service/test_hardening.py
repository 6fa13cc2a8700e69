"""Issue 15 in process: security headers on every kind of response, CORS only for listed origins,
error bodies that say nothing of the internals, and a bound on every parameter.

The 413 drain and the fuzzer need a real server: tests/e2e/test_hardening.py and test_fuzz.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError, ProgrammingError

from service.api import create_app
from service.api.deps import get_settings, get_store
from service.api.errors import INTERNAL_ERROR_MESSAGE
from service.api.security import API_POLICY, CORS_ALLOWED_HEADERS
from service.context import Services
from service.repositories.fits import create_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observation
from service.repositories.sets import load_bundled_sets
from tests.service.support import TestClient, bearer, make_settings

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
CONVERGENCE = "sino-russian-convergence"  # has dynamics; fitted static here (dynamic=False)
DASH = "https://dash.example.org"
MIB = 1 << 20
COMMON = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
          "cross-origin-opener-policy": "same-origin",
          "cross-origin-resource-policy": "same-origin"}



@dataclass
class Api:
    client: TestClient
    services: Services
    var_dir: Path
    analyst: dict[str, str]
    reader: dict[str, str]
    etag: str



@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    """The bundled sets, three observations and a published (static, exact) fit of each."""
    var_dir = tmp_path_factory.mktemp("hardening")
    app = create_app(make_settings(var_dir))
    with TestClient(app) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        for day in ("2025-02-10", "2025-05-20", "2025-08-03"):
            add_observation(store, data={"indicator": "joint_exercise", "date": day})
        for set_id in (WORLD, CONVERGENCE):
            fit_id = create_fit(store, set_id=set_id, requested_by="test")
            assert services.runner.run_fit(fit_id)["status"] == "published"
        etag = client.get(f"/v1/sets/{WORLD}/posterior").headers["etag"]
        yield Api(client, services, var_dir,
                  analyst=bearer(create_key(store, role="analyst", name="ana")),
                  reader=bearer(create_key(store, role="reader")), etag=etag)


def error(response) -> tuple[int, str, str | None]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return response.status_code, body["error"]["code"], body["error"]["field"]


def secured(response, policy: str | None = API_POLICY) -> None:
    """The security headers every response carries (``policy``: its CSP, None: any)."""
    headers = response.headers
    for name, value in COMMON.items():
        assert headers.get(name) == value, (response.request.url, name, dict(headers))
    assert headers.get("referrer-policy") in ("no-referrer", "same-origin")  # the page's own
    assert "strict-transport-security" not in headers  # not behind TLS unless told
    if policy is not None:
        assert headers.get("content-security-policy") == policy, dict(headers)
    if response.status_code >= 400:
        assert headers.get("cache-control") == "no-store", dict(headers)


# -- security headers -----------------------------------------------------------------------

def _post_big(api: Api, chunked: bool):
    big = json.dumps({"indicator": "joint_exercise", "date": "2025-06-01",
                      "note": "x" * MIB}).encode()
    return api.client.post("/v1/observations", content=iter([big]) if chunked else big,
                           headers={**api.analyst, "Content-Type": "application/json"})


RESPONSES = {
    "json-200": (lambda a: a.client.get("/v1/sets"), 200),
    "posterior-200": (lambda a: a.client.get(f"/v1/sets/{WORLD}/posterior"), 200),
    "posterior-304": (lambda a: a.client.get(f"/v1/sets/{WORLD}/posterior",
                                             headers={"If-None-Match": a.etag}), 304),
    "history-304": (lambda a: a.client.get(
        f"/v1/sets/{WORLD}/history", headers={"If-None-Match": a.client.get(
            f"/v1/sets/{WORLD}/history").headers["etag"]}), 304),
    "csv-200": (lambda a: a.client.get("/v1/observations", params={"format": "csv"}), 200),
    "openapi": (lambda a: a.client.get("/openapi.json"), 200),
    "healthz": (lambda a: a.client.get("/healthz"), 200),
    "metrics": (lambda a: a.client.get("/metrics"), 200),
    "401": (lambda a: a.client.post("/v1/observations", json={}), 401),
    "403": (lambda a: a.client.post("/v1/observations", json={}, headers=a.reader), 403),
    "404-unknown-set": (lambda a: a.client.get("/v1/sets/nope/posterior"), 404),
    "404-unknown-path": (lambda a: a.client.get("/v2/nothing"), 404),
    "405": (lambda a: a.client.delete("/v1/sets"), 405),
    "422": (lambda a: a.client.get("/v1/observations", params={"limit": 0}), 422),
    "413-declared": (lambda a: _post_big(a, chunked=False), 413),
    "413-chunked": (lambda a: _post_big(a, chunked=True), 413),
}


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_every_kind_of_response_carries_the_security_headers(api, kind):
    call, status = RESPONSES[kind]
    response = call(api)
    assert response.status_code == status, response.text
    secured(response)
    if kind == "posterior-200":  # a route's own caching is kept when it succeeds
        assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path, status", [("/", 200), (f"/sets/{WORLD}", 200),
                                          ("/sets/nope", 404)])
def test_the_page_keeps_its_own_nonce_policy(api, path, status):
    response = api.client.get(path)
    assert response.status_code == status
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert f'<script nonce="{nonce}">' in response.text
    assert "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    secured(response, policy=None)


def test_the_docs_run_only_their_own_inline_script(api):
    response = api.client.get("/docs")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    scripts = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert len(scripts) == 1  # FastAPI's Swagger UI: one inline script, the bundle from a CDN
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    script_src = next(d for d in policy.split("; ") if d.startswith("script-src"))
    assert script_src == f"script-src https://cdn.jsdelivr.net 'sha256-{digest}'"
    assert int(response.headers["content-length"]) == len(response.content)
    secured(response, policy=None)


def test_hsts_only_when_behind_tls(tmp_path):
    with TestClient(create_app(make_settings(tmp_path, behind_tls=True))) as client:
        for response in (client.get("/healthz"), client.get("/nope")):
            assert response.headers["strict-transport-security"] == \
                "max-age=31536000; includeSubDomains"


# -- CORS -----------------------------------------------------------------------------------

def preflight(client: TestClient, path: str, origin: str, method: str = "GET",
              headers: str = "authorization, if-none-match"):
    return client.options(path, headers={"Origin": origin,
                                         "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_cors_is_off_without_the_setting(api):
    response = preflight(api.client, f"/v1/sets/{WORLD}/posterior", DASH)
    assert error(response) == (405, "method_not_allowed", None)
    assert cors_headers(response) == {}
    response = api.client.get(f"/v1/sets/{WORLD}/posterior", headers={"Origin": DASH})
    assert response.status_code == 200 and cors_headers(response) == {}


@pytest.fixture(scope="module")
def cors_client(api) -> Iterator[TestClient]:
    """The same database, served by an app that lists two origins."""
    settings = make_settings(api.var_dir, cors_origins=f"{DASH}, http://localhost:3000")
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_listed_origin_gets_its_preflight_answered(cors_client):
    response = preflight(cors_client, "/v1/observations", DASH, method="POST",
                         headers="authorization, content-type, idempotency-key")
    assert response.status_code == 200, response.text
    got = cors_headers(response)
    assert got["access-control-allow-origin"] == DASH
    allowed = {h.strip().lower() for h in got["access-control-allow-headers"].split(",")}
    assert {h.lower() for h in CORS_ALLOWED_HEADERS} <= allowed
    assert {"GET", "POST", "DELETE"} <= set(got["access-control-allow-methods"].split(", "))
    assert "access-control-allow-credentials" not in got  # bearer keys, never cookies
    secured(response)


def test_a_listed_origin_may_read_the_etag_and_retry_after(cors_client):
    for origin in (DASH, "http://localhost:3000"):
        response = cors_client.get(f"/v1/sets/{WORLD}/posterior", headers={"Origin": origin})
        assert response.status_code == 200
        got = cors_headers(response)
        assert got["access-control-allow-origin"] == origin
        exposed = {h.strip() for h in got["access-control-expose-headers"].split(",")}
        assert {"ETag", "Retry-After"} <= exposed
        assert "Origin" in response.headers["vary"]
    not_modified = cors_client.get(f"/v1/sets/{WORLD}/posterior", headers={
        "Origin": DASH, "If-None-Match": response.headers["etag"]})
    assert not_modified.status_code == 304
    assert cors_headers(not_modified)["access-control-allow-origin"] == DASH


@pytest.mark.parametrize("origin, method, headers, field", [
    ("https://evil.example.net", "GET", "authorization", "Origin"),
    (f"{DASH}.evil.example.net", "GET", "authorization", "Origin"),
    (DASH, "GET", "x-forwarded-for", "Access-Control-Request-Headers"),
    (DASH, "TRACE", "authorization", "Access-Control-Request-Method"),
])
def test_other_preflights_are_refused_in_the_error_shape(cors_client, origin, method, headers,
                                                          field):
    response = preflight(cors_client, f"/v1/sets/{WORLD}/posterior", origin, method, headers)
    assert error(response) == (400, "cors_refused", field)
    if field == "Origin":
        assert "access-control-allow-origin" not in response.headers
    secured(response)


def test_an_unlisted_origin_reads_nothing_cross_origin(cors_client):
    response = cors_client.get(f"/v1/sets/{WORLD}/posterior",
                               headers={"Origin": "https://evil.example.net"})
    assert response.status_code == 200  # served (CORS is the browser's to enforce) ...
    assert "access-control-allow-origin" not in response.headers  # ... but not readable


@pytest.mark.parametrize("value", ["*", "https://dash.example.org/", "dash.example.org",
                                   "https://dash.example.org/app", "ftp://x.org"])
def test_the_origins_setting_refuses_what_is_not_an_origin(tmp_path, value):
    with pytest.raises(ValidationError, match="is not an origin"):
        make_settings(tmp_path, cors_origins=value)
    assert make_settings(tmp_path, cors_origins="https://a.org:8443, http://[::1]:3000") \
        .cors_origin_list() == ["https://a.org:8443", "http://[::1]:3000"]


# -- error bodies ---------------------------------------------------------------------------

LEAKS = ("Traceback", "SELECT", "secret", "sqlite", "/var/", "/work/", "site-packages", ".py",
         "Error", "object at 0x")


def _database_down():
    raise OperationalError("SELECT secret FROM api_keys WHERE prefix = ?", ("sp_x",),
                           Exception("unable to open database file /var/lib/signpost/x.db"))


def _bad_sql():
    raise ProgrammingError("SELECT secret FROM api_keys WHERE prefix = ?", ("sp_x",),
                           Exception("no such column: secret (/work/main/var/signpost.db)"))


def _settings_broken():
    raise KeyError("/work/main/service/settings.py: <object object at 0x7f00>")


@pytest.mark.parametrize("dependency, replacement, path, status, code", [
    (get_store, _bad_sql, "/v1/sets", 500, "internal_error"),
    (get_store, _bad_sql, f"/v1/sets/{WORLD}/history", 500, "internal_error"),
    (get_settings, _settings_broken, f"/v1/sets/{WORLD}", 500, "internal_error"),
    (get_store, _database_down, "/v1/sets", 503, "database_unavailable"),
], ids=["sql-in-a-sync-route", "sql-in-an-etag-route", "path-in-a-dependency",
        "database-down"])
def test_an_internal_error_says_nothing_of_the_internals(api, dependency, replacement, path,
                                                         status, code):
    app = create_app(make_settings(api.var_dir))
    app.dependency_overrides[dependency] = replacement
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(path)
    assert error(response) == (status, code, None)
    if status == 500:
        assert response.json()["error"]["message"] == INTERNAL_ERROR_MESSAGE
    assert not [leak for leak in LEAKS if leak in response.text], response.text
    secured(response)  # a 500 is sent by the middleware: Starlette's handler runs outside it


@pytest.mark.parametrize("path, params", [
    ("/v1/observations", {"limit": "SELECT 1"}),
    ("/v1/observations", {"since": "/etc/passwd"}),
    ("/v1/sets/world-order-2035/watchlist", {"periods": "1e999"}),
    ("/v1/reviews", {"include_retracted": "<object>"}),
])
def test_validation_errors_name_the_field_and_nothing_internal(api, path, params):
    response = api.client.get(path, params=params)
    assert error(response) == (422, "invalid", next(iter(params)))
    message = response.json()["error"]["message"]
    assert not [leak for leak in ("Traceback", "pydantic", "{'type'", "ValidationError")
                if leak in message], message


# -- bounds ---------------------------------------------------------------------------------

HUGE = "1416741454876605415424"  # the offset schemathesis found reaching the database (500)
LONG = "x" * 101
DATES = ("date", "date-time")


@pytest.mark.parametrize("method, path, params, field", [
    ("GET", "/v1/observations", {"offset": HUGE}, "offset"),
    ("GET", "/v1/observations", {"offset": 2**31 + 1}, "offset"),
    ("GET", "/v1/observations", {"limit": 1001}, "limit"),
    ("GET", "/v1/observations", {"indicator": LONG}, "indicator"),
    ("GET", "/v1/observations", {"set": LONG}, "set"),
    ("GET", "/v1/reviews", {"offset": HUGE}, "offset"),
    ("GET", "/v1/reviews", {"indicator": LONG}, "indicator"),
    ("GET", "/v1/alerts", {"rule_id": HUGE}, "rule_id"),
    ("GET", "/v1/alert-rules", {"offset": HUGE}, "offset"),
    ("GET", f"/v1/alert-rules/{HUGE}", {}, "rule_id"),
    ("GET", f"/v1/sets/{LONG}", {}, "set_id"),
    ("GET", f"/v1/sets/{LONG}/posterior", {}, "set_id"),
    ("GET", f"/v1/sets/{LONG}/scores", {}, "set_id"),
    ("GET", f"/v1/sets/{WORLD}/forecast", {"horizon": "2030-06-30" + "x"}, "horizon"),
    ("GET", f"/v1/sets/{WORLD}/replay", {"as_of": "2025-06-30" + "x"}, "as_of"),
    ("GET", f"/v1/sets/{WORLD}/watchlist", {"periods": HUGE}, "periods"),
    ("GET", f"/v1/fits/{LONG}", {}, "fit_id"),
    ("POST", f"/v1/observations/{HUGE}/retract", {}, "observation_id"),
    ("POST", f"/v1/reviews/{HUGE}/retract", {}, "review_id"),
])
def test_an_out_of_bound_parameter_is_422_naming_it(api, method, path, params, field):
    response = api.client.request(method, path, params=params,
                                  headers={**api.analyst, "Content-Type": "application/json"},
                                  content=b'{"reason": "x"}' if method == "POST" else None)
    assert error(response) == (422, "invalid", field), response.text


@pytest.mark.parametrize("field, limit", [("source", 500), ("url", 2000), ("note", 2000)])
def test_an_observations_text_is_bounded(api, field, limit):
    row = {"indicator": "joint_exercise", "date": "2025-06-01"}
    response = api.client.post("/v1/observations", json={**row, field: "x" * (limit + 1)},
                               headers=api.analyst)
    assert error(response) == (422, "invalid", field)
    assert f"at most {limit} characters" in response.json()["error"]["message"]
    response = api.client.post("/v1/observations", json={**row, field: "x" * limit},
                               headers=api.analyst)
    assert response.status_code == 201 and len(response.json()[field]) == limit


def test_the_largest_offset_is_an_empty_page(api):
    response = api.client.get("/v1/observations", params={"offset": 2**31})
    assert response.status_code == 200
    assert response.json()["items"] == [] and response.json()["next"] is None


def unbounded(spec: dict[str, Any]) -> list[str]:
    """Parameters of the document with no bound: an integer without minimum and maximum, a
    string without maxLength (an enum, a date, a time or a boolean is bounded by its type)."""
    problems = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                for option in schema.get("anyOf", [schema]):
                    kind = option.get("type")
                    if kind == "integer" and not {"minimum", "maximum"} <= set(option):
                        problems.append(f"{method.upper()} {path} {parameter['name']}")
                    if kind == "string" and not ({"maxLength", "enum", "const"} & set(option)
                                                 or option.get("format") in DATES):
                        problems.append(f"{method.upper()} {path} {parameter['name']}")
    return problems


def test_every_parameter_in_the_document_is_bounded(api):
    assert unbounded(api.client.get("/openapi.json").json()) == []
    # and the check can fail: the route the fuzzer broke, as it was
    assert unbounded({"paths": {"/v1/observations": {"get": {"parameters": [
        {"name": "offset", "schema": {"type": "integer", "minimum": 0}},
        {"name": "indicator", "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    ]}}}}) == ["GET /v1/observations offset", "GET /v1/observations indicator"]


# -- what the fuzzer found besides ----------------------------------------------------------

def test_the_watchlist_of_a_set_fitted_static_is_exact(api):
    """A set with dynamics served with SIGNPOST_DYNAMIC=false was a 500 (no draws to read)."""
    response = api.client.get(f"/v1/sets/{CONVERGENCE}/watchlist", params={"periods": 2})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items and all(item["exact"] and item["mcse_bits"] == 0 for item in items)


def test_a_wrong_method_names_every_method_the_path_has(api):
    """Starlette's Allow named the first matching route's methods only ("use POST")."""
    response = api.client.put("/v1/observations", json={})
    assert error(response) == (405, "method_not_allowed", None)
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["message"].endswith("; use GET, POST")
    response = api.client.post("/v1/alert-rules/1")
    assert response.headers["allow"] == "GET, DELETE"


def test_every_reference_in_the_document_resolves(api):
    """What-if's body referred to ``#/$defs/...``, which the document does not have."""
    document = api.client.get("/openapi.json").json()
    refs = set(re.findall(r'"\$ref": "#/([^"]+)"', json.dumps(document)))
    missing = []
    for ref in refs:
        node: Any = document
        for part in ref.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            missing.append(ref)
    assert refs and missing == []
    body = document["paths"]["/v1/sets/{set_id}/what-if"]["post"]["requestBody"]
    observation = body["content"]["application/json"]["schema"]["properties"]["observations"]
    assert observation["items"]["required"] == ["indicator", "date"]


def test_the_document_links_ids_to_the_routes_that_take_them(api):
    paths = api.client.get("/openapi.json").json()["paths"]
    links = paths["/v1/sets"]["get"]["responses"]["200"]["links"]
    takes_set = {op["operationId"] for path, item in paths.items() if "{set_id}" in path
                 for op in item.values()}
    assert {link["operationId"] for link in links.values()} == takes_set
    assert {tuple(link["parameters"].items()) for link in links.values()} == {
        (("set_id", "$response.body#/0/id"),), (("set_id", "$response.body#/1/id"),)}
    resolution = [link for link in links.values() if "requestBody" in link]
    assert [link["requestBody"] for link in resolution] == [
        {"scenario": "$response.body#/0/scenarios/0/id", "date": "$response.body#/0/start"}]
    created = paths["/v1/observations"]["post"]["responses"]["201"]["links"]
    assert [link["parameters"] for link in created.values()] == [
        {"observation_id": "$response.body#/id"}]
