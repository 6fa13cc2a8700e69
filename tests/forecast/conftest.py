"""Shared fixtures of the forecast tests: hand-made conjugate sets and one model cache."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from forecast import FitSettings, ModelCache, SamplerSettings
from indicators import Evidence, make_grid
from priors import ScenarioSet, parse_scenario_set

COUNTS_ONLY = """
id: counts-only
title: Counts only
period: quarter
start: 2000-01-01
scenarios:
  - {id: calm, name: Calm, prior: 0.6}
  - {id: busy, name: Busy, prior: 0.3}
  - {id: surge, name: Surge, prior: 0.1}
indicators:
  drills:
    kind: count
    name: Drills
    calm: {rate: 1.0, sd: 0.5}
    busy: {rate: 1.6, sd: 0.6}
    surge: {rate: 2.5, sd: 1.0}
  patrols:
    kind: count
    name: Patrols
    calm: {rate: 0.3, sd: 0.2}
    busy: {rate: 0.5, sd: 0.3}
    surge: {rate: 0.9, sd: 0.5}
"""

MILESTONES_ONLY = """
id: milestones-only
title: Milestones only
period: month
start: 2000-01-01
scenarios:
  - {id: slow, name: Slow, prior: 0.7}
  - {id: fast, name: Fast, prior: 0.3}
indicators:
  cueing:
    kind: milestone
    name: Cueing
    slow: {hazard: 0.01, sd: 0.008}
    fast: {hazard: 0.05, sd: 0.03}
  radar:
    kind: milestone
    name: Radar
    slow: {hazard: 0.005, sd: 0.004}
    fast: {hazard: 0.03, sd: 0.02}
  command:
    kind: milestone
    name: Command
    slow: {hazard: 0.002, sd: 0.002}
    fast: {hazard: 0.01, sd: 0.008}
"""

ALL_KINDS = """
id: all-kinds
title: All three kinds
period: quarter
start: 2000-01-01
scenarios:
  - {id: low, name: Low, prior: 0.5}
  - {id: mid, name: Mid, prior: 0.35}
  - {id: high, name: High, prior: 0.15}
indicators:
  drills:
    kind: count
    name: Drills
    low: {rate: 0.8, sd: 0.4}
    mid: {rate: 1.2, sd: 0.5}
    high: {rate: 2.0, sd: 0.8}
  link:
    kind: milestone
    name: Link
    low: {hazard: 0.01, sd: 0.008}
    mid: {hazard: 0.03, sd: 0.02}
    high: {hazard: 0.08, sd: 0.04}
  trade:
    kind: signal
    name: Trade index
    noise_sd: 2.0
    low: {mean: 0.0, sd: 1.0}
    mid: {mean: 0.5, sd: 1.0}
    high: {mean: 1.5, sd: 1.5}
"""


def make_evidence(scenario_set: ScenarioSet, counts, exposure, sumsq=None) -> Evidence:
    """Evidence for the set's indicators on its own grid, from raw (T, J) arrays."""
    counts = np.asarray(counts, dtype=float)
    exposure = np.asarray(exposure, dtype=float)
    sumsq = np.zeros_like(counts) if sumsq is None else np.asarray(sumsq, dtype=float)
    n_periods = counts.shape[0]
    months = {"month": 1, "quarter": 3, "year": 12}[scenario_set.period] * max(n_periods - 1, 0)
    start = scenario_set.start
    through = date(start.year + (start.month - 1 + months) // 12,
                   (start.month - 1 + months) % 12 + 1, 1)
    if n_periods == 0:
        through = date(start.year - 1, 1, 1)
    grid = make_grid(scenario_set.period, start, through)
    assert len(grid) == n_periods
    return Evidence(
        grid=grid,
        indicator_ids=scenario_set.indicator_ids,
        kinds=tuple(i.kind for i in scenario_set.indicators),
        counts=counts,
        exposure=exposure,
        sumsq=sumsq,
        as_of=None,
    )


def simulate(scenario_set: ScenarioSet, scenario: int, n_periods: int, rng,
             weight: float | np.ndarray = 1.0) -> Evidence:
    """Evidence simulated from the set's prior under one scenario held fixed.

    ``weight`` (scalar or (T,)) scales the counts and signal statistics as graded
    observations would (tempered likelihood).
    """
    n_ind = len(scenario_set.indicators)
    counts = np.zeros((n_periods, n_ind))
    exposure = np.ones((n_periods, n_ind))
    sumsq = np.zeros((n_periods, n_ind))
    w = np.broadcast_to(np.asarray(weight, dtype=float), (n_periods,))
    for j, spec in enumerate(scenario_set.indicators):
        if spec.kind == "count":
            rate = rng.gamma(spec.alpha[scenario], 1 / spec.beta[scenario])
            counts[:, j] = rng.poisson(rate, n_periods) * w
        elif spec.kind == "milestone":
            hazard = rng.beta(spec.alpha[scenario], spec.beta[scenario])
            hits = np.flatnonzero(rng.random(n_periods) < hazard)
            if hits.size:
                first = hits[0]
                counts[first, j] = w[first]
                exposure[first + 1:, j] = 0.0
        else:
            level = rng.normal(spec.alpha[scenario], spec.beta[scenario])
            y = rng.normal(level, spec.noise_sd, n_periods)
            counts[:, j] = w * y
            exposure[:, j] = w
            sumsq[:, j] = w * y**2
    return make_evidence(scenario_set, counts, exposure, sumsq)


@pytest.fixture(scope="session")
def counts_set() -> ScenarioSet:
    return parse_scenario_set(COUNTS_ONLY, source="counts-only.yaml")


@pytest.fixture(scope="session")
def milestones_set() -> ScenarioSet:
    return parse_scenario_set(MILESTONES_ONLY, source="milestones-only.yaml")


@pytest.fixture(scope="session")
def all_kinds_set() -> ScenarioSet:
    return parse_scenario_set(ALL_KINDS, source="all-kinds.yaml")


@pytest.fixture(scope="session")
def model_cache() -> ModelCache:
    """One cache for the session: each test set compiles once."""
    return ModelCache()


@pytest.fixture(scope="session")
def quick_settings() -> FitSettings:
    return FitSettings(sampler=SamplerSettings(draws=500, tune=500, chains=4))
