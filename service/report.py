"""The brief: one page on a scenario set, as PDF (one A4 page) or self-contained HTML.

The page holds the question; each scenario's probability with its words and MCSE; the
probability history; the forecast fan; what moved it (the change since the previous published
fit and the observations with the largest leave-one-out effect); what to watch (the watchlist's
top indicators); and what the evidence covered. Every number comes from a payload the API
serves — `service.posterior` (posterior, history), `service.outlook.forecast_payload` (one
call per period of the fan), `service.analysis` (attribution, watchlist) — and all of them
must come from the same published fit, so the page never mixes two.

Plots are drawn with matplotlib on `matplotlib.figure.Figure` (no pyplot: no global figure
state). ``.pdf``: one A4 page through matplotlib's PDF backend, text kept as text (TrueType)
so it can be searched and copied. ``.html``: one file with no external reference (the plots
are SVG data URIs, a Content-Security-Policy forbids fetching anything), built with
`xml.etree.ElementTree` (which escapes every text); each number sits in an element carrying
it in a ``data-`` attribute (``data-scenario``, ``data-probability``, ``data-mcse``, …) so
that a reader's tools, and the tests, can read it exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from indicators import add_months, make_grid, period_floor
from priors import ScenarioSet
from service.analysis import attribution_payload, watchlist_payload
from service.db import Database
from service.errors import BadRequest, Conflict
from service.outlook import forecast_payload, published_fit
from service.posterior import history_payload, posterior_payload
from service.repositories.fits import fit_history
from service.settings import Settings
from service.words import WordTable, printed, printed_mcse

__all__ = ["FORMATS", "Brief", "build_brief", "write_brief", "write_html", "write_pdf"]

# Okabe–Ito: distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
TOP_OBSERVATIONS = 4
TOP_WATCH = 3
WATCH_PERIODS = 4
PDF_COVERAGE_LINES = 4
MAX_FAN_PERIODS = 200
A4 = (8.27, 11.69)  # inches
_INK, _MUTED, _RULE = "#1a1a1a", "#5f6368", "#d0d4d9"
_STYLE = {"font.family": "DejaVu Sans", "font.size": 8, "axes.edgecolor": _MUTED,
          "axes.labelcolor": _INK, "axes.titlesize": 9, "axes.titleweight": "bold",
          "axes.titlelocation": "left", "axes.spines.top": False, "axes.spines.right": False,
          "xtick.color": _MUTED, "ytick.color": _MUTED, "legend.frameon": False,
          "pdf.fonttype": 42, "svg.fonttype": "path"}


@dataclass(frozen=True)
class Brief:
    """What the page shows: the API's payloads for one published fit.

    Attributes
    ----------
    scenario_set : the set
    posterior : ``GET /v1/sets/{id}/posterior``
    history : ``GET /v1/sets/{id}/history``
    fan : ``GET /v1/sets/{id}/forecast?horizon=…`` for each period from the evidence date
        to the end of the published forecast
    attribution : ``GET /v1/sets/{id}/attribution``
    watchlist : ``GET /v1/sets/{id}/watchlist?periods=4``
    generated_at : when the brief was built

    """

    scenario_set: ScenarioSet
    posterior: dict[str, Any]
    history: dict[str, Any]
    fan: list[dict[str, Any]]
    attribution: dict[str, Any]
    watchlist: dict[str, Any]
    generated_at: dt.datetime

    @property
    def scenarios(self) -> list[dict[str, Any]]:
        """The posterior's scenario rows (id, name, prior, probability, mcse, words)."""
        return self.posterior["scenarios"]

    @property
    def exact(self) -> bool:
        """Whether every probability is exact (MCSE 0)."""
        return all(s["mcse"] == 0 for s in self.scenarios)

    def name(self, scenario_id: str) -> str:
        """A scenario's name."""
        return next(s["name"] for s in self.scenarios if s["id"] == scenario_id)

    def indicator_name(self, indicator_id: str) -> str:
        """An indicator's name (its id if the set does not name it)."""
        for spec in self.scenario_set.indicators:
            if spec.id == indicator_id:
                return spec.indicator.name or indicator_id
        return indicator_id

    def colour(self, scenario_id: str) -> str:
        """The scenario's colour, the same in every plot and table."""
        return PALETTE[self.scenario_set.scenario_ids.index(scenario_id) % len(PALETTE)]


