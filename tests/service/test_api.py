"""The HTTP API in process (TestClient, lifespan on): auth, errors, ETags, pagination, fits.

Every error case asserts the status and the body (code and field) together, and that refused
input stored nothing. A real fit (inline worker) gives a published posterior to serve.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from forecast import exact_posterior
from service.api import create_app
from service.api.responses import render
from service.context import Services
from service.db import Database
from service.repositories.evidence import evidence_of
from service.repositories.fits import pending_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observation, count_observations, list_observations
from service.repositories.sets import get_set, load_bundled_sets
from tests.service.support import TestClient, bearer, make_settings

TODAY = date(2025, 12, 31)
CONVERGENCE = "sino-russian-convergence"
WORLD = "world-order-2035"
MIB = 1 << 20



@dataclass
class Api:
    client: TestClient
    services: Services
    store: Database
    url: str
    var_dir: Path
    admin: dict[str, str]
    analyst: dict[str, str]
    reader: dict[str, str]



@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    var_dir = tmp_path_factory.mktemp("api")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    app = create_app(make_settings(var_dir, url))
    with TestClient(app) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        yield Api(client, services, store, url, var_dir,
                  admin=bearer(create_key(store, role="admin", name="ada")),
                  analyst=bearer(create_key(store, role="analyst", name="ana")),
                  reader=bearer(create_key(store, role="reader")))


@pytest.fixture(scope="module")
def published(api: Api) -> dict:
    """A published posterior of the convergence set, queued through the API, run inline."""
    for day in ("2025-02-10", "2025-05-20", "2025-08-03"):
        add_observation(api.store, data={"indicator": "joint_exercise", "date": day, "grade": "A1"})
    response = api.client.post("/v1/fits", json={"set_id": CONVERGENCE}, headers=api.admin)
    assert response.status_code == 202, response.text
    fit_id = response.json()["fit_id"]
    result = api.services.runner.run_fit(fit_id)
    assert result["status"] == "published", result
    scenario_set = get_set(api.store, set_id=CONVERGENCE)
    exact = exact_posterior(scenario_set, evidence_of(api.store, scenario_set=scenario_set,
                                                      as_of=TODAY))
    return {"fit_id": fit_id, "exact": exact.probability}


def error(response) -> tuple[int, str, str | None]:
    """(status, code, field) of an error response, checking the one shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "field"}, body
    assert body["error"]["message"], body
    return response.status_code, body["error"]["code"], body["error"]["field"]


def post_raw(api: Api, path: str, content: bytes | str, headers: dict | None = None):
    headers = {"Content-Type": "application/json", **(headers or api.analyst)}
    return api.client.post(path, content=content, headers=headers)


GOOD = {"indicator": "joint_exercise", "date": "2025-06-01", "value": 1, "grade": "B2",
        "source": "Xinhua", "url": "https://example.org/a", "note": "test"}


# -- health --------------------------------------------------------------------------------

def test_healthz_answers_without_the_database(api):
    response = api.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_when_migrated(api):
    response = api.client.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ready"}


def test_readyz_503_when_not_migrated(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    app = create_app(make_settings(tmp_path, url, migrate_on_start=False))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert error(client.get("/readyz")) == (503, "migrations_pending", None)


def test_readyz_503_when_the_database_is_unreachable(tmp_path):
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"
    app = create_app(make_settings(tmp_path, url, migrate_on_start=False))
    with TestClient(app) as client:
        assert error(client.get("/readyz")) == (503, "database_unreachable", None)


def test_openapi_documents_every_route_and_the_error_shape(api):
    spec = api.client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/healthz", "/readyz", "/v1/sets", "/v1/sets/{set_id}", "/v1/sets/{set_id}/posterior",
        "/v1/sets/{set_id}/history", "/v1/sets/{set_id}/path", "/v1/sets/{set_id}/forecast",
        "/v1/sets/{set_id}/milestones", "/v1/sets/{set_id}/replay", "/v1/observations",
        "/v1/observations/{observation_id}/retract", "/v1/reviews",
        "/v1/reviews/{review_id}/retract", "/v1/fits", "/v1/fits/{fit_id}",
        "/v1/fits/{fit_id}/artifact", "/v1/sets/{set_id}/attribution", "/v1/sets/{set_id}/what-if",
        "/v1/sets/{set_id}/watchlist", "/v1/alert-rules", "/v1/alert-rules/{rule_id}",
        "/v1/alerts", "/v1/sets/{set_id}/resolution", "/v1/sets/{set_id}/scores",
        "/v1/scores", "/v1/keys", "/v1/keys/{key_id}", "/v1/keys/{key_id}/rotate",
        "/v1/audit"}
    post = spec["paths"]["/v1/observations"]["post"]
    assert "indicator" in post["requestBody"]["content"]["application/json"]["schema"][
        "properties"]
    assert post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody")
    review = spec["paths"]["/v1/reviews"]["post"]
    assert {"set_id", "indicators", "through", "note"} <= set(
        review["requestBody"]["content"]["application/json"]["schema"]["properties"])
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# -- sets ----------------------------------------------------------------------------------

