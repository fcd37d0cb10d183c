"""Helpers the adapter tests share for consuming streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from llm_manager.types import CompletionBuilder, StreamEvent


async def drain(stream: AsyncIterator[StreamEvent], into: list[StreamEvent]) -> None:
    """Consume a stream, keeping what arrived before it failed."""
    async for event in stream:
        into.append(event)


def build(events: Iterable[StreamEvent]) -> CompletionBuilder:
    builder = CompletionBuilder()
    builder.add_all(events)
    return builder
