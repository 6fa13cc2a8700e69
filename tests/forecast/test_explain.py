"""Attribution, leave-one-out influence, F6 robustness and what-if (`forecast.explain`).

Static sets are held against closed forms computed here independently (quadrature of each
conjugate integral, `exact_posterior` of evidence rebuilt by `build_evidence`); dynamic sets
against the sum over every scenario path (`exact_dynamic_posterior`), within the reported
Monte Carlo error.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, stats
from scipy.special import logsumexp

from forecast import (
    FitSettings,
    SamplerSettings,
    exact_dynamic_posterior,
    exact_posterior,
    fit,
)
from forecast.explain import (
    Estimate,
    _Draws,
    _Variants,
    evidence_from_rows,
    indicator_log_likelihoods,
    observation_influence,
    resampled_posterior,
    scenario_posterior,
    what_if,
)
from forecast.fit import filtered_draws
from forecast.model import EvidenceArrays, transition_rows
from indicators import DEFAULT_GRADES, build_evidence, make_grid
from indicators.kinds import get_kind, own_tallies
from priors import parse_scenario_set

from .conftest import ALL_KINDS, COUNTS_ONLY, MILESTONES_ONLY
from .test_level import LEVEL_BLOCK

WITH_LEVEL = ALL_KINDS.replace("id: all-kinds", "id: all-kinds-level") + LEVEL_BLOCK
GRADES = ("A1", "B2", "C3", "F6", "D4")


def _random_rows(scenario_set, n, through, rng, grades=GRADES):
    """``n`` observation rows of the set's indicators, dated in its window (some before)."""
    rows = []
    span = (through - scenario_set.start).days
    for i in range(n):
        spec = scenario_set.indicators[i % len(scenario_set.indicators)]
        day = scenario_set.start + dt.timedelta(days=int(rng.integers(-60, span + 1)))
        value = {"count": 1.0, "milestone": 1.0, "signal": float(rng.normal(0.5, 2.0))}.get(
            spec.kind)
        if spec.kind == "level":
            value = float(rng.integers(0, len(spec.indicator.levels)))
        rows.append((f"obs-{i}", day, spec.id, value, grades[i % len(grades)]))
    return rows


def _build(scenario_set, rows, through, coverage, weight_of=None):
    """The evidence of ``rows`` straight through `build_evidence` (the reference)."""
    grid = make_grid(scenario_set.period, scenario_set.start, through)
    weight_of = weight_of or (lambda row: DEFAULT_GRADES.weight(row[4]))
    return build_evidence(grid, scenario_set.catalog_indicators,
                          [(r[1], r[2], r[3], weight_of(r)) for r in rows], as_of=through,
                          coverage=coverage)


# -- attribution ------------------------------------------------------------------------------


def _quadrature(spec, k, n, e, q):
    """The conjugate integral ∫ prior(θ) · tempered likelihood(θ) dθ, numerically."""
    a, b = float(spec.alpha[k]), float(spec.beta[k])
    if spec.kind == "count":  # Gamma(a, rate b) prior, θ^n e^{−θ e}
        def f(x):
            return np.exp(stats.gamma.logpdf(x, a, scale=1 / b) + n * np.log(x) - x * e)
        hi = stats.gamma.ppf(1 - 1e-15, a + n, scale=1 / (b + e))
        value = integrate.quad(f, 0, hi, epsabs=0, epsrel=1e-13, limit=400, points=[
            (a + n) / (b + e)])[0]
    elif spec.kind == "milestone":  # Beta(a, b) prior, h^n (1 − h)^{e − n}
        def f(x):
            return np.exp(stats.beta.logpdf(x, a, b) + n * np.log(x) + (e - n) * np.log1p(-x))
        value = integrate.quad(f, 0, 1, epsabs=0, epsrel=1e-13, limit=400)[0]
    else:  # Normal(a, b²) prior on μ, exp(−(Q − 2μY + μ²W) / 2σ²)
        var = spec.noise_sd**2

        def f(x):
            return np.exp(stats.norm.logpdf(x, a, b) - (q - 2 * x * n + x * x * e) / (2 * var))
        centre = (a / b**2 + n / var) / (1 / b**2 + e / var)
        width = (1 / b**2 + e / var) ** -0.5
        value = integrate.quad(f, centre - 40 * width, centre + 40 * width, epsabs=0,
                               epsrel=1e-13, limit=400, points=[centre])[0]
    return np.log(value)


