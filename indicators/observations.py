"""The observation schema, its validation, and CSV import.

An observation is one logged fact: indicator, date, value (1 for an event or a milestone),
grade, source, URL, note, analyst. `validate_observation` is the one gate every entry passes
(API, CLI, CSV); it refuses anything the evidence builder could not use and says why.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from indicators._text import did_you_mean, quoted_list
from indicators.catalog import Catalog
from indicators.exceptions import InvalidGrade, InvalidObservation, ObservationFileError
from indicators.grades import DEFAULT_GRADES, GradeTable, parse_grade
from indicators.kinds import get_kind

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_COLUMNS",
    "Observation",
    "guard_formula",
    "read_observations_csv",
    "unguard_formula",
    "validate_observation",
]

CSV_COLUMNS: tuple[str, ...] = ("date", "indicator", "value", "grade", "source", "url", "note")
"""The documented CSV header. ``date`` and ``indicator`` are required; ``analyst`` may be
added; column order is free."""

EXPORT_COLUMNS: tuple[str, ...] = ("id", "weight", "created_at", "retracted_at",
                                   "retraction_reason")
"""Columns an export (``GET /v1/observations?format=csv``) adds, which the reader accepts and
ignores, except that a row with a ``retracted_at`` is left out: it was retracted, so it is not
evidence. ``weight`` is informative: a row's weight is its grade's in the importing table."""

_REQUIRED_COLUMNS = ("date", "indicator")
_OPTIONAL_COLUMNS = ("value", "grade", "source", "url", "note", "analyst")
# A cell a spreadsheet would run as a formula starts with one of these (OWASP, CSV injection).
_FORMULA = re.compile(r"^'*[=+\-@\t\r]")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FUTURE_GRACE = dt.timedelta(days=1)  # time zones: "today" in Tokyo is tomorrow in Hawaii


class Observation(BaseModel):
    """One validated observation.

    Build it through `validate_observation`, which also checks it against the catalog,
    the kind of its indicator and today's date.

    Attributes
    ----------
    indicator : str
        Catalog id of the indicator.
    date : datetime.date
        When it happened.
    value : float
        Number of events (count), 1 (milestone) or the measured value (signal).
    grade : str or None
        Admiralty grade such as ``"B2"`` (`validate_observation` fills in the default).
    source, url, note, analyst : str
        Provenance and free text.

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    indicator: str = Field(min_length=1)
    date: dt.date
    value: float = Field(default=1.0, allow_inf_nan=False)
    grade: str | None = None
    # bounded, as every string a client sends (an API body, a CSV cell): docs/hardening.md
    source: str = Field(default="", max_length=500)
    url: str = Field(default="", max_length=2000)
    note: str = Field(default="", max_length=2000)
    analyst: str = Field(default="", max_length=200)

    @field_validator("grade")
    @classmethod
    def _normal_grade(cls, grade: str | None) -> str | None:
        return None if grade is None else parse_grade(grade)


_FIELDS = tuple(Observation.model_fields)
_TEXT_FIELDS = ("source", "url", "note", "analyst")


def guard_formula(text: str) -> str:
    """A free-text CSV cell that a spreadsheet shows as text, never runs as a formula.

    A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, after any
    apostrophes, gets one more leading apostrophe (a spreadsheet's "this is text" mark, which
    it does not display); `unguard_formula` removes exactly that one, so
    ``unguard_formula(guard_formula(s)) == s`` for every string.
    """
    return "'" + text if _FORMULA.match(text) else text


def unguard_formula(text: str) -> str:
    """Undo `guard_formula`: drop the apostrophe before a formula trigger (or more apostrophes)."""
    return text[1:] if text.startswith("'") and _FORMULA.match(text[1:]) else text


def _parse_date(raw: Any, today: dt.date) -> dt.date:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidObservation("date", "is required (YYYY-MM-DD, e.g. '2024-05-01')")
    if isinstance(raw, dt.datetime):
        day = raw.date()
    elif isinstance(raw, dt.date):
        day = raw
    elif isinstance(raw, str):
        text = raw.strip()
        try:
            if _ISO_DATE.match(text):
                day = dt.date.fromisoformat(text)
            elif "T" in text or " " in text:
                day = dt.datetime.fromisoformat(text).date()
            else:
                raise ValueError("not ISO")
        except ValueError as exc:
            detail = f" ({exc})" if _ISO_DATE.match(text) else ""
            raise InvalidObservation(
                "date", f"{text!r} is not a valid date{detail}: use YYYY-MM-DD, e.g. '2024-05-01'"
            ) from None
    else:
        raise InvalidObservation(
            "date", f"expected a date as YYYY-MM-DD, got {type(raw).__name__} {raw!r}"
        )
    if day > today + _FUTURE_GRACE:
        raise InvalidObservation(
            "date",
            f"{day} is in the future (today is {today}); date an observation by when it happened",
        )
    return day


