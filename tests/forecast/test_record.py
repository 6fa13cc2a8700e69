"""The fit record reads what the service stored before it was versioned, and refuses the future.

The fixture holds ``fits.summary`` exactly as the service wrote it before `forecast.record`
existed (schema version 1, no version key): `signpost refit` of the bundled sets on the sample
observations reviewed through 2025-12-31 — the dynamic set by its paths and by NUTS, the
static set by NUTS.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from forecast import (
    SCHEMA_VERSION,
    FitRecord,
    NutsSampler,
    PathsSampler,
    PsisSampler,
    RecordVersionError,
    sampler_from_dict,
)

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fit_summaries_v1.json"
STORED = json.loads(FIXTURE.read_text())


@pytest.fixture(params=sorted(STORED))
def stored(request) -> dict:
    return STORED[request.param]


def test_the_fixture_is_todays_unversioned_layout():
    assert sorted(STORED) == ["dynamic nutpie: sino-russian-convergence",
                              "dynamic paths: sino-russian-convergence",
                              "static nutpie: world-order-2035"]
    for summary in STORED.values():
        assert "schema_version" not in summary
        assert list(summary) == ["set_id", "set_hash", "evidence_hash", "scenarios",
                                 "diagnostics", "seed", "sampler", "versions", "timings",
                                 "parameters", "path", "outlook", "artifact", "coverage"]


def test_a_version_1_row_reads_and_writes_back_the_same_keys_and_values(stored):
    record = FitRecord.from_dict(stored)
    written = record.to_dict()
    assert SCHEMA_VERSION == 2
    assert written == {"schema_version": 2, **stored}
    # the same order too, down to the sampler's keys (API bodies keep their shape)
    assert list(written) == ["schema_version", *stored]
    assert list(written["sampler"]) == list(stored["sampler"])
    assert list(written["timings"]) == list(stored["timings"])
    # and the version 2 row reads back to the same record, through JSON and through pickle
    assert FitRecord.from_dict(json.loads(json.dumps(written))) == record
    assert pickle.loads(pickle.dumps(record)) == record


def test_the_record_types_each_part(stored):
    record = FitRecord.from_dict(stored)
    assert record.set_id == stored["set_id"] and record.seed == stored["seed"]
    assert record.passed is True and record.diagnostics.failures == ()
    assert [s.id for s in record.scenarios] == [s["id"] for s in stored["scenarios"]]
    first = stored["scenarios"][0]
    assert record.probability_of(first["id"]) == first["probability"]
    assert record.scenario(first["id"]).mcse == first["mcse"]
    assert record.scenario("no-such-scenario") is None
    assert record.path.periods == tuple(stored["path"]["periods"])
    assert record.outlook.horizon == stored["outlook"]["horizon"]
    assert record.outlook.reach == stored["outlook"]["reach"]
    assert record.coverage == stored["coverage"]
    assert record.artifact == stored["artifact"]
    assert record.timings.total_s == stored["timings"]["total_s"]
    expected = {"paths": PathsSampler, "nutpie": NutsSampler}[stored["sampler"]["name"]]
    assert isinstance(record.sampler, expected)
    assert record.sampler.transitions == stored["sampler"]["transitions"]
    if isinstance(record.sampler, PathsSampler):
        assert record.timings.enumerate_s == stored["timings"]["enumerate_s"]
        assert record.sampler.segments == stored["sampler"]["segments"]
    elif record.sampler.transitions == "learned":  # NUTS on a dynamic set: a control variate
        assert record.sampler.control_variate.paths == stored["sampler"]["control_variate"][
            "paths"]
    else:
        assert record.sampler.control_variate is None and record.timings.enumerate_s is None


def test_a_row_from_a_newer_schema_is_refused_saying_what_to_do(stored):
    with pytest.raises(RecordVersionError, match=r"^fit record: schema_version 3 is newer than "
                       r"this Signpost reads \(up to 2\); upgrade Signpost"):
        FitRecord.from_dict({**stored, "schema_version": 3})
    for bad in ("2", 0, True, None):
        with pytest.raises(RecordVersionError, match=r"is not a version number \(1 to 2\)"):
            FitRecord.from_dict({**stored, "schema_version": bad})


def test_an_unknown_estimator_is_refused(stored):
    with pytest.raises(RecordVersionError, match=r"^fit record: sampler 'gibbs' is not one of "
                                                 r"conjugate, nutpie, paths, psis$"):
        FitRecord.from_dict({**stored, "sampler": {**stored["sampler"], "name": "gibbs"}})


def test_older_rows_without_coverage_or_forecasts_read_as_empty():
    stored = STORED["static nutpie: world-order-2035"]
    old = {k: v for k, v in stored.items() if k not in ("coverage", "outlook", "path")}
    record = FitRecord.from_dict(old)
    assert record.coverage is None and record.outlook.horizon is None
    assert record.path.periods == () and record.outlook.to_dict() == {}
    assert "coverage" not in record.to_dict()
    assert FitRecord.from_stored(None) is None


def test_the_estimators_optional_details_round_trip_in_their_stored_order():
    nuts = {"name": "nutpie", "draws": 2200, "tune": 300, "chains": 8, "runs": 2,
            "transitions": "learned", "init": "posterior mode ± U(-1, 1)",
            "control_variate": {"segments": 4, "paths": 1770674},
            "rejected": {"paths": ["pareto k̂ 0.81 > 0.70"], "psis": ["MCSE 0.0061 > 0.005"]},
            "reweight_rejected": ["MCSE 0.0061 > 0.005"]}
    psis = {"name": "psis", "draws": 1800, "chains": 4, "base_chains": 4,
            "transitions": "learned", "base_evidence_hash": "ab" * 32, "base_seed": 14,
            "control_variate": {"segments": 4, "paths": 1674814}}
    paths = {"name": "paths", "segments": 2, "paths": 554, "exact": False, "draws": 20000,
             "kept": 4000, "chains": 4, "beyond": "long paths", "tail_share": 0.12,
             "transitions": "learned", "weights_failed": ["pareto k̂ 0.9 > 0.70"], "stages": 3,
             "from_older_code": 1}  # a key this code does not know is kept
    for data, kind in ((nuts, NutsSampler), (psis, PsisSampler), (paths, PathsSampler)):
        record = sampler_from_dict(data)
        assert isinstance(record, kind)
        assert record.to_dict() == data and list(record.to_dict()) == list(data)
    assert sampler_from_dict(nuts).rejected["psis"] == ["MCSE 0.0061 > 0.005"]
    assert sampler_from_dict(paths).extra == {"from_older_code": 1}
