"""The fit worker: a long-lived child process that keeps compiled models warm.

Sampling never runs on the API's event loop or in a request handler: fits go to one worker
process (spawned, not forked — forking a threaded server is unsafe) that compiles each set's
model once and swaps in new evidence on every refit. If the worker dies it is replaced and the
fit is recorded as failed.
"""

from __future__ import annotations

import io
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

from forecast import FitRecord, FitSettings, ModelCache, fit
from indicators import Evidence
from priors import ScenarioSet

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


@dataclass(frozen=True)
class FitJob:
    """One fit for the worker: the set, its evidence, the settings, where the artifact goes.

    Pickled as it is into the worker process (its parts are frozen dataclasses and arrays), so
    the worker neither re-parses the set nor rebuilds the evidence; the compiled-model cache
    keys on the set's content hash, which travels with it.
    """

    scenario_set: ScenarioSet
    evidence: Evidence
    settings: FitSettings
    artifact: str | None = None  # NetCDF path for the DataTree of a fit that passes
    seed: int | None = None  # overrides ``settings.sampler.seed`` (None: keep it)

    def fit_settings(self) -> FitSettings:
        """The settings the fit runs with (the job's seed, if any, in the sampler's)."""
        if self.seed is None:
            return self.settings
        return replace(self.settings, sampler=replace(self.settings.sampler, seed=self.seed))


def run_fit_job(job: FitJob) -> FitRecord:
    """Fit one set on one evidence snapshot (runs in the worker process).

    The DataTree of a fit that passes the gate is written to ``job.artifact`` (NetCDF, under a
    temporary name, then renamed: a published file is never overwritten or half-written).

    Returns
    -------
    FitRecord
        The fit's record, its ``artifact`` the path written (None when none was).

    Raises
    ------
    OSError
        The artifact could not be written (no space left, say), naming the path; the
        temporary file is removed, so the fit fails and the last good posterior stays.

    """
    result = fit(job.scenario_set, job.evidence, job.fit_settings(), cache=_CACHE)
    if not (job.artifact and result.passed):
        return result.record
    path = Path(job.artifact)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    # Rendered in memory, then written with plain file I/O: HDF5 hitting ENOSPC itself left
    # its file object broken, and closing it later crashed the worker (SIGSEGV in h5py).
    buffer = io.BytesIO()
    result.datatree.to_netcdf(buffer, engine="h5netcdf")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            out.write(buffer.getbuffer())
            out.flush()
            os.fsync(out.fileno())  # a late ENOSPC or EIO shows here, before the rename
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write the fit's artifact {path}: "
                                 f"{exc.strerror or exc}") from None
    return replace(result.record, artifact=str(path))


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

    def submit(self, job: FitJob) -> Future:
        """Queue a job; its future gives `run_fit_job`'s record."""
        if self.mode == "inline":
            future: Future = Future()
            try:
                future.set_result(run_fit_job(job))
            except Exception as exc:  # handed to the caller through the future
                future.set_exception(exc)
            return future
        return self._pool().submit(run_fit_job, job)

    def run(self, job: FitJob) -> FitRecord:
        """Run a job and wait for it; a dead worker is replaced and the error re-raised."""
        try:
            return self.submit(job).result()
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
