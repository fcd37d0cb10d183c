"""Migrations reach head on both databases, and two processes never migrate at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from sqlalchemy import inspect

from llm_manager.db import tables  # noqa: F401
from llm_manager.db.base import Base
from llm_manager.db.migrate import current_revision, head_revision, upgrade_to_head
from llm_manager.db.session import Database

_MIGRATE = textwrap.dedent(
    """
    import asyncio, sys, time
    from llm_manager.db.migrate import upgrade_to_head
    from llm_manager.db.session import Database

    async def main() -> None:
        database = Database(sys.argv[1])
        await asyncio.sleep(max(float(sys.argv[2]) - time.time(), 0))  # start together
        try:
            await upgrade_to_head(database)
        finally:
            await database.dispose()

    asyncio.run(main())
    """
)


async def test_upgrade_creates_every_table_and_is_idempotent(fresh_database_url: str) -> None:
    database_url = fresh_database_url
    database = Database(database_url)
    try:
        await upgrade_to_head(database)
        await upgrade_to_head(database)
        assert await current_revision(database) == head_revision()
        async with database.engine.connect() as connection:
            names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        assert set(Base.metadata.tables) <= names
    finally:
        await database.dispose()


def test_concurrent_processes_migrate_once(fresh_database_url: str) -> None:
    database_url = fresh_database_url
    start = time.time() + 3
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, database_url, str(start)], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = []
    for process in processes:
        _, errors = process.communicate(timeout=60)
        results.append((process.returncode, errors))
    assert all(code == 0 for code, _ in results), results


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: object) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/wal.db")
    try:
        async with database.engine.connect() as connection:
            journal = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
            foreign_keys = (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
        assert (journal, foreign_keys) == ("wal", 1)
    finally:
        await database.dispose()
