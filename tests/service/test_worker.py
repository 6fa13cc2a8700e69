"""The fit worker process lives exactly as long as the process that started it."""

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
