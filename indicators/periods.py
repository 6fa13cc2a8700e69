"""Period grids: the months, quarters or years over which evidence is aggregated."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

__all__ = [
    "FREQUENCIES",
    "Frequency",
    "PeriodGrid",
    "elapsed_fraction",
    "make_grid",
    "period_exposure",
    "period_floor",
]

Frequency = Literal["month", "quarter", "year"]
FREQUENCIES: tuple[str, ...] = get_args(Frequency)

_MONTHS_PER_PERIOD = {"month": 1, "quarter": 3, "year": 12}


def _check_freq(freq: str) -> int:
    try:
        return _MONTHS_PER_PERIOD[freq]
    except (KeyError, TypeError):
        raise ValueError(
            f"freq: {freq!r} is not a period; use 'month', 'quarter' or 'year'"
        ) from None


def _as_date(value: dt.date, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if not isinstance(value, dt.date):
        raise TypeError(f"{name}: expected a datetime.date, got {type(value).__name__}")
    return value


def period_floor(freq: Frequency, d: dt.date) -> dt.date:
    """Return the first day of the period holding a date.

    Parameters
    ----------
    freq : {"month", "quarter", "year"}
        The period length.
    d : datetime.date
        Any date (a datetime is taken as its date).

    Returns
    -------
    datetime.date
        ``2024-05-17`` → ``2024-05-01`` (month), ``2024-04-01`` (quarter), ``2024-01-01`` (year).

    Raises
    ------
    ValueError
        If ``freq`` is not a period.

    """
    step = _check_freq(freq)
    d = _as_date(d, "date")
    month = (d.month - 1) // step * step + 1
    return dt.date(d.year, month, 1)


def add_months(start: dt.date, months: int) -> dt.date:
    """Move a first-of-month date by a number of months (``2024-11-01`` + 3 → ``2025-02-01``)."""
    index = start.year * 12 + (start.month - 1) + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _month_number(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


def _label(freq: str, start: dt.date) -> str:
    if freq == "month":
        return f"{start.year:04d}-{start.month:02d}"
    if freq == "quarter":
        return f"{start.year:04d}Q{(start.month - 1) // 3 + 1}"
    return f"{start.year:04d}"


@dataclass(frozen=True)
class PeriodGrid:
    """Contiguous periods of one frequency, given by their start dates.

    Parameters
    ----------
    freq : {"month", "quarter", "year"}
        The period length.
    starts : tuple of datetime.date
        First day of each period, in order, with no gaps; may be empty.

    Raises
    ------
    ValueError
        If ``freq`` is unknown, a start is not the first day of its period, or the starts
        are not contiguous.

    """

    freq: Frequency
    starts: tuple[dt.date, ...]

    def __post_init__(self) -> None:
        step = _check_freq(self.freq)
        starts = tuple(_as_date(s, "starts") for s in self.starts)
        for i, start in enumerate(starts):
            if period_floor(self.freq, start) != start:
                raise ValueError(
                    f"starts[{i}]: {start} is not the first day of a {self.freq}; "
                    f"use {period_floor(self.freq, start)}"
                )
            if i and start != add_months(starts[i - 1], step):
                raise ValueError(
                    f"starts[{i}]: {start} does not follow {starts[i - 1]}; "
                    f"expected {add_months(starts[i - 1], step)} (periods must be contiguous)"
                )
        object.__setattr__(self, "starts", starts)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def months_per_period(self) -> int:
        """Number of months in one period (1, 3 or 12)."""
        return _MONTHS_PER_PERIOD[self.freq]

    @property
    def labels(self) -> tuple[str, ...]:
        """Period labels: ``"2012-01"`` (month), ``"2012Q1"`` (quarter), ``"2012"`` (year)."""
        return tuple(_label(self.freq, start) for start in self.starts)

    @property
    def end(self) -> dt.date | None:
        """The day after the last period (exclusive end of the grid), None if empty."""
        if not self.starts:
            return None
        return add_months(self.starts[-1], self.months_per_period)

    def period_start(self, d: dt.date) -> dt.date:
        """Return the first day of the period (of this grid's frequency) holding ``d``."""
        return period_floor(self.freq, d)

    def offset_of(self, d: dt.date) -> int:
        """Return the period index of ``d`` relative to the first period, even outside the grid.

        Negative before the grid, ``>= len(grid)`` after it.

        Raises
        ------
        ValueError
            If the grid is empty.

        """
        if not self.starts:
            raise ValueError("the grid is empty: it has no periods")
        months = _month_number(_as_date(d, "date")) - _month_number(self.starts[0])
        return months // self.months_per_period

    def index_of(self, d: dt.date) -> int:
        """Return the index of the period holding ``d``.

        Parameters
        ----------
        d : datetime.date
            Any date inside the grid.

        Returns
        -------
        int

        Raises
        ------
        ValueError
            If ``d`` falls before the first or after the last period (or the grid is empty).

        """
        if not self.starts:
            raise ValueError(f"{d} is outside the grid: the grid is empty")
        index = self.offset_of(d)
        if index < 0:
            raise ValueError(
                f"{d} is before the grid's first period {self.labels[0]} "
                f"(starting {self.starts[0]})"
            )
        if index >= len(self.starts):
            raise ValueError(
                f"{d} is after the grid's last period {_label(self.freq, self.starts[-1])} "
                f"(ending {self.end - dt.timedelta(days=1)})"
            )
        return index

    def bounds(self, i: int) -> tuple[dt.date, dt.date]:
        """Return ``(start, end_exclusive)`` of period ``i`` (negative counts from the end).

        Raises
        ------
        IndexError
            If there is no period ``i``.

        """
        start = self.starts[i]
        return start, add_months(start, self.months_per_period)

    def lengths(self) -> np.ndarray:
        """Return the length of each period in days (int64 array of shape ``(T,)``)."""
        starts = np.array(self.starts, dtype="datetime64[D]")
        ends = starts.astype("datetime64[M]") + np.timedelta64(self.months_per_period, "M")
        return (ends.astype("datetime64[D]") - starts).astype(np.int64)


def make_grid(freq: Frequency, start: dt.date, through: dt.date) -> PeriodGrid:
    """Build the grid from the period holding ``start`` to the period holding ``through``.

    Parameters
    ----------
    freq : {"month", "quarter", "year"}
        The period length.
    start : datetime.date
        Any date in the first period.
    through : datetime.date
        Any date in the last period (typically ``min(as_of, end)``).

    Returns
    -------
    PeriodGrid
        Empty if ``through`` is before the first period's start.

    Raises
    ------
    ValueError
        If ``freq`` is not a period.

    """
    step = _check_freq(freq)
    first = period_floor(freq, start)
    through = _as_date(through, "through")
    if through < first:
        return PeriodGrid(freq, ())
    n = (_month_number(through) - _month_number(first)) // step + 1
    return PeriodGrid(freq, tuple(add_months(first, i * step) for i in range(n)))


def elapsed_fraction(grid: PeriodGrid, as_of: dt.date) -> float:
    """Return the elapsed fraction of the grid's last period on ``as_of`` (inclusive).

    Parameters
    ----------
    grid : PeriodGrid
        A non-empty grid.
    as_of : datetime.date
        The evidence date; the whole of that day counts as elapsed.

    Returns
    -------
    float
        ``((as_of - start).days + 1) / period length in days``, at most 1: the last day of
        the period (or any later date) gives 1.0; its first day gives 1/length.

    Raises
    ------
    ValueError
        If the grid is empty or ``as_of`` is before the last period starts (then no part of
        it has elapsed: build the grid through ``as_of``).

    """
    if not grid.starts:
        raise ValueError("the grid is empty: it has no last period")
    as_of = _as_date(as_of, "as_of")
    start, end = grid.bounds(-1)
    if as_of < start:
        raise ValueError(
            f"as_of {as_of} is before the last period {grid.labels[-1]} starts ({start}); "
            "build the grid through as_of"
        )
    return min(1.0, ((as_of - start).days + 1) / (end - start).days)


def period_exposure(grid: PeriodGrid, as_of: dt.date | None) -> np.ndarray:
    """Return how much of each period had elapsed on ``as_of``.

    Parameters
    ----------
    grid : PeriodGrid
        The periods.
    as_of : datetime.date or None
        The evidence date (inclusive). None: every period is finished.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(T,)``: 1 for finished periods, the elapsed fraction for the
        period holding ``as_of``, 0 for periods that start after ``as_of``.

    """
    n = len(grid)
    if as_of is None or n == 0:
        return np.ones(n, dtype=np.float64)
    as_of = _as_date(as_of, "as_of")
    starts = np.array(grid.starts, dtype="datetime64[D]")
    elapsed = (np.datetime64(as_of, "D") - starts).astype(np.int64) + 1
    return np.clip(elapsed / grid.lengths(), 0.0, 1.0)
