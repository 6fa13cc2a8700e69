"""(c) Evidence + fit time with 1k, 100k and 1M observation rows in the database.

Run: ``make bench-rows``. Each size is a fresh SQLite database; the model is warm (compiled
once); ratios are against the 1k-row database in the same run; the target is ≤ 1.2× at 1M.

Two fillings, because a fit's time has two parts that rows could move:

* **same evidence**: the 96 sample observations plus rows that are stored but are not evidence
  of the set's window — retracted observations and history dated before the set's start. The
  posterior is the same at every size, so any slow-down is the cost of the rows themselves.
* **all evidence**: every row a live, in-window event (synthetic, graded). A million events is
  a different posterior from a thousand, and NUTS needs a different number of gradient
  evaluations for it (reported as the mean tree size), so this series mixes row cost with
  posterior shape; its SQL time is the rows' share.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import date

import numpy as np

from bench.common import TODAY, hardware, sample_store
from forecast import FitSettings, ModelCache, SamplerSettings, fit
from service.db import Database, ObservationRow
from service.repositories.evidence import evidence_of
from service.repositories.observations import count_observations, month_index
from service.repositories.sets import get_set, load_bundled_sets

SIZES = (1_000, 100_000, 1_000_000)
SET_IDS = ("world-order-2035", "sino-russian-convergence")
FIXED = FitSettings(sampler=SamplerSettings(max_draws=1500, reweight=False))


def fill(store: Database, n: int, indicators: list[str], rng: np.random.Generator,
         start: date = date(2012, 1, 1), end: date = TODAY, retracted: bool = False) -> None:
    """Insert n observations through the store's bulk path (statistics kept as it goes).

    Retracted rows are stored as retracted (they never enter the monthly statistics).
    """
    start, end = start.toordinal(), end.toordinal()
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
                analyst="bench", created_at=store.clock(),
                retracted_at=store.clock() if retracted else None,
                retraction_reason="bench" if retracted else None))
        with store.Session.begin() as session:
            session.add_all(rows)
            if not retracted:
                store._add_to_months(session, rows)


def fill_history_and_retractions(store: Database, n: int, indicators: list[str],
                                 rng: np.random.Generator) -> None:
    """Top the store up to n rows with rows that are not evidence of any set's window."""
    rest = n - count_observations(store)
    start = min(get_set(store, set_id=i).start for i in SET_IDS)  # history before every window
    fill(store, rest // 2, indicators, rng, start=date(start.year - 20, 1, 1),
         end=date(start.year - 1, 12, 31))
    fill(store, rest - rest // 2, indicators, rng, retracted=True)


def measure(store: Database, set_id: str, cache: ModelCache) -> tuple[float, float, float, bool]:
    """Median evidence time, evidence + fit time, mean tree size, gate verdict."""
    scenario_set = get_set(store, set_id=set_id)
    times, sql_times, steps = [], [], []
    for _ in range(4):
        started = time.perf_counter()
        evidence = evidence_of(store, scenario_set=scenario_set, as_of=TODAY)
        sql_times.append(time.perf_counter() - started)
        # fixed sampler work (no extra draws for the MCSE gate)
        result = fit(scenario_set, evidence, FIXED, cache=cache)
        times.append(time.perf_counter() - started)
        steps.append(float(result.datatree["sample_stats"]["n_steps"].mean()))
    # the first is the warm-up
    return (statistics.median(sql_times[1:]), statistics.median(times[1:]),
            statistics.median(steps[1:]), result.passed)


def main() -> None:
    print(hardware())
    print("\n(c) evidence (SQL) + fit, warm model, by rows in the database")
    rng = np.random.default_rng(0)
    cache = ModelCache()
    for filling in ("same evidence", "all evidence"):
        print(f"\n  {filling}:")
        baseline: dict[str, float] = {}
        for n in SIZES:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/rows.db"
                if filling == "same evidence":  # the sample observations, then filler
                    store = sample_store(url)
                else:
                    store = Database(url, today=TODAY)
                    store.migrate()
                    load_bundled_sets(store)
                counts = sorted({i.id for set_id in SET_IDS
                                 for i in get_set(store,
                                                  set_id=set_id).indicators if i.kind == "count"})
                if filling == "same evidence":
                    fill_history_and_retractions(store, n, counts, rng)
                else:
                    fill(store, n, counts, rng)
                for set_id in SET_IDS:
                    sql, total, steps, passed = measure(store, set_id, cache)
                    baseline.setdefault(set_id, total)
                    ratio = total / baseline[set_id]
                    print(f"  {set_id:26s} {n:>9,d} rows: evidence {sql * 1000:6.1f} ms, "
                          f"evidence + fit {total:6.2f} s (tree size {steps:4.1f}), "
                          f"ratio to 1k {ratio:4.2f}{'' if passed else '  (gate failed)'}"
                          + (f"  target ≤ 1.2×: {'met' if ratio <= 1.2 else 'MISSED'}"
                             if n == SIZES[-1] else ""))
                store.dispose()


if __name__ == "__main__":
    main()
