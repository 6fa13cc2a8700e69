"""The dynamic model by its scenario paths: exact enumeration, iid draws, importance weights.

Given a path z (the scenario in force in each period), everything else integrates in closed
form: each transition row is Dirichlet, so the path's transitions have a Dirichlet–multinomial
probability, and each scenario's parameters see only the periods z spends in it, so the
evidence has the conjugate marginal likelihood of those periods' pooled statistics::

    p(z | y) ∝ π(z_1) · Π_rows DirMult(transitions out of the row) · Π_k Π_j m_jk(y_{t: z_t = k})

(`forecast.exact.exact_dynamic_posterior` scores paths the same way, by brute force). A path is
a run of *segments*; the paths with at most S segments can be enumerated (`enumerate_paths`:
C(T − 1, S − 1) boundary sets times the allowed regime sequences), which gives their posterior
exactly, up to its normalising constant.

The estimator (docs/decisions/011): draw paths iid from that truncated posterior, then (A, θ)
from their exact conditionals (`conditional_draws`). The draws come from
``q(A, θ) = p(A, θ | y) · c(A, θ) / M`` with ``c(A, θ) = P(at most S segments | A, θ, y)``
(`segment_filter`) and M the truncated paths' share of the posterior, so weights ``1 / c``
make them draws of the full posterior, and the paths with more segments are not assumed away:
they enter through the weights. Every draw is independent: no chain to converge, no mode to be
stuck in, and a Monte Carlo error that is that of iid draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numba
import numpy as np
from scipy.special import gammaln

from forecast.model import EvidenceArrays, kind_groups, transition_rows
from indicators.kinds import KINDS, count, get_kind, level, milestone, own_tallies, signal
from priors import ScenarioSet

__all__ = [
    "PathModel",
    "PathSums",
    "conditional_draws",
    "enumerate_paths",
    "path_counts",
    "path_model",
    "sample_paths",
    "segment_filter",
]


@dataclass(frozen=True)
class PathModel:
    """What the path posterior needs: prior, transition structure, conjugate priors, evidence.

    ``statistics`` (T, F) holds each indicator's pooled statistics side by side
    (`indicators.kinds.Kind.path_statistics`: a count's n and e, a signal's Σwy, Σw, Σwy², a
    level's tallies), indicator g in columns ``offsets[g]:offsets[g + 1]``, the indicators
    ordered by their kind's rank, those of rank r being ``by_rank[r]:by_rank[r + 1]``;
    ``params`` (G, K, P) their conjugate parameters
    (`~indicators.kinds.Kind.path_parameters`, zero-padded), which the jitted `_marginal`
    reads. ``counts``, ``exposure``, ``tallies`` are the evidence columns the conjugate
    conditionals (`conditional_draws`) pool, ``groups`` the set's `kind_groups`.
    """

    prior: np.ndarray
    allowed: np.ndarray  # (K, K) bool: the moves a path may make (the diagonal is False)
    conc: np.ndarray  # (K, K) Dirichlet concentration of each free row (0 outside its columns)
    free: np.ndarray  # (K,) bool: rows with a Dirichlet prior (others absorb)
    statistics: np.ndarray
    by_rank: np.ndarray
    offsets: np.ndarray
    params: np.ndarray
    counts: np.ndarray
    exposure: np.ndarray
    tallies: np.ndarray | None
    groups: tuple

    @property
    def n_periods(self) -> int:
        """T."""
        return self.statistics.shape[0]

    @property
    def n_states(self) -> int:
        """K."""
        return self.prior.shape[0]

    def patterns(self, segments: int) -> np.ndarray:
        """(P, segments) int64: every allowed scenario sequence of that many segments.

        A first scenario of prior 0 is left out.
        """
        k = self.n_states
        out = []
        for first in range(k):
            if self.prior[first] <= 0:
                continue
            stack = [[first]]
            while stack:
                seq = stack.pop()
                if len(seq) == segments:
                    out.append(seq)
                    continue
                stack.extend(seq + [nxt] for nxt in range(k) if self.allowed[seq[-1], nxt])
        out.sort()
        return np.array(out, dtype=np.int64).reshape(len(out), segments)


def path_model(scenario_set: ScenarioSet, arrays: EvidenceArrays) -> PathModel:
    """The `PathModel` of a set on its evidence columns."""
    k = len(scenario_set.scenarios)
    conc = np.zeros((k, k))
    free = np.zeros(k, dtype=bool)
    for row, columns, concentration in transition_rows(scenario_set):
        conc[row, columns] = concentration
        free[row] = True
    allowed = (conc > 0) & ~np.eye(k, dtype=bool)

    columns, parameters = [], []
    # ordered by kind rank (stable), so `_marginal` runs one loop per kind, without branches
    order = sorted(range(len(scenario_set.indicators)),
                   key=lambda j: get_kind(scenario_set.indicators[j].kind).rank)
    for j in order:
        spec = scenario_set.indicators[j]
        kind = get_kind(spec.kind)
        tallies = own_tallies(spec.indicator, arrays.tallies[:, j])
        columns.append(kind.path_statistics(spec, arrays.counts[:, j], arrays.exposure[:, j],
                                            arrays.sumsq[:, j], tallies))
        parameters.append(kind.path_parameters(spec))
    ranks = [get_kind(scenario_set.indicators[j].kind).rank for j in order]
    missing = sorted({scenario_set.indicators[j].kind for j in order} - set(JITTED_MARGINALS))
    if missing:  # a registered kind without its loop in `_marginal` would count for nothing
        raise NotImplementedError(f"the path estimator has no marginal for kind(s) {missing}; "
                                  "add its loop to forecast.paths._marginal")
    by_rank = np.searchsorted(ranks, np.arange(len(KINDS) + 1)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum([c.shape[1] for c in columns])]).astype(np.int64)
    params = np.zeros((len(parameters), k, max((x.shape[1] for x in parameters), default=0)))
    for g, x in enumerate(parameters):
        params[g, :, :x.shape[1]] = x
    t_len = arrays.counts.shape[0]
    return PathModel(
        prior=np.asarray(scenario_set.prior, dtype=float), allowed=allowed, conc=conc,
        free=free,
        statistics=np.ascontiguousarray(np.concatenate(columns, axis=1) if columns
                                        else np.zeros((t_len, 0))),
        by_rank=by_rank, offsets=offsets, params=params,
        counts=arrays.counts, exposure=arrays.exposure, tallies=arrays.tallies,
        groups=tuple(kind_groups(scenario_set)))


def path_counts(model: PathModel, max_segments: int):
    """How many allowed paths have 1, 2, … ``max_segments`` segments (to budget the work).

    A generator: the counts grow fast, so callers stop at their budget.
    """
    t = model.n_periods
    for s in range(1, max_segments + 1):
        yield len(model.patterns(s)) * math.comb(max(t - 1, 0), s - 1) if s <= t else 0


# -- the log weight of a path ------------------------------------------------------------


@numba.njit(cache=True)
def _prefix(x):
    out = np.zeros((x.shape[0] + 1, x.shape[1]))
    for t in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[t + 1, j] = out[t, j] + x[t, j]
    return out


# Each kind's marginal of pooled statistics, written in its module as plain Python (`math` only)
# and compiled here: after `forecast._numba` has set the switches and the kernel cache.
_count_marginal = numba.njit(cache=True)(count.path_marginal)
_milestone_marginal = numba.njit(cache=True)(milestone.path_marginal)
_signal_marginal = numba.njit(cache=True)(signal.path_marginal)
_level_marginal = numba.njit(cache=True)(level.path_marginal)
JITTED_MARGINALS = {"count": _count_marginal, "milestone": _milestone_marginal,
                    "signal": _signal_marginal, "level": _level_marginal}


@numba.njit(cache=True)
def _marginal(k, sums, by_rank, offsets, params):
    """Log marginal likelihood of pooled statistics under scenario k (all indicators).

    ``sums`` holds each indicator's pooled statistics at ``offsets`` (see `PathModel`). Numba
    cannot call through the Python registry, so this names each kind's jitted term once, by
    its rank (`indicators.kinds`): a new kind adds one line above and one loop here.
    """
    out = 0.0
    for g in range(by_rank[0], by_rank[1]):
        out += _count_marginal(sums, offsets[g], offsets[g + 1], params, g, k)
    for g in range(by_rank[1], by_rank[2]):
        out += _milestone_marginal(sums, offsets[g], offsets[g + 1], params, g, k)
    for g in range(by_rank[2], by_rank[3]):
        out += _signal_marginal(sums, offsets[g], offsets[g + 1], params, g, k)
    for g in range(by_rank[3], by_rank[4]):
        out += _level_marginal(sums, offsets[g], offsets[g + 1], params, g, k)
    return out


@numba.njit(cache=True)
def _interval_table(prefix, by_rank, offsets, params):
    """(K, T + 1, T + 1): the log marginal of periods [a, b) under each scenario."""
    k = params.shape[1]
    t_len = prefix.shape[0] - 1
    table = np.zeros((k, t_len + 1, t_len + 1))
    sums = np.empty(prefix.shape[1])
    for s in range(k):
        for a in range(t_len):
            for b in range(a + 1, t_len + 1):
                for j in range(prefix.shape[1]):
                    sums[j] = prefix[b, j] - prefix[a, j]
                table[s, a, b] = _marginal(s, sums, by_rank, offsets, params)
    return table


@numba.njit(cache=True)
def _path_weight(pattern, bounds, t_len, log_prior, table, repeated, prefix, lg_stay, lg_total,
                 move_const, moves_out, free, by_rank, offsets, params, sums,
                 stays, visits):
    """Log p(z, y) of the path through ``pattern`` with segment ends ``bounds``."""
    n_seg = pattern.shape[0]
    k = stays.shape[0]
    for s in range(k):
        stays[s] = 0
        visits[s] = 0
    w = log_prior[pattern[0]] + move_const
    start = 0
    for i in range(n_seg):
        end = bounds[i] if i < n_seg - 1 else t_len
        s = pattern[i]
        stays[s] += end - start - 1
        visits[s] += 1
        if not repeated[s]:
            w += table[s, start, end]
        start = end
    for s in range(k):
        if visits[s] == 0:
            continue
        if free[s]:
            w += lg_stay[s, stays[s]] + lg_total[s, stays[s] + moves_out[s]]
        if repeated[s]:
            for j in range(sums.shape[0]):
                sums[j] = 0.0
            start = 0
            for i in range(n_seg):
                end = bounds[i] if i < n_seg - 1 else t_len
                if pattern[i] == s:
                    for j in range(sums.shape[0]):
                        sums[j] += prefix[end, j] - prefix[start, j]
                start = end
            w += _marginal(s, sums, by_rank, offsets, params)
    return w


@numba.njit(cache=True)
def _next_combination(bounds, t_len):
    """Advance strictly increasing ``bounds`` in [1, t_len − 1] lexicographically."""
    m = bounds.shape[0]
    i = m - 1
    while i >= 0 and bounds[i] == t_len - m + i:
        i -= 1
    if i < 0:
        return False
    bounds[i] += 1
    for j in range(i + 1, m):
        bounds[j] = bounds[j - 1] + 1
    return True


@numba.njit(cache=True)
def _scratch(n_seg, k, width):
    """A pattern's first boundary set (1, 2, …) and `_path_weight`'s work arrays."""
    bounds = np.empty(n_seg - 1, dtype=np.int64)
    for i in range(n_seg - 1):
        bounds[i] = i + 1
    return (bounds, np.empty(width), np.empty(k, dtype=np.int64),
            np.empty(k, dtype=np.int64))


@numba.njit(parallel=True, cache=True)
def _block_masses(patterns, consts, moves_out, repeated, t_len, log_prior, table, prefix,
                  lg_stay, lg_total, free, by_rank, offsets, params):
    """Per pattern: (max log weight, Σ exp(w − max)) over its every boundary set."""
    n_pat, n_seg = patterns.shape
    k = log_prior.shape[0]
    out_max = np.full(n_pat, -np.inf)
    out_sum = np.zeros(n_pat)
    for p in numba.prange(n_pat):
        bounds, sums, stays, visits = _scratch(n_seg, k, prefix.shape[1])
        best = -np.inf
        total = 0.0
        if n_seg - 1 <= t_len - 1:
            while True:
                w = _path_weight(patterns[p], bounds, t_len, log_prior, table, repeated[p],
                                 prefix, lg_stay, lg_total, consts[p], moves_out[p], free, by_rank,
                                 offsets, params, sums, stays, visits)
                if w > best:
                    total = total * math.exp(best - w) + 1.0 if best > -np.inf else 1.0
                    best = w
                else:
                    total += math.exp(w - best)
                if n_seg == 1 or not _next_combination(bounds, t_len):
                    break
        out_max[p] = best
        out_sum[p] = total
    return out_max, out_sum


@numba.njit(cache=True)
def _has_successor(bounds, t_len):
    """Whether strictly increasing ``bounds`` has a lexicographic successor."""
    m = bounds.shape[0]
    for i in range(m - 1, -1, -1):
        if bounds[i] != t_len - m + i:
            return True
    return False


@numba.njit(cache=True)
def _pick(pattern, targets, log_scale, const, moves_out, repeated, t_len, log_prior, table,
          prefix, lg_stay, lg_total, free, by_rank, offsets, params, out, row):
    """Write the paths of one pattern at which its cumulative mass passes each target.

    The paths are walked in enumeration order; ``targets`` are sorted shares in [0, 1).
    """
    n_seg = pattern.shape[0]
    k = log_prior.shape[0]
    bounds, sums, stays, visits = _scratch(n_seg, k, prefix.shape[1])
    cumulative = 0.0
    picked = 0
    while True:
        w = _path_weight(pattern, bounds, t_len, log_prior, table, repeated, prefix, lg_stay,
                         lg_total, const, moves_out, free, by_rank, offsets, params,
                         sums, stays, visits)
        cumulative += math.exp(w - log_scale)
        more = n_seg > 1 and _has_successor(bounds, t_len)
        while picked < targets.shape[0] and (targets[picked] < cumulative or not more):
            start = 0
            for i in range(n_seg):
                end = bounds[i] if i < n_seg - 1 else t_len
                for t in range(start, end):
                    out[row + picked, t] = pattern[i]
                start = end
            picked += 1
        if picked >= targets.shape[0] or not more:
            return row + picked
        _next_combination(bounds, t_len)


@dataclass(frozen=True)
class PathSums:
    """The truncated path posterior: per segment count and pattern, its log mass.

    Attributes
    ----------
    max_segments : int
        S: paths with 1 … S segments were enumerated.
    patterns : list of (P_s, s) ndarray
        The allowed scenario sequences of each segment count.
    log_mass : list of (P_s,) ndarray
        ``log Σ p(z, y)`` over each pattern's paths.
    n_paths : int
        How many paths were scored.

    """

    max_segments: int
    patterns: list
    log_mass: list
    n_paths: int

    def total(self) -> float:
        """Log of the truncated paths' joint mass Σ p(z, y)."""
        return float(np.logaddexp.reduce(np.concatenate(self.log_mass)))

    def by_segments(self) -> np.ndarray:
        """(S,) each segment count's share of the truncated mass."""
        total = self.total()
        return np.array([np.exp(np.logaddexp.reduce(m) - total) if m.size else 0.0
                         for m in self.log_mass])

    def nowcast(self, k: int) -> np.ndarray:
        """(K,) P(z_T = k | y, at most S segments): exact."""
        total = self.total()
        out = np.zeros(k)
        for patterns, masses in zip(self.patterns, self.log_mass, strict=True):
            for last in range(k):
                sel = masses[patterns[:, -1] == last] if patterns.size else masses[:0]
                if sel.size:
                    out[last] += np.exp(np.logaddexp.reduce(sel) - total)
        return out


def _tables(model: PathModel, max_segments: int):
    """Everything `_path_weight` reads, precomputed."""
    t_len, k = model.n_periods, model.n_states
    prefix = _prefix(model.statistics)
    table = _interval_table(prefix, model.by_rank, model.offsets, model.params)
    lg_stay = np.zeros((k, t_len + 1))
    lg_total = np.zeros((k, t_len + max_segments + 1))
    n = np.arange(t_len + 1, dtype=float)
    total_n = np.arange(t_len + max_segments + 1, dtype=float)
    for s in range(k):
        if model.free[s]:
            lg_stay[s] = gammaln(model.conc[s, s] + n) - gammaln(model.conc[s, s])
            c_sum = model.conc[s].sum()
            lg_total[s] = gammaln(c_sum) - gammaln(c_sum + total_n)
    with np.errstate(divide="ignore"):
        log_prior = np.log(model.prior)
    return prefix, table, lg_stay, lg_total, log_prior


def _pattern_constants(model: PathModel, patterns: np.ndarray):
    """Per pattern: the Dirichlet–multinomial's move terms, moves out of each scenario.

    And which scenarios the pattern visits more than once.
    """
    n_pat, n_seg = patterns.shape
    k = model.n_states
    consts = np.zeros(n_pat)
    moves_out = np.zeros((n_pat, k), dtype=np.int64)
    repeated = np.zeros((n_pat, k), dtype=np.bool_)
    for p in range(n_pat):
        moves = np.zeros((k, k))
        for i in range(n_seg - 1):
            moves[patterns[p, i], patterns[p, i + 1]] += 1
        for src in range(k):
            for dst in range(k):
                if moves[src, dst]:
                    c = model.conc[src, dst]
                    consts[p] += gammaln(c + moves[src, dst]) - gammaln(c)
        moves_out[p] = moves.sum(axis=1).astype(np.int64)
        counts = np.bincount(patterns[p], minlength=k)
        repeated[p] = counts > 1
    return consts, moves_out, repeated


def enumerate_paths(model: PathModel, max_segments: int) -> PathSums:
    """Score every allowed path with at most ``max_segments`` segments (log p(z, y)).

    Returns
    -------
    PathSums
        The log mass of each (segment count, scenario sequence): enough for the truncated
        nowcast and to sample paths (`sample_paths`).

    """
    prefix, table, lg_stay, lg_total, log_prior = _tables(model, max_segments)
    t_len = model.n_periods
    patterns_by_s, masses, n_paths = [], [], 0
    for s in range(1, min(max_segments, t_len) + 1):
        patterns = model.patterns(s)
        if not len(patterns):
            patterns_by_s.append(patterns)
            masses.append(np.zeros(0))
            continue
        consts, moves_out, repeated = _pattern_constants(model, patterns)
        best, total = _block_masses(patterns, consts, moves_out, repeated, t_len, log_prior,
                                    table, prefix, lg_stay, lg_total, model.free, model.by_rank,
                                    model.offsets, model.params)
        with np.errstate(divide="ignore"):
            masses.append(best + np.log(total))
        patterns_by_s.append(patterns)
        n_paths += len(patterns) * math.comb(t_len - 1, s - 1)
    return PathSums(max_segments=len(masses), patterns=patterns_by_s, log_mass=masses,
                    n_paths=n_paths)


def sample_paths(model: PathModel, sums: PathSums, n: int, rng: np.random.Generator,
                 segments: int | None = None) -> np.ndarray:
    """(n, T) int8: paths drawn from the truncated posterior, by systematic resampling.

    ``segments`` keeps to the paths of that many segments (the posterior given that count).
    Sorted by (segment count, pattern, boundaries): shuffle before using them as a sequence.
    """
    prefix, table, lg_stay, lg_total, log_prior = _tables(model, sums.max_segments)
    total = sums.total()
    blocks = [(s, p) for s, masses in enumerate(sums.log_mass) for p in range(masses.size)
              if segments is None or s + 1 == segments]
    mass = np.array([np.exp(sums.log_mass[s][p] - total) for s, p in blocks])
    mass /= mass.sum()
    targets = (rng.random() + np.arange(n)) / n
    edges = np.concatenate([[0.0], np.cumsum(mass)])
    edges[-1] = max(edges[-1], 1.0)
    which = np.searchsorted(edges, targets, side="right") - 1
    out = np.zeros((n, model.n_periods), dtype=np.int8)
    row = 0
    for b in np.unique(which):
        s, p = blocks[b]
        patterns = sums.patterns[s]
        consts, moves_out, repeated = _pattern_constants(model, patterns[p:p + 1])
        inside = (targets[which == b] - edges[b]) / mass[b]
        row = _pick(patterns[p], np.ascontiguousarray(inside), sums.log_mass[s][p], consts[0],
                    moves_out[0], repeated[0], model.n_periods, log_prior, table, prefix,
                    lg_stay, lg_total, model.free, model.by_rank, model.offsets, model.params,
                    out, row)
    return out


def conditional_draws(model: PathModel, paths: np.ndarray,
                      rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One draw of (A, θ) from p(A, θ | z, y) per path: the exact conjugate conditionals.

    Returns
    -------
    transitions : (S, K, K) ndarray
    parameters : dict
        ``rate``, ``hazard``, ``level``: (S, J_kind, K) arrays (kinds the set has).

    """
    n, t_len = paths.shape
    k = model.n_states
    one_hot = np.zeros((n, t_len, k))
    np.put_along_axis(one_hot, paths[..., None].astype(np.int64), 1.0, axis=2)
    # matmul, not einsum: BLAS, 4–10× faster here, and exact (sums of 0/1 products)
    by_state = one_hot.transpose(0, 2, 1)  # (S, K, T)
    moves = by_state[:, :, :-1] @ one_hot[:, 1:] if t_len > 1 else np.zeros((n, k, k))
    transitions = np.broadcast_to(np.eye(k), (n, k, k)).copy()
    for row in np.flatnonzero(model.free):
        columns = np.flatnonzero(model.conc[row] > 0)
        draws = rng.gamma(model.conc[row, columns] + moves[:, row, columns])
        transitions[:, row, :] = 0.0
        transitions[:, row, columns] = draws / draws.sum(axis=1, keepdims=True)

    def pooled(x):  # (T, J) → (S, J, K): each path's sums while each scenario holds
        return (by_state @ x).transpose(0, 2, 1)

    parameters = {}
    for kind, idx, specs in model.groups:
        statistics = {"counts": pooled(model.counts[:, idx]),
                      "exposure": pooled(model.exposure[:, idx])}
        if model.tallies is not None and model.tallies.shape[2]:
            statistics["tallies"] = np.einsum("stk,tjl->sjkl", one_hot, model.tallies[:, idx])
        parameters[kind.parameter] = kind.conditional_draw(specs, statistics, rng)
    return transitions, parameters


@numba.njit(cache=True)
def segment_filter(transitions, log_emission, prior, max_segments):
    """Per draw: P(z_T = k and the path has s segments | A, θ, y), for s = 1 … S.

    The forward filter on (scenario, segments so far): a stay keeps the count, a move adds
    one, paths that would exceed S are dropped. Normalised like the plain filter, so the
    result sums to P(at most S segments | A, θ, y).

    Returns
    -------
    (draws, K, S) ndarray

    """
    n_draws, n_periods, k = log_emission.shape
    out = np.zeros((n_draws, k, max_segments))
    a = np.empty(k)
    a_next = np.empty(k)
    g = np.empty((k, max_segments))
    g_next = np.empty((k, max_segments))
    for d in range(n_draws):
        if n_periods == 0:
            for j in range(k):
                out[d, j, 0] = prior[j]
            continue
        shift = log_emission[d, 0, 0]
        for j in range(1, k):
            shift = max(shift, log_emission[d, 0, j])
        total = 0.0
        for j in range(k):
            a[j] = prior[j] * math.exp(log_emission[d, 0, j] - shift)
            total += a[j]
        for j in range(k):
            a[j] /= total
            for s in range(max_segments):
                g[j, s] = a[j] if s == 0 else 0.0
        for t in range(1, n_periods):
            shift = log_emission[d, t, 0]
            for j in range(1, k):
                shift = max(shift, log_emission[d, t, j])
            total = 0.0
            for j in range(k):
                acc = 0.0
                for i in range(k):
                    acc += a[i] * transitions[d, i, j]
                weight = math.exp(log_emission[d, t, j] - shift)
                a_next[j] = acc * weight
                total += a_next[j]
                for s in range(max_segments):
                    acc = g[j, s] * transitions[d, j, j]
                    if s > 0:
                        for i in range(k):
                            if i != j:
                                acc += g[i, s - 1] * transitions[d, i, j]
                    g_next[j, s] = acc * weight
            for j in range(k):
                a[j] = a_next[j] / total
                for s in range(max_segments):
                    g[j, s] = g_next[j, s] / total
        for j in range(k):
            for s in range(max_segments):
                out[d, j, s] = g[j, s]
    return out


def all_paths(model: PathModel) -> tuple[np.ndarray, np.ndarray]:
    """Every allowed path and its log p(z, y), by brute force (small test problems only)."""
    t_len, k = model.n_periods, model.n_states
    prefix, table, lg_stay, lg_total, log_prior = _tables(model, t_len)
    paths, weights = [], []
    for path in product(range(k), repeat=t_len):
        path = np.array(path)
        if model.prior[path[0]] <= 0:
            continue
        if any(path[t] != path[t + 1] and not model.allowed[path[t], path[t + 1]]
               for t in range(t_len - 1)):
            continue
        change = np.flatnonzero(np.diff(path)) + 1
        pattern = path[np.r_[0, change]]
        consts, moves_out, repeated = _pattern_constants(model, pattern[None, :])
        w = _path_weight(pattern, change.astype(np.int64), t_len, log_prior, table,
                         repeated[0], prefix, lg_stay, lg_total, consts[0], moves_out[0],
                         model.free, model.by_rank, model.offsets, model.params,
                         np.empty(prefix.shape[1]),
                         np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64))
        paths.append(path)
        weights.append(w)
    return np.array(paths), np.array(weights)


# -- paths beyond the enumeration: importance sampling in path space -----------------------


@numba.njit(cache=True)
def score_paths(paths, log_prior, conc, free, allowed, table, prefix, lg_stay, lg_total,
                by_rank, offsets, params):
    """Log p(z, y) of any paths (the same units as `enumerate_paths`), and their segments.

    A path that makes a move the set forbids, or starts where the prior is 0, scores −inf.

    Returns
    -------
    log_weight : (N,) ndarray
    segments : (N,) int64 ndarray

    """
    n, t_len = paths.shape
    k = log_prior.shape[0]
    out = np.empty(n)
    segments = np.empty(n, dtype=np.int64)
    moves = np.zeros((k, k), dtype=np.int64)
    stays = np.zeros(k, dtype=np.int64)
    visits = np.zeros(k, dtype=np.int64)
    sums = np.empty(prefix.shape[1])
    for i in range(n):
        moves[:, :] = 0
        stays[:] = 0
        visits[:] = 0
        w = log_prior[paths[i, 0]]
        n_seg = 1
        visits[paths[i, 0]] = 1
        for t in range(1, t_len):
            a, b = paths[i, t - 1], paths[i, t]
            if a == b:
                stays[a] += 1
            else:
                if not allowed[a, b]:
                    w = -np.inf
                moves[a, b] += 1
                n_seg += 1
                visits[b] += 1
        segments[i] = n_seg
        if w == -np.inf:
            out[i] = w
            continue
        for s in range(k):
            if visits[s] == 0 or not free[s]:
                continue
            total = stays[s]
            for c in range(k):
                if moves[s, c]:
                    total += moves[s, c]
                    w += math.lgamma(conc[s, c] + moves[s, c]) - math.lgamma(conc[s, c])
            w += lg_stay[s, stays[s]] + lg_total[s, total]
        for s in range(k):
            if visits[s] == 0:
                continue
            if visits[s] == 1:
                start = 0
                while paths[i, start] != s:
                    start += 1
                end = start
                while end < t_len and paths[i, end] == s:
                    end += 1
                w += table[s, start, end]
                continue
            for j in range(sums.shape[0]):
                sums[j] = 0.0
            t = 0
            while t < t_len:
                if paths[i, t] == s:
                    end = t
                    while end < t_len and paths[i, end] == s:
                        end += 1
                    for j in range(sums.shape[0]):
                        sums[j] += prefix[end, j] - prefix[t, j]
                    t = end
                else:
                    t += 1
            w += _marginal(s, sums, by_rank, offsets, params)
        out[i] = w
    return out, segments


@numba.njit(cache=True)
def ffbs(filtered, transitions, components, uniforms):
    """Paths drawn backward from each component's filter (forward filtering, backward sampling).

    Path i is drawn from p(z | A_d, θ_d, y) with d = ``components[i]``: z_T from the last
    filtered distribution, then each z_t ∝ filtered_t · A[·, z_{t+1}].
    """
    n = components.shape[0]
    t_len, k = filtered.shape[1], filtered.shape[2]
    out = np.empty((n, t_len), dtype=np.int64)
    w = np.empty(k)
    for i in range(n):
        d = components[i]
        x = uniforms[i, t_len - 1]
        cumulative = 0.0
        z = k - 1
        for s in range(k):
            cumulative += filtered[d, t_len - 1, s]
            if x < cumulative:
                z = s
                break
        out[i, t_len - 1] = z
        for t in range(t_len - 2, -1, -1):
            total = 0.0
            for s in range(k):
                w[s] = filtered[d, t, s] * transitions[d, s, out[i, t + 1]]
                total += w[s]
            x = uniforms[i, t] * total
            cumulative = 0.0
            z = k - 1
            for s in range(k):
                cumulative += w[s]
                if x < cumulative:
                    z = s
                    break
            out[i, t] = z
    return out


@numba.njit(cache=True)
def mixture_log_density(paths, log_prior, log_transitions, log_emission, loglik):
    """Log (1/D) Σ_d p(z | A_d, θ_d, y) of each path: the proposal of `ffbs` over D components."""
    n, t_len = paths.shape
    n_comp = log_transitions.shape[0]
    out = np.empty(n)
    terms = np.empty(n_comp)
    for i in range(n):
        for d in range(n_comp):
            acc = log_prior[paths[i, 0]] + log_emission[d, 0, paths[i, 0]]
            for t in range(1, t_len):
                acc += (log_transitions[d, paths[i, t - 1], paths[i, t]]
                        + log_emission[d, t, paths[i, t]])
            terms[d] = acc - loglik[d]
        top = terms.max()
        total = 0.0
        for d in range(n_comp):
            total += math.exp(terms[d] - top)
        out[i] = top + math.log(total / n_comp)
    return out


def scorer(model: PathModel):
    """A function scoring paths (N, T) → (log p(z, y), segments), tables built once."""
    prefix, table, lg_stay, lg_total, log_prior = _tables(model, model.n_periods)

    def score(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return score_paths(np.ascontiguousarray(paths, dtype=np.int64), log_prior, model.conc,
                           model.free, model.allowed, table, prefix, lg_stay, lg_total,
                           model.by_rank, model.offsets, model.params)

    return score
