"""The ``level`` kind against closed forms it does not share code with.

A level observation is one categorical draw, tempered by its grade's weight, with
p ~ Dirichlet(concentration × probabilities) per scenario. The static posterior is exact
(Dirichlet–multinomial); here it is held against

- a quadrature of ``∫ Dir(p | a) Π p_l^{c_l} dp`` over the simplex (fractional tallies, so
  graded evidence is covered) and, for A1 reports (weight 1), the Pólya urn's sequential
  predictive product;
- the PyTensor model's ``scenario_probability`` (the code the service runs);
- and, for a dynamic set, the brute-force sum over every path against the numba path
  enumeration, mixed with the other three kinds.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pymc as pm
import pytest
from scipy import integrate
from scipy.special import gammaln, logsumexp

from forecast import FitSettings, ModelCache, exact_dynamic_posterior, exact_posterior, fit
from forecast.model import EvidenceArrays, build_model
from forecast.paths import all_paths, enumerate_paths, path_model
from indicators import build_evidence, make_grid, validate_observation, weighted_observations
from indicators.grades import DEFAULT_GRADES
from priors import parse_scenario_set

from .conftest import ALL_KINDS

LEVEL_BLOCK = """  severity:
    kind: level
    name: Severity of sanctions
    levels: [none, targeted, sectoral]
    low:  {probabilities: [0.6, 0.3, 0.1], concentration: 8}
    mid:  {probabilities: [0.3, 0.5, 0.2], concentration: 6}
    high: {probabilities: [0.1, 0.3, 0.6], concentration: 10}
"""
WITH_LEVEL = ALL_KINDS.replace("id: all-kinds", "id: all-kinds-level") + LEVEL_BLOCK
LEVEL_ONLY = """
id: level-only
title: Level only
period: quarter
start: 2000-01-01
scenarios:
  - {id: low, name: Low, prior: 0.5}
  - {id: mid, name: Mid, prior: 0.35}
  - {id: high, name: High, prior: 0.15}
indicators:
""" + LEVEL_BLOCK
MOVING = WITH_LEVEL.replace("indicators:", """dynamics:
  stay: 0.8
  moves: {low: [mid, high], mid: [low, high], high: [low, mid]}
  concentration: 10
