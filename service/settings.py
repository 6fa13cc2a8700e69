"""One settings object for the service, from ``SIGNPOST_*`` environment variables.

Created once per process and validated at start: a bad value stops the process with a clear
message naming the variable.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forecast import FitSettings, GateSettings, SamplerSettings
from indicators import DEFAULT_GRADES, GradeTable


class Settings(BaseSettings):
    """Service configuration; every field is ``SIGNPOST_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SIGNPOST_", extra="ignore")

    database_url: str = Field(default="", description="SQLAlchemy URL; SQLite under var/ if empty")
    var_dir: Path = Path("var")
    refit_interval: int = Field(default=900, gt=0, description="seconds between refit checks")
    queue_poll: float = Field(default=2.0, gt=0, description="seconds between queued-fit polls")
    stale_after: int = Field(default=86_400, gt=0,
                             description="seconds after which a posterior is flagged stale")
    lease_seconds: int = Field(default=120, gt=0, description="lease length; renewed during a fit")
    require_read_key: bool = False
    max_body_bytes: int = 1 << 20
    grades: str = Field(default="", description="JSON grade table (reliability, credibility)")
    default_grade: str = "B2"
    fit_draws: int = Field(default=1000, gt=0)
    fit_tune: int = Field(default=500, gt=0)
    fit_chains: int = Field(default=4, gt=0)
    fit_reweight: bool = Field(default=True, description=(
        "refit a dynamic set by re-weighting the worker's last sampled posterior (PSIS) "
        "when that passes the gate"))
    fit_base_mcse: float = Field(default=0.7, gt=0, le=1, description=(
        "a sampled dynamic fit's MCSE target as a share of the gate's: the headroom that "
        "lets later refits re-weight it"))
    gate_max_rhat: float = 1.01
    gate_min_ess: float = 400.0
    gate_max_divergences: int = 0
    gate_max_mcse: float = 0.005
    today: str = Field(default="", description="freeze 'today' (YYYY-MM-DD), for replays and tests")
    worker: str = Field(default="process", description="'process' (warm worker) or 'inline'")
    scheduler: bool = Field(default=True, description="run the refit scheduler in `serve`")
    migrate_on_start: bool = Field(default=True, description="migrate the schema at API start")
    cache_poll: float = Field(default=1.0, gt=0,
                              description="seconds between the posterior cache's version checks")
    replay_wait: float = Field(default=30.0, ge=0,
                               description="seconds GET /replay waits before answering 202")
    dynamic: bool = Field(default=True, description="learn transitions of sets with dynamics")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)

    @field_validator("worker")
    @classmethod
    def _worker(cls, value: str) -> str:
        if value not in ("process", "inline"):
            raise ValueError("must be 'process' or 'inline'")
        return value

    @property
    def url(self) -> str:
        """The database URL, SQLite under ``var_dir`` by default."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'signpost.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        """Where each published fit's DataTree is written (NetCDF)."""
        return self.var_dir / "fits"

    def grade_table(self) -> GradeTable:
        """The grade → weight table (the default, or ``SIGNPOST_GRADES`` JSON)."""
        if not self.grades:
            table = DEFAULT_GRADES
        else:
            table = GradeTable.from_mapping(json.loads(self.grades))
        return GradeTable(table.reliability, table.credibility, default=self.default_grade)

    def fit_settings(self) -> FitSettings:
        """Sampler and gate settings for fits."""
        return FitSettings(
            dynamic=self.dynamic,
            sampler=SamplerSettings(draws=self.fit_draws, tune=self.fit_tune,
                                    chains=self.fit_chains, reweight=self.fit_reweight,
                                    base_mcse=self.fit_base_mcse),
            gate=GateSettings(max_rhat=self.gate_max_rhat, min_ess_bulk=self.gate_min_ess,
                              max_divergences=self.gate_max_divergences,
                              max_mcse=self.gate_max_mcse),
        )

    def public(self) -> dict[str, Any]:
        """Settings safe to show (no secrets are held here, but keep URLs' passwords out)."""
        data = self.model_dump(mode="json")
        data["database_url"] = _redact(self.url)
        return data


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.split("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
