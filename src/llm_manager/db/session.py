"""The async engine and session factory, with SQLite set up for concurrent use."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Insert, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=NORMAL",
)


class Database:
    """Owns one engine and its session factory; created by whoever owns the process's lifetime."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: AsyncEngine = _create_engine(url, echo=echo)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader: AsyncEngine | None = _create_reader(url, echo=echo)
        self._read_sessions = (
            self.sessions
            if self._reader is None
            else async_sessionmaker(self._reader, expire_on_commit=False)
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error."""
        async with self.sessions.begin() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a transaction: committed on success, rolled back on any error.

        For the background writers' statements (usage rows, budget holds and settlements), which
        run on the event loop that serves the calls. Without a session on the way there is no
        identity map, unit of work or ORM statement compilation to go through: a statement costs
        about half the CPU it does through `session()`.
        """
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A session for the reads behind the request path's caches (tokens, configurations, budgets).

        On an SQLite file these use read-only connections of their own: in WAL mode a reader never
        waits for the writer, so the first call of a configuration after a burst is not queued
        behind the usage writer's backlog of transactions on the one writing connection (it was,
        for hundreds of milliseconds). Elsewhere it is an ordinary session from the one pool.
        """
        async with self._read_sessions.begin() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._reader is not None:
            await self._reader.dispose()


def _create_engine(url: str, *, echo: bool) -> AsyncEngine:
    if not url.startswith("sqlite"):
        return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
    options: dict[str, Any] = {"echo": echo}
    if ":memory:" in url or url.endswith("://"):
        options |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        # One connection: SQLite has one writer anyway, and transactions from several pooled
        # connections queue on its file lock by sleeping in the busy handler (tens of ms each),
        # whereas one connection hands over in order as soon as a transaction ends.
        options |= {"pool_size": 1, "max_overflow": 0}
    engine = create_async_engine(url, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _create_reader(url: str, *, echo: bool) -> AsyncEngine | None:
    """Read-only connections for an SQLite file; None where the main pool serves reads as well."""
    if not url.startswith("sqlite") or ":memory:" in url or url.endswith("://"):
        return None
    engine = create_async_engine(url, echo=echo, pool_size=2, max_overflow=0)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(engine.sync_engine, "connect", _read_only)
    return engine


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def conflict_insert(session: AsyncSession, table: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say what to do on a conflict (`on_conflict_do_nothing` / `_do_update`).

    Both engines spell it the same way, but through their own dialect's `insert`.
    """
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


@functools.cache
def core_insert(model: type[Any]) -> Insert:
    """A Core INSERT into a mapped class's table, built once: a Core INSERT skips the ORM's per-row
    bulk bookkeeping, and reusing the statement skips building and cache-keying it per write."""
    return insert(model.__table__)


@functools.cache
def insert_or_ignore(dialect: str, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """INSERT … ON CONFLICT DO NOTHING into a mapped class's table, for `dialect`, built once and
    executed with a list of rows (a row whose key exists is skipped)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        model.__table__
    ).on_conflict_do_nothing()


@functools.cache
def counting_upsert(
    dialect: str, model: type[Any], key: Sequence[str], counters: Sequence[str]
) -> postgresql.Insert | sqlite.Insert:
    """INSERT … ON CONFLICT (key) DO UPDATE SET each counter = itself + the new row's, for `dialect`.

    Built once per dialect and table (arguments must be hashable: pass tuples) and executed with
    a list of rows. It is built on the Core table, not the mapped class: executed with many rows,
    an ORM statement takes the ORM's bulk path and its per-row bookkeeping. Both costs ran on
    the event loop that serves the calls, in stretches of milliseconds.
    """
    table = model.__table__
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: table.c[name] + statement.excluded[name] for name in counters},
    )
