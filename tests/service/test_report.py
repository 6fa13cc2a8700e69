"""The brief (`signpost report`), rendered once per format and read back as a reader would.

The PDF through poppler (``pdftoppm`` to a PNG, ``pdftotext`` for its words), the HTML in
Chromium (Playwright): the probabilities, what moved them, what to watch and the coverage on
the page are the numbers the API serves. The PNG and the screenshot are kept under
``SIGNPOST_TEST_ARTIFACTS`` (default ``<repo>/artifacts/report/``) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import indicators
from service.api import create_app
from service.cli import app as cli_app
from service.repositories.fits import create_fit
from service.repositories.observations import add_observation, add_observations
from service.repositories.sets import get_catalog, load_bundled_sets
from service.settings import Settings, get_settings
from service.words import printed
from tests.service.support import TestClient

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"
CONVERGENCE = "sino-russian-convergence"
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SIGNPOST_TEST_ARTIFACTS", ROOT / "artifacts")) / "report"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
DPI = 100


def env(var_dir: Path) -> dict[str, str]:
    return {"SIGNPOST_VAR_DIR": str(var_dir), "SIGNPOST_TODAY": TODAY.isoformat(),
            "SIGNPOST_DYNAMIC": "false", "SIGNPOST_WORKER": "inline",
            "SIGNPOST_SCHEDULER": "false"}


@dataclass
class Rendered:
    pdf: Path
    html: Path
    served: dict[str, Any]  # the API's JSON, by route


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Iterator[Rendered]:
    """The sample, two published fits of the world set (an observation between them), the
    API's JSON, then `signpost report` once per format (convergence left unfitted)."""
    var_dir = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("SIGNPOST_")]:
            patch.delenv(name)
        for name, value in env(var_dir).items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        with TestClient(create_app(Settings())) as client:
            services = client.app.state.services
            store = services.store
            load_bundled_sets(store)
            observations, _ = indicators.read_observations_csv(SAMPLE, get_catalog(store),
                                                               TODAY)
            add_observations(store, observations=observations, analyst="sample", review={
                "indicators": sorted({o.indicator for o in observations}),
                "through": TODAY.isoformat(), "note": "sample"})
            for step in range(2):
                if step:
                    add_observation(store, data={"indicator": "joint_exercise",
                                                 "date": "2025-12-20", "grade": "A2"})
                fit_id = create_fit(store, set_id=WORLD, requested_by="test")
                assert services.runner.run_fit(fit_id)["status"] == "published"
            base = f"/v1/sets/{WORLD}"
            served = {route: client.get(base + route, params=params).json() for route, params in (
                ("/posterior", {}), ("/attribution", {}), ("/watchlist", {"periods": 4}),
                ("/forecast", {"horizon": "2035-12-31"}), ("/history", {}))}
        runner = CliRunner()
        out = {}
        for suffix in ("pdf", "html"):
            out[suffix] = var_dir / f"brief.{suffix}"
            result = runner.invoke(cli_app, ["report", "--set", WORLD, "--out",
                                             str(out[suffix])])
            assert result.exit_code == 0, result.output
            assert f"wrote {out[suffix]}" in result.output
        yield Rendered(out["pdf"], out["html"], served)
        get_settings.cache_clear()


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} (poppler-utils) is not installed")
    return path


# -- PDF ------------------------------------------------------------------------------------

