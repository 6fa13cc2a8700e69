"""The store on SQLite and on PostgreSQL: append-only observations, SQL evidence, leases."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import column as sql_column
from sqlalchemy import event, inspect, select, text
from sqlalchemy import table as sql_table

import indicators
from forecast import set_evidence
from indicators import Review, read_observations_csv
from service import migrate
from service.db import Database, ObservationMonthRow, ObservationRow
from service.errors import BadRequest, Conflict, NotFound
from service.repositories.evidence import evidence_of
from service.repositories.fits import acquire_lease, get_lease, release_lease, renew_lease
from service.repositories.keys import create_key, verify_key
from service.repositories.observations import (
    add_observation,
    add_observations,
    count_observations,
    list_observations,
    month_index,
    observation_row,
    retract_observation,
    validate_observation,
)
from service.repositories.sets import get_catalog, get_set, list_sets, load_bundled_sets
from service.reviews import add_review, retract_review

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
    s = Database(db_url, clock=clock, today=TODAY)
    s.migrate()
    load_bundled_sets(s)
    s.test_clock = clock
    yield s
    s.dispose()


def test_migrations_are_current_and_idempotent(store):
    assert store.ping() and store.migrations_current()
    store.migrate()  # a second run is a no-op
    assert store.migrations_current()


def test_observation_is_committed_and_readable_from_another_connection(store, db_url):
    row, created = add_observation(store, data={"indicator": "joint_exercise",
                                                "date": "2025-08-01", "grade": "A1",
                                                "source": "MoD"}, analyst="ana")
    assert created and row.weight == 1.0 and row.analyst == "ana"
    other = Database(db_url, today=TODAY)
    items, total = list_observations(other)
    assert total == 1 and items[0].id == row.id
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
        add_observation(store, data=data)
    assert info.value.field == field
    assert count_observations(store) == 0


def test_idempotency_key_returns_the_first_row(store):
    data = {"indicator": "joint_patrol", "date": "2025-07-01"}
    first, created = add_observation(store, data=data, idempotency_key="abc")
    again, created_again = add_observation(store, data=data, idempotency_key="abc")
    assert created and not created_again and again.id == first.id
    assert count_observations(store) == 1
    with pytest.raises(Conflict):
        add_observation(store, data={"indicator": "joint_patrol", "date": "2025-06-01"},
                        idempotency_key="abc")


def test_concurrent_retries_with_one_key_store_one_row(store):
    results = []

    def post():
        row, _ = add_observation(store, data={"indicator": "joint_patrol", "date": "2025-07-01"},
                                 idempotency_key="race")
        results.append(row.id)

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and count_observations(store) == 1


def test_retraction_keeps_the_row_and_refuses_twice(store):
    row, _ = add_observation(store, data={"indicator": "joint_patrol", "date": "2025-07-01"})
    retracted = retract_observation(store, observation_id=row.id,
                                    reason="duplicate of an earlier report", by="ana")
    assert retracted.retracted_at is not None
    assert count_observations(store) == 1
    assert count_observations(store, include_retracted=False) == 0
    with pytest.raises(Conflict):
        retract_observation(store, observation_id=row.id, reason="again")
    with pytest.raises(NotFound):
        retract_observation(store, observation_id=10_000, reason="missing")


def test_sql_evidence_equals_the_python_evidence_builder(store):
    """Without a review, with one, and with the review retracted; dates inside a month."""
    observations, errors = read_observations_csv(SAMPLE, get_catalog(store), today=TODAY)
    assert errors == []
    add_observations(store, observations=observations)
    retracted, _ = add_observation(store, data={"indicator": "satellite_cueing",
                                                "date": "2024-05-01"})
    retract_observation(store, observation_id=retracted.id, reason="wrong")

    def check(reviews):
        for scenario_set in list_sets(store):
            for as_of in (date(2019, 8, 15), date(2024, 11, 17), TODAY):
                from_sql = evidence_of(store, scenario_set=scenario_set, as_of=as_of)
                from_rows = set_evidence(scenario_set, observations, as_of, grades=store.grades,
                                         reviews=reviews)
                assert from_sql.coverage == from_rows.coverage
                assert from_sql.hash() == from_rows.hash()
                np.testing.assert_allclose(from_sql.counts, from_rows.counts)
                np.testing.assert_allclose(from_sql.exposure, from_rows.exposure)

    check([])  # each indicator covered through the set's newest entry
    ids = ("joint_exercise", "satellite_cueing")
    stored, _ = add_review(store, {"indicators": list(ids), "through": "2024-11-20"})
    check([Review(date(2024, 11, 20), ids)])
    retract_review(store, stored["id"], "read the wrong archive")
    check([])


def test_evidence_counts_current_period_exposure(store):
    scenario_set = get_set(store, set_id="sino-russian-convergence")
    add_review(store, {"set_id": scenario_set.id, "through": "2025-11-15"})
    add_observation(store, data={"indicator": "joint_exercise", "date": "2025-11-03",
                                 "grade": "A1"})
    evidence = evidence_of(store, scenario_set=scenario_set, as_of=date(2025, 11, 15))
    col = evidence.column("joint_exercise")
    assert evidence.counts[-1, col] == 1.0
    assert evidence.exposure[-1, col] == pytest.approx(46 / 92)  # Oct 1 .. Nov 15 of 92 days
    assert evidence.counts[:-1, col].sum() == 0 and evidence.exposure[:-1, col].min() == 1.0


# Rows of November 2025 on both sides of the 15th (and a December one), posted out of date
# order so the upsert has to keep the larger max_date.
NOVEMBER = [
    {"indicator": "joint_exercise", "date": "2025-11-20", "grade": "B2"},
    {"indicator": "joint_exercise", "date": "2025-11-03", "grade": "A1"},
    {"indicator": "joint_patrol", "date": "2025-11-05", "grade": "A1"},
    {"indicator": "satellite_cueing", "date": "2025-11-25"},
    {"indicator": "joint_patrol", "date": "2025-10-12", "grade": "C3"},
    {"indicator": "joint_exercise", "date": "2025-12-02", "grade": "A1"},
]
NOVEMBER_AS_OF = [date(2025, 10, 31), date(2025, 11, 2), date(2025, 11, 3), date(2025, 11, 15),
                  date(2025, 11, 19), date(2025, 11, 20), date(2025, 11, 25), date(2025, 11, 30),
                  date(2025, 12, 2), TODAY]


def _raw_reads(store):
    """Statements run on ``store`` that read the raw ``observations`` table."""
    seen = []

    def record(_conn, _cursor, statement, *_args):  # noqa: ANN001
        if "observations" in statement:
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    return seen


def _max_date(store, indicator, day):
    with store.Session() as session:
        cell = session.get(ObservationMonthRow, (indicator, month_index(day), 0))
        return None if cell is None else cell.max_date


def _assert_evidence_equal(from_sql, from_rows):
    assert from_sql.hash() == from_rows.hash()
    np.testing.assert_allclose(from_sql.counts, from_rows.counts)
    np.testing.assert_allclose(from_sql.exposure, from_rows.exposure)
    np.testing.assert_allclose(from_sql.sumsq, from_rows.sumsq)


def test_mid_month_evidence_reads_raw_rows_only_for_cells_with_later_rows(store):
    store.coverage_rule = "as_of"  # every cell is cut at as_of itself
    scenario_set = get_set(store, set_id="sino-russian-convergence")
    observations = [validate_observation(store, data=data) for data in NOVEMBER]
    for data in NOVEMBER[:4]:  # one by one: each upsert meets the cell the last one made
        add_observation(store, data=data)
    add_observations(store, observations=observations[4:])
    assert _max_date(store, "joint_exercise", date(2025, 11, 1)) == date(2025, 11, 20)
    assert _max_date(store, "joint_patrol", date(2025, 11, 1)) == date(2025, 11, 5)
    raw = _raw_reads(store)
    for as_of in NOVEMBER_AS_OF:
        raw.clear()
        from_sql = evidence_of(store, scenario_set=scenario_set, as_of=as_of)
        _assert_evidence_equal(from_sql, set_evidence(scenario_set, observations, as_of,
                                                      grades=store.grades, reviews=[],
                                                      rule="as_of"))
        # raw rows only while some cell of the month holding as_of has rows after it (a
        # cell whose latest row is on as_of itself is complete)
        late = as_of in (date(2025, 11, 2), date(2025, 11, 3), date(2025, 11, 15),
                         date(2025, 11, 19), date(2025, 11, 20))
        assert bool(raw) == late, (as_of, raw)
    mid = evidence_of(store, scenario_set=scenario_set, as_of=date(2025, 11, 15))
    exercise, cueing = mid.column("joint_exercise"), mid.column("satellite_cueing")
    assert mid.counts[-1, exercise] == 1.0  # the A1 row of the 3rd, not the B2 of the 20th
    assert mid.counts[-1, cueing] == 0.0
    end = evidence_of(store, scenario_set=scenario_set, as_of=date(2025, 11, 30))
    assert end.counts[-1, exercise] == pytest.approx(1 + 0.85 * 0.85)
    assert end.counts[-1, cueing] == pytest.approx(0.85 * 0.85)


def test_retracting_the_latest_row_of_a_month_lowers_max_date(store):
    store.coverage_rule = "as_of"
    scenario_set = get_set(store, set_id="sino-russian-convergence")
    rows = [add_observation(store, data=data)[0] for data in NOVEMBER]
    latest = next(r for r in rows if r.date == date(2025, 11, 20))
    retract_observation(store, observation_id=latest.id, reason="duplicate")
    assert _max_date(store, "joint_exercise", date(2025, 11, 1)) == date(2025, 11, 3)
    live = [validate_observation(store, data=data) for data in NOVEMBER
            if data["date"] != "2025-11-20"]
    raw = _raw_reads(store)
    for as_of in NOVEMBER_AS_OF:
        _assert_evidence_equal(evidence_of(store, scenario_set=scenario_set, as_of=as_of),
                               set_evidence(scenario_set, live, as_of, grades=store.grades,
                                            reviews=[], rule="as_of"))
    raw.clear()
    # only satellite_cueing (25th) is later
    evidence_of(store, scenario_set=scenario_set, as_of=date(2025, 11, 19))
    assert len(raw) == 1
    # retracting a month's only row removes its cell
    only = next(r for r in rows if r.indicator == "satellite_cueing")
    retract_observation(store, observation_id=only.id, reason="wrong")
    assert _max_date(store, "satellite_cueing", date(2025, 11, 1)) is None
    live = [obs for obs in live if obs.indicator != "satellite_cueing"]
    raw.clear()
    from_sql = evidence_of(store, scenario_set=scenario_set, as_of=date(2025, 11, 15))
    assert raw == []
    _assert_evidence_equal(from_sql, set_evidence(scenario_set, live, date(2025, 11, 15),
                                                  grades=store.grades, reviews=[],
                                                  rule="as_of"))


def _migrate_to(store, revision, down=False):
    config = migrate.alembic_config(store.engine.url.render_as_string(hide_password=False))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def _insert_legacy(store, rows):
    """Insert observation rows as a database before 0005 holds them (no stratum column)."""
    columns = [c.name for c in ObservationRow.__table__.columns if c.name not in ("id",
                                                                                  "stratum")]
    types = ObservationRow.__table__.c
    legacy = sql_table("observations", *(sql_column(c, types[c].type) for c in columns))
    with store.engine.begin() as connection:
        connection.execute(legacy.insert(), [{c: getattr(r, c) for c in columns} for r in rows])


def _month_columns(store):
    return {c["name"] for c in inspect(store.engine).get_columns("observation_months")}


def test_migration_0003_backfills_max_date_from_live_rows(db_url):
    clock = Clock()
    store = Database(db_url, clock=clock, today=TODAY)
    _migrate_to(store, "0001")
    observations = [validate_observation(store, data=data) for data in NOVEMBER]
    retracted = observation_row(store, observation=validate_observation(
        store, data={"indicator": "joint_patrol", "date": "2025-11-28"}))
    retracted.retracted_at, retracted.retraction_reason = clock(), "wrong"
    _insert_legacy(store, [observation_row(store, observation=obs) for obs in observations]
                   + [retracted])  # rows stored before the monthly statistics
    _migrate_to(store, "0002")  # 0002 backfills the monthly statistics
    assert migrate.current_revision(store.engine) == "0002"
    assert "max_date" not in _month_columns(store)
    store.migrate()
    assert store.migrations_current() and "max_date" in _month_columns(store)
    assert not next(c for c in inspect(store.engine).get_columns("observation_months")
                    if c["name"] == "max_date")["nullable"]
    assert _max_date(store, "joint_exercise", date(2025, 11, 1)) == date(2025, 11, 20)
    assert _max_date(store, "joint_patrol", date(2025, 11, 1)) == date(2025, 11, 5)  # not 28
    assert _max_date(store, "joint_patrol", date(2025, 10, 1)) == date(2025, 10, 12)
    assert _max_date(store, "joint_exercise", date(2025, 12, 1)) == date(2025, 12, 2)
    load_bundled_sets(store)
    scenario_set = get_set(store, set_id="sino-russian-convergence")
    for as_of in NOVEMBER_AS_OF:
        _assert_evidence_equal(evidence_of(store, scenario_set=scenario_set, as_of=as_of),
                               set_evidence(scenario_set, observations, as_of,
                                            grades=store.grades, reviews=[]))
    # and back down: the column goes, the statistics stay
    _migrate_to(store, "0002", down=True)
    assert "max_date" not in _month_columns(store)
    with store.engine.connect() as connection:
        kept = connection.execute(text("SELECT SUM(n_obs) FROM observation_months")).scalar()
    assert kept == len(NOVEMBER)
    store.dispose()


def test_migration_0005_keeps_todays_cells_as_stratum_0_and_levels_get_their_own(db_url):
    """A database of today (0004, with observations and their monthly statistics) migrates to
    strata with its evidence unchanged; a level's observations then get one cell per level."""
    clock = Clock()
    store = Database(db_url, clock=clock, today=TODAY)
    _migrate_to(store, "0004")
    load_bundled_sets(store)
    observations = [validate_observation(store, data=data) for data in NOVEMBER]
    legacy = [observation_row(store, observation=obs) for obs in observations]
    _insert_legacy(store, legacy)
    with store.engine.begin() as connection:  # the monthly cells 0004 kept for them
        connection.execute(text(
            "INSERT INTO observation_months (indicator, month_index, n_obs, sum_w, sum_wv, "
            "sum_wvv, max_w, max_date) SELECT indicator, month_index, COUNT(*), SUM(weight), "
            "SUM(weight * value), SUM(weight * value * value), MAX(weight), MAX(date) "
            "FROM observations GROUP BY indicator, month_index"))
    store.migrate()
    assert store.migrations_current() and "stratum" in _month_columns(store)
    convergence = get_set(store, set_id="sino-russian-convergence")
    for as_of in NOVEMBER_AS_OF:  # the kept cells give the evidence of the rows themselves
        _assert_evidence_equal(evidence_of(store, scenario_set=convergence, as_of=as_of),
                               set_evidence(convergence, observations, as_of,
                                            grades=store.grades, reviews=[]))
    # a level observation now keeps its own cell per level
    world = get_set(store, set_id="world-order-2035")
    for value, grade in (("partly_lifted", "A1"), ("in_place", "B2"), ("partly_lifted", "C3")):
        add_observation(store, data={"indicator": "sanctions_on_russia", "date": "2025-11-10",
                                     "value": value, "grade": grade})
    with store.Session() as session:
        cells = session.scalars(select(ObservationMonthRow).where(
            ObservationMonthRow.indicator == "sanctions_on_russia")).all()
    assert sorted((c.stratum, c.n_obs) for c in cells) == [(0, 1), (1, 2)]
    evidence = evidence_of(store, scenario_set=world, as_of=TODAY)
    col = evidence.column("sanctions_on_russia")
    weights = store.grades.weight
    np.testing.assert_allclose(evidence.tallies[:, col].sum(axis=0),
                               [weights("B2"), weights("A1") + weights("C3"), 0.0])
    store.dispose()


