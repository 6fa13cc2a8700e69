"""(a) Observation → published posterior in a warm worker, vs naive ``pm.sample`` in a fresh
process; (b) cold-process fit time with the compile cache kept under var/, vs an empty cache.

(a) runs twice per set: with the service's defaults (a dynamic set's fit draws from its
enumerated scenario paths, decision 011) and with NUTS (``SIGNPOST_FIT_METHOD=nuts``, the
fallback, whose refits re-weight the worker's last sampled posterior when that passes the gate,
decision 008). Run: ``make bench-refit``. Ratios are against baselines measured in the same
run."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

from bench.common import hardware, sample_store
from service.repositories.fits import create_fit
from service.repositories.observations import add_observation
from service.runner import FitRunner
from service.settings import Settings
from service.worker import WorkerPool

SETS = ("sino-russian-convergence", "world-order-2035")

NAIVE = textwrap.dedent("""
    import time, sys
    started = time.perf_counter()
    from datetime import date
    import pymc as pm
    from forecast import build_model, set_evidence
    from bench.common import SAMPLE, TODAY
    from indicators import load_catalog, read_observations_csv
    from priors import load_bundled_sets
    scenario_set = load_bundled_sets()[sys.argv[1]]
    observations, _ = read_observations_csv(SAMPLE, load_catalog(), today=TODAY)
    evidence = set_evidence(scenario_set, observations, as_of=TODAY)
    with build_model(scenario_set, evidence):
        pm.sample(draws=1000, tune=500, chains=4, cores=2, progressbar=False,
                  random_seed=1, compute_convergence_checks=False)
    print(time.perf_counter() - started)
""")

COLD = textwrap.dedent("""
    import time, sys
    started = time.perf_counter()
    from forecast import fit, set_evidence
    from bench.common import SAMPLE, TODAY
    from indicators import load_catalog, read_observations_csv
    from priors import load_bundled_sets
    scenario_set = load_bundled_sets()[sys.argv[1]]
    observations, _ = read_observations_csv(SAMPLE, load_catalog(), today=TODAY)
    result = fit(scenario_set, set_evidence(scenario_set, observations, as_of=TODAY))
    assert result.passed, result.diagnostics
    print(time.perf_counter() - started)
""")


def run_python(code: str, *args: str, env: dict | None = None) -> float:
    """Seconds the snippet reports (it measures itself from its first line)."""
    import os
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True, env={**os.environ, **(env or {})},
                         cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def refit_latencies(store, runner, set_id: str, day: int) -> tuple[list[float], list[str]]:
    """Five times: log one observation, refit; seconds to published, and how each was drawn."""
    latencies, methods = [], []
    for i in range(5):
        started = time.perf_counter()
        add_observation(store, data={"indicator": "joint_exercise",
                               "date": f"2025-{i + 6:02d}-{day:02d}", "grade": "A1"})
        result = runner.run_fit(create_fit(store, set_id=set_id, requested_by="bench"))
        latencies.append(time.perf_counter() - started)
        assert result["status"] == "published", result
        methods.append(result["sampler"]["name"])
    return latencies, methods


def main() -> None:
    print(hardware())
    # what `signpost serve` and `signpost scheduler` fit with (SIGNPOST_FIT_* defaults)
    service = Settings().fit_settings()
    sampled = replace(service, sampler=replace(service.sampler, method="nuts"))
    with tempfile.TemporaryDirectory() as tmp:
        store = sample_store(f"sqlite:///{tmp}/bench.db")
        runners = {name: FitRunner(store, WorkerPool("process"), settings, lease_seconds=120,
                                   artifacts_dir=Path(tmp) / "fits")
                   for name, settings in (("service", service), ("sampled", sampled))}
        print("\n(a) observation → published posterior, warm worker vs naive pm.sample "
              "in a fresh process")
        for set_id in SETS:
            naive = run_python(NAIVE, set_id)
            for day, (name, runner) in enumerate(runners.items(), start=15):
                # compile once; the service's first fit also draws the posterior it re-weights
                runner.run_fit(create_fit(store, set_id=set_id, requested_by="warm-up"))
                latencies, methods = refit_latencies(store, runner, set_id, day)
                warm = statistics.median(latencies)
                label = ("service defaults" if name == "service"
                         else "NUTS (SIGNPOST_FIT_METHOD=nuts)")
                print(f"  {set_id:26s} {label}: warm {warm:5.2f} s (median of 5: "
                      f"{', '.join(f'{x:.2f}' for x in latencies)}; "
                      f"{', '.join(methods)})   naive {naive:5.1f} s   "
                      f"speed-up {naive / warm:5.1f}×   target ≤ 2 s and ≥ 20×: "
                      f"{'met' if warm <= 2 and naive / warm >= 20 else 'MISSED'}")
        for runner in runners.values():
            runner.pool.shutdown()
        store.dispose()

        print("\n(b) cold-process fit (imports + compile + sample): compile cache kept under "
              "var/ vs an empty cache")
        cache = Path("var/pytensor").resolve()
        for set_id in SETS:
            run_python(COLD, set_id, env={"PYTENSOR_FLAGS": f"base_compiledir={cache}"})
            kept = run_python(COLD, set_id, env={"PYTENSOR_FLAGS": f"base_compiledir={cache}"})
            with tempfile.TemporaryDirectory() as empty:
                fresh = run_python(COLD, set_id, env={"PYTENSOR_FLAGS":
                                                      f"base_compiledir={empty}"})
            print(f"  {set_id:26s} kept cache {kept:6.1f} s   empty cache {fresh:6.1f} s   "
                  f"ratio {kept / fresh:4.2f}   target ≤ 15 s: "
                  f"{'met' if kept <= 15 else 'MISSED'}")


if __name__ == "__main__":
    main()
