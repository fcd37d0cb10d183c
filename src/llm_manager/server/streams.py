"""The native SSE protocol: `chunk` events, then `done` with stats, or `error`.

- `POST /api/stream` answers with the event stream itself (for `fetch` readers).
- `POST /api/streams` creates a stream and returns its events URL; `GET /api/streams/{id}/events`
  attaches to it — only with the creating token, or the one-time ticket in the URL (a browser
  `EventSource` cannot send headers). A bare cross-site GET can never start a stream: it knows
  neither.
- `POST /api/streams/{id}/cancel` stops it, from any process (see `services/streams.py`).

A client that disconnects or cancels stops the upstream request; the partial result is accounted
as `cancelled` and, on a cancel, reported in the `done` event with `"status": "cancelled"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_manager.errors import (
    InvalidInputError,
    LLMManagerError,
    NotFoundError,
    ProviderError,
    UnauthenticatedError,
)
from llm_manager.manager import LLMManager, to_messages
from llm_manager.server.auth import InferenceCaller, authorize_configuration, presented_token
from llm_manager.server.deps import SSE_HEADERS, Manager
from llm_manager.server.event_stream import EventStreamResponse
from llm_manager.server.lifecycle import Lifecycle
from llm_manager.server.observability import GatewayMetrics
from llm_manager.services.calls import ChatCall
from llm_manager.services.chat import ChatStream
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.streams import PendingStream, StreamOwner, new_stream_id, new_ticket
from llm_manager.services.tokens import Principal
from llm_manager.types import Message, StreamEvent, TextDelta

router = APIRouter(prefix="/api", tags=["streams"])


class StreamRequest(BaseModel):
    """What to stream: a configuration and a prompt, OpenAI-style messages, or a prompt template.

    With a `template` (`name`, `name@label` or `name@3`) and its `variables`, the configuration
    may be left out when the template version names a default one; the version's parameters are
    defaults that `params` override. The usage row records the template name and version.
    """

    model_config = ConfigDict(extra="forbid")

    configuration: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    prompt: Annotated[str, Field(min_length=1)] | None = None
    messages: list[dict[str, Any]] | None = None
    template: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    variables: dict[str, Any] | None = None
    system: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, ...")
    user: Annotated[str, Field(max_length=100)] | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> StreamRequest:
        if sum(part is not None for part in (self.prompt, self.messages, self.template)) != 1:
            raise ValueError("give one of prompt, messages or template")
        if self.variables is not None and self.template is None:
            raise ValueError("variables go with a template")
        return self


class CreatedStream(BaseModel):
    id: str
    events_url: str
    cancel_url: str
    expires_in: int


@router.post(
    "/stream",
    summary="Stream a call; the response is the event stream",
    response_class=EventStreamResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_now(
    body: StreamRequest, caller: InferenceCaller, llm: Manager, request: Request
) -> Response:
    call = await _call(body, caller, llm)
    stream = llm.services.chat.stream(call)
    first = await stream.first()  # failures before the first byte keep their HTTP status
    stream_id = new_stream_id()
    board = llm.services.streams
    await board.create(PendingStream(id=stream_id, owner=_owner(caller), request={}))
    await board.claim(stream_id)  # registered as running here, cancellable from any process
    events = _events(stream, first, stream_id, llm, request)
    headers = {**SSE_HEADERS, "x-llm-manager-stream-id": stream_id, "x-llm-manager-log-id": stream.log_id}
    return EventStreamResponse(events, media_type="text/event-stream", headers=headers)


@router.post("/streams", status_code=201, summary="Create a stream to attach an EventSource to")
async def create_stream(body: StreamRequest, caller: InferenceCaller, llm: Manager) -> CreatedStream:
    await _call(body, caller, llm)  # refuse a bad request now, not when the EventSource attaches
    stream_id = new_stream_id()
    owner = _owner(caller)
    await llm.services.streams.create(
        PendingStream(id=stream_id, owner=owner, request=body.model_dump(mode="json"))
    )
    return CreatedStream(
        id=stream_id,
        events_url=f"/api/streams/{stream_id}/events?ticket={owner.ticket}",
        cancel_url=f"/api/streams/{stream_id}/cancel",
        expires_in=300,
    )


@router.get(
    "/streams/{stream_id}/events",
    summary="Attach to a created stream (its creator only) and receive its events",
    response_class=EventStreamResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def attach(
    stream_id: str, llm: Manager, request: Request, ticket: Annotated[str | None, Query()] = None
) -> Response:
    board = llm.services.streams
    owner = await board.owner(stream_id)
    if owner is None or not await _is_creator(owner, ticket, request, llm):
        raise NotFoundError(f"stream {stream_id!r} not found")
    pending = await board.claim(stream_id)
    if pending is None:
        raise NotFoundError(f"stream {stream_id!r} not found, expired or already attached")
    events = _attached_events(pending, llm, request)
    return EventStreamResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


@router.post(
    "/streams/{stream_id}/cancel", status_code=202, summary="Stop a stream (from any server process)"
)
async def cancel(stream_id: str, caller: InferenceCaller, llm: Manager) -> dict[str, Any]:
    owner = await llm.services.streams.owner(stream_id)
    if owner is None or not caller.owns(owner.application_id):
        raise NotFoundError(f"stream {stream_id!r} not found")
    await llm.services.streams.cancel(stream_id)
    return {"id": stream_id, "cancelled": True}


def _owner(caller: Principal) -> StreamOwner:
    return StreamOwner(
        owner=f"token:{caller.token_id}", application_id=caller.application_id, ticket=new_ticket()
    )


async def _is_creator(owner: StreamOwner, ticket: str | None, request: Request, llm: LLMManager) -> bool:
    if ticket is not None:
        return hmac.compare_digest(ticket.encode(), owner.ticket.encode())
    try:
        principal = await llm.services.tokens.authenticate(presented_token(request))
    except UnauthenticatedError:
        return False
    return owner.owner == f"token:{principal.token_id}"


async def _call(body: StreamRequest, caller: Principal, llm: LLMManager) -> ChatCall:
    if body.template is not None:
        return await _template_call(body, caller, llm)
    if body.configuration is None:
        raise InvalidInputError("configuration is required", field="configuration")
    await authorize_configuration(llm, caller, body.configuration)
    messages = to_messages(body.prompt if body.prompt is not None else body.messages or [])
    if body.system:
        messages = (Message(role="system", content=body.system), *messages)
    return ChatCall(
        configuration=body.configuration,
        messages=messages,
        overrides=parse_params(body.params, field_prefix="params"),
        context=caller.context(user_id=body.user),
        operation="stream",
    )


async def _template_call(body: StreamRequest, caller: Principal, llm: LLMManager) -> ChatCall:
    """Render the template; its configuration and parameters are defaults the request's override."""
    assert body.template is not None
    rendered = await llm.templates.render(body.template, body.variables)
    configuration = body.configuration or rendered.configuration
    if configuration is None:
        raise InvalidInputError(
            f"configuration is required: template {rendered.name!r} version {rendered.version} names none",
            field="configuration",
        )
    await authorize_configuration(llm, caller, configuration)
    system = body.system or rendered.system
    messages: tuple[Message, ...] = (Message(role="user", content=rendered.user),)
    if system:
        messages = (Message(role="system", content=system), *messages)
    return ChatCall(
        configuration=configuration,
        messages=messages,
        overrides=parse_params({**rendered.params, **body.params}, field_prefix="params"),
        context=caller.context(user_id=body.user),
        operation="stream",
        template_name=rendered.name,
        template_version=rendered.version,
    )


