"""Prometheus metrics: what the database holds, read at scrape time, and each process's own.

Every process that serves metrics — each API replica (``GET /metrics``) and
``signpost scheduler`` (its own port, ``SIGNPOST_SCHEDULER_METRICS_PORT``) — has its own
`CollectorRegistry` (`metrics_registry`) holding a `StoreCollector`. The collector reads the
database when Prometheus scrapes, so every replica and the scheduler report the same numbers
whichever process ran a fit (docs/metrics.md):

- ``signpost_scenario_probability{set_id,scenario}``: the served posterior (the process's
  `PosteriorCache`, version-checked at each scrape);
- ``signpost_last_published_timestamp_seconds{set_id}``: when the served fit was published;
- ``signpost_coverage_lag_seconds{set_id,indicator}``: seconds since the end of the day each
  indicator's log is covered through today (`service.repositories.evidence.coverages_of`);
- ``signpost_fits_total{set_id,status}``: fits that ended published, rejected or failed (a
  counter: fit rows are never deleted and these statuses are final);
- ``signpost_fits_pending{set_id,status}``: fits queued or running now;
- ``signpost_fit_duration_seconds{set_id,sampler}``: each timed fit's recorded total
  (``fits.timings``), a histogram;
- ``signpost_database_up``: whether the database answered the scrape.

Per process: ``signpost_request_duration_seconds`` (the API's middleware,
`service.api.metrics`), ``signpost_scheduler_*`` where the process runs the refit scheduler
(`SchedulerCollector`), and prometheus_client's ``process_*`` and ``python_*`` collectors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from sqlalchemy import func, select

from service.db import FitRow, aware
from service.repositories.evidence import coverages_of
from service.repositories.sets import list_sets

if TYPE_CHECKING:
    from service.context import Services
    from service.db import Database

__all__ = [
    "FIT_DURATION_BUCKETS",
    "FitDurations",
    "SchedulerCollector",
    "coverage_lag",
    "StoreCollector",
    "metrics_registry",
    "serve_metrics",
]

log = logging.getLogger("signpost.metrics")

# seconds: a static fit takes ~0.2 s, a dynamic one ~10 s, the NUTS fallback up to its budget
FIT_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 600.0)
FINAL = ("published", "rejected", "failed")
PENDING = ("queued", "running")
TIMED = ("published", "rejected")  # the rows that record the fit's timings
# how much earlier than the newest finished fit seen a fit row may still turn up (another
# process's clock, a slow commit): rows finished since then are read again at each scrape
LATE = timedelta(hours=1)

ServicesGetter = Callable[[], "Services | None"]


class FitDurations:
    """Each timed fit's recorded duration, by set and sampler, read once per fit row.

    A finished fit row does not change, so a scrape reads only the rows finished since the
    newest one seen (less `LATE`), never the whole table's JSON again; every process reading
    one database ends with the same histogram.
    """

    def __init__(self, buckets: tuple[float, ...] = FIT_DURATION_BUCKETS) -> None:
        self.buckets = buckets
        # (set_id, sampler) -> [count per bucket (not cumulative) ..., count over the last, sum]
        self._series: dict[tuple[str, str], list[float]] = {}
        self._recent: dict[str, datetime] = {}  # ids read that finished within LATE of _newest
        self._newest: datetime | None = None
        self._lock = threading.Lock()  # scrapes may overlap

    def update(self, store: Database) -> None:
        """Add the timed fits finished since the last update."""
        seconds = FitRow.timings["total_s"].as_float()
        sampler = FitRow.summary[("sampler", "name")].as_string()
        query = (select(FitRow.id, FitRow.set_id, FitRow.finished_at, sampler, seconds)
                 .where(FitRow.status.in_(TIMED), FitRow.finished_at.is_not(None)))
        with self._lock:
            if self._newest is not None:
                query = query.where(FitRow.finished_at >= self._newest - LATE)
            with store.Session() as session:
                rows = session.execute(query).all()
            for fit_id, set_id, finished_at, name, total in rows:
                if fit_id in self._recent:
                    continue
                finished_at = aware(finished_at)
                self._recent[fit_id] = finished_at
                self._newest = max(self._newest or finished_at, finished_at)
                if total is not None:
                    self._add((set_id, name or "unknown"), float(total))
            if self._newest is not None:  # rows before this are never read again
                cutoff = self._newest - LATE
                self._recent = {k: v for k, v in self._recent.items() if v >= cutoff}

    def _add(self, key: tuple[str, str], seconds: float) -> None:
        series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
        index = next((i for i, bound in enumerate(self.buckets) if seconds <= bound),
                     len(self.buckets))
        series[index] += 1
        series[-1] += seconds

    def family(self) -> HistogramMetricFamily:
        """The histogram, one series per set and sampler."""
        family = HistogramMetricFamily(
            "signpost_fit_duration_seconds",
            "Seconds each fit that reached a verdict (published or rejected) took, as its row "
            "records (timings.total_s), by set and sampler",
            labels=["set_id", "sampler"])
        with self._lock:
            for (set_id, sampler), series in sorted(self._series.items()):
                cumulative, buckets = 0.0, []
                for bound, count in zip((*self.buckets, float("inf")), series[:-1],
                                        strict=True):
                    cumulative += count
                    buckets.append((floatToGoString(bound), cumulative))
                family.add_metric([set_id, sampler], buckets, series[-1])
        return family


class StoreCollector:
    """The metrics the database holds, read at each scrape (the same in every process).

    ``services`` returns the process's services, or None before they are built (an app
    whose lifespan has not started), when nothing is reported.
    """

    def __init__(self, services: ServicesGetter) -> None:
        self._services = services
        self.durations = FitDurations()

    def collect(self) -> Iterator[Metric]:
        """Read the database; ``signpost_database_up`` 0 (and nothing else) if it fails."""
        services = self._services()
        if services is None:
            return
        up = GaugeMetricFamily("signpost_database_up",
                               "1 if the database answered this scrape, else 0")
        try:
            families = self._read(services)
        except Exception:  # a database hiccup: say so; the process metrics still come
            log.exception("reading metrics from the database failed")
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _read(self, services: Services) -> list[Metric]:
        store, settings, cache = services.store, services.settings, services.posterior_cache
        now = store.clock()
        scenario_sets = list_sets(store)
        probability = GaugeMetricFamily(
            "signpost_scenario_probability",
            "Posterior probability of each scenario in the served (newest published) fit",
            labels=["set_id", "scenario"])
        published = GaugeMetricFamily(
            "signpost_last_published_timestamp_seconds",
            "Unix time the served fit of each set was published", labels=["set_id"])
        for scenario_set in scenario_sets:
            payload = cache.get(store, scenario_set.id, now, settings.stale_after)
            if payload is None:
                continue
            for scenario in payload["scenarios"]:
                if scenario["probability"] is not None:
                    probability.add_metric([scenario_set.id, scenario["id"]],
                                           scenario["probability"])
            published.add_metric([scenario_set.id],
                                 datetime.fromisoformat(payload["fitted_at"]).timestamp())

        lag = GaugeMetricFamily(
            "signpost_coverage_lag_seconds",
            "Seconds since the end of the day each indicator's log is covered through (its "
            "latest review, or the rule's fallback), per set; absent where nothing is covered",
            labels=["set_id", "indicator"])
        coverages = coverages_of(store, scenario_sets=scenario_sets, as_of=store.today())
        for set_id, coverage in coverages.items():
            for item in coverage.indicators:
                if item.covered_through is not None:
                    lag.add_metric([set_id, item.indicator],
                                   coverage_lag(item.covered_through, now))

        with store.Session() as session:
            counts = {(set_id, status): n for set_id, status, n in session.execute(
                select(FitRow.set_id, FitRow.status, func.count())
                .group_by(FitRow.set_id, FitRow.status))}
        set_ids = sorted({s.id for s in scenario_sets} | {k[0] for k in counts})
        fits = CounterMetricFamily(
            "signpost_fits", "Fits that ended in each final status, by set (from the fit rows)",
            labels=["set_id", "status"])
        pending = GaugeMetricFamily(
            "signpost_fits_pending", "Fits queued or running now, by set", labels=["set_id",
                                                                                  "status"])
        for set_id in set_ids:
            for status in FINAL:
                fits.add_metric([set_id, status], counts.get((set_id, status), 0))
            for status in PENDING:
                pending.add_metric([set_id, status], counts.get((set_id, status), 0))

        self.durations.update(store)
        return [probability, published, lag, fits, pending, self.durations.family()]


def coverage_lag(covered_through: date, now: datetime) -> float:
    """Seconds from the end of the day ``covered_through`` (UTC) to ``now``; 0 before it ends."""
    end = datetime.combine(covered_through + timedelta(days=1), time(), UTC)
    return max(0.0, (now - end).total_seconds())


class SchedulerCollector:
    """The refit scheduler of this process, if it runs one: running, and each job's next run.

    A job whose next run lies well in the past is a scheduler that stopped draining.
    """

    def __init__(self, services: ServicesGetter) -> None:
        self._services = services

    def collect(self) -> Iterator[Metric]:
        """Nothing unless this process runs the scheduler."""
        services = self._services()
        refit = services.scheduler if services is not None else None
        if refit is None:
            return
        running = GaugeMetricFamily("signpost_scheduler_running",
                                    "1 while this process's refit scheduler runs")
        running.add_metric([], 1.0 if refit.scheduler.running else 0.0)
        yield running
        next_run = GaugeMetricFamily(
            "signpost_scheduler_job_next_run_timestamp_seconds",
            "Unix time each scheduler job (drain-queue, sync-sets, refit:<set>) runs next",
            labels=["job_id"])  # not "job": Prometheus' own target label
        for job in refit.scheduler.get_jobs():
            if job.next_run_time is not None:
                next_run.add_metric([job.id], job.next_run_time.timestamp())
        yield next_run


def metrics_registry(services: ServicesGetter) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) for one process or app.

    The store's and the scheduler's collectors, and the process, platform and GC collectors;
    several apps in one process (tests) each get their own.
    """
    registry = CollectorRegistry()
    registry.register(StoreCollector(services))
    registry.register(SchedulerCollector(services))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve_metrics(services: Services, host: str, port: int) -> Callable[[], None]:
    """Serve ``services``' metrics on ``http://host:port/metrics`` in a daemon thread.

    Returns the function that stops the server. Raises OSError when the port is taken.
    """
    server, thread = start_http_server(port, addr=host,
                                       registry=metrics_registry(lambda: services))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
