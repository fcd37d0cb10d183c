"""The relay's idle timeout (one timer per stream): an idle upstream ends the stream as an
error; a slow consumer does not count as upstream idleness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from llm_manager import LLMManager, TextDelta
from llm_manager.errors import UpstreamTimeoutError
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.settings import Settings


@pytest.fixture
async def quick(settings: Settings) -> AsyncIterator[LLMManager]:
    async with LLMManager.open(settings.model_copy(update={"idle_timeout": 0.2, "max_retries": 0})) as llm:
        yield llm


async def _demo(llm: LLMManager, delay_ms: int) -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug="demo", provider="demo", model="demo-chat", options={"delay_ms": delay_ms})
    )


async def test_an_idle_upstream_ends_the_stream_with_a_timeout(quick: LLMManager) -> None:
    await _demo(quick, delay_ms=600)
    stream = quick.stream("demo", "hello there")
    with pytest.raises(UpstreamTimeoutError, match="idle"):
        async for _ in stream:
            pass
    await quick.services.writer.flush()
    [row] = (await quick.usage.list_page()).rows
    assert row.status == "error"
    assert row.error_class == "UpstreamTimeoutError"


async def test_a_slow_consumer_is_not_an_idle_upstream(quick: LLMManager) -> None:
    await _demo(quick, delay_ms=0)
    texts = []
    async with quick.stream("demo", "hello there") as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                texts.append(event.text)
                await asyncio.sleep(0.3)  # longer than the idle timeout, while holding the event
    assert stream.result is not None
    assert stream.result.status == "ok"
    assert "".join(texts) == stream.result.text


async def test_cancelling_the_consumer_is_still_a_cancellation(quick: LLMManager) -> None:
    await _demo(quick, delay_ms=100)
    stream = quick.stream("demo", "hello there")

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await quick.services.writer.flush()
    [row] = (await quick.usage.list_page()).rows
    assert row.status == "cancelled"