async def _attached_events(pending: PendingStream, llm: LLMManager, request: Request) -> AsyncIterator[bytes]:
    """Run a claimed stream; everything, errors included, travels as events (EventSource has no body).

    The run is registered as cancellable before the first byte, so a cancel while a slow model is
    still thinking stops it too.
    """
    metrics: GatewayMetrics = request.app.state.metrics
    lifecycle: Lifecycle = request.app.state.lifecycle
    cancelled = asyncio.Event()
    with metrics.stream_opened("sse"), llm.services.streams.running(pending.id, cancelled.set):
        try:
            token_id = int(pending.owner.owner.removeprefix("token:"))
            caller = await llm.services.tokens.principal(token_id)
            call = await _call(StreamRequest.model_validate(pending.request), caller, llm)
            if await llm.services.streams.is_cancelled(pending.id):
                yield error_event("the stream was cancelled before it started", "cancelled")
                return
            stream = llm.services.chat.stream(call)
        except (LLMManagerError, ValueError) as error:
            code = error.code if isinstance(error, LLMManagerError) else InvalidInputError.code
            yield error_event(str(error), code)
            return
        async for chunk in relay_when_started(stream, cancelled, lifecycle, llm.settings.sse_heartbeat):
            yield chunk


async def _events(
    stream: ChatStream, first: StreamEvent | None, stream_id: str, llm: LLMManager, request: Request
) -> AsyncIterator[bytes]:
    metrics: GatewayMetrics = request.app.state.metrics
    lifecycle: Lifecycle = request.app.state.lifecycle
    cancelled = asyncio.Event()
    with metrics.stream_opened("sse"), llm.services.streams.running(stream_id, cancelled.set):
        async for chunk in pump_events(stream, first, cancelled, lifecycle, llm.settings.sse_heartbeat):
            yield chunk


