"""Stored fit rows of either schema version are served alike (decision 012).

A row written before the fit record was versioned (the fixture: ``fits.summary`` as the
service stored it) and the same fit written as today's version-2 record give the same bodies
for the posterior, history, path, forecast, milestones and fit views; a row from a newer
schema is refused instead of misread.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from forecast import FitRecord, RecordVersionError
from service.db import Database
from service.outlook import forecast_payload, milestones_payload, path_payload
from service.posterior import history_payload, posterior_payload
from service.repositories.fits import create_fit, fit_history, get_fit, update_fit
from service.repositories.sets import get_set, load_bundled_sets
from service.views import fit_dict

STORED = json.loads((Path(__file__).resolve().parents[1] / "data"
                     / "fit_summaries_v1.json").read_text())
FINISHED = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def _publish(url: str, summary: dict) -> tuple[Database, str]:
    db = Database(url, today=date(2025, 12, 31))
    db.migrate()
    load_bundled_sets(db)
    fit_id = create_fit(db, set_id=summary["set_id"], requested_by="test")
    update_fit(db, fit_id=fit_id, status="published", finished_at=FINISHED,
               as_of=date(2025, 12, 31), set_hash=summary["set_hash"],
               evidence_hash=summary["evidence_hash"], seed=summary["seed"],
               diagnostics=summary["diagnostics"], summary=summary,
               timings=summary["timings"], artifact=summary["artifact"])
    return db, fit_id


def _bodies(db: Database, fit_id: str) -> dict:
    row = get_fit(db, fit_id=fit_id)
    scenario_set = get_set(db, set_id=row.set_id)
    horizon = scenario_set.end or date(2030, 12, 31)
    bodies = {
        "posterior": posterior_payload(scenario_set, row, FINISHED, 3600.0),
        "history": history_payload(scenario_set, fit_history(db, set_id=row.set_id)),
        "path": path_payload(db, scenario_set),
        "forecast": forecast_payload(db, scenario_set, horizon),
        "forecast now": forecast_payload(db, scenario_set, date(2025, 12, 31)),
        "milestones": milestones_payload(db, scenario_set),
        "fit": {k: v for k, v in fit_dict(row).items() if k != "created_at"},  # the clock's
    }
    return json.loads(json.dumps(bodies).replace(fit_id, "<fit id>"))


@pytest.mark.parametrize("name", sorted(STORED))
def test_a_version_1_row_and_its_version_2_record_are_served_alike(tmp_path, name):
    old = STORED[name]
    new = FitRecord.from_dict(old).to_dict()
    assert new["schema_version"] == 2 and "schema_version" not in old
    old_db, old_id = _publish(f"sqlite:///{tmp_path / 'v1.db'}", old)
    new_db, new_id = _publish(f"sqlite:///{tmp_path / 'v2.db'}", new)
    try:
        served = _bodies(old_db, old_id)
        assert served == _bodies(new_db, new_id)
    finally:
        old_db.dispose()
        new_db.dispose()
    # and the bodies carry the stored numbers
    assert [s["probability"] for s in served["posterior"]["scenarios"]] == [
        s["probability"] for s in old["scenarios"]]
    assert served["path"]["probability"] == old["path"]["probability"]
    assert served["path"]["transitions"] == old["sampler"]["transitions"]
    assert served["fit"]["sampler"] == old["sampler"]
    assert served["posterior"]["evidence_complete_through"] == old["coverage"][
        "evidence_complete_through"]
    assert served["milestones"]["reach"].keys() == old["outlook"]["reach"].keys()


def test_a_row_from_a_newer_schema_is_refused_not_misread(tmp_path):
    summary = {**STORED["static nutpie: world-order-2035"], "schema_version": 3}
    db, fit_id = _publish(f"sqlite:///{tmp_path / 'v3.db'}", summary)
    try:
        row = get_fit(db, fit_id=fit_id)
        with pytest.raises(RecordVersionError, match="schema_version 3 is newer"):
            posterior_payload(get_set(db, set_id=row.set_id), row, FINISHED, 3600.0)
    finally:
        db.dispose()
