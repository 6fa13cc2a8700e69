"""Why a number moved, what would move it, what to watch: the analyst's questions of a fit.

One builder per payload, shared by the API and the CLI (the same JSON):

- `attribution_payload` — for the published fit: each indicator's log marginal likelihood
  under each scenario, each observation's leave-one-out shift and its shift were it graded F6
  (`forecast.explain`), the observations whose removal changes the most probable scenario
  ("critical"), and what entered since the previous published fit;
- `what_if_payload` — the posterior as if some observations were logged, some retracted and
  some reviews recorded; nothing is stored;
- `watchlist_payload` — per indicator, the information its next N periods carry about the
  scenario then in force (`forecast.watchlist`).

The published fit's evidence is rebuilt from the rows that were live when it ran and the
coverage it recorded; ``evidence_matches_fit`` says whether that reproduces its evidence hash
(a write committed while the fit read its evidence can make it differ). A dynamic set's draws
are its artifact's ``posterior`` group, read once per fit and kept in memory.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr
from sqlalchemy import select

from forecast import FitRecord, evidence_through, fit
from forecast.explain import (
    evidence_from_rows,
    indicator_log_likelihoods,
    observation_influence,
    what_if,
)
from forecast.model import transition_rows
from forecast.watchlist import watchlist
from indicators import Evidence, Review, latest_reviews, resolve_coverage
from priors import ScenarioSet
from service.db import Database, FitRow, ObservationRow, ReviewIndicatorRow, ReviewRow, aware
from service.errors import BadRequest, NotFound
from service.outlook import published_fit
from service.posterior import fit_header
from service.repositories.evidence import live_reviews
from service.repositories.fits import fit_history
from service.repositories.observations import validate_observation
from service.reviews import validate_review
from service.settings import Settings
from service.words import DEFAULT_WORDS, WordTable, words

# A dynamic what-if re-weights the published draws unless their Pareto k̂ says it cannot.
MAX_PARETO_K = 0.7


@dataclass(frozen=True)
class FitContext:
    """A published fit with what it was fitted on.

    Attributes
    ----------
    scenario_set, row : the set and its published fit row
    record : the fit's record
    observations : every stored observation of the set's indicators (retracted ones too)
    rows : the (id, date, indicator, value, weight) observations live when the fit ran
    coverage : per indicator, the date its evidence counted through
    evidence : Evidence rebuilt from ``rows`` and ``coverage``
    matches : whether ``evidence`` has the fit's evidence hash
    posterior : the fit's draws (dynamic sets), else None

    """

    scenario_set: ScenarioSet
    row: FitRow
    record: FitRecord
    observations: list[ObservationRow]
    rows: list[tuple[int, dt.date, str, float, float]]
    coverage: dict[str, dt.date | None]
    evidence: Evidence
    matches: bool
    posterior: xr.Dataset | None

    @property
    def scenario_ids(self) -> list[str]:
        """The set's scenario ids, in order."""
        return list(self.scenario_set.scenario_ids)

    @property
    def published(self) -> np.ndarray:
        """(K,) the fit's published probabilities."""
        return np.array([s.probability for s in self.record.scenarios])

    @property
    def published_mcse(self) -> np.ndarray:
        """(K,) their Monte Carlo standard errors."""
        return np.array([s.mcse for s in self.record.scenarios])


_DRAWS: OrderedDict[str, xr.Dataset] = OrderedDict()
_DRAWS_LOCK = threading.Lock()


def _draws(row: FitRow) -> xr.Dataset:
    """A fit's posterior draws from its artifact (the last few kept in memory)."""
    with _DRAWS_LOCK:
        if row.id in _DRAWS:
            _DRAWS.move_to_end(row.id)
            return _DRAWS[row.id]
    if not row.artifact:
        raise NotFound(f"fit {row.id} kept no draws (no artifact)", code="no_artifact")
    with xr.open_datatree(row.artifact, engine="h5netcdf") as tree:
        posterior = tree["posterior"].to_dataset().load()
    with _DRAWS_LOCK:
        _DRAWS[row.id] = posterior
        while len(_DRAWS) > 8:
            _DRAWS.popitem(last=False)
    return posterior


def is_dynamic(scenario_set: ScenarioSet, settings: Settings) -> bool:
    """Whether the set's fits learn transitions (as the fit worker decides)."""
    return bool(settings.dynamic and transition_rows(scenario_set))


