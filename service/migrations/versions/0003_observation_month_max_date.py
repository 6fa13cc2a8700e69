"""observation_months.max_date: the latest live observation date of each cell

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable first: SQLite cannot add a NOT NULL column without a default
    with op.batch_alter_table("observation_months") as batch_op:
        batch_op.add_column(sa.Column("max_date", sa.Date(), nullable=True))
    # backfill from the live rows; a cell without any (never kept so) gets a date after every
    # as_of, so evidence re-reads that month's raw rows rather than trust it
    op.execute(
        "UPDATE observation_months SET max_date = COALESCE(("
        "SELECT MAX(o.date) FROM observations o "
        "WHERE o.indicator = observation_months.indicator "
        "AND o.month_index = observation_months.month_index "
        "AND o.retracted_at IS NULL), '9999-12-31')"
    )
    with op.batch_alter_table("observation_months") as batch_op:
        batch_op.alter_column("max_date", existing_type=sa.Date(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("observation_months") as batch_op:
        batch_op.drop_column("max_date")
