"""Statistics: the latency histogram rollup (`usage_latency_daily`), backfilled from the usage log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 12:00:00.000000
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUCKETS_PER_DOUBLING = 4
"""Frozen copy of `services/latency.py`'s bucket rule: a migration must not change with the code."""
_INSERT_BATCH = 5000
_PAGE = 10_000


def upgrade() -> None:
    table = op.create_table(
        "usage_latency_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "application_id",
            "configuration_id",
            "provider",
            "model",
            "bucket",
            name=op.f("pk_usage_latency_daily"),
        ),
    )
    _backfill(table)

    with op.batch_alter_table("usage_daily") as batch_op:  # 64-bit sums: see UsageDaily
        batch_op.alter_column("latency_ms_sum", existing_type=sa.Integer(), type_=sa.BigInteger())
        batch_op.alter_column("ttft_ms_sum", existing_type=sa.Integer(), type_=sa.BigInteger())


def downgrade() -> None:
    with op.batch_alter_table("usage_daily") as batch_op:
        batch_op.alter_column("latency_ms_sum", existing_type=sa.BigInteger(), type_=sa.Integer())
        batch_op.alter_column("ttft_ms_sum", existing_type=sa.BigInteger(), type_=sa.Integer())
    op.drop_table("usage_latency_daily")


def _backfill(table: sa.Table | None) -> None:
    """Count the calls already logged into the histogram, so percentiles cover the past too."""
    if table is None:
        return
    logs = sa.table(
        "usage_logs",
        sa.column("id", sa.String()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("application_id", sa.Integer()),
        sa.column("configuration_id", sa.Integer()),
        sa.column("provider", sa.String()),
        sa.column("model", sa.String()),
        sa.column("latency_ms", sa.Integer()),
    )
    counts: Counter[tuple[Any, ...]] = Counter()
    for row in _all_rows(logs):
        key = (
            _day(row.created_at),
            row.application_id or 0,
            row.configuration_id or 0,
            row.provider,
            row.model,
            _bucket(row.latency_ms),
        )
        counts[key] += 1
    names = ("day", "application_id", "configuration_id", "provider", "model", "bucket")
    rows = [dict(zip(names, key, strict=True)) | {"count": count} for key, count in counts.items()]
    for start in range(0, len(rows), _INSERT_BATCH):
        op.bulk_insert(table, rows[start : start + _INSERT_BATCH])


def _all_rows(logs: sa.TableClause) -> Iterator[sa.Row[Any]]:
    """Every row, a page at a time by id.

    Not a server-side cursor: on PostgreSQL one stays open until the migration's transaction
    ends, and a later migration in the same run could not ALTER the table.
    """
    bind = op.get_bind()
    last = ""
    while True:
        query = sa.select(*logs.columns).where(logs.c.id > last).order_by(logs.c.id).limit(_PAGE)
        page = bind.execute(query).all()
        yield from page
        if len(page) < _PAGE:
            return
        last = page[-1].id


def _day(value: datetime | str) -> date:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def _bucket(latency_ms: int | None) -> int:
    if not latency_ms or latency_ms < 1:
        return 0
    return math.floor(_BUCKETS_PER_DOUBLING * math.log2(latency_ms) + 1e-9) + 1
