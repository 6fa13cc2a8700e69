"""Alerts: rules per scenario set, checked against each newly published live fit, and sent.

A rule names a set, a webhook and its secret, and what to watch (its **kind**, a class in
`RULE_KINDS`):

- ``probability`` (the default): a scenario's probability — or, without ``scenario``, any
  scenario's — crossing ``above`` (previous ≤ above < new) or ``below`` (new < below ≤
  previous), or moving by ``min_move`` or more (|new − reference|, the reference being the
  probability when the rule was created, then when it last fired);
- ``leader``: the most probable scenario changes (to or from ``scenario``, when given).

"Previous" is the set's newest published live fit before the new one (the priors before the
first). A fit meets a rule at most once: one delivery per (rule, fit), unique in the database,
carrying the scenario that triggered it (of several, the one that moved most). Replays and
what-ifs never fire a rule; a rule sees only fits published after it was created.

Delivery never blocks a fit or a request: `AlertDispatcher.on_publish` (a callback of the fit
runner) records the deliveries in the database, and background threads POST them
(`service.webhooks`), retrying a non-2xx answer or a timeout ``SIGNPOST_WEBHOOK_RETRIES`` times
after waits of ``SIGNPOST_WEBHOOK_BACKOFF`` × 1, 2, 4… seconds, then keeping it as failed.
Deliveries left pending by a crash are sent when the scheduler's process starts (`resume`).
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecast import FitRecord
from indicators._text import did_you_mean
from service.db import AlertDeliveryRow, AlertRuleRow, FitRow, aware
from service.errors import BadRequest, refusal
from service.repositories import alerts as repo
from service.repositories.fits import get_fit, latest_published
from service.repositories.sets import get_set, set_ids
from service.webhooks import AllowList, check_webhook_url, post, webhook_client

if TYPE_CHECKING:
    from priors import ScenarioSet
    from service.db import Database
    from service.settings import Settings

__all__ = [
    "RULE_KINDS",
    "AlertDispatcher",
    "AlertRuleIn",
    "Trigger",
    "create_rule",
    "delivery_dict",
    "evaluate_fit",
    "parse_rule",
    "rule_dict",
]

log = logging.getLogger("signpost.alerts")


class AlertRuleIn(BaseModel):
    """An alert rule as posted."""

    model_config = ConfigDict(extra="forbid")

    set_id: str = Field(min_length=1, max_length=100, examples=["world-order-2035"])
    webhook_url: str = Field(min_length=1, max_length=2000, description=(
        "http(s) URL that gets one POST per alert; its host must be public unless "
        "SIGNPOST_WEBHOOK_ALLOW_HOSTS lists it"), examples=["https://hooks.example.org/signpost"])
    secret: str = Field(min_length=16, max_length=500, description=(
        "signs each body: X-Signpost-Signature: sha256=<hex HMAC-SHA256 of the raw body>; "
        "never served back"))
    kind: Literal["probability", "leader"] = Field("probability", description=(
        "probability: above / below / min_move on a scenario's probability; leader: the "
        "most probable scenario changes"))
    scenario: str | None = Field(None, max_length=100, description=(
        "the scenario watched; without it, every scenario of the set"))
    above: float | None = Field(None, ge=0, le=1, description=(
        "fires when the probability rises past it: previous ≤ above < new"))
    below: float | None = Field(None, ge=0, le=1, description=(
        "fires when the probability falls past it: new < below ≤ previous"))
    min_move: float | None = Field(None, gt=0, le=1, description=(
        "fires when the probability moved by at least this much (absolute) since the rule "
        "last fired, or since it was created"))


@dataclass(frozen=True)
class Trigger:
    """Why a fit meets a rule: which scenario, from what to what, which condition."""

    scenario: str
    from_: float
    to: float
    condition: str  # above, below, min_move, leader
    threshold: float | None
    reason: str


def _probabilities(row: FitRow | None, scenario_set: ScenarioSet) -> dict[str, float]:
    """Each scenario's probability in a fit (the priors for no fit)."""
    if row is None:
        return {s.id: s.prior for s in scenario_set.scenarios}
    record = FitRecord.from_stored(row.summary)
    found = {s.id: record.probability_of(s.id) if record else None
             for s in scenario_set.scenarios}
    return {k: p for k, p in found.items() if p is not None}


class RuleKind:
    """A kind of rule: what it may be given, and when a new fit meets it."""

    name: ClassVar[str]

    def validate(self, rule: AlertRuleIn) -> None:
        """Refuse a rule this kind cannot check (BadRequest naming the field)."""

    def check(self, rule: AlertRuleRow, before: Mapping[str, float],
              after: Mapping[str, float]) -> Trigger | None:
        """The trigger when going from ``before`` to ``after`` meets ``rule``, else None."""
        raise NotImplementedError


