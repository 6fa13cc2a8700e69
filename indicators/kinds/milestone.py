"""``milestone``: a one-time step (geometric first occurrence, Beta prior on the hazard).

Periods are at risk up to and including the first occurrence, none after it. Later reports of
the same milestone corroborate: they add no periods, but the occurrence weighs ``w* = max`` of
their weights. The occurrence period enters with ``exposure = w* + (1 − w*)·e_t`` (with weight
w* the report is right and the period resolved as an occurrence; with 1 − w* it is an ordinary
non-occurrence period), so ``counts ≤ exposure`` always. A milestone reported before the grid's
first period was reached before the question started: its column is all zero.

Tempered log likelihood ``n·log h + (e − n)·log(1 − h)``; conjugate marginal
``ln B(a + n, b + e − n) − ln B(a, b)``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field
from scipy import special

from indicators.exceptions import InvalidObservation
from indicators.kinds.base import (
    NUMPY,
    Expectation,
    Kind,
    Prior,
    Statistics,
    concat_features,
    number,
    register,
)


class MilestoneExpectation(Expectation):
    """``{hazard: chance of first occurrence per period, sd: its uncertainty}``."""

    hazard: float = Field(gt=0, lt=1, description="chance of first occurrence per period")
    sd: float = Field(gt=0)


def beta_from_mean_sd(mean: float, sd: float) -> tuple[float, float]:
    """Beta(a, b) with the given mean and sd.

    Raises
    ------
    ValueError
        If ``sd² ≥ mean·(1 − mean)`` — no Beta distribution is that wide.

    """
    limit = mean * (1.0 - mean)
    if sd**2 >= limit:
        raise ValueError(
            f"sd {sd:g} is too wide for a Beta with mean {mean:g}: "
            f"sd must be below {math.sqrt(limit):.4g} (sqrt(mean·(1−mean)))"
        )
    common = limit / sd**2 - 1.0
    return mean * common, (1.0 - mean) * common


def _betaln(math, a, b):
    return math.gammaln(a) + math.gammaln(b) - math.gammaln(a + b)


def log_marginal_milestone(a, b, successes, failures):
    """The oracle's term: a milestone's periods' log marginal under a Beta(a, b) hazard."""
    return special.betaln(a + successes, b + failures) - special.betaln(a, b)


@register
class Milestone(Kind):
    """A one-time step: evidence until its first occurrence."""

    rank = 1
    lookup_name = "milestone"
    parameter = "hazard"
    distribution = "Beta"
    expectation = MilestoneExpectation
    example = "{hazard: 0.02, sd: 0.02}"
    reads_before_window = True

    def parse_value(self, indicator, raw):  # noqa: D102
        value = 1.0 if raw is None else number(raw)
        if value != 1.0:
            raise InvalidObservation(
                "value",
                f"a milestone is logged with value 1 (it happened), got {raw!r}; "
                f"to withdraw a report of '{indicator.id}', retract the observation")
        return value

    def evidence(self, indicator, sums, j, exposure):  # noqa: D102
        t_len = exposure.shape[0]
        counts, exposed = np.zeros(t_len), np.zeros(t_len)
        if sums.before[j]:  # reached before the window opened: the window says nothing
            return Statistics(counts=counts, exposure=exposed)
        occurred = np.flatnonzero(sums.n_obs[:, j] > 0)
        if occurred.size == 0:
            return Statistics(counts=counts, exposure=exposure)
        t0 = occurred[0]
        weight = float(sums.max_w[:, j].max())
        exposed[:t0] = exposure[:t0]
        exposed[t0] = weight + (1.0 - weight) * exposure[t0]
        counts[t0] = weight
        return Statistics(counts=counts, exposure=exposed)

    def check_evidence(self, counts, exposure, sumsq, tallies):  # noqa: D102
        problem = super().check_evidence(counts, exposure, sumsq, tallies)
        if problem is None and (counts > exposure + 1e-12).any():
            return "a milestone's counts exceed its exposure"
        return problem

    def prior(self, block, indicator):  # noqa: D102
        try:
            alpha, beta = beta_from_mean_sd(block.hazard, block.sd)
        except ValueError as exc:
            raise ValueError("sd", str(exc)) from None
        return Prior(mean=block.hazard, sd=block.sd, alpha=alpha, beta=beta)

    def log_marginal(self, spec, n, e, q, c, math=NUMPY):  # noqa: D102
        a, b = spec.alpha, spec.beta
        return _betaln(math, a + n, b + (e - n)) - _betaln(math, a, b)

    def oracle_log_marginal(self, spec, n, e, q, c):  # noqa: D102
        return log_marginal_milestone(spec.alpha, spec.beta, n, e - n)

    def posterior_mean(self, spec, n, e, q, c):  # noqa: D102
        return (spec.alpha + n) / (spec.alpha + spec.beta + e)

    def regime_statistics(self, specs, counts, exposure, tallies, math=NUMPY):  # noqa: D102
        return math.concatenate([counts, exposure], axis=1)

    def features(self, specs, theta, math=NUMPY):  # noqa: D102
        log_miss = math.log1p(-theta)
        return concat_features(math, [math.log(theta) - log_miss, log_miss])

    def conditional_draw(self, specs, pooled, rng):  # noqa: D102
        alpha, beta = self.prior_parameters(specs).values()
        n, e = pooled["counts"], pooled["exposure"]
        return np.clip(rng.beta(alpha + n, beta + (e - n)), 1e-300, 1.0 - 1e-16)

    def predictive(self, spec, theta, exposure, rng):  # noqa: D102
        return (rng.random(theta.shape) < 1.0 - (1.0 - theta) ** exposure).astype(float)


def path_marginal(sums, start, stop, params, g, k):
    """`Milestone.log_marginal` of pooled (n, e), ``p`` = (a, b); compiled by the paths."""
    n, e, a, b = sums[start], sums[start + 1], params[g, k, 0], params[g, k, 1]
    return (math.lgamma(a + n) + math.lgamma(b + e - n) - math.lgamma(a + b + e)
            - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))


__all__ = ["Milestone", "MilestoneExpectation", "beta_from_mean_sd", "log_marginal_milestone"]
