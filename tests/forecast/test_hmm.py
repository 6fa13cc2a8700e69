"""The HMM with everything pinned against a plain NumPy forward filter, and the collapsed
emissions against the static closed form."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
from scipy import stats
from scipy.special import logsumexp

from forecast import exact_posterior, forward_filter, log_emission, period_loglik

from .conftest import make_evidence, simulate


def numpy_forward(prior, transition, log_b):
    """Textbook forward recursion in log space."""
    log_alpha = np.log(prior) + log_b[0]
    out = [log_alpha - logsumexp(log_alpha)]
    for t in range(1, len(log_b)):
        log_alpha = logsumexp(log_alpha[:, None] + np.log(transition), axis=0) + log_b[t]
        out.append(log_alpha - logsumexp(log_alpha))
    return np.exp(np.array(out)), float(logsumexp(log_alpha))


def scipy_emissions(scenario_set, evidence, theta):
    """log p(y_t | z_t = k, θ) straight from scipy.stats, per indicator kind."""
    n_periods = evidence.n_periods
    total = np.zeros((n_periods, len(scenario_set.scenarios)))
    for j, spec in enumerate(scenario_set.indicators):
        c = evidence.counts[:, j][:, None]
        e = evidence.exposure[:, j][:, None]
        th = theta[spec.id][None, :]
        if spec.kind == "count":
            total += stats.poisson.logpmf(c, th * e)
        elif spec.kind == "milestone":
            total += np.where(c > 0, c * np.log(th), 0.0) + (e - c) * np.log1p(-th)
        else:
            q = evidence.sumsq[:, j][:, None]
            # Σ_i w_i log N(y_i | θ, σ²) from the sufficient statistics
            sigma = spec.noise_sd
            total += (-(q - 2 * th * c + th**2 * e) / (2 * sigma**2)
                      - 0.5 * e * np.log(2 * np.pi * sigma**2))
    return total


def test_pinned_hmm_equals_numpy_forward_filter(all_kinds_set):
    rng = np.random.default_rng(42)
    evidence = simulate(all_kinds_set, scenario=1, n_periods=60, rng=rng)
    theta = {"drills": np.array([0.8, 1.3, 2.1]), "link": np.array([0.01, 0.04, 0.09]),
             "trade": np.array([0.0, 0.6, 1.4])}
    transition = rng.dirichlet(np.ones(3) * 2, size=3) * 0.2 + np.eye(3) * 0.8

    log_b = sum(
        period_loglik(spec.kind, theta[spec.id], evidence.counts[:, j], evidence.exposure[:, j],
                      evidence.sumsq[:, j], spec.noise_sd).eval()
        for j, spec in enumerate(all_kinds_set.indicators)
    )
    filtered, loglik = forward_filter(all_kinds_set.prior, transition, log_b)

    expected, expected_loglik = numpy_forward(
        all_kinds_set.prior, transition, scipy_emissions(all_kinds_set, evidence, theta))
    np.testing.assert_allclose(filtered, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(loglik, expected_loglik, rtol=1e-9)
    assert np.abs(filtered - expected).max() < 1e-10


def test_collapsed_emissions_with_identity_transitions_give_the_static_posterior(counts_set):
    rng = np.random.default_rng(3)
    evidence = simulate(counts_set, scenario=1, n_periods=30, rng=rng)
    c, e, q = pt.matrix("c"), pt.matrix("e"), pt.matrix("q")
    fn = pytensor.function([c, e, q], log_emission(counts_set, c, e, q), on_unused_input="ignore")
    path, _ = forward_filter(counts_set.prior, np.eye(3),
                             fn(evidence.counts, evidence.exposure, evidence.sumsq))
    for t in (0, 9, 29):
        truncated = make_evidence(counts_set, evidence.counts[: t + 1],
                                  evidence.exposure[: t + 1])
        np.testing.assert_allclose(path[t], exact_posterior(counts_set, truncated).probability,
                                   atol=1e-12)
