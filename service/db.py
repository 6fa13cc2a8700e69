"""Database schema (SQLAlchemy 2) and engine set-up. SQLite (WAL) by default, or PostgreSQL.

Tables: ``scenario_sets``, ``observations`` (append-only; retraction, never delete),
``observation_months`` (their monthly sufficient statistics), ``reviews`` and
``review_indicators`` (append-only: which indicators' sources were reviewed through which
date), ``fits`` (one row per fit attempt, with diagnostics and summary JSON), ``leases`` (one
row per scenario set: who may fit it until when), ``api_keys`` (hashes), ``alert_rules``
and ``alert_deliveries`` (webhooks and what was sent), ``resolutions`` (how a question was
answered), ``audit_log`` (append-only: who wrote what, when, from where).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from indicators import DEFAULT_GRADES, Catalog, CoverageRule, GradeTable
from service import migrate
from service.errors import BadRequest, Conflict, NotFound

if TYPE_CHECKING:
    from priors import ScenarioSet


T = TypeVar("T")


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map = {dict[str, Any]: JSON}


class ScenarioSetRow(Base):
    """A loaded scenario set: its YAML text and content hash."""

    __tablename__ = "scenario_sets"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    content_hash: Mapped[str] = mapped_column(String(64))
    yaml_text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(500), default="")
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AppendOnly:
    """What an analyst's entry carries besides its content.

    Who and when, its idempotency key, and its retraction: an entry is retracted (kept and
    flagged), never deleted or edited.
    """

    note: Mapped[str] = mapped_column(Text, default="")
    analyst: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    retracted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    retraction_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class ObservationRow(AppendOnly, Base):
    """One logged fact. Append-only: corrections are retractions."""

    __tablename__ = "observations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    indicator: Mapped[str] = mapped_column(String(100))
    date: Mapped[date] = mapped_column(Date)
    # year·12 + month − 1: lets SQL group by month, quarter or year with integer division
    month_index: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    grade: Mapped[str] = mapped_column(String(2))
    weight: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(500), default="")
    url: Mapped[str] = mapped_column(String(2000), default="")
    # the kind's stratum of the value (a level's index; 0 for other kinds): statistics are
    # kept per stratum (`indicators.kinds`)
    stratum: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (Index("ix_observations_indicator_month", "indicator", "month_index"),)


class ObservationMonthRow(Base):
    """Sufficient statistics of the live observations of one indicator in one month.

    One row per stratum: a kind with categories (a level) keeps one per category.

    Kept in the same transaction as every insert and retraction, so evidence reads at most
    indicators × months rows, whatever the number of observations.
    """

    __tablename__ = "observation_months"

    indicator: Mapped[str] = mapped_column(String(100), primary_key=True)
    month_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    stratum: Mapped[int] = mapped_column(Integer, primary_key=True, default=0,
                                         server_default="0")
    n_obs: Mapped[int] = mapped_column(Integer)
    sum_w: Mapped[float] = mapped_column(Float)
    sum_wv: Mapped[float] = mapped_column(Float)
    sum_wvv: Mapped[float] = mapped_column(Float)
    max_w: Mapped[float] = mapped_column(Float)
    # latest live date: evidence cut inside this month reads raw rows only if it is later
    max_date: Mapped[date] = mapped_column(Date)


class ReviewRow(AppendOnly, Base):
    """A review of the log: these indicators' sources were read through ``through``.

    Append-only: a mistaken review is retracted (kept, flagged), never deleted or edited.
    """

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_id: Mapped[str | None] = mapped_column(String(100), nullable=True)  # where it was made
    through: Mapped[date] = mapped_column(Date)


class ReviewIndicatorRow(Base):
    """One indicator a review covers."""

    __tablename__ = "review_indicators"

    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id"), primary_key=True)
    indicator: Mapped[str] = mapped_column(String(100), primary_key=True)

    __table_args__ = (Index("ix_review_indicators_indicator", "indicator"),)


class FitRow(Base):
    """One fit attempt of one scenario set on one evidence snapshot."""

    __tablename__ = "fits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    set_id: Mapped[str] = mapped_column(ForeignKey("scenario_sets.id"))
    kind: Mapped[str] = mapped_column(String(20), default="live")  # live | replay
    status: Mapped[str] = mapped_column(String(20))  # queued running published rejected failed
    requested_by: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    as_of: Mapped[date | None] = mapped_column(Date, nullable=True)
    set_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    evidence_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    diagnostics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    artifact: Mapped[str | None] = mapped_column(String(1000), nullable=True)

    __table_args__ = (
        Index("ix_fits_set_status_finished", "set_id", "status", "finished_at"),
        Index("ix_fits_status_created", "status", "created_at"),
        # one queued live fit per set (migration 0006): concurrent writers share it
        Index("ux_fits_one_queued_per_set", "set_id", unique=True,
              sqlite_where=text("status = 'queued' AND kind = 'live'"),
              postgresql_where=text("status = 'queued' AND kind = 'live'")),
    )


class LeaseRow(Base):
    """Who may fit a scenario set, until when. Taken over once expired."""

    __tablename__ = "leases"

    set_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    fit_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """An API key: only its SHA-256 hash is kept.

    Refused once ``revoked`` (``revoked_at`` says when) or past ``expires_at``; a rotated
    key's successor names it in ``rotated_from``. ``last_used_at`` is written at most once a
    minute per key (migration 0008; `service.repositories.keys`).
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rotated_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)


