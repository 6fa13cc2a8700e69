"""The dynamic model: learned transitions on the bundled convergence set, yearly replays, and
the reduction to the static answer when the transitions are the identity."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

import indicators
from forecast import FitSettings, ModelCache, exact_posterior, fit, set_evidence
from indicators import load_catalog, read_observations_csv
from priors import load_bundled_sets, parse_scenario_set

from .conftest import ALL_KINDS, simulate

pytestmark = pytest.mark.slow
SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"


@pytest.fixture(scope="module")
def convergence():
    return load_bundled_sets()["sino-russian-convergence"]


@pytest.fixture(scope="module")
def observations():
    rows, errors = read_observations_csv(SAMPLE, load_catalog(), today=date(2025, 12, 31))
    assert errors == []
    return rows


@pytest.fixture(scope="module")
def cache():
    return ModelCache()


def test_dynamic_fit_of_the_convergence_set_passes_the_full_gate(convergence, observations,
                                                                 cache):
    evidence = set_evidence(convergence, observations, as_of=date(2025, 12, 31))
    result = fit(convergence, evidence, FitSettings(), cache=cache)
    assert result.sampler["transitions"] == "learned"
    assert result.diagnostics.passed, result.diagnostics
    assert result.diagnostics.max_mcse <= 0.005
    assert abs(result.probabilities.sum() - 1) < 1e-9
    # the path ends at the nowcast, and the forecasts start from it
    np.testing.assert_allclose(result.path[-1], result.probabilities, atol=1e-9)
    horizon = result.outlook["horizon"]
    np.testing.assert_allclose(horizon["at"][0], result.probabilities, atol=1e-9)
    assert horizon["periods"][0] == "2025Q4" and horizon["periods"][-1] == "2030Q4"
    at, by = np.array(horizon["at"]), np.array(horizon["by"])
    assert np.all(by >= at - 1e-12) and np.all(np.diff(by, axis=0) >= -1e-12)
    deeper = result.outlook["reach_or_deeper"]["integrated_ew"]
    assert deeper["scenarios"] == ["integrated_ew", "formal_bloc"]
    assert 0 <= deeper["p_by_end"] <= 1
    # learned transitions differ from their prior centre, and rows are probabilities
    for row in ("loose", "integrated_ew"):
        draws = result.datatree["posterior"][f"transition_{row}"].values
        np.testing.assert_allclose(draws.sum(axis=-1), 1.0, atol=1e-9)


@pytest.mark.parametrize("year", range(2015, 2026))
def test_year_end_replays_pass_the_gate(convergence, observations, cache, year):
    evidence = set_evidence(convergence, observations, as_of=date(year, 12, 31))
    result = fit(convergence, evidence, FitSettings(), cache=cache)
    assert result.diagnostics.passed, (year, result.diagnostics)


def test_identity_transitions_reduce_to_the_static_answer():
    text = ALL_KINDS.replace("indicators:", "dynamics:\n  stay: 1.0\nindicators:")
    scenario_set = parse_scenario_set(text)
    evidence = simulate(scenario_set, scenario=1, n_periods=30, rng=np.random.default_rng(9))
    result = fit(scenario_set, evidence, FitSettings(), cache=ModelCache())
    assert result.sampler["transitions"] == "learned"  # the dynamic code path, A = I
    np.testing.assert_allclose(result.probabilities,
                               exact_posterior(scenario_set, evidence).probability, atol=1e-10)
    assert result.diagnostics.max_mcse == 0.0


def test_dynamic_fit_draws_the_parameters_exactly_from_their_conjugate_posteriors(
        convergence, observations, cache):
    evidence = set_evidence(convergence, observations, as_of=date(2025, 12, 31))
    result = fit(convergence, evidence, FitSettings(), cache=cache)
    oracle = exact_posterior(convergence, evidence)
    posterior = result.datatree["posterior"]
    for kind, name in (("count", "rate"), ("milestone", "hazard")):
        draws = posterior[name]
        n = draws.sizes["chain"] * draws.sizes["draw"]
        for j, spec in enumerate(convergence.indicators):
            if spec.kind != kind:
                continue
            values = draws.sel({f"{kind}_indicator": spec.id}).values.reshape(n, -1)
            tolerance = 5 * values.std(axis=0) / np.sqrt(n)
            assert np.all(np.abs(values.mean(axis=0) - oracle.posterior_mean[j]) <= tolerance)
