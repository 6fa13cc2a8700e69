"""Exports as CSV: observations, reviews and a set's probability history; a reviews file read back.

The rows are the JSON views the API serves (`service.views.observation_dict`,
`service.reviews.review_dict`, `service.posterior.history_payload`), written with the `csv`
module, so a CSV export and its JSON say the same thing.

- **Observations**: the columns `signpost import` reads (`indicators.CSV_COLUMNS` and
  ``analyst``), then the export's informative ones (`indicators.EXPORT_COLUMNS`: ``id``,
  ``weight``, ``created_at``, ``retracted_at``, ``retraction_reason``), which the importer
  accepts and ignores, leaving out the retracted rows. Written page by page
  (`service.repositories.observations.iter_observations`), so memory stays bounded.
- **Reviews**: ``through``, ``set_id``, ``indicators`` (``;``-separated), ``note``,
  ``analyst``, then ``id``, ``created_at``, ``retracted_at``, ``retraction_reason``;
  `read_reviews_csv` reads the file back for ``signpost import --reviews``.
- **History**: one row per published fit, one column per scenario for its probability
  (``p_<id>``), its MCSE (``mcse_<id>``) and its words (``words_<id>``).

Free-text cells (source, URL, note, analyst, reasons) that a spreadsheet would run as a
formula are guarded by a leading apostrophe (`indicators.guard_formula`), which the importers
remove again (`indicators.unguard_formula`): the round trip keeps the text exact. Numbers are
written as Python's shortest round-trip repr (whole values without ``.0``), so a parsed cell
equals the JSON's number exactly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from indicators import CSV_COLUMNS, EXPORT_COLUMNS, guard_formula, unguard_formula
from indicators._text import did_you_mean, quoted_list
from service.db import Database, ObservationRow
from service.errors import BadRequest
from service.reviews import list_reviews, validate_review
from service.views import observation_dict

__all__ = [
    "OBSERVATION_COLUMNS",
    "PAGE_SIZE",
    "REVIEW_COLUMNS",
    "history_columns",
    "history_csv",
    "observation_lines",
    "read_reviews_csv",
    "review_lines",
]

OBSERVATION_COLUMNS: tuple[str, ...] = (*CSV_COLUMNS, "analyst", *EXPORT_COLUMNS)
"""The observations CSV's header: what `signpost import` reads, then the informative columns."""

REVIEW_COLUMNS: tuple[str, ...] = ("through", "set_id", "indicators", "note", "analyst", "id",
                                   "created_at", "retracted_at", "retraction_reason")
"""The reviews CSV's header; `read_reviews_csv` needs ``through`` and reads the first five."""

PAGE_SIZE = 500
"""Rows per database page of an export."""

_OBSERVATION_TEXT = ("source", "url", "note", "analyst", "retraction_reason")
_REVIEW_TEXT = ("note", "analyst", "retraction_reason")
_SEPARATOR = ";"


