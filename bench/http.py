"""(d) Throughput and p50/p99 latency of GET /v1/sets/{id}/posterior at 32 concurrent
connections, vs the ceiling of a polling endpoint (`bench/bare_app.py`: an async FastAPI
handler returning pre-rendered bytes with an ETag), with and without a fit running, for plain
GETs (200, the body) and for ETag polls (If-None-Match: 304, what a dashboard mostly sends).
The servers are laid out as docker-compose.yml deploys them: an API replica with
``SIGNPOST_SCHEDULER=false`` and a separate ``signpost scheduler`` process that runs the fits.

Run: ``make bench-http`` (uses ``wrk`` — ``apt-get install wrk`` — or a Python load generator
when it is absent). Both servers are real uvicorn processes on loopback, measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import TODAY, hardware, sample_store
from forecast import FitSettings
from service.repositories.fits import create_fit, get_fit
from service.repositories.keys import create_key
from service.repositories.sets import set_ids
from service.runner import FitRunner
from service.views import fit_dict
from service.worker import WorkerPool

SET_ID = "sino-russian-convergence"
DURATION = 10
CONNECTIONS = 32
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "uvicorn", *args, "--log-level", "warning",
                             "--no-access-log"], env={**os.environ, **env}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never answered")


def load(url: str, etag: str | None = None) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) over DURATION seconds at CONNECTIONS connections.

    With ``etag``, every request sends it as If-None-Match (an ETag poll: 304s).
    """
    if shutil.which("wrk"):
        header = ["-H", f"If-None-Match: {etag}"] if etag else []
        out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency",
                              *header, url], capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

        def pct(p):
            value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
            return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
        return rps, pct(50), pct(99)
    return asyncio.run(_python_load(url, etag))


async def _python_load(url: str, etag: str | None) -> tuple[float, float, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + DURATION
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=CONNECTIONS)) as client:
        async def worker():
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await client.get(url, headers={"If-None-Match": etag} if etag else None)
                latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    latencies.sort()
    return (len(latencies) / DURATION, statistics.median(latencies),
            latencies[int(0.99 * (len(latencies) - 1))])


SAMPLED = FitSettings.from_mapping({"sampler": {"reweight": False}})


def main() -> None:
    print(hardware())
    print(f"load generator: {'wrk' if shutil.which('wrk') else 'python httpx'}; "
          f"{CONNECTIONS} connections, {DURATION} s per run")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        store = sample_store(url)
        runner = FitRunner(store, WorkerPool("inline"), SAMPLED, 120, Path(tmp) / "fits")
        for set_id in set_ids(store):  # nothing for the server's scheduler to queue at start
            runner.run_fit(create_fit(store, set_id=set_id, requested_by="bench"))
        admin = create_key(store, role="admin")
        port, bare_port = free_port(), free_port()
        env = {"SIGNPOST_VAR_DIR": tmp, "SIGNPOST_DATABASE_URL": url,
               "SIGNPOST_TODAY": TODAY.isoformat(), "SIGNPOST_QUEUE_POLL": "0.2",
               "SIGNPOST_REFIT_INTERVAL": "3600",
               # every fit samples (a re-weighted refit takes ~0.5 s): the heavier case for reads
               "SIGNPOST_FIT_REWEIGHT": "false"}
        # The deployed topology (docker-compose.yml): an API replica without the scheduler, and
        # one scheduler process whose worker runs the fits.
        servers = [start(["service.api.app:app_factory", "--factory", "--port", str(port)],
                         {**env, "SIGNPOST_SCHEDULER": "false"}),
                   start(["bench.bare_app:app", "--port", str(bare_port)], {}),
                   subprocess.Popen([str(Path(sys.executable).parent / "signpost"), "scheduler"],
                                    env={**os.environ, **env}, cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)]
        try:
            posterior = f"http://127.0.0.1:{port}/v1/sets/{SET_ID}/posterior"
            bare = f"http://127.0.0.1:{bare_port}/const"
            wait(posterior)
            wait(bare)
            # Warm the server's fit worker (its first fit compiles, single-threaded, for ~20 s):
            # "while a fit runs" means sampling on both cores, as every later refit does.
            warm_up = httpx.post(f"http://127.0.0.1:{port}/v1/fits", json={"set_id": SET_ID},
                                 headers={"Authorization": f"Bearer {admin}"},
                                 timeout=10).json()["fit_id"]
            while fit_dict(get_fit(store, fit_id=warm_up))["status"] in ("queued", "running"):
                time.sleep(0.2)
            results = {}
            for label in ("no fit", "fit running"):
                stop = threading.Event()
                fits = []
                if label == "fit running":
                    def keep_fitting(stop=stop, fits=fits):
                        while not stop.is_set():
                            r = httpx.post(f"http://127.0.0.1:{port}/v1/fits",
                                           json={"set_id": SET_ID}, timeout=10,
                                           headers={"Authorization": f"Bearer {admin}"})
                            fit_id = r.json()["fit_id"]
                            fits.append(fit_id)
                            while not stop.is_set() and get_fit(
                                    store, fit_id=fit_id).status in ("queued", "running"):
                                time.sleep(0.05)
                    feeder = threading.Thread(target=keep_fitting)
                    feeder.start()
                    deadline = time.monotonic() + 120
                    while not any(get_fit(store, fit_id=f).status == "running"
                                  for f in fits[-1:]):
                        if time.monotonic() > deadline:
                            raise RuntimeError("no fit started")
                        time.sleep(0.05)
                for mode in ("GET", "ETag poll"):
                    tags = ((httpx.get(posterior).headers["etag"], httpx.get(bare).headers["etag"])
                            if mode == "ETag poll" else (None, None))
                    results[f"{label}, {mode}"] = (load(posterior, tags[0]),
                                                   load(bare, tags[1]))
                stop.set()
                if label == "fit running":
                    feeder.join()
                    done = [fit_dict(get_fit(store, fit_id=f))["status"] for f in fits]
                    print(f"  fits during the runs: {len(done)} "
                          f"({done.count('published')} published)")
            for label, ((rps, p50, p99), (b_rps, b_p50, b_p99)) in results.items():
                print(f"  {label:23s} posterior {rps:7.0f} req/s p50 {p50:6.2f} ms "
                      f"p99 {p99:6.2f} ms | ceiling {b_rps:7.0f} req/s p50 {b_p50:6.2f} ms "
                      f"p99 {b_p99:6.2f} ms | throughput ratio {rps / b_rps:4.2f}")
            for mode in ("GET", "ETag poll"):
                (rps, _, p99), (b_rps, _, _) = results[f"fit running, {mode}"]
                print(f"  target while a fit runs ({mode}): ≥ 0.70 of the ceiling's throughput "
                      f"and p99 ≤ 25 ms: {'met' if rps / b_rps >= 0.7 and p99 <= 25 else 'MISSED'}")
        finally:
            for server in servers:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            store.dispose()


if __name__ == "__main__":
    main()
