"""The watchlist: how much each indicator's next periods could tell about the scenario.

Definition
----------
The future observations of an indicator are those of the next N whole periods after the
evidence's last period, each fully covered and at weight 1 (grade A1): the most its next N
periods can tell. Their **outcome** is a statistic of them:

* count — the total number of events over the N periods;
* milestone — the period (1..N) of its first report, or "not reported in N periods";
* signal — the mean of the N measurements (the indicator's noise sd);
* level — how many of the N periods showed each level (one draw per period).

The **information** of an indicator is the mutual information, in bits, between its future
observations and ``Z_end``, the scenario in force at the end of period N, given the evidence:

    I = H(Z_end | y) − E_{y_future | y} H(Z_end | y, y_future)

which is ≥ 0 and never falls as N grows. A milestone already reported carries 0 bits: after
its first occurrence its hazard is not observed again. The **outcome** reported with it is the
one (of predictive probability ≥ 0.01; for a signal, among quantiles of the predictive of its
mean) that moves the posterior most, ``max_k |P(k | outcome) − P(k)|``.

Static sets (no dynamics): Z is constant, so Z_end is the scenario. Given scenario k the
outcome's predictive follows from the conjugate posterior of θ[j, k] on the evidence totals
(Gamma–Poisson → negative binomial of the total with exposure N; Beta–geometric first
occurrence; Normal–Normal → the mean is Normal with variance v_k + σ²/N; Dirichlet–categorical
→ Dirichlet–multinomial of the level counts). Each statistic is sufficient for θ (a fixed
scenario's future observations are exchangeable), so the information of the statistic is that
of the whole sequence, and it is computed exactly: a sum over totals until the tail holds less
than 1e-12 of the mass, over the first-report periods, over every composition of N into the
levels, and, for a signal, one-dimensional adaptive quadrature (`scipy.integrate.quad`).
``mcse_bits`` is 0.

Dynamic sets: Monte Carlo from the fit's posterior draws of (A, θ). Each of ``n_sims`` outer
simulations takes a draw s, its ``z_T`` from the draw's filtered ``P(z_T | y, A_s, θ_s)``,
``z_{T+1..T+N}`` from ``A_s`` and the observations from ``θ_s`` (the kinds' ``predictive``).
``P(Z_end | y, y_future)`` re-weights ``n_inner`` draws r by ``p(y_future | y, r)``: a forward
filter over the future periods from each draw's filtered ``z_T`` and its ``A_r``, whose end
state is also each draw's ``P(Z_end | y, y_future, r)``. Given the draws, the information is
``H(Z_end | y)`` minus the mean over the simulations of ``H(Z_end | y, y_future)``; it is
computed as the mean of ``KL(P(Z_end | y, y_future) || P(Z_end | y))``, which is that
difference plus ``Σ_k (P(k | y) − P(k | y, y_future))·log P(k | y)``, a term of mean zero (the
posterior after is on average the posterior before) that removes most of the Monte Carlo
variance: without it the per-simulation entropies scatter around ``H(Z_end | y)`` even for an
indicator that tells nothing. ``mcse_bits`` is the sd of the per-simulation terms / √n_sims.
The estimate is ≥ 0 in every run (each KL is), but it is an estimate: an indicator worth
nothing still shows a few MCSE of noise and of the bias of re-weighting finitely many draws.
Futures that coincide are filtered once (a milestone has only N + 1), with each period's
likelihoods tabulated per distinct observation, in one jitted loop: the bundled convergence set
(13 indicators, 4 scenarios, 56 periods, 4,000 draws) takes ~0.5 s for N = 4.

In a dynamic set the scenario may change within the N periods, so the statistic is no longer
sufficient: the information is that of the whole sequence of future observations (what the
filter reads), and the reported outcome is still the statistic, its ``P(Z_end | y, outcome)``
estimated from ``max(n_sims, 4000)`` simulated (draw, path) pairs with the outcome's
probability given each path in closed form (Rao–Blackwellised); its ``before`` is
``P(Z_end | y)`` over all the draws.

Nothing here touches a database, the network or the clock; arrays in, dataclasses out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Any

import numba
import numpy as np
from scipy import integrate, special, stats

import forecast._numba  # noqa: F401  (first: how numba compiles the kernel below)
from forecast.exact import exact_posterior
from forecast.fit import filtered_draws
from forecast.model import EvidenceArrays, kind_groups, transition_rows
from indicators import Evidence
from indicators.kinds import own_tallies
from priors import ScenarioSet

__all__ = ["Outcome", "OutcomeDistribution", "WatchItem", "outcome_distribution",
           "static_information", "watchlist"]

#: outcomes rarer than this are not reported as "the outcome that moves the posterior most"
MIN_OUTCOME_PROBABILITY = 0.01
#: a count's total is summed until the predictive tail beyond it holds less than this
TAIL_MASS = 1e-12
#: quantiles of a signal mean's predictive at which its posterior is evaluated
SIGNAL_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: simulated paths (at least) for a dynamic set's outcome probabilities
OUTCOME_PATHS = 4000
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Outcome:
    """One outcome of an indicator's next periods and how it would move the posterior.

    Attributes
    ----------
    label : str
        Human text ("reported within 4 quarters", "6 events in 4 quarters", "mean 2.3").
    probability : float or None
        Its predictive probability given the evidence (None for a signal's mean, continuous).
    scenario : str
        The scenario it moves most.
    before, after : float
        That scenario's probability now and after the outcome.
    posterior_after : dict
        Scenario id → probability after the outcome.

    """

    label: str
    probability: float | None
    scenario: str
    before: float
    after: float
    posterior_after: dict[str, float]


@dataclass(frozen=True)
class WatchItem:
    """One indicator's place on the watchlist.

    Attributes
    ----------
    indicator, kind : str
        The indicator id and its kind.
    information_bits : float
        ``I(future observations; Z_end | evidence)`` in bits (≥ 0; for a dynamic set a
        Monte Carlo estimate, never negative).
    mcse_bits : float
        Its Monte Carlo standard error (0.0 when exact).
    exact : bool
        Whether the information is exact (static sets).
    reported : bool
        A milestone already reported (0 bits: nothing left to observe).
    outcome : Outcome or None
        The outcome that moves the posterior most (None for a reported milestone).
    summary : str
        One line, e.g. "if joint_command is reported within 4 quarters: formal_bloc 0.01 →
        0.31".

    """

    indicator: str
    kind: str
    information_bits: float
    mcse_bits: float
    exact: bool
    reported: bool
    outcome: Outcome | None
    summary: str


@dataclass(frozen=True)
class OutcomeDistribution:
    """The predictive of one indicator's outcome under each scenario (static sets).

    Attributes
    ----------
    indicator, kind : str
    periods : int
    prior : numpy.ndarray
        (K,) ``P(k | y)``, the exact static posterior given the evidence.
    labels : tuple of str
        One per discrete outcome (empty for a signal).
    values : numpy.ndarray
        (O, ...) each outcome: the total, the first-report period (0: not within N), or the
        (O, L) level counts; for a signal, the quantiles of the mean at which
        ``log_likelihood`` is evaluated.
    log_likelihood : numpy.ndarray
        (O, K) ``log P(outcome | k, y)`` (a density for a signal).
    mean, var : numpy.ndarray or None
        A signal's (K,) predictive mean and variance of the N-period mean (None otherwise).
    reported : bool
        A milestone already reported (no outcomes).

    """

    indicator: str
    kind: str
    periods: int
    prior: np.ndarray
    labels: tuple[str, ...]
    values: np.ndarray
    log_likelihood: np.ndarray
    mean: np.ndarray | None = None
    var: np.ndarray | None = None
    reported: bool = False


# -- text ------------------------------------------------------------------------------------


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _periods(scenario_set: ScenarioSet, n: int) -> str:
    return f"{n} {scenario_set.period}{'' if n == 1 else 's'}"


def _summary(spec, outcome: Outcome | None) -> str:
    if outcome is None:
        return f"{spec.id} is already reported: its next periods tell nothing more"
    verb = {"milestone": "is", "level": "is"}.get(spec.kind, "has")
    return (f"if {spec.id} {verb} {outcome.label}: {outcome.scenario} "
            f"{outcome.before:.2f} → {outcome.after:.2f}")


# -- the static predictive ---------------------------------------------------------------------


def _check_periods(periods: Any) -> int:
    if isinstance(periods, bool) or not isinstance(periods, int | np.integer) or periods < 1:
        raise ValueError(f"periods must be a whole number of periods ≥ 1, got {periods!r}")
    return int(periods)


def _totals(evidence: Evidence, spec) -> tuple[float, float, float, np.ndarray | None]:
    """The indicator's evidence summed over the periods: counts, exposure, sumsq, tallies."""
    col = evidence.column(spec.id)
    tallies = None
    n_levels = spec.alpha.shape[-1] if spec.alpha.ndim == 2 else 0
    if n_levels:
        have = own_tallies(spec.indicator, evidence.tallies[:, col])
        tallies = np.zeros(n_levels)
        if have is not None and have.size:
            tallies[:have.shape[-1]] = have.sum(axis=0)
    return (float(evidence.counts[:, col].sum()), float(evidence.exposure[:, col].sum()),
            float(evidence.sumsq[:, col].sum()), tallies)


def _compositions(n: int, parts: int) -> np.ndarray:
    """(C, parts) every way of splitting n draws over ``parts`` categories."""
    out = np.zeros((math.comb(n + parts - 1, parts - 1), parts), dtype=np.int64)
    for i, combo in enumerate(combinations_with_replacement(range(parts), n)):
        out[i] = np.bincount(combo, minlength=parts)
    return out


def _level_label(scenario_set, spec, counts: np.ndarray, n: int) -> str:
    names = spec.indicator.levels
    parts = [f"{names[i]} {int(c)}" for i, c in enumerate(counts) if c]
    return f"{', '.join(parts)} of {_periods(scenario_set, n)}"


def outcome_distribution(scenario_set: ScenarioSet, evidence: Evidence, indicator: str,
                         periods: int) -> OutcomeDistribution:
    """The exact predictive of one indicator's outcome under each scenario (static model).

    Parameters
    ----------
    scenario_set : ScenarioSet
        The set (its dynamics, if any, ignored: the scenario is held fixed).
    evidence : Evidence
        The evidence so far.
    indicator : str
        One of the set's indicator ids.
    periods : int
        N ≥ 1, the future periods observed.

    Returns
    -------
    OutcomeDistribution

    Raises
    ------
    ValueError
        If ``periods`` is not a whole number ≥ 1, or ``indicator`` is not in the set.

    """
    n = _check_periods(periods)
    specs = {s.id: s for s in scenario_set.indicators}
    if indicator not in specs:
        raise ValueError(f"indicator {indicator!r} is not in set {scenario_set.id!r}; use one "
                         f"of {', '.join(specs)}")
    spec = specs[indicator]
    prior = exact_posterior(scenario_set, evidence).probability
    counts, exposure, _, tallies = _totals(evidence, spec)
    k = len(scenario_set.scenarios)
    base = {"indicator": spec.id, "kind": spec.kind, "periods": n, "prior": prior}
    if spec.kind == "count":
        shape, rate = spec.alpha + counts, spec.beta + exposure
        p_success = rate / (rate + n)
        top = int(np.max(stats.nbinom.isf(TAIL_MASS / 10, shape, p_success))) + 1
        while True:  # the tail beyond ``top`` below TAIL_MASS under every scenario
            x = np.arange(top + 1)[:, None]
            log_l = (special.gammaln(shape + x) - special.gammaln(shape)
                     - special.gammaln(x + 1) + shape * np.log(p_success)
                     + x * np.log1p(-p_success))
            if np.all(1.0 - np.exp(special.logsumexp(log_l, axis=0)) < TAIL_MASS):
                break
            top *= 2
        labels = tuple(f"{i} event{'' if i == 1 else 's'} in {_periods(scenario_set, n)}"
                       for i in range(top + 1))
        return OutcomeDistribution(**base, labels=labels, values=np.arange(top + 1),
                                   log_likelihood=log_l)
    if spec.kind == "milestone":
        if counts > 0:
            return OutcomeDistribution(**base, labels=(), values=np.zeros(0, dtype=int),
                                       log_likelihood=np.zeros((0, k)), reported=True)
        a, b = spec.alpha + counts, spec.beta + (exposure - counts)
        t = np.arange(1, n + 1)[:, None]
        first = special.betaln(a + 1, b + t - 1) - special.betaln(a, b)
        never = special.betaln(a, b + n) - special.betaln(a, b)
        labels = tuple(f"reported in the {_ordinal(i)} {scenario_set.period}"
                       for i in range(1, n + 1))
        return OutcomeDistribution(
            **base, labels=(*labels, f"not reported in {_periods(scenario_set, n)}"),
            values=np.r_[np.arange(1, n + 1), 0],  # the first-report period; 0: not within N
            log_likelihood=np.vstack([first, never[None]]))
    if spec.kind == "signal":
        noise_var = spec.noise_sd**2
        precision = 1.0 / spec.beta**2 + exposure / noise_var
        mean = (spec.alpha / spec.beta**2 + counts / noise_var) / precision
        var = 1.0 / precision + noise_var / n
        grid = _mixture_quantiles(prior, mean, np.sqrt(var), SIGNAL_QUANTILES)
        log_l = stats.norm.logpdf(grid[:, None], mean, np.sqrt(var))
        return OutcomeDistribution(**base, labels=(), values=grid, log_likelihood=log_l,
                                   mean=mean, var=var)
    if spec.kind == "level":
        alpha = spec.alpha + tallies  # (K, L)
        comps = _compositions(n, alpha.shape[1])  # (C, L)
        x = comps[:, None, :]
        log_l = (special.gammaln(n + 1) - special.gammaln(x + 1).sum(-1)
                 + special.gammaln(alpha.sum(-1)) - special.gammaln(alpha.sum(-1) + n)
                 + (special.gammaln(alpha + x) - special.gammaln(alpha)).sum(-1))
        labels = tuple(_level_label(scenario_set, spec, c, n) for c in comps)
        return OutcomeDistribution(**base, labels=labels, values=comps, log_likelihood=log_l)
    raise ValueError(f"kind {spec.kind!r} has no watchlist outcome")  # pragma: no cover


def _mixture_quantiles(weights, mean, sd, quantiles) -> np.ndarray:
    """Quantiles of a Normal mixture (bisection on its cdf)."""
    lo = float(np.min(mean - 10 * sd))
    hi = float(np.max(mean + 10 * sd))
    out = []
    for q in quantiles:
        a, b = lo, hi
        for _ in range(80):
            mid = 0.5 * (a + b)
            if float(weights @ stats.norm.cdf(mid, mean, sd)) < q:
                a = mid
            else:
                b = mid
        out.append(0.5 * (a + b))
    return np.array(out)


def _discrete_information(prior: np.ndarray, log_l: np.ndarray) -> float:
    """``Σ_o Σ_k P(k) P(o|k) log2(P(o|k) / P(o))`` from (O, K) log likelihoods."""
    with np.errstate(divide="ignore"):
        log_prior = np.log(prior)
    log_p = special.logsumexp(log_l + log_prior, axis=1, keepdims=True)
    joint = np.exp(log_l + log_prior)
    return max(0.0, float(np.sum(joint * (log_l - log_p))) / _LOG2)


def _signal_information(prior: np.ndarray, mean: np.ndarray, var: np.ndarray) -> float:
    """``Σ_k P(k) KL(N(m_k, v_k) || mixture)`` by adaptive quadrature, in bits."""
    sd = np.sqrt(var)
    with np.errstate(divide="ignore"):
        log_prior = np.log(prior)

    offset = -np.log(sd) - 0.5 * math.log(2 * math.pi)

    def integrand(x: float, k: int) -> float:
        log_f = offset - 0.5 * ((x - mean) / sd) ** 2
        joint = log_f + log_prior
        top = joint.max()
        return math.exp(log_f[k]) * (log_f[k] - top - math.log(np.exp(joint - top).sum()))

    total = 0.0
    for k in np.flatnonzero(prior > 0):
        lo, hi = mean[k] - 14 * sd[k], mean[k] + 14 * sd[k]
        inside = sorted({float(m) for m in mean if lo < m < hi} | {float(mean[k])})
        value, _ = integrate.quad(integrand, lo, hi, args=(k,), points=inside,
                                  epsabs=1e-13, epsrel=1e-11, limit=400)
        total += prior[k] * value
    return max(0.0, float(total) / _LOG2)


def static_information(distribution: OutcomeDistribution) -> float:
    """Exact ``I(outcome; Z | y)`` in bits of a static set's outcome distribution."""
    if distribution.reported:
        return 0.0
    if distribution.kind == "signal":
        return _signal_information(distribution.prior, distribution.mean, distribution.var)
    return _discrete_information(distribution.prior, distribution.log_likelihood)


def _most_moving(scenario_ids, before: np.ndarray, probability: np.ndarray | None,
                 after: np.ndarray, labels) -> Outcome | None:
    """The outcome (rows of ``after``) moving some scenario most, among the likely ones."""
    keep = (np.arange(after.shape[0]) if probability is None
            else np.flatnonzero(probability >= MIN_OUTCOME_PROBABILITY))
    if keep.size == 0:
        return None
    shift = np.abs(after[keep] - before[None, :])
    row, k = np.unravel_index(int(np.argmax(shift)), shift.shape)
    o = keep[row]
    return Outcome(label=labels[o],
                   probability=None if probability is None else float(probability[o]),
                   scenario=str(scenario_ids[k]), before=float(before[k]),
                   after=float(after[o, k]),
                   posterior_after={str(s): float(p) for s, p in zip(scenario_ids, after[o],
                                                                     strict=True)})


def _static_item(scenario_set: ScenarioSet, evidence: Evidence, spec, n: int) -> WatchItem:
    dist = outcome_distribution(scenario_set, evidence, spec.id, n)
    if dist.reported:
        return WatchItem(indicator=spec.id, kind=spec.kind, information_bits=0.0,
                         mcse_bits=0.0, exact=True, reported=True, outcome=None,
                         summary=_summary(spec, None))
    info = static_information(dist)
    prior = dist.prior
    with np.errstate(divide="ignore"):
        log_joint = dist.log_likelihood + np.log(prior)
    log_p = special.logsumexp(log_joint, axis=1, keepdims=True)
    after = np.exp(log_joint - log_p)
    if spec.kind == "signal":
        labels = [f"mean {m:.3g}" for m in dist.values]
        outcome = _most_moving(scenario_set.scenario_ids, prior, None, after, labels)
    else:
        probability = np.exp(log_p[:, 0])
        labels = list(dist.labels)
        if spec.kind == "milestone" and n > 1:  # the coarser "some time in the N periods"
            log_within = special.logsumexp(dist.log_likelihood[:n], axis=0)
            within = np.exp(log_within + np.log(prior) - special.logsumexp(
                log_within + np.log(prior)))
            after = np.vstack([after, within])
            probability = np.r_[probability, probability[:n].sum()]
            labels.append(f"reported within {_periods(scenario_set, n)}")
        outcome = _most_moving(scenario_set.scenario_ids, prior, probability, after, labels)
    return WatchItem(indicator=spec.id, kind=spec.kind, information_bits=info, mcse_bits=0.0,
                     exact=True, reported=False, outcome=outcome,
                     summary=_summary(spec, outcome))


# -- dynamic sets: Monte Carlo over the posterior draws ------------------------------------------


def _categorical(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from each row of (M, K) probabilities."""
    u = rng.random(p.shape[0])[:, None]
    return np.minimum((np.cumsum(p, axis=1) < u * p.sum(axis=1, keepdims=True)).sum(axis=1),
                      p.shape[1] - 1)


@dataclass(frozen=True)
class _Draws:
    """What every indicator's simulation shares: per-draw A, the first future state, θ."""

    transitions: np.ndarray  # (S, K, K)
    first: np.ndarray  # (S, K) P(z_{T+1} | y, draw)
    end: np.ndarray  # (S, K) P(z_{T+N} | y, draw)
    theta: dict[str, np.ndarray]  # kind parameter → (S, J_kind, K[, L])


def _dynamic_draws(scenario_set: ScenarioSet, evidence: Evidence, posterior: Any,
                   n: int) -> _Draws:
    arrays = EvidenceArrays.select(scenario_set, evidence)
    transitions, filtered, _, _ = filtered_draws(scenario_set, arrays, posterior)
    n_draws = transitions.shape[0]
    prior = np.asarray(scenario_set.prior, dtype=float)
    if filtered.shape[1]:
        first = np.einsum("sk,skl->sl", filtered[:, -1], transitions)
    else:  # no evidence period yet: the first future period is the set's first
        first = np.broadcast_to(prior, (n_draws, prior.size)).copy()
    end = first
    for _ in range(n - 1):
        end = np.einsum("sk,skl->sl", end, transitions)
    theta = {}
    for kind, _, _ in kind_groups(scenario_set):
        values = posterior[kind.parameter].values
        theta[kind.parameter] = values.reshape(n_draws, *values.shape[2:])
    return _Draws(transitions=transitions, first=first, end=end, theta=theta)


def _simulate_paths(draws: _Draws, index: np.ndarray, n: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(M, N) scenario paths over the future periods, one per draw in ``index``."""
    z = np.empty((index.size, n), dtype=np.int64)
    z[:, 0] = _categorical(draws.first[index], rng)
    for t in range(1, n):
        z[:, t] = _categorical(draws.transitions[index, z[:, t - 1]], rng)
    return z


def _future_statistics(kind, spec, y: np.ndarray, at_risk: np.ndarray, n_levels: int):
    """(M, F) the regime statistics of one simulated future period (weight 1, covered)."""
    m = y.shape[0]
    ones = np.ones((m, 1))
    tallies = None
    if kind.lookup_name == "milestone":
        counts, exposure = (y * at_risk)[:, None], at_risk.astype(float)[:, None]
    elif kind.lookup_name == "level":
        tallies = np.zeros((m, 1, n_levels))
        tallies[np.arange(m), 0, y.astype(np.int64)] = 1.0
        counts, exposure = ones, ones
    else:
        counts, exposure = y[:, None], ones
    return kind.regime_statistics([spec], counts, exposure, tallies)


@numba.njit(cache=True)
def _future_posterior(first, transitions, emission, log_shift, which):  # pragma: no cover
    """``P(Z_end | y, y_future_m)`` per simulated future m, re-weighting the draws r.

    Each draw's forward filter runs from its ``P(z_{T+1} | y, r)`` (``first``, (R, K)) with
    its transitions (R, K, K) over the future's periods, whose likelihoods are tabulated per
    distinct observation u of each period: ``p(y | θ_r[k]) = emission[t, r, u, k] ·
    exp(log_shift[t, r, u])`` (N, R, U, K) and (N, R, U); ``which`` (N, M) says which u each
    future saw. The draws' end states, weighted by their masses ``p(y_future | y, r)`` (up to
    a factor common to all draws), give the posterior (M, K).
    """
    n_inner, k = first.shape
    n_periods, n_sims = which.shape
    out = np.zeros((n_sims, k))
    log_w = np.empty(n_inner)
    ends = np.empty((n_inner, k))
    state = np.empty(k)
    moved = np.empty(k)
    for m in range(n_sims):
        for r in range(n_inner):
            for i in range(k):
                state[i] = first[r, i]
            log_mass = 0.0
            for t in range(n_periods):
                u = which[t, m]
                if t:
                    for j in range(k):
                        acc = 0.0
                        for i in range(k):
                            acc += state[i] * transitions[r, i, j]
                        moved[j] = acc
                    for j in range(k):
                        state[j] = moved[j]
                mass = 0.0
                for j in range(k):
                    state[j] *= emission[t, r, u, j]
                    mass += state[j]
                for j in range(k):
                    state[j] /= mass
                log_mass += np.log(mass) + log_shift[t, r, u]
            log_w[r] = log_mass
            for j in range(k):
                ends[r, j] = state[j]
        top = log_w.max()
        total = 0.0
        for r in range(n_inner):
            w = np.exp(log_w[r] - top)
            total += w
            for j in range(k):
                out[m, j] += w * ends[r, j]
        for j in range(k):
            out[m, j] /= total
    return out


def _simulate_statistics(kind, spec, theta: np.ndarray, draws: _Draws, outer: np.ndarray,
                         n: int, rng: np.random.Generator) -> np.ndarray:
    """(M, N, F) regime statistics of one simulated future per draw in ``outer``."""
    z = _simulate_paths(draws, outer, n, rng)
    at_risk = np.ones(outer.size, dtype=bool)
    n_levels = theta.shape[-1] if theta.ndim == 3 else 0
    statistics = []
    for t in range(n):
        own = theta[outer, z[:, t]]  # (M,) or (M, L): the parameter in force
        y = kind.predictive(spec, own[:, None], 1.0, rng)[:, 0]
        statistics.append(_future_statistics(kind, spec, y, at_risk, n_levels))  # (M, F)
        if kind.lookup_name == "milestone":
            at_risk = at_risk & (y == 0)
    return np.stack(statistics, axis=1)


def _dynamic_information(kind, spec, theta: np.ndarray, draws: _Draws, n: int, n_sims: int,
                         n_inner: int, rng: np.random.Generator) -> tuple[float, float]:
    """MC estimate of I(y_future; Z_end | y) in bits and its MCSE.

    ``theta`` (S, K[, L]) is the indicator's parameter per draw. Futures that coincide (a
    milestone has N + 1) are filtered once, and each period's likelihoods are tabulated per
    distinct observation.
    """
    n_draws = draws.first.shape[0]
    outer = rng.integers(n_draws, size=n_sims)
    inner = np.sort(rng.choice(n_draws, size=min(n_inner, n_draws), replace=False))
    statistics = _simulate_statistics(kind, spec, theta, draws, outer, n, rng)
    futures, seen = np.unique(statistics.reshape(n_sims, -1), axis=0, return_inverse=True)
    futures = futures.reshape(futures.shape[0], n, -1)  # (D, N, F)
    features = kind.features([spec], theta[inner][:, None])  # (R, F, K)
    tables, which = [], []
    for t in range(n):
        rows, index = np.unique(futures[:, t], axis=0, return_inverse=True)  # (U, F)
        tables.append(np.einsum("uf,rfk->ruk", rows, features))
        which.append(index.reshape(-1))
    width = max(table.shape[1] for table in tables)
    log_e = np.zeros((n, inner.size, width, features.shape[2]))
    for t, table in enumerate(tables):
        log_e[t, :, :table.shape[1]] = table
    log_shift = log_e.max(axis=3)
    after = _future_posterior(
        np.ascontiguousarray(draws.first[inner]), np.ascontiguousarray(draws.transitions[inner]),
        np.exp(log_e - log_shift[..., None]), log_shift, np.stack(which))[seen.reshape(-1)]
    before = draws.end.mean(axis=0)
    # KL(after || before) per simulation: H(before) − H(after) plus Σ (before − after)·log
    # before, a term of mean zero (E[after] = before) that removes most of the variance
    with np.errstate(divide="ignore", invalid="ignore"):
        divergence = np.where(after > 0, after * np.log2(after / before), 0.0).sum(axis=1)
    return float(divergence.mean()), float(divergence.std(ddof=1) / math.sqrt(n_sims))


def _level_likelihood(own: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """P(level counts | path) for (P, N, L) per-period probabilities: (P, C) and (C, L)."""
    table: dict[tuple[int, ...], np.ndarray] = {(0,) * n_levels: np.ones(own.shape[0])}
    for t in range(own.shape[1]):
        grown: dict[tuple[int, ...], np.ndarray] = {}
        for counts, p in table.items():
            for level in range(n_levels):
                key = counts[:level] + (counts[level] + 1,) + counts[level + 1:]
                add = p * own[:, t, level]
                grown[key] = grown[key] + add if key in grown else add
        table = grown
    keys = sorted(table, reverse=True)
    return np.stack([table[key] for key in keys], axis=1), np.array(keys)


def _dynamic_outcome(scenario_set: ScenarioSet, kind, spec, theta: np.ndarray, draws: _Draws,
                     n: int, n_paths: int, rng: np.random.Generator) -> Outcome | None:
    """The outcome moving ``P(Z_end)`` most, from paths with the outcome's law in closed form.

    ``P(o, Z_end = k | y) ≈ mean over simulated (draw, path) of 1[z_end = k]·P(o | path, θ)``.
    """
    n_draws, k = draws.first.shape
    index = rng.integers(n_draws, size=n_paths)
    z = _simulate_paths(draws, index, n, rng)
    own = theta[index[:, None], z]  # (P, N) or (P, N, L)
    end = np.eye(k)[z[:, -1]]
    probability: np.ndarray | None
    if kind.lookup_name == "count":
        rate = own.sum(axis=1)
        top = int(stats.poisson.isf(1e-10, rate.max())) + 1
        x = np.arange(top + 1)
        likelihood = stats.poisson.pmf(x[None, :], rate[:, None])
        labels = [f"{i} event{'' if i == 1 else 's'} in {_periods(scenario_set, n)}"
                  for i in x]
    elif kind.lookup_name == "milestone":
        survive = np.cumprod(1.0 - own, axis=1)
        before_t = np.hstack([np.ones((n_paths, 1)), survive[:, :-1]])
        columns = [own * before_t, survive[:, -1:]]
        labels = [f"reported in the {_ordinal(i)} {scenario_set.period}" for i in range(1, n + 1)]
        labels.append(f"not reported in {_periods(scenario_set, n)}")
        if n > 1:
            columns.append(1.0 - survive[:, -1:])
            labels.append(f"reported within {_periods(scenario_set, n)}")
        likelihood = np.hstack(columns)
    elif kind.lookup_name == "signal":
        mean, sd = own.mean(axis=1), spec.noise_sd / math.sqrt(n)
        grid = np.quantile(mean + sd * rng.standard_normal(n_paths), SIGNAL_QUANTILES)
        likelihood = stats.norm.pdf(grid[None, :], mean[:, None], sd)
        labels = [f"mean {m:.3g}" for m in grid]
    else:
        n_levels = len(spec.indicator.levels)
        likelihood, comps = _level_likelihood(own[..., :n_levels], n_levels)
        labels = [_level_label(scenario_set, spec, c, n) for c in comps]
    joint = likelihood.T @ end / n_paths  # (O, K)
    total = joint.sum(axis=1)
    after = joint / np.where(total > 0, total, 1.0)[:, None]
    probability = None if kind.lookup_name == "signal" else total
    return _most_moving(scenario_set.scenario_ids, draws.end.mean(axis=0), probability, after,
                        labels)


def _reported(evidence: Evidence, spec) -> bool:
    return spec.kind == "milestone" and float(evidence.counts[:, evidence.column(spec.id)]
                                              .sum()) > 0


def watchlist(scenario_set: ScenarioSet, evidence: Evidence, periods: int, *,
              posterior: Any = None, seed: int = 0, n_sims: int = 400,
              n_inner: int = 1000, dynamic: bool = True) -> list[WatchItem]:
    """Rank the set's indicators by what their next ``periods`` periods could tell.

    Parameters
    ----------
    scenario_set : ScenarioSet
        The question.
    evidence : Evidence
        The evidence so far (the future periods follow its last period).
    periods : int
        N ≥ 1, the whole periods ahead, each fully covered at weight 1.
    posterior : xarray.Dataset or DataTree node, optional
        A dynamic set's posterior draws (``fit(...).datatree["posterior"]``); required for a
        dynamic set, ignored for a static one (whose answer is exact).
    seed : int
        Seed of a dynamic set's simulations (each indicator draws from its own stream).
    n_sims : int
        Outer simulations of the future per indicator (dynamic sets).
    n_inner : int
        Posterior draws re-weighted per simulation (dynamic sets; all when fewer).
    dynamic : bool
        Learn the transitions of a set with dynamics (default); False reads it as static (as
        a fit with ``FitSettings(dynamic=False)`` does), exactly.

    Returns
    -------
    list of WatchItem
        By information, highest first (ties in the set's order).

    Raises
    ------
    ValueError
        If ``periods`` is not a whole number ≥ 1, ``n_sims`` or ``n_inner`` < 2, or a dynamic
        set comes without its ``posterior``.

    """
    n = _check_periods(periods)
    if n_sims < 2 or n_inner < 2:
        raise ValueError(f"n_sims and n_inner must be ≥ 2, got {n_sims} and {n_inner}")
    if not (dynamic and transition_rows(scenario_set)):
        items = [_static_item(scenario_set, evidence, spec, n) for spec in scenario_set.indicators]
    else:
        if posterior is None:
            raise ValueError(
                f"posterior: set {scenario_set.id!r} is dynamic; pass the fit's posterior draws "
                "(fit(...).datatree['posterior'])")
        if hasattr(posterior, "to_dataset"):
            posterior = posterior.to_dataset()
        draws = _dynamic_draws(scenario_set, evidence, posterior, n)
        position = {s.id: j for j, s in enumerate(scenario_set.indicators)}
        by_id = {}
        for kind, _, specs in kind_groups(scenario_set):
            for jj, spec in enumerate(specs):
                if _reported(evidence, spec):
                    by_id[spec.id] = WatchItem(
                        indicator=spec.id, kind=spec.kind, information_bits=0.0,
                        mcse_bits=0.0, exact=True, reported=True, outcome=None,
                        summary=_summary(spec, None))
                    continue
                theta = draws.theta[kind.parameter][:, jj]
                rng = np.random.default_rng([seed, position[spec.id]])
                info, mcse = _dynamic_information(kind, spec, theta, draws, n, n_sims,
                                                  n_inner, rng)
                outcome = _dynamic_outcome(scenario_set, kind, spec, theta, draws, n,
                                           max(n_sims, OUTCOME_PATHS), rng)
                by_id[spec.id] = WatchItem(
                    indicator=spec.id, kind=spec.kind, information_bits=max(0.0, info),
                    mcse_bits=mcse, exact=False, reported=False, outcome=outcome,
                    summary=_summary(spec, outcome))
        items = [by_id[s.id] for s in scenario_set.indicators]
    return sorted(items, key=lambda item: -item.information_bits)
