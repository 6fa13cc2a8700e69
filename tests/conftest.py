"""Fixtures shared across the suite: databases (SQLite always, PostgreSQL where reachable)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError


def pytest_collection_modifyitems(config, items) -> None:
    """Run the end-to-end tests last: by then the in-process tests have compiled both bundled
    models into this run's compile cache, which the e2e servers and workers share (a cold
    compile in each fresh process would cost ~1 minute per model)."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/e2e/"))


PG_ADMIN_URL = os.environ.get("SIGNPOST_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reason() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except (OperationalError, ImportError) as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(exc).splitlines()[0]}"


_PG_SKIP = _pg_reason()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of a reachable PostgreSQL, or skip saying why."""
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    return PG_ADMIN_URL


def _fresh_pg_database(admin_url: str) -> tuple[str, str]:
    name = f"signpost_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def _drop_pg_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def pg_url(pg_server) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test."""
    url, name = _fresh_pg_database(pg_server)
    yield url
    _drop_pg_database(pg_server, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """An empty database of each kind: a SQLite file, and PostgreSQL where reachable."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'signpost.db'}"
    else:
        yield request.getfixturevalue("pg_url")