class ProbabilityRule(RuleKind):
    """A scenario's probability crossing ``above`` or ``below``, or moving by ``min_move``."""

    name = "probability"

    def validate(self, rule: AlertRuleIn) -> None:
        """At least one condition."""
        if rule.above is None and rule.below is None and rule.min_move is None:
            raise BadRequest("above: give at least one condition: above, below or min_move "
                             "(or kind 'leader')", field="above")

    def check(self, rule: AlertRuleRow, before: Mapping[str, float],
              after: Mapping[str, float]) -> Trigger | None:
        """The scenario that moved most among those meeting a condition."""
        reference = rule.reference or {}
        found = []
        for k in [rule.scenario] if rule.scenario else list(after):
            if k not in after or k not in before:
                continue
            p0, p1 = before[k], after[k]
            if rule.above is not None and p0 <= rule.above < p1:
                found.append(Trigger(k, p0, p1, "above", rule.above,
                                     f"{k} rose above {rule.above:g}: {p0:.3f} → {p1:.3f}"))
            elif rule.below is not None and p1 < rule.below <= p0:
                found.append(Trigger(k, p0, p1, "below", rule.below,
                                     f"{k} fell below {rule.below:g}: {p0:.3f} → {p1:.3f}"))
            elif rule.min_move is not None:
                ref = reference.get(k, p0)
                if abs(p1 - ref) >= rule.min_move:
                    since = "it last fired" if rule.last_fired_at else "the rule was created"
                    found.append(Trigger(k, ref, p1, "min_move", rule.min_move,
                                         f"{k} moved {p1 - ref:+.3f} since {since} (at "
                                         f"least {rule.min_move:g}): {ref:.3f} → {p1:.3f}"))
        return max(found, key=lambda t: abs(t.to - t.from_), default=None)


class LeaderRule(RuleKind):
    """The most probable scenario changes (to or from ``scenario``, when given)."""

    name = "leader"

    def validate(self, rule: AlertRuleIn) -> None:
        """No probability conditions."""
        for field in ("above", "below", "min_move"):
            if getattr(rule, field) is not None:
                raise BadRequest(f"{field}: a 'leader' rule fires when the most probable "
                                 f"scenario changes; it takes no {field} (use kind "
                                 "'probability')", field=field)

    def check(self, rule: AlertRuleRow, before: Mapping[str, float],
              after: Mapping[str, float]) -> Trigger | None:
        """The new leader, when it differs from the previous one."""
        shared = [k for k in after if k in before]
        if not shared:
            return None
        was = max(shared, key=lambda k: before[k])
        now = max(shared, key=lambda k: after[k])
        if was == now or (rule.scenario and rule.scenario not in (was, now)):
            return None
        return Trigger(now, before[now], after[now], "leader", None,
                       f"the most probable scenario is now {now} ({after[now]:.3f}); it was "
                       f"{was} ({before[was]:.3f} → {after[was]:.3f})")


RULE_KINDS: dict[str, RuleKind] = {kind.name: kind for kind in (ProbabilityRule(),
                                                                 LeaderRule())}
"""The rule kinds by name; a new kind is a `RuleKind` subclass listed here."""


# -- rules -------------------------------------------------------------------------------

def parse_rule(data: Mapping[str, Any]) -> AlertRuleIn:
    """A rule's fields validated as `AlertRuleIn` (for the CLI; the API's body does the same).

    Raises BadRequest naming the first field at fault.
    """
    try:
        return AlertRuleIn.model_validate(dict(data))
    except ValidationError as exc:
        raise refusal(exc.errors(), tuple(AlertRuleIn.model_fields), every=False) from None


def create_rule(db: Database, rule: AlertRuleIn, allow: AllowList,
                created_by: str) -> AlertRuleRow:
    """Validate and store a rule; its reference is the set's published posterior now.

    Raises
    ------
    BadRequest
        Naming the field: an unknown set or scenario, no condition, a webhook URL that is
        not http(s) or whose host is not public (`service.webhooks.UnsafeWebhook`).

    """
    known = set_ids(db)
    if rule.set_id not in known:
        raise BadRequest(f"set_id: unknown scenario set '{rule.set_id}'"
                         f"{did_you_mean(rule.set_id, known)} (sets: "
                         f"{', '.join(known) or 'none loaded'})", field="set_id")
    scenario_set = get_set(db, set_id=rule.set_id)
    if rule.scenario is not None and rule.scenario not in scenario_set.scenario_ids:
        raise BadRequest(f"scenario: '{rule.scenario}' is not a scenario of '{rule.set_id}'"
                         f"{did_you_mean(rule.scenario, scenario_set.scenario_ids)} (its "
                         f"scenarios: {', '.join(scenario_set.scenario_ids)})", field="scenario")
    RULE_KINDS[rule.kind].validate(rule)
    url = check_webhook_url(rule.webhook_url, allow)
    latest = latest_published(db, set_id=rule.set_id)
    return repo.add_rule(db, values={
        "set_id": rule.set_id, "kind": rule.kind, "scenario": rule.scenario,
        "above": rule.above, "below": rule.below, "min_move": rule.min_move, "extra": None,
        "webhook_url": url, "secret": rule.secret, "created_by": created_by,
        "reference": _probabilities(latest, scenario_set),
        "reference_fit_id": latest.id if latest is not None else None,
    })


