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
from priors import ScenarioSet

KIND_PARAMETER = {"count": "rate", "milestone": "hazard", "signal": "level"}


def kind_columns(scenario_set: ScenarioSet, kind: str) -> list[int]:
    """Positions of the set's indicators of one kind, in the set's order."""
    return [j for j, spec in enumerate(scenario_set.indicators) if spec.kind == kind]


@dataclass(frozen=True)
class EvidenceArrays:
    """The set's columns of an Evidence object, in the set's indicator order.

    ``by_kind`` holds the same statistics split by indicator kind, each a contiguous
    (T, J_kind) array, as the dynamic model's Op reads them: ``count_events``,
    ``count_exposure``, ``milestone_events``, ``milestone_exposure``, and the signals' scaled
    by their known noise, ``signal_events`` = ``Σ w y / σ²``, ``signal_exposure`` =
    ``Σ w / (2 σ²)``.
    """

    counts: np.ndarray
    exposure: np.ndarray
    sumsq: np.ndarray
    labels: tuple[str, ...]
    by_kind: dict[str, np.ndarray]

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
        by_kind = {}
        for kind in KIND_PARAMETER:
            idx = kind_columns(scenario_set, kind)
            events, exposed = counts[:, idx], exposure[:, idx]
            if kind == "signal":
                noise_var = np.array([scenario_set.indicators[j].noise_sd**2 for j in idx])
                events, exposed = events / noise_var, exposed / (2 * noise_var)
            by_kind[f"{kind}_events"] = np.ascontiguousarray(events)
            by_kind[f"{kind}_exposure"] = np.ascontiguousarray(exposed)
        return cls(
            counts=counts,
            exposure=exposure,
            sumsq=np.ascontiguousarray(evidence.sumsq[:, cols], dtype=float),
            labels=tuple(evidence.grid.labels),
            by_kind=by_kind,
        )

    def as_data(self) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values by name."""
        return {"counts": self.counts, "exposure": self.exposure, "sumsq": self.sumsq,
                **self.by_kind}


def _betaln(a, b):
    return pt.gammaln(a) + pt.gammaln(b) - pt.gammaln(a + b)


def log_marginal(scenario_set: ScenarioSet, counts, exposure, sumsq):
    """Closed-form log marginal likelihood of cumulative statistics, per scenario.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies each indicator's kind and conjugate parameters.
    counts, exposure, sumsq : TensorVariable
        (..., J) sufficient statistics summed over the periods of interest.

    Returns
    -------
    TensorVariable
        (..., J, K) log marginal likelihood (scenario-independent constants dropped).

    """
    columns = []
    for j, spec in enumerate(scenario_set.indicators):
        n = counts[..., j, None]
        e = exposure[..., j, None]
        alpha = pt.as_tensor(spec.alpha)
        beta = pt.as_tensor(spec.beta)
        if spec.kind == "count":
            col = (alpha * pt.log(beta) - pt.gammaln(alpha) + pt.gammaln(alpha + n)
                   - (alpha + n) * pt.log(beta + e))
        elif spec.kind == "milestone":
            col = _betaln(alpha + n, beta + (e - n)) - _betaln(alpha, beta)
        else:
            q = sumsq[..., j, None]
            noise_var = spec.noise_sd**2
            prior_prec = 1.0 / beta**2
            post_prec = prior_prec + e / noise_var
            shift = alpha * prior_prec + n / noise_var
            col = -0.5 * pt.log(post_prec / prior_prec) - 0.5 * (
                q / noise_var + alpha**2 * prior_prec - shift**2 / post_prec
            )
        columns.append(col)
    return pt.stack(columns, axis=-2)


def log_emission(scenario_set: ScenarioSet, counts, exposure, sumsq):
    """Per-period sequential predictive log density of the evidence, per scenario.

    ``log_emission[t, k] = Σ_j log m_jk(y_1..t) − log m_jk(y_1..t−1)``; the rows sum to the
    full log marginal likelihood.

    Returns
    -------
    TensorVariable
        (T, K)

    """
    def cumulative(x):
        return pt.concatenate([pt.zeros((1, x.shape[1])), pt.cumsum(x, axis=0)], axis=0)

    cum = log_marginal(scenario_set, cumulative(counts), cumulative(exposure), cumulative(sumsq))
    return (cum[1:] - cum[:-1]).sum(axis=1)


def period_loglik(kind: str, theta, counts, exposure, sumsq, noise_sd: float | None = None):
    """Per-period tempered log likelihood of one indicator given its parameter.

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


