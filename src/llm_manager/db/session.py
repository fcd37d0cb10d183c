"""The async engine and session factory, with SQLite set up for concurrent use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
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

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error."""
        async with self.sessions.begin() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


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
