"""Reviews on SQLite and PostgreSQL, through the store, the API and the CLI.

Every refusal names its field with a clear message and stores nothing; a review moves each
indicator's coverage (and so the evidence), queues refits of the sets it touches, and every
payload says what the evidence covered.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

import indicators
from forecast import exact_posterior
from service.api import create_app
from service.db import Database, FitRow
from service.errors import BadRequest, Conflict, NotFound
from service.repositories.evidence import coverage_of, evidence_of
from service.repositories.fits import get_fit, update_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observation, add_observations, count_observations
from service.repositories.sets import get_catalog, get_set, load_bundled_sets
from service.reviews import add_review, list_reviews, retract_review
from service.settings import Settings
from service.views import fit_dict
from tests.service.support import TestClient

from .test_cli import cli, run  # noqa: F401  (the CLI fixture)

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
CONVERGENCE = "sino-russian-convergence"
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
SAMPLE_ROWS = len(SAMPLE.read_text(encoding="utf-8").splitlines()) - 1  # without the header


@pytest.fixture
def store(db_url):
    s = Database(db_url, today=TODAY, clock=lambda: datetime(2025, 12, 31, 12, tzinfo=UTC))
    s.migrate()
    load_bundled_sets(s)
    yield s
    s.dispose()


REFUSED = [
    ({"set_id": WORLD, "through": "2025-13-01"}, "through",
     "through: '2025-13-01' is not a date; use YYYY-MM-DD"),
    ({"set_id": WORLD, "through": "2026-01-05"}, "through",
     "through: 2026-01-05 is in the future (today is 2025-12-31)"),
    ({"set_id": WORLD, "through": "2023-08-31"}, "through",
     "through: 2023-08-31 is before the start of 'world-order-2035' (2023-09-01)"),
    ({"indicators": ["joint_exercise"], "through": "2011-12-31"}, "through",
     "through: 2011-12-31 is before the start of every set using these indicators (2012-01-01)"),
    ({"set_id": "world-order", "through": "2025-12-31"}, "set_id",
     "set_id: unknown scenario set 'world-order'"),
    ({"set_id": WORLD, "indicators": ["joint_exercize"], "through": "2025-12-31"},
     "indicators", "indicators: 'joint_exercize' is not in the catalog; did you mean "
                   "'joint_exercise'?"),
    ({"set_id": WORLD, "indicators": ["satellite_cueing"], "through": "2025-12-31"},
     "indicators", "indicators: 'satellite_cueing' is not an indicator of 'world-order-2035'"),
    ({"through": "2025-12-31"}, "indicators",
     "indicators: name the indicators reviewed, or give set_id to review all of a set's"),
    ({"set_id": WORLD}, "through", "through: Field required"),
    ({"set_id": WORLD, "through": 20251231}, "through", "through: Input should be a valid "
                                                          "string"),
    ({"indicators": "joint_exercise", "through": "2025-12-31"}, "indicators",
     "indicators: Input should be a valid list"),
    ({"set_id": WORLD, "through": "2025-12-31", "colour": "red"}, "colour",
     "colour: unknown field; the fields are set_id, indicators, through, note"),
    ({"set_id": WORLD, "through": "2025-12-31", "note": "x" * 2001}, "note",
     "note: String should have at most 2000 characters"),
]


@pytest.mark.parametrize(("body", "field", "message"), REFUSED,
                         ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(REFUSED)])
def test_every_bad_review_is_refused_naming_the_field_and_nothing_is_stored(store, body,
                                                                            field, message):
    with pytest.raises(BadRequest) as refused:
        add_review(store, body)
    assert refused.value.field == field
    assert str(refused.value).startswith(message), str(refused.value)
    assert list_reviews(store) == ([], 0)


def test_a_review_moves_coverage_and_the_evidence_with_it(store):
    scenario_set = get_set(store, set_id=CONVERGENCE)
    add_observation(store, data={"indicator": "joint_exercise", "date": "2024-05-10",
                                 "grade": "A1"})
    before = coverage_of(store, scenario_set=scenario_set)
    assert set(before.dates().values()) == {date(2024, 5, 10)}  # the newest entry
    review, created = add_review(store, {"set_id": CONVERGENCE, "through": "2025-12-31",
                                         "note": "read TASS and Xinhua archives"},
                                 analyst="ana")
    assert created and review["indicators"] == sorted(scenario_set.indicator_ids)
    assert review["analyst"] == "ana" and review["set_id"] == CONVERGENCE
    after = coverage_of(store, scenario_set=scenario_set)
    assert set(after.dates().values()) == {date(2025, 12, 31)}
    assert {c.basis for c in after.indicators} == {"review"}
    assert {c.review_id for c in after.indicators} == {review["id"]}
    evidence = evidence_of(store, scenario_set=scenario_set)
    col = evidence.column("joint_exercise")
    assert evidence.exposure[:, col].sum() == pytest.approx(len(evidence.grid))  # all covered
    # a review of one indicator counts for every set that uses it
    world = get_set(store, set_id=WORLD)
    assert coverage_of(store, scenario_set=world).dates()["joint_exercise"] == date(2025, 12, 31)
    items, total = list_reviews(store, set_id=WORLD)
    assert total == 1 and items[0]["id"] == review["id"]
    assert list_reviews(store, indicator="us_china_cooperation") == ([], 0)


def test_a_retracted_review_stops_counting_and_stays_stored(store):
    scenario_set = get_set(store, set_id=WORLD)
    add_observation(store, data={"indicator": "joint_exercise", "date": "2024-05-10"})
    review, _ = add_review(store, {"set_id": WORLD, "through": "2025-06-30"})
    retracted = retract_review(store, review["id"], "read the wrong archive", by="ana")
    assert retracted["retraction_reason"] == "read the wrong archive (by ana)"
    assert set(coverage_of(store, scenario_set=scenario_set).dates().values()) == {date(2024, 5,
                                                                                        10)}
    items, total = list_reviews(store)
    assert total == 1 and items[0]["retracted_at"] is not None
    assert list_reviews(store, include_retracted=False) == ([], 0)
    with pytest.raises(Conflict, match="already retracted"):
        retract_review(store, review["id"], "again")
    with pytest.raises(NotFound):
        retract_review(store, 999, "missing")
    with pytest.raises(BadRequest, match="reason"):
        retract_review(store, review["id"], " ")


def test_an_idempotency_key_stores_one_review(store):
    body = {"set_id": WORLD, "through": "2025-06-30"}
    first, created = add_review(store, body, idempotency_key="k1")
    again, created_again = add_review(store, body, idempotency_key="k1")
    assert created and not created_again and again["id"] == first["id"]
    with pytest.raises(Conflict) as conflict:
        add_review(store, {**body, "through": "2025-07-31"}, idempotency_key="k1")
    assert conflict.value.field == "Idempotency-Key"
    assert list_reviews(store)[1] == 1


def test_an_import_and_its_review_are_stored_together_or_not_at_all(store):
    observations, _ = indicators.read_observations_csv(SAMPLE, get_catalog(store), today=TODAY)
    with pytest.raises(BadRequest, match="in the future"):
        add_observations(store, observations=observations,
                         review={"indicators": ["joint_exercise"], "through": "2026-02-01"})
    assert count_observations(store) == 0 and list_reviews(store)[1] == 0
    count, review = add_observations(store, observations=observations,
                                     review={"indicators": sorted({o.indicator
                                                                   for o in observations}),
                                             "through": "2025-12-31"})
    assert count == len(observations) == SAMPLE_ROWS and review["through"] == "2025-12-31"


# -- the API ------------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path):
    settings = Settings(var_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                        scheduler=False, worker="inline", today=TODAY.isoformat(),
                        dynamic=False)
    app = create_app(settings)
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        analyst = create_key(store, role="analyst", name="ana")
        client.analyst = {"Authorization": f"Bearer {analyst}"}
        client.reader = {"Authorization": f"Bearer {create_key(store, role='reader')}"}
        client.services = app.state.services
        yield client


def test_post_a_review_then_list_and_retract_it(api):
    store = api.services.store
    add_observation(store, data={"indicator": "joint_exercise", "date": "2024-05-10"})
    response = api.post("/v1/reviews", headers=api.analyst,
                        json={"set_id": WORLD, "through": "2025-12-31", "note": "archives"})
    assert response.status_code == 201, response.text
    review = response.json()
    assert review["analyst"] == "ana" and review["through"] == "2025-12-31"
    assert review["sets"] == [CONVERGENCE, WORLD]  # joint_exercise is in both
    assert set(review["queued_fits"]) == {CONVERGENCE, WORLD}
    for fit_id in review["queued_fits"].values():
        assert fit_dict(get_fit(store, fit_id=fit_id))["status"] == "queued"
    listed = api.get("/v1/reviews", params={"set": WORLD})
    assert listed.status_code == 200 and listed.json()["total"] == 1
    by_indicator = api.get("/v1/reviews", params={"indicator": "joint_patrol"}).json()
    assert [r["id"] for r in by_indicator["items"]] == [review["id"]]
    retracted = api.post(f"/v1/reviews/{review['id']}/retract", headers=api.analyst,
                         json={"reason": "duplicate"})
    assert retracted.status_code == 200 and retracted.json()["retracted_at"]


def test_review_errors_have_the_one_shape_and_store_nothing(api):
    cases = [
        ({"set_id": WORLD, "through": "2026-01-05"}, api.analyst, 422, "invalid", "through"),
        ({"set_id": "nope", "through": "2025-12-31"}, api.analyst, 422, "invalid", "set_id"),
        ({"set_id": WORLD, "through": "2025-12-31"}, {}, 401, "unauthorized",
         "Authorization"),
        ({"set_id": WORLD, "through": "2025-12-31"}, api.reader, 403, "forbidden", None),
    ]
    for body, headers, status, code, field in cases:
        response = api.post("/v1/reviews", json=body, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["field"] == field
    unknown = api.get("/v1/reviews", params={"set": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "set"
    assert api.get("/v1/reviews").json()["total"] == 0


def test_every_payload_says_what_the_evidence_covered(api):
    store = api.services.store
    for day in ("2025-02-10", "2025-05-20"):
        add_observation(store, data={"indicator": "joint_exercise", "date": day, "grade": "A1"})
    reviewed = api.post("/v1/reviews", headers=api.analyst,
                        json={"set_id": WORLD, "indicators": ["joint_exercise"],
                              "through": "2025-09-30"}).json()
    fit_id = reviewed["queued_fits"][WORLD]
    assert api.services.runner.run_fit(fit_id)["status"] == "published"
    posterior = api.get(f"/v1/sets/{WORLD}/posterior").json()
    assert posterior["evidence_complete_through"] == "2025-05-20"  # the others: newest entry
    assert posterior["periods_past_coverage"] == 2  # 2025Q2 → Q4
    assert posterior["coverage_rule"] == "reviews"
    assert posterior["coverage"]["joint_exercise"] == {
        "covered_through": "2025-09-30", "basis": "review", "review_id": reviewed["id"],
        "periods_past": 1}
    assert posterior["coverage"]["joint_patrol"]["basis"] == "newest_entry"
    for path in ("forecast?horizon=2030-12-31", "milestones", "path"):
        body = api.get(f"/v1/sets/{WORLD}/{path}").json()
        assert body["evidence_complete_through"] == "2025-05-20", path
        assert body["coverage"] == posterior["coverage"], path
    # and the numbers are the exact ones of that evidence
    scenario_set = get_set(store, set_id=WORLD)
    exact = exact_posterior(scenario_set, evidence_of(store, scenario_set=scenario_set))
    np.testing.assert_allclose([s["probability"] for s in posterior["scenarios"]],
                               exact.probability, atol=1e-9)


# -- the CLI ------------------------------------------------------------------------------


def test_cli_review_and_reviews(cli):  # noqa: F811
    run(cli, "init")
    refused = run(cli, "review", "--set", WORLD, "--through", "2026-03-01", code=2)
    assert "through: 2026-03-01 is in the future" in refused.stderr
    refused = run(cli, "review", "--set", WORLD, "--indicator", "joint_exercize",
                  "--through", "2025-12-31", code=2)
    assert "indicators: 'joint_exercize' is not in the catalog" in refused.stderr
    stored = run(cli, "review", "--set", WORLD, "--indicator", "joint_exercise",
                 "--indicator", "joint_patrol", "--through", "2025-12-31", "--note", "TASS")
    assert "stored review 1: joint_exercise, joint_patrol reviewed through 2025-12-31" in \
        stored.stdout
    listed = run(cli, "reviews", "--set", WORLD)
    assert "review 1: through 2025-12-31, joint_exercise, joint_patrol — TASS" in listed.stdout
    assert "reviewed through 2025-12-31" in listed.stdout


def test_cli_import_with_its_review_date_is_all_or_nothing(cli, tmp_path):  # noqa: F811
    run(cli, "init")
    refused = run(cli, "import", str(SAMPLE), "--reviewed-through", "2026-01-31", code=2)
    assert "--reviewed-through: 2026-01-31 is in the future" in refused.stderr
    assert "nothing was imported" in refused.stderr
    with Database(Settings().url, today=TODAY) as store:
        assert count_observations(store) == 0
    done = run(cli, "import", str(SAMPLE), "--reviewed-through", "2025-12-31")
    assert f"imported {SAMPLE_ROWS} observations" in done.stdout
    assert "reviewed through 2025-12-31" in done.stdout
    with Database(Settings().url, today=TODAY) as store:
        coverage = coverage_of(store, scenario_set=get_set(store, set_id=CONVERGENCE))
    # the indicators in the file: reviewed; the others (milestones): the newest entry
    assert coverage.dates()["joint_exercise"] == date(2025, 12, 31)
    assert coverage.dates()["satellite_cueing"] == date(2025, 12, 9)


def test_an_observation_after_its_coverage_is_stored_and_said_to_wait(api):
    api.post("/v1/reviews", headers=api.analyst,
             json={"indicators": ["joint_exercise"], "through": "2025-09-30"})
    inside = api.post("/v1/observations", headers=api.analyst,
                      json={"indicator": "joint_exercise", "date": "2025-08-01"})
    after = api.post("/v1/observations", headers=api.analyst,
                     json={"indicator": "joint_exercise", "date": "2025-11-01"})
    assert inside.status_code == after.status_code == 201
    assert inside.json()["coverage"] == {
        CONVERGENCE: {"covered_through": "2025-09-30", "counted": True},
        WORLD: {"covered_through": "2025-09-30", "counted": True}}
    assert after.json()["coverage"][WORLD] == {"covered_through": "2025-09-30",
                                               "counted": False}
    # an indicator never reviewed is covered through the set's newest entry: it counts
    patrol = api.post("/v1/observations", headers=api.analyst,
                      json={"indicator": "joint_patrol", "date": "2025-12-01"}).json()
    assert patrol["coverage"][WORLD] == {"covered_through": "2025-12-01", "counted": True}


def test_cli_observe_says_when_an_observation_waits_for_a_review(cli):  # noqa: F811
    run(cli, "init")
    run(cli, "review", "--set", WORLD, "--through", "2025-06-30")
    waiting = run(cli, "observe", "--indicator", "joint_exercise", "--date", "2025-10-02")
    assert "stored observation 1" in waiting.stdout
    assert (f"note: not yet evidence for {WORLD}: joint_exercise is covered through "
            "2025-06-30; it counts once a review covers 2025-10-02") in waiting.stderr


def test_observations_queue_one_refit_per_set_even_while_a_fit_runs(api):
    """Logging an observation queues a refit of the sets it touches; a burst of them, and one
    arriving while a fit runs, is one more fit per set, not one per observation."""
    store = api.services.store
    body = {"indicator": "joint_patrol", "grade": "B2", "source": "MoD Japan"}

    def queued(set_id):
        with store.Session() as session:
            return session.scalars(select(FitRow).where(
                FitRow.set_id == set_id, FitRow.status == "queued")).all()

    first = api.post("/v1/observations", json={**body, "date": "2025-07-01"},
                     headers=api.analyst)
    assert first.status_code == 201
    assert [len(queued(s)) for s in (WORLD, CONVERGENCE)] == [1, 1]
    running = queued(WORLD)[0].id
    update_fit(store, fit_id=running, status="running")  # a fit has read the evidence and runs
    for day in ("2025-07-02", "2025-07-03", "2025-07-04"):
        assert api.post("/v1/observations", json={**body, "date": day},
                        headers=api.analyst).status_code == 201
    assert len(queued(WORLD)) == 1 and queued(WORLD)[0].id != running
    assert len(queued(CONVERGENCE)) == 1
    for set_id in (WORLD, CONVERGENCE):  # those fits ended: a retraction queues afresh
        for row in queued(set_id):
            update_fit(store, fit_id=row.id, status="failed")
    retracted = api.post(f"/v1/observations/{first.json()['id']}/retract",
                         json={"reason": "duplicate"}, headers=api.analyst)
    assert retracted.status_code == 200
    assert len(queued(WORLD)) == 1 and len(queued(CONVERGENCE)) == 1
