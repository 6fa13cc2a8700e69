"""Errors of the Bayesian core.

Hierarchy::

    RuntimeError
     └── ForecastError
          ├── FitFailed       the sampler itself failed (no result to judge)
          └── FitRejected     a fit ran but did not pass the diagnostics gate
"""

from __future__ import annotations


class ForecastError(RuntimeError):
    """Base class of the forecast package's errors."""


class FitFailed(ForecastError):
    """The sampler failed before producing a result."""


class FitRejected(ForecastError):
    """A fit did not pass the diagnostics gate; its reasons are in the message."""
