"""``count``: events per period (Poisson with a Gamma prior on the rate).

Evidence: ``counts`` Σ w·value per period, ``exposure`` the covered fraction of the period.
Tempered log likelihood ``n·log λ − e·λ`` (+ const); conjugate marginal
``α log β − lnΓ(α) + lnΓ(α + n) − (α + n) log(β + e)``.
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


class CountExpectation(Expectation):
    """``{rate: expected events per period, sd: its uncertainty}``."""

    rate: float = Field(gt=0, description="expected events per period")
    sd: float = Field(gt=0)


def gamma_from_mean_sd(mean: float, sd: float) -> tuple[float, float]:
    """Gamma(shape, rate) with the given mean and sd: shape = (m/s)², rate = m/s²."""
    return (mean / sd) ** 2, mean / sd**2


def log_marginal_count(alpha, beta, events, exposure):
    """The oracle's term: Poisson counts' log marginal likelihood under a Gamma(α, β) rate."""
    return (alpha * np.log(beta) - special.gammaln(alpha) + special.gammaln(alpha + events)
            - (alpha + events) * np.log(beta + exposure))


@register
class Count(Kind):
    """Events per period."""

    rank = 0
    lookup_name = "count"
    parameter = "rate"
    distribution = "Gamma"
    expectation = CountExpectation
    example = "{rate: 1.0, sd: 0.5}"

    def parse_value(self, indicator, raw):  # noqa: D102
        value = 1.0 if raw is None else number(raw)
        if value < 0 or not value.is_integer():
            raise InvalidObservation(
                "value",
                f"a count is a whole number of events ≥ 0, got {raw!r} "
                f"('{indicator.id}' counts {indicator.unit or 'events'}; log one row per event)")
        return value

    def bad_values(self, indicator, values):  # noqa: D102
        return values < 0, "a count must be ≥ 0"

    def evidence(self, indicator, sums, j, exposure):  # noqa: D102
        return Statistics(counts=sums.sum_wv[:, j], exposure=exposure)

    def prior(self, block, indicator):  # noqa: D102
        alpha, beta = gamma_from_mean_sd(block.rate, block.sd)
        return Prior(mean=block.rate, sd=block.sd, alpha=alpha, beta=beta)

    def log_marginal(self, spec, n, e, q, c, math=NUMPY):  # noqa: D102
        alpha, beta = spec.alpha, spec.beta
        return (alpha * math.log(beta) - math.gammaln(alpha) + math.gammaln(alpha + n)
                - (alpha + n) * math.log(beta + e))

    def oracle_log_marginal(self, spec, n, e, q, c):  # noqa: D102
        return log_marginal_count(spec.alpha, spec.beta, n, e)

    def posterior_mean(self, spec, n, e, q, c):  # noqa: D102
        return (spec.alpha + n) / (spec.beta + e)

    def regime_statistics(self, specs, counts, exposure, tallies, math=NUMPY):  # noqa: D102
        return math.concatenate([counts, exposure], axis=1)

    def features(self, specs, theta, math=NUMPY):  # noqa: D102
        return concat_features(math, [math.log(theta), -theta])

    def conditional_draw(self, specs, pooled, rng):  # noqa: D102
        alpha, beta = self.prior_parameters(specs).values()
        return rng.gamma(alpha + pooled["counts"]) / (beta + pooled["exposure"])

    def predictive(self, spec, theta, exposure, rng):  # noqa: D102
        return rng.poisson(theta * exposure).astype(float)


def path_marginal(sums, start, stop, params, g, k):
    """`Count.log_marginal` of pooled (n, e), ``p`` = (α, β); `forecast.paths` compiles it."""
    n, e, a, b = sums[start], sums[start + 1], params[g, k, 0], params[g, k, 1]
    return a * math.log(b) - math.lgamma(a) + math.lgamma(a + n) - (a + n) * math.log(b + e)


__all__ = ["Count", "CountExpectation", "gamma_from_mean_sd", "log_marginal_count"]
