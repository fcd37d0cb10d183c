"""Budget windows: one budget's spend in one period, and the conditional statements that move it.

A window row carries `spent` and `reserved` (USD as integer nano-dollars, and tokens). Every
change is one UPDATE whose WHERE clause carries the limit, so the database — not any process —
decides whether a hold fits, and any number of processes together stay within it.
`budget_leases` decides *what* to hold and when; this module only says how.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

from sqlalchemy import BigInteger, Update, bindparam, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_manager.db.base import nanos_to_usd, table_of, usd_to_nanos
from llm_manager.db.session import insert_or_ignore
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

    async def write(self, connection: AsyncConnection) -> None:
        budget_id, start = self.hold.key
        result = await connection.execute(
            _settle_statement(),
            {
                "window_budget": budget_id,
                "start": start,
                "held_usd": self.reserved_nanos,
                "held_tokens": self.reserved_tokens,
                "cost_usd": self.spent_nanos,
                "cost_tokens": self.spent_tokens,
            },
        )
        row = result.first()
        if row is not None and (self.spent_tokens or self.spent_nanos):
            await _record_alerts(connection, self.hold, spent_nanos=int(row[0]), spent_tokens=int(row[1]))


async def ensure_windows(connection: AsyncConnection, holds: Sequence[Hold]) -> None:
    """Create missing windows first: the first statement writes, so SQLite takes its lock at once."""
    rows = [{"budget_id": hold.budget.id, "window_start": hold.start} for hold in holds]
    await connection.execute(insert_or_ignore(connection.dialect.name, BudgetWindow), rows)


async def try_reserve(connection: AsyncConnection, hold: Hold, amount: tuple[int, int], *, room: int) -> bool:
    """Add `amount` to the window's reserved if `room` times it still fits under a hard limit."""
    usd, tokens = amount
    budget = hold.budget
    usd_capped = budget.hard and budget.limit_usd is not None
    tokens_capped = budget.hard and budget.limit_tokens is not None
    budget_id, start = hold.key
    result = await connection.execute(
        _reserve_statement(usd_capped, tokens_capped),
        {
            "window_budget": budget_id,
            "start": start,
            "usd": usd,
            "tokens": tokens,
            "usd_room": usd * room,
            "tokens_room": tokens * room,
            "usd_limit": nanos(budget.limit_usd),
            "tokens_limit": budget.limit_tokens or 0,
        },
    )
    return result.first() is not None


async def fits_unreserved(connection: AsyncConnection, hold: Hold) -> bool:
    """Whether the hold would fit if nothing were reserved: then what refuses it is held by calls
    in flight or by leases, and frees up within seconds rather than at the period's reset."""
    window = table_of(BudgetWindow).c
    budget_id, start = hold.key
    row = (
        await connection.execute(
            select(_money("spent_usd"), window.spent_tokens).where(
                window.budget_id == budget_id, window.window_start == start
            )
        )
    ).first()
    spent_nanos, spent_tokens = (int(row[0]), int(row[1])) if row is not None else (0, 0)
    budget = hold.budget
    usd_fits = budget.limit_usd is None or spent_nanos + hold.usd_nanos <= nanos(budget.limit_usd)
    tokens_fits = budget.limit_tokens is None or spent_tokens + hold.tokens <= budget.limit_tokens
    return usd_fits and tokens_fits


async def unreserve(connection: AsyncConnection, key: WindowKey, usd: int, tokens: int) -> None:
    budget_id, start = key
    await connection.execute(
        _reserve_statement(False, False),
        {"window_budget": budget_id, "start": start, "usd": -usd, "tokens": -tokens},
    )


# The statements are built once (cached by shape) and run with parameters: building and cache-keying
# a statement per call was half of what a settlement or a lease top-up cost the event loop.


def _money(column: str) -> Any:
    """A Money column read as the integer nano-dollars it stores, so the arithmetic stays exact."""
    return type_coerce(table_of(BudgetWindow).c[column], BigInteger)


@functools.cache
def _reserve_statement(usd_capped: bool, tokens_capped: bool) -> Update:
    """Add to `reserved`; with a cap, only if `*_room` more still fits under `*_limit`."""
    window = table_of(BudgetWindow).c
    reserved_usd = _money("reserved_usd")
    conditions = [window.budget_id == bindparam("window_budget"), window.window_start == bindparam("start")]
    if usd_capped:
        conditions.append(
            _money("spent_usd") + reserved_usd + bindparam("usd_room", type_=BigInteger)
            <= bindparam("usd_limit", type_=BigInteger)
        )
    if tokens_capped:
        conditions.append(
            window.spent_tokens + window.reserved_tokens + bindparam("tokens_room", type_=BigInteger)
            <= bindparam("tokens_limit", type_=BigInteger)
        )
    return (
        update(table_of(BudgetWindow))
        .where(*conditions)
        .values(
            {
                reserved_usd: reserved_usd + bindparam("usd", type_=BigInteger),
                window.reserved_tokens: window.reserved_tokens + bindparam("tokens", type_=BigInteger),
            }
        )
        .returning(window.budget_id)
    )


@functools.cache
def _settle_statement() -> Update:
    """Move settled calls from `reserved` to `spent`; returns the new spend (for the alerts)."""
    window = table_of(BudgetWindow).c
    reserved_usd, spent_usd = _money("reserved_usd"), _money("spent_usd")
    return (
        update(table_of(BudgetWindow))
        .where(window.budget_id == bindparam("window_budget"), window.window_start == bindparam("start"))
        .values(
            {
                reserved_usd: reserved_usd - bindparam("held_usd", type_=BigInteger),
                window.reserved_tokens: window.reserved_tokens - bindparam("held_tokens", type_=BigInteger),
                spent_usd: spent_usd + bindparam("cost_usd", type_=BigInteger),
                window.spent_tokens: window.spent_tokens + bindparam("cost_tokens", type_=BigInteger),
            }
        )
        .returning(spent_usd, window.spent_tokens)
    )


async def _record_alerts(
    connection: AsyncConnection, hold: Hold, *, spent_nanos: int, spent_tokens: int
) -> None:
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
    await connection.execute(insert_or_ignore(connection.dialect.name, BudgetEvent), rows)
