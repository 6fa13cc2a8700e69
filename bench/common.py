"""Shared set-up of the benchmarks: the hardware line and a sample-loaded database."""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

import indicators
from indicators import read_observations_csv
from service.db import Database
from service.repositories.observations import add_observations
from service.repositories.sets import get_catalog, load_bundled_sets

SAMPLE = Path(indicators.__file__).parent / "data" / "sample_observations.csv"
TODAY = date(2025, 12, 31)


def hardware() -> str:
    """One line: CPU model, cores, memory, Python."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (f"# hardware: {model}, {os.cpu_count()} cores{memory}; "
            f"Python {platform.python_version()}")


def sample_store(url: str) -> Database:
    """A migrated store with the bundled sets and the sample observations."""
    store = Database(url, today=TODAY)
    store.migrate()
    load_bundled_sets(store)
    observations, _ = read_observations_csv(SAMPLE, get_catalog(store), today=TODAY)
    add_observations(store, observations=observations, analyst="bench")
    return store
