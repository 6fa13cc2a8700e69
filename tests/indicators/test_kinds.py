"""The contract every registered kind keeps, checked kind by kind against its own closed forms.

For random statistics: the model's ``log_marginal`` (one formula for NumPy and PyTensor) equals
the oracle's independently written term and the path estimator's jitted one; the marginal is
the normalising constant of prior × likelihood (so the conjugate update it implies is the
kind's ``posterior_mean``, checked by drawing from ``conditional_draw``); ``features`` times
``regime_statistics`` is the log likelihood up to a θ-free constant; ``predictive`` draws what
the likelihood says.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
import pytest

from indicators.kinds import KINDS, NUMPY, get_kind
from indicators.kinds import count as count_kind
from indicators.kinds import level as level_kind
from indicators.kinds import milestone as milestone_kind
from indicators.kinds import signal as signal_kind
from priors import parse_scenario_set

SET = """
id: kinds
title: One of each kind
period: quarter
start: 2000-01-01
scenarios:
  - {id: a, name: A, prior: 0.6}
  - {id: b, name: B, prior: 0.4}
indicators:
  drills: {kind: count, name: Drills, a: {rate: 0.8, sd: 0.4}, b: {rate: 2.0, sd: 0.8}}
  link: {kind: milestone, name: Link, a: {hazard: 0.02, sd: 0.01}, b: {hazard: 0.1, sd: 0.05}}
  trade: {kind: signal, name: Trade, noise_sd: 2.0, a: {mean: 0.0, sd: 1.0},
          b: {mean: 1.5, sd: 1.5}}
  alert: {kind: level, name: Alert, levels: [green, amber, red],
          a: {probabilities: [0.7, 0.2, 0.1], concentration: 10},
          b: {probabilities: [0.2, 0.3, 0.5], concentration: 6}}
"""
JITTED = {"count": count_kind, "milestone": milestone_kind, "signal": signal_kind,
          "level": level_kind}


@pytest.fixture(scope="module")
def specs():
    return {s.kind: s for s in parse_scenario_set(SET).indicators}


def _statistics(kind, rng):
    """Summed statistics (n, e, q, c) a kind's evidence can hold."""
    if kind == "count":
        return rng.poisson(5) * 0.85, 7.3, 0.0, None
    if kind == "milestone":
        return 0.7, 6.4, 0.0, None
    if kind == "signal":
        y, w = rng.normal(1.0, 2.0, 5), np.array([1, 0.85, 0.7, 0.49, 1])
        return (w * y).sum(), w.sum(), (w * y * y).sum(), None
    c = np.array([1.7, 0.49, 2.2])
    return c.sum(), c.sum(), 0.0, c


def test_every_registered_kind_is_covered_here():
    assert set(KINDS) == set(JITTED)


@pytest.mark.parametrize("name", KINDS)
def test_the_three_marginals_of_a_kind_agree(name, specs):
    kind, spec = get_kind(name), specs[name]
    rng = np.random.default_rng(1)
    n, e, q, c = _statistics(name, rng)
    model = kind.log_marginal(spec, np.array(n), np.array(e), np.array(q),
                              None if c is None else np.array(c), math=NUMPY)
    oracle = kind.oracle_log_marginal(spec, n, e, q, c)
    np.testing.assert_allclose(model, oracle, rtol=1e-12)
    symbolic = kind.log_marginal(spec, pt.as_tensor(n), pt.as_tensor(e), pt.as_tensor(q),
                                 None if c is None else pt.as_tensor(c), math=pt).eval()
    np.testing.assert_allclose(symbolic, oracle, rtol=1e-12)
    sums = kind.path_statistics(spec, np.atleast_1d(n), np.atleast_1d(e), np.atleast_1d(q),
                                None if c is None else c[None, :])[0]
    params = np.ascontiguousarray(kind.path_parameters(spec)[None], dtype=float)  # (G=1, K, P)
    from forecast.paths import JITTED_MARGINALS

    for function in (JITTED[name].path_marginal, JITTED_MARGINALS[name]):  # Python, numba
        values = [function(np.ascontiguousarray(sums, dtype=float), 0, sums.size, params, 0, k)
                  for k in range(2)]
        np.testing.assert_allclose(values, oracle, rtol=1e-12)