@pytest.mark.parametrize("text", [COUNTS_ONLY, MILESTONES_ONLY, ALL_KINDS, WITH_LEVEL],
                         ids=["counts", "milestones", "mixed", "with-level"])
@pytest.mark.parametrize("seed", [0, 1])
def test_each_indicators_log_marginal_is_its_conjugate_integral(text, seed):
    scenario_set = parse_scenario_set(text)
    rng = np.random.default_rng(seed)
    through = dt.date(2003, 8, 14)  # mid-period: a partly elapsed last period
    rows = _random_rows(scenario_set, 40, through, rng)  # graded A1 … F6
    evidence = evidence_from_rows(scenario_set, rows, as_of=through, coverage=None)
    got = indicator_log_likelihoods(scenario_set, evidence)
    assert got.shape == (len(scenario_set.indicators), len(scenario_set.scenarios))
    for j, spec in enumerate(scenario_set.indicators):
        col = evidence.column(spec.id)
        n, e, q = (float(x[:, col].sum()) for x in (evidence.counts, evidence.exposure,
                                                     evidence.sumsq))
        tallies = own_tallies(spec.indicator, evidence.tallies[:, col].sum(axis=0))
        oracle = get_kind(spec.kind).oracle_log_marginal(spec, n, e, q, tallies)
        np.testing.assert_allclose(got[j], oracle, rtol=0, atol=1e-9)
        if spec.kind != "level":
            for k in range(len(scenario_set.scenarios)):
                assert got[j, k] == pytest.approx(_quadrature(spec, k, n, e, q), abs=1e-9)
    log_post = np.log(scenario_set.prior) + got.sum(axis=0)
    np.testing.assert_allclose(np.exp(log_post - logsumexp(log_post)),
                               exact_posterior(scenario_set, evidence).probability,
                               rtol=0, atol=1e-12)


def test_a_level_s_log_marginal_is_the_dirichlet_integral():
    # two levels: the Dirichlet is a Beta, integrated by quadrature
    text = ALL_KINDS + """  alert:
    kind: level
    name: Alert
    levels: [calm, alert]
    low:  {probabilities: [0.7, 0.3], concentration: 5}
    mid:  {probabilities: [0.5, 0.5], concentration: 4}
    high: {probabilities: [0.2, 0.8], concentration: 9}
"""
    scenario_set = parse_scenario_set(text)
    through = dt.date(2002, 12, 31)
    rows = [(i, dt.date(2000 + i % 3, 1 + 3 * (i % 4), 2), "alert", float(i % 2), grade)
            for i, grade in enumerate(["A1", "B2", "C3", "A1", "F6", "B2", "A1"])]
    evidence = evidence_from_rows(scenario_set, rows, as_of=through, coverage=None)
    got = indicator_log_likelihoods(scenario_set, evidence)[-1]
    c = own_tallies(scenario_set.indicators[-1].indicator,
                    evidence.tallies[:, evidence.column("alert")].sum(axis=0))
    assert c.sum() > 3
    for k, alpha in enumerate(scenario_set.indicators[-1].alpha):
        # p the chance of the second level: Beta(α_2, α_1)
        value = integrate.quad(lambda p, a=alpha: np.exp(
            stats.beta.logpdf(p, a[1], a[0]) + c[0] * np.log1p(-p) + c[1] * np.log(p)),
            0, 1, epsabs=0, epsrel=1e-13, limit=400)[0]
        assert got[k] == pytest.approx(np.log(value), abs=1e-9)


def test_a_dynamic_set_s_reading_is_that_of_its_scenarios_held_throughout():
    scenario_set = parse_scenario_set(MOVING)
    rows = _random_rows(scenario_set, 30, THROUGH, np.random.default_rng(3))
    evidence = evidence_from_rows(scenario_set, rows, as_of=THROUGH, coverage=None)
    static = parse_scenario_set(ALL_KINDS)
    np.testing.assert_array_equal(indicator_log_likelihoods(scenario_set, evidence),
                                  indicator_log_likelihoods(static, evidence))
    assert scenario_posterior(scenario_set, evidence, dynamic=False).method == "exact"
    with pytest.raises(ValueError, match="dynamic"):
        scenario_posterior(scenario_set, evidence)


# -- evidence from rows -----------------------------------------------------------------------