def _iso(value: datetime | None) -> str | None:
    return aware(value).isoformat() if value is not None else None


def rule_dict(row: AlertRuleRow) -> dict[str, Any]:
    """The API's view of a rule: everything but the secret (its last four characters)."""
    return {
        "id": row.id,
        "set_id": row.set_id,
        "kind": row.kind,
        "scenario": row.scenario,
        "above": row.above,
        "below": row.below,
        "min_move": row.min_move,
        "webhook_url": row.webhook_url,
        "secret_hint": "…" + row.secret[-4:],
        "created_by": row.created_by,
        "created_at": _iso(row.created_at),
        "deleted_at": _iso(row.deleted_at),
        "reference": dict(row.reference or {}),
        "reference_fit_id": row.reference_fit_id,
        "last_fired_at": _iso(row.last_fired_at),
    }


def delivery_dict(row: AlertDeliveryRow) -> dict[str, Any]:
    """The API's view of a delivery, with the body as sent."""
    return {
        "id": row.id,
        "rule_id": row.rule_id,
        "set_id": row.set_id,
        "fit_id": row.fit_id,
        "scenario": row.scenario,
        "reason": row.reason,
        "status": row.status,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == "pending" else None,
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
        "payload": json.loads(row.payload),
    }


# -- evaluation --------------------------------------------------------------------------

