"""Forecasts from posterior draws: where, whether and when.

Where the scenario will be, whether it will have been reached (first passage), and when
milestones first happen.

Every quantity is computed exactly per posterior draw of the transition matrix (and of the
milestone hazards), then averaged over draws; its Monte Carlo standard error comes from the
draws' effective sample size. For a static set every draw's matrix is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from arviz_stats.base import array_stats

from forecast.model import transition_rows
from indicators import add_months, make_grid, period_floor


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

    """

    alpha: np.ndarray
    transition: np.ndarray
    n_chains: int = 1


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


def milestone_occurrence(draws: Draws, hazard: np.ndarray, steps: int) -> np.ndarray:
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

    Returns
    -------
    (S, steps + 1) ndarray with column 0 equal to 0.

    """
    survive = draws.alpha.copy()
    out = np.zeros((draws.alpha.shape[0], steps + 1))
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


def outlook_summary(scenario_set, evidence, arrays, draws: Draws, posterior) -> dict:
    """Horizon forecasts, first passages and milestone timing, as JSON-ready data.

    From h = 0 (the current period) to the set's last period.

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

    """
    last = scenario_set.end
    if last is None:
        anchor = (evidence.grid.starts[-1] if evidence.n_periods
                  else period_floor(scenario_set.period, scenario_set.start))
        last = add_months(anchor, evidence.grid.months_per_period * MAX_OPEN_HORIZON)
    grid = make_grid(scenario_set.period, scenario_set.start, last)
    current = max(evidence.n_periods - 1, 0)
    labels = list(grid.labels[current:]) or [grid.labels[-1]]
    starts = list(grid.starts[current:]) or [grid.starts[-1]]
    steps = len(labels) - 1
    ids = list(scenario_set.scenario_ids)

    per_draw_at, at = state_forecast(draws, steps)
    by_draws = np.stack([first_passage(draws, [k], steps) for k in range(len(ids))], axis=-1)
    by = by_draws.mean(axis=0)
    at_mcse = mcse_of(per_draw_at, draws.n_chains)
    by_mcse = mcse_of(by_draws, draws.n_chains)

    reach = {sid: timing(by[:, k], labels, starts, float(by_mcse[-1, k]))
             for k, sid in enumerate(ids)}
    deeper = {}
    ladder = list(scenario_set.dynamics.ladder) if scenario_set.dynamics else []
    for position in range(1, len(ladder)):
        targets = [ids.index(s) for s in ladder[position:]]
        cdf_draws = first_passage(draws, targets, steps)
        deeper[ladder[position]] = timing(cdf_draws.mean(axis=0), labels, starts,
                                          float(mcse_of(cdf_draws[:, -1:], draws.n_chains)[0]))
        deeper[ladder[position]]["scenarios"] = ladder[position:]

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
        if arrays.labels and not arrays.exposure[:, j].any():
            # never at risk inside the window: it was reported before the set's first period
            milestones[spec.id] = {"occurred": {"period": arrays.labels[0], "weight": None,
                                                "before_window": True}}
            continue
        hazard = posterior["hazard"].sel(milestone_indicator=spec.id).values
        hazard = hazard.reshape(-1, len(ids))
        cdf_draws = milestone_occurrence(draws, hazard, steps)
        milestones[spec.id] = {"occurred": None, **timing(
            cdf_draws.mean(axis=0), labels, starts,
            float(mcse_of(cdf_draws[:, -1:], draws.n_chains)[0]))}

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
