"""Resolutions and scores through the API (TestClient), on a synthetic history of fits.

Published live fits with known probabilities are stored through the repositories at known
times; after a resolution the served Brier and log scores, lead-time rows and reliability table
must equal the hand computation written out below. Replays, rejected fits and fits published on
or after the resolution date must not count; a void set is listed and not scored. The schema of
migration 0007 must equal the models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from forecast import Diagnostics, FitRecord, ScenarioResult, Timings
from priors import ScenarioSet
from service.api import create_app
from service.cli import app as cli_app
from service.db import Base, Database
from service.errors import Conflict
from service.repositories.fits import create_fit, update_fit
from service.repositories.keys import create_key
from service.repositories.resolutions import current_resolution, resolve
from service.repositories.sets import get_set, load_bundled_sets, load_set_text
from service.settings import Settings
from tests.service.support import TestClient, bearer

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
CONVERGENCE = "sino-russian-convergence"
NEW_TABLES = {"alert_rules", "alert_deliveries", "resolutions"}
SMALL_SET = """\
id: drills-only
title: Drills only
question: Are joint drills frequent?
period: quarter
start: 2020-01-01
scenarios:
  - {id: calm, name: Calm, prior: 0.7}
  - {id: busy, name: Busy, prior: 0.3}
indicators:
  joint_exercise:
    calm: {rate: 1.0, sd: 0.5}
    busy: {rate: 3.0, sd: 1.0}
