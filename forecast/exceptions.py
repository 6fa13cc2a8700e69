"""Errors of the Bayesian core.

Hierarchy::

    RuntimeError
     └── ForecastError
          └── FitFailed       the sampler itself failed (no result to judge)

A fit that ran but did not pass the diagnostics gate is a result, not an error: `Fit.passed`
says so and `Fit.diagnostics.failures` says why.
"""

from __future__ import annotations


class ForecastError(RuntimeError):
    """Base class of the forecast package's errors."""


class FitFailed(ForecastError):
    """The sampler failed before producing a result."""
