"""Refits follow the evidence, end to end: real `signpost serve` / `signpost scheduler` processes.

An analyst's write — an observation, a retraction, a review — and nothing else (no
``POST /v1/fits``, no ``signpost refit``) leads to a new published posterior: the write queues a
refit of the sets it touches, the change feed (`service.changes`: SQLite's change counter,
PostgreSQL ``LISTEN/NOTIFY``) wakes the scheduler, and every API replica's posterior cache
serves the new fit. A burst of writes is coalesced (one pending fit per set), and the fit
that is finally served saw every write of the burst.

The processes run with the service's default settings, except the var directory, the database
URL (PostgreSQL), ``SIGNPOST_TODAY`` (frozen, as the other e2e tests freeze it; after the
sample's review date, so that a review can extend coverage) and ``SIGNPOST_SCHEDULER=false``
on the PostgreSQL replicas. The database is set up as ``make run`` sets it up (bundled sets
loaded, the sample imported with its review through 2025-12-31, a refit of every set queued),
in this process as tests/e2e/test_server.py does, to save three CLI start-ups per deployment;
the server's (or the scheduler process's) own scheduler publishes those first fits.

Timeouts are generous (30 s per write): the tests assert behaviour, not speed
(``make bench-loop`` measures that).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select

import indicators
from forecast import exact_posterior
from indicators import read_observations_csv
from service.db import Database, FitRow
from service.repositories.evidence import evidence_of
from service.repositories.fits import latest_published_id, pending_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observations
from service.repositories.sets import get_catalog, get_set, load_bundled_sets, set_ids
from service.reviews import sets_touching
from service.scheduler import queue_refits

from .conftest import ServerProcess, free_port, shared_compiledir, started

pytestmark = pytest.mark.slow

SIGNPOST = Path(sys.executable).with_name("signpost")
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
SAMPLE_REVIEWED_THROUGH = "2025-12-31"
# After the sample's review, so that a review through 2026-03-31 extends coverage by a quarter.
TODAY = date(2026, 6, 30)
WORLD = "world-order-2035"  # static: a fit takes ~0.2 s, nothing compiled
# Indicators used by world-order-2035 alone (a write of them touches no other set).
PROBE = "us_china_cooperation"
BURST_INDICATOR = "sanctions_relief_russia"
LOOP_TIMEOUT = 30.0  # seconds from a write to the new posterior being served
START_TIMEOUT = 120.0  # server start-up and the first fits of both sets (the dynamic one: ~10 s)


class SignpostProcess(ServerProcess):
    """``signpost serve`` (or ``signpost scheduler``) in its own process group.

    `ServerProcess` (tests/e2e/conftest.py) with the CLI as the command, a log per process
    (``var_dir/<name>.log``) and no ``SIGNPOST_*`` inherited from the test's environment.
    """

    def __init__(self, var_dir: Path, env: dict[str, str], command: str = "serve",
                 name: str = "server"):
        self.name = name
        self.port = free_port() if command == "serve" else 0
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / f"{name}.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIGNPOST_")}
        full_env = {**inherited, "PYTENSOR_FLAGS": shared_compiledir(),
                    "SIGNPOST_VAR_DIR": str(var_dir), **env}
        args = [str(SIGNPOST), command]
        if command == "serve":
            args += ["--host", "127.0.0.1", "--port", str(self.port)]
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[2],
                                        env=full_env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_log(self, text: str, timeout: float = 90.0) -> None:
        """Wait until the log holds ``text`` (a process without HTTP: the scheduler)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n"
                            f"{self.log_tail()}")
            if text in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        pytest.fail(f"{self.name}: no {text!r} in its log within {timeout}s:\n{self.log_tail()}")


@dataclass
class Deployment:
    store: Database  # the test's own connection to the deployment's database
    analyst: dict[str, str]
    processes: list[SignpostProcess] = field(default_factory=list)

    def logs(self) -> str:
        """Every process's log tail, for assertion messages."""
        return "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail(30)}"
                         for p in self.processes)


def prepare(store: Database) -> dict[str, str]:
    """`make run`'s set-up (init, import with review, a refit of every set queued); a key."""
    store.migrate()
    load_bundled_sets(store)
    observations, _ = read_observations_csv(SAMPLE, get_catalog(store), store.today(),
                                            grades=store.grades)
    touched = sorted({o.indicator for o in observations})
    imported, review = add_observations(
        store, observations=observations, analyst="sample",
        review={"indicators": touched, "through": SAMPLE_REVIEWED_THROUGH,
                "note": "imported from sample_observations.csv"})
    assert imported == len(observations) > 0 and review is not None
    queued = queue_refits(store, sets_touching(store, touched), requested_by="import")
    assert set(queued) == set(set_ids(store)), queued  # both bundled sets
    return {"Authorization": f"Bearer {create_key(store, role='analyst', name='loop')}"}


