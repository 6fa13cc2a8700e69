"""(f) Calibration: worlds simulated from the convergence set's priors, fitted by Signpost.

Run: ``make bench-calibration`` (``WORLDS=500`` by default). Each world draws a transition
matrix from the Dirichlet priors, a scenario path from the prior over 2012Q1–2025Q4 plus two
years, one parameter per (indicator, scenario) from the elicited priors, and evidence from them;
Signpost then fits it (learned transitions: the enumerated scenario paths, decision 011, with
NUTS where their gates send a fit). Reported: the expected calibration
error (ECE) of the nowcast P(z_T = k) and of the two-year-ahead forecast P(z_T+8 = k) against
the simulated truth, with reliability tables (predicted bin vs observed frequency), and the
ECE that finite worlds alone produce (a calibrated forecaster with the same predictions).
Predictions and outcomes are saved to ``var/calibration.npz``.

``REWEIGHTED=1`` scores NUTS's re-weighted refits (the fallback's refits, decision 008): each
world is first fitted by NUTS as it stood before its last quarter's events were logged, then
refitted with them, which re-weights that posterior when the gate allows.
"""

from __future__ import annotations

import os
import time
from datetime import date

import numpy as np

from bench.common import hardware
from forecast import FitSettings, GateSettings, ModelCache, SamplerSettings, fit
from forecast.model import transition_rows
from indicators import Evidence, make_grid
from priors import load_bundled_sets

AHEAD = 8  # quarters: two years
BINS = np.linspace(0, 1, 11)


