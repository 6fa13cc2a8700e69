"""The fit worker: a long-lived child process that keeps compiled models warm.

Sampling never runs on the API's event loop or in a request handler: fits go to one worker
process (spawned, not forked — forking a threaded server is unsafe) that compiles each set's
model once and swaps in new evidence on every refit. If the worker dies it is replaced and the
fit is recorded as failed.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from forecast import FitSettings, ModelCache, fit
from indicators import Evidence
from priors import parse_scenario_set

_CACHE = ModelCache()


def _watch_parent(parent_pid: int, interval: float = 1.0) -> None:
    """Exit as soon as the parent is gone (``getppid`` changes), e.g. after kill -9.

    Not ``PR_SET_PDEATHSIG``: it fires when the parent *thread* that spawned the worker ends
    (a request thread, say), killing a worker whose server lives on, and it misses a parent
    that died before the worker set it.
    """
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(interval)


def _init_worker(parent_pid: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="watch-parent").start()


def run_fit_job(set_yaml: str, set_source: str, evidence: dict[str, Any],
                settings: dict[str, Any], artifact: str | None) -> dict[str, Any]:
    """Fit one set on one evidence snapshot (runs in the worker process).

    The DataTree of a fit that passes the gate is written to ``artifact`` (NetCDF, under a
    temporary name, then renamed: a published file is never overwritten or half-written).

    Returns
    -------
    dict
        ``Fit.summary()`` plus ``"artifact"`` (the path, or None).

    """
    scenario_set = parse_scenario_set(set_yaml, source=set_source)
    result = fit(scenario_set, Evidence.from_dict(evidence), FitSettings.from_mapping(settings),
                 cache=_CACHE)
    summary = result.summary()
    summary["artifact"] = None
    if artifact and result.passed:
        path = Path(artifact)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        result.datatree.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
        summary["artifact"] = str(path)
    return summary


def fit_settings_dict(settings: FitSettings) -> dict[str, Any]:
    """FitSettings as the plain mapping the worker takes."""
    return {"sampler": asdict(settings.sampler), "gate": asdict(settings.gate),
            "dynamic": settings.dynamic}


class WorkerPool:
    """Runs fit jobs in one warm child process (``mode="process"``) or inline.

    Parameters
    ----------
    mode : {"process", "inline"}
        ``inline`` runs in the calling thread (the CLI's one-shot refit).

    """

    def __init__(self, mode: str = "process"):
        self.mode = mode
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=1, mp_context=get_context("spawn"), initializer=_init_worker,
                    initargs=(os.getpid(),))
            return self._executor

    def submit(self, *args: Any) -> Future:
        """Queue a job; ``args`` as for `run_fit_job`."""
        if self.mode == "inline":
            future: Future = Future()
            try:
                future.set_result(run_fit_job(*args))
            except Exception as exc:  # handed to the caller through the future
                future.set_exception(exc)
            return future
        return self._pool().submit(run_fit_job, *args)

    def run(self, *args: Any) -> dict[str, Any]:
        """Run a job and wait for it; a dead worker is replaced and the error re-raised."""
        try:
            return self.submit(*args).result()
        except BrokenProcessPool:
            with self._lock:
                self._executor = None
            raise

    def shutdown(self) -> None:
        """Stop the worker process."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
