"""The PyMC model: a hidden Markov model over periods with the emissions collapsed.

Structure (see docs/decisions/001-collapsed-estimator.md):

* The evidence enters as ``pm.Data`` (``counts``, ``exposure``, ``sumsq``; periods ×
  indicators), so one compiled model serves every refit.
* Under a fixed scenario each indicator's parameter has a conjugate prior, so the evidence of
  each (indicator, scenario) has a closed-form marginal likelihood. The per-period emission of
  scenario k is the sequential predictive ``log m_k(y_1..t) − log m_k(y_1..t−1)``: by the chain
  rule these sum to the full marginal, so with identity transitions the HMM's filtered
  probabilities are *exactly* the static conjugate posterior, and nothing about the scenario
  probability is left to sample.
* What is sampled are the per-scenario parameters θ[j, k] given "scenario k is in force" (the
  conditional posteriors, each unimodal), which predictions and summaries need. Sampling them
  jointly with a latent scenario would create one posterior mode per scenario, where NUTS gets
  stuck (docs/design.md, "Why not NUTS over everything").
* With learned transitions (``dynamics:``) the scenario changes over time and θ[j, k] is the
  parameter *while k is in force*: the emissions are the per-period likelihoods given θ
  (`regime_loglik`), the path is summed out by the forward algorithm, and NUTS samples θ with
  the transition rows (docs/decisions/005).

Nothing here touches a database, the network or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from forecast.ops import regime_hmm_loglik
from indicators import Evidence
from indicators.kinds import KINDS, NUMPY, Kind, categories, get_kind, own_tallies
from indicators.kinds import category_width as kinds_category_width
from priors import ScenarioSet

#: each kind's parameter name, in registry order (``rate``, ``hazard``, ``level``, …)
KIND_PARAMETER = {name: get_kind(name).parameter for name in KINDS}
#: the coordinate of a categorical parameter's last axis (a level's categories)
CATEGORY = "category"


def kind_columns(scenario_set: ScenarioSet, kind: str) -> list[int]:
    """Positions of the set's indicators of one kind, in the set's order."""
    return [j for j, spec in enumerate(scenario_set.indicators) if spec.kind == kind]


def kind_groups(scenario_set: ScenarioSet) -> list[tuple[Kind, list[int], list]]:
    """``(kind, columns, specs)`` for each registered kind the set uses, in registry order."""
    groups = []
    for name in KINDS:
        idx = kind_columns(scenario_set, name)
        if idx:
            groups.append((get_kind(name), idx, [scenario_set.indicators[j] for j in idx]))
    return groups


def category_width(scenario_set: ScenarioSet) -> int:
    """The most categories any of the set's indicators has (0: no categorical kind)."""
    return kinds_category_width(scenario_set.catalog_indicators)