# -- the numbers ----------------------------------------------------------------------------

def forecast_fan(store: Database, scenario_set: ScenarioSet, as_of: dt.date,
                 table: WordTable) -> list[dict[str, Any]]:
    """The forecast route's payload for every period from ``as_of``'s to the forecast's end.

    Only forecasts (``steps`` ≥ 0): a period the forecast table does not hold is skipped.
    """
    first = period_floor(scenario_set.period, as_of)
    months = make_grid(scenario_set.period, first, first).months_per_period
    fan = []
    for i in range(MAX_FAN_PERIODS):
        last_day = add_months(first, months * (i + 1)) - dt.timedelta(days=1)
        day = min(last_day, scenario_set.end) if scenario_set.end else last_day
        try:
            payload = forecast_payload(store, scenario_set, day, table)
        except BadRequest:  # past the published forecast's last period
            break
        if payload["steps"] >= 0:
            fan.append(payload)
        if day != last_day:
            break
    return fan


def build_brief(store: Database, scenario_set: ScenarioSet, settings: Settings) -> Brief:
    """Gather the payloads of the set's newest published fit.

    Raises
    ------
    NotFound
        ``no_posterior``: the set has no published fit yet.
    Conflict
        A new fit was published while the payloads were read (build the brief again).

    """
    table = settings.word_table()
    row = published_fit(store, scenario_set)
    posterior = posterior_payload(scenario_set, row, store.clock(), settings.stale_after, table)
    brief = Brief(
        scenario_set=scenario_set,
        posterior=posterior,
        history=history_payload(scenario_set, fit_history(store, set_id=scenario_set.id), table),
        fan=forecast_fan(store, scenario_set, row.as_of, table),
        attribution=attribution_payload(store, scenario_set, settings, table),
        watchlist=watchlist_payload(store, scenario_set, settings, WATCH_PERIODS, table),
        generated_at=store.clock(),
    )
    seen = {brief.attribution["fit_id"], brief.watchlist["fit_id"],
            *(f["fit_id"] for f in brief.fan), *(i["fit_id"] for i in brief.history["items"][-1:])}
    if seen != {posterior["fit_id"]}:
        raise Conflict(f"a new fit of '{scenario_set.id}' was published while the brief was "
                       "built; build it again")
    return brief


# -- the words ------------------------------------------------------------------------------

def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _signed(change: float | None) -> str:
    """A change with its sign, a true minus: "+0.024", "−0.011"."""
    return "—" if change is None else f"{change:+.3f}".replace("-", "\u2212")


def _watch_line(brief: Brief, item: dict[str, Any]) -> str:
    """The outcome that would move the posterior most, with the scenario's name."""
    outcome = item["outcome"]
    if outcome is None:
        return "no outcome would move it"
    return (f"most telling: {outcome['label']} — {brief.name(outcome['scenario'])} "
            f"{printed(outcome['before'], None)} → {printed(outcome['after'], None)}")


def _when(timestamp: str) -> str:
    return f"{timestamp[:16].replace('T', ' ')} UTC"


def _lead(brief: Brief) -> dict[str, Any]:
    return max(brief.scenarios, key=lambda s: s["probability"] or 0.0)


def _precision(brief: Brief) -> str:
    if brief.exact:
        return "exact (MCSE 0)"
    worst = max(s["mcse"] or 0.0 for s in brief.scenarios)
    return f"Monte Carlo, MCSE ≤ {printed_mcse(worst)}"


