"""Writing usage rows off the hot path without ever losing one.

Calls hand finished records to a bounded queue and go on; one background task writes them in
batches, each batch in one transaction together with its daily-rollup upserts. A full queue makes
`put` wait (back-pressure) rather than drop; a failed write is retried until it succeeds or the
writer is closed; `close()` drains everything first.

Other services may queue their own `DeferredWrite`s (a budget settlement): they run in the same
transaction as the usage rows queued with them, which saves a transaction per call and keeps a
call's usage row and its settlement together.
"""

from __future__ import annotations

import asyncio
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_manager.db.base import new_id, utcnow
from llm_manager.db.session import Database, core_insert, counting_upsert
from llm_manager.db.tables import USAGE_DAILY_COUNTERS, USAGE_DAILY_KEY, CustomMetric, UsageDaily, UsageLog
from llm_manager.services.latency import upsert_latency_rollups

logger = logging.getLogger(__name__)
_RETRY_DELAY = 0.5
USER_ID_LENGTH = 100
CONVERSATION_ID_LENGTH = 64


@dataclass(frozen=True, kw_only=True)
class UsageRecord:
    """One call, as accounted. Field names match `usage_logs` columns."""

    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
    operation: str
    configuration_id: int | None
    configuration_slug: str
    requested_configuration: str
    application_id: int | None
    api_token_id: int | None = None
    provider: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    tokens_estimated: bool = False
    cost: Decimal | None = None
    unpriced: bool = False
    latency_ms: int = 0
    ttft_ms: int | None = None
    status: str = "ok"
    error_class: str | None = None
    error_message: str | None = None
    finish_reason: str | None = None
    attempts: int = 1
    response_chars: int = 0
    user_id: str | None = None
    conversation_id: str | None = None
    template_name: str | None = None
    template_version: int | None = None


@dataclass(frozen=True, kw_only=True)
class MetricRecord:
    id: str = field(default_factory=new_id)
    name: str
    value: float | None
    data: dict[str, Any] | None
    usage_log_id: str | None
    application_id: int | None
    created_at: datetime = field(default_factory=utcnow)


_USAGE_COLUMNS = tuple(column.name for column in fields(UsageRecord))
_METRIC_COLUMNS = tuple(column.name for column in fields(MetricRecord))
_usage_values = operator.attrgetter(*_USAGE_COLUMNS)
_metric_values = operator.attrgetter(*_METRIC_COLUMNS)
_INSERT_SLICE = 20


class DeferredWrite(Protocol):
    """Work another service hands to the writer, done inside the writer's batch transaction.

    The writer passes every deferred write of one class in a batch to that class's `write_all`
    together, so they can be combined (forty settlements of one budget window: one UPDATE).
    They get the batch's Core connection: Core statements, built once where their shape is fixed.
    """

    @classmethod
    async def write_all(cls, connection: AsyncConnection, writes: Sequence[Any]) -> None: ...


Record = UsageRecord | MetricRecord | DeferredWrite


