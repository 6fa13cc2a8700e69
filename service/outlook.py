"""Forecasts over time as JSON: path, horizon forecast, milestones and replays.

One builder each, shared by the API and the CLI so both give the same numbers.

Everything is read from a published fit's summary (the worker computed it from the posterior
draws); no sampling happens here.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from forecast import FitRecord
from indicators import make_grid, period_floor
from priors import ScenarioSet
from service.db import Database, FitRow
from service.errors import BadRequest, NotFound
from service.posterior import coverage_fields, fit_header, scenario_rows
from service.repositories.evidence import evidence_of
from service.repositories.fits import create_fit, get_fit, latest_published, replays
from service.words import DEFAULT_WORDS, WordTable, words


def parse_date_param(scenario_set: ScenarioSet, text: str | date, field: str) -> date:
    """A date query parameter inside the set's window.

    Raises
    ------
    BadRequest
        Unparseable, before the set's start, or after its end — naming the field.

    """
    if isinstance(text, date):
        value = text
    else:
        try:
            value = date.fromisoformat(str(text).strip())
        except ValueError:
            raise BadRequest(f"{field}: '{text}' is not a date; use YYYY-MM-DD",
                             field=field) from None
    if value < scenario_set.start:
        raise BadRequest(f"{field}: {value} is before the start of '{scenario_set.id}' "
                         f"({scenario_set.start})", field=field)
    if scenario_set.end is not None and value > scenario_set.end:
        raise BadRequest(f"{field}: {value} is after the end of '{scenario_set.id}' "
                         f"({scenario_set.end})", field=field)
    return value


def published_fit(store: Database, scenario_set: ScenarioSet) -> FitRow:
    """The newest published live fit of a set; NotFound (code no_posterior) without one."""
    row = latest_published(store, set_id=scenario_set.id)
    if row is None:
        raise NotFound(f"set '{scenario_set.id}' has no published posterior yet; queue a fit "
                       "(POST /v1/fits or `signpost refit`)", code="no_posterior")
    return row


def _record(row: FitRow) -> FitRecord:
    """A published row's fit record (published fits always have one)."""
    return FitRecord.from_dict(row.summary)


def _header(scenario_set: ScenarioSet, row: FitRow) -> dict[str, Any]:
    sampler = _record(row).sampler
    return {**fit_header(scenario_set, row),
            "transitions": sampler.transitions if sampler is not None else None,
            **coverage_fields(row)}


