"""reviews: which indicators' sources were reviewed through which date (coverage)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_id", sa.String(length=100), nullable=True),
        sa.Column("through", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("analyst", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retraction_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_reviews_idempotency_key"),
    )
    op.create_table(
        "review_indicators",
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("indicator", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"]),
        sa.PrimaryKeyConstraint("review_id", "indicator"),
    )
    op.create_index("ix_review_indicators_indicator", "review_indicators", ["indicator"])


def downgrade() -> None:
    op.drop_index("ix_review_indicators_indicator", table_name="review_indicators")
    op.drop_table("review_indicators")
    op.drop_table("reviews")
