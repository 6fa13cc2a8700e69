"""The ``signpost`` command line (Typer): set up, log evidence, fit, read posteriors, serve.

Every command reads its settings fresh from the ``SIGNPOST_*`` environment (so
``SIGNPOST_DATABASE_URL`` applies to all of them). Refused input is reported on stderr, naming
the field (and the file and line where there is one), with exit status 2; "not there yet"
(no published posterior, a fit that did not publish) exits 1.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from indicators import (
    GradeTableError,
    InvalidObservation,
    ObservationFileError,
    read_observations_csv,
)
from priors import ScenarioSetError
from service import migrate
from service.alerts import create_rule, delivery_dict, parse_rule, rule_dict
from service.analysis import attribution_payload, watchlist_payload, what_if_payload
from service.audit import ACTIONS, Actor, audit_dict, rule_detail
from service.context import Services
from service.db import Database, aware
from service.errors import ServiceError
from service.exports import read_reviews_csv
from service.keys import key_dict, parse_duration, parse_expiry
from service.outlook import (
    find_or_queue_replay,
    forecast_payload,
    milestones_payload,
    parse_date_param,
    replay_payload,
)
from service.posterior import posterior_payload, set_detail
from service.repositories import alerts as alert_repo
from service.repositories import audit as audit_repo
from service.repositories import keys as key_repo
from service.repositories.evidence import coverage_of, evidence_of
from service.repositories.fits import create_fit, get_fit, latest_published, pending_fit
from service.repositories.keys import ROLES, create_key
from service.repositories.observations import add_observation, add_observations, count_observations
from service.repositories.sets import (
    get_catalog,
    get_set,
    list_sets,
    load_bundled_sets,
    load_set_text,
    set_ids,
)
from service.reviews import add_review, list_reviews, observation_coverage, sets_touching
from service.scheduler import queue_refits
from service.scores import parse_resolution, resolve_set, scores_payload, set_scores_payload
from service.settings import Settings, _redact
from service.views import observation_dict
from service.webhooks import AllowList
from service.words import printed, printed_mcse

app = typer.Typer(
    name="signpost",
    help="Signpost: Bayesian scenario probabilities from graded evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
sets_app = typer.Typer(help="Scenario sets: list, show, load.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (only their hashes are stored).", no_args_is_help=True)
app.add_typer(sets_app, name="sets")
app.add_typer(keys_app, name="keys")
alerts_app = typer.Typer(help="Alert rules: webhooks told when a new live fit meets them.",
                         no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Refused input: exit 2 with the message (which names the field, file and line).
USER_ERRORS = (ServiceError, ScenarioSetError, ObservationFileError, InvalidObservation)


class Exit(Exception):
    """Stop a command with a message on stderr and an exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.message = message
        self.code = code


def _fail(message: str, code: int = 2) -> NoReturn:
    raise Exit(message, code)


def command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a command can meet into one clear message on stderr and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exit as exc:
            err.print(f"error: {exc.message}", markup=False)
            raise typer.Exit(exc.code) from None
        except USER_ERRORS as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except SQLAlchemyError as exc:
            detail = str(exc).splitlines()[0]
            err.print(f"error: database: {detail}", markup=False)
            raise typer.Exit(1) from None

    return wrapper


def load_settings() -> Settings:
    """Fresh settings from the environment; a bad value names its variable (exit 2)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SIGNPOST_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors())
        _fail(f"bad setting: {problems}")
    # values the Settings model keeps as text, checked here so that a typo names its variable
    try:
        settings.grade_table()
    except (ValueError, GradeTableError) as exc:
        _fail(f"bad setting: SIGNPOST_GRADES / SIGNPOST_DEFAULT_GRADE: {exc}")
    if settings.today:
        try:
            date.fromisoformat(settings.today)
        except ValueError:
            _fail(f"bad setting: SIGNPOST_TODAY: {settings.today!r} is not a date (YYYY-MM-DD)")
    return settings


@contextmanager
def services(need_schema: bool = True, worker_mode: str | None = "inline") -> Iterator[Services]:
    """Build the services for one command and close them afterwards."""
    settings = load_settings()
    built = Services.build(settings, worker_mode=worker_mode, role="cli")
    try:
        if need_schema:
            _check_schema(built.store, settings)
        yield built
    finally:
        built.close()


def _check_schema(store: Database, settings: Settings) -> None:
    where = _redact(settings.url)
    if not store.ping():
        _fail(f"cannot reach the database at {where} (check SIGNPOST_DATABASE_URL)")
    if not store.migrations_current():
        _fail(f"the database at {where} is not initialised or not migrated; "
              "run `signpost init` first")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _fmt_mcse(mcse: float | None) -> str:
    return "" if mcse is None else f"± {printed_mcse(mcse)}"


def _with_mcse(p: float | None, mcse: float | None) -> str:
    """``0.31 ± 0.004``: the probability to its precision, and its MCSE."""
    return " ".join(filter(None, (printed(p, mcse), _fmt_mcse(mcse) if p is not None else "")))


def _scenario_table(payload: dict[str, Any]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("scenario", no_wrap=True)
    table.add_column("name")
    table.add_column("prior", justify="right", no_wrap=True)
    table.add_column("probability", justify="right", no_wrap=True)
    table.add_column("in words")
    for s in payload["scenarios"]:
        table.add_row(s["id"], s["name"], f"{s['prior']:.3f}",
                      _with_mcse(s["probability"], s["mcse"]), s["words"] or "—")
    return table


# -- init ---------------------------------------------------------------------------------


@app.command()
@command
def init() -> None:
    """Create or migrate the database and load the bundled scenario sets."""
    with services(need_schema=False) as svc:
        store = svc.store
        where = _redact(svc.settings.url)
        if not store.ping():
            _fail(f"cannot reach the database at {where} (check SIGNPOST_DATABASE_URL)")
        before = migrate.current_revision(store.engine)
        store.migrate()
        after = migrate.current_revision(store.engine)
        if before is None:
            out.print(f"created the database schema at {where} (revision {after})")
        elif before != after:
            out.print(f"migrated the database at {where} from revision {before} to {after}")
        else:
            out.print(f"the database at {where} is current (revision {after})")
        for scenario_set, changed in load_bundled_sets(store, actor=Actor.cli()):
            verb = "loaded" if changed else "unchanged"
            out.print(f"{verb:9s} scenario set {scenario_set.id} ({scenario_set.title})")


# -- sets ---------------------------------------------------------------------------------


def _latest(store: Database, set_id: str) -> dict[str, Any] | None:
    row = latest_published(store, set_id=set_id)
    if row is None:
        return None
    return {"fit_id": row.id, "fitted_at": aware(row.finished_at).isoformat(),
            "evidence_through": row.as_of.isoformat() if row.as_of else None}


@sets_app.command("list")
@command
def sets_list() -> None:
    """List the loaded scenario sets."""
    with services() as svc:
        sets = list_sets(svc.store)
        if not sets:
            out.print("no scenario sets loaded (run `signpost init` or `signpost sets load FILE`)")
            return
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("id", no_wrap=True)
        table.add_column("title", min_width=20)
        table.add_column("scenarios", justify="right")
        table.add_column("indicators", justify="right")
        table.add_column("latest published fit", no_wrap=True)
        for s in sets:
            latest = _latest(svc.store, s.id)
            shown = (f"{latest['fitted_at'][:16].replace('T', ' ')} ({latest['fit_id'][:8]})"
                     if latest else "—")
            table.add_row(s.id, s.title, str(len(s.scenarios)), str(len(s.indicators)), shown)
        out.print(table)


@sets_app.command("show")
@command
def sets_show(
    set_id: Annotated[str, typer.Argument(metavar="ID", help="The scenario set's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one scenario set: its question, scenarios, indicators and latest fit."""
    with services() as svc:
        scenario_set = get_set(svc.store, set_id=set_id)
        data = {**set_detail(scenario_set, svc.settings.word_table()),
                "source": scenario_set.source}
        data["latest_published_fit"] = _latest(svc.store, set_id)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(f"[bold]{data['id']}[/bold] — {data['title']}")
    out.print(f"question: {data['question']}", markup=False)
    out.print(f"period:   {data['period']} from {data['start']}"
              + (f" to {data['end']}" if data["end"] else ""))
    model = "static (the scenario never changes)" if data["dynamics"] is None else (
        f"dynamic (stay {data['dynamics']['stay']})")
    out.print(f"model:    {model}")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("scenario", "name", "prior"):
        table.add_column(column)
    for s in data["scenarios"]:
        table.add_row(s["id"], s["name"], f"{s['prior']:.3f}")
    out.print(table)
    out.print("indicators: " + ", ".join(f"{i['id']} ({i['kind']})" for i in data["indicators"]))
    latest = data["latest_published_fit"]
    out.print("latest published fit: "
              + (f"{latest['fit_id']} at {latest['fitted_at']}" if latest else "none yet"))


