"""deploy/: the Prometheus scrape config and Grafana's provisioning match docker-compose.yml.

Prometheus must scrape every API replica (DNS service discovery of the compose service, on the
port the container serves) and the scheduler's metrics port; Grafana's data source must be the
compose Prometheus, and its dashboard provider must load the mounted dashboard, whose panels
all query that data source. That each panel's query names metrics the app really exports is
checked against real scrapes in tests/e2e/test_metrics.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "signpost.json"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return _yaml(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def jobs() -> dict[str, dict]:
    config = _yaml(DEPLOY / "prometheus" / "prometheus.yml")
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _container_port(service: dict) -> int:
    """The container port the service publishes (``host:container``)."""
    (port,) = {int(str(p).rsplit(":", 1)[1]) for p in service["ports"]}
    return port


def _mounts(service: dict) -> dict[str, str]:
    """Container path → host path (or volume) of each of the service's volumes."""
    return {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}


def test_prometheus_scrapes_every_api_replica(compose, jobs):
    api = compose["services"]["api"]
    (discovery,) = jobs["signpost-api"]["dns_sd_configs"]
    # the service name resolves to every replica's address: one target each
    assert discovery["names"] == ["api"] and discovery["type"] == "A"
    assert discovery["port"] == _container_port(api)
    assert "--port 8000" in " ".join(api["command"]) and discovery["port"] == 8000
    assert jobs["signpost-api"]["metrics_path"] == "/metrics"


def test_prometheus_scrapes_the_scheduler_on_its_metrics_port(compose, jobs):
    scheduler = compose["services"]["scheduler"]
    env = scheduler["environment"]
    port = int(env["SIGNPOST_SCHEDULER_METRICS_PORT"])
    assert [str(p) for p in scheduler["expose"]] == [str(port)]
    assert env["SIGNPOST_HOST"] == "0.0.0.0"  # reachable from the prometheus container
    (targets,) = [c["targets"] for c in jobs["signpost-scheduler"]["static_configs"]]
    assert targets == [f"scheduler:{port}"]
    assert jobs["signpost-scheduler"]["metrics_path"] == "/metrics"


def test_prometheus_and_grafana_get_their_config_from_deploy(compose):
    services = compose["services"]
    prometheus = _mounts(services["prometheus"])
    assert (ROOT / prometheus["/etc/prometheus/prometheus.yml"]).resolve() == \
        DEPLOY / "prometheus" / "prometheus.yml"
    grafana = _mounts(services["grafana"])
    assert (ROOT / grafana["/etc/grafana/provisioning"]).resolve() == \
        DEPLOY / "grafana" / "provisioning"
    provider = _yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "signpost.yml")
    (options,) = [p["options"] for p in provider["providers"]]
    assert (ROOT / grafana[options["path"]]).resolve() == DASHBOARD.parent
    for name in ("prometheus", "grafana"):  # the metrics carry the probabilities: loopback
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name


def test_the_dashboard_queries_the_provisioned_prometheus(compose):
    datasources = _yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in compose["services"] and port == "9090"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == source["uid"]
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("probability", "fits", "duration", "published", "coverage", "latency",
                  "status"):
        assert topic in titles, topic
