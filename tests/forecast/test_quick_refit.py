"""Quick refits (decision 015): the last path fit's iid draws re-weighted for new evidence.

Checked against the sum over every path (`exact_dynamic_posterior`) on evidence the base fit
did not see: each single report added or removed lands within its reported Monte Carlo error;
a change the draws cannot cover fails the gate and is enumerated instead (exact again); a second
fit of the same evidence, a seeded fit and the library default enumerate.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from forecast import FitSettings, ModelCache, exact_dynamic_posterior, fit
from priors import parse_scenario_set

from .test_dynamic import MOVING, _switching_evidence

QUICK = FitSettings.from_mapping({"sampler": {"method": "paths", "quick_refits": True}})


@pytest.fixture(scope="module")
def moving():
    scenario_set = parse_scenario_set(MOVING)
    return scenario_set, _switching_evidence(scenario_set, np.random.default_rng(5))


@pytest.fixture
def warm(moving):
    """A cache holding the enumerated fit of the base evidence (every one of 3^9 paths)."""
    scenario_set, evidence = moving
    cache = ModelCache()
    base = fit(scenario_set, evidence, QUICK, cache=cache)
    assert base.sampler["name"] == "paths" and base.sampler["exact"]
    return cache


def _changed(evidence, period: int, column: int, by: float):
    counts = evidence.counts.copy()
    counts[period, column] = max(counts[period, column] + by, 0.0)
    return dataclasses.replace(evidence, counts=counts)


# one more (or one fewer) report of the count indicator, early, at the switch, late
@pytest.mark.parametrize(("period", "by"), [(1, 1.0), (4, 1.0), (8, 1.0), (7, -1.0)])
def test_a_quick_refit_lands_on_the_sum_over_every_path(moving, warm, period, by):
    scenario_set, evidence = moving
    changed = _changed(evidence, period, 0, by)
    oracle = exact_dynamic_posterior(scenario_set, changed).probability
    quick = fit(scenario_set, changed, QUICK, cache=warm)
    assert quick.sampler["name"] == "psis" and quick.sampler["base_sampler"] == "paths"
    assert quick.diagnostics.passed, quick.diagnostics
    assert quick.diagnostics.pareto_k <= 0.7
    mcse = np.array([s.mcse for s in quick.scenarios])
    assert np.all(mcse > 0)  # no control variate: a Monte Carlo answer, and it says so
    assert np.all(np.abs(quick.probabilities - oracle) <= 3.5 * mcse), (
        quick.probabilities, oracle, mcse)
    assert np.abs(quick.probabilities - exact_dynamic_posterior(scenario_set, evidence)
                  .probability).max() > 3.5 * mcse.max()  # the new report moved it, visibly
    # the kept draws are the re-weighted ones: their nowcasts average to the answer
    kept = quick.datatree["posterior"]["scenario_probability"].values.reshape(-1, 3)
    assert np.all(np.abs(kept.mean(axis=0) - oracle) <= 5 * mcse + 2e-3)


def test_the_second_fit_of_the_same_evidence_enumerates(moving, warm):
    scenario_set, evidence = moving
    changed = _changed(evidence, 3, 0, 1.0)
    first = fit(scenario_set, changed, QUICK, cache=warm)
    again = fit(scenario_set, changed, QUICK, cache=warm)
    assert first.sampler["name"] == "psis"
    assert again.sampler["name"] == "paths" and again.sampler["exact"]
    np.testing.assert_allclose(again.probabilities,
                               exact_dynamic_posterior(scenario_set, changed).probability,
                               atol=1e-12)
    # the refinement is the new base: the next report is re-weighted from it
    following = fit(scenario_set, _changed(changed, 6, 0, 1.0), QUICK, cache=warm)
    assert following.sampler["name"] == "psis"
    assert following.sampler["base_evidence_hash"] == changed.hash()


def test_evidence_the_draws_cannot_cover_is_enumerated(moving, warm):
    scenario_set, evidence = moving
    far = dataclasses.replace(evidence, counts=evidence.counts * np.array([6.0, 1.0, 1.0]))
    result = fit(scenario_set, far, QUICK, cache=warm)
    assert result.sampler["name"] == "paths"
    assert result.sampler["rejected"]["psis"], result.sampler  # says why it was not used
    np.testing.assert_allclose(result.probabilities,
                               exact_dynamic_posterior(scenario_set, far).probability,
                               atol=1e-12)


def test_seeded_fits_and_the_library_default_never_reweight(moving, warm):
    scenario_set, evidence = moving
    changed = _changed(evidence, 2, 0, 1.0)
    seeded = FitSettings.from_mapping({"sampler": {"method": "paths", "quick_refits": True,
                                                   "seed": 3}})
    assert fit(scenario_set, changed, seeded, cache=warm).sampler["name"] == "paths"
    plain = FitSettings.from_mapping({"sampler": {"method": "paths"}})
    assert fit(scenario_set, _changed(evidence, 7, 0, 1.0), plain,
               cache=warm).sampler["name"] == "paths"
