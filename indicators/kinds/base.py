"""What every indicator kind provides: the `Kind` interface and the registry.

A kind is one unit of code (``indicators/kinds/<kind>.py``) owning everything that differs by
kind, so the evidence builder, the scenario-set schema, the model, the fused Op, the path
estimator, the oracle and the store loop over the registry instead of branching on names.
The pattern is pymc-marketing's registered transformations (a ``lookup_name`` per class, a
registry built from the classes).

Statistics. Every kind reads the same per-(indicator, period, stratum) sums of its weighted
observations: ``n_obs``, ``Σw``, ``Σw·v``, ``Σw·v²``, ``max w``. The *stratum* of an
observation is 0 except for kinds with categories (a level's index), so the store keeps one
row per (indicator, month, stratum) and a new kind needs no new column. From those sums a kind
fills its evidence: the three (T, J) arrays ``counts``, ``exposure``, ``sumsq`` and, for
categorical kinds, ``tallies`` (T, J, L): Σw per category.

Math. Each kind's tempered log likelihood given its parameter θ is linear in its statistics,
``ℓ_t(θ) = Σ_f s_tf · φ_f(θ)``: `regime_statistics` gives ``s`` (T, F) and `features` gives
``φ`` (F, K). The dynamic model's Op sees only ``s`` and ``φ``, whatever the kind.
`log_marginal` is the conjugate marginal of summed statistics (written once for NumPy and
PyTensor: ``math`` is either namespace); `oracle_log_marginal` the same quantity written
independently with SciPy, for the exact oracle the tests hold the model against.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import special

from indicators._text import did_you_mean, quoted_list
from indicators.exceptions import CatalogError, InvalidObservation

__all__ = ["NUMPY", "Expectation", "Kind", "Prior", "Statistics", "Sums", "categories",
           "category_width", "concat_features", "get_kind", "kind_names", "number",
           "own_tallies", "register"]

#: The NumPy side of the ``math`` namespace the kinds' formulas are written against
#: (``pytensor.tensor`` is the other: it has the same names).
NUMPY = SimpleNamespace(log=np.log, log1p=np.log1p, gammaln=special.gammaln, exp=np.exp,
                        sum=np.sum, sqrt=np.sqrt, stack=np.stack, concatenate=np.concatenate,
                        cumsum=np.cumsum, zeros=np.zeros, as_tensor=np.asarray)


class Expectation(BaseModel):
    """Base of a kind's per-scenario YAML expectation block (strict: unknown keys refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Prior:
    """One scenario's elicited expectation and its conjugate parameters.

    ``mean``/``sd``: what the analyst wrote (a rate, hazard, signal mean; for a level the
    probabilities and the concentration); ``alpha``/``beta``: the conjugate prior (a level's
    ``alpha`` is the Dirichlet vector, ``beta`` its concentration).
    """

    mean: Any
    sd: Any
    alpha: Any
    beta: Any


@dataclass(frozen=True)
class Sums:
    """Per (period, indicator) sums of weighted observations (T, J), and per stratum.

    ``by_stratum`` is (T, J, S): Σw of each stratum (S = 1 when no kind has categories).
    ``before`` (J,) marks indicators with an observation dated before the grid's first period.
    """

    n_obs: np.ndarray
    sum_w: np.ndarray
    sum_wv: np.ndarray
    sum_wvv: np.ndarray
    max_w: np.ndarray
    by_stratum: np.ndarray
    before: np.ndarray


@dataclass(frozen=True)
class Statistics:
    """One indicator's evidence column(s): what `Kind.evidence` returns."""

    counts: np.ndarray
    exposure: np.ndarray
    sumsq: np.ndarray | None = None
    tallies: np.ndarray | None = None


