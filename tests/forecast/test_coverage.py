"""Evidence that stops at its coverage: identities the model must keep, against closed forms.

A period after an indicator's coverage carries nothing for it, so: a static set's posterior
as of any later date is exactly its posterior as of the coverage date; with pinned
transitions the later filtered state is the earlier one pushed through the transitions; a
review of a quiet stretch turns it into evidence, as the exact oracle says; and "reached by" and
milestone timing count the unobserved periods, as a sum over every path says.
"""

from __future__ import annotations

from datetime import date, timedelta
from itertools import product

import numpy as np
import pytest
from scipy.special import logsumexp

from forecast import exact_posterior, fit, forward_filter, set_evidence
from forecast.horizon import Draws, first_passage_since, milestone_occurrence, unobserved_time
from forecast.model import EvidenceArrays, regime_loglik
from indicators import Observation, Review
from priors import parse_scenario_set

from .conftest import ALL_KINDS
from .test_dynamic import MOVING

D = date(2004, 6, 30)  # the coverage date: everything through it was reviewed
LATER = date(2008, 11, 20)


def observations(rng, until=D, start=date(2000, 1, 1)):
    """Drills, trade values and one link report, dated inside [start, until]."""
    days = (until - start).days
    rows = [Observation(indicator="drills", date=start + timedelta(days=int(d)), grade="B2")
            for d in rng.integers(0, days, size=14)]
    rows += [Observation(indicator="trade", date=start + timedelta(days=int(d)),
                         value=float(rng.normal(0.8, 2.0)), grade="A2")
             for d in rng.integers(0, days, size=9)]
    rows.append(Observation(indicator="link", date=start + timedelta(days=days // 2),
                            grade="C2"))
    return rows


@pytest.fixture(scope="module")
def static_set():
    return parse_scenario_set(ALL_KINDS)


@pytest.fixture(scope="module")
def moving_set():
    return parse_scenario_set(MOVING)


def test_a_static_set_after_its_coverage_is_exactly_its_posterior_at_the_coverage_date(
        static_set, model_cache):
    rows = observations(np.random.default_rng(1))
    review = [Review(D, static_set.indicator_ids)]
    at_d = set_evidence(static_set, rows, as_of=D, reviews=review)
    later = set_evidence(static_set, rows, as_of=LATER, reviews=review)
    assert later.n_periods > at_d.n_periods and later.coverage == at_d.coverage
    np.testing.assert_allclose(exact_posterior(static_set, later).probability,
                               exact_posterior(static_set, at_d).probability, atol=1e-12)
    # and the published fit of the static model (its probability is the closed form)
    fitted = fit(static_set, later, cache=model_cache)
    np.testing.assert_allclose(fitted.probabilities,
                               exact_posterior(static_set, at_d).probability, atol=1e-12)


def test_pinned_transitions_push_the_covered_filter_forward(moving_set):
    rng = np.random.default_rng(2)
    rows = observations(rng)
    review = [Review(D, moving_set.indicator_ids)]
    at_d = set_evidence(moving_set, rows, as_of=D, reviews=review)
    later = set_evidence(moving_set, rows, as_of=LATER, reviews=review)
    transition = np.array([[0.9, 0.06, 0.04], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8]])
    theta = {"rate": np.array([[0.8, 1.3, 2.2]]), "hazard": np.array([[0.02, 0.05, 0.1]]),
             "level": np.array([[0.0, 0.6, 1.4]])}

    def filtered(evidence):
        arrays = EvidenceArrays.select(moving_set, evidence)
        emissions = regime_loglik(moving_set, arrays.counts, arrays.exposure, theta, math=np)
        return forward_filter(moving_set.prior, transition, emissions)[0]

    gap = later.n_periods - at_d.n_periods
    np.testing.assert_allclose(filtered(later)[-1],
                               filtered(at_d)[-1] @ np.linalg.matrix_power(transition, gap),
                               atol=1e-9)


def test_a_review_of_a_quiet_stretch_turns_it_into_evidence(static_set):
    rows = observations(np.random.default_rng(3), until=date(2002, 3, 31))
    as_of = date(2006, 12, 31)
    unreviewed = set_evidence(static_set, rows, as_of=as_of, reviews=[])
    reviewed = set_evidence(static_set, rows, as_of=as_of,
                            reviews=[Review(as_of, static_set.indicator_ids)])
    # unreviewed, the log counts through its newest entry only: the quiet years are missing
    newest = max(o.date for o in rows)
    assert set(unreviewed.coverage) == {newest}
    through_newest = set_evidence(static_set, rows, as_of=newest, reviews=[])
    np.testing.assert_allclose(exact_posterior(static_set, unreviewed).probability,
                               exact_posterior(static_set, through_newest).probability,
                               atol=1e-12)
    # reviewed, they are evidence: eighteen more quarters without a drill, a link or trade
    drills = static_set.indicator_ids.index("drills")
    assert reviewed.exposure[:, drills].sum() == pytest.approx(
        unreviewed.exposure[:, drills].sum() + (as_of - newest).days / 91.3, abs=0.3)
    before = exact_posterior(static_set, unreviewed).probability
    after = exact_posterior(static_set, reviewed).probability
    # quiet is evidence for the scenario that expects the fewest drills
    assert after[0] > before[0] + 0.02 and after[2] < before[2]


def _path_weights(moving_set, evidence, transition, theta):
    """Every path of the grid: its posterior weight given pinned (A, θ)."""
    arrays = EvidenceArrays.select(moving_set, evidence)
    emissions = regime_loglik(moving_set, arrays.counts, arrays.exposure, theta, math=np)
    t_len = evidence.n_periods
    paths = np.array(list(product(range(3), repeat=t_len)))
    log_w = (np.log(moving_set.prior)[paths[:, 0]]
             + np.log(transition[paths[:, :-1], paths[:, 1:]]).sum(axis=1)
             + emissions[np.arange(t_len), paths].sum(axis=1))
    return paths, np.exp(log_w - logsumexp(log_w)), emissions


