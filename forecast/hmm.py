"""Forward filtering of the scenario HMM (NumPy, scaled probability space).

The filter works on per-period log emissions, so it serves both the collapsed model (whose
emissions are sequential predictive densities) and pinned parameters (plain likelihoods).
"""

from __future__ import annotations

import numpy as np


def forward_filter(prior: np.ndarray, transition: np.ndarray,
                   log_emission: np.ndarray) -> tuple[np.ndarray, float]:
    """Filtered state probabilities ``P(z_t = k | y_1..t)`` and the log likelihood.

    Parameters
    ----------
    prior : numpy.ndarray
        (K,) ``P(z_1)``.
    transition : numpy.ndarray
        (K, K) row-stochastic, ``A[i, j] = P(z_{t+1} = j | z_t = i)``.
    log_emission : numpy.ndarray
        (T, K) ``log p(y_t | z_t = k)`` (up to a per-period constant).

    Returns
    -------
    filtered : numpy.ndarray
        (T, K); with T = 0 an empty (0, K) array.
    log_likelihood : float
        ``log p(y_1..T)`` (up to the per-period constants of ``log_emission``).

    """
    prior = np.asarray(prior, dtype=float)
    transition = np.asarray(transition, dtype=float)
    log_emission = np.asarray(log_emission, dtype=float)
    n_periods, n_states = log_emission.shape
    filtered = np.empty((n_periods, n_states))
    predicted = prior
    log_lik = 0.0
    for t in range(n_periods):
        shift = log_emission[t].max()
        joint = predicted * np.exp(log_emission[t] - shift)
        norm = joint.sum()
        filtered[t] = joint / norm
        log_lik += np.log(norm) + shift
        predicted = filtered[t] @ transition
    return filtered, float(log_lik)
