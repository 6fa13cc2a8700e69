"""The watchlist against direct sums over raw future observation sequences.

For a static set the information of an indicator's next N periods is held against
``Σ_seq P(seq | y) · KL(P(k | y, seq) || P(k | y))``, every per-period sequence of
observations enumerated (counts truncated per period where the tail is negligible), each
``P(k | y, seq)`` from `exact_posterior` on the evidence augmented by those periods and
``P(seq | y)`` from its log marginals plus the normalising terms the kinds drop. For a dynamic
set the Monte Carlo estimate is held against the same sum with every scenario path over the
past and future periods enumerated (checked against `exact_dynamic_posterior`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp

from forecast import FitSettings, exact_dynamic_posterior, exact_posterior, fit
from forecast.exact import log_marginal_count, log_marginal_milestone
from forecast.model import transition_rows
from forecast.watchlist import (
    Outcome,
    WatchItem,
    outcome_distribution,
    static_information,
    watchlist,
)
from priors import parse_scenario_set

from .conftest import ALL_KINDS, make_evidence, simulate

LEVEL_BLOCK = """  severity:
    kind: level
    name: Severity of sanctions
    levels: [none, partly_lifted, lifted]
    low:  {probabilities: [0.6, 0.3, 0.1], concentration: 8}
    mid:  {probabilities: [0.3, 0.5, 0.2], concentration: 6}
    high: {probabilities: [0.1, 0.3, 0.6], concentration: 10}
"""
MIXED = ALL_KINDS.replace("id: all-kinds", "id: all-kinds-level") + LEVEL_BLOCK
SAME = """
id: same
title: Two scenarios that expect the same of one indicator
period: quarter
start: 2000-01-01
scenarios:
  - {id: a, name: A, prior: 0.4}
  - {id: b, name: B, prior: 0.6}
indicators:
  flat:
    kind: count
    name: Flat
    a: {rate: 1.0, sd: 0.5}
    b: {rate: 1.0, sd: 0.5}
  steep:
    kind: count
    name: Steep
    a: {rate: 0.5, sd: 0.3}
    b: {rate: 2.0, sd: 0.5}
"""
TINY_MOVING = """
id: tiny-moving
title: Tiny moving
period: quarter
start: 2000-01-01
scenarios:
  - {id: calm, name: Calm, prior: 0.7}
  - {id: tense, name: Tense, prior: 0.3}
dynamics:
  stay: 0.85
  moves: {calm: [tense], tense: [calm]}
  concentration: 20
indicators:
  drills:
    kind: count
    name: Drills
    calm: {rate: 0.5, sd: 0.3}
    tense: {rate: 2.0, sd: 0.8}
  link:
    kind: milestone
    name: Link
    calm: {hazard: 0.02, sd: 0.015}
    tense: {hazard: 0.2, sd: 0.1}
