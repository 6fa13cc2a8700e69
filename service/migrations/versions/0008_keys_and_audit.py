"""keys and audit: key expiry, revocation time, rotation and last use; the audit log

``api_keys`` gains ``expires_at``, ``revoked_at``, ``rotated_from`` (the key a rotated key
replaced) and ``last_used_at`` (written at most once a minute per key), all nullable: a key
made before this revision never expires. ``audit_log`` is append-only, and the database
enforces it: triggers refuse every UPDATE and DELETE of it (and TRUNCATE on PostgreSQL), so
not even a mistaken script can edit the record of who did what.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_REFUSED = "audit_log is append-only: its entries are never updated or deleted"

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
    for verb in ("UPDATE", "DELETE")
]

_POSTGRES_TRIGGERS = [
    # no '%' format in the message: the driver's paramstyle would have it escaped
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION USING MESSAGE = '{_REFUSED} (' || TG_OP || ' refused)'; END $$",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]


def upgrade() -> None:
    for column in ("expires_at", "revoked_at", "last_used_at"):
        op.add_column("api_keys", sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("rotated_from", sa.Integer(), nullable=True))
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_key_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("client", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor", "id"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "id"])
    op.create_index("ix_audit_log_target", "audit_log", ["target", "id"])
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRES_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    for index in ("ix_audit_log_target", "ix_audit_log_action", "ix_audit_log_actor",
                  "ix_audit_log_at"):
        op.drop_index(index, table_name="audit_log")
    op.drop_table("audit_log")
    with op.batch_alter_table("api_keys") as batch_op:
        for column in ("last_used_at", "rotated_from", "revoked_at", "expires_at"):
            batch_op.drop_column(column)