def _moved(brief: Brief) -> tuple[str, list[dict[str, Any]]]:
    """The since-previous sentence, and per scenario its move (from, to)."""
    since = brief.attribution["since_previous"]
    if since["previous_fit_id"] is None:
        return "The first published fit: nothing earlier to compare with.", []
    counts = (f"{_plural(len(since['observations']), 'observation')}, "
              f"{_plural(len(since['retractions']), 'retraction')} and "
              f"{_plural(len(since['reviews']), 'review')} entered since fit "
              f"{since['previous_fit_id'][:8]}.")
    moves = [{"id": k, **m} for k, m in since["moved"].items()]
    return counts, sorted(moves, key=lambda m: -abs(m["change"] or 0.0))


def _top_observations(brief: Brief) -> list[dict[str, Any]]:
    """The observations that moved a probability most, in probability (not log) points.

    Each with the scenario it moved most: its probability without the report and now.
    """
    posterior = brief.attribution["posterior"]
    out = []
    for item in brief.attribution["observations"]:
        shift = {k: abs(posterior[k]["probability"] - without["probability"])
                 for k, without in item["without"].items()}
        k = max(shift, key=shift.__getitem__)
        out.append({"id": item["id"], "date": item["date"], "indicator": item["indicator"],
                    "grade": item["grade"], "critical": item["critical"], "scenario": k,
                    "without": item["without"][k]["probability"], "shift": shift[k],
                    "now": posterior[k]["probability"], "mcse": posterior[k].get("mcse")})
    out.sort(key=lambda o: (-o["shift"], o["date"]))  # stable: ties by date
    return out[:TOP_OBSERVATIONS]


def _watch(brief: Brief) -> list[dict[str, Any]]:
    return [item for item in brief.watchlist["items"] if not item["reported"]][:TOP_WATCH]


def _coverage_groups(brief: Brief) -> list[tuple[str, str | None, list[str]]]:
    """(basis, covered through, indicators), earliest date first."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for indicator, item in brief.posterior["coverage"].items():
        groups.setdefault((item["basis"], item["covered_through"]), []).append(indicator)
    return [(basis, through, ids) for (basis, through), ids in
            sorted(groups.items(), key=lambda g: (g[0][1] or "", g[0][0]))]


_BASIS = {"review": "reviewed through", "newest_entry": "complete to the log's newest entry,",
          "as_of": "complete by rule through", "none": "no evidence counted"}


def _coverage_line(brief: Brief, basis: str, through: str | None, ids: list[str]) -> str:
    names = ", ".join(brief.indicator_name(i) for i in ids)
    return f"{names}: {_BASIS.get(basis, basis)} {through or ''}".rstrip()


def _past_coverage(brief: Brief) -> str | None:
    past = brief.posterior["periods_past_coverage"] or 0
    if not past:
        return None
    period = brief.scenario_set.period
    return (f"The nowcast runs {past} {period}{'s' if past > 1 else ''} past the covered "
            "evidence: that stretch is a forecast.")


def _by_number(times: list[dt.datetime]) -> bool:
    """Fits within one day (a new deployment, a burst of refits) are plotted by number."""
    return not times or times[-1] - times[0] < dt.timedelta(days=1)


def _history_note(brief: Brief) -> str:
    times, _ = _history_points(brief)
    fits = _plural(len(times), "published fit")
    if not times:
        return "No published fit yet."
    if _by_number(times):
        return f"{fits}, numbered in order, all published on {times[0]:%Y-%m-%d}."
    return f"{fits}, by publication time."


def _fan_note(brief: Brief) -> str:
    if not brief.fan:
        return "The published fit has no forecast."
    first, last = brief.fan[0]["period"], brief.fan[-1]["period"]
    note = f"P(scenario in force), {first} to {last}."
    if brief.fan[0].get("transitions") == "identity":
        note += " Static model: the scenario never changes, so the forecast is the nowcast."
    return note


# -- the plots ------------------------------------------------------------------------------

def _history_points(brief: Brief) -> tuple[list[dt.datetime], dict[str, list[float]]]:
    items = brief.history["items"]
    times = [dt.datetime.fromisoformat(i["fitted_at"]) for i in items]
    return times, {k: [i["probabilities"][k] for i in items] for k in brief.history["scenarios"]}


def plot_history(ax: Axes, brief: Brief) -> None:
    """Each scenario's published probability at each fit (a step: it holds until the next)."""
    times, series = _history_points(brief)
    by_number = _by_number(times)
    x: list[Any] = list(range(1, len(times) + 1)) if by_number else times
    for k, values in series.items():
        ax.plot(x, values, drawstyle="steps-post", marker="o", markersize=3.5,
                linewidth=1.6, color=brief.colour(k), label=brief.name(k))
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title("Probability history")
    ax.grid(axis="y", color=_RULE, linewidth=0.6)
    if by_number:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, min_n_ticks=1))
        ax.set_xlim(0.7, len(times) + 0.3)
        return
    locator = AutoDateLocator(minticks=2, maxticks=5)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def plot_fan(ax: Axes, brief: Brief) -> None:
    """The forecast: P(scenario in force) at each period ahead, stacked to 1."""
    ax.set_title("Forecast")
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(in force)")
    if not brief.fan:
        ax.text(0.5, 0.5, "no forecast", transform=ax.transAxes, ha="center", color=_MUTED)
        return
    x = [dt.date.fromisoformat(f["horizon"]) for f in brief.fan]
    ids = [s["id"] for s in brief.fan[0]["scenarios"]]
    layers = [[next(s["at"] for s in f["scenarios"] if s["id"] == k) for f in brief.fan]
              for k in ids]
    ax.stackplot(x, layers, colors=[brief.colour(k) for k in ids], alpha=0.85,
                 labels=[brief.name(k) for k in ids], linewidth=0)
    ax.set_xlim(x[0], x[-1])
    locator = AutoDateLocator(minticks=3, maxticks=6)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _legend(fig: Figure, brief: Brief, y: float) -> None:
    handles = [Patch(color=brief.colour(s["id"]), label=s["name"])
               for s in brief.scenarios]
    fig.legend(handles=handles, loc="center", bbox_to_anchor=(0.5, y), ncols=len(handles),
               fontsize=7.5, handlelength=1.2, columnspacing=1.4)


