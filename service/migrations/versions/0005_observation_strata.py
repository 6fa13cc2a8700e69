"""Strata: each observation's stratum, and observation_months kept per stratum

A kind with categories (``level``: the level's index) keeps one statistics cell per
(indicator, month, stratum); every other kind's observations are stratum 0, so today's cells
become stratum 0 unchanged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("indicator", "month_index", "n_obs", "sum_w", "sum_wv", "sum_wvv", "max_w",
            "max_date")


def _months_table(name: str, with_stratum: bool) -> None:
    columns = [
        sa.Column("indicator", sa.String(length=100), nullable=False),
        sa.Column("month_index", sa.Integer(), nullable=False),
    ]
    key = ["indicator", "month_index"]
    if with_stratum:
        columns.append(sa.Column("stratum", sa.Integer(), nullable=False, server_default="0"))
        key.append("stratum")
    columns += [
        sa.Column("n_obs", sa.Integer(), nullable=False),
        sa.Column("sum_w", sa.Float(), nullable=False),
        sa.Column("sum_wv", sa.Float(), nullable=False),
        sa.Column("sum_wvv", sa.Float(), nullable=False),
        sa.Column("max_w", sa.Float(), nullable=False),
        sa.Column("max_date", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint(*key, name="pk_observation_months_v5" if with_stratum
                                else "pk_observation_months_v4"),
    ]
    op.create_table(name, *columns)


def _swap(with_stratum: bool) -> None:
    """Rebuild observation_months with (or without) the stratum in its key (both dialects)."""
    _months_table("observation_months_new", with_stratum)
    names = ", ".join(_COLUMNS)
    op.execute(f"INSERT INTO observation_months_new ({names}) SELECT {names} "
               "FROM observation_months")
    op.drop_table("observation_months")
    op.rename_table("observation_months_new", "observation_months")


def upgrade() -> None:
    with op.batch_alter_table("observations") as batch_op:
        batch_op.add_column(sa.Column("stratum", sa.Integer(), nullable=False,
                                      server_default="0"))
    _swap(with_stratum=True)


def downgrade() -> None:
    # only for databases without categorical kinds: their cells are all stratum 0
    _swap(with_stratum=False)
    with op.batch_alter_table("observations") as batch_op:
        batch_op.drop_column("stratum")
