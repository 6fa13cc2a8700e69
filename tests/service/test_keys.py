"""API keys: expiry, revocation and rotation, in the repository, the admin routes and the CLI.

A revoked or expired key is refused (401 ``invalid_key``, field Authorization) and nothing
is cached; the listing never shows a secret or a hash; ``last_used_at`` is written at most
once a minute. Across two real replicas: tests/e2e/test_keys_across_replicas.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.api import create_app
from service.cli import app as cli_app
from service.db import ApiKeyRow, Database, aware
from service.errors import BadRequest, Conflict, NotFound
from service.keys import parse_duration, parse_expiry
from service.repositories.keys import (
    create_key,
    get_key,
    resolve_key,
    revoke_key,
    rotate_key,
    verify_key,
)
from service.repositories.observations import count_observations
from service.repositories.sets import load_bundled_sets
from service.settings import get_settings
from tests.service.test_api import GOOD, TestClient, bearer, error, make_settings

NOW = datetime(2025, 12, 31, 12, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'keys.db'}", clock=Clock())
    db.migrate()
    yield db
    db.dispose()


# -- the repository ------------------------------------------------------------------------

def test_an_expired_key_is_refused_from_its_expiry_on(store):
    secret = create_key(store, role="analyst", name="temp",
                        expires_at=NOW + timedelta(hours=1))
    assert verify_key(store, secret=secret).name == "temp"
    store.clock.now = NOW + timedelta(minutes=59, seconds=59)
    assert verify_key(store, secret=secret) is not None
    store.clock.now = NOW + timedelta(hours=1)
    assert verify_key(store, secret=secret) is None
    with pytest.raises(BadRequest) as raised:
        create_key(store, role="analyst", expires_at=store.clock.now)
    assert raised.value.field == "expires"


def test_a_revoked_key_is_refused_and_revoking_twice_is_409(store):
    secret = create_key(store, role="admin", name="ada")
    key = verify_key(store, secret=secret)
    row = revoke_key(store, key_id=key.id)
    assert row.revoked and aware(row.revoked_at) == NOW
    assert verify_key(store, secret=secret) is None
    with pytest.raises(Conflict) as raised:
        revoke_key(store, key_id=key.id)
    assert raised.value.code == "already_revoked"
    with pytest.raises(NotFound):
        revoke_key(store, key_id=999)


def test_a_wrong_secret_of_the_right_shape_is_refused(store):
    secret = create_key(store, role="reader")
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert verify_key(store, secret=flipped) is None
    assert verify_key(store, secret="") is None


def test_last_used_is_written_at_most_once_a_minute(store):
    secret = create_key(store, role="reader", name="poller")
    key_id = verify_key(store, secret=secret).id
    assert aware(get_key(store, key_id=key_id).last_used_at) == NOW
    store.clock.now = NOW + timedelta(seconds=59)
    verify_key(store, secret=secret)
    assert aware(get_key(store, key_id=key_id).last_used_at) == NOW  # not written again
    store.clock.now = NOW + timedelta(seconds=61)
    verify_key(store, secret=secret)
    assert aware(get_key(store, key_id=key_id).last_used_at) == NOW + timedelta(seconds=61)


def test_rotation_without_grace_revokes_the_old_key_at_once(store):
    old_secret = create_key(store, role="analyst", name="ana",
                            expires_at=NOW + timedelta(days=30))
    old_id = verify_key(store, secret=old_secret).id
    store.clock.now = NOW + timedelta(days=10)
    new, secret, old = rotate_key(store, key_id=old_id)
    assert verify_key(store, secret=old_secret) is None and old.revoked
    fresh = verify_key(store, secret=secret)
    assert (fresh.role, fresh.name, new.rotated_from) == ("analyst", "ana", old_id)
    # the new key gets the old one's lifetime (30 days), counted from now
    assert aware(new.expires_at) == store.clock.now + timedelta(days=30)
    with pytest.raises(Conflict):
        rotate_key(store, key_id=old_id)


def test_rotation_with_grace_keeps_the_old_key_until_then(store):
    old_secret = create_key(store, role="admin", name="ops")
    old_id = verify_key(store, secret=old_secret).id
    new, secret, old = rotate_key(store, key_id=old_id, grace=timedelta(hours=1))
    assert not old.revoked and aware(old.expires_at) == NOW + timedelta(hours=1)
    assert new.expires_at is None  # the old key never expired
    store.clock.now = NOW + timedelta(minutes=30)
    assert verify_key(store, secret=old_secret) is not None
    assert verify_key(store, secret=secret) is not None
    store.clock.now = NOW + timedelta(hours=1)
    assert verify_key(store, secret=old_secret) is None
    assert verify_key(store, secret=secret) is not None


def test_a_key_is_named_by_id_name_or_prefix_and_ambiguity_lists_the_matches(store):
    first = create_key(store, role="analyst", name="ana")
    second = create_key(store, role="reader", name="ana")
    ids = [verify_key(store, secret=s).id for s in (first, second)]
    assert resolve_key(store, ref=str(ids[0])).id == ids[0]
    assert resolve_key(store, ref=second[:10]).id == ids[1]
    assert resolve_key(store, ref=second[:16]).id == ids[1]  # a longer paste of it
    with pytest.raises(BadRequest) as raised:
        resolve_key(store, ref="ana")
    assert raised.value.code == "ambiguous_key"
    assert f"id {ids[0]}" in raised.value.message and f"id {ids[1]}" in raised.value.message
    revoke_key(store, key_id=ids[0])
    assert resolve_key(store, ref="ana").id == ids[1]  # only live keys are candidates
    with pytest.raises(NotFound):
        resolve_key(store, ref="nobody")


@pytest.mark.parametrize("text, expected", [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
    ("12h", timedelta(hours=12)), ("30d", timedelta(days=30)), ("2w", timedelta(weeks=2)),
    ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC) - NOW),
    ("2026-01-01T06:00:00", datetime(2026, 1, 1, 6, tzinfo=UTC) - NOW),
    ("2026-01-01T07:00:00+01:00", datetime(2026, 1, 1, 6, tzinfo=UTC) - NOW),
])
def test_expiry_is_a_duration_or_an_iso_date_or_time(text, expected):
    assert parse_expiry(text, now=NOW) - NOW == expected


@pytest.mark.parametrize("text, says", [
    ("soon", "neither a duration"), ("0s", "no time at all"),
    ("2025-12-31", "not in the future"), ("3 fortnights", "neither a duration"),
])
def test_a_bad_expiry_is_refused_naming_the_field(text, says):
    with pytest.raises(BadRequest) as raised:
        parse_expiry(text, now=NOW)
    assert raised.value.field == "expires" and says in raised.value.message
    with pytest.raises(BadRequest) as raised:
        parse_duration("1.5h", field="grace")
    assert raised.value.field == "grace"


# -- the admin routes ----------------------------------------------------------------------

@dataclass
class Api:
    client: TestClient
    store: Database
    admin: dict[str, str]
    analyst: dict[str, str]
    secrets: list[str]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    var_dir = tmp_path_factory.mktemp("keys-api")
    app = create_app(make_settings(var_dir, f"sqlite:///{var_dir / 'signpost.db'}"))
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        admin, analyst = (create_key(store, role="admin", name="ada"),
                          create_key(store, role="analyst", name="ana"))
        yield Api(client, store, bearer(admin), bearer(analyst), [admin, analyst])


def key_id_of(api: Api, secret: str) -> int:
    return verify_key(api.store, secret=secret).id


def test_get_keys_lists_every_key_without_secrets_or_hashes(api):
    response = api.client.get("/v1/keys", headers=api.admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k["name"] for k in body["items"]} >= {"ada", "ana"} and body["next"] is None
    item = body["items"][0]
    assert set(item) == {"id", "prefix", "name", "role", "state", "created_at", "expires_at",
                         "revoked_at", "rotated_from", "last_used_at"}
    with api.store.Session() as session:
        hashes = [row.key_hash for row in session.query(ApiKeyRow)]
    assert not [s for s in api.secrets + hashes if s in response.text]
    assert error(api.client.get("/v1/keys", headers=api.analyst)) == (403, "forbidden", None)
    assert error(api.client.get("/v1/keys"))[:2] == (401, "unauthorized")


def test_delete_revokes_a_key_then_409_and_404(api):
    secret = create_key(api.store, role="analyst", name="leaver")
    key_id = key_id_of(api, secret)
    ok = api.client.post("/v1/observations", json=GOOD, headers=bearer(secret))
    assert ok.status_code == 201, ok.text
    response = api.client.delete(f"/v1/keys/{key_id}", headers=api.admin)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "revoked" and response.json()["revoked_at"]
    before = count_observations(api.store)
    refused = api.client.post("/v1/observations", json=GOOD, headers=bearer(secret))
    assert error(refused) == (401, "invalid_key", "Authorization")
    assert count_observations(api.store) == before
    again = api.client.delete(f"/v1/keys/{key_id}", headers=api.admin)
    assert error(again) == (409, "already_revoked", "key_id")
    assert error(api.client.delete("/v1/keys/999999", headers=api.admin)) == (
        404, "not_found", "key_id")
    assert error(api.client.delete(f"/v1/keys/{key_id}", headers=api.analyst))[0] == 403


def test_rotate_returns_the_new_secret_once_and_revokes_the_old_key(api):
    secret = create_key(api.store, role="analyst", name="rotor")
    key_id = key_id_of(api, secret)
    response = api.client.post(f"/v1/keys/{key_id}/rotate", headers=api.admin)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["previous"]["state"] == "revoked" and body["key"]["rotated_from"] == key_id
    assert body["secret"].startswith(body["key"]["prefix"])
    assert error(api.client.get("/v1/keys", headers=bearer(secret)))[0] == 401
    written = api.client.post("/v1/observations", json=GOOD, headers=bearer(body["secret"]))
    assert written.status_code == 201 and written.json()["analyst"] == "rotor"
    # the listing never shows the new secret again
    assert body["secret"] not in api.client.get("/v1/keys", headers=api.admin).text


def test_rotate_with_grace_keeps_the_old_key_and_refuses_a_bad_body(api):
    secret = create_key(api.store, role="analyst", name="graceful")
    key_id = key_id_of(api, secret)
    keys_before = len(api.client.get("/v1/keys", headers=api.admin).json()["items"])
    for body, field in (({"grace": "soon"}, "grace"), ({"expires": "yesterday"}, "expires"),
                        ({"grace": "1h", "colour": "red"}, "colour")):
        response = api.client.post(f"/v1/keys/{key_id}/rotate", json=body, headers=api.admin)
        assert error(response)[0::2] == (422, field), response.text
    assert len(api.client.get("/v1/keys", headers=api.admin).json()["items"]) == keys_before
    response = api.client.post(f"/v1/keys/{key_id}/rotate", json={"grace": "1h",
                                                                   "expires": "30d"},
                               headers=api.admin)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["previous"]["state"] == "active" and body["previous"]["expires_at"]
    assert api.client.post("/v1/observations", json=GOOD,
                           headers=bearer(secret)).status_code == 201
    expires = datetime.fromisoformat(body["key"]["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)


def test_a_rotation_of_an_unknown_or_revoked_key(api):
    assert error(api.client.post("/v1/keys/999999/rotate", headers=api.admin))[:1] == (404,)
    secret = create_key(api.store, role="reader", name="gone")
    key_id = key_id_of(api, secret)
    assert api.client.delete(f"/v1/keys/{key_id}", headers=api.admin).status_code == 200
    assert error(api.client.post(f"/v1/keys/{key_id}/rotate", headers=api.admin)) == (
        409, "already_revoked", "key_id")


# -- the CLI -------------------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for name in list(os.environ):
        if name.startswith("SIGNPOST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNPOST_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(cli_app, ["init"]).exit_code == 0
    yield runner
    get_settings.cache_clear()


def run(cli: CliRunner, *args: str, code: int = 0):
    result = cli.invoke(cli_app, list(args))
    assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
    return result


def test_keys_list_revoke_rotate_and_create_with_expiry(cli):
    ana = run(cli, "keys", "create", "--role", "analyst", "--name", "ana").stdout.split()[-1]
    run(cli, "keys", "create", "--role", "reader", "--name", "ana")
    temp = run(cli, "keys", "create", "--role", "reader", "--name", "temp", "--expires", "2h")
    assert "valid until" in temp.stderr
    refused = run(cli, "keys", "create", "--role", "reader", "--expires", "soon", code=2)
    assert "error: expires: 'soon' is neither a duration" in refused.stderr

    listed = json.loads(run(cli, "keys", "list", "--json").stdout)["items"]
    assert [(k["name"], k["role"], k["state"]) for k in listed] == [
        ("ana", "analyst", "active"), ("ana", "reader", "active"), ("temp", "reader", "active")]
    temp_expiry = datetime.fromisoformat(listed[2]["expires_at"]) - datetime.now(UTC)
    assert timedelta(hours=1, minutes=59) < temp_expiry <= timedelta(hours=2)
    table = run(cli, "keys", "list").stdout
    assert ana not in table
    assert f"key {listed[0]['id']}: {ana[:10]}… 'ana' analyst, active; created" in table

    ambiguous = run(cli, "keys", "revoke", "ana", code=2)
    assert "'ana' matches 2 keys" in ambiguous.stderr
    assert f"id {listed[0]['id']}" in ambiguous.stderr and f"id {listed[1]['id']}" in \
        ambiguous.stderr
    assert "revoked" in run(cli, "keys", "revoke", str(listed[1]["id"])).stdout
    assert "already revoked" in run(cli, "keys", "revoke", str(listed[1]["id"]), code=2).stderr
    assert "no API key" in run(cli, "keys", "revoke", "nobody", code=2).stderr

    rotated = run(cli, "keys", "rotate", ana[:10], "--grace", "10m")
    new_secret = rotated.stdout.splitlines()[-1]
    assert rotated.stdout.count(new_secret) == 1 and "keeps working until" in rotated.stderr
    store = Database(get_settings().url)
    try:
        assert verify_key(store, secret=ana) is not None  # within its grace period
        assert verify_key(store, secret=new_secret).name == "ana"
    finally:
        store.dispose()
    assert "'grace' is not a duration" in run(cli, "keys", "rotate", "temp", "--grace",
                                              "grace", code=2).stderr
