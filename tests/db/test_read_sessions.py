"""The request path's cached reads never queue behind a write transaction, and cannot write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from llm_manager.db.migrate import upgrade_to_head
from llm_manager.db.session import Database
from llm_manager.db.tables import Application


async def test_a_read_on_an_sqlite_file_does_not_wait_for_an_open_write_transaction(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    try:
        await upgrade_to_head(database)
        async with database.session() as writer:
            await writer.execute(insert(Application).values(name="uncommitted"))
            # The one writing connection is busy until this block ends; a read must not wait for it.
            async with asyncio.timeout(2):
                async with database.read_session() as reader:
                    count = await reader.scalar(select(func.count()).select_from(Application))
            assert count == 0, "a reader sees committed rows only"
        async with database.read_session() as reader:
            assert await reader.scalar(select(func.count()).select_from(Application)) == 1
    finally:
        await database.dispose()


async def test_a_read_session_on_an_sqlite_file_refuses_to_write(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    try:
        await upgrade_to_head(database)
        with pytest.raises(OperationalError, match="readonly"):
            async with database.read_session() as reader:
                await reader.execute(insert(Application).values(name="sneaky"))
    finally:
        await database.dispose()


async def test_read_sessions_see_what_was_committed(database_url: str) -> None:
    database = Database(database_url)
    try:
        await upgrade_to_head(database)
        async with database.session() as writer:
            await writer.execute(insert(Application).values(name="committed"))
        async with database.read_session() as reader:
            names = (await reader.scalars(select(Application.name))).all()
        assert "committed" in names
    finally:
        await database.dispose()