def _figure_svg(brief: Brief, draw: Callable[[Axes, Brief], None]) -> str:
    """One plot as an SVG data URI."""
    fig = Figure(figsize=(4.6, 2.7), layout="constrained")
    draw(fig.add_subplot(), brief)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# -- PDF ------------------------------------------------------------------------------------

class _Column:
    """Text flowing down a column of the page (figure coordinates: ``x``, ``y``, ``width``)."""

    # DejaVu Sans averages about 0.55 em a character: the wrap width of a line of text
    EM_PER_CHAR = 0.53

    def __init__(self, fig: Figure, x: float, y: float, width: float):
        self.fig, self.x, self.y, self.width = fig, x, y, width

    def heading(self, text: str) -> None:
        self.fig.text(self.x, self.y, text, fontsize=9.5, fontweight="bold", color=_INK,
                      va="top")
        self.y -= 0.019

    def para(self, text: str, size: float = 8, colour: str = _INK, indent: float = 0.0,
             gap: float = 0.004) -> None:
        chars = int((self.width - indent) * A4[0] * 72 / (size * self.EM_PER_CHAR))
        step = size / 72 / A4[1] * 1.38
        for line in textwrap.wrap(text, chars) or [""]:
            self.fig.text(self.x + indent, self.y, line, fontsize=size, color=colour, va="top")
            self.y -= step
        self.y -= gap


