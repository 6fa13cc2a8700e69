"""``make soak``: Signpost under load and faults, on SQLite and on PostgreSQL, with figures.

Real processes on loopback, laid out as docker-compose.yml deploys them: API replicas
(``signpost serve``, ``SIGNPOST_SCHEDULER=false``) and one ``signpost scheduler`` whose worker
runs the fits, on one database. A load of a few client threads polls the posteriors with
their ETags (95 %) and logs observations (5 %), each write with its own ``Idempotency-Key`` and
retried once (on another replica) after a transport error or a 5xx. The steps:

- ``mixed``: the load alone while refits run: no 5xx, no transport error;
- ``no-space``: the artifact directory (a tmpfs) full: the fit fails saying so, its temporary
  file is gone, the last good posterior stays served, the next fit after space returns is
  published;
- ``sqlite-lock``: another process holds SQLite's write lock past the busy timeout: writes
  wait and succeed or get 503 with ``Retry-After``, never a 500; polls are served throughout;
- ``kills``: ``kill -9`` of an API replica and of the scheduler at random moments (mid-write,
  mid-fit, mid-publish), each restarted: the fits a killed scheduler held are taken over;
- ``pg-down`` / ``pg-recovered``: a PostgreSQL server of our own stopped and started under
  load: meanwhile writes get 503 with ``Retry-After`` (no 500, nothing hangs), polls are served
  from memory, and the same processes recover once it is back.

Then every write still unanswered is retried with its key until answered, and the rows are
audited (`audit`: every acknowledged row stored exactly once, nothing else stored), and the
deployment must settle (`settle`: nothing pending, each set's newest fit published after the
faults saw every stored row, every replica serves it).

The suite runs short versions (tests/e2e/test_faults.py); ``make soak`` the long ones and
prints each database's figures (``python -m bench.soak --help``; docs/soak.md). Everything
checked is behaviour: latencies are printed, never judged.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import itertools
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text

import indicators
from forecast import FitSettings
from indicators import read_observations_csv
from priors import BUNDLED_DIR
from service.db import Database, FitRow, ObservationRow, aware
from service.repositories.evidence import evidence_of
from service.repositories.fits import create_fit, latest_published
from service.repositories.keys import create_key
from service.repositories.observations import add_observations
from service.repositories.sets import get_catalog, get_set, load_set_text
from service.runner import FitRunner
from service.worker import WorkerPool

ROOT = Path(__file__).resolve().parents[1]
SIGNPOST = Path(sys.executable).with_name("signpost")
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
REVIEWED_THROUGH = "2025-12-31"
TODAY = date(2026, 6, 30)  # after the sample's review
WORLD = "world-order-2035"  # static: a fit takes ~0.2 s, nothing compiled
CONVERGENCE = "sino-russian-convergence"
# The count indicators a write may log, by set (world-order's are its own).
INDICATORS = {WORLD: ("us_china_cooperation", "sanctions_relief_russia"),
              CONVERGENCE: ("joint_exercise", "joint_patrol")}
CLIENT_TIMEOUT = 10.0  # seconds: a request not answered by then hung (a transport error)
LEASE_SECONDS = 5  # a killed scheduler's lease is taken over after this
BUSY_TIMEOUT = 1.0  # SQLite: seconds a write waits for another process's lock, then 503
GOOD = {200, 201, 304}


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compile_flags() -> str:
    """``PYTENSOR_FLAGS`` keeping a child's compile cache where this process has it (warm)."""
    import pytensor

    return f"base_compiledir={pytensor.config.base_compiledir}"


def prepare(url: str, sets: tuple[str, ...], artifacts: Path) -> tuple[Database, str]:
    """Migrate, load ``sets``, import the sample with its review, publish each set's first fit.

    The first fits run here (inline), so the servers start with posteriors to serve. Returns
    the store and an analyst key.
    """
    store = Database(url, today=TODAY)
    store.migrate()
    for set_id in sets:
        path = BUNDLED_DIR / f"{set_id}.yaml"
        load_set_text(store, yaml_text=path.read_text(encoding="utf-8"), source=path.name)
    used = {i for set_id in sets for i in get_set(store, set_id=set_id).indicator_ids}
    observations, _ = read_observations_csv(SAMPLE, get_catalog(store), store.today(),
                                            grades=store.grades)
    add_observations(store, observations=[o for o in observations if o.indicator in used],
                     analyst="sample", review={"indicators": sorted(used),
                                               "through": REVIEWED_THROUGH,
                                               "note": "the sample, reviewed"})
    runner = FitRunner(store, WorkerPool("inline"), FitSettings(), 60, artifacts)
    for set_id in sets:
        fit = runner.run_fit(create_fit(store, set_id=set_id, requested_by="soak set-up"))
        if fit["status"] != "published":
            raise RuntimeError(f"the first fit of {set_id} was not published: {fit}")
    return store, create_key(store, role="analyst", name="soak")


# -- processes ----------------------------------------------------------------------------------


class Process:
    """One ``signpost`` process in its own process group, its output appended to a log."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path):
        self.name, self.args, self.env, self.log_path = name, args, env, log_path
        self.process: subprocess.Popen | None = None
        self.log_offset = 0
        self.start()

    def start(self) -> None:
        """Start it (again)."""
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """``kill -9`` of the process alone (its fit worker sees its parent go, and exits)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of its whole group (with any worker left)."""
        if self.alive():
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)

    def log_since_start(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self.log_offset)
            return log.read().decode(errors="replace")

    def log_tail(self, lines: int = 25) -> str:
        """The log's last lines, without the access log's good answers and the job noise."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        kept = [line for line in text.splitlines() if not any(noise in line for noise in (
            '" 200 OK', '" 201 Created', '" 304 Not Modified', "Running job", "executed succ"))]
        return "\n".join(kept[-lines:])


