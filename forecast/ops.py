"""The HMM log-likelihood as a PyTensor Op with an analytic gradient, compiled with numba.

A ``pytensor.scan`` forward pass costs ~130 µs per gradient and a minute to compile
(docs/design.md, "Why not NUTS over everything"); `RegimeHMM` runs a scaled forward–backward
pass in numba: the log-likelihood, and
its exact gradient from the posterior marginals — expected transition counts for ``A``,
smoothed state probabilities times each period's derivative for θ, the first smoothed state
for the prior. `filter_draws` filters many posterior draws at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

# PyTensor caches each compiled graph under a key made of its Ops' types and props, and the
# compiled graph embeds this module's numba code: salt the key with this file's text so an edit
# here is compiled afresh, not loaded stale from `base_compiledir/numba`.
SOURCE_VERSION = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)


@numba.njit(cache=True)
def forward_backward(transition, log_emission, prior):
    """Scaled forward–backward pass.

    Parameters
    ----------
    transition : (K, K) ndarray
        Row-stochastic transition matrix.
    log_emission : (T, K) ndarray
        Log emission density of each period under each state.
    prior : (K,) ndarray
        Initial state probabilities.

    Returns
    -------
    loglik : float
    d_transition : (K, K) ndarray
        ∂ loglik / ∂ A.
    d_log_emission : (T, K) ndarray
        ∂ loglik / ∂ log_emission (the smoothed state probabilities).
    d_prior : (K,) ndarray
        ∂ loglik / ∂ prior.

    """
    n_periods, k = log_emission.shape
    d_transition = np.zeros((k, k))
    d_log_emission = np.zeros((n_periods, k))
    d_prior = np.zeros(k)
    if n_periods == 0:
        return 0.0, d_transition, d_log_emission, d_prior
    alpha = np.empty((n_periods, k))
    emission = np.empty((n_periods, k))
    inv_scale = np.empty(n_periods)
    loglik = 0.0
    predicted = prior.copy()
    for t in range(n_periods):
        shift = log_emission[t, 0]
        for j in range(1, k):
            shift = max(shift, log_emission[t, j])
        total = 0.0
        for j in range(k):
            emission[t, j] = np.exp(log_emission[t, j] - shift)
            alpha[t, j] = predicted[j] * emission[t, j]
            total += alpha[t, j]
        loglik += np.log(total) + shift
        inv = 1.0 / total
        inv_scale[t] = inv
        for j in range(k):
            alpha[t, j] *= inv
        if t + 1 < n_periods:
            for j in range(k):
                acc = 0.0
                for i in range(k):
                    acc += alpha[t, i] * transition[i, j]
                predicted[j] = acc
    beta = np.ones(k)
    new_beta = np.empty(k)
    w = np.empty(k)
    for j in range(k):
        d_log_emission[n_periods - 1, j] = alpha[n_periods - 1, j]
    for t in range(n_periods - 2, -1, -1):
        # w[j] = b_{t+1}(j) β_{t+1}(j) / c_{t+1}
        for j in range(k):
            w[j] = emission[t + 1, j] * beta[j] * inv_scale[t + 1]
        for i in range(k):
            acc = 0.0
            for j in range(k):
                d_transition[i, j] += alpha[t, i] * w[j]
                acc += transition[i, j] * w[j]
            new_beta[i] = acc
        for i in range(k):
            beta[i] = new_beta[i]
            d_log_emission[t, i] = alpha[t, i] * beta[i]
    for i in range(k):
        d_prior[i] = emission[0, i] * beta[i] * inv_scale[0]
    return loglik, d_transition, d_log_emission, d_prior


@numba.njit(cache=True)
def filter_draws(transitions, log_emission, prior):
    """Filtered probabilities and log-likelihoods for many posterior draws at once.

    Parameters
    ----------
    transitions : (S, K, K) ndarray
        One transition matrix per draw.
    log_emission : (S, T, K) ndarray
        Log emission density of each period under each state, per draw.
    prior : (K,) ndarray
        Initial state probabilities.

    Returns
    -------
    filtered : (S, T, K) ndarray
        ``P(z_t = k | y_1..t, A_s, θ_s)``.
    loglik : (S,) ndarray
        ``log p(y_1..T | A_s, θ_s)`` (up to the terms dropped from the emissions).

    """
    n_draws = transitions.shape[0]
    n_periods, k = log_emission.shape[1], log_emission.shape[2]
    out = np.empty((n_draws, n_periods, k))
    loglik = np.zeros(n_draws)
    for s in range(n_draws):
        predicted = prior.copy()
        for t in range(n_periods):
            shift = log_emission[s, t].max()
            total = 0.0
            for j in range(k):
                out[s, t, j] = predicted[j] * np.exp(log_emission[s, t, j] - shift)
                total += out[s, t, j]
            loglik[s] += np.log(total) + shift
            for j in range(k):
                out[s, t, j] /= total
            for j in range(k):
                acc = 0.0
                for i in range(k):
                    acc += out[s, t, i] * transitions[s, i, j]
                predicted[j] = acc
    return out, loglik


@numba.njit(cache=True)
def regime_forward_backward(transition, prior, rate, hazard, level, n_count, e_count,
                            n_milestone, e_milestone, n_signal, e_signal):
    """Forward–backward pass with the emissions built from each scenario's parameters.

    The emission of period t under scenario k is ``Σ_j log p(y_tj | θ[j, k])`` (θ-free terms
    dropped, as `forecast.model.regime_loglik`); the gradient w.r.t. θ is the smoothed state
    probability times the derivative of each period's term.

    Parameters
    ----------
    transition : (K, K) ndarray
        Row-stochastic transition matrix.
    prior : (K,) ndarray
        Initial state probabilities.
    rate, hazard, level : (J_kind, K) ndarrays
        Per-scenario parameters of the count, milestone and signal indicators (J_kind may be 0).
    n_count, e_count, n_milestone, e_milestone : (T, J_kind) ndarrays
        Weighted events and exposure of each kind.
    n_signal, e_signal : (T, J_signal) ndarrays
        Signal statistics pre-scaled by the noise: ``Σ w y / σ²`` and ``Σ w / (2 σ²)``.

    Returns
    -------
    loglik, d_transition, d_prior, d_rate, d_hazard, d_level

    """
    n_periods = n_count.shape[0]
    k = prior.shape[0]
    log_rate = np.log(rate)
    log_hazard = np.log(hazard)
    log_miss = np.log1p(-hazard)
    log_emission = np.zeros((n_periods, k))
    for t in range(n_periods):
        for s in range(k):
            acc = 0.0
            for j in range(rate.shape[0]):
                acc += n_count[t, j] * log_rate[j, s] - e_count[t, j] * rate[j, s]
            for j in range(hazard.shape[0]):
                acc += (n_milestone[t, j] * log_hazard[j, s]
                        + (e_milestone[t, j] - n_milestone[t, j]) * log_miss[j, s])
            for j in range(level.shape[0]):
                acc += n_signal[t, j] * level[j, s] - e_signal[t, j] * level[j, s] ** 2
            log_emission[t, s] = acc
    loglik, d_transition, smoothed, d_prior = forward_backward(transition, log_emission, prior)
    # Σ_t γ[t, k] ∂ℓ_tk/∂θ, with the sums over t first: no division in the inner loops
    d_rate = np.zeros_like(rate)
    d_hazard = np.zeros_like(hazard)
    d_level = np.zeros_like(level)
    for s in range(k):
        for j in range(rate.shape[0]):
            events = 0.0
            exposure = 0.0
            for t in range(n_periods):
                events += smoothed[t, s] * n_count[t, j]
                exposure += smoothed[t, s] * e_count[t, j]
            d_rate[j, s] = events / rate[j, s] - exposure
        for j in range(hazard.shape[0]):
            hits = 0.0
            misses = 0.0
            for t in range(n_periods):
                hits += smoothed[t, s] * n_milestone[t, j]
                misses += smoothed[t, s] * (e_milestone[t, j] - n_milestone[t, j])
            d_hazard[j, s] = hits / hazard[j, s] - misses / (1.0 - hazard[j, s])
        for j in range(level.shape[0]):
            first = 0.0
            second = 0.0
            for t in range(n_periods):
                first += smoothed[t, s] * n_signal[t, j]
                second += smoothed[t, s] * e_signal[t, j]
            d_level[j, s] = first - 2.0 * second * level[j, s]
    return loglik, d_transition, d_prior, d_rate, d_hazard, d_level


class RegimeHMM(Op):
    """``log p(y)`` of the dynamic model given (A, θ), and its gradient, in one numba pass.

    One Op instead of an emission graph feeding a forward–backward Op: the same numbers and far
    less to compile (`tests/forecast/test_horizon.py` holds it against `regime_loglik` +
    `forward_backward` and finite differences). The transition matrix enters as its free
    entries only (``moves``: the Dirichlet rows, concatenated), placed into the identity at
    ``rows``/``columns`` inside the Op: a smaller graph than one ``set_subtensor`` per row
    (measured: the same cost per gradient, ~35–41 µs for the whole model either way).

    Parameters
    ----------
    rows, columns : tuple of int
        Where each entry of ``moves`` goes in the (K, K) transition matrix; a row that appears
        here is zero outside its listed columns, a row that does not is the identity's.

    """

    __props__ = ("rows", "columns")
    n_parameters = 5  # moves, prior, rate, hazard, level; then six data inputs

    def __init__(self, rows: tuple[int, ...], columns: tuple[int, ...]):
        self.rows = tuple(int(r) for r in rows)
        self.columns = tuple(int(c) for c in columns)
        super().__init__()

    def make_node(self, *inputs):
        """Apply to (moves, prior, rate, hazard, level, six statistics), all float64."""
        inputs = [pt.as_tensor(x, dtype="float64") for x in inputs]
        outputs = [pt.scalar(dtype="float64")] + [x.type() for x in inputs[:self.n_parameters]]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, outputs):
        """Evaluate in Python (non-numba backends)."""
        moves, *rest = (np.asarray(x, dtype=np.float64) for x in inputs)
        results = regime_moves_forward_backward(moves, np.array(self.rows, dtype=np.int64),
                                                np.array(self.columns, dtype=np.int64), *rest)
        outputs[0][0] = np.asarray(results[0], dtype=np.float64)
        for out, value in zip(outputs[1:], results[1:], strict=True):
            out[0] = value

    def pullback(self, inputs, outputs, cotangents):
        """Gradient of the log-likelihood output w.r.t. the parameters (data: none needed)."""
        g = cotangents[0]
        for other in cotangents[1:]:
            if not isinstance(other.type, DisconnectedType):
                return [grad_not_implemented(self, i, x) for i, x in enumerate(inputs)]
        if isinstance(g.type, DisconnectedType):
            return [DisconnectedType()() for _ in inputs]
        return ([g * d for d in outputs[1:]]
                + [grad_undefined(self, i, x, "the evidence is data")
                   for i, x in enumerate(inputs) if i >= self.n_parameters])

    def connection_pattern(self, node):
        """The log-likelihood depends on everything; the data get no gradient."""
        n_out = len(node.outputs)
        return ([[True] * n_out for _ in node.inputs[:self.n_parameters]]
                + [[True] + [False] * (n_out - 1) for _ in node.inputs[self.n_parameters:]])


@numba.njit(cache=True)
def regime_moves_forward_backward(moves, rows, columns, prior, rate, hazard, level, n_count,
                                  e_count, n_milestone, e_milestone, n_signal, e_signal):
    """`regime_forward_backward` with A given by its free entries (see `RegimeHMM`).

    Returns
    -------
    loglik, d_moves, d_prior, d_rate, d_hazard, d_level

    """
    k = prior.shape[0]
    transition = np.eye(k)
    for i in range(rows.shape[0]):
        transition[rows[i], rows[i]] = 0.0
    for i in range(rows.shape[0]):
        transition[rows[i], columns[i]] = moves[i]
    loglik, d_transition, d_prior, d_rate, d_hazard, d_level = regime_forward_backward(
        transition, prior, rate, hazard, level, n_count, e_count, n_milestone, e_milestone,
        n_signal, e_signal)
    d_moves = np.empty(rows.shape[0])
    for i in range(rows.shape[0]):
        d_moves[i] = d_transition[rows[i], columns[i]]
    return loglik, d_moves, d_prior, d_rate, d_hazard, d_level


def regime_hmm_loglik(moves, rows, columns, prior, rate, hazard, level, n_count, e_count,
                      n_milestone, e_milestone, n_signal, e_signal):
    """``log p(y_1..T | A, θ)`` of the dynamic model (differentiable in the moves, prior, θ).

    ``moves[i]`` is ``A[rows[i], columns[i]]``; rows not listed are the identity's.
    """
    op = RegimeHMM(tuple(rows), tuple(columns))
    return op(moves, prior, rate, hazard, level, n_count, e_count, n_milestone, e_milestone,
              n_signal, e_signal)[0]


@register_funcify_default_op_cache_key(RegimeHMM)
def _numba_regime_hmm(op, node, **kwargs):
    rows = np.array(op.rows, dtype=np.int64)
    columns = np.array(op.columns, dtype=np.int64)

    @numba.njit
    def regime_hmm_numba(moves, prior, rate, hazard, level, n_count, e_count,
                         n_milestone, e_milestone, n_signal, e_signal):
        loglik, d_m, d_p, d_r, d_h, d_l = regime_moves_forward_backward(
            moves, rows, columns, prior, rate, hazard, level, n_count, e_count, n_milestone,
            e_milestone, n_signal, e_signal)
        return np.asarray(loglik), d_m, d_p, d_r, d_h, d_l

    return regime_hmm_numba, SOURCE_VERSION
