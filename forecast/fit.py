"""Fitting: estimate the posterior, check the diagnostics gate, summarise into a :class:`Fit`.

Static sets: the scenario probability is exact (the collapsed conjugate model); nutpie samples
the per-scenario parameters on a model compiled once per set and kept in a :class:`ModelCache`,
each refit swapping in new evidence with ``with_data``.

Dynamic sets (docs/decisions/011): first by their scenario paths (`forecast.paths`): every
path of up to S segments scored exactly, iid draws of (A, θ) from that truncated posterior,
importance weights for the paths with more segments. The nowcast combines the exact part with
the weighted remainder. Only when the weights say the truncation misses too much (Pareto k̂,
their effective sample size) does the fit sample with NUTS, whose nowcast takes the same exact
part as a control variate; a NUTS run short only of precision is followed by a fresh run sized
from it, whose draws alone are used (not more draws on top of the ones that fell short), within
a time budget.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from typing import Any, NamedTuple

import numpy as np
import nutpie
import pytensor
import xarray as xr
from arviz_stats.base import array_stats
from scipy.optimize import minimize

from forecast.compiled import compile_pymc_model
from forecast.exceptions import FitFailed
from forecast.hmm import forward_filter
from forecast.horizon import Draws, mcse_of, outlook_summary, transition_draws
from forecast.model import (
    CATEGORY,
    KIND_PARAMETER,
    EvidenceArrays,
    build_model,
    kind_groups,
    log_emission,
    regime_loglik,
    transition_rows,
)
from forecast.ops import filter_draws
from forecast.paths import (
    PathModel,
    PathSums,
    conditional_draws,
    enumerate_paths,
    ffbs,
    mixture_log_density,
    path_counts,
    path_model,
    sample_paths,
    scorer,
    segment_filter,
)
from forecast.record import (
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
)
from indicators import Evidence
from indicators.kinds import NUMPY
from priors import ScenarioSet

PROBABILITY = "scenario_probability"


@dataclass(frozen=True)
class SamplerSettings:
    """How to estimate (apart from the model): method, draws, tuning, chains, seed, budget."""

    draws: int = 1000
    tune: int = 500
    dynamic_draws: int = 1800  # NUTS, per chain when dynamic
    dynamic_tune: int = 300
    # a fresh NUTS run sized from one short of precision has at most max_draws × chains
    # draws in all (longer chains or more of them)
    max_draws: int = 8000
    chains: int = 4
    cores: int = 2
    seed: int | None = None  # a seed asks for a sampler run of its own (never re-weighted)
    # dynamic sets: "auto" (paths, then NUTS if the paths' weights fail), "paths" or "nuts"
    method: str = "auto"
    # iid draws from the enumerated paths for the nowcast (the tail's share is heavy-tailed
    # across draws: 4000 left it ~25 % low in a trial), and how many of them, resampled by
    # weight, carry the forecasts and the artifact
    path_draws: int = 20000
    kept_draws: int = 4000
    max_paths: int = 4_000_000  # most paths enumerated: S is the largest that fits
    # seconds a fit may spend on more draws once its first estimate fell short of precision.
    # None (the library's default): no clock, so a seeded fit gives the same answer on any
    # machine under any load; the service sets one (SIGNPOST_FIT_TIME_BUDGET, 45 s).
    time_budget: float | None = None
    # fresh path draws sized from a first estimate short of precision stop at this many
    max_path_draws: int = 500_000
    # NUTS refits of dynamic sets: re-weight the last sampled posterior for new evidence
    # (PSIS, decision 008) and sample only when the re-weighted one fails the gate. Off: their
    # MCSE proved over-confident (z-score sd 1.62 on the crisis nowcast, decision 011), and a
    # path fit is fast enough to start afresh.
    reweight: bool = False
    # dynamic path fits: a refit on new evidence first re-weights the last path fit's iid
    # draws kept in the cache (PSIS, decision 015), used when it passes the gate; a second fit
    # of the same evidence (the scheduler's refinement once writes pause) enumerates afresh.
    # Off in the library (a fit then never depends on what the cache saw before); the
    # service turns it on (SIGNPOST_FIT_QUICK_REFITS)
    quick_refits: bool = False


@dataclass(frozen=True)
class GateSettings:
    """The diagnostics gate a fit must pass before it is published."""

    max_rhat: float = 1.01
    min_ess_bulk: float = 400.0
    max_divergences: int = 0
    max_mcse: float = 0.005


@dataclass(frozen=True)
class FitSettings:
    """Sampler and gate settings of one fit."""

    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    dynamic: bool = True  # learn the transitions of sets with dynamics (else: identity)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FitSettings:
        """Merge ``{"sampler": {...}, "gate": {...}}`` over the defaults."""
        values = dict(values or {})
        return cls(
            sampler=replace(SamplerSettings(), **values.get("sampler", {})),
            gate=replace(GateSettings(), **values.get("gate", {})),
            dynamic=bool(values.get("dynamic", True)),
        )


@dataclass
class Fit:
    """Everything one fit produced: its `FitRecord`, and the arrays the record does not keep.

    The record's parts are exposed as attributes (``scenarios``, ``diagnostics``, ``seed``…;
    ``sampler``, ``timings`` and ``outlook`` as the plain mappings the record stores).

    Attributes
    ----------
    record : FitRecord
        What is stored (`Fit.summary` is its JSON).
    path : numpy.ndarray
        (T, K) filtered probabilities ``P(z_t = k | y_1..t)`` for every period.
    datatree : xarray.DataTree
        The ArviZ DataTree of the draws.

    """

    record: FitRecord
    path: np.ndarray
    datatree: Any = field(repr=False, default=None)

    @property
    def set_id(self) -> str:
        """The scenario set's id."""
        return self.record.set_id

    @property
    def set_hash(self) -> str:
        """The scenario set's content hash."""
        return self.record.set_hash

    @property
    def evidence_hash(self) -> str:
        """The evidence's hash."""
        return self.record.evidence_hash

    @property
    def seed(self) -> int:
        """The seed the draws came from."""
        return self.record.seed

    @property
    def scenarios(self) -> tuple[ScenarioResult, ...]:
        """Per scenario: prior, probability, MCSE (0 where the number is exact)."""
        return self.record.scenarios

    @property
    def diagnostics(self) -> Diagnostics:
        """The gate's verdict."""
        return self.record.diagnostics

    @property
    def sampler(self) -> dict[str, Any]:
        """Which estimator ran, with its details (the stored mapping)."""
        return self.record.sampler.to_dict()

    @property
    def versions(self) -> dict[str, str]:
        """The libraries' versions."""
        return dict(self.record.versions)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent, per stage and in all."""
        return self.record.timings.to_dict()

    @property
    def period_labels(self) -> tuple[str, ...]:
        """The evidence's period labels (the rows of ``path``)."""
        return self.record.path.periods

    @property
    def parameters(self) -> dict[str, dict[str, float]]:
        """Posterior mean of each indicator's parameter per scenario."""
        return {k: dict(v) for k, v in self.record.parameters.items()}

    @property
    def outlook(self) -> dict[str, Any]:
        """Horizon forecasts and first passages (`forecast.horizon.outlook_summary`)."""
        return self.record.outlook.to_dict()

    @property
    def probabilities(self) -> np.ndarray:
        """(K,) posterior scenario probabilities."""
        return np.array([s.probability for s in self.scenarios])

    @property
    def passed(self) -> bool:
        """Whether the diagnostics gate passed."""
        return self.diagnostics.passed

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no DataTree): ``record.to_dict()``."""
        return self.record.to_dict()


def library_versions() -> dict[str, str]:
    """Versions of the libraries a fit depends on."""
    names = ("pymc", "pytensor", "nutpie", "arviz", "numpy", "scipy")
    return {name: version(name) for name in names}


@dataclass(frozen=True)
class _Base:
    """The last sampled posterior of a dynamic model that passed the gate.

    What a re-weighted refit starts from (never a re-weighted one: weights would compound).
    """

    evidence_hash: str
    seed: int
    posterior: Any  # xarray.Dataset of (A, θ) draws, (chain, draw, ...)
    loglik: np.ndarray  # (S,) log p(y_base | A_s, θ_s)
    diagnostics: Diagnostics


@dataclass
class _PathBase:
    """The iid draws of the last enumerated path fit of a set, for quick refits (decision 015).

    ``log_weights`` are the draws' normalised log weights in that fit's estimate (stratum
    design × 1/c), so the weighted draws stand for p(A, θ | y_base); ``loglik`` each draw's
    log p(y_base | A, θ). ``reweighted``: evidence hashes already given a quick refit from
    these draws; a second fit of one of them is the refinement, enumerated afresh.
    """

    evidence_hash: str
    seed: int
    shape: tuple[int, ...]  # the evidence arrays' shape: a new period means a new grid
    transitions: np.ndarray  # (n, K, K)
    theta: dict[str, np.ndarray]
    loglik: np.ndarray  # (n,)
    log_weights: np.ndarray  # (n,)
    reweighted: set[str] = field(default_factory=set)


@dataclass
class _Compiled:
    model: Any
    nutpie_model: Any
    emission_fn: Callable[..., np.ndarray] | None  # static models only
    base: _Base | None = None

    @property
    def data_names(self) -> set[str]:
        """Names of the data the compiled sampler reads (unused data are pruned)."""
        return {var.name for var in self.nutpie_model.shared_var_keys}


class ModelCache:
    """Compiled models kept per scenario set (by content hash); thread-safe.

    A long-lived worker keeps one cache so each set compiles once and every refit only swaps
    in new evidence. A set whose definition changes gets a new hash and a new compile.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[str, bool], _Compiled] = {}
        self._path_bases: dict[str, _PathBase] = {}
        self._lock = threading.Lock()

    def path_base(self, scenario_set: ScenarioSet) -> _PathBase | None:
        """The last enumerated path fit of ``scenario_set`` (its draws), if this cache has one."""
        return self._path_bases.get(scenario_set.content_hash)

    def keep_path_base(self, scenario_set: ScenarioSet, base: _PathBase | None) -> None:
        """Keep (or, with None, forget) the path fit a quick refit re-weights."""
        with self._lock:
            if base is None:
                self._path_bases.pop(scenario_set.content_hash, None)
            else:
                self._path_bases[scenario_set.content_hash] = base

    def has(self, scenario_set: ScenarioSet, dynamic: bool) -> bool:
        """Whether the set's model is compiled already."""
        return (scenario_set.content_hash, dynamic) in self._models

    def get(self, scenario_set: ScenarioSet, evidence: Evidence,
            dynamic: bool = False) -> tuple[_Compiled, float]:
        """The compiled model of ``scenario_set`` and the seconds spent compiling (0 if warm)."""
        key = (scenario_set.content_hash, dynamic)
        with self._lock:
            compiled = self._models.get(key)
            if compiled is not None:
                return compiled, 0.0
            started = time.perf_counter()
            emission_fn = None
            if not dynamic:  # the static path's filtered history (dynamic fits filter per draw)
                counts, exposure, sumsq = (pytensor.tensor.matrix(n) for n in
                                           ("counts", "exposure", "sumsq"))
                tallies = pytensor.tensor.tensor3("tallies")
                emission_fn = pytensor.function(
                    [counts, exposure, sumsq, tallies],
                    log_emission(scenario_set, counts, exposure, sumsq, tallies),
                    on_unused_input="ignore",  # sumsq, tallies: unused without a signal, level
                )
            model = build_model(scenario_set, evidence, dynamic=dynamic)
            nutpie_model = compile_pymc_model(model)  # nutpie's, with cacheable callbacks
            compiled = _Compiled(model, nutpie_model, emission_fn)
            self._models[key] = compiled
            return compiled, time.perf_counter() - started

    def clear(self) -> None:
        """Forget every compiled model and path fit."""
        with self._lock:
            self._models.clear()
            self._path_bases.clear()


