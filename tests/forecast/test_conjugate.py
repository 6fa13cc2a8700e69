"""Static sets' conjugate fits: the probability exact, the parameters iid from their posteriors.

The draws' means are checked against each kind's closed-form posterior mean
(`Kind.posterior_mean`, written apart from its `conditional_draw`), within 5 standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from forecast import FitSettings, SamplerSettings, exact_posterior, fit
from forecast.model import EvidenceArrays, kind_groups
from indicators.kinds import own_tallies

from .conftest import simulate


@pytest.fixture(scope="module")
def fitted(all_kinds_set):
    evidence = simulate(all_kinds_set, 1, 24, np.random.default_rng(3), weight=0.7)
    settings = FitSettings(sampler=SamplerSettings(draws=2000, chains=4))
    return all_kinds_set, evidence, fit(all_kinds_set, evidence, settings)


def test_probability_is_exact_and_no_model_is_compiled(fitted):
    scenario_set, evidence, result = fitted
    assert result.passed
    assert result.record.sampler.NAME == "conjugate"
    assert result.record.timings.compile_s == 0.0
    np.testing.assert_allclose(result.probabilities,
                               exact_posterior(scenario_set, evidence).probability, atol=1e-12)
    assert all(s.mcse == 0.0 for s in result.scenarios)


def test_parameter_draws_follow_each_kinds_posterior(fitted):
    scenario_set, evidence, result = fitted
    arrays = EvidenceArrays.select(scenario_set, evidence)
    posterior = result.datatree["posterior"]
    checked = 0
    for kind, idx, specs in kind_groups(scenario_set):
        draws = posterior[kind.parameter].values
        draws = draws.reshape(-1, *draws.shape[2:])  # (S, J_kind, K[, L])
        for g, (j, spec) in enumerate(zip(idx, specs, strict=True)):
            n, e, q = (arrays.counts[:, j].sum(), arrays.exposure[:, j].sum(),
                       arrays.sumsq[:, j].sum())
            c = None
            if arrays.tallies is not None and arrays.tallies.shape[-1]:
                c = own_tallies(spec.indicator, arrays.tallies[:, j]).sum(axis=0)
            expected = np.asarray(kind.posterior_mean(spec, n, e, q, c))
            values = draws[:, g]
            if values.ndim == 3:  # a level: the mean position of its level
                values = (values * np.arange(values.shape[-1])).sum(axis=-1)
            error = values.std(axis=0) / np.sqrt(values.shape[0])
            assert np.all(np.abs(values.mean(axis=0) - expected) < 5 * error + 1e-12), spec.id
            checked += 1
    assert checked == len(scenario_set.indicators)


def test_same_evidence_same_draws(fitted):
    scenario_set, evidence, result = fitted
    again = fit(scenario_set, evidence, FitSettings(sampler=SamplerSettings(draws=2000,
                                                                             chains=4)))
    assert again.record.parameters == result.record.parameters
