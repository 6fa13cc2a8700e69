"""(c) Evidence + fit time with 1k, 100k and 1M observation rows in the database.

Run: ``make bench-rows``. Each size is a fresh SQLite database filled with synthetic graded
observations of the set's indicators, 2012–2025; the model is warm (compiled once). The ratio is
against the 1k-row database in the same run; the target is ≤ 1.2× at 1M rows.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import date

import numpy as np

from bench.common import TODAY, hardware
from forecast import FitSettings, ModelCache, SamplerSettings, fit
from service.db import ObservationRow
from service.store import Store, month_index

SIZES = (1_000, 100_000, 1_000_000)


def fill(store: Store, n: int, indicators: list[str], rng: np.random.Generator) -> None:
    """Insert n observations through the store's bulk path (statistics kept as it goes)."""
    start, end = date(2012, 1, 1).toordinal(), TODAY.toordinal()
    batch = 50_000
    weights = {"A1": 1.0, "B2": store.grades.weight("B2"), "C3": store.grades.weight("C3")}
    for offset in range(0, n, batch):
        size = min(batch, n - offset)
        days = rng.integers(start, end + 1, size)
        which = rng.integers(0, len(indicators), size)
        grades = rng.choice(list(weights), size)
        rows = []
        for d, j, g in zip(days, which, grades, strict=True):
            day = date.fromordinal(int(d))
            rows.append(ObservationRow(
                indicator=indicators[j], date=day, month_index=month_index(day), value=1.0,
                grade=str(g), weight=weights[str(g)], source="bench", url="", note="",
                analyst="bench", created_at=store.clock()))
        with store.Session.begin() as session:
            session.add_all(rows)
            store._add_to_months(session, rows)


def main() -> None:
    print(hardware())
    print("\n(c) evidence (SQL) + fit, warm model, by rows in the database")
    rng = np.random.default_rng(0)
    cache = ModelCache()
    fixed = FitSettings(sampler=SamplerSettings(max_draws=1500))
    for set_id in ("world-order-2035", "sino-russian-convergence"):
        baseline = None
        for n in SIZES:
            with tempfile.TemporaryDirectory() as tmp:
                store = Store(f"sqlite:///{tmp}/rows.db", today=TODAY)
                store.migrate()
                store.load_bundled_sets()
                scenario_set = store.get_set(set_id)
                indicators = [i.id for i in scenario_set.indicators if i.kind == "count"]
                fill(store, n, indicators, rng)
                times, sql_times = [], []
                for _ in range(4):
                    started = time.perf_counter()
                    evidence = store.evidence(scenario_set, TODAY)
                    sql_times.append(time.perf_counter() - started)
                    # fixed sampler work (no extra draws for the MCSE gate): the fit's cost
                    # then differs between sizes only through the posterior's shape
                    result = fit(scenario_set, evidence, fixed, cache=cache)
                    times.append(time.perf_counter() - started)
                total = statistics.median(times[1:])  # the first is the warm-up
                sql = statistics.median(sql_times[1:])
                baseline = baseline or total
                print(f"  {set_id:26s} {n:>9,d} rows: evidence {sql * 1000:7.1f} ms, "
                      f"evidence + fit {total:6.2f} s, ratio to 1k {total / baseline:4.2f}"
                      f"{'' if result.passed else '  (gate failed)'}")
                store.dispose()
        print(f"  target ≤ 1.2× at 1M rows: {'met' if total / baseline <= 1.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
