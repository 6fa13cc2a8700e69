"""``signal``: a measured number per period (Normal with known noise, Normal prior on the mean).

Evidence: ``counts`` Σ w·y, ``exposure`` Σ w, ``sumsq`` Σ w·y². Tempered log likelihood
``−(sumsq − 2μ·counts + μ²·exposure) / (2σ²)`` (+ const); conjugate marginal
``−½ log(1 + s²W/σ²) − ½[Q/σ² + m²/s² − (m/s² + Y/σ²)² / (1/s² + W/σ²)]``.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator

from indicators.exceptions import CatalogError
from indicators.kinds.base import (
    NUMPY,
    Expectation,
    Kind,
    Prior,
    Statistics,
    concat_features,
    register,
)


class SignalExpectation(Expectation):
    """``{mean: the signal's expected level, sd: its uncertainty}``."""

    mean: float
    sd: float = Field(gt=0)

    @field_validator("mean")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


def _noise_ok(noise) -> bool:
    return (noise is not None and not isinstance(noise, bool) and isinstance(noise, int | float)
            and math.isfinite(noise) and noise > 0)


def log_marginal_signal(prior_mean, prior_sd, noise_sd, weight, wsum, wsumsq):
    """The oracle's term: weighted Normal signal values' log marginal under a Normal mean."""
    prior_prec = 1.0 / prior_sd**2
    data_prec = weight / noise_sd**2
    post_prec = prior_prec + data_prec
    shift = prior_mean * prior_prec + wsum / noise_sd**2
    return -0.5 * np.log(post_prec / prior_prec) - 0.5 * (
        wsumsq / noise_sd**2 + prior_mean**2 * prior_prec - shift**2 / post_prec
    )


@register
class Signal(Kind):
    """A measured number per period, with known measurement noise."""

    rank = 2
    lookup_name = "signal"
    parameter = "level"
    distribution = "Normal"
    expectation = SignalExpectation
    example = "{mean: 0.0, sd: 1.0}"

    def check_indicator(self, indicator):  # noqa: D102
        if not _noise_ok(indicator.noise_sd):
            raise CatalogError(
                f"indicator '{indicator.id}': noise_sd: a signal needs a known noise sd > 0 "
                f"(its measurement error, in {indicator.unit or 'the unit of its values'}); "
                f"got {indicator.noise_sd!r}", field="noise_sd")
        if indicator.levels:
            raise CatalogError(
                f"indicator '{indicator.id}': levels: only a level indicator has levels; "
                "remove them from this signal", field="levels")
        return {"noise_sd": float(indicator.noise_sd)}

    def check_indicator_block(self, indicator, meta):  # noqa: D102
        noise_sd = meta.get("noise_sd", None if indicator is None else indicator.noise_sd)
        if not (isinstance(noise_sd, (int, float)) and noise_sd > 0):
            return f"a signal needs a known noise_sd > 0 (got {noise_sd!r})"
        return None

    def evidence(self, indicator, sums, j, exposure):  # noqa: D102
        return Statistics(counts=sums.sum_wv[:, j], exposure=sums.sum_w[:, j],
                          sumsq=sums.sum_wvv[:, j])

    def check_evidence(self, counts, exposure, sumsq, tallies):  # noqa: D102
        return None  # Σ w·y may be negative; exposure and sumsq ≥ 0 are checked for all

    def prior(self, block, indicator):  # noqa: D102
        return Prior(mean=block.mean, sd=block.sd, alpha=block.mean, beta=block.sd)

    def prior_parameters(self, specs):  # noqa: D102
        return {"mu": np.stack([s.alpha for s in specs]),
                "sigma": np.stack([s.beta for s in specs])}

    def log_marginal(self, spec, n, e, q, c, math=NUMPY):  # noqa: D102
        noise_var = spec.noise_sd**2
        prior_prec = 1.0 / spec.beta**2
        post_prec = prior_prec + e / noise_var
        shift = spec.alpha * prior_prec + n / noise_var
        return -0.5 * math.log(post_prec / prior_prec) - 0.5 * (
            q / noise_var + spec.alpha**2 * prior_prec - shift**2 / post_prec)

    def oracle_log_marginal(self, spec, n, e, q, c):  # noqa: D102
        return log_marginal_signal(spec.alpha, spec.beta, spec.noise_sd, e, n, q)

    def posterior_mean(self, spec, n, e, q, c):  # noqa: D102
        precision = 1 / spec.beta**2 + e / spec.noise_sd**2
        return (spec.alpha / spec.beta**2 + n / spec.noise_sd**2) / precision

    def regime_statistics(self, specs, counts, exposure, tallies, math=NUMPY):  # noqa: D102
        noise_var = np.array([s.noise_sd**2 for s in specs])
        return math.concatenate([counts / noise_var, exposure / (2 * noise_var)], axis=1)

    def features(self, specs, theta, math=NUMPY):  # noqa: D102
        return concat_features(math, [theta, -theta**2])

    def conditional_draw(self, specs, pooled, rng):  # noqa: D102
        mean0, sd0 = self.prior_parameters(specs).values()
        var = np.array([s.noise_sd**2 for s in specs])[None, :, None]
        precision = 1.0 / sd0**2 + pooled["exposure"] / var
        mean = (mean0 / sd0**2 + pooled["counts"] / var) / precision
        return mean + rng.standard_normal(mean.shape) / np.sqrt(precision)

    def predictive(self, spec, theta, exposure, rng):  # noqa: D102
        return theta + spec.noise_sd * rng.standard_normal(theta.shape)

    def path_statistics(self, spec, n, e, q, c):
        """(T, F): Σwy, Σw, Σwy²."""
        return np.stack([n, e, q], axis=1)

    def path_parameters(self, spec):
        """(K, P): prior mean, prior sd, noise variance."""
        return np.stack([spec.alpha, spec.beta, np.full_like(spec.alpha, spec.noise_sd**2)],
                        axis=1)


def path_marginal(sums, start, stop, params, g, k):
    """`Signal.log_marginal` of pooled (Σwy, Σw, Σwy²), ``p`` = (m, s, σ²); compiled."""
    n, e, q = sums[start], sums[start + 1], sums[start + 2]
    mean, sd, var = params[g, k, 0], params[g, k, 1], params[g, k, 2]
    prior_prec = 1.0 / sd**2
    post_prec = prior_prec + e / var
    shift = mean * prior_prec + n / var
    return -0.5 * math.log(post_prec / prior_prec) - 0.5 * (
        q / var + mean**2 * prior_prec - shift**2 / post_prec)


__all__ = ["Signal", "SignalExpectation", "log_marginal_signal"]
