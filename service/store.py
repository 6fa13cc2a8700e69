"""The store: every read and write of Signpost's database, behind one small class.

Observations are append-only (retraction, never delete) and committed before the caller
acknowledges them. Evidence is built by SQL aggregation (``GROUP BY indicator, period``), so
its cost depends on periods × indicators, not on the number of rows.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, text, true, update
from sqlalchemy.exc import IntegrityError

from indicators import (
    DEFAULT_GRADES,
    Catalog,
    Coverage,
    CoverageRule,
    Evidence,
    GradeTable,
    InvalidObservation,
    Observation,
    load_catalog,
    validate_observation,
)
from priors import ScenarioSet, ScenarioSetError, bundled_set_paths, parse_scenario_set
from service import migrate
from service.db import (
    ApiKeyRow,
    FitRow,
    LeaseRow,
    ObservationRow,
    ScenarioSetRow,
    aware,
    make_engine,
    make_sessionmaker,
    mark_retracted,
)
from service.errors import BadRequest, Conflict, NotFound
from service.repositories import evidence, observations
from service.repositories.observations import month_index

ROLES = ("reader", "analyst", "admin")
FIT_STATUSES = ("queued", "running", "published", "rejected", "failed")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def observation_dict(row: ObservationRow) -> dict[str, Any]:
    """The API's view of a stored observation."""
    return {
        "id": row.id,
        "indicator": row.indicator,
        "date": row.date.isoformat(),
        "value": row.value,
        "grade": row.grade,
        "weight": row.weight,
        "source": row.source,
        "url": row.url,
        "note": row.note,
        "analyst": row.analyst,
        "created_at": aware(row.created_at).isoformat(),
        "retracted_at": aware(row.retracted_at).isoformat() if row.retracted_at else None,
        "retraction_reason": row.retraction_reason,
    }


def fit_dict(row: FitRow) -> dict[str, Any]:
    """The API's view of a fit attempt."""
    def iso(value):
        return aware(value).isoformat() if value else None

    return {
        "fit_id": row.id,
        "set_id": row.set_id,
        "kind": row.kind,
        "status": row.status,
        "requested_by": row.requested_by,
        "created_at": iso(row.created_at),
        "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at),
        "as_of": row.as_of.isoformat() if row.as_of else None,
        "evidence_hash": row.evidence_hash,
        "seed": row.seed,
        "attempts": row.attempts,
        "timings": row.timings,
        "diagnostics": row.diagnostics,
        # how the posterior was drawn: "nutpie" (sampled) or "psis" (the worker's last sampled
        # posterior re-weighted for this evidence; decision 008), with its details
        "sampler": (row.summary or {}).get("sampler"),
        "reason": row.reason,
    }


@dataclass(frozen=True)
class ApiKey:
    """A verified API key (never the secret itself)."""

    id: int
    prefix: str
    role: str
    name: str


