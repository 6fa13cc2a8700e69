"""Exports: observations, reviews and history as CSV; a published fit's NetCDF artifact.

In process (TestClient, static fits): the CSVs hold exactly the rows and numbers of the JSON
the API serves; the observations and reviews CSVs, imported by `signpost import` into an empty
database, give every set the evidence hash it had; the artifact's draws are the served
probabilities.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import indicators
from indicators import guard_formula, unguard_formula
from service.api import create_app
from service.cli import app as cli_app
from service.context import Services
from service.db import Database
from service.exports import OBSERVATION_COLUMNS, REVIEW_COLUMNS
from service.repositories.evidence import evidence_of
from service.repositories.fits import create_fit, update_fit
from service.repositories.keys import create_key
from service.repositories.observations import (
    add_observation,
    add_observations,
    iter_observations,
    list_observations,
    retract_observation,
)
from service.repositories.sets import get_catalog, get_set, load_bundled_sets, set_ids
from service.settings import Settings, get_settings
from tests.service.support import TestClient

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
CONVERGENCE = "sino-russian-convergence"
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
# free text a spreadsheet would run as a formula; the export guards it, the import restores it
FORMULAS = {"note": "=HYPERLINK(\"http://evil.example\",\"click\")", "source": "+cmd|' /C calc'!A0",
            "analyst": "@ana", "url": "-1"}


def settings_for(var_dir: Path, **overrides) -> Settings:
    return Settings(var_dir=var_dir, database_url=f"sqlite:///{var_dir / 'signpost.db'}",
                    scheduler=False, worker="inline", today=TODAY.isoformat(), dynamic=False,
                    **overrides)


@dataclass
class Deployment:
    client: TestClient
    services: Services
    store: Database
    var_dir: Path
    analyst: dict[str, str]
    reader: str
    fits: dict[str, list[str]]


def publish(services: Services, set_id: str) -> str:
    fit_id = create_fit(services.store, set_id=set_id, requested_by="test")
    assert services.runner.run_fit(fit_id)["status"] == "published"
    return fit_id


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    """The sample (with its review) as `make run` loads it, two set-wide reviews (one
    retracted), a guarded row, a retracted row; the world set fitted twice, convergence once."""
    var_dir = tmp_path_factory.mktemp("exports")
    app = create_app(settings_for(var_dir))
    with TestClient(app) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        observations, _ = indicators.read_observations_csv(SAMPLE, get_catalog(store), TODAY)
        add_observations(store, observations=observations, analyst="sample", review={
            "indicators": sorted({o.indicator for o in observations}), "through": "2025-09-30",
            "note": "imported from sample_observations.csv"})
        analyst = {"Authorization": f"Bearer {create_key(store, role='analyst', name='ana')}"}
        fits = {WORLD: [publish(services, WORLD)], CONVERGENCE: [publish(services, CONVERGENCE)]}
        for body in ({"set_id": WORLD, "through": "2025-12-31", "note": "=TASS archives"},
                     {"set_id": CONVERGENCE, "through": "2025-11-30", "note": "read twice"}):
            response = client.post("/v1/reviews", json=body, headers=analyst)
            assert response.status_code == 201, response.text
        wrong = client.post("/v1/reviews", json={"indicators": ["joint_patrol"],
                                                 "through": "2025-12-31"}, headers=analyst)
        assert client.post(f"/v1/reviews/{wrong.json()['id']}/retract", headers=analyst,
                           json={"reason": "read the wrong archive"}).status_code == 200
        row, _ = add_observation(store, data={"indicator": "joint_exercise",
                                              "date": "2025-12-20", "grade": "A2", **FORMULAS})
        mistaken, _ = add_observation(store, data={"indicator": "joint_patrol",
                                                   "date": "2025-12-21", "grade": "A1"})
        retract_observation(store, observation_id=mistaken.id, reason="=duplicate", by="ana")
        fits[WORLD].append(publish(services, WORLD))
        yield Deployment(client, services, store, var_dir, analyst,
                         create_key(store, role="reader"), fits)


def error(response) -> tuple[int, str, str | None]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return response.status_code, body["error"]["code"], body["error"]["field"]


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.text)))


def all_json(client: TestClient, path: str, **params) -> list[dict]:
    """Every item of a JSON listing, following ``next``."""
    items, url = [], path
    response = client.get(url, params={**params, "limit": 37})
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        if body["next"] is None:
            return items
        response = client.get(body["next"])


def cell(value) -> str:
    """A JSON value as the CSV writes it (before the formula guard)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


# -- observations ---------------------------------------------------------------------------

