"""Resolutions and scores: how a question was answered, and how well its forecasts did.

An admin resolves a set: the scenario that came true and the date it became known, or void
(the question lapsed or was ill-posed). A set has one current resolution; a second is refused
(409) unless it says ``"replace": true``, which keeps the old one, superseded.

Scores use the set's **published live** fits published before the resolution date (before
00:00 UTC that day: a forecast made once the answer is known is not a forecast). Replays and
what-ifs are never scored. With r the resolved scenario and p a fit's probabilities:

- ``brier``: the mean over those fits of Σ_k (p_k − 1[k = r])² (0 best, 2 worst);
- ``log_score``: the mean of −ln p_r (0 best), p_r floored at `LOG_FLOOR` so that a
  probability of 0 costs a finite 27.6;
- ``n_fits``: how many fits were scored;
- ``leads``: for each lead time L in `LEAD_DAYS`, the same scores of the one fit a reader
  had L days before the answer: the newest published live fit published on or before the
  resolution date − L (none: nulls).

Across resolved sets (`scores_payload`), each set weighs the same in ``brier`` and
``log_score``; the reliability table pools every scored (fit, scenario) pair: per probability
bin, how many, the mean forecast and how often the scenario was the resolved one. A void set is
listed with status ``void`` and no scores.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from forecast import FitRecord
from indicators._text import did_you_mean
from service.db import ResolutionRow, aware
from service.errors import BadRequest, refusal
from service.repositories.resolutions import (
    current_resolution,
    current_resolutions,
    resolve,
    scored_fits,
)
from service.repositories.sets import get_set

if TYPE_CHECKING:
    from priors import ScenarioSet
    from service.db import Database

__all__ = [
    "BINS",
    "LEAD_DAYS",
    "LOG_FLOOR",
    "ResolutionIn",
    "brier_score",
    "log_score",
    "parse_resolution",
    "resolution_dict",
    "resolve_set",
    "scores_payload",
    "set_scores_payload",
]

LEAD_DAYS = (30, 90, 180, 365)
LOG_FLOOR = 1e-12
BINS = 10


class ResolutionIn(BaseModel):
    """A resolution as posted: the scenario that came true, or void."""

    # an example any set accepts (a void resolution), so generated requests reach past 422
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"void": True, "note": "the question was withdrawn"}]})

    scenario: str | None = Field(None, max_length=100, description=(
        "the scenario that came true (absent when void)"), examples=["multipolar"])
    void: bool = Field(False, description="the question lapsed or was ill-posed: not scored")
    date: str | None = Field(None, description=(
        "YYYY-MM-DD, when the answer became known: fits published before it are scored; "
        "required unless void (default: today)"), examples=["2035-12-31"])
    note: str = Field("", max_length=2000, description="the evidence for the answer")
    replace: bool = Field(False, description="replace the set's current resolution (kept, "
                                             "superseded); without it a second one is 409")


@dataclass(frozen=True)
class _Scored:
    fit_id: str
    published_at: dt.datetime
    probabilities: dict[str, float]


def brier_score(probabilities: dict[str, float], resolved: str) -> float:
    """Σ_k (p_k − 1[k = resolved])² over the scenarios given."""
    return sum((p - (k == resolved)) ** 2 for k, p in probabilities.items())


def log_score(probabilities: dict[str, float], resolved: str) -> float:
    """−ln p_resolved, p floored at `LOG_FLOOR`."""
    return -math.log(max(probabilities[resolved], LOG_FLOOR))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# -- resolving ---------------------------------------------------------------------------

def parse_resolution(data: Mapping[str, Any]) -> ResolutionIn:
    """A resolution's fields validated as `ResolutionIn` (the CLI's; the API's body does the same).

    Raises BadRequest naming the first field at fault.
    """
    try:
        return ResolutionIn.model_validate(dict(data))
    except ValidationError as exc:
        raise refusal(exc.errors(), tuple(ResolutionIn.model_fields), every=False) from None


def _parse_date(value: str, scenario_set: ScenarioSet, today: dt.date) -> dt.date:
    try:
        on = dt.date.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest(f"date: '{value}' is not a date; use YYYY-MM-DD", field="date") from None
    if on > today:
        raise BadRequest(f"date: {on} is in the future (today is {today}); resolve a question "
                         "once its answer is known", field="date")
    if on < scenario_set.start:
        raise BadRequest(f"date: {on} is before the set's start ({scenario_set.start})",
                         field="date")
    return on


def resolve_set(db: Database, *, set_id: str, body: ResolutionIn,
                resolved_by: str) -> dict[str, Any]:
    """Validate and record a set's resolution; returns its view.

    Raises
    ------
    NotFound
        An unknown set.
    BadRequest
        Naming the field: a scenario not of the set, both or neither of scenario and void, a
        date that does not parse, lies in the future or before the set's start.
    Conflict
        Resolved already, without ``replace``.

    """
    scenario_set = get_set(db, set_id=set_id)
    if body.void and body.scenario is not None:
        raise BadRequest("void: give either the scenario that came true or \"void\": true, "
                         "not both", field="void")
    if not body.void:
        if body.scenario is None:
            raise BadRequest("scenario: give the scenario that came true (its id), or "
                             "\"void\": true", field="scenario")
        if body.scenario not in scenario_set.scenario_ids:
            raise BadRequest(f"scenario: '{body.scenario}' is not a scenario of '{set_id}'"
                             f"{did_you_mean(body.scenario, scenario_set.scenario_ids)} (its "
                             f"scenarios: {', '.join(scenario_set.scenario_ids)})",
                             field="scenario")
        if body.date is None:
            raise BadRequest("date: give the date the answer became known (YYYY-MM-DD)",
                             field="date")
    today = db.today()
    on = _parse_date(body.date, scenario_set, today) if body.date is not None else today
    row, replaced = resolve(db, set_id=set_id, scenario=body.scenario, void=body.void, on=on,
                            note=body.note.strip(), resolved_by=resolved_by,
                            replace=body.replace)
    return {**resolution_dict(row),
            "replaced": resolution_dict(replaced) if replaced is not None else None}


def resolution_dict(row: ResolutionRow) -> dict[str, Any]:
    """The API's view of a resolution."""
    return {
        "set_id": row.set_id,
        "status": "void" if row.void else "resolved",
        "scenario": row.scenario,
        "date": row.date.isoformat(),
        "note": row.note,
        "resolved_by": row.resolved_by,
        "created_at": aware(row.created_at).isoformat(),
    }


