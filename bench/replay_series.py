"""What Signpost would have said at the end of each year: the convergence set's replay series.

Run: ``make bench-replays`` (``python -m bench.replay_series``: as a script, ``bench/http.py``
would shadow the standard library's ``http``). Fits the bundled
convergence set (learned transitions) on the sample observations as of 31 December of each year
2015–2025, as `make run` loads them (the sample's indicators reviewed through 2025-12-31, so
each replay's coverage is its date; the others covered through the newest entry by then), and
prints the nowcast, P(integrated_ew or deeper by 2030), the gate verdict, the estimator and the
fit time of each.
"""

from __future__ import annotations

import platform
import time
from datetime import date
from pathlib import Path

import indicators
from forecast import FitSettings, ModelCache, fit, set_evidence
from indicators import Review, load_catalog, read_observations_csv
from priors import load_bundled_sets

SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"


def main() -> None:
    print(f"# {platform.machine()}, {platform.python_version()}; sample observations")
    scenario_set = load_bundled_sets()["sino-russian-convergence"]
    observations, _ = read_observations_csv(SAMPLE, load_catalog(), today=date(2025, 12, 31))
    cache = ModelCache()
    review = [Review(date(2025, 12, 31), tuple(sorted({o.indicator for o in observations})))]
    ids = scenario_set.scenario_ids
    print("as_of       " + "  ".join(f"{s:>13s}" for s in ids)
          + "  ew+ by 2030   max MCSE  gate   fit s  estimator")
    for year in range(2015, 2026):
        as_of = date(year, 12, 31)
        evidence = set_evidence(scenario_set, observations, as_of=as_of, reviews=review)
        started = time.perf_counter()
        result = fit(scenario_set, evidence, FitSettings(), cache=cache)
        took = time.perf_counter() - started
        deeper = result.outlook["reach_or_deeper"]["integrated_ew"]["p_by_end"]
        print(f"{as_of}  " + "  ".join(f"{s.probability:13.3f}" for s in result.scenarios)
              + f"  {deeper:11.3f}  {result.diagnostics.max_mcse:9.1e}  "
              f"{'pass' if result.passed else 'FAIL'}  {took:6.2f}  {result.sampler['name']}")


if __name__ == "__main__":
    main()