"""


@pytest.fixture(scope="module")
def mixed_set():
    return parse_scenario_set(MIXED, source="mixed.yaml")


def _evidence(scenario_set, counts, exposure, sumsq=None, tallies=None):
    evidence = make_evidence(scenario_set, counts, exposure, sumsq)
    if tallies is None:
        return evidence
    return dataclasses.replace(evidence, tallies=tallies)


def _simulated(scenario_set, scenario, n_periods, rng, level_every=2):
    """`simulate` for the set's counts, milestones and signals, and level draws (weights
    in [0.2, 1]) in every ``level_every``-th period (a period without one carries nothing)."""
    levels = [j for j, spec in enumerate(scenario_set.indicators) if spec.kind == "level"]
    others = [j for j in range(len(scenario_set.indicators)) if j not in levels]
    shape = (n_periods, len(scenario_set.indicators))
    counts, exposure, sumsq = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    if n_periods:
        base = simulate(dataclasses.replace(
            scenario_set, indicators=tuple(scenario_set.indicators[j] for j in others)),
            scenario, n_periods, rng)
        counts[:, others], exposure[:, others] = base.counts, base.exposure
        sumsq[:, others] = base.sumsq
    width = max([scenario_set.indicators[j].alpha.shape[1] for j in levels], default=0)
    tallies = np.zeros((*shape, width))
    for j in levels:
        p = scenario_set.indicators[j].mean[scenario]
        for t in range(0, n_periods, level_every):
            tallies[t, j, rng.choice(p.size, p=p)] = rng.uniform(0.2, 1.0)
        counts[:, j] = exposure[:, j] = tallies[:, j].sum(axis=1)
    return _evidence(scenario_set, counts, exposure, sumsq, tallies if levels else None)


def _mixed_evidence(scenario_set, rng, n_periods=6):
    return _simulated(scenario_set, 1, n_periods, rng)


# -- the direct sum over raw future sequences -------------------------------------------------


def _future_sequences(spec, n, cmax):
    """Every per-period sequence: (rows of (counts, exposure, sumsq, tally), log constant).

    The constant is what the kind's marginal drops and P(seq | k) needs: 1/x! per Poisson
    count; a milestone's and a level's ordered sequences have none.
    """
    if spec.kind == "count":
        for xs in itertools.product(range(cmax + 1), repeat=n):
            yield [(x, 1.0, 0.0, None) for x in xs], -float(gammaln(np.array(xs) + 1).sum())
    elif spec.kind == "milestone":
        for first in range(n):  # reported in period first + 1; not at risk after it
            yield [(0.0, 1.0, 0.0, None)] * first + [(1.0, 1.0, 0.0, None)] + \
                [(0.0, 0.0, 0.0, None)] * (n - first - 1), 0.0
        yield [(0.0, 1.0, 0.0, None)] * n, 0.0
    elif spec.kind == "level":
        for levels in itertools.product(range(spec.alpha.shape[1]), repeat=n):
            yield [(1.0, 1.0, 0.0, level) for level in levels], 0.0
    else:
        raise AssertionError(spec.kind)


def _augmented(scenario_set, evidence, j, rows):
    """The evidence with len(rows) more periods, in which only indicator j is observed."""
    n, width = len(rows), max(evidence.tallies.shape[2], 3)
    counts = np.vstack([evidence.counts, np.zeros((n, evidence.n_indicators))])
    exposure = np.vstack([evidence.exposure, np.zeros((n, evidence.n_indicators))])
    sumsq = np.vstack([evidence.sumsq, np.zeros((n, evidence.n_indicators))])
    tallies = np.zeros((counts.shape[0], evidence.n_indicators, width))
    tallies[:evidence.n_periods, :, :evidence.tallies.shape[2]] = evidence.tallies
    for t, (c, e, q, level) in enumerate(rows):
        row = evidence.n_periods + t
        counts[row, j], exposure[row, j], sumsq[row, j] = c, e, q
        if level is not None:
            tallies[row, j, level] = 1.0
    has_tallies = evidence.tallies.shape[2] or any(r[3] is not None for r in rows)
    return _evidence(scenario_set, counts, exposure, sumsq, tallies if has_tallies else None)


def _kl_bits(after, before):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.where(after > 0, after * np.log2(after / before), 0.0).sum())


def _direct_information(scenario_set, evidence, indicator, n, cmax=30):
    """Σ_seq P(seq | y) KL(P(k | y, seq) || P(k | y)); also Σ_seq P(seq | y) (≈ 1)."""
    j = scenario_set.indicator_ids.index(indicator)
    spec = scenario_set.indicators[j]
    now = exact_posterior(scenario_set, evidence)
    info = mass = 0.0
    for rows, log_const in _future_sequences(spec, n, cmax):
        later = exact_posterior(scenario_set, _augmented(scenario_set, evidence, j, rows))
        log_given_k = later.log_marginal[j] - now.log_marginal[j] + log_const
        p_seq = float(np.exp(logsumexp(log_given_k, b=now.probability)))
        info += p_seq * _kl_bits(later.probability, now.probability)
        mass += p_seq
    return info, mass


def _direct_signal_information(scenario_set, evidence, indicator, half_width=12.0, step=0.05):
    """N = 1: the integral over the one future measurement, on a fine grid (trapezoid)."""
    j = scenario_set.indicator_ids.index(indicator)
    spec = scenario_set.indicators[j]
    now = exact_posterior(scenario_set, evidence)
    var = spec.noise_sd**2
    centre = float(now.posterior_mean[j] @ now.probability)
    spread = math.sqrt(var + float(np.max(spec.beta**2)))
    grid = np.arange(centre - half_width * spread, centre + half_width * spread, step)
    density, divergence = np.empty(grid.size), np.empty(grid.size)
    for i, y in enumerate(grid):
        later = exact_posterior(scenario_set, _augmented(scenario_set, evidence, j,
                                                         [(y, 1.0, y * y, None)]))
        # the signal's marginal drops −½ log 2πσ² per unit of weight
        log_given_k = (later.log_marginal[j] - now.log_marginal[j]
                       - 0.5 * math.log(2 * math.pi * var))
        density[i] = np.exp(logsumexp(log_given_k, b=now.probability))
        divergence[i] = _kl_bits(later.probability, now.probability)
    return float(np.trapezoid(density * divergence, grid)), float(np.trapezoid(density, grid))


def _information(scenario_set, evidence, indicator, n):
    items = {item.indicator: item for item in watchlist(scenario_set, evidence, n)}
    return items[indicator]


@pytest.mark.parametrize(("indicator", "n"), [("drills", 1), ("drills", 2), ("patrols", 2)])
def test_counts_information_is_the_sum_over_every_future_sequence(counts_set, indicator, n):
    evidence = simulate(counts_set, 1, 8, np.random.default_rng(3))
    expected, mass = _direct_information(counts_set, evidence, indicator, n)
    assert mass == pytest.approx(1.0, abs=1e-10)  # the truncation loses nothing that counts
    item = _information(counts_set, evidence, indicator, n)
    assert item.exact and item.mcse_bits == 0.0 and not item.reported
    assert item.information_bits == pytest.approx(expected, abs=1e-6)
    assert expected > 1e-3  # a test of something


@pytest.mark.parametrize("n", [1, 3, 6])
def test_milestones_information_is_the_sum_over_every_first_report(milestones_set, n):
    evidence = make_evidence(milestones_set, np.zeros((10, 3)), np.ones((10, 3)))
    for indicator in milestones_set.indicator_ids:
        expected, mass = _direct_information(milestones_set, evidence, indicator, n)
        assert mass == pytest.approx(1.0, abs=1e-12)
        item = _information(milestones_set, evidence, indicator, n)
        assert item.information_bits == pytest.approx(expected, abs=1e-6), indicator
        assert expected > 1e-4


@pytest.mark.parametrize(("indicator", "n"), [("drills", 2), ("link", 3), ("severity", 1),
                                              ("severity", 3), ("severity", 5)])
def test_a_mixed_sets_information_is_the_sum_over_every_future_sequence(mixed_set, indicator,
                                                                       n):
    evidence = _mixed_evidence(mixed_set, np.random.default_rng(11))
    expected, mass = _direct_information(mixed_set, evidence, indicator, n, cmax=25)
    assert mass == pytest.approx(1.0, abs=1e-10)
    item = _information(mixed_set, evidence, indicator, n)
    assert item.information_bits == pytest.approx(expected, abs=1e-6)
    assert expected > 1e-4


@pytest.mark.parametrize("which", ["all_kinds", "mixed"])
def test_a_signals_information_is_the_integral_over_its_next_measurement(all_kinds_set,
                                                                         mixed_set, which):
    scenario_set = all_kinds_set if which == "all_kinds" else mixed_set
    evidence = (simulate(scenario_set, 2, 5, np.random.default_rng(2)) if which == "all_kinds"
                else _mixed_evidence(scenario_set, np.random.default_rng(4)))
    expected, mass = _direct_signal_information(scenario_set, evidence, "trade")
    assert mass == pytest.approx(1.0, abs=1e-9)
    item = _information(scenario_set, evidence, "trade", 1)
    assert item.information_bits == pytest.approx(expected, abs=1e-6)
    assert expected > 1e-3


def test_a_signals_mean_is_sufficient_over_several_periods(all_kinds_set):
    """N = 3 by brute force over the three measurements would be a 3-D integral; instead the
    exact predictive of the mean (Normal, variance v_k + σ²/N) is held against the mean of
    simulated measurements from the conjugate posterior, and the quadrature's MI against a
    plain Monte Carlo average of KL over those simulations."""
    evidence = simulate(all_kinds_set, 2, 5, np.random.default_rng(2))
    dist = outcome_distribution(all_kinds_set, evidence, "trade", 3)
    rng = np.random.default_rng(0)
    j = all_kinds_set.indicator_ids.index("trade")
    spec = all_kinds_set.indicators[j]
    now = exact_posterior(all_kinds_set, evidence)
    post_var = dist.var - spec.noise_sd**2 / 3
    for k in range(3):
        mu = rng.normal(dist.mean[k], np.sqrt(post_var[k]), 200_000)
        y = mu[:, None] + spec.noise_sd * rng.standard_normal((200_000, 3))
        assert y.mean(axis=1).var() == pytest.approx(dist.var[k], rel=0.02)
        assert now.posterior_mean[j, k] == pytest.approx(dist.mean[k], abs=1e-12)
    # MC of E KL(P(k | y, ȳ) || P(k | y)) with ȳ drawn from the mixture
    scenario = rng.choice(3, size=100_000, p=dist.prior)
    mean = rng.normal(dist.mean[scenario], np.sqrt(dist.var[scenario]))
    log_l = -0.5 * (mean[:, None] - dist.mean) ** 2 / dist.var - 0.5 * np.log(dist.var)
    log_post = log_l + np.log(dist.prior)
    after = np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))
    kl = (after * np.log2(after / dist.prior)).sum(axis=1)
    assert static_information(dist) == pytest.approx(kl.mean(), abs=4 * kl.std() / 316)


# -- properties -------------------------------------------------------------------------------


def _random_set(rng, index):
    k = int(rng.integers(2, 5))
    prior = rng.dirichlet(np.ones(k) * 2)
    prior = np.round(prior / prior.sum(), 6)
    prior[-1] = round(1 - prior[:-1].sum(), 6)
    scenarios = "\n".join(f"  - {{id: s{i}, name: S{i}, prior: {p}}}" for i, p in enumerate(prior))
    blocks = []
    rate = rng.uniform(0.2, 3.0, k)
    blocks.append("  c:\n    kind: count\n    name: C\n" + "".join(
        f"    s{i}: {{rate: {r:.3f}, sd: {r * rng.uniform(0.2, 0.8):.3f}}}\n"
        for i, r in enumerate(rate)))
    hazard = rng.uniform(0.01, 0.3, k)
    blocks.append("  m:\n    kind: milestone\n    name: M\n" + "".join(
        f"    s{i}: {{hazard: {h:.3f}, sd: {h * 0.5:.3f}}}\n" for i, h in enumerate(hazard)))
    blocks.append(f"  g:\n    kind: signal\n    name: G\n    noise_sd: {rng.uniform(0.5, 3):.2f}\n"
                  + "".join(f"    s{i}: {{mean: {m:.2f}, sd: {rng.uniform(0.3, 2):.2f}}}\n"
                            for i, m in enumerate(rng.normal(0, 1.5, k))))
    blocks.append("  v:\n    kind: level\n    name: V\n    levels: [x, y, z]\n" + "".join(
        f"    s{i}: {{probabilities: [{p[0]:.4f}, {p[1]:.4f}, {1 - p[0] - p[1]:.4f}], "
        f"concentration: {rng.uniform(2, 15):.2f}}}\n"
        for i, p in enumerate(np.round(rng.dirichlet(np.ones(3) * 3, k) * 0.98 + 0.0066, 4))))
    text = (f"id: random-{index}\ntitle: R\nperiod: month\nstart: 2000-01-01\nscenarios:\n"
            f"{scenarios}\nindicators:\n" + "".join(blocks))
    return parse_scenario_set(text)


def test_information_is_never_negative_is_ranked_and_never_falls_with_more_periods():
    rng = np.random.default_rng(2024)
    for index in range(12):
        scenario_set = _random_set(rng, index)
        t_len = int(rng.integers(0, 8))
        evidence = _simulated(scenario_set, int(rng.integers(len(scenario_set.scenarios))),
                              t_len, rng, level_every=int(rng.integers(1, 3)))
        previous = {}
        for n in range(1, 5):
            items = watchlist(scenario_set, evidence, n)
            bits = [item.information_bits for item in items]
            assert all(b >= 0 for b in bits)
            assert bits == sorted(bits, reverse=True)
            for item in items:
                if item.reported:
                    assert item.information_bits == 0.0
                else:
                    # H(Z) bounds it: I(outcome; Z) ≤ H(Z)
                    p = exact_posterior(scenario_set, evidence).probability
                    assert item.information_bits <= float(-(p * np.log2(p)).sum()) + 1e-9
                assert item.information_bits >= previous.get(item.indicator, 0.0) - 1e-9, (
                    index, n, item)
                previous[item.indicator] = item.information_bits


def test_a_reported_milestone_carries_nothing(milestones_set):
    counts, exposure = np.zeros((6, 3)), np.ones((6, 3))
    counts[2, 1], exposure[3:, 1] = 0.72, 0.0  # radar reported (B2) in the third month
    evidence = make_evidence(milestones_set, counts, exposure)
    items = {item.indicator: item for item in watchlist(milestones_set, evidence, 4)}
    radar = items["radar"]
    assert radar.reported and radar.information_bits == 0.0 and radar.outcome is None
    assert radar.exact and radar.mcse_bits == 0.0
    assert items["cueing"].information_bits > 0 and not items["cueing"].reported
    assert list(items) != [] and watchlist(milestones_set, evidence, 4)[-1].indicator == "radar"


def test_scenarios_that_expect_the_same_make_an_indicator_worth_nothing():
    scenario_set = parse_scenario_set(SAME)
    evidence = make_evidence(scenario_set, np.array([[1.0, 3.0], [0.0, 2.0]]), np.ones((2, 2)))
    items = watchlist(scenario_set, evidence, 4)
    assert [item.indicator for item in items] == ["steep", "flat"]
    flat = items[1]
    assert flat.information_bits == pytest.approx(0.0, abs=1e-12)
    assert flat.outcome.after == pytest.approx(flat.outcome.before, abs=1e-12)
    assert items[0].information_bits > 0.05


@pytest.mark.parametrize("periods", [0, -1, 1.5, True, "4"])
def test_periods_must_be_a_whole_number_of_at_least_one(counts_set, periods):
    evidence = simulate(counts_set, 0, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="periods"):
        watchlist(counts_set, evidence, periods)


def test_outcomes_say_what_would_move_the_posterior_and_by_how_much(mixed_set):
    evidence = _mixed_evidence(mixed_set, np.random.default_rng(11))
    items = {item.indicator: item for item in watchlist(mixed_set, evidence, 4)}
    prior = exact_posterior(mixed_set, evidence).probability
    for item in items.values():
        assert isinstance(item, WatchItem) and isinstance(item.outcome, Outcome)
        outcome = item.outcome
        k = mixed_set.scenario_ids.index(outcome.scenario)
        assert outcome.before == pytest.approx(prior[k], abs=1e-12)
        assert outcome.after == outcome.posterior_after[outcome.scenario]
        assert sum(outcome.posterior_after.values()) == pytest.approx(1.0, abs=1e-12)
        verb = "is" if item.kind in ("milestone", "level") else "has"
        assert item.summary == (f"if {item.indicator} {verb} {outcome.label}: "
                                f"{outcome.scenario} {outcome.before:.2f} → {outcome.after:.2f}")
        if item.kind == "signal":
            assert outcome.probability is None and outcome.label.startswith("mean ")
        else:
            assert outcome.probability >= 0.01
    assert items["drills"].outcome.label.endswith(" in 4 quarters")
    assert items["severity"].outcome.label.endswith(" of 4 quarters")
    # the outcome moving most: no likely outcome moves any scenario further
    dist = outcome_distribution(mixed_set, evidence, "drills", 4)
    joint = np.exp(dist.log_likelihood) * prior
    p = joint.sum(axis=1)
    shift = np.abs(joint / p[:, None] - prior)[p >= 0.01].max()
    assert abs(items["drills"].outcome.after - items["drills"].outcome.before) == pytest.approx(
        shift, abs=1e-12)
    # the predictive of each outcome sums to one under every scenario
    for indicator in ("drills", "link", "severity"):
        dist = outcome_distribution(mixed_set, evidence, indicator, 4)
        np.testing.assert_allclose(np.exp(dist.log_likelihood).sum(axis=0), 1.0, atol=1e-11)


def test_a_milestone_reported_within_the_periods_is_an_outcome(milestones_set):
    evidence = make_evidence(milestones_set, np.zeros((3, 3)), np.ones((3, 3)))
    item = next(i for i in watchlist(milestones_set, evidence, 12) if i.indicator == "command")
    # each single month is below 1 %: the likely outcomes are "within" and "not within"
    assert item.outcome.label in ("reported within 12 months", "not reported in 12 months")
    assert item.outcome.label == "reported within 12 months"
    assert item.outcome.scenario in ("slow", "fast")
    assert item.summary.startswith("if command is reported within 12 months: ")


# -- dynamic sets -------------------------------------------------------------------------------


def _path_log_joint(scenario_set, counts, exposure):
    """Every scenario path (P, T) and log p(path, y), the kinds' constants of y dropped."""
    k, t_len = len(scenario_set.scenarios), counts.shape[0]
    paths = np.array(list(itertools.product(range(k), repeat=t_len)))
    log_p = np.log(scenario_set.prior)[paths[:, 0]]
    src, dst = paths[:, :-1], paths[:, 1:]
    for row, columns, concentration in transition_rows(scenario_set):
        moves = np.stack([((src == row) & (dst == c)).sum(axis=1) for c in columns], axis=1)
        log_p = log_p + (gammaln(concentration + moves).sum(axis=1)
                         - gammaln(concentration.sum() + moves.sum(axis=1))
                         + gammaln(concentration.sum()) - gammaln(concentration).sum())
    for j, spec in enumerate(scenario_set.indicators):
        for state in range(k):
            n = ((paths == state) * counts[:, j]).sum(axis=1)
            e = ((paths == state) * exposure[:, j]).sum(axis=1)
            if spec.kind == "count":
                log_p = log_p + log_marginal_count(spec.alpha[state], spec.beta[state], n, e)
            else:
                log_p = log_p + log_marginal_milestone(spec.alpha[state], spec.beta[state], n,
                                                       e - n)
    return paths, log_p


