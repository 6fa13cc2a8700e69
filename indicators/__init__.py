"""Indicators: observable signposts, graded observations and the evidence they add up to.

What can be observed (the catalog), how observations are validated and graded, and how they
aggregate into evidence over a period grid. The base vocabulary of Signpost: pure (no
database, network or clock; "today" is always a parameter). ``forecast`` and ``priors``
build on it; it imports neither.
"""

from indicators.catalog import (
    DEFAULT_CATALOG_PATH,
    KINDS,
    Catalog,
    Indicator,
    IndicatorKind,
    load_catalog,
)
from indicators.coverage import (
    COVERAGE_RULES,
    Coverage,
    CoverageRule,
    IndicatorCoverage,
    Review,
    latest_reviews,
    resolve_coverage,
)
from indicators.evidence import (
    AGGREGATE_COLUMNS,
    OBSERVATION_COLUMNS,
    AggregateRow,
    Evidence,
    aggregate_observations,
    build_evidence,
    evidence_from_aggregates,
    weighted_observations,
)
from indicators.exceptions import (
    CatalogError,
    GradeTableError,
    InvalidGrade,
    InvalidObservation,
    ObservationFileError,
    SignpostIndicatorError,
    UnknownIndicator,
)
from indicators.grades import (
    CREDIBILITY_DIGITS,
    DEFAULT_GRADES,
    RELIABILITY_LETTERS,
    GradeTable,
    parse_grade,
)
from indicators.observations import (
    CSV_COLUMNS,
    EXPORT_COLUMNS,
    Observation,
    guard_formula,
    read_observations_csv,
    unguard_formula,
    validate_observation,
)
from indicators.periods import (
    FREQUENCIES,
    Frequency,
    PeriodGrid,
    add_months,
    elapsed_fraction,
    make_grid,
    period_exposure,
    period_floor,
)

__all__ = [
    "AGGREGATE_COLUMNS",
    "COVERAGE_RULES",
    "CREDIBILITY_DIGITS",
    "CSV_COLUMNS",
    "DEFAULT_CATALOG_PATH",
    "DEFAULT_GRADES",
    "EXPORT_COLUMNS",
    "FREQUENCIES",
    "KINDS",
    "OBSERVATION_COLUMNS",
    "RELIABILITY_LETTERS",
    "AggregateRow",
    "Catalog",
    "CatalogError",
    "Coverage",
    "CoverageRule",
    "Evidence",
    "Frequency",
    "GradeTable",
    "GradeTableError",
    "Indicator",
    "IndicatorCoverage",
    "IndicatorKind",
    "InvalidGrade",
    "InvalidObservation",
    "Observation",
    "ObservationFileError",
    "PeriodGrid",
    "Review",
    "SignpostIndicatorError",
    "UnknownIndicator",
    "add_months",
    "aggregate_observations",
    "build_evidence",
    "elapsed_fraction",
    "evidence_from_aggregates",
    "guard_formula",
    "latest_reviews",
    "load_catalog",
    "make_grid",
    "parse_grade",
    "period_exposure",
    "period_floor",
    "read_observations_csv",
    "resolve_coverage",
    "unguard_formula",
    "validate_observation",
    "weighted_observations",
]
