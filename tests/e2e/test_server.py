"""End to end against a real uvicorn server: fits through the API, ETags, moving posteriors, errors.

The server runs as ``signpost serve`` would in production: scheduler on, fits in the warm
worker process. The test holds its own Database on the same SQLite file to set up keys and
observations, to count rows, and to build the evidence for the exact oracle.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pytest

import indicators
from forecast import exact_posterior
from indicators import read_observations_csv
from service.db import Database
from service.repositories.evidence import evidence_of
from service.repositories.fits import pending_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observations, count_observations
from service.repositories.sets import get_catalog, get_set, load_bundled_sets

from .conftest import ServerProcess

pytestmark = pytest.mark.slow

TODAY = date(2025, 12, 31)
CONVERGENCE = "sino-russian-convergence"
WORLD = "world-order-2035"
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
FIT_TIMEOUT = 180.0


@dataclass
class Deployment:
    server: ServerProcess
    client: httpx.Client
    store: Database
    admin: dict[str, str]
    analyst: dict[str, str]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, serve_module) -> Iterator[Deployment]:
    var_dir = tmp_path_factory.mktemp("e2e")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    store = Database(url, today=TODAY)
    store.migrate()
    load_bundled_sets(store)
    observations, _ = read_observations_csv(SAMPLE, get_catalog(store), TODAY)
    add_observations(store, observations=observations, analyst="sample")
    admin = {"Authorization": f"Bearer {create_key(store, role='admin', name='e2e-admin')}"}
    analyst = {"Authorization": f"Bearer {create_key(store, role='analyst', name='e2e-analyst')}"}
    server = serve_module(var_dir, {
        "SIGNPOST_DATABASE_URL": url,
        "SIGNPOST_TODAY": TODAY.isoformat(),
        "SIGNPOST_QUEUE_POLL": "0.5",
        "SIGNPOST_REFIT_INTERVAL": "3600",
        "SIGNPOST_SCHEDULER": "true",
        "SIGNPOST_WORKER": "process",
        # transitions held at the identity: the published numbers must equal the closed form
        # (the learned-transition path is tested in tests/forecast/test_dynamic.py and
        # tests/service/test_outlook.py)
        "SIGNPOST_DYNAMIC": "false",
    })
    assert server.wait_until("/healthz").json() == {"status": "ok"}
    assert server.wait_until("/readyz").json() == {"status": "ready"}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield Deployment(server, client, store, admin, analyst)
    store.dispose()


def wait_for_fit(d: Deployment, fit_id: str) -> dict:
    """Poll the fit until it reaches a verdict."""
    deadline = time.monotonic() + FIT_TIMEOUT
    while time.monotonic() < deadline:
        response = d.client.get(f"/v1/fits/{fit_id}")
        assert response.status_code == 200, response.text
        if response.json()["status"] in ("published", "rejected", "failed"):
            return response.json()
        time.sleep(0.5)
    pytest.fail(f"fit {fit_id} not done in {FIT_TIMEOUT}s: {response.json()}\n"
                f"{d.server.log_tail()}")


def publish(d: Deployment, set_id: str) -> dict:
    """POST a fit, wait for it, let the scheduler's own fits of the set finish; the posterior."""
    response = d.client.post("/v1/fits", json={"set_id": set_id}, headers=d.admin)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    fit = wait_for_fit(d, response.json()["fit_id"])
    assert fit["status"] == "published", fit
    deadline = time.monotonic() + FIT_TIMEOUT
    while pending_fit(d.store,
                      set_id=set_id) is not None:  # e.g. the start-up refit, on the same data
        assert time.monotonic() < deadline, d.server.log_tail()
        time.sleep(0.5)
    response = d.client.get(f"/v1/sets/{set_id}/posterior")
    assert response.status_code == 200, response.text
    return response.json()


def probabilities(posterior: dict) -> np.ndarray:
    return np.array([s["probability"] for s in posterior["scenarios"]])


def oracle(d: Deployment, set_id: str) -> np.ndarray:
    scenario_set = get_set(d.store, set_id=set_id)
    return exact_posterior(scenario_set, evidence_of(d.store, scenario_set=scenario_set,
                                                     as_of=TODAY)).probability


