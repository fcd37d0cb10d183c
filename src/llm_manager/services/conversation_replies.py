"""Sending a message in a conversation: fit the history to the window, call, store the exchange.

1. **prepare**: the conversation's sizes (not its text) decide which turns fit the model's window
   (`context_window.py`); with the `summarize` strategy the turns that no longer fit are replaced
   by a summary made with the same configuration; only then is the text of the kept turns read;
2. **call** through the ordinary pipeline (budgets, rate limits, accounting all apply);
3. **store** the user message and the reply together, in one transaction that also adds to the
   conversation's totals — whatever happened: a reply stopped mid-way is kept as `interrupted`
   (and was billed as `cancelled`), a failed one as `error`. A call refused before any provider
   was asked (a budget, a rate limit) stores nothing, so a refused message can simply be re-sent.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import anyio
from sqlalchemy import or_, select, update

from llm_manager.db.base import new_id
from llm_manager.db.session import Database
from llm_manager.db.tables import Conversation, ConversationMessage
from llm_manager.errors import InvalidInputError, ProviderError
from llm_manager.services.calls import CallContext, CallOutcome, ChatCall
from llm_manager.services.chat import ChatService, ChatStream
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.configurations import ConfigurationService, ResolvedConfiguration
from llm_manager.services.context_window import (
    DEFAULT_CONTEXT_LENGTH,
    ContextPlan,
    ContextWindowError,
    HistoryItem,
    history_budget,
    message_tokens,
    plan_context,
    reply_reserve,
)
from llm_manager.services.conversations import (
    MessageView,
    Viewer,
    add_totals,
    auto_title,
    changeable,
    message_view,
)
from llm_manager.services.models import ModelDiscovery
from llm_manager.services.pricing import Pricing
from llm_manager.types import ChatResult, GenerationParams, Message, Role, StreamEvent, ToolCall

MAX_MESSAGE_CHARS = 200_000
SUMMARY_INSTRUCTIONS = (
    "You condense conversations. Summarise the conversation below for the assistant who will "
    "continue it: keep every fact, name, number, decision, open question and instruction the user "
    "gave; drop pleasantries. Write plain prose, at most a few short paragraphs."
)
SUMMARY_PREFIX = "Summary of the earlier part of this conversation:\n"
_SUMMARY_MAX_TOKENS = 1024
_PENDING_SEQ = 2**31 - 1
"""Stands for the message being sent while planning: it has no `seq` until it is stored."""
_STATUS = {"ok": "complete", "cancelled": "interrupted", "error": "error"}


@dataclass(frozen=True, kw_only=True)
class Exchange:
    """A stored message and the reply to it."""

    message: MessageView
    reply: MessageView


@dataclass(frozen=True, kw_only=True)
class Reply:
    """What a non-streamed send returns: the stored exchange and the call's result."""

    conversation_id: str
    message: MessageView
    reply: MessageView
    result: ChatResult


@dataclass(kw_only=True)
class _Prepared:
    conversation_id: str
    content: str
    call: ChatCall
    context: dict[str, Any]
    stored: Exchange | None = field(default=None)


class ReplyStream(ChatStream):
    """A streamed reply: the events of its call; once it has ended, `exchange` holds what was stored."""

    def __init__(
        self,
        events: AsyncGenerator[StreamEvent, None],
        inner: ChatStream,
        prepared: _Prepared,
    ) -> None:
        super().__init__(events, inner.outcome)
        self._prepared = prepared

    @property
    def conversation_id(self) -> str:
        return self._prepared.conversation_id

    @property
    def exchange(self) -> Exchange | None:
        return self._prepared.stored


