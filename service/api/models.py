"""The API's request and response bodies, as pydantic models.

Request bodies forbid unknown keys. Response bodies describe what the payload builders in
`service.posterior`, `service.outlook`, `service.reviews` and `service.store` return; they
allow extra keys (``extra="allow"``), so a key a builder adds is passed on, never dropped
silently, and the served document still names every key it knows. Parts that depend on an
indicator's kind (a set's ``expectations``, the milestones' ``evidence``) are open objects:
each kind has its own shape (``{"mean", "sd"}`` for counts and signals,
``{"probabilities", "concentration"}`` for levels).

Routes that serve pre-rendered bytes with an ETag (posterior, history, path, forecast,
milestones) declare their model in the OpenAPI document only; the bytes are not validated
again per request. The others use it as ``response_model=``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.reviews import ReviewIn

__all__ = [
    "ErrorBody",
    "ErrorDetail",
    "Fit",
    "FitQueued",
    "FitRequest",
    "Forecast",
    "Health",
    "History",
    "Milestones",
    "ObservationCreate",
    "ObservationCreated",
    "ObservationPage",
    "ObservationPublic",
    "Paths",
    "Posterior",
    "Replay",
    "ReplayQueued",
    "Retraction",
    "ReviewCreate",
    "ReviewPage",
    "ReviewPublic",
    "ReviewWithRefits",
    "SetDetail",
    "SetSummary",
]


class Public(BaseModel):
    """Base of the response bodies: documented keys, extra keys passed on."""

    model_config = ConfigDict(extra="allow")


Date = str  # YYYY-MM-DD: the payloads carry ISO dates as strings
Timestamp = str  # ISO 8601 with a UTC offset


# -- errors ----------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    """What went wrong, and which field (if any) is at fault."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(examples=["invalid"])
    message: str = Field(examples=["date: 2026-03-01 is in the future"])
    field: str | None = Field(description="the field at fault, or null")


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


# -- health ----------------------------------------------------------------------------------

class Health(Public):
    """A probe's answer: ``ok`` (process up) or ``ready`` (database migrated)."""

    status: Literal["ok", "ready"]


# -- sets ------------------------------------------------------------------------------------

class ScenarioBrief(Public):
    """A scenario and its prior."""

    id: str
    name: str
    prior: float
    prior_words: str = Field(description="the prior's estimative words", examples=["unlikely"])


class SetSummary(Public):
    """A set in a list: the question, its scenarios and priors, its indicator ids."""

    id: str
    title: str
    question: str
    period: str = Field(examples=["quarter"])
    start: Date
    end: Date | None
    scenarios: list[ScenarioBrief]
    indicators: list[str]
    has_dynamics: bool


class ScenarioDetail(ScenarioBrief):
    """A scenario in full."""

    description: str


class IndicatorDetail(Public):
    """An indicator of a set and what each scenario expects of it.

    ``expectations`` maps each scenario id to the kind's expectation: ``{"mean", "sd"}``
    (count, milestone, signal) or ``{"probabilities", "concentration"}`` (level).
    """

    id: str
    kind: str = Field(examples=["count"])
    name: str
    unit: str | None
    noise_sd: float | None
    levels: list[str] | None = Field(default=None, description="a level indicator's levels, "
                                     "in order (its observations' values)")
    expectations: dict[str, dict[str, Any]]


class Dynamics(Public):
    """Regime dynamics: the stay probability, the allowed moves, the ladder."""

    stay: float
    moves: dict[str, list[str]]
    concentration: float
    ladder: list[str]


class SetDetail(SetSummary):
    """A set in full: scenarios, what each expects of each indicator, dynamics."""

    scenarios: list[ScenarioDetail]  # type: ignore[assignment]
    indicators: list[IndicatorDetail]  # type: ignore[assignment]
    dynamics: Dynamics | None
    content_hash: str


# -- fits and what they publish --------------------------------------------------------------

class Diagnostics(Public):
    """The diagnostics gate: the measured figures, what failed, and whether it passed."""

    passed: bool
    failures: list[str] = []
    max_rhat: float | None = None
    min_ess_bulk: float | None = None
    divergences: int | None = None
    max_mcse: float | None = None
    pareto_k: float | None = None


