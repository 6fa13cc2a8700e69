"""One queued live fit per set: a partial unique index on fits(set_id)

Refits follow the evidence (decision 014): concurrent writes each ask for a refit of the sets
they touch, and "is one queued already? if not, queue one" is two statements. The index makes
the second writer's INSERT fail, and `service.repositories.fits.queue_fit` then hands back the
fit already queued. Duplicates a database may already hold are closed first (the newest
queued fit of each set stays; it reads the newest evidence anyway).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WHERE = "status = 'queued' AND kind = 'live'"


def upgrade() -> None:
    fits = sa.table("fits", sa.column("id", sa.String), sa.column("set_id", sa.String),
                    sa.column("status", sa.String), sa.column("kind", sa.String),
                    sa.column("created_at", sa.DateTime), sa.column("reason", sa.Text))
    connection = op.get_bind()
    queued = connection.execute(
        sa.select(fits.c.id, fits.c.set_id)
        .where(fits.c.status == "queued", fits.c.kind == "live")
        .order_by(fits.c.set_id, fits.c.created_at.desc())).all()
    seen: set[str] = set()
    for fit_id, set_id in queued:
        if set_id in seen:
            connection.execute(sa.update(fits).where(fits.c.id == fit_id).values(
                status="failed", reason="superseded by a later queued fit of the same set"))
        seen.add(set_id)
    op.create_index("ux_fits_one_queued_per_set", "fits", ["set_id"], unique=True,
                    sqlite_where=sa.text(_WHERE), postgresql_where=sa.text(_WHERE))


def downgrade() -> None:
    op.drop_index("ux_fits_one_queued_per_set", table_name="fits")
