"""Budgets, their per-period spend windows (reserved and spent), the leases held on them, and alerts."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base, Money, UTCDateTime, new_id, utcnow


class Budget(Base):
    """A limit on an application's spend, optionally narrowed to one configuration or one token."""

    __tablename__ = "budgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"), index=True)
    configuration_id: Mapped[int | None] = mapped_column(
        ForeignKey("llm_configurations.id", ondelete="CASCADE"), index=True
    )
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    period: Mapped[str] = mapped_column(String(8))
    """day, month or total (UTC calendar periods)."""
    limit_usd: Mapped[Decimal | None] = mapped_column(Money)
    limit_tokens: Mapped[int | None] = mapped_column(BigInteger)
    hard: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BudgetWindow(Base):
    """One budget's spend in one period. Reservations are added and settled with conditional updates."""

    __tablename__ = "budget_windows"

    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), primary_key=True)
    window_start: Mapped[date] = mapped_column(Date, primary_key=True)
    spent_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetLease(Base):
    """Capacity one server process holds on a window: part of the window's `reserved`, with an expiry.

    A live process extends `expires_at` while it holds the lease; once it has passed, any process
    may delete the row and take its amounts off the window's `reserved` (a crashed process's hold).
    """

    __tablename__ = "budget_leases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), index=True)
    window_start: Mapped[date] = mapped_column(Date)
    usd_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    holder: Mapped[str] = mapped_column(String(100))
    """`host:pid` of the process holding it, for an operator reading the table."""
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class BudgetEvent(Base):
    """An alert: a budget's window crossed 50, 80 or 100 % (recorded once per threshold)."""

    __tablename__ = "budget_events"
    __table_args__ = (UniqueConstraint("budget_id", "window_start", "threshold"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    budget_id: Mapped[int] = mapped_column(ForeignKey("budgets.id", ondelete="CASCADE"), index=True)
    window_start: Mapped[date] = mapped_column(Date)
    threshold: Mapped[int] = mapped_column()
    spent_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
