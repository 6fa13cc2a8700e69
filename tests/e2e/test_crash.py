"""kill -9 of the serving process during a fit: nothing acknowledged is lost, the lease is taken
over after a restart, the fit completes, and the previous posterior is served meanwhile."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from forecast import FitSettings, exact_posterior
from priors import BUNDLED_DIR
from service.db import Database
from service.repositories.evidence import evidence_of
from service.repositories.fits import create_fit, get_fit, get_lease
from service.repositories.keys import create_key
from service.repositories.observations import add_observation
from service.repositories.sets import get_set, load_set_text
from service.runner import FitRunner
from service.views import fit_dict
from service.worker import WorkerPool

pytestmark = pytest.mark.slow
TODAY = "2025-12-31"
SET_ID = "world-order-2035"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(var_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ,
           "SIGNPOST_VAR_DIR": str(var_dir), "SIGNPOST_TODAY": TODAY,
           "SIGNPOST_LEASE_SECONDS": "6", "SIGNPOST_QUEUE_POLL": "0.5",
           "SIGNPOST_REFIT_INTERVAL": "3600", "SIGNPOST_WORKER": "process"}
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.api.app:app_factory", "--factory",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited during start-up"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def test_kill_dash_nine_during_a_fit(tmp_path):
    var_dir = tmp_path / "var"
    url = f"sqlite:///{(var_dir / 'signpost.db').resolve()}"
    var_dir.mkdir()
    store = Database(url, today=date.fromisoformat(TODAY))
    store.migrate()
    # Only the set under test: with the convergence set loaded too, the restarted server's
    # scheduler queues its first fit ahead of ours (a cold compile the test does not need).
    path = BUNDLED_DIR / f"{SET_ID}.yaml"
    load_set_text(store, yaml_text=path.read_text(encoding="utf-8"), source=path.name)
    add_observation(store, data={"indicator": "joint_exercise", "date": "2024-07-14",
                                 "grade": "A1"})
    # A previous good posterior, published before the server starts.
    previous = create_fit(store, set_id=SET_ID, requested_by="test")
    FitRunner(store, WorkerPool("inline"), FitSettings(), 60, var_dir / "fits").run_fit(previous)
    assert fit_dict(get_fit(store, fit_id=previous))["status"] == "published"
    analyst = create_key(store, role="analyst")
    admin = create_key(store, role="admin")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server = start_server(var_dir, port, log)
    acknowledged: list[int] = []
    posting = threading.Event()
    posting.set()

    def post_observations():
        n = 0
        while posting.is_set():
            n += 1
            try:
                r = httpx.post(f"{base}/v1/observations", timeout=5,
                               headers={"Authorization": f"Bearer {analyst}"},
                               json={"indicator": "joint_exercise", "date": "2025-11-01",
                                     "grade": "B2", "note": f"load {n}"})
            except httpx.HTTPError:
                continue  # the server is down: not acknowledged, nothing to check
            if r.status_code == 201:
                acknowledged.append(r.json()["id"])
            time.sleep(0.01)

    try:
        wait_ready(base, server)
        fit_id = httpx.post(f"{base}/v1/fits", json={"set_id": SET_ID}, timeout=5,
                            headers={"Authorization": f"Bearer {admin}"}).json()["fit_id"]
        poster = threading.Thread(target=post_observations)
        poster.start()
        deadline = time.monotonic() + 60
        while fit_dict(get_fit(store, fit_id=fit_id))["status"] != "running":
            assert time.monotonic() < deadline, "the fit never started"
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(server.pid, signal.SIGKILL)  # the serving process dies mid-fit
        server.wait(timeout=10)
        posting.clear()
        poster.join()
        assert fit_dict(get_fit(store, fit_id=fit_id))["status"] == "running"
        lease = get_lease(store, set_id=SET_ID)
        assert lease is not None and lease.fit_id == fit_id
        assert len(acknowledged) > 0

        server = start_server(var_dir, port, log)  # restart
        wait_ready(base, server)
        served_meanwhile = set()
        deadline = time.monotonic() + 180
        while fit_dict(get_fit(store, fit_id=fit_id))["status"] not in ("published", "rejected",
                                                                        "failed"):
            assert time.monotonic() < deadline, "the orphaned fit was never taken over"
            r = httpx.get(f"{base}/v1/sets/{SET_ID}/posterior", timeout=5)
            assert r.status_code == 200
            served_meanwhile.add(r.json()["fit_id"])
            time.sleep(0.2)
        done = fit_dict(get_fit(store, fit_id=fit_id))
        assert done["status"] == "published", done
        assert done["attempts"] == 2  # the first attempt died with the process
        # The last good posterior was served until the new one replaced it (the new one may
        # show up in the last poll, published between the status check and the GET).
        assert previous in served_meanwhile and served_meanwhile <= {previous, fit_id}
        posterior = httpx.get(f"{base}/v1/sets/{SET_ID}/posterior", timeout=5).json()
        # this fit, or one after it: the rows posted while it ran queued a refit of their own
        # (refits follow the evidence), which may have published since
        served = get_fit(store, fit_id=posterior["fit_id"])
        assert posterior["fit_id"] == fit_id or (
            served.status == "published" and served.finished_at >= get_fit(
                store, fit_id=fit_id).finished_at), (posterior["fit_id"], served.requested_by)

        # No acknowledged observation is missing.
        stored = set()
        page = f"{base}/v1/observations?indicator=joint_exercise&limit=1000"
        while page:
            body = httpx.get(page, timeout=5).json()
            stored |= {item["id"] for item in body["items"]}
            page = f"{base}{body['next']}" if body["next"] else None
        assert set(acknowledged) <= stored
        # And the published numbers are the model's, on the evidence the fit saw.
        scenario_set = get_set(store, set_id=SET_ID)
        oracle = exact_posterior(scenario_set, evidence_of(store, scenario_set=scenario_set))
        if done["evidence_hash"] == evidence_of(store, scenario_set=scenario_set).hash():
            for s, p in zip(posterior["scenarios"], oracle.probability, strict=True):
                assert abs(s["probability"] - p) < 1e-9
    finally:
        posting.clear()
        stop(server)
        store.dispose()
