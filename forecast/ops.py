"""The HMM log-likelihood as a PyTensor Op with an analytic gradient, compiled with numba.

A ``pytensor.scan`` forward pass costs ~130 µs per gradient and a minute to compile
(docs/design.md, "Why not NUTS over everything"); `RegimeHMM` runs a scaled forward–backward
pass in numba: the log-likelihood, and
its exact gradient from the posterior marginals — expected transition counts for ``A``,
smoothed state probabilities times each period's statistics for the kinds' features φ(θ), the
first smoothed state for the prior. `filter_draws` filters many posterior draws at once.
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
def regime_forward_backward(transition, prior, features, statistics):
    """Forward–backward pass with the emissions built from each scenario's parameters.

    Every kind's per-regime log likelihood is linear in its statistics
    (`indicators.kinds.Kind.features`): the emission of period t under scenario k is
    ``Σ_f statistics[t, f] · features[f, k]`` (θ-free terms dropped, as
    `forecast.model.regime_loglik`), so the gradient w.r.t. the features is
    ``Σ_t statistics[t, f] · γ[t, k]`` with γ the smoothed state probabilities; PyTensor
    carries it from the features back to θ.

    Parameters
    ----------
    transition : (K, K) ndarray
        Row-stochastic transition matrix.
    prior : (K,) ndarray
        Initial state probabilities.
    features : (F, K) ndarray
        φ(θ) of every kind, concatenated.
    statistics : (T, F) ndarray
        The statistics the features multiply.

    Returns
    -------
    loglik, d_transition, d_prior, d_features

    """
    n_periods, n_features = statistics.shape
    k = prior.shape[0]
    log_emission = np.zeros((n_periods, k))
    for t in range(n_periods):
        for f in range(n_features):
            x = statistics[t, f]
            if x != 0.0:
                for s in range(k):
                    log_emission[t, s] += x * features[f, s]
    loglik, d_transition, smoothed, d_prior = forward_backward(transition, log_emission, prior)
    d_features = np.zeros((n_features, k))
    for t in range(n_periods):
        for f in range(n_features):
            x = statistics[t, f]
            if x != 0.0:
                for s in range(k):
                    d_features[f, s] += x * smoothed[t, s]
    return loglik, d_transition, d_prior, d_features


class RegimeHMM(Op):
    """``log p(y)`` of the dynamic model given (A, φ(θ)), and its gradient, in one numba pass.

    One Op instead of an emission graph feeding a forward–backward Op: the same numbers and far
    less to compile (`tests/forecast/test_horizon.py` holds it against `regime_loglik` +
    `forward_backward` and finite differences). The transition matrix enters as its free
    entries only (``moves``: the Dirichlet rows, concatenated), placed into the identity at
    ``rows``/``columns`` inside the Op: a smaller graph than one ``set_subtensor`` per row.
    The emissions enter as the kinds' features φ(θ) (F, K) and the statistics (T, F) they
    multiply, so the Op knows no kind.

    Parameters
    ----------
    rows, columns : tuple of int
        Where each entry of ``moves`` goes in the (K, K) transition matrix; a row that appears
        here is zero outside its listed columns, a row that does not is the identity's.

    """

    __props__ = ("rows", "columns")
    n_parameters = 3  # moves, prior, features; then the statistics (data)

    def __init__(self, rows: tuple[int, ...], columns: tuple[int, ...]):
        self.rows = tuple(int(r) for r in rows)
        self.columns = tuple(int(c) for c in columns)
        super().__init__()

    def make_node(self, *inputs):
        """Apply to (moves, prior, features, statistics), all float64."""
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
def regime_moves_forward_backward(moves, rows, columns, prior, features, statistics):
    """`regime_forward_backward` with A given by its free entries (see `RegimeHMM`).

    Returns
    -------
    loglik, d_moves, d_prior, d_features

    """
    k = prior.shape[0]
    transition = np.eye(k)
    for i in range(rows.shape[0]):
        transition[rows[i], rows[i]] = 0.0
    for i in range(rows.shape[0]):
        transition[rows[i], columns[i]] = moves[i]
    loglik, d_transition, d_prior, d_features = regime_forward_backward(
        transition, prior, features, statistics)
    d_moves = np.empty(rows.shape[0])
    for i in range(rows.shape[0]):
        d_moves[i] = d_transition[rows[i], columns[i]]
    return loglik, d_moves, d_prior, d_features


def regime_hmm_loglik(moves, rows, columns, prior, features, statistics):
    """``log p(y_1..T | A, θ)`` of the dynamic model (differentiable in moves, prior, features).

    ``moves[i]`` is ``A[rows[i], columns[i]]``; rows not listed are the identity's;
    ``features`` (F, K) are φ(θ) and ``statistics`` (T, F) the data they multiply.
    """
    op = RegimeHMM(tuple(rows), tuple(columns))
    return op(moves, prior, features, statistics)[0]


@register_funcify_default_op_cache_key(RegimeHMM)
def _numba_regime_hmm(op, node, **kwargs):
    rows = np.array(op.rows, dtype=np.int64)
    columns = np.array(op.columns, dtype=np.int64)

    @numba.njit
    def regime_hmm_numba(moves, prior, features, statistics):
        loglik, d_m, d_p, d_f = regime_moves_forward_backward(
            moves, rows, columns, prior, features, statistics)
        return np.asarray(loglik), d_m, d_p, d_f

    return regime_hmm_numba, SOURCE_VERSION