class Kind:
    """An indicator kind. Subclasses set the class attributes and override the methods."""

    lookup_name: ClassVar[str]
    #: name of the per-scenario parameter in the model and in the posterior draws
    parameter: ClassVar[str]
    #: PyMC distribution of the parameter's prior (a ``pymc`` attribute name)
    distribution: ClassVar[str]
    #: one scenario's expectation block in the YAML
    expectation: ClassVar[type[Expectation]]
    #: an example block, shown when a scenario lacks one
    example: ClassVar[str]
    #: what a period without observations means: True when it is evidence (nothing happened)
    quiet_is_evidence: ClassVar[bool] = True
    #: whether observations dated before the grid's first period still count (a milestone
    #: reached before the window: its column is then all zero)
    reads_before_window: ClassVar[bool] = False
    #: position in the registry (the order of the model's parameters and of their draws)
    rank: ClassVar[int]

    # -- the indicator's definition -----------------------------------------------------

    def check_indicator(self, indicator: Any) -> dict[str, Any]:
        """Validate the kind-specific fields of an indicator; return normalised values.

        Raises
        ------
        CatalogError
            Naming the field.

        """
        if indicator.noise_sd is not None:
            raise CatalogError(
                f"indicator '{indicator.id}': noise_sd: only a signal has a noise sd; "
                f"remove it from this {self.lookup_name}", field="noise_sd")
        if indicator.levels:
            raise CatalogError(
                f"indicator '{indicator.id}': levels: only a level indicator has levels; "
                f"remove them from this {self.lookup_name}", field="levels")
        return {}

    # -- observations ---------------------------------------------------------------------

    def parse_value(self, indicator: Any, raw: Any) -> float:
        """The stored value of an observation given as ``raw`` (None: absent, read as 1).

        Raises
        ------
        InvalidObservation
            Naming ``value`` and saying what this kind accepts.

        """
        return 1.0 if raw is None else number(raw)

    def bad_values(self, indicator: Any, values: np.ndarray) -> tuple[np.ndarray, str] | None:
        """Values the evidence builder must refuse: (mask, reason), or None."""
        return None

    def strata(self, indicator: Any, values: np.ndarray) -> np.ndarray:
        """The stratum of each value (0 unless the kind has categories)."""
        return np.zeros(len(values), dtype=np.int64)

    def n_strata(self, indicator: Any) -> int:
        """How many strata the kind's statistics have for this indicator."""
        return 1

    # -- evidence -------------------------------------------------------------------------

    def evidence(self, indicator: Any, sums: Sums, j: int, exposure: np.ndarray) -> Statistics:
        """The indicator's evidence column from its sums.

        ``exposure`` is the covered fraction of each period (0 past the indicator's coverage).
        """
        raise NotImplementedError

    def check_evidence(self, counts, exposure, sumsq, tallies) -> str | None:
        """An invariant the evidence of this kind breaks (a message), or None."""
        if (counts < 0).any():
            return "counts of counts and milestones must be ≥ 0"
        if (sumsq != 0).any():
            return "sumsq must be 0 for counts and milestones"
        return None

    # -- the prior --------------------------------------------------------------------------

    def prior(self, block: Expectation, indicator: Any) -> Prior:
        """Conjugate parameters of one scenario's block. Raises ValueError(field, message)."""
        raise NotImplementedError

    def expectation_dict(self, spec: Any, k: int) -> dict[str, Any]:
        """Scenario k's expectation as written, for the API."""
        return {"mean": float(spec.mean[k]), "sd": float(spec.sd[k])}

    def check_indicator_block(self, indicator: Any, meta: dict[str, Any]) -> str | None:
        """A problem with the set-level keys of this indicator's block, or None.

        ``indicator`` is the catalog's entry, or None for one the set defines inline.
        """
        return None

    # -- math -------------------------------------------------------------------------------

    def log_marginal(self, spec: Any, n, e, q, c, math=NUMPY):
        """(..., K) conjugate log marginal likelihood of summed statistics, constants dropped.

        ``n, e, q`` (...,) the indicator's summed counts, exposure, sumsq; ``c`` (..., L) its
        summed tallies (categorical kinds) or None.
        """
        raise NotImplementedError

    def oracle_log_marginal(self, spec: Any, n, e, q, c) -> np.ndarray:
        """`log_marginal` written independently with SciPy (the oracle's term)."""
        raise NotImplementedError

    def posterior_mean(self, spec: Any, n, e, q, c) -> np.ndarray:
        """(..., K) posterior mean of the parameter given summed statistics.

        A scalar per scenario (a level's: the mean position of its level, see there).
        """
        raise NotImplementedError

    def regime_statistics(self, specs: Sequence[Any], counts, exposure, tallies, math=NUMPY):
        """(T, F) the statistics the per-regime log likelihood is linear in.

        ``counts``, ``exposure`` (T, J_kind), ``tallies`` (T, J_kind, L) or None; arrays or
        tensors (``math`` says which).
        """
        raise NotImplementedError

    def features(self, specs: Sequence[Any], theta, math=NUMPY):
        """(..., F, K) the functions of θ (..., J_kind, K[, L]) the statistics multiply."""
        raise NotImplementedError

    def prior_parameters(self, specs: Sequence[Any]) -> dict[str, np.ndarray]:
        """Keyword arguments of `distribution` for the set's indicators of this kind."""
        return {"alpha": np.stack([s.alpha for s in specs]),
                "beta": np.stack([s.beta for s in specs])}

    def pymc_prior(self, specs: Sequence[Any], name: str, dims: tuple[str, ...], pm: Any,
                   pt: Any) -> Any:
        """The parameter's prior as a PyMC variable (``pm``, ``pt``: the modules, passed in)."""
        return getattr(pm, self.distribution)(name, **self.prior_parameters(specs), dims=dims)

    def conditional_draw(self, specs: Sequence[Any], pooled: dict[str, np.ndarray],
                         rng: np.random.Generator) -> np.ndarray:
        """(S, J_kind, K[, L]) draws of θ given per-draw pooled statistics (S, J_kind, K[, L])."""
        raise NotImplementedError

    def path_statistics(self, spec: Any, n, e, q, c) -> np.ndarray:
        """(T, F) the columns the path estimator pools (default: n and e)."""
        return np.stack([n, e], axis=1)

    def path_parameters(self, spec: Any) -> np.ndarray:
        """(K, P) what the kind's jitted ``path_marginal`` reads (default: α, β)."""
        return np.stack([spec.alpha, spec.beta], axis=1)

    def summarise(self, spec: Any, draws: np.ndarray, scenarios: Sequence[str]) -> dict:
        """Posterior mean of one indicator's parameter per scenario, for the fit record."""
        means = draws.mean(axis=0)
        return {s: float(means[k]) for k, s in enumerate(scenarios)}

    def predictive(self, spec: Any, theta: np.ndarray, exposure: float,
                   rng: np.random.Generator) -> np.ndarray:
        """Draws of one period's observation given θ (S, K) under each scenario (S, K)."""
        raise NotImplementedError


