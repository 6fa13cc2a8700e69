import datetime as dt

import numpy as np
import pytest

from indicators import (
    FREQUENCIES,
    PeriodGrid,
    elapsed_fraction,
    make_grid,
    period_exposure,
    period_floor,
)

D = dt.date


@pytest.mark.parametrize(
    ("freq", "day", "start"),
    [
        ("month", D(2024, 5, 17), D(2024, 5, 1)),
        ("month", D(2024, 2, 29), D(2024, 2, 1)),
        ("quarter", D(2024, 5, 17), D(2024, 4, 1)),
        ("quarter", D(2024, 3, 31), D(2024, 1, 1)),
        ("quarter", D(2024, 10, 1), D(2024, 10, 1)),
        ("quarter", D(2024, 12, 31), D(2024, 10, 1)),
        ("year", D(2024, 12, 31), D(2024, 1, 1)),
    ],
)
def test_period_floor(freq, day, start):
    assert period_floor(freq, day) == start


def test_period_floor_takes_the_date_of_a_datetime():
    assert period_floor("quarter", dt.datetime(2024, 6, 30, 23, 59)) == D(2024, 4, 1)


def test_unknown_frequency():
    assert FREQUENCIES == ("month", "quarter", "year")
    with pytest.raises(ValueError, match="freq: 'week' is not a period; use 'month', 'quarter'"):
        period_floor("week", D(2024, 1, 1))
    with pytest.raises(ValueError, match="is not a period"):
        make_grid("quarterly", D(2024, 1, 1), D(2024, 6, 1))


def test_month_grid_over_a_leap_february():
    grid = make_grid("month", D(2024, 1, 20), D(2024, 3, 2))
    assert grid.starts == (D(2024, 1, 1), D(2024, 2, 1), D(2024, 3, 1))
    assert grid.labels == ("2024-01", "2024-02", "2024-03")
    assert grid.lengths().tolist() == [31, 29, 31]
    assert make_grid("month", D(2023, 2, 1), D(2023, 2, 28)).lengths().tolist() == [28]
    assert len(grid) == 3
    assert grid.end == D(2024, 4, 1)


def test_quarter_grid_across_years():
    grid = make_grid("quarter", D(2012, 2, 15), D(2013, 4, 1))
    assert grid.labels == ("2012Q1", "2012Q2", "2012Q3", "2012Q4", "2013Q1", "2013Q2")
    # 2012 is a leap year: Q1 = 31 + 29 + 31 days.
    assert grid.lengths().tolist() == [91, 91, 92, 92, 90, 91]
    assert grid.months_per_period == 3


def test_year_grid_with_leap_years():
    grid = make_grid("year", D(2011, 7, 1), D(2013, 1, 1))
    assert grid.labels == ("2011", "2012", "2013")
    assert grid.lengths().tolist() == [365, 366, 365]
    # century rules: 2000 is a leap year (divisible by 400), 1900 is not
    assert make_grid("year", D(1999, 1, 1), D(2001, 1, 1)).lengths().tolist() == [365, 366, 365]
    assert make_grid("year", D(1899, 1, 1), D(1901, 1, 1)).lengths().tolist() == [365, 365, 365]
    assert make_grid("quarter", D(1900, 1, 1), D(1900, 1, 1)).lengths().tolist() == [90]


def test_grid_with_start_and_through_in_one_period():
    grid = make_grid("quarter", D(2024, 4, 2), D(2024, 6, 30))
    assert grid.starts == (D(2024, 4, 1),)


def test_grid_is_empty_when_through_precedes_the_first_period():
    grid = make_grid("quarter", D(2024, 5, 1), D(2024, 3, 31))
    assert len(grid) == 0
    assert grid.labels == ()
    assert grid.end is None
    # through inside the first period, even before start, still gives that period
    assert len(make_grid("quarter", D(2024, 5, 1), D(2024, 4, 1))) == 1


def test_index_of_and_bounds():
    grid = make_grid("quarter", D(2012, 1, 1), D(2012, 12, 31))
    assert grid.index_of(D(2012, 1, 1)) == 0
    assert grid.index_of(D(2012, 3, 31)) == 0
    assert grid.index_of(D(2012, 4, 1)) == 1
    assert grid.index_of(D(2012, 12, 31)) == 3
    assert grid.period_start(D(2012, 8, 9)) == D(2012, 7, 1)
    assert grid.bounds(1) == (D(2012, 4, 1), D(2012, 7, 1))
    assert grid.bounds(-1) == (D(2012, 10, 1), D(2013, 1, 1))
    with pytest.raises(IndexError):
        grid.bounds(4)
    assert grid.offset_of(D(2011, 12, 31)) == -1
    assert grid.offset_of(D(2011, 9, 30)) == -2
    assert grid.offset_of(D(2013, 1, 1)) == 4


