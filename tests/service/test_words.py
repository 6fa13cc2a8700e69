"""Estimative words (ICD 203): the table, its setting, the payloads and the CLI's precision.

The words are checked against the directive's yardstick written out here as comparisons (not
through `service.words`); the payloads are served by the real app from stored fit summaries
(tests/data, no sampling), and their words must be those of the probabilities beside them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from service.api import create_app
from service.cli import app as cli
from service.context import Services
from service.db import Database
from service.outlook import replay_payload
from service.repositories.fits import create_fit, get_fit, update_fit
from service.repositories.sets import get_set, load_bundled_sets
from service.settings import Settings, get_settings
from service.words import (
    DEFAULT_WORDS,
    WordTable,
    WordTableError,
    decimals,
    parse_word_table,
    printed,
    printed_mcse,
    words,
)
from tests.service.support import TestClient

TODAY = date(2025, 12, 31)
CONVERGENCE = "sino-russian-convergence"
WORLD = "world-order-2035"
STORED = json.loads((Path(__file__).resolve().parents[1] / "data"
                     / "fit_summaries_v1.json").read_text())
FINISHED = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
LIVE = {CONVERGENCE: STORED[f"dynamic paths: {CONVERGENCE}"],  # the newest fit of each set
        WORLD: STORED[f"static nutpie: {WORLD}"]}


def icd203(p: float) -> str:
    """The directive's yardstick, written out as comparisons."""
    if p < 0.05:
        return "almost no chance"
    if p < 0.20:
        return "very unlikely"
    if p < 0.45:
        return "unlikely"
    if p <= 0.55:
        return "roughly even chance"
    if p <= 0.80:
        return "likely"
    if p <= 0.95:
        return "very likely"
    return "almost certain"


def expected(p: float | None) -> str | None:
    return None if p is None else icd203(p)


def below(x: float) -> float:
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    return math.nextafter(x, math.inf)


# -- the table ----------------------------------------------------------------------------

@pytest.mark.parametrize("p, said", [
    (0.0, "almost no chance"),
    (below(0.05), "almost no chance"), (0.05, "very unlikely"), (above(0.05), "very unlikely"),
    (below(0.20), "very unlikely"), (0.20, "unlikely"), (above(0.20), "unlikely"),
    (below(0.45), "unlikely"), (0.45, "roughly even chance"),
    (above(0.45), "roughly even chance"), (0.5, "roughly even chance"),
    (below(0.55), "roughly even chance"), (0.55, "roughly even chance"),
    (above(0.55), "likely"),
    (below(0.80), "likely"), (0.80, "likely"), (above(0.80), "very likely"),
    (below(0.95), "very likely"), (0.95, "very likely"), (above(0.95), "almost certain"),
    (1.0, "almost certain"),
])
def test_the_words_at_every_band_edge(p, said):
    assert words(p) == said
    assert words(p, DEFAULT_WORDS) == said


def test_the_default_table_is_the_directive_everywhere():
    grid = [i / 10_000 for i in range(10_001)]
    assert [words(p) for p in grid] == [icd203(p) for p in grid]


def test_no_probability_has_no_words_and_a_non_probability_is_refused():
    assert words(None) is None
    for bad in (-0.01, 1.01, math.nan):
        with pytest.raises(ValueError, match="not a probability"):
            words(bad)


def test_the_default_table_written_as_the_setting_reads_back_the_same():
    text = json.dumps(DEFAULT_WORDS.to_list())
    assert parse_word_table(text) == DEFAULT_WORDS
    assert parse_word_table("") is DEFAULT_WORDS and parse_word_table("  ") is DEFAULT_WORDS
    assert json.loads(text)[3] == {"words": "roughly even chance", "through": 0.55}


# -- the setting --------------------------------------------------------------------------