class Store:
    """Signpost's database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL (SQLite or PostgreSQL).
    grades : GradeTable
        Grade → weight table applied when an observation is stored.
    clock : callable
        Returns the current aware datetime (injected so tests can move time).
    today : datetime.date, optional
        Freezes "today" (replays and tests).
    coverage_rule : {"reviews", "reviews_only", "as_of"}
        How far each indicator's evidence counts (`indicators.coverage`).

    """

    def __init__(self, url: str, grades: GradeTable = DEFAULT_GRADES,
                 clock: Callable[[], datetime] = utcnow, today: date | None = None,
                 coverage_rule: CoverageRule = "reviews"):
        self.url = url
        self.coverage_rule = coverage_rule
        self.engine = make_engine(url)
        self.Session = make_sessionmaker(self.engine)
        self.grades = grades
        self.clock = clock
        self._today = today
        self._sets: dict[str, tuple[str, ScenarioSet]] = {}
        self._sets_lock = threading.Lock()
        self._catalog: tuple[tuple, Catalog] | None = None

    # -- housekeeping -----------------------------------------------------------------

    def today(self) -> date:
        """Today's date (UTC), unless frozen by configuration."""
        return self._today or self.clock().date()

    def migrate(self) -> None:
        """Create or migrate the schema to the newest revision."""
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(self.engine)

    def ping(self) -> bool:
        """Whether the database answers."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:  # any driver error means "not reachable"
            return False

    def migrations_current(self) -> bool:
        """Whether the schema is at the newest revision."""
        try:
            return migrate.is_current(self.engine)
        except Exception:
            return False

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dispose()

    # -- scenario sets ------------------------------------------------------------------

    def load_set_text(self, yaml_text: str, source: str) -> tuple[ScenarioSet, bool]:
        """Validate and store a scenario set (insert or replace by id).

        Returns
        -------
        (ScenarioSet, changed) : changed is False when the same content was already loaded.

        Raises
        ------
        ScenarioSetError
            If the YAML does not validate.

        """
        scenario_set = parse_scenario_set(yaml_text, source=source, catalog=self.catalog())
        with self.Session.begin() as session:
            row = session.get(ScenarioSetRow, scenario_set.id)
            if row is not None and row.content_hash == scenario_set.content_hash:
                return scenario_set, False
            if row is None:
                row = ScenarioSetRow(id=scenario_set.id)
                session.add(row)
            row.title = scenario_set.title
            row.content_hash = scenario_set.content_hash
            row.yaml_text = yaml_text
            row.source = source
            row.loaded_at = self.clock()
        return scenario_set, True

    def load_bundled_sets(self) -> list[tuple[ScenarioSet, bool]]:
        """Load every bundled scenario set."""
        return [self.load_set_text(p.read_text(encoding="utf-8"), p.name)
                for p in bundled_set_paths()]

    def set_ids(self) -> list[str]:
        """Ids of the loaded sets, sorted."""
        with self.Session() as session:
            return list(session.scalars(select(ScenarioSetRow.id).order_by(ScenarioSetRow.id)))

    def get_set(self, set_id: str) -> ScenarioSet:
        """A loaded scenario set, parsed once per content hash.

        Raises
        ------
        NotFound

        """
        with self.Session() as session:
            row = session.get(ScenarioSetRow, set_id)
            if row is None:
                known = ", ".join(self.set_ids()) or "none loaded"
                raise NotFound(f"unknown scenario set '{set_id}' (sets: {known})",
                               field="set_id")
            content_hash, yaml_text, source = row.content_hash, row.yaml_text, row.source
        with self._sets_lock:
            cached = self._sets.get(set_id)
            if cached and cached[0] == content_hash:
                return cached[1]
        scenario_set = parse_scenario_set(yaml_text, source=source,
                                          catalog=load_catalog())
        with self._sets_lock:
            self._sets[set_id] = (content_hash, scenario_set)
        return scenario_set

    def set_text(self, set_id: str) -> tuple[str, str]:
        """The stored YAML text and source name of a set. Raises NotFound."""
        with self.Session() as session:
            row = session.get(ScenarioSetRow, set_id)
            if row is None:
                raise NotFound(f"unknown scenario set '{set_id}'", field="set_id")
            return row.yaml_text, row.source

    def list_sets(self) -> list[ScenarioSet]:
        """Every loaded scenario set."""
        return [self.get_set(set_id) for set_id in self.set_ids()]

    def catalog(self) -> Catalog:
        """The bundled catalog plus the inline indicators of loaded sets.

        Rebuilt only when a set is loaded or changed (one light query per call: the ids and
        content hashes), since every observation is validated against it.
        """
        with self.Session() as session:
            key = tuple((row.id, row.content_hash) for row in session.execute(
                select(ScenarioSetRow.id, ScenarioSetRow.content_hash)
                .order_by(ScenarioSetRow.id)))
        cached = self._catalog
        if cached is not None and cached[0] == key:
            return cached[1]
        base = load_catalog()
        extra = {}
        for set_id, _ in key:
            try:
                scenario_set = self.get_set(set_id)
            except ScenarioSetError:
                continue
            for indicator in scenario_set.catalog_indicators:
                if indicator.id not in base:
                    extra[indicator.id] = indicator
        catalog = base.with_extra(extra.values()) if extra else base
        self._catalog = (key, catalog)
        return catalog

    # -- observations -------------------------------------------------------------------

    def validate(self, data: Mapping[str, Any], catalog: Catalog | None = None) -> Observation:
        """Validate one observation against the catalog and today's date.

        Raises
        ------
        BadRequest
            Naming the field and the reason.

        """
        try:
            return validate_observation(data, catalog or self.catalog(), self.today(),
                                        self.grades)
        except InvalidObservation as exc:
            raise BadRequest(str(exc), field=exc.field) from exc

    def _row(self, obs: Observation, analyst: str, key: str | None) -> ObservationRow:
        grade = obs.grade or self.grades.default
        return ObservationRow(
            indicator=obs.indicator, date=obs.date, month_index=month_index(obs.date),
            value=float(obs.value), grade=grade, weight=self.grades.weight(grade),
            source=obs.source, url=obs.url, note=obs.note,
            analyst=analyst or obs.analyst, created_at=self.clock(), idempotency_key=key,
        )

    def add_observation(self, data: Mapping[str, Any], analyst: str = "",
                        idempotency_key: str | None = None) -> tuple[dict[str, Any], bool]:
        """Validate and commit one observation.

        Returns
        -------
        (row, created) : created is False when ``idempotency_key`` was seen before, and the
        first row is returned instead of a second one.

        Raises
        ------
        BadRequest
            Refused input (nothing is stored).
        Conflict
            The idempotency key was used for a different observation.

        """
        obs = self.validate(data)
        if idempotency_key:
            existing = self._by_key(idempotency_key)
            if existing is not None:
                return self._replay(existing, obs)
        row = self._row(obs, analyst, idempotency_key)
        try:
            with self.Session.begin() as session:
                session.add(row)
                session.flush()  # the unique idempotency key fails here, before the stats
                self._add_to_months(session, [row])
        except IntegrityError:
            existing = self._by_key(idempotency_key) if idempotency_key else None
            if existing is None:
                raise
            return self._replay(existing, obs)
        return observation_dict(row), True

    def _by_key(self, key: str) -> ObservationRow | None:
        with self.Session() as session:
            return session.scalar(select(ObservationRow).where(
                ObservationRow.idempotency_key == key))

    @staticmethod
    def _replay(existing: ObservationRow, obs: Observation) -> tuple[dict[str, Any], bool]:
        same = (existing.indicator == obs.indicator and existing.date == obs.date
                and existing.value == float(obs.value))
        if not same:
            raise Conflict("this Idempotency-Key was already used for a different observation "
                           f"(id {existing.id}); use a new key", field="Idempotency-Key",
                           code="idempotency_conflict")
        return observation_dict(existing), False

    def add_observations(self, observations: Iterable[Observation], analyst: str = "",
                         review: Mapping[str, Any] | None = None
                         ) -> tuple[int, dict[str, Any] | None]:
        """Commit validated observations in one transaction; returns how many (and the review).

        With ``review`` (the fields of `service.reviews.ReviewIn`), the review is validated
        first and committed in the same transaction: both are stored, or neither.
        """
        from service.reviews import add_review, validate_review

        rows = [self._row(obs, analyst, None) for obs in observations]
        if review is not None:
            validate_review(self, review)  # refused before anything is written
        stored = None
        with self.Session.begin() as session:
            session.add_all(rows)
            self._add_to_months(session, rows)
            if review is not None:
                stored, _ = add_review(self, review, analyst=analyst, session=session)
        return len(rows), stored

    def _add_to_months(self, session, rows: list[ObservationRow]) -> None:
        observations.add_to_months(session, rows=rows)

    def _recount_month(self, session, indicator: str, month: int) -> None:
        observations.recount_month(session, indicator=indicator, month=month)

    def count_observations(self, include_retracted: bool = True) -> int:
        """How many observations are stored."""
        query = select(func.count(ObservationRow.id))
        if not include_retracted:
            query = query.where(ObservationRow.retracted_at.is_(None))
        with self.Session() as session:
            return int(session.scalar(query))

    def list_observations(self, indicator: str | None = None, set_id: str | None = None,
                          since: date | None = None, until: date | None = None,
                          limit: int = 100, offset: int = 0,
                          include_retracted: bool = True) -> tuple[list[dict[str, Any]], int]:
        """A page of observations, newest date first, and the total matching."""
        conditions = []
        if indicator:
            conditions.append(ObservationRow.indicator == indicator)
        if set_id:
            conditions.append(ObservationRow.indicator.in_(self.get_set(set_id).indicator_ids))
        if since:
            conditions.append(ObservationRow.date >= since)
        if until:
            conditions.append(ObservationRow.date <= until)
        if not include_retracted:
            conditions.append(ObservationRow.retracted_at.is_(None))
        where = and_(*conditions) if conditions else true()
        with self.Session() as session:
            total = int(session.scalar(select(func.count(ObservationRow.id)).where(where)))
            rows = session.scalars(
                select(ObservationRow).where(where)
                .order_by(ObservationRow.date.desc(), ObservationRow.id.desc())
                .limit(limit).offset(offset)
            ).all()
        return [observation_dict(r) for r in rows], total

    def retract(self, observation_id: int, reason: str, by: str = "") -> dict[str, Any]:
        """Mark an observation retracted (it stays stored).

        Raises
        ------
        NotFound, Conflict

        """
        with self.Session.begin() as session:
            row = session.get(ObservationRow, observation_id)
            mark_retracted(row, "observation", observation_id, reason, by, self.clock())
            session.flush()
            self._recount_month(session, row.indicator, row.month_index)
        return observation_dict(row)

    # -- evidence -----------------------------------------------------------------------

    def coverage(self, scenario_set: ScenarioSet, as_of: date | None = None) -> Coverage:
        """Each of the set's indicators' coverage through ``as_of`` (default today)."""
        return evidence.coverage(self, scenario_set=scenario_set, as_of=as_of)

    def evidence(self, scenario_set: ScenarioSet, as_of: date | None = None,
                 coverage: Coverage | None = None) -> Evidence:
        """The set's evidence through ``as_of`` (default today), by SQL aggregation."""
        return evidence.evidence(self, scenario_set=scenario_set, as_of=as_of,
                                 coverage=coverage)

    # -- fits ---------------------------------------------------------------------------

    def create_fit(self, set_id: str, requested_by: str = "", kind: str = "live",
                   as_of: date | None = None) -> str:
        """Queue a fit of a set; returns its id."""
        self.get_set(set_id)
        fit_id = str(uuid.uuid4())
        with self.Session.begin() as session:
            session.add(FitRow(id=fit_id, set_id=set_id, kind=kind, status="queued",
                               requested_by=requested_by, created_at=self.clock(),
                               as_of=as_of, attempts=0))
        return fit_id

    def get_fit_row(self, fit_id: str) -> FitRow:
        """A fit attempt's row. Raises NotFound."""
        with self.Session() as session:
            row = session.get(FitRow, fit_id)
        if row is None:
            raise NotFound(f"no fit '{fit_id}'", field="fit_id")
        return row

    def get_fit(self, fit_id: str) -> dict[str, Any]:
        """A fit attempt's public view. Raises NotFound."""
        return fit_dict(self.get_fit_row(fit_id))

    def update_fit(self, fit_id: str, **values: Any) -> None:
        """Set columns of a fit row."""
        with self.Session.begin() as session:
            session.execute(update(FitRow).where(FitRow.id == fit_id).values(**values))

    def latest_published(self, set_id: str, kind: str = "live") -> FitRow | None:
        """The newest published fit of a set."""
        with self.Session() as session:
            return session.scalar(
                select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == kind,
                                     FitRow.status == "published")
                .order_by(FitRow.finished_at.desc(), FitRow.id.desc()).limit(1))

    def latest_published_id(self, set_id: str) -> str | None:
        """The id of the newest published live fit of a set: the cheap version check."""
        with self.Session() as session:
            return session.scalar(
                select(FitRow.id).where(FitRow.set_id == set_id, FitRow.status == "published",
                                        FitRow.kind == "live")
                .order_by(FitRow.finished_at.desc(), FitRow.id.desc()).limit(1))

    def latest_finished(self, set_id: str, kind: str = "live") -> FitRow | None:
        """The newest fit of a set that ran to a verdict (published or rejected)."""
        with self.Session() as session:
            return session.scalar(
                select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == kind,
                                     FitRow.status.in_(("published", "rejected")))
                .order_by(FitRow.finished_at.desc(), FitRow.id.desc()).limit(1))

    def pending_fit(self, set_id: str, kind: str = "live",
                    statuses: tuple[str, ...] = ("queued", "running")) -> FitRow | None:
        """The oldest queued or running fit of a set (or of ``statuses``), if any."""
        with self.Session() as session:
            return session.scalar(
                select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == kind,
                                     FitRow.status.in_(statuses))
                .order_by(FitRow.created_at).limit(1))

    def history(self, set_id: str, limit: int = 500) -> list[FitRow]:
        """Published live fits of a set, oldest first."""
        self.get_set(set_id)
        with self.Session() as session:
            rows = session.scalars(
                select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == "live",
                                     FitRow.status == "published")
                .order_by(FitRow.finished_at.desc()).limit(limit)).all()
        return list(reversed(rows))

    def replays(self, set_id: str, as_of: date) -> list[FitRow]:
        """Replay fits of a set as of a date, newest first."""
        with self.Session() as session:
            return list(session.scalars(
                select(FitRow).where(FitRow.set_id == set_id, FitRow.kind == "replay",
                                     FitRow.as_of == as_of)
                .order_by(FitRow.created_at.desc())).all())

    def runnable_fits(self) -> list[FitRow]:
        """Queued fits, and running fits whose set's lease has expired (a crashed worker)."""
        now = self.clock()
        with self.Session() as session:
            live_lease = select(LeaseRow.set_id).where(LeaseRow.expires_at > now)
            return list(session.scalars(
                select(FitRow).where(or_(
                    FitRow.status == "queued",
                    and_(FitRow.status == "running", FitRow.set_id.not_in(live_lease)),
                )).order_by(FitRow.created_at)).all())

    # -- leases -------------------------------------------------------------------------

    def acquire_lease(self, set_id: str, owner: str, fit_id: str | None,
                      seconds: float) -> bool:
        """Take the set's lease if it is free, expired or already ours.

        Atomic on SQLite and PostgreSQL alike: a conditional UPDATE, or an INSERT that the
        primary key makes fail for all but one contender.
        """
        now = self.clock()
        expires = now + timedelta(seconds=seconds)
        with self.Session.begin() as session:
            result = session.execute(
                update(LeaseRow)
                .where(LeaseRow.set_id == set_id,
                       or_(LeaseRow.expires_at <= now, LeaseRow.owner == owner))
                .values(owner=owner, fit_id=fit_id, expires_at=expires))
            if result.rowcount == 1:
                return True
        try:
            with self.Session.begin() as session:
                exists = session.get(LeaseRow, set_id)
                if exists is not None:
                    return False
                session.add(LeaseRow(set_id=set_id, owner=owner, fit_id=fit_id,
                                     expires_at=expires))
            return True
        except IntegrityError:
            return False

    def renew_lease(self, set_id: str, owner: str, seconds: float) -> bool:
        """Extend our lease; False if it is no longer ours."""
        with self.Session.begin() as session:
            result = session.execute(
                update(LeaseRow).where(LeaseRow.set_id == set_id, LeaseRow.owner == owner)
                .values(expires_at=self.clock() + timedelta(seconds=seconds)))
            return result.rowcount == 1

    def release_lease(self, set_id: str, owner: str) -> None:
        """Give the lease back (only if it is ours)."""
        with self.Session.begin() as session:
            session.execute(delete(LeaseRow).where(LeaseRow.set_id == set_id,
                                                   LeaseRow.owner == owner))

    def lease(self, set_id: str) -> LeaseRow | None:
        """The set's lease row, if any."""
        with self.Session() as session:
            return session.get(LeaseRow, set_id)

    # -- API keys -----------------------------------------------------------------------

    def create_key(self, role: str, name: str = "") -> str:
        """Create an API key; returns the secret, which is never stored.

        Raises
        ------
        BadRequest
            For an unknown role.

        """
        if role not in ROLES:
            raise BadRequest(f"role: '{role}' is not a role; use one of {', '.join(ROLES)}",
                             field="role")
        secret = "sp_" + secrets.token_urlsafe(32)
        with self.Session.begin() as session:
            session.add(ApiKeyRow(key_hash=_hash_key(secret), prefix=secret[:10], role=role,
                                  name=name, created_at=self.clock(), revoked=False))
        return secret

    def verify_key(self, secret: str) -> ApiKey | None:
        """The key's identity and role, or None for an unknown or revoked key."""
        with self.Session() as session:
            row = session.scalar(select(ApiKeyRow).where(
                ApiKeyRow.key_hash == _hash_key(secret), ApiKeyRow.revoked.is_(False)))
        if row is None:
            return None
        return ApiKey(id=row.id, prefix=row.prefix, role=row.role, name=row.name)


def _hash_key(secret: str) -> str:
    # API keys are 256-bit random tokens, so a fast hash is enough (no password stretching)
    return hashlib.sha256(secret.encode()).hexdigest()
