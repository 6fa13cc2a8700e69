"""The closed form itself, against numerical integration, and the model's exact identities."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from scipy.special import gammaln

from forecast import exact_posterior
from forecast.exact import log_marginal_count, log_marginal_milestone, log_marginal_signal
from forecast.model import log_marginal
from priors import parse_scenario_set

from .conftest import make_evidence


def test_count_marginal_matches_quadrature():
    alpha, beta, counts, exposure = 3.0, 2.0, np.array([2.0, 0.0, 3.0, 1.0]), np.ones(4)

    def integrand(rate):
        return (np.prod(stats.poisson.pmf(counts, rate * exposure))
                * stats.gamma.pdf(rate, alpha, scale=1 / beta))

    numeric, _ = integrate.quad(integrand, 0, 50, limit=200)
    # the closed form drops Σ c·log e − log c!, which does not depend on the scenario
    dropped = np.sum(counts * np.log(exposure) - gammaln(counts + 1))
    closed = log_marginal_count(alpha, beta, counts.sum(), exposure.sum()) + dropped
    np.testing.assert_allclose(closed, np.log(numeric), rtol=1e-9)


def test_milestone_marginal_matches_quadrature():
    a, b, at_risk_before = 0.8, 40.0, 23

    def integrand(h):
        return (1 - h) ** at_risk_before * h * stats.beta.pdf(h, a, b)

    numeric, _ = integrate.quad(integrand, 0, 1, limit=500, epsabs=0, epsrel=1e-12)
    closed = log_marginal_milestone(a, b, 1.0, float(at_risk_before))
    np.testing.assert_allclose(closed, np.log(numeric), rtol=1e-7)


def test_signal_marginal_matches_quadrature_with_weights():
    m, s, sigma = 0.5, 1.3, 2.0
    y = np.array([0.3, -1.2, 2.5, 1.1])
    w = np.array([1.0, 0.6, 0.85, 0.3])

    def integrand(mu):
        # tempered likelihood: w × log N(y | mu, sigma²)
        loglik = np.sum(w * stats.norm.logpdf(y, mu, sigma))
        return np.exp(loglik) * stats.norm.pdf(mu, m, s)

    numeric, _ = integrate.quad(integrand, -30, 30, limit=200)
    dropped = np.sum(-0.5 * w * np.log(2 * np.pi * sigma**2))
    closed = log_marginal_signal(m, s, sigma, w.sum(), (w * y).sum(), (w * y**2).sum())
    np.testing.assert_allclose(closed + dropped, np.log(numeric), rtol=1e-9)


def _random_count_set(rates, sds, priors):
    scenarios = "\n".join(
        f"  - {{id: s{k}, name: S{k}, prior: {p!r}}}" for k, p in enumerate(priors))
    pairs = enumerate(zip(rates, sds, strict=True))
    expectations = "\n".join(f"    s{k}: {{rate: {r!r}, sd: {s!r}}}" for k, (r, s) in pairs)
    return parse_scenario_set(
        f"id: prop\ntitle: P\nperiod: year\nstart: 2000-01-01\nscenarios:\n{scenarios}\n"
        f"indicators:\n  drills:\n    kind: count\n    name: D\n{expectations}\n")


@st.composite
def count_sets_and_evidence(draw):
    k = draw(st.integers(2, 4))
    rates = [draw(st.floats(0.1, 5.0)) for _ in range(k)]
    sds = [r * draw(st.floats(0.1, 1.5)) for r in rates]
    raw = [draw(st.floats(0.05, 1.0)) for _ in range(k)]
    priors = [round(r / sum(raw), 12) for r in raw]
    priors[-1] = round(1.0 - sum(priors[:-1]), 12)
    n = draw(st.integers(1, 30))
    counts = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))
    weights = draw(st.lists(st.sampled_from([1.0, 0.85, 0.6, 0.3]), min_size=n, max_size=n))
    return rates, sds, priors, np.array(counts, float) * np.array(weights)


@settings(max_examples=60, deadline=None)
@given(count_sets_and_evidence(), st.data())
def test_one_more_event_multiplies_odds_by_ratio_of_posterior_mean_rates(case, data):
    rates, sds, priors, counts = case
    if min(priors) <= 0:
        return
    scenario_set = _random_count_set(rates, sds, priors)
    n = len(counts)
    evidence = make_evidence(scenario_set, counts[:, None], np.ones((n, 1)))
    before = exact_posterior(scenario_set, evidence)
    t = data.draw(st.integers(0, n - 1))
    more = counts.copy()
    more[t] += 1
    after = exact_posterior(scenario_set, make_evidence(scenario_set, more[:, None],
                                                        np.ones((n, 1))))
    mean_rate = before.posterior_mean[0]
    for k in range(len(priors)):
        for j in range(len(priors)):
            odds_ratio = (after.probability[k] / after.probability[j]) / (
                before.probability[k] / before.probability[j])
            np.testing.assert_allclose(odds_ratio, mean_rate[k] / mean_rate[j], rtol=1e-8)


def test_pytensor_model_marginal_equals_numpy_oracle(all_kinds_set):
    rng = np.random.default_rng(0)
    n = pt.vector("n")
    e = pt.vector("e")
    q = pt.vector("q")
    fn = pytensor.function([n, e, q], log_marginal(all_kinds_set, n, e, q))
    for _ in range(5):
        totals = np.array([rng.integers(0, 60), rng.choice([0.0, 0.6, 1.0]), rng.normal(5, 3)])
        exposure = np.array([40.0, 25.0, rng.uniform(10, 40)])
        sumsq = np.array([0.0, 0.0, totals[2] ** 2 / exposure[2] + rng.uniform(0, 50)])
        counts = np.zeros((1, 3))
        counts[0] = totals
        evidence = make_evidence(all_kinds_set, counts, exposure[None, :], sumsq[None, :])
        oracle = exact_posterior(all_kinds_set, evidence)
        np.testing.assert_allclose(fn(totals, exposure, sumsq), oracle.log_marginal,
                                   rtol=1e-10, atol=1e-10)
