"""The fit record: what one fit produced, as a typed value and as the JSON the service stores.

`FitRecord` is the one form a fit's result travels in between the estimators, the worker and
the ``fits.summary`` column. `FitRecord.to_dict` writes the JSON (with `SCHEMA_VERSION` under
``"schema_version"``); `FitRecord.from_dict` reads it back, and reads every older version:

- version 1 (rows written before the record was versioned: no ``"schema_version"`` key) has
  the same keys as version 2; a few (``sampler``, ``path``, ``outlook``, ``coverage``) are
  absent from the oldest rows and read as empty;
- version 2 adds ``"schema_version"``.

A row of a version newer than this code knows is refused (`RecordVersionError`): it may mean
something this code would misread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from forecast.exceptions import RecordVersionError

SCHEMA_VERSION = 2
VERSION_KEY = "schema_version"


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario of a fit: prior, posterior probability and its Monte Carlo error."""

    id: str
    name: str
    prior: float
    probability: float
    mcse: float

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScenarioResult:
        """Read `dataclasses.asdict` output."""
        return cls(id=data["id"], name=data["name"], prior=data["prior"],
                   probability=data["probability"], mcse=data["mcse"])


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics and the verdict of the gate."""

    max_rhat: float
    min_ess_bulk: float
    divergences: int
    max_mcse: float
    passed: bool
    failures: tuple[str, ...] = ()
    pareto_k: float | None = None  # importance-weighted estimates only: k̂ of the weights

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {**asdict(self), "failures": list(self.failures)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnostics:
        """Read `to_dict` output."""
        return cls(max_rhat=data["max_rhat"], min_ess_bulk=data["min_ess_bulk"],
                   divergences=data["divergences"], max_mcse=data["max_mcse"],
                   passed=bool(data["passed"]), failures=tuple(data.get("failures", ())),
                   pareto_k=data.get("pareto_k"))


@dataclass(frozen=True)
class Timings:
    """Seconds spent: compiling the NUTS model, enumerating paths, drawing, and in all."""

    compile_s: float
    sample_s: float
    total_s: float | None = None  # set when the fit is summarised
    enumerate_s: float | None = None  # path fits only

    def to_dict(self) -> dict[str, float]:
        """JSON form, in the order fits have always stored: compile, enumerate, sample, total."""
        out = {"compile_s": self.compile_s}
        if self.enumerate_s is not None:
            out["enumerate_s"] = self.enumerate_s
        out["sample_s"] = self.sample_s
        if self.total_s is not None:
            out["total_s"] = self.total_s
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Timings:
        """Read `to_dict` output."""
        return cls(compile_s=data.get("compile_s", 0.0), sample_s=data.get("sample_s", 0.0),
                   total_s=data.get("total_s"), enumerate_s=data.get("enumerate_s"))

    def rounded(self, total_s: float) -> Timings:
        """Every figure to 0.1 ms, with the fit's total."""
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 4)
        return Timings(compile_s=r(self.compile_s), sample_s=r(self.sample_s),
                       total_s=r(total_s), enumerate_s=r(self.enumerate_s))


@dataclass(frozen=True)
class ControlVariate:
    """The enumerated paths whose exact part a NUTS or PSIS nowcast took as control variate."""

    segments: int
    paths: int

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"segments": self.segments, "paths": self.paths}


