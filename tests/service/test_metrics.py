"""``GET /metrics`` in process (TestClient, lifespan on, static fits run inline).

The scrape is parsed with prometheus_client's own parser and compared with what the API serves:
the probability gauges with the posterior JSON, the last-published time with the fit, the
coverage lag with the coverage the posterior reports. A fit run through the runner moves the
counters and the duration histogram by exactly that fit; requests move the latency histogram
of their route template. The database's metrics come from the database, so a registry built
on a database that does not answer says so (``signpost_database_up 0``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from typer.testing import CliRunner

from service.api import create_app
from service.cli import app as cli_app
from service.context import Services
from service.db import Database, FitRow
from service.metrics import FitDurations, metrics_registry
from service.repositories.fits import create_fit, get_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observation
from service.repositories.sets import load_bundled_sets
from service.reviews import add_review
from tests.service.support import TestClient, make_settings

TODAY = date(2025, 12, 31)
CONVERGENCE = "sino-russian-convergence"
WORLD = "world-order-2035"
REVIEWED = "joint_patrol"  # reviewed through 2025-11-30 for WORLD; the others: newest entry
POSTERIOR_ROUTE = "/v1/sets/{set_id}/posterior"



@dataclass
class Api:
    client: TestClient
    services: Services
    store: Database
    url: str
    var_dir: Path


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    """Both bundled sets with a published static fit; a review of one indicator."""
    var_dir = tmp_path_factory.mktemp("metrics")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    app = create_app(make_settings(var_dir, url))
    with TestClient(app) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        for day in ("2025-02-10", "2025-05-20", "2025-08-03"):
            add_observation(store, data={"indicator": "joint_exercise", "date": day,
                                         "grade": "A1"})
        add_review(store, {"set_id": WORLD, "indicators": [REVIEWED], "through": "2025-11-30"},
                   analyst="ana")
        for set_id in (WORLD, CONVERGENCE):
            result = services.runner.run_fit(create_fit(store, set_id=set_id))
            assert result["status"] == "published", result
        yield Api(client, services, store, url, var_dir)


Samples = dict[str, list[Sample]]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, default: float | None = None, **labels: str) -> float:
    """The one sample of ``name`` with these labels (others may be present too)."""
    found = [s.value for s in samples.get(name, [])
             if all(s.labels.get(k) == v for k, v in labels.items())]
    if not found and default is not None:
        return default
    assert len(found) == 1, (name, labels, found)
    return found[0]


def posterior(api: Api, set_id: str) -> dict:
    response = api.client.get(f"/v1/sets/{set_id}/posterior")
    assert response.status_code == 200, response.text
    return response.json()


# -- what the database holds ------------------------------------------------------------------

def test_probabilities_equal_the_served_posterior(api):
    samples = scrape(api.client)
    assert value(samples, "signpost_database_up") == 1
    for set_id in (WORLD, CONVERGENCE):
        served = posterior(api, set_id)
        gauges = {s.labels["scenario"]: s.value for s in samples["signpost_scenario_probability"]
                  if s.labels["set_id"] == set_id}
        assert set(gauges) == {s["id"] for s in served["scenarios"]}
        for scenario in served["scenarios"]:
            assert gauges[scenario["id"]] == pytest.approx(scenario["probability"], abs=1e-12)


def test_last_published_is_the_served_fits_publication_time(api):
    samples = scrape(api.client)
    for set_id in (WORLD, CONVERGENCE):
        served = posterior(api, set_id)
        published = get_fit(api.store, fit_id=served["fit_id"]).finished_at.replace(tzinfo=UTC)
        assert value(samples, "signpost_last_published_timestamp_seconds", set_id=set_id) == \
            pytest.approx(published.timestamp(), abs=1e-6)
        assert published.isoformat() == served["fitted_at"]


def test_coverage_lag_is_now_minus_the_end_of_the_covered_day(api):
    before = datetime.now(UTC)
    samples = scrape(api.client)
    after = datetime.now(UTC)
    served = posterior(api, WORLD)
    assert served["coverage"][REVIEWED] | {"basis": "review"} == served["coverage"][REVIEWED]
    lags = {s.labels["indicator"]: s.value for s in samples["signpost_coverage_lag_seconds"]
            if s.labels["set_id"] == WORLD}
    assert set(lags) == set(served["coverage"])
    for indicator, coverage in served["coverage"].items():
        end = datetime.combine(date.fromisoformat(coverage["covered_through"]) + timedelta(1),
                               datetime.min.time(), UTC)
        assert (before - end).total_seconds() <= lags[indicator] <= (after - end).total_seconds()
    # the review's date, not the newest entry's
    reviewed_end = datetime(2025, 12, 1, tzinfo=UTC)
    assert (before - reviewed_end).total_seconds() <= lags[REVIEWED] \
        <= (after - reviewed_end).total_seconds()
    assert lags["joint_exercise"] > lags[REVIEWED]  # covered through 2025-08-03 only


def test_a_fit_moves_the_counters_and_the_histogram_by_that_fit(api):
    before = scrape(api.client)
    counted = value(before, "signpost_fits_total", set_id=WORLD, status="published")
    durations = dict(set_id=WORLD, sampler="conjugate")
    count = value(before, "signpost_fit_duration_seconds_count", **durations)
    total = value(before, "signpost_fit_duration_seconds_sum", **durations)
    assert count >= 1 and value(before, "signpost_fits_pending", set_id=WORLD,
                                status="queued") == 0

    fit_id = create_fit(api.store, set_id=WORLD, requested_by="test_metrics")
    queued = scrape(api.client)
    assert value(queued, "signpost_fits_pending", set_id=WORLD, status="queued") == 1
    assert value(queued, "signpost_fits_total", set_id=WORLD, status="published") == counted
    assert api.services.runner.run_fit(fit_id)["status"] == "published"

    after = scrape(api.client)
    assert value(after, "signpost_fits_pending", set_id=WORLD, status="queued") == 0
    assert value(after, "signpost_fits_total", set_id=WORLD, status="published") == counted + 1
    for status in ("rejected", "failed"):
        assert value(after, "signpost_fits_total", set_id=WORLD, status=status) == \
            value(before, "signpost_fits_total", set_id=WORLD, status=status)
    assert value(after, "signpost_fits_total", set_id=CONVERGENCE, status="published") == \
        value(before, "signpost_fits_total", set_id=CONVERGENCE, status="published")
    seconds = get_fit(api.store, fit_id=fit_id).timings["total_s"]
    assert value(after, "signpost_fit_duration_seconds_count", **durations) == count + 1
    assert value(after, "signpost_fit_duration_seconds_sum", **durations) == \
        pytest.approx(total + seconds, abs=1e-9)
    # the new fit lands in every bucket from the first bound at or above its duration on
    for sample in after["signpost_fit_duration_seconds_bucket"]:
        if sample.labels["set_id"] == WORLD:
            le = float(sample.labels["le"])
            old = value(before, "signpost_fit_duration_seconds_bucket", le=sample.labels["le"],
                        **durations)
            assert sample.value == old + (1 if seconds <= le else 0), sample
    # and the gauges follow the newly served fit
    assert value(after, "signpost_last_published_timestamp_seconds", set_id=WORLD) == \
        pytest.approx(datetime.fromisoformat(posterior(api, WORLD)["fitted_at"]).timestamp())


def test_fit_durations_read_each_row_once_and_a_late_commit_too(tmp_path):
    store = Database(f"sqlite:///{tmp_path / 'durations.db'}")
    store.migrate()
    load_bundled_sets(store)
    now = datetime.now(UTC)

    def fit_row(seconds: float, finished: datetime, status: str = "published") -> None:
        with store.Session.begin() as session:
            session.add(FitRow(id=str(uuid.uuid4()), set_id=WORLD, status=status,
                               created_at=finished, finished_at=finished,
                               timings={"compile_s": 0.0, "sample_s": seconds,
                                        "total_s": seconds},
                               summary={"sampler": {"name": "paths"}}))

    def counts(durations: FitDurations) -> tuple[float, float]:
        durations.update(store)
        samples = {s.name: s.value for s in durations.family().samples}
        return samples["signpost_fit_duration_seconds_count"], \
            samples["signpost_fit_duration_seconds_sum"]

    durations = FitDurations()
    fit_row(2.0, now)
    fit_row(30.0, now, status="failed")  # no verdict, no timings in real rows: not counted
    assert counts(durations) == (1, 2.0)
    assert counts(durations) == (1, 2.0)  # read once, not again at the next scrape
    fit_row(3.0, now - timedelta(minutes=10))  # finished earlier, committed later
    assert counts(durations) == (2, 5.0)
    fit_row(4.0, now - timedelta(days=1))  # far older than the newest seen: out of the window
    assert counts(durations) == (2, 5.0)
    assert counts(FitDurations()) == (3, 9.0)  # a new process reads every row


# -- requests ---------------------------------------------------------------------------------

def test_request_latency_is_labelled_by_route_template(api):
    before = scrape(api.client)
    polls = dict(method="GET", route=POSTERIOR_ROUTE, status="200")
    count = value(before, "signpost_request_duration_seconds_count", 0.0, **polls)
    for set_id in (WORLD, CONVERGENCE, WORLD):
        posterior(api, set_id)
    assert api.client.get("/v1/sets/nope/posterior").status_code == 404
    assert api.client.get("/nowhere").status_code == 404
    too_big = api.client.post("/v1/observations", content=b"{}", headers={
        "Content-Type": "application/json", "Content-Length": str(10 << 20)})
    assert too_big.status_code == 413, too_big.text

    after = scrape(api.client)
    assert value(after, "signpost_request_duration_seconds_count", **polls) == count + 3
    assert value(after, "signpost_request_duration_seconds_count", method="GET",
                 route=POSTERIOR_ROUTE, status="404") >= 1
    assert value(after, "signpost_request_duration_seconds_count", method="GET",
                 route="unrouted", status="404") >= 1
    assert value(after, "signpost_request_duration_seconds_count", method="POST",
                 route="unrouted", status="413") >= 1
    assert value(after, "signpost_request_duration_seconds_count", method="GET",
                 route="/metrics", status="200") >= 1
    routes = {s.labels["route"] for s in after["signpost_request_duration_seconds_count"]}
    assert not any(WORLD in route or "nope" in route for route in routes), routes
    # a histogram: the poll's observations are in its buckets
    assert value(after, "signpost_request_duration_seconds_bucket", le="+Inf", **polls) == \
        count + 3


def test_openmetrics_when_the_scraper_asks(api):
    response = api.client.get("/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_metrics_need_a_key_where_reads_do(api):
    secret = create_key(api.store, role="reader")
    app = create_app(make_settings(api.var_dir, api.url, require_read_key=True))
    with TestClient(app) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["field"] == "Authorization"
        samples = scrape(client, Authorization=f"Bearer {secret}")
    assert value(samples, "signpost_fits_total", set_id=WORLD, status="published") >= 1


def test_a_database_that_does_not_answer_is_reported_not_raised(tmp_path, caplog):
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'never-migrated.db'}")
    services = Services.build(settings)
    try:
        samples = parse(generate_latest(metrics_registry(lambda: services)).decode())
    finally:
        services.close()
    assert value(samples, "signpost_database_up") == 0
    assert "signpost_scenario_probability" not in samples
    assert "process_cpu_seconds_total" in samples  # the process's metrics still come
    assert "reading metrics from the database failed" in caplog.text


# -- `signpost scheduler --metrics-port` --------------------------------------------------------

@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def scheduler_env(tmp_path, monkeypatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGNPOST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNPOST_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNPOST_WORKER", "inline")


@pytest.mark.parametrize("how", ["option", "setting"])
def test_a_chosen_metrics_port_that_is_taken_stops_the_scheduler(busy_port, scheduler_env,
                                                                 monkeypatch, how):
    args = ["scheduler"]
    if how == "option":
        args += ["--metrics-port", str(busy_port)]
    else:
        monkeypatch.setenv("SIGNPOST_SCHEDULER_METRICS_PORT", str(busy_port))
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 2, result.output
    assert f"cannot serve metrics on 127.0.0.1:{busy_port}" in result.output
    assert "--metrics-port or SIGNPOST_SCHEDULER_METRICS_PORT" in result.output
    assert "scheduler running" not in result.output  # refused before scheduling anything


def test_the_metrics_port_is_checked_like_any_option(scheduler_env):
    result = CliRunner().invoke(cli_app, ["scheduler", "--metrics-port", "70000"])
    assert result.exit_code == 2 and "--metrics-port" in result.output, result.output
