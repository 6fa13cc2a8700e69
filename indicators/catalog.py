"""The indicator catalog: what can be observed, and how an analyst codes it.

The bundled catalog lives in ``indicators/data/catalog.yaml``. A scenario set uses catalog
indicators by id and may define a few more inline for itself (`Catalog.with_extra`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from indicators._text import did_you_mean, quoted_list
from indicators.exceptions import CatalogError, UnknownIndicator
from indicators.kinds import KINDS, get_kind

__all__ = [
    "DEFAULT_CATALOG_PATH",
    "KINDS",
    "Catalog",
    "Indicator",
    "IndicatorKind",
    "load_catalog",
]

#: an indicator kind's name: one of `KINDS` (the registry of `indicators.kinds`)
IndicatorKind = str

DEFAULT_CATALOG_PATH = Path(__file__).parent / "data" / "catalog.yaml"

# Ids travel through URLs, CSV files and YAML keys: keep them plain.
_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Indicator:
    """An observable signpost.

    Parameters
    ----------
    id : str
        Lower-case snake_case identifier (``"joint_exercise"``).
    kind : {"count", "milestone", "signal", "level"}
        ``count``: events per period; ``milestone``: a one-time step, evidence until its first
        occurrence; ``signal``: a measured number per period; ``level``: an ordinal state
        observed in a period. What differs by kind lives in `indicators.kinds`.
    name : str
        Human-readable name.
    unit : str, optional
        Unit of a value (``"exercises"``, ``"%"``).
    description : str, optional
        What the indicator is.
    coding : str, optional
        How an analyst codes an observation of it (what counts, how to date it).
    noise_sd : float, optional
        Known measurement noise sd of a signal; required (> 0) for signals, absent otherwise.
    levels : tuple of str, optional
        A level indicator's levels, in order (at least two); absent otherwise.

    Raises
    ------
    CatalogError
        If the id, kind, name, noise_sd or levels is invalid.

    """

    id: str
    kind: IndicatorKind
    name: str
    unit: str = ""
    description: str = ""
    coding: str = ""
    noise_sd: float | None = None
    levels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID_PATTERN.match(self.id):
            raise CatalogError(
                f"indicator {self.id!r}: id: use lower-case letters, digits and underscores, "
                "starting with a letter (e.g. 'joint_exercise')",
                field="id",
            )
        if self.kind not in KINDS:
            raise CatalogError(
                f"indicator '{self.id}': kind: {self.kind!r} is not a kind; use one of "
                f"{quoted_list(KINDS)}{did_you_mean(str(self.kind), KINDS)}",
                field="kind",
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise CatalogError(f"indicator '{self.id}': name: is required", field="name")
        if self.levels is None:
            object.__setattr__(self, "levels", ())
        for name, value in get_kind(self.kind).check_indicator(self).items():
            object.__setattr__(self, name, value)
        if not isinstance(self.levels, tuple):
            object.__setattr__(self, "levels", tuple(self.levels))

    def to_dict(self) -> dict[str, Any]:
        """Return the definition as a plain dict (the catalog.yaml entry)."""
        out = asdict(self)
        if self.levels:
            out["levels"] = list(self.levels)
        else:
            del out["levels"]
        return out


class Catalog(Mapping[str, Indicator]):
    """A read-only mapping from indicator id to `Indicator`.

    Parameters
    ----------
    indicators : iterable of Indicator
        The definitions; ids must be unique.

    Raises
    ------
    CatalogError
        If an id occurs twice.

    """

    def __init__(self, indicators: Iterable[Indicator] = ()) -> None:
        entries: dict[str, Indicator] = {}
        for indicator in indicators:
            if not isinstance(indicator, Indicator):
                raise CatalogError(f"expected an Indicator, got {type(indicator).__name__}")
            if indicator.id in entries:
                raise CatalogError(
                    f"indicator '{indicator.id}' is defined twice; ids must be unique", field="id"
                )
            entries[indicator.id] = indicator
        self._entries = entries

    def __getitem__(self, indicator_id: str) -> Indicator:
        return self._entries[indicator_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Catalog({list(self._entries)})"

    @property
    def ids(self) -> tuple[str, ...]:
        """All indicator ids, in catalog order."""
        return tuple(self._entries)

    def of_kind(self, kind: IndicatorKind) -> tuple[Indicator, ...]:
        """Return the indicators of one kind, in catalog order."""
        return tuple(ind for ind in self._entries.values() if ind.kind == kind)

    def get_or_raise(self, indicator_id: str, field: str = "indicator") -> Indicator:
        """Return the indicator with this id, or raise a helpful error.

        Parameters
        ----------
        indicator_id : str
            The id to look up.
        field : str, optional
            Field name reported in the error (default ``"indicator"``).

        Returns
        -------
        Indicator

        Raises
        ------
        UnknownIndicator
            If the id is not in the catalog; the message suggests the closest id.

        """
        try:
            return self._entries[indicator_id]
        except (KeyError, TypeError):
            pass
        hint = did_you_mean(str(indicator_id), self._entries)
        if not hint:
            known = self.ids
            hint = (
                f"; known ids: {', '.join(known)}"
                if len(known) <= 20
                else f"; see the catalog for the {len(known)} known ids"
            )
        raise UnknownIndicator(field, f"'{indicator_id}' is not in the catalog{hint}")

    def with_extra(self, indicators: Iterable[Indicator]) -> Catalog:
        """Return a new catalog that also holds set-specific (inline) indicators.

        Parameters
        ----------
        indicators : iterable of Indicator
            Extra definitions. Repeating a catalog indicator with the identical definition is
            allowed (and changes nothing).

        Returns
        -------
        Catalog
            A new catalog; this one is unchanged.

        Raises
        ------
        CatalogError
            If an extra id is already defined differently (in the catalog or among the
            extras).

        """
        merged = dict(self._entries)
        for indicator in indicators:
            if not isinstance(indicator, Indicator):
                raise CatalogError(f"expected an Indicator, got {type(indicator).__name__}")
            existing = merged.get(indicator.id)
            if existing is not None and existing != indicator:
                differing = [
                    key
                    for key, value in indicator.to_dict().items()
                    if getattr(existing, key) != value
                ]
                raise CatalogError(
                    f"indicator '{indicator.id}' is already defined with a different "
                    f"{', '.join(differing)}; use the existing definition (drop the inline one) "
                    "or choose another id",
                    field="id",
                )
            merged[indicator.id] = indicator
        return Catalog(merged.values())


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str
    kind: str
    name: str
    unit: str = ""
    description: str = ""
    coding: str = ""
    noise_sd: float | None = None
    levels: list[str] | None = None


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    indicators: list[Any]


def _pydantic_reason(exc: ValidationError, fields: Iterable[str]) -> tuple[str, str]:
    """Turn pydantic's most telling error into (field, reason).

    An unknown key is reported before a missing one: ``nam:`` explains ``name`` missing.
    """
    errors = exc.errors()
    error = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
    loc = [str(part) for part in error.get("loc", ())]
    field = loc[-1] if loc else "entry"
    if error.get("type") == "extra_forbidden":
        return field, f"unknown key{did_you_mean(field, fields)}"
    if error.get("type") == "missing":
        return field, "is required"
    message = str(error.get("msg", "is invalid"))
    return field, message[:1].lower() + message[1:]


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate an indicator catalog file.

    Parameters
    ----------
    path : str or Path, optional
        A YAML file with a top-level ``indicators:`` list of entries (``id``, ``kind``,
        ``name``, ``unit``, ``description``, ``coding``, ``noise_sd``). Default: the bundled
        ``indicators/data/catalog.yaml``.

    Returns
    -------
    Catalog

    Raises
    ------
    CatalogError
        If the file cannot be read or parsed, or an entry is invalid; the message names the
        file, the entry (index and id) and the key.
    FileNotFoundError
        If the file does not exist.

    """
    if path is None:
        return _bundled_catalog()
    return _read_catalog(Path(path))