def path_payload(store: Database, scenario_set: ScenarioSet,
                 word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """The filtered path ``P(z_t = k | evidence up to t)`` for every period.

    ``words[t][k]`` is ``probability[t][k]``'s estimative words in ``word_table``.
    """
    row = published_fit(store, scenario_set)
    path = _record(row).path.to_dict()
    return {**_header(scenario_set, row), "scenarios": list(scenario_set.scenario_ids),
            "periods": path["periods"], "probability": path["probability"],
            "words": [[words(p, word_table) for p in period] for period in path["probability"]]}


def forecast_payload(store: Database, scenario_set: ScenarioSet, horizon: str | date,
                     word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """``P(z at horizon = k)`` ("at") and ``P(reach k by horizon)`` ("by"), with MCSE.

    Each scenario's ``at_words`` and ``by_words`` are their estimative words in ``word_table``.
    """
    when = parse_date_param(scenario_set, horizon, "horizon")
    row = published_fit(store, scenario_set)
    table = _record(row).outlook.horizon
    if not table:
        raise NotFound(f"the published fit of '{scenario_set.id}' has no forecast; refit it",
                       code="no_forecast")
    label = make_grid(scenario_set.period, period_floor(scenario_set.period, when),
                      when).labels[0]
    header = {**_header(scenario_set, row), "horizon": when.isoformat(), "period": label}
    if label in table["periods"]:
        h = table["periods"].index(label)
        scenarios = [
            {"id": sid, "at": table["at"][h][k], "by": table["by"][h][k],
             "mcse": max(table["at_mcse"][h][k], table["by_mcse"][h][k]),
             "mcse_at": table["at_mcse"][h][k], "mcse_by": table["by_mcse"][h][k],
             "at_words": words(table["at"][h][k], word_table),
             "by_words": words(table["by"][h][k], word_table)}
            for k, sid in enumerate(scenario_set.scenario_ids)
        ]
        return {**header, "steps": h, "scenarios": scenarios}
    # A horizon before the current period: what the filter said then; "by" is not a forecast.
    path = _record(row).path.to_dict()
    if label not in path["periods"]:
        raise BadRequest(f"horizon: {when} is after the published forecast's last period",
                         field="horizon")
    t = path["periods"].index(label)
    return {**header, "steps": t - len(path["periods"]) + 1, "scenarios": [
        {"id": sid, "at": path["probability"][t][k], "by": None, "mcse": None,
         "at_words": words(path["probability"][t][k], word_table), "by_words": None}
        for k, sid in enumerate(scenario_set.scenario_ids)]}


def milestones_payload(store: Database, scenario_set: ScenarioSet,
                       word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """When each scenario, rung "or deeper" and milestone is first reached.

    Each with its median, 80 % interval, P(before the set's end) (``p_by_end``) and that
    probability's estimative words in ``word_table`` (``words``); a milestone that occurred
    has neither.
    """
    row = published_fit(store, scenario_set)
    outlook = _record(row).outlook

    def strip(entry: dict) -> dict:
        shown = {k: v for k, v in entry.items() if k != "cdf"}
        if "p_by_end" in shown:
            shown["words"] = words(shown["p_by_end"], word_table)
        return shown

    return {
        **_header(scenario_set, row),
        "end": scenario_set.end.isoformat() if scenario_set.end else None,
        "horizon_end": outlook.horizon["periods"][-1] if outlook.horizon else None,
        "reach": {k: strip(v) for k, v in outlook.reach.items()},
        "reach_or_deeper": {k: strip(v) for k, v in outlook.reach_or_deeper.items()},
        "milestones": {k: strip(v) for k, v in outlook.milestones.items()},
        "evidence": dict(outlook.evidence),
    }


def replay_payload(store: Database, scenario_set: ScenarioSet, row: FitRow,
                   word_table: WordTable = DEFAULT_WORDS) -> dict[str, Any]:
    """A replay fit as the posterior JSON (words in ``word_table``), diagnostics and status."""
    return {
        "set_id": scenario_set.id,
        "fit_id": row.id,
        "kind": "replay",
        "status": row.status,
        "reason": row.reason,
        "as_of": row.as_of.isoformat() if row.as_of else None,
        "fitted_at": fit_header(scenario_set, row)["fitted_at"],
        "scenarios": scenario_rows(scenario_set, row, word_table),
        "diagnostics": row.diagnostics or {},
        **coverage_fields(row),
    }


def find_or_queue_replay(store: Database, scenario_set: ScenarioSet, as_of: date,
                         requested_by: str = "replay") -> FitRow:
    """The replay of ``scenario_set`` as of ``as_of`` on today's evidence store.

    A stored replay is reused when the set and the evidence up to ``as_of`` are unchanged
    (observations logged later about earlier dates change it); otherwise a replay fit is
    queued (or the pending one returned). Replays are never served as the live posterior.
    """
    through = min(as_of, scenario_set.end) if scenario_set.end else as_of
    evidence_hash = evidence_of(store, scenario_set=scenario_set, as_of=through).hash()
    for row in replays(store, set_id=scenario_set.id, as_of=through):
        if row.status == "published" and row.evidence_hash == evidence_hash \
                and row.set_hash == scenario_set.content_hash:
            return row
        if row.status in ("queued", "running"):
            return row
    fit_id = create_fit(store, set_id=scenario_set.id, requested_by=requested_by, kind="replay",
                        as_of=through)
    return get_fit(store, fit_id=fit_id)
