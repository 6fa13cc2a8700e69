"""Two real API replicas on one SQLite file: revocation, expiry and rate limits hold on both.

A key revoked through replica A (``DELETE /v1/keys/{id}``) and a key past its expiry
(``signpost keys create --expires 5s``) are refused by both replicas within 2 s, with the
API's 401 (``invalid_key``, field Authorization). With ``redis://`` storage, writes through
both replicas draw on one budget: the write after the limit is 429 with ``Retry-After`` on
either replica, and stores nothing. The audit log records the writes with the replica's view
of the client address.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import select
from typer.testing import CliRunner

from service.cli import app as cli_app
from service.db import ApiKeyRow, Database, aware
from service.repositories.audit import list_audit
from service.repositories.keys import create_key, verify_key
from service.repositories.observations import count_observations
from service.repositories.sets import load_bundled_sets
from tests.service.support import bearer

from .conftest import ServerProcess

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/0"
WRITES = 4  # SIGNPOST_RATE_LIMIT_WRITES per minute, shared by the two replicas
DEADLINE = 2.0  # seconds within which every replica refuses a revoked or expired key
GOOD = {"indicator": "joint_exercise", "date": "2025-06-01", "grade": "B2", "source": "e2e"}


def _redis_reason() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return None
    except redis.RedisError as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"


REDIS_SKIP = _redis_reason()


@dataclass
class Replicas:
    a: httpx.Client
    b: httpx.Client
    servers: tuple[ServerProcess, ServerProcess]
    store: Database
    url: str
    var_dir: Path
    admin: dict[str, str]



@pytest.fixture(scope="module")
def replicas(tmp_path_factory, serve_module) -> Iterator[Replicas]:
    var_dir = tmp_path_factory.mktemp("replicas")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    store = Database(url)
    store.migrate()
    load_bundled_sets(store)
    admin = bearer(create_key(store, role="admin", name="ops"))
    env = {"SIGNPOST_DATABASE_URL": url, "SIGNPOST_SCHEDULER": "false",
           "SIGNPOST_WORKER": "inline", "SIGNPOST_REQUIRE_READ_KEY": "true",
           "SIGNPOST_TODAY": "2025-12-31", "SIGNPOST_RATE_LIMIT_WRITES": f"{WRITES}/minute",
           "SIGNPOST_RATE_LIMIT_STORAGE": "memory://" if REDIS_SKIP else REDIS_URL}
    servers = []
    for name in ("a", "b"):
        replica_dir = var_dir / name
        replica_dir.mkdir()
        servers.append(serve_module(replica_dir, env))
    for server in servers:
        server.wait_until("/readyz")
    with httpx.Client(base_url=servers[0].base_url, timeout=10) as a, \
            httpx.Client(base_url=servers[1].base_url, timeout=10) as b:
        yield Replicas(a, b, tuple(servers), store, url, var_dir, admin)
    store.dispose()


def refused_within(client: httpx.Client, headers: dict[str, str], deadline: float) -> float:
    """Poll an authenticated read until it is 401; the seconds that took (fail past deadline)."""
    started = time.monotonic()
    while True:
        response = client.get("/v1/sets", headers=headers)
        if response.status_code == 401:
            body = response.json()["error"]
            assert (body["code"], body["field"]) == ("invalid_key", "Authorization"), body
            return time.monotonic() - started
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < deadline, f"still accepted after {deadline} s"
        time.sleep(0.05)


def test_a_key_revoked_through_one_replica_is_refused_by_the_other(replicas):
    secret = create_key(replicas.store, role="reader", name="leaver")
    key_id = verify_key(replicas.store, secret=secret).id
    for client in (replicas.a, replicas.b):
        assert client.get("/v1/sets", headers=bearer(secret)).status_code == 200
    response = replicas.a.delete(f"/v1/keys/{key_id}", headers=replicas.admin)
    assert response.status_code == 200 and response.json()["state"] == "revoked"
    assert refused_within(replicas.b, bearer(secret), DEADLINE) < DEADLINE
    assert refused_within(replicas.a, bearer(secret), DEADLINE) < DEADLINE
    # the revocation is audited with the admin key and the address replica A saw
    entry = list_audit(replicas.store, action="key.revoke", target=f"key:{key_id}")[0][0]
    assert (entry.actor, entry.client) == ("ops", "127.0.0.1")


def test_an_expired_key_is_refused_by_both_replicas(replicas):
    result = CliRunner().invoke(
        cli_app, ["keys", "create", "--role", "reader", "--name", "temp", "--expires", "5s"],
        env={"SIGNPOST_DATABASE_URL": replicas.url, "SIGNPOST_VAR_DIR": str(replicas.var_dir)})
    assert result.exit_code == 0, (result.stderr, result.exception)
    secret = result.stdout.splitlines()[-1]
    with replicas.store.Session() as session:
        expires = aware(session.scalars(select(ApiKeyRow).where(ApiKeyRow.name == "temp"))
                        .one().expires_at)
    for client in (replicas.a, replicas.b):  # accepted while it is valid
        assert client.get("/v1/sets", headers=bearer(secret)).status_code == 200
    remaining = (expires - datetime.now(UTC)).total_seconds()
    assert 0 < remaining <= 5
    for client in (replicas.b, replicas.a):
        refused_within(client, bearer(secret), max(0.0, remaining) + DEADLINE)
    assert datetime.now(UTC) >= expires


@pytest.mark.skipif(REDIS_SKIP is not None, reason=REDIS_SKIP or "")
def test_writes_through_both_replicas_share_one_budget(replicas):
    writer = bearer(create_key(replicas.store, role="analyst", name="busy"))
    before = count_observations(replicas.store)
    for i in range(WRITES):
        client = (replicas.a, replicas.b)[i % 2]
        response = client.post("/v1/observations", json={**GOOD, "date": f"2025-06-0{i + 1}"},
                               headers=writer)
        assert response.status_code == 201, response.text
    for client in (replicas.a, replicas.b):
        over = client.post("/v1/observations", json={**GOOD, "date": "2025-06-09"},
                           headers=writer)
        assert over.status_code == 429, over.text
        assert over.json()["error"] == {"code": "rate_limited", "field": None,
                                        "message": over.json()["error"]["message"]}
        assert 1 <= int(over.headers["retry-after"]) <= 60
    assert count_observations(replicas.store) == before + WRITES
    # another key's budget is its own, on either replica
    other = bearer(create_key(replicas.store, role="analyst", name="calm"))
    assert replicas.b.post("/v1/observations", json=GOOD, headers=other).status_code == 201
    audited = list_audit(replicas.store, actor="busy", action="observation.create")[0]
    assert len(audited) == WRITES and {e.client for e in audited} == {"127.0.0.1"}
