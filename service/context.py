"""Wiring: settings → store, worker pool, fit runner and scheduler (shared by API and CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date

from service.alerts import AlertDispatcher
from service.changes import ChangeFeed
from service.db import Database
from service.posterior import PosteriorCache
from service.runner import FitRunner, make_owner
from service.scheduler import RefitScheduler
from service.settings import Settings
from service.worker import WorkerPool


def configure_compile_cache(settings: Settings) -> None:
    """Keep pytensor's compile cache under ``var/`` (persistent, writable), unless set."""
    if "base_compiledir" not in os.environ.get("PYTENSOR_FLAGS", ""):
        cache = (settings.var_dir / "pytensor").resolve()
        cache.mkdir(parents=True, exist_ok=True)
        flags = os.environ.get("PYTENSOR_FLAGS", "")
        os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags,
                                                               f"base_compiledir={cache}"]))


@dataclass
class Services:
    """Everything a Signpost process needs, built from one Settings object."""

    settings: Settings
    store: Database
    pool: WorkerPool
    runner: FitRunner
    scheduler: RefitScheduler | None = field(default=None)
    posterior_cache: PosteriorCache = field(default_factory=PosteriorCache)
    feed: ChangeFeed | None = field(default=None)
    alerts: AlertDispatcher | None = field(default=None)

    @classmethod
    def build(cls, settings: Settings, worker_mode: str | None = None,
              role: str = "worker") -> Services:
        """Build the store (not migrated), worker pool and runner."""
        configure_compile_cache(settings)
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        today = date.fromisoformat(settings.today) if settings.today else None
        store = Database(settings.url, grades=settings.grade_table(), today=today,
                      coverage_rule=settings.coverage,
                      busy_timeout=settings.sqlite_busy_timeout)
        pool = WorkerPool(worker_mode or settings.worker)
        runner = FitRunner(store, pool, settings.fit_settings(), settings.lease_seconds,
                           settings.artifacts_dir, owner=make_owner(role))
        services = cls(settings=settings, store=store, pool=pool, runner=runner,
                       posterior_cache=PosteriorCache(settings.word_table()))
        runner.on_publish.append(services.posterior_cache.invalidate)
        # a published live fit's alerts are recorded at once and sent on their own threads
        services.alerts = AlertDispatcher.from_settings(store, settings)
        runner.on_publish.append(services.alerts.on_publish)
        return services

    def change_feed(self) -> ChangeFeed:
        """The process's feed of committed changes (started on first use)."""
        if self.feed is None:
            self.feed = ChangeFeed(self.settings.url, poll=self.settings.change_poll).start()
        return self.feed

    def start_scheduler(self) -> RefitScheduler:
        """Start the refit scheduler in background threads, woken by the change feed."""
        settings = self.settings
        self.scheduler = RefitScheduler(self.store, self.runner, settings.refit_interval,
                                        settings.queue_poll, feed=self.change_feed(),
                                        settle=settings.settle, settle_max=settings.settle_max,
                                        refine_after=settings.refine_after)
        self.scheduler.start()
        if self.alerts is not None:  # the publishing process sends what a crash left pending
            self.alerts.resume()
        return self.scheduler

    def close(self) -> None:
        """Stop the change feed, the scheduler and the worker; close database connections."""
        if self.feed is not None:
            self.feed.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.alerts is not None:
            self.alerts.close()
        self.pool.shutdown()
        self.store.dispose()