def test_evidence_from_rows_is_the_evidence_build_evidence_gives(all_kinds_set):
    rng = np.random.default_rng(4)
    through = dt.date(2004, 5, 20)
    rows = _random_rows(all_kinds_set, 60, through, rng)
    coverage = {"drills": dt.date(2003, 11, 30), "link": through, "trade": None}
    got = evidence_from_rows(all_kinds_set, rows, as_of=through, coverage=coverage)
    assert got.hash() == _build(all_kinds_set, rows, through, coverage).hash()
    # a stored weight in place of the grade is taken as it is
    stored = [(*r[:4], DEFAULT_GRADES.weight(r[4])) for r in rows]
    assert evidence_from_rows(all_kinds_set, stored, as_of=through,
                              coverage=coverage).hash() == got.hash()


@pytest.mark.slow
@pytest.mark.parametrize("text", [ALL_KINDS, WITH_LEVEL, MILESTONES_ONLY])
def test_every_variant_is_the_evidence_of_its_rows(text):
    """The fast column rebuild equals `build_evidence` of the rows with one left out."""
    scenario_set = parse_scenario_set(text)
    rng = np.random.default_rng(5)
    through = dt.date(2002, 8, 14)
    rows = _random_rows(scenario_set, 45, through, rng)
    rows.append(("other", dt.date(2001, 1, 1), "not_in_this_set", 1.0, "A1"))
    ids = scenario_set.indicator_ids
    coverage = {i: c for i, c in zip(ids, [dt.date(2002, 3, 31), None, through, through],
                                     strict=False)}
    variants = _Variants(scenario_set, rows, through, coverage, DEFAULT_GRADES)
    assert variants.fast
    for i in range(len(rows)):
        without = _build(scenario_set, rows[:i] + rows[i + 1:], through, coverage)
        assert variants.variant(i).hash() == without.hash(), rows[i]
        regraded = rows[:i] + [(*rows[i][:4], "F6")] + rows[i + 1:]
        assert variants.variant(i, 0.04).hash() == _build(
            scenario_set, regraded, through, coverage).hash(), rows[i]
    slow = _Variants(scenario_set, rows, through, coverage, DEFAULT_GRADES, fast=False)
    assert slow.variant(3).hash() == variants.variant(3).hash()


# -- leave-one-out, static --------------------------------------------------------------------


