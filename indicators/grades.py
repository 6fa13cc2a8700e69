"""Admiralty (NATO) grades and the weights they give an observation.

A grade is a source-reliability letter and an information-credibility digit::

    A  completely reliable     1  confirmed by other sources
    B  usually reliable        2  probably true
    C  fairly reliable         3  possibly true
    D  not usually reliable    4  doubtful
    E  unreliable              5  improbable
    F  reliability cannot      6  truth cannot be judged
       be judged

An observation of weight ``w`` contributes ``w`` times its log-likelihood (a tempered
likelihood): weight 1 (A1) is plain Bayes, lower grades pull less.

Why F and 6 weigh least, below E and 5: a weight can only scale how far a report moves the
forecast; it cannot turn a report into evidence *against* what it says. So the question for
each grade is "how much should this report be allowed to move us?", not "how likely is it
true?". A source we have never been able to assess (F) has earned no trust at all, and could
be a plant; information nobody can assess (6) has no corroboration at all. Both get the least
pull, which also keeps the simple rule that the weight never rises down the table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from indicators._text import did_you_mean, quoted_list
from indicators.exceptions import GradeTableError, InvalidGrade

__all__ = [
    "CREDIBILITY_DIGITS",
    "DEFAULT_GRADES",
    "GradeTable",
    "RELIABILITY_LETTERS",
    "parse_grade",
]

RELIABILITY_LETTERS: tuple[str, ...] = ("A", "B", "C", "D", "E", "F")
CREDIBILITY_DIGITS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6")

_GRADE = re.compile(r"^([A-F])([1-6])$")


def parse_grade(text: str) -> str:
    """Validate and normalise an Admiralty grade.

    Parameters
    ----------
    text : str
        A grade such as ``"B2"``; lower case and surrounding spaces are accepted.

    Returns
    -------
    str
        The grade in upper case (``" b2 "`` → ``"B2"``).

    Raises
    ------
    InvalidGrade
        If it is not a letter A–F followed by a digit 1–6 (``field == "grade"``).

    """
    shown = text.strip() if isinstance(text, str) else text
    if isinstance(text, str):
        grade = text.strip().upper()
        if _GRADE.match(grade):
            return grade
    raise InvalidGrade(
        "grade",
        f"{shown!r} is not an Admiralty grade: use a letter A–F (source reliability) "
        "and a digit 1–6 (credibility), e.g. 'B2'",
    )


def _read_factors(
    name: str, factors: Mapping[Any, Any], keys: tuple[str, ...]
) -> MappingProxyType[str, float]:
    """Validate one axis of a grade table: every key, each in (0, 1], top = 1, monotone."""
    if not isinstance(factors, Mapping):
        raise GradeTableError(f"{name}: expected a mapping of {quoted_list(keys)} to weights")
    cleaned: dict[str, float] = {}
    for raw_key, raw_value in factors.items():
        key = str(raw_key).strip().upper()
        if key not in keys:
            raise GradeTableError(
                f"{name}[{raw_key!r}]: not a {name} key; use {quoted_list(keys)}"
                f"{did_you_mean(key, keys)}"
            )
        if key in cleaned:
            raise GradeTableError(f"{name}[{raw_key!r}]: given twice")
        if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
            raise GradeTableError(f"{name}[{key!r}]: must be a number, got {raw_value!r}")
        value = float(raw_value)
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise GradeTableError(f"{name}[{key!r}]: must be in (0, 1], got {raw_value!r}")
        cleaned[key] = value
    missing = [key for key in keys if key not in cleaned]
    if missing:
        raise GradeTableError(f"{name}: missing {quoted_list(missing)}; give all of {keys}")
    if cleaned[keys[0]] != 1.0:
        raise GradeTableError(
            f"{name}[{keys[0]!r}]: must be 1 so that A1 is plain Bayes, got {cleaned[keys[0]]!r}"
        )
    for higher, lower in zip(keys, keys[1:], strict=False):
        if cleaned[lower] > cleaned[higher]:
            raise GradeTableError(
                f"{name}[{lower!r}]: {cleaned[lower]!r} exceeds {name}[{higher!r}] = "
                f"{cleaned[higher]!r}; a lower grade must not weigh more"
            )
    return MappingProxyType({key: cleaned[key] for key in keys})


@dataclass(frozen=True)
class GradeTable:
    """Map Admiralty grades to observation weights in (0, 1].

    ``weight("C3") = reliability["C"] * credibility["3"]``.

    Parameters
    ----------
    reliability : Mapping[str, float]
        Factor per letter A–F; each in (0, 1], A = 1, non-increasing from A to F.
    credibility : Mapping[str, float]
        Factor per digit 1–6 (keys may be str or int); each in (0, 1], 1 = 1,
        non-increasing from 1 to 6.
    default : str, optional
        Grade given to an observation logged without one (default ``"B2"``).

    Raises
    ------
    GradeTableError
        If a key is missing or unknown, a factor is outside (0, 1], A or 1 is not 1, a
        factor rises down the table, or the default is not a grade. The message names the key.

    """

    reliability: Mapping[str, float]
    credibility: Mapping[str, float]
    default: str = "B2"
    _key: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        reliability = _read_factors("reliability", self.reliability, RELIABILITY_LETTERS)
        credibility = _read_factors("credibility", self.credibility, CREDIBILITY_DIGITS)
        try:
            default = parse_grade(self.default)
        except InvalidGrade as exc:
            raise GradeTableError(f"default: {exc.reason}") from exc
        object.__setattr__(self, "reliability", reliability)
        object.__setattr__(self, "credibility", credibility)
        object.__setattr__(self, "default", default)
        key = (tuple(reliability.items()), tuple(credibility.items()), default)
        object.__setattr__(self, "_key", key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GradeTable):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def weight(self, grade: str | None) -> float:
        """Return the weight of a grade.

        Parameters
        ----------
        grade : str or None
            An Admiralty grade (``"B2"``); None or ``""`` means the table's default grade.

        Returns
        -------
        float
            ``reliability[letter] * credibility[digit]``, in (0, 1].

        Raises
        ------
        InvalidGrade
            If the grade is not a letter A–F and a digit 1–6.

        """
        normal = self.default if grade is None or grade == "" else parse_grade(grade)
        return self.reliability[normal[0]] * self.credibility[normal[1]]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GradeTable:
        """Build a table from configuration (settings, JSON or YAML).

        Parameters
        ----------
        data : Mapping
            ``{"reliability": {...}, "credibility": {...}, "default": "B2"}``. A missing
            section keeps the value of `DEFAULT_GRADES`; credibility keys may be strings
            (JSON) or integers (YAML).

        Returns
        -------
        GradeTable

        Raises
        ------
        GradeTableError
            If a section is unknown or a value is invalid (the message names the key).

        """
        if not isinstance(data, Mapping):
            raise GradeTableError("grade table: expected a mapping with reliability/credibility")
        allowed = ("reliability", "credibility", "default")
        for key in data:
            if key not in allowed:
                raise GradeTableError(
                    f"{key!r}: not a grade-table key; use {quoted_list(allowed)}"
                    f"{did_you_mean(str(key), allowed)}"
                )
        return cls(
            reliability=data.get("reliability", DEFAULT_GRADES.reliability),
            credibility=data.get("credibility", DEFAULT_GRADES.credibility),
            default=data.get("default", DEFAULT_GRADES.default),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the table as plain JSON-friendly data (inverse of `from_mapping`)."""
        return {
            "reliability": dict(self.reliability),
            "credibility": dict(self.credibility),
            "default": self.default,
        }


DEFAULT_GRADES = GradeTable(
    reliability={"A": 1.0, "B": 0.85, "C": 0.7, "D": 0.5, "E": 0.3, "F": 0.2},
    credibility={"1": 1.0, "2": 0.85, "3": 0.7, "4": 0.5, "5": 0.3, "6": 0.2},
    default="B2",
)
"""The deployment default: A1 = 1, B2 ≈ 0.72, C3 = 0.49, F6 = 0.04."""
