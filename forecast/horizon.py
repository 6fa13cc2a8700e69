"""Forecasts from posterior draws: where, whether and when.

Where the scenario will be, whether it will have been reached (first passage), and when
milestones first happen.

Every quantity is computed exactly per posterior draw of the transition matrix (and of the
milestone hazards), then averaged over draws; its Monte Carlo standard error comes from the
draws' effective sample size. For a static set every draw's matrix is the identity.

Evidence that stops before ``as_of`` (an indicator's coverage, `indicators.coverage`) leaves
the periods after it unobserved, not quiet: the nowcast there is already a forecast. So "reached
by" counts from the period where the evidence stops being complete, not from the current one —
a scenario in force in 2025, the last covered year, has been reached by 2030 whether or not it
still holds in the unobserved 2026 — and a milestone not logged by its coverage date may have
happened, unseen, since. Both are exact per draw: a forward filter through the partly observed
periods that keeps only the paths avoiding the event (`avoiding_filter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numba
import numpy as np
from arviz_stats.base import array_stats

from forecast.model import transition_rows
from indicators import add_months, make_grid, period_exposure, period_floor


@dataclass(frozen=True)
class Draws:
    """Posterior draws the forecasts need, flattened over chains.

    Attributes
    ----------
    alpha : (S, K) ndarray
        Filtered ``P(z_T)`` per draw (the current period).
    transition : (S, K, K) ndarray
        Transition matrix per draw.
    n_chains : int
        How many chains the S draws come from (for the effective sample size).
    filtered : (S, T, K) ndarray, optional
        Filtered ``P(z_t | y_1..t)`` per draw and period (needed when the evidence stops
        before the current period).
    log_emission : (S, T, K) ndarray, optional
        The per-period log likelihood of the evidence under each scenario, per draw (the
        terms of the forward filter that gave ``filtered``).

    """

    alpha: np.ndarray
    transition: np.ndarray
    n_chains: int = 1
    filtered: np.ndarray | None = None
    log_emission: np.ndarray | None = None


def mcse_of(values: np.ndarray, n_chains: int) -> np.ndarray:
    """Monte Carlo standard error of the mean of per-draw values, over the first axis.

    Uses ArviZ's effective sample size (chains × draws layout); values identical in every
    draw are exact (MCSE 0).
    """
    values = np.asarray(values, dtype=float)
    flat = values.reshape(values.shape[0], -1)
    out = np.zeros(flat.shape[1])
    varying = np.ptp(flat, axis=0) > 1e-15
    if varying.any():
        n_draws = flat.shape[0] // n_chains
        chained = flat[: n_chains * n_draws, varying].reshape(n_chains, n_draws, -1)
        out[varying] = array_stats.mcse(chained, chain_axis=0, draw_axis=1, method="mean")
    return out.reshape(values.shape[1:])


def state_forecast(draws: Draws, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``P(z_{T+h} = k)`` for h = 0..steps, per draw.

    Returns
    -------
    per_draw : (S, steps + 1, K) ndarray
    mean : (steps + 1, K) ndarray

    """
    s, k = draws.alpha.shape
    out = np.empty((s, steps + 1, k))
    current = draws.alpha.copy()
    out[:, 0] = current
    for h in range(1, steps + 1):
        current = np.einsum("si,sij->sj", current, draws.transition)
        out[:, h] = current
    return out, out.mean(axis=0)


def first_passage(draws: Draws, targets: Sequence[int], steps: int) -> np.ndarray:
    """``P(z has been in any of targets by T + h)`` for h = 0..steps, per draw.

    The targets are made absorbing; h = 0 is the probability of being there now.

    Returns
    -------
    (S, steps + 1) ndarray, non-decreasing in h.

    """
    targets = list(targets)
    absorbing = draws.transition.copy()
    absorbing[:, targets, :] = 0.0
    for t in targets:
        absorbing[:, t, t] = 1.0
    out = np.empty((draws.alpha.shape[0], steps + 1))
    current = draws.alpha.copy()
    out[:, 0] = current[:, targets].sum(axis=1)
    for h in range(1, steps + 1):
        current = np.einsum("si,sij->sj", current, absorbing)
        out[:, h] = current[:, targets].sum(axis=1)
    return np.maximum.accumulate(out, axis=1)  # guard against round-off