def _dynamic_direct_information(scenario_set, evidence, indicator, n, cmax=20):
    """Σ over every future sequence of P(seq | y) KL(P(Z_end | y, seq) || P(Z_end | y)), each
    term a sum over every path of the T + N periods."""
    j = scenario_set.indicator_ids.index(indicator)
    spec = scenario_set.indicators[j]
    k = len(scenario_set.scenarios)
    pad = np.zeros((n, evidence.n_indicators))
    counts, exposure = np.vstack([evidence.counts, pad]), np.vstack([evidence.exposure, pad])
    paths, log_p = _path_log_joint(scenario_set, counts, exposure)
    log_y = logsumexp(log_p)

    def end(log_w):
        return np.array([np.exp(logsumexp(log_w[paths[:, -1] == s]) - logsumexp(log_w))
                         for s in range(k)])

    before = end(log_p)
    info = mass = 0.0
    for rows, log_const in _future_sequences(spec, n, cmax):
        c, e = counts.copy(), exposure.copy()
        c[-n:, j] = [r[0] for r in rows]
        e[-n:, j] = [r[1] for r in rows]
        _, log_q = _path_log_joint(scenario_set, c, e)
        p_seq = float(np.exp(logsumexp(log_q) + log_const - log_y))
        after = end(log_q)
        info += p_seq * _kl_bits(after, before)
        mass += p_seq
    return info, mass, before, end


