"""Conversations and their messages: one row per message, never a JSON blob of the whole chat."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from llm_manager.db.base import Base, Money, UTCDateTime, utcnow


class Conversation(Base):
    """Owned by a user (admin UI, CLI) or by an application (API), never both.

    Totals are kept on the row, updated in the transaction that stores each reply, so listing
    conversations never sums their messages.
    """

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_updated_at_id", "updated_at", "id"),
        Index("ix_conversations_application_id_external_user", "application_id", "external_user"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    external_user: Mapped[str | None] = mapped_column(String(100))
    """The application's own id for the person chatting, when it supplies one."""
    configuration_id: Mapped[int | None] = mapped_column(
        ForeignKey("llm_configurations.id", ondelete="SET NULL"), index=True
    )
    configuration_slug: Mapped[str] = mapped_column(String(64))
    """Kept so a conversation whose configuration was deleted still says what it used."""
    title: Mapped[str] = mapped_column(String(200), default="")
    system_prompt: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    context_strategy: Mapped[str] = mapped_column(String(16), default="truncate")
    """`truncate` drops the oldest turns that do not fit; `summarize` replaces them by a summary."""
    summary: Mapped[str | None] = mapped_column(Text)
    summary_through: Mapped[int] = mapped_column(default=0)
    """The summary stands for every unpinned message with `seq` up to this one."""
    message_count: Mapped[int] = mapped_column(default=0)
    """Also the last `seq` handed out: replies take theirs with one atomic increment."""
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    unpriced_replies: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column()
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    tool_call_id: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="complete")
    """`complete`, `interrupted` (stopped mid-reply, partial text kept and billed) or `error`."""
    pinned: Mapped[bool] = mapped_column(default=False)
    """Pinned messages are always sent, however long the conversation grows."""
    tokens: Mapped[int] = mapped_column(default=0)
    """This message's size in tokens: reported for replies, estimated otherwise (context fitting)."""
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost: Mapped[Decimal | None] = mapped_column(Money)
    usage_log_id: Mapped[str | None] = mapped_column(String(36), index=True)
    """No foreign key: usage rows are written off the hot path, possibly after this row."""
    model: Mapped[str | None] = mapped_column(String(200))
    latency_ms: Mapped[int | None] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(Text)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """For a reply: what the call was sent (message count, estimated tokens, what was dropped or summarised)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
