"""The fuzzer: schemathesis 4 against a real server, every phase, past every 404.

A uvicorn process serves a database prepared here: the bundled sets, the sample observations,
a published fit of each set (static settings: exact fits, fast), an alert rule and a key
besides the fuzzer's. Schemathesis reads the served ``/openapi.json`` and runs all its phases
— examples, coverage, fuzzing and stateful — with an admin key. Real ids come from the
document: the bundled set ids are the examples of ``{set_id}``, and the OpenAPI links
(`service.api.links`) take the stateful phase from each list or create route to the routes
that take its ids. Every response is checked against the document (status, content type,
headers, body schema) and for server errors. The test asserts 0 failures of those checks,
at least 1,000 requests (counted by the server's own metrics too) and, for every operation, at
least one answer that found its resource (a 2xx or a 409; for ``POST /v1/alert-rules``, whose
webhook host must resolve, the refusal of that last check).

Nothing is excluded, and one check is off for one operation: ``use_after_free`` on
``GET /v1/alert-rules/{rule_id}``, which serves a deleted rule on purpose (with its
``deleted_at``: its deliveries keep their rule). The keys routes may revoke or rotate away
the fuzzer's own admin key: `AdminKeys` then makes it a new one (schemathesis asks again after
a 401). Rate limits are off (``SIGNPOST_RATE_LIMIT_*`` empty): a 429 would end a run's writes
early, not find a bug.

Checks left off, and why: ``positive_data_acceptance`` (a schema-valid request may be refused
on meaning — a scenario not in the set, a date outside its window, a webhook host that does
not resolve); ``negative_data_rejection``, ``missing_required_header`` and ``ignored_auth``
(reads are open unless ``SIGNPOST_REQUIRE_READ_KEY``, but FastAPI documents the optional
bearer key as required). ``SIGNPOST_FUZZ_EXAMPLES`` sets the examples per operation
(`make fuzz` runs a longer pass).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from indicators import read_observations_csv
from service.alerts import AlertRuleIn, create_rule
from service.context import Services
from service.repositories.fits import create_fit
from service.repositories.keys import create_key, verify_key
from service.repositories.observations import add_observations
from service.repositories.sets import get_catalog, load_bundled_sets
from service.settings import Settings
from service.webhooks import AllowList
from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.slow

TODAY = date(2025, 12, 31)
SETS = ("sino-russian-convergence", "world-order-2035")
SAMPLE = Path("indicators/data/sample_observations.csv")
EXAMPLES = int(os.environ.get("SIGNPOST_FUZZ_EXAMPLES", "8"))
MIN_REQUESTS = 1000
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "use_after_free",
          "ensure_resource_availability", "unsupported_method", "allow_header_conformance")
# Found: a 2xx, or a 409 (which needs the resource: retracted twice, resolved twice) ...
FOUND = re.compile(r"2\d\d|409")
# ... or, where no generated body can succeed, the refusal of the last check the route makes:
# a rule's webhook host must resolve to a public address, and the test resolves no names.
LAST_CHECK = {"POST /v1/alert-rules": "422 webhook_url"}


def config(examples: int, phases: dict[str, Any] | None = None) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": 15,
        "generation": {"max-examples": examples},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": phases or {"stateful": {"max-steps": 10}},
        "request-timeout": 30,
        # a deleted rule stays readable, with its deleted_at (its deliveries keep their rule)
        "operations": [{"include-name": "GET /v1/alert-rules/{rule_id}",
                        "checks": {"use_after_free": {"enabled": False}}}],
    })


def admin_keys(store) -> type:
    """An auth provider: an admin key, and a new one if the run revoked or rotated it away."""

    class AdminKeys:
        secret = create_key(store, role="admin", name="fuzzer")
        made = 1

        def get(self, case, context) -> str:
            if verify_key(store, secret=AdminKeys.secret) is None:
                AdminKeys.secret = create_key(store, role="admin", name="fuzzer")
                AdminKeys.made += 1
            return AdminKeys.secret

        def set(self, case, data, context) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return AdminKeys


@dataclass
class Deployment:
    server: ServerProcess
    services: Services
    keys: type

    def schema(self, examples: int, phases: dict[str, Any] | None = None):
        schema = schemathesis.openapi.from_url(f"{self.server.base_url}/openapi.json",
                                               config=config(examples, phases))
        schema.auth(refresh_interval=600)(self.keys)
        return schema


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    var_dir = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    services = Services.build(Settings(var_dir=var_dir, database_url=url, scheduler=False,
                                       worker="inline", today=TODAY.isoformat(),
                                       dynamic=False), role="api")
    store = services.store
    store.migrate()
    load_bundled_sets(store)
    observations, _ = read_observations_csv(SAMPLE, get_catalog(store), today=TODAY)
    add_observations(store, observations=observations, analyst="sample")
    for set_id in SETS:
        assert services.runner.run_fit(create_fit(store, set_id=set_id,
                                                  requested_by="test"))["status"] == "published"
    # a rule to read and delete: one the fuzzer makes needs a webhook host that resolves
    create_rule(store, AlertRuleIn(set_id=SETS[1], webhook_url="http://93.184.216.34/hook",
                                   secret="a-secret-of-some-length", above=0.999),
                AllowList.parse(""), "test")
    create_key(store, role="reader", name="oldest")  # the first listed key is not the fuzzer's
    keys = admin_keys(store)
    server = ServerProcess(var_dir, {
        "SIGNPOST_DATABASE_URL": url, "SIGNPOST_SCHEDULER": "false", "SIGNPOST_WORKER": "inline",
        "SIGNPOST_TODAY": TODAY.isoformat(), "SIGNPOST_DYNAMIC": "false",
        "SIGNPOST_REPLAY_WAIT": "0", "SIGNPOST_RATE_LIMIT_WRITES": "",
        "SIGNPOST_RATE_LIMIT_FITS": "", "SIGNPOST_RATE_LIMIT_READS": ""})
    try:
        server.wait_until("/readyz")
        yield Deployment(server, services, keys)
    finally:
        server.stop()
        services.close()


@dataclass
class Run:
    """What a schemathesis run did: per operation the statuses seen, the failed checks."""

    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)
    requests: int = 0


def run(schema) -> Run:
    """Run every phase of the engine (as ``schemathesis run`` does) and collect the results."""
    result = Run()
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseFinished):
            result.phases[event.phase.name.value] = event.status.value
        elif isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                case, response = recorder.cases[case_id].value, interaction.response
                status = response.status_code if response is not None else None
                result.statuses[case.operation.label][status] += 1
                if status == 422:  # and the field it names
                    field_name = json.loads(response.content)["error"]["field"]
                    result.statuses[case.operation.label][f"422 {field_name}"] += 1
                result.requests += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        case = recorder.cases[case_id].value
                        failure = check.failure_info.failure
                        result.failures.append(
                            f"{check.name} on {case.operation.label}: {failure.title}: "
                            f"{(failure.message or '')[:300]}\n    {case.as_curl_command()}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            result.errors.append(repr(getattr(event, "value", None)
                                      or getattr(event, "exception", None))[:500])
    return result


def served_requests(base_url: str) -> int:
    """Requests the server has answered (its latency histogram's count, every route)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("signpost_request_duration_seconds_count")))


def test_the_fuzzer_finds_nothing_and_reaches_every_operation(deployment):
    before = served_requests(deployment.server.base_url)
    result = run(deployment.schema(EXAMPLES))
    served = served_requests(deployment.server.base_url) - before
    report = "\n".join(f"{op}: {dict(c)}" for op, c in sorted(result.statuses.items()))
    assert result.errors == [], result.errors
    assert set(result.phases) >= {"examples", "coverage", "fuzzing", "stateful"}, result.phases
    assert not [p for p in ("examples", "coverage", "fuzzing", "stateful")
                if result.phases[p] == "skip"], result.phases
    assert result.failures == [], "\n".join(result.failures) + "\n" + report
    assert result.requests >= MIN_REQUESTS and served >= MIN_REQUESTS, (result.requests, served)
    document = httpx.get(f"{deployment.server.base_url}/openapi.json").json()
    operations = {f"{method.upper()} {path}" for path, item in document["paths"].items()
                  for method in item}
    assert operations - set(result.statuses) == set(), report
    unfound = {op: dict(c) for op, c in result.statuses.items()
               if not any(FOUND.fullmatch(str(s)) or s == LAST_CHECK.get(op) for s in c)}
    assert unfound == {}, report
    print(f"{result.requests} requests ({served} served), phases {result.phases}\n{report}")


def test_a_violation_is_reported(deployment):
    """The harness can fail: a document that says ``stale`` is a string gets a failure."""
    schema = deployment.schema(1, phases={"examples": {"enabled": True},
                                          "coverage": {"enabled": False},
                                          "fuzzing": {"enabled": False},
                                          "stateful": {"enabled": False}})
    schema.raw_schema["components"]["schemas"]["Posterior"]["properties"]["stale"] = {
        "type": "string"}
    result = run(schema.include(path="/v1/sets/{set_id}/posterior", method="GET"))
    assert result.statuses["GET /v1/sets/{set_id}/posterior"][200] >= 1
    assert any(f.startswith("response_schema_conformance on GET /v1/sets/{set_id}/posterior")
               for f in result.failures), result.failures