@pytest.fixture(scope="module")
def tiny_moving():
    scenario_set = parse_scenario_set(TINY_MOVING, source="tiny-moving.yaml")
    counts = np.array([[0, 0], [1, 0], [0, 0], [2, 0], [3, 0], [1, 0]], dtype=float)
    evidence = make_evidence(scenario_set, counts, np.ones_like(counts))
    result = fit(scenario_set, evidence,
                 FitSettings.from_mapping({"sampler": {"method": "paths", "seed": 3}}))
    assert result.sampler["exact"]  # every path enumerated: the draws are exact posterior ones
    return scenario_set, evidence, result.datatree["posterior"]


def test_the_path_sum_of_the_test_is_the_oracles(tiny_moving):
    scenario_set, evidence, _ = tiny_moving
    paths, log_p = _path_log_joint(scenario_set, evidence.counts, evidence.exposure)
    weight = np.exp(log_p - logsumexp(log_p))
    nowcast = [weight[paths[:, -1] == k].sum() for k in range(2)]
    np.testing.assert_allclose(nowcast, exact_dynamic_posterior(scenario_set, evidence)
                               .probability, atol=1e-12)
    # and with a future appended: the end of the longer path
    counts = np.vstack([evidence.counts, [[4, 0], [2, 1]]])
    exposure = np.vstack([evidence.exposure, [[1, 1], [1, 1]]])
    longer = make_evidence(scenario_set, counts, exposure)
    paths, log_p = _path_log_joint(scenario_set, counts, exposure)
    weight = np.exp(log_p - logsumexp(log_p))
    np.testing.assert_allclose([weight[paths[:, -1] == k].sum() for k in range(2)],
                               exact_dynamic_posterior(scenario_set, longer).probability,
                               atol=1e-12)