def _observation_rows(store: Database, scenario_set: ScenarioSet) -> list[ObservationRow]:
    with store.Session() as session:
        return list(session.scalars(
            select(ObservationRow).where(
                ObservationRow.indicator.in_(list(scenario_set.indicator_ids)))
            .order_by(ObservationRow.id)))


def _live_at(row: ObservationRow, when: dt.datetime | None) -> bool:
    if when is None:
        return row.retracted_at is None
    return aware(row.created_at) <= when and (row.retracted_at is None
                                              or aware(row.retracted_at) > when)


def _tuple(row: ObservationRow) -> tuple[int, dt.date, str, float, float]:
    return (row.id, row.date, row.indicator, float(row.value), float(row.weight))


def _recorded_coverage(row: FitRow) -> dict[str, dt.date | None] | None:
    record = FitRecord.from_stored(row.summary)
    stored = record.coverage if record is not None else None
    if not stored:
        return None
    return {item["indicator"]: (dt.date.fromisoformat(item["covered_through"])
                                if item.get("covered_through") else None)
            for item in stored["indicators"]}


def fit_context(store: Database, scenario_set: ScenarioSet, settings: Settings,
                row: FitRow | None = None) -> FitContext:
    """The published fit (or ``row``) with its evidence rebuilt and, if dynamic, its draws."""
    row = row or published_fit(store, scenario_set)
    started = aware(row.started_at)
    observations = _observation_rows(store, scenario_set)
    rows = [_tuple(o) for o in observations if _live_at(o, started)]
    coverage = _recorded_coverage(row)
    evidence = evidence_from_rows(scenario_set, rows, as_of=row.as_of, coverage=coverage,
                                  grades=store.grades)
    posterior = _draws(row) if is_dynamic(scenario_set, settings) else None
    return FitContext(scenario_set=scenario_set, row=row, record=FitRecord.from_dict(row.summary),
                      observations=observations, rows=rows, coverage=coverage or {},
                      evidence=evidence, matches=evidence.hash() == row.evidence_hash,
                      posterior=posterior)


