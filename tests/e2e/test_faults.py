"""Faults under load, end to end: the short versions of ``make soak`` (bench/soak.py).

Real processes on loopback — API replicas (``signpost serve``) and one ``signpost scheduler``
— with a client load of ETag polls and idempotent writes, each retried once. Every fault is
real: ``kill -9``, a tmpfs that fills up, another process holding SQLite's write lock, a
PostgreSQL server of our own stopped and started (never the machine's: others use it). A
step fails on any answer that is neither good nor a 503 with ``Retry-After`` (a 500, say), on
a write acknowledged and not stored, a row stored twice, a fit left pending, or a set whose
served posterior did not see every stored row once the faults are over. The harness is
bench/soak.py's, so the suite and the soak check the same things; the soak runs them longer
and prints the figures (docs/soak.md).
"""

from __future__ import annotations

import time

import pytest

from bench.soak import WORLD, Plan, ThrowawayPostgres, Tmpfs, figures, soak

pytestmark = pytest.mark.slow

NO_TMPFS = Tmpfs.unavailable()


def say(message: str) -> None:
    """Progress, timed (shown with a failure's captured output)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def test_sqlite_under_load_a_full_disk_a_lock_and_kills(tmp_path):
    plan = Plan(sets=(WORLD,), replicas=2, mixed_seconds=6, no_space=NO_TMPFS is None,
                lock_hold=4, api_kills=1, scheduler_kills=2, threads=2, pace=0.03)
    report = soak("SQLite", tmp_path, f"sqlite:///{(tmp_path / 'signpost.db').resolve()}",
                  plan, say=say)
    shown = figures(report)
    print(shown)
    assert report.problems == [], shown
    steps = {step.tally.name: step for step in report.steps}
    assert set(steps) == {"mixed", "sqlite-lock", "kills"} | (
        {"no-space"} if NO_TMPFS is None else set()), shown
    assert steps["mixed"].tally.writes > 0 and steps["mixed"].facts["fits published"], shown
    assert steps["kills"].facts["api kills"] == 1, shown
    assert steps["kills"].facts["scheduler kills"] == 2, shown
    audit = report.audit
    assert audit.acknowledged == audit.stored > 0 and audit.lost == audit.duplicated == 0, shown
    assert report.total.errors_500 == 0, shown


def test_a_full_disk_needs_a_tmpfs():
    """The full-disk step of the test above runs only where a tmpfs can be mounted."""
    if NO_TMPFS:
        pytest.skip(NO_TMPFS)


def test_postgresql_stopped_and_started_under_load(tmp_path):
    if reason := ThrowawayPostgres.unavailable():
        pytest.skip(reason)
    server = ThrowawayPostgres()
    try:
        # writes are what an outage refuses: more of them than the 5 % of the mixed load
        plan = Plan(sets=(WORLD,), replicas=1, mixed_seconds=0, outages=1, down=3,
                    threads=2, pace=0.03, write_share=0.2)
        report = soak("PostgreSQL", tmp_path, server.create_database("signpost"), plan,
                      server=server, say=say)
    finally:
        server.destroy()
    shown = figures(report)
    print(shown)
    assert report.problems == [], shown
    down = next(step for step in report.steps if step.tally.name == "pg-down")
    assert down.facts["writes answered 503"] > 0 and down.tally.errors_500 == 0, shown
    assert down.facts["polls served from memory"] == down.tally.polls > 0, shown
    audit = report.audit
    assert audit.acknowledged == audit.stored > 0 and audit.lost == audit.duplicated == 0, shown