class Deployment:
    """API replicas and one scheduler on one database, as docker-compose.yml runs them.

    Parameters
    ----------
    var_dir : Path
        Their ``SIGNPOST_VAR_DIR`` (fit artifacts under ``fits/``); their logs go here too.
    url : str
        The database.
    replicas : int
        ``signpost serve`` processes with ``SIGNPOST_SCHEDULER=false``.

    """

    def __init__(self, var_dir: Path, url: str, replicas: int = 2):
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIGNPOST_")}
        env = {**inherited, "PYTENSOR_FLAGS": compile_flags(),
               "SIGNPOST_VAR_DIR": str(var_dir), "SIGNPOST_DATABASE_URL": url,
               "SIGNPOST_TODAY": TODAY.isoformat(),
               "SIGNPOST_LEASE_SECONDS": str(LEASE_SECONDS),
               "SIGNPOST_QUEUE_POLL": "0.5",
               # writes never pause under the load: a refit every second, not every five
               "SIGNPOST_SETTLE": "0.2", "SIGNPOST_SETTLE_MAX": "1.0",
               # refits must follow the writes: the interval check would hide a missed one
               "SIGNPOST_REFIT_INTERVAL": "3600",
               "SIGNPOST_SQLITE_BUSY_TIMEOUT": str(BUSY_TIMEOUT),
               "SIGNPOST_SCHEDULER_METRICS_PORT": "0",
               "SIGNPOST_RATE_LIMIT_WRITES": ""}  # the load's writes are one key's
        self.urls = []
        self.replicas = []
        for i in range(replicas):
            port = free_port()
            self.urls.append(f"http://127.0.0.1:{port}")
            self.replicas.append(Process(
                f"replica-{i}", [str(SIGNPOST), "serve", "--host", "127.0.0.1", "--port",
                                 str(port)], {**env, "SIGNPOST_SCHEDULER": "false"},
                var_dir / f"replica-{i}.log"))
        self.scheduler = Process("scheduler", [str(SIGNPOST), "scheduler"], env,
                                 var_dir / "scheduler.log")

    @property
    def processes(self) -> list[Process]:
        return [*self.replicas, self.scheduler]

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Until every replica answers ``/readyz`` and the scheduler says it runs."""
        for index in range(len(self.replicas)):
            self.wait_replica(index, timeout)
        self.wait_scheduler(timeout)

    def wait_replica(self, index: int, timeout: float = 180.0) -> None:
        replica, url = self.replicas[index], self.urls[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not replica.alive():
                raise RuntimeError(f"{replica.name} exited:\n{replica.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{replica.name} not ready in {timeout} s:\n{replica.log_tail()}")

    def wait_scheduler(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while "scheduler running on" not in self.scheduler.log_since_start():
            if not self.scheduler.alive():
                raise RuntimeError(f"the scheduler exited:\n{self.scheduler.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the scheduler did not start in {timeout} s:\n"
                                   f"{self.scheduler.log_tail()}")
            time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail()}" for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


# -- the load -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """One step's requests and answers, counted when they arrive (so a fault's answers are
    its step's), first tries and retries alike."""

    name: str
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    polls: int = 0
    writes: int = 0  # writes done (each counted once, retried or not)
    retries: int = 0
    statuses: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    unanswered_polls: int = 0  # no 200 or 304, retry included
    unanswered_writes: int = 0  # no 201 or 200, retry included
    bad: list[str] = field(default_factory=list)  # answers neither good nor 503
    bad_503: list[str] = field(default_factory=list)  # without Retry-After or the shape
    poll_ms: list[float] = field(default_factory=list)  # the answered polls'
    writes_seen: list[tuple[float, int, float]] = field(default_factory=list)  # start, status, ms
    slowest_ms: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.transport_errors

    @property
    def errors_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def errors_500(self) -> int:
        """5xx other than 503."""
        return self.errors_5xx - self.statuses[503]

    def percentile(self, q: float) -> float | None:
        ordered = sorted(self.poll_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


class Load:
    """Client threads on loopback: ETag polls of each set's posterior, idempotent writes.

    Parameters
    ----------
    urls : list of str
        The API replicas; a request goes to one at random, its retry to the next.
    analyst : str
        An analyst key.
    sets : tuple of str
        The sets polled; the writes log count indicators of theirs.
    threads : int
    write_share : float
        The share of requests that are writes.
    pace : float
        Seconds each thread waits between requests (0: none).
    seed : int

    """

    def __init__(self, urls: list[str], analyst: str, sets: tuple[str, ...], threads: int = 4,
                 write_share: float = 0.05, pace: float = 0.0, seed: int = 0):
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {analyst}"}
        self.sets = sets
        self.indicators = [i for s in sets for i in INDICATORS[s]]
        self.threads, self.write_share, self.pace = threads, write_share, pace
        self.source = f"soak {uuid.uuid4().hex[:8]}"  # marks this load's rows
        self.rng = random.Random(seed)
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self.acknowledged: dict[str, int] = {}  # idempotency key → the stored row's id
        self.unacknowledged: dict[str, dict] = {}  # key → body, for the final retries
        self.answered_late = 0  # stored though no answer said so until the final retries
        self.in_flight: Counter = Counter()  # writes on their way, by replica url
        self.tally = Tally("between steps")
        self.tallies: list[Tally] = [self.tally]
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self) -> Load:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(random.Random(self.rng.random()),),
                                      daemon=True, name=f"load-{n}")
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=3 * CLIENT_TIMEOUT)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Tally]:
        """Count the requests made meanwhile as step ``name``'s."""
        tally = Tally(name)
        with self._lock:
            self.tally = tally
            self.tallies.append(tally)
        try:
            yield tally
        finally:
            tally.seconds = time.monotonic() - tally.started
            with self._lock:
                self.tally = Tally("between steps")
                self.tallies.append(self.tally)

    def _run(self, rng: random.Random) -> None:
        etags: dict[str, str] = {}
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            while not self._stop.is_set():
                try:
                    if rng.random() < self.write_share:
                        self._write(client, rng)
                    else:
                        self._poll(client, rng, etags)
                except Exception as exc:  # an answer the client cannot read: a problem
                    with self._lock:
                        self.tally.bad.append(f"client: {type(exc).__name__}: {exc}")
                if self.pace:
                    self._stop.wait(self.pace)

    def _replicas(self, rng: random.Random) -> tuple[str, str]:
        """A replica for the first try and one for the retry (the next, if there is one)."""
        first = rng.randrange(len(self.urls))
        return self.urls[first], self.urls[(first + 1) % len(self.urls)]

    def _note(self, what: str, response: httpx.Response) -> None:
        """Count an answer in the step it arrived in (a fault's answers go to its step)."""
        status = response.status_code
        with self._lock:
            tally = self.tally
            tally.statuses[status] += 1
            if status == 503:
                retry_after = response.headers.get("Retry-After", "")
                if not (retry_after.isdigit() and _error_shape(response)):
                    tally.bad_503.append(f"{what} 503 Retry-After={retry_after!r} "
                                         f"{response.text[:200]}")
            elif status not in GOOD:
                tally.bad.append(f"{what} {status} {response.text[:300]}")

    def _poll(self, client: httpx.Client, rng: random.Random, etags: dict[str, str]) -> None:
        set_id = rng.choice(self.sets)
        path = f"/v1/sets/{set_id}/posterior"
        for attempt, url in enumerate(self._replicas(rng)):
            headers = {"If-None-Match": etags[set_id]} if set_id in etags else {}
            started = time.perf_counter()
            try:
                response = client.get(url + path, headers=headers)
            except httpx.TransportError:
                with self._lock:
                    self.tally.transport_errors += 1
                continue
            ms = (time.perf_counter() - started) * 1000
            self._note(f"GET {path}", response)
            if response.status_code in (200, 304):
                if etag := response.headers.get("ETag"):
                    etags[set_id] = etag
                with self._lock:
                    self.tally.polls += 1
                    self.tally.poll_ms.append(ms)
                    self.tally.slowest_ms = max(self.tally.slowest_ms, ms)
                return
            if response.status_code < 500 or attempt:
                break
        with self._lock:
            self.tally.polls += 1
            self.tally.unanswered_polls += 1

    def _write(self, client: httpx.Client, rng: random.Random) -> None:
        key = f"{self.source.split()[1]}-{next(self._seq)}"
        day = date(2024, 1, 1) + timedelta(days=rng.randrange(731))  # inside the review
        body = {"indicator": rng.choice(self.indicators), "date": day.isoformat(),
                "value": 1, "grade": "B2", "source": self.source, "note": key}
        for attempt, url in enumerate(self._replicas(rng)):
            if attempt:
                with self._lock:
                    self.tally.retries += 1
            response = self._post(client, url, key, body)
            if response is not None and response.status_code in (200, 201):
                with self._lock:
                    self.tally.writes += 1
                    self.acknowledged[key] = response.json()["id"]
                return
            if response is not None and response.status_code < 500:
                break  # refused: a retry would be refused too
            if not attempt:  # wait as a 503 says, or a moment for a replica that went away
                retry_after = "" if response is None else response.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.isdigit() else 0.1
                self._stop.wait(min(wait, 2.0))
        with self._lock:
            self.tally.writes += 1
            self.tally.unanswered_writes += 1
            self.unacknowledged[key] = body

    def _post(self, client: httpx.Client, url: str, key: str,
              body: dict) -> httpx.Response | None:
        with self._lock:
            self.in_flight[url] += 1
        started = time.monotonic()
        try:
            response = client.post(f"{url}/v1/observations", json=body,
                                   headers={**self.headers, "Idempotency-Key": key})
        except httpx.TransportError:
            with self._lock:
                self.tally.transport_errors += 1
            return None
        finally:
            with self._lock:
                self.in_flight[url] -= 1
        self._note("POST /v1/observations", response)
        with self._lock:
            self.tally.writes_seen.append((started, response.status_code,
                                           (time.monotonic() - started) * 1000))
        return response

    def retry_unanswered(self, timeout: float = 60.0) -> None:
        """Retry each unanswered write with its key until it is answered (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
            for key, body in list(self.unacknowledged.items()):
                for url in itertools.cycle(self.urls):
                    if time.monotonic() > deadline:
                        return
                    with contextlib.suppress(httpx.TransportError):
                        response = client.post(f"{url}/v1/observations", json=body,
                                               headers={**self.headers, "Idempotency-Key": key})
                        if response.status_code in (200, 201):
                            self.acknowledged[key] = response.json()["id"]
                            # 200: an earlier try stored it; its answer was lost or a 503
                            self.answered_late += response.status_code == 200
                            del self.unacknowledged[key]
                            break
                    time.sleep(0.2)

    def total(self) -> Tally:
        """Every request of the load, in one tally."""
        total = Tally("all")
        for t in self.tallies:
            total.polls += t.polls
            total.writes += t.writes
            total.retries += t.retries
            total.statuses.update(t.statuses)
            total.transport_errors += t.transport_errors
            total.poll_ms += t.poll_ms
        return total


def _error_shape(response: httpx.Response) -> bool:
    """Whether the body is ``{"error": {"code", "message", "field"}}`` with no SQL in it."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return (isinstance(error, dict) and set(error) == {"code", "message", "field"}
            and not any(word in str(error["message"])
                        for word in ("SELECT ", "INSERT ", "UPDATE ", "Traceback", "[SQL")))