def _per_scenario(ids: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {k: float(v) for k, v in zip(ids, values, strict=True)}


def _probabilities(ids: Sequence[str], values: np.ndarray, table: WordTable,
                   mcse: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    return {k: {"probability": float(p), "words": words(float(p), table),
                **({} if mcse is None else {"mcse": float(mcse[i])})}
            for i, (k, p) in enumerate(zip(ids, values, strict=True))}


def _deltas(ids: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    """Per scenario, a finite float or None (a log of 0: removing the row made it impossible)."""
    return {k: float(v) if np.isfinite(v) else None for k, v in zip(ids, values, strict=True)}


# -- attribution --------------------------------------------------------------------------

def attribution_payload(store: Database, scenario_set: ScenarioSet, settings: Settings,
                        table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """Why the published posterior is what it is (see the module docstring)."""
    ctx = fit_context(store, scenario_set, settings)
    ids = ctx.scenario_ids
    log_l = indicator_log_likelihoods(scenario_set, ctx.evidence)
    influences = observation_influence(
        scenario_set, ctx.rows, as_of=ctx.row.as_of, coverage=ctx.coverage or None,
        grades=store.grades, posterior=ctx.posterior, base=ctx.evidence,
        dynamic=ctx.posterior is not None)
    by_id = {r[0]: r for r in ctx.rows}
    grades = {o.id: o.grade for o in ctx.observations}
    observations = []
    for influence in influences:
        oid, date, indicator, value, _ = by_id[influence.observation_id]
        observations.append({
            "id": oid, "indicator": indicator, "date": date.isoformat(),
            "grade": grades.get(oid), "value": value,
            "delta_log_probability": _deltas(ids, influence.delta_log_probability),
            "delta_mcse": _deltas(ids, influence.mcse_delta),
            "without": _probabilities(ids, influence.probability_without, table),
            "delta_log_probability_if_f6": _deltas(ids, influence.delta_log_probability_if_f6),
            "if_f6": _probabilities(ids, influence.probability_if_f6, table),
            "critical": bool(influence.critical),
        })
    observations.sort(key=lambda o: -max(abs(v or 0.0)
                                         for v in o["delta_log_probability"].values()))
    return {
        **fit_header(scenario_set, ctx.row),
        "method": "exact" if ctx.posterior is None else "draws",
        "evidence_matches_fit": ctx.matches,
        "prior": _per_scenario(ids, np.asarray(scenario_set.prior)),
        "prior_words": {s.id: words(s.prior, table) for s in scenario_set.scenarios},
        "posterior": _probabilities(ids, ctx.published, table, ctx.published_mcse),
        "indicators": [{"id": spec.id, "kind": spec.kind,
                        "log_likelihood": _per_scenario(ids, log_l[j])}
                       for j, spec in enumerate(scenario_set.indicators)],
        "observations": observations,
        "critical": [o["id"] for o in observations if o["critical"]],
        "since_previous": since_previous(store, ctx, table),
    }


def since_previous(store: Database, ctx: FitContext,
                   table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """What entered between the previous published fit and ``ctx``'s, and how each moved.

    By the times the two fits started (when each read its evidence): observations logged,
    observations retracted and reviews of the set's indicators recorded in between.
    """
    scenario_set, row, now = ctx.scenario_set, ctx.row, ctx.record
    history = [r for r in fit_history(store, set_id=scenario_set.id)
               if r.finished_at and aware(r.finished_at) < aware(row.finished_at)]
    ids = ctx.scenario_ids
    if not history:
        return {"previous_fit_id": None, "observations": [], "retractions": [], "reviews": [],
                "moved": {k: {"from": None, "to": now.probability_of(k), "change": None,
                              "from_words": None, "words": words(now.probability_of(k), table)}
                          for k in ids}}
    previous = history[-1]
    before = FitRecord.from_dict(previous.summary)
    low, high = aware(previous.started_at), aware(row.started_at)
    observations = ctx.observations

    def within(when: dt.datetime | None) -> bool:
        return when is not None and low < aware(when) <= high

    with store.Session() as session:
        touching = select(ReviewIndicatorRow.review_id).where(
            ReviewIndicatorRow.indicator.in_(list(scenario_set.indicator_ids)))
        reviews = [r for r in session.scalars(select(ReviewRow).where(ReviewRow.id.in_(touching)))
                   if within(r.created_at)]
    return {
        "previous_fit_id": previous.id,
        "observations": [{"id": o.id, "indicator": o.indicator, "date": o.date.isoformat(),
                          "grade": o.grade} for o in observations if within(o.created_at)],
        "retractions": [{"id": o.id, "indicator": o.indicator,
                         "reason": o.retraction_reason} for o in observations
                        if within(o.retracted_at)],
        "reviews": [{"id": r.id, "through": r.through.isoformat()} for r in reviews],
        "moved": {k: {"from": before.probability_of(k), "to": now.probability_of(k),
                      "change": now.probability_of(k) - before.probability_of(k),
                      "from_words": words(before.probability_of(k), table),
                      "words": words(now.probability_of(k), table)} for k in ids},
    }


# -- what-if ------------------------------------------------------------------------------

def _prefixed(exc: BadRequest, where: str) -> BadRequest:
    field = f"{where}.{exc.field}" if exc.field else where
    message = exc.message
    if exc.field and message.startswith(f"{exc.field}:"):
        message = message[len(exc.field) + 1:].lstrip()
    return BadRequest(f"{field}: {message}", field=field)


def _list(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{key}: must be a list", field=key)
    return value


def _entries(body: Mapping[str, Any], key: str, validate: Any) -> list[Any]:
    """``body[key]``'s objects, each validated; an error names ``key[i].field``."""
    out = []
    for i, data in enumerate(_list(body, key)):
        if not isinstance(data, Mapping):
            raise BadRequest(f"{key}[{i}]: must be an object", field=f"{key}[{i}]")
        try:
            out.append(validate(data))
        except BadRequest as exc:
            raise _prefixed(exc, f"{key}[{i}]") from None
    return out


def what_if_payload(store: Database, scenario_set: ScenarioSet, settings: Settings,
                    body: Mapping[str, Any], table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """The posterior as if ``body``'s changes were logged; nothing is stored.

    ``body``: ``observations`` (each validated as ``POST /v1/observations`` validates it),
    ``without`` (ids of live observations of the set), ``reviews`` (each validated as
    ``POST /v1/reviews``), and ``forecast`` (true: the forecast and milestones too).
    """
    unknown = sorted(set(body) - {"observations", "without", "reviews", "forecast"})
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field; use observations, without, reviews, "
                         "forecast", field=unknown[0])
    added = _entries(body, "observations", lambda data: validate_observation(store, data=data))
    reviews = [Review(through=through, indicators=indicators) for _, indicators, through, _ in
               _entries(body, "reviews", lambda data: validate_review(store, data))]
    forecast = body.get("forecast", False)
    if not isinstance(forecast, bool):
        raise BadRequest("forecast: must be true or false", field="forecast")

    ctx = fit_context(store, scenario_set, settings)
    live = {o.id: o for o in ctx.observations if o.retracted_at is None}
    without = set()
    for i, oid in enumerate(_list(body, "without")):
        if isinstance(oid, bool) or not isinstance(oid, int) or oid not in live:
            raise BadRequest(f"without[{i}]: {oid!r} is not a live observation of "
                             f"'{scenario_set.id}'", field=f"without[{i}]")
        without.add(oid)
    evidence = _changed_evidence(store, scenario_set, [live[i] for i in live if i not in without],
                                 added, reviews)
    estimate, outlook = None, None
    if ctx.posterior is not None and not forecast:
        try:
            estimate = what_if(scenario_set, evidence, posterior=ctx.posterior,
                               base=ctx.evidence)
        except ValueError:  # another period grid (a period began since the fit): refit
            estimate = None
        if estimate is not None and (estimate.pareto_k or 0.0) > MAX_PARETO_K:
            estimate = None
    if estimate is not None:
        probability, mcse, method = estimate.probability, estimate.mcse, estimate.method
        pareto_k = estimate.pareto_k
    else:  # the fit itself, here and now: what logging then fitting would publish
        result = fit(scenario_set, evidence, settings.fit_settings())
        probability, mcse = result.probabilities, np.array([s.mcse for s in result.scenarios])
        method, pareto_k = f"fit ({result.record.sampler.NAME})", None
        if not result.passed:
            method += f"; the gate would reject it: {'; '.join(result.diagnostics.failures)}"
        outlook = result.outlook if forecast else None
    published = ctx.published
    payload = {
        "set_id": scenario_set.id,
        "based_on_fit": ctx.row.id,
        "stored": False,
        "method": method,
        "pareto_k": pareto_k,
        "evidence_hash": evidence.hash(),
        "added": len(added), "without": sorted(without), "reviews": len(reviews),
        "scenarios": [{"id": s.id, "name": s.name, "prior": s.prior,
                       "prior_words": words(s.prior, table),
                       "probability": float(probability[i]), "mcse": float(mcse[i]),
                       "words": words(float(probability[i]), table),
                       "published": float(published[i]),
                       "published_words": words(float(published[i]), table),
                       "change": float(probability[i] - published[i])}
                      for i, s in enumerate(scenario_set.scenarios)],
    }
    if forecast:
        payload["forecast"] = outlook
    return payload


def _changed_evidence(store: Database, scenario_set: ScenarioSet, live: list[ObservationRow],
                      added: list[Any], reviews: list[Review]) -> Evidence:
    """The evidence the service would build today with these rows and extra reviews."""
    through = evidence_through(scenario_set, store.today())
    rows = [_tuple(o) for o in live] + [
        (-(i + 1), o.date, o.indicator, float(o.value), store.grades.weight(o.grade))
        for i, o in enumerate(added) if o.indicator in scenario_set.indicator_ids]
    set_ids = scenario_set.indicator_ids
    if store.coverage_rule == "as_of":
        coverage = None
    else:
        with store.Session() as session:
            stored = live_reviews(session, set_ids)
        dates = [r[1] for r in rows if r[1] <= through]
        newest = max(dates) if dates and store.coverage_rule == "reviews" else None
        coverage = resolve_coverage(set_ids, through, latest_reviews([*stored, *reviews]),
                                    newest, store.coverage_rule)
    return evidence_from_rows(scenario_set, rows, as_of=through, coverage=coverage,
                              grades=store.grades)


# -- watchlist ----------------------------------------------------------------------------

def watchlist_payload(store: Database, scenario_set: ScenarioSet, settings: Settings,
                      periods: int, table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """What to watch: indicators ranked by the information of their next ``periods`` periods."""
    ctx = fit_context(store, scenario_set, settings)
    items = watchlist(scenario_set, ctx.evidence, periods, posterior=ctx.posterior,
                      seed=int(ctx.row.seed or 0), dynamic=ctx.posterior is not None)
    out = []
    for item in items:
        entry = asdict(item)  # the outcome nested as a dict, the names the model documents
        outcome = entry["outcome"]
        if outcome is not None:
            outcome["words_before"] = words(outcome["before"], table)
            outcome["words_after"] = words(outcome["after"], table)
            after = outcome["posterior_after"]
            outcome["posterior_after"] = _probabilities(list(after),
                                                        np.array(list(after.values())), table)
        out.append(entry)
    return {**fit_header(scenario_set, ctx.row), "periods": periods,
            "period": scenario_set.period, "items": out}
