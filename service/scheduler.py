"""The refit scheduler (APScheduler 3.x), one per deployment.

Refits follow the evidence: every committed observation, retraction, review or set load queues
a fit of the sets it touches (`queue_refits`: one pending fit per set, so a burst is one fit)
and announces it (`service.changes`); the scheduler hears of it at once — PostgreSQL
``LISTEN``, or SQLite's change counter — from whichever process wrote it. A write after a quiet
spell runs its fit at once; the writes of a burst wait until they have been quiet for
``SIGNPOST_SETTLE`` seconds (at most ``SIGNPOST_SETTLE_MAX``), so a burst is two fits: its
first write's and one after it.

Safety nets: per scenario set, a job every ``SIGNPOST_REFIT_INTERVAL`` seconds queues and runs
a fit when the evidence hash (or the set) changed since the last fit that reached a verdict;
another job drains queued fits every ``SIGNPOST_QUEUE_POLL`` seconds (``POST /v1/fits``,
``signpost refit``) and takes over fits whose worker died (expired lease). Cross-process safety
comes from the lease in the database, not from APScheduler's in-memory ``max_instances``
(docs/design.md, "Service: storage, API, scheduler, worker, leases").
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from forecast import FitRecord
from service.changes import ChangeFeed, announce
from service.db import Database
from service.repositories.evidence import evidence_of
from service.repositories.fits import (
    get_fit,
    latest_finished,
    pending_statuses,
    queue_fit,
    runnable_fits,
)
from service.repositories.sets import get_set, set_ids
from service.runner import FitRunner

log = logging.getLogger("signpost.scheduler")
# seconds of quiet a write after a quiet spell waits for: the commits of one write (the row,
# its queued refit, the announcement) land together, and a drain between them finds no fit
LEADING_QUIET = 0.1


class _SkipNoise(logging.Filter):
    """Drop APScheduler's warning that a still-running drain job skipped a tick (expected)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


logging.getLogger("apscheduler.scheduler").addFilter(_SkipNoise())


