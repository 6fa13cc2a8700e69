"""The fit worker process lives exactly as long as the process that started it, takes fit
jobs as objects and keeps their compiled models warm."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PARENT = textwrap.dedent("""
    import os, sys, threading, time
    from service.worker import WorkerPool
    pool = WorkerPool("process")
    holder = {}
    def start():
        holder["pid"] = pool._pool().submit(os.getpid).result(timeout=60)
    if sys.argv[1] == "thread":  # started from a thread that then ends, as a request thread may
        worker = threading.Thread(target=start)
        worker.start()
        worker.join()
        time.sleep(2.5)
    else:
        start()
    print(holder["pid"], pool._pool().submit(os.getpid).result(timeout=60), flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(")")[-1].split()[0] != "Z"


def _start_parent(how: str) -> tuple[subprocess.Popen, int, int]:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, how], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE)
    line = parent.stdout.readline()
    parent.stdout.close()
    first, second = map(int, line.split())
    return parent, first, second


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_worker_exits_when_its_parent_is_killed():
    parent, worker, _ = _start_parent("main")
    try:
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its parent"
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_worker_survives_the_end_of_the_thread_that_started_it():
    parent, first, second = _start_parent("thread")
    try:
        assert first == second and _alive(first)  # the same worker, still serving
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.slow
def test_a_fit_job_crosses_into_the_worker_whose_second_fit_finds_the_model_compiled(tmp_path):
    """The job is pickled as it is (set, evidence, settings, seed); the record comes back."""
    import numpy as np

    from forecast import FitRecord, FitSettings, GateSettings, SamplerSettings
    from priors import parse_scenario_set
    from service.worker import FitJob, WorkerPool
    from tests.forecast.conftest import COUNTS_ONLY, make_evidence

    scenario_set = parse_scenario_set(COUNTS_ONLY, source="counts-only.yaml")
    shape = (8, len(scenario_set.indicators))
    evidence = make_evidence(scenario_set, np.full(shape, 3.0), np.ones(shape))
    # NUTS (a static set's default draws need no model): the worker keeps what it compiled
    settings = FitSettings(sampler=SamplerSettings(draws=300, tune=300, chains=2, method="nuts"),
                           gate=GateSettings(min_ess_bulk=100, max_rhat=1.05))
    pool = WorkerPool("process")
    try:
        first = pool.run(FitJob(scenario_set, evidence, settings,
                                artifact=str(tmp_path / "first.nc"), seed=5))
        second = pool.run(FitJob(scenario_set, evidence, settings, seed=5))
    finally:
        pool.shutdown()
    assert isinstance(first, FitRecord) and first.passed, first.diagnostics
    assert first.timings.compile_s > 0 and second.timings.compile_s == 0.0  # warm
    assert first.seed == second.seed == 5 and first.evidence_hash == evidence.hash()
    assert first.artifact == str(tmp_path / "first.nc") and (tmp_path / "first.nc").exists()
    assert second.artifact is None
    assert [s.probability for s in first.scenarios] == [s.probability for s in second.scenarios]
    assert FitRecord.from_dict(first.to_dict()) == first