def simulate(scenario_set, n_periods: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(path of length n_periods + AHEAD, counts, exposure) of one world."""
    k = len(scenario_set.scenarios)
    transition = np.eye(k)
    for row, columns, concentration in transition_rows(scenario_set):
        transition[row] = 0.0
        transition[row, columns] = rng.dirichlet(concentration)
    path = [rng.choice(k, p=scenario_set.prior)]
    for _ in range(n_periods + AHEAD - 1):
        path.append(rng.choice(k, p=transition[path[-1]]))
    path = np.array(path)
    j = len(scenario_set.indicators)
    counts = np.zeros((n_periods, j))
    exposure = np.ones((n_periods, j))
    for col, spec in enumerate(scenario_set.indicators):
        if spec.kind == "count":
            rate = rng.gamma(spec.alpha, 1 / spec.beta)
            counts[:, col] = rng.poisson(rate[path[:n_periods]])
        else:
            hazard = rng.beta(spec.alpha, spec.beta)
            hits = np.flatnonzero(rng.random(n_periods) < hazard[path[:n_periods]])
            if hits.size:
                counts[hits[0], col] = 1.0
                exposure[hits[0] + 1:, col] = 0.0
    return path, counts, exposure


def ece(predicted: np.ndarray, observed: np.ndarray) -> tuple[float, list]:
    table, total = [], 0.0
    which = np.clip(np.digitize(predicted, BINS) - 1, 0, len(BINS) - 2)
    for b in range(len(BINS) - 1):
        mask = which == b
        if not mask.any():
            continue
        mean_p, freq = predicted[mask].mean(), observed[mask].mean()
        total += mask.mean() * abs(mean_p - freq)
        table.append((BINS[b], BINS[b + 1], int(mask.sum()), mean_p, freq))
    return total, table


def noise_floor(predicted: np.ndarray, rng, replicates: int = 200) -> float:
    """Mean ECE of a perfectly calibrated forecaster making the same predictions.

    Outcomes drawn as Bernoulli(predicted): what finite worlds alone add to the ECE, so a
    measured ECE near it is calibration within the bench's resolution.
    """
    return float(np.mean([ece(predicted, rng.random(predicted.size) < predicted)[0]
                          for _ in range(replicates)]))


def main() -> None:
    worlds = int(os.environ.get("WORLDS", "500"))
    print(hardware())
    scenario_set = load_bundled_sets()["sino-russian-convergence"]
    grid = make_grid(scenario_set.period, scenario_set.start, date(2025, 12, 31))
    n_periods = len(grid)
    rng = np.random.default_rng(2026)
    cache = ModelCache()
    reweighted = os.environ.get("REWEIGHTED") == "1"
    if reweighted:
        # NUTS at fewer draws (calibration needs each world's estimate, not the gate's
        # precision), and the refit's gate at what 600 draws give
        settings = FitSettings(sampler=SamplerSettings(method="nuts", dynamic_draws=600,
                                                        max_draws=600, reweight=False))
        refit = FitSettings(sampler=SamplerSettings(method="nuts", dynamic_draws=600,
                                                     max_draws=600),
                            gate=GateSettings(min_ess_bulk=100, max_mcse=0.02))
    else:
        settings = FitSettings()  # what the service fits with
    methods: dict[str, int] = {}
    now_p, now_y, ahead_p, ahead_y = [], [], [], []
    passed = 0
    started = time.perf_counter()
    for _ in range(worlds):
        path, counts, exposure = simulate(scenario_set, n_periods, rng)
        evidence = Evidence(grid=grid, indicator_ids=scenario_set.indicator_ids,
                            kinds=tuple(i.kind for i in scenario_set.indicators),
                            counts=counts, exposure=exposure, sumsq=np.zeros_like(counts),
                            as_of=date(2025, 12, 31))
        if reweighted:
            before = counts.copy()
            before[-1] = 0.0  # the last quarter's events not logged yet (its time has passed)
            # a milestone first seen in the last quarter was still open: exposure unchanged
            earlier = Evidence(grid=grid, indicator_ids=scenario_set.indicator_ids,
                               kinds=evidence.kinds, counts=before, exposure=exposure,
                               sumsq=np.zeros_like(counts), as_of=date(2025, 12, 31))
            fit(scenario_set, earlier, settings, cache=cache)  # this world's sampled posterior
            result = fit(scenario_set, evidence, refit, cache=cache)
            methods[result.sampler["name"]] = methods.get(result.sampler["name"], 0) + 1
        else:
            result = fit(scenario_set, evidence, settings, cache=cache)
            methods[result.sampler["name"]] = methods.get(result.sampler["name"], 0) + 1
        passed += result.passed
        truth_now = np.eye(len(scenario_set.scenarios))[path[n_periods - 1]]
        truth_ahead = np.eye(len(scenario_set.scenarios))[path[n_periods - 1 + AHEAD]]
        now_p.append(result.probabilities)
        now_y.append(truth_now)
        ahead_p.append(np.array(result.outlook["horizon"]["at"][AHEAD]))
        ahead_y.append(truth_ahead)
    took = time.perf_counter() - started
    print(f"\n(f) calibration over {worlds} worlds from the convergence set's priors "
          f"({took:.0f} s, {took / worlds:.2f} s per fit; {passed} fits passed the gate, "
          f"all {worlds} are scored; estimators {methods})")
    np.savez(os.environ.get("CALIBRATION_OUT", "var/calibration.npz"),
             now_p=np.array(now_p), now_y=np.array(now_y),
             ahead_p=np.array(ahead_p), ahead_y=np.array(ahead_y))
    for label, p, y in (("nowcast", now_p, now_y), ("two years ahead", ahead_p, ahead_y)):
        predicted = np.concatenate(p)
        error, table = ece(predicted, np.concatenate(y))
        floor = noise_floor(predicted, np.random.default_rng(7))
        print(f"\n  {label}: expected calibration error {error:.4f} (target ≤ 0.03: "
              f"{'met' if error <= 0.03 else 'MISSED'}); a perfectly calibrated forecaster "
              f"making these predictions scores {floor:.4f} on {worlds} worlds")
        print("    predicted bin      n   mean predicted   observed frequency")
        for low, high, n, mean_p, freq in table:
            print(f"    [{low:.1f}, {high:.1f})  {n:6d}   {mean_p:14.3f}   {freq:18.3f}")


if __name__ == "__main__":
    main()
