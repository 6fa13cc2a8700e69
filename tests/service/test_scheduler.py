"""Refit scheduling and leases: never two fits of one set at once, takeover after a crash."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from forecast import FitSettings, SamplerSettings
from service.db import Database
from service.repositories.fits import (
    acquire_lease,
    create_fit,
    get_fit,
    get_lease,
    latest_published,
    update_fit,
)
from service.repositories.observations import add_observation
from service.repositories.sets import load_bundled_sets
from service.runner import FitRunner
from service.scheduler import RefitScheduler
from service.settings import Settings
from service.views import fit_dict
from service.worker import WorkerPool

TODAY = date(2025, 12, 31)
QUICK = FitSettings(sampler=SamplerSettings(draws=500, tune=500, chains=4))
GATE_FREE = FitSettings(sampler=SamplerSettings(draws=300, tune=300, chains=2),
                        gate=QUICK.gate.__class__(min_ess_bulk=100, max_rhat=1.05))


class RecordingPool(WorkerPool):
    """An inline pool that records when each set's sampling starts and ends."""

    def __init__(self, log: list, lock: threading.Lock, owner: str):
        super().__init__("inline")
        self.log, self.lock, self.owner = log, lock, owner

    def run(self, job):
        started = time.monotonic()
        time.sleep(0.2)  # widen the window in which an overlap would show
        try:
            return super().run(job)
        finally:
            with self.lock:
                self.log.append((job.scenario_set.source, self.owner, started,
                                 time.monotonic()))


def _setup(url: str) -> None:
    store = Database(url, today=TODAY)
    store.migrate()
    load_bundled_sets(store)
    for d in ("2024-07-14", "2025-08-01", "2025-09-10"):
        add_observation(store, data={"indicator": "joint_exercise", "date": d, "grade": "A1"})
    store.dispose()


def _assert_no_overlap(log):
    by_set: dict[str, list] = {}
    for source, owner, start, end in log:
        by_set.setdefault(source, []).append((start, end, owner))
    for source, spans in by_set.items():
        spans.sort()
        for (_, e1, o1), (s2, _, o2) in zip(spans, spans[1:], strict=False):
            assert s2 >= e1, f"{source}: {o1} and {o2} sampled at the same time"


@pytest.mark.slow
def test_two_schedulers_on_one_postgres_never_fit_one_set_at_once(pg_url):
    _setup(pg_url)
    log: list = []
    lock = threading.Lock()
    schedulers = []
    for name in ("s1", "s2"):
        store = Database(pg_url, today=TODAY)
        runner = FitRunner(store, RecordingPool(log, lock, name), GATE_FREE, lease_seconds=30,
                           artifacts_dir="/tmp/signpost-test-artifacts", owner=name)
        schedulers.append(RefitScheduler(store, runner, refit_interval=3600, queue_poll=0.2))
    queue_store = Database(pg_url, today=TODAY)
    # one queued fit per set at a time (migration 0006): asking again hands back that one
    fit_ids = list(dict.fromkeys(
        create_fit(queue_store, set_id=set_id, requested_by="test") for set_id in
        ("sino-russian-convergence", "world-order-2035") * 3))
    assert len(fit_ids) == 2

    # Both schedulers drain the same queue and check the same sets, concurrently.
    workers = []
    for scheduler in schedulers:
        for target in (scheduler.drain, scheduler.drain,
                       lambda s=scheduler: s.check_set("world-order-2035")):
            workers.append(threading.Thread(target=target))
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    for scheduler in schedulers:  # whatever lost a lease race is still queued: finish it
        scheduler.drain()

    statuses = [fit_dict(get_fit(queue_store, fit_id=f))["status"] for f in fit_ids]
    assert statuses == ["published"] * len(fit_ids)
    assert len(log) >= len(fit_ids)
    assert {owner for _, owner, _, _ in log} == {"s1", "s2"} or len(log) >= len(fit_ids)
    _assert_no_overlap(log)
    for scheduler in schedulers:
        scheduler.store.dispose()
    queue_store.dispose()


