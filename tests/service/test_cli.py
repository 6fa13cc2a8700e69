"""The ``signpost`` CLI in process (Typer's CliRunner) on a fresh SQLite database per test.

Refusals must exit 2, name the field (and file:line) and store nothing; `refit` and
`posterior --json` must give the numbers the model and the API give.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytensor
import pytest
from typer.testing import CliRunner

import indicators
from forecast import exact_posterior
from service.cli import app
from service.db import Database
from service.posterior import posterior_payload
from service.repositories.evidence import evidence_of
from service.repositories.fits import acquire_lease, create_fit, get_fit, latest_published
from service.repositories.keys import verify_key
from service.repositories.observations import count_observations, list_observations
from service.repositories.sets import get_set, set_ids
from service.settings import Settings, get_settings
from service.views import fit_dict, observation_dict

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
CONVERGENCE = "sino-russian-convergence"
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"

GOOD_SET = """\
id: drills-only
title: Drills only
question: Are joint drills frequent?
period: quarter
start: 2020-01-01
scenarios:
  - id: calm
    name: Calm
    prior: 0.7
  - id: busy
    name: Busy
    prior: 0.3
indicators:
  joint_exercise:
    calm: {rate: 1.0, sd: 0.5}
    busy: {rate: 3.0, sd: 1.0}
"""

# line 6 (scenarios): priors sum to 1.1; line 15: a misspelt key
BAD_SET = GOOD_SET.replace("prior: 0.3", "prior: 0.4").replace(
    "calm: {rate: 1.0", "calm: {rat: 1.0")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A CliRunner whose commands see only this test's SIGNPOST_* settings."""
    for name in list(os.environ):
        if name.startswith("SIGNPOST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SIGNPOST_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("SIGNPOST_TODAY", TODAY.isoformat())
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.fixture
def store(cli: CliRunner) -> Iterator[Database]:
    """The same database the commands use (read after they ran)."""
    store = Database(Settings().url, today=TODAY)
    yield store
    store.dispose()


def run(cli: CliRunner, *args: str, code: int = 0):
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, (
        f"signpost {' '.join(args)} exited {result.exit_code}, expected {code}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}")
    return result


def init(cli: CliRunner) -> None:
    run(cli, "init")


# -- init and sets ------------------------------------------------------------------------


def test_init_creates_the_schema_and_loads_the_bundled_sets(cli, store):
    first = run(cli, "init")
    assert "created the database schema" in first.stdout
    assert f"loaded    scenario set {CONVERGENCE}" in first.stdout
    assert f"loaded    scenario set {WORLD}" in first.stdout
    assert store.migrations_current()
    assert set_ids(store) == [CONVERGENCE, WORLD]

    again = run(cli, "init")
    assert "is current" in again.stdout
    assert f"unchanged scenario set {WORLD}" in again.stdout


def test_commands_before_init_ask_for_init(cli):
    result = run(cli, "sets", "list", code=2)
    assert "run `signpost init` first" in result.stderr
    assert result.stdout == ""


def test_a_bad_setting_names_its_variable(cli, monkeypatch):
    monkeypatch.setenv("SIGNPOST_PORT", "eighty")
    result = run(cli, "sets", "list", code=2)
    assert "SIGNPOST_PORT" in result.stderr


def test_sets_list_and_show(cli):
    init(cli)
    listed = run(cli, "sets", "list").stdout
    assert CONVERGENCE in listed and WORLD in listed
    assert "—" in listed  # no published fit yet

    shown = json.loads(run(cli, "sets", "show", WORLD, "--json").stdout)
    assert shown["id"] == WORLD
    assert [s["id"] for s in shown["scenarios"]] == [
        "hardened_bipolar", "us_russia_thaw", "us_china_cooperation", "multipolar"]
    assert shown["dynamics"] is None
    assert shown["latest_published_fit"] is None

    readable = run(cli, "sets", "show", CONVERGENCE).stdout
    assert "Loose coordination" in readable and "dynamic" in readable

    unknown = run(cli, "sets", "show", "no-such-set", code=2)
    assert "unknown scenario set 'no-such-set'" in unknown.stderr


def test_sets_load_validates_with_file_and_line(cli, store, tmp_path):
    init(cli)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SET, encoding="utf-8")
    result = run(cli, "sets", "load", str(bad), code=2)
    assert f"{bad}:6: scenarios: priors sum to 1.1" in result.stderr
    assert f"{bad}:15: indicators.joint_exercise.calm.rat: unknown key 'rat'" in result.stderr
    assert "did you mean 'rate'" in result.stderr
    assert "nothing was loaded" in result.stderr
    assert "drills-only" not in set_ids(store)

    good = tmp_path / "good.yaml"
    good.write_text(GOOD_SET, encoding="utf-8")
    loaded = run(cli, "sets", "load", str(good))
    assert "loaded scenario set drills-only (Drills only): 2 scenarios, 1 indicator" in (
        loaded.stdout)
    assert "drills-only" in set_ids(store)
    assert "unchanged" in run(cli, "sets", "load", str(good)).stdout

    missing = run(cli, "sets", "load", str(tmp_path / "missing.yaml"), code=2)
    assert "missing.yaml: cannot read" in missing.stderr


