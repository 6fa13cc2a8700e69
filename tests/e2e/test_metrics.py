"""Metrics with several processes on one database: two API replicas and one scheduler.

Real processes, docker-compose's topology on a shared SQLite file: two ``uvicorn`` API replicas
(``SIGNPOST_SCHEDULER=false``) and ``signpost scheduler --metrics-port PORT``, which runs every
fit. A fit is requested through one replica and published by the scheduler; then each
replica's ``/metrics`` and the scheduler's port report the same probabilities (equal to the
posterior JSON each replica serves), fit counts, fit durations and publication times — the
database's — whichever process ran the fit, while request latency stays each process's own.
The Grafana dashboard's queries name only metrics these scrapes contain.

Static fits (``SIGNPOST_DYNAMIC=false``, inline worker) keep the fits to a fraction of a
second; timeouts are generous (the test asserts behaviour, not speed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import func, select

from service.db import Database, FitRow
from service.repositories.fits import latest_published_id, pending_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observation
from service.repositories.sets import load_bundled_sets, set_ids

from .conftest import ROOT, ServerProcess, free_port, shared_compiledir

pytestmark = pytest.mark.slow

SIGNPOST = Path(sys.executable).with_name("signpost")
TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "signpost.json"
TIMEOUT = 60.0  # process start-up, the scheduler's first fits of both sets, a requested fit


class SchedulerProcess(ServerProcess):
    """``signpost scheduler --metrics-port PORT`` in its own process group; metrics at base_url.

    `ServerProcess` with the CLI as the command, and no ``SIGNPOST_*`` inherited from the
    test's environment.
    """

    def __init__(self, var_dir: Path, env: dict[str, str]):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / "scheduler.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIGNPOST_")}
        full_env = {**inherited, "PYTENSOR_FLAGS": shared_compiledir(),
                    "SIGNPOST_VAR_DIR": str(var_dir), **env}
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(
            [str(SIGNPOST), "scheduler", "--metrics-port", str(self.port)], cwd=ROOT,
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class Topology:
    store: Database  # the test's own connection to the shared database
    replicas: list[ServerProcess]
    scheduler: SchedulerProcess
    admin: dict[str, str]

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path}:\n{p.log_tail(20)}"
                         for p in (*self.replicas, self.scheduler))


@pytest.fixture(scope="module")
def topology(tmp_path_factory, serve_module) -> Iterator[Topology]:
    """The database set up (sets, a few observations, an admin key); the three processes up;
    the scheduler's first fits of both sets published."""
    root = tmp_path_factory.mktemp("metrics-e2e")
    url = f"sqlite:///{(root / 'signpost.db').resolve()}"
    store = Database(url, today=TODAY)
    store.migrate()
    load_bundled_sets(store)
    for day in ("2025-02-10", "2025-05-20", "2025-08-03"):
        add_observation(store, data={"indicator": "joint_exercise", "date": day, "grade": "A1"})
    admin = {"Authorization": f"Bearer {create_key(store, role='admin', name='ops')}"}
    env = {"SIGNPOST_DATABASE_URL": url, "SIGNPOST_TODAY": TODAY.isoformat(),
           "SIGNPOST_DYNAMIC": "false", "SIGNPOST_WORKER": "inline"}
    for name in ("a", "b", "scheduler"):
        (root / name).mkdir()
    # the three start together; each is waited for after
    replicas = [serve_module(root / name, {**env, "SIGNPOST_SCHEDULER": "false"})
                for name in ("a", "b")]
    scheduler = SchedulerProcess(root / "scheduler", env)
    t = Topology(store, replicas, scheduler, admin)
    try:
        for replica in replicas:
            replica.wait_until("/readyz", timeout=TIMEOUT)
        scheduler.wait_until("/metrics", timeout=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while any(latest_published_id(store, set_id=s) is None
                  or pending_fit(store, set_id=s) is not None for s in set_ids(store)):
            if time.monotonic() > deadline:
                pytest.fail(f"the scheduler's first fits were not published\n{t.logs()}")
            time.sleep(0.2)
        yield t
    finally:
        scheduler.stop()
        store.dispose()


Samples = dict[str, list[Sample]]


def scrape(base_url: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def series(samples: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """``{label values: value}`` of one metric."""
    return {tuple(s.labels[k] for k in labels): s.value for s in samples.get(name, [])}


def wait_served(t: Topology, set_id: str, fit_id: str) -> None:
    """Until every replica serves ``fit_id`` (each polls the database within a second)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        served = [httpx.get(f"{r.base_url}/v1/sets/{set_id}/posterior", timeout=10).json()
                  for r in t.replicas]
        if all(p.get("fit_id") == fit_id for p in served):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"replicas serve {[p.get('fit_id') for p in served]}, not {fit_id}\n"
                        f"{t.logs()}")
        time.sleep(0.1)


def test_every_replica_and_the_scheduler_report_the_databases_truth(topology):
    t = topology
    a, b = t.replicas
    # a fit requested through replica a, run by the scheduler, read through replica b
    response = httpx.post(f"{a.base_url}/v1/fits", json={"set_id": WORLD}, headers=t.admin,
                          timeout=10)
    assert response.status_code == 202, response.text
    fit_id = response.json()["fit_id"]
    deadline = time.monotonic() + TIMEOUT
    while (fit := httpx.get(f"{b.base_url}/v1/fits/{fit_id}", timeout=10).json())["status"] \
            in ("queued", "running"):
        assert time.monotonic() < deadline, f"fit {fit_id} not run\n{t.logs()}"
        time.sleep(0.1)
    assert fit["status"] == "published", fit
    wait_served(t, WORLD, fit_id)

    scrapes = {"a": scrape(a.base_url), "b": scrape(b.base_url),
               "scheduler": scrape(t.scheduler.base_url)}
    with t.store.Session() as session:
        in_db = {(s, st): n for s, st, n in session.execute(
            select(FitRow.set_id, FitRow.status, func.count())
            .group_by(FitRow.set_id, FitRow.status))}
    for name, samples in scrapes.items():
        for set_id in set_ids(t.store):
            served = httpx.get(f"{a.base_url}/v1/sets/{set_id}/posterior", timeout=10).json()
            gauges = series(samples, "signpost_scenario_probability", "set_id", "scenario")
            for scenario in served["scenarios"]:
                assert gauges[(set_id, scenario["id"])] == pytest.approx(
                    scenario["probability"], abs=1e-12), (name, set_id, scenario["id"])
            published = series(samples, "signpost_last_published_timestamp_seconds", "set_id")
            assert published[(set_id,)] == pytest.approx(
                datetime.fromisoformat(served["fitted_at"]).timestamp(), abs=1e-6), name
            counted = series(samples, "signpost_fits_total", "set_id", "status")
            for status in ("published", "rejected", "failed"):
                assert counted[(set_id, status)] == in_db.get((set_id, status), 0), (
                    name, set_id, status)
        durations = series(samples, "signpost_fit_duration_seconds_count", "set_id", "sampler")
        assert sum(durations.values()) == sum(
            n for (_, status), n in in_db.items() if status in ("published", "rejected")), name
        assert durations[(WORLD, "conjugate")] == in_db[(WORLD, "published")] >= 2, name

    # the database's metrics are the same in every process ...
    shared = ("signpost_scenario_probability", "signpost_fits_total",
              "signpost_fit_duration_seconds_bucket", "signpost_fit_duration_seconds_sum",
              "signpost_last_published_timestamp_seconds", "signpost_fits_pending")
    for name in shared:
        values = [sorted((tuple(sorted(s.labels.items())), s.value) for s in samples[name])
                  for samples in scrapes.values()]
        assert values[0] == values[1] == values[2], name
    # ... request latency is each replica's own: the POST went to a alone
    posts = dict(method="POST", route="/v1/fits", status="202")
    count = "signpost_request_duration_seconds_count"
    assert [s.value for s in scrapes["a"][count]
            if s.labels.items() >= posts.items()] == [1.0]
    assert not [s for s in scrapes["b"].get(count, []) if s.labels.items() >= posts.items()]
    # and the scheduler reports its own jobs (one refit job per set among them)
    jobs = series(scrapes["scheduler"], "signpost_scheduler_job_next_run_timestamp_seconds",
                  "job_id")
    assert {f"refit:{s}" for s in set_ids(t.store)} <= {j for (j,) in jobs}
    assert series(scrapes["scheduler"], "signpost_scheduler_running") == {(): 1.0}
    assert "signpost_scheduler_running" not in scrapes["a"]


def test_the_dashboard_queries_only_metrics_these_processes_export(topology):
    t = topology
    exported = {"up"}  # Prometheus' own, per target
    for base_url in (t.replicas[0].base_url, t.scheduler.base_url):
        exported |= set(scrape(base_url))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"\b(?:signpost|process|python)_\w+\b|\bup\b",
                                   target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            queried |= names
    # and each of the metrics has a panel
    for name in ("signpost_scenario_probability", "signpost_fits_total",
                 "signpost_fit_duration_seconds_bucket", "signpost_coverage_lag_seconds",
                 "signpost_last_published_timestamp_seconds",
                 "signpost_request_duration_seconds_bucket",
                 "signpost_request_duration_seconds_count"):
        assert name in queried, name