class IndicatorCoverage(Public):
    """Through which date an indicator's evidence is complete, and on what basis."""

    covered_through: Date | None
    basis: str = Field(examples=["review"], description="review, newest_entry, as_of or none")
    review_id: int | None
    periods_past: int | None


class Covered(Public):
    """What a fit's evidence covered (nulls and ``{}`` for fits made before coverage)."""

    evidence_complete_through: Date | None
    periods_past_coverage: int | None
    coverage_rule: str | None
    coverage: dict[str, IndicatorCoverage]


class FitHeader(Covered):
    """Which fit a payload comes from."""

    set_id: str
    fit_id: str
    fitted_at: Timestamp | None
    evidence_through: Date | None


class ScenarioProbability(Public):
    """A scenario's posterior probability and its Monte Carlo standard error."""

    id: str
    name: str
    prior: float
    prior_words: str = Field(description="the prior's estimative words", examples=["unlikely"])
    probability: float | None
    mcse: float | None
    words: str | None = Field(description="the probability's estimative words (ICD 203, or "
                              "SIGNPOST_WORDS); null with it", examples=["unlikely"])


class Posterior(FitHeader):
    """The newest published posterior of a set."""

    scenarios: list[ScenarioProbability]
    diagnostics: Diagnostics
    stale: bool = Field(description="the newest published fit is older than "
                                    "SIGNPOST_STALE_AFTER")


class HistoryItem(Public):
    """One published fit: when, through which date, each scenario's probability and words."""

    fit_id: str
    fitted_at: Timestamp
    evidence_through: Date | None
    probabilities: dict[str, float | None]
    mcse: dict[str, float | None] = Field(description=(
        "each probability's Monte Carlo standard error (0: exact)"))
    words: dict[str, str | None] = Field(description="each probability's estimative words")


class History(Public):
    """One row per published fit, oldest first."""

    set_id: str
    scenarios: list[str]
    items: list[HistoryItem]


class OutlookHeader(FitHeader):
    """The header of the forecasts over time: the fit, and how its transitions were set."""

    transitions: str | None = Field(examples=["learned"])


class Paths(OutlookHeader):
    """The filtered path: ``probability[t][k]`` = P(scenario k in period t | evidence to t).

    ``words[t][k]``: that probability's estimative words.
    """

    scenarios: list[str]
    periods: list[str]
    probability: list[list[float | None]]
    words: list[list[str | None]]


class ForecastScenario(Public):
    """P(in force at the horizon) and P(reached by then), with their MCSE.

    For a horizon before the current period ``by`` and the MCSE are null, and ``mcse_at``,
    ``mcse_by`` absent. ``at_words``, ``by_words``: their estimative words (null with them).
    """

    id: str
    at: float | None
    by: float | None
    mcse: float | None
    mcse_at: float | None = None
    mcse_by: float | None = None
    at_words: str | None = Field(examples=["likely"])
    by_words: str | None = Field(examples=["very likely"])


class Forecast(OutlookHeader):
    """The forecast at a horizon."""

    horizon: Date
    period: str = Field(examples=["2030Q2"])
    steps: int = Field(description="periods from the current one (negative: in the past)")
    scenarios: list[ForecastScenario]


class PeriodPoint(Public):
    """A period of the forecast: its label, first day, and how many periods from now."""

    period: str = Field(examples=["2029Q2"])
    start: Date
    steps: int


class Reach(Public):
    """When something is first reached: median, 80 % interval, P(before the set's end).

    A null median or interval end: not reached by the end of the horizon in that share.
    """

    median: PeriodPoint | None
    interval80: list[PeriodPoint | None]
    p_by_end: float | None
    mcse: float | None
    words: str | None = Field(description="p_by_end's estimative words", examples=["unlikely"])


class ReachOrDeeper(Reach):
    """A rung of the ladder "or deeper": the scenarios it stands for."""

    scenarios: list[str]


class Occurrence(Public):
    """Where a milestone was observed (``before_window``: reported before the set's start)."""

    period: str
    weight: float | None
    before_window: bool