@pytest.mark.parametrize("text", [COUNTS_ONLY, ALL_KINDS, WITH_LEVEL])
def test_leave_one_out_on_a_static_set_is_the_exact_posterior_without_the_row(text):
    scenario_set = parse_scenario_set(text)
    rng = np.random.default_rng(6)
    through = dt.date(2002, 11, 3)
    rows = _random_rows(scenario_set, 30, through, rng)
    coverage = dict.fromkeys(scenario_set.indicator_ids, dt.date(2002, 9, 1))
    influences = observation_influence(scenario_set, rows, as_of=through, coverage=coverage,
                                       grades=DEFAULT_GRADES)
    everything = exact_posterior(scenario_set, _build(scenario_set, rows, through,
                                                      coverage)).probability
    assert len(influences) == len(rows)
    moved = 0
    for row, influence in zip(rows, influences, strict=True):
        i = rows.index(row)
        without = exact_posterior(scenario_set, _build(
            scenario_set, rows[:i] + rows[i + 1:], through, coverage)).probability
        f6 = exact_posterior(scenario_set, _build(
            scenario_set, rows, through, coverage,
            weight_of=lambda r, i=i: 0.04 if r is rows[i] else DEFAULT_GRADES.weight(r[4])
        )).probability
        assert influence.observation_id == row[0]
        np.testing.assert_allclose(influence.probability_without, without, rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(influence.delta_log_probability,
                                   np.log(everything) - np.log(without), atol=1e-9)
        np.testing.assert_allclose(influence.probability_if_f6, f6, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(influence.delta_log_probability_if_f6,
                                   np.log(everything) - np.log(f6), atol=1e-9)
        assert not influence.mcse.any() and not influence.mcse_delta.any()
        assert influence.critical == (np.argmax(without) != np.argmax(everything))
        moved += bool(np.abs(influence.delta_log_probability).max() > 1e-6)
    assert moved >= len(rows) // 2  # the test can tell a row that counts from one that does not


def test_a_single_decisive_report_is_critical_and_the_others_are_not(milestones_set):
    through = dt.date(2000, 12, 31)
    rows = [("cue", dt.date(2000, 3, 5), "cueing", 1.0, "A1"),
            ("radar-late", dt.date(2000, 11, 20), "radar", 1.0, "A1"),  # after its coverage
            ("cue-again", dt.date(2000, 4, 2), "cueing", 1.0, "C3")]  # corroborates, weaker
    coverage = {"cueing": through, "radar": dt.date(2000, 9, 30), "command": through}
    published = scenario_posterior(milestones_set, evidence_from_rows(
        milestones_set, rows, as_of=through, coverage=coverage))
    assert np.argmax(published.probability) == 1  # fast: cueing in its third month
    cue, late, again = observation_influence(milestones_set, rows, as_of=through,
                                             coverage=coverage)
    assert cue.critical and np.argmax(cue.probability_without) == 0
    assert cue.delta_log_probability[1] > 0.3
    # not counted (after radar's coverage), and outweighed by the A1 report: no influence
    for influence in (late, again):
        assert not influence.critical
        np.testing.assert_array_equal(influence.delta_log_probability, 0.0)
    # re-graded F6 the decisive report no longer carries the answer either
    assert np.argmax(cue.probability_if_f6) == 0


def test_a_hundred_rows_on_a_static_set():
    text = ALL_KINDS + LEVEL_BLOCK + """  patrols:
    kind: count
    name: Patrols
    low: {rate: 0.3, sd: 0.2}
    mid: {rate: 0.5, sd: 0.3}
    high: {rate: 0.9, sd: 0.5}
  radar:
    kind: milestone
    name: Radar
    low: {hazard: 0.005, sd: 0.004}
    mid: {hazard: 0.02, sd: 0.01}
    high: {hazard: 0.03, sd: 0.02}
"""
    scenario_set = parse_scenario_set(text)
    through = dt.date(2014, 12, 31)
    rows = _random_rows(scenario_set, 100, through, np.random.default_rng(7))
    observation_influence(scenario_set, rows[:2], as_of=through, coverage=None)  # warm
    influences = observation_influence(scenario_set, rows, as_of=through, coverage=None)
    assert len(influences) == 100  # its time: make bench-loop (what-if) — tests time nothing


# -- dynamic sets -----------------------------------------------------------------------------

# Three scenarios that move freely, eleven quarters: 3^11 paths, enumerated exactly
MOVING = ALL_KINDS.replace("indicators:", """dynamics:
  stay: 0.8
  moves: {low: [mid, high], mid: [low, high], high: [low, mid]}
  concentration: 10
indicators:""")
THROUGH = dt.date(2002, 9, 30)
MAX_PATHS = 3**11


def _switching_rows(rng):
    """Low activity for five quarters, then high; the link milestone in quarter 8."""
    rows, i = [], 0
    for q in range(11):
        start = dt.date(2000 + q // 4, 3 * (q % 4) + 1, 10)
        for _ in range(rng.poisson(0.8 if q < 5 else 2.2)):
            rows.append((i, start + dt.timedelta(days=int(rng.integers(0, 70))), "drills",
                         1.0, "B2"))
            i += 1
        rows.append((i, start, "trade", float(rng.normal(0.0 if q < 5 else 1.5, 2.0)),
                     "A1" if q % 2 else "C3"))
        i += 1
    rows.append((i, dt.date(2001, 11, 3), "link", 1.0, "B2"))
    return rows


@pytest.fixture(scope="module")
def moving_fit():
    """A path fit (no NUTS, no compile) of the dynamic set, on the evidence of its rows."""
    scenario_set = parse_scenario_set(MOVING)
    rows = _switching_rows(np.random.default_rng(1))
    evidence = evidence_from_rows(scenario_set, rows, as_of=THROUGH, coverage=None)
    result = fit(scenario_set, evidence,
                 FitSettings(sampler=SamplerSettings(method="paths", seed=11)))
    assert result.sampler["name"] == "paths" and result.sampler["exact"], result.sampler
    return scenario_set, rows, evidence, result.datatree["posterior"]


def _within(estimate, exact, sigmas=3.0, slack=0.004):
    return np.all(np.abs(estimate.probability - exact) <= sigmas * estimate.mcse + slack)


@pytest.mark.slow
def test_the_fit_s_own_evidence_gives_equal_weights_and_the_plain_average(moving_fit):
    scenario_set, _, evidence, posterior = moving_fit
    estimate = scenario_posterior(scenario_set, evidence, posterior=posterior, base=evidence)
    assert estimate.method == "draws" and estimate.pareto_k is None
    np.testing.assert_allclose(estimate.weights, 1 / estimate.weights.size)
    assert estimate.ess == estimate.weights.size
    per_draw = posterior["scenario_probability"].values.reshape(-1, 3)
    np.testing.assert_allclose(estimate.probability, per_draw.mean(axis=0), atol=1e-12)
    assert 0 < estimate.mcse.max() < 0.02
    assert _within(estimate, exact_dynamic_posterior(scenario_set, evidence,
                                                     MAX_PATHS).probability)
    # the artifact as the API opens it: the whole DataTree, written and read back
    assert scenario_posterior(scenario_set, evidence, posterior=xr.DataTree.from_dict(
        {"posterior": posterior.to_dataset()}), base=evidence) == estimate


@pytest.mark.slow
def test_what_if_one_more_report_matches_the_sum_over_every_path(moving_fit):
    scenario_set, rows, evidence, posterior = moving_fit
    extra = rows + [("new", dt.date(2002, 8, 1), "drills", 1.0, "A1"),
                    ("new-2", dt.date(2002, 8, 9), "drills", 1.0, "A1")]
    changed = evidence_from_rows(scenario_set, extra, as_of=THROUGH, coverage=None)
    exact = exact_dynamic_posterior(scenario_set, changed, MAX_PATHS).probability
    before = exact_dynamic_posterior(scenario_set, evidence, MAX_PATHS).probability
    assert np.abs(exact - before).max() > 0.02  # it moved
    estimate = what_if(scenario_set, changed, posterior=posterior, base=evidence)
    assert estimate.method == "reweighted" and estimate.pareto_k < 0.5, estimate
    assert estimate.ess > 1000
    assert _within(estimate, exact), (estimate, exact)
    # forecasts come from the draws resampled by the weights: equally weighted on `changed`
    kept = resampled_posterior(posterior, estimate.weights, 3000, seed=2)
    assert dict(kept.sizes)["chain"] == 1 and dict(kept.sizes)["draw"] == 3000
    assert "scenario_probability" not in kept
    assert kept["rate"].dims == posterior["rate"].dims
    again = scenario_posterior(scenario_set, changed, posterior=kept, base=changed)
    assert again.method == "draws"
    assert np.all(np.abs(again.probability - estimate.probability)
                  <= 3 * (again.mcse + estimate.mcse) + 0.004)


@pytest.mark.slow
def test_leave_one_out_on_a_dynamic_set_matches_the_sum_over_every_path(moving_fit):
    scenario_set, rows, evidence, posterior = moving_fit
    influences = observation_influence(scenario_set, rows, as_of=THROUGH, coverage=None,
                                       posterior=posterior)
    everything = scenario_posterior(scenario_set, evidence, posterior=posterior)
    checked = {0, 5, len(rows) // 2, len(rows) - 2, len(rows) - 1}  # … the milestone last
    for i in sorted(checked):
        without = exact_dynamic_posterior(scenario_set, _build(
            scenario_set, rows[:i] + rows[i + 1:], THROUGH, None), MAX_PATHS).probability
        influence = influences[i]
        got = Estimate(probability=influence.probability_without, mcse=influence.mcse,
                       method="reweighted")
        assert _within(got, without), (rows[i], influence, without)
        np.testing.assert_allclose(influence.delta_log_probability,
                                   np.log(everything.probability)
                                   - np.log(influence.probability_without), atol=1e-12)
        # both terms from the same draws: the difference is more precise than either term
        assert np.all(influence.mcse_delta < 0.05)
        assert np.all(influence.mcse_delta
                      < (influence.mcse + everything.mcse) / everything.probability + 1e-12)
    assert any(np.abs(x.delta_log_probability).max() > 0.1 for x in influences)


@pytest.mark.slow
def test_one_period_and_restarted_filters_equal_a_full_forward_filter(moving_fit):
    scenario_set, rows, evidence, posterior = moving_fit
    variants = _Variants(scenario_set, rows, THROUGH, None, DEFAULT_GRADES)
    draws = _Draws(scenario_set, posterior, evidence)
    draws.prepare(variants.periods())
    for i in (0, 3, len(rows) - 1):  # a drill, a trade value, the milestone (many periods)
        for weight in (None, 0.04):
            changed = variants.variant(i, weight)
            alpha, loglik = draws.filter(changed)
            _, filtered, full, _ = filtered_draws(
                scenario_set, EvidenceArrays.select(scenario_set, changed), posterior)
            np.testing.assert_allclose(alpha, filtered[:, -1], atol=1e-11)
            np.testing.assert_allclose(loglik - draws.loglik, full - draws.loglik, atol=1e-9)


def test_re_weighting_refuses_evidence_on_another_grid():
    scenario_set = parse_scenario_set(MOVING)
    rows = _switching_rows(np.random.default_rng(1))
    base = evidence_from_rows(scenario_set, rows, as_of=THROUGH, coverage=None)
    longer = evidence_from_rows(scenario_set, rows, as_of=dt.date(2002, 12, 31), coverage=None)
    posterior = _prior_draws(scenario_set, 2, 50, np.random.default_rng(0))
    with pytest.raises(ValueError, match="period grid"):
        scenario_posterior(scenario_set, longer, posterior=posterior, base=base)
    with pytest.raises(ValueError, match="rate"):
        scenario_posterior(scenario_set, base, posterior=posterior.drop_vars("rate"))


def _prior_draws(scenario_set, chains, draws, rng):
    """A posterior-shaped Dataset of prior draws (for shapes and timings, not for answers)."""
    n, k = chains * draws, len(scenario_set.scenarios)
    coords = {"chain": np.arange(chains), "draw": np.arange(draws),
              "scenario": list(scenario_set.scenario_ids)}
    variables = {}
    samplers = {"count": lambda a, b: rng.gamma(a, 1 / b, (n, k)),
                "milestone": lambda a, b: rng.beta(a, b, (n, k)),
                "signal": lambda a, b: rng.normal(a, b, (n, k))}
    for kind in ("count", "milestone", "signal"):
        specs = [s for s in scenario_set.indicators if s.kind == kind]
        if specs:
            dim = f"{kind}_indicator"
            coords[dim] = [s.id for s in specs]
            values = np.stack([samplers[kind](s.alpha, s.beta) for s in specs], axis=1)
            variables[get_kind(kind).parameter] = (("chain", "draw", dim, "scenario"),
                                                   values.reshape(chains, draws, -1, k))
    for row, columns, concentration in transition_rows(scenario_set):
        dim = f"from_{scenario_set.scenario_ids[row]}"
        coords[dim] = [scenario_set.scenario_ids[c] for c in columns]
        variables[f"transition_{scenario_set.scenario_ids[row]}"] = (
            ("chain", "draw", dim), rng.dirichlet(concentration, n).reshape(chains, draws, -1))
    return xr.Dataset(variables, coords=coords)


BENCH = """
id: bench
title: Four scenarios over sixty quarters
period: quarter
start: 2000-01-01
scenarios:
  - {id: a, name: A, prior: 0.4}
  - {id: b, name: B, prior: 0.3}
  - {id: c, name: C, prior: 0.2}
  - {id: d, name: D, prior: 0.1}
dynamics:
  stay: 0.95
  moves: {a: [b], b: [c, a], c: [d]}
indicators:
  drills:
    kind: count
    name: Drills
    a: {rate: 0.5, sd: 0.3}
    b: {rate: 1.0, sd: 0.5}
    c: {rate: 1.5, sd: 0.6}
    d: {rate: 2.5, sd: 1.0}
  patrols:
    kind: count
    name: Patrols
    a: {rate: 0.3, sd: 0.2}
    b: {rate: 0.5, sd: 0.3}
    c: {rate: 0.9, sd: 0.5}
    d: {rate: 1.2, sd: 0.5}
  link:
    kind: milestone
    name: Link
    a: {hazard: 0.01, sd: 0.008}
    b: {hazard: 0.03, sd: 0.02}
    c: {hazard: 0.05, sd: 0.03}
    d: {hazard: 0.08, sd: 0.04}
  trade:
    kind: signal
    name: Trade
    noise_sd: 2.0
    a: {mean: 0.0, sd: 1.0}
    b: {mean: 0.5, sd: 1.0}
    c: {mean: 1.0, sd: 1.0}
    d: {mean: 1.5, sd: 1.5}
"""


def test_a_hundred_rows_on_4000_draws_of_sixty_periods():
    scenario_set = parse_scenario_set(BENCH)
    through = dt.date(2014, 12, 31)
    rng = np.random.default_rng(8)
    rows = _random_rows(scenario_set, 100, through, rng, grades=("A1", "B2", "C3"))
    posterior = _prior_draws(scenario_set, 4, 1000, rng)
    observation_influence(scenario_set, rows[:2], as_of=through, coverage=None,
                          posterior=posterior)  # numba's kernels loaded
    influences = observation_influence(scenario_set, rows, as_of=through, coverage=None,
                                       posterior=posterior)
    assert len(influences) == 100
    assert all(np.isfinite(x.probability_without).all() for x in influences)