THREE = [{"words": "no", "below": 0.5}, {"words": "evens", "through": 0.5},
         {"words": "yes", "through": 1}]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Only this test's SIGNPOST_* variables (and a wide console for the CLI's tables)."""
    import os

    for name in list(os.environ):
        if name.startswith("SIGNPOST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_a_custom_table_through_signpost_words(clean_env):
    clean_env.setenv("SIGNPOST_WORDS", json.dumps(THREE))
    table = Settings().word_table()
    assert [words(p, table) for p in (0.0, below(0.5), 0.5, above(0.5), 1.0)] == [
        "no", "no", "evens", "yes", "yes"]
    assert Settings(words="").word_table() == DEFAULT_WORDS


@pytest.mark.parametrize("table, problem", [
    ("not json", "not valid JSON"),
    ('{"words": "x", "through": 1}', "expected a JSON list of bands"),
    ("[]", "expected a JSON list of bands"),
    ('["likely"]', "band 1: expected an object"),
    ('[{"words": "x", "below": 0.5, "through": 1}]', "give exactly one upper edge"),
    ('[{"words": "x"}]', "give exactly one upper edge"),
    ('[{"words": "x", "upto": 1}]', "upto: Extra inputs are not permitted"),
    ('[{"words": "", "through": 1}]', "band 1: words"),
    ('[{"words": "x", "through": "1"}]', "band 1: through: Input should be a valid number"),
    ('[{"words": "x", "through": 1.5}]', "band 1: through: Input should be less than or equal"),
    ('[{"words": "x", "below": 0}, {"words": "y", "through": 1}]', '"below": 0 holds no'),
    # overlaps: an edge at or under the one before (and the same edge twice)
    ('[{"words": "x", "below": 0.6}, {"words": "y", "below": 0.4}, '
     '{"words": "z", "through": 1}]', "band 2 ('y'): its edge 0.4 does not lie above"),
    ('[{"words": "x", "through": 0.5}, {"words": "y", "through": 0.5}, '
     '{"words": "z", "through": 1}]', "band 2 ('y'): its edge 0.5 does not lie above"),
    ('[{"words": "x", "through": 0.5}, {"words": "y", "below": 0.5}, '
     '{"words": "z", "through": 1}]', "band 2 ('y'): its edge 0.5 does not lie above"),
    # stopping short of 1, or leaving 1 itself out
    ('[{"words": "x", "below": 0.5}, {"words": "y", "through": 0.9}]',
     "the last band must end \"through\": 1"),
    ('[{"words": "x", "below": 1}]', "the last band must end \"through\": 1"),
])
def test_a_bad_table_is_refused_at_start_naming_signpost_words(clean_env, table, problem):
    with pytest.raises(WordTableError) as raised:
        parse_word_table(table)
    assert problem in str(raised.value)
    clean_env.setenv("SIGNPOST_WORDS", table)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "SIGNPOST_WORDS: " in str(refused.value) and problem in str(refused.value)
    result = CliRunner().invoke(cli, ["posterior", "--set", WORLD])
    assert result.exit_code == 2
    assert "bad setting: SIGNPOST_WORDS" in result.stderr and problem in result.stderr


def test_a_table_built_in_code_is_checked_too():
    with pytest.raises(WordTableError, match="the last band must end"):
        WordTable(DEFAULT_WORDS.bands[:-1])
    with pytest.raises(WordTableError, match="at least one band"):
        WordTable(())


# -- the CLI's precision rule -------------------------------------------------------------

@pytest.mark.parametrize("p, mcse, text", [
    (0.3123, 0.0, "0.312"),       # exact: the most decimals
    (0.3123, 0.0004, "0.312"),    # 2 × MCSE = 0.0008 ≤ 0.001
    (0.3123, 0.0005, "0.312"),    # 2 × MCSE = 0.001, the step itself
    (0.3123, 0.00051, "0.31"),    # 2 × MCSE > 0.001: the third decimal is noise
    (0.3123, 0.004, "0.31"),
    (0.3123, 0.05, "0.31"),       # never fewer than 2 decimals
    (0.3123, None, "0.31"),       # unknown MCSE: the fewest
    (0.0, 0.0, "0.000"), (1.0, 0.01, "1.00"),
    (0.0004, 0.0, "< 0.001"), (0.9996, 0.0, "> 0.999"),  # no rounding to 0 or 1
    (0.004, 0.002, "< 0.01"), (0.996, 0.002, "> 0.99"),
    (None, 0.001, "—"),
])
def test_a_probability_is_printed_to_the_precision_its_mcse_supports(p, mcse, text):
    assert printed(p, mcse) == text


def test_the_last_printed_digit_is_never_finer_than_twice_the_mcse():
    for i in range(0, 2000):
        mcse = i * 1e-5
        places = decimals(mcse)
        assert places in (2, 3)
        assert places == (3 if 2 * mcse <= 0.001 + 1e-15 else 2), mcse
        assert len(printed(0.5, mcse).split(".")[1]) == places


@pytest.mark.parametrize("mcse, text", [
    (0.0, "0"), (None, "—"), (0.004, "0.004"), (0.0023, "0.002"), (0.0096, "0.01"),
    (1.23e-5, "0.00001"), (0.04, "0.04")])
def test_an_mcse_is_printed_with_one_significant_digit(mcse, text):
    assert printed_mcse(mcse) == text


# -- the payloads through the real app ----------------------------------------------------

@dataclass
class Served:
    client: TestClient
    services: Services
    store: Database
    env: dict[str, str]
    fit_ids: dict[str, str]


def _publish(store: Database, summary: dict, finished: datetime) -> str:
    fit_id = create_fit(store, set_id=summary["set_id"], requested_by="test")
    update_fit(store, fit_id=fit_id, status="published", finished_at=finished, as_of=TODAY,
               set_hash=summary["set_hash"], evidence_hash=summary["evidence_hash"],
               seed=summary["seed"], diagnostics=summary["diagnostics"], summary=summary,
               timings=summary["timings"], artifact=summary["artifact"])
    return fit_id


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """The app serving the stored fits: convergence (paths) twice, world order (static)."""
    var_dir = tmp_path_factory.mktemp("words")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    settings = Settings(var_dir=var_dir, database_url=url, scheduler=False, worker="inline",
                        today=TODAY.isoformat())
    app = create_app(settings)
    with TestClient(app) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        _publish(store, STORED[f"dynamic nutpie: {CONVERGENCE}"], FINISHED - timedelta(days=1))
        fit_ids = {set_id: _publish(store, summary, FINISHED) for set_id, summary in LIVE.items()}
        yield Served(client, services, store, {"SIGNPOST_DATABASE_URL": url,
                                               "SIGNPOST_VAR_DIR": str(var_dir),
                                               "SIGNPOST_TODAY": TODAY.isoformat()}, fit_ids)


def _get(served: Served, path: str, **params: str) -> dict:
    response = served.client.get(f"/v1/sets/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("set_id", [CONVERGENCE, WORLD])
def test_the_posterior_says_each_probability_in_words(served, set_id):
    body = _get(served, f"{set_id}/posterior")
    assert body["fit_id"] == served.fit_ids[set_id]
    stored = {s["id"]: s for s in LIVE[set_id]["scenarios"]}
    for row in body["scenarios"]:
        assert row["probability"] == stored[row["id"]]["probability"]  # unchanged
        assert row["mcse"] == stored[row["id"]]["mcse"]
        assert row["words"] == expected(row["probability"])
        assert row["prior_words"] == expected(row["prior"])  # a prior is a probability too
    assert {"id", "name", "prior", "prior_words", "probability", "mcse", "words"} == set(
        body["scenarios"][0])


def test_the_history_says_every_fits_probabilities_in_words(served):
    body = _get(served, f"{CONVERGENCE}/history")
    assert len(body["items"]) == 2
    for item in body["items"]:
        assert item["words"].keys() == item["probabilities"].keys() == set(body["scenarios"])
        assert item["words"] == {k: expected(p) for k, p in item["probabilities"].items()}
    assert body["items"][-1]["probabilities"] == {
        s["id"]: s["probability"] for s in LIVE[CONVERGENCE]["scenarios"]}


@pytest.mark.parametrize("horizon", ["2030-12-31", "2027-06-30", "2020-06-30"])
def test_the_forecast_says_at_and_by_in_words(served, horizon):
    body = _get(served, f"{CONVERGENCE}/forecast", horizon=horizon)
    assert body["scenarios"]
    for row in body["scenarios"]:
        assert row["at_words"] == expected(row["at"])
        assert row["by_words"] == expected(row["by"])
    if horizon == "2020-06-30":  # in the past: the filter's "at", no "by"
        assert all(row["by"] is None and row["by_words"] is None for row in body["scenarios"])
    else:
        table = LIVE[CONVERGENCE]["outlook"]["horizon"]
        h = table["periods"].index(body["period"])
        assert [row["at"] for row in body["scenarios"]] == table["at"][h]
        assert [row["by"] for row in body["scenarios"]] == table["by"][h]


def test_the_milestones_say_p_by_end_in_words(served):
    body = _get(served, f"{CONVERGENCE}/milestones")
    outlook = LIVE[CONVERGENCE]["outlook"]
    entries = 0
    for group in ("reach", "reach_or_deeper", "milestones"):
        assert body[group].keys() == outlook[group].keys()
        for name, entry in body[group].items():
            assert entry["p_by_end"] == outlook[group][name]["p_by_end"]
            assert entry["words"] == expected(entry["p_by_end"])
            entries += 1
    assert entries == 12


def test_the_path_says_every_period_in_words(served):
    body = _get(served, f"{CONVERGENCE}/path")
    assert len(body["words"]) == len(body["probability"]) == len(body["periods"])
    assert body["words"] == [[expected(p) for p in period] for period in body["probability"]]


def test_a_replay_says_its_probabilities_in_words(served):
    scenario_set = get_set(served.store, set_id=WORLD)
    row = get_fit(served.store, fit_id=served.fit_ids[WORLD])
    body = replay_payload(served.store, scenario_set, row)
    assert [s["words"] for s in body["scenarios"]] == [expected(s["probability"])
                                                       for s in body["scenarios"]]


# -- the CLI ------------------------------------------------------------------------------

def _cli(served: Served, env: pytest.MonkeyPatch, *args: str) -> str:
    for name, value in served.env.items():
        env.setenv(name, value)
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _line(output: str, first: str) -> list[str]:
    """The table row whose first cell is ``first``, split on runs of two spaces or more."""
    import re

    for line in output.splitlines():
        cells = [c for c in re.split(r"\s{2,}|│|┃", line) if c.strip()]
        if cells and cells[0].strip() == first:
            return [c.strip() for c in cells]
    raise AssertionError(f"no row {first!r} in:\n{output}")


@pytest.mark.parametrize("command, path, params", [
    (["posterior", "--set", CONVERGENCE], f"{CONVERGENCE}/posterior", {}),
    (["forecast", "--set", CONVERGENCE, "--horizon", "2030-12-31"],
     f"{CONVERGENCE}/forecast", {"horizon": "2030-12-31"}),
    (["milestones", "--set", CONVERGENCE], f"{CONVERGENCE}/milestones", {}),
])
def test_the_cli_json_is_the_apis(served, clean_env, command, path, params):
    assert json.loads(_cli(served, clean_env, *command, "--json")) == _get(served, path, **params)


def test_the_cli_prints_the_posterior_to_its_precision_with_words(served, clean_env):
    output = _cli(served, clean_env, "posterior", "--set", WORLD)
    for s in LIVE[WORLD]["scenarios"]:  # exact: MCSE 0, 3 decimals
        cells = _line(output, s["id"])
        assert cells[-2:] == [f"{s['probability']:.3f} ± 0", icd203(s["probability"])]


def test_the_cli_prints_coarser_probabilities_where_the_mcse_is_larger(served, clean_env):
    output = _cli(served, clean_env, "milestones", "--set", CONVERGENCE)
    for name, entry in LIVE[CONVERGENCE]["outlook"]["reach"].items():
        assert 2 * entry["mcse"] > 0.001  # so 2 decimals
        cells = _line(output, name)
        assert cells[1:3] == [f"{entry['p_by_end']:.2f} ± {entry['mcse']:.1g}",
                              icd203(entry["p_by_end"])]


def test_the_cli_forecast_prints_at_and_by_with_their_words(served, clean_env):
    output = _cli(served, clean_env, "forecast", "--set", CONVERGENCE, "--horizon",
                  "2030-12-31")
    body = _get(served, f"{CONVERGENCE}/forecast", horizon="2030-12-31")
    for row in body["scenarios"]:
        cells = _line(output, row["id"])
        at_places = 3 if 2 * row["mcse_at"] <= 0.001 else 2
        by_places = 3 if 2 * row["mcse_by"] <= 0.001 else 2
        assert cells[1] == f"{row['at']:.{at_places}f} ± {row['mcse_at']:.1g}"
        assert cells[2] == icd203(row["at"])
        assert cells[3] == f"{row['by']:.{by_places}f} ± {row['mcse_by']:.1g}"
        assert cells[4] == icd203(row["by"])


def test_the_cli_says_the_words_of_a_custom_table(served, clean_env):
    clean_env.setenv("SIGNPOST_WORDS", json.dumps(THREE))
    body = json.loads(_cli(served, clean_env, "posterior", "--set", WORLD, "--json"))
    assert [s["words"] for s in body["scenarios"]] == [
        "no" if s["probability"] < 0.5 else "evens" if s["probability"] == 0.5 else "yes"
        for s in body["scenarios"]]
    assert "yes" in {s["words"] for s in body["scenarios"]}  # multipolar, 0.60


def test_the_api_says_the_words_of_a_custom_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'signpost.db'}"
    settings = Settings(var_dir=tmp_path, database_url=url, scheduler=False, worker="inline",
                        today=TODAY.isoformat(), words=json.dumps(THREE))
    app = create_app(settings)
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        _publish(store, LIVE[WORLD], FINISHED)
        bodies = [client.get(f"/v1/sets/{WORLD}/{path}", params=params).json() for path, params
                  in (("posterior", {}), ("history", {}), ("forecast", {"horizon": "2030-01-01"}),
                      ("milestones", {}), ("path", {}))]
    custom = {"no", "evens", "yes"}
    said = {"no" if p < 0.5 else "evens" if p == 0.5 else "yes"
            for p in (s["probability"] for s in bodies[0]["scenarios"])}
    assert {s["words"] for s in bodies[0]["scenarios"]} == said == {"no", "yes"}
    assert set(bodies[1]["items"][0]["words"].values()) == said
    assert {s["at_words"] for s in bodies[2]["scenarios"]} <= custom
    assert {r["words"] for r in bodies[3]["reach"].values()} <= custom
    assert {w for period in bodies[4]["words"] for w in period} <= custom
