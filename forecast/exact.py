"""Closed-form posterior of the static conjugate model — the oracle.

With identity transitions the scenario never changes, and under a fixed scenario every
indicator's parameter has a conjugate prior, so each scenario's evidence has a closed-form
marginal likelihood:

* count (Gamma–Poisson): ``α log β − lnΓ(α) + lnΓ(α + C) − (α + C) log(β + E)``
* milestone (Beta–geometric): ``ln B(a + S, b + F) − ln B(a, b)`` with ``F = Σ(at risk − S)``
* signal (Normal–Normal, tempered):
  ``−½ log(1 + s²W/σ²) − ½[Q/σ² + m²/s² − (m/s² + Y/σ²)² / (1/s² + W/σ²)]``

(terms that do not depend on the scenario are dropped; they cancel). The posterior is
``softmax(log prior + Σ_j log m[j, k])``. Written in NumPy/SciPy, independently of the PyTensor
model, so that tests can hold one against the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, gammaln, logsumexp

from indicators import Evidence
from priors import ScenarioSet


@dataclass(frozen=True)
class ExactPosterior:
    """The closed-form answer of the static conjugate model.

    Attributes
    ----------
    probability : numpy.ndarray
        (K,) posterior scenario probabilities.
    log_marginal : numpy.ndarray
        (J, K) log marginal likelihood of each indicator's evidence under each scenario.
    posterior_mean : numpy.ndarray
        (J, K) posterior mean of each indicator's parameter under each scenario (rate,
        hazard or signal mean).

    """

    probability: np.ndarray
    log_marginal: np.ndarray
    posterior_mean: np.ndarray


def log_marginal_count(alpha, beta, events, exposure):
    """Log marginal likelihood of Poisson counts under a Gamma(α, β) rate prior (vectorised)."""
    return (alpha * np.log(beta) - gammaln(alpha) + gammaln(alpha + events)
            - (alpha + events) * np.log(beta + exposure))


def log_marginal_milestone(a, b, successes, failures):
    """Log marginal likelihood of a milestone's periods under a Beta(a, b) hazard prior."""
    return betaln(a + successes, b + failures) - betaln(a, b)


def log_marginal_signal(prior_mean, prior_sd, noise_sd, weight, wsum, wsumsq):
    """Log marginal likelihood of weighted Normal signal values under a Normal mean prior."""
    prior_prec = 1.0 / prior_sd**2
    data_prec = weight / noise_sd**2
    post_prec = prior_prec + data_prec
    shift = prior_mean * prior_prec + wsum / noise_sd**2
    return -0.5 * np.log(post_prec / prior_prec) - 0.5 * (
        wsumsq / noise_sd**2 + prior_mean**2 * prior_prec - shift**2 / post_prec
    )


def exact_posterior(scenario_set: ScenarioSet, evidence: Evidence) -> ExactPosterior:
    """Closed-form posterior of a static conjugate scenario set.

    Parameters
    ----------
    scenario_set : ScenarioSet
        The set; its dynamics, if any, are ignored (identity transitions).
    evidence : Evidence
        Aggregated evidence whose indicator ids include the set's.

    Returns
    -------
    ExactPosterior

    """
    k = len(scenario_set.scenarios)
    log_m = np.zeros((len(scenario_set.indicators), k))
    post_mean = np.zeros_like(log_m)
    for j, spec in enumerate(scenario_set.indicators):
        col = evidence.column(spec.id)
        total = float(evidence.counts[:, col].sum())
        exposure = float(evidence.exposure[:, col].sum())
        if spec.kind == "count":
            log_m[j] = log_marginal_count(spec.alpha, spec.beta, total, exposure)
            post_mean[j] = (spec.alpha + total) / (spec.beta + exposure)
        elif spec.kind == "milestone":
            failures = exposure - total
            log_m[j] = log_marginal_milestone(spec.alpha, spec.beta, total, failures)
            post_mean[j] = (spec.alpha + total) / (spec.alpha + spec.beta + exposure)
        else:
            sumsq = float(evidence.sumsq[:, col].sum())
            log_m[j] = log_marginal_signal(spec.alpha, spec.beta, spec.noise_sd,
                                           exposure, total, sumsq)
            prec = 1 / spec.beta**2 + exposure / spec.noise_sd**2
            post_mean[j] = (spec.alpha / spec.beta**2 + total / spec.noise_sd**2) / prec
    log_post = np.log(scenario_set.prior) + log_m.sum(axis=0)
    probability = np.exp(log_post - logsumexp(log_post))
    return ExactPosterior(probability=probability, log_marginal=log_m, posterior_mean=post_mean)


KIND_PARAMETER_NAMES = {"count": "rate", "milestone": "hazard", "signal": "level"}


def conditional_draws(scenario_set: ScenarioSet, counts: np.ndarray, exposure: np.ndarray,
                      sumsq: np.ndarray, n_chains: int, n_draws: int,
                      rng: np.random.Generator) -> dict[str, tuple[tuple[str, ...], list[str],
                                                                   np.ndarray]]:
    """Exact iid draws of each indicator's parameter given each scenario (conjugate forms).

    θ[j, k] | y, "k in force" is Gamma(α + C, β + E) for counts, Beta(a + S, b + F) for
    milestones and Normal for signals; no sampler is needed for them.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies kinds and prior parameters.
    counts, exposure, sumsq : numpy.ndarray
        (T, J) the set's evidence columns, in the set's indicator order.
    n_chains, n_draws : int
        Shape of the draws (to sit beside MCMC draws in one DataTree).
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    dict
        ``name → (dims, indicator ids, values)`` with values of shape
        (n_chains, n_draws, J_kind, K), for ``rate``, ``hazard`` and ``level``.

    """
    out = {}
    n_total, e_total = counts.sum(axis=0), exposure.sum(axis=0)
    shape = (n_chains, n_draws)
    for kind, name in KIND_PARAMETER_NAMES.items():
        idx = [j for j, spec in enumerate(scenario_set.indicators) if spec.kind == kind]
        if not idx:
            continue
        blocks = []
        for j in idx:
            spec = scenario_set.indicators[j]
            n, e = n_total[j], e_total[j]
            if kind == "count":
                draw = rng.gamma(spec.alpha + n, 1.0 / (spec.beta + e),
                                 size=shape + (spec.alpha.size,))
            elif kind == "milestone":
                draw = rng.beta(spec.alpha + n, spec.beta + (e - n),
                                size=shape + (spec.alpha.size,))
            else:
                precision = 1.0 / spec.beta**2 + e / spec.noise_sd**2
                mean = (spec.alpha / spec.beta**2 + n / spec.noise_sd**2) / precision
                draw = rng.normal(mean, 1.0 / np.sqrt(precision),
                                  size=shape + (spec.alpha.size,))
            blocks.append(draw)
        values = np.stack(blocks, axis=2)
        out[name] = (("chain", "draw", f"{kind}_indicator", "scenario"),
                     [scenario_set.indicators[j].id for j in idx], values)
    return out
