"""Errors raised by the indicators package.

Hierarchy::

    ValueError
     └── SignpostIndicatorError        base of everything raised here
          ├── InvalidObservation       one field of one observation is wrong (.field, .reason)
          │    ├── UnknownIndicator    the indicator id is not in the catalog
          │    └── InvalidGrade        the grade is not an Admiralty grade
          ├── ObservationFileError     a CSV file had bad rows (.errors lists them all)
          ├── CatalogError             an indicator definition or catalog file is wrong
          └── GradeTableError          a grade-to-weight table is wrong

All are ``ValueError`` subclasses, so callers that only care about "bad input" can catch that;
the service maps them to HTTP 422 with the ``field`` attribute where there is one.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

__all__ = [
    "CatalogError",
    "GradeTableError",
    "InvalidGrade",
    "InvalidObservation",
    "ObservationFileError",
    "SignpostIndicatorError",
    "UnknownIndicator",
]


class SignpostIndicatorError(ValueError):
    """Base class of every error raised by the indicators package."""


class InvalidObservation(SignpostIndicatorError):
    """One field of an observation is invalid.

    Parameters
    ----------
    field : str
        The offending field (``"indicator"``, ``"date"``, ``"value"``, ``"grade"``, ...).
    reason : str
        What is wrong and, where possible, what to do instead.
    row : int, optional
        Line number in the file the observation came from (the header is line 1).
    context : str, optional
        Free-form location used instead of ``row`` (e.g. ``"observation 3"``).

    Notes
    -----
    ``str(error)`` is ``"{field}: {reason}"``, prefixed by ``"row {row}: "`` or
    ``"{context}: "`` when a location is known.

    """

    def __init__(
        self, field: str, reason: str, *, row: int | None = None, context: str | None = None
    ) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason
        self.row = row
        self.context = context

    @property
    def location(self) -> str | None:
        """Where the observation came from (``"row 14"``), or None."""
        if self.context is not None:
            return self.context
        if self.row is not None:
            return f"row {self.row}"
        return None

    def with_row(self, row: int) -> InvalidObservation:
        """Return a copy of this error located at file line ``row``."""
        located = copy.copy(self)
        located.row = row
        located.context = None
        return located

    def __str__(self) -> str:
        message = f"{self.field}: {self.reason}"
        location = self.location
        return f"{location}: {message}" if location else message


class UnknownIndicator(InvalidObservation):
    """The indicator id is not in the catalog (the reason suggests the closest ids)."""


class InvalidGrade(InvalidObservation):
    """The grade is not an Admiralty grade (letter A–F, digit 1–6)."""


class ObservationFileError(SignpostIndicatorError):
    """A file of observations had invalid rows; ``errors`` lists every one of them.

    Parameters
    ----------
    errors : sequence of InvalidObservation
        One error per bad row, each located by its line number.
    source : str, optional
        Name of the file, used in the message.

    """

    def __init__(self, errors: Sequence[InvalidObservation], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        where = f"{source}: " if source else ""
        noun = "error" if len(self.errors) == 1 else "errors"
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(f"{where}{len(self.errors)} {noun}; nothing was imported:\n{lines}")


class CatalogError(SignpostIndicatorError):
    """An indicator definition, or the catalog file holding it, is invalid.

    Parameters
    ----------
    message : str
        Names the file, the entry and the field, and says what to do.
    field : str, optional
        The offending field of the indicator definition, when there is one.

    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class GradeTableError(SignpostIndicatorError):
    """A grade-to-weight table is invalid (the message names the key)."""
