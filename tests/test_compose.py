"""docker-compose.yml and the Dockerfile: PostgreSQL with a volume and a healthcheck, API
replicas that migrate at start and run no scheduler, exactly one scheduler.

The structure is checked from the YAML itself (always); ``docker compose config`` (or the
standalone ``docker-compose config``) validates the file where a client is installed — no
engine is needed for that.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _command(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def _replicas(service: dict) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_config_is_valid():
    client = _compose_client()
    if client is None:
        pytest.skip("neither `docker compose` (the compose plugin) nor `docker-compose` is "
                    "installed; the YAML structure is still checked by the other tests")
    result = subprocess.run([*client, "-f", str(COMPOSE), "config", "--quiet"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_postgres_has_a_volume_and_a_healthcheck(compose):
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a bind mount


def test_api_migrates_at_start_waits_for_postgres_and_runs_no_scheduler(compose):
    api = compose["services"]["api"]
    command = _command(api)
    assert "signpost init" in command and "signpost serve" in command
    assert command.index("signpost init") < command.index("signpost serve")
    assert "--host 0.0.0.0" in command
    env = api["environment"]
    assert env["SIGNPOST_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["SIGNPOST_DATABASE_URL"]
    assert str(env["SIGNPOST_SCHEDULER"]).lower() == "false"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert _replicas(api) >= 2
    # replicas cannot share one fixed host port: a range (or none) is published
    for port in api.get("ports", []):
        host = str(port).rsplit(":", 1)[0]
        assert "-" in host, f"fixed host port {port!r} clashes between replicas"


def test_exactly_one_scheduler(compose):
    services = compose["services"]
    runs_scheduler = [name for name, service in services.items()
                      if _command(service).strip().endswith("signpost scheduler")]
    assert runs_scheduler == ["scheduler"]
    scheduler = services["scheduler"]
    assert _replicas(scheduler) == 1
    assert scheduler["environment"]["SIGNPOST_WORKER"] == "process"
    assert scheduler["environment"]["SIGNPOST_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert scheduler["depends_on"]["postgres"]["condition"] == "service_healthy"
    # API replicas never schedule
    for name, service in services.items():
        if "signpost serve" in _command(service):
            assert str(service["environment"]["SIGNPOST_SCHEDULER"]).lower() == "false", name


def test_var_dir_is_a_shared_named_volume(compose):
    for name in ("api", "scheduler"):
        service = compose["services"][name]
        assert service["environment"]["SIGNPOST_VAR_DIR"] == "/var/lib/signpost"
        mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
        assert mounts["/var/lib/signpost"] in compose["volumes"]


def test_dockerfile_builds_a_non_root_python_312_image():
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    assert lines[[i for i, x in enumerate(lines) if x.startswith("FROM")][0]] == (
        "FROM python:3.12-slim")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert any("SIGNPOST_VAR_DIR=/var/lib/signpost" in line for line in lines)
    assert any(line.startswith("RUN pip install .") for line in lines)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and "var" in ignored
