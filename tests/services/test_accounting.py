from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import func, select

from llm_manager import CallContext, LLMManager
from llm_manager.db.session import Database
from llm_manager.db.tables import UsageDaily, UsageLog
from llm_manager.services.accounting import UsageRecord, UsageWriter
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.settings import Settings


def _record(**extra: object) -> UsageRecord:
    values: dict[str, object] = {
        "operation": "chat",
        "configuration_id": None,
        "configuration_slug": "x",
        "requested_configuration": "x",
        "application_id": None,
        "provider": "demo",
        "model": "demo-chat",
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "cost": Decimal("0.000001234"),
        "latency_ms": 10,
        "ttft_ms": 4,
    }
    return UsageRecord(**(values | extra))  # type: ignore[arg-type]


async def _count(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(UsageLog)) or 0)


async def test_full_queue_applies_back_pressure_and_loses_nothing(llm: LLMManager) -> None:
    database = llm.services.database
    writer = UsageWriter(database, max_queue=2, batch_size=3, flush_interval=0.05)
    writer.start()
    await asyncio.gather(*(writer.put(_record()) for _ in range(50)))
    assert writer.depth <= 2
    await writer.close()
    assert await _count(database) == 50
    async with database.session() as session:
        rollup = (await session.scalars(select(UsageDaily))).one()
    assert (rollup.requests, rollup.prompt_tokens, rollup.completion_tokens) == (50, 150, 250)
    assert rollup.cost == Decimal("0.000001234") * 50, "money is summed exactly"
    assert (rollup.ttft_ms_sum, rollup.ttft_count) == (200, 50)


async def test_rows_referring_to_a_deleted_configuration_are_kept(llm: LLMManager) -> None:
    writer = UsageWriter(llm.services.database, flush_interval=0.01)
    writer.start()
    await writer.put(_record(configuration_id=999_999, application_id=888_888))
    await writer.put(_record())
    await asyncio.wait_for(writer.close(), 10)
    assert await _count(llm.services.database) == 2


async def test_close_flushes_every_queued_row(settings: Settings) -> None:
    async with LLMManager.open(settings.model_copy(update={"usage_flush_interval": 5.0})) as llm:
        await llm.configurations.create(
            ConfigurationCreate(slug="d", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )
        for _ in range(5):
            await llm.chat("d", "hello")
        database_url = settings.database_url
    database = Database(database_url)
    try:
        assert await _count(database) == 5
    finally:
        await database.dispose()


async def test_flush_does_not_wait_for_the_batch_window(settings: Settings) -> None:
    async with LLMManager.open(settings.model_copy(update={"usage_flush_interval": 30.0})) as llm:
        await llm.configurations.create(
            ConfigurationCreate(slug="d", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )
        await llm.chat("d", "hello")
        page = await asyncio.wait_for(llm.usage.list_page(), 5)
    assert len(page.rows) == 1


async def test_usage_pages_are_keyset_paginated_and_filtered(llm: LLMManager) -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug="d", provider="demo", model="demo-chat", options={"delay_ms": 0})
    )
    ids = [(await llm.chat("d", f"call {index}")).log_id for index in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page = await llm.usage.list_page(limit=3, cursor=cursor)
        seen += [row.id for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(ids))


async def test_over_long_identifiers_never_block_the_writer(llm: LLMManager) -> None:
    writer = UsageWriter(llm.services.database, flush_interval=0.01)
    writer.start()
    await writer.put(_record(user_id="u" * 150, conversation_id="c" * 80))
    await asyncio.wait_for(writer.close(), 10)
    assert await _count(llm.services.database) == 1


async def test_call_context_identifiers_are_clipped_to_the_columns(llm: LLMManager) -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug="d", provider="demo", model="demo-chat", options={"delay_ms": 0})
    )
    await asyncio.wait_for(
        llm.chat("d", "hi", context=CallContext(user_id="u" * 150, conversation_id="c" * 80)), 10
    )
    page = await asyncio.wait_for(llm.usage.list_page(), 10)
    assert len(page.rows) == 1
