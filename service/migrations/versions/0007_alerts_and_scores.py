"""alerts and scores: alert rules, their webhook deliveries, and each set's resolution

``alert_rules`` are soft-deleted (``deleted_at``), so a delivery keeps its rule. A fit fires a
rule at most once: ``alert_deliveries`` is unique on (rule_id, fit_id), which also makes two
processes evaluating the same fit insert one row. ``resolutions`` keeps every resolution ever
recorded; the current one of a set is the row not superseded (a partial unique index).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_CURRENT = "superseded_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("scenario", sa.String(length=100), nullable=True),
        sa.Column("above", sa.Float(), nullable=True),
        sa.Column("below", sa.Float(), nullable=True),
        sa.Column("min_move", sa.Float(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("webhook_url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=500), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.JSON(), nullable=True),
        sa.Column("reference_fit_id", sa.String(length=36), nullable=True),
        sa.Column("last_fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["set_id"], ["scenario_sets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alert_rules_set_id", "alert_rules", ["set_id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("set_id", sa.String(length=100), nullable=False),
        sa.Column("fit_id", sa.String(length=36), nullable=False),
        sa.Column("scenario", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rules.id"]),
        sa.ForeignKeyConstraint(["fit_id"], ["fits.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "fit_id", name="uq_alert_deliveries_rule_fit"),
    )
    op.create_index("ix_alert_deliveries_status_next", "alert_deliveries",
                    ["status", "next_attempt_at"])
    op.create_table(
        "resolutions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_id", sa.String(length=100), nullable=False),
        sa.Column("scenario", sa.String(length=100), nullable=True),
        sa.Column("void", sa.Boolean(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, server_default=""),
        sa.Column("resolved_by", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["set_id"], ["scenario_sets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_resolutions_current_per_set", "resolutions", ["set_id"], unique=True,
                    sqlite_where=sa.text(_CURRENT), postgresql_where=sa.text(_CURRENT))


def downgrade() -> None:
    op.drop_index("ux_resolutions_current_per_set", table_name="resolutions")
    op.drop_table("resolutions")
    op.drop_index("ix_alert_deliveries_status_next", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_rules_set_id", table_name="alert_rules")
    op.drop_table("alert_rules")
