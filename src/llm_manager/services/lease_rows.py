"""The `budget_leases` rows: the statements that create, grow, shrink, extend and reclaim them.

A row holds what one process leased on one budget window — free capacity plus the ceilings of
its calls not yet settled — and an expiry its holder keeps extending. `budget_leases` decides
when to touch a row; this module only says how. Each UPDATE or DELETE returns the ids it found,
because a row that is gone was reclaimed by another process, whose reclaim already took its
amount off the window.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Update, bindparam, delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_manager.db.base import table_of, utcnow
from llm_manager.db.session import Database, core_insert
from llm_manager.db.tables import BudgetLease
from llm_manager.services.budget_windows import WindowKey, unreserve

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LeaseReturn:
    """Free capacity a process gives back from its lease to the window."""

    lease_id: str
    key: WindowKey
    usd_nanos: int
    tokens: int


async def insert_lease(
    connection: AsyncConnection,
    *,
    lease_id: str,
    key: WindowKey,
    usd: int,
    tokens: int,
    expires: datetime,
    holder: str,
) -> None:
    budget_id, start = key
    await connection.execute(
        core_insert(BudgetLease),
        {
            "id": lease_id,
            "budget_id": budget_id,
            "window_start": start,
            "usd_nanos": usd,
            "tokens": tokens,
            "holder": holder,
            "expires_at": expires,
        },
    )


async def extend_lease(connection: AsyncConnection, lease_id: str, expires: datetime) -> bool:
    """Push the row's expiry; False when it is gone (another process reclaimed it)."""
    result = await connection.execute(_extend_statement(), {"lease_id": lease_id, "expires": expires})
    return result.first() is not None


async def extend_leases(connection: AsyncConnection, lease_ids: Sequence[str], expires: datetime) -> set[str]:
    """Push the expiry of many rows; the ids still there."""
    lease = table_of(BudgetLease).c
    statement = (
        update(table_of(BudgetLease))
        .where(lease.id.in_(lease_ids))
        .values(expires_at=expires)
        .returning(lease.id)
    )
    return set((await connection.scalars(statement)).all())


async def add_to_lease(connection: AsyncConnection, lease_id: str, usd: int, tokens: int) -> bool:
    """Add to a row's amounts; False when the row is gone (reclaimed)."""
    result = await connection.execute(
        _add_statement(), {"lease_id": lease_id, "add_usd": usd, "add_tokens": tokens}
    )
    return result.first() is not None


async def shrink_lease(connection: AsyncConnection, lease_id: str, usd: int, tokens: int) -> bool:
    """Take settled ceilings or returned capacity off a row; False when the row is gone (reclaimed)."""
    return await add_to_lease(connection, lease_id, -usd, -tokens)


async def delete_empty_leases(connection: AsyncConnection, lease_ids: Sequence[str]) -> set[str]:
    """Delete the rows among these that hold nothing (no unsettled call); the ids deleted."""
    lease = table_of(BudgetLease).c
    statement = (
        delete(table_of(BudgetLease))
        .where(lease.id.in_(lease_ids), lease.usd_nanos <= 0, lease.tokens <= 0)
        .returning(lease.id)
    )
    return set((await connection.scalars(statement)).all())


async def write_returns(connection: AsyncConnection, returns: Sequence[LeaseReturn]) -> None:
    """Move returned capacity from the rows back to their windows (none from a reclaimed row)."""
    totals: dict[WindowKey, list[int]] = {}
    for returned in returns:
        if await shrink_lease(connection, returned.lease_id, returned.usd_nanos, returned.tokens):
            amounts = totals.setdefault(returned.key, [0, 0])
            amounts[0] += returned.usd_nanos
            amounts[1] += returned.tokens
    for key, (usd, tokens) in totals.items():
        await unreserve(connection, key, usd, tokens)


async def reclaim_expired(database: Database) -> None:
    """Delete leases whose holder stopped extending them, and take their amounts off `reserved`.

    Deleting with RETURNING makes each row's amount go back exactly once, even when several
    processes reclaim at the same moment.
    """
    async with database.transaction() as connection:
        rows = (
            await connection.execute(
                delete(BudgetLease)
                .where(BudgetLease.expires_at < utcnow())
                .returning(
                    BudgetLease.budget_id, BudgetLease.window_start, BudgetLease.usd_nanos, BudgetLease.tokens
                )
            )
        ).all()
        for budget_id, start, usd, tokens in rows:
            if usd or tokens:
                await unreserve(connection, (budget_id, start), usd, tokens)
    if rows:
        logger.info("reclaimed %d expired budget lease(s)", len(rows))


# Built once and run with parameters: building and cache-keying a statement per top-up or
# settlement was half of what each cost the event loop.


@functools.cache
def _extend_statement() -> Update:
    return _lease_update().values(expires_at=bindparam("expires"))


@functools.cache
def _add_statement() -> Update:
    lease = table_of(BudgetLease).c
    return _lease_update().values(
        usd_nanos=lease.usd_nanos + bindparam("add_usd"), tokens=lease.tokens + bindparam("add_tokens")
    )


def _lease_update() -> Update:
    """UPDATE one lease row by id, returning the id: no row back means another process reclaimed it."""
    lease = table_of(BudgetLease).c
    return update(table_of(BudgetLease)).where(lease.id == bindparam("lease_id")).returning(lease.id)
