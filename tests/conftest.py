"""Shared fixtures: a real database per test (SQLite file, or PostgreSQL when configured)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from llm_manager.db import tables  # noqa: F401
from llm_manager.db.base import Base
from llm_manager.manager import LLMManager
from llm_manager.settings import Settings
from llm_manager.testing.fake_upstream import FakeUpstream

POSTGRES_URL = os.environ.get("LLM_MANAGER_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("LLM_MANAGER_TEST_REDIS_URL")
_TEST_DATABASE_PREFIX = "llmm_test_"


def _plain_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_plain_dsn(url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _drop_leftovers(url: str) -> None:
    """Drop test databases left by runs whose process is gone (CI reuses this server)."""
    connection = await asyncpg.connect(_plain_dsn(url))
    try:
        names = [row[0] for row in await connection.fetch("SELECT datname FROM pg_database")]
        for name in names:
            if name.startswith(_TEST_DATABASE_PREFIX):
                pid = int(name.removeprefix(_TEST_DATABASE_PREFIX).split("_")[0])
                if not Path(f"/proc/{pid}").exists():
                    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    if not POSTGRES_URL:
        if os.environ.get("LLM_MANAGER_REQUIRE_POSTGRES"):
            pytest.fail("LLM_MANAGER_REQUIRE_POSTGRES is set but LLM_MANAGER_TEST_POSTGRES_URL is not")
        pytest.skip("PostgreSQL tests need LLM_MANAGER_TEST_POSTGRES_URL (.ci/run sets it)")
    name = f"{_TEST_DATABASE_PREFIX}{os.getpid()}_{os.urandom(3).hex()}"
    asyncio.run(_drop_leftovers(POSTGRES_URL))
    asyncio.run(_admin(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate(url: str) -> None:
    names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    connection = await asyncpg.connect(_plain_dsn(url))
    try:
        await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    asyncio.run(_truncate(url))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_keys=Fernet.generate_key().decode(),
        usage_flush_interval=0.01,
        max_retries=2,
        retry_max_wait=5,
        first_byte_timeout=5,
        idle_timeout=5,
        password_hash_memory_kib=1024,  # the suite hashes many passwords; production keeps 64 MiB
        password_hash_time_cost=1,
    )


@pytest.fixture
async def llm(settings: Settings) -> AsyncIterator[LLMManager]:
    async with LLMManager.open(settings) as manager:
        yield manager


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no migrations applied) of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    name = f"{make_url(base).database}_fresh"
    asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> str:
    """The test Redis; pair it with `redis_prefix` so each test's keys are its own."""
    if not REDIS_URL:
        if os.environ.get("LLM_MANAGER_REQUIRE_REDIS"):
            pytest.fail("LLM_MANAGER_REQUIRE_REDIS is set but LLM_MANAGER_TEST_REDIS_URL is not")
        pytest.skip("Redis tests need LLM_MANAGER_TEST_REDIS_URL (.ci/run sets it)")
    return REDIS_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"llmm-test:{os.getpid()}:{os.urandom(4).hex()}:"
    yield prefix
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
