"""`/api/conversations`: server-side chat history, and sending messages in it (streamed or not).

Any token works with its own application's conversations; an admin token reads every one but,
like everyone, changes and sends only in its own. Another application's conversation is not found,
exactly like a missing one, on every route.

Sending stores the message and the reply whatever happens (`conversation_replies.py`): a reply
stopped by `POST .../cancel` (from any server process) or by the client hanging up is kept as
`interrupted` and billed. A streamed reply uses the native SSE protocol of `server/streams.py`;
its `done` event adds `conversation_id`, `message_id` and `reply_id` to the stats.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from llm_manager.errors import ConflictError, PermissionDeniedError
from llm_manager.manager import LLMManager
from llm_manager.server.api._scope import application_name
from llm_manager.server.api.conversation_schemas import (
    CancelledPublic,
    ConversationCreate,
    ConversationPage,
    ConversationPublic,
    ConversationUpdate,
    MessageCreate,
    MessagePage,
    MessagePublic,
    ReplyPublic,
    ReplyUsage,
)
from llm_manager.server.auth import authorize_configuration, presented_token
from llm_manager.server.deps import SSE_HEADERS, Manager
from llm_manager.server.event_stream import EventStreamResponse
from llm_manager.server.lifecycle import Lifecycle
from llm_manager.server.observability import GatewayMetrics
from llm_manager.server.streams import first_unless_cancelled, pump_events
from llm_manager.services.conversation_replies import Exchange, Reply, ReplyStream
from llm_manager.services.conversations import (
    ConversationChanges,
    ConversationFilter,
    ConversationOwner,
    ConversationView,
    Viewer,
    reply_key,
)
from llm_manager.services.tokens import Principal
from llm_manager.types import StreamEvent

router = APIRouter(prefix="/api/conversations", tags=["conversations"])
CONVERSATION_HEADER = "x-llm-manager-conversation-id"


async def _conversation_caller(request: Request, llm: Manager) -> Principal:
    """Inference tokens chat; management and admin tokens may look after their conversations too."""
    principal = await llm.services.tokens.authenticate(presented_token(request))
    if not (principal.may("inference") or principal.may("management")):
        raise PermissionDeniedError("this token may not use conversations")
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(_conversation_caller)]


def reader(caller: Principal) -> Viewer:
    """Reads its application's conversations (an admin token: everyone's)."""
    return Viewer(application_id=caller.application_id, reads_all=caller.is_admin)


def owner(caller: Principal) -> Viewer:
    """Changes and sends in its own application's conversations only, admin or not."""
    return Viewer(application_id=caller.application_id)