def settled(d: Deployment, servers: list[SignpostProcess], timeout: float = START_TIMEOUT
            ) -> dict[str, str]:
    """Wait until no fit of any set is pending and every server serves each set's newest
    published fit; returns those fit ids by set."""
    deadline = time.monotonic() + timeout
    while True:
        latest = {s: latest_published_id(d.store, set_id=s) for s in set_ids(d.store)}
        pending = [s for s in latest if pending_fit(d.store, set_id=s) is not None]
        served = [httpx.get(f"{p.base_url}/v1/sets/{s}/posterior", timeout=10)
                  for p in servers for s in latest]
        if (not pending and None not in latest.values()
                and all(r.status_code == 200 and r.json()["fit_id"] == latest[r.json()["set_id"]]
                        for r in served)):
            return latest
        if time.monotonic() > deadline:
            pytest.fail(f"not settled within {timeout}s: newest published {latest}, pending "
                        f"{pending}, served {[r.text[:120] for r in served]}\n{d.logs()}")
        time.sleep(0.2)


def served_fit_id(server: SignpostProcess, set_id: str) -> str:
    response = httpx.get(f"{server.base_url}/v1/sets/{set_id}/posterior", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["fit_id"]


def wait_for_new_fit(d: Deployment, server: SignpostProcess, set_id: str, before: str,
                     what: str) -> dict:
    """Poll the served posterior until its fit id is not ``before``; the new fit's row."""
    deadline = time.monotonic() + LOOP_TIMEOUT
    while time.monotonic() < deadline:
        fit_id = served_fit_id(server, set_id)
        if fit_id != before:
            response = httpx.get(f"{server.base_url}/v1/fits/{fit_id}", timeout=10)
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(0.05)
    pytest.fail(f"{what}: {set_id} still served fit {before} after {LOOP_TIMEOUT}s (no refit "
                f"followed the write)\n{d.logs()}")


def evidence_hash(d: Deployment, set_id: str) -> str:
    """The hash of the set's evidence as the database holds it now (what a new fit sees)."""
    return evidence_of(d.store, scenario_set=get_set(d.store, set_id=set_id)).hash()


def fit_ids(d: Deployment, set_id: str) -> set[str]:
    with d.store.Session() as session:
        return set(session.scalars(select(FitRow.id).where(FitRow.set_id == set_id,
                                                           FitRow.kind == "live")))


def _processes() -> Iterator[Callable[..., SignpostProcess]]:
    # start(var_dir, env, command="serve", name="server")
    yield from started(SignpostProcess)


@pytest.fixture
def processes() -> Iterator[Callable[..., SignpostProcess]]:
    """Start ``signpost`` processes with ``start(var_dir, env, command, name)``; all are
    stopped after the test."""
    yield from _processes()


@pytest.fixture(scope="module")
def processes_module() -> Iterator[Callable[..., SignpostProcess]]:
    """Like `processes`, for processes shared by a module's tests."""
    yield from _processes()


# -- SQLite: `signpost serve` alone -------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_deployment(tmp_path_factory, processes_module
                      ) -> Iterator[tuple[Deployment, SignpostProcess]]:
    """One `signpost serve` (scheduler on, by default) on the default SQLite file of its var
    directory, after `make run`'s set-up; settled (both sets' first fits published)."""
    var_dir = tmp_path_factory.mktemp("loop-sqlite")
    store = Database(f"sqlite:///{(var_dir / 'signpost.db').resolve()}", today=TODAY)
    analyst = prepare(store)
    # the burst below is 200 writes of one key in seconds: over the default write limit
    # (120/minute, issue 15), which is not what this module tests
    server = processes_module(var_dir, {"SIGNPOST_TODAY": TODAY.isoformat(),
                                        "SIGNPOST_RATE_LIMIT_WRITES": "1000/minute"})
    d = Deployment(store, analyst, [server])
    try:
        assert server.wait_until("/readyz").json() == {"status": "ready"}
        settled(d, [server])
        yield d, server
    finally:
        server.stop()
        store.dispose()


