"""Signpost's JSON views: sets, posteriors and history.

One builder each, shared by the API and the CLI so both print the same numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from forecast import FitRecord
from indicators.kinds import get_kind
from priors import ScenarioSet
from service.db import Database, FitRow, aware
from service.repositories.fits import get_fit, latest_published_id
from service.repositories.sets import get_set
from service.words import DEFAULT_WORDS, WordTable, words

T = TypeVar("T")


def set_summary(scenario_set: ScenarioSet,
                word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """A set in a list: the question, its scenarios and priors (with words), its indicators."""
    return {
        "id": scenario_set.id,
        "title": scenario_set.title,
        "question": scenario_set.question,
        "period": scenario_set.period,
        "start": scenario_set.start.isoformat(),
        "end": scenario_set.end.isoformat() if scenario_set.end else None,
        "scenarios": [{"id": s.id, "name": s.name, "prior": s.prior,
                       "prior_words": words(s.prior, word_table)}
                      for s in scenario_set.scenarios],
        "indicators": list(scenario_set.indicator_ids),
        "has_dynamics": scenario_set.dynamics is not None,
    }


def set_detail(scenario_set: ScenarioSet,
               word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """A set in full: scenarios, what each expects of each indicator, dynamics."""
    scenario_ids = scenario_set.scenario_ids
    indicators = []
    for spec in scenario_set.indicators:
        indicators.append({
            "id": spec.id,
            "kind": spec.kind,
            "name": spec.indicator.name,
            "unit": spec.indicator.unit,
            "noise_sd": spec.noise_sd,
            **({"levels": list(spec.indicator.levels)} if spec.indicator.levels else {}),
            "expectations": {k: get_kind(spec.kind).expectation_dict(spec, i)
                             for i, k in enumerate(scenario_ids)},
        })
    dynamics = scenario_set.dynamics
    return {
        **set_summary(scenario_set, word_table),
        "scenarios": [{"id": s.id, "name": s.name, "prior": s.prior,
                       "prior_words": words(s.prior, word_table),
                       "description": s.description} for s in scenario_set.scenarios],
        "indicators": indicators,
        "dynamics": None if dynamics is None else {
            "stay": dynamics.stay,
            "moves": {source: list(targets) for source, targets in dynamics.moves.items()},
            "concentration": dynamics.concentration,
            "ladder": list(dynamics.ladder),
        },
        "content_hash": scenario_set.content_hash,
    }


def fit_header(scenario_set: ScenarioSet, row: FitRow) -> dict[str, Any]:
    """Which fit a payload comes from: set_id, fit_id, fitted_at, evidence_through."""
    return {
        "set_id": scenario_set.id,
        "fit_id": row.id,
        "fitted_at": aware(row.finished_at).isoformat() if row.finished_at else None,
        "evidence_through": row.as_of.isoformat() if row.as_of else None,
    }


def coverage_fields(row: FitRow) -> dict[str, Any]:
    """What the fit's evidence covered.

    ``evidence_complete_through`` (the earliest indicator's coverage: every indicator's
    evidence is complete through it), ``periods_past_coverage`` (how many periods the nowcast
    runs past it: a forecast from the covered evidence), ``coverage_rule``, and per indicator
    ``coverage[id]``: ``covered_through``, ``basis`` (``review``, ``newest_entry``, ``as_of`` or
    ``none``), ``review_id`` and ``periods_past``. Nulls for fits made before coverage.
    """
    record = FitRecord.from_stored(row.summary)
    stored = record.coverage if record is not None else None
    if not stored:
        return {"evidence_complete_through": None, "periods_past_coverage": None,
                "coverage_rule": None, "coverage": {}}
    return {
        "evidence_complete_through": stored["evidence_complete_through"],
        "periods_past_coverage": stored["periods_past_coverage"],
        "coverage_rule": stored["rule"],
        "coverage": {item["indicator"]: {k: v for k, v in item.items() if k != "indicator"}
                     for item in stored["indicators"]},
    }


def scenario_rows(scenario_set: ScenarioSet, row: FitRow,
                  word_table: WordTable = DEFAULT_WORDS) -> list[dict[str, Any]]:
    """Per scenario of a fit: id, name, prior, probability, its MCSE and its words (ICD 203)."""
    record = FitRecord.from_stored(row.summary)
    found = {s.id: record.scenario(s.id) if record is not None else None
             for s in scenario_set.scenarios}
    rows = []
    for s in scenario_set.scenarios:
        probability = found[s.id].probability if found[s.id] else None
        rows.append({"id": s.id, "name": s.name, "prior": s.prior,
                     "prior_words": words(s.prior, word_table), "probability": probability,
                     "mcse": found[s.id].mcse if found[s.id] else None,
                     "words": words(probability, word_table)})
    return rows


def posterior_payload(scenario_set: ScenarioSet, row: FitRow, now: datetime,
                      stale_after: float,
                      word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """The posterior JSON of a published fit row.

    Keys: set_id, fit_id, fitted_at, evidence_through, scenarios (id, name, prior,
    probability, mcse, words: the probability's estimative words in ``word_table``),
    diagnostics (with passed), stale, and what the evidence covered (`coverage_fields`).
    """
    age = (now - aware(row.finished_at)).total_seconds()
    return {
        **fit_header(scenario_set, row),
        "scenarios": scenario_rows(scenario_set, row, word_table),
        "diagnostics": row.diagnostics or {},
        "stale": age > stale_after,
        **coverage_fields(row),
    }


def history_payload(scenario_set: ScenarioSet, rows: list[FitRow],
                    word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """One row per published fit: when, through which date, each scenario's probability.

    ``probabilities`` maps each scenario id to its probability, ``mcse`` to its Monte Carlo
    standard error, ``words`` to its estimative words in ``word_table``.
    """
    items = []
    for row in rows:
        record = FitRecord.from_stored(row.summary)
        found = {s.id: record.scenario(s.id) if record else None for s in scenario_set.scenarios}
        probabilities = {k: r.probability if r else None for k, r in found.items()}
        items.append({
            "fit_id": row.id,
            "fitted_at": aware(row.finished_at).isoformat(),
            "evidence_through": row.as_of.isoformat() if row.as_of else None,
            "probabilities": probabilities,
            "mcse": {k: r.mcse if r else None for k, r in found.items()},
            "words": {k: words(p, word_table) for k, p in probabilities.items()},
        })
    return {"set_id": scenario_set.id, "scenarios": list(scenario_set.scenario_ids),
            "items": items}


class PosteriorCache:
    """The published posterior of each set, rendered once per fit id.

    Requests read memory only (`peek`). A background poll (`refresh`, every
    ``SIGNPOST_CACHE_POLL`` seconds) runs one indexed ``SELECT id`` per set, so every replica
    sees a new fit within one polling interval; a fit published by this process invalidates
    its entry at once. A set not cached yet takes the database path (`get`). Payloads carry
    the estimative words of ``word_table``.
    """

    def __init__(self, word_table: WordTable = DEFAULT_WORDS) -> None:
        self.word_table = word_table
        self._entries: dict[str, tuple[str, datetime, dict[str, Any]]] = {}
        # per set: ((fit id, stale), what `peek_rendered`'s render made of that payload)
        self._rendered: dict[str, tuple[tuple[str, bool], Any]] = {}
        self._lock = threading.Lock()

    def peek(self, set_id: str, now: datetime, stale_after: float) -> dict[str, Any] | None:
        """The cached payload (no database access), or None."""
        entry = self._entries.get(set_id)
        if entry is None:
            return None
        _, fitted_at, payload = entry
        stale = (now - fitted_at).total_seconds() > stale_after
        return payload if payload["stale"] == stale else {**payload, "stale": stale}

    def peek_rendered(self, set_id: str, now: datetime, stale_after: float,
                      render: Callable[[dict[str, Any]], T]) -> T | None:
        """`peek`'s payload passed through ``render``, once per fit and staleness.

        The hot path's bytes and ETag: serialising and hashing the payload on every request
        cost ~70 µs, a fifth of a request's time in the server at ~3000 requests/s.
        """
        payload = self.peek(set_id, now, stale_after)
        if payload is None:
            return None
        key = (payload["fit_id"], payload["stale"])
        memo = self._rendered.get(set_id)
        if memo is None or memo[0] != key:
            memo = (key, render(payload))
            self._rendered[set_id] = memo  # one assignment: readers see old or new, whole
        return memo[1]

    def invalidate(self, set_id: str, _fit_id: str | None = None) -> None:
        """Forget a set's entry (a new fit was published here)."""
        with self._lock:
            self._entries.pop(set_id, None)

    def refresh(self, store: Database, now: datetime, stale_after: float) -> None:
        """Re-check every cached set's newest published fit (the polling version check)."""
        for set_id in list(self._entries):
            self.get(store, set_id, now, stale_after)

    def get(self, store: Database, set_id: str, now: datetime,
            stale_after: float) -> dict[str, Any] | None:
        """The posterior payload of ``set_id``, or None when it has no published fit."""
        fit_id = latest_published_id(store, set_id=set_id)
        if fit_id is None:
            return None
        entry = self._entries.get(set_id)
        if entry is None or entry[0] != fit_id:
            row = get_fit(store, fit_id=fit_id)
            payload = posterior_payload(get_set(store, set_id=set_id), row, now, stale_after,
                                        self.word_table)
            with self._lock:
                self._entries[set_id] = (fit_id, aware(row.finished_at), payload)
        return self.peek(set_id, now, stale_after)