@lru_cache(maxsize=1)
def _bundled_catalog() -> Catalog:
    # read once per process: the bundled file ships with the package, and a Catalog is
    # immutable (with_extra returns a new one)
    return _read_catalog(DEFAULT_CATALOG_PATH)


def _read_catalog(file: Path) -> Catalog:
    name = file.name
    text = file.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CatalogError(f"{name}: not valid YAML{where}: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{name}: expected a mapping with an 'indicators:' list at the top")
    try:
        document = _CatalogFile.model_validate(data)
    except ValidationError as exc:
        field, reason = _pydantic_reason(exc, _CatalogFile.model_fields)
        raise CatalogError(f"{name}: {field}: {reason}", field=field) from exc

    indicators: list[Indicator] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(document.indicators):
        label = f"{name}: indicators[{index}]"
        if not isinstance(raw, dict):
            raise CatalogError(f"{label}: expected a mapping with id, kind and name")
        if isinstance(raw.get("id"), str):
            label += f" ('{raw['id']}')"
        try:
            entry = _Entry.model_validate(_loosen_numbers(raw))
        except ValidationError as exc:
            field, reason = _pydantic_reason(exc, _Entry.model_fields)
            raise CatalogError(f"{label}: {field}: {reason}", field=field) from exc
        if entry.id in seen:
            raise CatalogError(
                f"{label}: id: '{entry.id}' is already used by indicators[{seen[entry.id]}]",
                field="id",
            )
        seen[entry.id] = index
        try:
            indicators.append(Indicator(**entry.model_dump()))
        except CatalogError as exc:
            raise CatalogError(f"{name}: indicators[{index}]: {exc}", field=exc.field) from exc
    return Catalog(indicators)


def _loosen_numbers(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Let an integer noise_sd (``noise_sd: 25``) through the strict entry model."""
    entry = dict(raw)
    noise = entry.get("noise_sd")
    if isinstance(noise, int) and not isinstance(noise, bool):
        entry["noise_sd"] = float(noise)
    return entry
