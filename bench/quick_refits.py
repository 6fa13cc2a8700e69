"""Quick refits (decision 015) on records they were not tuned to: is their MCSE honest?

The convergence set on the sample record; its enumerated path fit is the base. Then, ``N``
times, one random report is added (a random indicator of the set, a random date in the
sample's last two years, a random grade; a level or signal a random value) and the quick refit
(the base's draws re-weighted) is compared with the enumerated fit of the same evidence, whose
MCSE is ~1e-5: z = (quick − enumerated) / quick's MCSE, per scenario. An honest MCSE gives
z sd ≈ 1 (≤ 1.2 is the bar `make bench-bias` sets); the share that passed the gate, and the
times of both, are printed too. Each report is retracted before the next (one change at a time,
as an analyst's lone write). Run: ``make bench-quick`` (``N=40`` by default).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

from bench.common import TODAY, hardware, sample_store
from forecast import FitSettings, ModelCache, fit
from service.repositories.evidence import evidence_of
from service.repositories.observations import add_observation, retract_observation
from service.repositories.sets import get_set

N = int(os.environ.get("N", "40"))
SET_ID = "sino-russian-convergence"
QUICK = FitSettings.from_mapping({"sampler": {"quick_refits": True}})
FULL = FitSettings.from_mapping({"sampler": {"quick_refits": False}})


def _value(indicator, rng) -> dict:
    kind = indicator.kind
    if kind == "level":
        return {"value": int(rng.integers(len(indicator.levels)))}
    if kind == "signal":
        return {"value": float(rng.normal(0.0, 1.0))}
    if kind == "count":
        return {"value": int(rng.integers(1, 3))}
    return {}


def main() -> None:
    print(hardware())
    rng = np.random.default_rng(2026)
    with tempfile.TemporaryDirectory() as tmp:
        store = sample_store(f"sqlite:///{tmp}/bench.db")
        scenario_set = get_set(store, set_id=SET_ID)
        cache = ModelCache()
        base = fit(scenario_set, evidence_of(store, scenario_set=scenario_set), QUICK,
                   cache=cache)
        assert base.sampler["name"] == "paths", base.sampler
        z, passed, quick_s, full_s, ks = [], 0, [], [], []
        for i in range(N):
            indicator = scenario_set.indicators[int(rng.integers(len(scenario_set.indicators)))]
            day = TODAY.toordinal() - int(rng.integers(1, 730))
            grade = f"{'ABC'[int(rng.integers(3))]}{int(rng.integers(1, 4))}"
            data = {"indicator": indicator.id, "grade": grade,
                    "date": type(TODAY).fromordinal(day).isoformat(),
                    **_value(indicator, rng)}
            row, _ = add_observation(store, data=data, analyst="bench")
            evidence = evidence_of(store, scenario_set=scenario_set)
            started = time.perf_counter()
            quick = fit(scenario_set, evidence, QUICK, cache=cache)
            quick_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            full = fit(scenario_set, evidence, FULL, cache=ModelCache())
            full_s.append(time.perf_counter() - started)
            retract_observation(store, observation_id=row.id, reason="entered in error")
            if quick.sampler["name"] != "psis":
                continue  # failed its gate: enumerated instead (counted below)
            passed += 1
            ks.append(quick.diagnostics.pareto_k)
            mcse = np.array([s.mcse for s in quick.scenarios])
            z.append((quick.probabilities - full.probabilities) / mcse)
            if (i + 1) % 10 == 0:
                print(f"  {i + 1}/{N} done")
        z = np.array(z)
        print(f"{SET_ID}: {N} random single reports; quick refits passed the gate in "
              f"{passed}/{N} (the rest were enumerated); Pareto k̂ median "
              f"{statistics.median(ks):.2f}, max {max(ks):.2f}")
        q, f = statistics.median(quick_s), statistics.median(full_s)
        print(f"  time: quick median {q:.2f} s, enumerated median {f:.2f} s ({f / q:.1f}×)")
        for k, s in enumerate(scenario_set.scenarios):
            print(f"  {s.id:16s} z mean {z[:, k].mean():+.2f}, z sd {z[:, k].std(ddof=1):.2f}, "
                  f"max |z| {np.abs(z[:, k]).max():.2f}")
        print(f"  target: z sd ≤ 1.2 for every scenario: "
              f"{'met' if np.all(z.std(axis=0, ddof=1) <= 1.2) else 'MISSED'}")


if __name__ == "__main__":
    main()