def test_index_of_outside_the_grid():
    grid = make_grid("quarter", D(2012, 1, 1), D(2012, 12, 31))
    with pytest.raises(ValueError) as before:
        grid.index_of(D(2011, 12, 31))
    assert str(before.value) == (
        "2011-12-31 is before the grid's first period 2012Q1 (starting 2012-01-01)"
    )
    with pytest.raises(ValueError) as after:
        grid.index_of(D(2013, 1, 1))
    assert str(after.value) == (
        "2013-01-01 is after the grid's last period 2012Q4 (ending 2012-12-31)"
    )
    with pytest.raises(ValueError, match="the grid is empty"):
        PeriodGrid("month", ()).index_of(D(2024, 1, 1))


def test_month_index_across_years():
    grid = make_grid("month", D(2023, 11, 1), D(2024, 2, 1))
    assert grid.index_of(D(2024, 2, 29)) == 3


def test_grid_validation():
    with pytest.raises(ValueError) as misaligned:
        PeriodGrid("quarter", (D(2024, 2, 1),))
    assert str(misaligned.value) == (
        "starts[0]: 2024-02-01 is not the first day of a quarter; use 2024-01-01"
    )
    with pytest.raises(ValueError) as gap:
        PeriodGrid("month", (D(2024, 1, 1), D(2024, 3, 1)))
    assert str(gap.value) == (
        "starts[1]: 2024-03-01 does not follow 2024-01-01; expected 2024-02-01 "
        "(periods must be contiguous)"
    )
    with pytest.raises(TypeError, match="expected a datetime.date"):
        PeriodGrid("month", ("2024-01-01",))
    assert PeriodGrid("year", [D(2020, 1, 1), D(2021, 1, 1)]).starts == (
        D(2020, 1, 1),
        D(2021, 1, 1),
    )


def test_grids_compare_by_value():
    assert make_grid("month", D(2024, 1, 5), D(2024, 2, 5)) == PeriodGrid(
        "month", (D(2024, 1, 1), D(2024, 2, 1))
    )


@pytest.mark.parametrize(
    ("freq", "as_of", "fraction"),
    [
        ("quarter", D(2024, 1, 1), 1 / 91),
        ("quarter", D(2024, 2, 29), 60 / 91),
        ("quarter", D(2024, 3, 31), 1.0),
        ("quarter", D(2025, 1, 1), 1.0),
        ("month", D(2024, 3, 14), 14 / 31),
        ("year", D(2024, 7, 1), 183 / 366),
        ("year", D(2024, 12, 31), 1.0),
    ],
)
def test_elapsed_fraction_of_the_last_period(freq, as_of, fraction):
    grid = make_grid(freq, D(2023, 1, 1), D(2024, 3, 1))
    assert elapsed_fraction(grid, as_of) == pytest.approx(fraction, rel=1e-15)


def test_elapsed_fraction_errors():
    grid = make_grid("quarter", D(2024, 1, 1), D(2024, 6, 1))
    with pytest.raises(ValueError, match="as_of 2024-03-31 is before the last period 2024Q2"):
        elapsed_fraction(grid, D(2024, 3, 31))
    with pytest.raises(ValueError, match="the grid is empty"):
        elapsed_fraction(PeriodGrid("quarter", ()), D(2024, 3, 31))


def test_period_exposure():
    grid = make_grid("quarter", D(2024, 1, 1), D(2024, 12, 31))
    exposure = period_exposure(grid, D(2024, 5, 15))
    assert exposure.dtype == np.float64
    np.testing.assert_allclose(exposure, [1.0, 45 / 91, 0.0, 0.0], rtol=1e-15)
    np.testing.assert_array_equal(period_exposure(grid, None), np.ones(4))
    np.testing.assert_array_equal(period_exposure(grid, D(2023, 12, 31)), np.zeros(4))
    assert period_exposure(grid, D(2024, 12, 31))[-1] == 1.0
    assert period_exposure(PeriodGrid("month", ()), D(2024, 1, 1)).shape == (0,)
