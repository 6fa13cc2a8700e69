"""Scenario sets: the question owner's YAML files, validated with line-precise errors."""

from indicators.kinds import beta_from_mean_sd, gamma_from_mean_sd
from priors.exceptions import Problem, ScenarioSetError
from priors.schema import (
    BUNDLED_DIR,
    Dynamics,
    IndicatorExpectations,
    Scenario,
    ScenarioSet,
    bundled_set_paths,
    load_bundled_sets,
    load_scenario_set,
    parse_scenario_set,
)

__all__ = [
    "BUNDLED_DIR",
    "Dynamics",
    "IndicatorExpectations",
    "Problem",
    "Scenario",
    "ScenarioSet",
    "ScenarioSetError",
    "beta_from_mean_sd",
    "bundled_set_paths",
    "gamma_from_mean_sd",
    "load_bundled_sets",
    "load_scenario_set",
    "parse_scenario_set",
]