@router.get("", summary="List conversations, most recently active first")
async def list_conversations(
    llm: Manager,
    caller: Caller,
    search: Annotated[str | None, Query(description="Words in the title or in any message.")] = None,
    configuration: Annotated[str | None, Query(description="Configuration slug.")] = None,
    user: Annotated[str | None, Query(description="The application's id for the person chatting.")] = None,
    application: Annotated[str | None, Query(description="Application name (admin tokens).")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> ConversationPage:
    application_id = None
    if application is not None:
        application_id = (await llm.applications.get(application_name(caller, application))).id
    filters = ConversationFilter(
        search=search, configuration=configuration, application_id=application_id, external_user=user
    )
    page = await llm.services.conversations.page(reader(caller), filters, cursor=cursor, limit=limit)
    return ConversationPage(
        data=[ConversationPublic.model_validate(view) for view in page.items], next_cursor=page.next_cursor
    )


@router.post("", status_code=201, summary="Start a conversation")
async def create_conversation(body: ConversationCreate, llm: Manager, caller: Caller) -> ConversationPublic:
    """On a configuration this token may call; it belongs to the token's application."""
    await authorize_configuration(llm, caller, body.configuration)
    view = await llm.services.conversations.create(
        ConversationOwner(application_id=caller.application_id, external_user=body.user),
        body.configuration,
        title=body.title,
        system_prompt=body.system_prompt,
        context_strategy=body.context_strategy,
        params=body.params,
    )
    return ConversationPublic.model_validate(view)


@router.get("/{conversation_id}", summary="Get a conversation, with its totals")
async def get_conversation(conversation_id: str, llm: Manager, caller: Caller) -> ConversationPublic:
    view = await llm.services.conversations.get(conversation_id, reader(caller))
    return ConversationPublic.model_validate(view)


@router.patch("/{conversation_id}", summary="Rename a conversation or change its system prompt or strategy")
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, llm: Manager, caller: Caller
) -> ConversationPublic:
    system_prompt = body.system_prompt
    if "system_prompt" in body.model_fields_set and system_prompt is None:
        system_prompt = ""  # null removes it, like an empty one
    changes = ConversationChanges(
        title=body.title, system_prompt=system_prompt, context_strategy=body.context_strategy
    )
    view = await llm.services.conversations.update(conversation_id, owner(caller), changes)
    return ConversationPublic.model_validate(view)


@router.delete("/{conversation_id}", status_code=204, summary="Delete a conversation and its messages")
async def delete_conversation(conversation_id: str, llm: Manager, caller: Caller) -> Response:
    await llm.services.conversations.delete(conversation_id, owner(caller))
    return Response(status_code=204)


@router.get("/{conversation_id}/messages", summary="List a conversation's messages, oldest first")
async def list_messages(
    conversation_id: str,
    llm: Manager,
    caller: Caller,
    after: Annotated[int, Query(ge=0, description="`next_cursor` of the previous page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
) -> MessagePage:
    page = await llm.services.conversations.messages(
        conversation_id, reader(caller), after=after, limit=limit
    )
    return MessagePage(
        data=[MessagePublic.model_validate(view) for view in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/{conversation_id}/export",
    summary="Export a conversation as JSON or Markdown",
    responses={200: {"content": {"application/json": {}, "text/markdown": {}}}},
)
async def export_conversation(
    conversation_id: str,
    llm: Manager,
    caller: Caller,
    format: Annotated[Literal["json", "markdown"], Query()] = "json",
) -> Response:
    """A download: the conversation and every message (JSON), or a readable transcript (Markdown)."""
    service = llm.services.conversations
    if format == "markdown":
        text = await service.export_markdown(conversation_id, reader(caller))
        return Response(
            text, media_type="text/markdown; charset=utf-8", headers=_attachment(conversation_id, "md")
        )
    data = await service.export_json(conversation_id, reader(caller))
    return Response(
        orjson.dumps(data), media_type="application/json", headers=_attachment(conversation_id, "json")
    )


@router.post("/{conversation_id}/messages/{message_id}/pin", summary="Pin a message: always sent")
async def pin_message(conversation_id: str, message_id: str, llm: Manager, caller: Caller) -> MessagePublic:
    """A pinned message is sent with every later message, whatever the context window drops."""
    view = await llm.services.conversations.pin(conversation_id, owner(caller), message_id, pinned=True)
    return MessagePublic.model_validate(view)


@router.post("/{conversation_id}/messages/{message_id}/unpin", summary="Unpin a message")
async def unpin_message(conversation_id: str, message_id: str, llm: Manager, caller: Caller) -> MessagePublic:
    view = await llm.services.conversations.pin(conversation_id, owner(caller), message_id, pinned=False)
    return MessagePublic.model_validate(view)


@router.post(
    "/{conversation_id}/messages",
    summary="Send a message; the reply comes whole, or as the native event stream",
    response_model=ReplyPublic,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def send_message(
    conversation_id: str, body: MessageCreate, llm: Manager, caller: Caller, request: Request
) -> ReplyPublic | Response:
    """The history is fitted to the model's window and sent with the message; both are stored.

    With `"stream": true` the answer is `text/event-stream`: `chunk` events, then `done` (stats,
    with `conversation_id`, `message_id`, `reply_id`) or `error`. Failures before the first token
    keep their HTTP status.
    """
    view = await llm.services.conversations.get(conversation_id, owner(caller))
    await authorize_configuration(llm, caller, view.configuration)
    context = caller.context(user_id=view.external_user)
    if body.stream:
        stream = await llm.services.replies.stream(
            conversation_id, owner(caller), body.content, overrides=body.params, context=context
        )
        return await _streamed(stream, llm, request)
    reply = await _send_cancellable(llm, caller, view, body)
    return _reply_public(reply)


@router.post(
    "/{conversation_id}/cancel", status_code=202, summary="Stop the reply being written (from any process)"
)
async def cancel_reply(conversation_id: str, llm: Manager, caller: Caller) -> CancelledPublic:
    """The partial reply is kept as `interrupted` and billed; nothing running is not an error."""
    await llm.services.conversations.get(conversation_id, owner(caller))
    await llm.services.streams.cancel(reply_key(conversation_id))
    return CancelledPublic(id=conversation_id, cancelled=True)


async def _streamed(stream: ReplyStream, llm: LLMManager, request: Request) -> Response:
    """Wait for the first token (a Stop may come first), then answer with the event stream."""
    cancelled = asyncio.Event()
    key = reply_key(stream.conversation_id)
    with llm.services.streams.running(key, cancelled.set):
        first, _ = await first_unless_cancelled(stream, cancelled)
    headers = {
        **SSE_HEADERS,
        CONVERSATION_HEADER: stream.conversation_id,
        "x-llm-manager-log-id": stream.log_id,
    }
    events = _events(stream, first, cancelled, llm, request)
    return EventStreamResponse(events, media_type="text/event-stream", headers=headers)


async def _events(
    stream: ReplyStream,
    first: StreamEvent | None,
    cancelled: asyncio.Event,
    llm: LLMManager,
    request: Request,
) -> AsyncIterator[bytes]:
    metrics: GatewayMetrics = request.app.state.metrics
    lifecycle: Lifecycle = request.app.state.lifecycle
    key = reply_key(stream.conversation_id)
    with metrics.stream_opened("sse"), llm.services.streams.running(key, cancelled.set):
        heartbeat = llm.settings.sse_heartbeat
        extra_stats = functools.partial(_stored_ids, stream)
        async for chunk in pump_events(
            stream, first, cancelled, lifecycle, heartbeat, extra_stats=extra_stats
        ):
            yield chunk


def _stored_ids(stream: ReplyStream) -> dict[str, Any]:
    exchange = stream.exchange
    return {
        "conversation_id": stream.conversation_id,
        "message_id": exchange.message.id if exchange else None,
        "reply_id": exchange.reply.id if exchange else None,
    }


async def _send_cancellable(
    llm: LLMManager, caller: Principal, view: ConversationView, body: MessageCreate
) -> Reply | Exchange:
    """A whole reply, which a cancel (from any process) or the client hanging up stops.

    The send runs as a task of its own so that a Stop cancels exactly it; the service then keeps
    what was billed as an `interrupted` reply, which is what this answers with.
    """
    stopped = asyncio.Event()
    sending = asyncio.ensure_future(
        llm.services.replies.send(
            view.id,
            owner(caller),
            body.content,
            overrides=body.params,
            context=caller.context(user_id=view.external_user),
        )
    )
    stop = asyncio.ensure_future(stopped.wait())
    with llm.services.streams.running(reply_key(view.id), stopped.set):
        try:
            await asyncio.wait({sending, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not sending.done():
                sending.cancel()
            # Shielded: a client that hung up cancels this too, and the partial reply must be stored.
            with anyio.CancelScope(shield=True):
                await asyncio.wait({sending, stop})
    if not sending.cancelled():
        return sending.result()
    return await _interrupted(llm, caller, view, body.content)


async def _interrupted(llm: LLMManager, caller: Principal, view: ConversationView, content: str) -> Exchange:
    """The exchange a Stop left behind, read back from the messages stored since the send began."""
    page = await llm.services.conversations.messages(view.id, owner(caller), after=view.message_count)
    for message, reply in itertools.pairwise(page.items):
        if message.role == "user" and message.content == content and reply.role == "assistant":
            return Exchange(message=message, reply=reply)
    raise ConflictError("the message was cancelled before any model was asked; nothing was stored")


def _reply_public(reply: Reply | Exchange) -> ReplyPublic:
    stored = reply.reply
    return ReplyPublic(
        message=MessagePublic.model_validate(reply.message),
        reply=MessagePublic.model_validate(stored),
        usage=ReplyUsage(
            prompt_tokens=stored.prompt_tokens,
            completion_tokens=stored.completion_tokens,
            total_tokens=stored.prompt_tokens + stored.completion_tokens,
        ),
        cost=stored.cost,
        log_id=stored.usage_log_id,
    )


def _attachment(conversation_id: str, extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="conversation-{conversation_id}.{extension}"'}