def test_list_sets(api):
    response = api.client.get("/v1/sets")
    assert response.status_code == 200
    by_id = {s["id"]: s for s in response.json()}
    assert set(by_id) == {CONVERGENCE, WORLD}
    convergence = by_id[CONVERGENCE]
    assert convergence["period"] == "quarter" and convergence["start"] == "2012-01-01"
    assert convergence["has_dynamics"] is True
    assert [s["id"] for s in convergence["scenarios"]] == [
        "loose", "integrated_ew", "formal_bloc", "crisis"]
    assert sum(s["prior"] for s in convergence["scenarios"]) == pytest.approx(1.0)
    assert "satellite_cueing" in convergence["indicators"]


def test_get_set_in_full(api):
    response = api.client.get(f"/v1/sets/{CONVERGENCE}")
    assert response.status_code == 200
    body = response.json()
    indicators = {i["id"]: i for i in body["indicators"]}
    exercise = indicators["joint_exercise"]
    assert exercise["kind"] == "count" and exercise["name"]
    assert exercise["expectations"]["loose"] == {"mean": 0.9, "sd": 0.4}
    assert indicators["satellite_cueing"]["kind"] == "milestone"
    assert body["dynamics"]["stay"] == 0.975
    assert body["dynamics"]["moves"]["loose"] == ["integrated_ew", "crisis"]


@pytest.mark.parametrize("path", [
    "/v1/sets/nope", "/v1/sets/nope/posterior", "/v1/sets/nope/history"])
def test_unknown_set_is_404_naming_set_id(api, path):
    response = api.client.get(path)
    assert error(response) == (404, "not_found", "set_id")
    assert "nope" in response.json()["error"]["message"]


def test_posterior_before_any_fit_is_404_no_posterior(api):
    response = api.client.get(f"/v1/sets/{WORLD}/posterior")
    assert error(response) == (404, "no_posterior", None)
    assert "POST /v1/fits" in response.json()["error"]["message"]


def test_unknown_route_and_wrong_method(api):
    assert error(api.client.get("/v1/nothing")) == (404, "not_found", None)
    response = api.client.delete("/v1/sets")
    assert error(response) == (405, "method_not_allowed", None)
    assert response.headers["allow"] == "GET"


# -- auth ----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers, code", [
    ({}, "unauthorized"),
    ({"Authorization": "Bearer sp_not-a-key"}, "invalid_key"),
    ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "unauthorized"),
    ({"Authorization": "Bearer"}, "unauthorized"),
])
def test_write_without_a_valid_key_is_401(api, headers, code):
    before = count_observations(api.store)
    response = api.client.post("/v1/observations", json=GOOD, headers=headers)
    assert error(response) == (401, code, "Authorization")
    assert response.headers["www-authenticate"] == "Bearer"
    assert count_observations(api.store) == before


def test_wrong_role_is_403(api):
    before = count_observations(api.store)
    response = api.client.post("/v1/observations", json=GOOD, headers=api.reader)
    assert error(response) == (403, "forbidden", None)
    assert "analyst" in response.json()["error"]["message"]
    assert count_observations(api.store) == before
    response = api.client.post("/v1/fits", json={"set_id": WORLD}, headers=api.analyst)
    assert error(response) == (403, "forbidden", None)
    assert pending_fit(api.store, set_id=WORLD) is None


def test_reads_need_a_key_when_required(api):
    app = create_app(make_settings(api.var_dir, api.url, require_read_key=True))
    with TestClient(app) as client:
        assert error(client.get("/v1/sets")) == (401, "unauthorized", "Authorization")
        assert error(client.get("/v1/observations")) == (401, "unauthorized", "Authorization")
        assert client.get("/v1/sets", headers=api.reader).status_code == 200
        assert client.get("/v1/observations", headers=api.analyst).status_code == 200
        assert client.get("/healthz").status_code == 200


