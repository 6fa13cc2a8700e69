"""The published posterior against the closed form.

docs/design.md, "Correctness is shown by tests": the oracle is `forecast/exact.py`.

Three conjugate sets of our own (counts only; milestones only; all three kinds with graded
evidence), each with weak evidence (about 40 periods) and with overwhelming evidence (hundreds
of periods), tuned so that a scenario the prior disfavours ends near 0.9 — where NUTS over a
latent-scenario mixture returns 0.99 or gets stuck.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from forecast import exact_posterior, fit

from .conftest import make_evidence, simulate

pytestmark = pytest.mark.slow


def assert_matches_exact(result, oracle):
    for k, scenario in enumerate(result.scenarios):
        diff = abs(scenario.probability - oracle.probability[k])
        assert diff <= 0.015, (scenario.id, scenario.probability, oracle.probability[k])
        assert diff <= max(3 * scenario.mcse, 1e-9), (scenario.id, diff, scenario.mcse)
    assert result.diagnostics.passed, result.diagnostics


def assert_parameters_match(result, scenario_set, oracle):
    """NUTS draws of θ[j, k] given scenario k agree with the conjugate posterior means."""
    posterior = result.datatree["posterior"]
    for kind, name in (("count", "rate"), ("milestone", "hazard"), ("signal", "level")):
        if name not in posterior:
            continue
        mcse = az.mcse(result.datatree, var_names=[name])[name]
        for j, spec in enumerate(scenario_set.indicators):
            if spec.kind != kind:
                continue
            for k, scenario_id in enumerate(scenario_set.scenario_ids):
                sel = {f"{kind}_indicator": spec.id, "scenario": scenario_id}
                drawn = float(posterior[name].sel(sel).mean())
                err = float(mcse.sel(sel))
                assert abs(drawn - oracle.posterior_mean[j, k]) <= 5 * err + 1e-9, (
                    spec.id, scenario_id, drawn, oracle.posterior_mean[j, k], err)


def tune_to(target, scenario, candidates, make):
    """The candidate whose exact posterior of ``scenario`` is closest to ``target``."""
    best = min(candidates, key=lambda c: abs(make(c)[1].probability[scenario] - target))
    evidence, oracle = make(best)
    return evidence, oracle


@pytest.mark.parametrize("seed", [1, 2])
def test_counts_weak_evidence(counts_set, model_cache, quick_settings, seed):
    rng = np.random.default_rng(seed)
    evidence = simulate(counts_set, scenario=int(rng.integers(3)), n_periods=40, rng=rng)
    result = fit(counts_set, evidence, quick_settings, cache=model_cache)
    oracle = exact_posterior(counts_set, evidence)
    assert_matches_exact(result, oracle)
    assert_parameters_match(result, counts_set, oracle)


def test_counts_overwhelming_disfavoured_scenario_near_point_nine(counts_set, model_cache,
                                                                  quick_settings):
    n = 400
    rng = np.random.default_rng(7)

    def make(total_drills):
        counts = np.zeros((n, 2))
        counts[:, 0] = rng.multinomial(total_drills, np.full(n, 1 / n))
        counts[:, 1] = np.bincount(rng.integers(0, n, 300), minlength=n)
        evidence = make_evidence(counts_set, counts, np.ones((n, 2)))
        return evidence, exact_posterior(counts_set, evidence)

    evidence, oracle = tune_to(0.9, 2, range(1300, 1800, 10), make)
    # The prior says 0.1; hundreds of periods of evidence say about 0.9, not 0.99.
    assert 0.8 < oracle.probability[2] < 0.97
    result = fit(counts_set, evidence, quick_settings, cache=model_cache)
    assert_matches_exact(result, oracle)
    assert 0.8 < result.scenarios[2].probability < 0.97
    assert_parameters_match(result, counts_set, oracle)


def test_milestones_weak_evidence(milestones_set, model_cache, quick_settings):
    rng = np.random.default_rng(3)
    evidence = simulate(milestones_set, scenario=1, n_periods=40, rng=rng)
    result = fit(milestones_set, evidence, quick_settings, cache=model_cache)
    oracle = exact_posterior(milestones_set, evidence)
    assert_matches_exact(result, oracle)
    assert_parameters_match(result, milestones_set, oracle)


def test_milestones_overwhelming_disfavoured_scenario_near_point_nine(milestones_set,
                                                                      model_cache,
                                                                      quick_settings):
    n = 300

    def make(first):
        counts = np.zeros((n, 3))
        exposure = np.ones((n, 3))
        for j, t in enumerate(first):  # t < 0: the milestone never happened
            if t >= 0:
                counts[t, j] = 1.0
                exposure[t + 1:, j] = 0.0
        evidence = make_evidence(milestones_set, counts, exposure)
        return evidence, exact_posterior(milestones_set, evidence)

    candidates = [(c, r, 50) for c in range(2, 60, 2) for r in range(2, 100, 4)]
    evidence, oracle = tune_to(0.9, 1, candidates, make)
    assert 0.8 < oracle.probability[1] < 0.97  # prior 0.3
    result = fit(milestones_set, evidence, quick_settings, cache=model_cache)
    assert_matches_exact(result, oracle)
    assert_parameters_match(result, milestones_set, oracle)


def test_all_kinds_graded_weak_evidence(all_kinds_set, model_cache, quick_settings):
    rng = np.random.default_rng(11)
    weights = rng.choice([1.0, 0.85, 0.6, 0.35], size=40)
    evidence = simulate(all_kinds_set, scenario=2, n_periods=40, rng=rng, weight=weights)
    result = fit(all_kinds_set, evidence, quick_settings, cache=model_cache)
    oracle = exact_posterior(all_kinds_set, evidence)
    assert_matches_exact(result, oracle)
    assert_parameters_match(result, all_kinds_set, oracle)


def test_all_kinds_graded_overwhelming(all_kinds_set, model_cache, quick_settings):
    n = 300
    rng = np.random.default_rng(5)
    signal = rng.normal(0.9, 2.0, n)

    def make(total_drills):
        weights = np.where(np.arange(n) % 3 == 0, 0.6, 1.0)
        counts = np.zeros((n, 3))
        exposure = np.ones((n, 3))
        sumsq = np.zeros((n, 3))
        counts[:, 0] = rng.multinomial(total_drills, np.full(n, 1 / n)) * weights
        counts[40, 1] = 0.6  # the link, reported by a C-graded source
        exposure[41:, 1] = 0.0
        counts[:, 2] = weights * signal
        exposure[:, 2] = weights
        sumsq[:, 2] = weights * signal**2
        evidence = make_evidence(all_kinds_set, counts, exposure, sumsq)
        return evidence, exact_posterior(all_kinds_set, evidence)

    evidence, oracle = tune_to(0.9, 2, range(1200, 1600, 10), make)
    assert 0.8 < oracle.probability[2] < 0.97  # prior 0.15
    result = fit(all_kinds_set, evidence, quick_settings, cache=model_cache)
    assert_matches_exact(result, oracle)
    assert_parameters_match(result, all_kinds_set, oracle)


@pytest.mark.parametrize("fixture", ["counts_set", "milestones_set", "all_kinds_set"])
def test_no_evidence_gives_the_prior(fixture, request, model_cache, quick_settings):
    scenario_set = request.getfixturevalue(fixture)
    n_ind = len(scenario_set.indicators)
    evidence = make_evidence(scenario_set, np.zeros((0, n_ind)), np.zeros((0, n_ind)))
    result = fit(scenario_set, evidence, quick_settings, cache=model_cache)
    np.testing.assert_allclose(result.probabilities, scenario_set.prior, atol=1e-12)
    assert result.diagnostics.passed
