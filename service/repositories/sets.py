"""Scenario sets: load (validated), get and list them, their stored text, the catalog.

A set is parsed once per content hash and kept on the `Database` handle; every read checks
the stored hash first (one light query), so a set loaded by another process is seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from indicators import Catalog, load_catalog
from priors import ScenarioSet, ScenarioSetError, bundled_set_paths, parse_scenario_set
from service.db import ScenarioSetRow
from service.errors import NotFound
from service.repositories import audit

if TYPE_CHECKING:
    from service.audit import Actor
    from service.db import Database

__all__ = ["get_catalog", "get_set", "list_sets", "load_bundled_sets", "load_set_text",
           "set_ids", "set_text"]


def load_set_text(db: Database, *, yaml_text: str, source: str,
                  actor: Actor | None = None) -> tuple[ScenarioSet, bool]:
    """Validate and store a scenario set (insert or replace by id); audited given ``actor``.

    Returns
    -------
    (ScenarioSet, changed) : changed is False when the same content was already loaded.

    Raises
    ------
    ScenarioSetError
        If the YAML does not validate.

    """
    scenario_set = parse_scenario_set(yaml_text, source=source, catalog=get_catalog(db))
    with db.Session.begin() as session:
        row = session.get(ScenarioSetRow, scenario_set.id)
        if row is not None and row.content_hash == scenario_set.content_hash:
            return scenario_set, False
        replaced = row.content_hash if row is not None else None
        if row is None:
            row = ScenarioSetRow(id=scenario_set.id)
            session.add(row)
        row.title = scenario_set.title
        row.content_hash = scenario_set.content_hash
        row.yaml_text = yaml_text
        row.source = source
        row.loaded_at = db.clock()
        if actor is not None:
            audit.record(session, actor=actor, action="set.load", at=row.loaded_at,
                         target=f"set:{scenario_set.id}", detail={
                             "title": scenario_set.title, "source": source,
                             "content_hash": scenario_set.content_hash,
                             "replaced_hash": replaced})
    return scenario_set, True


def load_bundled_sets(db: Database, *,
                      actor: Actor | None = None) -> list[tuple[ScenarioSet, bool]]:
    """Load every bundled scenario set (each one that changed audited, given ``actor``)."""
    return [load_set_text(db, yaml_text=p.read_text(encoding="utf-8"), source=p.name,
                          actor=actor)
            for p in bundled_set_paths()]


def set_ids(db: Database) -> list[str]:
    """Ids of the loaded sets, sorted."""
    with db.Session() as session:
        return list(session.scalars(select(ScenarioSetRow.id).order_by(ScenarioSetRow.id)))


def get_set(db: Database, *, set_id: str) -> ScenarioSet:
    """A loaded scenario set, parsed once per content hash.

    Raises
    ------
    NotFound

    """
    with db.Session() as session:
        content_hash = session.scalar(select(ScenarioSetRow.content_hash)
                                      .where(ScenarioSetRow.id == set_id))
        if content_hash is None:
            known = ", ".join(set_ids(db)) or "none loaded"
            raise NotFound(f"unknown scenario set '{set_id}' (sets: {known})",
                           field="set_id")
        return _parsed(db, session, set_id, content_hash)


def list_sets(db: Database) -> list[ScenarioSet]:
    """Every loaded scenario set, by id."""
    with db.Session() as session:
        return [_parsed(db, session, set_id, content_hash)
                for set_id, content_hash in _hashes(session)]


def set_text(db: Database, *, set_id: str) -> tuple[str, str]:
    """The stored YAML text and source name of a set. Raises NotFound."""
    with db.Session() as session:
        row = session.get(ScenarioSetRow, set_id)
        if row is None:
            raise NotFound(f"unknown scenario set '{set_id}'", field="set_id")
        return row.yaml_text, row.source


def get_catalog(db: Database) -> Catalog:
    """The bundled catalog plus the inline indicators of loaded sets.

    Rebuilt only when a set is loaded or changed (one light query per call: the ids and
    content hashes), since every observation is validated against it.
    """
    with db.Session() as session:
        key = tuple(_hashes(session))
        cached = db.catalog_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        base = load_catalog()
        extra = {}
        for set_id, content_hash in key:
            try:
                scenario_set = _parsed(db, session, set_id, content_hash)
            except ScenarioSetError:
                continue
            for indicator in scenario_set.catalog_indicators:
                if indicator.id not in base:
                    extra[indicator.id] = indicator
    catalog = base.with_extra(extra.values()) if extra else base
    db.catalog_cache = (key, catalog)
    return catalog


def _hashes(session) -> list[tuple[str, str]]:
    return [(row.id, row.content_hash) for row in session.execute(
        select(ScenarioSetRow.id, ScenarioSetRow.content_hash).order_by(ScenarioSetRow.id))]


def _parsed(db: Database, session, set_id: str, content_hash: str) -> ScenarioSet:
    """The set parsed from its stored text, from the cache when the hash still matches."""
    with db.parsed_sets_lock:
        cached = db.parsed_sets.get(set_id)
        if cached and cached[0] == content_hash:
            return cached[1]
    row = session.get(ScenarioSetRow, set_id)
    scenario_set = parse_scenario_set(row.yaml_text, source=row.source,
                                      catalog=load_catalog())
    with db.parsed_sets_lock:
        db.parsed_sets[set_id] = (row.content_hash, scenario_set)
    return scenario_set
