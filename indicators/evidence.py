"""Evidence: observations aggregated per period and indicator into sufficient statistics.

Everything the model needs fits in three ``(T, J)`` arrays, whatever the number of
observations (T periods, J indicators). With ``w`` an observation's weight (from its grade)
and ``e_t`` the *covered* fraction of period t for the indicator: the part of the period up to
the indicator's coverage date (`indicators.coverage`; ``as_of`` when no coverage is given), so
1 for periods covered in full, the covered fraction for the one holding the coverage date, 0
for periods after it. Observations dated after an indicator's coverage are not evidence yet:
a period nobody reviewed is missing, not quiet.

=========  ==========================================  ========================  ==========
kind       counts[t, j]                                exposure[t, j]            sumsq
=========  ==========================================  ========================  ==========
count      Σ w·value                                   e_t                       0
milestone  w* in the first-occurrence period, else 0   e_t up to the occurrence  0
signal     Σ w·value                                   Σ w                       Σ w·value²
=========  ==========================================  ========================  ==========

The model's tempered log-likelihoods are then

- count (Poisson rate λ): ``counts·log λ − exposure·λ`` (+ const);
- milestone (hazard h): ``counts·log h + (exposure − counts)·log(1 − h)``;
- signal (mean μ, noise sd σ): ``−(sumsq − 2μ·counts + μ²·exposure) / (2σ²)`` (+ const).

Milestones in detail. Periods are at risk up to and including the first occurrence, none
after it. Later reports of the same milestone corroborate: they add no periods, but the
occurrence weighs ``w* = max`` of the weights of all its reports, so a better-graded report
raises it. The occurrence period enters with ``exposure = w* + (1 − w*)·e_t``: read the
weight as trust in the report, so with weight w* the period resolved as an occurrence (a
full period, ``log h``), and with weight 1 − w* the report is wrong and the period is an
ordinary non-occurrence period (``e_t·log(1 − h)``). For an A1 report, or any report in a
finished period, this is exposure 1; it always keeps ``counts ≤ exposure``. A milestone
reported *before* the grid's first period was reached before the question started: its
column is all zero (the periods in the window say nothing about its hazard), rather than a
run of non-occurrences.

Both `build_evidence` (raw observations) and `evidence_from_aggregates` (rows of a SQL
``GROUP BY indicator, period``) go through one code path: the first aggregates with
`aggregate_observations` and calls the second.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from indicators._text import did_you_mean, quoted_list
from indicators.catalog import Indicator
from indicators.exceptions import InvalidObservation, SignpostIndicatorError, UnknownIndicator
from indicators.grades import DEFAULT_GRADES, GradeTable
from indicators.kinds import KINDS, Sums, category_width, get_kind
from indicators.observations import Observation
from indicators.periods import PeriodGrid, period_exposure

__all__ = [
    "AGGREGATE_COLUMNS",
    "OBSERVATION_COLUMNS",
    "AggregateRow",
    "Evidence",
    "aggregate_observations",
    "build_evidence",
    "evidence_from_aggregates",
    "weighted_observations",
]

OBSERVATION_COLUMNS: tuple[str, ...] = ("date", "indicator", "value", "weight")
AGGREGATE_COLUMNS: tuple[str, ...] = (
    "indicator",
    "period",
    "n_obs",
    "sum_w",
    "sum_wv",
    "sum_wvv",
    "max_w",
)
#: an optional aggregate column: the stratum of the rows (a level's index; 0 otherwise)
STRATUM = "stratum"
_HASH_VERSION = "signpost-evidence-v2"  # v2: coverage dates
_SIGNIFICANT_DIGITS = 12


class AggregateRow(NamedTuple):
    """Observations of one indicator in one period (or on one day), summed.

    ``period`` is either the period index relative to the grid's first period (negative
    before it) or a date in the period (e.g. the observation date when grouping by day).
    """

    indicator: str
    period: int | dt.date
    n_obs: int
    sum_w: float  # Σ w
    sum_wv: float  # Σ w·value
    sum_wvv: float  # Σ w·value²
    max_w: float  # max w
    stratum: int = 0  # a level's index (see `indicators.kinds`); 0 for other kinds


@dataclass(frozen=True, eq=False)
class Evidence:
    """Sufficient statistics of the observations, per period and indicator.

    Parameters
    ----------
    grid : PeriodGrid
        The periods (rows).
    indicator_ids : tuple of str
        The indicators (columns).
    kinds : tuple of str
        The kind of each indicator, in the same order.
    counts, exposure, sumsq : numpy.ndarray
        Float64 arrays of shape ``(T, J)``; see the module docstring for their meaning per
        kind. Stored as read-only copies.
    as_of : datetime.date or None
        The evidence date (observations after it were left out), None if not cut.
    coverage : tuple of (datetime.date or None) or None
        Per indicator, the date its evidence is complete through (None: nothing covered);
        None when the evidence was built without coverage (everything through ``as_of``).
    tallies : numpy.ndarray or None
        (T, J, L) Σ w per category of categorical kinds (a level's levels), 0 elsewhere;
        L is the most levels any indicator has (0, the default, when none has any).

    Raises
    ------
    SignpostIndicatorError
        If shapes disagree, an id repeats, a kind is unknown, or a value breaks an invariant
        (non-finite, negative, or a milestone count above its exposure).

    """

    grid: PeriodGrid
    indicator_ids: tuple[str, ...]
    kinds: tuple[str, ...]
    counts: np.ndarray
    exposure: np.ndarray
    sumsq: np.ndarray
    as_of: dt.date | None = None
    coverage: tuple[dt.date | None, ...] | None = None
    tallies: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = tuple(self.indicator_ids)
        kinds = tuple(self.kinds)
        if len(set(ids)) != len(ids):
            raise SignpostIndicatorError(f"Evidence: indicator_ids repeat: {ids}")
        if len(kinds) != len(ids):
            raise SignpostIndicatorError(
                f"Evidence: {len(kinds)} kinds for {len(ids)} indicators; give one per indicator"
            )
        for kind in kinds:
            if kind not in KINDS:
                raise SignpostIndicatorError(f"Evidence: kind {kind!r} is not one of {KINDS}")
        shape = (len(self.grid), len(ids))
        arrays = {}
        for name in ("counts", "exposure", "sumsq"):
            array = np.array(getattr(self, name), dtype=np.float64, copy=True)
            if array.size == 0:
                array = array.reshape(shape)
            if array.shape != shape:
                raise SignpostIndicatorError(
                    f"Evidence: {name} has shape {array.shape}, expected {shape} "
                    "(periods × indicators)"
                )
            if not np.isfinite(array).all():
                raise SignpostIndicatorError(f"Evidence: {name} holds NaN or infinite values")
            array.setflags(write=False)
            arrays[name] = array
        counts, exposure, sumsq = arrays["counts"], arrays["exposure"], arrays["sumsq"]
        tallies = np.zeros((*shape, 0)) if self.tallies is None else np.array(
            self.tallies, dtype=np.float64, copy=True)
        if tallies.ndim != 3 or tallies.shape[:2] != shape or not np.isfinite(tallies).all():
            raise SignpostIndicatorError(
                f"Evidence: tallies must be finite, of shape {shape} × levels; got "
                f"{tallies.shape}")
        tallies.setflags(write=False)
        arrays["tallies"] = tallies
        if (exposure < 0).any() or (sumsq < 0).any():
            raise SignpostIndicatorError("Evidence: exposure and sumsq must be ≥ 0")
        for j, kind in enumerate(kinds):
            problem = get_kind(kind).check_evidence(counts[:, j], exposure[:, j], sumsq[:, j],
                                                    tallies[:, j])
            if problem:
                raise SignpostIndicatorError(f"Evidence: {problem} ('{ids[j]}')")
        as_of = self.as_of
        if isinstance(as_of, dt.datetime):
            as_of = as_of.date()
        object.__setattr__(self, "indicator_ids", ids)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "as_of", as_of)
        if self.coverage is not None:
            coverage = tuple(None if d is None else _as_date(d) for d in self.coverage)
            if len(coverage) != len(ids):
                raise SignpostIndicatorError(
                    f"Evidence: {len(coverage)} coverage dates for {len(ids)} indicators")
            object.__setattr__(self, "coverage", coverage)
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    @property
    def n_periods(self) -> int:
        """Number of periods T."""
        return len(self.grid)

    @property
    def n_indicators(self) -> int:
        """Number of indicators J."""
        return len(self.indicator_ids)

    def column(self, indicator_id: str) -> int:
        """Return the column index of an indicator.

        Raises
        ------
        UnknownIndicator
            If the indicator is not in this evidence (the message suggests the closest id).

        """
        try:
            return self.indicator_ids.index(indicator_id)
        except ValueError:
            hint = did_you_mean(str(indicator_id), self.indicator_ids)
            raise UnknownIndicator(
                "indicator", f"'{indicator_id}' is not in this evidence{hint}"
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evidence):
            return NotImplemented
        return (
            self.grid == other.grid
            and self.indicator_ids == other.indicator_ids
            and self.kinds == other.kinds
            and self.as_of == other.as_of
            and self.coverage == other.coverage
            and np.array_equal(self.counts, other.counts)
            and np.array_equal(self.exposure, other.exposure)
            and np.array_equal(self.sumsq, other.sumsq)
            and np.array_equal(self.tallies, other.tallies)
        )

    def __hash__(self) -> int:
        return int(self.hash()[:16], 16)

    @cached_property
    def _digest(self) -> str:
        payload = {
            "version": _HASH_VERSION,
            "freq": self.grid.freq,
            "starts": [start.isoformat() for start in self.grid.starts],
            "indicator_ids": list(self.indicator_ids),
            "kinds": list(self.kinds),
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "coverage": self._coverage_list(),
            "shape": [self.n_periods, self.n_indicators],
            "counts": _canonical(self.counts),
            "exposure": _canonical(self.exposure),
            "sumsq": _canonical(self.sumsq),
        }
        if self.tallies.shape[2]:  # only then: evidence without levels keeps its old hash
            payload["tallies"] = _canonical(self.tallies)
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode("ascii")).hexdigest()

    def hash(self) -> str:
        """Return a SHA-256 hex digest of the evidence, stable across processes.

        It covers the grid (frequency and starts), the indicator ids and kinds, ``as_of``, the
        coverage dates and the three arrays rounded to 12 significant digits, so float noise
        from a different summation order does not change it. A refit is skipped when it is
        unchanged.
        """
        return self._digest

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (the inverse of `from_dict`)."""
        return {
            "freq": self.grid.freq,
            "starts": [start.isoformat() for start in self.grid.starts],
            "indicator_ids": list(self.indicator_ids),
            "kinds": list(self.kinds),
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "coverage": self._coverage_list(),
            "counts": self.counts.tolist(),
            "exposure": self.exposure.tolist(),
            "sumsq": self.sumsq.tolist(),
            **({"tallies": self.tallies.tolist()} if self.tallies.shape[2] else {}),
        }

    def _coverage_list(self) -> list[str | None] | None:
        if self.coverage is None:
            return None
        return [None if d is None else d.isoformat() for d in self.coverage]

    def coverage_of(self, indicator_id: str) -> dt.date | None:
        """The date an indicator's evidence is complete through (``as_of`` without coverage)."""
        if self.coverage is None:
            return self.as_of
        return self.coverage[self.column(indicator_id)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Rebuild evidence from `to_dict` output.

        Raises
        ------
        SignpostIndicatorError
            If a key is missing or unknown or a value is invalid.

        """
        keys = ("freq", "starts", "indicator_ids", "kinds", "as_of", "counts", "exposure", "sumsq")
        optional = ("coverage", "tallies")
        for key in data:
            if key in optional:
                continue
            if key not in keys:
                raise SignpostIndicatorError(
                    f"Evidence.from_dict: unknown key {key!r}{did_you_mean(str(key), keys)}"
                )
        missing = [key for key in keys if key not in data]
        if missing:
            raise SignpostIndicatorError(f"Evidence.from_dict: missing {quoted_list(missing)}")
        try:
            grid = PeriodGrid(data["freq"], tuple(dt.date.fromisoformat(s) for s in data["starts"]))
            as_of = None if data["as_of"] is None else dt.date.fromisoformat(data["as_of"])
            coverage = data.get("coverage")
            if coverage is not None:
                coverage = tuple(None if d is None else dt.date.fromisoformat(d)
                                 for d in coverage)
        except (TypeError, ValueError) as exc:
            raise SignpostIndicatorError(f"Evidence.from_dict: {exc}") from exc
        shape = (len(grid), len(data["indicator_ids"]))
        arrays = {}
        for name in ("counts", "exposure", "sumsq"):
            try:
                arrays[name] = np.asarray(data[name], dtype=np.float64).reshape(shape)
            except (TypeError, ValueError) as exc:
                raise SignpostIndicatorError(
                    f"Evidence.from_dict: {name}: expected {shape[0]} × {shape[1]} numbers"
                ) from exc
        tallies = data.get("tallies")
        if tallies is not None:
            try:
                tallies = np.asarray(tallies, dtype=np.float64).reshape(*shape, -1)
            except (TypeError, ValueError) as exc:
                raise SignpostIndicatorError(
                    f"Evidence.from_dict: tallies: expected {shape[0]} × {shape[1]} × levels "
                    "numbers") from exc
        return cls(
            grid=grid,
            indicator_ids=tuple(data["indicator_ids"]),
            kinds=tuple(data["kinds"]),
            as_of=as_of,
            coverage=coverage,
            tallies=tallies,
            **arrays,
        )

    def to_frame(self) -> pd.DataFrame:
        """Return the evidence in long form: one row per period and indicator.

        Columns: ``period`` (label), ``start``, ``indicator``, ``kind``, ``counts``,
        ``exposure``, ``sumsq``.
        """
        T, J = self.n_periods, self.n_indicators
        return pd.DataFrame(
            {
                "period": np.repeat(np.array(self.grid.labels, dtype=object), J),
                "start": np.repeat(np.array(self.grid.starts, dtype=object), J),
                "indicator": np.tile(np.array(self.indicator_ids, dtype=object), T),
                "kind": np.tile(np.array(self.kinds, dtype=object), T),
                "counts": self.counts.ravel(),
                "exposure": self.exposure.ravel(),
                "sumsq": self.sumsq.ravel(),
            }
        )


def _as_date(value: dt.date) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


CoverageDates = Mapping[str, dt.date | None]


def _cut_dates(ids: Sequence[str], as_of: dt.date | None,
               coverage: CoverageDates | None) -> list[dt.date | None] | None:
    """Per indicator, the last date whose observations count.

    Its coverage, never past ``as_of``. None (no cut at all) when neither is given; an entry
    of None when the indicator covers nothing.
    """
    if coverage is None:
        return None if as_of is None else [as_of] * len(ids)
    missing = [i for i in ids if i not in coverage]
    if missing:
        raise SignpostIndicatorError(f"coverage: no date for {quoted_list(missing)}")
    cuts = []
    for indicator in ids:
        date = coverage[indicator]
        if date is not None:
            date = _as_date(date)
            if as_of is not None:
                date = min(date, as_of)
        cuts.append(date)
    return cuts


def _row_cuts(cuts: list[dt.date | None] | None, column: np.ndarray) -> np.ndarray | None:
    """The cut date of each row (by its column; NaT where the indicator covers nothing)."""
    if cuts is None:
        return None
    table = np.array([np.datetime64("NaT", "D") if c is None else np.datetime64(c, "D")
                      for c in cuts] + [np.datetime64("NaT", "D")], dtype="datetime64[D]")
    return table[np.where(column >= 0, column, len(cuts))]


def _canonical(array: np.ndarray) -> list[str]:
    """Format values to 12 significant digits (``-0`` as ``0``) for hashing."""
    if array.size == 0:
        return []
    return np.char.mod(f"%.{_SIGNIFICANT_DIGITS}g", (array + 0.0).ravel()).tolist()


def _indicator_list(indicators: Sequence[Indicator] | Mapping[str, Indicator]) -> list[Indicator]:
    items = list(indicators.values()) if isinstance(indicators, Mapping) else list(indicators)
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, Indicator):
            raise SignpostIndicatorError(
                f"indicators: expected Indicator objects, got {type(item).__name__}"
            )
        if item.id in seen:
            raise SignpostIndicatorError(f"indicators: '{item.id}' is given twice")
        seen.add(item.id)
    return items


def _to_days(values: pd.Series | np.ndarray, what: str) -> np.ndarray:
    """Convert dates (date objects, datetimes, datetime64, ISO strings) to datetime64[D]."""
    series = pd.Series(values, copy=False)
    try:
        if not pd.api.types.is_datetime64_any_dtype(series.dtype):
            series = pd.to_datetime(series)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SignpostIndicatorError(f"{what}: not dates: {exc}") from exc
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_localize(None)  # the date as written, wherever that was
    return series.dt.normalize().to_numpy().astype("datetime64[D]")


def _check_dates(days: np.ndarray, used: np.ndarray, field: str, what: str) -> None:
    missing = np.flatnonzero(np.isnat(days) & used)
    if missing.size:
        raise InvalidObservation(field, "is missing", context=f"{what} {int(missing[0])}")


def _offsets(grid: PeriodGrid, days: np.ndarray) -> np.ndarray:
    """Period index of each day relative to the grid's first period (vectorised)."""
    months = days.astype("datetime64[M]").astype(np.int64)
    first = np.datetime64(grid.starts[0], "M").astype(np.int64)
    return (months - first) // grid.months_per_period


def _observation_frame(
    observations: Iterable[tuple[dt.date, str, float, float]] | pd.DataFrame,
) -> pd.DataFrame:
    if isinstance(observations, pd.DataFrame):
        missing = [c for c in OBSERVATION_COLUMNS if c not in observations.columns]
        if missing:
            raise SignpostIndicatorError(
                f"observations: missing column(s) {quoted_list(missing)}; "
                f"expected {quoted_list(OBSERVATION_COLUMNS)}"
            )
        return observations.loc[:, list(OBSERVATION_COLUMNS)]
    records = list(observations)
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in OBSERVATION_COLUMNS})
    try:
        return pd.DataFrame.from_records(records, columns=list(OBSERVATION_COLUMNS))
    except (TypeError, ValueError, AssertionError) as exc:
        raise SignpostIndicatorError(
            "observations: expected (date, indicator, value, weight) tuples"
        ) from exc