class RefitScheduler:
    """Owns the APScheduler instance and the jobs of every loaded set.

    Parameters
    ----------
    store : Database
    runner : FitRunner
    refit_interval : float
        Seconds between evidence checks of one set.
    queue_poll : float
        Seconds between polls for queued or orphaned fits (the safety net of the change feed).
    feed : ChangeFeed, optional
        Where committed changes are heard; without one, queued fits wait for the queue poll.
    settle : float
        Seconds of quiet after a change before the queued fits run (a burst is one fit).
    settle_max : float
        The longest a change waits for that quiet.
    refine_after : float
        Seconds without a write after a quick (re-weighted) refit is published before the
        enumerated fit of the same evidence refines it (decision 015).

    """

    def __init__(self, store: Database, runner: FitRunner, refit_interval: float,
                 queue_poll: float, feed: ChangeFeed | None = None, settle: float = 1.0,
                 settle_max: float = 5.0, refine_after: float = 10.0):
        self.store = store
        self.runner = runner
        self.refit_interval = refit_interval
        self.queue_poll = queue_poll
        self.feed = feed
        self.settle = settle
        self.settle_max = settle_max
        self.refine_after = refine_after
        self._refine_due: dict[str, float] = {}  # set id → when its quick fit may be refined
        runner.on_publish.append(self._published)
        self._changed = threading.Condition()
        self._first_change: float | None = None
        self._last_change = -math.inf
        self._leading = False
        self._stopping = False
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1,
                          # a refit that fell due while the process was down still runs
                          "misfire_grace_time": int(max(refit_interval, 60))},
        )

    def start(self) -> None:
        """Schedule the jobs and start the background threads."""
        self.scheduler.add_job(self._drain_on_interval, "interval", seconds=self.queue_poll,
                               id="drain-queue", replace_existing=True,
                               next_run_time=datetime.now(UTC))
        self.scheduler.add_job(self.refine, "interval",
                               seconds=min(1.0, max(0.1, self.refine_after / 2)),
                               id="refine", replace_existing=True)
        self.scheduler.add_job(self.sync_sets, "interval", seconds=60, id="sync-sets",
                               replace_existing=True, next_run_time=datetime.now(UTC))
        self.scheduler.start()
        if self.feed is not None:
            self.feed.subscribe(self.heard)
            threading.Thread(target=self._follow_changes, daemon=True,
                             name="refit-on-change").start()

    def shutdown(self) -> None:
        """Stop scheduling (running jobs finish in their threads)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def heard(self, topics: set[str]) -> None:
        """A change was committed somewhere (the feed's callback): drain once it settles."""
        if topics <= {"published"}:  # our own news; nothing new to fit
            return
        with self._changed:
            now = time.monotonic()
            if self._first_change is None:
                self._first_change = now
                # the first write after a quiet spell runs at once; a burst waits to settle
                self._leading = now - self._last_change >= self.settle
            self._last_change = now
            self._changed.notify_all()

    def _follow_changes(self) -> None:
        """Drain the queue after each settled change.

        One thread, so these drains never overlap; the queue poll's may run beside one, and
        the lease keeps it to one fit per set.
        """
        while True:
            with self._changed:
                while self._first_change is None and not self._stopping:
                    self._changed.wait()
                if self._stopping:
                    return
                # quiet, or settle_max; a lone write's own commits (the row, then its queued
                # fit) come milliseconds apart: its drain waits for those alone
                quiet = min(self.settle, LEADING_QUIET) if self._leading else self.settle
                while not self._stopping:
                    now = time.monotonic()
                    due = min(self._last_change + quiet,
                              self._first_change + self.settle_max)
                    if now >= due:
                        break
                    self._changed.wait(due - now)
                self._first_change = None
            self.drain()

    def _published(self, set_id: str, fit_id: str) -> None:
        """A live fit was published here: a quick one is refined once writes pause."""
        record = FitRecord.from_stored(get_fit(self.store, fit_id=fit_id).summary)
        with self._changed:
            if record is not None and getattr(record.sampler, "quick", False):
                self._refine_due[set_id] = time.monotonic() + self.refine_after
            else:
                self._refine_due.pop(set_id, None)

    def refine(self) -> None:
        """Refit, by enumerating, each set whose quick fit is ``refine_after`` s without writes.

        The quick fit's evidence is unchanged (else a newer fit is queued, and re-arms this
        when published), so the worker, which re-weights a snapshot only once, enumerates.
        """
        now = time.monotonic()
        with self._changed:
            if now - self._last_change < self.refine_after:
                return
            due = [set_id for set_id, when in self._refine_due.items() if when <= now]
            for set_id in due:
                del self._refine_due[set_id]
        for set_id in due:
            try:
                if pending_statuses(self.store, set_id=set_id) & {"queued", "running"}:
                    continue
                fit_id = queue_fit(self.store, scenario_set=get_set(self.store, set_id=set_id),
                                   requested_by="refine")
                self.runner.run_fit(fit_id)
            except Exception:  # the next quick fit re-arms it; the interval check remains
                log.exception("refining the quick fit of %s failed", set_id)

    def sync_sets(self) -> None:
        """Give every loaded set its refit job (sets loaded later get one too)."""
        for set_id in set_ids(self.store):
            job_id = f"refit:{set_id}"
            if self.scheduler.get_job(job_id) is None:
                self.scheduler.add_job(self.check_set, "interval", args=[set_id],
                                       seconds=self.refit_interval, id=job_id,
                                       replace_existing=True, next_run_time=datetime.now(UTC))

    def check_set(self, set_id: str) -> str | None:
        """Queue and run a fit of ``set_id`` if its evidence changed; returns the fit id."""
        try:
            fit_id = self.queue_if_changed(self.store, set_id)
            if fit_id:
                self.runner.run_fit(fit_id)
            return fit_id
        except Exception:  # keep the scheduler alive; the next tick tries again
            log.exception("refit check of %s failed", set_id)
            return None

    @staticmethod
    def queue_if_changed(store: Database, set_id: str, requested_by: str = "scheduler",
                         after_running: bool = False) -> str | None:
        """Queue a fit when the evidence or the set changed since the last verdict.

        A queued fit (not started, so it will read the newest evidence) makes a second one
        unnecessary; so does a running one, unless ``after_running``: the evidence changed
        after that fit read it.
        """
        # checked first: a queued fit will read the newest evidence, so a burst of changes
        # (while a fit runs, too) is one more fit, and costs no evidence query
        pending = pending_statuses(store, set_id=set_id)
        if "queued" in pending or (not after_running and "running" in pending):
            return None
        scenario_set = get_set(store, set_id=set_id)
        evidence = evidence_of(store, scenario_set=scenario_set)
        last = latest_finished(store, set_id=set_id)
        if (last is not None and last.evidence_hash == evidence.hash()
                and last.set_hash == scenario_set.content_hash):
            return None
        return queue_fit(store, scenario_set=scenario_set, requested_by=requested_by)

    def _drain_on_interval(self) -> None:
        """The queue poll's drain, unless writes are still settling (they drain after)."""
        first = self._first_change
        if first is not None and time.monotonic() - first < self.settle_max:
            return
        self.drain()

    def drain(self) -> None:
        """Run queued fits and take over fits whose lease expired."""
        try:
            for row in runnable_fits(self.store):
                self.runner.run_fit(row.id)
        except Exception:
            log.exception("draining the fit queue failed")


def queue_refits(store: Database, set_ids: list[str], requested_by: str) -> dict[str, str]:
    """Queue a refit of each set whose evidence changed (a review, say); returns the fit ids.

    The scheduler hears of it at once (`service.changes`) and runs them once the writes
    settle; its drain job (every ``SIGNPOST_QUEUE_POLL`` seconds) is the safety net.
    """
    queued = {}
    for set_id in set_ids:
        fit_id = RefitScheduler.queue_if_changed(store, set_id, requested_by=requested_by,
                                                 after_running=True)
        if fit_id:
            queued[set_id] = fit_id
    if set_ids:  # also when nothing was queued: the scheduler waits for a burst to settle
        with store.Session.begin() as session:
            announce(session, "evidence", set_ids)
    return queued
