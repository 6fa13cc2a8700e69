"""The Bayesian core: model, exact oracle, fitting and diagnostics. Pure: no I/O, no clock."""

import forecast._numba  # noqa: F401  (first: how numba compiles everything below)
from forecast.exact import (
    ExactDynamicPosterior,
    ExactPosterior,
    exact_dynamic_posterior,
    exact_posterior,
)
from forecast.exceptions import FitFailed, ForecastError, RecordVersionError
from forecast.fit import (
    DEFAULT_CACHE,
    Fit,
    FitSettings,
    GateSettings,
    ModelCache,
    SamplerSettings,
    diagnose,
    fit,
    library_versions,
)
from forecast.hmm import forward_filter
from forecast.inputs import evidence_through, set_evidence
from forecast.model import (
    EvidenceArrays,
    build_model,
    log_emission,
    log_marginal,
    period_loglik,
    regime_loglik,
)
from forecast.record import (
    SCHEMA_VERSION,
    ConjugateSampler,
    ControlVariate,
    Diagnostics,
    FitRecord,
    NutsSampler,
    Outlook,
    PathRecord,
    PathsSampler,
    PsisSampler,
    SamplerRecord,
    ScenarioResult,
    Timings,
    sampler_from_dict,
)

__all__ = [
    "DEFAULT_CACHE",
    "SCHEMA_VERSION",
    "ConjugateSampler",
    "ControlVariate",
    "Diagnostics",
    "EvidenceArrays",
    "ExactDynamicPosterior",
    "ExactPosterior",
    "Fit",
    "FitFailed",
    "FitRecord",
    "FitSettings",
    "ForecastError",
    "GateSettings",
    "ModelCache",
    "NutsSampler",
    "Outlook",
    "PathRecord",
    "PathsSampler",
    "PsisSampler",
    "RecordVersionError",
    "SamplerRecord",
    "SamplerSettings",
    "ScenarioResult",
    "Timings",
    "build_model",
    "diagnose",
    "evidence_through",
    "exact_dynamic_posterior",
    "exact_posterior",
    "fit",
    "forward_filter",
    "library_versions",
    "log_emission",
    "log_marginal",
    "period_loglik",
    "regime_loglik",
    "sampler_from_dict",
    "set_evidence",
]