class _SamplerRecord:
    """What each estimator records of itself: fields in the stored order, None left out.

    Keys a record does not know (rows of older code) are kept in ``extra`` and written back.
    """

    NAME: ClassVar[str]
    extra: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``name`` first)."""
        out: dict[str, Any] = {"name": self.NAME}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = value.to_dict() if isinstance(value, ControlVariate) else value
        return {**out, **self.extra}

    @classmethod
    def read(cls, data: Mapping[str, Any]) -> Any:
        """Read `to_dict` output."""
        known = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        values = {k: v for k, v in data.items() if k in known}
        if isinstance(values.get("control_variate"), Mapping):
            values["control_variate"] = ControlVariate(**values["control_variate"])
        for key in ("weights_failed", "reweight_rejected"):
            if values.get(key) is not None:
                values[key] = list(values[key])
        extra = {k: v for k, v in data.items() if k not in known and k != "name"}
        return cls(**values, extra=extra)


@dataclass(frozen=True)
class PathsSampler(_SamplerRecord):
    """Decision 011's estimator: iid draws of the enumerated paths, the long paths weighted."""

    NAME: ClassVar[str] = "paths"
    segments: int
    paths: int
    exact: bool
    draws: int
    kept: int
    chains: int
    beyond: str  # "weights" or "long paths"
    tail_share: float
    transitions: str = "learned"
    weights_failed: list[str] | None = None  # beyond "long paths": why the weights failed
    stages: int | None = None
    rejected: dict[str, list[str]] | None = None  # a quick refit tried first, and why it failed
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NutsSampler(_SamplerRecord):
    """nutpie's NUTS: the dynamic fits the path estimator failed (static ones when asked)."""

    NAME: ClassVar[str] = "nutpie"
    draws: int
    tune: int
    chains: int
    runs: int  # run i sampled with seed + i; only the last run's draws are used
    transitions: str  # "learned" or "identity"
    init: str
    control_variate: ControlVariate | None = None
    rejected: dict[str, list[str]] | None = None  # estimators tried first, and why they failed
    reweight_rejected: list[str] | None = None  # rejected["psis"], the name older records use
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PsisSampler(_SamplerRecord):
    """Decision 008's refit: the last sampled posterior re-weighted for the new evidence."""

    NAME: ClassVar[str] = "psis"
    draws: int
    chains: int  # kept: resampled by weight
    base_chains: int
    transitions: str
    base_evidence_hash: str
    base_seed: int
    control_variate: ControlVariate | None = None
    rejected: dict[str, list[str]] | None = None
    # the base's estimator: None (older records) or "nutpie" for decision 008's re-weighting
    # of a NUTS posterior; "paths" for decision 015's quick refit of a path fit's iid draws
    base_sampler: str | None = None
    base_draws: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        """A quick refit: an enumerated path fit of the same evidence refines it."""
        return self.base_sampler == "paths"


@dataclass(frozen=True)
class ConjugateSampler(_SamplerRecord):
    """A static set's parameters drawn iid from their conjugate posteriors (no chain)."""

    NAME: ClassVar[str] = "conjugate"
    draws: int  # per chain
    chains: int  # the iid draws split in this many groups, shaped like a sampler's
    transitions: str = "identity"
    extra: Mapping[str, Any] = field(default_factory=dict)


SamplerRecord = PathsSampler | NutsSampler | PsisSampler | ConjugateSampler
_SAMPLERS: dict[str, type[Any]] = {c.NAME: c for c in (PathsSampler, NutsSampler, PsisSampler,
                                                        ConjugateSampler)}


def sampler_from_dict(data: Mapping[str, Any]) -> SamplerRecord:
    """The sampler record of a stored ``sampler`` mapping, by its ``name``.

    Raises
    ------
    RecordVersionError
        If the name is not an estimator this code knows.

    """
    name = data.get("name")
    if name not in _SAMPLERS:
        raise RecordVersionError(f"fit record: sampler {name!r} is not one of "
                                 f"{', '.join(sorted(_SAMPLERS))}")
    return _SAMPLERS[name].read(data)


