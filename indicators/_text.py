"""Small text helpers shared by the error messages (private)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""`` if none is close."""
    options = [str(choice) for choice in choices]
    matches = difflib.get_close_matches(str(word), options, n=1, cutoff=0.6)
    if not matches:
        lowered = {option.lower(): option for option in options}
        matches = [lowered[m] for m in difflib.get_close_matches(str(word).lower(), lowered, 1)]
    return f"; did you mean '{matches[0]}'?" if matches else ""


def quoted_list(items: Iterable[str]) -> str:
    """Join items as ``'a', 'b', 'c'``."""
    return ", ".join(f"'{item}'" for item in items)