def test_the_pdf_is_one_a4_page_that_renders(rendered):
    from PIL import Image

    info = subprocess.run([tool("pdfinfo"), str(rendered.pdf)], capture_output=True,
                          text=True, check=True).stdout
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in
                                                  info.splitlines() if ":" in line)}
    assert fields["Pages"] == "1" and fields["Page size"].endswith("(A4)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / "brief"
    subprocess.run([tool("pdftoppm"), "-png", "-r", str(DPI), "-singlefile", str(rendered.pdf),
                    str(stem)], check=True)
    png = stem.with_suffix(".png")
    assert png.stat().st_size > 50_000
    with Image.open(png) as image:
        assert (image.width, image.height) == (827, 1169)  # A4 at 100 dpi
        grey = image.convert("L")
        inked = sum(count for level, count in enumerate(grey.histogram()) if level < 200)
    assert 0.04 < inked / (image.width * image.height) < 0.6  # drawn on, not a blot


def test_the_pdf_prints_each_scenario_with_its_probability(rendered):
    text = subprocess.run([tool("pdftotext"), "-layout", str(rendered.pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    posterior = rendered.served["/posterior"]
    lines = text.splitlines()
    for s in posterior["scenarios"]:
        shown = printed(s["probability"], s["mcse"])
        row = [line for line in lines if s["name"] in line and shown in line]
        assert row and s["words"] in row[0], (s, shown)
    assert f"evidence through {posterior['evidence_through']}" in text
    assert f"Evidence complete through {posterior['evidence_complete_through']}" in text
    for heading in ("Probability history", "Forecast", "What moved it", "What to watch",
                    "What the evidence covers"):
        assert heading in text


# -- HTML in Chromium ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(rendered) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1000, "height": 1300})
            tab.requested = []
            tab.on("request", lambda request: tab.requested.append(request.url))
            tab.goto(rendered.html.as_uri())
            tab.wait_for_load_state("load")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "brief-html.png"), full_page=True)
            yield tab
        finally:
            browser.close()


def attributes(page, selector: str, *names: str) -> list[dict[str, str | None]]:
    return page.eval_on_selector_all(selector, """(nodes, names) => nodes.map(node => {
        const out = {text: node.innerText};
        for (const name of names) out[name] = node.getAttribute(name);
        return out;
    })""", list(names))


def test_the_html_shows_the_served_probabilities(page, rendered):
    posterior = rendered.served["/posterior"]
    rows = page.eval_on_selector_all("tr[data-scenario]", """rows => rows.map(row => {
        const p = row.querySelector('[data-probability]');
        return {id: row.dataset.scenario, probability: p.dataset.probability,
                mcse: p.dataset.mcse, shown: p.innerText,
                words: row.querySelector('[data-words]').innerText,
                prior: row.querySelector('[data-prior]').dataset.prior};
    })""")
    assert [r["id"] for r in rows] == [s["id"] for s in posterior["scenarios"]]
    for row, s in zip(rows, posterior["scenarios"], strict=True):
        assert float(row["probability"]) == s["probability"]
        assert float(row["mcse"]) == s["mcse"] == 0.0
        assert row["shown"] == printed(s["probability"], s["mcse"])
        assert row["words"] == s["words"] and float(row["prior"]) == s["prior"]
    fit = page.get_attribute("main", "data-fit")
    assert fit == posterior["fit_id"] == rendered.served["/history"]["items"][-1]["fit_id"]


def test_the_html_is_self_contained_and_its_plots_render(page, rendered):
    assert page.requested == [rendered.html.as_uri()]  # nothing fetched but the file
    images = page.eval_on_selector_all(
        "figure[data-plot] img", "imgs => imgs.map(i => [i.src.slice(0, 26), i.naturalWidth])")
    assert images == [["data:image/svg+xml;base64,", w] for _, w in images] and len(images) == 2
    assert all(width > 300 for _, width in images)
    links = re.findall(r'(?:src|href|url)\s*[=(]\s*["\']?([^"\')\s>]+)', rendered.html.read_text())
    assert links and all(link.startswith("data:") for link in links)


def test_the_html_says_what_moved_it_what_to_watch_and_what_it_covers(page, rendered):
    served = rendered.served
    since = served["/attribution"]["since_previous"]
    moved = attributes(page, "[data-section=moved] li[data-from]", "data-scenario",
                       "data-from", "data-to")
    assert len(moved) == len(since["moved"]) == 4
    for item in moved:
        expected = since["moved"][item["data-scenario"]]
        assert (float(item["data-from"]), float(item["data-to"])) == (expected["from"],
                                                                      expected["to"])
    # the reports that moved a probability most (in probability points), with the served numbers
    effects = attributes(page, "[data-section=moved] li[data-observation]", "data-observation",
                         "data-without", "data-with", "data-scenario")
    posterior = served["/attribution"]["posterior"]
    by_id = {o["id"]: o for o in served["/attribution"]["observations"]}

    def shift(o: dict, k: str) -> float:
        return abs(posterior[k]["probability"] - o["without"][k]["probability"])

    assert len(effects) == 4
    for effect in effects:
        o, k = by_id[int(effect["data-observation"])], effect["data-scenario"]
        assert float(effect["data-without"]) == o["without"][k]["probability"]
        assert float(effect["data-with"]) == posterior[k]["probability"]
        assert shift(o, k) == max(shift(o, s) for s in posterior)
    shown = {int(e["data-observation"]) for e in effects}
    assert min(max(shift(by_id[i], s) for s in posterior) for i in shown) >= max(
        max(shift(o, s) for s in posterior) for i, o in by_id.items() if i not in shown)

    watch = attributes(page, "[data-section=watch] li", "data-indicator", "data-bits")
    expected = [i for i in served["/watchlist"]["items"] if not i["reported"]][:len(watch)]
    assert [(w["data-indicator"], float(w["data-bits"])) for w in watch] == [
        (i["indicator"], i["information_bits"]) for i in expected] and watch

    posterior = served["/posterior"]
    complete = page.get_attribute("[data-evidence-complete-through]",
                                  "data-evidence-complete-through")
    assert complete == posterior["evidence_complete_through"] == TODAY.isoformat()
    groups = attributes(page, "[data-section=coverage] li", "data-indicators",
                        "data-covered-through", "data-basis")
    covered = {i: (g["data-covered-through"], g["data-basis"]) for g in groups
               for i in g["data-indicators"].split()}
    assert covered == {i: (c["covered_through"], c["basis"])
                       for i, c in posterior["coverage"].items()}

    at = attributes(page, "[data-at]", "data-scenario", "data-at")
    horizon = served["/forecast"]
    assert page.get_attribute("[data-horizon-period]", "data-horizon-period") == horizon["period"]
    assert {a["data-scenario"]: float(a["data-at"]) for a in at} == {
        s["id"]: s["at"] for s in horizon["scenarios"]}


# -- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, code, message", [
    (["--set", WORLD, "--out", "brief.txt"], 2, "--out: brief.txt must end in .pdf or .html"),
    (["--set", "nope", "--out", "brief.pdf"], 2, "--set: unknown scenario set 'nope'"),
    (["--set", CONVERGENCE, "--out", "brief.pdf"], 1, "--set: set 'sino-russian-convergence' "
                                                      "has no published posterior yet"),
])
def test_report_refuses_naming_the_option(rendered, monkeypatch, tmp_path, args, code,
                                          message):
    for name, value in env(rendered.pdf.parent).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli_app, ["report", *args])
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())
    assert not list(tmp_path.iterdir())  # nothing written
