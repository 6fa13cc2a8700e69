"""Scenario-set validation: every error names the file, the line and the field."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from priors import (
    ScenarioSetError,
    beta_from_mean_sd,
    gamma_from_mean_sd,
    load_scenario_set,
    parse_scenario_set,
)
from priors.schema import PRIOR_SUM_TOLERANCE

VALID = textwrap.dedent("""\
    id: demo
    title: Demo
    question: Which?
    period: quarter
    start: 2012-01-01
    end: 2030-12-31
    scenarios:
      - id: loose
        name: Loose
        prior: 0.6
      - id: bloc
        name: Bloc
        prior: 0.4
    dynamics:
      stay: 0.95
      moves:
        loose: [bloc]
    indicators:
      joint_exercise:
        loose: {rate: 1.0, sd: 0.4}
        bloc: {rate: 2.0, sd: 0.8}
      satellite_cueing:
        loose: {hazard: 0.01, sd: 0.01}
        bloc: {hazard: 0.05, sd: 0.03}
      local_signal:
        kind: signal
        name: A local signal
        noise_sd: 2.0
        loose: {mean: 0.0, sd: 1.0}
        bloc: {mean: 1.0, sd: 1.0}
""")


def problems_of(text):
    with pytest.raises(ScenarioSetError) as info:
        parse_scenario_set(text, source="demo.yaml")
    return info.value.problems


def line_of(text, needle, occurrence=1):
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[occurrence - 1]


def test_valid_set_loads_with_conjugate_parameters():
    s = parse_scenario_set(VALID, source="demo.yaml")
    assert s.scenario_ids == ("loose", "bloc")
    assert s.indicator_ids == ("joint_exercise", "satellite_cueing", "local_signal")
    count = s.indicators[0]
    np.testing.assert_allclose(count.alpha, [(1 / 0.4) ** 2, (2 / 0.8) ** 2])
    np.testing.assert_allclose(count.beta, [1 / 0.4**2, 2 / 0.8**2])
    milestone = s.indicators[1]
    a, b = milestone.alpha[1], milestone.beta[1]
    np.testing.assert_allclose(a / (a + b), 0.05)
    np.testing.assert_allclose(np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))), 0.03)
    assert s.indicators[2].noise_sd == 2.0 and s.indicators[2].kind == "signal"
    np.testing.assert_allclose(s.transition_matrix(), [[0.95, 0.05], [0.0, 1.0]])
    assert len(s.content_hash) == 64


def test_hash_ignores_comments_but_not_numbers():
    a = parse_scenario_set(VALID)
    b = parse_scenario_set(VALID.replace("prior: 0.6", "prior: 0.6   # cited"))
    c = parse_scenario_set(VALID.replace("rate: 1.0, sd: 0.4", "rate: 1.1, sd: 0.4"))
    assert a.content_hash == b.content_hash != c.content_hash


def test_unknown_scenario_under_indicator():
    text = VALID.replace("    bloc: {rate: 2.0, sd: 0.8}", "    bloc: {rate: 2.0, sd: 0.8}\n"
                                                          "    blok: {rate: 2.0, sd: 0.8}")
    [p] = problems_of(text)
    assert p.source == "demo.yaml"
    assert p.line == line_of(text, "blok:")
    assert p.field == "indicators.joint_exercise.blok"
    assert "unknown scenario 'blok'; did you mean 'bloc'?" in p.message


def test_scenario_missing_an_expectation():
    text = VALID.replace("    bloc: {hazard: 0.05, sd: 0.03}\n", "")
    [p] = problems_of(text)
    assert p.field == "indicators.satellite_cueing"
    assert p.line == line_of(text, "satellite_cueing:")
    assert "scenario 'bloc' has no expectation for this milestone indicator" in p.message


def test_priors_must_sum_to_one():
    text = VALID.replace("prior: 0.4", "prior: 0.5")
    [p] = problems_of(text)
    assert p.field == "scenarios"
    assert p.line == line_of(text, "scenarios:")
    assert "priors sum to 1.1, not 1" in p.message


@pytest.mark.parametrize("bloc", ["0.4000000005", "0.3999991"])
def test_priors_within_tolerance_are_accepted_as_written(bloc):
    s = parse_scenario_set(VALID.replace("prior: 0.4", f"prior: {bloc}"))
    assert [sc.prior for sc in s.scenarios] == [0.6, float(bloc)]  # not rescaled
    assert abs(s.prior.sum() - 1.0) <= PRIOR_SUM_TOLERANCE


@pytest.mark.parametrize("bloc", ["0.400002", "0.399998"])
def test_priors_just_past_the_tolerance_are_refused(bloc):
    text = VALID.replace("prior: 0.4", f"prior: {bloc}")
    [p] = problems_of(text)
    assert p.field == "scenarios"
    assert f"priors sum to {0.6 + float(bloc):.6g}, not 1 (±1e-06)" in p.message


@pytest.mark.parametrize("bad", ["sd: 0.0", "sd: -0.4"])
def test_sd_must_be_positive(bad):
    text = VALID.replace("loose: {rate: 1.0, sd: 0.4}", f"loose: {{rate: 1.0, {bad}}}")
    [p] = problems_of(text)
    assert p.field == "indicators.joint_exercise.loose.sd"
    assert p.line == line_of(text, f"loose: {{rate: 1.0, {bad}}}")
    assert "greater than 0" in p.message


def test_beta_sd_too_wide_for_its_mean():
    text = VALID.replace("bloc: {hazard: 0.05, sd: 0.03}", "bloc: {hazard: 0.05, sd: 0.3}")
    [p] = problems_of(text)
    assert p.field == "indicators.satellite_cueing.bloc.sd"
    assert p.line == line_of(text, "bloc: {hazard: 0.05, sd: 0.3}")
    assert "sd 0.3 is too wide for a Beta with mean 0.05" in p.message
    assert "below 0.2179" in p.message


def test_unknown_kind():
    text = VALID.replace("kind: signal", "kind: signl")
    [p] = problems_of(text)
    assert p.field == "indicators.local_signal.kind"
    assert p.line == line_of(text, "kind: signl")
    assert "unknown kind 'signl'; did you mean 'signal'?" in p.message


def test_duplicate_scenario_ids():
    text = VALID.replace("  - id: bloc", "  - id: loose")
    ps = problems_of(text)
    dup = [p for p in ps if "duplicate scenario id" in p.message]
    assert dup and dup[0].field == "scenarios[1].id"
    assert dup[0].line == line_of(text, "- id: loose", 2)


def test_duplicate_yaml_keys():
    text = VALID.replace("  satellite_cueing:", "  joint_exercise:")
    [p] = problems_of(text)
    assert p.field == "indicators.joint_exercise"
    assert p.line == line_of(text, "joint_exercise:", 2)
    first = line_of(text, "joint_exercise:")
    assert f"duplicate key 'joint_exercise' (first given on line {first})" in p.message


def test_move_to_unknown_scenario():
    text = VALID.replace("loose: [bloc]", "loose: [bolc]")
    [p] = problems_of(text)
    assert p.field == "dynamics.moves.loose[0]"
    assert p.line == line_of(text, "loose: [bolc]")
    assert "move to unknown scenario 'bolc'; did you mean 'bloc'?" in p.message


def test_move_from_unknown_scenario():
    text = VALID.replace("loose: [bloc]", "lose: [bloc]")
    [p] = problems_of(text)
    assert p.field == "dynamics.moves.lose"
    assert "unknown scenario 'lose'; did you mean 'loose'?" in p.message


def test_end_before_start():
    text = VALID.replace("end: 2030-12-31", "end: 2011-12-31")
    [p] = problems_of(text)
    assert p.field == "end"
    assert p.line == line_of(text, "end: 2011")
    assert "end 2011-12-31 is not after start 2012-01-01" in p.message


def test_unknown_key_suggests_the_right_one():
    text = VALID.replace("loose: {rate: 1.0, sd: 0.4}", "loose: {rat: 1.0, sd: 0.4}")
    ps = problems_of(text)
    unknown = [p for p in ps if p.field == "indicators.joint_exercise.loose.rat"]
    assert unknown and "unknown key 'rat'; did you mean 'rate'?" in unknown[0].message
    missing = [p for p in ps if p.field == "indicators.joint_exercise.loose.rate"]
    assert missing and missing[0].message == "is required"


def test_unknown_top_level_key():
    text = VALID.replace("period: quarter", "periodd: quarter")
    ps = problems_of(text)
    assert any("unknown key 'periodd'; did you mean 'period'?" in p.message for p in ps)


def test_unknown_indicator_not_in_catalog():
    text = VALID.replace("  joint_exercise:", "  joint_exercize:")
    [p] = problems_of(text)
    assert p.field == "indicators.joint_exercize"
    assert "not in the catalog; did you mean 'joint_exercise'?" in p.message


def test_catalog_kind_mismatch():
    text = VALID.replace("  satellite_cueing:\n", "  satellite_cueing:\n    kind: count\n")
    [p] = problems_of(text)
    assert p.field == "indicators.satellite_cueing.kind"
    assert "is a milestone indicator in the catalog" in p.message


def test_signal_needs_noise_sd():
    text = VALID.replace("    noise_sd: 2.0\n", "")
    [p] = problems_of(text)
    assert p.field == "indicators.local_signal.noise_sd"
    assert "noise_sd > 0" in p.message


def test_several_problems_are_all_reported_in_file_order():
    text = VALID.replace("end: 2030-12-31", "end: 2011-12-31").replace(
        "loose: [bloc]", "loose: [bolc]")
    ps = problems_of(text)
    assert [p.field for p in ps] == ["end", "dynamics.moves.loose[0]"]
    assert str(ps[0]).startswith(f"demo.yaml:{line_of(text, 'end:')}: end: ")


def test_invalid_yaml_reports_the_line():
    text = VALID.replace("title: Demo", "title: [Demo")
    [p] = problems_of(text)
    assert p.field == "<file>" and "not valid YAML" in p.message and p.line is not None


def test_load_from_file_names_the_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("prior: 0.4", "prior: 0.5"))
    with pytest.raises(ScenarioSetError) as info:
        load_scenario_set(path)
    assert str(info.value).startswith(f"{path}:")


def test_parameter_conversions():
    shape, rate = gamma_from_mean_sd(2.0, 0.5)
    assert shape / rate == pytest.approx(2.0) and np.sqrt(shape) / rate == pytest.approx(0.5)
    with pytest.raises(ValueError, match="too wide"):
        beta_from_mean_sd(0.5, 0.5)