def test_lease_is_exclusive_until_it_expires(store):
    clock = store.test_clock
    assert acquire_lease(store, set_id="world-order-2035", owner="a", fit_id=None, seconds=60)
    assert not acquire_lease(store, set_id="world-order-2035", owner="b", fit_id=None, seconds=60)
    assert acquire_lease(store, set_id="world-order-2035", owner="a", fit_id=None,
                         seconds=60)  # re-entrant for its owner
    clock.now += timedelta(seconds=61)
    assert acquire_lease(store, set_id="world-order-2035", owner="b", fit_id=None,
                         seconds=60)  # taken over after expiry
    assert not renew_lease(store, set_id="world-order-2035", owner="a", seconds=60)
    release_lease(store, set_id="world-order-2035", owner="a")  # not a's any more: no effect
    assert get_lease(store, set_id="world-order-2035").owner == "b"
    release_lease(store, set_id="world-order-2035", owner="b")
    assert get_lease(store, set_id="world-order-2035") is None


def test_only_one_contender_wins_a_free_lease(store):
    winners = []
    barrier = threading.Barrier(8)

    def contend(owner):
        barrier.wait()
        if acquire_lease(store, set_id="sino-russian-convergence", owner=owner, fit_id=None,
                         seconds=60):
            winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_keys_store_only_a_hash(store):
    secret = create_key(store, role="analyst", name="ana")
    key = verify_key(store, secret=secret)
    assert key.role == "analyst" and key.name == "ana"
    assert verify_key(store, secret=secret + "x") is None
    with store.Session() as session:
        from service.db import ApiKeyRow
        stored = session.query(ApiKeyRow).one()
    assert secret not in (stored.key_hash, stored.prefix) and len(stored.key_hash) == 64
    with pytest.raises(BadRequest):
        create_key(store, role="root")
