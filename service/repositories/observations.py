"""Observations: validate, store (append-only, idempotent), list, count and retract them.

Every insert and retraction keeps the monthly sufficient statistics (``observation_months``)
in the same transaction; `service.repositories.evidence` aggregates them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import delete, func, select

from service.db import ObservationMonthRow, ObservationRow

__all__ = ["add_to_months", "month_index", "recount_month"]


def month_index(d: date) -> int:
    """``year·12 + month − 1``: months since year 0."""
    return d.year * 12 + d.month - 1


def add_to_months(session, *, rows: list[ObservationRow]) -> None:
    """Add rows to the monthly sufficient statistics (atomic upserts, same transaction)."""
    cells: dict[tuple[str, int], list[Any]] = {}
    for r in rows:
        cell = cells.setdefault((r.indicator, r.month_index),
                                [0, 0.0, 0.0, 0.0, 0.0, r.date])
        w, v = r.weight, r.value
        cell[0] += 1
        cell[1] += w
        cell[2] += w * v
        cell[3] += w * v * v
        cell[4] = max(cell[4], w)
        cell[5] = max(cell[5], r.date)
    if not cells:
        return
    table = ObservationMonthRow.__table__
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
        larger = func.greatest
    else:
        from sqlalchemy.dialects.sqlite import insert
        # SQLite's two-argument max() is the scalar maximum (of ISO date strings too)
        larger = func.max
    values = [{"indicator": i, "month_index": m, "n_obs": c[0], "sum_w": c[1],
               "sum_wv": c[2], "sum_wvv": c[3], "max_w": c[4], "max_date": c[5]}
              for (i, m), c in sorted(cells.items())]  # sorted: one lock order
    statement = insert(table)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.indicator, table.c.month_index],
        set_={"n_obs": table.c.n_obs + excluded.n_obs,
              "sum_w": table.c.sum_w + excluded.sum_w,
              "sum_wv": table.c.sum_wv + excluded.sum_wv,
              "sum_wvv": table.c.sum_wvv + excluded.sum_wvv,
              "max_w": larger(table.c.max_w, excluded.max_w),
              "max_date": larger(table.c.max_date, excluded.max_date)})
    for chunk in range(0, len(values), 500):
        session.execute(statement, values[chunk:chunk + 500])


def recount_month(session, *, indicator: str, month: int) -> None:
    """Recompute one month's statistics from the live rows (after a retraction)."""
    # lock the cell first (PostgreSQL), so a concurrent insert's delta lands after us
    session.execute(select(ObservationMonthRow).where(
        ObservationMonthRow.indicator == indicator,
        ObservationMonthRow.month_index == month).with_for_update())
    w, v = ObservationRow.weight, ObservationRow.value
    stats = session.execute(
        select(func.count(ObservationRow.id), func.sum(w), func.sum(w * v),
               func.sum(w * v * v), func.max(w), func.max(ObservationRow.date))
        .where(ObservationRow.indicator == indicator, ObservationRow.month_index == month,
               ObservationRow.retracted_at.is_(None))).one()
    session.execute(delete(ObservationMonthRow).where(
        ObservationMonthRow.indicator == indicator,
        ObservationMonthRow.month_index == month))
    if stats[0]:
        session.add(ObservationMonthRow(indicator=indicator, month_index=month,
                                        n_obs=stats[0], sum_w=stats[1], sum_wv=stats[2],
                                        sum_wvv=stats[3], max_w=stats[4],
                                        max_date=stats[5]))
