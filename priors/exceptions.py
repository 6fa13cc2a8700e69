"""Errors raised while loading scenario sets.

Hierarchy::

    ValueError
     └── ScenarioSetError      one or more problems in a scenario-set file; each problem
                               names the file, the line and the field
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario-set file."""

    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.field}: {self.message}"


class ScenarioSetError(ValueError):
    """A scenario-set file failed validation.

    Attributes
    ----------
    problems : list of Problem
        Every problem found, in file order, each with file, line and field.

    """

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.field))
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def first(self) -> Problem:
        """The first problem in file order."""
        return self.problems[0]
