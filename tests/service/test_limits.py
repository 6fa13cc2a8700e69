"""Rate limits in process: per key on writes and on fit requests, per address on open reads.

A request over its limit is 429 ``rate_limited`` (field null) with a whole-second
``Retry-After``, and stores nothing; other keys keep their own budgets. The two-replica,
shared-budget case (redis://) is tests/e2e/test_keys_across_replicas.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from service.api import create_app
from service.db import AuditRow, Database, FitRow
from service.repositories.keys import create_key
from service.repositories.observations import count_observations
from service.repositories.sets import get_set, load_bundled_sets
from service.settings import Settings
from tests.service.test_api import GOOD, WORLD, TestClient, bearer, error, make_settings
from tests.service.test_scores import publish_synthetic


@dataclass
class Env:
    client: TestClient
    store: Database
    ana: dict[str, str]
    bob: dict[str, str]
    ada: dict[str, str]


def _env(tmp_path_factory, name: str, **limits: str) -> Iterator[Env]:
    var_dir = tmp_path_factory.mktemp(name)
    app = create_app(make_settings(var_dir, f"sqlite:///{var_dir / 'signpost.db'}", **limits))
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        yield Env(client, store, ana=bearer(create_key(store, role="analyst", name="ana")),
                  bob=bearer(create_key(store, role="analyst", name="bob")),
                  ada=bearer(create_key(store, role="admin", name="ada")))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    yield from _env(tmp_path_factory, "limits", rate_limit_writes="3/minute",
                    rate_limit_fits="1/minute", rate_limit_reads="")


def _count(store: Database, model) -> int:
    with store.Session() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def assert_rate_limited(response, window: int = 60) -> None:
    assert error(response) == (429, "rate_limited", None)
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= window, retry_after
    assert "nothing was stored" in response.json()["error"]["message"].lower()


def test_the_fourth_write_of_a_key_is_429_and_stores_nothing(env):
    ids = []
    for day in ("2025-03-01", "2025-03-02", "2025-03-03"):
        response = env.client.post("/v1/observations", json={**GOOD, "date": day},
                                   headers=env.ana)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    observations, audited = count_observations(env.store), _count(env.store, AuditRow)

    over = env.client.post("/v1/observations", json={**GOOD, "date": "2025-03-04"},
                           headers=env.ana)
    assert_rate_limited(over)
    # a retraction is a write too: same budget, refused before anything changes
    retract = env.client.post(f"/v1/observations/{ids[0]}/retract", json={"reason": "dup"},
                              headers=env.ana)
    assert_rate_limited(retract)
    assert count_observations(env.store) == observations
    assert count_observations(env.store, include_retracted=False) == observations
    assert _count(env.store, AuditRow) == audited

    # another key has its own budget
    other = env.client.post("/v1/observations", json={**GOOD, "date": "2025-03-05"},
                            headers=env.bob)
    assert other.status_code == 201, other.text
    assert count_observations(env.store) == observations + 1


def test_a_missing_or_wrong_key_is_401_or_403_before_any_limit(env):
    # authentication comes first: an anonymous caller cannot spend a key's budget
    assert error(env.client.post("/v1/observations", json=GOOD))[0] == 401
    assert error(env.client.post("/v1/fits", json={"set_id": WORLD}, headers=env.bob))[0] == 403


def test_fit_requests_have_their_own_limit(env):
    first = env.client.post("/v1/fits", json={"set_id": WORLD}, headers=env.ada)
    assert first.status_code == 202, first.text
    fits, audited = _count(env.store, FitRow), _count(env.store, AuditRow)
    assert_rate_limited(env.client.post("/v1/fits", json={"set_id": WORLD}, headers=env.ada))
    assert (_count(env.store, FitRow), _count(env.store, AuditRow)) == (fits, audited)
    # the admin's writes are counted apart from its fit requests
    response = env.client.post("/v1/observations", json={**GOOD, "date": "2025-04-01"},
                               headers=env.ada)
    assert response.status_code == 201, response.text


def test_with_no_read_limit_reads_are_not_counted(env):
    limits = env.client.app.state.rate_limits
    assert not limits.active("reads")
    for _ in range(10):
        assert env.client.get("/v1/sets").status_code == 200
    counted = list(limits.limiter.storage.events)  # the moving windows, one per identity
    assert counted and not [key for key in counted if "/reads/" in key], counted


@pytest.fixture(scope="module")
def reads(tmp_path_factory) -> Iterator[Env]:
    yield from _env(tmp_path_factory, "reads", rate_limit_reads="2/minute")


def test_open_reads_are_limited_per_client_address(reads):
    publish_synthetic(reads.store, get_set(reads.store, set_id=WORLD), {
        "hardened_bipolar": 0.1, "us_russia_thaw": 0.2, "us_china_cooperation": 0.3,
        "multipolar": 0.4}, datetime(2025, 12, 30, tzinfo=UTC))
    posterior = f"/v1/sets/{WORLD}/posterior"
    first = reads.client.get(posterior)
    assert first.status_code == 200, first.text
    # cached now: the polling path serves it from memory, unless a read limit is set
    assert reads.client.get(posterior, headers={"If-None-Match": first.headers["etag"]}
                            ).status_code == 304
    over = reads.client.get(posterior)
    assert_rate_limited(over)
    assert "reads from this address" in over.json()["error"]["message"]
    assert_rate_limited(reads.client.get("/v1/sets"))
    # writes keep their own, per-key budget
    response = reads.client.post("/v1/observations", json=GOOD, headers=reads.ana)
    assert response.status_code == 201, response.text


def test_an_unreachable_redis_is_503_and_stores_nothing(tmp_path):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'signpost.db'}",
                             rate_limit_storage="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as client:
        store = client.app.state.services.store
        load_bundled_sets(store)
        key = bearer(create_key(store, role="analyst", name="ana"))
        response = client.post("/v1/observations", json=GOOD, headers=key)
        assert error(response) == (503, "rate_limit_storage_unreachable", None)
        assert "redis://127.0.0.1:1/0" in response.json()["error"]["message"]
        assert count_observations(store) == 0


@pytest.mark.parametrize("field, value", [
    ("rate_limit_writes", "lots"), ("rate_limit_fits", "30 per fortnight"),
    ("rate_limit_reads", "-1/minute"), ("rate_limit_storage", "ftp://example.org"),
])
def test_a_bad_limit_setting_is_refused_naming_it(tmp_path, field, value):
    with pytest.raises(ValidationError) as raised:
        Settings(var_dir=tmp_path, **{field: value})
    assert raised.value.errors()[0]["loc"] == (field,)


def test_empty_limits_mean_none(tmp_path):
    settings = Settings(var_dir=tmp_path, rate_limit_writes="", rate_limit_fits="")
    limits = create_app(settings).state.rate_limits
    assert limits.limiter is None and not any(limits.active(k) for k in ("writes", "fits",
                                                                          "reads"))