# -- observations -------------------------------------------------------------------------


def test_observe_stores_the_row(cli, store):
    init(cli)
    result = run(cli, "observe", "--indicator", "joint_exercise", "--date", "2025-03-04",
                 "--grade", "a1", "--source", "Xinhua", "--url", "https://example.org/x",
                 "--note", "Joint Sea", "--analyst", "ana", "--json")
    row = json.loads(result.stdout)
    assert row["id"] == 1
    assert (row["indicator"], row["date"], row["value"], row["grade"], row["weight"]) == (
        "joint_exercise", "2025-03-04", 1.0, "A1", 1.0)
    assert (row["source"], row["analyst"]) == ("Xinhua", "ana")
    stored, total = list_observations(store)
    stored = [observation_dict(r) for r in stored]
    assert total == 1 and stored[0]["id"] == 1 and stored[0]["note"] == "Joint Sea"

    plain = run(cli, "observe", "--indicator", "joint_exercise", "--date", "2025-04-01",
                "--value", "2")
    assert plain.stdout.startswith("stored observation 2: joint_exercise on 2025-04-01")
    assert count_observations(store) == 2


@pytest.mark.parametrize(("args", "field", "message"), [
    (["--indicator", "joint_exercize", "--date", "2025-03-04"], "indicator",
     "did you mean 'joint_exercise'"),
    (["--indicator", "joint_exercise", "--date", "2025-13-40"], "date", ""),
    (["--indicator", "joint_exercise", "--date", "2026-06-01"], "date", ""),
    (["--indicator", "joint_exercise", "--date", "2025-03-04", "--value", "nan"], "value", ""),
    (["--indicator", "joint_exercise", "--date", "2025-03-04", "--grade", "Z9"], "grade", ""),
])
def test_observe_refuses_bad_input_naming_the_field(cli, store, args, field, message):
    init(cli)
    result = run(cli, "observe", *args, code=2)
    assert result.stderr.startswith(f"error: {field}: "), result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert count_observations(store) == 0


CSV_WITH_TWO_BAD_ROWS = """\
date,indicator,value,grade,source,url,note
2025-01-10,joint_exercise,1,B2,Xinhua,https://example.org/1,good
2025-02-11,joint_exercize,1,B2,Xinhua,https://example.org/2,misspelt indicator
2025-03-12,joint_exercise,,,TASS,https://example.org/3,good with defaults
2025-04-31,joint_exercise,1,B2,TASS,https://example.org/4,no such day
"""


def test_import_reports_every_bad_row_and_imports_nothing(cli, store, tmp_path):
    init(cli)
    csv = tmp_path / "obs.csv"
    csv.write_text(CSV_WITH_TWO_BAD_ROWS, encoding="utf-8")
    result = run(cli, "import", str(csv), code=2)
    assert "2 errors; nothing was imported" in result.stderr
    assert "row 3: indicator:" in result.stderr
    assert "row 5: date:" in result.stderr
    assert count_observations(store) == 0


def test_import_skip_bad_imports_the_good_rows_and_lists_the_skipped(cli, store, tmp_path):
    init(cli)
    csv = tmp_path / "obs.csv"
    csv.write_text(CSV_WITH_TWO_BAD_ROWS, encoding="utf-8")
    result = run(cli, "import", str(csv), "--skip-bad")
    assert "imported 2 observations" in result.stdout
    assert "skipped 2 bad rows" in result.stderr
    assert "row 3: indicator:" in result.stderr and "row 5: date:" in result.stderr
    rows, total = list_observations(store)
    rows = [observation_dict(r) for r in rows]
    assert total == 2
    assert sorted(r["date"] for r in rows) == ["2025-01-10", "2025-03-12"]
    assert {r["grade"] for r in rows} == {"B2"}  # the empty grade took the default

    again = run(cli, "import", str(csv), "--skip-bad", "--if-empty")
    assert "nothing imported" in again.stdout
    assert count_observations(store) == 2


def test_import_if_empty_imports_the_sample_once(cli, store):
    init(cli)
    first = run(cli, "import", str(SAMPLE), "--if-empty")
    rows = sum(1 for line in SAMPLE.read_text(encoding="utf-8").splitlines()[1:] if line.strip())
    assert f"imported {rows} observations" in first.stdout
    run(cli, "import", str(SAMPLE), "--if-empty")
    assert count_observations(store) == rows


