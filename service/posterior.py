"""The published posterior as JSON: one builder for the API and the CLI (same numbers)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from priors import ScenarioSet
from service.db import FitRow
from service.store import Store, _aware


def posterior_payload(scenario_set: ScenarioSet, row: FitRow, now: datetime,
                      stale_after: float) -> dict[str, Any]:
    """The posterior JSON of a published fit row.

    Keys: set_id, fit_id, fitted_at, evidence_through, scenarios (id, name, prior,
    probability, mcse), diagnostics (with passed) and stale.
    """
    summary = row.summary or {}
    by_id = {s["id"]: s for s in summary.get("scenarios", [])}
    fitted_at = _aware(row.finished_at)
    age = (now - fitted_at).total_seconds()
    return {
        "set_id": scenario_set.id,
        "fit_id": row.id,
        "fitted_at": fitted_at.isoformat(),
        "evidence_through": row.as_of.isoformat() if row.as_of else None,
        "scenarios": [
            {"id": s.id, "name": s.name, "prior": s.prior,
             "probability": by_id.get(s.id, {}).get("probability"),
             "mcse": by_id.get(s.id, {}).get("mcse")}
            for s in scenario_set.scenarios
        ],
        "diagnostics": row.diagnostics or {},
        "stale": age > stale_after,
    }


def history_payload(scenario_set: ScenarioSet, rows: list[FitRow]) -> dict[str, Any]:
    """One row per published fit: when, through which date, and each scenario's probability."""
    items = []
    for row in rows:
        by_id = {s["id"]: s["probability"] for s in (row.summary or {}).get("scenarios", [])}
        items.append({
            "fit_id": row.id,
            "fitted_at": _aware(row.finished_at).isoformat(),
            "evidence_through": row.as_of.isoformat() if row.as_of else None,
            "probabilities": {s.id: by_id.get(s.id) for s in scenario_set.scenarios},
        })
    return {"set_id": scenario_set.id, "scenarios": list(scenario_set.scenario_ids),
            "items": items}


class PosteriorCache:
    """The published posterior of each set, rendered once per fit id.

    Requests read memory only (`peek`). A background poll (`refresh`, every
    ``SIGNPOST_CACHE_POLL`` seconds) runs one indexed ``SELECT id`` per set, so every replica
    sees a new fit within one polling interval; a fit published by this process invalidates
    its entry at once. A set not cached yet takes the database path (`get`).
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, datetime, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def peek(self, set_id: str, now: datetime, stale_after: float) -> dict[str, Any] | None:
        """The cached payload (no database access), or None."""
        entry = self._entries.get(set_id)
        if entry is None:
            return None
        _, fitted_at, payload = entry
        stale = (now - fitted_at).total_seconds() > stale_after
        return payload if payload["stale"] == stale else {**payload, "stale": stale}

    def invalidate(self, set_id: str, _fit_id: str | None = None) -> None:
        """Forget a set's entry (a new fit was published here)."""
        with self._lock:
            self._entries.pop(set_id, None)

    def refresh(self, store: Store, now: datetime, stale_after: float) -> None:
        """Re-check every cached set's newest published fit (the polling version check)."""
        for set_id in list(self._entries):
            self.get(store, set_id, now, stale_after)

    def get(self, store: Store, set_id: str, now: datetime,
            stale_after: float) -> dict[str, Any] | None:
        """The posterior payload of ``set_id``, or None when it has no published fit."""
        fit_id = store.latest_published_id(set_id)
        if fit_id is None:
            return None
        entry = self._entries.get(set_id)
        if entry is None or entry[0] != fit_id:
            row = store.get_fit_row(fit_id)
            payload = posterior_payload(store.get_set(set_id), row, now, stale_after)
            entry = (fit_id, _aware(row.finished_at), payload)
            with self._lock:
                self._entries[set_id] = entry
        _, fitted_at, payload = entry
        stale = (now - fitted_at).total_seconds() > stale_after
        return payload if payload["stale"] == stale else {**payload, "stale": stale}
