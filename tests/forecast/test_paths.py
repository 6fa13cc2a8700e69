"""The dynamic model by its scenario paths, against the sum over every path (the oracle).

`forecast.exact.exact_dynamic_posterior` sums over all K^T paths with numpy; `forecast.paths`
scores paths by segments with numba. The two must agree to rounding, and every estimator built
on the enumeration — iid draws, their importance weights, importance sampling over the paths
beyond it — must land within its reported Monte Carlo error of the oracle.
"""

from __future__ import annotations

import sys
from itertools import product

import numpy as np
import pytest
from scipy.special import logsumexp

from forecast import FitSettings, GateSettings, exact_dynamic_posterior, fit
from forecast.model import EvidenceArrays, regime_loglik
from forecast.paths import (
    all_paths,
    conditional_draws,
    enumerate_paths,
    path_counts,
    path_model,
    sample_paths,
    scorer,
    segment_filter,
)
from priors import parse_scenario_set

from .test_dynamic import MOVING, _switching_evidence

FIT = sys.modules["forecast.fit"]


@pytest.fixture(scope="module")
def moving():
    scenario_set = parse_scenario_set(MOVING)
    evidence = _switching_evidence(scenario_set, np.random.default_rng(5))
    arrays = EvidenceArrays.select(scenario_set, evidence)
    return scenario_set, evidence, arrays, path_model(scenario_set, arrays)


@pytest.fixture(scope="module")
def oracle(moving):
    scenario_set, evidence, _, _ = moving
    return exact_dynamic_posterior(scenario_set, evidence)


def test_every_path_scored_by_segments_is_the_oracle(moving, oracle):
    _, _, _, model = moving
    paths, log_w = all_paths(model)
    assert len(paths) == 3**9  # every move allowed
    weights = np.exp(log_w - logsumexp(log_w))
    nowcast = np.array([weights[paths[:, -1] == k].sum() for k in range(3)])
    np.testing.assert_allclose(nowcast, oracle.probability, atol=1e-13)
    smoothed = np.stack([(weights[:, None] * (paths == k)).sum(axis=0) for k in range(3)], 1)
    np.testing.assert_allclose(smoothed, oracle.path, atol=1e-13)
    # the batch scorer (any path, any length) gives the same log weights
    again, segments = scorer(model)(paths)
    np.testing.assert_allclose(again, log_w, atol=1e-10)
    np.testing.assert_array_equal(segments, 1 + (np.diff(paths, axis=1) != 0).sum(axis=1))


def test_the_enumeration_sums_every_path_once(moving, oracle):
    _, _, _, model = moving
    counts = list(path_counts(model, 9))
    assert sum(counts) == 3**9 and counts[:3] == [3, 3 * 2 * 8, 3 * 4 * 28]
    full = enumerate_paths(model, 9)
    assert full.n_paths == 3**9
    np.testing.assert_allclose(full.nowcast(3), oracle.probability, atol=1e-13)
    _, log_w = all_paths(model)
    assert full.total() == pytest.approx(logsumexp(log_w), abs=1e-10)
    # truncated: the nowcast of the paths of at most 3 segments, exactly
    paths, _ = all_paths(model)
    short = (1 + (np.diff(paths, axis=1) != 0).sum(axis=1)) <= 3
    w = np.exp(log_w[short] - logsumexp(log_w[short]))
    np.testing.assert_allclose(enumerate_paths(model, 3).nowcast(3),
                               [w[paths[short, -1] == k].sum() for k in range(3)], atol=1e-13)


def test_sampled_paths_follow_the_truncated_posterior(moving):
    _, _, _, model = moving
    sums = enumerate_paths(model, 2)
    paths, log_w = all_paths(model)
    short = (np.diff(paths, axis=1) != 0).sum(axis=1) <= 1
    target = np.exp(log_w[short] - logsumexp(log_w[short]))
    drawn = sample_paths(model, sums, 60_000, np.random.default_rng(1))
    assert drawn.shape == (60_000, 9)
    index = {tuple(p): i for i, p in enumerate(paths[short])}
    freq = np.bincount([index[tuple(p)] for p in drawn], minlength=short.sum()) / 60_000
    # systematic resampling: every path within one draw of its expected share
    assert np.abs(freq - target).max() <= 1.0 / 60_000 + 1e-12


def test_the_segment_filter_splits_each_draws_path_posterior_by_segments(moving):
    scenario_set, _, arrays, model = moving
    paths = sample_paths(model, enumerate_paths(model, 9), 3, np.random.default_rng(2))
    transitions, theta = conditional_draws(model, paths, np.random.default_rng(3))
    emissions = regime_loglik(scenario_set, arrays.counts, arrays.exposure, theta, math=np)
    got = segment_filter(transitions, np.ascontiguousarray(emissions), model.prior, 4)
    for d in range(3):
        log_p, segs, last = [], [], []
        for z in product(range(3), repeat=9):
            z = np.array(z)
            log_p.append(np.log(model.prior[z[0]]) + np.log(transitions[d][z[:-1], z[1:]]).sum()
                         + emissions[d][np.arange(9), z].sum())
            segs.append(1 + (np.diff(z) != 0).sum())
            last.append(z[-1])
        p = np.exp(np.array(log_p) - logsumexp(log_p))
        segs, last = np.array(segs), np.array(last)
        want = np.array([[p[(segs == s + 1) & (last == k)].sum() for s in range(4)]
                         for k in range(3)])
        np.testing.assert_allclose(got[d], want, atol=1e-13)