def _scenario_table(fig: Figure, brief: Brief, top: float) -> float:
    """The probabilities, one row per scenario; returns the y below it."""
    columns = [(0.07, "scenario", "left"), (0.53, "probability", "right"),
               (0.57, "in words", "left"), (0.80, "prior", "right"),
               (0.95, "since last fit", "right")]
    for x, label, align in columns:
        fig.text(x, top, label, fontsize=7, color=_MUTED, ha=align, va="top")
    y = top - 0.02
    moves = {m["id"]: m for m in _moved(brief)[1]}
    for s in brief.scenarios:
        fig.patches.append(Rectangle(
            (0.05, y - 0.011), 0.011, 0.009, transform=fig.transFigure, color=brief.colour(
                s["id"]), figure=fig))
        mcse = "" if s["mcse"] == 0 else f" ± {printed_mcse(s['mcse'])}"
        change = moves.get(s["id"], {}).get("change")
        cells = [(s["name"], 10, "normal"), (printed(s["probability"], s["mcse"]) + mcse, 10.5,
                                             "bold"),
                 (s["words"] or "—", 9.5, "normal"), (f"{s['prior']:.2f}", 9, "normal"),
                 (_signed(change), 9, "normal")]
        for (x, _, align), (text, size, weight) in zip(columns, cells, strict=True):
            fig.text(x, y, text, fontsize=size, fontweight=weight, ha=align, va="top",
                     color=_INK)
        y -= 0.024
    return y


def write_pdf(brief: Brief, path: Path) -> None:
    """The brief as one A4 page (matplotlib's PDF backend)."""
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=A4)
        _page(fig, brief)
        title = f"{brief.scenario_set.title}: brief"
        fig.savefig(path, format="pdf", metadata={
            "Title": title, "Subject": brief.scenario_set.question, "Creator": "Signpost",
            "CreationDate": None})


def _page(fig: Figure, brief: Brief) -> None:
    set_, posterior = brief.scenario_set, brief.posterior
    left, right = 0.05, 0.95
    fig.text(left, 0.968, set_.title, fontsize=15, fontweight="bold", color=_INK, va="top")
    header = _Column(fig, left, 0.94, 0.9)
    header.para(set_.question, size=10, colour=_INK)
    header.para(f"Fit {posterior['fit_id'][:8]} · published {_when(posterior['fitted_at'])} · "
                f"evidence through {posterior['evidence_through']} · {_precision(brief)}"
                + (" · STALE: newer evidence is not fitted yet" if posterior["stale"] else ""),
                size=7.5, colour=_MUTED)
    fig.add_artist(Line2D([left, right], [header.y, header.y],
                                           color=_RULE, linewidth=0.8))
    y = _scenario_table(fig, brief, header.y - 0.012)
    lead = _lead(brief)
    note = _Column(fig, left, y - 0.004, 0.9)
    note.para(f"Most probable: {lead['name']}, {lead['words']} "
              f"({printed(lead['probability'], lead['mcse'])}). Probabilities are printed to "
              "the precision their Monte Carlo error supports; the words follow ICD 203.",
              size=7.5, colour=_MUTED)

    _legend(fig, brief, note.y - 0.008)
    plots_top = note.y - 0.04
    height = 0.19
    for x, draw, caption in ((0.09, plot_history, _history_note(brief)),
                             (0.58, plot_fan, _fan_note(brief))):
        draw(fig.add_axes((x, plots_top - height, 0.37, height)), brief)
        under = _Column(fig, x, plots_top - height - 0.03, 0.38)
        under.para(caption, size=7, colour=_MUTED)

    top = plots_top - height - 0.075
    moved = _Column(fig, left, top, 0.43)
    moved.heading("What moved it")
    sentence, moves = _moved(brief)
    moved.para(sentence)
    for m in moves[:4]:
        moved.para(f"{brief.name(m['id'])}: {printed(m['from'], None)} → "
                   f"{printed(m['to'], None)} ({_signed(m['change'])})", indent=0.01)
    moved.para("Largest effects (the evidence without each report):", colour=_MUTED)
    for o in _top_observations(brief):
        critical = " — critical" if o["critical"] else ""
        moved.para(f"{o['date']} {brief.indicator_name(o['indicator'])} ({o['grade']}): "
                   f"{brief.name(o['scenario'])} {printed(o['without'], o['mcse'])} without "
                   f"it, {printed(o['now'], o['mcse'])} with it{critical}", indent=0.01)

    watch = _Column(fig, 0.53, top, 0.42)
    watch.heading(f"What to watch (next {brief.watchlist['periods']} "
                  f"{brief.watchlist['period']}s)")
    items = _watch(brief)
    if not items:
        watch.para("Nothing left to watch: every indicator is reported.")
    for item in items:
        watch.para(f"{brief.indicator_name(item['indicator'])}: "
                   f"{item['information_bits']:.2f} bits", gap=0.001)
        watch.para(_watch_line(brief, item), size=7.5, colour=_MUTED, indent=0.01)

    bottom = min(moved.y, watch.y) - 0.015
    fig.add_artist(Line2D([left, right], [bottom + 0.008, bottom + 0.008],
                                           color=_RULE, linewidth=0.8))
    coverage = _Column(fig, left, bottom, 0.9)
    coverage.heading("What the evidence covers")
    coverage.para(f"Evidence complete through {posterior['evidence_complete_through'] or '—'} "
                  f"(rule: {posterior['coverage_rule'] or '—'}). "
                  + (_past_coverage(brief) or "The nowcast stops at the covered evidence."))
    groups = _coverage_groups(brief)
    for basis, through, ids in groups[:PDF_COVERAGE_LINES]:
        coverage.para(_coverage_line(brief, basis, through, ids), size=7.5, indent=0.01)
    if len(groups) > PDF_COVERAGE_LINES:  # the latest-covered ones; the HTML lists them all
        rest = sum(len(ids) for _, _, ids in groups[PDF_COVERAGE_LINES:])
        coverage.para(f"and {_plural(rest, 'indicator')} covered later", size=7.5,
                      indent=0.01, colour=_MUTED)
    fig.text(left, 0.02, f"Signpost · generated {_when(brief.generated_at.isoformat())} · "
             f"the numbers are the API's: /v1/sets/{set_.id}/posterior, history, forecast, "
             "attribution, watchlist", fontsize=6.5, color=_MUTED)


