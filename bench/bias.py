"""No bias, honest error bars: the convergence set's nowcast over many seeds against an exact one.

Run: ``make bench-bias`` (``SEEDS``, default 40). On the bundled sample as of 2025-12-31:

- the reference: every path of at most 5 segments summed exactly (60M paths), the longer
  paths' mass (2.6e-5 of it) by importance weights over 400,000 draws of that posterior; its
  MCSE (~4e-8) is part of each comparison's standard error, since the estimators' own MCSE is
  only ~1e-6 (the enumerated part is exact in them too);
- fits with the service's settings (`SIGNPOST_*` defaults: the enumerated paths, decision
  011), NUTS fits with the service's settings (the fallback: chains sized in advance, a fresh
  run if short of precision) and NUTS refits re-weighted by PSIS from a base fitted without the
  sample's last joint exercise (decision 008).

For each: every scenario's mean over the seeds against the reference, in standard errors (of
that mean and of the reference), and the z-scores (error / reported MCSE), whose sd is 1 for
honest error bars. Target: each mean within 2 standard errors, z sd ≤ 1.2. Twelve comparisons
at 2 SE: an unbiased estimator misses one of them in ~40 % of runs, so a miss by little is a
reason to run more seeds (``SEEDS=100``), not proof of a bias.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from datetime import date

import numpy as np

from bench.common import SAMPLE, hardware
from forecast import ModelCache, fit, set_evidence
from forecast.model import EvidenceArrays
from forecast.paths import enumerate_paths, path_model
from indicators import Review, load_catalog, read_observations_csv
from priors import load_bundled_sets
from service.settings import Settings

AS_OF = date(2025, 12, 31)


def reference(scenario_set, evidence) -> np.ndarray:
    fitting = sys.modules["forecast.fit"]
    arrays = EvidenceArrays.select(scenario_set, evidence)
    model = path_model(scenario_set, arrays)
    started = time.perf_counter()
    sums = enumerate_paths(model, 5)
    exact = fitting._Exact(model, sums, sums.nowcast(model.n_states))
    rng = np.random.default_rng(20261201)
    draws = fitting._truncated_draws(scenario_set, arrays, exact, 400_000, rng)
    estimate = fitting._by_weights(exact, draws, Settings().fit_settings().gate)
    print(f"# reference: {sums.n_paths:,} paths of ≤ 5 segments exact, the rest "
          f"{estimate['tail']:.1e} of the mass by weights (MCSE {estimate['mcse'].max():.1e}); "
          f"{time.perf_counter() - started:.0f} s")
    return estimate["probability"], estimate["mcse"]


def summarise(label: str, ids, truth: np.ndarray, truth_mcse: np.ndarray,
              estimates: list[np.ndarray], mcses: list[np.ndarray],
              seconds: list[float]) -> bool:
    p, m = np.array(estimates), np.array(mcses)
    n = len(p)
    # the mean's standard error, and the reference's own Monte Carlo error (its long paths)
    mean = p.mean(axis=0)
    se = np.sqrt(p.var(axis=0, ddof=1) / n + truth_mcse ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p - truth) / m
    print(f"\n{label}: {n} fits, median {np.median(seconds):.2f} s")
    print(f"  {'scenario':14s} {'reference':>10s} {'mean':>10s} {'bias / SE':>10s} "
          f"{'mean MCSE':>10s} {'z sd':>6s} {'|z|>3':>6s}")
    ok = True
    for k, sid in enumerate(ids):
        bias_se = (mean[k] - truth[k]) / se[k] if se[k] > 0 else 0.0
        z_sd = float(np.nanstd(z[:, k], ddof=1))
        ok &= abs(bias_se) <= 2 and z_sd <= 1.2
        print(f"  {sid:14s} {truth[k]:10.6f} {mean[k]:10.6f} {bias_se:10.2f} "
              f"{m[:, k].mean():10.1e} {z_sd:6.2f} {int((np.abs(z[:, k]) > 3).sum()):6d}")
    print(f"  target (each mean within 2 SE of the reference, z sd ≤ 1.2): "
          f"{'met' if ok else 'MISSED'}")
    return ok


def main() -> None:
    print(hardware())
    seeds = int(os.environ.get("SEEDS", "40"))
    scenario_set = load_bundled_sets()["sino-russian-convergence"]
    observations, _ = read_observations_csv(SAMPLE, load_catalog(), today=AS_OF)
    reviewed = tuple(sorted({o.indicator for o in observations}))
    review = [Review(AS_OF, reviewed)]
    evidence = set_evidence(scenario_set, observations, as_of=AS_OF, reviews=review)
    truth, truth_mcse = reference(scenario_set, evidence)
    ids = scenario_set.scenario_ids
    service = Settings().fit_settings()

    def seeded(settings, seed):
        return dataclasses.replace(settings, sampler=dataclasses.replace(
            settings.sampler, seed=seed, reweight=False))

    cache = ModelCache()
    runs = {}
    nuts = dataclasses.replace(service, sampler=dataclasses.replace(service.sampler,
                                                                    method="nuts"))
    for label, settings in (("service settings (enumerated paths)", service),
                            ("NUTS, service settings (the fallback)", nuts)):
        estimates, mcses, seconds = [], [], []
        for seed in range(seeds):
            started = time.perf_counter()
            result = fit(scenario_set, evidence, seeded(settings, 1000 + seed), cache=cache)
            seconds.append(time.perf_counter() - started)
            assert result.passed, result.diagnostics
            estimates.append(result.probabilities)
            mcses.append(np.array([s.mcse for s in result.scenarios]))
        runs[label] = summarise(label, ids, truth, truth_mcse, estimates, mcses, seconds)

    # re-weighted refits: each from its own sampled base, fitted before the last drill
    last = max((o for o in observations if o.indicator == "joint_exercise"),
               key=lambda o: o.date)
    earlier = set_evidence(scenario_set, [o for o in observations if o is not last],
                           as_of=AS_OF, reviews=review)
    estimates, mcses, seconds, methods = [], [], [], {}
    refit = dataclasses.replace(nuts, sampler=dataclasses.replace(  # opt-in (decision 011)
        nuts.sampler, seed=None, reweight=True))
    for seed in range(seeds):
        fit(scenario_set, earlier, seeded(nuts, 2000 + seed), cache=cache)  # the new base
        started = time.perf_counter()
        result = fit(scenario_set, evidence, refit, cache=cache)
        seconds.append(time.perf_counter() - started)
        methods[result.sampler["name"]] = methods.get(result.sampler["name"], 0) + 1
        estimates.append(result.probabilities)
        mcses.append(np.array([s.mcse for s in result.scenarios]))
    label = f"NUTS refits after one more drill ({methods})"
    runs[label] = summarise(label, ids, truth, truth_mcse, estimates, mcses, seconds)
    print("\nall targets " + ("met" if all(runs.values()) else "NOT all met"))


if __name__ == "__main__":
    main()