@pytest.mark.parametrize("name", KINDS)
def test_conditional_draws_centre_on_the_posterior_mean(name, specs):
    kind, spec = get_kind(name), specs[name]
    rng = np.random.default_rng(2)
    n, e, q, c = _statistics(name, rng)
    pooled = {"counts": np.full((40_000, 1, 2), n), "exposure": np.full((40_000, 1, 2), e)}
    if c is not None:
        pooled["tallies"] = np.broadcast_to(c, (40_000, 1, 2, 3))
    draws = kind.conditional_draw([spec], pooled, rng)[:, 0]
    if name == "level":
        draws = (draws * np.arange(3)).sum(axis=-1)  # the mean position, as posterior_mean
    expected = kind.posterior_mean(spec, n, e, q, c)
    se = draws.std(axis=0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(draws.mean(axis=0) - expected) < 5 * se), (draws.mean(0), expected)


@pytest.mark.parametrize("name", KINDS)
def test_features_times_statistics_is_the_log_likelihood_up_to_a_constant(name, specs):
    """Two parameter values: the difference of ``s · φ(θ)`` is the log likelihood ratio."""
    kind, spec = get_kind(name), specs[name]
    t_len = 4
    counts = np.array([[2.0], [0.0], [1.7], [1.0]])
    exposure = np.array([[1.0], [1.0], [0.85], [0.5]])
    tallies = np.zeros((t_len, 1, 3))
    thetas = {"count": np.array([[0.5, 1.5]]), "milestone": np.array([[0.05, 0.2]]),
              "signal": np.array([[0.2, -1.0]])}
    if name == "level":
        tallies[:, 0] = [[1, 0, 0], [0, 0.7, 0], [0, 0, 0], [0.49, 0, 1]]
        theta = np.array([[[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]])
        expected = (tallies[:, 0, None, :] * np.log(theta[0][None])).sum(-1)
    else:
        theta = thetas[name]
        if name == "milestone":
            counts[:, 0] = [0, 0, 0, 0.8]
            exposure[3, 0] = 0.9
        x, w = counts[:, :1], exposure[:, :1]
        t = theta[0][None, :]
        expected = {"count": lambda: x * np.log(t) - w * t,
                    "milestone": lambda: x * np.log(t) + (w - x) * np.log1p(-t),
                    "signal": lambda: (x * t - w * t**2 / 2) / spec.noise_sd**2}[name]()
    got = kind.regime_statistics([spec], counts, exposure, tallies) @ kind.features(
        [spec], theta)
    np.testing.assert_allclose(got - got[:, :1], expected - expected[:, :1], atol=1e-12)


@pytest.mark.parametrize("name", KINDS)
def test_predictive_draws_follow_the_likelihood(name, specs):
    kind, spec = get_kind(name), specs[name]
    rng = np.random.default_rng(3)
    s = 200_000
    if name == "level":
        theta = np.broadcast_to([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], (s, 2, 3))
        draws = kind.predictive(spec, theta, 1.0, rng)
        frequency = np.stack([(draws == level).mean(axis=0) for level in range(3)], axis=-1)
        np.testing.assert_allclose(frequency, theta[0], atol=0.005)
        return
    theta = np.broadcast_to({"count": [0.5, 2.0], "milestone": [0.05, 0.3],
                             "signal": [0.0, 1.5]}[name], (s, 2))
    draws = kind.predictive(spec, theta, 0.5, rng)
    mean = {"count": lambda: theta[0] * 0.5, "milestone": lambda: 1 - (1 - theta[0]) ** 0.5,
            "signal": lambda: theta[0]}[name]()
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.01)