@numba.njit(cache=True)
def avoiding_filter(start_alpha, transitions, log_emission, start, keep, survive):
    """The forward filter from period ``start`` on, restricted to paths that avoid an event.

    Per draw s, with the same per-period normalisation as the plain filter::

        q_start = α_start ⊙ keep ⊙ survive[start]
        q_t     = (q_{t-1} A) ⊙ exp(ℓ_t) / c_t ⊙ keep ⊙ survive[t],   t = start + 1 … T − 1

    where ``α_t = (α_{t-1} A) ⊙ exp(ℓ_t) / c_t`` is the filter itself. Then ``Σ_k q_T[k]`` is
    P(the event did not happen in periods start … T − 1 | y_1..T): for a first passage,
    ``keep`` zeroes the target states; for a milestone, ``survive[t]`` is each state's chance
    of no occurrence in period t's unobserved time, ``(1 − h)^u``.

    Parameters
    ----------
    start_alpha : (S, K) ndarray
        Filtered probabilities at ``start``.
    transitions : (S, K, K) ndarray
        Transition matrix per draw.
    log_emission : (S, T, K) ndarray
        Per-period log likelihood of the evidence (the filter's terms).
    start : int
        First period of the event's window.
    keep : (K,) ndarray
        1 for states the paths may be in, 0 for states that count as the event.
    survive : (S, T, K) ndarray
        Per period and state, the probability the event did not happen in it.

    Returns
    -------
    q : (S, K) ndarray
        Un-normalised probabilities of the last period's state jointly with "no event".

    """
    n_draws, n_periods, k = log_emission.shape
    q_out = np.empty((n_draws, k))
    q = np.empty(k)
    a = np.empty(k)
    q_next = np.empty(k)
    a_next = np.empty(k)
    for s in range(n_draws):
        for j in range(k):
            a[j] = start_alpha[s, j]
            q[j] = a[j] * keep[j] * survive[s, start, j]
        for t in range(start + 1, n_periods):
            shift = log_emission[s, t, 0]
            for j in range(1, k):
                shift = max(shift, log_emission[s, t, j])
            total = 0.0
            for j in range(k):
                acc_a = 0.0
                acc_q = 0.0
                for i in range(k):
                    acc_a += a[i] * transitions[s, i, j]
                    acc_q += q[i] * transitions[s, i, j]
                weight = np.exp(log_emission[s, t, j] - shift)
                a_next[j] = acc_a * weight
                q_next[j] = acc_q * weight
                total += a_next[j]
            for j in range(k):
                a[j] = a_next[j] / total
                q[j] = q_next[j] / total * keep[j] * survive[s, t, j]
        for j in range(k):
            q_out[s, j] = q[j]
    return q_out


