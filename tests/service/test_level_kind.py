"""The ``level`` kind from outside: its YAML block, its values in the CSV, the API and the CLI.

Every refusal names the field and says what is accepted (the levels, in order); nothing is
stored. A stored level moves the posterior the way the exact oracle says.
"""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from forecast import exact_posterior
from indicators import ObservationFileError, load_catalog, read_observations_csv
from priors import ScenarioSetError, parse_scenario_set
from service.repositories.evidence import evidence_of
from service.repositories.observations import count_observations
from service.repositories.sets import get_set

from .test_api import Api, api  # noqa: F401  (the running app fixture)
from .test_cli import cli, init, run, store  # noqa: F401  (the CLI fixtures)

WORLD = "world-order-2035"
LEVELS = "'in_place', 'partly_lifted', 'fully_lifted'"

SET = """\
id: levels
title: Levels
period: quarter
start: 2020-01-01
scenarios:
  - {id: calm, name: Calm, prior: 0.5}
  - {id: tense, name: Tense, prior: 0.5}
indicators:
  alert:
    kind: level
    name: State of alert
    levels: [green, amber, red]
    calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}
    tense: {probabilities: [0.2, 0.4, 0.4], concentration: 10}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ScenarioSetError) as refused:
        parse_scenario_set(text, source="levels.yaml")
    return [str(p) for p in refused.value.problems]


def test_the_yaml_block_of_the_issue_parses_to_dirichlet_parameters():
    scenario_set = parse_scenario_set(SET)
    spec = scenario_set.indicators[0]
    assert spec.kind == "level" and spec.indicator.levels == ("green", "amber", "red")
    np.testing.assert_allclose(spec.alpha, [[7, 2, 1], [2, 4, 4]])
    np.testing.assert_allclose(spec.beta, [10, 10])


ISSUE_BLOCK = """\
id: issue-block
title: The issue's level block, verbatim
period: quarter
start: 2024-01-01
scenarios:
  - {id: loose, name: Loose, prior: 0.5}
  - {id: integrated_ew, name: Integrated, prior: 0.5}
indicators:
  sanctions_severity:
    kind: level
    name: Severity of Western sanctions on Chinese defence suppliers
    levels: [none, targeted, sectoral, comprehensive]
    loose:         {probabilities: [0.6, 0.3, 0.08, 0.02], concentration: 20}
    integrated_ew: {probabilities: [0.2, 0.5, 0.25, 0.05], concentration: 10}
