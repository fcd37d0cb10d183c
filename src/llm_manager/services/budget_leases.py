"""The budget window ledger: what calls hold on budget windows, and what they finally cost.

A window row (one budget, one period) carries `spent` and `reserved`. Before a call, its ceiling
(the most it may cost) is held on every budget that applies; after it, the hold is replaced by the
real cost (`settle`) or given back (`release`).

Holding through the database on every call would cost a write transaction per call, the largest
part of what the gateway adds to a call. So a process *leases* capacity: one conditional UPDATE
reserves room for `LEASE_CALLS` calls like the one asking, and the next calls take from that lease
in memory. A lease that runs dry within `LEASE_GROW_WITHIN` seconds doubles its next top-up (up to
`LEASE_MAX_CALLS` calls), so a busy process tops up about once a second whatever its call rate.
The database still decides every lease with the conditional update that bounds all processes
together, so the guarantee is unchanged: spend plus what calls in flight hold stays within the
limit. Since a ceiling bounds a call's real cost from above (see `token_bounds`), so does spend.

A lease takes at most 1/`LEASE_SHARE` of a hard budget's remaining room; when even that does not
fit, the process reserves exactly the call's ceiling (a transaction per call, as without leases),
so a nearly spent budget is shared call by call. Unused capacity is given back after `LEASE_IDLE`
seconds without calls, when budgets change, before this process reads a budget, and on shutdown.

A call that does not fit, although the budget's *spend* leaves room for it, is held back by
ceilings of calls in flight or by other processes' leases. It waits up to `HELD_WAIT` seconds —
long enough for idle leases to come back — retrying, and is then refused as held back (a retry
in a moment may fit) rather than as spent (nothing fits until the period resets).

Each lease is also a row (`budget_leases`, written by `lease_rows`) holding its amount — free
capacity plus the ceilings of its calls not yet settled — and an expiry the holder keeps
extending. A crashed process's lease expires after `LEASE_TTL` seconds; the next process about to
refuse a call reclaims it (deletes the row and takes its amount off `reserved`). A settlement
whose lease row is gone books its cost but takes nothing off `reserved`: the reclaim already did.

Settlements ride on the usage writer's batch transaction: one UPDATE per lease and per window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from llm_manager.db.base import new_id, utcnow
from llm_manager.db.session import Database
from llm_manager.services.accounting import UsageWriter
from llm_manager.services.budget_windows import (
    BudgetRule,
    Hold,
    WindowChange,
    WindowKey,
    ensure_windows,
    fits_unreserved,
    nanos,
    try_reserve,
)
from llm_manager.services.lease_rows import (
    LeaseReturn,
    add_to_lease,
    delete_empty_leases,
    extend_lease,
    extend_leases,
    insert_lease,
    reclaim_expired,
    shrink_lease,
    write_returns,
)
from llm_manager.types import Usage

logger = logging.getLogger(__name__)

LEASE_CALLS = 50
"""A lease holds room for this many calls like the one that asked for it."""
LEASE_MAX_CALLS = 1600
"""The most calls one top-up may hold room for, however fast the process spends it."""
LEASE_GROW_WITHIN = 1.0
"""A lease topped up again within this many seconds doubles its next top-up."""
LEASE_SHARE = 20
"""A lease may take at most 1/LEASE_SHARE of what is left of a hard budget."""
LEASE_IDLE = 2.0
"""Seconds without a call after which a lease's free capacity goes back to the window."""
LEASE_TTL = 60.0
"""Seconds a lease row outlives its last extension; after that, any process may reclaim it."""
_SWEEP_EVERY = 1.0
HELD_WAIT = LEASE_IDLE + 2 * _SWEEP_EVERY
"""Seconds a call waits for room that calls in flight or other processes' idle leases hold."""
_HELD_POLL = 0.25
_EXTEND_EVERY = LEASE_TTL / 4
_TOP_UP_ATTEMPTS = 3