DEFAULT_CACHE = ModelCache()


def _posterior_mode(nutpie_model: Any, seed: int, starts: int = 6) -> np.ndarray:
    """The highest mode of the sampler's log density, by L-BFGS from several starting points.

    The log density and its gradient are nutpie's compiled C callback for this evidence — the
    very function NUTS integrates — on the unconstrained space (Jacobians included). The
    starts are PyMC's own jittered initial points, one per seed ``seed, seed + 1, …``.

    Returns
    -------
    (n_dim,) ndarray
        Unconstrained coordinates of the best optimum found.

    """
    callback = nutpie_model.compiled_logp_func.ctypes
    n_dim = nutpie_model.n_dim
    user_data = ctypes.c_void_p(nutpie_model.user_data.ctypes.data)
    pointer = ctypes.POINTER(ctypes.c_double)
    grad, logp = np.zeros(n_dim), np.zeros(())

    def negative(x):
        x = np.ascontiguousarray(x, dtype=np.float64)
        status = callback(n_dim, x.ctypes.data_as(pointer), grad.ctypes.data_as(pointer),
                          logp.ctypes.data_as(pointer), user_data)
        if status != 0:  # a non-finite density or gradient: push the line search back
            return np.inf, np.zeros(n_dim)
        return -float(logp), -grad

    best = None
    for i in range(starts):
        start = np.asarray(nutpie_model.initial_point_func(seed + i), dtype=np.float64)
        result = minimize(negative, start, jac=True, method="L-BFGS-B")
        if np.isfinite(result.fun) and (best is None or result.fun < best.fun):
            best = result
    if best is None:
        raise FitFailed("no finite posterior mode from any starting point")
    return best.x


def _start_at_mode(nutpie_model: Any, mode: np.ndarray, jitter: float = 1.0) -> Any:
    """The compiled model with every chain starting near ``mode``.

    Each chain starts at ``mode`` + U(−jitter, jitter) noise (PyMC's own jitter width), drawn
    from the seed nutpie passes per chain.
    """
    def initial_point(seed=None):
        rng = np.random.default_rng(seed)
        return np.ascontiguousarray(mode + rng.uniform(-jitter, jitter, mode.shape))

    return dataclasses.replace(nutpie_model, initial_point_func=initial_point)


def _seed_for(evidence_hash: str, set_hash: str) -> int:
    digest = hashlib.sha256(f"{set_hash}:{evidence_hash}".encode()).hexdigest()
    return int(digest[:8], 16)


def _constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values.reshape(-1)[0])) if values.size else True


def diagnose(datatree: Any, gate: GateSettings,
             mcse: np.ndarray | None = None) -> tuple[Diagnostics, np.ndarray]:
    """Apply the gate to a sampler run.

    Scenario probabilities that are identical in every draw are exact (the collapsed static
    model): their MCSE is 0 and they cannot fail r_hat or ESS; the sampled parameters still
    must.

    Parameters
    ----------
    datatree : xarray.DataTree
        The run: ``posterior`` (with ``scenario_probability``) and ``sample_stats``.
    gate : GateSettings
        The thresholds.
    mcse : (K,) ndarray, optional
        The published nowcast's MCSE when it is estimated otherwise than by the draws' mean
        of ``scenario_probability`` (a control variate): the gate judges it instead.

    Returns
    -------
    diagnostics : Diagnostics
    mcse : numpy.ndarray
        (K,) Monte Carlo standard error of each scenario probability.

    """
    posterior = datatree["posterior"]
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    sampled = [posterior[name].values.reshape(n_chains, n_draws, -1)
               for name in posterior.data_vars
               if name != PROBABILITY and posterior[name].size]
    prob = posterior[PROBABILITY].values  # (chain, draw, K)
    given = mcse is not None
    mcse = np.asarray(mcse, dtype=float) if given else np.zeros(prob.shape[-1])
    varying = [k for k in range(prob.shape[-1]) if not _constant(prob[..., k])]
    # one stacked (chain, draw, quantity) array: ArviZ's array functions once, not per variable
    stacked = np.concatenate(sampled + [prob[..., varying]], axis=2)
    rhats: list[float] = []
    esss: list[float] = []
    if stacked.shape[2]:
        rhats = list(array_stats.rhat(stacked, chain_axis=0, draw_axis=1))
        esss = list(array_stats.ess(stacked, chain_axis=0, draw_axis=1, method="bulk"))
    if varying and not given:
        mcse[varying] = array_stats.mcse(prob[..., varying], chain_axis=0, draw_axis=1)
    if not varying:
        esss.append(float(n_chains * n_draws))
    divergences = int(datatree["sample_stats"]["diverging"].values.sum())
    max_rhat = float(np.nanmax(rhats)) if rhats else 1.0
    min_ess = float(np.nanmin(esss)) if esss else float(n_chains * n_draws)
    failures = []
    if not np.isfinite(max_rhat) or max_rhat > gate.max_rhat:
        failures.append(f"r_hat {max_rhat:.4f} > {gate.max_rhat}")
    if not np.isfinite(min_ess) or min_ess < gate.min_ess_bulk:
        failures.append(f"bulk ESS {min_ess:.0f} < {gate.min_ess_bulk:.0f}")
    if divergences > gate.max_divergences:
        failures.append(f"{divergences} divergences > {gate.max_divergences}")
    if float(mcse.max()) > gate.max_mcse:
        failures.append(f"MCSE {float(mcse.max()):.4f} > {gate.max_mcse}")
    return Diagnostics(
        max_rhat=round(max_rhat, 6), min_ess_bulk=round(min_ess, 1), divergences=divergences,
        max_mcse=float(mcse.max()), passed=not failures, failures=tuple(failures),
    ), mcse


