"""The bundled scenario sets fit the bundled sample observations and pass the full gate."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import indicators
from forecast import FitSettings, exact_posterior, fit, set_evidence
from indicators import load_catalog, read_observations_csv
from priors import bundled_set_paths, load_bundled_sets

SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
AS_OF = date(2025, 12, 31)


@pytest.fixture(scope="module")
def sample_observations():
    observations, errors = read_observations_csv(SAMPLE, load_catalog(), today=AS_OF)
    assert errors == []
    return observations


def test_both_bundled_sets_load():
    sets = load_bundled_sets()
    assert {"sino-russian-convergence", "world-order-2035"} <= set(sets)
    convergence = sets["sino-russian-convergence"]
    assert convergence.scenario_ids == ("loose", "integrated_ew", "formal_bloc", "crisis")
    assert convergence.period == "quarter"
    assert (convergence.start, convergence.end) == (date(2012, 1, 1), date(2030, 12, 31))
    for required in ("joint_exercise", "joint_patrol", "missile_defense_exercise",
                     "sanctions_action", "satellite_cueing", "radar_coordination",
                     "early_warning_integration", "joint_command", "basing_rights",
                     "nuclear_umbrella"):
        assert required in convergence.indicator_ids
    assert convergence.dynamics is not None
    world = sets["world-order-2035"]
    assert world.scenario_ids == ("hardened_bipolar", "us_russia_thaw", "us_china_cooperation",
                                  "multipolar")


def test_every_bundled_number_cites_its_source():
    """Each line that sets a prior, rate, hazard, mean, sd or stay has a YAML comment."""
    keys = ("prior:", "rate:", "hazard:", "mean:", "stay:", "noise_sd:")
    for path in bundled_set_paths():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(k in line for k in keys) and not line.lstrip().startswith("#"):
                assert "#" in line, f"{path.name}:{number} has a number without a source"


def test_sample_observations_are_real_rows():
    with SAMPLE.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 30
    assert list(rows[0]) == ["date", "indicator", "value", "grade", "source", "url", "note"]
    for row in rows:
        assert "2012-01-01" <= row["date"] <= "2025-12-31"
        assert row["url"].startswith("http") and row["source"]


@pytest.mark.slow
@pytest.mark.parametrize("set_id", ["sino-russian-convergence", "world-order-2035"])
def test_bundled_set_fits_sample_and_passes_the_gate(set_id, sample_observations):
    scenario_set = load_bundled_sets()[set_id]
    evidence = set_evidence(scenario_set, sample_observations, as_of=AS_OF)
    result = fit(scenario_set, evidence, FitSettings())  # learned transitions where declared
    assert result.diagnostics.passed, result.diagnostics
    assert result.path.shape == (evidence.n_periods, len(scenario_set.scenarios))
    np.testing.assert_allclose(result.path[-1], result.probabilities, atol=1e-9)
    # with the transitions held at the identity, the published numbers are the closed form
    static = fit(scenario_set, evidence, FitSettings(dynamic=False))
    assert static.diagnostics.passed, static.diagnostics
    oracle = exact_posterior(scenario_set, evidence)
    np.testing.assert_allclose(static.probabilities, oracle.probability, atol=1e-9)


@pytest.mark.slow
def test_a_year_without_entries_is_not_a_quiet_year(sample_observations):
    """The sample ends in December 2025. A year later, with no review, nothing counts as
    quiet: world order's posterior is the one of 2025-12-31 (a static set, exactly), and the
    convergence set's P(integrated_ew or deeper by 2030) too, within Monte Carlo error ("by"
    counts from the last covered quarter)."""
    sets = load_bundled_sets()
    world, convergence = sets["world-order-2035"], sets["sino-russian-convergence"]
    then, now = AS_OF, date(2026, 12, 1)

    def evidence(scenario_set, as_of):
        return set_evidence(scenario_set, sample_observations, as_of=as_of, reviews=[])

    np.testing.assert_allclose(exact_posterior(world, evidence(world, now)).probability,
                               exact_posterior(world, evidence(world, then)).probability,
                               atol=1e-12)
    deeper = []
    for as_of in (then, now):
        result = fit(convergence, evidence(convergence, as_of), FitSettings())
        assert result.diagnostics.passed, result.diagnostics
        deeper.append(result.outlook["reach_or_deeper"]["integrated_ew"])
    a, b = deeper
    assert a["p_by_end"] > 0.9
    assert abs(a["p_by_end"] - b["p_by_end"]) <= 4 * np.hypot(a["mcse"], b["mcse"]) + 1e-9
    # while the old reading (every empty quarter quiet) flips the answer
    flipped = fit(convergence, set_evidence(convergence, sample_observations, as_of=now,
                                            reviews=[], rule="as_of"), FitSettings())
    assert flipped.outlook["reach_or_deeper"]["integrated_ew"]["p_by_end"] < 0.7
