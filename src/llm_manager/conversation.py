"""`ConversationHandle`: a conversation as the library uses it.

    conv = await llm.conversation("demo", system="Answer briefly.")
    reply = await conv.send("Hello")
    async with conv.stream("And then?") as reply:
        async for event in reply:
            ...                 # leaving early stops the reply; the partial is kept, `interrupted`
    print(reply.exchange.reply.content)

History lives in the database, one row per message; every send is fitted to the model's window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Self

from llm_manager.services.calls import CallContext
from llm_manager.services.conversation_replies import ConversationReplies, Exchange, Reply, ReplyStream
from llm_manager.services.conversations import (
    ConversationChanges,
    ConversationService,
    ConversationView,
    MessageView,
    Viewer,
)
from llm_manager.types import ChatResult, StreamEvent


class ConversationStream:
    """A reply being streamed: an async iterator of events and an async context manager.

    The reply is prepared on the first `anext`; once it has ended (or was closed), `exchange`
    holds the stored message and reply and `result` the call's result.
    """

    def __init__(
        self, start: Callable[[], Awaitable[ReplyStream]], ended: Callable[[], Awaitable[object]]
    ) -> None:
        self._start = start
        self._ended = ended
        self._reply: ReplyStream | None = None
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._closed:
            raise StopAsyncIteration
        if self._reply is None:
            self._reply = await self._start()
        try:
            return await anext(self._reply)
        except StopAsyncIteration:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reply is not None:
            await self._reply.aclose()
            await self._ended()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def exchange(self) -> Exchange | None:
        return self._reply.exchange if self._reply is not None else None

    @property
    def result(self) -> ChatResult | None:
        return self._reply.result if self._reply is not None else None


class ConversationHandle:
    def __init__(
        self,
        view: ConversationView,
        conversations: ConversationService,
        replies: ConversationReplies,
        viewer: Viewer,
        context: CallContext | None = None,
    ) -> None:
        self.view = view
        self._conversations = conversations
        self._replies = replies
        self._viewer = viewer
        self._context = context
        self.last_stream: ConversationStream | None = None
        """The latest `stream()`'s reply: its `result` and stored `exchange` once it has ended."""

    @property
    def id(self) -> str:
        return self.view.id

    async def send(self, content: str, **overrides: Any) -> Reply:
        """Send a message and wait for the whole reply (both are stored)."""
        reply = await self._replies.send(
            self.id, self._viewer, content, overrides=overrides, context=self._context
        )
        await self.refresh()
        return reply

    def stream(self, content: str, **overrides: Any) -> ConversationStream:
        """Stream the reply: iterate it, ideally inside `async with`, which stops it on the way out
        (the partial reply is then kept as `interrupted`, and billed)."""

        async def start() -> ReplyStream:
            return await self._replies.stream(
                self.id, self._viewer, content, overrides=overrides, context=self._context
            )

        stream = ConversationStream(start, self.refresh)
        self.last_stream = stream
        return stream

    async def messages(self, *, after: int = 0, limit: int = 100) -> list[MessageView]:
        page = await self._conversations.messages(self.id, self._viewer, after=after, limit=limit)
        return page.items

    async def rename(self, title: str) -> None:
        self.view = await self._conversations.rename(self.id, self._viewer, title)

    async def update(self, changes: ConversationChanges) -> None:
        self.view = await self._conversations.update(self.id, self._viewer, changes)

    async def export_markdown(self) -> str:
        return await self._conversations.export_markdown(self.id, self._viewer)

    async def export_json(self) -> dict[str, Any]:
        return await self._conversations.export_json(self.id, self._viewer)

    async def refresh(self) -> ConversationView:
        """Re-read the title and totals (tokens, cost) after replies."""
        self.view = await self._conversations.get(self.id, self._viewer)
        return self.view