def test_an_observation_a_retraction_and_a_review_each_publish_a_new_posterior(
        sqlite_deployment):
    d, server = sqlite_deployment
    first = settled(d, [server])[WORLD]
    first_hash = httpx.get(f"{server.base_url}/v1/fits/{first}").json()["evidence_hash"]
    assert first_hash == evidence_hash(d, WORLD)

    # an observation inside the sample's review: it counts, so the evidence changes
    response = httpx.post(f"{server.base_url}/v1/observations", headers=d.analyst, timeout=10,
                          json={"indicator": PROBE, "date": "2025-11-15", "grade": "A1",
                                "source": "test_loop"})
    assert response.status_code == 201, response.text
    observation = response.json()
    assert observation["coverage"][WORLD]["counted"] is True, observation
    after_observation = evidence_hash(d, WORLD)
    assert after_observation != first_hash
    fit = wait_for_new_fit(d, server, WORLD, first, "observation")
    assert fit["status"] == "published", fit
    assert fit["requested_by"] == f"observation {observation['id']}", fit
    assert fit["evidence_hash"] == after_observation  # the fit saw the observation

    # its retraction: the evidence is back to what it was
    response = httpx.post(f"{server.base_url}/v1/observations/{observation['id']}/retract",
                          headers=d.analyst, timeout=10, json={"reason": "test_loop"})
    assert response.status_code == 200 and response.json()["retracted_at"], response.text
    assert evidence_hash(d, WORLD) == first_hash
    retracted = wait_for_new_fit(d, server, WORLD, fit["fit_id"], "retraction")
    assert retracted["status"] == "published", retracted
    assert retracted["requested_by"] == f"retraction {observation['id']}", retracted
    assert retracted["evidence_hash"] == first_hash

    # a review through 2026-03-31: a quiet quarter of the indicator now counts as evidence
    response = httpx.post(f"{server.base_url}/v1/reviews", headers=d.analyst, timeout=10,
                          json={"set_id": WORLD, "indicators": [PROBE],
                                "through": "2026-03-31", "note": "test_loop"})
    assert response.status_code == 201, response.text
    review = response.json()
    assert review["sets"] == [WORLD] and WORLD in review["queued_fits"], review
    after_review = evidence_hash(d, WORLD)
    assert after_review != first_hash
    reviewed = wait_for_new_fit(d, server, WORLD, retracted["fit_id"], "review")
    assert reviewed["status"] == "published", reviewed
    assert reviewed["fit_id"] == review["queued_fits"][WORLD]
    assert reviewed["requested_by"] == f"review {review['id']}", reviewed
    assert reviewed["evidence_hash"] == after_review
    posterior = httpx.get(f"{server.base_url}/v1/sets/{WORLD}/posterior").json()
    assert posterior["coverage"][PROBE]["covered_through"] == "2026-03-31", posterior
    assert posterior["coverage"][PROBE]["basis"] == "review", posterior
    # no fit was asked for but by the writes (and the set-up's import)
    with d.store.Session() as session:
        requesters = set(session.scalars(select(FitRow.requested_by)))
    assert all(r.split(" ")[0] in ("import", "observation", "retraction", "review")
               for r in requesters), requesters


BURST = 200
THREADS = 8


def test_a_burst_of_observations_is_at_most_two_fits_and_the_last_saw_them_all(
        sqlite_deployment):
    d, server = sqlite_deployment
    before = settled(d, [server])[WORLD]
    old_fits = fit_ids(d, WORLD)
    hash_before = evidence_hash(d, WORLD)
    start = date(2024, 1, 1)  # inside the set (from 2023-09-01) and the sample's review

    with httpx.Client(base_url=server.base_url, headers=d.analyst, timeout=60,
                      limits=httpx.Limits(max_connections=THREADS)) as client:
        def post(n: int) -> httpx.Response:
            return client.post("/v1/observations", json={
                "indicator": BURST_INDICATOR, "date": (start + timedelta(days=3 * n)).isoformat(),
                "value": 1, "grade": "B2", "source": "test_loop burst", "note": f"burst {n}"})

        started = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            responses = list(pool.map(post, range(BURST)))
        burst_s = time.monotonic() - started
    refused = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 201]
    assert not refused, f"{len(refused)} of {BURST} refused: {refused[:5]}\n{d.logs()}"
    assert all(r.json()["coverage"][WORLD]["counted"] for r in responses)
    assert len({r.json()["id"] for r in responses}) == BURST
    expected = evidence_hash(d, WORLD)  # the evidence with all 200
    assert expected != hash_before

    # the served posterior comes to be a fit of that evidence, and nothing is left pending
    deadline = time.monotonic() + LOOP_TIMEOUT
    while True:
        fit_id = served_fit_id(server, WORLD)
        fit = httpx.get(f"{server.base_url}/v1/fits/{fit_id}", timeout=10).json()
        if (fit_id != before and fit["evidence_hash"] == expected
                and pending_fit(d.store, set_id=WORLD) is None):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{LOOP_TIMEOUT}s after the burst ({burst_s:.1f} s), {WORLD} serves fit "
                        f"{fit_id} ({fit['status']}, evidence {fit['evidence_hash']}; the "
                        f"burst's is {expected}); new fits: "
                        f"{len(fit_ids(d, WORLD) - old_fits)}\n{d.logs()}")
        time.sleep(0.05)
    time.sleep(2.5)  # past a queue poll (2 s): a late, extra fit would show here
    new = fit_ids(d, WORLD) - old_fits
    rows = [httpx.get(f"{server.base_url}/v1/fits/{f}", timeout=10).json() for f in new]
    summary = sorted((r["created_at"], r["started_at"], r["status"], r["requested_by"])
                     for r in rows)
    # coalesced: a fit was queued only when none was (one pending fit per set)
    for (_, started_at, *_), (created_at, *_) in zip(summary, summary[1:], strict=False):
        assert created_at >= started_at, (
            f"two fits of {WORLD} queued at once (the second queued at {created_at}, before "
            f"the first started at {started_at}): {summary}")
    assert 1 <= len(new) <= 2, (f"{len(new)} fits for one burst of {BURST} observations "
                                f"({burst_s:.1f} s): {summary}")
    assert fit_id in new and served_fit_id(server, WORLD) == fit_id
    assert all(r["status"] == "published" for r in rows), summary

    # and its numbers are the model's on all 200 (the static set's posterior is exact)
    posterior = httpx.get(f"{server.base_url}/v1/sets/{WORLD}/posterior").json()
    scenario_set = get_set(d.store, set_id=WORLD)
    oracle = exact_posterior(scenario_set, evidence_of(d.store, scenario_set=scenario_set))
    np.testing.assert_allclose([s["probability"] for s in posterior["scenarios"]],
                               oracle.probability, rtol=1e-6, atol=1e-12)