indicators:""", 1)
TODAY = dt.date(2003, 1, 1)


def _observations(scenario_set, rows):
    """Evidence from (date, indicator, value, grade) rows, validated as the API would."""
    from indicators import load_catalog

    catalog = load_catalog().with_extra(scenario_set.catalog_indicators)
    observations = [validate_observation({"date": d, "indicator": i, "value": v, "grade": g},
                                         catalog, TODAY) for d, i, v, g in rows]
    through = dt.date(2002, 12, 31)
    grid = make_grid(scenario_set.period, scenario_set.start, through)
    return build_evidence(grid, scenario_set.catalog_indicators,
                          weighted_observations(observations, DEFAULT_GRADES), as_of=through)


def _level_rows(rng, n, probabilities, grades=("A1", "B2", "C3")):
    levels = ["none", "targeted", "sectoral"]
    rows = []
    for i in range(n):
        day = dt.date(2000, 1, 1) + dt.timedelta(days=int(i * 1000 / max(n, 1)))
        rows.append((day.isoformat(), "severity", levels[rng.choice(3, p=probabilities)],
                     grades[i % len(grades)]))
    return rows


def _quadrature_log_marginal(alpha, tallies):
    """log ∫ Dir(p | α) Π p_l^{c_l} dp for three levels, by adaptive quadrature."""
    a = np.asarray(alpha, dtype=float)
    c = np.asarray(tallies, dtype=float)
    log_norm = gammaln(a.sum()) - gammaln(a).sum()
    centre = (a + c) / (a + c).sum()
    shift = ((a + c - 1) * np.log(centre)).sum()  # keeps the integrand near 1 at its bulk

    def integrand(p2, p1):
        p3 = 1.0 - p1 - p2
        if p3 <= 0:
            return 0.0
        p = np.array([p1, p2, p3])
        return np.exp(((a + c - 1) * np.log(p)).sum() - shift)

    value, error = integrate.dblquad(integrand, 0, 1, 0, lambda p1: 1 - p1,
                                     epsabs=1e-14, epsrel=1e-11)
    assert error < 1e-7 * value
    return np.log(value) + shift + log_norm


@pytest.mark.parametrize("n", [1, 3, 25], ids=["weak", "some", "strong"])
def test_static_level_posterior_is_the_quadrature_of_its_dirichlet(n):
    scenario_set = parse_scenario_set(LEVEL_ONLY)
    rng = np.random.default_rng(n)
    evidence = _observations(scenario_set, _level_rows(rng, n, [0.1, 0.3, 0.6]))
    tallies = evidence.tallies[:, 0].sum(axis=0)
    weights = DEFAULT_GRADES
    assert tallies.sum() == pytest.approx(
        sum(weights.weight(g) for g in (["A1", "B2", "C3"] * n)[:n]))
    spec = scenario_set.indicators[0]
    log_m = np.array([_quadrature_log_marginal(spec.alpha[k], tallies) for k in range(3)])
    log_post = np.log(scenario_set.prior) + log_m
    expected = np.exp(log_post - logsumexp(log_post))
    exact = exact_posterior(scenario_set, evidence)
    np.testing.assert_allclose(exact.probability, expected, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(exact.log_marginal[0], log_m, rtol=1e-8)
    if n == 25:
        assert exact.probability.argmax() == 2  # strong evidence finds the scenario


def test_a1_reports_follow_the_polya_urn():
    """Weight 1 per report: the marginal is the sequential predictive product."""
    scenario_set = parse_scenario_set(LEVEL_ONLY)
    rng = np.random.default_rng(3)
    rows = _level_rows(rng, 12, [0.5, 0.3, 0.2], grades=("A1",))
    evidence = _observations(scenario_set, rows)
    spec = scenario_set.indicators[0]
    index = {"none": 0, "targeted": 1, "sectoral": 2}
    for k in range(3):
        a = spec.alpha[k].copy()
        log_urn = 0.0
        for _, _, value, _ in rows:
            log_urn += np.log(a[index[value]] / a.sum())
            a[index[value]] += 1
        assert exact_posterior(scenario_set, evidence).log_marginal[0, k] == pytest.approx(
            log_urn, rel=1e-12)


@pytest.mark.parametrize("n", [2, 30], ids=["weak", "strong"])
def test_the_model_equals_the_oracle_mixed_with_every_kind_and_graded(n):
    scenario_set = parse_scenario_set(WITH_LEVEL)
    rng = np.random.default_rng(10 + n)
    rows = _level_rows(rng, n, [0.3, 0.5, 0.2])
    rows += [("2000-02-01", "drills", 2, "B2"), ("2001-05-03", "drills", 1, "A1"),
             ("2001-07-01", "link", 1, "C3"), ("2000-03-01", "trade", 0.7, "B2"),
             ("2002-04-01", "trade", 1.9, "A2")]
    evidence = _observations(scenario_set, rows)
    exact = exact_posterior(scenario_set, evidence)
    # every kind moved the answer: dropping any one changes it
    for j in range(4):
        without = exact.log_marginal.copy()
        without[j] = 0.0
        log_post = np.log(scenario_set.prior) + without.sum(axis=0)
        assert np.abs(np.exp(log_post - logsumexp(log_post)) - exact.probability).max() > 1e-4
    model = build_model(scenario_set, evidence, dynamic=False)
    probability = model.compile_fn(model["scenario_probability"], inputs=[],
                                   on_unused_input="ignore")({})
    np.testing.assert_allclose(probability, exact.probability, rtol=1e-10, atol=1e-14)


def test_the_level_parameter_is_a_padded_dirichlet_in_the_model():
    scenario_set = parse_scenario_set(WITH_LEVEL)
    evidence = _observations(scenario_set, [("2000-01-05", "severity", "targeted", "A1")])
    model = build_model(scenario_set, evidence, dynamic=False)
    assert model.named_vars_to_dims["probabilities"] == ("level_indicator", "scenario",
                                                         "category")
    draws = pm.draw(model["probabilities"], draws=200, random_seed=1)
    assert draws.shape == (200, 1, 3, 3)
    np.testing.assert_allclose(draws.sum(axis=-1), 1.0)
    spec = scenario_set.indicators[3]
    # the prior mean of each scenario's row is its written probabilities
    np.testing.assert_allclose(draws.mean(axis=0)[0], spec.mean, atol=0.05)


@pytest.fixture(scope="module")
def moving_level():
    scenario_set = parse_scenario_set(MOVING)
    levels = ["none"] * 3 + ["sectoral"] * 4
    rows = [(dt.date(2000, 1 + 3 * t, 10).isoformat() if t < 4 else
             dt.date(2001, 1 + 3 * (t - 4), 10).isoformat(), "severity", level, "B2")
            for t, level in enumerate(levels)]
    rows += [("2000-02-01", "drills", 1, "A1"), ("2001-04-01", "drills", 3, "B2"),
             ("2001-05-01", "drills", 2, "B2"), ("2000-06-01", "trade", -0.4, "B2"),
             ("2001-08-01", "trade", 1.8, "A1"), ("2001-09-01", "link", 1, "B3")]
    # a short window keeps the brute-force sum small: 3^8 paths
    grid = make_grid(scenario_set.period, scenario_set.start, dt.date(2001, 12, 31))
    from indicators import load_catalog

    catalog = load_catalog().with_extra(scenario_set.catalog_indicators)
    observations = [validate_observation({"date": d, "indicator": i, "value": v, "grade": g},
                                         catalog, TODAY) for d, i, v, g in rows]
    evidence = build_evidence(grid, scenario_set.catalog_indicators,
                              weighted_observations(observations, DEFAULT_GRADES),
                              as_of=dt.date(2001, 12, 31))
    return scenario_set, evidence


def test_dynamic_path_sums_with_a_level_equal_the_brute_force_oracle(moving_level):
    scenario_set, evidence = moving_level
    assert evidence.n_periods == 8
    oracle = exact_dynamic_posterior(scenario_set, evidence)
    static = exact_posterior(scenario_set, evidence).probability
    assert np.abs(oracle.probability - static).max() > 0.05  # the switch is visible
    model = path_model(scenario_set, EvidenceArrays.select(scenario_set, evidence))
    paths, log_w = all_paths(model)
    weights = np.exp(log_w - logsumexp(log_w))
    nowcast = np.array([weights[paths[:, -1] == k].sum() for k in range(3)])
    np.testing.assert_allclose(nowcast, oracle.probability, atol=1e-12)
    np.testing.assert_allclose(enumerate_paths(model, 8).nowcast(3), oracle.probability,
                               atol=1e-12)
    # the level alone moves the dynamic answer
    no_level = evidence.__class__(grid=evidence.grid, indicator_ids=evidence.indicator_ids,
                                  kinds=evidence.kinds, counts=evidence.counts,
                                  exposure=evidence.exposure, sumsq=evidence.sumsq,
                                  as_of=evidence.as_of,
                                  tallies=np.zeros_like(evidence.tallies))
    without = exact_dynamic_posterior(scenario_set, no_level).probability
    assert np.abs(without - oracle.probability).max() > 0.01


@pytest.mark.slow
def test_fits_of_sets_with_a_level_match_their_oracles(moving_level):
    """The service's estimators: NUTS on the static set, the path estimator on the dynamic."""
    scenario_set, evidence = moving_level
    settings = FitSettings.from_mapping({"sampler": {"chains": 2, "draws": 300, "tune": 300,
                                                     "dynamic_draws": 2000}})
    cache = ModelCache()
    result = fit(scenario_set, evidence, settings, cache=cache)
    oracle = exact_dynamic_posterior(scenario_set, evidence)
    mcse = np.array([s.mcse for s in result.scenarios])
    assert result.diagnostics.passed, result.diagnostics
    assert np.all(np.abs(result.probabilities - oracle.probability) <= 4 * mcse + 1e-9)
    means = result.parameters["severity"]
    assert set(means) == set(scenario_set.scenario_ids)
    assert set(means["high"]) == {"none", "targeted", "sectoral"}
    assert sum(means["high"].values()) == pytest.approx(1.0)

    static_set = parse_scenario_set(WITH_LEVEL)
    static = fit(static_set, evidence, settings, cache=cache)
    exact = exact_posterior(static_set, evidence)
    np.testing.assert_allclose(static.probabilities, exact.probability, atol=1e-10)
    assert static.diagnostics.passed, static.diagnostics
    posterior = static.datatree["posterior"]["probabilities"].values  # (chain, draw, 1, K, L)
    draws = posterior.reshape(-1, *posterior.shape[2:])[:, 0]
    tallies = evidence.tallies[:, 3].sum(axis=0)
    spec = static_set.indicators[3]
    expected = (spec.alpha + tallies) / (spec.alpha + tallies).sum(axis=1, keepdims=True)
    se = draws.std(axis=0) / np.sqrt(static.diagnostics.min_ess_bulk)
    assert np.all(np.abs(draws.mean(axis=0) - expected) <= 5 * se + 1e-9)