def _numeric(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    try:
        values = pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SignpostIndicatorError(f"{what}: {column}: not numbers ({exc})") from exc
    return values


def _first_bad(mask: np.ndarray, positions: np.ndarray) -> int | None:
    bad = np.flatnonzero(mask)
    return int(positions[bad[0]]) if bad.size else None


def aggregate_observations(
    grid: PeriodGrid,
    indicators: Sequence[Indicator] | Mapping[str, Indicator],
    observations: Iterable[tuple[dt.date, str, float, float]] | pd.DataFrame,
    as_of: dt.date | None = None,
    coverage: CoverageDates | None = None,
) -> pd.DataFrame:
    """Aggregate weighted observations per indicator and period (what SQL would return).

    Parameters
    ----------
    grid : PeriodGrid
        The periods.
    indicators : sequence of Indicator (or a Catalog)
        The indicators to keep; observations of others are ignored.
    observations : iterable of (date, indicator, value, weight) or pandas.DataFrame
        A DataFrame needs the columns ``date, indicator, value, weight``.
    as_of : datetime.date, optional
        Observations dated after it are ignored.
    coverage : mapping of str to (datetime.date or None), optional
        Per indicator, the date its log is complete through: later observations are ignored
        too (not evidence yet), and all of an indicator's when its coverage is None.

    Returns
    -------
    pandas.DataFrame
        Columns `AGGREGATE_COLUMNS` (``indicator, period, n_obs, sum_w, sum_wv, sum_wvv,
        max_w``), one row per (indicator, period) with observations, ``period`` the integer
        period index. Rows are kept for periods inside the grid, plus (milestones only)
        periods before it, which mark a milestone reached before the window.

    Raises
    ------
    InvalidObservation
        If a kept observation has a weight outside (0, 1], a non-finite value, or a
        negative count (``context`` names its position, 0-based).
    SignpostIndicatorError
        If the input does not have the expected columns or types.

    """
    specs = _indicator_list(indicators)
    ids = np.array([spec.id for spec in specs], dtype=object)
    # kinds whose observations before the window still say something (a milestone reached)
    early = np.array([get_kind(spec.kind).reads_before_window for spec in specs], dtype=bool)
    frame = _observation_frame(observations)
    empty = pd.DataFrame(
        {
            "indicator": pd.Series(dtype=object),
            "period": pd.Series(dtype=np.int64),
            "n_obs": pd.Series(dtype=np.int64),
            **{c: pd.Series(dtype=np.float64) for c in ("sum_w", "sum_wv", "sum_wvv", "max_w")},
        }
    )
    if len(frame) == 0 or len(grid) == 0 or len(specs) == 0:
        return empty

    column = pd.Index(list(ids), dtype=object).get_indexer(frame["indicator"].to_numpy())
    days = _to_days(frame["date"], "observation")
    keep = column >= 0
    _check_dates(days, keep, "date", "observation")
    offsets = _offsets(grid, days)
    row_cuts = _row_cuts(_cut_dates(list(ids), as_of, coverage), column)
    if row_cuts is not None:
        keep &= ~np.isnat(row_cuts) & (days <= row_cuts)
    in_grid = (offsets >= 0) & (offsets < len(grid))
    keep &= in_grid | (early[np.maximum(column, 0)] & (offsets < 0))

    positions = np.flatnonzero(keep)
    column, offsets = column[keep], offsets[keep]
    kept = frame.iloc[positions]
    value = _numeric(kept, "value", "observations")
    weight = _numeric(kept, "weight", "observations")
    checks = [
        ("weight", ~(np.isfinite(weight) & (weight > 0) & (weight <= 1)), "must be in (0, 1]"),
        ("value", ~np.isfinite(value), "must be a finite number"),
    ]
    stratum = np.zeros(len(value), dtype=np.int64)
    for j, spec in enumerate(specs):
        rows = column == j
        if not rows.any():
            continue
        kind = get_kind(spec.kind)
        bad = kind.bad_values(spec, np.where(np.isfinite(value[rows]), value[rows], 0.0))
        if bad is not None:
            mask = np.zeros(len(value), dtype=bool)
            mask[rows] = bad[0]
            checks.append(("value", mask, bad[1]))
        stratum[rows] = kind.strata(spec, np.where(np.isfinite(value[rows]), value[rows], 0))
    for field, mask, reason in checks:
        position = _first_bad(mask, positions)
        if position is not None:
            got = frame[field].iloc[position]
            got = got.item() if isinstance(got, np.generic) else got
            raise InvalidObservation(
                field, f"{reason}, got {got!r}", context=f"observation {position}"
            )

    work = pd.DataFrame(
        {
            "column": column,
            "period": offsets,
            STRATUM: stratum,
            "w": weight,
            "wv": weight * value,
            "wvv": weight * value * value,
        }
    )
    grouped = (
        work.groupby(["column", "period", STRATUM], sort=True)
        .agg(
            n_obs=("w", "size"),
            sum_w=("w", "sum"),
            sum_wv=("wv", "sum"),
            sum_wvv=("wvv", "sum"),
            max_w=("w", "max"),
        )
        .reset_index()
    )
    grouped["indicator"] = ids[grouped["column"].to_numpy()]
    grouped["n_obs"] = grouped["n_obs"].astype(np.int64)
    columns = list(AGGREGATE_COLUMNS)
    if (grouped[STRATUM] != 0).any() or category_width(specs):
        columns.append(STRATUM)
    return grouped.loc[:, columns].reset_index(drop=True)


def _aggregate_frame(rows: Any) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        frame = rows
    else:
        records = list(rows)
        if not records:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in AGGREGATE_COLUMNS})
        first = records[0]
        if isinstance(first, Mapping) or hasattr(first, "_mapping"):
            frame = pd.DataFrame.from_records([dict(getattr(r, "_mapping", r)) for r in records])
        else:
            width = len(tuple(first))
            names = [*AGGREGATE_COLUMNS, STRATUM][:width] if width in (7, 8) else AGGREGATE_COLUMNS
            try:
                frame = pd.DataFrame.from_records(
                    [tuple(r) for r in records], columns=list(names)
                )
            except (TypeError, ValueError, AssertionError) as exc:
                raise SignpostIndicatorError(
                    f"aggregates: expected rows of {quoted_list(AGGREGATE_COLUMNS)}"
                ) from exc
    missing = [c for c in AGGREGATE_COLUMNS if c not in frame.columns]
    if missing:
        raise SignpostIndicatorError(
            f"aggregates: missing column(s) {quoted_list(missing)}; "
            f"expected {quoted_list(AGGREGATE_COLUMNS)}"
        )
    return frame


