"""The scenario-set file: YAML → validated, immutable :class:`ScenarioSet`.

A scenario set is one strategic question: its mutually exclusive scenarios with prior
probabilities, its period grid, optional regime dynamics, and what each scenario expects of
each indicator. Expectations are written per kind (mean and sd for counts, milestones and
signals; probabilities and a concentration for levels) and turned by the kind
(`indicators.kinds`) into the conjugate prior's parameters (Gamma for count rates, Beta for
milestone hazards, Normal for signal means, Dirichlet for level probabilities).

Every problem is reported with the file, the line and the field (``ScenarioSetError``); all
problems of a file are collected, not just the first.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from indicators import Catalog, Indicator, SignpostIndicatorError, load_catalog
from indicators.kinds import KINDS, get_kind
from priors.exceptions import Problem, ScenarioSetError

Period = Literal["month", "quarter", "year"]
PRIOR_SUM_TOLERANCE = 1e-6
INDICATOR_META_KEYS = ("kind", "name", "unit", "description", "coding", "noise_sd", "levels")

# --------------------------------------------------------------------------------------
# Validated domain objects (what the rest of Signpost uses)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One mutually exclusive scenario of a set."""

    id: str
    name: str
    prior: float
    description: str = ""


@dataclass(frozen=True)
class Dynamics:
    """Regime dynamics: the per-period stay probability and the allowed moves."""

    stay: float
    moves: Mapping[str, tuple[str, ...]]
    concentration: float = 40.0
    ladder: tuple[str, ...] = ()

    def transition_matrix(self, scenario_ids: Sequence[str]) -> np.ndarray:
        """Centre transition matrix: ``stay`` on the diagonal, the rest split over moves.

        Parameters
        ----------
        scenario_ids : sequence of str
            Row/column order.

        Returns
        -------
        numpy.ndarray
            (K, K) row-stochastic matrix. A scenario with no allowed move is absorbing.

        """
        index = {s: i for i, s in enumerate(scenario_ids)}
        matrix = np.eye(len(scenario_ids))
        for source, targets in self.moves.items():
            if not targets:
                continue
            i = index[source]
            matrix[i, i] = self.stay
            for target in targets:
                matrix[i, index[target]] = (1.0 - self.stay) / len(targets)
        return matrix


@dataclass(frozen=True)
class IndicatorExpectations:
    """What every scenario expects of one indicator, as conjugate prior parameters.

    Attributes
    ----------
    indicator : Indicator
        The catalog entry (or the set's inline definition).
    mean, sd : numpy.ndarray
        (K,) the elicited mean and sd per scenario (rate, hazard or signal mean); for a level
        ``mean`` is (K, L), the probabilities, and ``sd`` the concentration.
    alpha, beta : numpy.ndarray
        (K,) conjugate parameters: Gamma(shape=alpha, rate=beta) for counts,
        Beta(alpha, beta) for milestones; for signals ``alpha`` is the prior mean and
        ``beta`` the prior sd of the per-scenario mean; for a level ``alpha`` is the (K, L)
        Dirichlet parameter (concentration × probabilities) and ``beta`` the concentration.
    noise_sd : float or None
        Known observation noise of a signal.

    """

    indicator: Indicator
    mean: np.ndarray
    sd: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    noise_sd: float | None = None

    @property
    def id(self) -> str:
        """The indicator id."""
        return self.indicator.id

    @property
    def kind(self) -> str:
        """The indicator kind (a name in `indicators.kinds`)."""
        return self.indicator.kind


@dataclass(frozen=True)
class ScenarioSet:
    """A validated scenario set, ready for the model."""

    id: str
    title: str
    question: str
    period: Period
    start: date
    end: date | None
    scenarios: tuple[Scenario, ...]
    indicators: tuple[IndicatorExpectations, ...]
    dynamics: Dynamics | None = None
    source: str = "<string>"
    content_hash: str = field(default="", compare=False)

    @property
    def scenario_ids(self) -> tuple[str, ...]:
        """Scenario ids in file order."""
        return tuple(s.id for s in self.scenarios)

    @property
    def indicator_ids(self) -> tuple[str, ...]:
        """Indicator ids in file order."""
        return tuple(i.id for i in self.indicators)

    @property
    def prior(self) -> np.ndarray:
        """(K,) prior probabilities."""
        return np.array([s.prior for s in self.scenarios], dtype=float)

    @property
    def catalog_indicators(self) -> tuple[Indicator, ...]:
        """The indicator definitions the set uses (for the evidence builder)."""
        return tuple(i.indicator for i in self.indicators)

    def transition_matrix(self) -> np.ndarray:
        """(K, K) centre transition matrix; the identity for a static set."""
        if self.dynamics is None:
            return np.eye(len(self.scenarios))
        return self.dynamics.transition_matrix(self.scenario_ids)


