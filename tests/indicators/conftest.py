import datetime as dt

import pytest

from indicators import Catalog, Indicator, load_catalog


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def today() -> dt.date:
    return dt.date(2024, 5, 15)


@pytest.fixture(scope="session")
def small_indicators() -> list[Indicator]:
    """One indicator of each kind, defined here so the tests do not depend on catalog text."""
    return [
        Indicator("drill", "count", "Joint drill", unit="exercises"),
        Indicator("cueing", "milestone", "Satellite cueing tested"),
        Indicator("trade", "signal", "Dual-use trade growth", unit="%", noise_sd=25.0),
    ]
