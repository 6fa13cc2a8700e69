"""The JSON views of stored rows (observations, fits), shared by the API and the CLI.

The repositories (`service.repositories`) return rows; these turn them into the bodies the
API serves and the CLI prints. The views of sets and posteriors are in `service.posterior`.
"""

from __future__ import annotations

from typing import Any

from forecast import FitRecord
from service.db import FitRow, ObservationRow, aware

__all__ = ["fit_dict", "observation_dict"]


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
        "sampler": _sampler(FitRecord.from_stored(row.summary)),
        "reason": row.reason,
    }


def _sampler(record: FitRecord | None) -> dict[str, Any] | None:
    """How a fit's posterior was drawn (None before it finished)."""
    if record is None or record.sampler is None:
        return None
    return record.sampler.to_dict()