@sets_app.command("load")
@command
def sets_load(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A scenario-set YAML file.")],
) -> None:
    """Validate a scenario-set YAML file and store it (replacing a set with the same id)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"{file}: cannot read: {exc.strerror or exc}")
    with services() as svc:
        try:
            scenario_set, changed = load_set_text(svc.store, yaml_text=text, source=str(file),
                                                  actor=Actor.cli())
        except ScenarioSetError as exc:
            count = len(exc.problems)
            _fail(f"{file}: {_plural(count, 'problem')}; nothing was loaded:\n"
                  + "\n".join(f"  {p}" for p in exc.problems))
        if not changed:
            out.print(f"unchanged: scenario set {scenario_set.id} is already loaded with this "
                      "content")
            return
        queued = queue_refits(svc.store, [scenario_set.id],
                              requested_by=f"set {scenario_set.id} loaded")
    out.print(f"loaded scenario set {scenario_set.id} ({scenario_set.title}): "
              f"{_plural(len(scenario_set.scenarios), 'scenario')}, "
              f"{_plural(len(scenario_set.indicators), 'indicator')}"
              f"{_queued_words(queued)}")


# -- observations -------------------------------------------------------------------------


@app.command()
@command
def observe(
    indicator: Annotated[str, typer.Option(help="Indicator id from the catalog.")],
    date: Annotated[str, typer.Option(help="When it happened (YYYY-MM-DD).")],
    value: Annotated[str | None, typer.Option(help="Count or signal value (default 1).")] = None,
    grade: Annotated[str | None, typer.Option(help="Admiralty grade, e.g. B2.")] = None,
    source: Annotated[str | None, typer.Option(help="Who reported it.")] = None,
    url: Annotated[str | None, typer.Option(help="Where it was reported.")] = None,
    note: Annotated[str | None, typer.Option(help="Free text.")] = None,
    analyst: Annotated[str | None, typer.Option(help="Who logged it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored row as JSON.")] = False,
) -> None:
    """Log one observation (validated, then committed)."""
    fields = {"indicator": indicator, "date": date, "value": value, "grade": grade,
              "source": source, "url": url, "note": note}
    data = {k: v for k, v in fields.items() if v is not None}
    with services() as svc:
        stored, _ = add_observation(svc.store, data=data, analyst=analyst or "",
                                    actor=Actor.cli())
        coverage = observation_coverage(svc.store, stored.indicator, stored.date)
        queued = queue_refits(svc.store, list(coverage),
                              requested_by=f"observation {stored.id}")
    row = observation_dict(stored)
    if as_json:
        print(json.dumps({**row, "coverage": coverage, "queued_fits": queued}, indent=2))
        return
    out.print(f"stored observation {row['id']}: {row['indicator']} on {row['date']}, "
              f"value {row['value']:g}, grade {row['grade']} (weight {row['weight']:.3g})"
              + _queued_words(queued), markup=False)
    for set_id, item in coverage.items():
        if not item["counted"]:
            err.print(f"note: not yet evidence for {set_id}: {row['indicator']} is covered "
                      f"through {item['covered_through'] or 'no date'}; it counts once a "
                      f"review covers {row['date']} (signpost review --set {set_id} "
                      f"--indicator {row['indicator']} --through DATE)", markup=False)


@app.command("import")
@command
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE.csv",
                                         help="CSV: date,indicator,value,grade,source,url,note")],
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Import the good rows and list the bad ones.")] = False,
    if_empty: Annotated[bool, typer.Option(
        "--if-empty", help="Import only when no observations are stored yet.")] = False,
    analyst: Annotated[str, typer.Option(help="Who logged the rows.")] = "",
    reviewed_through: Annotated[str | None, typer.Option(
        "--reviewed-through", metavar="DATE",
        help="The file is complete through DATE: record one review of the indicators in it "
             "(stored with the rows, or neither is).")] = None,
    reviews_file: Annotated[Path | None, typer.Option(
        "--reviews", metavar="REVIEWS.csv",
        help="Reviews to store with the rows, as `GET /v1/reviews?format=csv` exports them "
             "(all of them with the rows, or nothing).")] = None,
) -> None:
    """Import observations from a CSV file, all or nothing (unless --skip-bad).

    An export (GET /v1/observations?format=csv) imports as it is: its extra columns are
    ignored and its retracted rows left out (docs/exports.md).
    """
    if not file.is_file():
        _fail(f"{file}: no such file")
    if reviews_file is not None and not reviews_file.is_file():
        _fail(f"--reviews: {reviews_file}: no such file")
    with services() as svc:
        store = svc.store
        if if_empty:
            stored = count_observations(store)
            if stored:
                out.print(f"{stored} observations already stored; --if-empty: "
                          f"nothing imported from {file}")
                return
        retracted: list[int] = []
        observations, skipped = read_observations_csv(
            file, get_catalog(store), today=store.today(), grades=store.grades, skip_bad=skip_bad,
            retracted=retracted)
        file_reviews, retracted_reviews = [], []
        if reviews_file is not None:
            try:
                file_reviews, retracted_reviews = read_reviews_csv(store, reviews_file)
            except ServiceError as exc:
                _fail(f"--reviews: {exc.message}")
        review = None
        if reviewed_through is not None:
            indicators = sorted({o.indicator for o in observations})
            if not indicators:
                _fail(f"--reviewed-through: {file} holds no observations, so no indicators to "
                      "review; use `signpost review` instead")
            review = {"indicators": indicators, "through": reviewed_through,
                      "note": f"imported from {file.name}"}
        try:
            imported, stored_review = add_observations(store, observations=observations,
                                                       analyst=analyst, review=review,
                                                       reviews=file_reviews, actor=Actor.cli())
        except ServiceError as exc:
            if exc.field == "through":
                _fail(f"--reviewed-through: {exc.message.removeprefix('through: ')}; "
                      "nothing was imported")
            raise
        touched = {o.indicator for o in observations} if imported else set()
        if stored_review is not None:
            touched |= set(stored_review["indicators"])
        touched |= {i for fields, _ in file_reviews for i in fields.get("indicators", ())}
        reviewed_sets = {fields["set_id"] for fields, _ in file_reviews if "set_id" in fields}
        touched_sets = sets_touching(store, touched)
        queued = queue_refits(store, touched_sets + sorted(reviewed_sets - set(touched_sets)),
                              requested_by=f"import {file.name}")
    out.print(f"imported {_plural(imported, 'observation')} from {file}"
              + ("" if stored_review is not None or file_reviews else _queued_words(queued)))
    if retracted:
        out.print(f"left out {_plural(len(retracted), 'retracted row')} of {file.name} "
                  "(retracted: not evidence)")
    if reviews_file is not None:
        out.print(f"stored {_plural(len(file_reviews), 'review')} from {reviews_file}"
                  + (f", left out {len(retracted_reviews)} retracted"
                     if retracted_reviews else "")
                  + ("" if stored_review is not None else _queued_words(queued)), markup=False)
    if stored_review is not None:
        out.print(f"stored review {stored_review['id']}: "
                  f"{', '.join(stored_review['indicators'])} reviewed through "
                  f"{stored_review['through']}" + _queued_words(queued), markup=False)
    if skipped:
        err.print(f"skipped {_plural(len(skipped), 'bad row')}:")
        for problem in skipped:
            err.print(f"  {problem}", markup=False)


def _queued_words(queued: dict[str, str]) -> str:
    if not queued:
        return ""
    return "; refit queued for " + ", ".join(f"{s} (fit {f[:8]})" for s, f in queued.items())


@app.command()
@command
def review(
    through: Annotated[str, typer.Option(
        "--through", metavar="DATE", help="The last day whose sources were reviewed.")],
    set_id: Annotated[str | None, typer.Option(
        "--set", help="The scenario set (all of its indicators unless --indicator).")] = None,
    indicator: Annotated[list[str] | None, typer.Option(
        "--indicator", help="An indicator reviewed (repeat for more).")] = None,
    note: Annotated[str, typer.Option(help="What was read, by whom, any caveat.")] = "",
    analyst: Annotated[str, typer.Option(help="Who reviewed.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored review.")] = False,
) -> None:
    """Record that these indicators' sources were reviewed through a date, all finds logged.

    Quiet periods up to that date then count as evidence ("nothing happened"), not as
    missing ("nobody looked"). Refits of the sets it touches are queued for the scheduler.
    """
    data: dict[str, Any] = {"through": through, "note": note}
    if set_id is not None:
        data["set_id"] = set_id
    if indicator:
        data["indicators"] = list(indicator)
    with services() as svc:
        stored, _ = add_review(svc.store, data, analyst=analyst, actor=Actor.cli())
        sets = sets_touching(svc.store, stored["indicators"])
        queued = queue_refits(svc.store, sets, requested_by=f"review {stored['id']}")
    if as_json:
        print(json.dumps({**stored, "sets": sets, "queued_fits": queued}, indent=2))
        return
    out.print(f"stored review {stored['id']}: {', '.join(stored['indicators'])} reviewed "
              f"through {stored['through']}" + _queued_words(queued), markup=False)


@app.command()
@command
def reviews(
    set_id: Annotated[str | None, typer.Option("--set", help="Reviews covering this set.")]
    = None,
    indicator: Annotated[str | None, typer.Option(help="Reviews covering this indicator.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """List the reviews, newest first (and, with --set, each indicator's coverage today)."""
    with services() as svc:
        store = svc.store
        items, total = list_reviews(store, set_id=set_id, indicator=indicator, limit=1000)
        words = None
        if set_id:
            scenario_set = get_set(store, set_id=set_id)
            coverage = coverage_of(store, scenario_set=scenario_set)
            grid = evidence_of(store, scenario_set=scenario_set, coverage=coverage).grid
            now = coverage.to_dict(grid)
            words = _coverage_words(
                {"evidence_complete_through": now["evidence_complete_through"],
                 "periods_past_coverage": now["periods_past_coverage"],
                 "coverage": {i["indicator"]: i for i in now["indicators"]}},
                scenario_set.period)
    if as_json:
        print(json.dumps({"items": items, "total": total, "next": None}, indent=2))
        return
    if not items:
        out.print("no reviews recorded" + (f" for {set_id}" if set_id else ""))
    for item in items:
        retracted = " [retracted]" if item["retracted_at"] else ""
        out.print(f"review {item['id']}: through {item['through']}{retracted}, "
                  f"{', '.join(item['indicators'])}"
                  + (f" — {item['note']}" if item["note"] else "")
                  + (f" ({item['analyst']})" if item["analyst"] else ""), markup=False)
    if words is not None:
        out.print(f"today's coverage of {set_id}: {words}", markup=False)


_BASIS = {"review": "reviewed through", "newest_entry": "the log's newest entry,",
          "as_of": "complete by rule through", "none": "not reviewed:"}


def _coverage_words(payload: dict[str, Any], period: str = "period") -> str:
    """What the evidence covered, in words (for the posterior, forecast and replay output)."""
    entries = payload.get("coverage") or {}
    if not entries:
        return "coverage: not recorded for this fit (made before reviews existed)"
    groups: dict[tuple[str, str | None], list[str]] = {}
    for indicator, item in entries.items():
        groups.setdefault((item["basis"], item["covered_through"]), []).append(indicator)
    parts = []
    for (basis, through), ids in sorted(groups.items(), key=lambda g: (g[0][1] or "", g[0][0])):
        shown = ", ".join(ids) if len(ids) <= 4 else f"{', '.join(ids[:3])} and {len(ids) - 3} more"
        parts.append(f"{shown}: {_BASIS.get(basis, basis)} {through or 'no evidence'}")
    complete = payload.get("evidence_complete_through")
    past = payload.get("periods_past_coverage") or 0
    line = f"evidence complete through {complete or 'no date (some indicator has none)'}"
    if past:
        unit = period if past == 1 else f"{period}s"
        line += (f"; the nowcast runs {past} {unit} past it, a forecast from the covered "
                 "evidence (log a review to count the quiet since)")
    return line + "\n  " + "\n  ".join(parts)


# -- fits and posteriors ------------------------------------------------------------------


@contextmanager
def _progress(set_id: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the runner's stage messages (plain lines when not on a terminal)."""
    if err.is_terminal:
        with err.status(f"{set_id}: queued") as status:
            yield lambda message: status.update(message)
    else:
        yield lambda message: err.print(f"  {message}", markup=False)


@app.command()
@command
def refit(
    set_id: Annotated[str | None, typer.Option("--set", help="Only this set (default: all).")]
    = None,
) -> None:
    """Fit now and publish each posterior that passes the diagnostics gate."""
    with services() as svc:
        store = svc.store
        ids = [get_set(store, set_id=set_id).id] if set_id else set_ids(store)
        if not ids:
            _fail("no scenario sets loaded; run `signpost init` first")
        unpublished = []
        for sid in ids:
            pending = pending_fit(store, set_id=sid)  # queued by a review, say: run that one now
            if pending is not None and pending.status == "queued":
                fit_id = pending.id
                audit_repo.record_now(store, actor=Actor.cli(), action="fit.request",
                                      target=f"fit:{fit_id}", detail={
                                          "set_id": sid, "kind": "live", "as_of": None,
                                          "reused": True})
            else:
                fit_id = create_fit(store, set_id=sid, requested_by="cli", actor=Actor.cli())
            started = time.perf_counter()
            with _progress(sid) as say:
                say(f"{sid}: fitting (fit {fit_id})")
                result = svc.runner.run_fit(fit_id, progress=say)
            took = time.perf_counter() - started
            status = result["status"]
            if status == "published":
                payload = posterior_payload(get_set(store, set_id=sid), get_fit(store,
                                                                                fit_id=fit_id),
                                            store.clock(), svc.settings.stale_after,
                                            svc.settings.word_table())
                out.print(f"{sid}: published fit {fit_id} in {took:.1f} s "
                          f"(evidence through {payload['evidence_through']})")
                out.print(_scenario_table(payload))
                continue
            unpublished.append(sid)
            if status in ("queued", "running"):
                reason = ("another process holds this set's lease and is fitting it; "
                          f"fit {fit_id} stays queued for the scheduler")
                status = "busy"
            else:
                reason = result.get("reason") or "no reason recorded"
            err.print(f"{sid}: {status} (fit {fit_id}): {reason}", markup=False)
        if unpublished:
            _fail(f"not published: {', '.join(unpublished)}; the last good posterior "
                  "stays served", code=1)


@app.command()
@command
def posterior(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Print the latest published posterior of a set (the same JSON the API serves)."""
    with services() as svc:
        store = svc.store
        scenario_set = get_set(store, set_id=set_id)
        row = latest_published(store, set_id=set_id)
        if row is None:
            _fail(f"no published posterior for {set_id} yet; run `signpost refit --set "
                  f"{set_id}`", code=1)
        payload = posterior_payload(scenario_set, row, store.clock(), svc.settings.stale_after,
                                    svc.settings.word_table())
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    out.print(f"[bold]{scenario_set.id}[/bold] — {scenario_set.title}")
    stale = " [red](stale)[/red]" if payload["stale"] else ""
    out.print(f"fit {payload['fit_id']} at {payload['fitted_at']}, evidence through "
              f"{payload['evidence_through']}{stale}")
    out.print(_scenario_table(payload))
    out.print(_coverage_words(payload, scenario_set.period), markup=False)
    diagnostics = payload["diagnostics"]
    out.print("diagnostics: " + ", ".join(
        f"{k} {v}" for k, v in diagnostics.items() if k not in ("failures",)), markup=False)


@app.command()
@command
def forecast(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    horizon: Annotated[str, typer.Option("--horizon", help="A date up to the set's end.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """P(scenario in force at a date) and P(reached by then), from the published fit."""
    with services() as svc:
        scenario_set = get_set(svc.store, set_id=set_id)
        payload = forecast_payload(svc.store, scenario_set, horizon, svc.settings.word_table())
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{set_id} at {payload['horizon']} ({payload['period']}, "
                        f"{payload['steps']} periods ahead)")
    for column in ("scenario", "P(at) ± mcse", "in words", "P(by) ± mcse", "in words"):
        table.add_column(column, justify="right" if column.startswith("P") else "left",
                         no_wrap=True)
    for s in payload["scenarios"]:
        # a horizon in the past: "at" is the filter's, with no MCSE of its own ("mcse_at" absent)
        at_mcse, by_mcse = s.get("mcse_at", s["mcse"]), s.get("mcse_by", s["mcse"])
        table.add_row(s["id"], _with_mcse(s["at"], at_mcse), s["at_words"] or "—",
                      _with_mcse(s["by"], by_mcse), s["by_words"] or "—")
    out.print(table)
    out.print("P(by) counts from the period where the evidence stops being complete. "
              + _coverage_words(payload, scenario_set.period), markup=False)


# -- the analyst's loop: why, what if, what to watch ----------------------------------------


def _moves(probabilities: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{k} {printed(v['probability'], v.get('mcse'))}"
                     for k, v in probabilities.items())


@app.command()
@command
def why(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    top: Annotated[int, typer.Option(help="How many observations to list.", min=1)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Why the published posterior is what it is: indicators, observations, critical ones."""
    with services() as svc:
        payload = attribution_payload(svc.store, get_set(svc.store, set_id=set_id),
                                      svc.settings, svc.settings.word_table())
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    ids = list(payload["prior"])
    lead = max(ids, key=lambda k: payload["posterior"][k]["probability"])
    out.print(f"[bold]{set_id}[/bold], fit {payload['fit_id']} ({payload['method']}): "
              + ", ".join(f"{k} {printed(v['probability'], v.get('mcse'))} {v['words']}"
                          for k, v in payload["posterior"].items()))
    table = Table(title="indicators: log likelihood under each scenario (higher fits better)")
    table.add_column("indicator")
    for k in ids:
        table.add_column(k, justify="right")
    for item in payload["indicators"]:
        table.add_row(item["id"], *(f"{item['log_likelihood'][k]:.2f}" for k in ids))
    out.print(table)
    table = Table(title=f"observations that moved {lead} most (critical: without it, "
                        f"{lead} is not the most probable)")
    for column in ("id", "date", "indicator", "grade", "Δ log P", "without", "if F6", ""):
        table.add_column(column, justify="right" if column in ("Δ log P", "without", "if F6")
                         else "left")
    for item in sorted(payload["observations"],
                       key=lambda o: -abs(o["delta_log_probability"][lead] or 0.0))[:top]:
        delta = item["delta_log_probability"][lead]
        table.add_row(str(item["id"]), item["date"], item["indicator"], item["grade"] or "",
                      f"{delta:+.3f}" if delta is not None else "—",
                      printed(item["without"][lead]["probability"], None),
                      printed(item["if_f6"][lead]["probability"], None),
                      "critical" if item["critical"] else "")
    out.print(table)
    since = payload["since_previous"]
    if since["previous_fit_id"]:
        moved = ", ".join(f"{k} {m['from']:.3f} → {m['to']:.3f}" for k, m in since["moved"].items())
        out.print(f"since fit {since['previous_fit_id'][:8]}: {len(since['observations'])} "
                  f"observations, {len(since['retractions'])} retractions, "
                  f"{len(since['reviews'])} reviews; {moved}", markup=False)


@app.command()
@command
def watch(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    periods: Annotated[int, typer.Option(help="How many periods ahead.", min=1, max=40)] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """What to watch: indicators ranked by what their next periods would tell (bits)."""
    with services() as svc:
        payload = watchlist_payload(svc.store, get_set(svc.store, set_id=set_id), svc.settings,
                                    periods, svc.settings.word_table())
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{set_id}: the next {periods} {payload['period']}s")
    for column in ("indicator", "bits", "± mcse", "the outcome that would move it most"):
        table.add_column(column, justify="right" if column in ("bits", "± mcse") else "left")
    for item in payload["items"]:
        table.add_row(item["indicator"], f"{item['information_bits']:.3f}",
                      "exact" if item["exact"] else f"{item['mcse_bits']:.3f}",
                      "already reported" if item["reported"] else item["summary"])
    out.print(table)


@app.command("what-if")
@command
def what_if(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    indicator: Annotated[str | None, typer.Option(help="Indicator id of an observation to "
                                                       "try.")] = None,
    date: Annotated[str | None, typer.Option(help="When it happened (YYYY-MM-DD).")] = None,
    value: Annotated[str | None, typer.Option(help="Count or signal value (default 1).")] = None,
    grade: Annotated[str | None, typer.Option(help="Admiralty grade, e.g. B2.")] = None,
    source: Annotated[str | None, typer.Option(help="Who reported it.")] = None,
    url: Annotated[str | None, typer.Option(help="Where it was reported.")] = None,
    note: Annotated[str | None, typer.Option(help="Free text.")] = None,
    csv: Annotated[Path | None, typer.Option(help="Observations to try, as an import CSV.")] = None,
    without: Annotated[list[int] | None, typer.Option(help="An observation id to leave out "
                                                          "(repeatable).")] = None,
    forecast: Annotated[bool, typer.Option(help="Also the forecast.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """The posterior as if observations were logged (or left out); nothing is stored."""
    observations: list[dict[str, Any]] = []
    if indicator is not None or date is not None:
        fields = {"indicator": indicator, "date": date, "value": value, "grade": grade,
                  "source": source, "url": url, "note": note}
        observations.append({k: v for k, v in fields.items() if v is not None})
    with services() as svc:
        if csv is not None:
            read, _ = read_observations_csv(csv, get_catalog(svc.store), today=svc.store.today(),
                                            grades=svc.store.grades)
            observations += [o.model_dump(mode="json", exclude_none=True) for o in read]
        payload = what_if_payload(svc.store, get_set(svc.store, set_id=set_id), svc.settings,
                                  {"observations": observations, "without": without or [],
                                   "forecast": forecast}, svc.settings.word_table())
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    out.print(f"{set_id} as if {payload['added']} observations were logged and "
              f"{len(payload['without'])} left out ({payload['method']}); nothing was stored",
              markup=False)
    for s in payload["scenarios"]:
        out.print(f"  {s['id']:<22} {printed(s['published'], None)} → "
                  f"{printed(s['probability'], s['mcse'])} {s['words']}", markup=False)


def _when(entry: dict[str, Any] | None) -> str:
    return entry["period"] if entry else "after the end"


@app.command()
@command
def milestones(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """When each scenario (and each rung "or deeper") and each milestone is first reached."""
    with services() as svc:
        scenario_set = get_set(svc.store, set_id=set_id)
        payload = milestones_payload(svc.store, scenario_set, svc.settings.word_table())
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    out.print(f"[bold]{set_id}[/bold]: evidence through {payload['evidence_through']}, "
              f"forecast to {payload['horizon_end']}")
    table = Table()
    for column in ("first reached", "P(by end) ± mcse", "in words", "median", "80% interval"):
        table.add_column(column, no_wrap=column in ("P(by end) ± mcse", "in words"))
    rows = [(k, v) for k, v in payload["reach"].items()]
    rows += [(f"{k} or deeper", v) for k, v in payload["reach_or_deeper"].items()]
    for name, v in rows:
        table.add_row(name, _with_mcse(v["p_by_end"], v["mcse"]), v["words"] or "—",
                      _when(v["median"]),
                      f"{_when(v['interval80'][0])} – {_when(v['interval80'][1])}")
    for name, v in payload["milestones"].items():
        if v.get("occurred"):
            when = v["occurred"]["period"]
            table.add_row(name, "happened", "",
                          f"before {when}" if v["occurred"].get("before_window") else when, "")
        else:
            table.add_row(name, _with_mcse(v["p_by_end"], v["mcse"]), v["words"] or "—",
                          _when(v["median"]),
                          f"{_when(v['interval80'][0])} – {_when(v['interval80'][1])}")
    out.print(table)
    out.print(_coverage_words(payload, scenario_set.period), markup=False)


@app.command()
@command
def replay(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    as_of: Annotated[str, typer.Option("--as-of", help="Evidence up to this date.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """The posterior as it would have been on a past date (stored as a replay, never live)."""
    with services() as svc:
        store = svc.store
        scenario_set = get_set(store, set_id=set_id)
        when = parse_date_param(scenario_set, as_of, "as_of")
        row = find_or_queue_replay(store, scenario_set, when, requested_by="cli")
        if row.status == "queued" or (row.status == "running" and row.worker is None):
            with _progress(set_id) as say:
                svc.runner.run_fit(row.id, progress=say)
        row = get_fit(store, fit_id=row.id)
        payload = replay_payload(store, scenario_set, row, svc.settings.word_table())
    if as_json:
        print(json.dumps(payload, indent=2))
    else:
        out.print(f"[bold]{set_id}[/bold] as of {payload['as_of']}: {payload['status']}")
        out.print(_scenario_table(payload))
        out.print(_coverage_words(payload, scenario_set.period), markup=False)
    if payload["status"] != "published":
        _fail(f"replay {row.id} is {payload['status']}: {payload['reason'] or ''}", code=1)


@app.command()
@command
def report(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    out_file: Annotated[Path, typer.Option(
        "--out", metavar="BRIEF.html|BRIEF.pdf",
        help="Where to write the brief: .pdf (one A4 page) or .html (one self-contained "
             "file).")],
) -> None:
    """Write a one-page brief of the published posterior (PDF or HTML).

    The probabilities in words, their history, the forecast fan, what moved them, what to
    watch and what the evidence covered (docs/exports.md).
    """
    from service import report as brief_module  # matplotlib: imported only for this command

    if out_file.suffix.lower() not in brief_module.FORMATS:
        _fail(f"--out: {out_file.name} must end in {' or '.join(brief_module.FORMATS)}")
    if not out_file.parent.is_dir():
        _fail(f"--out: {out_file.parent} is not a directory")
    with services() as svc:
        try:
            scenario_set = get_set(svc.store, set_id=set_id)
        except ServiceError as exc:
            _fail(f"--set: {exc.message}")
        try:
            brief = brief_module.build_brief(svc.store, scenario_set, svc.settings)
        except ServiceError as exc:
            if exc.code == "no_posterior":
                _fail(f"--set: {exc.message}", code=1)
            raise
    try:
        brief_module.write_brief(brief, out_file)
    except OSError as exc:
        _fail(f"--out: {out_file}: cannot write: {exc.strerror or exc}")
    out.print(f"wrote {out_file}: {set_id}, fit {brief.posterior['fit_id']} (evidence through "
              f"{brief.posterior['evidence_through']})", markup=False)


# -- processes ----------------------------------------------------------------------------


@app.command()
@command
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (SIGNPOST_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (SIGNPOST_PORT).")] = None,
) -> None:
    """Serve the HTTP API (and, unless SIGNPOST_SCHEDULER=false, the refit scheduler)."""
    import uvicorn

    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    base = f"http://{host}:{port}"
    lines = [f"Signpost API on {base}", f"  docs       {base}/docs", f"  health     {base}/healthz",
             f"  sets       {base}/v1/sets"]
    try:
        with services(need_schema=False) as svc:
            ids = set_ids(svc.store) if svc.store.migrations_current() else []
    except (Exit, SQLAlchemyError):
        ids = []
    for sid in ids or ["<id>"]:
        lines.append(f"  posterior  {base}/v1/sets/{sid}/posterior")
    lines.append("  scheduler  " + ("on (a write queues a refit of the sets it touches; "
                                    f"evidence also checked every {settings.refit_interval} s)"
                                    if settings.scheduler else "off (SIGNPOST_SCHEDULER=false)"))
    out.print("\n".join(lines), markup=False)
    uvicorn.run("service.api.app:app_factory", factory=True, host=host, port=port)


def _serve_scheduler_metrics(svc: Services, host: str, port: int,
                             chosen: bool) -> Callable[[], None] | None:
    """Serve the scheduler's metrics; a taken port stops it if chosen, else only warns."""
    from service.metrics import serve_metrics

    try:
        stop = serve_metrics(svc, host, port)
    except OSError as exc:
        problem = f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        hint = "--metrics-port or SIGNPOST_SCHEDULER_METRICS_PORT chooses the port, 0 none"
        if chosen:
            _fail(f"{problem} ({hint})")
        err.print(f"warning: {problem}; the scheduler runs without them ({hint})",
                  markup=False)
        return None
    err.print(f"metrics on http://{host}:{port}/metrics", markup=False)
    return stop


@app.command()
@command
def scheduler(
    metrics_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port of its Prometheus metrics, on SIGNPOST_HOST; 0: none "
                               "(SIGNPOST_SCHEDULER_METRICS_PORT).")] = None,
) -> None:
    """Run only the refit scheduler (no API; its metrics on their own port), until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings()
    svc = Services.build(settings, role="scheduler")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    port = settings.scheduler_metrics_port if metrics_port is None else metrics_port
    stop_metrics = None
    try:
        if settings.migrate_on_start:
            svc.store.migrate()
        _check_schema(svc.store, settings)
        if port:  # the default port is best effort; a chosen one must be had
            chosen = (metrics_port is not None
                      or "scheduler_metrics_port" in settings.model_fields_set)
            stop_metrics = _serve_scheduler_metrics(svc, settings.host, port, chosen)
        svc.start_scheduler()
        err.print(f"scheduler running on {_redact(settings.url)}: refit check every "
                  f"{settings.refit_interval} s, queue poll every {settings.queue_poll} s "
                  f"({settings.worker} worker); SIGTERM or Ctrl-C stops it", markup=False)
        while not stop.wait(1.0):
            pass
        err.print("scheduler stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stop_metrics is not None:
            stop_metrics()
        svc.close()
    _exit_after_running_fits(SHUTDOWN_GRACE)


# Seconds a stopping scheduler waits for a running fit (docker stops after 30 s by default).
SHUTDOWN_GRACE = 15.0


def _exit_after_running_fits(grace: float) -> None:
    """Give running fits ``grace`` seconds, then exit even if one is still going.

    A fit cut short is safe: its lease expires and the next scheduler takes the fit over
    (docs/design.md, "Service: storage, API, scheduler, worker, leases"). Without this, the
    interpreter would wait for the scheduler's worker threads, i.e. for the whole fit, however
    long it takes.
    """
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon and t is not threading.current_thread()
           for t in threading.enumerate()):
        err.print(f"a fit was still running after {grace:.0f} s; exiting — its lease expires "
                  "and the next scheduler takes the fit over")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# -- keys ---------------------------------------------------------------------------------


_EXPIRES_HELP = ("When it stops working: a duration (90s, 12h, 30d, 2w) or an ISO date or "
                 "time (2026-12-31, 2026-12-31T18:00:00Z; UTC unless it says).")


@keys_app.command("create")
@command
def keys_create(
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")],
    name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
    expires: Annotated[str | None, typer.Option(help=_EXPIRES_HELP + " Default: never.")]
    = None,
) -> None:
    """Create an API key; it is printed once, alone on the last line of stdout."""
    with services() as svc:
        store = svc.store
        expires_at = parse_expiry(expires, now=store.clock()) if expires else None
        secret = create_key(store, role=role, name=name, expires_at=expires_at,
                            actor=Actor.cli())
    label = f" '{name}'" if name else ""
    until = f", valid until {expires_at.isoformat(timespec='seconds')}" if expires_at else ""
    err.print(f"created {role} key{label}{until}; it is shown once and only its hash is "
              "stored:", markup=False)
    print(secret, flush=True)


def _when_short(value: str | None) -> str:
    return value[:16].replace("T", " ") if value else "—"


@keys_app.command("list")
@command
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """List the API keys: id, prefix, name, role, state, created, expires, revoked, last used."""
    with services() as svc:
        now = svc.store.clock()
        items = [key_dict(row, now) for row in key_repo.list_keys(svc.store)]
    if as_json:
        print(json.dumps({"items": items, "total": len(items), "next": None}, indent=2))
        return
    if not items:
        out.print("no API keys (signpost keys create --role ROLE --name NAME)")
        return
    for key in items:
        name = f" '{key['name']}'" if key["name"] else ""
        when = [f"created {_when_short(key['created_at'])}"]
        when += [f"{label} {_when_short(key[field])}" for field, label in (
            ("expires_at", "expires"), ("revoked_at", "revoked"), ("last_used_at", "last used"))
            if key[field]]
        if key["rotated_from"]:
            when.append(f"replaced key {key['rotated_from']}")
        out.print(f"key {key['id']}: {key['prefix']}…{name} {key['role']}, {key['state']}; "
                  + ", ".join(when), markup=False)


_KEY_REF = "The key: its id, its name or its prefix (sp_…); `signpost keys list` shows them."


@keys_app.command("revoke")
@command
def keys_revoke(
    ref: Annotated[str, typer.Argument(metavar="NAME|ID|PREFIX", help=_KEY_REF)],
) -> None:
    """Revoke an API key: every replica refuses it (401) from its next request on."""
    with services() as svc:
        row = key_repo.resolve_key(svc.store, ref=ref)
        row = key_repo.revoke_key(svc.store, key_id=row.id, actor=Actor.cli())
    label = f" '{row.name}'" if row.name else ""
    out.print(f"revoked {row.role} key {row.id} ({row.prefix}…{label}) at "
              f"{aware(row.revoked_at).isoformat(timespec='seconds')}", markup=False)


@keys_app.command("rotate")
@command
def keys_rotate(
    ref: Annotated[str, typer.Argument(metavar="NAME|ID|PREFIX", help=_KEY_REF)],
    grace: Annotated[str | None, typer.Option(
        help="Keep the old key working this long (90s, 15m, 12h, 30d) while its clients "
             "switch; default: revoke it now.")] = None,
    expires: Annotated[str | None, typer.Option(
        help=_EXPIRES_HELP + " Default: the old key's lifetime, if it had one.")] = None,
) -> None:
    """Replace a key by a new one of the same role and name; the new one is printed once."""
    with services() as svc:
        store = svc.store
        grace_for = parse_duration(grace, field="grace") if grace else None
        expires_at = parse_expiry(expires, now=store.clock()) if expires else None
        old = key_repo.resolve_key(store, ref=ref)
        new, secret, old = key_repo.rotate_key(store, key_id=old.id, grace=grace_for,
                                               expires_at=expires_at, actor=Actor.cli())
    then = (f"keeps working until {aware(old.expires_at).isoformat(timespec='seconds')}"
            if grace_for else "is revoked")
    until = (f", valid until {aware(new.expires_at).isoformat(timespec='seconds')}"
             if new.expires_at else "")
    err.print(f"rotated key {old.id} ({old.prefix}…): it {then}; the new {new.role} key "
              f"{new.id}{until} is shown once and only its hash is stored:", markup=False)
    print(secret, flush=True)


# -- audit --------------------------------------------------------------------------------


def _audit_time(value: str, option: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option}: '{value}' is not an ISO date or time (2026-12-01, "
              "2026-12-01T09:30:00Z)")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@app.command("audit")
@command
def audit_log(
    actor: Annotated[str | None, typer.Option(help="Only this actor: a key's name, or "
                                                   "cli:<user>.")] = None,
    action: Annotated[str | None, typer.Option(
        help="Only this action (key.revoke) or resource (key).")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target (observation:42).")]
    = None,
    since: Annotated[str | None, typer.Option(help="From this ISO date or time on.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this ISO date or time.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, newest "
                                                               "first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """The audit log, newest first: who wrote what, when and from where."""
    resources = {a.split(".")[0] for a in ACTIONS}
    if action is not None and action not in ACTIONS and action not in resources:
        _fail(f"--action: '{action}' is not recorded; use one of {', '.join(ACTIONS)} or a "
              f"resource ({', '.join(sorted(resources))})")
    start = _audit_time(since, "--since") if since else None
    end = _audit_time(until, "--until") if until else None
    with services() as svc:
        rows, total = audit_repo.list_audit(svc.store, actor=actor, action=action,
                                            target=target, since=start, until=end,
                                            limit=limit)
    items = [audit_dict(row) for row in rows]
    if as_json:
        print(json.dumps({"items": items, "total": total, "next": None}, indent=2))
        return
    if not items:
        out.print("no audit entries" + (" match" if any((actor, action, target, since, until))
                                        else " yet"))
        return
    for item in items:
        where = f" from {item['client']}" if item["client"] else ""
        out.print(f"{item['at'][:19].replace('T', ' ')} {item['actor']}{where}: "
                  f"{item['action']} {item['target']} "
                  f"{json.dumps(item['detail'], separators=(',', ':'))}", markup=False)
    if total > len(items):
        out.print(f"{len(items)} of {total} shown (--limit)")


# -- alerts, resolutions and scores -------------------------------------------------------


def _rule_words(rule: dict[str, Any]) -> str:
    what = rule["scenario"] or "any scenario"
    if rule["kind"] == "leader":
        return f"the most probable scenario changes (watching {what})"
    conditions = [f"{name} {rule[key]:g}" for key, name in
                  (("above", "rises above"), ("below", "falls below"),
                   ("min_move", "moves by at least")) if rule[key] is not None]
    return f"{what} {' or '.join(conditions)}"


@alerts_app.command("add")
@command
def alerts_add(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    webhook: Annotated[str, typer.Option(help="The http(s) URL that gets each alert.")],
    secret: Annotated[str, typer.Option(help="Signs each body (HMAC-SHA256), 16+ chars.")],
    scenario: Annotated[str | None, typer.Option(help="The scenario watched (default: "
                                                      "all).")] = None,
    above: Annotated[float | None, typer.Option(help="Fire when it rises past this.")] = None,
    below: Annotated[float | None, typer.Option(help="Fire when it falls past this.")] = None,
    min_move: Annotated[float | None, typer.Option(
        "--min-move", help="Fire when it moved this much since the rule last fired.")] = None,
    kind: Annotated[str, typer.Option(help="probability, or leader (the most probable "
                                           "scenario changes).")] = "probability",
    analyst: Annotated[str, typer.Option(help="Who added it.")] = "cli",
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Add an alert rule: its webhook gets one signed POST when a new live fit meets it."""
    fields = {"set_id": set_id, "webhook_url": webhook, "secret": secret, "kind": kind,
              "scenario": scenario, "above": above, "below": below, "min_move": min_move}
    rule = parse_rule({k: v for k, v in fields.items() if v is not None})
    with services() as svc:
        row = create_rule(svc.store, rule, AllowList.parse(svc.settings.webhook_allow_hosts),
                          analyst)
        audit_repo.record_now(svc.store, actor=Actor.cli(), action="alert_rule.create",
                              target=f"alert_rule:{row.id}", detail=rule_detail(row))
    data = rule_dict(row)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(f"added alert rule {data['id']} on {set_id}: {_rule_words(data)} → "
              f"{data['webhook_url']}", markup=False)


@alerts_app.command("list")
@command
def alerts_list(
    set_id: Annotated[str | None, typer.Option("--set", help="Only this set's rules.")] = None,
    include_deleted: Annotated[bool, typer.Option("--all", help="Deleted ones too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """List the alert rules, newest first (never their secrets)."""
    with services() as svc:
        if set_id is not None:
            get_set(svc.store, set_id=set_id)
        rows, total = alert_repo.list_rules(svc.store, set_id=set_id,
                                            include_deleted=include_deleted, limit=1000)
    items = [rule_dict(row) for row in rows]
    if as_json:
        print(json.dumps({"items": items, "total": total, "next": None}, indent=2))
        return
    if not items:
        out.print("no alert rules" + (f" for {set_id}" if set_id else ""))
    for rule in items:
        deleted = f" [deleted {rule['deleted_at'][:10]}]" if rule["deleted_at"] else ""
        out.print(f"rule {rule['id']}{deleted}: {rule['set_id']}: {_rule_words(rule)} → "
                  f"{rule['webhook_url']} (secret {rule['secret_hint']})", markup=False)


@alerts_app.command("delete")
@command
def alerts_delete(
    rule_id: Annotated[int, typer.Argument(metavar="ID", help="The rule's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Delete an alert rule (kept for its deliveries; its pending ones are not sent)."""
    with services() as svc:
        deleted_before = alert_repo.get_rule(svc.store, rule_id=rule_id).deleted_at is not None
        row = alert_repo.delete_rule(svc.store, rule_id=rule_id)
        if not deleted_before:
            audit_repo.record_now(svc.store, actor=Actor.cli(), action="alert_rule.delete",
                                  target=f"alert_rule:{row.id}", detail=rule_detail(row))
        data = rule_dict(row)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(f"deleted alert rule {rule_id} at {data['deleted_at']}")


@alerts_app.command("deliveries")
@command
def alerts_deliveries(
    rule_id: Annotated[int | None, typer.Option("--rule", help="Only this rule's.")] = None,
    set_id: Annotated[str | None, typer.Option("--set", help="Only this set's.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """List the alerts sent (or being sent), newest first, with status and attempts."""
    if status is not None and status not in alert_repo.DELIVERY_STATUSES:
        _fail(f"--status: '{status}' is not one of {', '.join(alert_repo.DELIVERY_STATUSES)}")
    with services() as svc:
        if set_id is not None:
            get_set(svc.store, set_id=set_id)
        rows, total = alert_repo.list_deliveries(svc.store, rule_id=rule_id, set_id=set_id,
                                                 status=status, limit=1000)
    items = [delivery_dict(row) for row in rows]
    if as_json:
        print(json.dumps({"items": items, "total": total, "next": None}, indent=2))
        return
    if not items:
        out.print("no alerts")
    for item in items:
        error = f" — {item['last_error']}" if item["last_error"] else ""
        out.print(f"alert {item['id']} (rule {item['rule_id']}, fit {item['fit_id'][:8]}): "
                  f"{item['status']} after {_plural(item['attempts'], 'attempt')}: "
                  f"{item['reason']}{error}", markup=False)


@app.command()
@command
def resolve(
    set_id: Annotated[str, typer.Option("--set", help="The scenario set's id.")],
    scenario: Annotated[str | None, typer.Option(help="The scenario that came true.")] = None,
    date: Annotated[str | None, typer.Option(help="When the answer became known "
                                                  "(YYYY-MM-DD).")] = None,
    void: Annotated[bool, typer.Option("--void", help="The question lapsed: not "
                                                      "scored.")] = False,
    note: Annotated[str, typer.Option(help="The evidence for the answer.")] = "",
    replace: Annotated[bool, typer.Option("--replace", help="Replace the current "
                                                            "resolution.")] = False,
    by: Annotated[str, typer.Option(help="Who resolved it.")] = "cli",
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Resolve a set: the scenario that came true and when, or --void. Scores follow."""
    fields = {"scenario": scenario, "date": date, "void": void, "note": note,
              "replace": replace}
    body = parse_resolution({k: v for k, v in fields.items() if v is not None})
    with services() as svc:
        data = resolve_set(svc.store, set_id=set_id, body=body, resolved_by=by)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    answer = "void" if data["status"] == "void" else f"'{data['scenario']}'"
    out.print(f"resolved {set_id} as {answer} on {data['date']}"
              + (" (replacing the previous resolution)" if data["replaced"] else ""),
              markup=False)


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@app.command()
@command
def score(
    set_id: Annotated[str | None, typer.Option("--set", help="Only this set.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Brier and log scores of the resolved sets' live forecasts, and their reliability."""
    with services() as svc:
        payload = (set_scores_payload(svc.store, set_id=set_id) if set_id
                   else scores_payload(svc.store))
    if as_json:
        print(json.dumps(payload, indent=2))
        return
    rows = [payload] if set_id else payload["sets"]
    if not rows:
        out.print("no set is resolved yet (signpost resolve --set ID --scenario K --date D)")
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("set", "status", "answer", "fits", "brier", "log score",
                   *(f"brier {lead}d" for lead in (30, 90, 180, 365))):
        table.add_column(column, justify="left" if column in ("set", "status", "answer")
                         else "right", no_wrap=True)
    for row in rows:
        leads = {lead["lead_days"]: lead["brier"] for lead in row["leads"]}
        answer = (row["resolution"] or {}).get("scenario") or "—"
        table.add_row(row["set_id"], row["status"], answer, str(row["n_fits"]),
                      _score(row["brier"]), _score(row["log_score"]),
                      *(_score(leads.get(lead)) for lead in (30, 90, 180, 365)))
    out.print(table)
    if not set_id:
        out.print(f"over {_plural(payload['n_scored_sets'], 'scored set')}: brier "
                  f"{_score(payload['brier'])}, log score {_score(payload['log_score'])}")
        bins = [b for b in payload["reliability"] if b["n"]]
        if bins:
            out.print("reliability: " + "; ".join(
                f"{b['bin']}: {b['n']} forecasts, mean {b['mean_forecast']:.2f}, observed "
                f"{b['observed_frequency']:.2f}" for b in bins), markup=False)