class MilestoneReach(Public):
    """A milestone: when it was observed (then nothing else), or when it is first reached."""

    occurred: Occurrence | None
    median: PeriodPoint | None = None
    interval80: list[PeriodPoint | None] | None = None
    p_by_end: float | None = None
    mcse: float | None = None
    words: str | None = Field(default=None, description="p_by_end's estimative words (absent "
                              "with it)", examples=["unlikely"])


class Milestones(OutlookHeader):
    """When each scenario, each rung "or deeper" and each milestone is first reached.

    ``evidence`` maps each indicator to its kind's evidence summary.
    """

    end: Date | None
    horizon_end: str | None
    reach: dict[str, Reach]
    reach_or_deeper: dict[str, ReachOrDeeper]
    milestones: dict[str, MilestoneReach]
    evidence: dict[str, dict[str, Any]]


class Replay(Covered):
    """A replay fit: the posterior as it would have been with the evidence up to ``as_of``."""

    set_id: str
    fit_id: str
    kind: Literal["replay"]
    status: str
    reason: str | None
    as_of: Date | None
    fitted_at: Timestamp | None
    scenarios: list[ScenarioProbability]
    diagnostics: Diagnostics | dict[str, Any]


class ReplayQueued(Public):
    """A replay still being computed: poll the fit."""

    set_id: str
    fit_id: str
    status: str = Field(examples=["queued"])
    as_of: Date


class FitRequest(BaseModel):
    """Which scenario set to fit."""

    model_config = ConfigDict(extra="forbid")

    set_id: str = Field(min_length=1, max_length=100, examples=["sino-russian-convergence"])


class FitQueued(Public):
    """A queued fit to poll."""

    fit_id: str
    set_id: str
    status: Literal["queued"]


class Fit(Public):
    """A fit attempt: its status, timings, diagnostics and how the posterior was drawn."""

    fit_id: str
    set_id: str
    kind: str = Field(examples=["live"])
    status: str = Field(examples=["published"],
                        description="queued, running, published, rejected or failed")
    requested_by: str
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    as_of: Date | None
    evidence_hash: str | None
    seed: int | None
    attempts: int
    timings: dict[str, Any] | None
    diagnostics: Diagnostics | None
    sampler: dict[str, Any] | None = Field(
        description='"paths", or "nutpie" / "psis" (the fallback), with its details')
    reason: str | None


# -- observations ----------------------------------------------------------------------------

class ObservationCreate(BaseModel):
    """An observation as posted (documentation; the core's validation is the authority)."""

    model_config = ConfigDict(extra="forbid")

    indicator: str = Field(description="an indicator id from the catalog",
                           examples=["joint_exercise"])
    date: str = Field(description="when it happened, YYYY-MM-DD", examples=["2025-09-01"])
    value: float | str = Field(1.0, description="events (count), 1 (milestone), the "
                               "measurement (signal), or a level's name or 0-based index "
                               "(level; stored as the index)")
    grade: str | None = Field(None, description="Admiralty grade A1–F6; default B2",
                              examples=["B2"])
    source: str = Field("", max_length=500)
    url: str = Field("", max_length=2000)
    note: str = Field("", max_length=2000)


class ObservationPublic(Public):
    """A stored observation."""

    id: int
    indicator: str
    date: Date
    value: float
    grade: str
    weight: float
    source: str
    url: str
    note: str
    analyst: str
    created_at: Timestamp
    retracted_at: Timestamp | None
    retraction_reason: str | None


class ObservationCoverage(Public):
    """A set's coverage of the observation's indicator, and whether the observation counts."""

    covered_through: Date | None
    counted: bool


class ObservationCreated(ObservationPublic):
    """The stored observation, and per set using its indicator whether it counts yet."""

    coverage: dict[str, ObservationCoverage]


class ObservationPage(Public):
    """A page of observations; ``next`` the URL of the next page, or null."""

    items: list[ObservationPublic]
    total: int
    next: str | None