def _gap_start(draws: Draws, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(α at ``start``, transitions, log emissions) for `avoiding_filter`."""
    if draws.filtered is None or draws.log_emission is None:
        raise ValueError("Draws.filtered and Draws.log_emission are needed when the evidence "
                         "stops before the current period")
    n_periods, k = draws.log_emission.shape[-2:]  # (T, K) when the same in every draw
    filtered = np.broadcast_to(draws.filtered, (draws.alpha.shape[0], n_periods, k))
    emission = np.broadcast_to(draws.log_emission, (draws.alpha.shape[0], n_periods, k))
    return (np.ascontiguousarray(filtered[:, start]), np.ascontiguousarray(draws.transition),
            np.ascontiguousarray(emission))


def first_passage_since(draws: Draws, targets: Sequence[int], steps: int,
                        start: int | None) -> np.ndarray:
    """``P(z has been in any of targets at some period from start to T + h)``, per draw.

    `first_passage` counts from the current period T; this counts from an earlier one, through
    the periods in between with whatever evidence they carry. ``start`` None (or the current
    period) is `first_passage`.

    Returns
    -------
    (S, steps + 1) ndarray, non-decreasing in h.

    """
    if start is None or (draws.log_emission is not None
                         and start >= draws.log_emission.shape[-2] - 1):
        return first_passage(draws, targets, steps)
    k = draws.alpha.shape[1]
    keep = np.ones(k)
    keep[list(targets)] = 0.0
    start_alpha, transition, emission = _gap_start(draws, start)
    survive = np.ones((1, emission.shape[1], k))
    q = avoiding_filter(start_alpha, transition, emission, start, keep,
                        np.broadcast_to(survive, emission.shape))
    out = np.empty((q.shape[0], steps + 1))
    out[:, 0] = 1.0 - q.sum(axis=1)
    for h in range(1, steps + 1):
        q = np.einsum("si,sij->sj", q, transition) * keep
        out[:, h] = 1.0 - q.sum(axis=1)
    return np.clip(np.maximum.accumulate(out, axis=1), 0.0, 1.0)


def milestone_occurrence(draws: Draws, hazard: np.ndarray, steps: int,
                         unobserved: np.ndarray | None = None) -> np.ndarray:
    """``P(the milestone has happened by T + h)`` for h = 0..steps, per draw.

    The milestone has not happened yet; from the next period on it happens in each period with
    the hazard of the scenario then in force, the scenario moving by the transition matrix.

    Parameters
    ----------
    draws : Draws
        Per-draw current state and transition matrix.
    hazard : (S, K) ndarray
        Per-draw hazard under each scenario.
    steps : int
        Periods ahead.
    unobserved : (T,) ndarray, optional
        The part of each past period in which the milestone could have happened unseen (the
        elapsed fraction after its coverage date). With it, column 0 is the probability that
        it already happened, unlogged, by now.

    Returns
    -------
    (S, steps + 1) ndarray; column 0 is 0 unless ``unobserved`` has time in it.

    """
    survive = draws.alpha.copy()
    out = np.zeros((draws.alpha.shape[0], steps + 1))
    if unobserved is not None and np.any(unobserved > 0):
        start = int(np.flatnonzero(unobserved > 0)[0])
        start_alpha, transition, emission = _gap_start(draws, start)
        decay = (1.0 - hazard)[:, None, :] ** np.asarray(unobserved, dtype=float)[None, :, None]
        survive = avoiding_filter(start_alpha, transition, emission, start,
                                  np.ones(hazard.shape[1]),
                                  np.ascontiguousarray(np.broadcast_to(decay, emission.shape)))
        out[:, 0] = 1.0 - survive.sum(axis=1)
    for h in range(1, steps + 1):
        survive = np.einsum("si,sij->sj", survive, draws.transition) * (1.0 - hazard)
        out[:, h] = 1.0 - survive.sum(axis=1)
    return out


def timing(cdf: np.ndarray, labels: Sequence[str], starts: Sequence[date],
           mcse_end: float) -> dict:
    """Median, 80 % interval and P(by the last period) of a first-occurrence CDF.

    Parameters
    ----------
    cdf : (H + 1,) ndarray
        Mean P(reached by period h), h = 0 the current period.
    labels, starts : sequences of length H + 1
        Period labels and start dates of h = 0..H.
    mcse_end : float
        Monte Carlo error of ``cdf[-1]``.

    Returns
    -------
    dict
        ``p_by_end``, ``mcse``, ``median``, ``interval80`` ([low, high]; a bound that falls
        after the last period is None), ``cdf``.

    """
    def quantile(q: float):
        hit = np.flatnonzero(cdf >= q - 1e-12)
        if hit.size == 0:
            return None
        h = int(hit[0])
        return {"period": labels[h], "start": starts[h].isoformat(), "steps": h}

    return {
        "p_by_end": float(cdf[-1]),
        "mcse": float(mcse_end),
        "median": quantile(0.5),
        "interval80": [quantile(0.1), quantile(0.9)],
        "cdf": [float(x) for x in cdf],
    }


MAX_OPEN_HORIZON = 40  # periods forecast ahead for a set without an end date


def transition_draws(scenario_set, posterior) -> np.ndarray:
    """(S, K, K) transition matrices rebuilt from the Dirichlet rows of a posterior."""
    k = len(scenario_set.scenarios)
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    out = np.broadcast_to(np.eye(k), (n, k, k)).copy()
    for row, columns, _ in transition_rows(scenario_set):
        source = scenario_set.scenario_ids[row]
        values = posterior[f"transition_{source}"].values.reshape(n, len(columns))
        out[:, row, :] = 0.0
        out[:, row, columns] = values
    return out


def _complete_period(evidence) -> int | None:
    """Index of the period holding the earliest coverage date, if before the current one.

    0 if some indicator has no coverage; None when the evidence is complete through the
    current period (or carries no coverage).
    """
    last = evidence.n_periods - 1
    if evidence.coverage is None or last <= 0:
        return None
    dates = list(evidence.coverage)
    if not dates:
        return None
    if any(d is None for d in dates) or min(dates) < evidence.grid.starts[0]:
        return 0
    since = evidence.grid.offset_of(min(dates))
    return since if since < last else None


def unobserved_time(evidence, indicator_id: str) -> np.ndarray | None:
    """Per period, the elapsed fraction after the indicator's coverage date (None if none)."""
    if evidence.coverage is None or not evidence.n_periods:
        return None
    covered = evidence.coverage_of(indicator_id)
    elapsed = period_exposure(evidence.grid, evidence.as_of)
    seen = np.zeros_like(elapsed) if covered is None else period_exposure(evidence.grid, covered)
    gap = np.clip(elapsed - seen, 0.0, 1.0)
    return gap if gap.any() else None


def outlook_summary(scenario_set, evidence, arrays, draws: Draws, posterior,
                    nowcast: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Horizon forecasts, first passages and milestone timing, as JSON-ready data.

    From h = 0 (the current period) to the set's last period. "Reached by" counts from the
    period holding the earliest coverage date (the current one when the evidence is complete
    through ``as_of``); a milestone not logged may have happened after its own coverage date.

    Parameters
    ----------
    scenario_set : ScenarioSet
        The question (its end date, dynamics ladder and milestone indicators).
    evidence : Evidence
        Supplies the period grid (its last period is the current one).
    arrays : EvidenceArrays
        The set's evidence columns (to tell which milestones have happened).
    draws : Draws
        Per-draw filtered state and transition matrix.
    posterior : xarray.Dataset-like
        Holds ``hazard`` draws when the set has milestones.
    nowcast : (probability, mcse), optional
        The published nowcast when it was estimated better than by averaging the draws'
        (the enumerated paths' exact part): the forecast's current period shows it, so every
        payload gives one number for "now"; "by" is kept at least "at".

    """
    labels, starts, steps = _horizon(scenario_set, evidence)
    ids = list(scenario_set.scenario_ids)

    since = _complete_period(evidence)
    per_draw_at, at = state_forecast(draws, steps)
    by_draws = np.stack([first_passage_since(draws, [k], steps, since)
                         for k in range(len(ids))], axis=-1)
    by = by_draws.mean(axis=0)
    at_mcse = mcse_of(per_draw_at, draws.n_chains)
    by_mcse = mcse_of(by_draws, draws.n_chains)
    if nowcast is not None:
        at[0], at_mcse[0] = nowcast
        if since is None:  # "reached by now" counts from now: the nowcast itself
            by[0], by_mcse[0] = nowcast
        by = np.maximum.accumulate(np.maximum(by, at), axis=0)

    reach = {sid: timing(by[:, k], labels, starts, float(by_mcse[-1, k]))
             for k, sid in enumerate(ids)}
    deeper = {}
    ladder = list(scenario_set.dynamics.ladder) if scenario_set.dynamics else []
    for position in range(1, len(ladder)):
        targets = [ids.index(s) for s in ladder[position:]]
        cdf_draws = first_passage_since(draws, targets, steps, since)
        deeper[ladder[position]] = timing(cdf_draws.mean(axis=0), labels, starts,
                                          float(mcse_of(cdf_draws[:, -1:], draws.n_chains)[0]))
        deeper[ladder[position]]["scenarios"] = ladder[position:]

    milestones = _milestone_outlook(scenario_set, evidence, arrays, draws, posterior,
                                    (labels, starts, steps))
    evidence_totals = {
        spec.id: {"kind": spec.kind, "weighted": float(arrays.counts[:, j].sum()),
                  "exposure": float(arrays.exposure[:, j].sum())}
        for j, spec in enumerate(scenario_set.indicators)
    }
    return {
        "scenarios": ids,
        "horizon": {"periods": labels, "starts": [d.isoformat() for d in starts],
                    "at": at.tolist(), "at_mcse": at_mcse.tolist(),
                    "by": by.tolist(), "by_mcse": by_mcse.tolist()},
        "reach": reach,
        "reach_or_deeper": deeper,
        "milestones": milestones,
        "evidence": evidence_totals,
    }


def _horizon(scenario_set, evidence) -> tuple[list[str], list[date], int]:
    """The forecast's periods: labels and starts from the current one to the set's last."""
    last = scenario_set.end
    if last is None:
        anchor = (evidence.grid.starts[-1] if evidence.n_periods
                  else period_floor(scenario_set.period, scenario_set.start))
        last = add_months(anchor, evidence.grid.months_per_period * MAX_OPEN_HORIZON)
    grid = make_grid(scenario_set.period, scenario_set.start, last)
    current = max(evidence.n_periods - 1, 0)
    labels = list(grid.labels[current:]) or [grid.labels[-1]]
    starts = list(grid.starts[current:]) or [grid.starts[-1]]
    return labels, starts, len(labels) - 1


def _milestone_outlook(scenario_set, evidence, arrays, draws: Draws, posterior,
                       horizon: tuple[list[str], list[date], int]) -> dict:
    """Per milestone: where it occurred, or the timing of its first occurrence."""
    labels, starts, steps = horizon
    ids = scenario_set.scenario_ids
    milestones = {}
    for j, spec in enumerate(scenario_set.indicators):
        if spec.kind != "milestone":
            continue
        hits = np.flatnonzero(arrays.counts[:, j] > 0)
        if hits.size:
            milestones[spec.id] = {"occurred": {"period": arrays.labels[hits[0]],
                                                "weight": float(arrays.counts[hits[0], j]),
                                                "before_window": False}}
            continue
        covered = evidence.coverage_of(spec.id)
        looked = evidence.coverage is None or (covered is not None
                                               and covered >= evidence.grid.starts[0])
        if arrays.labels and not arrays.exposure[:, j].any() and looked:
            # never at risk inside the window: it was reported before the set's first period
            milestones[spec.id] = {"occurred": {"period": arrays.labels[0], "weight": None,
                                                "before_window": True}}
            continue
        hazard = posterior["hazard"].sel(milestone_indicator=spec.id).values
        hazard = hazard.reshape(-1, len(ids))
        cdf_draws = milestone_occurrence(draws, hazard, steps,
                                         unobserved_time(evidence, spec.id))
        milestones[spec.id] = {"occurred": None, **timing(
            cdf_draws.mean(axis=0), labels, starts,
            float(mcse_of(cdf_draws[:, -1:], draws.n_chains)[0]))}

    return milestones