# -- observations: the happy path ----------------------------------------------------------

def test_post_observation_is_201_with_the_stored_row(api):
    before = count_observations(api.store)
    response = api.client.post("/v1/observations", json=GOOD, headers=api.analyst)
    assert response.status_code == 201, response.text
    row = response.json()
    assert {k: row[k] for k in GOOD} == {**GOOD, "value": 1.0}
    assert row["analyst"] == "ana" and row["weight"] == pytest.approx(api.store.grades.weight(
        "B2")) and row["retracted_at"] is None
    assert count_observations(api.store) == before + 1
    items, _ = list_observations(api.store, indicator="joint_exercise",
                                 since=date(2025, 6, 1), until=date(2025, 6, 1))
    assert row["id"] in {item.id for item in items}


def test_idempotency_key_retry_returns_the_first_row(api):
    before = count_observations(api.store)
    headers = {**api.analyst, "Idempotency-Key": "retry-1"}
    body = {**GOOD, "date": "2025-07-01"}
    first = api.client.post("/v1/observations", json=body, headers=headers)
    second = api.client.post("/v1/observations", json=body, headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert count_observations(api.store) == before + 1
    other = api.client.post("/v1/observations", json={**body, "date": "2025-07-02"},
                            headers=headers)
    assert error(other) == (409, "idempotency_conflict", "Idempotency-Key")
    too_long = api.client.post("/v1/observations", json=body,
                               headers={**api.analyst, "Idempotency-Key": "k" * 201})
    assert error(too_long) == (422, "invalid", "Idempotency-Key")
    assert count_observations(api.store) == before + 1


def test_retract_then_retract_again_is_409(api):
    row = api.client.post("/v1/observations", json={**GOOD, "date": "2025-03-03"},
                          headers=api.analyst).json()
    count = count_observations(api.store)
    path = f"/v1/observations/{row['id']}/retract"
    response = api.client.post(path, json={"reason": "duplicate report"}, headers=api.admin)
    assert response.status_code == 200
    assert response.json()["id"] == row["id"] and response.json()["retracted_at"]
    assert response.json()["retraction_reason"] == "duplicate report (by ada)"
    again = api.client.post(path, json={"reason": "again"}, headers=api.analyst)
    assert error(again) == (409, "already_retracted", "id")
    assert count_observations(api.store) == count  # retraction never deletes


@pytest.mark.parametrize("body, field", [
    ({}, "reason"),
    ({"reason": ""}, "reason"),
    ({"reason": "   "}, "reason"),
    ({"reason": 5}, "reason"),
    ({"reason": "x", "because": "y"}, "because"),
])
def test_retract_refuses_a_bad_reason(api, body, field):
    row = api.client.post("/v1/observations", json={**GOOD, "date": "2025-03-04"},
                          headers=api.analyst).json()
    response = api.client.post(f"/v1/observations/{row['id']}/retract", json=body,
                               headers=api.analyst)
    assert error(response) == (422, "invalid", field)
    assert list_observations(api.store, since=date(2025, 3, 4),
                             until=date(2025, 3, 4))[0][0].retracted_at is None


def test_retract_unknown_observation_is_404(api):
    response = api.client.post("/v1/observations/999999/retract", json={"reason": "x"},
                               headers=api.analyst)
    assert error(response) == (404, "not_found", "id")
    response = api.client.post("/v1/observations/abc/retract", json={"reason": "x"},
                               headers=api.analyst)
    assert error(response) == (422, "invalid", "observation_id")


def test_retract_needs_a_key(api):
    response = api.client.post("/v1/observations/1/retract", json={"reason": "x"})
    assert error(response) == (401, "unauthorized", "Authorization")
    response = api.client.post("/v1/observations/1/retract", json={"reason": "x"},
                               headers=api.reader)
    assert error(response) == (403, "forbidden", None)


# -- observations: everything the validation refuses ---------------------------------------

def body_with(**fields) -> str:
    data = {"indicator": "joint_exercise", "date": "2025-06-01"}
    data.update(fields)
    return json.dumps({k: v for k, v in data.items() if v is not ...})


BAD_BODIES = [
    pytest.param(body_with(indicator="joint_exercize"), "invalid", "indicator",
                 id="unknown-indicator"),
    pytest.param(body_with(indicator=...), "invalid", "indicator", id="missing-indicator"),
    pytest.param(body_with(indicator=7), "invalid", "indicator", id="indicator-number"),
    pytest.param(body_with(value=-1), "invalid", "value", id="negative-count"),
    pytest.param(body_with(value=1.5), "invalid", "value", id="fractional-count"),
    pytest.param(body_with(indicator="satellite_cueing", value=2), "invalid", "value",
                 id="milestone-value-2"),
    pytest.param('{"indicator": "joint_exercise", "date": "2025-06-01", "value": NaN}',
                 "invalid", "value", id="nan"),
    pytest.param('{"indicator": "joint_exercise", "date": "2025-06-01", "value": Infinity}',
                 "invalid", "value", id="infinity"),
    pytest.param('{"indicator": "joint_exercise", "date": "2025-06-01", "value": -Infinity}',
                 "invalid", "value", id="minus-infinity"),
    pytest.param('{"indicator": "joint_exercise", "date": "2025-06-01", "value": 1e999}',
                 "invalid", "value", id="overflow"),
    pytest.param('{"indicator": "joint_exercise", "date": "2025-06-01", "note": [NaN]}',
                 "invalid", "note", id="nested-nan"),
    pytest.param(body_with(value="abc"), "invalid", "value", id="value-abc"),
    pytest.param(body_with(value=[1]), "invalid", "value", id="value-list"),
    pytest.param(body_with(value={"n": 1}), "invalid", "value", id="value-object"),
    pytest.param(body_with(value=True), "invalid", "value", id="value-boolean"),
    pytest.param(body_with(date="2025-13-45"), "invalid", "date", id="date-unparseable"),
    pytest.param(body_with(date="yesterday"), "invalid", "date", id="date-words"),
    pytest.param(body_with(date=20250601), "invalid", "date", id="date-number"),
    pytest.param(body_with(date=...), "invalid", "date", id="date-missing"),
    pytest.param(body_with(date="2026-03-01"), "invalid", "date", id="date-future"),
    pytest.param(body_with(grade="Z9"), "invalid", "grade", id="grade-bad"),
    pytest.param(body_with(grade=12), "invalid", "grade", id="grade-number"),
    pytest.param(body_with(note=5), "invalid", "note", id="note-number"),
    pytest.param(body_with(valeu=1), "invalid", "valeu", id="unknown-field"),
    pytest.param('{"indicator": "joint_exercise", "date": "2025-06-01", "value": 1,'
                 ' "value": 2}', "invalid_json", "value", id="duplicate-key"),
    pytest.param('{"indicator": "joint_exercise", "date": ', "invalid_json", None,
                 id="malformed-json"),
    pytest.param("", "invalid_json", None, id="empty-body"),
    pytest.param(b'{"indicator": "\xff"}', "invalid_json", None, id="not-utf8"),
    pytest.param("[1, 2]", "invalid", None, id="array-body"),
    pytest.param('"joint_exercise"', "invalid", None, id="string-body"),
    pytest.param("null", "invalid", None, id="null-body"),
    pytest.param("3", "invalid", None, id="number-body"),
]


@pytest.mark.parametrize("content, code, field", BAD_BODIES)
def test_bad_observation_is_422_naming_the_field(api, content, code, field):
    before = count_observations(api.store)
    response = post_raw(api, "/v1/observations", content)
    assert error(response) == (422, code, field)
    assert count_observations(api.store) == before


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_by_the_parser(api, token):
    content = f'{{"indicator": "joint_exercise", "date": "2025-06-01", "source": {token}}}'
    response = post_raw(api, "/v1/observations", content)
    assert error(response) == (422, "invalid", "source")
    assert f"{token} is not a number" in response.json()["error"]["message"]


def test_body_over_the_limit_is_413(api):
    before = count_observations(api.store)
    big = json.dumps({**GOOD, "note": "x" * MIB}).encode()
    response = post_raw(api, "/v1/observations", big)
    assert error(response) == (413, "payload_too_large", None)
    # no Content-Length: counted while reading
    response = api.client.post("/v1/observations", content=iter([big]),
                               headers={**api.analyst, "Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert error(response) == (413, "payload_too_large", None)
    assert count_observations(api.store) == before
    small = json.dumps({**GOOD, "note": "x" * 1000}).encode()
    assert post_raw(api, "/v1/observations", small).status_code == 201


# -- observations: listing -----------------------------------------------------------------

def test_list_pages_through_next_links(api):
    ids = {add_observation(api.store, data={"indicator": "joint_patrol",
                                            "date": f"2019-03-{d:02d}"}, analyst="seed")[0].id
           for d in range(1, 8)}
    path = "/v1/observations?indicator=joint_patrol&since=2019-03-01&until=2019-03-31&limit=3"
    seen, dates, pages = [], [], 0
    while path:
        response = api.client.get(path)
        assert response.status_code == 200
        body = response.json()
        assert body["total"] == 7
        seen += [item["id"] for item in body["items"]]
        dates += [item["date"] for item in body["items"]]
        path, pages = body["next"], pages + 1
        if path:
            assert path.startswith("/v1/observations?") and "indicator=joint_patrol" in path
    assert pages == 3 and set(seen) == ids and len(seen) == 7
    assert dates == sorted(dates, reverse=True)


def test_list_filters_by_set_and_refuses_bad_queries(api):
    response = api.client.get("/v1/observations", params={"set": WORLD, "limit": 1000})
    assert response.status_code == 200
    world_indicators = set(get_set(api.store, set_id=WORLD).indicator_ids)
    assert {item["indicator"] for item in response.json()["items"]} <= world_indicators
    assert error(api.client.get("/v1/observations?limit=0")) == (422, "invalid", "limit")
    assert error(api.client.get("/v1/observations?limit=1001")) == (422, "invalid", "limit")
    assert error(api.client.get("/v1/observations?offset=-1")) == (422, "invalid", "offset")
    assert error(api.client.get("/v1/observations?since=soon")) == (422, "invalid", "since")
    assert error(api.client.get("/v1/observations?since=2025-02-01&until=2025-01-01")) == (
        422, "invalid", "until")
    assert error(api.client.get("/v1/observations?indicator=nope")) == (
        422, "invalid", "indicator")
    assert error(api.client.get("/v1/observations?set=nope")) == (404, "not_found", "set")


# -- fits ----------------------------------------------------------------------------------

def test_fit_requests_are_validated(api):
    def pending():  # the logged observations may have queued a refit already
        row = pending_fit(api.store, set_id=WORLD)
        return row and row.id

    before = pending()
    assert error(api.client.post("/v1/fits", json={"set_id": "nope"}, headers=api.admin)) == (
        404, "not_found", "set_id")
    assert error(api.client.post("/v1/fits", json={}, headers=api.admin)) == (
        422, "invalid", "set_id")
    assert error(api.client.post("/v1/fits", json={"set_id": 3}, headers=api.admin)) == (
        422, "invalid", "set_id")
    assert error(post_raw(api, "/v1/fits", "{", api.admin)) == (422, "invalid_json", None)
    assert error(api.client.post("/v1/fits", json={"set_id": WORLD})) == (
        401, "unauthorized", "Authorization")
    assert pending() == before  # refused requests queue nothing


def test_unknown_fit_is_404(api):
    assert error(api.client.get("/v1/fits/no-such-fit")) == (404, "not_found", "fit_id")


def test_queue_fit_is_202_and_stays_queued_without_a_scheduler(api):
    # the observations logged above may have queued a refit: the request joins it
    pending = pending_fit(api.store, set_id=CONVERGENCE, statuses=("queued",))
    requester = pending.requested_by if pending is not None else "ada"
    response = api.client.post("/v1/fits", json={"set_id": CONVERGENCE}, headers=api.admin)
    assert response.status_code == 202
    body = response.json()
    assert body == {"fit_id": body["fit_id"], "set_id": CONVERGENCE, "status": "queued"}
    assert response.headers["location"] == f"/v1/fits/{body['fit_id']}"
    again = api.client.post("/v1/fits", json={"set_id": CONVERGENCE}, headers=api.admin)
    assert again.status_code == 202 and again.json()["fit_id"] == body["fit_id"]
    status = api.client.get(f"/v1/fits/{body['fit_id']}")
    assert status.status_code == 200
    assert status.json()["status"] == "queued" and status.json()["requested_by"] == requester


# -- the published posterior ---------------------------------------------------------------

@pytest.mark.slow
def test_fit_status_after_publishing(api, published):
    response = api.client.get(f"/v1/fits/{published['fit_id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "published" and body["set_id"] == CONVERGENCE
    assert body["diagnostics"]["passed"] is True and body["reason"] is None
    assert body["timings"]["total_s"] > 0 and body["finished_at"]


@pytest.mark.slow
def test_the_posterior_is_rendered_once_per_fit_and_staleness(api, published):
    """The hot path serves bytes rendered once; a posterior turning stale is rendered anew."""
    cache = api.services.posterior_cache
    api.client.get(f"/v1/sets/{CONVERGENCE}/posterior")  # cached by now
    renders = []

    def counting(payload):
        renders.append(payload["stale"])
        return render(payload)

    now = api.store.clock()
    first = cache.peek_rendered(CONVERGENCE, now, 86_400, counting)
    assert cache.peek_rendered(CONVERGENCE, now, 86_400, counting) is first
    later = now + timedelta(days=2)  # past stale_after: the body says so, with a new ETag
    stale = cache.peek_rendered(CONVERGENCE, later, 86_400, counting)
    assert json.loads(stale[0])["stale"] is True and stale[1] != first[1]
    assert cache.peek_rendered(CONVERGENCE, later, 86_400, counting) is stale
    assert renders in ([True], [False, True])  # the API's own request may have rendered first


@pytest.mark.slow
def test_posterior_is_the_exact_answer_with_an_etag(api, published):
    response = api.client.get(f"/v1/sets/{CONVERGENCE}/posterior")
    assert response.status_code == 200
    body = response.json()
    assert body["fit_id"] == published["fit_id"] and body["stale"] is False
    assert body["evidence_through"] == "2025-12-31" and body["diagnostics"]["passed"] is True
    assert [s["id"] for s in body["scenarios"]] == [
        "loose", "integrated_ew", "formal_bloc", "crisis"]
    probabilities = np.array([s["probability"] for s in body["scenarios"]])
    np.testing.assert_allclose(probabilities, published["exact"], atol=1e-6)
    assert response.headers["cache-control"] == "no-cache"
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 66


@pytest.mark.slow
@pytest.mark.parametrize("if_none_match", [
    "{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_posterior_304_on_a_matching_etag(api, published, if_none_match):
    etag = api.client.get(f"/v1/sets/{CONVERGENCE}/posterior").headers["etag"]
    response = api.client.get(f"/v1/sets/{CONVERGENCE}/posterior",
                              headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert response.status_code == 304 and response.content == b""
    assert response.headers["etag"] == etag


@pytest.mark.slow
def test_posterior_200_on_another_etag(api, published):
    response = api.client.get(f"/v1/sets/{CONVERGENCE}/posterior",
                              headers={"If-None-Match": '"not-it"'})
    assert response.status_code == 200 and response.json()["fit_id"] == published["fit_id"]


@pytest.mark.slow
def test_history_lists_published_fits(api, published):
    response = api.client.get(f"/v1/sets/{CONVERGENCE}/history")
    assert response.status_code == 200
    body = response.json()
    assert body["set_id"] == CONVERGENCE and body["scenarios"][0] == "loose"
    item = next(i for i in body["items"] if i["fit_id"] == published["fit_id"])
    assert item["probabilities"]["loose"] == pytest.approx(published["exact"][0], abs=1e-6)
    assert response.headers["etag"]


@pytest.mark.slow
def test_new_evidence_new_fit_new_etag(api, published):
    old = api.client.get(f"/v1/sets/{CONVERGENCE}/posterior")
    api.client.post("/v1/observations", headers=api.analyst,
                    json={"indicator": "satellite_cueing", "date": "2025-10-01"})
    fit_id = api.client.post("/v1/fits", json={"set_id": CONVERGENCE},
                             headers=api.admin).json()["fit_id"]
    assert api.services.runner.run_fit(fit_id)["status"] == "published"
    new = api.client.get(f"/v1/sets/{CONVERGENCE}/posterior",
                         headers={"If-None-Match": old.headers["etag"]})
    assert new.status_code == 200 and new.json()["fit_id"] == fit_id
    assert new.headers["etag"] != old.headers["etag"]
    history = api.client.get(f"/v1/sets/{CONVERGENCE}/history").json()["items"]
    assert [i["fit_id"] for i in history][-2:] == [published["fit_id"], fit_id]


# -- unexpected errors ---------------------------------------------------------------------

def test_unexpected_error_is_500_without_a_traceback(api):
    app = create_app(make_settings(api.var_dir, api.url))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert error(response) == (500, "internal_error", None)
    assert "secret" not in response.text and "Traceback" not in response.text
