"""The dynamic model: learned transitions on the bundled convergence set, yearly replays, and
the reduction to the static answer when the transitions are the identity."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import indicators
from forecast import (
    DEFAULT_CACHE,
    FitSettings,
    ModelCache,
    exact_dynamic_posterior,
    exact_posterior,
    fit,
    set_evidence,
)
from indicators import load_catalog, read_observations_csv
from priors import load_bundled_sets, parse_scenario_set

from .conftest import ALL_KINDS, make_evidence, simulate

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
    """The process-wide cache: `tests/test_bundled.py` fits the same compiled model."""
    return DEFAULT_CACHE


@pytest.mark.parametrize("seed", [107, 110])
def test_every_chain_starts_in_the_mode_that_holds_the_mass(convergence, observations, cache,
                                                           seed):
    """Seeds whose chains, started at PyMC's prior-centred points, had one chain stuck in the
    minor 'loose throughout' mode (P(loose now) ≈ 1 in that chain, r_hat 1.18 and 1.53): from
    the posterior mode, every chain agrees and the gate passes."""
    evidence = set_evidence(convergence, observations, as_of=date(2025, 12, 31))
    result = fit(convergence, evidence, FitSettings.from_mapping({"sampler": {"seed": seed}}),
                 cache=cache)
    assert result.diagnostics.passed, result.diagnostics
    per_chain = result.datatree["posterior"]["scenario_probability"].mean("draw")
    assert float(per_chain.sel(scenario="loose").max()) < 0.05, per_chain.values
    logp = result.datatree["sample_stats"]["logp"].mean("draw").values
    assert logp.max() - logp.min() < 5, logp  # the minor mode sat ~19 nats lower


def test_a_fit_short_only_of_precision_adds_chains_and_keeps_the_first(convergence,
                                                                      observations, cache):
    """MCSE alone failing: more chains of the same length join the first run's, whose draws
    are kept (the first run's chains are in the joined posterior unchanged)."""
    evidence = set_evidence(convergence, observations, as_of=date(2025, 12, 31))
    # an MCSE no 4 × 1000 draws reach, r_hat relaxed so that precision is all that fails
    sampler = {"dynamic_draws": 1000, "seed": 5}
    strict = {"sampler": {**sampler, "max_draws": 2000}, "gate": {"max_mcse": 0.0005,
                                                                  "max_rhat": 1.05}}
    result = fit(convergence, evidence, FitSettings.from_mapping(strict), cache=cache)
    first = fit(convergence, evidence, FitSettings.from_mapping(
        {"sampler": {**sampler, "max_draws": 1000}, "gate": strict["gate"]}), cache=cache)
    assert first.diagnostics.failures and all(
        f.startswith("MCSE") for f in first.diagnostics.failures), first.diagnostics
    assert result.sampler["runs"] == 2 and result.sampler["chains"] == 8
    assert first.sampler["runs"] == 1 and first.sampler["chains"] == 4
    joined = result.datatree["posterior"]["rate"].values
    assert joined.shape[0] == 8
    np.testing.assert_array_equal(joined[:4], first.datatree["posterior"]["rate"].values)


def test_dynamic_fit_of_the_convergence_set_passes_the_full_gate(convergence, observations,
                                                                 cache):
    evidence = set_evidence(convergence, observations, as_of=date(2025, 12, 31))
    sampled = FitSettings.from_mapping({"sampler": {"reweight": False}})  # not the last fit's
    result = fit(convergence, evidence, sampled, cache=cache)
    assert result.sampler["transitions"] == "learned" and result.sampler["name"] == "nutpie"
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


def test_a_set_whose_scenarios_cannot_move_is_fitted_exactly_as_static():
    text = ALL_KINDS.replace("indicators:", "dynamics:\n  stay: 1.0\nindicators:")
    scenario_set = parse_scenario_set(text)
    evidence = simulate(scenario_set, scenario=1, n_periods=30, rng=np.random.default_rng(9))
    result = fit(scenario_set, evidence, FitSettings(), cache=ModelCache())
    assert result.sampler["transitions"] == "identity"  # nothing to learn
    np.testing.assert_allclose(result.probabilities,
                               exact_posterior(scenario_set, evidence).probability, atol=1e-10)
    assert result.diagnostics.max_mcse == 0.0


# Three scenarios that move freely, nine quarters (3^9 paths to enumerate): low activity for
# four quarters, then high; the link milestone in quarter 7. Moderate evidence, so the answer
# is far from both the prior and the static (no-change) posterior.
MOVING = ALL_KINDS.replace("indicators:", """dynamics:
  stay: 0.8
  moves: {low: [mid, high], mid: [low, high], high: [low, mid]}
  concentration: 10
indicators:""")


def _switching_evidence(scenario_set, rng):
    path = np.array([0] * 4 + [2] * 5)
    counts, exposure, sumsq = np.zeros((9, 3)), np.ones((9, 3)), np.zeros((9, 3))
    counts[:, 0] = rng.poisson(np.where(path == 0, 0.8, 2.2))
    counts[6, 1], exposure[7:, 1] = 1.0, 0.0
    level = rng.normal(np.where(path == 0, 0.0, 1.5), 2.0)
    counts[:, 2], sumsq[:, 2] = 0.85 * level, 0.85 * level**2  # graded B2: weight 0.7225
    exposure[:, 2] = 0.85
    return make_evidence(scenario_set, counts, exposure, sumsq)


def test_dynamic_fit_equals_the_sum_over_every_scenario_path():
    scenario_set = parse_scenario_set(MOVING)
    evidence = _switching_evidence(scenario_set, np.random.default_rng(5))
    oracle = exact_dynamic_posterior(scenario_set, evidence)
    static = exact_posterior(scenario_set, evidence).probability
    assert np.abs(oracle.probability - static).max() > 0.1  # the test can tell them apart
    result = fit(scenario_set, evidence, FitSettings(), cache=ModelCache())
    assert result.sampler["transitions"] == "learned"
    assert result.diagnostics.passed, result.diagnostics
    mcse = np.array([s.mcse for s in result.scenarios])
    assert np.all(np.abs(result.probabilities - oracle.probability) <= 4 * mcse + 1e-3)
    # θ[j, k] is the parameter while k is in force: its posterior mean pools, path by path,
    # only the periods spent in k
    posterior = result.datatree["posterior"]
    for j, (kind, name) in enumerate((("count", "rate"), ("milestone", "hazard"),
                                      ("signal", "level"))):
        draws = posterior[name].values.reshape(-1, 3)
        se = draws.std(axis=0) / np.sqrt(result.diagnostics.min_ess_bulk)
        assert np.all(np.abs(draws.mean(axis=0) - oracle.posterior_mean[j]) <= 5 * se), kind


def _one_count_less(evidence, period, column):
    """The evidence as it stood before one more event was logged in (period, column)."""
    counts = evidence.counts.copy()
    assert counts[period, column] >= 1
    counts[period, column] -= 1
    return dataclasses.replace(evidence, counts=counts)


def test_a_refit_reweights_the_last_sampled_posterior_and_matches_the_path_sum():
    scenario_set = parse_scenario_set(MOVING)
    evidence = _switching_evidence(scenario_set, np.random.default_rng(5))
    cache = ModelCache()
    base = fit(scenario_set, _one_count_less(evidence, 7, 0), FitSettings(), cache=cache)
    assert base.sampler["name"] == "nutpie" and base.diagnostics.passed, base.diagnostics
    result = fit(scenario_set, evidence, FitSettings(), cache=cache)
    assert result.sampler["name"] == "psis", result.sampler
    assert result.sampler["base_evidence_hash"] == base.evidence_hash
    assert result.diagnostics.passed and result.diagnostics.pareto_k <= 0.7, result.diagnostics
    oracle = exact_dynamic_posterior(scenario_set, evidence)
    assert np.abs(oracle.probability - exact_dynamic_posterior(
        scenario_set, _one_count_less(evidence, 7, 0)).probability).max() > 0.01  # it moved
    mcse = np.array([s.mcse for s in result.scenarios])
    assert np.all(np.abs(result.probabilities - oracle.probability) <= 4 * mcse + 1e-3)
    np.testing.assert_allclose(result.path[-1], result.probabilities, atol=1e-9)
    # the kept draws are equally weighted: the forecasts start from the published nowcast
    np.testing.assert_allclose(result.outlook["horizon"]["at"][0], result.probabilities,
                               atol=4 * mcse.max() + 1e-3)
    # a seed asks for a sampler run of its own
    seeded = fit(scenario_set, evidence, FitSettings.from_mapping({"sampler": {"seed": 3}}),
                 cache=cache)
    assert seeded.sampler["name"] == "nutpie"


def test_evidence_the_last_posterior_cannot_cover_is_sampled_afresh():
    scenario_set = parse_scenario_set(MOVING)
    evidence = _switching_evidence(scenario_set, np.random.default_rng(5))
    cache = ModelCache()
    fit(scenario_set, evidence, FitSettings(), cache=cache)
    # drills at six times the rate of any draw's scenario: far outside what the draws cover
    counts = evidence.counts.copy()
    counts[:, 0] *= 6
    surge = dataclasses.replace(evidence, counts=counts)
    result = fit(scenario_set, surge, FitSettings(), cache=cache)
    assert result.sampler["name"] == "nutpie", result.sampler
    assert result.sampler["reweight_rejected"], result.sampler
    assert result.diagnostics.passed, result.diagnostics
    oracle = exact_dynamic_posterior(scenario_set, surge)
    mcse = np.array([s.mcse for s in result.scenarios])
    assert np.all(np.abs(result.probabilities - oracle.probability) <= 4 * mcse + 1e-3)
