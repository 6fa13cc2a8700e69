"""Estimative words (ICD 203): the term an analyst reads next to every probability.

The default yardstick is Intelligence Community Directive 203's::

    almost no chance      p < 0.05
    very unlikely         0.05 ≤ p < 0.20
    unlikely              0.20 ≤ p < 0.45
    roughly even chance   0.45 ≤ p ≤ 0.55
    likely                0.55 < p ≤ 0.80
    very likely           0.80 < p ≤ 0.95
    almost certain        0.95 < p

The table is a setting, ``SIGNPOST_WORDS``: a JSON list of bands from 0 up, each naming its
words and its upper edge, either ``"below": x`` (x itself is not in the band) or
``"through": x`` (it is). A band starts where the one before it stops — at x for a ``below``
edge, just above x for a ``through`` edge — and the first starts at 0, so the bands can
neither overlap nor leave a gap; the last must end ``"through": 1``. The default, written so::

    [{"words": "almost no chance", "below": 0.05},
     {"words": "very unlikely", "below": 0.20},
     {"words": "unlikely", "below": 0.45},
     {"words": "roughly even chance", "through": 0.55},
     {"words": "likely", "through": 0.80},
     {"words": "very likely", "through": 0.95},
     {"words": "almost certain", "through": 1}]

The words are chosen on the probability as estimated, not as printed: 0.449 is "unlikely"
even where it prints as 0.45.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "DEFAULT_WORDS",
    "WordBand",
    "WordTable",
    "WordTableError",
    "check_words_setting",
    "parse_word_table",
    "printed",
    "printed_mcse",
    "words",
]

SETTING = "SIGNPOST_WORDS"


class WordTableError(ValueError):
    """A words table that does not cover [0, 1] once, band after band."""


@dataclass(frozen=True)
class WordBand:
    """One band of the table: its words and its upper edge (``inclusive``: the edge is in it)."""

    words: str
    upper: float
    inclusive: bool

    def holds(self, p: float) -> bool:
        """Whether ``p`` is at or below this band's upper edge (as the edge says)."""
        return p <= self.upper if self.inclusive else p < self.upper

    def to_dict(self) -> dict[str, Any]:
        """The band as written in ``SIGNPOST_WORDS``."""
        return {"words": self.words, ("through" if self.inclusive else "below"): self.upper}


@dataclass(frozen=True)
class WordTable:
    """Bands of estimative words covering [0, 1], lowest first (see the module's docstring)."""

    bands: tuple[WordBand, ...]

    def __post_init__(self) -> None:
        _check_cover(self.bands)

    @classmethod
    def from_list(cls, data: Any) -> WordTable:
        """A table from the ``SIGNPOST_WORDS`` list of ``{"words", "below" | "through"}``.

        Raises
        ------
        WordTableError
            Not a non-empty list of such objects, or bands that overlap, leave a gap or stop
            short of 1 — naming the band.

        """
        if not isinstance(data, list) or not data:
            raise WordTableError('expected a JSON list of bands such as '
                                 '[{"words": "almost no chance", "below": 0.05}, …, '
                                 '{"words": "almost certain", "through": 1}]')
        bands = []
        for number, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise WordTableError(f'band {number}: expected an object such as '
                                     f'{{"words": "unlikely", "below": 0.45}}, got {item!r}')
            try:
                band = _BandIn.model_validate(item)
            except ValidationError as exc:
                problem = exc.errors()[0]
                where = ".".join(str(p) for p in problem["loc"])
                raise WordTableError(f"band {number}: {where + ': ' if where else ''}"
                                     f"{problem['msg']}") from None
            if (band.below is None) == (band.through is None):
                raise WordTableError(f"band {number} ({band.words!r}): give exactly one "
                                     'upper edge, "below" (exclusive) or "through" (inclusive)')
            bands.append(WordBand(band.words, band.through if band.below is None else band.below,
                                  inclusive=band.below is None))
        return cls(tuple(bands))

    def to_list(self) -> list[dict[str, Any]]:
        """The table as written in ``SIGNPOST_WORDS`` (`from_list` reads it back)."""
        return [band.to_dict() for band in self.bands]

    def words(self, p: float) -> str:
        """The words of the band holding ``p`` (a probability in [0, 1])."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{p!r} is not a probability in [0, 1]")
        return next(band.words for band in self.bands if band.holds(p))


class _BandIn(BaseModel):
    """A band as written in the setting (shape only; `_check_cover` checks the edges)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    words: str = Field(min_length=1)
    below: float | None = Field(default=None, ge=0, le=1)
    through: float | None = Field(default=None, ge=0, le=1)


def _check_cover(bands: tuple[WordBand, ...]) -> None:
    """Refuse bands that are empty, out of order or stop short of 1 (no gap, no overlap)."""
    if not bands:
        raise WordTableError("a words table needs at least one band")
    previous: WordBand | None = None
    for number, band in enumerate(bands, start=1):
        name = f"band {number} ({band.words!r})"
        if not 0.0 <= band.upper <= 1.0:
            raise WordTableError(f"{name}: its edge {band.upper} is not in [0, 1]")
        if previous is None:
            if band.upper == 0.0 and not band.inclusive:
                raise WordTableError(f'{name}: "below": 0 holds no probability; use '
                                     '"through": 0 or a higher edge')
        elif band.upper < previous.upper or (band.upper == previous.upper and not (
                band.inclusive and not previous.inclusive)):
            raise WordTableError(
                f"{name}: its edge {band.upper} does not lie above the band before it "
                f"({previous.words!r}, {'through' if previous.inclusive else 'below'} "
                f"{previous.upper}); list the bands from 0 up, each edge higher")
        previous = band
    last = bands[-1]
    if not (last.upper == 1.0 and last.inclusive):
        raise WordTableError(f"band {len(bands)} ({last.words!r}): the last band must end "
                             f'"through": 1, or probabilities above {last.upper} have no words')