# -- what was stored and what is served ---------------------------------------------------------


@dataclass
class Audit:
    """The load's acknowledged writes against the stored rows."""

    acknowledged: int
    stored: int
    lost: int  # acknowledged, and not stored (under its key)
    duplicated: int  # rows beyond the first of one key
    unexpected: int  # rows of no write the load sent
    unanswered: int  # writes unanswered even by the final retries
    answered_late: int  # stored, though only the final retries heard of it

    def problems(self) -> list[str]:
        found = [f"{n} {what}" for n, what in (
            (self.lost, "acknowledged writes lost"), (self.duplicated, "rows duplicated"),
            (self.unexpected, "rows stored that no write sent"),
            (self.unanswered, "writes never answered, retries included")) if n]
        if self.stored != self.acknowledged:
            found.append(f"stored {self.stored} rows, acknowledged {self.acknowledged}")
        return found


def audit(store: Database, load: Load) -> Audit:
    """Compare what the load was told with what is stored (its rows carry its source)."""
    with store.Session() as session:
        rows = session.execute(select(ObservationRow.id, ObservationRow.note).where(
            ObservationRow.source == load.source)).all()
    notes = Counter(note for _, note in rows)
    by_id = dict(rows)
    sent = set(load.acknowledged) | set(load.unacknowledged)
    return Audit(acknowledged=len(load.acknowledged), stored=len(rows),
                 lost=sum(by_id.get(row_id) != key for key, row_id in load.acknowledged.items()),
                 duplicated=sum(n - 1 for n in notes.values()),
                 unexpected=sum(note not in sent for note in notes),
                 unanswered=len(load.unacknowledged), answered_late=load.answered_late)