def _is_index(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _aggregate_offsets(
    grid: PeriodGrid, period: pd.Series, row_cuts: np.ndarray | None, used: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Period offsets of aggregate rows, and which rows survive their indicator's cut date.

    A ``period`` is an integer index (relative to the grid's first period) or a date; the
    two may be mixed. Numbers are never read as dates (pandas would take them as epoch ns).
    An integer row survives when its period is not after the period holding its cut date
    (the query cut inside that period); a dated row when it is not after the cut date.
    """
    n = len(period)
    if pd.api.types.is_numeric_dtype(period.dtype) and not pd.api.types.is_bool_dtype(period.dtype):
        numeric = np.ones(n, dtype=bool)
    elif pd.api.types.is_datetime64_any_dtype(period.dtype):
        numeric = np.zeros(n, dtype=bool)
    else:
        numeric = np.fromiter((_is_index(v) for v in period), dtype=bool, count=n)

    offsets = np.zeros(n, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    if numeric.any():
        values = period[numeric].to_numpy(dtype=np.float64)
        whole = np.isfinite(values) & (values == np.round(values))
        bad = np.flatnonzero(used[numeric] & ~whole)
        if bad.size:
            row = int(np.flatnonzero(numeric)[bad[0]])
            raise InvalidObservation(
                "period",
                f"expected a whole period index or a date, got {float(values[bad[0]])!r}",
                context=f"aggregate row {row}",
            )
        offsets[numeric] = np.where(whole, values, 0).astype(np.int64)
        if row_cuts is not None:
            cut = row_cuts[numeric]
            covered = ~np.isnat(cut)
            last = np.full(cut.shape, -(2**62), dtype=np.int64)
            last[covered] = _offsets(grid, cut[covered])
            keep[numeric] = covered & (offsets[numeric] <= last)
    if not numeric.all():
        dated = ~numeric
        days = np.full(n, np.datetime64("NaT", "D"))
        days[dated] = _to_days(period[dated].reset_index(drop=True), "aggregate row")
        _check_dates(days, used & dated, "period", "aggregate row")
        offsets[dated] = _offsets(grid, days[dated])
        if row_cuts is not None:
            cut = row_cuts[dated]
            keep[dated] = ~np.isnat(cut) & (days[dated] <= cut)
    return offsets, keep


def evidence_from_aggregates(
    grid: PeriodGrid,
    indicators: Sequence[Indicator] | Mapping[str, Indicator],
    rows: pd.DataFrame | Iterable[AggregateRow | Mapping[str, Any] | Sequence[Any]],
    as_of: dt.date | None = None,
    coverage: CoverageDates | None = None,
) -> Evidence:
    """Build evidence from observations already summed per indicator and period.

    Designed for a SQL ``GROUP BY indicator, period`` (or ``GROUP BY indicator, date``)
    with ``COUNT(*) AS n_obs, SUM(w) AS sum_w, SUM(w*value) AS sum_wv,
    SUM(w*value*value) AS sum_wvv, MAX(w) AS max_w``, restricted to ``date <= as_of``.

    Parameters
    ----------
    grid : PeriodGrid
        The periods.
    indicators : sequence of Indicator (or a Catalog)
        The evidence columns, in this order; rows of other indicators are ignored.
    rows : pandas.DataFrame or iterable of AggregateRow / mappings / tuples
        Columns `AGGREGATE_COLUMNS`. ``period`` is an integer period index relative to the
        grid's first period, or a date inside the period. Several rows for one (indicator,
        period) are merged (sums add, maxima combine), so rows may be finer than periods.
        Rows outside the grid are ignored, except that a milestone row before the grid
        marks the milestone as reached before the window.
    as_of : datetime.date, optional
        The evidence date. Sets the exposure of the period holding it (elapsed fraction)
        and of later ones (0). Rows whose ``period`` date, or whose whole period, lies after
        it are ignored; rows with an integer ``period`` cannot be cut inside the period, so
        the query must apply ``date <= as_of`` itself.
    coverage : mapping of str to (datetime.date or None), optional
        Per indicator, the date its log is complete through (`indicators.coverage`), never
        taken past ``as_of``. Each indicator's periods enter with their covered fraction as
        exposure (0 after its coverage: missing, not quiet) and its rows after the coverage
        date are ignored, as for ``as_of`` (an integer row inside the coverage period must be
        cut by the query). None: every indicator is covered through ``as_of``.

    Returns
    -------
    Evidence

    Raises
    ------
    SignpostIndicatorError
        If a column is missing or a value is invalid (negative sums, ``max_w`` outside
        [0, 1], non-finite numbers).

    """
    specs = _indicator_list(indicators)
    T, J = len(grid), len(specs)
    kinds = tuple(spec.kind for spec in specs)
    ids = tuple(spec.id for spec in specs)
    width = category_width(specs)  # the tallies' last axis
    strata = max(width, 1)
    frame = _aggregate_frame(rows)
    cuts = _cut_dates(ids, as_of, coverage)

    n_obs = sum_w = sum_wv = sum_wvv = max_w = np.zeros((T, J))
    by_stratum = np.zeros((T, J, strata))
    before = np.zeros(J, dtype=bool)
    if T and J and len(frame):
        column = pd.Index(list(ids), dtype=object).get_indexer(frame["indicator"].to_numpy())
        known = column >= 0
        offsets, keep = _aggregate_offsets(grid, frame["period"], _row_cuts(cuts, column),
                                           known)
        numbers = {c: _numeric(frame, c, "aggregates") for c in AGGREGATE_COLUMNS[2:]}
        stratum = (_numeric(frame, STRATUM, "aggregates").astype(np.int64)
                   if STRATUM in frame.columns else np.zeros(len(frame), dtype=np.int64))
        keep &= known
        _check_aggregates(numbers, keep)
        bad = np.flatnonzero(keep & ((stratum < 0) | (stratum >= strata)))
        if bad.size:
            raise InvalidObservation(STRATUM, f"must be in [0, {strata}), got "
                                     f"{int(stratum[bad[0]])}", context=f"aggregate row {bad[0]}")
        inside = keep & (offsets >= 0) & (offsets < T)
        flat = column[inside] * T + offsets[inside]

        def table(values: np.ndarray) -> np.ndarray:
            summed = np.bincount(flat, weights=values[inside], minlength=T * J)
            return summed.reshape(J, T).T

        n_obs, sum_w = table(numbers["n_obs"]), table(numbers["sum_w"])
        sum_wv, sum_wvv = table(numbers["sum_wv"]), table(numbers["sum_wvv"])
        maxima = np.zeros(T * J)
        np.maximum.at(maxima, flat, numbers["max_w"][inside])
        max_w = maxima.reshape(J, T).T
        cells = np.bincount(flat * strata + stratum[inside], weights=numbers["sum_w"][inside],
                            minlength=T * J * strata)
        by_stratum = cells.reshape(J, T, strata).transpose(1, 0, 2)
        early = keep & (offsets < 0) & (numbers["n_obs"] > 0)
        before[np.unique(column[early])] = True

    sums = Sums(n_obs=n_obs, sum_w=sum_w, sum_wv=sum_wv, sum_wvv=sum_wvv, max_w=max_w,
                by_stratum=by_stratum, before=before)
    counts, exposure, sumsq = np.zeros((T, J)), np.zeros((T, J)), np.zeros((T, J))
    tallies = np.zeros((T, J, width))
    exposures = {}
    for j, spec in enumerate(specs):
        cut = as_of if cuts is None else cuts[j]
        if cut not in exposures:
            exposures[cut] = (np.zeros(T) if cuts is not None and cut is None
                              else period_exposure(grid, cut))
        column_stats = get_kind(spec.kind).evidence(spec, sums, j, exposures[cut])
        counts[:, j], exposure[:, j] = column_stats.counts, column_stats.exposure
        if column_stats.sumsq is not None:
            sumsq[:, j] = column_stats.sumsq
        if column_stats.tallies is not None:
            tallies[:, j, :column_stats.tallies.shape[1]] = column_stats.tallies
    return Evidence(
        grid=grid,
        indicator_ids=ids,
        kinds=kinds,
        counts=counts,
        exposure=exposure,
        sumsq=sumsq,
        as_of=as_of,
        coverage=None if coverage is None else tuple(cuts),
        tallies=tallies,
    )


def _check_aggregates(numbers: Mapping[str, np.ndarray], keep: np.ndarray) -> None:
    n_obs, max_w = numbers["n_obs"], numbers["max_w"]
    checks = [
        (
            "n_obs",
            ~np.isfinite(n_obs) | (n_obs < 0) | (n_obs != np.round(n_obs)),
            "must be a whole number ≥ 0",
        ),
        ("sum_w", ~np.isfinite(numbers["sum_w"]) | (numbers["sum_w"] < 0), "must be ≥ 0"),
        ("sum_wv", ~np.isfinite(numbers["sum_wv"]), "must be finite"),
        ("sum_wvv", ~np.isfinite(numbers["sum_wvv"]) | (numbers["sum_wvv"] < 0), "must be ≥ 0"),
        ("max_w", ~np.isfinite(max_w) | (max_w < 0) | (max_w > 1), "must be in [0, 1]"),
        ("max_w", (n_obs > 0) & ~(max_w > 0), "must be > 0 when n_obs > 0"),
    ]
    for field, bad, reason in checks:
        hits = np.flatnonzero(bad & keep)
        if hits.size:
            row = int(hits[0])
            raise InvalidObservation(
                field,
                f"{reason}, got {float(numbers[field][row])!r}",
                context=f"aggregate row {row}",
            )


def build_evidence(
    grid: PeriodGrid,
    indicators: Sequence[Indicator] | Mapping[str, Indicator],
    observations: Iterable[tuple[dt.date, str, float, float]] | pd.DataFrame,
    as_of: dt.date | None = None,
    coverage: CoverageDates | None = None,
) -> Evidence:
    """Aggregate weighted observations into evidence over a period grid.

    Parameters
    ----------
    grid : PeriodGrid
        The periods, built by the caller (from the set's start through
        ``min(as_of, end)``).
    indicators : sequence of Indicator (or a Catalog)
        The evidence columns, in this order; observations of other indicators are ignored.
    observations : iterable of (date, indicator, value, weight) or pandas.DataFrame
        A DataFrame needs the columns ``date, indicator, value, weight``. Weights come from
        the grades (`weighted_observations`). Observations outside the grid or after
        ``as_of`` are ignored (a milestone reported before the grid marks it as reached
        before the window, see the module docstring).
    as_of : datetime.date, optional
        The evidence date (inclusive). The period holding it enters with its elapsed
        fraction as exposure, later periods with 0. None: every period is finished.
    coverage : mapping of str to (datetime.date or None), optional
        Per indicator, the date its log is complete through (see `evidence_from_aggregates`);
        None: every indicator through ``as_of``.

    Returns
    -------
    Evidence
        Arrays of shape ``(len(grid), len(indicators))`` whatever the number of
        observations; covered periods without observations hold zeros (no event is evidence
        too), periods after an indicator's coverage carry nothing for it.

    Raises
    ------
    InvalidObservation
        If a used observation has a weight outside (0, 1], a non-finite value or a negative
        count.
    SignpostIndicatorError
        If the input has the wrong shape or types.

    """
    specs = _indicator_list(indicators)
    rows = aggregate_observations(grid, specs, observations, as_of, coverage)
    return evidence_from_aggregates(grid, specs, rows, as_of, coverage)


def weighted_observations(
    observations: Iterable[Observation], grades: GradeTable = DEFAULT_GRADES
) -> list[tuple[dt.date, str, float, float]]:
    """Turn observations into the ``(date, indicator, value, weight)`` tuples of `build_evidence`.

    Parameters
    ----------
    observations : iterable of Observation
        Validated observations (retracted ones already left out).
    grades : GradeTable, optional
        Maps each grade to its weight; an observation without a grade gets the default.

    Returns
    -------
    list of tuple

    """
    return [(o.date, o.indicator, o.value, grades.weight(o.grade)) for o in observations]
