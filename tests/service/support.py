"""What the in-process API tests share: Starlette's TestClient, settings, a bearer header."""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

from starlette.exceptions import StarletteDeprecationWarning

from service.settings import Settings

with warnings.catch_warnings():
    # Starlette 1.x warns at import that its TestClient prefers `httpx2` over `httpx`; Signpost
    # depends on httpx (the real-server tests use it too) and the client behaves the same.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`",
                            category=StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["TODAY", "TestClient", "bearer", "make_settings"]

TODAY = date(2025, 12, 31)


def make_settings(var_dir: Path, url: str | None = None, **overrides) -> Settings:
    """An app without scheduler, fitting inline, on ``url`` (SQLite under ``var_dir``).

    dynamic=False: the static model is exact, so served numbers are checked to 1e-6, and both
    bundled sets fit in a fraction of a second.
    """
    return Settings(var_dir=var_dir, database_url=url or f"sqlite:///{var_dir / 'signpost.db'}",
                    scheduler=False, worker="inline", today=TODAY.isoformat(), dynamic=False,
                    **overrides)


def bearer(secret: str) -> dict[str, str]:
    """The Authorization header of an API key."""
    return {"Authorization": f"Bearer {secret}"}
