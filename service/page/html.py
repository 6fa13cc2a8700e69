"""The page as HTML: string templates filled from `SetView`s, every value escaped.

The page works without JavaScript: every number is in the HTML, in tables (charts are inline
SVG with a title, a description and the numbers in a table beside them). The stylesheet and
the refresh script are package data inlined into each page (``static/page.css``,
``static/page.js``), so a page is one request and nothing is fetched from elsewhere.

Every probability shown carries its exact value in a ``data-*`` attribute, as the API's JSON
has it (``data-scenario`` and ``data-probability`` for the current posterior; ``data-at``,
``data-by``, ``data-p-by-end``, ``data-bits`` for the others), so a test can compare them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from html import escape
from importlib.resources import files
from typing import Any

from service.page.svg import Line, bar, panel, strip
from service.page.views import WATCH_PERIODS, SetView
from service.words import printed, printed_mcse

__all__ = ["index_page", "message_page", "set_page"]

_STATIC = files("service.page") / "static"
CSS = (_STATIC / "page.css").read_text(encoding="utf-8")
SCRIPT = (_STATIC / "page.js").read_text(encoding="utf-8")
HISTORY_ROWS = 100  # the most recent fits listed in the history's table
_BAR_HEAD = '<span class="visually-hidden bar-label">Bar</span>'  # hidden on phones (CSS)


def e(value: Any) -> str:
    """``value`` as text, escaped for HTML (attributes too)."""
    return escape("" if value is None else str(value), quote=True)


def exact(value: Any) -> str:
    """A number for a ``data-*`` attribute, written as the API's JSON writes it."""
    return e(json.dumps(value))


def _mcse(mcse: float | None) -> str:
    if mcse == 0:
        return "exact"
    return f"± {printed_mcse(mcse)}" if mcse is not None else "—"


def _when(iso: str | None) -> str:
    """A timestamp as ``2026-03-01 14:05 UTC`` in a ``<time>`` element."""
    if not iso:
        return "—"
    moment = datetime.fromisoformat(iso)
    return f'<time datetime="{e(iso)}">{moment:%Y-%m-%d %H:%M} UTC</time>'


def _date(day: str | None) -> str:
    """A date that does not wrap."""
    return f'<span class="nw">{e(day)}</span>' if day else "—"