def error(response: httpx.Response) -> tuple[int, str, str | None]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return response.status_code, body["error"]["code"], body["error"]["field"]


def test_a_fit_queued_through_the_api_publishes_the_exact_posterior(deployment):
    d = deployment
    posterior = publish(d, CONVERGENCE)
    assert posterior["set_id"] == CONVERGENCE and posterior["stale"] is False
    assert posterior["diagnostics"]["passed"] is True
    np.testing.assert_allclose(probabilities(posterior), oracle(d, CONVERGENCE),
                               rtol=1e-6, atol=1e-12)

    first = d.client.get(f"/v1/sets/{CONVERGENCE}/posterior")
    etag = first.headers["etag"]
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    assert first.json() == posterior
    again = d.client.get(f"/v1/sets/{CONVERGENCE}/posterior", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = d.client.get(f"/v1/sets/{CONVERGENCE}/posterior",
                         headers={"If-None-Match": '"stale-tag"'})
    assert other.status_code == 200 and other.headers["etag"] == etag


@pytest.mark.parametrize("set_id, observation, gains, reference", [
    # A joint satellite-cueing test: integrated early warning expects it far more often
    # (hazard 0.1/quarter) than loose coordination (0.015), so its odds against loose rise.
    # The static model is nearly certain of "loose" here; odds make the move visible.
    (CONVERGENCE, {"indicator": "satellite_cueing", "date": "2025-10-15", "grade": "A1"},
     "integrated_ew", "loose"),
    # A US-China cooperation agreement: the scenario of that name expects the most of them.
    (WORLD, {"indicator": "us_china_cooperation", "date": "2025-11-01", "grade": "A1"},
     "us_china_cooperation", "hardened_bipolar"),
])
def test_an_observation_moves_the_posterior_the_way_the_model_says(deployment, set_id,
                                                                    observation, gains,
                                                                    reference):
    d = deployment
    before = publish(d, set_id)
    ids = [s["id"] for s in before["scenarios"]]
    k, ref = ids.index(gains), ids.index(reference)
    exact_before = oracle(d, set_id)
    np.testing.assert_allclose(probabilities(before), exact_before, rtol=1e-6, atol=1e-12)

    response = d.client.post("/v1/observations", json=observation, headers=d.analyst)
    assert response.status_code == 201, response.text
    assert response.json()["analyst"] == "e2e-analyst"
    exact_after = oracle(d, set_id)
    # what the model says: the scenario gains against the reference, by this factor
    model_odds = (exact_after[k] / exact_after[ref]) / (exact_before[k] / exact_before[ref])
    assert model_odds > 1.4

    after = publish(d, set_id)
    assert after["fit_id"] != before["fit_id"]
    p_before, p_after = probabilities(before), probabilities(after)
    np.testing.assert_allclose(p_after, exact_after, rtol=1e-6, atol=1e-12)
    if set_id == WORLD:
        np.testing.assert_allclose(p_after, exact_after, atol=1e-6)
        assert p_after[k] > p_before[k] + 0.01
    # every scenario moved the way the oracle says (up or down), by the oracle's factor
    served_ratio, model_ratio = p_after / p_before, exact_after / exact_before
    np.testing.assert_array_equal(np.sign(served_ratio - 1), np.sign(model_ratio - 1))
    np.testing.assert_allclose(served_ratio, model_ratio, rtol=1e-6)
    served_odds = (p_after[k] / p_after[ref]) / (p_before[k] / p_before[ref])
    assert served_odds == pytest.approx(model_odds, rel=1e-6)


BAD_REQUESTS = [
    # (method, path, keyword arguments, headers role, status, code, field)
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercise",
                                           "date": "2025-06-01"}}, None,
     401, "unauthorized", "Authorization"),
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercise",
                                           "date": "2025-06-01"}}, "bogus",
     401, "invalid_key", "Authorization"),
    ("POST", "/v1/fits", {"json": {"set_id": CONVERGENCE}}, "analyst",
     403, "forbidden", None),
    ("GET", "/v1/sets/no-such-set/posterior", {}, None, 404, "not_found", "set_id"),
    ("GET", "/v1/fits/no-such-fit", {}, None, 404, "not_found", "fit_id"),
    ("POST", "/v1/observations/987654/retract", {"json": {"reason": "x"}}, "analyst",
     404, "not_found", "id"),
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercize",
                                           "date": "2025-06-01"}}, "analyst",
     422, "invalid", "indicator"),
    ("POST", "/v1/observations", {"content": '{"indicator": "joint_exercise", '
                                             '"date": "2025-06-01", "value": NaN}'}, "analyst",
     422, "invalid", "value"),
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercise", "date": "2025-06-01",
                                           "value": -2}}, "analyst", 422, "invalid", "value"),
    ("POST", "/v1/observations", {"json": {"indicator": "satellite_cueing",
                                           "date": "2025-06-01", "value": 2}}, "analyst",
     422, "invalid", "value"),
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercise", "date": "2025-06-01",
                                           "value": [1]}}, "analyst", 422, "invalid", "value"),
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercise",
                                           "date": "2026-06-01"}}, "analyst",
     422, "invalid", "date"),
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercise",
                                           "date": "1 June"}}, "analyst",
     422, "invalid", "date"),
    ("POST", "/v1/observations", {"json": {"indicator": "joint_exercise", "date": "2025-06-01",
                                           "grade": "G7"}}, "analyst", 422, "invalid", "grade"),
    ("POST", "/v1/observations", {"content": '{"indicator": '}, "analyst",
     422, "invalid_json", None),
    ("POST", "/v1/observations", {"content": '["joint_exercise"]'}, "analyst",
     422, "invalid", None),
    ("GET", "/v1/observations?limit=5000", {}, None, 422, "invalid", "limit"),
]


