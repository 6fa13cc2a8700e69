"""The analyst's loop, from outside, with default settings: POST an observation, then poll
``GET /v1/sets/{id}/posterior`` until its ``fit_id`` changes.

What a user of ``make run`` sees: a fresh database loaded as ``make run`` loads it (``signpost
init``, the sample imported with its review, ``signpost refit``), then ``signpost serve`` with
no ``SIGNPOST_*`` setting but the var directory (and pytensor's compile cache, as the Makefile
keeps it). The first observation per set after the server starts warms its worker (the model
is compiled or read from the cache there) and is reported apart; then ``ROUNDS`` observations
per set, one at a time, each timed from the POST being sent to the first GET showing a new
fit id, rounds ``PAUSE`` (2 s) apart — lone writes, as an analyst makes them. Polls run every
10 ms. Each round also reads the new fit's own timings
(``GET /v1/fits/{id}``) to split the wait into the fit and everything around it.

Then, on the same server, ``POST /v1/sets/{id}/what-if`` with one observation (target ≤ 1 s
static, ≤ 3 s dynamic), ``GET /attribution`` and ``GET /watchlist``, each timed from outside
(the median of ``ROUNDS // 2`` calls after a first one).

Target (issue 13): median ≤ 1 s, p95 ≤ 2 s, on both bundled sets. Run: ``make bench-loop``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import SAMPLE, hardware
from bench.http import free_port, wait

ROOT = Path(__file__).resolve().parents[1]
SIGNPOST = str(Path(sys.executable).parent / "signpost")
ROUNDS = int(os.environ.get("BENCH_LOOP_ROUNDS", "12"))
# An analyst logs a report after reading the last number, not in the same instant: the rounds
# are this far apart, so each is a lone write (a burst waits to settle: SIGNPOST_SETTLE).
PAUSE = float(os.environ.get("BENCH_LOOP_PAUSE", "2"))
# an indicator of each set and of no other (so a POST refits that set alone), and a date
# inside the sample's review (so the row counts)
PROBES = {"sino-russian-convergence": "sanctions_action",
          "world-order-2035": "sanctions_relief_russia"}


def _environment(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNPOST_")}
    env["SIGNPOST_VAR_DIR"] = str(var)
    env.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / 'var' / 'pytensor'}")
    return env


def _prepare(env: dict[str, str]) -> str:
    """``make run``'s set-up; returns an analyst key."""
    for args in (["init"], ["import", str(SAMPLE), "--if-empty", "--reviewed-through",
                            "2025-12-31"], ["refit"]):
        subprocess.run([SIGNPOST, *args], env=env, cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    created = subprocess.run([SIGNPOST, "keys", "create", "--role", "analyst", "--name",
                              "bench"], env=env, cwd=ROOT, check=True, capture_output=True,
                             text=True)
    return created.stdout.strip().splitlines()[-1]


def one_round(client: httpx.Client, key: str, set_id: str, day: int) -> tuple[float, str]:
    """Seconds from POST to a GET showing a new fit; the new fit id."""
    time.sleep(PAUSE)
    before = client.get(f"/v1/sets/{set_id}/posterior").json()["fit_id"]
    started = time.perf_counter()
    response = client.post("/v1/observations", headers={"Authorization": f"Bearer {key}"},
                           json={"indicator": PROBES[set_id], "date": f"2025-06-{day:02d}",
                                 "value": 1, "grade": "B2", "source": "bench-loop"})
    response.raise_for_status()
    deadline = started + 120
    while time.perf_counter() < deadline:
        fit_id = client.get(f"/v1/sets/{set_id}/posterior").json()["fit_id"]
        if fit_id != before:
            return time.perf_counter() - started, fit_id
        time.sleep(0.01)
    raise RuntimeError(f"{set_id}: no new posterior within 120 s")


def _timed(call) -> float:
    started = time.perf_counter()
    call().raise_for_status()
    return time.perf_counter() - started


def _time_analyses(client: httpx.Client, key: str, set_id: str) -> None:
    """Median seconds of what-if, attribution and watchlist calls (after a first one)."""
    auth = {"Authorization": f"Bearer {key}"}
    body = {"observations": [{"indicator": PROBES[set_id], "date": "2025-07-01",
                              "grade": "A1", "value": 3}]}
    calls = {
        "what-if": lambda: client.post(f"/v1/sets/{set_id}/what-if", json=body, headers=auth),
        "attribution": lambda: client.get(f"/v1/sets/{set_id}/attribution"),
        "watchlist": lambda: client.get(f"/v1/sets/{set_id}/watchlist"),
    }
    figures = []
    for name, call in calls.items():
        first = _timed(call)
        median = statistics.median(_timed(call) for _ in range(max(1, ROUNDS // 2)))
        figures.append(f"{name} {median:.2f} s (first {first:.2f} s)")
    target = 3.0 if set_id == "sino-russian-convergence" else 1.0
    print(f"{set_id}: " + ", ".join(figures) + f"; what-if target ≤ {target:g} s")


def main() -> None:
    print(hardware())
    with tempfile.TemporaryDirectory(prefix="signpost-loop-") as tmp:
        env = _environment(Path(tmp))
        key = _prepare(env)
        port = free_port()
        server = subprocess.Popen([SIGNPOST, "serve", "--port", str(port)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait(f"{base}/healthz")
            with httpx.Client(base_url=base, timeout=30) as client:
                for set_id in PROBES:
                    first, _ = one_round(client, key, set_id, 1)
                    times, fits = [], []
                    for round_ in range(ROUNDS):
                        seconds, fit_id = one_round(client, key, set_id, 2 + round_)
                        times.append(seconds)
                        fits.append(client.get(f"/v1/fits/{fit_id}").json())
                    fit_s = statistics.median(f["timings"]["total_s"] for f in fits)
                    drawn = [f["sampler"]["name"] + ("" if f["sampler"]["name"] != "psis"
                                                     or f["sampler"].get("base_sampler")
                                                     != "paths" else "(quick)")
                             for f in fits]
                    print(f"{set_id}: rounds " + ", ".join(
                        f"{s:.2f} s ({name}, fit {f['timings']['total_s']:.2f} s)"
                        for s, name, f in zip(times, drawn, fits, strict=True)))
                    times.sort()
                    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
                    median = statistics.median(times)
                    # the baseline: the fit alone, as if nothing stood between it and the user
                    print(f"{set_id}: POST → new posterior, {ROUNDS} rounds: median "
                          f"{median:.2f} s, p95 {p95:.2f} s, max {times[-1]:.2f} s "
                          f"(target ≤ 1 s / ≤ 2 s: "
                          f"{'met' if median <= 1 and p95 <= 2 else 'NOT met'}); "
                          f"the fit alone: median {fit_s:.2f} s, so the user waits "
                          f"{median / fit_s:.2f}× the fit ({median - fit_s:+.2f} s around it); "
                          f"first after start (warming the worker): {first:.2f} s")
                for set_id in PROBES:
                    _time_analyses(client, key, set_id)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