def validate_observation(
    data: Mapping[str, Any],
    catalog: Catalog,
    today: dt.date,
    grades: GradeTable = DEFAULT_GRADES,
) -> Observation:
    """Validate one observation against the catalog, its indicator's kind and today's date.

    Parameters
    ----------
    data : Mapping
        Keys ``indicator``, ``date`` (required), ``value``, ``grade``, ``source``, ``url``,
        ``note``, ``analyst``. Dates are ISO strings (``"2024-05-01"``), dates or datetimes
        (taken as their date). A missing or None value is 1; a missing, None or empty grade is
        ``grades.default``; None text fields are empty.
    catalog : Catalog
        The indicators that may be observed.
    today : datetime.date
        The current date (a parameter: this package never reads the clock).
    grades : GradeTable, optional
        Supplies the default grade.

    Returns
    -------
    Observation
        With the grade normalised (``"b2"`` → ``"B2"``) and the value a float.

    Raises
    ------
    UnknownIndicator
        If the indicator is not in the catalog (the message suggests the closest id).
    InvalidGrade
        If the grade is not a letter A–F and a digit 1–6.
    InvalidObservation
        If a field is missing, unknown or invalid: an unparseable date or one more than a
        day after ``today``; a non-numeric, NaN or infinite value; a negative or fractional
        count; a milestone value other than 1. ``.field`` names the field.

    """
    if not isinstance(data, Mapping):
        raise InvalidObservation(
            "observation", f"expected a mapping of fields, got {type(data).__name__}"
        )
    for key in data:
        if key not in _FIELDS:
            raise InvalidObservation(
                str(key),
                f"unknown field{did_you_mean(str(key), _FIELDS)}; "
                f"the fields are {quoted_list(_FIELDS)}",
            )

    raw_indicator = data.get("indicator")
    if raw_indicator is None or (isinstance(raw_indicator, str) and not raw_indicator.strip()):
        raise InvalidObservation("indicator", "is required (an id from the indicator catalog)")
    if not isinstance(raw_indicator, str):
        raise InvalidObservation(
            "indicator", f"expected an indicator id, got {type(raw_indicator).__name__}"
        )
    indicator = catalog.get_or_raise(raw_indicator.strip(), field="indicator")

    day = _parse_date(data.get("date"), today)

    value = get_kind(indicator.kind).parse_value(indicator, data.get("value"))

    raw_grade = data.get("grade")
    if raw_grade is None or (isinstance(raw_grade, str) and not raw_grade.strip()):
        grade = grades.default
    else:
        grade = parse_grade(raw_grade)

    fields: dict[str, Any] = {
        "indicator": indicator.id,
        "date": day,
        "value": value,
        "grade": grade,
    }
    for key in _TEXT_FIELDS:
        if key in data and data[key] is not None:
            fields[key] = data[key]
    try:
        return Observation.model_validate(fields)
    except ValidationError as exc:
        raise _translate(exc) from None


def _translate(exc: ValidationError) -> InvalidObservation:
    """Turn pydantic's first error into an InvalidObservation naming the field."""
    error = exc.errors()[0]
    loc = error.get("loc", ())
    field = ".".join(str(part) for part in loc) or "observation"
    if error.get("type") == "extra_forbidden":
        return InvalidObservation(field, f"unknown field{did_you_mean(field, _FIELDS)}")
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    cls = InvalidGrade if field == "grade" else InvalidObservation
    return cls(field, message[:1].lower() + message[1:])