def _days_ago(day: str | None, today: date) -> str:
    if not day:
        return ""
    days = (today - date.fromisoformat(day)).days
    if days == 0:
        return "today"
    if days < 0:
        return f"in {-days} day{'s' if days != -1 else ''}"
    return f"{days} day{'s' if days != 1 else ''} ago"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _table(ident: str, caption: str, head: Sequence[str], rows: Iterable[str],
           numeric: Sequence[int] = (), klass: str = "") -> str:
    """A captioned table in a keyboard-scrollable region (wide tables on narrow screens)."""
    cols = "".join(f'<th scope="col"{' class="num"' if i in numeric else ""}>{h}</th>'
                   for i, h in enumerate(head))
    return (f'<div class="scroll" role="region" tabindex="0" id="{ident}-region" '
            f'aria-labelledby="{ident}-cap"><table class="{klass}" id="{ident}">'
            f'<caption id="{ident}-cap">{caption}</caption><thead><tr>{cols}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _unavailable(view: SetView, part: str, what: str) -> str:
    """Why a part could not be computed (its ``/v1`` route fails the same way)."""
    reason = view.unavailable.get(part, "not computed")
    return (f'<p class="notice" role="note">{e(what)} is not available for this fit: '
            f"{e(reason)}</p>")


class _Names:
    """Display names of a set's scenarios and indicators."""

    def __init__(self, detail: dict[str, Any]) -> None:
        self.scenarios = {s["id"]: s["name"] for s in detail["scenarios"]}
        self.indicators = {i["id"]: i["name"] for i in detail["indicators"]}

    def scenario(self, sid: str) -> str:
        return f'{e(self.scenarios.get(sid, sid))} <span class="id">{e(sid)}</span>'

    def indicator(self, iid: str) -> str:
        return f'{e(self.indicators.get(iid, iid))} <span class="id">{e(iid)}</span>'


# -- the shell ------------------------------------------------------------------------------

def _shell(title: str, content: str, *, nonce: str, sets: Sequence[tuple[str, str]],
           current: str | None = None) -> str:
    links = "".join(
        f'<li><a id="nav-{e(sid)}" href="/sets/{e(sid)}"'
        f'{" aria-current=page" if sid == current else ""}>{e(name)}</a></li>'
        for sid, name in sets)
    home = ' aria-current="page"' if current == "" else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{e(title)} — Signpost</title>
<link rel="icon" href="data:,">
<style nonce="{nonce}">{CSS}</style>
</head>
<body>
<a class="skip-link" href="#main" id="skip-link">Skip to main content</a>
<header class="site">
<p class="brand"><a href="/" id="nav-home"{home}>Signpost</a></p>
<nav aria-label="Scenario sets"><ul>{links}</ul></nav>
</header>
<main id="main" tabindex="-1">
{content}
</main>
<div id="announce" class="visually-hidden" role="status" aria-live="polite" aria-atomic="true">
</div>
<footer class="site">
<p>Probabilities from the newest published fit; their precision follows each one's Monte Carlo
standard error (MCSE; <em>exact</em> where the posterior is closed-form). Words follow the
service's estimative-words table. This page checks for a new fit every 1.5 s and updates itself
(with JavaScript off, reload it). The same numbers are in the JSON API: <a id="nav-docs"
href="/docs">/docs</a>.</p>
</footer>
<script nonce="{nonce}">{SCRIPT}</script>
</body>
</html>
"""


def message_page(title: str, message: str, *, nonce: str,
                 sets: Sequence[tuple[str, str]] = ()) -> str:
    """A page saying one thing (unknown set, a key needed); ``message`` is HTML."""
    content = (f'<div id="content" data-view="message"><h1 id="title">{e(title)}</h1>'
               f'{message}</div>')
    return _shell(title, content, nonce=nonce, sets=sets)


# -- the parts of a set ---------------------------------------------------------------------

def _summary(view: SetView) -> str:
    """One sentence for the live region: the set and its most probable scenario."""
    title = view.detail["title"]
    if view.posterior is None:
        return f"{title}: no published posterior yet."
    rows = [s for s in view.posterior["scenarios"] if s["probability"] is not None]
    if not rows:
        return f"{title} updated, fit {view.posterior['fit_id'][:8]}."
    lead = max(rows, key=lambda s: s["probability"])
    return (f"{title} updated, fit {view.posterior['fit_id'][:8]}: most probable "
            f"{lead['name']}, {printed(lead['probability'], lead['mcse'])} "
            f"({lead['words']}).")


def _meta(view: SetView) -> str:
    detail, posterior = view.detail, view.posterior
    kind = ("Dynamic: the scenario in force may change" if detail["has_dynamics"]
            else "Static: the scenario does not change")
    window = f"{detail['period']}ly from {detail['start']}" + (
        f" to {detail['end']}" if detail["end"] else "")
    parts = [f"<p class=\"meta\">{e(kind)}; {e(window)}.</p>"]
    if posterior is not None:
        parts.append(
            f'<p class="meta">Fit <code class="fit-id">{e(posterior["fit_id"][:8])}</code> '
            f"published {_when(posterior['fitted_at'])}, evidence through "
            f"{e(posterior['evidence_through'])}; diagnostics "
            f"{'passed' if posterior['diagnostics'].get('passed') else 'failed'}.</p>")
        if posterior["stale"]:
            parts.append('<p class="notice" role="note"><strong>Stale:</strong> the newest '
                         "published fit is older than the service's staleness limit "
                         "(SIGNPOST_STALE_AFTER).</p>")
    if view.pending is not None:
        parts.append(f'<p class="notice" role="note">A refit is {e(view.pending.status)} '
                     f'(fit <code>{e(view.pending.id[:8])}</code>); this page shows it once '
                     "it is published.</p>")
    if view.rejected is not None:
        reason = view.rejected.reason or "; ".join(
            (view.rejected.diagnostics or {}).get("failures", [])) or "see the fit"
        parts.append(f'<p class="notice" role="note">The newest fit '
                     f'(<code>{e(view.rejected.id[:8])}</code>) was rejected by the '
                     f"diagnostics gate ({e(reason)}); the last published one stays.</p>")
    return "".join(parts)


def _probabilities(view: SetView, ident: str) -> str:
    """The current posterior: probability, MCSE, words, prior, a bar."""
    posterior = view.posterior
    assert posterior is not None
    rows_data = posterior["scenarios"]
    lead = max((s for s in rows_data if s["probability"] is not None),
               key=lambda s: s["probability"], default={"id": None})["id"]
    rows = []
    for s in rows_data:
        p, mcse = s["probability"], s["mcse"]
        marker = ' <span class="tag">most probable</span>' if s["id"] == lead else ""
        rows.append(
            f'<tr class="{"lead" if s["id"] == lead else ""}"><th scope="row">{e(s["name"])}'
            f' <span class="id">{e(s["id"])}</span>{marker}</th>'
            f'<td class="num prob" data-scenario="{e(s["id"])}" data-probability="{exact(p)}" '
            f'data-mcse="{exact(mcse)}">{e(printed(p, mcse))}</td>'
            f'<td class="bar-cell">{bar(p)}</td>'
            f'<td class="num">{e(_mcse(mcse))}</td>'
            f'<td class="nw" data-words="{e(s["words"])}">{e(s["words"] or "—")}</td>'
            f'<td class="num">{s["prior"]:.3f} <span class="quiet">({e(s["prior_words"])})'
            "</span></td></tr>")
    return _table(f"{ident}-table", "The probability of each scenario now, as published",
                  ("Scenario", "Probability", _BAR_HEAD,
                   "MCSE", "In words", "Prior"), rows, numeric=(1, 3, 5), klass="probs")


def _coverage_line(view: SetView) -> str:
    posterior = view.posterior
    assert posterior is not None
    complete = posterior["evidence_complete_through"]
    reviewed = [c["covered_through"] for c in posterior["coverage"].values()
                if c["basis"] == "review" and c["covered_through"]]
    parts = []
    if reviewed:
        newest = max(reviewed)
        parts.append(f"Reviewed through {e(newest)}, {_days_ago(newest, view.today)}")
    else:
        parts.append("Not reviewed yet")
    if complete:
        parts.append(f"every indicator's evidence complete through {e(complete)} "
                     f"({_days_ago(complete, view.today)})")
    past = posterior["periods_past_coverage"] or 0
    if past:
        unit = view.detail["period"] + ("s" if past != 1 else "")
        parts.append(f"the nowcast runs {past} {e(unit)} past it (a forecast from the "
                     "covered evidence)")
    return "; ".join(parts) + "."


def _coverage(view: SetView, ident: str, names: _Names) -> str:
    posterior = view.posterior
    assert posterior is not None
    rule = posterior["coverage_rule"]
    if not posterior["coverage"]:
        return "<p>This fit recorded no coverage (it was made before reviews existed).</p>"
    # indicators that share a coverage (basis, date, review) share a row
    groups: dict[tuple[str, str | None, Any, int], list[str]] = {}
    for iid, c in posterior["coverage"].items():
        key = (c["basis"], c["covered_through"], c.get("review_id"), c.get("periods_past") or 0)
        groups.setdefault(key, []).append(iid)
    rows = []
    for (basis, through, review_id, past), ids in sorted(
            groups.items(), key=lambda g: (g[0][1] or "", g[0][0]), reverse=True):
        ago = _days_ago(through, view.today)
        text = {
            "review": f"Reviewed through {_date(through)}, {ago}",
            "newest_entry": f"Not reviewed: the log's newest entry, {_date(through)}, {ago}",
            "as_of": f"Complete by rule through {_date(through)}, {ago}",
        }.get(basis, "No evidence counted yet")
        if basis == "review" and review_id is not None:
            text += f' <span class="quiet">(review {e(review_id)})</span>'
        listed = "".join(f'<li data-indicator="{e(iid)}" data-covered-through="{e(through)}">'
                         f"{names.indicator(iid)}</li>" for iid in ids)
        rows.append(f'<tr><th scope="row">{text}</th><td class="num">{past}</td>'
                    f'<td><ul class="plain">{listed}</ul></td></tr>')
    unit = e(view.detail["period"].capitalize())
    return (f"<p>{_coverage_line(view)} Rule: <code>{e(rule)}</code>. A quiet stretch counts "
            "as evidence only where someone looked: after its coverage an indicator's "
            "periods are missing, not zero.</p>"
            + _table(f"{ident}-table", "How far each indicator's log is known to be complete",
                     ("Coverage", f"{unit}s past it", "Indicators"), rows, numeric=(1,),
                     klass="coverage"))


def _moved(view: SetView, ident: str, names: _Names, brief: bool = False) -> str:
    """What entered since the previous published fit, and how each scenario moved."""
    if view.attribution is None:
        return _unavailable(view, "attribution", "What moved")
    since = view.attribution["since_previous"]
    if since["previous_fit_id"] is None:
        return ("<p>This is the set's first published fit: there is no earlier one to "
                "compare with.</p>")
    entered = [_plural(len(since["observations"]), "observation") + " logged",
               _plural(len(since["retractions"]), "retraction"),
               _plural(len(since["reviews"]), "review")]
    moved = since["moved"]
    # the previous fit's MCSE is not in the payload: its estimator is this one's
    mcse = {s["id"]: s["mcse"] for s in view.posterior["scenarios"]} if view.posterior else {}
    biggest = max(moved, key=lambda k: abs(moved[k]["change"] or 0.0))
    b = moved[biggest]
    lead_text = (f"{e(names.scenarios.get(biggest, biggest))} moved most: "
                 f"{printed(b['from'], mcse.get(biggest))} → "
                 f"{printed(b['to'], mcse.get(biggest))} "
                 f"({e(b['from_words'])} → {e(b['words'])})")
    head = (f'<p>Since the previous fit (<code>{e(since["previous_fit_id"][:8])}</code>): '
            f"{', '.join(entered)}. {lead_text}.</p>")
    if brief:
        return head
    items = []
    for o in since["observations"]:
        items.append(f"<li>Logged: {names.indicator(o['indicator'])}, dated {e(o['date'])}, "
                     f"grade {e(o['grade'])} <span class=\"quiet\">(#{e(o['id'])})</span></li>")
    for o in since["retractions"]:
        items.append(f"<li>Retracted: {names.indicator(o['indicator'])} "
                     f"<span class=\"quiet\">(#{e(o['id'])})</span>: {e(o['reason'])}</li>")
    for r in since["reviews"]:
        items.append(f"<li>Reviewed through {e(r['through'])} "
                     f"<span class=\"quiet\">(review {e(r['id'])})</span></li>")
    listed = f'<ul class="entered">{"".join(items)}</ul>' if items else ""
    rows = []
    for sid, m in moved.items():
        change = m["change"]
        direction = ("unchanged" if change is None or abs(change) < 0.0005
                     else "up" if change > 0 else "down")
        rows.append(
            f'<tr><th scope="row">{names.scenario(sid)}</th>'
            f'<td class="num" data-from="{exact(m["from"])}">'
            f'{printed(m["from"], mcse.get(sid))}</td>'
            f'<td class="num" data-to="{exact(m["to"])}">{printed(m["to"], mcse.get(sid))}</td>'
            f'<td class="num" data-change="{exact(change)}">'
            f'{"—" if change is None else f"{change:+.3f}"} <span class="quiet">'
            f"{direction}</span></td>"
            f"<td>{e(m['from_words'])} → {e(m['words'])}</td></tr>")
    return head + listed + _table(
        f"{ident}-table", "How each scenario moved from the previous fit to this one",
        ("Scenario", "Before", "Now", "Change", "In words"), rows, numeric=(1, 2, 3))


def _weighing(view: SetView, ident: str, names: _Names, top: int = 5) -> str:
    """The observations whose removal would move the most probable scenario most."""
    if view.attribution is None:
        return _unavailable(view, "attribution", "The attribution")
    attribution = view.attribution
    posterior = attribution["posterior"]
    lead = max(posterior, key=lambda k: posterior[k]["probability"])
    ranked = sorted(attribution["observations"],
                    key=lambda o: -abs(o["delta_log_probability"][lead] or 0.0))[:top]
    if not ranked:
        return "<p>No observation counts in this fit's evidence yet.</p>"
    rows = []
    for o in ranked:
        delta = o["delta_log_probability"][lead]
        without = o["without"][lead]
        rows.append(
            f'<tr data-observation="{e(o["id"])}"><td class="nw">{e(o["date"])}</td>'
            f'<th scope="row">{names.indicator(o["indicator"])}</th><td>{e(o["grade"])}</td>'
            f'<td class="num">{"—" if delta is None else f"{delta:+.3f}"}</td>'
            f'<td class="num" data-without="{exact(without["probability"])}">'
            f'{printed(without["probability"], posterior[lead].get("mcse"))} '
            '<span class="quiet">'
            f'({e(without["words"])})</span></td>'
            f'<td>{"critical" if o["critical"] else ""}</td></tr>')
    name = names.scenarios.get(lead, lead)
    critical = len(attribution["critical"])
    return (f"<p>The {len(ranked)} observations that move <strong>{e(name)}</strong> most "
            f"(leave one out, {e(attribution['method'])}); "
            f"{_plural(critical, 'critical observation')} (without one, {e(name)} would not "
            "be the most probable).</p>"
            + _table(f"{ident}-table", f"Observations that weigh most on {e(name)}",
                     ("Date", "Indicator", "Grade", "Δ log P", f"P({e(lead)}) without it",
                      "Critical"), rows, numeric=(3, 4)))


def _history(view: SetView, ident: str, names: _Names) -> str:
    """One small chart per scenario: its probability at each published fit."""
    history = view.history
    assert history is not None
    items = history["items"]
    times = [datetime.fromisoformat(i["fitted_at"]).timestamp() for i in items]
    first, last = times[0], times[-1]
    marks = [m.timestamp() for m in view.marks if m.timestamp() <= last]
    later = len(view.marks) - len(marks)
    span = last - first
    fmt = "%Y-%m-%d" if span > 2 * 86400 else "%m-%d %H:%M" if span > 3600 else "%H:%M:%S"
    stamp = [datetime.fromisoformat(i["fitted_at"]) for i in items]
    ticks = ([(first, f"{stamp[0]:{fmt}}")] if len(items) == 1 else
             [(first, f"{stamp[0]:{fmt}}"), (last, f"{stamp[-1]:{fmt}}")])
    panels = []
    for k, sid in enumerate(history["scenarios"]):
        points = tuple((t, i["probabilities"][sid]) for t, i in zip(times, items, strict=True)
                       if i["probabilities"][sid] is not None)
        now = items[-1]["probabilities"][sid]
        name = names.scenarios.get(sid, sid)
        chart = panel([Line(printed(now, None), points, dots=True)],
                      x_range=(first, last), x_ticks=ticks, marks=marks,
                      title=f"{name}: probability at each published fit",
                      desc=(f"{len(items)} fits from {stamp[0]:%Y-%m-%d %H:%M} to "
                            f"{stamp[-1]:%Y-%m-%d %H:%M} UTC; now {printed(now, None)}."),
                      ident=f"{ident}-c{k}")
        panels.append(f'<div class="panel"><h3 class="panel-title">{e(name)}</h3>{chart}'
                      "</div>")
    shown = items[-HISTORY_ROWS:]
    rows = [f'<tr data-fit-id="{e(i["fit_id"])}"><th scope="row"><code>{e(i["fit_id"][:8])}'
            f'</code></th><td>{_when(i["fitted_at"])}</td>'
            f'<td class="nw">{e(i["evidence_through"])}</td>'
            + "".join(f'<td class="num" data-history-scenario="{e(sid)}" '
                      f'data-probability="{exact(i["probabilities"][sid])}">'
                      f'{printed(i["probabilities"][sid], None)}</td>'
                      for sid in history["scenarios"]) + "</tr>"
            for i in reversed(shown)]
    more = (f" (the newest {len(shown)} of {len(items)})" if len(shown) < len(items) else "")
    logged = (f"▲ marks when observations were logged: {len(marks)} since the first fit"
              + (f", {view.marked_before} before it" if view.marked_before else "")
              + (f", {later} since the newest fit" if later else "") + ".")
    table = _table(f"{ident}-table", f"Each published fit, newest first{more}",
                   ("Fit", "Fitted at", "Evidence through",
                    *(e(names.scenarios.get(s, s)) for s in history["scenarios"])),
                   rows, numeric=tuple(range(3, 3 + len(history["scenarios"]))))
    return (f'<figure class="panels" aria-labelledby="{ident}-fig">'
            f'<figcaption id="{ident}-fig">One point per published fit: '
            f"{_plural(len(items), 'fit')} from {_when(items[0]['fitted_at'])} to "
            f"{_when(items[-1]['fitted_at'])}. {logged}</figcaption>"
            f'<div class="grid">{"".join(panels)}</div></figure>'
            f'<details id="{ident}-numbers"><summary id="{ident}-numbers-s">The numbers '
            f"behind the history</summary>{table}</details>")


def _fan(view: SetView, ident: str, names: _Names) -> str:
    """Per scenario: P(in force at each period) and P(reached by it), to the set's end."""
    fan = view.fan
    if not fan:
        return "<p>The published fit has no forecast; a refit will make one.</p>"
    ids = [s["id"] for s in fan[0]["scenarios"]]
    steps = [f["steps"] for f in fan]
    labels = [f["period"] for f in fan]
    middle = len(fan) // 2
    ticks = [(steps[0], labels[0]), (steps[middle], labels[middle]), (steps[-1], labels[-1])]
    end = fan[-1]
    panels = []
    for k, sid in enumerate(ids):
        at = tuple((f["steps"], f["scenarios"][k]["at"]) for f in fan)
        by = tuple((f["steps"], f["scenarios"][k]["by"]) for f in fan
                   if f["scenarios"][k]["by"] is not None)
        s_end = end["scenarios"][k]
        name = names.scenarios.get(sid, sid)
        chart = panel([Line("at", at, area=True), Line("by", by, kind="line-by")],
                      x_range=(steps[0], steps[-1]), x_ticks=ticks,
                      title=f"{name}: forecast to {end['period']}",
                      desc=(f"In force at {end['period']}: {printed(s_end['at'], s_end['mcse_at'])}"
                            f"; reached by then: {printed(s_end['by'], s_end['mcse_by'])}."),
                      ident=f"{ident}-c{k}")
        panels.append(f'<div class="panel"><h3 class="panel-title">{e(name)}</h3>{chart}</div>')
    end_rows = [
        f'<tr data-forecast-scenario="{e(s["id"])}"><th scope="row">{names.scenario(s["id"])}'
        f'</th><td class="num" data-at="{exact(s["at"])}">{printed(s["at"], s["mcse_at"])}</td>'
        f'<td class="num">{e(_mcse(s["mcse_at"]))}</td><td class="nw">{e(s["at_words"])}</td>'
        f'<td class="num" data-by="{exact(s["by"])}">{printed(s["by"], s["mcse_by"])}</td>'
        f'<td class="num">{e(_mcse(s["mcse_by"]))}</td><td class="nw">{e(s["by_words"])}</td></tr>'
        for s in end["scenarios"]]
    all_rows = [
        f'<tr data-period="{e(f["period"])}"><th scope="row">{e(f["period"])}</th>'
        + "".join(f'<td class="num">{printed(s["at"], s["mcse_at"])} / '
                  f'{printed(s["by"], s["mcse_by"])}</td>' for s in f["scenarios"]) + "</tr>"
        for f in fan]
    static = ("" if view.detail["has_dynamics"] else
              " The scenario cannot change in this set, so both stay at today's probability.")
    return (f'<p>From {e(labels[0])} (now) to {e(end["period"])}, the end of the question '
            f"({e(view.detail['end'])}). <strong>at</strong> (solid, shaded): the probability the "
            "scenario is in force in that period; <strong>by</strong> (dashed): the "
            "probability it has been reached by then, counted from the last covered period."
            f"{static}</p>"
            f'<figure class="panels" aria-labelledby="{ident}-fig"><figcaption id="{ident}-fig">'
            f"The forecast fan of each scenario, {e(labels[0])}–{e(end['period'])}."
            f'</figcaption><div class="grid">{"".join(panels)}</div></figure>'
            + _table(f"{ident}-end", f"At the end, {e(end['period'])}: in force (at) and "
                     "reached (by)", ("Scenario", "At", "MCSE", "In words", "By", "MCSE",
                                      "In words"), end_rows, numeric=(1, 2, 4, 5))
            + f'<details id="{ident}-numbers"><summary id="{ident}-numbers-s">Every period '
            "(at / by)</summary>"
            + _table(f"{ident}-all", "At / by, each period to the end",
                     ("Period", *(e(names.scenarios.get(s, s)) for s in ids)), all_rows,
                     numeric=tuple(range(1, len(ids) + 1)))
            + "</details>")


def _reach_row(kind: str, key: str, name: str, entry: dict[str, Any], steps: int) -> str:
    def period(point: dict[str, Any] | None) -> str:
        return point["period"] if point else "after the end"

    def step(point: dict[str, Any] | None) -> int | None:
        return point["steps"] if point else None

    occurred = entry.get("occurred")
    if occurred:
        when = (f"before the window ({occurred['period']})" if occurred["before_window"]
                else f"in {occurred['period']}")
        return (f'<tr data-reach-kind="{kind}" data-reach="{e(key)}" data-occurred="true">'
                f'<th scope="row">{name}</th><td class="num">happened</td><td></td>'
                f"<td>observed {e(when)}</td><td></td><td></td><td></td></tr>")
    low, high = entry["interval80"]
    interval = (period(low) if low is None or low == high
                else f"{period(low)} – {period(high)}")
    return (f'<tr data-reach-kind="{kind}" data-reach="{e(key)}">'
            f'<th scope="row">{name}</th>'
            f'<td class="num" data-p-by-end="{exact(entry["p_by_end"])}">'
            f'{printed(entry["p_by_end"], entry["mcse"])}</td>'
            f'<td class="num">{e(_mcse(entry["mcse"]))}</td><td class="nw">{e(entry["words"])}</td>'
            f'<td class="nw">{e(period(entry["median"]))}</td>'
            f'<td class="nw">{e(interval)}</td>'
            f'<td class="strip-cell">{strip(step(low), step(entry["median"]), step(high), steps)}'
            "</td></tr>")


def _milestones(view: SetView, ident: str, names: _Names) -> str:
    milestones = view.milestones
    assert milestones is not None
    steps = view.fan[-1]["steps"] if view.fan else 0
    groups = [
        ("Scenarios, first in force", [
            _reach_row("reach", k, names.scenario(k), v, steps)
            for k, v in milestones["reach"].items()]),
        ("Rungs of the ladder, or deeper", [
            _reach_row("rung", k, f"{names.scenario(k)} or deeper "
                       f'<span class="quiet">({e(", ".join(v["scenarios"]))})</span>', v, steps)
            for k, v in milestones["reach_or_deeper"].items()]),
        ("Milestones", [
            _reach_row("milestone", k, names.indicator(k), v, steps)
            for k, v in milestones["milestones"].items()]),
    ]
    rows = []
    for title, group in groups:
        if group:
            rows.append(f'<tr class="group"><th scope="rowgroup" colspan="7">{e(title)}</th>'
                        "</tr>")
            rows.extend(group)
    horizon = milestones["horizon_end"] or "the end"
    return (f"<p>When each is first reached, from now to {e(horizon)}: the median period, "
            "the 80 % interval (the bar; an arrow where it runs past the end), and the "
            f"probability it happens by {e(milestones['end'] or horizon)}.</p>"
            + _table(f"{ident}-table", "Time to each scenario, rung and milestone",
                     ("What", "P(by end)", "MCSE", "In words", "Median", "80 % interval",
                      '<span class="visually-hidden">Timeline</span>'), rows,
                     numeric=(1, 2)))


def _watchlist(view: SetView, ident: str, names: _Names) -> str:
    watchlist = view.watchlist
    if watchlist is None:
        return _unavailable(view, "watchlist", "The watchlist")
    items = watchlist["items"]
    if not items:
        return "<p>Nothing to watch: no indicator's next periods would tell anything.</p>"
    top = max(i["information_bits"] for i in items) or 1.0
    rows = []
    for rank, item in enumerate(items, 1):
        what = ("already reported" if item["reported"] else item["summary"])
        rows.append(
            f'<tr data-watch="{e(item["indicator"])}"><td class="num">{rank}</td>'
            f'<th scope="row">{names.indicator(item["indicator"])}</th>'
            f'<td class="num" data-bits="{exact(item["information_bits"])}">'
            f'{item["information_bits"]:.3f}</td>'
            f'<td class="bar-cell">{bar(item["information_bits"] / top)}</td>'
            f'<td class="num">{"exact" if item["exact"] else _mcse(item["mcse_bits"])}</td>'
            f"<td>{e(what)}</td></tr>")
    period = watchlist["period"]
    return (f"<p>Indicators ranked by what their next {WATCH_PERIODS} {e(period)}s would tell "
            "about the scenario then in force (information in bits), each with the outcome "
            "that would move the posterior most.</p>"
            + _table(f"{ident}-table", f"What to watch in the next {WATCH_PERIODS} "
                     f"{e(period)}s", ("#", "Indicator", "Bits",
                                        _BAR_HEAD, "MCSE",
                                        "The outcome that would move it most"), rows,
                     numeric=(0, 2, 4)))


def _no_posterior(view: SetView) -> str:
    set_id = view.set_id
    if view.pending is not None:
        what = (f"Fit <code>{e(view.pending.id[:8])}</code> is {e(view.pending.status)}; "
                "this page shows its numbers once it is published.")
    else:
        what = (f'No fit is queued: an admin can queue one with <code>POST /v1/fits '
                f'{{"set_id": "{e(set_id)}"}}</code> or <code>signpost refit --set '
                f"{e(set_id)}</code>.")
    priors = "".join(f'<li>{e(s["name"])}: prior {s["prior"]:.3f} ({e(s["prior_words"])})'
                     "</li>" for s in view.detail["scenarios"])
    return (f'<p class="notice" role="note"><strong>No published posterior yet.</strong> '
            f"{what}</p><p>The scenarios and their priors:</p><ul>{priors}</ul>")


def _section(ident: str, title: str, body: str, level: int = 2) -> str:
    return (f'<section id="{ident}" aria-labelledby="{ident}-h"><h{level} id="{ident}-h">'
            f"{title}</h{level}>{body}</section>")


def _poll_attrs(view: SetView) -> str:
    return (f'data-poll-set="{e(view.set_id)}" data-fit-id="{e(view.fit_id or "")}" '
            f'data-summary="{e(_summary(view))}"')


# -- the pages -------------------------------------------------------------------------------

_SECTIONS = (("now", "Now"), ("moved", "What moved the last change"),
             ("coverage", "Coverage"), ("history", "Probability history"),
             ("forecast", "Forecast fan"), ("milestones", "Time to milestones and rungs"),
             ("watchlist", "Watchlist"), ("weighing", "What holds it there"))


def set_page(view: SetView, *, nonce: str, sets: Sequence[tuple[str, str]]) -> str:
    """The page of one set: everything the API says of its published posterior."""
    detail = view.detail
    names = _Names(detail)
    if view.posterior is None:
        body = _no_posterior(view)
    else:
        end = view.fan[-1]["period"] if view.fan else "the end"
        parts = {
            "now": _probabilities(view, "now"),
            "moved": _moved(view, "moved", names),
            "coverage": _coverage(view, "coverage", names),
            "history": _history(view, "history", names),
            "forecast": _fan(view, "forecast", names),
            "milestones": _milestones(view, "milestones", names),
            "watchlist": _watchlist(view, "watchlist", names),
            "weighing": _weighing(view, "weighing", names),
        }
        titles = dict(_SECTIONS) | {"forecast": f"Forecast fan to {e(end)}"}
        toc = "".join(f'<li><a id="toc-{k}" href="#{k}">{titles[k]}</a></li>'
                      for k, _ in _SECTIONS)
        body = (f'<nav class="toc" aria-label="On this page"><ul>{toc}</ul></nav>'
                + "".join(_section(k, titles[k], parts[k]) for k, _ in _SECTIONS))
    content = (f'<div id="content" data-view="set"><article class="set" {_poll_attrs(view)}>'
               f'<header class="set-head"><h1 id="title">{e(detail["title"])}</h1>'
               f'<p class="question">{e(detail["question"])}</p>{_meta(view)}</header>'
               f"{body}</article></div>")
    return _shell(detail["title"], content, nonce=nonce, sets=sets, current=view.set_id)


def index_page(views: Sequence[SetView], *, nonce: str) -> str:
    """Every set: its probabilities, coverage and last change, with a link to its page."""
    sets = [(v.set_id, v.detail["title"]) for v in views]
    cards = []
    for view in views:
        sid = e(view.set_id)
        names = _Names(view.detail)
        if view.posterior is None:
            body = _no_posterior(view)
        else:
            body = (_probabilities(view, f"{sid}-now")
                    + f'<p class="coverage-line"><strong>Coverage:</strong> '
                    f"{_coverage_line(view)}</p>"
                    + f'<div class="moved-line"><strong>What moved:</strong> '
                    f'{_moved(view, f"{sid}-moved", names, brief=True)}</div>'
                    + f'<p><a id="{sid}-more" href="/sets/{sid}">History, forecast fan, '
                    "milestones, coverage and watchlist of this set</a></p>")
        cards.append(
            f'<article class="set card" id="set-{sid}" aria-labelledby="set-{sid}-h" '
            f"{_poll_attrs(view)}><header class=\"set-head\"><h2 id=\"set-{sid}-h\">"
            f'<a id="{sid}-title-link" href="/sets/{sid}">{e(view.detail["title"])}</a></h2>'
            f'<p class="question">{e(view.detail["question"])}</p>{_meta(view)}</header>'
            f"{body}</article>")
    if not cards:
        cards.append("<p>No scenario set is loaded: <code>signpost init</code> loads the "
                     "bundled ones, <code>signpost sets load FILE</code> another.</p>")
    content = (f'<div id="content" data-view="index"><h1 id="title">Scenario sets</h1>'
               f"<p class=\"lede\">{_plural(len(views), 'question')}, each answered by "
               "mutually exclusive scenarios whose probabilities move as evidence is logged."
               f"</p>{''.join(cards)}</div>")
    return _shell("Scenario sets", content, nonce=nonce, sets=sets, current="")
