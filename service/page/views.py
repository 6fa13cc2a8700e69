"""What the page shows of a set, gathered from the payloads the API serves.

Every number on the page comes from the builders behind the ``/v1`` routes — the posterior
cache (`/posterior`), `service.posterior.history_payload` (`/history`),
`service.outlook.forecast_payload` (`/forecast`, once per period to the set's end) and
`milestones_payload` (`/milestones`), `service.analysis.attribution_payload` (`/attribution`,
whose ``since_previous`` says what moved) and `watchlist_payload` (`/watchlist`) — so the page
and the API cannot disagree. The parts that depend only on the published fit are kept per fit
id in a `PageCache`: the watchlist and the attribution of a dynamic set take a second or two,
and a page that polls must not recompute them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from forecast import FitRecord
from priors import ScenarioSet
from service.analysis import attribution_payload, fit_context, watchlist_payload
from service.db import Database, FitRow, aware
from service.errors import ServiceError
from service.outlook import forecast_payload, milestones_payload
from service.posterior import PosteriorCache, history_payload, set_detail
from service.repositories.fits import fit_history, get_fit, latest_finished, pending_fit
from service.settings import Settings

__all__ = ["WATCH_PERIODS", "PageCache", "SetView", "set_view"]

log = logging.getLogger("signpost.page")

WATCH_PERIODS = 4
"""The watchlist's look-ahead on the page (the API's default ``periods``)."""


class FitMoved(RuntimeError):
    """A newer fit was published while the parts of the page were gathered."""


class PageCache:
    """Parts of the page per (fit id, part), each computed once, the newest few kept.

    A part is computed under its own lock, so polls arriving together while a new fit's
    watchlist is computed wait for that one computation instead of starting their own.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._parts: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def part(self, fit_id: str, name: str, compute: Callable[[], Any]) -> Any:
        """The cached part ``name`` of fit ``fit_id``, computed by ``compute`` if missing."""
        key = (fit_id, name)
        with self._lock:
            if key in self._parts:
                self._parts.move_to_end(key)
                return self._parts[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._parts:
                    return self._parts[key]
            try:
                value = compute()
            except BaseException:
                with self._lock:
                    self._locks.pop(key, None)
                raise
            with self._lock:
                self._parts[key] = value
                self._locks.pop(key, None)
                while len(self._parts) > self.size:
                    self._parts.popitem(last=False)
        return value

    def held(self, fit_id: str) -> set[str]:
        """The names of the parts held for ``fit_id``."""
        with self._lock:
            return {name for fit, name in self._parts if fit == fit_id}


@dataclass(frozen=True)
class SetView:
    """Everything the page shows of one set.

    Attributes
    ----------
    detail : `set_detail` (``/v1/sets/{id}``): the question, scenarios, indicators
    today : the service's today (``SIGNPOST_TODAY`` or the clock), for "N days ago"
    posterior : the ``/posterior`` payload, or None before the first published fit
    pending : a queued or running live fit, if any
    rejected : the newest finished fit when it was rejected after the published one
    history, fan, milestones, attribution, watchlist : the payloads of the routes of the
        same names (``fan``: ``/forecast`` at each period's start to the set's end); None
        when not asked for (the index shows less) or before the first published fit
    marks : when each observation of the set's indicators was logged (stored, not when it
        happened), since the first published fit
    marked_before : how many were logged before it
    unavailable : why a part is missing (``attribution``, ``watchlist``: a dynamic fit's
        draws could not be read, say), by part

    """

    detail: dict[str, Any]
    today: date
    posterior: dict[str, Any] | None
    pending: FitRow | None
    rejected: FitRow | None
    history: dict[str, Any] | None = None
    fan: list[dict[str, Any]] | None = None
    milestones: dict[str, Any] | None = None
    attribution: dict[str, Any] | None = None
    watchlist: dict[str, Any] | None = None
    marks: tuple[datetime, ...] = ()
    marked_before: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def set_id(self) -> str:
        """The set's id."""
        return self.detail["id"]

    @property
    def fit_id(self) -> str | None:
        """The published fit shown, or None."""
        return self.posterior["fit_id"] if self.posterior else None


def _same_fit(payload: dict[str, Any], fit_id: str) -> dict[str, Any]:
    if payload["fit_id"] != fit_id:
        raise FitMoved(fit_id)
    return payload


def _fan(store: Database, scenario_set: ScenarioSet, fit_id: str,
         settings: Settings) -> list[dict[str, Any]]:
    """``/forecast`` at the start of every period from now to the set's end."""
    horizon = FitRecord.from_dict(get_fit(store, fit_id=fit_id).summary).outlook.horizon
    if not horizon:
        return []
    table = settings.word_table()
    return [_same_fit(forecast_payload(store, scenario_set, start, table), fit_id)
            for start in horizon["starts"]]


def _history(store: Database, scenario_set: ScenarioSet, fit_id: str,
             settings: Settings) -> tuple[dict[str, Any], tuple[datetime, ...], int]:
    """``/history`` and when each observation of the set's indicators was logged."""
    payload = history_payload(scenario_set, fit_history(store, set_id=scenario_set.id),
                              settings.word_table())
    if not payload["items"] or payload["items"][-1]["fit_id"] != fit_id:
        raise FitMoved(fit_id)
    first = datetime.fromisoformat(payload["items"][0]["fitted_at"])
    try:  # the set's stored observations, as the attribution reads them
        observations = fit_context(store, scenario_set, settings,
                                   row=get_fit(store, fit_id=fit_id)).observations
    except ServiceError:  # a dynamic fit whose draws are gone: the history without marks
        return payload, (), 0
    marks = tuple(aware(o.created_at) for o in observations if aware(o.created_at) >= first)
    return payload, marks, len(observations) - len(marks)


def _gather(store: Database, scenario_set: ScenarioSet, settings: Settings,
            posterior_cache: PosteriorCache, cache: PageCache, full: bool) -> SetView:
    set_id = scenario_set.id
    table = settings.word_table()
    posterior = posterior_cache.get(store, set_id, store.clock(), settings.stale_after)
    pending = pending_fit(store, set_id=set_id)
    finished = latest_finished(store, set_id=set_id)
    detail = set_detail(scenario_set, table)
    if posterior is None:
        return SetView(detail=detail, today=store.today(), posterior=None, pending=pending,
                       rejected=finished if finished and finished.status == "rejected" else None)
    fit_id = posterior["fit_id"]
    rejected = finished if (finished is not None and finished.status == "rejected"
                            and finished.id != fit_id) else None

    unavailable: dict[str, str] = {}

    def part(name: str, compute: Callable[[], Any], optional: bool = False) -> Any:
        try:
            return cache.part(fit_id, name, compute)
        except (ServiceError, ValueError) as exc:  # not cached: the next request tries again
            if not optional:
                raise
            # the route of the same name fails too; the page shows the rest, and says why
            log.warning("page: the %s of %s (fit %s) is not available: %s", name, set_id,
                        fit_id, exc)
            unavailable[name] = exc.message if isinstance(exc, ServiceError) else str(exc)
            return None

    attribution = part("attribution", lambda: _same_fit(
        attribution_payload(store, scenario_set, settings, table), fit_id), optional=True)
    if not full:
        return SetView(detail=detail, today=store.today(), posterior=posterior,
                       pending=pending, rejected=rejected, attribution=attribution,
                       unavailable=unavailable)
    history, marks, before = part("history", lambda: _history(store, scenario_set, fit_id,
                                                              settings))
    return SetView(
        detail=detail, today=store.today(), posterior=posterior, pending=pending,
        rejected=rejected, attribution=attribution, history=history, marks=marks,
        marked_before=before,
        fan=part("fan", lambda: _fan(store, scenario_set, fit_id, settings)),
        milestones=part("milestones", lambda: _same_fit(
            milestones_payload(store, scenario_set, table), fit_id)),
        watchlist=part("watchlist", lambda: _same_fit(
            watchlist_payload(store, scenario_set, settings, WATCH_PERIODS, table), fit_id),
            optional=True),
        unavailable=unavailable,
    )


def set_view(store: Database, scenario_set: ScenarioSet, settings: Settings,
             posterior_cache: PosteriorCache, cache: PageCache, *, full: bool = True) -> SetView:
    """What the page shows of ``scenario_set``: all of it, or (``full=False``) the summary.

    Every part is of the fit the posterior shows: a fit published while they were gathered
    starts the gathering again, three times at most (then `FitMoved` is raised).
    """
    for _ in range(2):
        try:
            return _gather(store, scenario_set, settings, posterior_cache, cache, full)
        except FitMoved:
            continue
    return _gather(store, scenario_set, settings, posterior_cache, cache, full)
