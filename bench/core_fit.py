"""Wall time of one fit of each bundled set: cold (first in the process) and warm (second).

Run: ``make bench-core`` (or ``.venv/bin/python bench/core_fit.py``). Prints the posterior of
each set on the bundled sample observations, with the as-of date given by ``--as-of``.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import indicators
from forecast import FitSettings, fit, set_evidence
from indicators import load_catalog, read_observations_csv
from priors import load_bundled_sets

SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
# a sampled fit each time (a second fit of the same evidence would re-weight the first)
SAMPLED = FitSettings.from_mapping({"sampler": {"reweight": False}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2025, 12, 31))
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {platform.python_version()}")
    observations, _ = read_observations_csv(SAMPLE, load_catalog(), today=args.as_of)
    for set_id, scenario_set in load_bundled_sets().items():
        evidence = set_evidence(scenario_set, observations, as_of=args.as_of)
        times, compile_s = [], []
        for _ in range(2):
            started = time.perf_counter()
            result = fit(scenario_set, evidence, SAMPLED)
            times.append(time.perf_counter() - started)
            compile_s.append(result.timings["compile_s"])
        print(f"\n{set_id}: {evidence.n_periods} periods × {evidence.n_indicators} indicators; "
              f"cold {times[0]:.2f} s (of which compile {compile_s[0]:.2f} s), "
              f"warm {times[1]:.2f} s (compile {compile_s[1]:.2f} s); "
              f"gate passed: {result.passed}")
        print(f"  diagnostics: {result.diagnostics.to_dict()}")
        for s in result.scenarios:
            print(f"  {s.id:22s} prior {s.prior:.3f} → {s.probability:.4f} ± {s.mcse:.4f}")
        if scenario_set.dynamics is not None:
            # baseline in the same run: the same set with transitions held at the identity
            static = [fit(scenario_set, evidence, FitSettings(dynamic=False))
                      for _ in range(2)][-1]
            print(f"  learned transitions: warm {times[1]:.2f} s = "
                  f"{times[1] / static.timings['total_s']:.1f}× the static warm fit "
                  f"({static.timings['total_s']:.2f} s); sampler {result.sampler}")


if __name__ == "__main__":
    main()