def filtered_draws(scenario_set: ScenarioSet, arrays: EvidenceArrays,
                   posterior: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-draw transition matrices, filtered probabilities and log-likelihoods (dynamic fits).

    Rao-Blackwellised: ``P(z_t | y_1..t, A_s, θ_s)`` in closed form for each posterior draw
    s, so the path's Monte Carlo error is only that of (A, θ).

    Returns
    -------
    transitions : (S, K, K) ndarray
    filtered : (S, T, K) ndarray
    loglik : (S,) ndarray
        ``log p(y | A_s, θ_s)`` up to terms free of (A, θ).
    emissions : (S, T, K) ndarray
        The filter's per-period log likelihoods.

    """
    transitions = transition_draws(scenario_set, posterior)
    n_samples = transitions.shape[0]
    theta = {name: posterior[name].values.reshape(n_samples, *posterior[name].shape[2:])
             for name in KIND_PARAMETER.values() if name in posterior}
    emissions = np.ascontiguousarray(
        regime_loglik(scenario_set, arrays.counts, arrays.exposure, theta, math=np,
                      tallies=arrays.tallies))
    filtered, loglik = filter_draws(transitions, emissions,
                                    np.asarray(scenario_set.prior, dtype=float))
    return transitions, filtered, loglik, emissions


def _nowcast(scenario_set: ScenarioSet, transitions: np.ndarray,
             filtered: np.ndarray) -> np.ndarray:
    """(S, K) per-draw probability of each scenario in the last period (the prior if none)."""
    if filtered.shape[1] == 0:
        return np.broadcast_to(scenario_set.prior, (transitions.shape[0],
                                                    len(scenario_set.scenarios))).copy()
    return filtered[:, -1, :]


def _relative_efficiency(values: np.ndarray, n_chains: int) -> np.ndarray:
    """ESS / S of the mean of each column of (S, Q) ``values`` over the chains' draws (≤ 1)."""
    chained = values.reshape(n_chains, -1, values.shape[-1])
    varying = [q for q in range(values.shape[-1]) if not _constant(values[:, q])]
    out = np.ones(values.shape[-1])
    if varying:
        ess = array_stats.ess(chained[..., varying], chain_axis=0, draw_axis=1, method="mean")
        out[varying] = np.clip(np.asarray(ess) / values.shape[0], 1e-6, 1.0)
    return out


def _systematic_resample(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` equally weighted draws, in increasing order (systematic resampling)."""
    positions = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(weights), positions), weights.shape[0] - 1)


@dataclass
class _Run:
    """One fit's inputs and what every estimator shares: evidence arrays, seed, clock."""

    scenario_set: ScenarioSet
    evidence: Evidence
    settings: FitSettings
    arrays: EvidenceArrays
    evidence_hash: str
    seed: int
    dynamic: bool  # learned transitions
    started: float
    deadline: float  # perf_counter() past which no fresh draws are started
    say: Callable[[str], None]
    exact: _Exact | None = None  # dynamic sets: the enumerated paths
    enumerate_s: float = 0.0

    @classmethod
    def start(cls, scenario_set: ScenarioSet, evidence: Evidence, settings: FitSettings,
              progress: Callable[[str], None] | None) -> _Run:
        started = time.perf_counter()
        sampler = settings.sampler
        arrays = EvidenceArrays.select(scenario_set, evidence)
        evidence_hash = evidence.hash()
        seed = sampler.seed
        if seed is None:
            seed = _seed_for(evidence_hash, scenario_set.content_hash)
        if sampler.method not in ("auto", "paths", "nuts"):
            raise ValueError(f"sampler method {sampler.method!r} is not 'auto', 'paths' or "
                             "'nuts'")
        return cls(scenario_set=scenario_set, evidence=evidence, settings=settings,
                   arrays=arrays, evidence_hash=evidence_hash, seed=seed,
                   dynamic=bool(settings.dynamic and transition_rows(scenario_set)),
                   started=started,
                   deadline=(math.inf if sampler.time_budget is None
                             else started + sampler.time_budget),
                   say=progress or (lambda message: None))

    @property
    def gate(self) -> GateSettings:
        return self.settings.gate

    @property
    def sampler(self) -> SamplerSettings:
        return self.settings.sampler

    def control_variate(self) -> ControlVariate | None:
        """The enumerated paths a NUTS or PSIS nowcast takes its exact part from."""
        if self.exact is None:
            return None
        return ControlVariate(segments=self.exact.segments, paths=self.exact.sums.n_paths)


@dataclass
class _Outcome:
    """What each estimator gives: the nowcast, its MCSE and the gate's verdict; the draws.

    ``posterior`` holds equally weighted draws, with their per-draw nowcast ``alpha``,
    ``transitions``, ``filtered`` path and ``emissions``, for the forecasts and the artifact
    (``datatree``); ``path`` is the published filtered path.
    """

    probability: np.ndarray
    mcse: np.ndarray
    diagnostics: Diagnostics
    path: np.ndarray
    posterior: Any
    alpha: np.ndarray
    transitions: np.ndarray
    filtered: np.ndarray
    emissions: np.ndarray
    datatree: Any
    sampler: SamplerRecord | None = None
    timings: Timings | None = None
    loglik: np.ndarray | None = None  # NUTS's draws: log p(y | A, θ), for a later PSIS refit
    path_base: _PathBase | None = None  # a path fit's draws, for a later quick refit

    @property
    def passed(self) -> bool:
        return self.diagnostics.passed

    def rejecting(self, rejected: dict[str, list[str]]) -> _Outcome:
        """The outcome with the estimators that failed before it named in its record."""
        if not rejected:
            return self
        changes: dict[str, Any] = {"rejected": rejected}
        if isinstance(self.sampler, NutsSampler) and "psis" in rejected:
            changes["reweight_rejected"] = rejected["psis"]  # the name earlier records used
        return replace(self, sampler=replace(self.sampler, **changes))


def _reweight(run: _Run, base: _Base, compile_s: float) -> _Outcome:
    """The base posterior re-weighted for new evidence by Pareto-smoothed importance sampling.

    Proposal: the base posterior p(A, θ | y_base); target: p(A, θ | y). The prior cancels, so
    each draw's ratio is ``p(y | A_s, θ_s) / p(y_base | A_s, θ_s)``, two forward filters.
    The gate applies what the sampled fits' gate measures to this estimator: the base's R̂ and
    divergences, k̂ ≤ min(1 − 1/log10 S, 0.7) (Vehtari et al. 2024), the base's least ESS
    scaled by the weights' efficiency, and each probability's MCSE from the weighted variance
    and the draws' relative efficiency (as `loo`'s ``E_loo``). The draws kept for what is
    computed per draw downstream are ``chains`` × ``draws`` resampled by weight. With
    ``run.exact``, the nowcast takes the enumerated paths' exact part as a control variate.
    """
    scenario_set, arrays, gate, exact = run.scenario_set, run.arrays, run.gate, run.exact
    chains, draws = run.sampler.chains, run.sampler.dynamic_draws
    posterior = base.posterior
    n_chains = posterior.sizes["chain"]
    transitions, filtered, loglik, emissions = filtered_draws(scenario_set, arrays, posterior)
    n_samples = loglik.shape[0]
    log_ratio = loglik - base.loglik
    uniform = bool(np.ptp(log_ratio) < 1e-9)  # the same evidence, as far as (A, θ) can tell
    if uniform:
        log_weights, khat = np.zeros(n_samples), -np.inf
    else:
        r_eff = float(_relative_efficiency(np.exp(log_ratio - log_ratio.max())[:, None],
                                           n_chains)[0])
        # ArviZ's psislw takes what LOO has, a log-likelihood, and negates it into log ratios
        log_weights, khat = array_stats.psislw(-log_ratio, r_eff=r_eff)
        khat = float(khat)
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    alpha = _nowcast(scenario_set, transitions, filtered)
    estimand = alpha if exact is None else exact.adjusted(alpha,
                                                          exact.within(transitions, emissions))
    probability = weights @ estimand
    efficiency = _relative_efficiency(estimand, n_chains)
    mcse = np.sqrt((weights**2) @ (estimand - probability) ** 2 / efficiency)
    ess = base.diagnostics.min_ess_bulk / (n_samples * float(np.sum(weights**2)))
    k_max = min(1.0 - 1.0 / np.log10(n_samples), 0.7)
    failures = []  # the base's R̂, ESS and divergences passed when it was sampled
    if not khat <= k_max:
        failures.append(f"pareto k̂ {khat:.2f} > {k_max:.2f}")
    if not ess >= gate.min_ess_bulk:
        failures.append(f"bulk ESS {ess:.0f} < {gate.min_ess_bulk:.0f}")
    if float(mcse.max()) > gate.max_mcse:
        failures.append(f"MCSE {float(mcse.max()):.4f} > {gate.max_mcse}")
    diagnostics = Diagnostics(
        max_rhat=base.diagnostics.max_rhat, min_ess_bulk=round(float(ess), 1),
        divergences=base.diagnostics.divergences, max_mcse=float(mcse.max()),
        passed=not failures, failures=tuple(failures),
        pareto_k=None if uniform else round(khat, 4))
    # Equally weighted draws for everything computed per draw downstream (forecasts, the
    # artifact): the base draws resampled by weight, in their original order, so each chain's
    # stretch keeps its autocorrelation for the forecasts' MCSE; as many as a sampled fit has.
    n_out = chains * draws
    index = (np.arange(n_samples) if uniform and n_out == n_samples
             else _systematic_resample(weights, n_out, np.random.default_rng(run.seed)))
    kept_draws = _resampled_base(scenario_set, base, alpha, index, chains, draws)
    sampler = PsisSampler(draws=draws, chains=chains, base_chains=int(n_chains),
                          transitions="learned", base_evidence_hash=base.evidence_hash,
                          base_seed=base.seed, control_variate=run.control_variate())
    return _Outcome(probability=probability, mcse=mcse, diagnostics=diagnostics,
                    path=np.einsum("s,stk->tk", weights, filtered), posterior=kept_draws,
                    alpha=alpha[index], transitions=transitions[index],
                    filtered=filtered[index], emissions=emissions[index],
                    datatree=xr.DataTree.from_dict({"posterior": kept_draws}),
                    sampler=sampler, timings=Timings(compile_s=compile_s, sample_s=0.0))


def _resampled_base(scenario_set: ScenarioSet, base: _Base, alpha: np.ndarray,
                    index: np.ndarray, chains: int, draws: int) -> Any:
    """The base's draws at ``index`` (with each one's nowcast ``alpha``) as chains × draws."""
    posterior = base.posterior
    n_samples = alpha.shape[0]

    def resampled(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(n_samples, *values.shape[2:])[index]
        return flat.reshape(chains, draws, *values.shape[2:])

    kept = {name: (posterior[name].dims, resampled(posterior[name].values))
            for name in posterior.data_vars if name != PROBABILITY}
    kept[PROBABILITY] = (("chain", "draw", "scenario"),
                         resampled(alpha.reshape(posterior.sizes["chain"], -1,
                                                 alpha.shape[-1])))
    coords = {name: values for name, values in posterior.coords.items()
              if name not in ("chain", "draw")}
    kept_draws = xr.Dataset(kept, coords={**coords, "chain": np.arange(chains),
                                          "draw": np.arange(draws),
                                          "scenario": list(scenario_set.scenario_ids)})
    kept_draws.attrs = {
        "signpost_method": "PSIS re-weighting of a sampled posterior, resampled",
        "signpost_base_evidence_hash": base.evidence_hash, "signpost_base_seed": base.seed}
    return kept_draws


class _Exact(NamedTuple):
    """The enumerated paths of a dynamic set: the exact part of its nowcast."""

    model: PathModel
    sums: PathSums
    nowcast: np.ndarray  # (K,) P(z_T = k | y, at most S segments)

    @property
    def segments(self) -> int:
        return self.sums.max_segments

    @property
    def complete(self) -> bool:
        """Every allowed path was scored: the truncated posterior is the posterior."""
        return self.segments >= self.model.n_periods

    def within(self, transitions: np.ndarray, emissions: np.ndarray) -> np.ndarray:
        """(draws, K, S) per draw: P(z_T = k and s segments | A, θ, y), s = 1 … S."""
        return segment_filter(np.ascontiguousarray(transitions),
                              np.ascontiguousarray(emissions), self.model.prior, self.segments)

    def adjusted(self, alpha: np.ndarray, within: np.ndarray) -> np.ndarray:
        """(draws, K) per draw: ``q · c + (α − c_k)``, whose posterior mean is the nowcast.

        The part of each draw's nowcast carried by paths of at most S segments, ``c_k``, is
        replaced by that part's exact average ``q_k`` scaled by the draw's share ``c``: a
        control variate with known mean, so only the paths beyond S are left to Monte Carlo.
        """
        inside = within.sum(axis=2)
        share = inside.sum(axis=1)
        return self.nowcast[None, :] * share[:, None] + np.clip(alpha - inside, 0.0, None)


def _enumerate(scenario_set: ScenarioSet, arrays: EvidenceArrays,
               sampler: SamplerSettings) -> _Exact:
    """Score every path of as many segments as `SamplerSettings.max_paths` allows."""
    model = path_model(scenario_set, arrays)
    segments, total = 1, 0
    for count in path_counts(model, max(model.n_periods, 1)):
        if total + count > sampler.max_paths and total:
            break
        total += count
        segments += 1
    sums = enumerate_paths(model, max(1, segments - 1))
    return _Exact(model, sums, sums.nowcast(model.n_states))


BOUNDED_WEIGHTS = 2.0  # max / min importance weight below which no tail needs smoothing
PATH_COMPONENTS = 256  # (A, θ) draws whose filters propose the paths beyond the enumeration
MIN_LONG = 50  # long-path proposals needed before their weights' tail (k̂) can be judged
SLOW_MIXING_RHAT = 1.05  # an R̂ up to this is slow mixing (a longer run helps), not modes


def _weights(log_c: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Normalised importance weights ∝ 1/c, and their Pareto k̂ (None: bounded weights).

    Weights within a factor of `BOUNDED_WEIGHTS` of each other have no tail to fit (k̂ would
    be noise, and smoothing them biased the nowcast by 2–3 MCSE in a trial on the bundled set):
    they are used as they are. Wider weights are Pareto-smoothed (PSIS) and gated on k̂.
    """
    if np.ptp(log_c) <= np.log(BOUNDED_WEIGHTS):
        weights = np.exp(log_c.min() - log_c)
        return weights / weights.sum(), None
    # ArviZ's psislw takes a log-likelihood ℓ and returns the weights of exp(−ℓ)
    log_w, khat = array_stats.psislw(log_c, r_eff=1.0)
    weights = np.exp(log_w - log_w.max())
    return weights / weights.sum(), float(khat)


@dataclass
class _PathDraws:
    """(A, θ) draws given paths, with what each draw's filter gives."""

    transitions: np.ndarray
    theta: dict[str, np.ndarray]
    emissions: np.ndarray
    filtered: np.ndarray
    loglik: np.ndarray
    alpha: np.ndarray

    def take(self, index: np.ndarray) -> _PathDraws:
        return _PathDraws(self.transitions[index],
                          {name: v[index] for name, v in self.theta.items()},
                          self.emissions[index], self.filtered[index], self.loglik[index],
                          self.alpha[index])


def _path_draws(scenario_set: ScenarioSet, arrays: EvidenceArrays, exact: _Exact,
                paths: np.ndarray, rng: np.random.Generator) -> _PathDraws:
    """One draw of (A, θ) from its exact conditional per path, and each draw's filter."""
    transitions, theta = conditional_draws(exact.model, paths, rng)
    emissions = np.ascontiguousarray(
        regime_loglik(scenario_set, arrays.counts, arrays.exposure, theta, math=np,
                      tallies=arrays.tallies))
    filtered, loglik = filter_draws(transitions, emissions,
                                    np.asarray(scenario_set.prior, dtype=float))
    return _PathDraws(transitions, theta, emissions, filtered, loglik,
                      _nowcast(scenario_set, transitions, filtered))


def _truncated_draws(scenario_set, arrays, exact, n, rng) -> _PathDraws:
    paths = sample_paths(exact.model, exact.sums, n, rng)
    return _path_draws(scenario_set, arrays, exact, paths[rng.permutation(n)], rng)


def _strata(exact: _Exact, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each segment count's share of the truncated posterior, and how many draws it gets.

    Draws per count ∝ √share (at least 2 in a count with any mass): the longest paths are the
    rarest and carry most of what the long paths beyond S look like, so they get far more than
    their share (0.4 % of the mass, ~5 % of the draws on the bundled set), and the stratified
    estimate weighs each count by its exact share: no weights on the counts, less variance.
    """
    share = exact.sums.by_segments()
    alloc = np.sqrt(share)
    alloc = np.floor(n * alloc / alloc.sum()).astype(int)
    alloc[share > 0] = np.maximum(alloc[share > 0], 2)
    alloc[int(np.argmax(share))] += n - alloc.sum()
    return share, alloc


def _stratified_draws(scenario_set, arrays, exact, n, rng) -> tuple[_PathDraws, np.ndarray,
                                                                      np.ndarray]:
    """Draws of the truncated posterior, stratified by segment count; and each draw's count."""
    share, alloc = _strata(exact, n)
    paths, strata = [], []
    for s, count in enumerate(alloc):
        if count:
            paths.append(sample_paths(exact.model, exact.sums, int(count), rng, segments=s + 1))
            strata.append(np.full(count, s))
    paths, strata = np.concatenate(paths), np.concatenate(strata)
    order = rng.permutation(n)
    return _path_draws(scenario_set, arrays, exact, paths[order], rng), strata[order], share


def _by_weights(exact: _Exact, draws: _PathDraws, gate: GateSettings,
                strata: np.ndarray | None = None,
                stratum_share: np.ndarray | None = None) -> dict[str, Any]:
    """Estimate 1 — draws of the truncated posterior, weighted ∝ 1/c(A, θ).

    Each draw carries the exact probability of the paths beyond S given its (A, θ)
    (Rao–Blackwellised), so a tiny tail is estimated precisely; but where those paths carry
    real mass the weights grow a heavy tail (Pareto k̂). With ``strata`` (each draw's segment
    count, drawn `_stratified_draws`' way) every count's draws stand for its exact share.
    """
    n = draws.alpha.shape[0]
    within = exact.within(draws.transitions, draws.emissions)
    share = within.sum(axis=(1, 2))
    if strata is None:
        strata, stratum_share = np.zeros(n, dtype=int), np.ones(1)
    # each draw's weight: its count's exact share over its draws (the design, known, bounded)
    # times 1/c, the importance weight, whose tail alone k̂ judges and PSIS smooths
    counts = np.bincount(strata, minlength=stratum_share.size)
    design = stratum_share[strata] / counts[strata]
    importance, khat = _weights(np.log(np.clip(share, 1e-300, None)))
    weights = design * importance
    weights /= weights.sum()
    adjusted = exact.adjusted(draws.alpha, within)
    probability = weights @ adjusted
    # stratified: the variance of each count's mean, weighted by its exact share squared
    influence = weights[:, None] * (adjusted - probability)
    variance = np.zeros(adjusted.shape[1])
    for s in np.unique(strata):
        inside = influence[strata == s]
        variance += inside.shape[0] * inside.var(axis=0, ddof=1) if inside.shape[0] > 1 else 0
    mcse = np.sqrt(variance)
    ess = 1.0 / float(np.sum(weights**2))
    k_max = min(1.0 - 1.0 / np.log10(n), 0.7)
    failures = []
    if khat is not None and not khat <= k_max:
        failures.append(f"pareto k̂ {khat:.2f} > {k_max:.2f}")
    if not ess >= gate.min_ess_bulk:
        failures.append(f"bulk ESS {ess:.0f} < {gate.min_ess_bulk:.0f}")
    return {"estimator": "weights", "probability": probability, "mcse": mcse, "ess": ess,
            "pareto_k": khat, "tail": 1.0 - float(weights @ share), "weights": weights,
            "failures": failures}


def _tail_paths(scenario_set: ScenarioSet, arrays: EvidenceArrays, exact: _Exact,
                components: _PathDraws, n: int, rng: np.random.Generator,
                gate: GateSettings, stages: int = 6) -> dict[str, Any]:
    """Estimate 2 — the mass of the paths beyond S by importance sampling over paths.

    Proposal: forward filtering, backward sampling from a mixture of D (A, θ) draws, whose
    density at a path is known; target: the path's exact log p(z, y) (`score_paths`). The
    enumerated paths' mass is exact, so only the longer paths' is sampled:
    ``P(z_T = k | y) = (Z_≤S,k + T_k) / (Z_≤S + T)`` with ``T_k`` unbiased. Until the weights
    of the long paths are well behaved (k̂ ≤ 0.5 and enough of them), the mixture is refitted
    from the estimate (components drawn from the enumerated paths and the weighted long
    ones, at least a quarter from the long), up to ``stages`` times; the last stage's draws
    alone give the estimate.
    """
    score = scorer(exact.model)
    log_z = exact.sums.total()
    t_len, k = exact.model.n_periods, exact.model.n_states
    log_prior = np.log(np.clip(exact.model.prior, 1e-300, None))
    for stage in range(stages):
        picks = rng.integers(components.alpha.shape[0], size=n)
        paths = ffbs(components.filtered, components.transitions, picks, rng.random((n, t_len)))
        with np.errstate(divide="ignore"):
            log_g = mixture_log_density(paths, log_prior, np.log(components.transitions),
                                        components.emissions, components.loglik)
        log_w, segments = score(paths)
        long = segments > exact.segments
        log_ratio = np.where(long, log_w - log_z - log_g, -np.inf)
        ratio = np.exp(np.clip(log_ratio, -745.0, 700.0))
        per_draw = np.zeros((n, k))
        per_draw[np.arange(n), paths[:, -1]] = ratio
        tail_k = per_draw.mean(axis=0)
        tail = float(tail_k.sum())
        share = tail / (1.0 + tail)
        n_long = int(long.sum())
        long_ratio = ratio[long]
        ess = float(long_ratio.sum() ** 2 / np.sum(long_ratio**2)) if n_long else 0.0
        khat = None
        if n_long >= MIN_LONG and np.ptp(log_ratio[long]) > np.log(BOUNDED_WEIGHTS):
            _, khat = array_stats.psislw(-log_ratio[long], r_eff=1.0)
            khat = float(khat)
        settled = (share < 1e-4 or (n_long >= MIN_LONG and (khat is None or khat <= 0.5)
                                    and (share < 0.01 or ess >= gate.min_ess_bulk)))
        if settled or stage + 1 == stages or not n_long:
            break
        m = components.alpha.shape[0]
        from_long = rng.random(m) < max(share, 0.25)
        fresh = sample_paths(exact.model, exact.sums, m, rng)[rng.permutation(m)]
        resampled = rng.choice(np.flatnonzero(long), size=m, p=long_ratio / long_ratio.sum())
        fresh[from_long] = paths[resampled][from_long]
        components = _path_draws(scenario_set, arrays, exact, fresh, rng)
    probability = (exact.nowcast + tail_k) / (1.0 + tail)
    influence = (per_draw - probability[None, :] * per_draw.sum(axis=1, keepdims=True)) \
        / (1.0 + tail)
    mcse = influence.std(axis=0) / np.sqrt(n)
    failures = []
    if share >= 1e-3 and n_long < MIN_LONG:
        failures.append(f"paths beyond {exact.segments} segments hold {share:.3f} of the "
                        f"mass but only {n_long} of {n} proposals reached them")
    if khat is not None and khat > 0.7:
        failures.append(f"pareto k̂ {khat:.2f} > 0.70 on the paths beyond "
                        f"{exact.segments} segments")
    if share >= 0.01 and ess < gate.min_ess_bulk:
        failures.append(f"bulk ESS {ess:.0f} < {gate.min_ess_bulk:.0f} on the paths beyond "
                        f"{exact.segments} segments")
    return {"estimator": "long paths", "probability": probability, "mcse": mcse,
            "ess": ess if share >= 1e-3 else float(n), "pareto_k": khat, "tail": share,
            "failures": failures, "long_paths": paths[long], "long_ratio": long_ratio,
            "stages": stage + 1}


def _paths_outcome(run: _Run) -> _Outcome:
    """The posterior from the enumerated paths, without a Markov chain (decision 011).

    Draws: paths from the truncated posterior (systematic resampling of the exact weights),
    then (A, θ) from their conjugate conditionals: iid. The nowcast is the enumerated paths'
    exact part plus an estimate of the longer paths': by weighting the draws ∝ 1/c(A, θ)
    when those weights are well behaved, else by importance sampling over the long paths.
    A nowcast short only of precision gets a fresh set of draws sized from it (its own draws
    alone are used), while the time budget lasts.
    """
    scenario_set, arrays, exact, seed, say = (run.scenario_set, run.arrays, run.exact,
                                              run.seed, run.say)
    gate, sampler = run.gate, run.sampler
    chains = sampler.chains
    n = max(chains, int(np.ceil(sampler.path_draws / chains)) * chains)
    attempt = 0
    while True:
        rng = np.random.default_rng([seed, attempt])
        drawn = time.perf_counter()
        draws, strata, stratum_share = _stratified_draws(scenario_set, arrays, exact, n, rng)
        estimate = _by_weights(exact, draws, gate, strata, stratum_share)
        if estimate["failures"]:
            say(f"weights of the draws beyond {exact.segments} segments "
                f"({'; '.join(estimate['failures'])}): sampling the long paths")
            tried = estimate["failures"]
            estimate = _tail_paths(scenario_set, arrays, exact,
                                   draws.take(np.arange(min(n, PATH_COMPONENTS))), n, rng, gate)
            estimate["weights_failed"] = tried
        mcse = estimate["mcse"]
        failures = list(estimate["failures"])
        if float(mcse.max()) > gate.max_mcse:
            failures.append(f"MCSE {float(mcse.max()):.4f} > {gate.max_mcse}")
        per_draw = (time.perf_counter() - drawn) / n
        if not failures or not all(f.startswith(("MCSE", "bulk ESS")) for f in failures):
            break
        factor = max((float(mcse.max()) / gate.max_mcse) ** 2,
                     gate.min_ess_bulk / max(float(estimate["ess"]), 1.0))
        wanted = int(np.ceil(n * 1.2 * factor / chains)) * chains
        if wanted > sampler.max_path_draws:
            failures[-1] += (f" after {n} draws; {wanted} would be needed, more than "
                             f"max_path_draws ({sampler.max_path_draws})")
            break
        if time.perf_counter() + per_draw * wanted > run.deadline:
            failures[-1] += (f" after {n} draws; {wanted} would take ~{per_draw * wanted:.0f} s, "
                             "past the fit's time budget")
            break
        say(f"MCSE {float(mcse.max()):.4f} from {n} path draws: {wanted} fresh ones")
        n, attempt = wanted, attempt + 1

    kept = min(n, max(chains, sampler.kept_draws // chains * chains))
    every = draws
    draws = _kept_draws(run, estimate, draws, kept, np.random.default_rng([seed, attempt, 1]))
    probability = estimate["probability"]
    posterior = _draws_dataset(scenario_set, draws.theta, draws.alpha, chains,
                               draws.transitions)
    posterior.attrs = {"signpost_method": "iid draws of the enumerated scenario paths "
                                          f"(paths beyond: {estimate['estimator']})",
                       "signpost_segments": exact.segments}
    diagnostics = Diagnostics(  # iid draws: no chain to converge (R̂ 1), nothing to diverge
        max_rhat=1.0, min_ess_bulk=round(float(estimate["ess"]), 1), divergences=0,
        max_mcse=float(mcse.max()), passed=not failures, failures=tuple(failures),
        pareto_k=None if estimate["pareto_k"] is None else round(estimate["pareto_k"], 4))
    record = PathsSampler(segments=exact.segments, paths=exact.sums.n_paths,
                          exact=exact.complete, draws=n, kept=kept, chains=chains,
                          beyond=estimate["estimator"], tail_share=float(estimate["tail"]),
                          weights_failed=estimate.get("weights_failed"),
                          stages=estimate["stages"] if "weights_failed" in estimate else None)
    path_base = None
    if estimate["estimator"] == "weights":  # the weighted draws stand for p(A, θ | y)
        path_base = _PathBase(
            evidence_hash=run.evidence_hash, seed=int(seed), shape=_evidence_shape(arrays),
            transitions=every.transitions, theta=every.theta, loglik=every.loglik,
            log_weights=np.log(np.clip(estimate["weights"], 1e-300, None)))
    return _Outcome(probability=probability, mcse=mcse, diagnostics=diagnostics,
                    path=draws.filtered.mean(axis=0), posterior=posterior, alpha=draws.alpha,
                    transitions=draws.transitions, filtered=draws.filtered,
                    emissions=draws.emissions,
                    datatree=xr.DataTree.from_dict({"posterior": posterior}), sampler=record,
                    loglik=draws.loglik, path_base=path_base)


def _kept_draws(run: _Run, estimate: dict[str, Any], draws: _PathDraws, kept: int,
                rng: np.random.Generator) -> _PathDraws:
    """``kept`` equally weighted draws, for the forecasts and the artifact.

    The estimate's draws resampled by weight, or, when the long paths were sampled, the
    enumerated paths and the weighted long ones.
    """
    if estimate["estimator"] == "weights":
        return draws.take(np.sort(_systematic_resample(estimate["weights"], kept, rng)))
    exact = run.exact
    n_long = rng.binomial(kept, estimate["tail"])
    long = estimate["long_paths"]
    paths = sample_paths(exact.model, exact.sums, kept - n_long, rng)
    if n_long:
        ratio = estimate["long_ratio"]
        paths = np.concatenate([paths, long[_systematic_resample(
            ratio / ratio.sum(), n_long, rng)].astype(np.int8)])
    return _path_draws(run.scenario_set, run.arrays, exact, paths[rng.permutation(kept)], rng)


def _draws_dataset(scenario_set: ScenarioSet, theta: Mapping[str, np.ndarray],
                   alpha: np.ndarray, chains: int,
                   transitions: np.ndarray | None = None) -> xr.Dataset:
    """Draws as a posterior Dataset shaped like a sampler's: (chain, draw, ...).

    ``theta``: each kind's parameter (S, J_kind, K[, L]); ``alpha`` (S, K) the per-draw
    nowcast; ``transitions`` (S, K, K) the learned rows (None: a static set has none).
    """
    k = len(scenario_set.scenarios)
    per_chain = alpha.shape[0] // chains
    coords: dict[str, Any] = {"chain": np.arange(chains), "draw": np.arange(per_chain),
                              "scenario": list(scenario_set.scenario_ids)}
    variables: dict[str, Any] = {}
    for kind, _, specs in kind_groups(scenario_set):
        if kind.parameter in theta:
            dim = f"{kind.lookup_name}_indicator"
            coords[dim] = [spec.id for spec in specs]
            values = theta[kind.parameter]
            extra = values.shape[3:]  # a categorical kind's categories
            if extra:
                coords[CATEGORY] = list(range(extra[0]))
            variables[kind.parameter] = (
                ("chain", "draw", dim, "scenario", *((CATEGORY,) if extra else ())),
                values.reshape(chains, per_chain, -1, k, *extra))
    for row, columns, _ in transition_rows(scenario_set) if transitions is not None else ():
        source = scenario_set.scenario_ids[row]
        dim = f"from_{source}"
        coords[dim] = [scenario_set.scenario_ids[c] for c in columns]
        variables[f"transition_{source}"] = (
            ("chain", "draw", dim),
            transitions[:, row, columns].reshape(chains, per_chain, -1))
    variables[PROBABILITY] = (("chain", "draw", "scenario"), alpha.reshape(chains, per_chain, k))
    return xr.Dataset(variables, coords=coords)


def fit(scenario_set: ScenarioSet, evidence: Evidence, settings: FitSettings | None = None,
        cache: ModelCache | None = None,
        progress: Callable[[str], None] | None = None) -> Fit:
    """Fit one scenario set to one evidence snapshot.

    A pipeline of estimators, each giving the same `_Outcome`, the first that passes the gate
    (or the last one tried) published: for dynamic sets the scenario paths (decision 011),
    then NUTS — a PSIS re-weighting of the last sampled posterior first where allowed
    (decision 008) —; for static sets the probability exact and the parameters drawn iid from
    their conjugate posteriors (NUTS over them with ``method="nuts"``).

    Parameters
    ----------
    scenario_set : ScenarioSet
        The question: scenarios, priors, expectations.
    evidence : Evidence
        Must hold the set's indicators, on the set's period grid.
    settings : FitSettings, optional
        Sampler and gate settings; defaults otherwise.
    cache : ModelCache, optional
        Where compiled models are kept; the process-wide cache by default.
    progress : callable, optional
        Called with a short message at each stage (compile, sample, diagnose).

    Returns
    -------
    Fit
        Check ``fit.passed`` before publishing.

    Raises
    ------
    FitFailed
        If the sampler itself fails (not for a failed gate, which is a result).

    """
    run = _Run.start(scenario_set, evidence, settings or FitSettings(), progress)
    rejected: dict[str, list[str]] = {}  # estimators that failed the gate, and why
    cache = cache if cache is not None else DEFAULT_CACHE
    if run.dynamic:
        outcome = _by_paths(run, rejected, cache)
    elif run.sampler.method == "nuts":
        outcome = None
    else:
        outcome = _by_conjugacy(run)
    if outcome is None:
        outcome = _by_nuts(run, cache, rejected)
    run.say("forecasting")
    return _summarise(run, outcome)


def _by_conjugacy(run: _Run) -> _Outcome:
    """A static set: the probability exact, the parameters iid from their conjugate posteriors.

    Under "scenario k in force throughout", θ[j, k] | y is the conjugate update of its prior
    by the indicator's totals (`indicators.kinds.Kind.conditional_draw`): independent exact
    draws, no chain (R̂ 1, ESS the number of draws), nothing to compile. The draws serve the
    parameter summaries and the milestone forecasts; the scenario probability never depends on
    them.
    """
    scenario_set, arrays, sampler = run.scenario_set, run.arrays, run.sampler
    started = time.perf_counter()
    k = len(scenario_set.scenarios)
    chains, per_chain = sampler.chains, sampler.draws
    n = chains * per_chain
    rng = np.random.default_rng(run.seed)
    tallies = arrays.tallies if arrays.tallies is not None and arrays.tallies.shape[-1] else None
    emissions = log_emission(scenario_set, arrays.counts, arrays.exposure, arrays.sumsq, tallies,
                             math=NUMPY)
    path, _ = forward_filter(scenario_set.prior, np.eye(k), emissions)
    log_joint = np.log(np.asarray(scenario_set.prior, dtype=float)) + emissions.sum(axis=0)
    probability = np.exp(log_joint - np.logaddexp.reduce(log_joint))

    def totals(x):  # (T, J_kind[, L]) → (S, J_kind, K[, L]): every scenario sees all periods
        summed = x.sum(axis=0)
        return np.broadcast_to(np.expand_dims(summed, 1),
                               (n, summed.shape[0], k, *summed.shape[1:]))

    theta = {}
    for kind, idx, specs in kind_groups(scenario_set):
        statistics = {"counts": totals(arrays.counts[:, idx]),
                      "exposure": totals(arrays.exposure[:, idx])}
        if tallies is not None:
            statistics["tallies"] = totals(tallies[:, idx])
        theta[kind.parameter] = kind.conditional_draw(specs, statistics, rng)
    alpha = np.broadcast_to(probability, (n, k)).copy()
    posterior = _draws_dataset(scenario_set, theta, alpha, chains)
    datatree = xr.DataTree.from_dict({"posterior": posterior})
    # iid draws: R̂ 1 and an ESS of n by construction; the gate still asks for its ESS
    failures = ((f"bulk ESS {n} (independent draws) < {run.gate.min_ess_bulk:.0f}",)
                if n < run.gate.min_ess_bulk else ())
    diagnostics = Diagnostics(max_rhat=1.0, min_ess_bulk=float(n), divergences=0, max_mcse=0.0,
                              passed=not failures, failures=failures)
    return _Outcome(probability=probability, mcse=np.zeros(k), diagnostics=diagnostics,
                    path=path, posterior=datatree["posterior"], alpha=alpha,
                    transitions=np.broadcast_to(np.eye(k), (n, k, k)), filtered=path,
                    emissions=emissions, datatree=datatree,
                    sampler=ConjugateSampler(draws=per_chain, chains=chains),
                    timings=Timings(compile_s=0.0, sample_s=time.perf_counter() - started))


def _by_paths(run: _Run, rejected: dict[str, list[str]], cache: ModelCache) -> _Outcome | None:
    """A quick re-weighted refit if one passes; else enumerate the paths and estimate from them.

    The enumeration is NUTS's control variate too. None when NUTS is to run: asked for, or the
    paths' estimate failed its gate under ``method="auto"`` (``rejected["paths"]`` says why).
    """
    quick = _quick_refit(run, cache, rejected)
    if quick is not None:
        return quick
    run.say("enumerating scenario paths")
    enumerated = time.perf_counter()
    run.exact = _enumerate(run.scenario_set, run.arrays, run.sampler)
    run.enumerate_s = time.perf_counter() - enumerated
    if run.sampler.method == "nuts":
        return None
    run.say(f"drawing from {run.exact.sums.n_paths:,} paths of up to {run.exact.segments} "
            "segments")
    drawn = time.perf_counter()
    outcome = _paths_outcome(run)
    if outcome.passed and run.sampler.quick_refits and run.sampler.seed is None:
        cache.keep_path_base(run.scenario_set, outcome.path_base)  # never a replay's or seeded
    if rejected.get("psis"):
        outcome = replace(outcome, sampler=replace(outcome.sampler, rejected=dict(rejected)))
    if outcome.passed or run.sampler.method == "paths":
        return replace(outcome, timings=Timings(compile_s=0.0, enumerate_s=run.enumerate_s,
                                                sample_s=time.perf_counter() - drawn))
    rejected["paths"] = list(outcome.diagnostics.failures)
    run.say(f"path draws failed the gate ({'; '.join(rejected['paths'])}): NUTS")
    return None


def _evidence_shape(arrays: EvidenceArrays) -> tuple[int, ...]:
    return tuple(arrays.counts.shape)


def _quick_refit(run: _Run, cache: ModelCache,
                 rejected: dict[str, list[str]]) -> _Outcome | None:
    """The last path fit re-weighted for this evidence, if allowed and it passes the gate.

    Allowed once per evidence snapshot from one base (decision 015): a second fit of the same
    evidence is the refinement and enumerates afresh; so is a seeded fit (its own run), one on
    a new period grid, or ``quick_refits=False``.
    """
    sampler = run.sampler
    base = cache.path_base(run.scenario_set)
    if (base is None or not sampler.quick_refits or sampler.method == "nuts"
            or sampler.seed is not None or base.shape != _evidence_shape(run.arrays)
            or run.evidence_hash == base.evidence_hash
            or run.evidence_hash in base.reweighted):
        return None
    base.reweighted.add(run.evidence_hash)
    run.say("re-weighting the last path fit's draws for the new evidence")
    started = time.perf_counter()
    outcome = _reweight_paths(run, base)
    if not outcome.passed:
        rejected["psis"] = list(outcome.diagnostics.failures)
        run.say(f"re-weighted draws failed the gate ({'; '.join(rejected['psis'])}): "
                "enumerating")
        return None
    return replace(outcome, timings=Timings(compile_s=0.0,
                                            sample_s=time.perf_counter() - started))


def _reweight_paths(run: _Run, base: _PathBase) -> _Outcome:
    """Decision 015: the last path fit's iid draws re-weighted for new evidence (PSIS).

    The base draws, weighted by ``base.log_weights``, stand for p(A, θ | y_base); each one's
    ratio to the new target p(A, θ | y) is p(y | A, θ) / p(y_base | A, θ), two forward filters.
    The combined log weights are Pareto-smoothed and gated like a sampled fit: k̂ ≤
    min(1 − 1/log10 S, 0.7), ESS = 1/Σw² ≥ the gate's, and the nowcast's MCSE
    √Σ w²(α − p)² (iid draws: no autocorrelation) ≤ the gate's. No control variate: the new
    evidence's enumeration is what this skips, so its MCSE is larger than an enumerated fit's.
    """
    scenario_set, arrays, gate, sampler = run.scenario_set, run.arrays, run.gate, run.sampler
    emissions = np.ascontiguousarray(
        regime_loglik(scenario_set, arrays.counts, arrays.exposure, base.theta, math=np,
                      tallies=arrays.tallies))
    filtered, loglik = filter_draws(base.transitions, emissions,
                                    np.asarray(scenario_set.prior, dtype=float))
    alpha = _nowcast(scenario_set, base.transitions, filtered)
    n = alpha.shape[0]
    log_target = base.log_weights + (loglik - base.loglik)
    # ArviZ's psislw takes a log-likelihood ℓ and returns the smoothed weights of exp(−ℓ)
    log_w, khat = array_stats.psislw(-log_target, r_eff=1.0)
    khat = float(khat)
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    probability = weights @ alpha
    mcse = np.sqrt((weights**2) @ (alpha - probability) ** 2)
    ess = 1.0 / float(np.sum(weights**2))
    k_max = min(1.0 - 1.0 / np.log10(n), 0.7)
    failures = []
    if not khat <= k_max:
        failures.append(f"pareto k̂ {khat:.2f} > {k_max:.2f}")
    if not ess >= gate.min_ess_bulk:
        failures.append(f"bulk ESS {ess:.0f} < {gate.min_ess_bulk:.0f}")
    if float(mcse.max()) > gate.max_mcse:
        failures.append(f"MCSE {float(mcse.max()):.4f} > {gate.max_mcse}")
    diagnostics = Diagnostics(max_rhat=1.0, min_ess_bulk=round(ess, 1), divergences=0,
                              max_mcse=float(mcse.max()), passed=not failures,
                              failures=tuple(failures), pareto_k=round(khat, 4))
    chains = sampler.chains
    kept = min(n, max(chains, sampler.kept_draws // chains * chains))
    index = np.sort(_systematic_resample(weights, kept, np.random.default_rng(run.seed)))
    theta = {name: values[index] for name, values in base.theta.items()}
    posterior = _draws_dataset(scenario_set, theta, alpha[index], chains,
                               base.transitions[index])
    posterior.attrs = {"signpost_method": "PSIS re-weighting of a path fit's iid draws, "
                                          "resampled",
                       "signpost_base_evidence_hash": base.evidence_hash,
                       "signpost_base_seed": base.seed}
    record = PsisSampler(draws=kept // chains, chains=chains, base_chains=1,
                         transitions="learned", base_evidence_hash=base.evidence_hash,
                         base_seed=base.seed, base_sampler="paths", base_draws=n)
    return _Outcome(probability=probability, mcse=mcse, diagnostics=diagnostics,
                    path=np.einsum("s,stk->tk", weights, filtered), posterior=posterior,
                    alpha=alpha[index], transitions=base.transitions[index],
                    filtered=filtered[index], emissions=emissions[index],
                    datatree=xr.DataTree.from_dict({"posterior": posterior}), sampler=record)


def _by_nuts(run: _Run, cache: ModelCache, rejected: dict[str, list[str]]) -> _Outcome:
    """NUTS on the compiled model: a re-weighted refit where one is allowed, else sampling.

    One more observation moves the posterior little: re-weighting the last sampled one costs
    two forward filters per draw instead of ~125k gradients (decision 008). A sampled
    dynamic posterior that passes becomes what the next refit may re-weight.
    """
    run.say("model warm" if cache.has(run.scenario_set, run.dynamic) else "compiling")
    compiled, compile_s = cache.get(run.scenario_set, run.evidence, dynamic=run.dynamic)
    base = compiled.base
    if base is not None and run.sampler.reweight and run.sampler.seed is None:
        run.say("re-weighting the last sampled posterior")
        outcome = _reweight(run, base, compile_s)
        if outcome.passed:
            return outcome.rejecting(rejected)
        rejected["psis"] = list(outcome.diagnostics.failures)
        run.say(f"re-weighting failed the gate ({'; '.join(rejected['psis'])}): sampling")
    outcome = _sample_nuts(run, compiled, compile_s)
    if run.dynamic and outcome.passed:
        compiled.base = _Base(evidence_hash=run.evidence_hash, seed=int(run.seed),
                              posterior=outcome.posterior.to_dataset(),
                              loglik=outcome.loglik, diagnostics=outcome.diagnostics)
    return outcome.rejecting(rejected)


def _nuts_model(run: _Run, compiled: _Compiled) -> Any:
    """The compiled model with this evidence, its chains at the mode when dynamic."""
    data = {name: value for name, value in run.arrays.as_data().items()
            if name in compiled.data_names}
    nutpie_model = compiled.nutpie_model.with_data(**data)
    if run.dynamic:
        # Chains started at PyMC's prior-centred points fell, about one in twenty, into a minor
        # mode ~37 nats below the main one (the loose scenario stretched over every period)
        # and stayed: negligible mass, yet a failed r_hat for one fit in five on the bundled
        # set. Starting every chain at the best of several L-BFGS optima (~0.1 s) keeps them
        # in the mode that holds the mass (docs/decisions/006).
        run.say("finding the posterior mode")
        nutpie_model = _start_at_mode(nutpie_model, _posterior_mode(nutpie_model, run.seed))
    return nutpie_model


def _sample_nuts(run: _Run, compiled: _Compiled, compile_s: float) -> _Outcome:
    """Sample with nutpie; a run short only of precision is replaced by a fresh, larger one.

    The fresh run's size comes from the run before it (MCSE shrinks as 1/√draws), and only
    its own draws are used: adding draws until the MCSE passes would stop early exactly when
    the running estimate happens to be low (optional stopping). Runs continue while the time
    budget allows; a fit short of precision then fails saying what it reached.
    """
    nutpie_model = _nuts_model(run, compiled)
    sampler = run.sampler
    draws = sampler.dynamic_draws if run.dynamic else sampler.draws
    tune = sampler.dynamic_tune if run.dynamic else sampler.tune
    chains, runs, sample_s = sampler.chains, 0, 0.0
    while True:
        run.say(f"sampling {chains} × {draws}")
        sample_started = time.perf_counter()
        try:
            datatree = nutpie.sample(
                nutpie_model, draws=draws, tune=tune, chains=chains, cores=sampler.cores,
                seed=run.seed + runs, progress_bar=False, save_warmup=False)
        except Exception as exc:  # the sampler's failures come in many types
            raise FitFailed(f"sampling {run.scenario_set.id} failed: {exc}") from exc
        took = time.perf_counter() - sample_started
        sample_s += took
        runs += 1
        run.say("filtering")
        outcome = _nuts_estimate(run, compiled, datatree)
        fresh = _fresh_run(run, outcome.diagnostics, chains, draws, took)
        if fresh is None:
            break
        if isinstance(fresh, Diagnostics):  # short of precision, and no run can fix it
            outcome = replace(outcome, diagnostics=fresh)
            break
        run.say(f"short of precision ({'; '.join(outcome.diagnostics.failures)}): a fresh run")
        chains, draws = fresh

    record = NutsSampler(draws=draws, tune=tune, chains=outcome.posterior.sizes["chain"],
                         runs=runs, transitions="learned" if run.dynamic else "identity",
                         init="posterior mode ± U(-1, 1)" if run.dynamic
                         else "pymc support point", control_variate=run.control_variate())
    return replace(outcome, sampler=record,
                   timings=Timings(compile_s=compile_s, sample_s=sample_s))


def _nuts_estimate(run: _Run, compiled: _Compiled, datatree: Any) -> _Outcome:
    """One NUTS run's nowcast, path and gate (no sampler record yet).

    Dynamic: each draw's path filtered, the nowcast with the enumerated paths' exact part as
    a control variate, and the gate judging that nowcast's MCSE. Static: the probability is
    exact (the same in every draw), the path the filter at the prior's transitions.
    """
    scenario_set, arrays = run.scenario_set, run.arrays
    k = len(scenario_set.scenarios)
    posterior = datatree["posterior"]
    n_chains = posterior.sizes["chain"]
    loglik = None
    if run.dynamic:
        transitions, filtered, loglik, emissions = filtered_draws(scenario_set, arrays,
                                                                  posterior)
        alpha = _nowcast(scenario_set, transitions, filtered)
        path = filtered.mean(axis=0)
        posterior[PROBABILITY] = xr.DataArray(
            alpha.reshape(n_chains, posterior.sizes["draw"], k),
            dims=("chain", "draw", "scenario"),
            coords={"scenario": list(scenario_set.scenario_ids)})
        adjusted = run.exact.adjusted(alpha, run.exact.within(transitions, emissions))
        probability = adjusted.mean(axis=0)
        diagnostics, mcse = diagnose(datatree, run.gate, mcse=mcse_of(adjusted, n_chains))
    else:
        emissions = compiled.emission_fn(arrays.counts, arrays.exposure, arrays.sumsq,
                                         arrays.tallies)
        path, _ = forward_filter(scenario_set.prior, np.eye(k), emissions)
        alpha = posterior[PROBABILITY].values.reshape(-1, k)
        transitions = np.broadcast_to(np.eye(k), (alpha.shape[0], k, k))
        filtered = path  # the same in every draw: the scenario probability is exact
        diagnostics, mcse = diagnose(datatree, run.gate)
        probability = alpha.mean(axis=0)
    return _Outcome(probability=probability, mcse=mcse, diagnostics=diagnostics, path=path,
                    posterior=posterior, alpha=alpha, transitions=transitions,
                    filtered=filtered, emissions=emissions, datatree=datatree, loglik=loglik)


def _fresh_run(run: _Run, diagnostics: Diagnostics, chains: int, draws: int,
               took: float) -> tuple[int, int] | Diagnostics | None:
    """The size of a fresh NUTS run for one short only of precision.

    None: no fresh run helps (passed, or failed on more than precision). A `Diagnostics`:
    one would, but exceeds ``max_draws`` or the time budget; its last failure says so.
    Short only of precision: MCSE or ESS, or an R̂ a little high with them (chains that mix
    slowly, not chains in different modes).
    """
    gate, sampler = run.gate, run.sampler
    failures = diagnostics.failures
    slow = [f for f in failures if f.startswith("r_hat")]
    precision_only = failures and all(
        f.startswith(("MCSE", "bulk ESS", "r_hat")) for f in failures) and (
        not slow or diagnostics.max_rhat <= SLOW_MIXING_RHAT)
    if not precision_only:
        return None
    # size the fresh run from this one: MCSE ∝ 1/√draws, ESS ∝ draws; more chains when
    # only the MCSE is short (they run in parallel), longer ones when mixing is slow
    factor = 1.2 * max((diagnostics.max_mcse / gate.max_mcse) ** 2,
                       gate.min_ess_bulk / max(diagnostics.min_ess_bulk, 1.0),
                       2.0 if slow else 1.0)
    if slow or any(f.startswith("bulk ESS") for f in failures):
        new_draws, new_chains = int(np.ceil(draws * factor / 100)) * 100, chains
    else:
        new_draws = draws
        new_chains = int(np.ceil(factor * chains / sampler.chains)) * sampler.chains
    too_many = new_draws * new_chains > sampler.max_draws * sampler.chains
    predicted = took * (new_draws * new_chains) / (draws * chains)
    if not too_many and time.perf_counter() + predicted <= run.deadline:
        return new_chains, new_draws
    note = (f" after {chains} × {draws} draws; a fresh run of "
            f"{new_chains} × {new_draws} would be needed")
    note += (" but exceeds max_draws" if too_many
             else f" (~{predicted:.0f} s) but not within the fit's time budget")
    return replace(diagnostics, failures=(*failures[:-1], failures[-1] + note))


def _parameter_means(scenario_set: ScenarioSet, posterior: Any) -> dict[str, dict[str, Any]]:
    """Posterior mean of each indicator's parameter per scenario: ``{indicator: {s: mean}}``."""
    parameters: dict[str, dict[str, float]] = {}
    scenarios = [str(s) for s in scenario_set.scenario_ids]
    for kind, _, specs in kind_groups(scenario_set):
        if kind.parameter not in posterior:
            continue
        values = posterior[kind.parameter].values  # (chain, draw, J_kind, K[, L])
        values = values.reshape(-1, *values.shape[2:])
        for j, spec in enumerate(specs):
            parameters[spec.id] = kind.summarise(spec, values[:, j], scenarios)
    return parameters


def _summarise(run: _Run, outcome: _Outcome) -> Fit:
    """The :class:`Fit` of an estimator's outcome: parameters, forecasts, the record."""
    scenario_set, posterior = run.scenario_set, outcome.posterior
    probability, mcse = np.asarray(outcome.probability), np.asarray(outcome.mcse)
    path = outcome.path
    if run.dynamic and path.shape[0]:
        path[-1] = probability  # the last period's filtered probability is the nowcast
    draws = Draws(alpha=np.ascontiguousarray(outcome.alpha),
                  transition=np.ascontiguousarray(outcome.transitions),
                  n_chains=posterior.sizes["chain"], filtered=outcome.filtered,
                  log_emission=outcome.emissions)
    outlook = outlook_summary(scenario_set, run.evidence, run.arrays, draws, posterior,
                              nowcast=(probability, mcse))
    record = FitRecord(
        set_id=scenario_set.id,
        set_hash=scenario_set.content_hash,
        evidence_hash=run.evidence_hash,
        seed=int(run.seed),
        scenarios=tuple(
            ScenarioResult(id=s.id, name=s.name, prior=s.prior,
                           probability=float(probability[i]), mcse=float(mcse[i]))
            for i, s in enumerate(scenario_set.scenarios)),
        diagnostics=outcome.diagnostics,
        sampler=outcome.sampler,
        versions=library_versions(),
        timings=outcome.timings.rounded(time.perf_counter() - run.started),
        parameters=_parameter_means(run.scenario_set, posterior),
        path=PathRecord(periods=tuple(run.arrays.labels),
                        probability=tuple(tuple(row) for row in path.tolist())),
        outlook=Outlook.from_dict(outlook),
    )
    return Fit(record=record, path=path, datatree=outcome.datatree)