def _body(delivery_id: int, *, rule: AlertRuleRow, fit: FitRow, previous: FitRow | None,
          trigger: Trigger, after: Mapping[str, float], now: datetime) -> str:
    """The alert's JSON text: compact, sorted keys (signed and stored as is)."""
    return json.dumps({
        "delivery_id": delivery_id,
        "rule_id": rule.id,
        "set_id": rule.set_id,
        "fit_id": fit.id,
        "previous_fit_id": previous.id if previous is not None else None,
        "kind": rule.kind,
        "condition": trigger.condition,
        "threshold": trigger.threshold,
        "scenario": trigger.scenario,
        "from": trigger.from_,
        "to": trigger.to,
        "reason": trigger.reason,
        "probabilities": dict(after),
        "fitted_at": _iso(fit.finished_at),
        "evidence_through": fit.as_of.isoformat() if fit.as_of else None,
        "created_at": aware(now).isoformat(),
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def evaluate_fit(db: Database, *, fit_id: str) -> list[int]:
    """Check a published live fit against its set's rules; returns the deliveries recorded.

    Idempotent: a rule already fired on this fit is not fired again, and a rule created after
    the fit was published does not see it.
    """
    fit = get_fit(db, fit_id=fit_id)
    if fit.kind != "live" or fit.status != "published" or fit.finished_at is None:
        return []
    rules = repo.live_rules(db, set_id=fit.set_id, created_before=aware(fit.finished_at))
    if not rules:
        return []
    scenario_set = get_set(db, set_id=fit.set_id)
    previous = repo.previous_published(db, fit=fit)
    before = _probabilities(previous, scenario_set)
    after = _probabilities(fit, scenario_set)
    created = []
    for rule in rules:
        kind = RULE_KINDS.get(rule.kind)
        if kind is None:
            log.warning("alert rule %s: unknown kind %r, skipped", rule.id, rule.kind)
            continue
        trigger = kind.check(rule, before, after)
        if trigger is None:
            continue
        body = functools.partial(_body, rule=rule, fit=fit, previous=previous,
                                 trigger=trigger, after=after, now=db.clock())
        row = repo.fire(db, rule=rule, fit_id=fit.id, scenario=trigger.scenario,
                        reason=trigger.reason, reference=after, payload=body)
        if row is not None:
            created.append(row.id)
    return created


# -- delivery ----------------------------------------------------------------------------

class AlertDispatcher:
    """Records the alerts of each published fit and sends them on background threads.

    One thread claims due deliveries (`service.repositories.alerts.claim_due`) for a few
    sender threads; each POST gets ``timeout`` seconds; a claim is held for twice that (and
    5 s more) so that a crashed process's claim falls due again. Threads start on first use.

    Parameters
    ----------
    store : Database
    allow : AllowList
        Hosts the host check lets through (``SIGNPOST_WEBHOOK_ALLOW_HOSTS``).
    timeout, retries, backoff : float, int, float
        ``SIGNPOST_WEBHOOK_TIMEOUT``, ``_RETRIES``, ``_BACKOFF``.
    poll : float
        Seconds between checks for deliveries recorded by other processes.

    """

    SENDERS = 4

    def __init__(self, store: Database, *, allow: AllowList, timeout: float, retries: int,
                 backoff: float, poll: float):
        self.store = store
        self.allow = allow
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.poll = poll
        self._hold = timedelta(seconds=2 * timeout + 5)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._threads: list[threading.Thread] = []
        self._resume = False
        self._client = None

    @classmethod
    def from_settings(cls, store: Database, settings: Settings) -> AlertDispatcher:
        """A dispatcher with the ``SIGNPOST_WEBHOOK_*`` settings."""
        return cls(store, allow=AllowList.parse(settings.webhook_allow_hosts),
                   timeout=settings.webhook_timeout, retries=settings.webhook_retries,
                   backoff=settings.webhook_backoff, poll=settings.queue_poll)

    def on_publish(self, set_id: str, fit_id: str) -> None:
        """The fit runner's callback: record the fit's alerts, wake the senders."""
        try:
            created = evaluate_fit(self.store, fit_id=fit_id)
        except Exception:  # an alert must never undo or delay a publication
            log.exception("alert rules of %s: evaluating fit %s failed", set_id, fit_id)
            return
        if created:
            self.wake()

    def resume(self) -> None:
        """Start sending, first checking each set's newest fit (a crash may have missed it)."""
        self._resume = True
        self.wake()

    def wake(self) -> None:
        """Start the threads if needed and look for due deliveries now."""
        with self._lock:
            if not self._threads and not self._stop.is_set():
                self._client = webhook_client(self.allow, self.timeout)
                self._threads = [threading.Thread(target=self._claim_loop, daemon=True,
                                                  name="alerts-claim")]
                self._threads += [threading.Thread(target=self._send_loop, daemon=True,
                                                   name=f"alerts-send-{i}")
                                  for i in range(self.SENDERS)]
                for thread in self._threads:
                    thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stop the threads (a claimed delivery not sent falls due again later)."""
        self._stop.set()
        self._wake.set()
        for _ in range(self.SENDERS):
            self._queue.put(None)
        deadline = time.monotonic() + 2.0
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._client is not None and not any(t.is_alive() for t in self._threads):
            self._client.close()

    def _resume_latest(self) -> None:
        for set_id in set_ids(self.store):
            latest = latest_published(self.store, set_id=set_id)
            if latest is not None:
                evaluate_fit(self.store, fit_id=latest.id)

    def _claim_loop(self) -> None:
        while not self._stop.is_set():
            wait = self.poll
            try:
                if self._resume:
                    self._resume = False
                    self._resume_latest()
                with self._lock:
                    idle = self.SENDERS - self._in_flight
                if idle > 0:
                    claimed = repo.claim_due(self.store, limit=idle,
                                             hold_until=self.store.clock() + self._hold)
                    with self._lock:
                        self._in_flight += len(claimed)
                        idle -= len(claimed)
                    for delivery_id in claimed:
                        self._queue.put(delivery_id)
                due = repo.next_due(self.store)
                if idle > 0 and due is not None:
                    left = (aware(due) - self.store.clock()).total_seconds()
                    wait = min(self.poll, max(0.01, left))
            except Exception:  # a database hiccup: try again after the poll
                log.exception("claiming alert deliveries failed")
            self._wake.wait(wait)
            self._wake.clear()

    def _send_loop(self) -> None:
        while True:
            delivery_id = self._queue.get()
            if delivery_id is None or self._stop.is_set():
                return
            try:
                self._send(delivery_id)
            except Exception:
                log.exception("alert delivery %s failed unexpectedly", delivery_id)
            finally:
                with self._lock:
                    self._in_flight -= 1
                self._wake.set()

    def _send(self, delivery_id: int) -> None:
        row = repo.get_delivery(self.store, delivery_id=delivery_id)
        if row.status != "pending":
            return
        rule = repo.get_rule(self.store, rule_id=row.rule_id)
        attempt = post(self._client, rule.webhook_url, row.payload.encode(), rule.secret,
                       row.id)
        attempts = row.attempts + 1
        if attempt.delivered:
            status, retry_at = "delivered", None
        elif attempt.retry and attempts <= self.retries:
            status = "pending"
            retry_at = self.store.clock() + timedelta(
                seconds=self.backoff * 2 ** (attempts - 1))
        else:
            status, retry_at = "failed", None
        repo.record_attempt(self.store, delivery_id=row.id, status=status,
                            http_status=attempt.status, error=attempt.error,
                            next_attempt_at=retry_at)
        if status != "pending":
            log.info("alert delivery %s to rule %s: %s after %d attempts%s", row.id, rule.id,
                     status, attempts, f" ({attempt.error})" if attempt.error else "")
