"""`ConversationHandle`: a conversation as the library uses it.

    conv = await llm.conversation("demo", system="Answer briefly.")
    reply = await conv.send("Hello")
    async with conv.stream("And then?") as events:
        async for event in events:
            ...

History lives in the database, one row per message; every send is fitted to the model's window.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from llm_manager.services.calls import CallContext
from llm_manager.services.conversation_replies import ConversationReplies, Reply, ReplyStream
from llm_manager.services.conversations import (
    ConversationChanges,
    ConversationService,
    ConversationView,
    MessageView,
    Viewer,
)
from llm_manager.types import StreamEvent


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
        self.last_stream: ReplyStream | None = None
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

    async def stream(self, content: str, **overrides: Any) -> AsyncGenerator[StreamEvent, None]:
        """Stream the reply; stopping early keeps the partial reply as `interrupted` (and bills it)."""
        reply = await self._replies.stream(
            self.id, self._viewer, content, overrides=overrides, context=self._context
        )
        self.last_stream = reply
        async with reply:
            async for event in reply:
                yield event
        await self.refresh()

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
