"""Faults at the service's edges, in process: a database that cannot serve is a 503 with
``Retry-After`` and the error shape (never a 500, no SQL in the body), and a full artifact disk
fails the fit, with the reason, leaving the last good posterior published.

The faults are real — nothing listening on the PostgreSQL port, SQLite's write lock held by
another process, a tmpfs filled up. The same faults under load, with real server processes,
are tests/e2e/test_faults.py (and ``make soak``).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest

from bench.soak import LOCKER, WORLD, Tmpfs, free_port, prepare
from forecast import FitSettings
from service.api import create_app
from service.api.errors import DATABASE_RETRY_AFTER
from service.repositories.fits import create_fit, get_fit, latest_published_id
from service.repositories.observations import add_observation, count_observations
from service.runner import FitRunner
from service.settings import Settings
from service.worker import WorkerPool
from tests.service.support import TestClient

TODAY = date(2026, 6, 30)
OBSERVATION = {"indicator": "us_china_cooperation", "date": "2025-11-15", "grade": "A1"}


def assert_unavailable(response) -> None:
    """503, a whole-second Retry-After, the one error shape, nothing of the driver's error."""
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(DATABASE_RETRY_AFTER)
    error = response.json()["error"]
    assert error["code"] == "database_unavailable" and error["field"] is None, error
    assert set(error) == {"code", "message", "field"}
    for leak in ("SELECT", "INSERT", "sqlite3", "psycopg", "OperationalError", "127.0.0.1"):
        assert leak not in error["message"], error["message"]


def test_a_postgresql_server_that_is_down_is_a_503_with_retry_after(tmp_path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/signpost"  # nothing listens
    app = create_app(Settings(var_dir=tmp_path, database_url=url, scheduler=False,
                              worker="inline", migrate_on_start=False))
    with TestClient(app) as client:
        assert_unavailable(client.post("/v1/observations", json=OBSERVATION,
                                       headers={"Authorization": "Bearer sp_unchecked",
                                                "Idempotency-Key": "down-1"}))
        assert_unavailable(client.get("/v1/sets"))
        assert_unavailable(client.get(f"/v1/sets/{WORLD}/posterior"))  # nothing cached yet
        assert client.get("/healthz").status_code == 200


def test_a_sqlite_write_lock_held_by_another_process_is_a_503_then_the_retry_is_stored(
        tmp_path):
    path = tmp_path / "signpost.db"
    store, analyst = prepare(f"sqlite:///{path}", (WORLD,), tmp_path / "fits")
    app = create_app(Settings(var_dir=tmp_path, database_url=f"sqlite:///{path}",
                              scheduler=False, worker="inline", today=TODAY.isoformat(),
                              sqlite_busy_timeout=0.2))
    headers = {"Authorization": f"Bearer {analyst}", "Idempotency-Key": "locked-1"}
    before = count_observations(store)
    with TestClient(app) as client:
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path), "60"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert locker.stdout.readline().strip() == "locked"
            assert_unavailable(client.post("/v1/observations", json=OBSERVATION,
                                           headers=headers))
            # readers are not blocked by a writer (WAL): the posterior is served meanwhile
            assert client.get(f"/v1/sets/{WORLD}/posterior").status_code == 200
            assert count_observations(store) == before
        finally:
            locker.kill()  # its transaction dies with it; the lock is released
            locker.wait()
            locker.stdout.close()
        response = client.post("/v1/observations", json=OBSERVATION, headers=headers)
        assert response.status_code == 201, response.text
    assert count_observations(store) == before + 1
    store.dispose()


NO_TMPFS = Tmpfs.unavailable()


@pytest.mark.skipif(NO_TMPFS is not None, reason=NO_TMPFS or "")
def test_no_space_for_the_artifact_fails_the_fit_and_the_last_good_stays(tmp_path):
    disk = Tmpfs(tmp_path / "fits", size_mb=32)
    try:
        store, _ = prepare(f"sqlite:///{tmp_path / 'signpost.db'}", (WORLD,), disk.path)
        good = latest_published_id(store, set_id=WORLD)
        runner = FitRunner(store, WorkerPool("inline"), FitSettings(), 60, disk.path)
        add_observation(store, data=OBSERVATION)  # new evidence: the next fit is a new one
        disk.fill()
        failed = runner.run_fit(create_fit(store, set_id=WORLD, requested_by="test"))
        assert failed["status"] == "failed", failed
        reason = get_fit(store, fit_id=failed["fit_id"]).reason
        assert "No space left on device" in reason and "cannot write the fit's artifact" \
            in reason, reason
        assert list(disk.path.rglob("*.tmp-*")) == []  # its temporary file is gone
        assert latest_published_id(store, set_id=WORLD) == good  # the last good stays
        disk.free()
        again = runner.run_fit(create_fit(store, set_id=WORLD, requested_by="test"))
        assert again["status"] == "published", again
        assert latest_published_id(store, set_id=WORLD) == again["fit_id"]
        assert (disk.path / WORLD / f"{again['fit_id']}.nc").is_file()
        store.dispose()
    finally:
        disk.unmount()
