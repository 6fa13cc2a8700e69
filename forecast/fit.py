"""Fitting: sample the model, check the diagnostics gate, summarise into a :class:`Fit`.

The sampler is nutpie on a model compiled once per scenario set and kept in a
:class:`ModelCache`; each refit swaps in new evidence with ``with_data`` (design.md: a first
``pm.sample`` costs ~20 s, a warm ``with_data`` + sample 0.25 s).
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from typing import Any

import numpy as np
import nutpie
import pytensor
import xarray as xr
from arviz_stats.base import array_stats
from scipy.optimize import minimize

from forecast.compiled import compile_pymc_model
from forecast.exceptions import FitFailed
from forecast.hmm import forward_filter
from forecast.horizon import Draws, outlook_summary, transition_draws
from forecast.model import (
    KIND_PARAMETER,
    EvidenceArrays,
    build_model,
    log_emission,
    regime_loglik,
    transition_rows,
)
from forecast.ops import filter_draws
from indicators import Evidence
from priors import ScenarioSet

PROBABILITY = "scenario_probability"


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample (apart from the model): draws, tuning, chains and seed."""

    draws: int = 1000
    tune: int = 500
    dynamic_draws: int = 1800  # per chain when dynamic (MCSE ≈ 0.004 on the bundled set);
    # more chains only when the gate fails on MCSE alone: cheaper on median than more every time
    dynamic_tune: int = 300
    max_draws: int = 8000  # cap on the added chains: at most max_draws // draws runs of chains
    chains: int = 4
    cores: int = 2
    seed: int | None = None  # a seed asks for a sampler run of its own (never re-weighted)
    # dynamic sets: re-weight the last sampled posterior for new evidence (PSIS, decision 008)
    # and sample only when the re-weighted one fails the gate
    reweight: bool = True
    # a sampled dynamic fit's MCSE target as a share of the gate's: below 1, headroom for the
    # refits that will re-weight it (the service's long-lived worker uses 0.7)
    base_mcse: float = 1.0


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


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario of a fit: prior, posterior probability and its Monte Carlo error."""

    id: str
    name: str
    prior: float
    probability: float
    mcse: float


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics and the verdict of the gate."""

    max_rhat: float
    min_ess_bulk: float
    divergences: int
    max_mcse: float
    passed: bool
    failures: tuple[str, ...] = ()
    pareto_k: float | None = None  # re-weighted fits only: PSIS's k̂ of the importance ratios

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {**asdict(self), "failures": list(self.failures)}


