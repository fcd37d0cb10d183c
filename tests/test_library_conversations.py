"""Conversations as the library offers them: `llm.conversation(...)`, `send`, `stream`, reopening by id."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest

from llm_manager import TextDelta
from llm_manager.errors import NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.conversations import ConversationOwner, Viewer
from llm_manager.services.usage import UsageFilter
from llm_manager.types import StreamEvent


async def _demo(llm: LLMManager, delay_ms: int = 0) -> None:
    await llm.configurations.create(
        ConfigurationCreate(
            slug="demo",
            provider="demo",
            model="demo-chat",
            options={"delay_ms": delay_ms},
            input_price=Decimal(1),
            output_price=Decimal(1),
        )
    )


async def test_send_stream_and_reopen_by_id(llm: LLMManager) -> None:
    await _demo(llm)
    conv = await llm.conversation("demo", system="Answer briefly.", max_tokens=30)

    reply = await conv.send("What is the capital of France?")
    events: list[StreamEvent] = [event async for event in conv.stream("And of Spain?")]

    assert reply.reply.status == "complete"
    assert "What is the capital of France?" in reply.result.text
    streamed = "".join(event.text for event in events if isinstance(event, TextDelta))
    assert conv.last_stream is not None
    exchange = conv.last_stream.exchange
    assert exchange is not None
    assert exchange.reply.content == streamed
    assert conv.last_stream.result is not None
    assert conv.last_stream.result.text == streamed
    assert conv.view.message_count == 4, "the handle's totals are refreshed after each reply"
    assert conv.view.title == "What is the capital of France?"
    assert conv.view.system_prompt == "Answer briefly."
    assert conv.view.params == {"max_tokens": 30}
    assert conv.view.cost > 0

    again = await llm.conversation(id=conv.id)
    assert [(m.seq, m.role, m.content) for m in await again.messages()] == [
        (m.seq, m.role, m.content) for m in await conv.messages()
    ]
    continued = await again.send("And of Italy?")
    assert (continued.message.seq, continued.reply.seq) == (5, 6)
    history = continued.reply.context
    assert history is not None
    assert history["sent_messages"] == 6, "system, two exchanges, the new message"
    assert (await conv.refresh()).message_count == 6


async def test_stopping_a_stream_keeps_the_partial_reply(llm: LLMManager) -> None:
    await _demo(llm, delay_ms=30)
    conv = await llm.conversation("demo")

    received: list[str] = []
    async with contextlib.aclosing(conv.stream("Tell me a long story")) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                received.append(event.text)
                if len(received) == 3:
                    break

    assert conv.last_stream is not None
    exchange = conv.last_stream.exchange
    assert exchange is not None
    assert (exchange.reply.status, exchange.reply.content) == ("interrupted", "".join(received))
    [row] = (await llm.usage.list_page(filters=UsageFilter(conversation_id=conv.id))).rows
    assert row.status == "cancelled"
    assert (await conv.refresh()).completion_tokens == row.completion_tokens


async def test_the_documented_async_with_stream_works(llm: LLMManager) -> None:
    await _demo(llm)
    conv = await llm.conversation("demo")

    async with conv.stream("Hello") as events:  # type: ignore[attr-defined]
        texts = [event.text async for event in events if isinstance(event, TextDelta)]

    assert texts


async def test_rename_and_export(llm: LLMManager) -> None:
    await _demo(llm)
    conv = await llm.conversation("demo", title="Draft")
    await conv.send("Hello there")

    await conv.rename("Greetings")

    assert conv.view.title == "Greetings"
    markdown = await conv.export_markdown()
    assert markdown.startswith("# Greetings\n")
    assert "## User\n\nHello there" in markdown
    exported = await conv.export_json()
    assert exported["conversation"]["title"] == "Greetings"
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]


async def test_acting_for_a_user(llm: LLMManager) -> None:
    await _demo(llm)
    ada = await llm.services.accounts.create_user("ada@example.com", "correct horse battery staple")
    bob = await llm.services.accounts.create_user("bob@example.com", "correct horse battery staple")
    conv = await llm.conversation(
        "demo", owner=ConversationOwner(user_id=ada.id), viewer=Viewer(user_id=ada.id)
    )
    await conv.send("mine")

    assert conv.view.user_id == ada.id
    with pytest.raises(NotFoundError):
        await llm.conversation(id=conv.id, viewer=Viewer(user_id=bob.id))
    assert (await llm.conversation(id=conv.id)).view.message_count == 2, "the library sees everything"


async def test_unknown_ids_and_configurations_are_not_found(llm: LLMManager) -> None:
    with pytest.raises(NotFoundError):
        await llm.conversation(id="no-such-conversation")
    with pytest.raises(NotFoundError):
        await llm.conversation("no-such-configuration")
