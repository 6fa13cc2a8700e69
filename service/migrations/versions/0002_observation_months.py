"""observation_months: per-indicator monthly sufficient statistics

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "observation_months",
        sa.Column("indicator", sa.String(length=100), nullable=False),
        sa.Column("month_index", sa.Integer(), nullable=False),
        sa.Column("n_obs", sa.Integer(), nullable=False),
        sa.Column("sum_w", sa.Float(), nullable=False),
        sa.Column("sum_wv", sa.Float(), nullable=False),
        sa.Column("sum_wvv", sa.Float(), nullable=False),
        sa.Column("max_w", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("indicator", "month_index"),
    )
    # backfill from the observations already stored
    op.execute(
        "INSERT INTO observation_months "
        "(indicator, month_index, n_obs, sum_w, sum_wv, sum_wvv, max_w) "
        "SELECT indicator, month_index, COUNT(*), SUM(weight), SUM(weight * value), "
        "SUM(weight * value * value), MAX(weight) FROM observations "
        "WHERE retracted_at IS NULL GROUP BY indicator, month_index"
    )


def downgrade() -> None:
    op.drop_table("observation_months")