"""


def publish_synthetic(store: Database, scenario_set: ScenarioSet, probabilities: dict[str, float],
                      published_at: datetime, kind: str = "live",
                      status: str = "published") -> str:
    """Store a finished fit of ``scenario_set`` with these probabilities, published then."""
    fit_id = create_fit(store, set_id=scenario_set.id, requested_by="synthetic", kind=kind,
                        as_of=published_at.date() if kind == "replay" else None)
    record = FitRecord(
        set_id=scenario_set.id, set_hash=scenario_set.content_hash,
        evidence_hash=f"synthetic-{fit_id}", seed=0,
        scenarios=tuple(ScenarioResult(s.id, s.name, s.prior, probabilities[s.id], 0.0)
                        for s in scenario_set.scenarios),
        diagnostics=Diagnostics(max_rhat=1.0, min_ess_bulk=1e4, divergences=0, max_mcse=0.0,
                                passed=status == "published"),
        sampler=None, versions={}, timings=Timings(compile_s=0.0, sample_s=0.0),
        parameters={})
    update_fit(store, fit_id=fit_id, status=status, started_at=published_at,
               finished_at=published_at, as_of=published_at.date(),
               set_hash=record.set_hash, evidence_hash=record.evidence_hash, seed=0,
               diagnostics=record.diagnostics.to_dict(), summary=record.to_dict())
    return fit_id


def at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


# the world-order set's scenarios, in order: hardened_bipolar, us_russia_thaw,
# us_china_cooperation, multipolar; it resolves as multipolar on 2025-06-30
HISTORY = [
    ("2024-01-15", (0.40, 0.20, 0.08, 0.32)),
    ("2024-06-01", (0.30, 0.20, 0.10, 0.40)),
    ("2024-12-20", (0.25, 0.15, 0.10, 0.50)),
    ("2025-04-10", (0.20, 0.10, 0.10, 0.60)),
]
RESOLVED_ON = "2025-06-30"


@dataclass
class Env:
    client: TestClient
    store: Database
    url: str
    var_dir: Path
    admin: dict[str, str]
    analyst: dict[str, str]
    fits: list[str]



@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    var_dir = tmp_path_factory.mktemp("scores")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    app = create_app(Settings(var_dir=var_dir, database_url=url, scheduler=False,
                              worker="inline", today=TODAY.isoformat(), dynamic=False))
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        load_set_text(store, yaml_text=SMALL_SET, source="test")
        world = get_set(store, set_id=WORLD)
        ids = [s.id for s in world.scenarios]
        assert ids == ["hardened_bipolar", "us_russia_thaw", "us_china_cooperation",
                       "multipolar"]
        fits = [publish_synthetic(store, world, dict(zip(ids, p, strict=True)), at(day))
                for day, p in HISTORY]
        # not scored: published on the resolution day and after it, a replay, a rejected fit
        skewed = dict(zip(ids, (0.01, 0.01, 0.01, 0.97), strict=True))
        publish_synthetic(store, world, skewed, at(RESOLVED_ON, 10))
        publish_synthetic(store, world, skewed, at("2025-08-01"))
        publish_synthetic(store, world, skewed, at("2025-05-01"), kind="replay")
        publish_synthetic(store, world, skewed, at("2025-05-02"), status="rejected")
        # the convergence set has a live fit too, but it is voided
        convergence = get_set(store, set_id=CONVERGENCE)
        publish_synthetic(store, convergence, {s.id: 0.25 for s in convergence.scenarios},
                          at("2025-03-01"))
        yield Env(client, store, url, var_dir,
                  admin=bearer(create_key(store, role="admin", name="ada")),
                  analyst=bearer(create_key(store, role="analyst", name="ana")), fits=fits)


def error(response) -> tuple[int, str, str | None]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return response.status_code, body["error"]["code"], body["error"]["field"]


def test_the_migration_creates_exactly_the_models_tables(env):
    with env.store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert [d for d in differences if _touches(d) & NEW_TABLES] == []
    assert NEW_TABLES <= set(Base.metadata.tables)


def _touches(difference) -> set[str]:
    """The tables an autogenerate difference (one operation or a list of them) is about."""
    names = set()
    for operation in difference if isinstance(difference, list) else [difference]:
        for part in operation[1:]:
            if isinstance(part, str):
                names.add(part)
            elif hasattr(part, "columns") and hasattr(part, "name"):  # a Table
                names.add(part.name)
            elif getattr(part, "table", None) is not None:  # an Index, Column or constraint
                names.add(part.table.name)
    return names


def test_an_unresolved_set_has_no_scores(env):
    response = env.client.get(f"/v1/sets/{WORLD}/scores")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["resolution"], body["brier"], body["n_fits"]) == (
        "unresolved", None, None, 0)


def test_resolution_is_admin_only_and_validated(env):
    body = {"scenario": "multipolar", "date": RESOLVED_ON}
    path = f"/v1/sets/{WORLD}/resolution"
    assert error(env.client.post(path, json=body)) == (401, "unauthorized", "Authorization")
    assert error(env.client.post(path, json=body, headers=env.analyst))[:2] == (403, "forbidden")
    bad = [({"scenario": "multipolarr", "date": RESOLVED_ON}, "scenario"),
           ({"date": RESOLVED_ON}, "scenario"),
           ({"scenario": "multipolar"}, "date"),
           ({"scenario": "multipolar", "date": "2026-02-01"}, "date"),
           ({"scenario": "multipolar", "date": "30/06/2025"}, "date"),
           ({"scenario": "multipolar", "date": "2020-01-01"}, "date"),
           ({"scenario": "multipolar", "void": True, "date": RESOLVED_ON}, "void"),
           ({"scenario": "multipolar", "date": RESOLVED_ON, "colour": "red"}, "colour")]
    for data, field in bad:
        response = env.client.post(path, json=data, headers=env.admin)
        assert error(response)[::2] == (422, field), (data, response.text)
    assert "did you mean 'multipolar'" in env.client.post(
        path, json=bad[0][0], headers=env.admin).json()["error"]["message"]
    assert error(env.client.post("/v1/sets/nope/resolution", json=body,
                                 headers=env.admin))[::2] == (404, "set_id")
    # nothing was stored
    assert env.client.get(f"/v1/sets/{WORLD}/scores").json()["status"] == "unresolved"


def test_scores_equal_the_hand_computation(env):
    response = env.client.post(f"/v1/sets/{WORLD}/resolution", headers=env.admin,
                               json={"scenario": "multipolar", "date": RESOLVED_ON,
                                     "note": "synthetic"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["status"], created["scenario"], created["date"], created["resolved_by"],
            created["replaced"]) == ("resolved", "multipolar", RESOLVED_ON, "ada", None)

    # Σ_k (p_k − 1[k = multipolar])², fit by fit (multipolar is the last scenario)
    brier = [0.40**2 + 0.20**2 + 0.08**2 + (0.32 - 1)**2,   # 0.6688
             0.30**2 + 0.20**2 + 0.10**2 + (0.40 - 1)**2,   # 0.5000
             0.25**2 + 0.15**2 + 0.10**2 + (0.50 - 1)**2,   # 0.3450
             0.20**2 + 0.10**2 + 0.10**2 + (0.60 - 1)**2]   # 0.2200
    log = [-math.log(0.32), -math.log(0.40), -math.log(0.50), -math.log(0.60)]
    assert sum(brier) / 4 == pytest.approx(0.43345, abs=1e-12)
    assert sum(log) / 4 == pytest.approx(0.814925, abs=1e-6)

    body = env.client.get(f"/v1/sets/{WORLD}/scores").json()
    assert body["status"] == "resolved" and body["resolution"]["scenario"] == "multipolar"
    assert body["n_fits"] == 4  # not the fits of 2025-06-30 and after, the replay, the rejected
    assert body["brier"] == pytest.approx(0.43345, abs=1e-12)
    assert body["log_score"] == pytest.approx(sum(log) / 4, abs=1e-12)
    # lead L: the newest fit published on or before 2025-06-30 − L days
    expected = {30: ("2025-05-31", 3), 90: ("2025-04-01", 2), 180: ("2025-01-01", 2),
                365: ("2024-06-30", 1)}
    assert [row["lead_days"] for row in body["leads"]] == [30, 90, 180, 365]
    for row in body["leads"]:
        cutoff, i = expected[row["lead_days"]]
        assert (row["cutoff"], row["fit_id"], row["n_fits"]) == (cutoff, env.fits[i], 1)
        assert row["brier"] == pytest.approx(brier[i], abs=1e-12)
        assert row["log_score"] == pytest.approx(log[i], abs=1e-12)
        assert row["p_resolved"] == HISTORY[i][1][3]


def test_void_sets_are_listed_not_scored_and_the_reliability_table(env):
    response = env.client.post(f"/v1/sets/{CONVERGENCE}/resolution", headers=env.admin,
                               json={"void": True, "note": "the question was withdrawn"})
    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["date"]) == ("void", TODAY.isoformat())
    voided = env.client.get(f"/v1/sets/{CONVERGENCE}/scores").json()
    assert (voided["status"], voided["brier"], voided["log_score"], voided["n_fits"],
            voided["leads"]) == ("void", None, None, 0, [])

    body = env.client.get("/v1/scores").json()
    by_set = {s["set_id"]: s for s in body["sets"]}
    assert set(by_set) == {CONVERGENCE, WORLD}  # the unresolved small set is not listed
    assert by_set[CONVERGENCE]["status"] == "void" and by_set[CONVERGENCE]["brier"] is None
    assert by_set[WORLD]["brier"] == pytest.approx(0.43345, abs=1e-12)
    assert (body["n_scored_sets"], body["n_fits"]) == (1, 4)
    assert body["brier"] == pytest.approx(0.43345, abs=1e-12)
    # 16 (fit, scenario) pairs in bins of 0.1; a pair is a hit when its scenario is multipolar
    table = {row["bin"]: row for row in body["reliability"]}
    assert len(table) == 10 and sum(row["n"] for row in table.values()) == 16
    hand = {"0.0-0.1": (1, 0.08, 0.0),
            "0.1-0.2": (5, (0.10 + 0.10 + 0.15 + 0.10 + 0.10) / 5, 0.0),
            "0.2-0.3": (4, (0.20 + 0.20 + 0.25 + 0.20) / 4, 0.0),
            "0.3-0.4": (2, (0.32 + 0.30) / 2, 0.5),
            "0.4-0.5": (2, 0.40, 0.5),
            "0.5-0.6": (1, 0.50, 1.0),
            "0.6-0.7": (1, 0.60, 1.0)}
    for name, row in table.items():
        if name in hand:
            n, mean, observed = hand[name]
            assert (row["n"], row["observed_frequency"]) == (n, observed), row
            assert row["mean_forecast"] == pytest.approx(mean, abs=1e-12)
        else:
            assert (row["n"], row["mean_forecast"], row["observed_frequency"]) == (0, None, None)


def test_a_second_resolution_is_refused_unless_it_replaces(env):
    path = "/v1/sets/drills-only/resolution"
    first = env.client.post(path, headers=env.admin, json={"scenario": "calm",
                                                           "date": "2025-01-01"})
    assert first.status_code == 201, first.text
    again = env.client.post(path, headers=env.admin, json={"scenario": "busy",
                                                           "date": "2025-02-01"})
    assert error(again) == (409, "already_resolved", "set_id")
    assert env.client.get("/v1/sets/drills-only/scores").json()["resolution"]["scenario"] == \
        "calm"
    replaced = env.client.post(path, headers=env.admin, json={
        "scenario": "busy", "date": "2025-02-01", "replace": True})
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["replaced"]["scenario"] == "calm"
    scores = env.client.get("/v1/sets/drills-only/scores").json()
    assert (scores["resolution"]["scenario"], scores["n_fits"]) == ("busy", 0)


def test_the_cli_prints_the_apis_json(env, monkeypatch):
    for name in ("SIGNPOST_VAR_DIR", "SIGNPOST_DATABASE_URL", "SIGNPOST_TODAY"):
        monkeypatch.delenv(name, raising=False)
    cli_env = {"SIGNPOST_VAR_DIR": str(env.var_dir), "SIGNPOST_DATABASE_URL": env.url,
               "SIGNPOST_TODAY": TODAY.isoformat()}
    runner = CliRunner()
    result = runner.invoke(cli_app, ["score", "--json"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == env.client.get("/v1/scores").json()
    result = runner.invoke(cli_app, ["score", "--set", WORLD, "--json"], env=cli_env)
    assert json.loads(result.stdout) == env.client.get(f"/v1/sets/{WORLD}/scores").json()
    table = runner.invoke(cli_app, ["score"], env=cli_env)
    assert table.exit_code == 0 and "0.4335" in table.stdout, table.output
    refused = runner.invoke(cli_app, ["resolve", "--set", WORLD, "--scenario", "multipolar",
                                      "--date", RESOLVED_ON], env=cli_env)
    assert refused.exit_code == 2 and "replace" in refused.stderr, refused.output


def test_one_current_resolution_per_set_in_the_database(db_url):
    """SQLite and PostgreSQL: a second resolution conflicts; a replacement keeps the first."""
    store = Database(db_url, today=TODAY)
    store.migrate()
    load_bundled_sets(store)
    first, replaced = resolve(store, set_id=WORLD, scenario="multipolar", void=False,
                              on=date(2025, 6, 30), note="", resolved_by="ada", replace=False)
    assert replaced is None
    with pytest.raises(Conflict):
        resolve(store, set_id=WORLD, scenario=None, void=True, on=TODAY, note="",
                resolved_by="ada", replace=False)
    second, replaced = resolve(store, set_id=WORLD, scenario=None, void=True, on=TODAY,
                               note="", resolved_by="ada", replace=True)
    assert replaced.id == first.id and replaced.superseded_at is not None
    current = current_resolution(store, set_id=WORLD)
    assert (current.id, current.void) == (second.id, True)
    store.dispose()
