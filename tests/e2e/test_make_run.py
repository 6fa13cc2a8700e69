"""`make run` from a fresh copy of the repository answers /healthz, then serves a published
posterior for both bundled sets — and the CLI prints the same JSON the server serves. No
``SIGNPOST_TODAY``: the sample is imported with its review date (collected through
2025-12-31), so on any later day its numbers are the README's, and a year without entries is
not read as a quiet year.

The copy holds the tracked files and the untracked, not-ignored ones (what a clone would hold
plus local changes, no .venv and no var/). It reuses this test run's virtualenv instead of
installing a new one (``VENV=``), with ``PYTHONPATH`` pointing at the copy so the copy's code
is what runs, and a fresh ``STAMP=`` so make does not re-install the copy into the shared
virtualenv. Everything else — database, sample import, fits — starts from nothing under the
copy's var/; only pytensor's compile cache is this run's (``PYTENSOR_FLAGS``), as a machine's
second clone would find it: a cold compile of both models costs ~2 minutes and proves nothing
the fresh-clone CI run does not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pytest

from forecast import exact_posterior, set_evidence
from indicators import Review, load_catalog, read_observations_csv
from priors import load_bundled_sets

REPO = Path(__file__).resolve().parents[2]
SETS = ("sino-russian-convergence", "world-order-2035")
SAMPLE_REVIEWED = "2025-12-31"
TIMEOUT = 300.0

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def copy_working_tree(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_make_run_serves_a_published_posterior_for_both_sets(tmp_path, pytensor_flags):
    if shutil.which("make") is None or shutil.which("git") is None:
        pytest.skip("needs make and git")
    clone = tmp_path / "signpost"
    copy_working_tree(clone)
    assert (clone / "Makefile").is_file() and not (clone / "var").exists()
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than the copied pyproject.toml: make skips the install step

    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIGNPOST_", "PYTENSOR_")) and k not in ("MAKEFLAGS", "MFLAGS")}
    env.update(PYTHONPATH=str(clone), PYTENSOR_FLAGS=pytensor_flags)
    today = date.today().isoformat()
    log_path = tmp_path / "make-run.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            ["make", "run", f"VENV={sys.prefix}", f"STAMP={stamp}", f"PORT={port}"],
            cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    healthy_after = None
    payloads: dict[str, dict] = {}
    try:
        with httpx.Client(base_url=base, timeout=5.0) as client:
            while len(payloads) < len(SETS):
                elapsed = time.monotonic() - started
                assert process.poll() is None, (
                    f"make run exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
                assert elapsed < TIMEOUT, (
                    f"no posterior for {set(SETS) - set(payloads)} after {TIMEOUT:.0f} s "
                    f"(healthy after {healthy_after}):\n{log_path.read_text()[-4000:]}")
                try:
                    if healthy_after is None:
                        if client.get("/healthz").status_code == 200:
                            healthy_after = elapsed
                    else:
                        for set_id in SETS:
                            response = client.get(f"/v1/sets/{set_id}/posterior")
                            if response.status_code == 200:
                                payloads[set_id] = response.json()
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(1.0)
        served_after = time.monotonic() - started

        for set_id, payload in payloads.items():
            assert payload["set_id"] == set_id
            # the fit's "today": the test's, or the next day's when the run crosses midnight
            assert payload["evidence_through"] in {today, date.today().isoformat()}, payload
            assert payload["diagnostics"]["passed"] is True
            assert abs(sum(s["probability"] for s in payload["scenarios"]) - 1) < 1e-6
            # the sample's indicators reviewed through its collection date, the rest (never
            # observed) covered through its newest entry
            assert payload["coverage"]["joint_exercise"] == {
                "covered_through": SAMPLE_REVIEWED, "basis": "review", "review_id": 1,
                "periods_past": payload["coverage"]["joint_exercise"]["periods_past"]}
        world = payloads[SETS[1]]
        assert world["evidence_complete_through"] == SAMPLE_REVIEWED
        # a static set: on any day, exactly its posterior as of the review date
        scenario_set = load_bundled_sets()[SETS[1]]
        rows, _ = read_observations_csv(clone / "indicators/data/sample_observations.csv",
                                        load_catalog(), today=date.fromisoformat(today))
        evidence = set_evidence(scenario_set, rows, as_of=date.fromisoformat(SAMPLE_REVIEWED),
                                reviews=[Review(date.fromisoformat(SAMPLE_REVIEWED),
                                                tuple({r.indicator for r in rows}))])
        np.testing.assert_allclose([s["probability"] for s in world["scenarios"]],
                                   exact_posterior(scenario_set, evidence).probability,
                                   atol=1e-9)

        # the CLI on the same database prints the same JSON the server serves
        cli = subprocess.run(
            [str(Path(sys.prefix) / "bin" / "signpost"), "posterior", "--set", SETS[1],
             "--json"], cwd=clone, env=env, capture_output=True, text=True, timeout=120,
            check=True)
        assert json.loads(cli.stdout) == payloads[SETS[1]]
    finally:
        stop(process)
    log = log_path.read_text()
    sample = (clone / "indicators/data/sample_observations.csv").read_text().splitlines()[1:]
    assert f"imported {sum(1 for line in sample if line.strip())} observations" in log
    assert f"http://127.0.0.1:{port}/docs" in log
    print(f"make run: /healthz after {healthy_after:.0f} s, "
          f"both posteriors served after {served_after:.0f} s")