def test_json_stays_the_default_page(deployment):
    default = deployment.client.get("/v1/observations")
    explicit = deployment.client.get("/v1/observations", params={"format": "json"})
    assert default.status_code == explicit.status_code == 200
    assert default.json()["items"] == explicit.json()["items"]
    assert explicit.json()["next"] == "/v1/observations?format=json&offset=100"
    assert len(default.json()["items"]) == 100 < default.json()["total"]


def test_the_csv_is_every_row_of_the_json_in_its_order(deployment):
    response = deployment.client.get("/v1/observations", params={"format": "csv"})
    assert response.headers["content-disposition"] == 'attachment; filename="observations.csv"'
    assert response.text.splitlines()[0] == ",".join(OBSERVATION_COLUMNS)
    rows = csv_rows(response)
    items = all_json(deployment.client, "/v1/observations")
    assert len(rows) == len(items) > 100  # more than a JSON page: every row
    for row, item in zip(rows, items, strict=True):
        assert {k: unguard_formula(v) for k, v in row.items()} == {
            k: cell(item[k]) for k in OBSERVATION_COLUMNS}
        assert float(row["value"]) == item["value"] and float(row["weight"]) == item["weight"]


def test_the_csv_takes_the_listings_filters(deployment):
    params = {"set": WORLD, "since": "2024-01-01", "until": "2025-12-31",
              "include_retracted": "false"}
    rows = csv_rows(deployment.client.get("/v1/observations", params={**params,
                                                                       "format": "csv"}))
    items = all_json(deployment.client, "/v1/observations", **params)
    assert [int(r["id"]) for r in rows] == [i["id"] for i in items]
    assert 0 < len(rows) < 100 and all(r["retracted_at"] == "" for r in rows)
    patrols = csv_rows(deployment.client.get("/v1/observations", params={
        "indicator": "joint_patrol", "format": "csv"}))
    assert {r["indicator"] for r in patrols} == {"joint_patrol"}
    assert any(r["retracted_at"] for r in patrols)  # retracted rows too, by default


def test_free_text_that_a_spreadsheet_would_run_is_guarded(deployment):
    rows = csv_rows(deployment.client.get("/v1/observations", params={"format": "csv"}))
    guarded = next(r for r in rows if r["date"] == "2025-12-20")
    assert {k: guarded[k] for k in FORMULAS} == {k: "'" + v for k, v in FORMULAS.items()}
    retracted = next(r for r in rows if r["retracted_at"])
    assert retracted["retraction_reason"].startswith("'=duplicate")
    plain = next(r for r in rows if r["date"] == "2025-12-09")
    assert plain["source"] == "Xinhua (People's Daily Online)"  # untouched


@given(st.one_of(st.text(), st.text(alphabet="'=+-@\t\rx ")))  # the second: the edge cases
def test_the_formula_guard_round_trips_every_string(text):
    guarded = guard_formula(text)
    assert unguard_formula(guarded) == text
    assert not guarded or guarded[0] not in "=+-@\t\r"  # never read as a formula
    assert guarded in (text, "'" + text)


@pytest.mark.parametrize("path", ["/v1/observations", "/v1/reviews",
                                  f"/v1/sets/{WORLD}/history"])
def test_an_unknown_format_is_422_naming_format(deployment, path):
    response = deployment.client.get(path, params={"format": "xlsx"})
    assert error(response) == (422, "invalid", "format")
    assert "'json' or 'csv'" in response.json()["error"]["message"]


def test_a_csv_of_an_unknown_set_is_404_naming_set(deployment):
    for path in ("/v1/observations", "/v1/reviews"):
        response = deployment.client.get(path, params={"set": "nope", "format": "csv"})
        assert error(response) == (404, "not_found", "set")


def test_pages_follow_the_last_row_so_a_new_row_shifts_nothing(deployment):
    store = deployment.store
    expected = [r.id for r in list_observations(store, limit=1000)[0]]
    pages = iter_observations(store, page_size=7)
    seen = [r.id for r in next(pages)]
    # a row newer than the first page: with offsets the next page would repeat its last row
    row, _ = add_observation(store, data={"indicator": "joint_exercise", "date": "2025-12-30"})
    try:
        for page in pages:
            assert len(page) <= 7
            seen += [r.id for r in page]
    finally:
        retract_observation(store, observation_id=row.id, reason="test row")
    assert seen == expected


# -- reviews --------------------------------------------------------------------------------

