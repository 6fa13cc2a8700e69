"""One settings object for the service, from ``SIGNPOST_*`` environment variables.

Created once per process and validated at start: a bad value stops the process with a clear
message naming the variable.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import limits
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from forecast import FitSettings, GateSettings, SamplerSettings
from indicators import COVERAGE_RULES, DEFAULT_GRADES, GradeTable
from service.webhooks import AllowList
from service.words import WordTable, check_words_setting, parse_word_table

# a CORS origin as a browser sends it: scheme://host[:port]
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


class Settings(BaseSettings):
    """Service configuration; every field is ``SIGNPOST_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SIGNPOST_", extra="ignore")

    database_url: str = Field(default="", description="SQLAlchemy URL; SQLite under var/ if empty")
    var_dir: Path = Path("var")
    refit_interval: int = Field(default=900, gt=0, description="seconds between refit checks")
    queue_poll: float = Field(default=2.0, gt=0, description=(
        "seconds between queued-fit polls (a safety net: the change feed runs them at once)"))
    change_poll: float = Field(default=0.05, gt=0, description=(
        "SQLite: seconds between reads of the database's change counter (PostgreSQL: LISTEN)"))
    settle: float = Field(default=1.0, ge=0, description=(
        "seconds of quiet a burst's writes wait for before their refit starts (a write after "
        "a quiet spell starts one at once)"))
    settle_max: float = Field(default=5.0, ge=0, description=(
        "the longest a write's refit waits for that quiet"))
    refine_after: float = Field(default=10.0, ge=0, description=(
        "seconds without writes after a quick (re-weighted) refit of a dynamic set before "
        "the enumerated path fit of the same evidence refines it (decision 015)"))
    stale_after: int = Field(default=86_400, gt=0,
                             description="seconds after which a posterior is flagged stale")
    lease_seconds: int = Field(default=120, gt=0, description="lease length; renewed during a fit")
    sqlite_busy_timeout: float = Field(default=30.0, gt=0, description=(
        "SQLite: seconds a write waits for another process's write lock; then the API "
        "answers 503 database_unavailable with Retry-After"))
    require_read_key: bool = False
    max_body_bytes: int = 1 << 20
    max_drain_bytes: int = Field(default=8 << 20, ge=0, description=(
        "a body refused as too large (413) is read and discarded up to this many bytes, so "
        "the client finishes sending and reads the refusal; past it the connection is closed "
        "(docs/hardening.md)"))
    cors_origins: str = Field(default="", description=(
        "comma-separated origins (https://dash.example.org) that browsers may call the API "
        "from; empty: CORS is off (docs/hardening.md)"))
    behind_tls: bool = Field(default=False, description=(
        "clients reach the service over HTTPS only (itself or a TLS-terminating proxy): send "
        "Strict-Transport-Security"))
    grades: str = Field(default="", description="JSON grade table (reliability, credibility)")
    words: str = Field(default="", description=(
        "JSON estimative-words table (ICD 203's if empty): a list of bands from 0 up, "
        '{"words": ..., "below": x} (x excluded) or {"words": ..., "through": x} (included), '
        'the last "through": 1 (service.words)'))
    default_grade: str = "B2"
    fit_draws: int = Field(default=1000, gt=0)
    fit_tune: int = Field(default=500, gt=0)
    fit_chains: int = Field(default=4, gt=0)
    fit_reweight: bool = Field(default=False, description=(
        "NUTS refits of a dynamic set: re-weight the worker's last sampled posterior (PSIS) "
        "when that passes the gate (off: its MCSE proved over-confident, decision 011)"))
    fit_method: str = Field(default="auto", description=(
        "dynamic sets: 'auto' (enumerated scenario paths; NUTS when their importance weights "
        "fail the gate), 'paths' or 'nuts'"))
    fit_quick_refits: bool = Field(default=True, description=(
        "dynamic path fits: publish the last path fit's draws re-weighted for new evidence "
        "(PSIS) when that passes the gate, then refine by enumerating (decision 015)"))
    fit_path_draws: int = Field(default=20000, gt=0, description=(
        "iid draws from the enumerated paths behind a dynamic set's nowcast"))
    fit_max_paths: int = Field(default=4_000_000, gt=0, description=(
        "most scenario paths a dynamic fit enumerates (it goes to as many segments as fit)"))
    fit_time_budget: float = Field(default=45.0, gt=0, description=(
        "seconds a fit may spend on fresh, larger draws once its first estimate fell short "
        "of precision; then it fails saying what it reached"))
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
    coverage: str = Field(default="reviews", description=(
        "how far each indicator's evidence counts: 'reviews' (its latest review's date, else "
        "the set's newest entry), 'reviews_only' (reviewed stretches only) or 'as_of' "
        "(every period through today: a log complete by construction)"))
    host: str = "127.0.0.1"
    port: int = Field(default=8000, gt=0, lt=65536)
    scheduler_metrics_port: int = Field(default=9464, ge=0, lt=65536, description=(
        "`signpost scheduler`: the port its Prometheus metrics are served on, at SIGNPOST_HOST "
        "(0: not served; docs/metrics.md)"))
    webhook_allow_hosts: str = Field(default="", description=(
        "comma-separated hosts (or host:port) alert webhooks may reach although they resolve "
        "to loopback, private or otherwise non-public addresses (service.webhooks)"))
    webhook_timeout: float = Field(default=10.0, gt=0, description=(
        "seconds an alert webhook has to answer one attempt"))
    webhook_retries: int = Field(default=5, ge=0, description=(
        "retries of an alert delivery after a non-2xx answer or a timeout, then it is failed"))
    webhook_backoff: float = Field(default=1.0, ge=0, description=(
        "seconds before the first retry; each further retry waits twice as long"))
    rate_limit_writes: str = Field(default="120/minute", description=(
        "writes per API key (observations, reviews, retractions, alert rules, keys): a "
        "`limits` string such as 120/minute, several joined by ';'; empty: no limit"))
    rate_limit_fits: str = Field(default="30/minute", description=(
        "fit requests per API key (POST /v1/fits, what-if); empty: no limit"))
    rate_limit_reads: str = Field(default="", description=(
        "open reads per client address, e.g. 600/minute; empty (the default): no limit, "
        "and no work on the read path"))
    rate_limit_storage: str = Field(default="memory://", description=(
        "where the limits count: memory:// (each process alone) or redis://host:6379/0 "
        "(shared by every replica)"))

    @field_validator("worker")
    @classmethod
    def _worker(cls, value: str) -> str:
        if value not in ("process", "inline"):
            raise ValueError("must be 'process' or 'inline'")
        return value

    @field_validator("fit_method")
    @classmethod
    def _fit_method(cls, value: str) -> str:
        if value not in ("auto", "paths", "nuts"):
            raise ValueError("must be 'auto', 'paths' or 'nuts'")
        return value

    @field_validator("coverage")
    @classmethod
    def _coverage(cls, value: str) -> str:
        if value not in COVERAGE_RULES:
            raise ValueError(f"must be one of {', '.join(COVERAGE_RULES)}")
        return value

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _webhook_allow_hosts(cls, value: str) -> str:
        AllowList.parse(value)  # a ValueError names the bad entry
        return value

    @field_validator("rate_limit_writes", "rate_limit_fits", "rate_limit_reads")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        if value.strip():
            try:
                limits.parse_many(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a rate limit: write a number per second, "
                                 "minute, hour or day, e.g. 120/minute (several joined by "
                                 "';'), or leave it empty for none") from None
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_limit_storage(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://",
                                 "redis+sentinel://", "redis+cluster://")):
            raise ValueError(f"{_redact(value)!r} is not a rate-limit storage: use memory:// "
                             "or redis://host:6379/0")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _cors_origins(cls, value: str) -> str:
        for origin in filter(None, (part.strip() for part in value.split(","))):
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin: list scheme://host[:port] "
                                 "entries, no path, no trailing slash, no '*'")
        return value

    def cors_origin_list(self) -> list[str]:
        """The origins ``SIGNPOST_CORS_ORIGINS`` lists (empty: CORS off)."""
        return [part.strip() for part in self.cors_origins.split(",") if part.strip()]

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

    @field_validator("words")
    @classmethod
    def _words(cls, value: str) -> str:
        return check_words_setting(value)

    def word_table(self) -> WordTable:
        """The estimative-words table (ICD 203's, or ``SIGNPOST_WORDS`` JSON)."""
        return parse_word_table(self.words)

    def fit_settings(self) -> FitSettings:
        """Sampler and gate settings for fits."""
        return FitSettings(
            dynamic=self.dynamic,
            sampler=SamplerSettings(draws=self.fit_draws, tune=self.fit_tune,
                                    chains=self.fit_chains, reweight=self.fit_reweight,
                                    method=self.fit_method, path_draws=self.fit_path_draws,
                                    quick_refits=self.fit_quick_refits,
                                    max_paths=self.fit_max_paths,
                                    time_budget=self.fit_time_budget),
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