# -- PostgreSQL: two API replicas and one scheduler process -------------------------------------


@pytest.fixture
def pg_deployment(pg_url, tmp_path, processes
                  ) -> Iterator[tuple[Deployment, SignpostProcess, SignpostProcess]]:
    """Replicas A and B (``SIGNPOST_SCHEDULER=false``) and one `signpost scheduler`, on one
    fresh PostgreSQL database and one var directory (as docker-compose.yml runs them)."""
    store = Database(pg_url, today=TODAY)
    analyst = prepare(store)
    env = {"SIGNPOST_DATABASE_URL": pg_url, "SIGNPOST_TODAY": TODAY.isoformat()}
    replica_a = processes(tmp_path, {**env, "SIGNPOST_SCHEDULER": "false"}, name="replica-a")
    replica_b = processes(tmp_path, {**env, "SIGNPOST_SCHEDULER": "false"}, name="replica-b")
    scheduler = processes(tmp_path, env, command="scheduler", name="scheduler")
    d = Deployment(store, analyst, [replica_a, replica_b, scheduler])
    try:
        for replica in (replica_a, replica_b):
            assert replica.wait_until("/readyz").json() == {"status": "ready"}
        scheduler.wait_for_log("scheduler running on")
        settled(d, [replica_a, replica_b])
        yield d, replica_a, replica_b
    finally:
        for process in d.processes:  # before pg_url drops the database
            process.stop()
        store.dispose()


def test_postgresql_replicas_both_serve_the_fit_a_write_to_either_leads_to(pg_deployment):
    d, replica_a, replica_b = pg_deployment
    replicas = {"A": replica_a, "B": replica_b}
    current = settled(d, [replica_a, replica_b])[WORLD]
    for to, day in (("A", "2025-10-01"), ("B", "2025-10-02")):
        response = httpx.post(f"{replicas[to].base_url}/v1/observations", headers=d.analyst,
                              timeout=10, json={"indicator": PROBE, "date": day,
                                                "grade": "A1", "source": f"test_loop {to}"})
        assert response.status_code == 201, response.text
        observation = response.json()
        assert observation["coverage"][WORLD]["counted"] is True, observation
        expected = evidence_hash(d, WORLD)
        posted = time.monotonic()
        seen: dict[str, tuple[float, str]] = {}  # replica → (seconds after the POST, fit id)
        while len(seen) < 2:
            for name, replica in replicas.items():
                if name not in seen:
                    fit_id = served_fit_id(replica, WORLD)
                    if fit_id != current:
                        seen[name] = (time.monotonic() - posted, fit_id)
            if time.monotonic() - posted > LOOP_TIMEOUT:
                pytest.fail(f"observation POSTed to {to}: after {LOOP_TIMEOUT}s a new fit is "
                            f"served by {sorted(seen) or 'neither replica'}: {seen}\n{d.logs()}")
            time.sleep(0.05)
        (a_s, a_fit), (b_s, b_fit) = seen["A"], seen["B"]
        assert a_fit == b_fit, seen  # one fit, served by both
        assert abs(a_s - b_s) <= 5.0, f"POST to {to}: A after {a_s:.2f} s, B after {b_s:.2f} s"
        fit = httpx.get(f"{replica_b.base_url}/v1/fits/{a_fit}", timeout=10).json()
        assert fit["status"] == "published", fit
        assert fit["requested_by"] == f"observation {observation['id']}", fit
        assert fit["evidence_hash"] == expected, fit  # it saw the observation
        current = a_fit