# --------------------------------------------------------------------------------------
# File schema (pydantic): structure and per-field rules
# --------------------------------------------------------------------------------------

_ID_PATTERN = r"^[a-z][a-z0-9_\-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ScenarioSpec(_Strict):
    id: str = Field(pattern=_ID_PATTERN)
    name: str
    prior: float = Field(gt=0, le=1)
    description: str = ""


class _DynamicsSpec(_Strict):
    stay: float = Field(gt=0, le=1)
    moves: dict[str, list[str]] = Field(default_factory=dict)
    concentration: float = Field(default=40.0, gt=0,
                                 description="Dirichlet concentration of each transition row")
    ladder: list[str] = Field(default_factory=list,
                              description="scenarios in order of depth, for 'k or deeper'")


class _SetSpec(_Strict):
    id: str = Field(pattern=_ID_PATTERN)
    title: str
    question: str = ""
    period: Period
    start: date
    end: date | None = None
    scenarios: list[_ScenarioSpec] = Field(min_length=1)
    dynamics: _DynamicsSpec | None = None
    indicators: dict[str, dict[str, Any]] = Field(min_length=1)


# --------------------------------------------------------------------------------------
# YAML with line numbers
# --------------------------------------------------------------------------------------


def _compose_lines(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML, returning the data and a map from key path to 1-based line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioSetError(
            [Problem(source, line, "<file>", f"not valid YAML: {getattr(exc, 'problem', exc)}")]
        ) from exc
    lines: dict[tuple, int] = {}
    duplicates: list[Problem] = []

    def walk(node: yaml.Node, path: tuple) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen:
                    duplicates.append(
                        Problem(source, line, _dotted(path + (key,)),
                                f"duplicate key '{key}' (first given on line {seen[key]})")
                    )
                    continue
                seen[key] = line
                lines[path + (key,)] = line
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    if root is not None:
        walk(root, ())
    if duplicates:
        raise ScenarioSetError(duplicates)
    return data, lines


def _dotted(path: Sequence[Any]) -> str:
    parts: list[str] = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "<file>"


class _Collector:
    """Collects problems, resolving each path to the nearest line."""

    def __init__(self, source: str, lines: dict[tuple, int]):
        self.source = source
        self.lines = lines
        self.problems: list[Problem] = []

    def add(self, path: Sequence[Any], message: str) -> None:
        path = tuple(path)
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                line = self.lines[path[:cut]]
                break
        self.problems.append(Problem(self.source, line, _dotted(path), message))

    def add_validation_error(self, prefix: Sequence[Any], error: ValidationError,
                             allowed: Sequence[str] = ()) -> None:
        for item in error.errors():
            loc = tuple(prefix) + tuple(item["loc"])
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                key = str(item["loc"][-1])
                message = f"unknown key '{key}'"
                hint = _suggest(key, allowed)
                message += f"; did you mean '{hint}'?" if hint else ""
                if allowed:
                    message += f" (allowed: {', '.join(allowed)})"
            elif item["type"] == "missing":
                message = "is required"
            self.add(loc, message)


def _suggest(word: str, options: Sequence[str]) -> str | None:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return match[0] if match else None


# --------------------------------------------------------------------------------------
# Conversion of elicited mean/sd into conjugate parameters
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def parse_scenario_set(text: str, source: str = "<string>",
                       catalog: Catalog | None = None) -> ScenarioSet:
    """Validate the text of a scenario-set YAML file.

    Parameters
    ----------
    text : str
        The YAML document.
    source : str
        Name used in error messages (normally the file path).
    catalog : Catalog, optional
        Indicator catalog; the bundled one by default.

    Returns
    -------
    ScenarioSet

    Raises
    ------
    ScenarioSetError
        Listing every problem with file, line and field.

    """
    catalog = catalog if catalog is not None else load_catalog()
    data, lines = _compose_lines(text, source)
    errors = _Collector(source, lines)
    if not isinstance(data, dict):
        errors.add((), "a scenario set must be a YAML mapping (id, title, scenarios, ...)")
        raise ScenarioSetError(errors.problems)
    try:
        spec = _SetSpec.model_validate(data)
    except ValidationError as exc:
        errors.add_validation_error((), exc, allowed=tuple(_SetSpec.model_fields))
        raise ScenarioSetError(errors.problems) from None

    scenario_ids = [s.id for s in spec.scenarios]
    seen: dict[str, int] = {}
    for i, scenario in enumerate(spec.scenarios):
        if scenario.id in seen:
            first = seen[scenario.id]
            errors.add(("scenarios", i, "id"),
                       f"duplicate scenario id '{scenario.id}' (also scenarios[{first}])")
        seen.setdefault(scenario.id, i)
    total = sum(s.prior for s in spec.scenarios)
    if abs(total - 1.0) > PRIOR_SUM_TOLERANCE:
        errors.add(("scenarios",),
                   f"priors sum to {total:.6g}, not 1 (±{PRIOR_SUM_TOLERANCE:g}); rescale them")
    if spec.end is not None and spec.end <= spec.start:
        errors.add(("end",), f"end {spec.end} is not after start {spec.start}")

    known = set(scenario_ids)
    if spec.dynamics is not None:
        for source_id, targets in spec.dynamics.moves.items():
            if source_id not in known:
                errors.add(("dynamics", "moves", source_id),
                           _unknown_scenario(source_id, scenario_ids))
            for j, target in enumerate(targets):
                if target not in known:
                    errors.add(("dynamics", "moves", source_id, j),
                               f"move to {_unknown_scenario(target, scenario_ids)}")
                elif target == source_id:
                    errors.add(("dynamics", "moves", source_id, j),
                               f"a move from '{source_id}' to itself; staying is set by 'stay'")
        for j, rung in enumerate(spec.dynamics.ladder):
            if rung not in known:
                errors.add(("dynamics", "ladder", j), _unknown_scenario(rung, scenario_ids))
        if len(set(spec.dynamics.ladder)) != len(spec.dynamics.ladder):
            errors.add(("dynamics", "ladder"), "a scenario appears twice in the ladder")
        if spec.dynamics.stay == 1.0 and any(spec.dynamics.moves.values()):
            errors.add(("dynamics", "stay"), "stay = 1 makes every move impossible; use < 1")

    inline: list[Indicator] = []
    expectations: list[IndicatorExpectations] = []
    for indicator_id, body in spec.indicators.items():
        built = _indicator_expectations(indicator_id, body, scenario_ids, catalog, errors)
        if built is not None:
            expectations.append(built)
            if indicator_id not in catalog:
                inline.append(built.indicator)

    if errors.problems:
        raise ScenarioSetError(errors.problems)

    dynamics = None
    if spec.dynamics is not None:
        dynamics = Dynamics(
            stay=spec.dynamics.stay,
            moves={k: tuple(v) for k, v in spec.dynamics.moves.items()},
            concentration=spec.dynamics.concentration,
            ladder=tuple(spec.dynamics.ladder),
        )
    content = spec.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return ScenarioSet(
        id=spec.id,
        title=spec.title,
        question=spec.question,
        period=spec.period,
        start=spec.start,
        end=spec.end,
        scenarios=tuple(Scenario(s.id, s.name, s.prior, s.description) for s in spec.scenarios),
        indicators=tuple(expectations),
        dynamics=dynamics,
        source=source,
        content_hash=digest,
    )


def _unknown_scenario(scenario_id: str, scenario_ids: Sequence[str]) -> str:
    message = f"unknown scenario '{scenario_id}'"
    hint = _suggest(str(scenario_id), scenario_ids)
    if hint:
        message += f"; did you mean '{hint}'?"
    return message + f" (scenarios: {', '.join(scenario_ids)})"


def _indicator_expectations(indicator_id: str, body: Any, scenario_ids: Sequence[str],
                            catalog: Catalog, errors: _Collector) -> IndicatorExpectations | None:
    path = ("indicators", indicator_id)
    if not isinstance(body, dict):
        errors.add(path, "must be a mapping of scenario id → expectation")
        return None
    meta = {k: body[k] for k in INDICATOR_META_KEYS if k in body}
    per_scenario = {k: v for k, v in body.items() if k not in INDICATOR_META_KEYS}

    indicator = _resolve_indicator(indicator_id, meta, catalog, errors)
    if indicator is None:
        return None
    kind = indicator.kind
    plugin = get_kind(kind)
    model = plugin.expectation

    n_before = len(errors.problems)
    for key in per_scenario:
        if key not in scenario_ids:
            errors.add(path + (key,), _unknown_scenario(key, scenario_ids))
    means, sds, alphas, betas = [], [], [], []
    allowed = tuple(model.model_fields)
    for scenario_id in scenario_ids:
        if scenario_id not in per_scenario:
            errors.add(path, f"scenario '{scenario_id}' has no expectation for this {kind} "
                             f"indicator; add e.g. '{scenario_id}: {plugin.example}'")
            continue
        raw = per_scenario[scenario_id]
        try:
            exp = model.model_validate(raw)
        except ValidationError as exc:
            errors.add_validation_error(path + (scenario_id,), exc, allowed=allowed)
            continue
        try:
            prior = plugin.prior(exp, indicator)
        except ValueError as exc:
            field_name, message = exc.args
            errors.add(path + (scenario_id, field_name), message)
            continue
        means.append(prior.mean)
        sds.append(prior.sd)
        alphas.append(prior.alpha)
        betas.append(prior.beta)
    if len(errors.problems) > n_before:
        return None
    noise_sd = None
    problem = plugin.check_indicator_block(indicator, meta)
    if problem:
        errors.add(path + ("noise_sd",), problem)
        return None
    if indicator.noise_sd is not None:  # a signal's, perhaps overridden by the set
        noise_sd = float(meta.get("noise_sd", indicator.noise_sd))
    return IndicatorExpectations(
        indicator=indicator,
        mean=np.array(means), sd=np.array(sds),
        alpha=np.array(alphas), beta=np.array(betas),
        noise_sd=noise_sd,
    )


def _resolve_indicator(indicator_id: str, meta: dict[str, Any], catalog: Catalog,
                       errors: _Collector) -> Indicator | None:
    path = ("indicators", indicator_id)
    if indicator_id in catalog:
        known = catalog[indicator_id]
        if "kind" in meta and meta["kind"] != known.kind:
            errors.add(path + ("kind",), f"'{indicator_id}' is a {known.kind} indicator in the "
                                         f"catalog, not {meta['kind']!r}")
            return None
        return known
    if "kind" not in meta:
        message = f"indicator '{indicator_id}' is not in the catalog"
        hint = _suggest(indicator_id, list(catalog))
        message += f"; did you mean '{hint}'?" if hint else ""
        errors.add(path, message + " (or define it here with 'kind:' and 'name:')")
        return None
    kind = meta["kind"]
    if kind not in KINDS:
        hint = _suggest(str(kind), list(KINDS))
        errors.add(path + ("kind",), f"unknown kind {kind!r}"
                   + (f"; did you mean '{hint}'?" if hint else "")
                   + f" (kinds: {', '.join(KINDS)})")
        return None
    noise_sd = meta.get("noise_sd")
    problem = get_kind(kind).check_indicator_block(None, meta)
    if problem:
        errors.add(path + ("noise_sd",), problem)
        return None
    try:
        return Indicator(
            id=indicator_id,
            kind=kind,
            name=str(meta.get("name", indicator_id)),
            unit=str(meta.get("unit", "")),
            description=str(meta.get("description", "")),
            coding=str(meta.get("coding", "")),
            noise_sd=float(noise_sd) if noise_sd is not None else None,
            levels=meta.get("levels") or (),
        )
    except SignpostIndicatorError as exc:
        errors.add(path + (getattr(exc, "field", "") or "kind",), str(exc))
        return None


def load_scenario_set(path: str | Path, catalog: Catalog | None = None) -> ScenarioSet:
    """Load and validate one scenario-set YAML file.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    catalog : Catalog, optional
        Indicator catalog; the bundled one by default.

    Returns
    -------
    ScenarioSet

    Raises
    ------
    ScenarioSetError
        Every problem with file, line and field.

    """
    path = Path(path)
    return parse_scenario_set(path.read_text(encoding="utf-8"), source=str(path), catalog=catalog)


BUNDLED_DIR = Path(__file__).parent / "sets"


def bundled_set_paths() -> list[Path]:
    """Paths of the bundled scenario-set files, sorted by name."""
    return sorted(BUNDLED_DIR.glob("*.yaml"))


def load_bundled_sets(catalog: Catalog | None = None) -> dict[str, ScenarioSet]:
    """Load every bundled scenario set, keyed by id."""
    sets = [load_scenario_set(p, catalog) for p in bundled_set_paths()]
    return {s.id: s for s in sets}