async def first_unless_cancelled(
    stream: ChatStream, cancelled: asyncio.Event
) -> tuple[StreamEvent | None, bool]:
    """The stream's first event, or `(None, True)` if a Stop came first (the call is then closed)."""
    first = asyncio.ensure_future(stream.first())
    stop = asyncio.ensure_future(cancelled.wait())
    try:
        await asyncio.wait({first, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not first.done():
            first.cancel()
        # Shielded: after a hang-up every await here is cancelled again, leaving upstream open.
        with anyio.CancelScope(shield=True), contextlib.suppress(asyncio.CancelledError, LLMManagerError):
            await first
        with anyio.CancelScope(shield=True), contextlib.suppress(asyncio.CancelledError):
            await stop
    if first.cancelled():
        return None, True
    return first.result(), False


async def relay_when_started(
    stream: ChatStream, cancelled: asyncio.Event, lifecycle: Lifecycle, heartbeat: float
) -> AsyncIterator[bytes]:
    """An attached stream as events: its first event unless a Stop comes first, then the pump.

    Everything, errors included, travels as events (an EventSource cannot read a body); a
    provider's error names the usage row it was billed on.
    """
    try:
        first, stopped = await first_unless_cancelled(stream, cancelled)
    except LLMManagerError as error:
        log_id = stream.log_id if isinstance(error, ProviderError) else None
        yield error_event(str(error), error.code, log_id=log_id)
        return
    if stopped:
        yield error_event("stopped before the first token arrived", "cancelled", log_id=stream.log_id)
        return
    async for chunk in pump_events(stream, first, cancelled, lifecycle, heartbeat):
        yield chunk


async def pump_events(
    stream: ChatStream,
    first: StreamEvent | None,
    cancelled: asyncio.Event,
    lifecycle: Lifecycle,
    heartbeat: float,
    *,
    extra_stats: Callable[[], Mapping[str, Any]] | None = None,
) -> AsyncIterator[bytes]:
    """The stream's events as SSE bytes through an `EventPump`, which is closed on any exit."""
    pump = EventPump(stream, cancelled, lifecycle, heartbeat, extra_stats=extra_stats)
    try:
        async for chunk in pump.run(first):
            yield chunk
    finally:
        await pump.close()


class EventPump:
    """Waits for the next event, a cancel, the end of the shutdown grace — or sends a heartbeat.

    `extra_stats`, when given, is asked once, for the `done` event only: what a caller adds to the
    stats (a conversation's message ids, known once the reply is stored).
    """

    def __init__(
        self,
        stream: ChatStream,
        cancelled: asyncio.Event,
        lifecycle: Lifecycle,
        heartbeat: float,
        *,
        extra_stats: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._stream = stream
        self._heartbeat = heartbeat
        self._extra_stats = extra_stats
        self._next: asyncio.Future[StreamEvent] | None = None
        self._cancelled = asyncio.ensure_future(cancelled.wait())
        self._stopping = asyncio.ensure_future(lifecycle.stopping.wait())
        self._chunks = 0

    async def run(self, first: StreamEvent | None) -> AsyncIterator[bytes]:
        """The events as SSE bytes, ending with `done` or `error` — also for a reply of no events."""
        if first is None:
            yield self._done()
            return
        event: StreamEvent | None = first
        try:
            while event is not None:
                if isinstance(event, TextDelta) and event.text:
                    self._chunks += 1
                    yield b'data: {"type":"chunk","content":' + orjson.dumps(event.text) + b"}\n\n"
                event = None
                while event is None:
                    waited = await self._wait()
                    if waited == "heartbeat":
                        yield b": keep-alive\n\n"
                    elif waited == "cancelled":
                        await self._stop()
                        yield self._done()
                        return
                    elif waited == "stopping":
                        await self._stop()
                        yield error_event(
                            "the server is shutting down; the partial reply was saved", "shutting_down"
                        )
                        return
                    elif waited == "end":
                        yield self._done()
                        return
                    elif not isinstance(waited, str):
                        event = waited
        except LLMManagerError as error:
            yield error_event(str(error), error.code, log_id=self._stream.log_id)

    async def _wait(self) -> StreamEvent | str:
        if self._next is None:
            self._next = asyncio.ensure_future(anext(self._stream))
        waiters: set[asyncio.Future[Any]] = {self._next, self._cancelled, self._stopping}
        done, _ = await asyncio.wait(
            waiters,
            timeout=self._heartbeat,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._next in done:
            future, self._next = self._next, None
            try:
                return future.result()
            except StopAsyncIteration:
                return "end"
        if self._cancelled in done:
            return "cancelled"
        if self._stopping in done:
            return "stopping"
        return "heartbeat"

    async def _stop(self) -> None:
        """Cancel the pending read: the pipeline closes the upstream request and accounts `cancelled`.

        Shielded, because after a client hangs up the server's cancel scope would cancel every
        await here again, and the upstream connection would be left open.
        """
        with anyio.CancelScope(shield=True):
            if self._next is not None:
                self._next.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, LLMManagerError):
                    await self._next
                self._next = None
            await self._stream.aclose()

    def _done(self) -> bytes:
        result = self._stream.result
        stats: dict[str, Any] = {"chunks": self._chunks, "log_id": self._stream.log_id}
        if result is not None:
            stats |= {
                "tokens": result.usage.prompt_tokens + result.usage.completion_tokens,
                "prompt_tokens": result.usage.prompt_tokens,
                "completion_tokens": result.usage.completion_tokens,
                "duration_ms": result.latency_ms,
                "ttft_ms": result.ttft_ms,
                "cost": None if result.cost is None else f"{result.cost.normalize():f}",
                "status": result.status,
                "finish_reason": result.finish_reason,
                "configuration": result.configuration,
                "model": result.model,
                "response": result.text,
            }
        if self._extra_stats is not None:
            stats |= self._extra_stats()
        return b"data: " + orjson.dumps({"type": "done", "stats": stats}) + b"\n\n"

    async def close(self) -> None:
        """On any exit — the client gone included — stop the upstream call and the waiters."""
        await self._stop()
        for waiter in (self._cancelled, self._stopping):
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter


def error_event(message: str, code: str, *, log_id: str | None = None) -> bytes:
    payload: dict[str, Any] = {"type": "error", "message": message, "code": code}
    if log_id is not None:
        payload["log_id"] = log_id
    return b"data: " + orjson.dumps(payload) + b"\n\n"