class AuditRow(Base):
    """One entry of the audit log: who did what, to what, when and from where.

    Append-only: no code path updates or deletes an entry, and the database refuses both
    (triggers of migration 0008). ``actor`` is a key's name (or prefix), ``cli:<user>`` or
    ``anonymous``; ``action`` one of `service.audit.ACTIONS`; ``target`` what it acted on
    (``observation:42``, ``key:3``); ``detail`` never holds a secret.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    actor_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    client: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_action", "action", "id"),
        Index("ix_audit_log_target", "target", "id"),
    )


class AlertRuleRow(Base):
    """An alert rule of a set: when a new live fit meets it, its webhook is sent one POST.

    Soft-deleted (``deleted_at``) so its deliveries keep their rule. ``reference`` holds the
    probabilities (by scenario) that ``min_move`` is measured from: the published ones when
    the rule was created, then those of the fit it last fired on. ``secret`` signs the
    deliveries, so it is kept as given (it is never served back).
    """

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_id: Mapped[str] = mapped_column(ForeignKey("scenario_sets.id"))
    kind: Mapped[str] = mapped_column(String(20))  # probability | leader
    scenario: Mapped[str | None] = mapped_column(String(100), nullable=True)
    above: Mapped[float | None] = mapped_column(Float, nullable=True)
    below: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_move: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    webhook_url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reference: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reference_fit_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)

    __table_args__ = (Index("ix_alert_rules_set_id", "set_id"),)


class AlertDeliveryRow(Base):
    """One alert: a rule met by a fit, the JSON body as sent, and how its delivery went.

    Unique on (rule, fit): a fit fires a rule at most once, whichever process evaluates it.
    """

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id"))
    set_id: Mapped[str] = mapped_column(String(100))
    fit_id: Mapped[str] = mapped_column(ForeignKey("fits.id"))
    scenario: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[str] = mapped_column(Text)  # the body's exact JSON text, signed as sent
    status: Mapped[str] = mapped_column(String(20))  # pending delivered failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # when a pending delivery is next due (pushed ahead while one process attempts it)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                             nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)

    __table_args__ = (
        UniqueConstraint("rule_id", "fit_id", name="uq_alert_deliveries_rule_fit"),
        Index("ix_alert_deliveries_status_next", "status", "next_attempt_at"),
    )


class ResolutionRow(Base):
    """How a set's question was answered (a scenario, or void), and when.

    Kept when replaced: the current resolution of a set is its row not superseded.
    """

    __tablename__ = "resolutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    set_id: Mapped[str] = mapped_column(ForeignKey("scenario_sets.id"))
    scenario: Mapped[str | None] = mapped_column(String(100), nullable=True)  # None: void
    void: Mapped[bool] = mapped_column(Boolean)
    date: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    resolved_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    superseded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)

    __table_args__ = (
        # one current resolution per set (migration 0007)
        Index("ux_resolutions_current_per_set", "set_id", unique=True,
              sqlite_where=text("superseded_at IS NULL"),
              postgresql_where=text("superseded_at IS NULL")),
    )


PG_CONNECT_TIMEOUT = 5
"""Seconds a PostgreSQL connection attempt may take: a request never hangs on a dead server."""


def make_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    PostgreSQL connections are pinged before each use (a server restarted meanwhile costs a
    reconnect, not an error) and give up connecting after `PG_CONNECT_TIMEOUT` seconds.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///var/signpost.db`` or
        ``postgresql+psycopg://user@127.0.0.1:5432/signpost``.
    busy_timeout : float
        SQLite: seconds a statement waits for another connection's write lock before it
        fails with "database is locked" (the API's 503).

    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout,
                                                  "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged row survives power loss
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         connect_args={"connect_timeout": PG_CONNECT_TIMEOUT})


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """Sessions that keep loaded attributes after commit."""
    return sessionmaker(engine, expire_on_commit=False)


__all__ = [
    "AlertDeliveryRow",
    "AlertRuleRow",
    "ApiKeyRow",
    "AuditRow",
    "Base",
    "FitRow",
    "LeaseRow",
    "ObservationMonthRow",
    "ObservationRow",
    "ResolutionRow",
    "ReviewIndicatorRow",
    "ReviewRow",
    "ScenarioSetRow",
    "make_engine",
    "make_sessionmaker",
    "utcnow",
    "Database",
]



def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def mark_retracted(row: Any, what: str, row_id: int, reason: str, by: str,
                   now: datetime) -> None:
    """Retract a stored observation or review (``row``, None when not found): it stays stored.

    Raises
    ------
    BadRequest
        No reason given.
    NotFound, Conflict
        No such row; already retracted.

    """
    if not reason or not reason.strip():
        raise BadRequest("reason: give the reason for the retraction", field="reason")
    if row is None:
        raise NotFound(f"no {what} {row_id}", field="id")
    if row.retracted_at is not None:
        raise Conflict(f"{what} {row_id} was already retracted at "
                       f"{aware(row.retracted_at).isoformat()}", field="id",
                       code="already_retracted")
    row.retracted_at = now
    row.retraction_reason = reason.strip() + (f" (by {by})" if by else "")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Database:
    """Signpost's database handle: engine, sessions, clock and the parsed-set cache.

    The reads and writes are the keyword-only functions of `service.repositories`, each
    taking this handle first.

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
    busy_timeout : float
        SQLite: seconds a write waits for another process's lock (`make_engine`).

    """

    def __init__(self, url: str, grades: GradeTable = DEFAULT_GRADES,
                 clock: Callable[[], datetime] = utcnow, today: date | None = None,
                 coverage_rule: CoverageRule = "reviews", busy_timeout: float = 30.0):
        self.url = url
        self.coverage_rule = coverage_rule
        self.engine = make_engine(url, busy_timeout=busy_timeout)
        self.Session = make_sessionmaker(self.engine)
        self.grades = grades
        self.clock = clock
        self._today = today
        # parsed scenario sets by id, with the content hash they were parsed from, and the
        # catalog with the key (ids, hashes) it was built for (`service.repositories.sets`)
        self.parsed_sets: dict[str, tuple[str, ScenarioSet]] = {}
        self.parsed_sets_lock = threading.Lock()
        self.catalog_cache: tuple[tuple, Catalog] | None = None

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

    def get(self, model: type[T], key: Any, *, missing: str, field: str) -> T:
        """The row of ``model`` with primary key ``key``; NotFound(``missing``, ``field``)."""
        with self.Session() as session:
            row = session.get(model, key)
        if row is None:
            raise NotFound(missing, field=field)
        return row

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dispose()
