"""Explaining a posterior: attribution, leave-one-out influence, robustness and what-if.

Pure computations on a scenario set, its evidence and (for dynamic sets) the posterior draws
of a published fit; nothing here reads a database or a clock.

Attribution (`indicator_log_likelihoods`)
    Each indicator's conjugate log marginal likelihood of its whole evidence column under
    each scenario held throughout. For a static set these are the terms of the exact
    posterior, ``softmax(log prior + Σ_j row_j)``, so a row is that indicator's share of the
    answer (in nats). For a dynamic set the same numbers are defined — scenario k in force in
    every period, its parameters under its own prior — but they are a *per-scenario reading*
    of the evidence, not a decomposition of the dynamic posterior, which sums over scenario
    paths and learns each θ only from the periods a path spends in its scenario.

Posterior under other evidence (`scenario_posterior`, `what_if`)
    Static sets: exact. Dynamic sets: the draws (A_s, θ_s) of a fit made on evidence ``base``
    re-weighted to the new evidence by Pareto-smoothed importance sampling (PSIS; ArviZ's
    ``psislw``): ``log w_s = log p(y | A_s, θ_s) − log p(y_base | A_s, θ_s)`` by two forward
    filters, and ``P(z_T = k | y) ≈ Σ_s w_s P(z_T = k | y, A_s, θ_s) / Σ_s w_s``: exact given
    each draw, PSIS re-weighted over the draws. Its MCSE is that of a self-normalised
    importance sampling estimate; ``pareto_k`` says whether the draws cover the new posterior
    (above 0.7 they do not: refit instead).

Leave-one-out influence and robustness (`observation_influence`)
    For each live observation: the posterior without it and with it re-graded F6 (the least
    weight a grade gives). The coverage of each indicator is held as it was for the published
    evidence: what was looked at does not change when one report is dropped, so a period
    stays quiet (covered, nothing logged) rather than becoming missing. An observation is
    *critical* when removing it changes the most probable scenario.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from arviz_stats.base import array_stats
from scipy.special import logsumexp

from forecast.exact import exact_posterior
from forecast.horizon import mcse_of, transition_draws
from forecast.inputs import evidence_through
from forecast.model import (
    KIND_PARAMETER,
    EvidenceArrays,
    kind_groups,
    log_marginal,
    transition_rows,
)
from forecast.ops import filter_draws
from indicators import (
    DEFAULT_GRADES,
    Coverage,
    Evidence,
    GradeTable,
    build_evidence,
    make_grid,
    period_exposure,
)
from indicators.kinds import NUMPY, Sums, get_kind
from priors import ScenarioSet

__all__ = ["Estimate", "Influence", "ObservationRow", "evidence_from_rows",
           "indicator_log_likelihoods", "observation_influence", "resampled_posterior",
           "scenario_posterior", "what_if"]

#: ``(observation_id, date, indicator, value, grade)``; ``grade`` is an Admiralty grade
#: (None: the grade table's default) or the weight stored with the observation (a number).
ObservationRow = tuple[Hashable, dt.date, str, float, "str | float | None"]

#: the grade a report is re-graded to for the robustness check: the least weight there is
LEAST_GRADE = "F6"
#: log-ratios spreading less than this are one constant: the evidence did not change for θ
_UNIFORM = 1e-9
#: the variable of a fit's posterior holding each draw's nowcast under the fit's own evidence
_PROBABILITY = "scenario_probability"


def _arrays_equal(a: Any, b: Any, names: Sequence[str]) -> bool:
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


@dataclass(frozen=True, eq=False)
class Estimate:
    """A scenario posterior and how it was obtained.

    Attributes
    ----------
    probability : numpy.ndarray
        (K,) ``P(z_T = k | evidence)``, in the set's scenario order.
    mcse : numpy.ndarray
        (K,) Monte Carlo standard error (0 where exact).
    method : str
        ``"exact"`` (static set, closed form), ``"draws"`` (the draws' plain average: the
        evidence is the fit's own, as far as the draws can tell) or ``"reweighted"`` (PSIS
        re-weighting of the draws).
    pareto_k : float or None
        The Pareto k̂ of the importance weights (None when exact or the weights are all
        equal). Above 0.7 the estimate is not reliable.
    ess : float or None
        Kish's effective sample size of the weights, ``1 / Σ w²`` (None when exact).
    weights : numpy.ndarray or None
        (S,) the normalised weights of the draws, flattened in (chain, draw) order (None when
        exact); left out of equality and ``repr``. `resampled_posterior` takes them.

    """

    probability: np.ndarray
    mcse: np.ndarray
    method: str
    pareto_k: float | None = None
    ess: float | None = None
    weights: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Estimate):
            return NotImplemented
        return _arrays_equal(self, other, ("probability", "mcse", "method", "pareto_k", "ess"))

    __hash__ = None  # type: ignore[assignment]  # arrays: not hashable


@dataclass(frozen=True, eq=False)
class Influence:
    """What one observation does to the posterior.

    Attributes
    ----------
    observation_id : hashable
        The observation's id, as given.
    delta_log_probability : numpy.ndarray
        (K,) ``log P(k | all) − log P(k | all without it)``: positive where it raised k.
    probability_without : numpy.ndarray
        (K,) the posterior without it.
    probability_if_f6 : numpy.ndarray
        (K,) the posterior with it re-graded F6 (weight 0.04 in the default table).
    delta_log_probability_if_f6 : numpy.ndarray
        (K,) ``log P(k | all) − log P(k | it re-graded F6)``.
    mcse : numpy.ndarray
        (K,) MCSE of ``probability_without`` (0 when exact).
    mcse_delta : numpy.ndarray
        (K,) MCSE of ``delta_log_probability`` (0 when exact): both terms come from the same
        draws, so it is smaller than the two terms' errors added.
    critical : bool
        The most probable scenario changes when it is removed.

    """

    observation_id: Hashable
    delta_log_probability: np.ndarray
    probability_without: np.ndarray
    probability_if_f6: np.ndarray
    delta_log_probability_if_f6: np.ndarray
    mcse: np.ndarray
    mcse_delta: np.ndarray
    critical: bool

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Influence):
            return NotImplemented
        return _arrays_equal(self, other, [f.name for f in dataclasses.fields(self)])

    __hash__ = None  # type: ignore[assignment]


# -- attribution ----------------------------------------------------------------------------


def indicator_log_likelihoods(scenario_set: ScenarioSet, evidence: Evidence) -> np.ndarray:
    """Each indicator's log marginal likelihood of its evidence under each scenario.

    Parameters
    ----------
    scenario_set : ScenarioSet
        The set (its dynamics, if any, are not used: see Notes).
    evidence : Evidence
        Holds the set's indicators.

    Returns
    -------
    numpy.ndarray
        (J, K), rows in the set's indicator order: the conjugate marginal of the column's
        summed statistics under scenario k held throughout (the kinds' ``log_marginal``),
        with the same scenario-free constants dropped as the exact posterior, so that
        ``softmax(log prior + Σ_j row_j)`` is `forecast.exact.exact_posterior`'s probability.

    Raises
    ------
    UnknownIndicator
        If the evidence lacks one of the set's indicators.

    Notes
    -----
    For a dynamic set the numbers are a per-scenario reading of the evidence (scenario k in
    force in every period), not a decomposition of its posterior over scenario paths.

    """
    arrays = EvidenceArrays.select(scenario_set, evidence)
    return np.asarray(log_marginal(scenario_set, arrays.counts.sum(axis=0),
                                   arrays.exposure.sum(axis=0), arrays.sumsq.sum(axis=0),
                                   arrays.tallies.sum(axis=0), math=NUMPY), dtype=float)


def _log_posterior(scenario_set: ScenarioSet, log_likelihoods: np.ndarray) -> np.ndarray:
    """(K,) normalised log posterior of a static set from its (J, K) terms."""
    log_post = np.log(np.asarray(scenario_set.prior, dtype=float)) + log_likelihoods.sum(axis=0)
    top = log_post.max()
    return log_post - (top + np.log(np.exp(log_post - top).sum()))


def _is_dynamic(scenario_set: ScenarioSet, dynamic: bool) -> bool:
    return bool(dynamic and transition_rows(scenario_set))


# -- posterior under other evidence ---------------------------------------------------------


def _as_dataset(posterior: Any) -> xr.Dataset:
    """The posterior group as a Dataset (a DataTree, its ``posterior`` node, or a Dataset)."""
    if isinstance(posterior, xr.DataTree):
        node = posterior["posterior"] if "posterior" in posterior.children else posterior
        return node.to_dataset()
    if isinstance(posterior, xr.Dataset):
        return posterior
    raise TypeError(f"posterior: expected an xarray Dataset or DataTree of draws, got "
                    f"{type(posterior).__name__}")


def _relative_efficiency(values: np.ndarray, n_chains: int) -> np.ndarray:
    """ESS / S of the mean of each column of (S, Q) ``values`` over the chains (at most 1)."""
    values = values.reshape(values.shape[0], -1)
    out = np.ones(values.shape[1])
    varying = np.ptp(values, axis=0) > 1e-15
    n_draws = values.shape[0] // n_chains
    if varying.any() and n_draws >= 4:
        chained = values[: n_chains * n_draws, varying].reshape(n_chains, n_draws, -1)
        ess = np.asarray(array_stats.ess(chained, chain_axis=0, draw_axis=1, method="mean"))
        out[varying] = np.clip(np.nan_to_num(ess / values.shape[0], nan=1.0), 1e-6, 1.0)
    return out


#: most bytes the per-period joints of `_Draws.prepare` may take (else: filter restarts)
_JOINT_BYTES = 256 * 2**20


class _Draws:
    """A fit's posterior draws with their forward filter on the base evidence.

    Each kind's per-regime log likelihood is linear in its statistics
    (`forecast.model.regime_loglik`): ``E[s, t, k] = Σ_f stat[t, f] φ_f(θ_s)_k``, so new
    evidence changes the emissions of its changed periods only, by ``Δstat @ φ``.

    * A change confined to one period t (one count, signal or level report) is exact from
      the base filter: with ``J_t(k, j) = P(z_t = k, z_T = j | y, A, θ)`` (one backward pass
      gives it for every period, `prepare`), ``p(y' | A, θ) / p(y | A, θ) = Σ_k γ_t(k)
      e^{ΔE_t(k)}`` (γ_t the smoothed state) and ``P(z_T = j | y') ∝ Σ_k J_t(k, j)
      e^{ΔE_t(k)}``: O(K²) per draw.
    * Otherwise each draw's filter restarts at the first changed period, from its predicted
      state there (`forecast.ops.filter_draws`).

    The relative efficiencies of the draws (their chains' ESS / S), which the MCSE and the
    PSIS tail need, are those of the base's nowcast and log-likelihood, computed once.
    """

    def __init__(self, scenario_set: ScenarioSet, posterior: Any, base: Evidence) -> None:
        posterior = _as_dataset(posterior)
        self.scenario_set, self.base = scenario_set, base
        self.n_chains = int(posterior.sizes["chain"])
        k = len(scenario_set.scenarios)
        self.prior = np.asarray(scenario_set.prior, dtype=float)
        try:
            transitions = transition_draws(scenario_set, posterior)
            n = transitions.shape[0]
            theta = {name: posterior[name].values.reshape(n, *posterior[name].shape[2:])
                     for name in KIND_PARAMETER.values() if name in posterior}
            features = np.concatenate(
                [kind.features(specs, theta[kind.parameter], math=NUMPY)
                 for kind, _, specs in kind_groups(scenario_set)], axis=-2)  # (S, F, K)
        except KeyError as exc:
            raise ValueError(f"posterior: no variable {exc} for set '{scenario_set.id}'; "
                             "give the posterior draws of a dynamic fit of this set") from None
        self.transitions = np.ascontiguousarray(transitions)
        self.n_draws = n
        self.phi = np.ascontiguousarray(features.transpose(1, 0, 2).reshape(-1, n * k))
        self.statistics = EvidenceArrays.select(scenario_set, base).by_kind["regime_statistics"]
        self.emissions = self._emissions(self.statistics)
        self.filtered, self.loglik = filter_draws(self.transitions, self.emissions, self.prior)
        # the state predicted for each period before its evidence, and the log likelihood of
        # the periods before it: where a changed period's filter restarts
        predicted = np.empty_like(self.filtered)
        predicted[:, :1] = self.prior
        predicted[:, 1:] = np.einsum("stk,skj->stj", self.filtered[:, :-1], self.transitions)
        with np.errstate(divide="ignore"):
            self.log_c = logsumexp(np.log(predicted) + self.emissions, axis=2)  # (S, T)
        self.predicted = predicted
        self.before = np.concatenate([np.zeros((n, 1)), np.cumsum(self.log_c, axis=1)], axis=1)
        self.alpha = self._nowcast(self.filtered)
        self.efficiency = _relative_efficiency(self.alpha, self.n_chains)
        self.r_eff = float(_relative_efficiency(self.loglik[:, None], self.n_chains)[0])
        self.joints: dict[int, np.ndarray] = {}

    def _emissions(self, statistics: np.ndarray) -> np.ndarray:
        t_len, k = statistics.shape[0], len(self.prior)
        out = (statistics @ self.phi).reshape(t_len, self.n_draws, k)
        return np.ascontiguousarray(out.transpose(1, 0, 2))

    def _nowcast(self, filtered: np.ndarray) -> np.ndarray:
        if filtered.shape[1] == 0:
            return np.broadcast_to(self.prior, (self.n_draws, len(self.prior))).copy()
        return filtered[:, -1, :]

    def prepare(self, periods) -> None:
        """Keep ``J_t(k, j) = P(z_t = k, z_T = j | y, A_s, θ_s)`` (S, K, K) for ``periods``.

        By one backward pass: ``J_t = diag(α_t) R_t`` with ``R_T = I`` and ``R_{t−1}(k, j) =
        Σ_m A(k, m) g_t(m) R_t(m, j)``, ``g_t(m) = p(y_t | m) / p(y_t | y_1..t−1)``.
        Skipped (filter restarts instead) if they would take more than `_JOINT_BYTES`.
        """
        t_len, k = self.emissions.shape[1], len(self.prior)
        wanted = sorted({int(t) for t in periods if 0 <= t < t_len} - set(self.joints))
        if not wanted or self.n_draws * k * k * 8 * (len(wanted) + len(self.joints)) \
                > _JOINT_BYTES:
            return
        first = wanted[0]
        ratio = np.broadcast_to(np.eye(k), (self.n_draws, k, k)).copy()
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(t_len - 1, first - 1, -1):
                if t in wanted:
                    alpha = self.filtered[:, t, :, None]
                    self.joints[t] = np.where(alpha > 0, alpha * ratio, 0.0)
                if t > first:
                    g = np.exp(self.emissions[:, t] - self.log_c[:, t, None])
                    ratio = (self.transitions * g[:, None, :]) @ ratio

    def filter(self, evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
        """(S, K) each draw's nowcast and (S,) log-likelihood on ``evidence``."""
        if evidence.grid != self.base.grid:
            raise ValueError(
                "evidence and base must share one period grid (same periods, same start): "
                f"got {evidence.n_periods} periods from {evidence.grid.labels[:1]} against "
                f"{self.base.n_periods} from {self.base.grid.labels[:1]}; re-weighting "
                "compares likelihoods over the same periods — refit for another grid")
        statistics = EvidenceArrays.select(self.scenario_set, evidence).by_kind[
            "regime_statistics"]
        if statistics.shape != self.statistics.shape:
            raise ValueError(f"evidence statistics {statistics.shape} do not match the base's "
                             f"{self.statistics.shape}")
        change = statistics - self.statistics
        changed = np.flatnonzero(np.any(change != 0.0, axis=1))
        if changed.size == 0:
            return self.alpha, self.loglik
        k = len(self.prior)
        delta = (change[changed] @ self.phi).reshape(changed.size, self.n_draws, k)
        start = int(changed[0])
        if changed.size == 1 and start in self.joints:
            shift = delta[0].max(axis=1)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                tilted = np.einsum("skj,sk->sj", self.joints[start],
                                   np.exp(delta[0] - shift[:, None]))
                ratio = tilted.sum(axis=1)
                alpha, loglik = tilted / ratio[:, None], self.loglik + shift + np.log(ratio)
            if np.isfinite(alpha).all() and np.isfinite(loglik).all():
                return alpha, loglik
        emissions = self.emissions[:, start:].copy()
        emissions[:, changed - start] += delta.transpose(1, 0, 2)
        # the restart's "prior" is each draw's own predicted state: folded into the first
        # period's emission, with a flat prior (log 0 = −inf where a move is impossible)
        with np.errstate(divide="ignore"):
            emissions[:, 0] += np.log(self.predicted[:, start])
        filtered, tail = filter_draws(self.transitions, emissions, np.ones(k))
        return filtered[:, -1, :], self.before[:, start] + tail

    def estimate(self, evidence: Evidence) -> tuple[Estimate, np.ndarray]:
        """The re-weighted estimate on ``evidence`` and the draws' nowcasts (S, K) on it."""
        alpha, loglik = self.filter(evidence)
        log_ratio = loglik - self.loglik
        if np.isnan(log_ratio).any() or np.isposinf(log_ratio).any():
            raise ValueError("the base evidence is impossible under some draw: was the "
                             "posterior fitted on `base`?")
        n = self.n_draws
        if np.ptp(log_ratio) < _UNIFORM:
            return Estimate(probability=alpha.mean(axis=0), mcse=mcse_of(alpha, self.n_chains),
                            method="draws", pareto_k=None, ess=float(n),
                            weights=np.full(n, 1.0 / n)), alpha
        log_ratio = np.maximum(log_ratio, log_ratio.max() - 1e4)  # −inf: a weight of 0
        try:
            # ArviZ's psislw takes a log-likelihood, as LOO has, and negates it into log ratios
            log_weights, khat = array_stats.psislw(-log_ratio, r_eff=self.r_eff)
            khat = float(khat)
        except ValueError:  # the tail's values are all one: nothing to smooth
            log_weights, khat = log_ratio, None
        weights = np.exp(log_weights - np.max(log_weights))
        weights /= weights.sum()
        probability = weights @ alpha
        mcse = np.sqrt((weights**2) @ (alpha - probability) ** 2 / self.efficiency)
        return Estimate(probability=probability, mcse=mcse, method="reweighted",
                        pareto_k=khat, ess=float(1.0 / np.sum(weights**2)),
                        weights=weights), alpha


def scenario_posterior(scenario_set: ScenarioSet, evidence: Evidence, *,
                       posterior: Any = None, base: Evidence | None = None,
                       dynamic: bool = True) -> Estimate:
    """The scenario posterior on ``evidence``.

    Parameters
    ----------
    scenario_set : ScenarioSet
        The set.
    evidence : Evidence
        The evidence to condition on (holding the set's indicators).
    posterior : xarray.Dataset or xarray.DataTree, optional
        Dynamic sets: the posterior draws of a fit made on ``base`` — its artifact's
        ``posterior`` group (dims chain, draw, …; a DataTree's ``posterior`` node is taken).
    base : Evidence, optional
        The evidence ``posterior`` was fitted on (default: ``evidence`` itself).
    dynamic : bool
        Learn the transitions of a set with dynamics (default); False reads it as static.

    Returns
    -------
    Estimate
        Static: exact (`forecast.exact.exact_posterior`), MCSE 0, method ``"exact"``.
        Dynamic: the draws re-weighted from ``base`` to ``evidence`` by PSIS, each draw's
        ``P(z_T = k | evidence, A_s, θ_s)`` exact; method ``"reweighted"``, or ``"draws"``
        when the weights are all equal (the plain average, its MCSE from the chains' ESS).

    Raises
    ------
    ValueError
        A dynamic set without ``posterior``; ``evidence`` and ``base`` on different period
        grids; a posterior lacking the set's variables.

    """
    if not _is_dynamic(scenario_set, dynamic):
        k = len(scenario_set.scenarios)
        return Estimate(probability=exact_posterior(scenario_set, evidence).probability,
                        mcse=np.zeros(k), method="exact")
    if posterior is None:
        raise ValueError(f"set '{scenario_set.id}' is dynamic: give the posterior draws of a "
                         "fit (its artifact's posterior group) and the evidence it was fitted "
                         "on as base, or dynamic=False to read it as static")
    estimate, _ = _Draws(scenario_set, posterior, evidence if base is None else base
                         ).estimate(evidence)
    return estimate


def what_if(scenario_set: ScenarioSet, evidence: Evidence, *, posterior: Any = None,
            base: Evidence | None = None, dynamic: bool = True) -> Estimate:
    """The posterior if the evidence were ``evidence`` (a changed copy of ``base``).

    `scenario_posterior` on the changed evidence: exact for a static set; for a dynamic set
    the fit's draws (made on ``base``) re-weighted by PSIS. Check ``pareto_k`` (≤ 0.7) before
    trusting a dynamic answer; `resampled_posterior` turns ``Estimate.weights`` into draws to
    forecast from.

    Parameters
    ----------
    scenario_set, evidence, posterior, base, dynamic
        As `scenario_posterior`.

    Returns
    -------
    Estimate

    """
    return scenario_posterior(scenario_set, evidence, posterior=posterior, base=base,
                              dynamic=dynamic)


def _systematic(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` equally weighted draws, increasing (systematic resampling)."""
    positions = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(weights), positions), weights.shape[0] - 1)


def resampled_posterior(posterior: Any, weights: np.ndarray, n: int,
                        seed: int | np.random.Generator | None = None) -> xr.Dataset:
    """Posterior draws resampled by importance weights, to forecast from.

    Parameters
    ----------
    posterior : xarray.Dataset or xarray.DataTree
        The draws the weights belong to (dims chain, draw, …).
    weights : numpy.ndarray
        (chain × draw,) non-negative weights in flattened (chain, draw) order, as
        ``Estimate.weights``; normalised here.
    n : int
        How many draws to keep.
    seed : int or numpy.random.Generator, optional
        The systematic resampling's one uniform.

    Returns
    -------
    xarray.Dataset
        One chain of ``n`` equally weighted draws of every variable but
        ``scenario_probability``, which held each draw's nowcast under the fit's own evidence
        and is left out (recompute it on the new evidence).

    Raises
    ------
    ValueError
        If the weights do not match the draws, are negative or sum to 0, or ``n < 1``.

    """
    posterior = _as_dataset(posterior)
    total = posterior.sizes["chain"] * posterior.sizes["draw"]
    weights = np.asarray(weights, dtype=float).reshape(-1)
    if weights.shape[0] != total:
        raise ValueError(f"weights: {weights.shape[0]} for {total} draws (chain × draw)")
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise ValueError("weights must be finite, ≥ 0 and not all 0")
    if n < 1:
        raise ValueError(f"n: at least one draw, got {n}")
    index = _systematic(weights / weights.sum(), int(n), np.random.default_rng(seed))
    stacked = posterior.drop_vars(_PROBABILITY, errors="ignore").stack(
        sample=("chain", "draw"))
    kept = stacked.isel(sample=index).drop_vars(["sample", "chain", "draw"])
    kept = kept.rename({"sample": "draw"}).expand_dims(chain=[0])
    kept = kept.assign_coords(draw=np.arange(int(n)))
    order = {name: ("chain", "draw", *[d for d in posterior[name].dims
                                      if d not in ("chain", "draw")])
             for name in kept.data_vars}
    kept = xr.Dataset({name: kept[name].transpose(*dims) for name, dims in order.items()},
                      attrs={**posterior.attrs,
                             "signpost_method": "draws resampled by importance weights"})
    return kept


# -- evidence from observation rows ---------------------------------------------------------


def _weight(grade: Any, grades: GradeTable) -> float:
    """An observation's weight: its grade's (None: the default grade's), or a stored weight."""
    if grade is None or isinstance(grade, str):
        return grades.weight(grade)
    if isinstance(grade, numbers.Real) and not isinstance(grade, bool):
        return float(grade)
    raise TypeError(f"grade: an Admiralty grade such as 'B2' or a stored weight, got {grade!r}")


def _coverage_dates(coverage: Coverage | Mapping[str, dt.date | None] | None
                    ) -> dict[str, dt.date | None] | None:
    if coverage is None:
        return None
    if isinstance(coverage, Coverage):
        return coverage.dates()
    return dict(coverage)


def _grid_and_cut(scenario_set: ScenarioSet, as_of: dt.date | None):
    through = evidence_through(scenario_set, as_of)
    return make_grid(scenario_set.period, scenario_set.start, through), through


def evidence_from_rows(scenario_set: ScenarioSet, rows: Sequence[ObservationRow], *,
                       as_of: dt.date | None,
                       coverage: Coverage | Mapping[str, dt.date | None] | None,
                       grades: GradeTable = DEFAULT_GRADES) -> Evidence:
    """The set's evidence from its live observation rows, as `forecast.set_evidence` builds it.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies the period grid and the indicators.
    rows : sequence of (observation_id, date, indicator, value, grade)
        The live observations; ``grade`` an Admiralty grade (None: the table's default) or
        the weight stored with the observation. Other indicators' rows are ignored.
    as_of : datetime.date or None
        The evidence date (capped at the set's end; None: the end).
    coverage : Coverage or mapping of indicator to date (or None), or None
        Each indicator's coverage, as used for the published evidence; None: every period
        through ``as_of`` counts.
    grades : GradeTable
        Grade → weight.

    Returns
    -------
    Evidence
        Equal (same ``hash()``) to the stored evidence of the same rows and coverage.

    """
    grid, through = _grid_and_cut(scenario_set, as_of)
    weighted = [(d, indicator, float(value), _weight(grade, grades))
                for _, d, indicator, value, grade in rows]
    return build_evidence(grid, scenario_set.catalog_indicators, weighted, as_of=through,
                          coverage=_coverage_dates(coverage))


class _Variants:
    """The evidence of the rows with one of them left out, or re-weighted.

    Only that row's indicator column changes. Each column is rebuilt by its kind's
    ``evidence`` from the per-period sums of its rows (`indicators.kinds.Sums`, what
    `indicators.evidence_from_aggregates` hands the kinds), each row placed in its period and
    cut at its indicator's coverage as `build_evidence` does. That costs microseconds, where
    a rebuild through `build_evidence` costs milliseconds; the columns of all rows are
    checked against `build_evidence` once, and where they disagree every variant is built
    through it instead (``fast`` False).
    """

    def __init__(self, scenario_set: ScenarioSet, rows: Sequence[ObservationRow],
                 as_of: dt.date | None, coverage: Any, grades: GradeTable,
                 fast: bool = True) -> None:
        self.scenario_set, self.grades = scenario_set, grades
        self.rows = list(rows)
        self.as_of = as_of
        self.grid, self.through = _grid_and_cut(scenario_set, as_of)
        self.coverage = _coverage_dates(coverage)
        self.full = evidence_from_rows(scenario_set, self.rows, as_of=as_of,
                                       coverage=self.coverage, grades=grades)
        ids = scenario_set.indicator_ids
        self.column = np.array([ids.index(r[2]) if r[2] in ids else -1 for r in self.rows],
                               dtype=np.int64)
        self.weight = np.array([_weight(r[4], grades) for r in self.rows], dtype=float)
        self.value = np.array([float(r[3]) for r in self.rows], dtype=float)
        grid = self.grid
        first = grid.starts[0].year * 12 + grid.starts[0].month - 1 if len(grid) else 0
        dates = [_day(r[1]) for r in self.rows]
        self.offset = np.array([(d.year * 12 + d.month - 1 - first) // grid.months_per_period
                                for d in dates], dtype=np.int64)
        self.cuts: list[dt.date | None] = []
        self.exposures: list[np.ndarray] = []
        self.stratum = np.zeros(len(self.rows), dtype=np.int64)
        self.kept = np.zeros(len(self.rows), dtype=bool)
        for j, spec in enumerate(scenario_set.indicators):
            cut = self.through
            if self.coverage is not None:
                cut = self.coverage.get(spec.id)
                cut = None if cut is None else min(_day(cut), self.through)
            self.cuts.append(cut)
            self.exposures.append(np.zeros(len(grid)) if cut is None
                                  else period_exposure(grid, cut))
            mine = np.flatnonzero(self.column == j)
            if not mine.size:
                continue
            kind = get_kind(spec.kind)
            v = self.value[mine]
            self.stratum[mine] = kind.strata(spec.indicator, np.where(np.isfinite(v), v, 0.0))
            offsets = self.offset[mine]
            covered = np.array([cut is not None and dates[i] <= cut for i in mine])
            self.kept[mine] = covered & (offsets < len(grid)) & (
                (offsets >= 0) | kind.reads_before_window)
        self.fast = fast and self._agrees()

    def _agrees(self) -> bool:
        """Whether the columns built here from all rows are those of `build_evidence`."""
        everything = np.ones(len(self.rows), dtype=bool)
        full = self.full
        for j in range(len(self.scenario_set.indicators)):
            counts, exposure, sumsq, tallies = self._column(j, everything, self.weight)
            width = tallies.shape[1]
            if not (np.allclose(counts, full.counts[:, j], rtol=1e-12, atol=1e-12)
                    and np.allclose(exposure, full.exposure[:, j], rtol=1e-12, atol=1e-12)
                    and np.allclose(sumsq, full.sumsq[:, j], rtol=1e-12, atol=1e-12)
                    and np.allclose(tallies, full.tallies[:, j, :width], rtol=1e-12,
                                    atol=1e-12)):
                return False
        return True

    def _column(self, j: int, include: np.ndarray, weight: np.ndarray):
        """Column j's counts, exposure, sumsq (T,) and tallies (T, L) from the rows included."""
        spec = self.scenario_set.indicators[j]
        kind = get_kind(spec.kind)
        t_len = len(self.grid)
        strata = max(kind.n_strata(spec.indicator), 1)
        rows = np.flatnonzero(include & self.kept & (self.column == j))
        inside = rows[self.offset[rows] >= 0]
        t, w, v = self.offset[inside], weight[inside], self.value[inside]

        def table(values: np.ndarray) -> np.ndarray:
            return np.bincount(t, weights=values, minlength=t_len)[:, None]

        max_w = np.zeros(t_len)
        np.maximum.at(max_w, t, w)
        by_stratum = np.bincount(t * strata + self.stratum[inside], weights=w,
                                 minlength=t_len * strata).reshape(t_len, 1, strata)
        sums = Sums(n_obs=table(np.ones(t.size)), sum_w=table(w), sum_wv=table(w * v),
                    sum_wvv=table(w * v * v), max_w=max_w[:, None], by_stratum=by_stratum,
                    before=np.array([bool((self.offset[rows] < 0).any())]))
        stats = kind.evidence(spec.indicator, sums, 0, self.exposures[j])
        sumsq = np.zeros(t_len) if stats.sumsq is None else stats.sumsq
        tallies = np.zeros((t_len, 0)) if stats.tallies is None else stats.tallies
        return stats.counts, stats.exposure, sumsq, tallies

    def periods(self) -> np.ndarray:
        """The periods of the grid that hold a counted row."""
        t = self.offset[self.kept]
        return np.unique(t[(t >= 0) & (t < len(self.grid))])

    def variant(self, i: int, weight: float | None = None) -> Evidence:
        """The evidence without row ``i`` (``weight`` None) or with its weight ``weight``."""
        j = int(self.column[i])
        if j < 0:
            return self.full
        if not self.fast:
            rows = [r for m, r in enumerate(self.rows) if m != i]
            if weight is not None:
                rows.insert(i, (*self.rows[i][:4], weight))
            return evidence_from_rows(self.scenario_set, rows, as_of=self.as_of,
                                      coverage=self.coverage, grades=self.grades)
        include = np.ones(len(self.rows), dtype=bool)
        weights = self.weight
        if weight is None:
            include[i] = False
        else:
            weights = weights.copy()
            weights[i] = weight
        column = self._column(j, include, weights)
        full = self.full
        counts, exposure, sumsq = full.counts.copy(), full.exposure.copy(), full.sumsq.copy()
        tallies = full.tallies.copy()
        counts[:, j], exposure[:, j], sumsq[:, j] = column[:3]
        tallies[:, j, :] = 0.0
        tallies[:, j, :column[3].shape[1]] = column[3]
        return dataclasses.replace(full, counts=counts, exposure=exposure, sumsq=sumsq,
                                   tallies=tallies)


def _day(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


# -- leave-one-out influence ----------------------------------------------------------------


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


def observation_influence(scenario_set: ScenarioSet, rows: Sequence[ObservationRow], *,
                          as_of: dt.date | None,
                          coverage: Coverage | Mapping[str, dt.date | None] | None,
                          grades: GradeTable = DEFAULT_GRADES, posterior: Any = None,
                          base: Evidence | None = None,
                          dynamic: bool = True) -> list[Influence]:
    """Each observation's leave-one-out influence on the posterior, and its F6 robustness.

    Parameters
    ----------
    scenario_set : ScenarioSet
        The set.
    rows : sequence of (observation_id, date, indicator, value, grade)
        The set's live observations (see `evidence_from_rows`).
    as_of : datetime.date or None
        The evidence date of the published evidence.
    coverage : Coverage or mapping of indicator to date (or None), or None
        The coverage the published evidence used. It is held fixed: what was looked at does
        not change when one report is dropped (its period stays covered and becomes quiet).
    grades : GradeTable
        Grade → weight; its F6 weight is the re-grading's.
    posterior : xarray.Dataset or xarray.DataTree, optional
        Dynamic sets: the published fit's posterior draws.
    base : Evidence, optional
        The evidence ``posterior`` was fitted on (default: the evidence of all ``rows``).
    dynamic : bool
        As `scenario_posterior`.

    Returns
    -------
    list of Influence
        One per row, in order.

    Raises
    ------
    ValueError
        As `scenario_posterior`.

    Notes
    -----
    Static sets: exact. Dynamic sets: every term is exact given each draw (A_s, θ_s) and
    PSIS re-weighted over the draws (`scenario_posterior`); the full-evidence term and each
    leave-one-out term come from the same draws (the full one, when it is the base, their
    plain average), so their Monte Carlo errors largely cancel in the difference. A row
    whose observation never entered the evidence (another indicator, after its coverage)
    has no influence.

    """
    variants = _Variants(scenario_set, rows, as_of, coverage, grades)
    full = variants.full
    least = grades.weight(LEAST_GRADE)
    k = len(scenario_set.scenarios)
    if _is_dynamic(scenario_set, dynamic):
        if posterior is None:
            raise ValueError(f"set '{scenario_set.id}' is dynamic: give the posterior draws "
                             "of its published fit (and the evidence it was fitted on as base)")
        draws = _Draws(scenario_set, posterior, full if base is None else base)
        draws.prepare(variants.periods())
        everything, alpha_all = draws.estimate(full)

        def posterior_of(evidence: Evidence):
            estimate, alpha = draws.estimate(evidence)
            # delta method over the draws: both estimates are weighted means of them
            p, q = everything.probability, estimate.probability
            influence = (everything.weights[:, None] * (alpha_all - p) / p
                         - estimate.weights[:, None] * (alpha - q) / q)
            with np.errstate(invalid="ignore", divide="ignore"):
                spread = np.sqrt(np.sum(influence**2, axis=0) / draws.efficiency)
            return estimate.probability, estimate.mcse, np.nan_to_num(spread, nan=np.inf)
        log_all = _log(everything.probability)
        probability_all = everything.probability
    else:
        log_all = _log_posterior(scenario_set, indicator_log_likelihoods(scenario_set, full))
        probability_all = np.exp(log_all)

        def posterior_of(evidence: Evidence):
            log_post = _log_posterior(scenario_set,
                                      indicator_log_likelihoods(scenario_set, evidence))
            return np.exp(log_post), np.zeros(k), np.zeros(k)

    out = []
    leader = int(np.argmax(probability_all))
    for i, row in enumerate(variants.rows):
        without, mcse, mcse_delta = posterior_of(variants.variant(i))
        f6, _, _ = posterior_of(variants.variant(i, weight=least))
        out.append(Influence(
            observation_id=row[0],
            delta_log_probability=log_all - _log(without),
            probability_without=without,
            probability_if_f6=f6,
            delta_log_probability_if_f6=log_all - _log(f6),
            mcse=mcse, mcse_delta=mcse_delta,
            critical=int(np.argmax(without)) != leader))
    return out