def test_conditional_draws_are_the_conjugate_posteriors_of_the_path(moving):
    scenario_set, _, arrays, model = moving
    path = np.array([[0, 0, 0, 0, 2, 2, 2, 2, 2]] * 40_000, dtype=np.int8)
    transitions, theta = conditional_draws(model, path, np.random.default_rng(4))
    # row 0: stays 3 times, moves once to 2: Dirichlet(c + (3, 0, 1)) over (stay, 1, 2)
    _, columns, concentration = [r for r in FIT.transition_rows(scenario_set) if r[0] == 0][0]
    counts = np.zeros(3)
    counts[[columns.index(0), columns.index(2)]] = [3, 1]
    alpha = concentration + counts
    np.testing.assert_allclose(transitions[:, 0, columns].mean(axis=0), alpha / alpha.sum(),
                               atol=3e-3)
    # the drill rate under scenario 2: Gamma(a + Σ n over its periods, b + Σ e)
    spec = scenario_set.indicators[0]
    n, e = arrays.counts[4:, 0].sum(), arrays.exposure[4:, 0].sum()
    assert theta["rate"][:, 0, 2].mean() == pytest.approx((spec.alpha[2] + n)
                                                          / (spec.beta[2] + e), rel=0.01)
    # a scenario the path never visits keeps its prior
    assert theta["rate"][:, 0, 1].mean() == pytest.approx(spec.alpha[1] / spec.beta[1],
                                                          rel=0.02)


def _settings(**sampler):
    return FitSettings.from_mapping({"sampler": {"method": "paths", **sampler}})


def test_a_fit_that_enumerates_every_path_is_exact(moving, oracle):
    scenario_set, evidence, _, _ = moving
    result = fit(scenario_set, evidence, _settings())  # 3^9 paths: within the budget
    assert result.sampler["name"] == "paths" and result.sampler["exact"]
    np.testing.assert_allclose(result.probabilities, oracle.probability, atol=1e-12)
    assert result.diagnostics.max_mcse == pytest.approx(0.0, abs=1e-15)
    assert result.diagnostics.passed


@pytest.mark.parametrize("budget", [60, 400])  # at most 2, 3 segments of 9 periods
def test_truncated_paths_and_their_weights_land_on_the_oracle(moving, oracle, budget):
    scenario_set, evidence, _, _ = moving
    result = fit(scenario_set, evidence, _settings(max_paths=budget, path_draws=40_000))
    assert result.sampler["segments"] == (2 if budget == 60 else 3)
    assert result.sampler["tail_share"] > 0.01  # the paths beyond carry real mass
    mcse = np.array([s.mcse for s in result.scenarios])
    assert np.all(np.abs(result.probabilities - oracle.probability) <= 4 * mcse + 1e-4), (
        result.probabilities, oracle.probability, mcse, result.sampler)
    # the kept draws are posterior draws: θ while k is in force, as the oracle pools it
    posterior = result.datatree["posterior"]
    for j, name in enumerate(("rate", "hazard", "level")):
        draws = posterior[name].values.reshape(-1, 3)
        se = draws.std(axis=0) / np.sqrt(draws.shape[0]) * 3  # resampled: duplicates
        assert np.all(np.abs(draws.mean(axis=0) - oracle.posterior_mean[j]) <= 5 * se + 1e-3)


def test_importance_sampling_over_the_long_paths_lands_on_the_oracle(moving, oracle):
    scenario_set, _, arrays, model = moving
    exact = FIT._Exact(model, enumerate_paths(model, 2), enumerate_paths(model, 2).nowcast(3))
    rng = np.random.default_rng(7)
    components = FIT._truncated_draws(scenario_set, arrays, exact, 256, rng)
    estimate = FIT._tail_paths(scenario_set, arrays, exact, components, 40_000, rng,
                               GateSettings())
    assert estimate["tail"] > 0.1 and estimate["failures"] == [], estimate["failures"]
    assert np.all(np.abs(estimate["probability"] - oracle.probability)
                  <= 4 * estimate["mcse"] + 1e-4), (estimate["probability"], estimate["mcse"])
    # the long-path mass: the oracle's share of paths with more than 2 segments
    paths, log_w = all_paths(model)
    w = np.exp(log_w - logsumexp(log_w))
    long = (np.diff(paths, axis=1) != 0).sum(axis=1) >= 2
    assert estimate["tail"] == pytest.approx(w[long].sum(), rel=0.05)
