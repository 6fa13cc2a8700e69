"""The repositories' SQL budget: what one POST /v1/observations costs the database.

A counter on the engine (``before_cursor_execute``) sees every statement the request runs,
on SQLite and PostgreSQL. The bounds are the counts measured when the request was made
cheaper (37 statements for the first observation of two sets, 17 for one while refits are
queued, before; 25 and 10 after), so a change that adds queries fails here.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import event

from service.api import create_app
from service.repositories.fits import pending_fit
from service.repositories.keys import create_key
from service.repositories.sets import load_bundled_sets
from service.settings import Settings
from tests.service.support import TestClient

TODAY = date(2025, 12, 31)
SETS = ["sino-russian-convergence", "world-order-2035"]


@pytest.fixture
def counted(db_url, tmp_path):
    """A running app with the bundled sets, an analyst's headers, and every SQL statement."""
    settings = Settings(var_dir=tmp_path, database_url=db_url, scheduler=False,
                        worker="inline", today=TODAY.isoformat(), dynamic=False)
    app = create_app(settings)
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        headers = {"Authorization": f"Bearer {create_key(store, role='analyst', name='ana')}"}
        statements: list[str] = []
        event.listen(store.engine, "before_cursor_execute",
                     lambda _conn, _cursor, statement, *_: statements.append(statement))
        yield client, store, headers, statements


def test_post_observation_runs_a_bounded_number_of_statements(counted):
    client, store, headers, statements = counted

    def post(day: str, **extra: str) -> tuple[dict, int]:
        statements.clear()
        response = client.post("/v1/observations", headers=headers | extra,
                               json={"indicator": "joint_exercise", "date": day})
        assert response.status_code == 201, response.text
        return response.json(), len(statements)

    # the first: coverage of both sets, and a refit queued for each (evidence compared)
    first, count = post("2025-06-01")
    assert sorted(first["coverage"]) == SETS
    assert all(pending_fit(store, set_id=s) is not None for s in SETS)
    # (PostgreSQL also announces the change: pg_notify in the queued fit's transaction and in
    # one of its own, service.changes; SQLite's readers see its change counter instead); each
    # write also appends its audit entry, and a key's first use in a minute its last_used_at
    assert count <= 31, count
    # refits already queued: no evidence query, no second fit
    second, count = post("2025-07-01")
    # without reviews, coverage runs to the newest entry: this one
    assert second["coverage"] == {s: {"covered_through": "2025-07-01", "counted": True}
                                  for s in SETS}
    assert second["id"] == first["id"] + 1
    assert count <= 14, count
    # an idempotency key costs one lookup
    _, count = post("2025-07-02", **{"Idempotency-Key": "k"})
    assert count <= 15, count


@pytest.mark.parametrize("day", ["2025-06-01"])
def test_statement_counter_sees_the_requests_statements(counted, day):
    """The bound above can fail: without the counter's statements the request is not seen."""
    client, _, headers, statements = counted
    client.post("/v1/observations", headers=headers,
                json={"indicator": "joint_exercise", "date": day})
    assert sum(s.lstrip().upper().startswith("INSERT INTO OBSERVATIONS ")
               for s in statements) == 1
    assert sum(s.lstrip().upper().startswith("INSERT INTO FITS ") for s in statements) == 2