@dataclass(frozen=True)
class PathRecord:
    """The filtered path: per period label, ``P(z_t = k | y_1..t)`` per scenario."""

    periods: tuple[str, ...] = ()
    probability: tuple[tuple[float, ...], ...] = ()

    def to_dict(self) -> dict[str, list]:
        """JSON form."""
        return {"periods": list(self.periods),
                "probability": [list(row) for row in self.probability]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PathRecord:
        """Read `to_dict` output."""
        return cls(periods=tuple(data.get("periods", ())),
                   probability=tuple(tuple(row) for row in data.get("probability", ())))


@dataclass(frozen=True)
class Outlook:
    """Forecasts from the draws (`forecast.horizon.outlook_summary`), as JSON-ready parts.

    ``horizon`` holds ``periods``, ``starts``, ``at``, ``by`` and their MCSE (None: no
    forecast); ``reach``, ``reach_or_deeper`` and ``milestones`` map a name to its timing;
    ``evidence`` each indicator's totals. Parts this record does not name stay in ``extra``.
    """

    scenarios: tuple[str, ...] = ()
    horizon: Mapping[str, Any] | None = None
    reach: Mapping[str, Any] = field(default_factory=dict)
    reach_or_deeper: Mapping[str, Any] = field(default_factory=dict)
    milestones: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KEYS: ClassVar[tuple[str, ...]] = ("scenarios", "horizon", "reach", "reach_or_deeper",
                                        "milestones", "evidence")

    def to_dict(self) -> dict[str, Any]:
        """JSON form ({} for a fit without one)."""
        if self == Outlook():
            return {}
        return {"scenarios": list(self.scenarios), "horizon": self.horizon, "reach": self.reach,
                "reach_or_deeper": self.reach_or_deeper, "milestones": self.milestones,
                "evidence": self.evidence, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Outlook:
        """Read `to_dict` output (or `outlook_summary`'s)."""
        data = data or {}
        return cls(scenarios=tuple(data.get("scenarios", ())), horizon=data.get("horizon"),
                   reach=data.get("reach", {}), reach_or_deeper=data.get("reach_or_deeper", {}),
                   milestones=data.get("milestones", {}), evidence=data.get("evidence", {}),
                   extra={k: v for k, v in data.items() if k not in cls._KEYS})


@dataclass(frozen=True)
class FitRecord:
    """One fit's result, self-describing enough to be reproduced (no draws, no DataTree).

    Attributes
    ----------
    set_id, set_hash, evidence_hash, seed
        What was fitted and how to reproduce it.
    scenarios : tuple of ScenarioResult
        Per scenario: prior, probability, MCSE (0 where the number is exact).
    diagnostics : Diagnostics
        The gate's verdict.
    sampler : PathsSampler, NutsSampler, PsisSampler or None
        Which estimator ran, with its details (None only in the oldest rows).
    versions : mapping
        The libraries' versions.
    timings : Timings
    parameters : mapping
        Posterior mean of each indicator's parameter per scenario: ``{indicator: {scenario:
        value}}``.
    path : PathRecord
    outlook : Outlook
    artifact : str or None
        Where the worker wrote the fit's NetCDF file (only for fits that passed).
    coverage : mapping or None
        What the evidence covered (`indicators.Coverage.to_dict` with the grid), set by the
        service; None before coverage was recorded.

    """

    set_id: str
    set_hash: str
    evidence_hash: str
    seed: int
    scenarios: tuple[ScenarioResult, ...]
    diagnostics: Diagnostics
    sampler: SamplerRecord | None
    versions: Mapping[str, str]
    timings: Timings
    parameters: Mapping[str, Mapping[str, float]]
    path: PathRecord = field(default_factory=PathRecord)
    outlook: Outlook = field(default_factory=Outlook)
    artifact: str | None = None
    coverage: Mapping[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """Whether the diagnostics gate passed."""
        return self.diagnostics.passed

    def probability_of(self, scenario_id: str) -> float | None:
        """A scenario's posterior probability (None: not in this fit)."""
        found = self.scenario(scenario_id)
        return None if found is None else found.probability

    def scenario(self, scenario_id: str) -> ScenarioResult | None:
        """A scenario's result (None: not in this fit)."""
        return next((s for s in self.scenarios if s.id == scenario_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON (`SCHEMA_VERSION`); ``coverage`` only once the service set it."""
        out = {
            VERSION_KEY: SCHEMA_VERSION,
            "set_id": self.set_id,
            "set_hash": self.set_hash,
            "evidence_hash": self.evidence_hash,
            "scenarios": [asdict(s) for s in self.scenarios],
            "diagnostics": self.diagnostics.to_dict(),
            "seed": self.seed,
            "sampler": None if self.sampler is None else self.sampler.to_dict(),
            "versions": dict(self.versions),
            "timings": self.timings.to_dict(),
            "parameters": {k: dict(v) for k, v in self.parameters.items()},
            "path": self.path.to_dict(),
            "outlook": self.outlook.to_dict(),
            "artifact": self.artifact,
        }
        if self.coverage is not None:
            out["coverage"] = dict(self.coverage)
        return out

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> FitRecord | None:
        """`from_dict` of a stored column that is empty (None) until a fit finishes."""
        return None if data is None else cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitRecord:
        """Read a stored record of any version up to `SCHEMA_VERSION`.

        Raises
        ------
        RecordVersionError
            If the record's version is newer than this code reads, or not a version at all.

        """
        version = data.get(VERSION_KEY, 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RecordVersionError(f"fit record: {VERSION_KEY} {version!r} is not a version "
                                     f"number (1 to {SCHEMA_VERSION})")
        if version > SCHEMA_VERSION:
            raise RecordVersionError(
                f"fit record: {VERSION_KEY} {version} is newer than this Signpost reads "
                f"(up to {SCHEMA_VERSION}); upgrade Signpost to read fits written by a newer "
                "version")
        # versions 1 and 2 share one layout (2 adds the version key)
        sampler = data.get("sampler")
        return cls(
            set_id=data["set_id"],
            set_hash=data["set_hash"],
            evidence_hash=data["evidence_hash"],
            seed=data["seed"],
            scenarios=tuple(ScenarioResult.from_dict(s) for s in data.get("scenarios", ())),
            diagnostics=Diagnostics.from_dict(data["diagnostics"]),
            sampler=None if sampler is None else sampler_from_dict(sampler),
            versions=data.get("versions", {}),
            timings=Timings.from_dict(data.get("timings") or {}),
            parameters=data.get("parameters", {}),
            path=PathRecord.from_dict(data.get("path") or {}),
            outlook=Outlook.from_dict(data.get("outlook")),
            artifact=data.get("artifact"),
            coverage=data.get("coverage"),
        )