def read_observations_csv(
    path_or_file: str | Path | IO[str],
    catalog: Catalog,
    today: dt.date,
    grades: GradeTable = DEFAULT_GRADES,
    skip_bad: bool = False,
    *,
    retracted: list[int] | None = None,
) -> tuple[list[Observation], list[InvalidObservation]]:
    """Read and validate a CSV file of observations.

    Parameters
    ----------
    path_or_file : str, Path or text file
        CSV with the header ``date,indicator,value,grade,source,url,note`` (any order;
        ``date`` and ``indicator`` are required, the others and ``analyst`` optional). An
        empty ``value`` is 1, an empty ``grade`` is ``grades.default``; blank lines are
        skipped. An export's extra columns (`EXPORT_COLUMNS`) are accepted and ignored, and
        its retracted rows (a non-empty ``retracted_at``) left out. A free-text cell guarded
        by `guard_formula` is read back as it was stored (`unguard_formula`).
    catalog : Catalog
        The indicators that may be observed.
    today : datetime.date
        The current date.
    grades : GradeTable, optional
        Supplies the default grade.
    skip_bad : bool, optional
        If True, return the good rows and the errors; if False (default), any bad row
        raises and nothing is returned.
    retracted : list of int, optional
        If given, the line numbers of the retracted rows left out are appended to it.

    Returns
    -------
    observations : list of Observation
        The valid rows, in file order.
    errors : list of InvalidObservation
        One per bad row, each with ``.row`` = its line number (the header is line 1).

    Raises
    ------
    ObservationFileError
        If the header is wrong (missing or unknown columns; raised even with ``skip_bad``),
        or any row is bad and ``skip_bad`` is False. ``.errors`` lists every bad row.

    """
    if isinstance(path_or_file, str | Path):
        source = Path(path_or_file).name
        with open(path_or_file, encoding="utf-8-sig", newline="") as handle:
            return _read(handle, source, catalog, today, grades, skip_bad, retracted)
    source = getattr(path_or_file, "name", None)
    return _read(path_or_file, source, catalog, today, grades, skip_bad, retracted)


def _read(
    handle: Iterable[str],
    source: str | None,
    catalog: Catalog,
    today: dt.date,
    grades: GradeTable,
    skip_bad: bool,
    retracted: list[int] | None = None,
) -> tuple[list[Observation], list[InvalidObservation]]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or not any(cell.strip() for cell in header):
        raise ObservationFileError(
            [
                InvalidObservation(
                    "header",
                    f"the file is empty; expected the header {','.join(CSV_COLUMNS)}",
                    row=1,
                )
            ],
            source,
        )
    columns = [cell.strip().lower().lstrip("\ufeff") for cell in header]
    _check_header(columns, source)

    observations: list[Observation] = []
    errors: list[InvalidObservation] = []
    last_line = reader.line_num
    for cells in reader:
        line = last_line + 1  # the record's first physical line
        last_line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(columns):
            errors.append(
                InvalidObservation(
                    "columns",
                    f"{len(cells)} values but the header has {len(columns)} columns "
                    "(quote text that contains commas)",
                    row=line,
                )
            )
            continue
        row = dict(zip(columns, cells, strict=False))
        if row.get("retracted_at", "").strip():  # an export's retracted row: not evidence
            if retracted is not None:
                retracted.append(line)
            continue
        record = {
            column: unguard_formula(cell) if column in _TEXT_FIELDS else cell
            for column, cell in row.items()
            if (cell.strip() or column not in ("value", "grade"))
            and column not in EXPORT_COLUMNS
        }
        try:
            observations.append(validate_observation(record, catalog, today, grades))
        except InvalidObservation as exc:
            errors.append(exc.with_row(line))
    if errors and not skip_bad:
        raise ObservationFileError(errors, source)
    return observations, errors


def _check_header(columns: list[str], source: str | None) -> None:
    known = _REQUIRED_COLUMNS + _OPTIONAL_COLUMNS + EXPORT_COLUMNS
    problems: list[str] = []
    missing = [column for column in _REQUIRED_COLUMNS if column not in columns]
    if missing:
        problems.append(f"missing column(s) {quoted_list(missing)}")
    unknown = [column for column in columns if column not in known]
    for column in unknown:
        problems.append(f"unknown column {column!r}{did_you_mean(column, known)}")
    duplicated = sorted({column for column in columns if columns.count(column) > 1})
    if duplicated:
        problems.append(f"duplicated column(s) {quoted_list(duplicated)}")
    if problems:
        reason = "; ".join(problems) + f" (expected {','.join(CSV_COLUMNS)})"
        raise ObservationFileError([InvalidObservation("header", reason, row=1)], source)