DEFAULT_WORDS = WordTable((
    WordBand("almost no chance", 0.05, inclusive=False),
    WordBand("very unlikely", 0.20, inclusive=False),
    WordBand("unlikely", 0.45, inclusive=False),
    WordBand("roughly even chance", 0.55, inclusive=True),
    WordBand("likely", 0.80, inclusive=True),
    WordBand("very likely", 0.95, inclusive=True),
    WordBand("almost certain", 1.0, inclusive=True),
))
"""ICD 203's yardstick (the module's docstring)."""


@lru_cache(maxsize=8)
def parse_word_table(text: str) -> WordTable:
    """The table in a ``SIGNPOST_WORDS`` value; the default for an empty one.

    Parameters
    ----------
    text : str
        JSON: a list of ``{"words": ..., "below": x}`` or ``{"words": ..., "through": x}``
        bands, lowest first; empty or blank for `DEFAULT_WORDS`.

    Returns
    -------
    WordTable
        The table (cached per text: settings are read once, payloads are built often).

    Raises
    ------
    WordTableError
        Not JSON, not a list of bands, or bands that do not cover [0, 1] once.

    """
    if not text.strip():
        return DEFAULT_WORDS
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise WordTableError(f"not valid JSON: {exc}") from None
    return WordTable.from_list(data)


def check_words_setting(text: str) -> str:
    """Validate a ``SIGNPOST_WORDS`` value at start; the message names the variable.

    Raises
    ------
    ValueError
        ``"SIGNPOST_WORDS: ..."`` saying what is wrong with the table.

    """
    try:
        parse_word_table(text)
    except WordTableError as exc:
        raise ValueError(f"{SETTING}: {exc}") from None
    return text


def words(p: float | None, table: WordTable = DEFAULT_WORDS) -> str | None:
    """The estimative words of a probability.

    Parameters
    ----------
    p : float or None
        A probability in [0, 1]; None (not estimated) gives None.
    table : WordTable
        The yardstick (ICD 203's by default; ``Settings.word_table()`` for the configured one).

    Returns
    -------
    str or None
        The words of the band holding ``p``, e.g. ``words(0.31) == "unlikely"``.

    Raises
    ------
    ValueError
        If ``p`` is outside [0, 1] or NaN.

    """
    if p is None:
        return None
    return table.words(p)


# Decimals a probability is printed with: at most 3 (finer than any gate's MCSE), at least 2.
MOST_DECIMALS = 3
FEWEST_DECIMALS = 2


def decimals(mcse: float | None) -> int:
    """How many decimals an MCSE supports: the most whose last digit's step is ≥ 2 × MCSE.

    A step of 2 × MCSE or more means the last printed digit is not Monte Carlo noise: the
    estimate lies within 2 × MCSE, so within one step, of the exact probability in about
    95 % of fits. MCSE 0 (an exact
    posterior) gives 3 decimals; an unknown MCSE (None, NaN) gives 2, the fewest printed.
    """
    if mcse is None or not math.isfinite(mcse) or mcse < 0:
        return FEWEST_DECIMALS
    for places in range(MOST_DECIMALS, FEWEST_DECIMALS, -1):
        if 10.0 ** -places >= 2 * mcse:
            return places
    return FEWEST_DECIMALS


def printed(p: float | None, mcse: float | None) -> str:
    """A probability as text, to the precision its Monte Carlo standard error supports.

    Parameters
    ----------
    p : float or None
        The probability (None: printed as ``"—"``).
    mcse : float or None
        Its Monte Carlo standard error (None: unknown).

    Returns
    -------
    str
        ``p`` with `decimals` (2 or 3) decimals: ``printed(0.3123, 0.004) == "0.31"``,
        ``printed(0.3123, 0.0004) == "0.312"``, ``printed(0.3123, 0) == "0.312"``. A
        probability strictly between 0 and 1 that would round to 0 or 1 is printed as a bound
        (``"< 0.001"``, ``"> 0.99"``): rounding must not print impossibility or certainty.

    """
    if p is None:
        return "—"
    places = decimals(mcse)
    step = 10.0 ** -places
    text = f"{p:.{places}f}"
    if 0.0 < p < 1.0 and float(text) in (0.0, 1.0):
        return f"< {step:.{places}f}" if float(text) == 0.0 else f"> {1 - step:.{places}f}"
    return text


def printed_mcse(mcse: float | None) -> str:
    """An MCSE as text: one significant digit in fixed notation (``0.004``, ``0.00001``).

    ``"0"`` for an exact posterior, ``"—"`` for an unknown one.
    """
    if mcse is None or not math.isfinite(mcse):
        return "—"
    if mcse == 0:
        return "0"
    places = max(0, -math.floor(math.log10(abs(mcse))))
    text = f"{mcse:.{places}f}"
    if float(text) >= 10.0 ** (1 - places):  # 0.0096 rounds up to 0.010: one digit, 0.01
        text = f"{mcse:.{max(0, places - 1)}f}"
    return text