def _lines(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text (RFC 4180: quoted where needed, CRLF line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _number(value: float | int | None) -> str:
    """A number as the shortest text that reads back to the same float ("1", not "1.0")."""
    if value is None:
        return ""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _text(value: str | None) -> str:
    return guard_formula(value or "")


# -- observations ---------------------------------------------------------------------------

def _observation_cells(row: ObservationRow) -> list[str]:
    item = observation_dict(row)
    numbers = {"value": _number(item["value"]), "weight": _number(item["weight"])}
    return [numbers[column] if column in numbers
            else _text(item[column]) if column in _OBSERVATION_TEXT
            else item[column] or "" for column in OBSERVATION_COLUMNS]


def observation_lines(pages: Iterable[list[ObservationRow]]) -> Iterator[str]:
    """The observations CSV: the header, then one chunk of text per page of rows.

    ``pages`` as `service.repositories.observations.iter_observations` yields them.
    """
    yield _lines([OBSERVATION_COLUMNS])
    for rows in pages:
        yield _lines(_observation_cells(row) for row in rows)


# -- reviews --------------------------------------------------------------------------------

def _review_cells(item: Mapping[str, Any]) -> list[str]:
    cells = {**item, "indicators": _SEPARATOR.join(item["indicators"]), "id": str(item["id"])}
    return [_text(cells[column]) if column in _REVIEW_TEXT else cells[column] or ""
            for column in REVIEW_COLUMNS]


def review_lines(db: Database, *, set_id: str | None = None, indicator: str | None = None,
                 include_retracted: bool = True, page_size: int = PAGE_SIZE) -> Iterator[str]:
    """The reviews CSV (`service.reviews.list_reviews`' rows and order), a page at a time.

    Raises
    ------
    NotFound
        An unknown ``set_id``, before anything is yielded.

    """
    first, total = list_reviews(db, set_id=set_id, indicator=indicator, limit=page_size,
                                include_retracted=include_retracted)

    def lines() -> Iterator[str]:
        yield _lines([REVIEW_COLUMNS])
        yield _lines(_review_cells(item) for item in first)
        for offset in range(page_size, total, page_size):
            items, _ = list_reviews(db, set_id=set_id, indicator=indicator, limit=page_size,
                                    offset=offset, include_retracted=include_retracted)
            yield _lines(_review_cells(item) for item in items)

    return lines()


def read_reviews_csv(db: Database, path_or_file: str | Path | IO[str]
                     ) -> tuple[list[tuple[dict[str, Any], str]], list[int]]:
    """Read and validate a reviews CSV (`REVIEW_COLUMNS`; ``through`` required), all or nothing.

    Each row is validated as ``POST /v1/reviews`` validates a body (`validate_review`); a
    row with a ``retracted_at`` is left out (a retracted review covers nothing).

    Returns
    -------
    reviews : list of (fields, analyst)
        The `ReviewIn` fields of each live row, in file order, and who made it.
    retracted : list of int
        The line numbers of the retracted rows left out.

    Raises
    ------
    BadRequest
        ``field="reviews"``: a wrong header, or every bad row by its line number.

    """
    if isinstance(path_or_file, str | Path):
        name = Path(path_or_file).name
        with open(path_or_file, encoding="utf-8-sig", newline="") as handle:
            return _read_reviews(db, handle, name)
    return _read_reviews(db, path_or_file, getattr(path_or_file, "name", "reviews"))


def _read_reviews(db: Database, handle: Iterable[str], name: str
                  ) -> tuple[list[tuple[dict[str, Any], str]], list[int]]:
    reader = csv.DictReader(handle)
    columns = [column.strip() for column in reader.fieldnames or ()]
    unknown = [c for c in columns if c not in REVIEW_COLUMNS]
    if "through" not in columns or unknown:
        problems = [f"unknown column {c!r}{did_you_mean(c, REVIEW_COLUMNS)}" for c in unknown]
        problems += [] if "through" in columns else ["missing column 'through'"]
        raise BadRequest(f"{name}: line 1: {'; '.join(problems)} (the columns are "
                         f"{quoted_list(REVIEW_COLUMNS)})", field="reviews")
    reviews, retracted, errors = [], [], []
    for row in reader:
        line = reader.line_num
        cells = {key.strip(): (value or "").strip() for key, value in row.items() if key}
        if not any(cells.values()):
            continue
        if cells.get("retracted_at"):
            retracted.append(line)
            continue
        indicators = [i.strip() for i in cells.get("indicators", "").split(_SEPARATOR)
                      if i.strip()]
        fields = {"through": cells["through"], "note": unguard_formula(cells.get("note", "")),
                  **({"set_id": cells["set_id"]} if cells.get("set_id") else {}),
                  **({"indicators": indicators} if indicators else {})}
        try:
            validate_review(db, fields)
        except BadRequest as exc:
            errors.append(f"line {line}: {exc.message}")
            continue
        reviews.append((fields, unguard_formula(cells.get("analyst", ""))))
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise BadRequest(f"{name}: {len(errors)} {noun}; nothing was imported:\n  "
                         + "\n  ".join(errors), field="reviews")
    return reviews, retracted


# -- history --------------------------------------------------------------------------------

def history_columns(scenario_ids: Sequence[str]) -> list[str]:
    """The history CSV's header for these scenarios."""
    return ["fit_id", "fitted_at", "evidence_through",
            *(f"{prefix}_{k}" for prefix in ("p", "mcse", "words") for k in scenario_ids)]


def history_csv(payload: Mapping[str, Any]) -> str:
    """`service.posterior.history_payload`'s rows as CSV: the same fits, the same numbers."""
    ids = payload["scenarios"]
    rows = [[item["fit_id"], item["fitted_at"], item["evidence_through"] or "",
             *(_number(item["probabilities"][k]) for k in ids),
             *(_number(item["mcse"][k]) for k in ids),
             *(item["words"][k] or "" for k in ids)] for item in payload["items"]]
    return _lines([history_columns(ids), *rows])