class UsageWriter:
    """The bounded, batching writer. Start it, `put` records, `flush` to read your writes, `close`."""

    def __init__(
        self,
        database: Database,
        *,
        max_queue: int = 10_000,
        batch_size: int = 200,
        flush_interval: float = 0.2,
    ) -> None:
        self._database = database
        self._queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._task: asyncio.Task[None] | None = None
        self.max_queue = max_queue
        self._flushing = asyncio.Event()
        self.written = 0

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def put(self, record: Record) -> None:
        """Queue a record; waits while the queue is full so nothing is ever dropped."""
        if self._task is None or self._task.done():
            await self._write_with_retry([record])
            return
        await self._queue.put(record)

    async def flush(self) -> None:
        """Wait until everything queued so far is in the database (and stop lingering for more)."""
        if self._task is not None and not self._task.done():
            self._flushing.set()
            try:
                await self._queue.join()
            finally:
                self._flushing.clear()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            try:
                await self._fill(batch)
                await self._write_with_retry(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _fill(self, batch: list[Record]) -> None:
        """Gather more records for up to `flush_interval`, unless someone is waiting on a flush."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._flush_interval
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0 or self._flushing.is_set():
                return
            getter = asyncio.ensure_future(self._queue.get())
            flushing = asyncio.ensure_future(self._flushing.wait())
            done, pending = await asyncio.wait(
                {getter, flushing}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in pending:
                waiter.cancel()
            if getter not in done:
                return
            batch.append(getter.result())

    async def _write_with_retry(self, batch: Sequence[Record]) -> None:
        """Retry transient failures (the database restarting) until written; rows the database
        refuses for what they contain are repaired one by one rather than blocking the queue."""
        attempt = 0
        while True:
            try:
                await write_batch(self._database, batch)
            except asyncio.CancelledError:
                raise
            except DBAPIError as error:
                if not _refused_for_content(error):
                    attempt += 1
                    logger.warning(
                        "usage write failed (attempt %d); retrying: %s", attempt, type(error).__name__
                    )
                    await asyncio.sleep(min(_RETRY_DELAY * attempt, 10))
                    continue
                await self._write_one_by_one(batch)
                return
            except Exception:
                attempt += 1
                logger.exception("usage write failed (attempt %d); retrying", attempt)
                await asyncio.sleep(min(_RETRY_DELAY * attempt, 10))
            else:
                self.written += len(batch)
                return

    async def _write_one_by_one(self, batch: Sequence[Record]) -> None:
        for record in batch:
            for candidate in (record, _detached(record)):
                try:
                    await write_batch(self._database, [candidate])
                except DBAPIError as error:
                    if not _refused_for_content(error):
                        raise
                    continue
                self.written += 1
                break
            else:
                logger.error("usage record refused by the database, kept in this log only: %r", record)


def _refused_for_content(error: DBAPIError) -> bool:
    """True when the database refused the rows themselves (SQLSTATE class 22 data, 23 integrity),
    as opposed to being unreachable; drivers differ in which exception class they raise."""
    if isinstance(error, IntegrityError | DataError):
        return True
    sqlstate = str(getattr(error.orig, "sqlstate", "") or getattr(error.orig, "pgcode", "") or "")
    return sqlstate[:2] in ("22", "23")


def _detached(record: Record) -> Record:
    """The record without references that may have vanished (a configuration deleted meanwhile)."""
    if not isinstance(record, UsageRecord | MetricRecord):
        return record
    if isinstance(record, UsageRecord):
        return replace(
            record,
            configuration_id=None,
            application_id=None,
            user_id=_clip(record.user_id, USER_ID_LENGTH),
            conversation_id=_clip(record.conversation_id, CONVERSATION_ID_LENGTH),
        )
    return replace(record, usage_log_id=None, application_id=None)


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


async def write_batch(database: Database, batch: Sequence[Record]) -> None:
    """Insert the batch's usage rows, upsert their rollups, insert metrics and run the deferred
    writes, in one transaction."""
    usage = [
        dict(zip(_USAGE_COLUMNS, _usage_values(record), strict=True))
        for record in batch
        if isinstance(record, UsageRecord)
    ]
    metrics = [
        dict(zip(_METRIC_COLUMNS, _metric_values(record), strict=True))
        for record in batch
        if isinstance(record, MetricRecord)
    ]
    deferred: dict[type[DeferredWrite], list[DeferredWrite]] = {}
    for record in batch:
        if not isinstance(record, UsageRecord | MetricRecord):
            deferred.setdefault(type(record), []).append(record)
    async with database.transaction() as connection:
        if usage:
            await _insert_in_slices(connection, core_insert(UsageLog), usage)
            await _upsert_rollups(connection, usage)
            await upsert_latency_rollups(connection, usage)
        if metrics:
            await connection.execute(core_insert(CustomMetric), metrics)
        for kind, writes in deferred.items():
            await kind.write_all(connection, writes)


async def _insert_in_slices(
    connection: AsyncConnection, statement: Insert, rows: Sequence[dict[str, Any]]
) -> None:
    """One INSERT per `_INSERT_SLICE` rows, in the same transaction.

    Preparing parameters is synchronous work on the event loop; a slice at a time lets the
    requests being served run between slices instead of waiting for a whole batch. With 50 rows
    a slice was the longest stretch of a batch (~0.6 ms on SQLite); 20 rows keep every stretch
    near 0.25 ms for about a tenth more of the batch's CPU.
    """
    for start in range(0, len(rows), _INSERT_SLICE):
        await connection.execute(statement, rows[start : start + _INSERT_SLICE])


async def _upsert_rollups(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    totals: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = (
            row["created_at"].date(),
            row["application_id"] or 0,
            row["configuration_id"] or 0,
            row["provider"],
            row["model"],
            row["user_id"] or "",
        )
        total = totals.get(key)
        if total is None:
            total = totals[key] = _empty_rollup(key)
        total["requests"] += 1
        total["errors"] += row["status"] == "error"
        total["cancelled"] += row["status"] == "cancelled"
        total["prompt_tokens"] += row["prompt_tokens"]
        total["completion_tokens"] += row["completion_tokens"]
        total["cached_tokens"] += row["cached_tokens"]
        total["cost"] += row["cost"] or Decimal(0)
        total["unpriced_requests"] += row["unpriced"]
        total["estimated_requests"] += row["tokens_estimated"]
        total["latency_ms_sum"] += row["latency_ms"]
        if row["ttft_ms"] is not None:
            total["ttft_ms_sum"] += row["ttft_ms"]
            total["ttft_count"] += 1
    upsert = counting_upsert(connection.dialect.name, UsageDaily, USAGE_DAILY_KEY, USAGE_DAILY_COUNTERS)
    await connection.execute(upsert, list(totals.values()))


def _empty_rollup(key: tuple[Any, ...]) -> dict[str, Any]:
    return (
        dict(zip(USAGE_DAILY_KEY, key, strict=True))
        | dict.fromkeys(USAGE_DAILY_COUNTERS, 0)
        | {"cost": Decimal(0)}
    )
