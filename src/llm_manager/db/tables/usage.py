"""One row per call, and the daily rollup written with it so statistics never scan the log."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base, Money, UTCDateTime, utcnow


class UsageLog(Base):
    __tablename__ = "usage_logs"
    __table_args__ = (
        Index("ix_usage_logs_created_at_id", "created_at", "id"),
        Index("ix_usage_logs_template_name_template_version", "template_name", "template_version"),
        Index("ix_usage_logs_conversation_id", "conversation_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    operation: Mapped[str] = mapped_column(String(16))
    configuration_id: Mapped[int | None] = mapped_column(
        ForeignKey("llm_configurations.id", ondelete="SET NULL"), index=True
    )
    configuration_slug: Mapped[str] = mapped_column(String(64))
    requested_configuration: Mapped[str] = mapped_column(String(64))
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), index=True
    )
    api_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="SET NULL"), index=True
    )
    provider: Mapped[str] = mapped_column(String(50), index=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cached_tokens: Mapped[int] = mapped_column(default=0)
    cache_write_tokens: Mapped[int] = mapped_column(default=0)
    reasoning_tokens: Mapped[int] = mapped_column(default=0)
    tokens_estimated: Mapped[bool] = mapped_column(default=False)
    cost: Mapped[Decimal | None] = mapped_column(Money)
    unpriced: Mapped[bool] = mapped_column(default=False)
    latency_ms: Mapped[int] = mapped_column(default=0)
    ttft_ms: Mapped[int | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), index=True)
    error_class: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(default=1)
    response_chars: Mapped[int] = mapped_column(default=0)
    user_id: Mapped[str | None] = mapped_column(String(100))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    template_name: Mapped[str | None] = mapped_column(String(100))
    template_version: Mapped[int | None] = mapped_column()


class UsageDaily(Base):
    """Per day × application × configuration × provider × model × user. 0 / '' stand for none."""

    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    application_id: Mapped[int] = mapped_column(primary_key=True, default=0)
    configuration_id: Mapped[int] = mapped_column(primary_key=True, default=0)
    provider: Mapped[str] = mapped_column(String(50), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(100), primary_key=True, default="")
    requests: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    cancelled: Mapped[int] = mapped_column(default=0)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cached_tokens: Mapped[int] = mapped_column(default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    unpriced_requests: Mapped[int] = mapped_column(default=0)
    estimated_requests: Mapped[int] = mapped_column(default=0)
    latency_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    """64-bit: a busy key's day of latencies overflows 32 bits (2.1e9 ms is ~1M calls of 2 s)."""
    ttft_ms_sum: Mapped[int] = mapped_column(BigInteger, default=0)
    ttft_count: Mapped[int] = mapped_column(default=0)


USAGE_DAILY_KEY: tuple[str, ...] = tuple(column.name for column in UsageDaily.__table__.primary_key)
"""The rollup's key columns, in the table's order: what one row is per."""
USAGE_DAILY_COUNTERS: tuple[str, ...] = tuple(
    column.name for column in UsageDaily.__table__.columns if not column.primary_key
)
"""Every other column: the sums a batch adds to its row, and what statistics add up."""
