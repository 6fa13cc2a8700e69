"""``level``: an ordinal state observed in a period (categorical, Dirichlet prior).

Sanctions severity none / targeted / sectoral / comprehensive, a state of alert. Per scenario
the level observed follows a categorical distribution with probabilities p ~
Dirichlet(concentration × probabilities); each observation is one draw, tempered by its
grade's weight like every other kind; a period with no observation of it carries nothing.

Evidence: ``tallies[t, j, l]`` = Σ w of the observations of level l (an observation's stored
value is its level's 0-based index, which is also its stratum in the store); ``counts`` and
``exposure`` both Σ w (the weighted number of draws). Tempered log likelihood
``Σ_l c_l·log p_l``; conjugate marginal (Dirichlet–multinomial of an ordered sequence)
``lnΓ(A) − lnΓ(A + N) + Σ_l [lnΓ(a_l + c_l) − lnΓ(a_l)]`` with ``A = Σ a_l``, ``N = Σ c_l``.

In the model and in posterior draws the parameter ``probabilities`` is (…, J_level, K, L_max),
zero past an indicator's own number of levels.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field
from scipy import special

from indicators._text import quoted_list
from indicators.exceptions import CatalogError, InvalidObservation
from indicators.kinds.base import (
    NUMPY,
    Expectation,
    Kind,
    Prior,
    Statistics,
    category_width,
    concat_features,
    number,
    register,
)

#: probabilities must sum to 1 within this
SUM_TOLERANCE = 1e-6


class LevelExpectation(Expectation):
    """``{probabilities: [one per level, summing to 1], concentration: > 0}``."""

    probabilities: list[float] = Field(min_length=2)
    concentration: float = Field(gt=0)


def _levels(indicator) -> tuple[str, ...]:
    return tuple(indicator.levels or ())


def max_levels(specs) -> int:
    """The largest number of levels among ``specs`` (0 if none)."""
    return category_width([s.indicator for s in specs])


def log_marginal_level(alpha, tallies):
    """The oracle's term: tempered categorical draws' log marginal under a Dirichlet(α).

    ``ln B(α + c) − ln B(α)``, B the multivariate Beta function.

    ``alpha`` (K, L) per scenario, ``tallies`` (..., L); returns (..., K).
    """
    alpha = np.asarray(alpha, dtype=float)
    tallies = np.asarray(tallies, dtype=float)[..., None, :]

    def log_beta(x):
        return special.gammaln(x).sum(axis=-1) - special.gammaln(x.sum(axis=-1))

    return log_beta(alpha + tallies) - log_beta(alpha)


@register
class Level(Kind):
    """An ordinal state observed in a period."""

    rank = 3
    lookup_name = "level"
    parameter = "probabilities"
    distribution = "Dirichlet"
    expectation = LevelExpectation
    example = "{probabilities: [0.5, 0.5], concentration: 10}"
    quiet_is_evidence = False

    def check_indicator(self, indicator):  # noqa: D102
        if indicator.noise_sd is not None:
            raise CatalogError(
                f"indicator '{indicator.id}': noise_sd: only a signal has a noise sd; "
                "remove it from this level", field="noise_sd")
        levels = indicator.levels
        if (not isinstance(levels, list | tuple) or len(levels) < 2
                or not all(isinstance(x, str) and x.strip() for x in levels)):
            raise CatalogError(
                f"indicator '{indicator.id}': levels: a level indicator needs a list of at "
                f"least two level names, in order (e.g. [none, targeted, sectoral]); "
                f"got {levels!r}", field="levels")
        names = tuple(x.strip() for x in levels)
        repeated = sorted({x for x in names if names.count(x) > 1})
        if repeated:
            raise CatalogError(f"indicator '{indicator.id}': levels: {quoted_list(repeated)} "
                               "repeated; each level once", field="levels")
        return {"levels": names}

    def parse_value(self, indicator, raw):  # noqa: D102
        levels = _levels(indicator)
        hint = (f"use one of {quoted_list(levels)} (or its 0-based index, 0–{len(levels) - 1})"
                f" for '{indicator.id}'")
        if raw is None:
            raise InvalidObservation("value", f"is required for a level: {hint}")
        if isinstance(raw, str) and raw.strip() in levels:
            return float(levels.index(raw.strip()))
        try:
            index = number(raw)  # the index, written as a number or its text
        except InvalidObservation:
            index = None
        if (index is None or not index.is_integer()
                or not 0 <= index < len(levels)):
            raise InvalidObservation("value", f"{raw!r} is not a level; {hint}")
        return index

    def bad_values(self, indicator, values):  # noqa: D102
        n = len(_levels(indicator))
        return (values < 0) | (values >= n) | (values != np.round(values)), (
            f"a level is a 0-based index below {n}")

    def strata(self, indicator, values):  # noqa: D102
        return values.astype(np.int64)

    def n_strata(self, indicator):  # noqa: D102
        return len(_levels(indicator))

    def evidence(self, indicator, sums, j, exposure):  # noqa: D102
        n = len(_levels(indicator))
        tallies = sums.by_stratum[:, j, :n]
        total = tallies.sum(axis=1)
        return Statistics(counts=total, exposure=total, tallies=tallies)

    def check_evidence(self, counts, exposure, sumsq, tallies):  # noqa: D102
        problem = super().check_evidence(counts, exposure, sumsq, tallies)
        if problem is None and tallies is not None and (tallies < 0).any():
            return "a level's tallies must be ≥ 0"
        return problem

    def check_indicator_block(self, indicator, meta):  # noqa: D102
        return None

    def prior(self, block, indicator):  # noqa: D102
        levels = _levels(indicator)
        p = np.asarray(block.probabilities, dtype=float)
        if len(p) != len(levels):
            raise ValueError("probabilities", f"{len(p)} probabilities for {len(levels)} levels "
                             f"({', '.join(levels)}); give one per level, in that order")
        if not (np.isfinite(p).all() and (p > 0).all()):
            raise ValueError("probabilities", "each probability must be > 0 (a Dirichlet has "
                             f"no zero entries); got {block.probabilities}")
        if abs(p.sum() - 1.0) > SUM_TOLERANCE:
            raise ValueError("probabilities", f"must sum to 1, got {p.sum():.6g}")
        return Prior(mean=p, sd=float(block.concentration), alpha=block.concentration * p,
                     beta=float(block.concentration))

    def expectation_dict(self, spec, k):  # noqa: D102
        return {"probabilities": [float(x) for x in spec.mean[k]],
                "concentration": float(spec.sd[k])}

    def log_marginal(self, spec, n, e, q, c, math=NUMPY):  # noqa: D102
        a = spec.alpha  # (K, L)
        c = c[..., None, :]  # (..., 1, L)
        total_a = a.sum(axis=-1)
        return (math.gammaln(total_a) - math.gammaln(total_a + math.sum(c, axis=-1))
                + math.sum(math.gammaln(a + c) - math.gammaln(a), axis=-1))

    def oracle_log_marginal(self, spec, n, e, q, c):  # noqa: D102
        return log_marginal_level(spec.alpha, c)

    def posterior_mean(self, spec, n, e, q, c):
        """The posterior mean of the level's index, Σ_l l·E[p_l] (a scalar per scenario)."""
        a = np.asarray(spec.alpha)
        p = (a + np.asarray(c)[..., None, :]) / (a.sum(-1) + np.asarray(c).sum(-1)[..., None]
                                                 )[..., None]
        return (p * np.arange(a.shape[-1])).sum(axis=-1)

    def regime_statistics(self, specs, counts, exposure, tallies, math=NUMPY):  # noqa: D102
        return math.concatenate([tallies[:, j, :len(_levels(s.indicator))]
                                 for j, s in enumerate(specs)], axis=1)

    def features(self, specs, theta, math=NUMPY):  # noqa: D102
        # theta (..., J, K, L_max) → log p, (..., Σ L_j, K)
        parts = []
        for j, s in enumerate(specs):
            block = theta[..., j, :, :len(_levels(s.indicator))]
            axes = (*range(block.ndim - 2), block.ndim - 1, block.ndim - 2)
            parts.append(math.log(block.transpose(axes)))
        return concat_features(math, parts)

    def padded_alpha(self, specs) -> np.ndarray:
        """(J, K, L_max) Dirichlet parameters, 0 past each indicator's levels."""
        width = max_levels(specs)
        out = np.zeros((len(specs), len(specs[0].alpha), width))
        for j, s in enumerate(specs):
            out[j, :, :s.alpha.shape[1]] = s.alpha
        return out

    def pymc_prior(self, specs, name, dims, pm, pt):
        """One Dirichlet per indicator (its own number of levels), stacked zero-padded."""
        width = max_levels(specs)
        blocks = []
        for s in specs:
            p = pm.Dirichlet(f"{name}_{s.id}", a=np.asarray(s.alpha, dtype=float))
            pad = width - s.alpha.shape[1]
            blocks.append(pt.concatenate([p, pt.zeros((s.alpha.shape[0], pad))], axis=-1)
                          if pad else p)
        return pm.Deterministic(name, pt.stack(blocks), dims=dims)

    def conditional_draw(self, specs, pooled, rng):  # noqa: D102
        g = rng.gamma(self.padded_alpha(specs) + pooled["tallies"])  # shape 0 draws 0
        return g / g.sum(axis=-1, keepdims=True)

    def summarise(self, spec, draws, scenarios):  # noqa: D102
        levels = _levels(spec.indicator)
        means = draws.mean(axis=0)[:, :len(levels)]
        return {s: {level: float(means[k, i]) for i, level in enumerate(levels)}
                for k, s in enumerate(scenarios)}

    def predictive(self, spec, theta, exposure, rng):  # noqa: D102
        # theta (S, K, L): one draw of the level in force under each scenario
        u = rng.random(theta.shape[:-1])[..., None]
        return (np.cumsum(theta, axis=-1) < u).sum(axis=-1).astype(float)

    def path_statistics(self, spec, n, e, q, c):
        """(T, L): the tallies."""
        return np.asarray(c, dtype=float)

    def path_parameters(self, spec):
        """(K, L): the Dirichlet parameters."""
        return np.asarray(spec.alpha, dtype=float)


def path_marginal(sums, start, stop, params, g, k):
    """`Level.log_marginal` of pooled tallies, ``p`` = Dirichlet α; `forecast.paths` compiles it."""
    total_a = 0.0
    total_c = 0.0
    out = 0.0
    for i in range(stop - start):
        a, c = params[g, k, i], sums[start + i]
        total_a += a
        total_c += c
        out += math.lgamma(a + c) - math.lgamma(a)
    return out + math.lgamma(total_a) - math.lgamma(total_a + total_c)


__all__ = ["Level", "LevelExpectation", "log_marginal_level", "max_levels"]