def regime_loglik(scenario_set: ScenarioSet, counts, exposure, parameters, math=pt):
    """Per-period log likelihood of the evidence given each scenario's own parameters.

    The term of the forward algorithm when the parameters are sampled: period t under
    scenario k contributes ``Σ_j log p(y_tj | θ[j, k])``. Terms that depend neither on θ nor on
    k (``log n!``, the signal's ``Σ w y²``) are dropped: they shift every scenario of a period
    alike, which leaves the filter and the gradient unchanged. Each kind's term is linear in
    the statistics, so it is two matrix products per kind.

    Parameters
    ----------
    scenario_set : ScenarioSet
        Supplies each indicator's kind and, for signals, the known noise.
    counts, exposure : array_like or TensorVariable
        (T, J) the set's evidence columns.
    parameters : mapping
        ``rate`` / ``hazard`` / ``level`` → (..., J_kind, K) values, one entry per kind present.
    math : module
        ``pytensor.tensor`` inside the model, ``numpy`` for posterior draws.

    Returns
    -------
    (..., T, K) array or TensorVariable

    """
    total = 0.0
    for kind, name in KIND_PARAMETER.items():
        idx = kind_columns(scenario_set, kind)
        if not idx:
            continue
        theta = parameters[name]
        n, e = counts[:, idx], exposure[:, idx]
        if kind == "count":
            total = total + n @ math.log(theta) - e @ theta
        elif kind == "milestone":
            total = total + n @ math.log(theta) + (e - n) @ math.log1p(-theta)
        else:
            noise_var = np.array([scenario_set.indicators[j].noise_sd**2 for j in idx])
            total = total + (n / noise_var) @ theta - (e / (2 * noise_var)) @ theta**2
    return total


def _regime_likelihood(scenario_set: ScenarioSet, moves, parameters, by_kind):
    """``log p(y | A, θ)`` through the fused `RegimeHMM` Op (the math of `regime_loglik`).

    ``moves`` are the free rows of `transition_rows`, concatenated in that order; ``by_kind``
    the statistics of `EvidenceArrays.by_kind`, as data.
    """
    k = len(scenario_set.scenarios)
    rate, hazard, level = (parameters.get(name, pt.zeros((0, k)))
                           for name in KIND_PARAMETER.values())
    rows, columns = zip(*[(row, column) for row, columns, _ in transition_rows(scenario_set)
                          for column in columns], strict=True)
    statistics = [by_kind[f"{kind}_{part}"] for kind in KIND_PARAMETER
                  for part in ("events", "exposure")]
    return regime_hmm_loglik(moves, rows, columns, np.asarray(scenario_set.prior, dtype=float),
                             rate, hazard, level, *statistics)


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
    for kind in KIND_PARAMETER:
        ids = [s.id for s in scenario_set.indicators if s.kind == kind]
        if ids:
            coords[f"{kind}_indicator"] = ids

    with pm.Model(coords=coords) as model:
        counts = pm.Data("counts", arrays.counts)
        exposure = pm.Data("exposure", arrays.exposure)
        sumsq = pm.Data("sumsq", arrays.sumsq)

        parameters = {}
        for kind, name in KIND_PARAMETER.items():
            idx = kind_columns(scenario_set, kind)
            if not idx:
                continue
            specs = [scenario_set.indicators[j] for j in idx]
            alpha = np.stack([s.alpha for s in specs])
            beta = np.stack([s.beta for s in specs])
            dims = (f"{kind}_indicator", "scenario")
            if kind == "count":
                parameters[name] = pm.Gamma(name, alpha=alpha, beta=beta, dims=dims)
            elif kind == "milestone":
                parameters[name] = pm.Beta(name, alpha=alpha, beta=beta, dims=dims)
            else:
                parameters[name] = pm.Normal(name, mu=alpha, sigma=beta, dims=dims)

        if dynamic:
            free_rows = []
            for row, columns, concentration in rows:
                source = scenario_set.scenario_ids[row]
                dim = f"from_{source}"
                model.add_coord(dim, [scenario_set.scenario_ids[c] for c in columns])
                free_rows.append(pm.Dirichlet(f"transition_{source}", a=concentration,
                                              dims=dim))
            by_kind = {name: pm.Data(name, value) for name, value in arrays.by_kind.items()}
            pm.Potential("regime_likelihood", _regime_likelihood(
                scenario_set, pt.concatenate(free_rows), parameters, by_kind))
        else:
            total_n, total_e, total_q = (x.sum(axis=0) for x in (counts, exposure, sumsq))
            # not a Deterministic: it is data, the same in every draw (ExactPosterior has it)
            log_m = log_marginal(scenario_set, total_n, total_e, total_q)
            log_post = np.log(scenario_set.prior) + log_m.sum(axis=0)
            pm.Deterministic("scenario_probability", pt.special.softmax(log_post),
                             dims="scenario")
            # θ[j, k] given "k in force throughout": the likelihood of the totals, as one period
            pm.Potential("parameter_likelihood", regime_loglik(
                scenario_set, total_n[None, :], total_e[None, :], parameters).sum())
    return model