# -- HTML -----------------------------------------------------------------------------------

_CSS = """
@page { size: A4; margin: 14mm; }
body { font: 14px/1.45 "DejaVu Sans", system-ui, sans-serif; color: #1a1a1a; margin: 0; }
main { max-width: 960px; margin: 0 auto; padding: 24px 28px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.question { font-size: 16px; margin: 0 0 4px; }
.meta, .muted, figcaption { color: #5f6368; font-size: 12px; }
.stale { color: #b3261e; font-weight: bold; }
table { border-collapse: collapse; width: 100%; margin: 10px 0 4px; }
th { text-align: left; font-weight: normal; color: #5f6368; font-size: 12px;
     border-bottom: 1px solid #d0d4d9; padding: 4px 6px; }
td { padding: 5px 6px; border-bottom: 1px solid #eef0f2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.p { font-weight: bold; font-size: 16px; }
.swatch { display: inline-block; width: 11px; height: 11px; margin-right: 7px;
          vertical-align: -1px; }
.legend { margin-top: 14px; font-size: 13px; }
.legend .entry { margin-right: 18px; }
.plots { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-top: 10px; }
.plots img { width: 100%; height: auto; }
figure { margin: 0; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; }
ul { margin: 4px 0; padding-left: 18px; }
li { margin: 2px 0; }
footer { margin-top: 18px; border-top: 1px solid #d0d4d9; padding-top: 6px; }
@media print { main { padding: 0; } }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _el(parent: ET.Element, tag: str, text: str | None = None, tail: str | None = None,
        **attributes: Any) -> ET.Element:
    """A child element; ``data_foo=`` is ``data-foo``, ``class_=`` is ``class``; None skipped."""
    element = ET.SubElement(parent, tag, {key.rstrip("_").replace("_", "-"): _attr(value)
                                          for key, value in attributes.items()
                                          if value is not None})
    element.text, element.tail = text, tail
    return element


def _attr(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _html(brief: Brief) -> ET.Element:
    set_, posterior = brief.scenario_set, brief.posterior
    html = ET.Element("html", {"lang": "en"})
    head = _el(html, "head")
    _el(head, "meta", charset="utf-8")
    _el(head, "meta", http_equiv="Content-Security-Policy", content=_CSP)
    _el(head, "meta", name="viewport", content="width=device-width, initial-scale=1")
    _el(head, "title", f"{set_.title}: brief")
    _el(head, "style", _CSS)
    main = _el(_el(html, "body"), "main", data_set=set_.id, data_fit=posterior["fit_id"])

    _el(main, "h1", set_.title)
    _el(main, "p", set_.question, class_="question")
    meta = _el(main, "p", "Fit ", class_="meta")
    _el(meta, "span", posterior["fit_id"][:8], tail=" · published ",
        data_fit_id=posterior["fit_id"])
    _el(meta, "span", _when(posterior["fitted_at"]), tail=" · evidence through ",
        data_fitted_at=posterior["fitted_at"])
    _el(meta, "span", posterior["evidence_through"], tail=f" · {_precision(brief)}",
        data_evidence_through=posterior["evidence_through"])
    if posterior["stale"]:
        _el(main, "p", "Stale: newer evidence is not fitted yet.", class_="stale",
            data_stale="true")

    table = _el(main, "table", class_="scenarios")
    header = _el(_el(table, "thead"), "tr")
    for label, cls in (("scenario", None), ("probability", "num"), ("in words", None),
                       ("prior", "num"), ("since last fit", "num")):
        _el(header, "th", label, class_=cls)
    body = _el(table, "tbody")
    moves = {m["id"]: m for m in _moved(brief)[1]}
    for s in brief.scenarios:
        row = _el(body, "tr", data_scenario=s["id"])
        name = _el(row, "td")
        _el(name, "span", "", class_="swatch", style=f"background:{brief.colour(s['id'])}")
        _el(name, "span", s["name"], data_name=s["name"])
        cell = _el(row, "td", class_="num p")
        _el(cell, "span", printed(s["probability"], s["mcse"]),
            data_probability=s["probability"], data_mcse=s["mcse"])
        if s["mcse"]:
            _el(cell, "span", f" ± {printed_mcse(s['mcse'])}", class_="muted")
        _el(row, "td", s["words"] or "—", data_words=s["words"])
        _el(row, "td", f"{s['prior']:.2f}", class_="num", data_prior=s["prior"])
        change = moves.get(s["id"], {}).get("change")
        _el(row, "td", _signed(change), class_="num", data_change=change)
    lead = _lead(brief)
    _el(main, "p", f"Most probable: {lead['name']}, {lead['words']}. Probabilities are printed "
                   "to the precision their Monte Carlo error supports; the words follow ICD 203.",
        class_="muted")

    legend = _el(main, "div", class_="legend")
    for s in brief.scenarios:
        _el(legend, "span", "", class_="swatch", style=f"background:{brief.colour(s['id'])}")
        _el(legend, "span", s["name"], class_="entry")
    plots = _el(main, "div", class_="plots")
    for draw, caption, alt, key in (
            (plot_history, _history_note(brief),
             "Each scenario's probability at each published fit", "history"),
            (plot_fan, _fan_note(brief), "The forecast: P(scenario in force) by period",
             "forecast")):
        figure = _el(plots, "figure", data_plot=key)
        with matplotlib.rc_context(_STYLE):
            _el(figure, "img", src=_figure_svg(brief, draw), alt=alt)
        _el(figure, "figcaption", caption)
    if brief.fan:
        last = brief.fan[-1]
        line = _el(main, "p", "At ", class_="muted")
        _el(line, "span", last["period"], tail=": ", data_horizon_period=last["period"])
        for i, s in enumerate(last["scenarios"]):
            _el(line, "span", f"{brief.name(s['id'])} {printed(s['at'], s['mcse_at'])}",
                tail="; " if i < len(last["scenarios"]) - 1 else ".", data_scenario=s["id"],
                data_at=s["at"], data_mcse=s["mcse_at"])

    columns = _el(main, "div", class_="columns")
    moved = _el(columns, "section", data_section="moved")
    _el(moved, "h2", "What moved it")
    sentence, moves_sorted = _moved(brief)
    since = brief.attribution["since_previous"]
    _el(moved, "p", sentence, data_previous_fit=since["previous_fit_id"],
        data_observations=len(since["observations"]) if since["previous_fit_id"] else None,
        data_retractions=len(since["retractions"]) if since["previous_fit_id"] else None,
        data_reviews=len(since["reviews"]) if since["previous_fit_id"] else None)
    if moves_sorted:
        items = _el(moved, "ul")
        for m in moves_sorted:
            _el(items, "li", f"{brief.name(m['id'])}: {printed(m['from'], None)} → "
                             f"{printed(m['to'], None)} ({_signed(m['change'])})",
                data_scenario=m["id"], data_from=m["from"], data_to=m["to"],
                data_change=m["change"])
    _el(moved, "p", "Largest effects (the evidence without each report):", class_="muted")
    items = _el(moved, "ul")
    for o in _top_observations(brief):
        _el(items, "li", f"{o['date']} {brief.indicator_name(o['indicator'])} ({o['grade']}): "
                         f"{brief.name(o['scenario'])} {printed(o['without'], o['mcse'])} "
                         f"without it, {printed(o['now'], o['mcse'])} with it"
                         + (" — critical" if o["critical"] else ""),
            data_observation=o["id"], data_scenario=o["scenario"], data_without=o["without"],
            data_with=o["now"], data_critical=str(o["critical"]).lower())

    watch = _el(columns, "section", data_section="watch")
    _el(watch, "h2", f"What to watch (next {brief.watchlist['periods']} "
                     f"{brief.watchlist['period']}s)")
    items = _el(watch, "ul")
    for item in _watch(brief):
        entry = _el(items, "li", data_indicator=item["indicator"],
                    data_bits=item["information_bits"])
        _el(entry, "strong", brief.indicator_name(item["indicator"]),
            tail=f": {item['information_bits']:.2f} bits")
        outcome = item["outcome"] or {}
        _el(entry, "div", _watch_line(brief, item), class_="muted",
            data_scenario=outcome.get("scenario"), data_before=outcome.get("before"),
            data_after=outcome.get("after"), data_outcome_probability=outcome.get(
                "probability"))

    coverage = _el(main, "section", data_section="coverage")
    _el(coverage, "h2", "What the evidence covers")
    line = _el(coverage, "p", "Evidence complete through ")
    _el(line, "span", posterior["evidence_complete_through"] or "—",
        tail=f" (rule: {posterior['coverage_rule'] or '—'}). "
             + (_past_coverage(brief) or "The nowcast stops at the covered evidence."),
        data_evidence_complete_through=posterior["evidence_complete_through"],
        data_periods_past=posterior["periods_past_coverage"])
    items = _el(coverage, "ul")
    for basis, through, ids in _coverage_groups(brief):
        _el(items, "li", _coverage_line(brief, basis, through, ids), data_basis=basis,
            data_covered_through=through, data_indicators=" ".join(ids))
    _el(main, "footer", f"Signpost · generated "
                        f"{_when(brief.generated_at.isoformat())} · the numbers are the API's: "
                        f"/v1/sets/{set_.id}/posterior, history, forecast, attribution, "
                        "watchlist", class_="muted",
        data_generated_at=brief.generated_at.isoformat())
    return html


def write_html(brief: Brief, path: Path) -> None:
    """The brief as one self-contained HTML file."""
    text = ET.tostring(_html(brief), encoding="unicode", method="html")
    path.write_text("<!DOCTYPE html>\n" + text + "\n", encoding="utf-8")


FORMATS: dict[str, Callable[[Brief, Path], None]] = {".pdf": write_pdf, ".html": write_html}
"""The brief's formats, by the output file's extension."""


def write_brief(brief: Brief, path: Path) -> None:
    """Write the brief in the format its extension names (`FORMATS`).

    Raises
    ------
    BadRequest
        ``field="out"``: an extension other than those of `FORMATS`.

    """
    writer = FORMATS.get(path.suffix.lower())
    if writer is None:
        raise BadRequest(f"out: {path.name} must end in {' or '.join(FORMATS)}", field="out")
    writer(brief, path)