"""


def test_the_issues_yaml_block_is_the_contract():
    spec = parse_scenario_set(ISSUE_BLOCK).indicators[0]
    assert spec.indicator.levels == ("none", "targeted", "sectoral", "comprehensive")
    np.testing.assert_allclose(spec.alpha, [[12, 6, 1.6, 0.4], [2, 5, 2.5, 0.5]])


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}",
     "calm:  {probabilities: [0.7, 0.3], concentration: 10}",
     "levels.yaml:13: indicators.alert.calm.probabilities: 2 probabilities for 3 levels "
     "(green, amber, red); give one per level, in that order"),
    ("calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}",
     "calm:  {probabilities: [0.7, 0.2, 0.2], concentration: 10}",
     "levels.yaml:13: indicators.alert.calm.probabilities: must sum to 1, got 1.1"),
    ("calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}",
     "calm:  {probabilities: [0.8, 0.2, 0.0], concentration: 10}",
     "levels.yaml:13: indicators.alert.calm.probabilities: each probability must be > 0"),
    ("calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}",
     "calm:  {probabilities: [0.7, 0.2, 0.1]}",
     "levels.yaml:13: indicators.alert.calm.concentration: is required"),
    ("calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}",
     "calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 0}",
     "levels.yaml:13: indicators.alert.calm.concentration: Input should be greater than 0"),
    ("calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}",
     "calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10, sd: 1}",
     "levels.yaml:13: indicators.alert.calm.sd: unknown key 'sd'"),
    ("calm:  {probabilities: [0.7, 0.2, 0.1], concentration: 10}",
     "calm:  {rate: 1.0, sd: 0.5}",
     "levels.yaml:13: indicators.alert.calm.probabilities: is required"),
    ("    levels: [green, amber, red]\n", "",
     "levels.yaml:9: indicators.alert.levels: indicator 'alert': levels: a level indicator "
     "needs a list of at least two level names"),
    ("levels: [green, amber, red]", "levels: [green, amber, green]",
     "indicators.alert.levels: indicator 'alert': levels: 'green' repeated; each level once"),
    ("kind: level", "kind: levle",
     "levels.yaml:10: indicators.alert.kind: unknown kind 'levle'; did you mean 'level'?"),
    ("tense: {probabilities: [0.2, 0.4, 0.4], concentration: 10}\n", "",
     "indicators.alert: scenario 'tense' has no expectation for this level indicator; add e.g. "
     "'tense: {probabilities: [0.5, 0.5], concentration: 10}'"),
])
def test_every_bad_level_block_is_refused_with_its_line_and_field(old, new, expected):
    text = SET.replace(old, new)
    assert text != SET
    problems = _problems(text)
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_a_level_value_is_its_name_or_index_in_the_csv(tmp_path):
    catalog = load_catalog().with_extra(parse_scenario_set(SET).catalog_indicators)
    path = tmp_path / "obs.csv"
    path.write_text("date,indicator,value,grade\n2021-01-02,alert,amber,A1\n"
                    "2021-02-03,alert,2,B2\n2021-03-04,alert, red ,C3\n", encoding="utf-8")
    rows, errors = read_observations_csv(path, catalog, today=date(2025, 1, 1))
    assert errors == [] and [r.value for r in rows] == [1.0, 2.0, 2.0]
    path.write_text("date,indicator,value,grade\n2021-01-02,alert,orange,A1\n"
                    "2021-02-03,alert,3,A1\n2021-02-03,alert,1.5,A1\n2021-02-03,alert,,A1\n",
                    encoding="utf-8")
    with pytest.raises(ObservationFileError) as refused:
        read_observations_csv(path, catalog, today=date(2025, 1, 1))
    hint = "use one of 'green', 'amber', 'red' (or its 0-based index, 0–2) for 'alert'"
    assert [str(e) for e in refused.value.errors] == [
        f"row 2: value: 'orange' is not a level; {hint}",
        f"row 3: value: '3' is not a level; {hint}",
        f"row 4: value: '1.5' is not a level; {hint}",
        f"row 5: value: is required for a level: {hint}",
    ]


def test_the_api_takes_a_level_by_name_refuses_others_and_serves_the_levels(api: Api):  # noqa: F811
    before = count_observations(api.store)
    hint = f"use one of {LEVELS} (or its 0-based index, 0–2) for 'sanctions_on_russia'"
    for value, message in (("lifted", f"value: 'lifted' is not a level; {hint}"),
                           (3, f"value: 3 is not a level; {hint}"),
                           (None, f"value: is required for a level: {hint}")):
        body = {"indicator": "sanctions_on_russia", "date": "2025-06-01", "grade": "A1"}
        if value is not None:
            body["value"] = value
        response = api.client.post("/v1/observations", json=body, headers=api.analyst)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == {"code": "invalid", "message": message,
                                            "field": "value"}
    assert count_observations(api.store) == before
    response = api.client.post("/v1/observations", json={
        "indicator": "sanctions_on_russia", "date": "2025-06-01", "value": "partly_lifted",
        "grade": "A1"}, headers=api.analyst)
    assert response.status_code == 201, response.text
    assert response.json()["value"] == 1.0
    detail = api.client.get(f"/v1/sets/{WORLD}", headers=api.reader).json()
    level = next(i for i in detail["indicators"] if i["id"] == "sanctions_on_russia")
    assert level["kind"] == "level"
    assert level["levels"] == ["in_place", "partly_lifted", "fully_lifted"]
    assert level["expectations"]["us_russia_thaw"] == {
        "probabilities": [0.35, 0.45, 0.2], "concentration": 10.0}
    # the stored level is evidence: the exact posterior moves toward the thaw
    scenario_set = get_set(api.store, set_id=WORLD)
    evidence = evidence_of(api.store, scenario_set=scenario_set, as_of=date(2025, 12, 31))
    col = evidence.column("sanctions_on_russia")
    assert evidence.tallies[:, col].sum(axis=0)[1] == pytest.approx(1.0)


def test_the_cli_observes_a_level_by_name_and_refuses_others(cli, store):  # noqa: F811
    init(cli)
    refused = run(cli, "observe", "--indicator", "sanctions_on_russia", "--date", "2025-03-04",
                  "--value", "sectoral", code=2)
    assert refused.stderr.startswith("error: value: 'sectoral' is not a level; use one of "
                                     f"{LEVELS}"), refused.stderr
    assert count_observations(store) == 0
    stored = run(cli, "observe", "--indicator", "sanctions_on_russia", "--date", "2025-03-04",
                 "--value", "fully_lifted", "--grade", "B2", "--json")
    assert json.loads(stored.stdout)["value"] == 2.0
    scenario_set = get_set(store, set_id=WORLD)
    evidence = evidence_of(store, scenario_set=scenario_set, as_of=date(2025, 12, 31))
    oracle = exact_posterior(scenario_set, evidence)
    assert oracle.probability[scenario_set.scenario_ids.index("us_russia_thaw")] > (
        scenario_set.prior[scenario_set.scenario_ids.index("us_russia_thaw")])
