"""Running one fit end to end: lease → SQL evidence → worker fit → gate → publish or record.

A fit that fails the gate is recorded as ``rejected`` and a crashed one as ``failed``, each with
its reason; only ``published`` fits are ever served, so the last good posterior stays.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from forecast import FitSettings
from service.db import Database
from service.repositories.evidence import coverage_of, evidence_of
from service.repositories.fits import acquire_lease, get_fit, release_lease, renew_lease, update_fit
from service.repositories.sets import get_set
from service.views import fit_dict
from service.worker import FitJob, WorkerPool

log = logging.getLogger("signpost.runner")


def make_owner(role: str = "worker") -> str:
    """A lease owner id unique to this process and run."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Heartbeat(threading.Thread):
    """Renews a lease every third of its length while a fit runs."""

    def __init__(self, store: Database, set_id: str, owner: str, seconds: float):
        super().__init__(daemon=True, name=f"lease-{set_id}")
        self.store, self.set_id, self.owner, self.seconds = store, set_id, owner, seconds
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.seconds / 3):
            try:
                if not renew_lease(self.store, set_id=self.set_id, owner=self.owner,
                                   seconds=self.seconds):
                    self.lost = True
                    return
            except Exception:  # a database hiccup: try again next beat
                log.exception("lease renewal failed for %s", self.set_id)

    def stop(self) -> None:
        self.stopped.set()


class FitRunner:
    """Runs queued fits, one set at a time per lease.

    Parameters
    ----------
    store : Database
    pool : WorkerPool
        Where the sampling happens.
    fit_settings : FitSettings
    lease_seconds : float
    artifacts_dir : str or Path-like
        Where published DataTrees go.
    owner : str, optional
        Lease owner id (one per process by default).

    """

    def __init__(self, store: Database, pool: WorkerPool, fit_settings: FitSettings,
                 lease_seconds: float, artifacts_dir: Any, owner: str | None = None):
        self.store = store
        self.pool = pool
        self.fit_settings = fit_settings
        self.lease_seconds = lease_seconds
        self.artifacts_dir = artifacts_dir
        self.owner = owner or make_owner()
        self.on_publish: list[Callable[[str, str], None]] = []

    def run_fit(self, fit_id: str,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run one fit if its set's lease can be had.

        Returns
        -------
        dict
            The fit's public view after the attempt; ``status`` stays ``queued`` or
            ``running`` when another owner holds the lease.

        """
        say = progress or (lambda message: None)
        row = get_fit(self.store, fit_id=fit_id)
        if row.status in ("published", "rejected", "failed"):
            return fit_dict(row)
        set_id = row.set_id
        # One token per attempt: two threads of one process must exclude each other too.
        token = f"{self.owner}/{uuid.uuid4().hex[:8]}"
        if not acquire_lease(self.store, set_id=set_id, owner=token, fit_id=fit_id,
                             seconds=self.lease_seconds):
            say(f"{set_id}: another worker holds the lease; fit {fit_id} waits")
            return fit_dict(row)
        heartbeat = _Heartbeat(self.store, set_id, token, self.lease_seconds)
        heartbeat.start()
        try:
            return self._run_leased(fit_id, say, heartbeat, token)
        finally:
            heartbeat.stop()
            release_lease(self.store, set_id=set_id, owner=token)

    def _run_leased(self, fit_id: str, say: Callable[[str], None],
                    heartbeat: _Heartbeat, token: str) -> dict[str, Any]:
        row = get_fit(self.store, fit_id=fit_id)
        if row.status in ("published", "rejected", "failed"):  # done while we waited
            return fit_dict(row)
        store = self.store
        update_fit(store, fit_id=fit_id, status="running", started_at=store.clock(),
                   attempts=row.attempts + 1, worker=token)
        try:
            scenario_set = get_set(store, set_id=row.set_id)
            say(f"{row.set_id}: aggregating evidence")
            as_of = row.as_of or store.today()
            coverage = coverage_of(store, scenario_set=scenario_set, as_of=as_of)
            evidence = evidence_of(store, scenario_set=scenario_set, as_of=as_of,
                                   coverage=coverage)
            artifact = str(self._artifact_path(row.set_id, fit_id))
            say(f"{row.set_id}: sampling {evidence.n_periods} periods × "
                f"{evidence.n_indicators} indicators")
            settings = self.fit_settings
            if row.kind != "live":  # a replay is enumerated afresh and leaves the live base
                settings = replace(settings, sampler=replace(settings.sampler,
                                                             quick_refits=False))
            record = self.pool.run(FitJob(scenario_set, evidence, settings, artifact))
        except Exception as exc:  # the reason is recorded; the last good posterior stays
            log.exception("fit %s failed", fit_id)
            update_fit(store, fit_id=fit_id, status="failed", finished_at=store.clock(),
                       reason=f"{type(exc).__name__}: {exc}")
            return fit_dict(get_fit(store, fit_id=fit_id))
        if heartbeat.lost or not renew_lease(store, set_id=row.set_id, owner=token,
                                             seconds=self.lease_seconds):
            # Someone took the set over (we were presumed dead): do not publish twice.
            update_fit(store, fit_id=fit_id,
                       reason="lease lost before publishing; result discarded")
            return fit_dict(get_fit(store, fit_id=fit_id))
        # what the evidence covered: each indicator's date, and how far the nowcast runs past
        record = replace(record, coverage=coverage.to_dict(evidence.grid))
        passed = record.passed
        update_fit(
            store, fit_id=fit_id,
            status="published" if passed else "rejected",
            finished_at=store.clock(),
            as_of=evidence.as_of,
            set_hash=record.set_hash,
            evidence_hash=record.evidence_hash,
            seed=record.seed,
            diagnostics=record.diagnostics.to_dict(),
            summary=record.to_dict(),
            timings=record.timings.to_dict(),
            artifact=record.artifact,
            reason=None if passed else "diagnostics gate failed: "
            + "; ".join(record.diagnostics.failures),
        )
        say(f"{row.set_id}: {'published' if passed else 'rejected'}")
        if passed and row.kind == "live":
            for callback in self.on_publish:
                callback(row.set_id, fit_id)
        return fit_dict(get_fit(store, fit_id=fit_id))

    def _artifact_path(self, set_id: str, fit_id: str) -> Path:
        return Path(self.artifacts_dir) / set_id / f"{fit_id}.nc"
