"""The audit log's vocabulary: who acted (`Actor`), the actions recorded, and the JSON view.

Every write that changes what Signpost stores or serves is recorded once, in the same
transaction as the write where the write has one (`service.repositories.audit.record`): who (an
API key's name and id, ``cli:<user>`` for the command line), when, what (``ACTIONS``, a
``target`` such as ``observation:42`` and a ``detail`` object) and from where (the client's
address, the ``X-Request-ID`` header if sent). The log is append-only: there is no code path
that updates or deletes an entry, and the database refuses both (migration 0008's triggers).
Secrets never enter it: a key is named by its id, prefix and name, an alert rule by its set.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import Any

from service.db import AlertRuleRow, AuditRow, aware

__all__ = ["ACTIONS", "Actor", "audit_dict", "rule_detail"]

ACTIONS = (
    "observation.create",
    "observation.retract",
    "review.create",
    "review.retract",
    "fit.request",
    "set.load",
    "key.create",
    "key.rotate",
    "key.revoke",
    "alert_rule.create",
    "alert_rule.delete",
    "set.resolve",
)
"""Every action the log records, ``<resource>.<verb>``."""


@dataclass(frozen=True)
class Actor:
    """Who is acting, and from where, as the audit log records it.

    ``name`` is an API key's name (its prefix when it has none), ``cli:<user>`` for the
    command line, or ``anonymous``; ``key_id`` the key's id (None off the API).
    """

    name: str
    key_id: int | None = None
    client: str | None = None
    request_id: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """The operator running a ``signpost`` command: ``cli:<login>`` on this host."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # a container's uid without a passwd entry
            user = "unknown"
        return cls(name=f"cli:{user}", client=socket.gethostname() or None)


def audit_dict(row: AuditRow) -> dict[str, Any]:
    """The API's (and ``signpost audit --json``'s) view of one entry."""
    return {
        "id": row.id,
        "at": aware(row.at).isoformat(),
        "actor": row.actor,
        "actor_key_id": row.actor_key_id,
        "action": row.action,
        "target": row.target,
        "detail": dict(row.detail or {}),
        "client": row.client,
        "request_id": row.request_id,
    }


def rule_detail(row: AlertRuleRow) -> dict[str, Any]:
    """What the log keeps of an alert rule: its set and condition (no URL, no secret).

    Its webhook URL may carry a token of its own, so it is left out with the secret.
    """
    return {"set_id": row.set_id, "kind": row.kind, "scenario": row.scenario,
            "above": row.above, "below": row.below, "min_move": row.min_move}
