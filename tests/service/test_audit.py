"""The audit log: one entry per write of each kind, who (key name and id, or cli:<user>),
when, what and from where; ``GET /v1/audit`` (admin, filtered, paged) and ``signpost audit``.

Append-only: no route updates or deletes an entry, and the database refuses both (SQLite and
PostgreSQL triggers, migration 0008), which also matches the models exactly.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError
from typer.testing import CliRunner

from service import migrate
from service.audit import ACTIONS, Actor
from service.cli import app as cli_app
from service.db import AuditRow, Base, Database
from service.repositories.audit import record_now
from service.repositories.keys import create_key, verify_key
from service.repositories.sets import load_bundled_sets
from service.settings import get_settings
from tests.service.test_api import GOOD, WORLD, TestClient, bearer, error, make_settings
from tests.service.test_scores import _touches

CUSTOM_SET = """\
id: drills-only
title: Drills only
question: Are joint drills frequent?
period: quarter
start: 2020-01-01
scenarios:
  - {id: calm, name: Calm, prior: 0.7}
  - {id: busy, name: Busy, prior: 0.3}
indicators:
  joint_exercise:
    calm: {rate: 1.0, sd: 0.5}
    busy: {rate: 3.0, sd: 1.0}
"""
RULE = {"set_id": WORLD, "webhook_url": "http://93.184.216.34/hook",
        "secret": "a-secret-of-some-length", "scenario": "multipolar", "above": 0.999}


@dataclass
class Api:
    client: TestClient
    store: Database
    var_dir: Path
    admin: dict[str, str]
    analyst: dict[str, str]
    reader: dict[str, str]
    ids: dict[str, int]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    var_dir = tmp_path_factory.mktemp("audit")
    from service.api import create_app

    app = create_app(make_settings(var_dir, f"sqlite:///{var_dir / 'signpost.db'}"))
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        secrets = {name: create_key(store, role=role, name=name)
                   for name, role in (("ada", "admin"), ("ana", "analyst"), ("rex", "reader"))}
        yield Api(client, store, var_dir, bearer(secrets["ada"]), bearer(secrets["ana"]),
                  bearer(secrets["rex"]),
                  ids={name: verify_key(store, secret=s).id for name, s in secrets.items()})


def entries(api: Api, **params) -> list[dict]:
    response = api.client.get("/v1/audit", params={"limit": 1000, **params}, headers=api.admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def count(store: Database) -> int:
    with store.Session() as session:
        return int(session.scalar(select(func.count(AuditRow.id))))


@pytest.fixture(scope="module")
def written(api: Api, tmp_path_factory) -> dict[str, dict]:
    """One write of every kind: through the API (keys ana and ada) and the CLI."""
    tag = {"X-Request-ID": "req-7"}
    obs = api.client.post("/v1/observations", json=GOOD, headers={**api.analyst, **tag})
    assert obs.status_code == 201, obs.text
    obs_id = obs.json()["id"]
    assert api.client.post(f"/v1/observations/{obs_id}/retract", json={"reason": "dup"},
                           headers=api.analyst).status_code == 200
    review = api.client.post("/v1/reviews", json={"set_id": WORLD, "through": "2025-12-31"},
                             headers=api.analyst)
    assert review.status_code == 201, review.text
    review_id = review.json()["id"]
    assert api.client.post(f"/v1/reviews/{review_id}/retract", json={"reason": "wrong"},
                           headers=api.analyst).status_code == 200
    fit = api.client.post("/v1/fits", json={"set_id": WORLD}, headers=api.admin)
    assert fit.status_code == 202, fit.text
    rule = api.client.post("/v1/alert-rules", json=RULE, headers=api.analyst)
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]
    assert api.client.delete(f"/v1/alert-rules/{rule_id}", headers=api.analyst
                             ).status_code == 200
    resolved = api.client.post(f"/v1/sets/{WORLD}/resolution", headers=api.admin,
                               json={"scenario": "multipolar", "date": "2025-12-31"})
    assert resolved.status_code == 201, resolved.text
    spare = create_key(api.store, role="reader", name="spare")
    spare_id = verify_key(api.store, secret=spare).id
    rotated = api.client.post(f"/v1/keys/{spare_id}/rotate", headers=api.admin)
    assert rotated.status_code == 201, rotated.text
    new_id = rotated.json()["key"]["id"]
    assert api.client.delete(f"/v1/keys/{new_id}", headers=api.admin).status_code == 200

    # the command line: a set loaded and a key created, by cli:<user>
    env = {"SIGNPOST_VAR_DIR": str(api.var_dir),
           "SIGNPOST_DATABASE_URL": f"sqlite:///{api.var_dir / 'signpost.db'}"}
    set_file = tmp_path_factory.mktemp("audit-cli") / "drills.yaml"
    set_file.write_text(CUSTOM_SET)
    runner = CliRunner()
    for args in (["sets", "load", str(set_file)],
                 ["keys", "create", "--role", "analyst", "--name", "cleo"]):
        result = runner.invoke(cli_app, args, env=env)
        assert result.exit_code == 0, (args, result.stderr, result.exception)
    get_settings.cache_clear()
    return {
        "observation.create": {"actor": "ana", "target": f"observation:{obs_id}"},
        "observation.retract": {"actor": "ana", "target": f"observation:{obs_id}"},
        "review.create": {"actor": "ana", "target": f"review:{review_id}"},
        "review.retract": {"actor": "ana", "target": f"review:{review_id}"},
        "fit.request": {"actor": "ada", "target": f"fit:{fit.json()['fit_id']}"},
        "alert_rule.create": {"actor": "ana", "target": f"alert_rule:{rule_id}"},
        "alert_rule.delete": {"actor": "ana", "target": f"alert_rule:{rule_id}"},
        "set.resolve": {"actor": "ada", "target": f"set:{WORLD}"},
        "key.rotate": {"actor": "ada", "target": f"key:{spare_id}"},
        "key.revoke": {"actor": "ada", "target": f"key:{new_id}"},
        "set.load": {"actor": f"cli:{getpass.getuser()}", "target": "set:drills-only"},
        "key.create": {"actor": f"cli:{getpass.getuser()}", "target": None},
    }


def test_every_kind_of_write_is_audited_once_with_who_and_where(api, written):
    assert set(written) == set(ACTIONS)
    log = entries(api)
    by_action: dict[str, list[dict]] = {}
    for entry in log:
        by_action.setdefault(entry["action"], []).append(entry)
    assert set(by_action) == set(ACTIONS)
    for action, expected in written.items():
        assert len(by_action[action]) == 1, (action, by_action[action])
        entry = by_action[action][0]
        assert entry["actor"] == expected["actor"], entry
        if expected["target"] is not None:
            assert entry["target"] == expected["target"], entry
        if expected["actor"] in api.ids:  # through the API: the key and the client address
            assert entry["actor_key_id"] == api.ids[expected["actor"]], entry
            assert entry["client"] == "testclient", entry
        else:
            assert entry["actor_key_id"] is None and entry["client"], entry
        assert abs(datetime.fromisoformat(entry["at"]) - datetime.now(UTC)) < timedelta(
            minutes=5)
    assert by_action["observation.create"][0]["request_id"] == "req-7"
    assert by_action["observation.create"][0]["detail"]["indicator"] == GOOD["indicator"]
    assert by_action["observation.retract"][0]["detail"]["reason"] == "dup"
    assert by_action["key.rotate"][0]["detail"]["new_key_id"] == int(
        written["key.revoke"]["target"].split(":")[1])
    assert by_action["set.load"][0]["detail"]["title"] == "Drills only"
    assert by_action["key.create"][0]["detail"]["name"] == "cleo"
    # newest first, and no secret anywhere
    assert [e["id"] for e in log] == sorted((e["id"] for e in log), reverse=True)
    dumped = json.dumps(log)  # no secret anywhere, nor the webhook URL (it may hold a token)
    assert RULE["secret"] not in dumped and RULE["webhook_url"] not in dumped
    assert "key_hash" not in dumped and not re.search(r"sp_[\w-]{11,}", dumped)  # prefixes only


def test_refused_and_replayed_writes_are_not_audited(api, written):
    before = count(api.store)
    bad = api.client.post("/v1/observations", json={**GOOD, "value": -1}, headers=api.analyst)
    assert error(bad)[0] == 422
    key = {**api.analyst, "Idempotency-Key": "audit-once"}
    assert api.client.post("/v1/observations", json=GOOD, headers=key).status_code == 201
    assert api.client.post("/v1/observations", json=GOOD, headers=key).status_code == 200
    assert count(api.store) == before + 1


def test_filters_and_pages(api, written):
    assert {e["actor"] for e in entries(api, actor="ana")} == {"ana"}
    assert {e["action"] for e in entries(api, action="review")} == {"review.create",
                                                                     "review.retract"}
    assert [e["action"] for e in entries(api, action="key.revoke")] == ["key.revoke"]
    target = written["observation.retract"]["target"]
    assert {e["action"] for e in entries(api, target=target)} == {"observation.create",
                                                                   "observation.retract"}
    assert entries(api, since="2999-01-01") == []
    assert entries(api, until="2000-01-01T00:00:00Z") == []
    total = len(entries(api))
    assert len(entries(api, since=(datetime.now(UTC) - timedelta(hours=1)).isoformat())) == total
    first = api.client.get("/v1/audit", params={"limit": 2}, headers=api.admin).json()
    assert len(first["items"]) == 2 and first["total"] == total
    second = api.client.get(first["next"], headers=api.admin).json()
    assert [e["id"] for e in second["items"]] == [e["id"] for e in entries(api)[2:4]]
    assert error(api.client.get("/v1/audit", params={"action": "key.delete"},
                                headers=api.admin)) == (422, "invalid", "action")
    assert error(api.client.get("/v1/audit", params={"since": "2025-02-01",
                                                     "until": "2025-01-01"},
                                headers=api.admin)) == (422, "invalid", "until")
    assert error(api.client.get("/v1/audit", params={"limit": 5000},
                                headers=api.admin))[0::2] == (422, "limit")


def test_only_admins_read_the_audit_log(api, written):
    assert error(api.client.get("/v1/audit", headers=api.analyst)) == (403, "forbidden", None)
    assert error(api.client.get("/v1/audit", headers=api.reader)) == (403, "forbidden", None)
    assert error(api.client.get("/v1/audit"))[0] == 401


def test_no_route_updates_or_deletes_an_entry(api, written):
    spec = api.client.get("/openapi.json").json()
    assert {path: set(ops) for path, ops in spec["paths"].items()
            if path.startswith("/v1/audit")} == {"/v1/audit": {"get"}}
    entry_id = entries(api)[0]["id"]
    for method in ("DELETE", "PUT", "PATCH"):
        for path in ("/v1/audit", f"/v1/audit/{entry_id}"):
            response = api.client.request(method, path, headers=api.admin)
            assert response.status_code in (404, 405), (method, path, response.status_code)
    assert entries(api)[0]["id"] == entry_id


def test_signpost_audit_prints_and_filters_the_log(api, written):
    env = {"SIGNPOST_VAR_DIR": str(api.var_dir),
           "SIGNPOST_DATABASE_URL": f"sqlite:///{api.var_dir / 'signpost.db'}"}
    runner = CliRunner()
    result = runner.invoke(cli_app, ["audit", "--action", "key", "--json"], env=env)
    assert result.exit_code == 0, result.stderr
    assert {e["action"] for e in json.loads(result.stdout)["items"]} == {
        "key.create", "key.rotate", "key.revoke"}
    result = runner.invoke(cli_app, ["audit", "--actor", "ana", "--limit", "1"], env=env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count(" ana from testclient: ") == 1 and "of" in result.stdout
    bad = runner.invoke(cli_app, ["audit", "--action", "observation.edit"], env=env)
    assert bad.exit_code == 2 and "--action: 'observation.edit' is not recorded" in bad.stderr
    bad = runner.invoke(cli_app, ["audit", "--since", "last week"], env=env)
    assert bad.exit_code == 2 and "--since" in bad.stderr
    get_settings.cache_clear()


# -- the table: append-only, as migrated, on both databases ---------------------------------

@pytest.fixture
def migrated(db_url) -> Iterator[Database]:
    store = Database(db_url)
    store.migrate()
    yield store
    store.dispose()


def test_the_database_refuses_to_update_or_delete_an_entry(migrated):
    record_now(migrated, actor=Actor(name="ana", key_id=1, client="10.0.0.1"),
               action="observation.create", target="observation:1", detail={"value": 1})
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), migrated.engine.begin() as c:
            c.execute(text(statement))
    with migrated.Session() as session:
        rows = session.scalars(select(AuditRow)).all()
    assert [(r.actor, r.target, r.client) for r in rows] == [
        ("ana", "observation:1", "10.0.0.1")]
    if migrated.engine.dialect.name == "postgresql":
        with pytest.raises(DatabaseError, match="append-only"), migrated.engine.begin() as c:
            c.execute(text("TRUNCATE audit_log"))


def test_migration_0008_matches_the_models_and_goes_down_and_up(migrated):
    with migrated.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in differences if _touches(d) & {"api_keys", "audit_log"}] == []
    config = migrate.alembic_config(migrated.engine.url.render_as_string(hide_password=False))
    from alembic import command

    with migrated.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
    assert migrate.current_revision(migrated.engine) == "0007"
    migrated.migrate()
    assert migrated.migrations_current()
    create_key(migrated, role="reader", expires_at=datetime.now(UTC) + timedelta(days=1))


def test_an_unknown_action_is_a_programming_error(tmp_path):
    store = Database(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate()
    with pytest.raises(ValueError, match="unknown audit action"):
        record_now(store, actor=Actor(name="x"), action="observation.edit")
    store.dispose()


def test_the_cli_actor_names_the_login_and_the_host():
    actor = Actor.cli()
    assert actor.name == f"cli:{getpass.getuser()}" and actor.key_id is None
    assert actor.client == os.uname().nodename