def test_reached_by_counts_from_the_coverage_period_through_the_gap(moving_set):
    """P(the scenario held at some period from the last covered one to T + h): as a sum over
    every path of the grid (their posterior weights), then over the future by the chain."""
    rows = observations(np.random.default_rng(4), until=date(2001, 2, 14))
    evidence = set_evidence(moving_set, rows, as_of=date(2001, 12, 31),
                            reviews=[Review(date(2001, 2, 14), moving_set.indicator_ids)])
    assert evidence.n_periods == 8  # 2000Q1 … 2001Q4; covered through 2001Q1
    transition = np.array([[0.85, 0.1, 0.05], [0.05, 0.9, 0.05], [0.1, 0.2, 0.7]])
    theta = {"rate": np.array([[0.5, 1.5, 2.5]]), "hazard": np.array([[0.02, 0.05, 0.2]]),
             "level": np.array([[0.0, 0.5, 1.5]])}
    paths, weights, emissions = _path_weights(moving_set, evidence, transition, theta)
    filtered, _ = forward_filter(moving_set.prior, transition, emissions)
    draws = Draws(alpha=filtered[-1][None], transition=transition[None], n_chains=1,
                  filtered=filtered[None], log_emission=emissions[None])
    since, steps, target = 4, 3, 2
    got = first_passage_since(draws, [target], steps, since)[0]
    for h in range(steps + 1):
        # not yet there at any period since: then it must avoid the target for h more steps
        avoided = ~(paths[:, since:] == target).any(axis=1)
        stay_out = np.array([np.linalg.matrix_power(
            np.where(np.arange(3) == target, 0.0, transition), h)[z].sum() for z in paths[:, -1]])
        want = 1.0 - (weights * avoided * np.where(avoided, stay_out, 0.0)).sum()
        assert got[h] == pytest.approx(want, abs=1e-12), h


def test_a_milestone_not_logged_may_have_happened_in_the_unobserved_time(moving_set):
    rows = [o for o in observations(np.random.default_rng(5), until=date(2001, 2, 14))
            if o.indicator != "link"]
    coverage = Review(date(2001, 2, 14), moving_set.indicator_ids)
    evidence = set_evidence(moving_set, rows, as_of=date(2001, 11, 5), reviews=[coverage])
    transition = np.array([[0.85, 0.1, 0.05], [0.05, 0.9, 0.05], [0.1, 0.2, 0.7]])
    hazard = np.array([0.03, 0.1, 0.3])
    theta = {"rate": np.array([[0.5, 1.5, 2.5]]), "hazard": hazard[None],
             "level": np.array([[0.0, 0.5, 1.5]])}
    paths, weights, emissions = _path_weights(moving_set, evidence, transition, theta)
    filtered, _ = forward_filter(moving_set.prior, transition, emissions)
    draws = Draws(alpha=filtered[-1][None], transition=transition[None], n_chains=1,
                  filtered=filtered[None], log_emission=emissions[None])
    gap = unobserved_time(evidence, "link")
    # 2001Q1 after 14 February, Q2 and Q3 in full, Q4 through 5 November
    np.testing.assert_allclose(gap[:4], 0.0)
    assert gap[4] == pytest.approx(45 / 90) and gap[5] == gap[6] == 1.0
    assert gap[7] == pytest.approx(36 / 92)
    steps = 2
    got = milestone_occurrence(draws, hazard[None], steps, gap)[0]
    survive_gap = np.prod((1.0 - hazard[paths]) ** gap, axis=1)
    assert got[0] == pytest.approx(1.0 - (weights * survive_gap).sum(), abs=1e-12)
    for h in range(1, steps + 1):  # then each future period at risk in full
        future = np.zeros(3)
        for z_now in range(3):
            mass = weights[paths[:, -1] == z_now] @ survive_gap[paths[:, -1] == z_now]
            state = np.eye(3)[z_now] * mass
            for _ in range(h):
                state = (state @ transition) * (1.0 - hazard)
            future[z_now] = state.sum()
        assert got[h] == pytest.approx(1.0 - future.sum(), abs=1e-12), h


def test_a_fit_past_its_coverage_forecasts_reach_from_the_last_covered_period():
    """Whatever the date: the same evidence covered through D gives the same "reached by"
    and the same forecast for the set's end, and the nowcast moves towards it."""
    ending = parse_scenario_set(MOVING.replace("start: 2000-01-01",
                                               "start: 2000-01-01\nend: 2010-12-31"))
    rows = observations(np.random.default_rng(6))
    review = [Review(D, ending.indicator_ids)]
    results = [fit(ending, set_evidence(ending, rows, as_of=as_of, reviews=review))
               for as_of in (D, date(2005, 9, 30))]
    for k, sid in enumerate(ending.scenario_ids):
        a, b = (r.outlook["reach"][sid] for r in results)
        tolerance = 4 * np.hypot(a["mcse"], b["mcse"]) + 1e-9
        assert a["p_by_end"] == pytest.approx(b["p_by_end"], abs=tolerance), sid
        at_a, at_b = (r.outlook["horizon"]["at"][-1][k] for r in results)
        mc_a, mc_b = (r.outlook["horizon"]["at_mcse"][-1][k] for r in results)
        assert at_a == pytest.approx(at_b, abs=4 * np.hypot(mc_a, mc_b) + 1e-9), sid