@pytest.mark.parametrize("indicator", ["drills", "link"])
def test_dynamic_information_lands_on_the_sum_over_every_path(tiny_moving, indicator):
    scenario_set, evidence, posterior = tiny_moving
    expected, mass, before, _ = _dynamic_direct_information(scenario_set, evidence, indicator, 2)
    assert mass == pytest.approx(1.0, abs=1e-9)
    items = {item.indicator: item for item in watchlist(
        scenario_set, evidence, 2, posterior=posterior, n_sims=3000, n_inner=2000, seed=1)}
    item = items[indicator]
    assert not item.exact and item.mcse_bits > 0
    assert abs(item.information_bits - expected) <= 3 * item.mcse_bits + 0.005, (
        item.information_bits, item.mcse_bits, expected)
    # the outcome's before is P(Z_end | y), here against the paths' sum
    assert item.outcome.before == pytest.approx(
        before[scenario_set.scenario_ids.index(item.outcome.scenario)], abs=0.02)


def test_a_dynamic_watchlist_is_seeded_and_needs_its_posterior(tiny_moving):
    scenario_set, evidence, posterior = tiny_moving
    with pytest.raises(ValueError, match="posterior"):
        watchlist(scenario_set, evidence, 2)
    first = watchlist(scenario_set, evidence, 2, posterior=posterior, n_sims=200, seed=4)
    again = watchlist(scenario_set, evidence, 2, posterior=posterior, n_sims=200, seed=4)
    other = watchlist(scenario_set, evidence, 2, posterior=posterior, n_sims=200, seed=5)
    assert first == again
    assert [i.information_bits for i in first] != [i.information_bits for i in other]
    assert all(i.information_bits >= 0 and not i.exact for i in first)
    with pytest.raises(ValueError, match="periods"):
        watchlist(scenario_set, evidence, 0, posterior=posterior)


def test_a_dynamic_sets_reported_milestone_carries_nothing(tiny_moving):
    scenario_set, evidence, posterior = tiny_moving
    counts, exposure = evidence.counts.copy(), evidence.exposure.copy()
    counts[3, 1], exposure[4:, 1] = 1.0, 0.0
    reported = make_evidence(scenario_set, counts, exposure)
    items = {i.indicator: i for i in watchlist(scenario_set, reported, 3, posterior=posterior,
                                               n_sims=100)}
    assert items["link"].reported and items["link"].information_bits == 0.0
    assert items["link"].outcome is None and items["drills"].information_bits > 0
