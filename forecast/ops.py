"""The HMM log-likelihood as a PyTensor Op with an analytic gradient, compiled with numba.

A ``pytensor.scan`` forward pass costs ~130 µs per gradient and a minute to compile
(design.md); this Op runs a scaled forward–backward pass in numba: the log-likelihood, and its
exact gradient from the posterior marginals — expected transition counts for ``A``, smoothed
state probabilities for the log emissions, the first smoothed state for the prior.
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key


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
    scale = np.empty(n_periods)
    loglik = 0.0
    predicted = prior.copy()
    for t in range(n_periods):
        shift = log_emission[t].max()
        total = 0.0
        for j in range(k):
            emission[t, j] = np.exp(log_emission[t, j] - shift)
            alpha[t, j] = predicted[j] * emission[t, j]
            total += alpha[t, j]
        scale[t] = total
        loglik += np.log(total) + shift
        for j in range(k):
            alpha[t, j] /= total
        if t + 1 < n_periods:
            for j in range(k):
                acc = 0.0
                for i in range(k):
                    acc += alpha[t, i] * transition[i, j]
                predicted[j] = acc
    beta = np.ones(k)
    new_beta = np.empty(k)
    for j in range(k):
        d_log_emission[n_periods - 1, j] = alpha[n_periods - 1, j]
    for t in range(n_periods - 2, -1, -1):
        # w[j] = b_{t+1}(j) β_{t+1}(j) / c_{t+1}
        w = np.empty(k)
        for j in range(k):
            w[j] = emission[t + 1, j] * beta[j] / scale[t + 1]
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
        d_prior[i] = emission[0, i] * beta[i] / scale[0]
    return loglik, d_transition, d_log_emission, d_prior


@numba.njit(cache=True)
def filter_draws(transitions, log_emission, prior):
    """Filtered probabilities for many posterior draws at once.

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
    (S, T, K) ndarray
        ``P(z_t = k | y_1..t, A_s, θ_s)``.

    """
    n_draws = transitions.shape[0]
    n_periods, k = log_emission.shape[1], log_emission.shape[2]
    out = np.empty((n_draws, n_periods, k))
    for s in range(n_draws):
        predicted = prior.copy()
        for t in range(n_periods):
            shift = log_emission[s, t].max()
            total = 0.0
            for j in range(k):
                out[s, t, j] = predicted[j] * np.exp(log_emission[s, t, j] - shift)
                total += out[s, t, j]
            for j in range(k):
                out[s, t, j] /= total
            for j in range(k):
                acc = 0.0
                for i in range(k):
                    acc += out[s, t, i] * transitions[s, i, j]
                predicted[j] = acc
    return out


class HMMForwardBackward(Op):
    """One forward–backward pass: ``log p(y)`` and its derivatives, as four outputs.

    The log-likelihood's gradient is read off the same pass (no second call), so NUTS pays one
    pass per log-density-and-gradient evaluation.
    """

    __props__ = ()

    def make_node(self, transition, log_emission, prior):
        """Apply to (A, log_emission, prior), all float64."""
        inputs = [pt.as_tensor(x, dtype="float64") for x in (transition, log_emission, prior)]
        outputs = [pt.scalar(dtype="float64")] + [x.type() for x in inputs]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, outputs):
        """Evaluate in Python (non-numba backends)."""
        loglik, d_a, d_b, d_p = forward_backward(
            *(np.asarray(x, dtype=np.float64) for x in inputs))
        outputs[0][0] = np.asarray(loglik, dtype=np.float64)
        outputs[1][0], outputs[2][0], outputs[3][0] = d_a, d_b, d_p

    def pullback(self, inputs, outputs, cotangents):
        """Gradient of the log-likelihood output: the cotangent times the derivatives."""
        g = cotangents[0]
        for other in cotangents[1:]:
            if not isinstance(other.type, DisconnectedType):
                return [grad_not_implemented(self, i, x) for i, x in enumerate(inputs)]
        if isinstance(g.type, DisconnectedType):
            return [DisconnectedType()() for _ in inputs]
        return [g * outputs[1], g * outputs[2], g * outputs[3]]

    def connection_pattern(self, node):
        """Every output depends on every input."""
        return [[True] * len(node.outputs) for _ in node.inputs]


_forward_backward_op = HMMForwardBackward()


def hmm_loglik(transition, log_emission, prior):
    """``log p(y_1..T)`` of an HMM (differentiable in all three inputs).

    Parameters
    ----------
    transition : TensorVariable
        (K, K) row-stochastic transition matrix.
    log_emission : TensorVariable
        (T, K) log emission densities.
    prior : TensorVariable
        (K,) initial state probabilities.

    """
    return _forward_backward_op(transition, log_emission, prior)[0]


@register_funcify_default_op_cache_key(HMMForwardBackward)
def _numba_forward_backward(op, node, **kwargs):
    @numba.njit
    def forward_backward_numba(transition, log_emission, prior):
        loglik, d_a, d_b, d_p = forward_backward(transition, log_emission, prior)
        return np.asarray(loglik), d_a, d_b, d_p

    return forward_backward_numba
