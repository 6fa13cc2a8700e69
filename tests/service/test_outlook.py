"""Forecasts over time through the API and the CLI: path, forecast, milestones, replay."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest
from typer.testing import CliRunner

from forecast import exact_posterior
from indicators import read_observations_csv
from service.api import create_app
from service.cli import app as cli
from service.repositories.evidence import evidence_of
from service.repositories.fits import create_fit
from service.repositories.observations import add_observations
from service.repositories.sets import get_catalog, get_set, load_bundled_sets
from service.settings import Settings
from tests.service.support import TestClient

pytestmark = pytest.mark.slow
TODAY = date(2025, 12, 31)
CONVERGENCE = "sino-russian-convergence"
WORLD = "world-order-2035"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("outlook")
    settings = Settings(var_dir=var_dir, scheduler=False, worker="inline",
                        today=TODAY.isoformat(), replay_wait=0)
    app = create_app(settings)
    with TestClient(app) as client:
        services = app.state.services
        store = services.store
        load_bundled_sets(store)
        observations, _ = read_observations_csv("indicators/data/sample_observations.csv",
                                                get_catalog(store), today=TODAY)
        add_observations(store, observations=observations)
        for set_id in (CONVERGENCE, WORLD):
            result = services.runner.run_fit(create_fit(store, set_id=set_id, requested_by="test"))
            assert result["status"] == "published", result
        yield client, services, {"SIGNPOST_VAR_DIR": str(var_dir),
                                 "SIGNPOST_TODAY": TODAY.isoformat()}


def test_path_has_every_period_and_ends_at_the_nowcast(env):
    client, services, _ = env
    body = client.get(f"/v1/sets/{CONVERGENCE}/path").json()
    assert body["transitions"] == "learned"
    assert body["periods"][0] == "2012Q1" and body["periods"][-1] == "2025Q4"
    path = np.array(body["probability"])
    np.testing.assert_allclose(path.sum(axis=1), 1.0, atol=1e-9)
    posterior = client.get(f"/v1/sets/{CONVERGENCE}/posterior").json()
    np.testing.assert_allclose(path[-1], [s["probability"] for s in posterior["scenarios"]],
                               atol=1e-9)


def test_forecast_at_and_by(env):
    client, _, _ = env
    body = client.get(f"/v1/sets/{CONVERGENCE}/forecast", params={"horizon": "2030-06-30"})
    assert body.status_code == 200, body.text
    body = body.json()
    assert body["period"] == "2030Q2" and body["steps"] == 18
    assert {s["id"] for s in body["scenarios"]} == {"loose", "integrated_ew", "formal_bloc",
                                                    "crisis"}
    assert abs(sum(s["at"] for s in body["scenarios"]) - 1) < 1e-9
    for s in body["scenarios"]:
        assert s["by"] >= s["at"] - 1e-12 and 0 <= s["mcse"] < 0.01
    later = client.get(f"/v1/sets/{CONVERGENCE}/forecast",
                       params={"horizon": "2030-12-31"}).json()
    for a, b in zip(body["scenarios"], later["scenarios"], strict=True):
        assert b["by"] >= a["by"] - 1e-12  # P(by) never falls as the horizon grows


def test_static_set_forecast_is_its_posterior(env):
    client, services, _ = env
    body = client.get(f"/v1/sets/{WORLD}/forecast", params={"horizon": "2034-01-01"}).json()
    scenario_set = get_set(services.store, set_id=WORLD)
    exact = exact_posterior(scenario_set, evidence_of(services.store, scenario_set=scenario_set))
    for s, p in zip(body["scenarios"], exact.probability, strict=True):
        assert s["at"] == pytest.approx(p, abs=1e-9) and s["by"] == pytest.approx(p, abs=1e-9)


@pytest.mark.parametrize("horizon, message", [
    ("tomorrow", "is not a date"), ("2011-12-31", "is before the start"),
    ("2031-01-01", "is after the end"),
])
def test_bad_horizons_are_422_naming_the_field(env, horizon, message):
    client, _, _ = env
    response = client.get(f"/v1/sets/{CONVERGENCE}/forecast", params={"horizon": horizon})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "horizon"
    assert message in response.json()["error"]["message"]


def test_milestones_answer_how_far_from_a_shared_network(env):
    client, _, _ = env
    body = client.get(f"/v1/sets/{CONVERGENCE}/milestones").json()
    deeper = body["reach_or_deeper"]["integrated_ew"]
    assert deeper["scenarios"] == ["integrated_ew", "formal_bloc"]
    assert 0 <= deeper["p_by_end"] <= 1 and deeper["mcse"] < 0.01
    link = body["milestones"]["early_warning_integration"]
    assert link["occurred"] is None and 0 < link["p_by_end"] < 1
    assert body["evidence"]["joint_exercise"]["weighted"] > 0


def test_replay_is_stored_as_a_replay_and_never_served_live(env):
    client, services, _ = env
    live = client.get(f"/v1/sets/{CONVERGENCE}/posterior").json()["fit_id"]
    first = client.get(f"/v1/sets/{CONVERGENCE}/replay", params={"as_of": "2022-02-24"})
    assert first.status_code == 202  # replay_wait=0 and no scheduler: queued
    fit_id = first.json()["fit_id"]
    services.runner.run_fit(fit_id)  # what the scheduler's drain would do
    done = client.get(f"/v1/sets/{CONVERGENCE}/replay", params={"as_of": "2022-02-24"})
    assert done.status_code == 200
    body = done.json()
    assert body["fit_id"] == fit_id and body["kind"] == "replay" and body["status"] == "published"
    assert body["as_of"] == "2022-02-24" and body["diagnostics"]["passed"]
    assert client.get(f"/v1/sets/{CONVERGENCE}/posterior").json()["fit_id"] == live
    bad = client.get(f"/v1/sets/{CONVERGENCE}/replay", params={"as_of": "2022-13-01"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "as_of"


def test_cli_and_api_give_the_same_forecast_and_milestones(env):
    client, _, cli_env = env
    runner = CliRunner()
    result = runner.invoke(cli, ["forecast", "--set", CONVERGENCE, "--horizon", "2030-12-31",
                                 "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    api = client.get(f"/v1/sets/{CONVERGENCE}/forecast", params={"horizon": "2030-12-31"})
    assert json.loads(result.stdout) == api.json()
    result = runner.invoke(cli, ["milestones", "--set", CONVERGENCE, "--json"], env=cli_env)
    assert json.loads(result.stdout) == client.get(f"/v1/sets/{CONVERGENCE}/milestones").json()
    bad = runner.invoke(cli, ["forecast", "--set", CONVERGENCE, "--horizon", "2040-01-01"],
                        env=cli_env)
    assert bad.exit_code == 2 and "after the end" in bad.output


def test_cli_replay_prints_the_posterior_with_diagnostics(env):
    _, _, cli_env = env
    result = CliRunner().invoke(cli, ["replay", "--set", WORLD, "--as-of", "2024-12-31",
                                      "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["kind"] == "replay" and body["as_of"] == "2024-12-31"
    assert body["diagnostics"]["passed"] is True