def fits_with(store: Database, status: str) -> list[str]:
    with store.Session() as session:
        return list(session.scalars(select(FitRow.id).where(FitRow.status == status)))


def count_fits(store: Database, status: str) -> int:
    with store.Session() as session:
        return session.scalar(select(func.count(FitRow.id)).where(FitRow.status == status))


def served_fit(url: str, set_id: str) -> str | None:
    """The fit id a replica serves for ``set_id`` (None when it serves none)."""
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        response = httpx.get(f"{url}/v1/sets/{set_id}/posterior", timeout=CLIENT_TIMEOUT)
        if response.status_code == 200:
            return response.json()["fit_id"]
    return None


def settle(d: Deployment, store: Database, sets: tuple[str, ...], after: float,
           timeout: float = 120.0) -> list[str]:
    """Wait until nothing is pending and every replica serves each set's newest fit, which
    finished after ``after`` (wall clock) and saw every stored row; the problems left."""
    deadline = time.monotonic() + timeout
    while True:
        problems = []
        with store.Session() as session:
            pending = list(session.scalars(select(FitRow.id).where(
                FitRow.status.in_(("queued", "running")), FitRow.kind == "live")))
        if pending:
            problems.append(f"fits still pending: {pending}")
        for set_id in sets:
            row = latest_published(store, set_id=set_id)
            expected = evidence_of(store, scenario_set=get_set(store, set_id=set_id)).hash()
            if row is None or row.evidence_hash != expected:
                problems.append(f"{set_id}: the newest published fit "
                                f"({row.id if row else None}) did not see every stored row")
            elif aware(row.finished_at).timestamp() < after:
                problems.append(f"{set_id}: no fit published since the faults")
            else:
                served = {url: served_fit(url, set_id) for url in d.urls}
                if set(served.values()) != {row.id}:
                    problems.append(f"{set_id}: replicas serve {served}, not fit {row.id}")
        if not problems or time.monotonic() > deadline:
            return [f"settle: {p}" for p in problems]
        time.sleep(0.25)


def wait_served(d: Deployment, sets: tuple[str, ...], timeout: float = 60.0) -> None:
    """Until every replica serves a posterior of every set (its cache holds them)."""
    deadline = time.monotonic() + timeout
    while not all(served_fit(url, s) for url in d.urls for s in sets):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every replica serves every set:\n{d.logs()}")
        time.sleep(0.2)


# -- the steps ----------------------------------------------------------------------------------


@dataclass
class Step:
    """One step: its requests' tally, facts for the figures, and what went wrong."""

    tally: Tally
    facts: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def answered_well(tally: Tally) -> list[str]:
    """Any step's problems: an answer neither good nor a well-formed 503 (a 500, say)."""
    found = []
    if tally.bad:
        found.append(f"{tally.name}: {len(tally.bad)} answers neither good nor 503: "
                     f"{tally.bad[:3]}")
    if tally.bad_503:
        found.append(f"{tally.name}: 503 without a numeric Retry-After or the error shape: "
                     f"{tally.bad_503[:3]}")
    return found


def clean(tally: Tally) -> list[str]:
    """The problems of a step that injects no fault into the API: any 5xx, any hang."""
    found = answered_well(tally)
    if tally.statuses[503]:
        found.append(f"{tally.name}: {tally.statuses[503]} 503s")
    if tally.transport_errors:
        found.append(f"{tally.name}: {tally.transport_errors} transport errors")
    return found


def mixed(load: Load, store: Database, seconds: float, timeout: float = 60.0) -> Step:
    """The load alone for ``seconds``, and until a refit its writes queued is published."""
    before = count_fits(store, "published")
    with load.step("mixed") as tally:
        time.sleep(seconds)
        deadline = time.monotonic() + timeout
        while count_fits(store, "published") == before and time.monotonic() < deadline:
            time.sleep(0.1)
    step = Step(tally, {"fits published": count_fits(store, "published") - before},
                clean(tally))
    if not step.facts["fits published"]:
        step.problems.append("mixed: no refit was published while the load ran")
    return step