def test_the_reviews_csv_is_the_reviews_json(deployment):
    response = deployment.client.get("/v1/reviews", params={"format": "csv"})
    assert response.headers["content-disposition"] == 'attachment; filename="reviews.csv"'
    assert response.text.splitlines()[0] == ",".join(REVIEW_COLUMNS)
    rows = csv_rows(response)
    items = all_json(deployment.client, "/v1/reviews")
    assert len(rows) == len(items) == 4
    for row, item in zip(rows, items, strict=True):
        assert {k: unguard_formula(v) for k, v in row.items()} == {
            **{k: cell(item[k]) for k in REVIEW_COLUMNS}, "indicators": ";".join(
                item["indicators"])}


# -- the round trip -------------------------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty var dir for the CLI, with this module's settings."""
    for name in [n for n in os.environ if n.startswith("SIGNPOST_")]:
        monkeypatch.delenv(name)
    for name, value in {"SIGNPOST_VAR_DIR": str(tmp_path), "SIGNPOST_TODAY": TODAY.isoformat(),
                        "SIGNPOST_DYNAMIC": "false", "SIGNPOST_WORKER": "inline"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return tmp_path


def hashes(store: Database) -> dict[str, str]:
    return {s: evidence_of(store, scenario_set=get_set(store, set_id=s), as_of=TODAY).hash()
            for s in set_ids(store)}


def live(store: Database) -> list[tuple]:
    rows, _ = list_observations(store, limit=1000, include_retracted=False)
    return sorted((r.indicator, r.date, r.value, r.grade, r.weight, r.source, r.url, r.note,
                   r.analyst) for r in rows)


def test_the_exports_reimport_to_the_same_evidence(deployment, cli_env):
    client = deployment.client
    observations = cli_env / "observations.csv"
    observations.write_text(client.get("/v1/observations", params={"format": "csv"}).text)
    reviews = cli_env / "reviews.csv"
    reviews.write_text(client.get("/v1/reviews", params={"format": "csv"}).text)
    retracted = sum(1 for row in csv.DictReader(io.StringIO(observations.read_text()))
                    if row["retracted_at"])
    runner = CliRunner()
    assert runner.invoke(cli_app, ["init"]).exit_code == 0
    result = runner.invoke(cli_app, ["import", str(observations), "--reviews", str(reviews)])
    assert result.exit_code == 0, result.output
    assert f"imported {len(live(deployment.store))} observations" in result.output
    assert retracted and f"left out {retracted} retracted row" in result.output
    assert "stored 3 reviews" in result.output and "left out 1 retracted" in result.output

    restored = Database(f"sqlite:///{cli_env / 'signpost.db'}", today=TODAY)
    try:
        assert hashes(restored) == hashes(deployment.store)
        assert set(hashes(restored)) == {WORLD, CONVERGENCE}
        assert live(restored) == live(deployment.store)  # the guarded text came back exact
    finally:
        restored.dispose()


def test_without_the_reviews_the_evidence_differs(deployment, cli_env):
    """Coverage is evidence: the observations alone do not restore it."""
    observations = cli_env / "observations.csv"
    observations.write_text(deployment.client.get("/v1/observations",
                                                  params={"format": "csv"}).text)
    runner = CliRunner()
    assert runner.invoke(cli_app, ["init"]).exit_code == 0
    assert runner.invoke(cli_app, ["import", str(observations)]).exit_code == 0
    restored = Database(f"sqlite:///{cli_env / 'signpost.db'}", today=TODAY)
    try:
        before, after = hashes(deployment.store), hashes(restored)
        assert all(after[s] != before[s] for s in before)
    finally:
        restored.dispose()


def test_a_bad_reviews_file_imports_nothing(deployment, cli_env):
    observations = cli_env / "observations.csv"
    observations.write_text(deployment.client.get("/v1/observations",
                                                  params={"format": "csv"}).text)
    reviews = cli_env / "reviews.csv"
    reviews.write_text("through,set_id,note\n2025-12-31,world-order-2035,ok\n"
                       "2027-01-01,world-order-2035,future\n")
    runner = CliRunner()
    assert runner.invoke(cli_app, ["init"]).exit_code == 0
    result = runner.invoke(cli_app, ["import", str(observations), "--reviews", str(reviews)])
    assert result.exit_code == 2
    assert "--reviews: reviews.csv: 1 error; nothing was imported" in result.output
    assert "line 3: through: 2027-01-01 is in the future" in result.output
    restored = Database(f"sqlite:///{cli_env / 'signpost.db'}", today=TODAY)
    try:
        assert list_observations(restored)[1] == 0
    finally:
        restored.dispose()


# -- history --------------------------------------------------------------------------------

@pytest.mark.parametrize("set_id", [WORLD, CONVERGENCE])
def test_the_history_csv_equals_the_json(deployment, set_id):
    path = f"/v1/sets/{set_id}/history"
    body = deployment.client.get(path).json()
    response = deployment.client.get(path, params={"format": "csv"})
    assert response.headers["content-disposition"] == \
        f'attachment; filename="{set_id}-history.csv"'
    rows = csv_rows(response)
    assert [r["fit_id"] for r in rows] == [i["fit_id"] for i in body["items"]] \
        == deployment.fits[set_id]
    for row, item in zip(rows, body["items"], strict=True):
        assert (row["fitted_at"], row["evidence_through"]) == (item["fitted_at"],
                                                               item["evidence_through"])
        for k in body["scenarios"]:
            assert float(row[f"p_{k}"]) == item["probabilities"][k]
            assert float(row[f"mcse_{k}"]) == item["mcse"][k] == 0.0  # static: exact
            assert row[f"words_{k}"] == item["words"][k]
    assert set(rows[0]) == {"fit_id", "fitted_at", "evidence_through"} | {
        f"{p}_{k}" for p in ("p", "mcse", "words") for k in body["scenarios"]}


def test_the_history_json_keeps_its_etag(deployment):
    path = f"/v1/sets/{WORLD}/history"
    first = deployment.client.get(path)
    again = deployment.client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert "etag" not in deployment.client.get(path, params={"format": "csv"}).headers


# -- the artifact ---------------------------------------------------------------------------

def test_the_artifact_holds_the_served_probabilities(deployment):
    fit_id = deployment.fits[WORLD][-1]
    response = deployment.client.get(f"/v1/fits/{fit_id}/artifact")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-netcdf"
    assert response.headers["content-disposition"] == \
        f'attachment; filename="{WORLD}-{fit_id}.nc"'
    posterior = deployment.client.get(f"/v1/sets/{WORLD}/posterior").json()
    assert posterior["fit_id"] == fit_id
    with xr.open_datatree(io.BytesIO(response.content), engine="h5netcdf") as tree:
        draws = tree["posterior"]["scenario_probability"].load()
    assert draws.dims == ("chain", "draw", "scenario") and draws.sizes["draw"] > 1
    served = np.array([s["probability"] for s in posterior["scenarios"]])
    assert list(draws["scenario"].values) == [s["id"] for s in posterior["scenarios"]]
    # a static fit: every draw's nowcast is the exact posterior (MCSE 0), so their mean is
    # too, to the rounding of summing 4000 floats
    assert all(s["mcse"] == 0 for s in posterior["scenarios"])
    assert (draws.values == served).all()
    np.testing.assert_allclose(draws.mean(("chain", "draw")).values, served, rtol=0,
                               atol=1e-12)


def test_a_fit_without_an_artifact_says_why(deployment):
    client, store = deployment.client, deployment.store
    response = client.get("/v1/fits/no-such-fit/artifact")
    assert error(response) == (404, "not_found", "fit_id")

    queued = create_fit(store, set_id=WORLD, requested_by="test", kind="replay",
                        as_of=date(2025, 3, 31))
    response = client.get(f"/v1/fits/{queued}/artifact")
    assert error(response) == (409, "not_finished", "fit_id")
    assert "queued" in response.json()["error"]["message"]

    update_fit(store, fit_id=queued, status="rejected", reason="diagnostics gate failed: r̂")
    response = client.get(f"/v1/fits/{queued}/artifact")
    assert error(response) == (404, "no_artifact", "fit_id")
    assert "rejected (diagnostics gate failed" in response.json()["error"]["message"]

    replay = create_fit(store, set_id=WORLD, requested_by="test", kind="replay",
                        as_of=date(2025, 6, 30))
    assert deployment.services.runner.run_fit(replay)["status"] == "published"
    assert client.get(f"/v1/fits/{replay}/artifact").status_code == 200
    (deployment.var_dir / "fits" / WORLD / f"{replay}.nc").unlink()
    response = client.get(f"/v1/fits/{replay}/artifact")
    assert error(response) == (404, "no_artifact", "fit_id")
    assert "no longer on disk" in response.json()["error"]["message"]


def test_exports_need_a_key_where_reads_do(deployment):
    app = create_app(settings_for(deployment.var_dir, require_read_key=True))
    fit_id = deployment.fits[WORLD][-1]
    paths = [f"/v1/fits/{fit_id}/artifact", "/v1/observations?format=csv",
             "/v1/reviews?format=csv", f"/v1/sets/{WORLD}/history?format=csv"]
    with TestClient(app) as client:
        for path in paths:
            assert error(client.get(path)) == (401, "unauthorized", "Authorization")
            response = client.get(path, headers={"Authorization": f"Bearer {deployment.reader}"})
            assert response.status_code == 200, (path, response.text)