def number(raw: Any) -> float:
    """``raw`` (a number or its text) as a finite float, or `InvalidObservation` on ``value``."""
    if isinstance(raw, bool):
        raise InvalidObservation("value", f"must be a number, not a boolean ({raw!r})")
    if isinstance(raw, str):
        text = raw.strip()
        try:
            value = float(text)
        except ValueError:
            raise InvalidObservation("value", f"{text!r} is not a number") from None
    elif isinstance(raw, numbers.Real):
        value = float(raw)
    else:
        raise InvalidObservation("value", f"must be a number, got {type(raw).__name__} {raw!r}")
    if not math.isfinite(value):
        raise InvalidObservation("value", f"must be a finite number, got {raw!r}")
    return value


def categories(indicator: Any) -> int:
    """How many categories an indicator's kind keeps (its strata), 0 for a kind without any."""
    n = get_kind(indicator.kind).n_strata(indicator)
    return n if n > 1 else 0


def category_width(indicators: Sequence[Any]) -> int:
    """The most categories any of ``indicators`` has: the last axis of their tallies."""
    return max((categories(i) for i in indicators), default=0)


def own_tallies(indicator: Any, tallies: Any) -> Any:
    """An indicator's own categories out of a zero-padded ``tallies[..., L_max]``, or None."""
    n = categories(indicator)
    return tallies[..., :n] if n else None


def concat_features(math: Any, parts: Sequence[Any]) -> Any:
    """Concatenate (..., J, K) feature blocks along the statistic axis (NumPy or PyTensor)."""
    return math.concatenate(parts, axis=-2)


_REGISTRY: dict[str, Kind] = {}


def register(cls: type[Kind]) -> type[Kind]:
    """Class decorator: add a kind to the registry under its ``lookup_name``."""
    if cls.lookup_name in _REGISTRY:
        raise ValueError(f"kind {cls.lookup_name!r} is registered twice")
    _REGISTRY[cls.lookup_name] = cls()
    return cls


def kind_names() -> tuple[str, ...]:
    """The registered kinds, by rank."""
    return tuple(sorted(_REGISTRY, key=lambda name: _REGISTRY[name].rank))


def get_kind(name: str) -> Kind:
    """The registered kind called ``name``.

    Raises
    ------
    CatalogError
        If no kind has that name (the message lists them and suggests the closest).

    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        names = kind_names()
        raise CatalogError(f"kind: {name!r} is not a kind; use one of {quoted_list(names)}"
                           f"{did_you_mean(str(name), names)}", field="kind") from None