class Tmpfs:
    """A tmpfs mounted at a directory (root only): a real file system to fill up.

    `fill` shrinks it to what it holds and fills the rest with a file; `free` undoes both.
    """

    def __init__(self, path: Path, size_mb: int = 256):
        self.path = path
        self.size = f"{size_mb}m"
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(path)],
                       check=True, capture_output=True)

    @staticmethod
    def unavailable() -> str | None:
        """Why a tmpfs cannot be mounted here, or None."""
        if os.geteuid() != 0 or not shutil.which("mount"):
            return "a full disk needs a tmpfs, and mounting one needs root and mount(8)"
        probe = Path(tempfile.mkdtemp(prefix="signpost-tmpfs-"))
        try:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                                     str(probe)], capture_output=True, text=True)
            if result.returncode:
                return f"mount -t tmpfs failed here: {result.stderr.strip()}"
            subprocess.run(["umount", str(probe)], check=True)
            return None
        finally:
            probe.rmdir()

    def fill(self) -> None:
        stat = os.statvfs(self.path)
        used_kb = (stat.f_blocks - stat.f_bfree) * stat.f_frsize // 1024
        # best effort: a smaller file system needs a smaller filler
        subprocess.run(["mount", "-o", f"remount,size={used_kb + 256}k", str(self.path)],
                       check=False, capture_output=True)
        with self.filler.open("wb") as out, contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                out.write(b"\0" * 65536)
                out.flush()

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)
        subprocess.run(["mount", "-o", f"remount,size={self.size}", str(self.path)],
                       check=True, capture_output=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


def no_space(d: Deployment, load: Load, store: Database, disk: Tmpfs, set_id: str,
             timeout: float = 60.0) -> Step:
    """The artifact directory full under load: the fit fails cleanly, the last good stays."""
    with load.step("no-space") as tally:
        disk.fill()
        failed = _first_fit(store, set_id, "failed", time.time(), timeout)
        last_good = latest_published(store, set_id=set_id)
        deadline = time.monotonic() + 10  # a replica hears of a publication within ~1 s
        while True:
            served = {url: served_fit(url, set_id) for url in d.urls}
            if set(served.values()) == {last_good.id} or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # more of the load's fits fail meanwhile
        still_good = latest_published(store, set_id=set_id)
        leftovers = sorted(p.name for p in disk.path.rglob("*.tmp-*"))
        disk.free()
        freed = time.time()
        published = _first_fit(store, set_id, "published", freed, timeout)
    step = Step(tally, {"failed fit": failed.reason if failed else None,
                        "temporary files left": len(leftovers),
                        "next published after s": round(
                            aware(published.finished_at).timestamp() - freed, 1)
                        if published else None}, clean(tally))
    if failed is None:
        step.problems.append(f"no-space: no fit of {set_id} failed within {timeout} s of the "
                             f"disk filling up\n{d.logs()}")
    elif "No space left on device" not in (failed.reason or ""):
        step.problems.append(f"no-space: fit {failed.id} failed for another reason: "
                             f"{failed.reason}")
    if leftovers:
        step.problems.append(f"no-space: temporary artifacts left behind: {leftovers}")
    if set(served.values()) != {last_good.id}:
        step.problems.append(f"no-space: with the disk full the replicas served {served}, "
                             f"not the last good fit {last_good.id}")
    if still_good.id != last_good.id:
        step.problems.append(f"no-space: fit {still_good.id} was published with the disk full")
    if published is None:
        step.problems.append(f"no-space: no fit of {set_id} published within {timeout} s "
                             "of the space returning")
    elif not Path(published.artifact or "").is_file():
        step.problems.append(f"no-space: fit {published.id} was published without its artifact")
    return step


def _first_fit(store: Database, set_id: str, status: str, since: float,
               timeout: float) -> FitRow | None:
    """The first fit of ``set_id`` that finished with ``status`` after ``since`` (wall clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.Session() as session:
            rows = session.scalars(select(FitRow).where(
                FitRow.set_id == set_id, FitRow.status == status,
                FitRow.finished_at.is_not(None)).order_by(FitRow.finished_at)).all()
        later = [r for r in rows if aware(r.finished_at).timestamp() >= since]
        if later:
            return later[0]
        time.sleep(0.1)
    return None


LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")  # the write lock, as a long write transaction holds it
connection.execute("UPDATE scenario_sets SET title = title")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def sqlite_lock(load: Load, db_path: Path, hold: float) -> Step:
    """Another process holds SQLite's write lock for ``hold`` seconds under load."""
    with subprocess.Popen([sys.executable, "-c", LOCKER, str(db_path), str(hold)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as locker, load.step("sqlite-lock") as tally:
        said = locker.stdout.readline().strip()
        locked = time.monotonic()
        locker.wait(timeout=hold + 60)
        released = time.monotonic()
        deadline = released + 10 * BUSY_TIMEOUT
        while time.monotonic() < deadline and not any(
                s == 201 and t >= released for t, s, _ in list(tally.writes_seen)):
            time.sleep(0.05)
    if said != "locked":
        return Step(tally, problems=[f"sqlite-lock: the locking process said {said!r}"])
    during = [(s, ms) for t, s, ms in tally.writes_seen if locked <= t < released]
    step = Step(tally, {"lock held s": round(released - locked, 1),
                        "writes waited then stored": sum(1 for s, ms in during
                                                         if s == 201 and ms >= 300),
                        "writes answered 503": sum(1 for s, _ in during if s == 503)},
                answered_well(tally))
    if not step.facts["writes waited then stored"] + step.facts["writes answered 503"]:
        step.problems.append("sqlite-lock: no write waited or got a 503 (was it locked?)")
    if tally.transport_errors:
        step.problems.append(f"sqlite-lock: {tally.transport_errors} transport errors (a "
                             f"request hung past {CLIENT_TIMEOUT} s?)")
    if tally.unanswered_polls:
        step.problems.append(f"sqlite-lock: {tally.unanswered_polls} polls unanswered")
    if not any(s == 201 and t >= released for t, s, _ in tally.writes_seen):
        step.problems.append("sqlite-lock: no write stored after the lock was released")
    return step


def kills(d: Deployment, load: Load, store: Database, api_kills: int, scheduler_kills: int,
          rng: random.Random, after: float = 0.5,
          say: Callable[[str], None] = lambda _: None) -> Step:
    """``kill -9`` of the API replicas and of the scheduler at random moments, each restarted.

    The replicas in turn, each once the others are up (so a retry has somewhere to go), after
    0.3–2 s, half of them as soon as a write is on its way to it (mid-write); the scheduler
    0–0.2 s after a fit starts running (mid-fit or mid-publish; after 10 s without one,
    idle).
    The load goes on for ``after`` seconds past the last restart.
    """
    facts: dict[str, object] = {"api kills": 0, "mid-write": 0, "scheduler kills": 0,
                                "mid-fit": 0}
    held: list[tuple[str, int, float]] = []  # (fit, its attempts, when) at each kill
    errors: list[str] = []

    def kill_replicas() -> None:
        for n in range(api_kills):
            for index in range(len(d.replicas)):
                d.wait_replica(index)
            time.sleep(rng.uniform(0.3, 2.0))
            index = n % len(d.replicas)
            if rng.random() < 0.5:  # half the kills wait (≤ 1 s) for a write on its way
                deadline = time.monotonic() + 1.0
                while not load.in_flight[d.urls[index]] and time.monotonic() < deadline:
                    time.sleep(0.002)
            mid_write = load.in_flight[d.urls[index]] > 0
            d.replicas[index].kill9()
            facts["api kills"] += 1
            facts["mid-write"] += mid_write
            say(f"  killed {d.replicas[index].name}{' mid-write' if mid_write else ''}")
            d.replicas[index].start()

    def kill_scheduler() -> None:
        for _ in range(scheduler_kills):
            d.wait_scheduler()
            deadline = time.monotonic() + 10
            while not fits_with(store, "running") and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.2))
            with store.Session() as session:
                running = session.execute(select(FitRow.id, FitRow.attempts).where(
                    FitRow.status == "running")).all()
            d.scheduler.kill9()
            held.extend((fit_id, attempts, time.time()) for fit_id, attempts in running)
            facts["scheduler kills"] += 1
            facts["mid-fit"] += bool(running)
            say(f"  killed the scheduler{' mid-fit' if running else ''}")
            d.scheduler.start()

    def reporting(target: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # a process that would not restart: the step's problem
                errors.append(f"kills: {target.__name__}: {exc}")
        return threading.Thread(target=run, name=target.__name__)

    with load.step("kills") as tally:
        killers = [reporting(kill_replicas), reporting(kill_scheduler)]
        for killer in killers:
            killer.start()
        for killer in killers:
            killer.join()
        facts["last kill"] = time.time()
        try:
            d.wait_ready()
        except RuntimeError as exc:
            errors.append(f"kills: {exc}")
        time.sleep(after)
    # a poll or write that failed on a killed replica was retried on another
    facts["polls unanswered after the retry"] = tally.unanswered_polls
    facts["writes unanswered after the retry"] = tally.unanswered_writes
    facts["held"] = held  # `taken_over` checks them once the deployment settled
    return Step(tally, facts, answered_well(tally) + errors)


def taken_over(store: Database, held: list[tuple[str, int, float]]) -> tuple[int, list[str]]:
    """How often a fit a killed scheduler held was run again by the next one; the problems.

    Checked once the deployment settled (`settle`: nothing left running): a fit running at a
    kill has finished since, in a later attempt (its lease was taken over), unless it had
    finished in the moment before the kill. One fit may be held at several kills.
    """
    problems, resumed = [], 0
    with store.Session() as session:
        for fit_id, attempts, killed_at in held:
            row = session.get(FitRow, fit_id)
            if row.attempts > attempts:
                resumed += 1
            elif row.finished_at is None or aware(row.finished_at).timestamp() >= killed_at:
                problems.append(f"kills: fit {fit_id} ({row.status}), held by a killed "
                                f"scheduler in attempt {attempts}, was never attempted again")
    return resumed, problems


def pg_outage(d: Deployment, load: Load, server: ThrowawayPostgres, down: float,
              recover_timeout: float = 60.0) -> Step:
    """PostgreSQL stopped for ``down`` seconds under load, then started; nothing restarted."""
    pids = d.pids()
    with load.step("pg-down") as tally:
        server.stop()
        time.sleep(down)
    server.start()
    back = time.monotonic()
    facts: dict[str, object] = {"back": time.time()}
    recovered = None
    with load.step("pg-recovered") as after:
        while recovered is None and time.monotonic() - back < recover_timeout:
            if any(s == 201 for _, s, _ in list(after.writes_seen)):
                recovered = time.monotonic() - back
            time.sleep(0.05)
    step = Step(tally, facts | {"down s": down,
                        "writes answered 503": sum(1 for _, s, _ in tally.writes_seen
                                                   if s == 503),
                        "polls served from memory": len(tally.poll_ms),
                        "slowest poll ms": round(tally.slowest_ms),
                        "slowest write ms": round(max((ms for *_, ms in tally.writes_seen),
                                                      default=0)),
                        "first write stored after restart s":
                            None if recovered is None else round(recovered, 2)},
                answered_well(tally) + answered_well(after))
    if tally.transport_errors:
        step.problems.append(f"pg-down: {tally.transport_errors} transport errors (a request "
                             f"hung past {CLIENT_TIMEOUT} s?)")
    if tally.unanswered_polls:
        step.problems.append(f"pg-down: {tally.unanswered_polls} polls not served from memory")
    if not step.facts["writes answered 503"]:
        step.problems.append("pg-down: no write got a 503 (was the database down?)")
    if recovered is None:
        step.problems.append(f"pg-recovered: no write stored within {recover_timeout} s of "
                             "the database's return")
    if d.pids() != pids or not all(p.alive() for p in d.processes):
        step.problems.append("pg-outage: a process died or was restarted")
    return step


# -- a PostgreSQL server of our own -------------------------------------------------------------


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory on a free port, to stop and start.

    Never the machine's server, which others use: ``initdb`` into a new directory (as the
    ``postgres`` user when we are root: initdb refuses root), trust authentication, listening
    on 127.0.0.1 and a socket in that directory only.
    """

    def __init__(self) -> None:
        self.bin = Path(_pg_bin())
        self.root = Path(tempfile.mkdtemp(prefix="signpost-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            os.chown(self.root, pwd.getpwnam("postgres").pw_uid,
                     grp.getgrnam("postgres").gr_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")
        self.start()

    @staticmethod
    def unavailable() -> str | None:
        """Why one cannot be made here, or None."""
        try:
            _pg_bin()
        except FileNotFoundError as exc:
            return str(exc)
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root, and no 'postgres' user to run initdb as"
            if not shutil.which("runuser"):
                return "running as root, and no runuser(1) to run initdb as postgres"
        return None

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode:
            raise RuntimeError(f"{tool} failed: {result.stderr.strip() or result.stdout}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        """A new database's URL."""
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _pg_bin() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return str(found[-1].parent)
    if initdb := shutil.which("initdb"):
        return str(Path(initdb).parent)
    raise FileNotFoundError("no PostgreSQL initdb (in /usr/lib/postgresql/*/bin or on PATH)")


# -- one database's soak ------------------------------------------------------------------------


@dataclass
class Plan:
    """What one database's soak does."""

    sets: tuple[str, ...] = (WORLD, CONVERGENCE)
    replicas: int = 2
    mixed_seconds: float = 60.0
    no_space: bool = False  # needs a tmpfs (root)
    lock_hold: float = 0.0  # SQLite: seconds another process holds the write lock (0: none)
    outages: int = 0  # PostgreSQL stops and starts (needs a `ThrowawayPostgres`)
    down: float = 10.0
    api_kills: int = 0
    scheduler_kills: int = 0
    threads: int = 4
    pace: float = 0.0
    write_share: float = 0.05
    seed: int = 0


@dataclass
class Report:
    """One database's soak: its steps, the audit of the rows and the settling."""

    database: str
    plan: Plan
    steps: list[Step]
    audit: Audit | None
    total: Tally
    problems: list[str]


def soak(database: str, var_dir: Path, url: str, plan: Plan,
         server: ThrowawayPostgres | None = None,
         say: Callable[[str], None] = lambda _: None) -> Report:
    """Set up a database, deploy on it, run ``plan``'s steps under load; the report."""
    disk = Tmpfs(var_dir / "fits") if plan.no_space else None  # before the first artifacts
    try:
        store, analyst = prepare(url, plan.sets, var_dir / "fits")
        try:
            d = Deployment(var_dir, url, plan.replicas)
            try:
                d.wait_ready()
                wait_served(d, plan.sets)
                return _run(database, d, store, analyst, url, plan, server, disk, say)
            finally:
                d.stop()
        finally:
            store.dispose()
    finally:
        if disk is not None:
            disk.unmount()


def _run(database: str, d: Deployment, store: Database, analyst: str, url: str, plan: Plan,
         server: ThrowawayPostgres | None, disk: Tmpfs | None,
         say: Callable[[str], None]) -> Report:
    rng = random.Random(plan.seed)
    load = Load(d.urls, analyst, plan.sets, plan.threads, write_share=plan.write_share,
                pace=plan.pace, seed=plan.seed)
    steps: list[Step] = []
    say(f"{database}: deployed; {plan.mixed_seconds:g} s of mixed load")
    faults_over = time.time()
    load.start()
    try:
        if plan.mixed_seconds:
            steps.append(mixed(load, store, plan.mixed_seconds))
        if disk is not None:
            say(f"{database}: the artifact disk full")
            steps.append(no_space(d, load, store, disk, plan.sets[0]))
        if plan.lock_hold:
            say(f"{database}: the SQLite file locked for {plan.lock_hold:g} s")
            steps.append(sqlite_lock(load, Path(url.removeprefix("sqlite:///")),
                                     plan.lock_hold))
        for n in range(plan.outages):
            say(f"{database}: PostgreSQL stopped for {plan.down:g} s ({n + 1}/{plan.outages})")
            steps.append(pg_outage(d, load, server, plan.down))
            faults_over = steps[-1].facts["back"]
        if plan.api_kills or plan.scheduler_kills:
            say(f"{database}: {plan.api_kills} API and {plan.scheduler_kills} scheduler kills")
            steps.append(kills(d, load, store, plan.api_kills, plan.scheduler_kills, rng,
                               say=say))
            faults_over = steps[-1].facts["last kill"]
    finally:
        load.stop()
    say(f"{database}: retrying the unanswered writes; settling")
    load.retry_unanswered()
    problems = [p for step in steps for p in step.problems]
    # answers that arrived between the steps are held to the same rule
    problems += [p for t in load.tallies if t.name == "between steps" for p in answered_well(t)]
    problems += settle(d, store, plan.sets, after=faults_over)
    for step in steps:
        if "held" in step.facts:
            step.facts["takeovers"], found = taken_over(store, step.facts.pop("held"))
            problems += found
    result = audit(store, load)
    problems += result.problems()
    if problems:
        problems.append(f"logs:\n{d.logs()}")
    return Report(database, plan, steps, result, load.total(), problems)


# -- the figures --------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def figures(report: Report) -> str:
    """The report as printed lines."""
    lines = [f"== {report.database}: {report.plan.replicas} API replica(s) + 1 scheduler, "
             f"sets {', '.join(report.plan.sets)}, {report.plan.threads} client threads =="]
    lines.append(f"{'step':14s} {'s':>6s} {'requests':>9s} {'polls':>7s} {'writes':>6s} "
                 f"{'retries':>7s} {'500s':>5s} {'503s':>5s} {'transport':>9s} "
                 f"{'p50 ms':>7s} {'p99 ms':>7s}")
    for step in report.steps:
        t = step.tally
        lines.append(f"{t.name:14s} {t.seconds:6.1f} {t.requests:9d} {t.polls:7d} "
                     f"{t.writes:6d} {t.retries:7d} {t.errors_500:5d} {t.statuses[503]:5d} "
                     f"{t.transport_errors:9d} {_ms(t.percentile(0.5)):>7s} "
                     f"{_ms(t.percentile(0.99)):>7s}")
        facts = {k: v for k, v in step.facts.items() if k not in ("last kill", "back")}
        if facts:
            lines.append("    " + "; ".join(f"{k}: {v}" for k, v in facts.items()))
    t, a = report.total, report.audit
    lines.append(f"all requests {t.requests} (polls {t.polls}, writes {t.writes}, retries "
                 f"{t.retries}); 500s {t.errors_500}, 503s {t.statuses[503]}, transport errors "
                 f"{t.transport_errors}; polls p50 {_ms(t.percentile(0.5))} ms, p99 "
                 f"{_ms(t.percentile(0.99))} ms")
    if a is not None:
        lines.append(f"writes: acknowledged {a.acknowledged}, stored {a.stored}, lost {a.lost}, "
                     f"duplicated {a.duplicated}, unanswered {a.unanswered} (stored though "
                     f"first unanswered: {a.answered_late})")
    lines.append("problems: " + ("none" if not report.problems else
                                 "\n  " + "\n  ".join(report.problems)))
    return "\n".join(lines)


def summary(report: Report) -> str:
    """One line: the figures the issue asks for."""
    t, a = report.total, report.audit
    kills = next((s.facts for s in report.steps if s.tally.name == "kills"), {})
    mixed = next((s.tally for s in report.steps if s.tally.name == "mixed"), Tally("mixed"))
    return (f"{report.database}: {t.requests} requests; writes acknowledged {a.acknowledged}, "
            f"stored {a.stored}, lost {a.lost}, duplicated {a.duplicated}; kills "
            f"{kills.get('api kills', 0)} API + {kills.get('scheduler kills', 0)} scheduler; "
            f"500s {t.errors_500}, 503s {t.statuses[503]}; transport errors "
            f"{t.transport_errors} ({mixed.transport_errors} in the mixed load); polls p50/p99 "
            f"{_ms(mixed.percentile(0.5))}/{_ms(mixed.percentile(0.99))} ms mixed, "
            f"{_ms(t.percentile(0.5))}/{_ms(t.percentile(0.99))} ms overall; "
            + ("no problems" if not report.problems else f"{len(report.problems)} PROBLEMS"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    parser.add_argument("--seconds", type=float, default=60.0, help="the mixed load's length")
    parser.add_argument("--kills", type=int, default=20, help="kills of each process")
    parser.add_argument("--outages", type=int, default=2, help="PostgreSQL stops and starts")
    parser.add_argument("--down", type=float, default=10.0, help="seconds of each outage")
    parser.add_argument("--lock-hold", type=float, default=8.0,
                        help="seconds another process holds SQLite's write lock")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--pace", type=float, default=0.0,
                        help="seconds each client thread waits between requests")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    from bench.common import hardware

    print(hardware())
    print(f"seed {args.seed}; client timeout {CLIENT_TIMEOUT:g} s, lease {LEASE_SECONDS} s, "
          f"SQLite busy timeout {BUSY_TIMEOUT:g} s", flush=True)
    reports = []

    def say(message: str) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="signpost-soak-") as tmp:
        for database in args.databases.split(","):
            before = len(reports)
            var_dir = Path(tmp) / database
            var_dir.mkdir()
            kills_ = {"api_kills": args.kills, "scheduler_kills": args.kills}
            if database == "sqlite":
                reason = Tmpfs.unavailable()
                if reason:
                    print(f"no-space step skipped: {reason}")
                plan = Plan(mixed_seconds=args.seconds, no_space=reason is None,
                            lock_hold=args.lock_hold, threads=args.threads, pace=args.pace,
                            seed=args.seed, **kills_)
                reports.append(soak("SQLite", var_dir,
                                    f"sqlite:///{(var_dir / 'signpost.db').resolve()}", plan,
                                    say=say))
            elif database == "postgresql":
                reports += _postgresql(var_dir, args, kills_, say)
            else:
                parser.error(f"unknown database {database!r}")
            for report in reports[before:]:
                print(figures(report), flush=True)
    print("\nsummary")
    for report in reports:
        print(summary(report))
    sys.exit(1 if any(report.problems for report in reports) else 0)


def _postgresql(var_dir: Path, args: argparse.Namespace, kills_: dict[str, int],
                say: Callable[[str], None]) -> list[Report]:
    """The load and the kills on the machine's server; the outages on a server of our own."""
    reports = []
    admin = os.environ.get("SIGNPOST_TEST_PG_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"signpost_soak_{uuid.uuid4().hex[:8]}"
    try:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT",
                               connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # absent: say why, go on to the server of our own
        print(f"PostgreSQL at {admin} skipped: {str(exc).splitlines()[0]}")
    else:
        try:
            (var_dir / "main").mkdir()
            plan = Plan(mixed_seconds=args.seconds, threads=args.threads, pace=args.pace,
                        seed=args.seed, **kills_)
            reports.append(soak(f"PostgreSQL ({admin.rsplit('@', 1)[-1]})", var_dir / "main",
                                admin.rsplit("/", 1)[0] + f"/{name}", plan, say=say))
        finally:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            engine.dispose()
    reason = ThrowawayPostgres.unavailable()
    if reason:
        print(f"PostgreSQL stop/start skipped: {reason}")
        return reports
    server = ThrowawayPostgres()
    try:
        (var_dir / "own").mkdir()
        plan = Plan(mixed_seconds=min(args.seconds, 10.0), outages=args.outages,
                    down=args.down, threads=args.threads, pace=args.pace, seed=args.seed)
        reports.append(soak(f"PostgreSQL (own server, port {server.port}, stopped and "
                            "started)", var_dir / "own", server.create_database("signpost"),
                            plan, server=server, say=say))
    finally:
        server.destroy()
    return reports


if __name__ == "__main__":
    main()