# -- scoring -----------------------------------------------------------------------------

def _scored(db: Database, scenario_set: ScenarioSet,
            resolution: ResolutionRow) -> list[_Scored]:
    """The fits a resolution scores, each with its probabilities of the set's scenarios."""
    before = dt.datetime.combine(resolution.date, dt.time(), dt.UTC)
    scored = []
    for row in scored_fits(db, set_id=scenario_set.id, before=before):
        record = FitRecord.from_stored(row.summary)
        if record is None:
            continue
        found = {k: record.probability_of(k) for k in scenario_set.scenario_ids}
        probabilities = {k: p for k, p in found.items() if p is not None}
        if resolution.scenario in probabilities:  # a fit of an older version of the set may lack it
            scored.append(_Scored(row.id, aware(row.finished_at), probabilities))
    return scored


def _scores(scored: list[_Scored], resolved: str) -> dict[str, Any]:
    return {"brier": _mean([brier_score(s.probabilities, resolved) for s in scored]),
            "log_score": _mean([log_score(s.probabilities, resolved) for s in scored]),
            "n_fits": len(scored)}


def _leads(scored: list[_Scored], resolution: ResolutionRow) -> list[dict[str, Any]]:
    rows = []
    for lead in LEAD_DAYS:
        cutoff = resolution.date - dt.timedelta(days=lead)
        held = [s for s in scored if s.published_at.date() <= cutoff]
        fit = held[-1] if held else None
        rows.append({
            "lead_days": lead,
            "cutoff": cutoff.isoformat(),
            "fit_id": fit.fit_id if fit else None,
            "published_at": fit.published_at.isoformat() if fit else None,
            "p_resolved": fit.probabilities[resolution.scenario] if fit else None,
            **_scores([fit] if fit else [], resolution.scenario),
        })
    return rows


def _set_scores(db: Database, scenario_set: ScenarioSet
                ) -> tuple[dict[str, Any], list[_Scored], str | None]:
    resolution = current_resolution(db, set_id=scenario_set.id)
    payload: dict[str, Any] = {
        "set_id": scenario_set.id,
        "status": "unresolved" if resolution is None else resolution_dict(resolution)["status"],
        "resolution": resolution_dict(resolution) if resolution is not None else None,
        "brier": None, "log_score": None, "n_fits": 0, "leads": [],
    }
    if resolution is None or resolution.void:
        return payload, [], None
    scored = _scored(db, scenario_set, resolution)
    payload.update(_scores(scored, resolution.scenario))
    payload["leads"] = _leads(scored, resolution)
    return payload, scored, resolution.scenario


def set_scores_payload(db: Database, *, set_id: str) -> dict[str, Any]:
    """One set's resolution and scores (status ``unresolved`` and nulls before it has one).

    Raises NotFound for an unknown set.
    """
    return _set_scores(db, get_set(db, set_id=set_id))[0]


def _reliability(pairs: list[tuple[float, bool]]) -> list[dict[str, Any]]:
    rows = []
    for i in range(BINS):
        lower, upper = i / BINS, (i + 1) / BINS
        inside = [(p, hit) for p, hit in pairs
                  if lower <= p < upper or (i == BINS - 1 and p == upper)]
        rows.append({
            "bin": f"{lower:.1f}-{upper:.1f}",
            "lower": lower,
            "upper": upper,
            "n": len(inside),
            "mean_forecast": _mean([p for p, _ in inside]),
            "observed_frequency": _mean([float(hit) for _, hit in inside]),
        })
    return rows


def scores_payload(db: Database) -> dict[str, Any]:
    """Every resolved or void set's scores, their means, and the reliability table."""
    sets, pairs = [], []
    for resolution in current_resolutions(db):
        payload, scored, resolved = _set_scores(db, get_set(db, set_id=resolution.set_id))
        sets.append(payload)
        pairs += [(p, k == resolved) for s in scored for k, p in s.probabilities.items()]
    scored_sets = [s for s in sets if s["n_fits"]]
    return {
        "sets": sets,
        "n_scored_sets": len(scored_sets),
        "n_fits": sum(s["n_fits"] for s in scored_sets),
        "brier": _mean([s["brier"] for s in scored_sets]),
        "log_score": _mean([s["log_score"] for s in scored_sets]),
        "reliability": _reliability(pairs),
    }