@dataclass(frozen=True)
class EvidenceArrays:
    """The set's columns of an Evidence object, in the set's indicator order.

    ``tallies`` (T, J, L) holds the categorical kinds' Σ w per category (L = 0 without any).
    ``by_kind`` holds ``regime_statistics`` (T, F): every kind's statistics the per-regime
    log likelihood is linear in (`indicators.kinds.Kind.regime_statistics`), concatenated in
    registry order, as the dynamic model's Op reads them.
    """

    counts: np.ndarray
    exposure: np.ndarray
    sumsq: np.ndarray
    labels: tuple[str, ...]
    by_kind: dict[str, np.ndarray]
    tallies: np.ndarray | None = None

    @classmethod
    def select(cls, scenario_set: ScenarioSet, evidence: Evidence) -> EvidenceArrays:
        """Pick the set's indicator columns out of ``evidence``.

        Raises
        ------
        KeyError
            If the evidence lacks one of the set's indicators.

        """
        cols = [evidence.column(i) for i in scenario_set.indicator_ids]
        counts = np.ascontiguousarray(evidence.counts[:, cols], dtype=float)
        exposure = np.ascontiguousarray(evidence.exposure[:, cols], dtype=float)
        width = category_width(scenario_set)
        tallies = np.zeros((counts.shape[0], len(cols), width))
        have = min(width, evidence.tallies.shape[2])
        tallies[:, :, :have] = evidence.tallies[:, cols, :have]
        statistics = [kind.regime_statistics(specs, counts[:, idx], exposure[:, idx],
                                             tallies[:, idx])
                      for kind, idx, specs in kind_groups(scenario_set)]
        return cls(
            counts=counts,
            exposure=exposure,
            sumsq=np.ascontiguousarray(evidence.sumsq[:, cols], dtype=float),
            labels=tuple(evidence.grid.labels),
            by_kind={"regime_statistics": np.ascontiguousarray(
                np.concatenate(statistics, axis=1) if statistics
                else np.zeros((counts.shape[0], 0)))},
            tallies=tallies,
        )

    def as_data(self) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values by name."""
        data = {"counts": self.counts, "exposure": self.exposure, "sumsq": self.sumsq,
                **self.by_kind}
        if self.tallies is not None and self.tallies.shape[2]:
            data["tallies"] = self.tallies
        return data


def log_marginal(scenario_set: ScenarioSet, counts, exposure, sumsq, tallies=None, math=pt):
    """Closed-form log marginal likelihood of cumulative statistics, per scenario.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies each indicator's kind and conjugate parameters.
    counts, exposure, sumsq : TensorVariable or ndarray
        (..., J) sufficient statistics summed over the periods of interest.
    tallies : TensorVariable or ndarray, optional
        (..., J, L) the categorical kinds' summed tallies (needed when the set has any).
    math : module
        ``pytensor.tensor`` (default) or `indicators.kinds.NUMPY` (arrays).

    Returns
    -------
    TensorVariable
        (..., J, K) log marginal likelihood (scenario-independent constants dropped).

    """
    columns = []
    for j, spec in enumerate(scenario_set.indicators):
        kind = get_kind(spec.kind)
        c = None if tallies is None else own_tallies(spec.indicator, tallies[..., j, :])
        columns.append(kind.log_marginal(spec, counts[..., j, None], exposure[..., j, None],
                                         sumsq[..., j, None], c, math=math))
    return math.stack(columns, axis=-2)


def log_emission(scenario_set: ScenarioSet, counts, exposure, sumsq, tallies=None, math=pt):
    """Per-period sequential predictive log density of the evidence, per scenario.

    ``log_emission[t, k] = Σ_j log m_jk(y_1..t) − log m_jk(y_1..t−1)``; the rows sum to the
    full log marginal likelihood.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies each indicator's kind and conjugate parameters.
    counts, exposure, sumsq : TensorVariable or ndarray
        (T, J) the evidence columns.
    tallies : TensorVariable or ndarray, optional
        (T, J, L) the categorical kinds' tallies (needed when the set has any).
    math : module
        ``pytensor.tensor`` (default) or `indicators.kinds.NUMPY` (arrays in, an array out).

    Returns
    -------
    TensorVariable or ndarray
        (T, K)

    """
    def cumulative(x):
        zero = math.zeros((1, *(x.shape[i] for i in range(1, x.ndim))))
        return math.concatenate([zero, math.cumsum(x, axis=0)], axis=0)

    cum = log_marginal(scenario_set, cumulative(counts), cumulative(exposure), cumulative(sumsq),
                       None if tallies is None else cumulative(math.as_tensor(tallies)),
                       math=math)
    return (cum[1:] - cum[:-1]).sum(axis=1)


def period_loglik(kind: str, theta, counts, exposure, sumsq, noise_sd: float | None = None):
    """Per-period tempered log likelihood of one indicator given its parameter.

    With the normalising terms (``log n!``, the signal's ``log 2πσ²``) the kinds' own
    per-regime terms drop; for the three scalar kinds only (a test's reference).

    Parameters
    ----------
    kind : {"count", "milestone", "signal"}
        The indicator kind.
    theta : array_like
        (K,) the parameter per scenario: rate, hazard or signal level.
    counts, exposure, sumsq : array_like
        (T,) the indicator's evidence column.
    noise_sd : float, optional
        Known noise of a signal.

    Returns
    -------
    TensorVariable
        (T, K) log likelihood, including the scenario-independent terms.

    """
    theta = pt.as_tensor(theta)[None, :]
    n = pt.as_tensor(counts)[:, None]
    e = pt.as_tensor(exposure)[:, None]
    if kind == "count":
        mean = theta * e
        return pt.switch(pt.eq(n, 0), -mean, n * pt.log(mean) - mean - pt.gammaln(n + 1))
    if kind == "milestone":
        return pt.switch(pt.gt(n, 0), n * pt.log(theta), 0.0) + (e - n) * pt.log1p(-theta)
    q = pt.as_tensor(sumsq)[:, None]
    var = noise_sd**2
    return -(q - 2 * theta * n + theta**2 * e) / (2 * var) - 0.5 * e * np.log(2 * np.pi * var)


def transition_rows(scenario_set: ScenarioSet) -> list[tuple[int, list[int], np.ndarray]]:
    """The free rows of the transition matrix and their Dirichlet concentrations.

    Returns
    -------
    list of (row, columns, concentration)
        ``columns`` starts with the row itself (stay), then the allowed moves; a scenario
        with no allowed move is absorbing and has no free row.

    """
    dynamics = scenario_set.dynamics
    if dynamics is None:
        return []
    index = {s: i for i, s in enumerate(scenario_set.scenario_ids)}
    rows = []
    for source, targets in dynamics.moves.items():
        if not targets:
            continue
        share = (1.0 - dynamics.stay) / len(targets)
        centre = np.array([dynamics.stay] + [share] * len(targets))
        rows.append((index[source], [index[source]] + [index[t] for t in targets],
                     dynamics.concentration * centre))
    return rows


def regime_loglik(scenario_set: ScenarioSet, counts, exposure, parameters, math=pt,
                  tallies=None):
    """Per-period log likelihood of the evidence given each scenario's own parameters.

    The term of the forward algorithm when the parameters are sampled: period t under
    scenario k contributes ``Σ_j log p(y_tj | θ[j, k])``. Terms that depend neither on θ nor on
    k (``log n!``, the signal's ``Σ w y²``) are dropped: they shift every scenario of a period
    alike, which leaves the filter and the gradient unchanged. Each kind's term is linear in
    its statistics (`indicators.kinds.Kind.features`), so it is one matrix product per kind.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies each indicator's kind and, for signals, the known noise.
    counts, exposure : array_like or TensorVariable
        (T, J) the set's evidence columns.
    parameters : mapping
        Each kind's parameter name (`KIND_PARAMETER`) → (..., J_kind, K[, L]) values, one
        entry per kind present.
    math : module
        ``pytensor.tensor`` inside the model, ``numpy`` for posterior draws.
    tallies : array_like or TensorVariable, optional
        (T, J, L) the categorical kinds' tallies (needed when the set has any).

    Returns
    -------
    (..., T, K) array or TensorVariable

    """
    math = NUMPY if math is np else math
    total = 0.0
    for kind, idx, specs in kind_groups(scenario_set):
        statistics = kind.regime_statistics(specs, counts[:, idx], exposure[:, idx],
                                            None if tallies is None else tallies[:, idx],
                                            math=math)
        total = total + statistics @ kind.features(specs, parameters[kind.parameter],
                                                   math=math)
    return total


def _regime_likelihood(scenario_set: ScenarioSet, moves, parameters, statistics):
    """``log p(y | A, θ)`` through the fused `RegimeHMM` Op (the math of `regime_loglik`).

    ``moves`` are the free rows of `transition_rows`, concatenated in that order;
    ``statistics`` the (T, F) data of `EvidenceArrays.by_kind`. The Op sees the features
    φ(θ) (F, K) only; PyTensor carries the gradient from φ back to θ.
    """
    rows, columns = zip(*[(row, column) for row, columns, _ in transition_rows(scenario_set)
                          for column in columns], strict=True)
    features = pt.concatenate([kind.features(specs, parameters[kind.parameter], math=pt)
                               for kind, _, specs in kind_groups(scenario_set)], axis=0)
    return regime_hmm_loglik(moves, rows, columns, np.asarray(scenario_set.prior, dtype=float),
                             features, statistics)


def build_model(scenario_set: ScenarioSet, evidence: Evidence,
                dynamic: bool | None = None) -> pm.Model:
    """Build the Signpost model of one scenario set on one evidence snapshot.

    Parameters
    ----------
    scenario_set : ScenarioSet
        The question: scenarios, priors, expectations.
    evidence : Evidence
        Must hold every indicator of the set; other columns are ignored.
    dynamic : bool or None, optional
        Learn the transition matrix (default: whenever the set's dynamics allow a move).
        Without it the transitions are the identity and the scenario probability is exact.

    Returns
    -------
    pymc.Model
        Data ``counts``, ``exposure``, ``sumsq`` (and, when dynamic, the per-kind statistics of
        `EvidenceArrays.by_kind`); free variables ``rate``, ``hazard``,
        ``level`` (one per kind present, dims (kind_indicator, scenario)) and, when dynamic,
        one Dirichlet ``transition_<scenario>`` per free row; when static, the deterministic
        ``scenario_probability`` (scenario).

    Notes
    -----
    Static: the scenario never changes, its probability is the closed-form
    ``softmax(log prior + Σ_j log m[j, k])``, and NUTS samples θ[j, k] given "k in force"
    (conjugate, unimodal). Dynamic: θ[j, k] is the parameter *while k is in force*, learned
    only from the periods the path spends in k; the path is summed out by the forward
    algorithm and NUTS samples θ with the transition rows; emissions, forward–backward and the
    gradient w.r.t. (A, θ) are one numba Op (`forecast.ops.RegimeHMM`).

    Pooling all periods into every θ_k, as the collapsed emissions of the static model
    do, lets a scenario's parameter learn from evidence produced under another and makes
    forecasts under-confident (docs/decisions/005).

    """
    rows = transition_rows(scenario_set)
    if dynamic is None:
        dynamic = bool(rows)
    dynamic = dynamic and bool(rows)  # a set whose scenarios cannot move is static
    arrays = EvidenceArrays.select(scenario_set, evidence)
    coords: dict[str, list[str]] = {
        "scenario": list(scenario_set.scenario_ids),
        "indicator": list(scenario_set.indicator_ids),
    }
    groups = kind_groups(scenario_set)
    for kind, _, specs in groups:
        coords[f"{kind.lookup_name}_indicator"] = [s.id for s in specs]
    width = category_width(scenario_set)
    if width:
        coords[CATEGORY] = list(range(width))

    with pm.Model(coords=coords) as model:
        counts = pm.Data("counts", arrays.counts)
        exposure = pm.Data("exposure", arrays.exposure)
        sumsq = pm.Data("sumsq", arrays.sumsq)
        tallies = pm.Data("tallies", arrays.tallies) if width else None

        parameters = {}
        for kind, _, specs in groups:
            dims = (f"{kind.lookup_name}_indicator", "scenario")
            parameters[kind.parameter] = kind.pymc_prior(
                specs, kind.parameter,
                dims + ((CATEGORY,) if categories(specs[0].indicator) else ()), pm, pt)

        if dynamic:
            free_rows = []
            for row, columns, concentration in rows:
                source = scenario_set.scenario_ids[row]
                dim = f"from_{source}"
                model.add_coord(dim, [scenario_set.scenario_ids[c] for c in columns])
                free_rows.append(pm.Dirichlet(f"transition_{source}", a=concentration,
                                              dims=dim))
            statistics = pm.Data("regime_statistics", arrays.by_kind["regime_statistics"])
            pm.Potential("regime_likelihood", _regime_likelihood(
                scenario_set, pt.concatenate(free_rows), parameters, statistics))
        else:
            total_n, total_e, total_q = (x.sum(axis=0) for x in (counts, exposure, sumsq))
            total_c = None if tallies is None else tallies.sum(axis=0)
            # not a Deterministic: it is data, the same in every draw (ExactPosterior has it)
            log_m = log_marginal(scenario_set, total_n, total_e, total_q, total_c)
            log_post = np.log(scenario_set.prior) + log_m.sum(axis=0)
            pm.Deterministic("scenario_probability", pt.special.softmax(log_post),
                             dims="scenario")
            # θ[j, k] given "k in force throughout": the likelihood of the totals, as one period
            pm.Potential("parameter_likelihood", regime_loglik(
                scenario_set, total_n[None, :], total_e[None, :], parameters,
                tallies=None if total_c is None else total_c[None]).sum())
    return model
