"""Indicator kinds as plug-ins: one module per kind, and the registry of them.

``count``, ``milestone``, ``signal`` and ``level`` register themselves on import; see
`indicators.kinds.base` for what a kind provides. To add a kind: a module with a `Kind`
subclass decorated with `register`, imported here, and (for the path estimator's jitted
marginal) one branch in ``forecast.paths._marginal``.
"""

from indicators.kinds import count, level, milestone, signal  # noqa: F401  (they register)
from indicators.kinds.base import (
    NUMPY,
    Expectation,
    Kind,
    Prior,
    Statistics,
    Sums,
    categories,
    category_width,
    get_kind,
    kind_names,
    own_tallies,
    register,
)
from indicators.kinds.count import gamma_from_mean_sd
from indicators.kinds.milestone import beta_from_mean_sd

KINDS: tuple[str, ...] = kind_names()

__all__ = ["KINDS", "NUMPY", "Expectation", "Kind", "Prior", "Statistics", "Sums",
           "beta_from_mean_sd", "categories", "category_width", "gamma_from_mean_sd",
           "get_kind", "kind_names", "own_tallies", "register"]