class Retraction(BaseModel):
    """Why an observation or a review is withdrawn."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


# -- reviews ---------------------------------------------------------------------------------

ReviewCreate = ReviewIn
"""A review as posted (its model lives with the review rules in `service.reviews`)."""


class ReviewPublic(Public):
    """A stored review."""

    id: int
    set_id: str | None
    indicators: list[str]
    through: Date
    note: str
    analyst: str
    created_at: Timestamp
    retracted_at: Timestamp | None
    retraction_reason: str | None


class ReviewWithRefits(ReviewPublic):
    """A review, the sets it touches and the refits it queued (``{set_id: fit_id}``)."""

    sets: list[str]
    queued_fits: dict[str, str]


class ReviewPage(Public):
    """A page of reviews; ``next`` the URL of the next page, or null."""

    items: list[ReviewPublic]
    total: int
    next: str | None


# -- the analyst's loop: attribution, what-if, watchlist ------------------------------------

class WordedProbability(Public):
    """A probability with its estimative words (and its MCSE where estimated)."""

    probability: float
    words: str | None
    mcse: float | None = None


class FitOf(Public):
    """Which published fit an analysis reads."""

    set_id: str
    fit_id: str
    fitted_at: Timestamp | None
    evidence_through: Date | None


class IndicatorAttribution(Public):
    """One indicator's log marginal likelihood under each scenario held throughout."""

    id: str
    kind: str
    log_likelihood: dict[str, float]


class ObservationAttribution(Public):
    """One observation's leave-one-out shift and its shift were it graded F6."""

    id: int
    indicator: str
    date: Date
    grade: str | None
    value: float
    delta_log_probability: dict[str, float | None] = Field(description=(
        "log P(k | evidence) − log P(k | evidence without it), per scenario"))
    delta_mcse: dict[str, float | None]
    without: dict[str, WordedProbability]
    delta_log_probability_if_f6: dict[str, float | None]
    if_f6: dict[str, WordedProbability]
    critical: bool = Field(description="removing it changes the most probable scenario")


class Move(Public):
    """How one scenario moved from the previous published fit to this one."""

    to: float
    words: str | None
    change: float | None
    from_: float | None = Field(alias="from")
    from_words: str | None


class SincePrevious(Public):
    """What entered between the previous published fit and this one."""

    previous_fit_id: str | None
    observations: list[dict[str, Any]]
    retractions: list[dict[str, Any]]
    reviews: list[dict[str, Any]]
    moved: dict[str, Move]


class Attribution(FitOf):
    """Why the published posterior is what it is."""

    method: str
    evidence_matches_fit: bool
    prior: dict[str, float]
    prior_words: dict[str, str | None]
    posterior: dict[str, WordedProbability]
    indicators: list[IndicatorAttribution]
    observations: list[ObservationAttribution]
    critical: list[int]
    since_previous: SincePrevious


class WhatIfScenario(Public):
    """A scenario's probability as if the changes were logged, beside the published one."""

    id: str
    name: str
    prior: float
    prior_words: str = Field(description="the prior's estimative words", examples=["unlikely"])
    probability: float
    mcse: float
    words: str | None
    published: float
    published_words: str | None
    change: float


class WhatIf(Public):
    """The posterior as if some observations and reviews were logged; nothing was stored."""

    set_id: str
    based_on_fit: str
    stored: bool
    method: str
    pareto_k: float | None
    evidence_hash: str
    added: int
    without: list[int]
    reviews: int
    scenarios: list[WhatIfScenario]
    forecast: dict[str, Any] | None = None


class WatchOutcome(Public):
    """The outcome of an indicator's next periods that would move the posterior most."""

    label: str
    probability: float | None
    scenario: str
    before: float
    after: float
    words_before: str | None
    words_after: str | None
    posterior_after: dict[str, WordedProbability]


class WatchItem(Public):
    """One indicator's information about the scenario in force after the next periods."""

    indicator: str
    kind: str
    information_bits: float
    mcse_bits: float
    exact: bool
    reported: bool
    summary: str
    outcome: WatchOutcome | None


class Watchlist(FitOf):
    """Indicators ranked by the information of their next ``periods`` periods."""

    periods: int
    period: str
    items: list[WatchItem]


class WhatIfBody(BaseModel):
    """Changes to try: observations to add, observation ids to leave out, reviews to add."""

    model_config = ConfigDict(extra="forbid")

    observations: list[ObservationCreate] = []
    without: list[int] = []
    reviews: list[ReviewIn] = []
    forecast: bool = Field(default=False, description="the forecast and milestones too")