class ConversationReplies:
    def __init__(
        self,
        database: Database,
        chat: ChatService,
        configurations: ConfigurationService,
        models: ModelDiscovery,
        pricing: Pricing,
    ) -> None:
        self._database = database
        self._chat = chat
        self._configurations = configurations
        self._models = models
        self._pricing = pricing

    async def send(
        self,
        conversation_id: str,
        viewer: Viewer,
        content: str,
        *,
        overrides: dict[str, Any] | None = None,
        context: CallContext | None = None,
    ) -> Reply:
        """One whole reply through the plain endpoint; the exchange is stored however it ends."""
        prepared = await self._prepare(conversation_id, viewer, content, overrides, context)
        outcome = CallOutcome(call=prepared.call)
        try:
            result = await self._chat.chat(prepared.call, outcome=outcome)
        except BaseException as error:
            if outcome.result is not None:
                with anyio.CancelScope(shield=True):
                    await self._store(prepared, outcome.result, error)
            raise
        with anyio.CancelScope(shield=True):  # billed by now: a caller gone this instant must not lose it
            exchange = await self._store(prepared, result, None)
        return Reply(
            conversation_id=conversation_id, message=exchange.message, reply=exchange.reply, result=result
        )

    async def stream(
        self,
        conversation_id: str,
        viewer: Viewer,
        content: str,
        *,
        overrides: dict[str, Any] | None = None,
        context: CallContext | None = None,
    ) -> ReplyStream:
        """A streamed reply. Preparing it (ownership, context window) fails here; a guard's refusal
        (budget, rate limit) comes with the first event — servers await `first()` before answering."""
        prepared = await self._prepare(conversation_id, viewer, content, overrides, context)
        inner = self._chat.stream(prepared.call)
        return ReplyStream(self._relay_and_store(inner, prepared), inner, prepared)

    async def _relay_and_store(
        self, inner: ChatStream, prepared: _Prepared
    ) -> AsyncGenerator[StreamEvent, None]:
        error: BaseException | None = None
        try:
            async with inner:
                async for event in inner:
                    yield event
        except BaseException as caught:
            error = caught
            raise
        finally:
            # Shielded: a client that hung up cancels every await here, and the reply must be kept.
            if inner.result is not None:
                with anyio.CancelScope(shield=True):
                    await self._store(prepared, inner.result, error)

    async def _prepare(
        self,
        conversation_id: str,
        viewer: Viewer,
        content: str,
        overrides: dict[str, Any] | None,
        context: CallContext | None,
    ) -> _Prepared:
        content = _content(content)
        async with self._database.session() as session:
            row = await changeable(session, conversation_id, viewer)
            conversation = _Snapshot.of(row)
        configuration = (
            await self._configurations.resolve_chain(
                conversation.configuration, application_id=conversation.application_id
            )
        )[0]
        params = parse_params(conversation.params, field_prefix="params").merged(
            parse_params(dict(overrides or {}), field_prefix="params")
        )
        window = await self._window(configuration)
        reserve = reply_reserve(configuration.params.merged(params).max_tokens, window)
        call_context = _context_for(conversation, context)
        plan, summary, summarized = await self._plan(
            conversation, configuration, content, window, reserve, call_context
        )
        history = await self._history(conversation_id, plan)
        messages: list[Message] = []
        if conversation.system_prompt:
            messages.append(Message(role="system", content=conversation.system_prompt))
        if summary:
            messages.append(Message(role="system", content=SUMMARY_PREFIX + summary))
        messages += history
        messages.append(Message(role="user", content=content))
        note: dict[str, Any] = {
            "window": window,
            "reserved_for_reply": reserve,
            "sent_messages": len(messages),
            "history_messages": len(history),
            "estimated_history_tokens": plan.used,
            "dropped": list(plan.dropped),
            "summarized_through": summarized,
        }
        call = ChatCall(
            configuration=configuration.slug,
            messages=tuple(messages),
            overrides=params,
            context=call_context,
            operation="conversation",
        )
        return _Prepared(conversation_id=conversation_id, content=content, call=call, context=note)

    async def _plan(
        self,
        conversation: _Snapshot,
        configuration: ResolvedConfiguration,
        content: str,
        window: int,
        reserve: int,
        context: CallContext,
    ) -> tuple[ContextPlan, str | None, int | None]:
        """Which turns to send; with `summarize`, first fold the turns that do not fit into the summary."""
        items = await self._sizes(conversation.id, conversation.summary_through)
        items.append(HistoryItem(seq=_PENDING_SEQ, role="user", tokens=message_tokens(content)))
        fixed = message_tokens(conversation.system_prompt) if conversation.system_prompt else 0
        summary = conversation.summary
        summary_tokens = message_tokens(SUMMARY_PREFIX + summary) if summary else 0
        plan = plan_context(
            items, budget=history_budget(window=window, reserve=reserve, fixed=fixed + summary_tokens)
        )
        if not plan.dropped or conversation.context_strategy != "summarize":
            return _without_pending(plan), summary, None
        # Fold down to half the budget, so the next several turns fit without another summary call.
        try:
            roomy = plan_context(items, budget=plan.budget // 2)
        except ContextWindowError:  # the newest turn alone is over half: fold only what must go
            roomy = plan
        through = max(roomy.dropped)
        try:
            summary = await self._summarize(conversation, configuration, roomy.dropped, window, context)
        except ProviderError:  # the reply matters more than the summary: drop those turns this time
            return _without_pending(plan), conversation.summary, None
        items = [item for item in items if item.seq > through or item.pinned]
        summary_tokens = message_tokens(SUMMARY_PREFIX + summary) if summary else 0
        plan = plan_context(
            items, budget=history_budget(window=window, reserve=reserve, fixed=fixed + summary_tokens)
        )
        return _without_pending(plan), summary, through

    async def _summarize(
        self,
        conversation: _Snapshot,
        configuration: ResolvedConfiguration,
        seqs: Sequence[int],
        window: int,
        context: CallContext,
    ) -> str | None:
        """Replace the earlier summary and the turns `seqs` by a new summary, stored at once.

        A provider failure propagates: the caller then falls back to dropping those turns.
        """
        max_tokens = min(_SUMMARY_MAX_TOKENS, max(window // 8, 64))
        room = history_budget(window=window, reserve=max_tokens, fixed=message_tokens(SUMMARY_INSTRUCTIONS))
        async with self._database.session() as session:
            query = (
                select(ConversationMessage.seq, ConversationMessage.role, ConversationMessage.content)
                .where(
                    ConversationMessage.conversation_id == conversation.id,
                    ConversationMessage.seq.in_(list(seqs)),
                )
                .order_by(ConversationMessage.seq.desc())
            )
            rows = (await session.execute(query)).all()
        parts: list[str] = []
        used = message_tokens(conversation.summary) if conversation.summary else 0
        for row in rows:  # newest first: when even the summary's input must be cut, the oldest go
            part = f"{row.role.upper()}: {row.content}"
            used += message_tokens(part)
            if used > room:
                break
            parts.append(part)
        if not parts:  # not even the newest dropped turn fits a summary call: it is dropped instead
            return conversation.summary
        if conversation.summary:
            parts.append(f"EARLIER SUMMARY: {conversation.summary}")
        transcript = "\n\n".join(reversed(parts))
        call = ChatCall(
            configuration=configuration.slug,
            messages=(
                Message(role="system", content=SUMMARY_INSTRUCTIONS),
                Message(role="user", content=transcript),
            ),
            overrides=GenerationParams(max_tokens=max_tokens),
            context=context,
            operation="summarize",
        )
        result = await self._chat.chat(call)
        summary = result.text.strip() or conversation.summary
        async with self._database.session() as session:
            await add_totals(
                session,
                conversation.id,
                messages=0,
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                cost=result.cost,
            )
            await session.execute(
                update(Conversation)
                .where(Conversation.id == conversation.id)
                .values(summary=summary, summary_through=max(seqs))
            )
        return summary

    async def _sizes(self, conversation_id: str, summary_through: int) -> list[HistoryItem]:
        """Every message's size — numbers only, so planning a long conversation reads little."""
        query = (
            select(
                ConversationMessage.seq,
                ConversationMessage.role,
                ConversationMessage.tokens,
                ConversationMessage.pinned,
            )
            .where(
                ConversationMessage.conversation_id == conversation_id,
                or_(ConversationMessage.seq > summary_through, ConversationMessage.pinned.is_(True)),
                ConversationMessage.status != "error",
            )
            .order_by(ConversationMessage.seq)
        )
        async with self._database.session() as session:
            rows = (await session.execute(query)).all()
        return [HistoryItem(seq=row.seq, role=row.role, tokens=row.tokens, pinned=row.pinned) for row in rows]

    async def _history(self, conversation_id: str, plan: ContextPlan) -> list[Message]:
        if not plan.kept:
            return []
        kept = set(plan.kept)
        query = (
            select(ConversationMessage)
            .where(
                ConversationMessage.conversation_id == conversation_id,
                or_(ConversationMessage.seq >= plan.tail_start, ConversationMessage.pinned.is_(True)),
            )
            .order_by(ConversationMessage.seq)
        )
        async with self._database.session() as session:
            rows = (await session.scalars(query)).all()
        return [_message(row) for row in rows if row.seq in kept and (row.content or row.tool_calls)]

    async def _window(self, configuration: ResolvedConfiguration) -> int:
        """The configuration's override, else what its provider said, else the price table's, else a default."""
        if configuration.context_length:
            return configuration.context_length
        for model in await self._models.cached(configuration.slug) or []:
            if model.id == configuration.model and model.context_length:
                return model.context_length
        known = self._pricing.context_length(provider=configuration.provider, model=configuration.model)
        return known or DEFAULT_CONTEXT_LENGTH

    async def _store(self, prepared: _Prepared, result: ChatResult, error: BaseException | None) -> Exchange:
        """The message and its reply, with the conversation's totals, in one transaction."""
        async with self._database.session() as session:
            last = await add_totals(
                session,
                prepared.conversation_id,
                messages=2,
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                cost=result.cost,
            )
            await session.execute(
                update(Conversation)
                .where(Conversation.id == prepared.conversation_id, Conversation.title == "")
                .values(title=auto_title(prepared.content))
            )
            message = ConversationMessage(
                id=new_id(),
                conversation_id=prepared.conversation_id,
                seq=last - 1,
                role="user",
                content=prepared.content,
                status="complete",
                pinned=False,
                tokens=message_tokens(prepared.content),
                prompt_tokens=0,
                completion_tokens=0,
            )
            reply = ConversationMessage(
                id=new_id(),
                conversation_id=prepared.conversation_id,
                seq=last,
                role="assistant",
                content=result.text,
                tool_calls=_tool_calls(result.tool_calls),
                status=_STATUS[result.status],
                pinned=False,
                tokens=_history_size(result),
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                cost=result.cost,
                usage_log_id=result.log_id,
                model=result.model,
                latency_ms=result.latency_ms,
                error_message=_error_text(result, error),
                context=prepared.context,
            )
            session.add_all([message, reply])
            await session.flush()
            prepared.stored = Exchange(message=message_view(message), reply=message_view(reply))
            return prepared.stored


@dataclass(frozen=True, kw_only=True)
class _Snapshot:
    """The conversation's settings, read once, outside the session."""

    id: str
    configuration: str
    application_id: int | None
    system_prompt: str | None
    params: dict[str, Any]
    context_strategy: str
    summary: str | None
    summary_through: int
    external_user: str | None

    @classmethod
    def of(cls, row: Conversation) -> _Snapshot:
        return cls(
            id=row.id,
            configuration=row.configuration_slug,
            application_id=row.application_id,
            external_user=row.external_user,
            system_prompt=row.system_prompt,
            params=dict(row.params or {}),
            context_strategy=row.context_strategy,
            summary=row.summary,
            summary_through=row.summary_through,
        )


def _context_for(conversation: _Snapshot, context: CallContext | None) -> CallContext:
    """The caller's context, attributed to the conversation's application and end user when it
    names none: an application's conversation spends that application's budget from any surface."""
    context = context or CallContext()
    return replace(
        context,
        conversation_id=conversation.id,
        application_id=context.application_id or conversation.application_id,
        user_id=context.user_id or conversation.external_user,
    )


def _without_pending(plan: ContextPlan) -> ContextPlan:
    return replace(plan, kept=tuple(seq for seq in plan.kept if seq != _PENDING_SEQ))


def _content(content: str) -> str:
    if not isinstance(content, str) or not content.strip():
        raise InvalidInputError("content must not be empty", field="content")
    if len(content) > MAX_MESSAGE_CHARS:
        raise InvalidInputError(f"content must be at most {MAX_MESSAGE_CHARS} characters", field="content")
    return content


def _message(row: ConversationMessage) -> Message:
    calls = tuple(ToolCall(**call) for call in row.tool_calls or ())
    role = cast(Role, row.role)
    return Message(role=role, content=row.content or None, tool_calls=calls, tool_call_id=row.tool_call_id)


def _history_size(result: ChatResult) -> int:
    """What the reply costs when sent back as history: its text and tool calls, never the hidden
    reasoning a reasoning model was billed for (it is not sent back)."""
    arguments = "".join(call.name + call.arguments for call in result.tool_calls)
    return message_tokens(result.text + arguments)


def _tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    return [{"id": call.id, "name": call.name, "arguments": call.arguments} for call in calls]


def _error_text(result: ChatResult, error: BaseException | None) -> str | None:
    if result.status != "error":
        return None
    return str(error) if error is not None else "the call failed"
