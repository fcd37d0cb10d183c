"""Sending a message in a conversation from the admin UI: plain, or streamed with Stop.

- **Plain**: `POST .../messages` (a form; htmx sends `HX-Request`) answers with the stored
  exchange as HTML, the conversation's new totals swapped in out of band. Without htmx it
  redirects back to the conversation.
- **Streamed**, two requests like the console, so spending money is never a cross-site GET:
  `POST .../streams` (the CSRF token in `X-CSRF-Token`) registers a *pending* stream owned by
  this session; an `EventSource` on `GET .../streams/{id}/events` attaches to it — from this
  session only, once — and relays the reply in the native SSE protocol (`chunk` … `done`, or
  `error`). The page then fetches the stored messages as HTML (`GET .../messages?after=`).
- **Stop**: `POST .../cancel` stops the reply running in this conversation from any server
  process (`conversation:<id>` on the stream board). The partial reply is kept, marked
  `interrupted`, and billed.

A refusal before any model was asked (a budget, a rate limit) stores nothing: the page keeps the
typed message so it can be sent again.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from llm_manager.errors import (
    GuardRefusedError,
    InvalidInputError,
    LLMManagerError,
    NotFoundError,
    ProviderError,
)
from llm_manager.manager import LLMManager
from llm_manager.server.admin._conversations import BASE, Chatter, owner, render_exchange
from llm_manager.server.admin._pages import PageRenderer, redirect
from llm_manager.server.deps import SSE_HEADERS, Manager
from llm_manager.server.event_stream import EventStreamResponse
from llm_manager.server.lifecycle import Lifecycle
from llm_manager.server.observability import GatewayMetrics
from llm_manager.server.streams import error_event, relay_when_started
from llm_manager.services.calls import CallContext
from llm_manager.services.conversation_replies import MAX_MESSAGE_CHARS
from llm_manager.services.conversations import MessageView, reply_key
from llm_manager.services.streams import PendingStream, StreamOwner, new_stream_id, new_ticket
from llm_manager.services.web_sessions import SessionUser

router = APIRouter()
_EXCHANGE_LIMIT = 200


@router.post(f"{BASE}/{{conversation_id}}/messages")
async def send(
    conversation_id: str, request: Request, user: Chatter, llm: Manager, pages: PageRenderer
) -> Response:
    """One whole reply. htmx gets the stored exchange (a failed reply shown in place, with its error)."""
    form = await request.form()
    content = form.get("content")
    after = _seq(form.get("after"))
    htmx = bool(request.headers.get("hx-request"))
    view = await llm.services.conversations.get(conversation_id, owner(user))
    page = f"{BASE}/{view.id}"
    try:
        reply = await llm.services.replies.send(
            view.id, owner(user), content if isinstance(content, str) else "", context=_context(user)
        )
    except ProviderError as error:  # the failed reply was stored (status `error`) when a model was asked
        stored = await _since(llm, view.id, user, after)
        if not htmx:
            return redirect(page, flash=f"The model failed: {error}")
        if not stored:
            raise
    except (InvalidInputError, GuardRefusedError) as error:  # nothing stored: the message can be re-sent
        if not htmx:
            return redirect(page, flash=f"Not sent: {error}")
        raise
    else:
        if not htmx:
            return redirect(f"{page}#m-{reply.reply.seq}")
        stored = (
            await _since(llm, view.id, user, after) if after is not None else [reply.message, reply.reply]
        )
    fresh = await llm.services.conversations.get(view.id, owner(user))
    return render_exchange(request, pages, fresh, user, stored)


@router.post(f"{BASE}/{{conversation_id}}/streams", status_code=201)
async def start(conversation_id: str, request: Request, user: Chatter, llm: Manager) -> Response:
    """Register a pending reply for this session; nothing is spent until its EventSource attaches."""
    view = await llm.services.conversations.get(conversation_id, owner(user))
    content = (await _payload(request)).get("content")
    if not isinstance(content, str) or not content.strip():
        return _invalid("write a message first")
    if len(content) > MAX_MESSAGE_CHARS:
        return _invalid(f"a message may be at most {MAX_MESSAGE_CHARS:,} characters")
    stream_id = new_stream_id()
    stream_owner = StreamOwner(owner=_session_key(user), application_id=None, ticket=new_ticket())
    await llm.services.streams.create(
        PendingStream(
            id=stream_id, owner=stream_owner, request={"conversation_id": view.id, "content": content}
        )
    )
    base = f"{BASE}/{view.id}"
    return JSONResponse(
        {
            "id": stream_id,
            "events_url": f"{base}/streams/{stream_id}/events",
            "cancel_url": f"{base}/cancel?stream={stream_id}",
        },
        status_code=201,
    )


@router.get(f"{BASE}/{{conversation_id}}/streams/{{stream_id}}/events")
async def events(
    conversation_id: str, stream_id: str, request: Request, user: Chatter, llm: Manager
) -> Response:
    """Attach this session's EventSource to the reply it registered, once; anyone else sees 404."""
    if not await _owned(stream_id, user, llm):
        raise NotFoundError("no such reply stream for this session")
    pending = await llm.services.streams.claim(stream_id)
    if pending is None or pending.request.get("conversation_id") != conversation_id:
        raise NotFoundError("the reply stream has expired or is already running")
    run = _ReplyRun(pending, user, llm, request)
    return EventStreamResponse(run.events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post(f"{BASE}/{{conversation_id}}/cancel", status_code=202)
async def cancel(
    conversation_id: str,
    user: Chatter,
    llm: Manager,
    stream: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Stop the reply running in this conversation, whichever process runs it.

    `stream` also stops a reply registered but not attached yet (a Stop faster than the EventSource).
    """
    view = await llm.services.conversations.get(conversation_id, owner(user))
    board = llm.services.streams
    await board.cancel(reply_key(view.id))
    if stream and await _owned(stream, user, llm):
        await board.cancel(stream)
    return JSONResponse({"id": view.id, "cancelled": True}, status_code=202)


class _ReplyRun:
    """One claimed reply: run it as the signed-in user and relay its events."""

    def __init__(self, pending: PendingStream, user: SessionUser, llm: LLMManager, request: Request) -> None:
        self._pending = pending
        self._conversation_id = str(pending.request["conversation_id"])
        self._content = str(pending.request["content"])
        self._user = user
        self._llm = llm
        self._metrics: GatewayMetrics = request.app.state.metrics
        self._lifecycle: Lifecycle = request.app.state.lifecycle

    async def events(self) -> AsyncIterator[bytes]:
        """Everything, errors included, travels as events: an EventSource cannot read a body."""
        board = self._llm.services.streams
        cancelled = asyncio.Event()
        # Registered before the first byte, so a Stop while a slow model thinks is not lost.
        with (
            self._metrics.stream_opened("sse"),
            board.running(reply_key(self._conversation_id), cancelled.set),
        ):
            if await board.is_cancelled(self._pending.id):
                yield error_event("the reply was stopped before it started", "cancelled")
                return
            try:
                stream = await self._llm.services.replies.stream(
                    self._conversation_id, owner(self._user), self._content, context=_context(self._user)
                )
            except LLMManagerError as error:  # refused before any model was asked: nothing stored
                yield error_event(str(error), error.code)
                return
            heartbeat = self._llm.settings.sse_heartbeat
            async for chunk in relay_when_started(stream, cancelled, self._lifecycle, heartbeat):
                yield chunk


def _context(user: SessionUser) -> CallContext:
    return CallContext(user_id=user.email)


async def _since(
    llm: LLMManager, conversation_id: str, user: SessionUser, after: int | None
) -> list[MessageView]:
    if after is None:
        return []
    found = await llm.services.conversations.messages(
        conversation_id, owner(user), after=after, limit=_EXCHANGE_LIMIT
    )
    return found.items


def _seq(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _session_key(user: SessionUser) -> str:
    return f"session:{user.session_id}"


async def _owned(stream_id: str, user: SessionUser, llm: LLMManager) -> bool:
    found = await llm.services.streams.owner(stream_id)
    return found is not None and hmac.compare_digest(found.owner.encode(), _session_key(user).encode())


async def _payload(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return {key: value for key, value in (await request.form()).items() if isinstance(value, str)}


def _invalid(message: str) -> JSONResponse:
    return JSONResponse({"errors": {"content": message}}, status_code=422)
