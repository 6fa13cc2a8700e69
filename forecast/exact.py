"""Closed-form posterior of the static conjugate model — the oracle.

With identity transitions the scenario never changes, and under a fixed scenario every
indicator's parameter has a conjugate prior, so each scenario's evidence has a closed-form
marginal likelihood:

* count (Gamma–Poisson): ``α log β − lnΓ(α) + lnΓ(α + C) − (α + C) log(β + E)``
* milestone (Beta–geometric): ``ln B(a + S, b + F) − ln B(a, b)`` with ``F = Σ(at risk − S)``
* signal (Normal–Normal, tempered):
  ``−½ log(1 + s²W/σ²) − ½[Q/σ² + m²/s² − (m/s² + Y/σ²)² / (1/s² + W/σ²)]``
* level (Dirichlet–categorical, tempered): ``ln B(α + c) − ln B(α)``, c the weighted tallies

Each is its kind's ``oracle_log_marginal`` (`indicators.kinds`), written with SciPy apart
from the ``log_marginal`` the PyTensor model uses.

(terms that do not depend on the scenario are dropped; they cancel). The posterior is
``softmax(log prior + Σ_j log m[j, k])``. Written in NumPy/SciPy, independently of the PyTensor
model, so that tests can hold one against the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp

from forecast.model import transition_rows
from indicators import Evidence
from indicators.kinds import get_kind, own_tallies
from indicators.kinds.count import log_marginal_count
from indicators.kinds.level import log_marginal_level
from indicators.kinds.milestone import log_marginal_milestone
from indicators.kinds.signal import log_marginal_signal
from priors import ScenarioSet

__all__ = ["ExactDynamicPosterior", "ExactPosterior", "exact_dynamic_posterior",
           "exact_posterior", "log_marginal_count", "log_marginal_level",
           "log_marginal_milestone", "log_marginal_signal"]


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
        kind = get_kind(spec.kind)
        totals = (float(evidence.counts[:, col].sum()), float(evidence.exposure[:, col].sum()),
                  float(evidence.sumsq[:, col].sum()), _tallies(evidence, col, spec))
        log_m[j] = kind.oracle_log_marginal(spec, *totals)
        post_mean[j] = kind.posterior_mean(spec, *totals)
    log_post = np.log(scenario_set.prior) + log_m.sum(axis=0)
    probability = np.exp(log_post - logsumexp(log_post))
    return ExactPosterior(probability=probability, log_marginal=log_m, posterior_mean=post_mean)


@dataclass(frozen=True)
class ExactDynamicPosterior:
    """The exact answer of the dynamic model, by summing over every scenario path.

    Attributes
    ----------
    probability : numpy.ndarray
        (K,) ``P(z_T = k | y_1..T)``, the nowcast.
    path : numpy.ndarray
        (T, K) smoothed ``P(z_t = k | y_1..T)``.
    posterior_mean : numpy.ndarray
        (J, K) posterior mean of each indicator's parameter *while k is in force* (the prior
        mean where a path never visits k).

    """

    probability: np.ndarray
    path: np.ndarray
    posterior_mean: np.ndarray


def _tallies(evidence: Evidence, col: int, spec) -> np.ndarray | None:
    """An indicator's tallies summed over the periods (None for kinds without categories)."""
    own = own_tallies(spec.indicator, evidence.tallies[:, col])
    return None if own is None else own.sum(axis=0)


def _pooled(spec, n: np.ndarray, e: np.ndarray, q: np.ndarray,
            c: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Log marginal likelihood and posterior mean of pooled statistics (vectorised over K)."""
    kind = get_kind(spec.kind)
    return kind.oracle_log_marginal(spec, n, e, q, c), kind.posterior_mean(spec, n, e, q, c)


def _pooled_per_scenario(spec, n, e, q, c):
    """`_pooled` of (P, K) statistics, each scenario's column under its own prior."""
    if c is None:
        return _pooled(spec, n, e, q, None)
    # a level's (P, K, L) tallies: scenario k's row against the prior of scenario k
    log_m = np.einsum("pkk->pk", log_marginal_level(spec.alpha, c))  # (P, K data, K prior)
    mean = np.einsum("pkk->pk", get_kind(spec.kind).posterior_mean(spec, n, e, q, c))
    return log_m, mean


def exact_dynamic_posterior(scenario_set: ScenarioSet, evidence: Evidence,
                            max_paths: int = 200_000) -> ExactDynamicPosterior:
    """Exact posterior of the dynamic model, by enumerating every scenario path.

    Everything but the path integrates in closed form. Given a path z, each scenario's
    parameters see only the periods z spends in it (the conjugate marginal of the pooled
    statistics), and each Dirichlet transition row integrates to a Dirichlet–multinomial of
    the path's transition counts::

        p(z | y) ∝ P(z_1) · Π_rows B(c_i + N_i(z)) / B(c_i) · Π_k Π_j m_jk(y_{t: z_t = k})

    Independent of the PyMC model, the forward algorithm and the sampler; exponential in the
    number of periods, so for small test problems only.

    Raises
    ------
    ValueError
        If K^T exceeds ``max_paths``.

    """
    k = len(scenario_set.scenarios)
    t_len = len(evidence.grid)
    if k**t_len > max_paths:
        raise ValueError(f"{k}^{t_len} paths exceed max_paths={max_paths}")
    cols = [evidence.column(spec.id) for spec in scenario_set.indicators]
    counts, exposure = evidence.counts[:, cols], evidence.exposure[:, cols]
    sumsq, tallies = evidence.sumsq[:, cols], evidence.tallies[:, cols]
    allowed = np.eye(k, dtype=bool)
    rows = transition_rows(scenario_set)
    for row, columns, _ in rows:
        allowed[row, columns] = True
    paths = np.stack(np.meshgrid(*[np.arange(k)] * t_len, indexing="ij"),
                     axis=-1).reshape(-1, t_len)
    log_p = np.log(scenario_set.prior)[paths[:, 0]]
    if t_len > 1:
        src, dst = paths[:, :-1], paths[:, 1:]
        log_p = np.where(allowed[src, dst].all(axis=1), log_p, -np.inf)
        for row, columns, concentration in rows:
            moves = np.stack([((src == row) & (dst == c)).sum(axis=1) for c in columns], axis=1)
            log_p = log_p + (gammaln(concentration + moves).sum(axis=1)
                             - gammaln(concentration.sum() + moves.sum(axis=1))
                             + gammaln(concentration.sum()) - gammaln(concentration).sum())
    one_hot = np.eye(k)[paths]  # (P, T, K): which scenario holds in each period
    pooled = [np.einsum("ptk,tj->pjk", one_hot, x) for x in (counts, exposure, sumsq)]
    pooled_tallies = np.einsum("ptk,tjl->pjkl", one_hot, tallies)  # (P, J, K, L)
    means = np.empty((paths.shape[0], len(scenario_set.indicators), k))
    for j, spec in enumerate(scenario_set.indicators):
        c = own_tallies(spec.indicator, pooled_tallies[:, j])
        log_m, means[:, j] = _pooled_per_scenario(spec, *(x[:, j] for x in pooled), c)
        log_p = log_p + log_m.sum(axis=1)
    weight = np.exp(log_p - logsumexp(log_p))
    path = np.einsum("p,ptk->tk", weight, one_hot)
    return ExactDynamicPosterior(
        probability=path[-1] if t_len else np.asarray(scenario_set.prior, dtype=float),
        path=path, posterior_mean=np.einsum("p,pjk->jk", weight, means))