@dataclass
class Fit:
    """Everything one fit produced, self-describing enough to be reproduced.

    Attributes
    ----------
    scenarios : tuple of ScenarioResult
        Per scenario: prior, probability, MCSE (0 where the number is exact).
    path : numpy.ndarray
        (T, K) filtered probabilities ``P(z_t = k | y_1..t)`` for every period.
    parameters : dict
        Posterior mean of each indicator's parameter under each scenario:
        ``{indicator: {scenario: value}}``.
    datatree : xarray.DataTree
        The ArviZ DataTree of the sampler run.

    """

    set_id: str
    set_hash: str
    scenarios: tuple[ScenarioResult, ...]
    diagnostics: Diagnostics
    evidence_hash: str
    seed: int
    sampler: dict[str, Any]
    versions: dict[str, str]
    timings: dict[str, float]
    path: np.ndarray
    period_labels: tuple[str, ...]
    parameters: dict[str, dict[str, float]]
    outlook: dict[str, Any] = field(default_factory=dict)
    datatree: Any = field(repr=False, default=None)

    @property
    def probabilities(self) -> np.ndarray:
        """(K,) posterior scenario probabilities."""
        return np.array([s.probability for s in self.scenarios])

    @property
    def passed(self) -> bool:
        """Whether the diagnostics gate passed."""
        return self.diagnostics.passed

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no DataTree)."""
        return {
            "set_id": self.set_id,
            "set_hash": self.set_hash,
            "evidence_hash": self.evidence_hash,
            "scenarios": [asdict(s) for s in self.scenarios],
            "diagnostics": self.diagnostics.to_dict(),
            "seed": self.seed,
            "sampler": self.sampler,
            "versions": self.versions,
            "timings": self.timings,
            "parameters": self.parameters,
            "path": {"periods": list(self.period_labels), "probability": self.path.tolist()},
            "outlook": self.outlook,
        }


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
        self._lock = threading.Lock()

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
                emission_fn = pytensor.function(
                    [counts, exposure, sumsq],
                    log_emission(scenario_set, counts, exposure, sumsq),
                    on_unused_input="ignore",  # sumsq is unused when a set has no signal
                )
            model = build_model(scenario_set, evidence, dynamic=dynamic)
            nutpie_model = compile_pymc_model(model)  # nutpie's, with cacheable callbacks
            compiled = _Compiled(model, nutpie_model, emission_fn)
            self._models[key] = compiled
            return compiled, time.perf_counter() - started

    def clear(self) -> None:
        """Forget every compiled model."""
        with self._lock:
            self._models.clear()


DEFAULT_CACHE = ModelCache()


def _join_chains(runs: list[Any]) -> Any:
    """One DataTree of several sampler runs' posterior and sample stats, chains renumbered."""
    if len(runs) == 1:
        return runs[0]
    groups = {}
    for group in ("posterior", "sample_stats"):
        parts = [run[group].to_dataset() for run in runs]
        common = set.intersection(*(set(part.data_vars) for part in parts))
        parts = [part[[name for name in parts[0].data_vars if name in common]]
                 for part in parts]  # what a fit added to its first run is recomputed
        joined = xr.concat(parts, dim="chain", coords="minimal", compat="override",
                           join="override")
        groups[group] = joined.assign_coords(chain=np.arange(joined.sizes["chain"]))
    return xr.DataTree.from_dict(groups)


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


def diagnose(datatree: Any, gate: GateSettings) -> tuple[Diagnostics, np.ndarray]:
    """Apply the gate to a sampler run.

    Scenario probabilities that are identical in every draw are exact (the collapsed static
    model): their MCSE is 0 and they cannot fail r_hat or ESS; the sampled parameters still
    must.

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
    mcse = np.zeros(prob.shape[-1])
    varying = [k for k in range(prob.shape[-1]) if not _constant(prob[..., k])]
    # one stacked (chain, draw, quantity) array: ArviZ's array functions once, not per variable
    stacked = np.concatenate(sampled + [prob[..., varying]], axis=2)
    rhats: list[float] = []
    esss: list[float] = []
    if stacked.shape[2]:
        rhats = list(array_stats.rhat(stacked, chain_axis=0, draw_axis=1))
        esss = list(array_stats.ess(stacked, chain_axis=0, draw_axis=1, method="bulk"))
    if varying:
        mcse[varying] = array_stats.mcse(prob[..., varying], chain_axis=0, draw_axis=1)
    else:
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
                   posterior: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-draw transition matrices, filtered probabilities and log-likelihoods (dynamic fits).

    Rao-Blackwellised: ``P(z_t | y_1..t, A_s, θ_s)`` in closed form for each posterior draw
    s, so the path's Monte Carlo error is only that of (A, θ).

    Returns
    -------
    transitions : (S, K, K) ndarray
    filtered : (S, T, K) ndarray
    loglik : (S,) ndarray
        ``log p(y | A_s, θ_s)`` up to terms free of (A, θ).

    """
    transitions = transition_draws(scenario_set, posterior)
    n_samples = transitions.shape[0]
    theta = {name: posterior[name].values.reshape(n_samples, *posterior[name].shape[2:])
             for name in KIND_PARAMETER.values() if name in posterior}
    emissions = regime_loglik(scenario_set, arrays.counts, arrays.exposure, theta, math=np)
    filtered, loglik = filter_draws(transitions, np.ascontiguousarray(emissions),
                                    np.asarray(scenario_set.prior, dtype=float))
    return transitions, filtered, loglik


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


