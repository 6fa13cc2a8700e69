"""Horizon forecasts, first passage and milestone timing against closed forms and simulation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from forecast.hmm import forward_filter
from forecast.horizon import (
    Draws,
    first_passage,
    mcse_of,
    milestone_occurrence,
    outlook_summary,
    state_forecast,
    timing,
)
from forecast.model import EvidenceArrays, kind_groups, regime_loglik
from forecast.ops import filter_draws, forward_backward, regime_forward_backward

from .conftest import make_evidence, simulate


def pinned(alpha, transition, n=8):
    return Draws(alpha=np.tile(alpha, (n, 1)), transition=np.tile(transition, (n, 1, 1)),
                 n_chains=2)


def random_chain(rng, k=4):
    transition = rng.dirichlet(np.ones(k), size=k) * 0.3 + np.eye(k) * 0.7
    return rng.dirichlet(np.ones(k)), transition


def test_forecast_with_pinned_transitions_is_alpha_times_matrix_power():
    rng = np.random.default_rng(1)
    alpha, transition = random_chain(rng)
    _, mean = state_forecast(pinned(alpha, transition), 24)
    for h in (0, 1, 5, 24):
        np.testing.assert_allclose(mean[h], alpha @ np.linalg.matrix_power(transition, h),
                                   atol=1e-9, rtol=0)


def test_first_passage_agrees_with_simulating_the_chain():
    rng = np.random.default_rng(2)
    alpha, transition = random_chain(rng)
    transition[3] = [0.05, 0.05, 0.0, 0.9]  # state 2 unreachable from 3 in one step
    steps = 12
    by = first_passage(pinned(alpha, transition), [2], steps).mean(axis=0)
    n_paths = 100_000
    state = rng.choice(4, size=n_paths, p=alpha)
    reached = state == 2
    simulated = [reached.mean()]
    cumulative = np.cumsum(transition, axis=1)
    for _ in range(steps):
        u = rng.random(n_paths)
        state = (u[:, None] > cumulative[state]).sum(axis=1)
        reached |= state == 2
        simulated.append(reached.mean())
    np.testing.assert_allclose(by, simulated, atol=0.01)


def test_milestone_timing_agrees_with_simulation():
    rng = np.random.default_rng(3)
    alpha, transition = random_chain(rng, k=3)
    hazard = np.array([0.01, 0.08, 0.2])
    steps = 16
    draws = pinned(alpha, transition)
    cdf = milestone_occurrence(draws, np.tile(hazard, (8, 1)), steps).mean(axis=0)
    n_paths = 100_000
    state = rng.choice(3, size=n_paths, p=alpha)
    happened = np.zeros(n_paths, bool)
    simulated = [0.0]
    cumulative = np.cumsum(transition, axis=1)
    for _ in range(steps):
        state = (rng.random(n_paths)[:, None] > cumulative[state]).sum(axis=1)
        happened |= rng.random(n_paths) < hazard[state]
        simulated.append(happened.mean())
    np.testing.assert_allclose(cdf, simulated, atol=0.01)


def test_static_set_forecast_is_the_nowcast():
    alpha = np.array([0.6, 0.3, 0.1])
    draws = pinned(alpha, np.eye(3))
    _, at = state_forecast(draws, 10)
    by = np.stack([first_passage(draws, [k], 10).mean(axis=0) for k in range(3)], axis=-1)
    np.testing.assert_allclose(at, np.tile(alpha, (11, 1)), atol=1e-15)
    np.testing.assert_allclose(by, at, atol=1e-15)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5), st.integers(1, 30))
def test_by_is_at_least_at_and_never_falls(seed, k, steps):
    rng = np.random.default_rng(seed)
    n = 5
    alpha = rng.dirichlet(np.ones(k), size=n)
    transition = rng.dirichlet(np.ones(k) * 0.5, size=(n, k))
    draws = Draws(alpha=alpha, transition=transition, n_chains=1)
    _, at = state_forecast(draws, steps)
    for target in range(k):
        by = first_passage(draws, [target], steps).mean(axis=0)
        assert np.all(by >= at[:, target] - 1e-12)
        assert np.all(np.diff(by) >= -1e-12)


def test_timing_reads_median_and_interval_off_the_cdf():
    from datetime import date
    cdf = np.array([0.0, 0.05, 0.2, 0.5, 0.7, 0.85])
    labels = [f"p{i}" for i in range(6)]
    starts = [date(2026, i + 1, 1) for i in range(6)]
    out = timing(cdf, labels, starts, 0.001)
    assert out["median"]["period"] == "p3" and out["interval80"][0]["period"] == "p2"
    assert out["interval80"][1] is None  # 0.9 is not reached before the end
    assert out["p_by_end"] == 0.85


def test_mcse_is_zero_for_identical_draws_and_near_sd_over_root_n_for_iid():
    rng = np.random.default_rng(0)
    assert mcse_of(np.ones((400, 3)), 4).tolist() == [0.0, 0.0, 0.0]
    values = rng.normal(size=(4000, 1))
    assert mcse_of(values, 4)[0] == pytest.approx(1 / np.sqrt(4000), rel=0.15)


def test_forward_backward_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    alpha, transition = random_chain(rng)
    log_b = rng.normal(size=(30, 4)) * 2
    loglik, d_a, d_b, d_p = forward_backward(transition, log_b, alpha)
    assert loglik == pytest.approx(forward_filter(alpha, transition, log_b)[1], rel=1e-12)
    eps = 1e-6
    for i, j in [(0, 0), (1, 3), (3, 2)]:
        up, down = transition.copy(), transition.copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (forward_backward(up, log_b, alpha)[0]
                   - forward_backward(down, log_b, alpha)[0]) / (2 * eps)
        assert d_a[i, j] == pytest.approx(numeric, rel=1e-5)
    for t, k in [(0, 1), (17, 2), (29, 3)]:
        up, down = log_b.copy(), log_b.copy()
        up[t, k] += eps
        down[t, k] -= eps
        numeric = (forward_backward(transition, up, alpha)[0]
                   - forward_backward(transition, down, alpha)[0]) / (2 * eps)
        assert d_b[t, k] == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    np.testing.assert_allclose(d_b.sum(axis=1), 1.0, atol=1e-12)  # smoothed probabilities


def test_filter_draws_matches_forward_filter():
    rng = np.random.default_rng(5)
    alpha, transition = random_chain(rng)
    log_b = rng.normal(size=(2, 20, 4))  # each draw has its own emissions
    batch, loglik = filter_draws(np.stack([transition, np.eye(4)]), log_b, alpha)
    for s, matrix in enumerate((transition, np.eye(4))):
        filtered, expected = forward_filter(alpha, matrix, log_b[s])
        np.testing.assert_allclose(batch[s], filtered, atol=1e-12)
        assert loglik[s] == pytest.approx(expected, rel=1e-12)


def test_milestone_reported_before_the_window_is_read_as_having_happened(milestones_set):
    counts, exposure = np.zeros((6, 3)), np.ones((6, 3))
    exposure[:, 0] = 0.0  # cueing: never at risk in the window (reported before its start)
    counts[2, 1], exposure[3:, 1] = 1.0, 0.0  # radar: happened in the third month
    evidence = make_evidence(milestones_set, counts, exposure)
    arrays = EvidenceArrays.select(milestones_set, evidence)
    draws = pinned(np.array([0.7, 0.3]), np.eye(2))
    hazard = np.tile([[0.01, 0.05]], (8, 1))
    posterior = xr.Dataset({"hazard": (("sample", "milestone_indicator", "scenario"),
                                       np.repeat(hazard[:, None, :], 3, axis=1))},
                           coords={"milestone_indicator": ["cueing", "radar", "command"]})
    milestones = outlook_summary(milestones_set, evidence, arrays, draws, posterior)["milestones"]
    assert milestones["cueing"]["occurred"] == {"period": arrays.labels[0], "weight": None,
                                                "before_window": True}
    assert milestones["radar"]["occurred"]["period"] == arrays.labels[2]
    assert milestones["radar"]["occurred"]["before_window"] is False
    assert milestones["command"]["occurred"] is None and 0 < milestones["command"]["p_by_end"]


def _features(scenario_set, theta, math=np):
    """φ(θ) of every kind, concatenated as the model feeds the Op."""
    from indicators.kinds import NUMPY

    parts = [kind.features(specs, theta[kind.parameter], math=NUMPY if math is np else math)
             for kind, _, specs in kind_groups(scenario_set)]
    return np.concatenate(parts, axis=0) if math is np else math.concatenate(parts, axis=0)


def test_fused_regime_op_equals_emissions_plus_forward_backward(all_kinds_set):
    """`RegimeHMM` = `regime_loglik` + forward–backward; its feature gradient = finite
    differences."""
    rng = np.random.default_rng(8)
    evidence = simulate(all_kinds_set, scenario=2, n_periods=25, rng=rng, weight=0.85)
    arrays = EvidenceArrays.select(all_kinds_set, evidence)
    alpha, transition = random_chain(rng, k=3)
    theta = {"rate": np.array([[0.8, 1.2, 2.1]]), "hazard": np.array([[0.01, 0.04, 0.09]]),
             "level": np.array([[0.1, 0.6, 1.4]])}
    statistics = arrays.by_kind["regime_statistics"]

    def fused(features):
        return regime_forward_backward(transition, alpha, features, statistics)

    features = _features(all_kinds_set, theta)
    loglik, d_a, d_p, d_features = fused(features)
    log_b = regime_loglik(all_kinds_set, arrays.counts, arrays.exposure, theta, math=np)
    expected = forward_backward(transition, log_b, alpha)
    assert loglik == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(d_a, expected[1], rtol=1e-10)
    np.testing.assert_allclose(d_p, expected[3], rtol=1e-10)
    eps = 1e-7
    for f in range(features.shape[0]):
        for k in range(3):
            up, down = features.copy(), features.copy()
            up[f, k] += eps
            down[f, k] -= eps
            numeric = (fused(up)[0] - fused(down)[0]) / (2 * eps)
            assert d_features[f, k] == pytest.approx(numeric, rel=1e-5, abs=1e-6), (f, k)


def test_regime_op_in_a_graph_places_the_moves_and_differentiates_them(all_kinds_set):
    """The Op as the model uses it: A built from its free entries (row 1 absorbing), the value
    equal to emissions + forward–backward on that A, and PyTensor's gradient w.r.t. every
    parameter — moves included — equal to finite differences (`pytensor.gradient.verify_grad`)."""
    import pytensor
    import pytensor.tensor as pt

    from forecast.ops import regime_hmm_loglik

    rng = np.random.default_rng(11)
    arrays = EvidenceArrays.select(all_kinds_set, simulate(all_kinds_set, scenario=0,
                                                           n_periods=20, rng=rng, weight=0.9))
    rows, columns = [0, 0, 0, 2, 2], [0, 1, 2, 2, 0]  # row 1 is absorbing: the identity's
    moves = np.array([0.8, 0.15, 0.05, 0.9, 0.1])
    transition = np.eye(3)
    transition[0] = [0.8, 0.15, 0.05]
    transition[2] = [0.1, 0.0, 0.9]
    prior = np.array([0.5, 0.3, 0.2])
    theta = {"rate": np.array([[0.8, 1.2, 2.1]]), "hazard": np.array([[0.01, 0.04, 0.09]]),
             "level": np.array([[0.1, 0.6, 1.4]])}
    statistics = arrays.by_kind["regime_statistics"]

    def loglik(m, rate, hazard, level):
        theta = {"rate": rate, "hazard": hazard, "level": level}
        return regime_hmm_loglik(m, rows, columns, prior, _features(all_kinds_set, theta, pt),
                                 statistics)

    inputs = [pt.vector("m"), pt.matrix("rate"), pt.matrix("hazard"), pt.matrix("level")]
    value = pytensor.function(inputs, loglik(*inputs))(moves, *theta.values())
    log_b = regime_loglik(all_kinds_set, arrays.counts, arrays.exposure, theta, math=np)
    assert value == pytest.approx(forward_backward(transition, log_b, prior)[0], rel=1e-12)
    pytensor.gradient.verify_grad(loglik, [moves, *theta.values()], rng=rng, eps=1e-7,
                                  abs_tol=1e-5, rel_tol=1e-5)
