"""Budget windows: one budget's spend in one period, and the conditional statements that move it.

A window row carries `spent` and `reserved` (USD as integer nano-dollars, and tokens). Every
change is one UPDATE whose WHERE clause carries the limit, so the database — not any process —
decides whether a hold fits, and any number of processes together stay within it.
`budget_leases` decides *what* to hold and when; this module only says how.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property

from sqlalchemy import BigInteger, ColumnElement, and_, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import nanos_to_usd, usd_to_nanos
from llm_manager.db.session import conflict_insert
from llm_manager.db.tables import Budget, BudgetEvent, BudgetWindow

THRESHOLDS = (50, 80, 100)
_EPOCH = date(1970, 1, 1)

WindowKey = tuple[int, date]
"""(budget id, window start)."""


@dataclass(frozen=True, kw_only=True)
class Ceiling:
    """What one call may cost at most: the amount a reservation holds."""

    tokens: int
    usd: Decimal | None
    """None when the configuration has no price (and no override)."""


@dataclass(frozen=True, kw_only=True)
class BudgetRule:
    """A budget's limits as the hot path needs them: a plain snapshot, safe to share between calls."""

    id: int
    application_id: int
    configuration_id: int | None
    token_id: int | None
    period: str
    limit_usd: Decimal | None
    limit_tokens: int | None
    hard: bool

    @classmethod
    def of(cls, budget: Budget) -> BudgetRule:
        return cls(
            id=budget.id,
            application_id=budget.application_id,
            configuration_id=budget.configuration_id,
            token_id=budget.token_id,
            period=budget.period,
            limit_usd=budget.limit_usd,
            limit_tokens=budget.limit_tokens,
            hard=budget.hard,
        )


@dataclass(frozen=True, kw_only=True)
class Hold:
    """One call's ceiling on one budget's current window."""

    budget: BudgetRule
    start: date
    ceiling: Ceiling

    @property
    def key(self) -> WindowKey:
        return self.budget.id, self.start

    @cached_property
    def usd_nanos(self) -> int:
        return nanos(self.ceiling.usd) if self.budget.limit_usd is not None and self.ceiling.usd else 0

    @cached_property
    def tokens(self) -> int:
        return self.ceiling.tokens if self.budget.limit_tokens is not None else 0


def window_start(period: str, now: datetime) -> date:
    today = now.astimezone(UTC).date()
    if period == "day":
        return today
    if period == "month":
        return today.replace(day=1)
    return _EPOCH


def resets_at(period: str, start: date) -> datetime | None:
    if period == "day":
        following = start + timedelta(days=1)
    elif period == "month":
        following = start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
    else:
        return None
    return datetime(following.year, following.month, following.day, tzinfo=UTC)


def nanos(amount: Decimal | None) -> int:
    return usd_to_nanos(amount) if amount else 0


@dataclass(kw_only=True)
class WindowChange:
    """The sum of several settlements on one budget window."""

    hold: Hold
    reserved_nanos: int = 0
    reserved_tokens: int = 0
    spent_nanos: int = 0
    spent_tokens: int = 0

    async def write(self, session: AsyncSession) -> None:
        spent_usd = type_coerce(BudgetWindow.spent_usd, BigInteger)
        reserved_usd = type_coerce(BudgetWindow.reserved_usd, BigInteger)
        result = await session.execute(
            update(BudgetWindow)
            .where(*_window(self.hold.key))
            .values(
                {
                    reserved_usd: reserved_usd - self.reserved_nanos,
                    BudgetWindow.reserved_tokens: BudgetWindow.reserved_tokens - self.reserved_tokens,
                    spent_usd: spent_usd + self.spent_nanos,
                    BudgetWindow.spent_tokens: BudgetWindow.spent_tokens + self.spent_tokens,
                }
            )
            .returning(spent_usd, BudgetWindow.spent_tokens)
        )
        row = result.first()
        if row is not None and (self.spent_tokens or self.spent_nanos):
            await _record_alerts(session, self.hold, spent_nanos=int(row[0]), spent_tokens=int(row[1]))


async def ensure_windows(session: AsyncSession, holds: Sequence[Hold]) -> None:
    """Create missing windows first: the first statement writes, so SQLite takes its lock at once."""
    rows = [{"budget_id": hold.budget.id, "window_start": hold.start} for hold in holds]
    await session.execute(conflict_insert(session, BudgetWindow).values(rows).on_conflict_do_nothing())


async def try_reserve(session: AsyncSession, hold: Hold, amount: tuple[int, int], *, room: int) -> bool:
    """Add `amount` to the window's reserved if `room` times it still fits under a hard limit."""
    usd, tokens = amount
    spent_usd = type_coerce(BudgetWindow.spent_usd, BigInteger)
    reserved_usd = type_coerce(BudgetWindow.reserved_usd, BigInteger)
    budget = hold.budget
    conditions: list[ColumnElement[bool]] = list(_window(hold.key))
    if budget.hard and budget.limit_usd is not None:
        conditions.append(spent_usd + reserved_usd + usd * room <= nanos(budget.limit_usd))
    if budget.hard and budget.limit_tokens is not None:
        conditions.append(
            BudgetWindow.spent_tokens + BudgetWindow.reserved_tokens + tokens * room <= budget.limit_tokens
        )
    result = await session.execute(
        update(BudgetWindow)
        .where(and_(*conditions))
        .values(
            {
                reserved_usd: reserved_usd + usd,
                BudgetWindow.reserved_tokens: BudgetWindow.reserved_tokens + tokens,
            }
        )
        .returning(BudgetWindow.budget_id)
    )
    return result.first() is not None


async def unreserve(session: AsyncSession, key: WindowKey, usd: int, tokens: int) -> None:
    reserved_usd = type_coerce(BudgetWindow.reserved_usd, BigInteger)
    await session.execute(
        update(BudgetWindow)
        .where(*_window(key))
        .values(
            {
                reserved_usd: reserved_usd - usd,
                BudgetWindow.reserved_tokens: BudgetWindow.reserved_tokens - tokens,
            }
        )
    )


async def _record_alerts(session: AsyncSession, hold: Hold, *, spent_nanos: int, spent_tokens: int) -> None:
    """One event per threshold crossed, recorded once per window (a unique key drops repeats)."""
    budget = hold.budget
    fractions = []
    if budget.limit_usd is not None:
        fractions.append(Decimal(spent_nanos) / nanos(budget.limit_usd))
    if budget.limit_tokens is not None:
        fractions.append(Decimal(spent_tokens) / budget.limit_tokens)
    reached = [threshold for threshold in THRESHOLDS if max(fractions) * 100 >= threshold]
    if not reached:
        return
    rows = [
        {
            "budget_id": budget.id,
            "window_start": hold.start,
            "threshold": threshold,
            "spent_usd": nanos_to_usd(spent_nanos),
            "spent_tokens": spent_tokens,
        }
        for threshold in reached
    ]
    await session.execute(conflict_insert(session, BudgetEvent).values(rows).on_conflict_do_nothing())


def _window(key: WindowKey) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    budget_id, start = key
    return BudgetWindow.budget_id == budget_id, BudgetWindow.window_start == start
