"""Alert rules and webhook deliveries, with real local HTTP receivers.

The app runs in process (TestClient, inline static fits of the world-order set); each receiver
is a ThreadingHTTPServer on 127.0.0.1 recording raw bodies and headers, answering statuses from
a script. Observations are posted through the API and the queued refit is run as the
scheduler would. Shown: a threshold rule and a move rule fire once each with a valid signature
and the contract's keys, and not again on a fit that crosses nothing; a receiver failing twice
gets the alert on the third attempt; one always failing ends ``failed``; the fit is published
while a receiver holds its answer; loopback and private hosts are refused unless allowed, when
a rule is created and again when a delivery connects; deliveries a crash left pending are sent
when a dispatcher resumes, once.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from hashlib import sha256
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.alerts import AlertDispatcher, evaluate_fit
from service.api import create_app
from service.cli import app as cli_app
from service.context import Services
from service.db import Database
from service.repositories.alerts import add_rule, list_deliveries
from service.repositories.fits import get_fit, pending_fit
from service.repositories.keys import create_key
from service.repositories.sets import get_set, load_bundled_sets
from service.settings import Settings
from service.webhooks import AllowList, UnsafeWebhook, check_webhook_url, post, webhook_client
from tests.service.support import TestClient, bearer
from tests.service.test_scores import at, publish_synthetic

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
SECRET = "a-receivers-secret-of-some-length"
RETRIES = 2  # so a delivery gets three attempts
CONTRACT_KEYS = {"rule_id", "set_id", "fit_id", "scenario", "from", "to", "reason"}
DEADLINE = 30.0  # seconds a wait-until loop may take on a loaded machine


class Receiver:
    """A webhook receiver on 127.0.0.1 that records raw requests and answers from a script.

    ``statuses``: the answer to each request in turn (the last one repeats). ``hold``: an event
    every answer waits for (a deliberately slow receiver).
    """

    def __init__(self, statuses: tuple[int, ...] = (200,),
                 hold: threading.Event | None = None):
        self.statuses = list(statuses)
        self.hold = hold
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    status = receiver.statuses[min(len(receiver.requests),
                                                   len(receiver.statuses)) - 1]
                if receiver.hold is not None:
                    receiver.hold.wait(DEADLINE)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, n: int) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + DEADLINE
        while len(self.received()) < n:
            assert time.monotonic() < deadline, f"{len(self.received())} of {n} requests came"
            time.sleep(0.01)
        return self.received()


@dataclass
class Api:
    client: TestClient
    services: Services
    store: Database
    var_dir: Path
    url: str
    admin: dict[str, str]
    analyst: dict[str, str]
    reader: dict[str, str]



def settings(var_dir: Path, url: str, **overrides) -> Settings:
    return Settings(var_dir=var_dir, database_url=url, scheduler=False, worker="inline",
                    today=TODAY.isoformat(), dynamic=False, webhook_allow_hosts="127.0.0.1",
                    webhook_timeout=5.0, webhook_retries=RETRIES, webhook_backoff=0.02,
                    **overrides)


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    var_dir = tmp_path_factory.mktemp("alerts")
    url = f"sqlite:///{var_dir / 'signpost.db'}"
    app = create_app(settings(var_dir, url))
    with TestClient(app) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        api = Api(client, services, store, var_dir, url,
                  admin=bearer(create_key(store, role="admin", name="ada")),
                  analyst=bearer(create_key(store, role="analyst", name="ana")),
                  reader=bearer(create_key(store, role="reader")))
        # the first published fit: no evidence yet, so the posterior is the prior
        queued = client.post("/v1/fits", json={"set_id": WORLD}, headers=api.admin)
        assert queued.status_code == 202, queued.text
        assert services.runner.run_fit(queued.json()["fit_id"])["status"] == "published"
        yield api


def error(response) -> tuple[int, str, str | None]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return response.status_code, body["error"]["code"], body["error"]["field"]


def probabilities(api: Api) -> dict[str, float]:
    response = api.client.get(f"/v1/sets/{WORLD}/posterior")
    assert response.status_code == 200, response.text
    return {s["id"]: s["probability"] for s in response.json()["scenarios"]}


def what_if(api: Api, observation: dict) -> dict[str, float]:
    """The exact posterior were ``observation`` logged (static set; nothing is stored)."""
    response = api.client.post(f"/v1/sets/{WORLD}/what-if", headers=api.analyst,
                               json={"observations": [observation]})
    assert response.status_code == 200, response.text
    return {s["id"]: s["probability"] for s in response.json()["scenarios"]}


def observe_and_refit(api: Api, observation: dict) -> str:
    """Post an observation through the API, then run the refit it queued (as the scheduler)."""
    response = api.client.post("/v1/observations", json=observation, headers=api.analyst)
    assert response.status_code == 201, response.text
    queued = pending_fit(api.store, set_id=WORLD)
    assert queued is not None and queued.status == "queued"
    result = api.services.runner.run_fit(queued.id)
    assert result["status"] == "published", result
    return queued.id


def add(api: Api, receiver: Receiver, **conditions) -> int:
    body = {"set_id": WORLD, "webhook_url": receiver.url, "secret": SECRET, **conditions}
    response = api.client.post("/v1/alert-rules", json=body, headers=api.analyst)
    assert response.status_code == 201, response.text
    assert SECRET not in response.text and response.json()["secret_hint"] == "…" + SECRET[-4:]
    return response.json()["id"]


def deliveries(api: Api, **params) -> list[dict]:
    response = api.client.get("/v1/alerts", params=params, headers=api.analyst)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def wait_until_settled(api: Api, rule_id: int) -> dict:
    deadline = time.monotonic() + DEADLINE
    while True:
        items = deliveries(api, rule_id=rule_id)
        if items and items[0]["status"] != "pending":
            return items[0]
        assert time.monotonic() < deadline, items
        time.sleep(0.02)


def verified(headers: dict[str, str], body: bytes) -> dict:
    """The body, once its signature checks out as a receiver would check it."""
    expected = "sha256=" + hmac.new(SECRET.encode(), body, sha256).hexdigest()
    assert hmac.compare_digest(expected, headers["X-Signpost-Signature"])
    payload = json.loads(body)
    assert headers["X-Signpost-Delivery"] == str(payload["delivery_id"])
    assert headers["Content-Type"] == "application/json"
    return payload


def delete(api: Api, *rule_ids: int) -> None:
    for rule_id in rule_ids:
        response = api.client.delete(f"/v1/alert-rules/{rule_id}", headers=api.analyst)
        assert response.status_code == 200 and response.json()["deleted_at"], response.text


def missile_drill(day: str) -> dict:
    return {"indicator": "missile_defense_exercise", "date": day, "grade": "A1"}


# -- firing ---------------------------------------------------------------------------------

def test_a_threshold_rule_and_a_move_rule_fire_once_each(api):
    before = probabilities(api)
    first, second = missile_drill("2024-03-01"), missile_drill("2024-06-01")
    after = what_if(api, first)
    # the thaw rises past the midpoint; hardened bipolarity falls by most of its move
    rising = max(after, key=lambda k: after[k] - before[k])
    falling = min(after, key=lambda k: after[k] - before[k])
    above = (before[rising] + after[rising]) / 2
    min_move = 0.8 * (before[falling] - after[falling])
    assert (rising, falling) == ("us_russia_thaw", "hardened_bipolar") and min_move > 0.2

    with Receiver() as receiver:
        threshold = add(api, receiver, scenario=rising, above=above)
        move = add(api, receiver, scenario=falling, min_move=min_move)
        assert api.client.get(f"/v1/alert-rules/{move}", headers=api.analyst).json()[
            "reference"] == pytest.approx(before)

        fit_id = observe_and_refit(api, first)
        assert probabilities(api) == pytest.approx(after, abs=1e-6)
        requests = receiver.wait_for(2)
        payloads = {p["rule_id"]: p for p in (verified(h, b) for h, b in requests)}
        assert set(payloads) == {threshold, move}
        for payload in payloads.values():
            assert CONTRACT_KEYS <= set(payload) and payload["fit_id"] == fit_id
            assert payload["set_id"] == WORLD and payload["reason"]
        assert (payloads[threshold]["scenario"], payloads[threshold]["condition"]) == (
            rising, "above")
        assert (payloads[threshold]["from"], payloads[threshold]["to"]) == pytest.approx(
            (before[rising], after[rising]))
        assert (payloads[move]["scenario"], payloads[move]["condition"]) == (falling,
                                                                             "min_move")
        assert (payloads[move]["from"], payloads[move]["to"]) == pytest.approx(
            (before[falling], after[falling]))
        for rule_id in (threshold, move):
            settled = wait_until_settled(api, rule_id)
            assert (settled["status"], settled["attempts"], settled["last_status"]) == (
                "delivered", 1, 200)
            assert settled["payload"] == payloads[rule_id]

        # the next fit stays above the threshold and moves less than min_move: no alert
        later = what_if(api, second)
        assert later[rising] > above and abs(later[falling] - after[falling]) < min_move
        observe_and_refit(api, second)
        assert [len(deliveries(api, rule_id=r)) for r in (threshold, move)] == [1, 1]
        assert deliveries(api, status="pending") == []
        assert len(receiver.received()) == 2
        delete(api, threshold, move)


def test_a_receiver_failing_twice_gets_the_alert_on_the_third_attempt(api):
    with Receiver(statuses=(500, 500, 200)) as receiver:
        rule = add(api, receiver, min_move=0.001)  # any scenario moving at all
        observe_and_refit(api, missile_drill("2024-09-01"))
        settled = wait_until_settled(api, rule)
        assert (settled["status"], settled["attempts"], settled["last_status"],
                settled["last_error"]) == ("delivered", 3, 200, None)
        requests = receiver.received()
        assert len(requests) == 3
        assert len({body for _, body in requests}) == 1  # the same signed bytes each time
        assert all(verified(h, b)["rule_id"] == rule for h, b in requests)
        delete(api, rule)


def test_a_receiver_that_always_fails_ends_failed_after_the_retries(api):
    with Receiver(statuses=(503,)) as receiver:
        rule = add(api, receiver, min_move=0.001)
        observe_and_refit(api, missile_drill("2025-01-01"))
        settled = wait_until_settled(api, rule)
        assert (settled["status"], settled["attempts"], settled["last_status"]) == (
            "failed", RETRIES + 1, 503)
        assert settled["last_error"].startswith("HTTP 503")
        assert len(receiver.received()) == RETRIES + 1
        assert deliveries(api, rule_id=rule, status="failed")[0]["id"] == settled["id"]
        delete(api, rule)


def test_delivery_does_not_block_the_fit(api):
    release = threading.Event()
    with Receiver(hold=release) as receiver:
        rule = add(api, receiver, min_move=0.001)
        fit_id = observe_and_refit(api, missile_drill("2025-03-01"))
        # the receiver holds the request: the fit is published and served meanwhile
        receiver.wait_for(1)
        assert get_fit(api.store, fit_id=fit_id).status == "published"
        assert api.client.get(f"/v1/sets/{WORLD}/posterior").json()["fit_id"] == fit_id
        held = deliveries(api, rule_id=rule)[0]
        assert (held["status"], held["attempts"]) == ("pending", 0)
        release.set()
        settled = wait_until_settled(api, rule)
        assert (settled["status"], settled["attempts"]) == ("delivered", 1)
        delete(api, rule)


# -- the host check ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.2:9/hook",          # loopback, not the listed 127.0.0.1
    "http://localhost:9/hook",          # a name for loopback
    "http://10.1.2.3/hook",             # private
    "http://169.254.169.254/latest",    # link-local (cloud metadata)
    "http://0.0.0.0/hook",              # unspecified
    "ftp://example.org/hook",           # not http(s)
])
def test_non_public_hosts_are_refused_naming_webhook_url(api, url):
    before = api.client.get("/v1/alert-rules", headers=api.analyst).json()["total"]
    response = api.client.post("/v1/alert-rules", headers=api.analyst, json={
        "set_id": WORLD, "webhook_url": url, "secret": SECRET, "above": 0.5})
    assert error(response) == (422, "unsafe_webhook", "webhook_url")
    assert api.client.get("/v1/alert-rules", headers=api.analyst).json()["total"] == before


def test_loopback_is_refused_unless_allowed(api):
    url = "http://127.0.0.1:9/hook"
    with pytest.raises(UnsafeWebhook, match="loopback"):
        check_webhook_url(url, AllowList())
    with pytest.raises(UnsafeWebhook):
        check_webhook_url(url, AllowList.parse("127.0.0.1:10"))  # another port
    assert check_webhook_url(url, AllowList.parse("127.0.0.1:9")) == url
    # the app lists 127.0.0.1 in SIGNPOST_WEBHOOK_ALLOW_HOSTS
    response = api.client.post("/v1/alert-rules", headers=api.analyst, json={
        "set_id": WORLD, "webhook_url": url, "secret": SECRET, "above": 0.99})
    assert response.status_code == 201, response.text
    delete(api, response.json()["id"])


def test_the_check_runs_again_when_a_delivery_connects():
    """A host allowed when the rule was made but not when it is sent is not reached."""
    with Receiver() as receiver, webhook_client(AllowList(), 5.0) as refusing, \
            webhook_client(AllowList.parse("127.0.0.1"), 5.0) as allowing:
        attempt = post(refusing, receiver.url, b"{}", SECRET, 1)
        assert (attempt.delivered, attempt.retry) == (False, False)
        assert "loopback" in attempt.error and receiver.received() == []
        assert post(allowing, receiver.url, b"{}", SECRET, 1).delivered
        assert len(receiver.received()) == 1


@pytest.mark.parametrize("body, field", [
    ({"set_id": "nope"}, "set_id"),
    ({"scenario": "multipolarr", "above": 0.5}, "scenario"),
    ({"above": 1.5}, "above"),
    ({"below": -0.1}, "below"),
    ({"min_move": 0}, "min_move"),
    ({}, "above"),                              # no condition
    ({"kind": "leader", "min_move": 0.1}, "min_move"),
    ({"secret": "short", "above": 0.5}, "secret"),
    ({"above": 0.5, "colour": "red"}, "colour"),
])
def test_bad_rules_are_refused_naming_the_field(api, body, field):
    data = {"set_id": WORLD, "webhook_url": "http://127.0.0.1:9/hook", "secret": SECRET,
            **body}
    response = api.client.post("/v1/alert-rules", headers=api.analyst, json=data)
    assert error(response)[::2] == (422, field), response.text


def test_alert_routes_need_an_analyst_key(api):
    body = {"set_id": WORLD, "webhook_url": "http://127.0.0.1:9/hook", "secret": SECRET,
            "above": 0.5}
    assert error(api.client.post("/v1/alert-rules", json=body))[0] == 401
    assert error(api.client.post("/v1/alert-rules", json=body, headers=api.reader))[0] == 403
    assert error(api.client.get("/v1/alerts", headers=api.reader))[0] == 403
    assert error(api.client.get("/v1/alert-rules/999999", headers=api.analyst)) == (
        404, "not_found", "rule_id")
    assert error(api.client.delete("/v1/alert-rules/999999", headers=api.analyst))[0] == 404


# -- crash recovery and the CLI -------------------------------------------------------------

def test_deliveries_left_pending_are_sent_once_on_resume(db_url):
    store = Database(db_url, today=TODAY)
    store.migrate()
    load_bundled_sets(store)
    world = get_set(store, set_id=WORLD)
    ids = [s.id for s in world.scenarios]
    publish_synthetic(store, world, dict(zip(ids, (0.4, 0.2, 0.08, 0.32), strict=True)),
                      at("2025-01-01"))
    with Receiver() as receiver:
        rule = add_rule(store, values={
            "set_id": WORLD, "kind": "leader", "scenario": None, "above": None,
            "below": None, "min_move": None, "extra": None, "webhook_url": receiver.url,
            "secret": SECRET, "created_by": "test", "reference": {}, "reference_fit_id": None})
        later = store.clock() + timedelta(seconds=1)
        fit_id = publish_synthetic(store, world, dict(zip(
            ids, (0.2, 0.2, 0.08, 0.52), strict=True)), later)
        # the crashed process recorded the alert but never sent it
        assert len(evaluate_fit(store, fit_id=fit_id)) == 1
        assert receiver.received() == []
        dispatcher = AlertDispatcher(store, allow=AllowList.parse("127.0.0.1"), timeout=5.0,
                                     retries=RETRIES, backoff=0.02, poll=0.05)
        try:
            dispatcher.resume()  # re-checks the newest fit (no second alert) and sends
            payload = verified(*receiver.wait_for(1)[0])
            assert (payload["rule_id"], payload["scenario"], payload["condition"]) == (
                rule.id, "multipolar", "leader")
            deadline = time.monotonic() + DEADLINE
            while list_deliveries(store)[0][0].status != "delivered":
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            dispatcher.close()
        assert list_deliveries(store)[1] == 1 and len(receiver.received()) == 1
    store.dispose()


def test_the_cli_adds_lists_and_deletes_rules(api, monkeypatch):
    for name in ("SIGNPOST_VAR_DIR", "SIGNPOST_DATABASE_URL", "SIGNPOST_TODAY",
                 "SIGNPOST_WEBHOOK_ALLOW_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    env = {"SIGNPOST_VAR_DIR": str(api.var_dir), "SIGNPOST_DATABASE_URL": api.url,
           "SIGNPOST_TODAY": TODAY.isoformat()}
    runner = CliRunner()
    args = ["alerts", "add", "--set", WORLD, "--webhook", "http://127.0.0.1:9/hook",
            "--secret", SECRET, "--scenario", "multipolar", "--below", "0.1", "--json"]
    refused = runner.invoke(cli_app, args, env=env)
    assert refused.exit_code == 2 and "webhook_url" in refused.stderr, refused.output
    added = runner.invoke(cli_app, args, env={**env, "SIGNPOST_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"})
    assert added.exit_code == 0, added.output
    rule = json.loads(added.stdout)
    assert rule == api.client.get(f"/v1/alert-rules/{rule['id']}", headers=api.analyst).json()
    listed = json.loads(runner.invoke(cli_app, ["alerts", "list", "--json"], env=env).stdout)
    assert rule["id"] in [r["id"] for r in listed["items"]] and SECRET not in json.dumps(listed)
    deleted = runner.invoke(cli_app, ["alerts", "delete", str(rule["id"]), "--json"], env=env)
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["deleted_at"], deleted.output
    shown = runner.invoke(cli_app, ["alerts", "deliveries", "--json"], env=env)
    assert json.loads(shown.stdout)["items"] == deliveries(api, limit=1000)
