"""Rate limits: per API key on writes and on fit requests, per client address on open reads.

Counted by the `limits` library (moving windows) in ``SIGNPOST_RATE_LIMIT_STORAGE``:
``memory://`` counts in each process, so N replicas let a key do N times its limit;
``redis://host:6379/0`` shares one count between every replica. The limits, each a `limits`
string such as ``120/minute`` (several joined by ``;``), an empty one meaning none:

- ``SIGNPOST_RATE_LIMIT_WRITES`` — a key's writes: observations and their retractions,
  reviews and theirs, alert rules, key revocations and rotations;
- ``SIGNPOST_RATE_LIMIT_FITS`` — a key's requests that cost a fit: ``POST /v1/fits`` and
  what-if;
- ``SIGNPOST_RATE_LIMIT_READS`` — reads from one client address while reads are open (with
  ``SIGNPOST_REQUIRE_READ_KEY`` they are a key's, and not limited); off by default, and when
  off a read does no work for it at all.

The check runs in the route's dependencies, after the key is verified and before the handler,
so a request over its limit stores nothing; it answers 429 ``rate_limited`` with
``Retry-After`` (whole seconds until the window lets one more through). Every request
counts, refused ones too. The window counts live under a namespace derived from the
database URL, so two deployments sharing one Redis do not share budgets.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from service.api.errors import RateLimited
from service.errors import NotReady
from service.settings import Settings, _redact

__all__ = ["LIMITS", "RateLimits", "check_read"]

LIMITS = {"writes": "SIGNPOST_RATE_LIMIT_WRITES", "fits": "SIGNPOST_RATE_LIMIT_FITS",
          "reads": "SIGNPOST_RATE_LIMIT_READS"}
"""Each limit and the setting that sets it."""

_WHOSE = {"writes": "this key's writes", "fits": "this key's fit requests",
          "reads": "reads from this address"}


class RateLimits:
    """The process's rate limits, built once from the settings (``app.state.rate_limits``)."""

    def __init__(self, settings: Settings):
        self.items: dict[str, Sequence[RateLimitItem]] = {
            kind: parse_many(value) for kind, value in (
                ("writes", settings.rate_limit_writes), ("fits", settings.rate_limit_fits),
                ("reads", settings.rate_limit_reads)) if value.strip()}
        self.storage_uri = settings.rate_limit_storage
        self.in_memory = self.storage_uri.startswith("memory")
        self.limiter = None
        if self.items:
            # a Redis that does not answer must fail a request quickly, not hang it
            options = {} if self.in_memory else {"socket_connect_timeout": 2,
                                                 "socket_timeout": 2}
            storage = storage_from_string(self.storage_uri, wrap_exceptions=True, **options)
            self.limiter = MovingWindowRateLimiter(storage)
        self.namespace = hashlib.sha256(_redact(settings.url).encode()).hexdigest()[:12]

    def active(self, kind: str) -> bool:
        """Whether ``kind`` has a limit."""
        return kind in self.items

    def check(self, kind: str, who: str | int) -> None:
        """Count one request of ``who`` against the ``kind`` limit.

        Raises
        ------
        RateLimited
            Over the limit; ``retry_after`` the whole seconds until one more fits.
        NotReady
            The limits' storage (Redis) is unreachable.

        """
        items = self.items.get(kind)
        if not items or self.limiter is None:
            return
        identity = (self.namespace, kind, str(who))
        try:
            for item in items:
                if not self.limiter.hit(item, *identity):
                    reset = self.limiter.get_window_stats(item, *identity).reset_time
                    raise RateLimited(
                        f"over the rate limit of {item} for {_WHOSE[kind]} ({LIMITS[kind]}); "
                        f"retry in {_seconds(reset)} s. Nothing was stored",
                        retry_after=_seconds(reset))
        except StorageError as exc:
            raise NotReady(f"the rate-limit storage at {_redact(self.storage_uri)} is "
                           f"unreachable ({exc.storage_error}); nothing was stored. Check "
                           "it, or set SIGNPOST_RATE_LIMIT_STORAGE=memory://",
                           code="rate_limit_storage_unreachable") from None


def _seconds(reset_time: float) -> int:
    """Whole seconds from now until ``reset_time`` (epoch seconds), at least 1."""
    return max(1, math.ceil(reset_time - time.time()))


async def check_read(request: Request) -> None:
    """Count an open read against its client address's limit (429 when over it).

    In memory the count is a few microseconds under a lock, done on the event loop; Redis is
    a round trip, done on a worker thread.
    """
    limits: RateLimits = request.app.state.rate_limits
    client = request.client.host if request.client else "unknown"
    if limits.in_memory:
        limits.check("reads", client)
    else:
        await run_in_threadpool(limits.check, "reads", client)