class _Lease:
    """This process's lease on one window: the in-memory half of a `budget_leases` row."""

    __slots__ = (
        "ahead_refused_at",
        "calls",
        "epoch",
        "free_nanos",
        "free_tokens",
        "id",
        "key",
        "last_used",
        "rule",
        "stored",
        "topped_up_at",
    )

    def __init__(self, key: WindowKey, rule: BudgetRule) -> None:
        self.key = key
        self.rule = rule
        self.id = new_id()
        self.stored = False
        """Whether the row exists (as far as this process knows)."""
        self.epoch = 0
        """Bumped whenever the free capacity is given back or lost, so late releases don't refill it."""
        self.free_nanos = 0
        self.free_tokens = 0
        self.last_used = 0.0
        self.calls = LEASE_CALLS
        """How many calls like the asking one the next top-up holds room for."""
        self.topped_up_at = -LEASE_GROW_WITHIN
        self.ahead_refused_at = -LEASE_GROW_WITHIN
        """When a top-up ahead of need last found no ample room (the budget is nearly spent)."""

    def grew(self, usd: int, tokens: int, now: float) -> None:
        """A top-up was granted; a lease that ran dry quickly asks for more next time."""
        self.stored = True
        self.free_nanos += usd
        self.free_tokens += tokens
        if now - self.topped_up_at < LEASE_GROW_WITHIN:
            self.calls = min(self.calls * 2, LEASE_MAX_CALLS)
        self.topped_up_at = now

    def fits(self, hold: Hold) -> bool:
        same_rule = hold.budget is self.rule or hold.budget == self.rule  # usually the cached object itself
        return self.free_nanos >= hold.usd_nanos and self.free_tokens >= hold.tokens and same_rule

    def running_low(self, hold: Hold) -> bool:
        """Less than a quarter of a top-up left: time to top up before calls have to wait for it."""
        return (
            self.free_nanos * 4 < hold.usd_nanos * self.calls
            or self.free_tokens * 4 < hold.tokens * self.calls
        )

    def take(self, hold: Hold, now: float) -> None:
        self.free_nanos -= hold.usd_nanos
        self.free_tokens -= hold.tokens
        self.last_used = now

    def drain(self) -> LeaseReturn | None:
        """Stop offering the free capacity; what must go back to the window, if anything."""
        self.epoch += 1
        self.calls = LEASE_CALLS
        if not (self.free_nanos or self.free_tokens):
            return None
        returned = LeaseReturn(
            lease_id=self.id, key=self.key, usd_nanos=self.free_nanos, tokens=self.free_tokens
        )
        self.free_nanos = self.free_tokens = 0
        return returned

    def lost(self) -> None:
        """The row was reclaimed by another process: what we held there is no longer ours."""
        self.id = new_id()
        self.stored = False
        self.epoch += 1
        self.free_nanos = self.free_tokens = 0


@dataclass(frozen=True, kw_only=True)
class _Taken:
    hold: Hold
    lease: _Lease
    lease_id: str
    epoch: int


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """A call that does not fit one of its budgets."""

    hold: Hold
    """The hold refused."""
    held_back: bool
    """True when the budget's spend leaves room for the call, but calls in flight or other
    processes' leases hold it: a retry in a moment may fit, long before the period resets."""


class _RefusedError(Exception):
    def __init__(self, hold: Hold) -> None:
        self.hold = hold