class Clock:
    def __init__(self):
        self.now = datetime(2025, 12, 31, 12, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.mark.slow
def test_a_crashed_fit_is_taken_over_after_its_lease_expires(db_url):
    _setup(db_url)
    clock = Clock()
    store = Database(db_url, clock=clock, today=TODAY)
    fit_id = create_fit(store, set_id="world-order-2035", requested_by="test")
    # A worker took the fit and died: the row says running, the lease is still someone's.
    assert acquire_lease(store, set_id="world-order-2035", owner="dead-worker", fit_id=fit_id,
                         seconds=60)
    update_fit(store, fit_id=fit_id, status="running", attempts=1, worker="dead-worker")
    runner = FitRunner(store, WorkerPool("inline"), QUICK, lease_seconds=60,
                       artifacts_dir="/tmp/signpost-test-artifacts", owner="survivor")
    scheduler = RefitScheduler(store, runner, refit_interval=3600, queue_poll=1)

    scheduler.drain()  # lease still live: nothing happens
    assert fit_dict(get_fit(store, fit_id=fit_id))["status"] == "running"
    clock.now += timedelta(seconds=61)
    scheduler.drain()
    done = fit_dict(get_fit(store, fit_id=fit_id))
    assert done["status"] == "published" and done["attempts"] == 2
    assert get_lease(store, set_id="world-order-2035") is None
    store.dispose()


@pytest.mark.slow
def test_refit_only_when_evidence_changed_and_rejection_keeps_last_good(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _setup(url)
    store = Database(url, today=TODAY)
    runner = FitRunner(store, WorkerPool("inline"), QUICK, lease_seconds=60,
                       artifacts_dir=tmp_path / "fits")
    scheduler = RefitScheduler(store, runner, refit_interval=3600, queue_poll=1)
    first = scheduler.check_set("world-order-2035")
    assert first and fit_dict(get_fit(store, fit_id=first))["status"] == "published"
    assert (tmp_path / "fits" / "world-order-2035" / f"{first}.nc").exists()
    assert scheduler.check_set("world-order-2035") is None  # same evidence: no refit
    add_observation(store, data={"indicator": "joint_exercise", "date": "2025-12-01"})
    # An impossible gate: the fit runs, is rejected with its reason, and is not served.
    runner.fit_settings = FitSettings(sampler=QUICK.sampler,
                                      gate=QUICK.gate.__class__(min_ess_bulk=10**9))
    second = scheduler.check_set("world-order-2035")
    rejected = fit_dict(get_fit(store, fit_id=second))
    assert rejected["status"] == "rejected" and "bulk ESS" in rejected["reason"]
    assert latest_published(store, set_id="world-order-2035").id == first
    assert scheduler.check_set("world-order-2035") is None  # same evidence, verdict given
    store.dispose()


@pytest.mark.slow
def test_fits_in_the_worker_process_draw_from_the_paths_and_publish_their_artifact(tmp_path):
    """The deployed path: a worker process fits the dynamic set by its scenario paths (decision
    011: nothing to compile); a refit after one more observation re-weights those draws
    (decision 015), and a second fit of the same evidence enumerates again; each published
    with its artifact saying how it was drawn and what the evidence covered."""
    import xarray as xr

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _setup(url)
    store = Database(url, today=TODAY)
    runner = FitRunner(store, WorkerPool("process"), Settings().fit_settings(),
                       lease_seconds=120, artifacts_dir=tmp_path / "fits")
    try:
        set_id = "sino-russian-convergence"
        first = runner.run_fit(create_fit(store, set_id=set_id, requested_by="test"))
        assert first["status"] == "published" and first["sampler"]["name"] == "paths"
        assert first["timings"]["compile_s"] == 0.0
        add_observation(store, data={"indicator": "joint_exercise", "date": "2025-11-20",
                               "grade": "A1"})
        quick = runner.run_fit(create_fit(store, set_id=set_id, requested_by="test"))
        assert quick["status"] == "published", quick
        assert quick["sampler"]["name"] == "psis", quick["sampler"]
        assert quick["sampler"]["base_sampler"] == "paths"
        assert quick["sampler"]["base_evidence_hash"] == first["evidence_hash"]
        assert quick["diagnostics"]["max_mcse"] <= 0.005
        second = runner.run_fit(create_fit(store, set_id=set_id, requested_by="test"))
        assert second["status"] == "published", second
        assert second["sampler"]["name"] == "paths", second["sampler"]
        assert second["evidence_hash"] == quick["evidence_hash"] != first["evidence_hash"]
        assert second["diagnostics"]["max_mcse"] <= 0.005
        for a, b in zip(get_fit(store, fit_id=quick["fit_id"]).summary["scenarios"],
                        get_fit(store, fit_id=second["fit_id"]).summary["scenarios"],
                        strict=True):
            assert abs(a["probability"] - b["probability"]) <= 4 * a["mcse"] + 1e-4, (a, b)
        assert latest_published(store, set_id=set_id).id == second["fit_id"]
        artifact = xr.open_datatree(tmp_path / "fits" / set_id / f"{second['fit_id']}.nc",
                                    engine="h5netcdf")
        posterior = artifact["posterior"]
        assert "enumerated scenario paths" in posterior.attrs["signpost_method"]
        assert posterior.sizes["chain"] == 4 and posterior.sizes["draw"] == 1000
        assert abs(float(posterior["scenario_probability"].mean(("chain", "draw")).sum())
                   - 1) < 1e-9
        artifact.close()
        summary = get_fit(store, fit_id=second["fit_id"]).summary
        assert summary["coverage"]["evidence_complete_through"] is not None
    finally:
        runner.pool.shutdown()
        store.dispose()


@pytest.mark.slow
def test_a_quick_refit_is_refined_once_writes_pause(tmp_path):
    """Decision 015's loop: an observation's refit re-weights the last path fit (published at
    once); once no write has been heard for ``refine_after`` seconds the scheduler fits the
    same evidence again, which the worker enumerates; a write in between holds it off."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _setup(url)
    store = Database(url, today=TODAY)
    runner = FitRunner(store, WorkerPool("inline"), Settings().fit_settings(),
                       lease_seconds=120, artifacts_dir=tmp_path / "fits")
    scheduler = RefitScheduler(store, runner, refit_interval=900, queue_poll=60,
                               refine_after=1.0)  # not started: its jobs are called here
    set_id = "sino-russian-convergence"
    try:
        assert runner.run_fit(create_fit(store, set_id=set_id,
                                         requested_by="test"))["sampler"]["name"] == "paths"
        add_observation(store, data={"indicator": "joint_exercise", "date": "2025-11-20",
                                     "grade": "A1"})
        quick = runner.run_fit(create_fit(store, set_id=set_id, requested_by="test"))
        assert quick["sampler"]["name"] == "psis"
        scheduler.refine()  # too soon: nothing
        assert latest_published(store, set_id=set_id).id == quick["fit_id"]
        time.sleep(1.1)
        scheduler.heard({"any"})  # a write: the pause starts again
        scheduler.refine()
        assert latest_published(store, set_id=set_id).id == quick["fit_id"]
        time.sleep(1.1)
        scheduler.refine()
        refined = latest_published(store, set_id=set_id)
        assert refined.id != quick["fit_id"] and refined.requested_by == "refine"
        assert refined.summary["sampler"]["name"] == "paths"
        assert refined.evidence_hash == quick["evidence_hash"]
        scheduler.refine()  # an enumerated fit needs no refinement
        assert latest_published(store, set_id=set_id).id == refined.id
    finally:
        scheduler.shutdown()
        store.dispose()