def test_import_of_a_missing_file(cli, tmp_path):
    init(cli)
    result = run(cli, "import", str(tmp_path / "none.csv"), code=2)
    assert "none.csv: no such file" in result.stderr


# -- keys ---------------------------------------------------------------------------------


def test_keys_create_prints_the_key_alone_on_the_last_line(cli, store):
    init(cli)
    result = run(cli, "keys", "create", "--role", "analyst", "--name", "ana")
    secret = result.stdout.splitlines()[-1]
    assert secret == secret.strip() and " " not in secret and len(secret) > 30
    assert result.stdout.count(secret) == 1 and secret not in result.stderr
    key = verify_key(store, secret=secret)
    assert key is not None and (key.role, key.name) == ("analyst", "ana")
    assert verify_key(store, secret=secret + "x") is None


def test_keys_create_refuses_an_unknown_role(cli):
    init(cli)
    result = run(cli, "keys", "create", "--role", "owner", code=2)
    assert "error: role: 'owner' is not a role" in result.stderr
    assert result.stdout == ""


# -- fits and posteriors ------------------------------------------------------------------


def test_posterior_without_a_published_fit_exits_1(cli):
    init(cli)
    result = run(cli, "posterior", "--set", WORLD, code=1)
    assert f"no published posterior for {WORLD}" in result.stderr
    assert "no-such" in run(cli, "posterior", "--set", "no-such", code=2).stderr


def test_refit_while_another_process_holds_the_lease_exits_nonzero(cli, store):
    init(cli)
    assert acquire_lease(store, set_id=WORLD, owner="someone-else", fit_id=None, seconds=600)
    result = run(cli, "refit", "--set", WORLD, code=1)
    assert f"{WORLD}: busy" in result.stderr
    assert "not published" in result.stderr
    assert latest_published(store, set_id=WORLD) is None


@pytest.mark.slow
def test_refit_then_posterior_json_gives_the_exact_and_the_api_numbers(cli, store):
    init(cli)
    run(cli, "import", str(SAMPLE))
    refit = run(cli, "refit")
    for set_id in (CONVERGENCE, WORLD):
        assert f"{set_id}: published fit" in refit.stdout
        assert latest_published(store, set_id=set_id) is not None
    assert "sampling" in refit.stderr  # the runner's stage messages were shown

    payload = json.loads(run(cli, "posterior", "--set", WORLD, "--json").stdout)
    scenario_set = get_set(store, set_id=WORLD)
    exact = exact_posterior(scenario_set, evidence_of(store, scenario_set=scenario_set))
    assert [s["id"] for s in payload["scenarios"]] == list(scenario_set.scenario_ids)
    np.testing.assert_allclose([s["probability"] for s in payload["scenarios"]],
                               exact.probability, rtol=0, atol=1e-9)
    assert all(s["mcse"] == 0.0 for s in payload["scenarios"])
    assert payload["evidence_through"] == TODAY.isoformat()
    assert payload["diagnostics"]["passed"] is True

    row = latest_published(store, set_id=WORLD)
    direct = posterior_payload(scenario_set, row, store.clock(), Settings().stale_after)
    assert payload == direct

    readable = run(cli, "posterior", "--set", WORLD).stdout
    assert "US-Russia thaw" in readable
    listed = run(cli, "sets", "list").stdout
    assert row.id[:8] in listed


@pytest.mark.slow
def test_refit_that_fails_the_gate_exits_1_and_publishes_nothing(cli, store, monkeypatch):
    init(cli)
    monkeypatch.setenv("SIGNPOST_GATE_MIN_ESS", "1e9")
    result = run(cli, "refit", "--set", WORLD, code=1)
    assert f"{WORLD}: rejected" in result.stderr
    assert "diagnostics gate failed" in result.stderr
    assert latest_published(store, set_id=WORLD) is None


@pytest.mark.slow
def test_scheduler_command_runs_queued_fits_and_stops_on_sigterm(cli, store, tmp_path):
    init(cli)
    fit_id = create_fit(store, set_id=WORLD, requested_by="test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNPOST_")}
    env.update(SIGNPOST_VAR_DIR=str(tmp_path), SIGNPOST_TODAY=TODAY.isoformat(),
               SIGNPOST_WORKER="inline", SIGNPOST_QUEUE_POLL="0.2")
    # the compile cache this process already warmed (a fresh one would compile for minutes)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={pytensor.config.base_compiledir}"
    signpost = Path(sys.executable).with_name("signpost")
    process = subprocess.Popen([str(signpost), "scheduler"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while fit_dict(get_fit(store, fit_id=fit_id))["status"] != "published":
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the scheduler did not publish the queued fit"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "scheduler running" in stderr and "scheduler stopping" in stderr