class BudgetLedger:
    """Holds, leases and settlements for the budget windows of one process."""

    def __init__(
        self,
        database: Database,
        *,
        writer: UsageWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database = database
        self._writer = writer
        self._clock = clock
        self._leases: dict[WindowKey, _Lease] = {}
        self._returns: list[LeaseReturn] = []
        self._windows: set[WindowKey] = set()
        """Windows known to exist, so a top-up needs no INSERT first (forgotten on any doubt)."""
        self._lock = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None
        self._topping_up: asyncio.Task[None] | None = None
        self._extended_at = 0.0
        self._holder = f"{socket.gethostname()}:{os.getpid()}"[:100]

    async def reserve(self, holds: Sequence[Hold]) -> Reservation | Refusal:
        """Hold every ceiling, from this process's leases when they have room; else why not.

        The fast path takes from the leases without awaiting anything, so concurrent calls in
        this process never see a half-taken reservation. A call refused only because calls in
        flight or other processes' leases hold the rest of a budget waits up to `HELD_WAIT`
        seconds for it: settlements and idle leases give it back within that time.
        """
        taken = self._take_all(holds)
        if taken is not None:
            self._top_up_early(taken)
            return Reservation(self, taken)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HELD_WAIT
        while True:
            async with self._lock:
                result = await self._reserve_slowly(holds)
            if isinstance(result, Reservation):
                return result
            async with self._database.transaction() as connection:
                held_back = await fits_unreserved(connection, result)
            if not held_back or loop.time() >= deadline:
                return Refusal(hold=result, held_back=held_back)
            await asyncio.sleep(_HELD_POLL)

    def _top_up_early(self, taken: Sequence[_Taken]) -> None:
        """Top leases up in the background while they still have room, so no call waits on the lock."""
        if self._topping_up is not None and not self._topping_up.done():
            return
        now = self._clock()
        low = [
            item.hold
            for item in taken
            if item.lease.running_low(item.hold) and now - item.lease.ahead_refused_at >= LEASE_GROW_WITHIN
        ]
        if low:
            self._topping_up = asyncio.create_task(self._top_up_ahead(low), name="budget-lease-top-up")

    async def _top_up_ahead(self, holds: Sequence[Hold]) -> None:
        async with self._lock:
            wanting = [hold for hold in holds if self._lease_for(hold).running_low(hold)]
            if not wanting:
                return
            try:
                refused = await self._top_up(wanting, ample_only=True)
            except Exception:  # the next call that does not fit tops up (and reports) itself
                logger.warning("topping up a budget lease ahead of time failed", exc_info=True)
                return
            if refused is not None:  # nearly spent: calls reserve one by one, no early top-ups for a while
                for hold in wanting:
                    self._leases[hold.key].ahead_refused_at = self._clock()

    async def _reserve_slowly(self, holds: Sequence[Hold]) -> Reservation | Hold:
        refused: Hold | None = None
        made_room = False
        for _ in range(_TOP_UP_ATTEMPTS):
            taken = self._take_all(holds)
            if taken is not None:
                return Reservation(self, taken)
            wanting = [hold for hold in holds if not self._lease_for(hold).fits(hold)]
            refused = await self._top_up(wanting)
            if refused is not None:
                if made_room:
                    return refused
                # Our settlements may still be queued (holding whole ceilings), another process
                # may have died holding a lease, or a window we believed in may be gone.
                await self._make_room()
                made_room = True
        return refused or holds[0]

    def forget(self) -> None:
        """Budgets changed: stop using every lease (their capacity goes back) and every known window."""
        self._windows.clear()
        for lease in self._leases.values():
            self._queue_return(lease.drain())

    async def give_back(self) -> None:
        """Return all free leased capacity now, so what is read next shows only what calls hold."""
        async with self._lock:
            self.forget()
            await self._write_returns()

    async def aclose(self) -> None:
        """Give everything back; call after the usage writer has written the last settlements."""
        if self._topping_up is not None:
            await asyncio.gather(self._topping_up, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        with contextlib.suppress(Exception):
            await self.give_back()
            await self._delete_empty_rows(idle_for=0.0)

    async def settle(self, taken: Sequence[_Taken], usage: Usage, cost: Decimal | None) -> None:
        settlement = _Settlement(
            holds=tuple((item.hold, item.lease_id) for item in taken),
            tokens=usage.prompt_tokens + usage.completion_tokens,
            cost_nanos=nanos(cost),
        )
        if self._writer is not None:
            await self._writer.put(settlement)
            return
        async with self._database.transaction() as connection:
            await settlement.write(connection)

    def release(self, taken: Sequence[_Taken]) -> None:
        """Give a failed call's ceilings back to its leases, in memory: the rows still hold them."""
        for item in taken:
            lease = item.lease
            if lease.id != item.lease_id:
                continue  # reclaimed meanwhile: nothing of it is held any more
            if lease.epoch == item.epoch:
                lease.free_nanos += item.hold.usd_nanos
                lease.free_tokens += item.hold.tokens
            else:  # the lease was drained since: its capacity is on the way back already
                self._queue_return(
                    LeaseReturn(
                        lease_id=lease.id,
                        key=lease.key,
                        usd_nanos=item.hold.usd_nanos,
                        tokens=item.hold.tokens,
                    )
                )

    def _take_all(self, holds: Sequence[Hold]) -> list[_Taken] | None:
        leases = [self._leases.get(hold.key) for hold in holds]
        if not all(lease is not None and lease.fits(hold) for lease, hold in zip(leases, holds, strict=True)):
            return None
        now = self._clock()
        taken = []
        for lease, hold in zip(leases, holds, strict=True):
            assert lease is not None
            lease.take(hold, now)
            taken.append(_Taken(hold=hold, lease=lease, lease_id=lease.id, epoch=lease.epoch))
        return taken

    def _lease_for(self, hold: Hold) -> _Lease:
        lease = self._leases.get(hold.key)
        if lease is None:
            lease = self._leases[hold.key] = _Lease(hold.key, hold.budget)
        elif lease.rule != hold.budget:
            self._queue_return(lease.drain())  # its capacity was leased under the old limits
            lease.rule = hold.budget
        return lease

    async def _top_up(self, wanting: Sequence[Hold], *, ample_only: bool = False) -> Hold | None:
        """Grow the leases of `wanting` in one transaction; the hold refused (all rolled back) or None.

        With `ample_only`, only a lease's worth is tried (a top-up ahead of need); a budget too
        close to its limit for that is left to the calls themselves, one by one.
        """
        grants: list[tuple[_Lease, int, int]] = []
        try:
            async with self._database.transaction() as connection:
                missing = [hold for hold in wanting if hold.key not in self._windows]
                if missing:
                    await ensure_windows(connection, missing)
                expires = utcnow() + timedelta(seconds=LEASE_TTL)
                for hold in wanting:
                    lease = self._leases[hold.key]
                    if lease.stored and not await extend_lease(connection, lease.id, expires):
                        lease.lost()
                    usd, tokens = await _grant(connection, hold, lease, ample_only=ample_only)
                    await _store(connection, lease, usd, tokens, expires, self._holder)
                    grants.append((lease, usd, tokens))
        except _RefusedError as refusal:
            return refusal.hold
        now = self._clock()
        for lease, usd, tokens in grants:
            lease.grew(usd, tokens, now)
        self._windows.update(hold.key for hold in wanting)
        self._extended_at = now
        self._ensure_sweeper()
        return None

    async def _make_room(self) -> None:
        if self._writer is not None:
            await self._writer.flush()
        await self._write_returns()
        await reclaim_expired(self._database)
        self._windows.clear()

    def _queue_return(self, returned: LeaseReturn | None) -> None:
        if returned is not None:
            self._returns.append(returned)
            self._ensure_sweeper()

    async def _write_returns(self) -> None:
        returns, self._returns = self._returns, []
        if not returns:
            return
        try:
            async with self._database.transaction() as connection:
                await write_returns(connection, returns)
        except BaseException:
            self._returns[:0] = returns  # written on the next sweep
            raise

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="budget-leases")

    async def _sweep(self) -> None:
        """While leases exist: return idle capacity, keep the rows alive, reclaim dead processes' rows."""
        while self._leases or self._returns:
            await asyncio.sleep(_SWEEP_EVERY)
            try:
                await self._sweep_once()
            except Exception:
                logger.warning("budget lease upkeep failed; retrying", exc_info=True)

    async def _sweep_once(self) -> None:
        now = self._clock()
        for lease in self._leases.values():
            if now - lease.last_used >= LEASE_IDLE:
                self._queue_return(lease.drain())
        async with self._lock:
            await self._write_returns()
        if now - self._extended_at >= _EXTEND_EVERY:
            self._extended_at = now
            await self._extend_all()
            await reclaim_expired(self._database)
        await self._delete_empty_rows()

    async def _extend_all(self) -> None:
        stored = {lease.id: lease for lease in self._leases.values() if lease.stored}
        if not stored:
            return
        expires = utcnow() + timedelta(seconds=LEASE_TTL)
        async with self._database.transaction() as connection:
            alive = await extend_leases(connection, list(stored), expires)
        for lease_id, lease in stored.items():
            if lease_id not in alive and lease.id == lease_id:  # not renewed by a top-up meanwhile
                lease.lost()

    async def _delete_empty_rows(self, *, idle_for: float | None = None) -> None:
        """Forget leases idle long enough whose rows hold nothing (no call of theirs is unsettled)."""
        now = self._clock()
        idle_for = LEASE_IDLE if idle_for is None else idle_for
        idle = [
            lease
            for lease in self._leases.values()
            if now - lease.last_used >= idle_for and not (lease.free_nanos or lease.free_tokens)
        ]
        if not idle:
            return
        async with self._lock, self._database.transaction() as connection:
            deleted = await delete_empty_leases(connection, [lease.id for lease in idle])
            for lease in idle:
                unused = not (lease.free_nanos or lease.free_tokens)
                if (
                    (lease.id in deleted or not lease.stored)
                    and unused
                    and self._leases.get(lease.key) is lease
                ):
                    del self._leases[lease.key]


class Reservation:
    """The holds of one call: `settle` books the real cost, `release` gives them back."""

    def __init__(self, ledger: BudgetLedger, taken: Sequence[_Taken]) -> None:
        self._ledger = ledger
        self._taken = tuple(taken)
        self._done = False

    async def settle(self, usage: Usage, cost: Decimal | None) -> None:
        if self._done:
            return
        self._done = True
        await self._ledger.settle(self._taken, usage, cost)

    async def release(self) -> None:
        if self._done:
            return
        self._done = True
        self._ledger.release(self._taken)


@dataclass(frozen=True, kw_only=True)
class _Settlement:
    """Replace a call's holds by what it really cost; a `DeferredWrite` of the usage writer."""

    holds: tuple[tuple[Hold, str], ...]
    """Each hold with the id of the lease it was taken from."""
    tokens: int
    cost_nanos: int

    async def write(self, connection: AsyncConnection) -> None:
        await self.write_all(connection, [self])

    @classmethod
    async def write_all(cls, connection: AsyncConnection, writes: Sequence[_Settlement]) -> None:
        """Settle many calls with one UPDATE per lease and one per budget window."""
        held: dict[str, list[int]] = {}
        for settlement in writes:
            for hold, lease_id in settlement.holds:
                amounts = held.setdefault(lease_id, [0, 0])
                amounts[0] += hold.usd_nanos
                amounts[1] += hold.tokens
        alive = set()
        for lease_id, (usd, tokens) in held.items():
            if await shrink_lease(connection, lease_id, usd, tokens):
                alive.add(lease_id)
        changes: dict[WindowKey, WindowChange] = {}
        for settlement in writes:
            for hold, lease_id in settlement.holds:
                change = changes.setdefault(hold.key, WindowChange(hold=hold))
                change.spent_nanos += settlement.cost_nanos
                change.spent_tokens += settlement.tokens
                if lease_id in alive:
                    change.reserved_nanos += hold.usd_nanos
                    change.reserved_tokens += hold.tokens
        for change in changes.values():
            await change.write(connection)


async def _grant(
    connection: AsyncConnection, hold: Hold, lease: _Lease, *, ample_only: bool
) -> tuple[int, int]:
    """Reserve a lease's worth on the window if the budget has ample room, else just what the call lacks."""
    lacking = (max(hold.usd_nanos - lease.free_nanos, 0), max(hold.tokens - lease.free_tokens, 0))
    ample = (
        max(hold.usd_nanos * lease.calls - lease.free_nanos, lacking[0]),
        max(hold.tokens * lease.calls - lease.free_tokens, lacking[1]),
    )
    if await try_reserve(connection, hold, ample, room=LEASE_SHARE):
        return ample
    if not ample_only and await try_reserve(connection, hold, lacking, room=1):
        return lacking
    raise _RefusedError(hold)


async def _store(
    connection: AsyncConnection, lease: _Lease, usd: int, tokens: int, expires: datetime, holder: str
) -> None:
    """Add a grant to the lease's row, or create the row with it."""
    if lease.stored:
        await add_to_lease(connection, lease.id, usd, tokens)
        return
    await insert_lease(
        connection, lease_id=lease.id, key=lease.key, usd=usd, tokens=tokens, expires=expires, holder=holder
    )
