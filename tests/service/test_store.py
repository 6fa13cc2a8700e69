"""The store on SQLite and on PostgreSQL: append-only observations, SQL evidence, leases."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import indicators
from forecast import set_evidence
from indicators import read_observations_csv
from service.errors import BadRequest, Conflict, NotFound
from service.store import Store

TODAY = date(2025, 12, 31)
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 12, 31, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(db_url):
    clock = Clock()
    s = Store(db_url, clock=clock, today=TODAY)
    s.migrate()
    s.load_bundled_sets()
    s.test_clock = clock
    yield s
    s.dispose()


def test_migrations_are_current_and_idempotent(store):
    assert store.ping() and store.migrations_current()
    store.migrate()  # a second run is a no-op
    assert store.migrations_current()


def test_observation_is_committed_and_readable_from_another_connection(store, db_url):
    row, created = store.add_observation({"indicator": "joint_exercise", "date": "2025-08-01",
                                          "grade": "A1", "source": "MoD"}, analyst="ana")
    assert created and row["weight"] == 1.0 and row["analyst"] == "ana"
    other = Store(db_url, today=TODAY)
    items, total = other.list_observations()
    assert total == 1 and items[0]["id"] == row["id"]
    other.dispose()


@pytest.mark.parametrize("data, field", [
    ({"indicator": "joint_exercize", "date": "2025-01-01"}, "indicator"),
    ({"indicator": "joint_exercise", "date": "2025-01-01", "value": -1}, "value"),
    ({"indicator": "joint_exercise", "date": "2025-01-01", "value": 1.5}, "value"),
    ({"indicator": "satellite_cueing", "date": "2025-01-01", "value": 2}, "value"),
    ({"indicator": "joint_exercise", "date": "2025-01-01", "value": float("nan")}, "value"),
    ({"indicator": "joint_exercise", "date": "2026-02-01"}, "date"),
    ({"indicator": "joint_exercise", "date": "31/12/2025"}, "date"),
    ({"indicator": "joint_exercise", "date": "2025-01-01", "grade": "G7"}, "grade"),
])
def test_bad_observations_are_refused_and_nothing_is_stored(store, data, field):
    with pytest.raises(BadRequest) as info:
        store.add_observation(data)
    assert info.value.field == field
    assert store.count_observations() == 0


def test_idempotency_key_returns_the_first_row(store):
    first, created = store.add_observation({"indicator": "joint_patrol", "date": "2025-07-01"},
                                           idempotency_key="abc")
    again, created_again = store.add_observation(
        {"indicator": "joint_patrol", "date": "2025-07-01"}, idempotency_key="abc")
    assert created and not created_again and again["id"] == first["id"]
    assert store.count_observations() == 1
    with pytest.raises(Conflict):
        store.add_observation({"indicator": "joint_patrol", "date": "2025-06-01"},
                              idempotency_key="abc")


def test_concurrent_retries_with_one_key_store_one_row(store):
    results = []

    def post():
        results.append(store.add_observation({"indicator": "joint_patrol", "date": "2025-07-01"},
                                             idempotency_key="race")[0]["id"])

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and store.count_observations() == 1


def test_retraction_keeps_the_row_and_refuses_twice(store):
    row, _ = store.add_observation({"indicator": "joint_patrol", "date": "2025-07-01"})
    retracted = store.retract(row["id"], "duplicate of an earlier report", by="ana")
    assert retracted["retracted_at"] is not None
    assert store.count_observations() == 1
    assert store.count_observations(include_retracted=False) == 0
    with pytest.raises(Conflict):
        store.retract(row["id"], "again")
    with pytest.raises(NotFound):
        store.retract(10_000, "missing")


def test_sql_evidence_equals_the_python_evidence_builder(store):
    observations, errors = read_observations_csv(SAMPLE, store.catalog(), today=TODAY)
    assert errors == []
    store.add_observations(observations)
    retracted, _ = store.add_observation({"indicator": "satellite_cueing", "date": "2024-05-01"})
    store.retract(retracted["id"], "wrong")
    for scenario_set in store.list_sets():
        for as_of in (date(2019, 8, 15), TODAY):
            from_sql = store.evidence(scenario_set, as_of)
            from_rows = set_evidence(scenario_set, observations, as_of, grades=store.grades)
            assert from_sql.hash() == from_rows.hash()
            np.testing.assert_allclose(from_sql.counts, from_rows.counts)
            np.testing.assert_allclose(from_sql.exposure, from_rows.exposure)


def test_evidence_counts_current_period_exposure(store):
    scenario_set = store.get_set("sino-russian-convergence")
    store.add_observation({"indicator": "joint_exercise", "date": "2025-11-03", "grade": "A1"})
    evidence = store.evidence(scenario_set, date(2025, 11, 15))
    col = evidence.column("joint_exercise")
    assert evidence.counts[-1, col] == 1.0
    assert evidence.exposure[-1, col] == pytest.approx(46 / 92)  # Oct 1 .. Nov 15 of 92 days
    assert evidence.counts[:-1, col].sum() == 0 and evidence.exposure[:-1, col].min() == 1.0


def test_lease_is_exclusive_until_it_expires(store):
    clock = store.test_clock
    assert store.acquire_lease("world-order-2035", "a", None, 60)
    assert not store.acquire_lease("world-order-2035", "b", None, 60)
    assert store.acquire_lease("world-order-2035", "a", None, 60)  # re-entrant for its owner
    clock.now += timedelta(seconds=61)
    assert store.acquire_lease("world-order-2035", "b", None, 60)  # taken over after expiry
    assert not store.renew_lease("world-order-2035", "a", 60)
    store.release_lease("world-order-2035", "a")  # not a's any more: no effect
    assert store.lease("world-order-2035").owner == "b"
    store.release_lease("world-order-2035", "b")
    assert store.lease("world-order-2035") is None


def test_only_one_contender_wins_a_free_lease(store):
    winners = []
    barrier = threading.Barrier(8)

    def contend(owner):
        barrier.wait()
        if store.acquire_lease("sino-russian-convergence", owner, None, 60):
            winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_keys_store_only_a_hash(store):
    secret = store.create_key("analyst", name="ana")
    key = store.verify_key(secret)
    assert key.role == "analyst" and key.name == "ana"
    assert store.verify_key(secret + "x") is None
    with store.Session() as session:
        from service.db import ApiKeyRow
        stored = session.query(ApiKeyRow).one()
    assert secret not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    with pytest.raises(BadRequest):
        store.create_key("root")
