"""Budget leases: capacity a server process holds on a budget window, with an expiry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "budget_leases",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("budget_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("usd_nanos", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["budget_id"], ["budgets.id"], name=op.f("fk_budget_leases_budget_id_budgets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budget_leases")),
    )
    with op.batch_alter_table("budget_leases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_budget_leases_budget_id"), ["budget_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_budget_leases_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("budget_leases")
