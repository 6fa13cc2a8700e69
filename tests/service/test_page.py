"""The web page in process (TestClient, lifespan on): `/` and `/sets/{id}` against the JSON API.

The sample observations imported, both bundled sets fitted (static fits, inline worker: exact
and quick), and world-order refitted after one more observation so that "what moved" has a
previous fit to compare with. Every number the page shows is read back from its ``data-*``
attributes and compared, exactly, with what the ``/v1`` route of the same name serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

import indicators
from indicators import read_observations_csv
from service.api import create_app
from service.context import Services
from service.repositories.fits import create_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observation, add_observations
from service.repositories.sets import get_catalog, load_bundled_sets, load_set_text
from tests.service.support import TestClient, make_settings

TODAY = date(2025, 12, 31)
CONVERGENCE = "sino-russian-convergence"
WORLD = "world-order-2035"
SETS = (CONVERGENCE, WORLD)
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
WORLD_YAML = Path(__file__).resolve().parents[2] / "priors" / "sets" / f"{WORLD}.yaml"



# -- reading the page back ----------------------------------------------------------------------

@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def all(self, tag: str | None = None, **attrs: str | bool) -> list[Element]:
        """Descendants with ``tag`` whose attributes match (True: present)."""
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and all(
                    (k.replace("_", "-") in child.attrs) if v is True
                    else child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()):
                found.append(child)
            found.extend(child.all(tag, **attrs))
        return found

    def one(self, tag: str | None = None, **attrs: str | bool) -> Element:
        found = self.all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]

    def data(self, name: str) -> str:
        return self.attrs[f"data-{name}"]

    @property
    def words(self) -> str:
        return " ".join(self.text.split())


VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "path", "line", "rect",
        "circle"}


class Tree(HTMLParser):
    """The page as a tree of elements (the stdlib parser; SVG's empty elements closed)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while self.stack[-1].tag != tag:
            self.stack.pop()
        self.stack.pop()

    def handle_data(self, data):
        for element in self.stack[1:]:
            element.text += data


def parse(html: str) -> Element:
    return Tree(html).root


def number(text: str) -> float | None:
    """A ``data-*`` value: the JSON the API writes (``null`` for None)."""
    return None if text == "null" else float(text)


# -- fixtures ---------------------------------------------------------------------------------

@dataclass
class Site:
    client: TestClient
    services: Services
    analyst: dict[str, str]

    def page(self, path: str) -> Element:
        response = self.client.get(path)
        assert response.status_code == 200, response.text[:500]
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        return parse(response.text)

    def api(self, path: str, **params) -> dict:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def refit(self, set_id: str) -> str:
        fit_id = create_fit(self.services.store, set_id=set_id, requested_by="test_page")
        assert self.services.runner.run_fit(fit_id)["status"] == "published"
        return fit_id


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    app = create_app(make_settings(tmp_path_factory.mktemp("page")))
    # an API error is a response here (500 and the error shape), as a real server sends it
    with TestClient(app, raise_server_exceptions=False) as client:
        services: Services = app.state.services
        store = services.store
        load_bundled_sets(store)
        observations, _ = read_observations_csv(SAMPLE, get_catalog(store), today=TODAY)
        add_observations(store, observations=observations, analyst="sample",
                         review={"indicators": sorted({o.indicator for o in observations}),
                                 "through": "2025-12-31", "note": "sample"})
        s = Site(client, services, {"Authorization": "Bearer "
                                    + create_key(store, role="analyst", name="ana")})
        for set_id in SETS:
            s.refit(set_id)
        add_observation(store, data={"indicator": "us_china_cooperation", "date": "2025-11-15",
                                     "grade": "A1", "source": "test_page"}, analyst="ana")
        s.refit(WORLD)
        yield s


@pytest.fixture(scope="module")
def locked(tmp_path_factory) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """Reads need a key; the sets are loaded and a fit of world-order queued, none run."""
    app = create_app(make_settings(tmp_path_factory.mktemp("locked"), require_read_key=True))
    with TestClient(app) as client:
        store = app.state.services.store
        load_bundled_sets(store)
        queued = create_fit(store, set_id=WORLD, requested_by="test_page")
        yield client, {"Authorization": "Bearer " + create_key(store, role="reader")}, queued


# -- the numbers equal the API's -------------------------------------------------------------

def shown_probabilities(block: Element) -> dict[str, tuple[float | None, float | None, str]]:
    return {cell.data("scenario"): (number(cell.data("probability")), number(cell.data("mcse")),
                                    row_words(block, cell.data("scenario")))
            for cell in block.all("td", data_scenario=True, data_probability=True)}


def row_words(block: Element, scenario: str) -> str:
    for row in block.all("tr"):
        if row.all("td", data_scenario=scenario, data_probability=True):
            return row.one("td", data_words=True).data("words")
    raise AssertionError(scenario)


def served_probabilities(posterior: dict) -> dict[str, tuple[float | None, float | None, str]]:
    return {s["id"]: (s["probability"], s["mcse"], s["words"]) for s in posterior["scenarios"]}


def test_the_index_shows_every_set_with_the_api_numbers(site):
    page = site.page("/")
    blocks = {b.data("poll-set"): b for b in page.all(data_poll_set=True)}
    assert set(blocks) == set(SETS)
    for set_id, block in blocks.items():
        posterior = site.api(f"/v1/sets/{set_id}/posterior")
        assert block.data("fit-id") == posterior["fit_id"]
        assert shown_probabilities(block) == served_probabilities(posterior)
        assert block.all("a", href=f"/sets/{set_id}")
        assert "Reviewed through 2025-12-31, today" in block.words
    # what moved: world-order has a previous fit, convergence not
    moved = blocks[WORLD].one("div", **{"class": "moved-line"}).words
    assert "1 observation logged" in moved and "moved most" in moved
    assert "first published fit" in blocks[CONVERGENCE].words


@pytest.mark.parametrize("set_id", SETS)
def test_a_set_page_shows_each_section_with_the_api_numbers(site, set_id):
    page = site.page(f"/sets/{set_id}")
    block = page.one(data_poll_set=set_id)
    posterior = site.api(f"/v1/sets/{set_id}/posterior")
    assert block.data("fit-id") == posterior["fit_id"]
    assert shown_probabilities(block) == served_probabilities(posterior)
    sections = {s.attrs["id"]: s for s in page.all("section")}
    assert list(sections) == ["now", "moved", "coverage", "history", "forecast", "milestones",
                              "watchlist", "weighing"]

    # history: one row per published fit, the /history numbers
    history = site.api(f"/v1/sets/{set_id}/history")
    rows = sections["history"].all("tr", data_fit_id=True)
    assert [r.data("fit-id") for r in rows] == [i["fit_id"] for i in reversed(history["items"])]
    for row, item in zip(rows, reversed(history["items"]), strict=True):
        assert {c.data("history-scenario"): number(c.data("probability"))
                for c in row.all("td", data_history_scenario=True)} == item["probabilities"]
    assert len(sections["history"].all("svg")) == len(posterior["scenarios"])

    # forecast fan: at and by at the set's end, as /forecast serves them
    end = site.api(f"/v1/sets/{set_id}")["end"]
    forecast = site.api(f"/v1/sets/{set_id}/forecast", horizon=end)
    shown = {r.data("forecast-scenario"): (number(r.one("td", data_at=True).data("at")),
                                           number(r.one("td", data_by=True).data("by")))
             for r in sections["forecast"].all("tr", data_forecast_scenario=True)}
    assert shown == {s["id"]: (s["at"], s["by"]) for s in forecast["scenarios"]}
    periods = [r.data("period") for r in sections["forecast"].all("tr", data_period=True)]
    now = site.api(f"/v1/sets/{set_id}/forecast", horizon=posterior["evidence_through"])
    assert (periods[0], periods[-1]) == (now["period"], forecast["period"])

    # milestones and rungs: P(by end) of each, as /milestones serves it
    milestones = site.api(f"/v1/sets/{set_id}/milestones")
    expected = {("reach", k): v.get("p_by_end") for k, v in milestones["reach"].items()}
    expected |= {("rung", k): v.get("p_by_end") for k, v in milestones["reach_or_deeper"].items()}
    expected |= {("milestone", k): v.get("p_by_end") for k, v in milestones["milestones"].items()}
    shown_reach = {}
    for row in sections["milestones"].all("tr", data_reach=True):
        cells = row.all("td", data_p_by_end=True)
        shown_reach[(row.data("reach-kind"), row.data("reach"))] = (
            number(cells[0].data("p-by-end")) if cells else None)
    assert shown_reach == expected

    # coverage: every indicator's date, as the posterior says it ("…, N days ago")
    covered = {li.data("indicator"): li.data("covered-through")
               for li in sections["coverage"].all("li", data_indicator=True)}
    assert covered == {k: v["covered_through"] for k, v in posterior["coverage"].items()}
    assert "Reviewed through 2025-12-31, today" in sections["coverage"].words

    # watchlist: ranked as /watchlist ranks it, its bits; where the route fails (a set with
    # dynamics under SIGNPOST_DYNAMIC=false), the page says so and shows the rest
    response = site.client.get(f"/v1/sets/{set_id}/watchlist")
    shown_watch = [(r.data("watch"), number(r.one("td", data_bits=True).data("bits")))
                   for r in sections["watchlist"].all("tr", data_watch=True)]
    if response.status_code == 200:
        assert shown_watch == [(i["indicator"], i["information_bits"])
                               for i in response.json()["items"]]
    else:
        assert response.status_code == 500 and shown_watch == []
        assert "The watchlist is not available for this fit" in sections["watchlist"].words

    # what moved: the attribution's since_previous
    since = site.api(f"/v1/sets/{set_id}/attribution")["since_previous"]
    if since["previous_fit_id"] is None:
        assert "first published fit" in sections["moved"].words
    else:
        assert since["previous_fit_id"][:8] in sections["moved"].words
        assert [number(c.data("to")) for c in sections["moved"].all("td", data_to=True)] == [
            m["to"] for m in since["moved"].values()]
        assert [number(c.data("change")) for c in sections["moved"].all(
            "td", data_change=True)] == [m["change"] for m in since["moved"].values()]
        logged = [o["indicator"] for o in since["observations"]]
        assert logged == ["us_china_cooperation"] and "Logged:" in sections["moved"].words


def test_a_new_fit_is_shown_and_its_parts_computed_once(site):
    before = site.page(f"/sets/{WORLD}").one(data_poll_set=WORLD).data("fit-id")
    add_observation(site.services.store, data={"indicator": "joint_patrol",
                                               "date": "2025-12-01", "grade": "B2"})
    fit_id = site.refit(WORLD)
    assert fit_id != before
    block = site.page(f"/sets/{WORLD}").one(data_poll_set=WORLD)
    assert block.data("fit-id") == fit_id
    posterior = site.api(f"/v1/sets/{WORLD}/posterior")
    assert shown_probabilities(block) == served_probabilities(posterior)
    cache = site.client.app.state.page_cache
    assert cache.held(fit_id) == {"attribution", "history", "fan", "milestones", "watchlist"}
    first = cache.part(fit_id, "watchlist", lambda: pytest.fail("recomputed"))
    site.page(f"/sets/{WORLD}")  # a poll's reload: served from the cache
    assert cache.part(fit_id, "watchlist", lambda: pytest.fail("recomputed")) is first


# -- errors, keys, no posterior ----------------------------------------------------------------

def test_an_unknown_set_is_an_html_404_and_the_api_keeps_json(site):
    response = site.client.get("/sets/no-such-set")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = parse(response.text)
    assert page.one("h1").words == "No such scenario set"
    assert "no-such-set" in page.one("main").words
    assert {a.attrs["href"] for a in page.one("main").all("a")} >= {f"/sets/{s}" for s in SETS}
    api = site.client.get("/v1/sets/no-such-set")
    assert api.status_code == 404 and api.json()["error"]["field"] == "set_id"
    unrouted = site.client.get("/no/such/page")
    assert unrouted.status_code == 404 and unrouted.json()["error"]["code"] == "not_found"


def test_reads_that_need_a_key_need_one_for_the_page_too(locked):
    client, reader, _ = locked
    for path in ("/", f"/sets/{WORLD}"):
        response = client.get(path)
        assert response.status_code == 401, response.text[:300]
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        words = parse(response.text).one("main").words
        assert "Authorization: Bearer <key>" in words
        assert "signpost keys create --role reader" in words
        assert "data-probability" not in response.text
        bad = client.get(path, headers={"Authorization": "Bearer sp_not_a_key"})
        assert bad.status_code == 401 and "unknown or revoked API key" in bad.text
        assert client.get(path, headers=reader).status_code == 200
    assert client.get(f"/v1/sets/{WORLD}/posterior").status_code == 401  # unchanged


def test_a_set_without_a_published_posterior_says_so(locked):
    client, reader, queued = locked
    response = client.get(f"/sets/{WORLD}", headers=reader)
    assert response.status_code == 200
    block = parse(response.text).one(data_poll_set=WORLD)
    assert block.data("fit-id") == ""
    assert "No published posterior yet" in block.words
    assert f"Fit {queued[:8]} is queued" in block.words
    assert block.all(data_probability=True) == []
    index = parse(client.get("/", headers=reader).text)
    assert "No fit is queued" in index.one(data_poll_set=CONVERGENCE).words
    assert "POST /v1/fits" in index.one(data_poll_set=CONVERGENCE).words


def test_text_from_the_set_is_escaped(locked):
    client, reader, _ = locked
    text = WORLD_YAML.read_text().replace(f"id: {WORLD}", "id: escaped-set", 1).replace(
        "title: ", "title: <script>alert(1)</script> ", 1)
    load_set_text(client.app.state.services.store, yaml_text=text, source="test_page")
    response = client.get("/sets/escaped-set", headers=reader)
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert len(parse(response.text).all("script")) == 1  # the page's own


# -- nothing from elsewhere, and accessible structure ------------------------------------------

URL_ATTRIBUTE = re.compile(r"""\b(?:src|href|action|poster|data)\s*=\s*["']?\s*([^"'\s>]+)""",
                           re.IGNORECASE)


@pytest.mark.parametrize("path", ["/", f"/sets/{CONVERGENCE}", f"/sets/{WORLD}",
                                  "/sets/no-such-set"])
def test_the_page_loads_nothing_from_elsewhere(site, path):
    response = site.client.get(path)
    html = response.text
    targets = URL_ATTRIBUTE.findall(html)
    assert targets, "no link at all?"
    elsewhere = [t for t in targets
                 if re.match(r"(?i)^(?:[a-z][a-z0-9+.-]*:|//)", t) and not t.startswith("data:")]
    assert elsewhere == []
    assert re.search(r"(?i)url\(\s*['\"]?(?:https?:)?//", html) is None  # CSS
    assert re.search(r"(?i)@import", html) is None
    page = parse(html)
    assert all("src" not in s.attrs for s in page.all("script"))
    assert page.all("link", rel="stylesheet") == []
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http" not in policy


def test_the_page_is_built_for_keyboards_and_screen_readers(site):
    page = site.page(f"/sets/{CONVERGENCE}")
    html = page.one("html")
    assert html.attrs["lang"] == "en"
    body = page.one("body")
    first_link = body.all("a")[0]
    assert first_link.attrs["href"] == "#main" and "Skip to main content" in first_link.words
    assert page.one("main").attrs["id"] == "main"
    assert len(page.all("h1")) == 1
    for section in page.all("section"):
        heading = section.one(id=section.attrs["aria-labelledby"])
        assert heading.tag == "h2" and heading.words
    for table in page.all("table"):
        assert table.one("caption").words
        assert table.all("th", scope=True)
    for svg in page.all("svg", role="img"):
        title, desc = svg.one("title"), svg.one("desc")
        assert title.words and desc.words
        assert svg.attrs["aria-labelledby"] == f"{title.attrs['id']} {desc.attrs['id']}"
        lines = svg.all("path", **{"class": "line"}) + svg.all("path", **{"class": "line-by"})
        dots = svg.all("circle")
        assert len(svg.all("text", **{"class": "end-label"})) >= (1 if lines or dots else 0)
    for svg in page.all("svg"):  # the rest are decorative, their numbers printed beside them
        assert svg.attrs.get("role") == "img" or svg.attrs.get("aria-hidden") == "true"
    live = page.one(id="announce")
    assert live.attrs["aria-live"] == "polite" and live.attrs["role"] == "status"
    ids = [e.attrs["id"] for e in page.all(id=True)]
    assert len(ids) == len(set(ids)), "duplicate ids"
    # everything the refresh may focus again has an id
    assert all("id" in a.attrs for a in page.one("main").all("a"))
    assert all("id" in s.attrs for s in page.all("summary"))