def _reweight(scenario_set: ScenarioSet, arrays: EvidenceArrays, base: _Base,
              gate: GateSettings, seed: int, chains: int, draws: int) -> dict[str, Any]:
    """The base posterior re-weighted for new evidence by Pareto-smoothed importance sampling.

    Proposal: the base posterior p(A, θ | y_base); target: p(A, θ | y). The prior cancels, so
    each draw's ratio is ``p(y | A_s, θ_s) / p(y_base | A_s, θ_s)``, two forward filters.
    The gate applies what the sampled fits' gate measures to this estimator: the base's R̂ and
    divergences, k̂ ≤ min(1 − 1/log10 S, 0.7) (Vehtari et al. 2024), the base's least ESS
    scaled by the weights' efficiency, and each probability's MCSE from the weighted variance
    and the draws' relative efficiency (as `loo`'s ``E_loo``). The draws kept for what is
    computed per draw downstream are ``chains`` × ``draws`` resampled by weight.
    """
    posterior = base.posterior
    n_chains = posterior.sizes["chain"]
    transitions, filtered, loglik = filtered_draws(scenario_set, arrays, posterior)
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
    probability = weights @ alpha
    efficiency = _relative_efficiency(alpha, n_chains)
    mcse = np.sqrt((weights**2) @ (alpha - probability) ** 2 / efficiency)
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
             else _systematic_resample(weights, n_out, np.random.default_rng(seed)))

    def resampled(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(n_samples, *values.shape[2:])[index]
        return flat.reshape(chains, draws, *values.shape[2:])

    kept = {name: (posterior[name].dims, resampled(posterior[name].values))
            for name in posterior.data_vars if name != PROBABILITY}
    kept[PROBABILITY] = (("chain", "draw", "scenario"),
                         resampled(alpha.reshape(n_chains, -1, alpha.shape[-1])))
    coords = {name: values for name, values in posterior.coords.items()
              if name not in ("chain", "draw")}
    kept_draws = xr.Dataset(kept, coords={**coords, "chain": np.arange(chains),
                                          "draw": np.arange(draws),
                                          "scenario": list(scenario_set.scenario_ids)})
    kept_draws.attrs = {
        "signpost_method": "PSIS re-weighting of a sampled posterior, resampled",
        "signpost_base_evidence_hash": base.evidence_hash, "signpost_base_seed": base.seed}
    return {"probability": probability, "mcse": mcse, "diagnostics": diagnostics,
            "path": np.einsum("s,stk->tk", weights, filtered), "posterior": kept_draws,
            "alpha": alpha[index], "transitions": transitions[index],
            "datatree": xr.DataTree.from_dict({"posterior": kept_draws})}


def fit(scenario_set: ScenarioSet, evidence: Evidence, settings: FitSettings | None = None,
        cache: ModelCache | None = None,
        progress: Callable[[str], None] | None = None) -> Fit:
    """Fit one scenario set to one evidence snapshot.

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
    settings = settings or FitSettings()
    cache = cache if cache is not None else DEFAULT_CACHE
    say = progress or (lambda message: None)
    started = time.perf_counter()
    arrays = EvidenceArrays.select(scenario_set, evidence)
    evidence_hash = evidence.hash()
    seed = settings.sampler.seed
    if seed is None:
        seed = _seed_for(evidence_hash, scenario_set.content_hash)

    dynamic = bool(settings.dynamic and transition_rows(scenario_set))
    say("model warm" if cache.has(scenario_set, dynamic) else "compiling")
    compiled, compile_s = cache.get(scenario_set, evidence, dynamic=dynamic)
    base = compiled.base
    rejected: tuple[str, ...] = ()
    if base is not None and settings.sampler.reweight and settings.sampler.seed is None:
        # One more observation moves the posterior little: re-weighting the last sampled one
        # costs two forward filters per draw instead of ~125k gradients (decision 008).
        say("re-weighting the last sampled posterior")
        reweighted = _reweight(scenario_set, arrays, base, settings.gate, seed,
                               settings.sampler.chains, settings.sampler.dynamic_draws)
        if reweighted["diagnostics"].passed:
            sampler = {"name": "psis", "draws": settings.sampler.dynamic_draws,
                       "chains": settings.sampler.chains,  # kept: resampled by weight
                       "base_chains": int(base.posterior.sizes["chain"]),
                       "transitions": "learned", "base_evidence_hash": base.evidence_hash,
                       "base_seed": base.seed}
            say("forecasting")
            return _summarise(scenario_set, evidence, arrays, reweighted, sampler, seed,
                              evidence_hash, {"compile_s": compile_s, "sample_s": 0.0},
                              started)
        rejected = reweighted["diagnostics"].failures
        say(f"re-weighting failed the gate ({'; '.join(rejected)}): sampling")
    data = {name: value for name, value in arrays.as_data().items()
            if name in compiled.data_names}
    nutpie_model = compiled.nutpie_model.with_data(**data)
    if dynamic:
        # Chains started at PyMC's prior-centred points fell, about one in twenty, into a minor
        # mode ~37 nats below the main one (the loose scenario stretched over every period)
        # and stayed: negligible mass, yet a failed r_hat for one fit in five on the bundled
        # set. Starting every chain at the best of several L-BFGS optima (~0.1 s) keeps them
        # in the mode that holds the mass (docs/decisions/006).
        say("finding the posterior mode")
        nutpie_model = _start_at_mode(nutpie_model, _posterior_mode(nutpie_model, seed))
    k = len(scenario_set.scenarios)
    draws_per_chain = settings.sampler.dynamic_draws if dynamic else settings.sampler.draws
    tune = settings.sampler.dynamic_tune if dynamic else settings.sampler.tune
    chains = settings.sampler.chains
    # Monte Carlo error shrinks as 1/sqrt(draws): when precision is all a fit misses, more
    # chains of the same length (seeds seed + 1, …) join the ones already drawn — converged
    # draws are kept, not thrown away — up to max_draws per chain's worth of chains.
    max_batches = max(1, settings.sampler.max_draws // draws_per_chain)
    target_mcse = settings.gate.max_mcse * (
        settings.sampler.base_mcse if dynamic and settings.sampler.reweight else 1.0)
    runs: list[Any] = []
    sample_s = 0.0
    new_chains = chains
    while True:
        say(f"sampling {new_chains} × {draws_per_chain}")
        sample_started = time.perf_counter()
        try:
            runs.append(nutpie.sample(
                nutpie_model, draws=draws_per_chain, tune=tune, chains=new_chains,
                cores=settings.sampler.cores, seed=seed + len(runs),
                progress_bar=False, save_warmup=False,
            ))
        except Exception as exc:  # the sampler's failures come in many types
            raise FitFailed(f"sampling {scenario_set.id} failed: {exc}") from exc
        sample_s += time.perf_counter() - sample_started
        datatree = _join_chains(runs)

        say("filtering")
        posterior = datatree["posterior"]
        n_chains = posterior.sizes["chain"]
        if dynamic:
            transitions, filtered, loglik = filtered_draws(scenario_set, arrays, posterior)
            alpha = _nowcast(scenario_set, transitions, filtered)
            path = filtered.mean(axis=0)
            posterior[PROBABILITY] = xr.DataArray(
                alpha.reshape(n_chains, posterior.sizes["draw"], k),
                dims=("chain", "draw", "scenario"),
                coords={"scenario": list(scenario_set.scenario_ids)})
        else:
            emissions = compiled.emission_fn(arrays.counts, arrays.exposure, arrays.sumsq)
            path, _ = forward_filter(scenario_set.prior, np.eye(k), emissions)
            alpha = posterior[PROBABILITY].values.reshape(-1, k)
            transitions = np.broadcast_to(np.eye(k), (alpha.shape[0], k, k))
        diagnostics, mcse = diagnose(datatree, settings.gate)
        only_mcse = diagnostics.failures and all(f.startswith("MCSE")
                                                 for f in diagnostics.failures)
        # a sampled dynamic posterior is what later refits re-weight, which costs precision:
        # it is drawn to `base_mcse` of the gate's MCSE so that several refits can reuse it
        short = diagnostics.passed and diagnostics.max_mcse > target_mcse
        batches = n_chains // chains
        if not (only_mcse or short) or batches >= max_batches:
            break
        wanted = int(np.ceil(batches * 1.2 * (diagnostics.max_mcse / target_mcse)**2))
        new_chains = chains * (min(max_batches, max(wanted, batches + 1)) - batches)

    if dynamic and diagnostics.passed:  # what the next refit may re-weight
        compiled.base = _Base(evidence_hash=evidence_hash, seed=int(seed),
                              posterior=posterior.to_dataset(), loglik=loglik,
                              diagnostics=diagnostics)
    sampler = {"name": "nutpie", "draws": draws_per_chain, "tune": tune,
               "chains": n_chains, "runs": len(runs),  # run i sampled with seed + i
               "transitions": "learned" if dynamic else "identity",
               "init": "posterior mode ± U(-1, 1)" if dynamic else "pymc support point"}
    if rejected:
        sampler["reweight_rejected"] = list(rejected)
    say("forecasting")
    outcome = {"probability": alpha.mean(axis=0), "mcse": mcse, "diagnostics": diagnostics,
               "path": path, "posterior": posterior, "alpha": alpha,
               "transitions": transitions, "datatree": datatree}
    return _summarise(scenario_set, evidence, arrays, outcome, sampler, seed, evidence_hash,
                      {"compile_s": compile_s, "sample_s": sample_s}, started)


def _summarise(scenario_set: ScenarioSet, evidence: Evidence, arrays: EvidenceArrays,
               outcome: dict[str, Any], sampler: dict[str, Any], seed: int,
               evidence_hash: str, timings: dict[str, float], started: float) -> Fit:
    """The :class:`Fit` of a sampled or re-weighted posterior: parameters, forecasts, record.

    ``outcome`` holds the scenario ``probability`` and its ``mcse``, the ``diagnostics``, the
    filtered ``path``, equally weighted ``posterior`` draws with their per-draw ``alpha``
    (nowcast) and ``transitions``, and the ``datatree`` to keep.
    """
    posterior = outcome["posterior"]
    parameters: dict[str, dict[str, float]] = {}
    for kind, name in (("count", "rate"), ("milestone", "hazard"), ("signal", "level")):
        if name not in posterior:
            continue
        means = posterior[name].mean(dim=("chain", "draw"))
        for indicator_id in means.coords[f"{kind}_indicator"].values:
            row = means.sel({f"{kind}_indicator": indicator_id})
            parameters[str(indicator_id)] = {
                str(s): float(row.sel(scenario=s)) for s in row.coords["scenario"].values
            }

    draws = Draws(alpha=np.ascontiguousarray(outcome["alpha"]),
                  transition=np.ascontiguousarray(outcome["transitions"]),
                  n_chains=posterior.sizes["chain"])
    outlook = outlook_summary(scenario_set, evidence, arrays, draws, posterior)

    probability, mcse = outcome["probability"], outcome["mcse"]
    scenarios = tuple(
        ScenarioResult(id=s.id, name=s.name, prior=s.prior,
                       probability=float(probability[i]), mcse=float(mcse[i]))
        for i, s in enumerate(scenario_set.scenarios)
    )
    return Fit(
        set_id=scenario_set.id,
        set_hash=scenario_set.content_hash,
        scenarios=scenarios,
        diagnostics=outcome["diagnostics"],
        evidence_hash=evidence_hash,
        seed=int(seed),
        sampler=sampler,
        versions=library_versions(),
        timings={**{key: round(value, 4) for key, value in timings.items()},
                 "total_s": round(time.perf_counter() - started, 4)},
        path=outcome["path"],
        period_labels=arrays.labels,
        parameters=parameters,
        outlook=outlook,
        datatree=outcome["datatree"],
    )
