"""Errors of the Bayesian core.

Hierarchy::

    RuntimeError
     └── ForecastError
          └── FitFailed       the sampler itself failed (no result to judge)
    ValueError
     └── RecordVersionError   a stored fit record this code cannot read (a newer version)

A fit that ran but did not pass the diagnostics gate is a result, not an error: `Fit.passed`
says so and `Fit.diagnostics.failures` says why.
"""

from __future__ import annotations


class ForecastError(RuntimeError):
    """Base class of the forecast package's errors."""


class FitFailed(ForecastError):
    """The sampler failed before producing a result."""


class RecordVersionError(ValueError):
    """A stored fit record of a schema version this code does not read (`forecast.record`)."""
