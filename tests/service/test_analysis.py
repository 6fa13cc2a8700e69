"""The analyst's loop over HTTP: attribution, what-if and the watchlist of a static set.

Checked against what the service itself does with the real thing: leave-one-out against a
refit after retracting the row, what-if against logging the row and refitting, and the
attribution's indicator terms against the exact posterior. Static sets, so every comparison
is to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

from forecast import exact_posterior
from service.api import create_app
from service.db import FitRow
from service.repositories.evidence import evidence_of
from service.repositories.keys import create_key
from service.repositories.observations import count_observations
from service.repositories.sets import get_set, load_bundled_sets

from .test_api import TODAY, WORLD, TestClient, bearer, error, make_settings

ROWS = [  # world-order indicators of each kind, graded
    {"indicator": "joint_exercise", "date": "2025-03-10", "grade": "A1"},
    {"indicator": "joint_exercise", "date": "2025-07-02", "grade": "B2"},
    {"indicator": "joint_patrol", "date": "2025-05-20", "grade": "C3"},
    {"indicator": "sanctions_on_russia", "date": "2025-04-01", "value": "in_place",
     "grade": "A2"},
    {"indicator": "sanctions_on_russia", "date": "2025-10-01", "value": "partly_lifted",
     "grade": "B2"},
    {"indicator": "us_china_cooperation", "date": "2025-09-09", "grade": "B3"},
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("analysis")
    app = create_app(make_settings(var_dir, f"sqlite:///{var_dir / 'signpost.db'}"))
    with TestClient(app) as client:
        services = app.state.services
        load_bundled_sets(services.store)
        analyst = bearer(create_key(services.store, role="analyst", name="ana"))
        for row in ROWS:
            assert client.post("/v1/observations", json=row, headers=analyst).status_code == 201
        review = client.post("/v1/reviews", json={"set_id": WORLD, "through": TODAY.isoformat()},
                             headers=analyst)
        assert review.status_code == 201, review.text
        client.app_state = services  # noqa: B010  (for the tests below)
        client.analyst = analyst
        refit(client)
        yield client


def refit(client) -> dict:
    """Run the queued fit of the world-order set inline (the scheduler is off here)."""
    services = client.app_state
    with services.store.Session() as session:
        queued = [r.id for r in session.query(FitRow).filter_by(set_id=WORLD, status="queued")]
    assert queued, "a write should have queued a refit"
    for fit_id in queued:
        assert services.runner.run_fit(fit_id)["status"] == "published"
    return client.get(f"/v1/sets/{WORLD}/posterior").json()


def probabilities(payload: dict) -> np.ndarray:
    return np.array([s["probability"] for s in payload["scenarios"]])


def test_indicator_terms_reproduce_the_published_posterior(world):
    body = world.get(f"/v1/sets/{WORLD}/attribution").json()
    assert body["method"] == "exact" and body["evidence_matches_fit"]
    ids = list(body["prior"])
    log_joint = np.log([body["prior"][k] for k in ids]) + np.sum(
        [[item["log_likelihood"][k] for k in ids] for item in body["indicators"]], axis=0)
    softmax = np.exp(log_joint - np.logaddexp.reduce(log_joint))
    published = probabilities(world.get(f"/v1/sets/{WORLD}/posterior").json())
    np.testing.assert_allclose(softmax, published, atol=1e-9)
    store = world.app_state.store
    scenario_set = get_set(store, set_id=WORLD)
    exact = exact_posterior(scenario_set, evidence_of(store, scenario_set=scenario_set))
    np.testing.assert_allclose(softmax, exact.probability, atol=1e-9)
    assert {o["id"] for o in body["observations"]} == set(range(1, len(ROWS) + 1))
    for item in body["observations"]:
        assert set(item["without"]) == set(ids)
        assert all(v["words"] for v in item["without"].values())


def test_what_if_equals_logging_then_fitting_and_stores_nothing(world):
    store = world.app_state.store
    before = world.get(f"/v1/sets/{WORLD}/posterior")
    rows, fits = count_observations(store), _fits(store)
    row = {"indicator": "sanctions_on_russia", "date": "2025-11-20", "value": "fully_lifted",
           "grade": "B2"}
    answer = world.post(f"/v1/sets/{WORLD}/what-if", json={"observations": [row]},
                        headers=world.analyst)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["stored"] is False and body["added"] == 1
    assert count_observations(store) == rows and _fits(store) == fits
    again = world.get(f"/v1/sets/{WORLD}/posterior",
                      headers={"If-None-Match": before.headers["ETag"]})
    assert again.status_code == 304  # the served posterior did not change

    assert world.post("/v1/observations", json=row, headers=world.analyst).status_code == 201
    logged = refit(world)
    np.testing.assert_allclose(probabilities(body), probabilities(logged), atol=1e-12)
    assert body["evidence_hash"] == _latest(store).evidence_hash


def test_leave_one_out_equals_a_refit_without_the_row(world):
    body = world.get(f"/v1/sets/{WORLD}/attribution").json()
    ids = list(body["prior"])
    published = np.array([body["posterior"][k]["probability"] for k in ids])
    target = body["observations"][0]  # the one that moved the posterior most
    expected_without = np.array([target["without"][k]["probability"] for k in ids])
    np.testing.assert_allclose(
        [target["delta_log_probability"][k] for k in ids],
        np.log(published) - np.log(expected_without), atol=1e-9)
    retracted = world.post(f"/v1/observations/{target['id']}/retract",
                           json={"reason": "test: leave it out"}, headers=world.analyst)
    assert retracted.status_code == 200, retracted.text
    np.testing.assert_allclose(probabilities(refit(world)), expected_without, atol=1e-9)

    since = world.get(f"/v1/sets/{WORLD}/attribution").json()["since_previous"]
    assert [r["id"] for r in since["retractions"]] == [target["id"]]
    for k in ids:
        move = since["moved"][k]
        assert move["from"] == pytest.approx(published[ids.index(k)], abs=1e-12)
        assert move["change"] == pytest.approx(move["to"] - move["from"], abs=1e-12)


def test_what_if_refusals_name_the_field_and_store_nothing(world):
    store = world.app_state.store
    rows = count_observations(store)
    cases = [
        ({"observations": [{"indicator": "joint_exercise", "date": "2025-01-01",
                            "value": -1}]}, "observations[0].value"),
        ({"observations": [{"indicator": "no_such_thing", "date": "2025-01-01"}]},
         "observations[0].indicator"),
        ({"without": [987654]}, "without[0]"),
        ({"reviews": [{"indicators": ["joint_exercise"], "through": "not-a-date"}]},
         "reviews[0].through"),
        ({"forecast": "yes"}, "forecast"),
        ({"observation": []}, "observation"),
    ]
    for body, field in cases:
        response = world.post(f"/v1/sets/{WORLD}/what-if", json=body, headers=world.analyst)
        status, _, named = error(response)
        assert 400 <= status < 500 and named == field, (body, response.json())
    assert world.post(f"/v1/sets/{WORLD}/what-if", json={}).status_code == 401
    assert count_observations(store) == rows


def test_watchlist_is_ranked_and_non_negative(world):
    body = world.get(f"/v1/sets/{WORLD}/watchlist", params={"periods": 2}).json()
    bits = [item["information_bits"] for item in body["items"]]
    assert bits == sorted(bits, reverse=True) and min(bits) >= 0
    assert {item["indicator"] for item in body["items"]} == set(
        get_set(world.app_state.store, set_id=WORLD).indicator_ids)
    assert all(item["exact"] and item["mcse_bits"] == 0 for item in body["items"])
    assert error(world.get(f"/v1/sets/{WORLD}/watchlist", params={"periods": 0}))[0] == 422


def _fits(store) -> int:
    with store.Session() as session:
        return session.query(FitRow).count()


def _latest(store) -> FitRow:
    with store.Session() as session:
        return (session.query(FitRow).filter_by(set_id=WORLD, status="published")
                .order_by(FitRow.finished_at.desc()).first())