def test_errors_over_http_name_the_field_and_store_nothing(deployment):
    d = deployment
    before = count_observations(d.store)
    headers = {"analyst": d.analyst, "admin": d.admin, None: {},
               "bogus": {"Authorization": "Bearer sp_bogus"}}
    for method, path, kwargs, role, status, code, field in BAD_REQUESTS:
        response = d.client.request(method, path, headers={
            "Content-Type": "application/json", **headers[role]}, **kwargs)
        assert error(response) == (status, code, field), (method, path, kwargs, response.text)
        if status == 401:
            assert response.headers["www-authenticate"] == "Bearer"
    assert count_observations(d.store) == before


def test_bodies_over_one_mib_are_413(deployment):
    d = deployment
    before = count_observations(d.store)
    big = json.dumps({"indicator": "joint_exercise", "date": "2025-06-01",
                      "note": "x" * (1 << 20)}).encode()
    response = d.client.post("/v1/observations", content=big,
                             headers={**d.analyst, "Content-Type": "application/json"})
    assert error(response) == (413, "payload_too_large", None)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts while reading
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    response = d.client.post("/v1/observations", content=chunks(),
                             headers={**d.analyst, "Content-Type": "application/json"})
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert error(response) == (413, "payload_too_large", None)
    assert count_observations(d.store) == before
    assert d.client.get("/healthz").status_code == 200


def test_idempotent_retry_and_retraction_over_http(deployment):
    d = deployment
    before = count_observations(d.store)
    body = {"indicator": "joint_exercise", "date": "2025-04-04", "source": "e2e"}
    headers = {**d.analyst, "Idempotency-Key": "e2e-retry-1"}
    first = d.client.post("/v1/observations", json=body, headers=headers)
    retry = d.client.post("/v1/observations", json=body, headers=headers)
    assert first.status_code == 201 and retry.status_code == 200
    assert retry.json() == first.json()
    assert count_observations(d.store) == before + 1

    path = f"/v1/observations/{first.json()['id']}/retract"
    retracted = d.client.post(path, json={"reason": "e2e clean-up"}, headers=d.analyst)
    assert retracted.status_code == 200 and retracted.json()["retracted_at"]
    twice = d.client.post(path, json={"reason": "again"}, headers=d.analyst)
    assert error(twice) == (409, "already_retracted", "id")
    assert count_observations(d.store) == before + 1
