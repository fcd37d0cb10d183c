from __future__ import annotations

from decimal import Decimal

from llm_manager import LLMManager, TextDelta
from llm_manager.services.configuration_specs import ConfigurationCreate


async def test_demo_stream_is_accounted(llm: LLMManager) -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0})
    )
    stream = llm.stream("demo", "hello there")
    texts = [event.text async for event in stream if isinstance(event, TextDelta)]
    result = stream.result
    assert result is not None
    assert "".join(texts) == result.text
    assert result.usage.completion_tokens == len(texts)
    assert result.usage.prompt_tokens == 2
    assert not result.usage.estimated
    assert result.cost == Decimal(0)
    page = await llm.usage.list_page()
    assert [row.id for row in page.rows] == [result.log_id]
    row = page.rows[0]
    assert row.status == "ok"
    assert row.completion_tokens == len(texts)
    assert row.ttft_ms is not None
