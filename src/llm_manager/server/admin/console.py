"""The streaming console: try a configuration live, watch its stats, keep a server-side history.

A run is two requests, so that spending money is never a plain cross-site GET:

1. `POST /admin/console/streams` (the session's CSRF token in `X-CSRF-Token`) validates the form
   and registers a *pending* stream on the stream board, owned by `session:<session id>`;
2. `GET /admin/console/streams/{id}/events` — a browser `EventSource` — attaches to it only from
   the session that created it (same cookie; anyone else gets 404), claims it once and runs the
   call in the native SSE protocol (`chunk` … `done` with stats, or `error`).

`POST .../cancel` stops it from any process; the partial reply is shown and accounted as
`cancelled`. Every run is a usage row with operation `console`, so the history below the console
is the usage log itself, not something kept in the browser.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm_manager.errors import InvalidInputError, NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.server.admin._pages import PageRenderer
from llm_manager.server.admin._session import Needs
from llm_manager.server.deps import SSE_HEADERS, Manager
from llm_manager.server.event_stream import EventStreamResponse
from llm_manager.server.lifecycle import Lifecycle
from llm_manager.server.observability import GatewayMetrics
from llm_manager.server.streams import error_event, relay_when_started
from llm_manager.services.calls import CallContext, ChatCall
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.configurations import ConfigurationView
from llm_manager.services.streams import PendingStream, StreamOwner, new_stream_id, new_ticket
from llm_manager.services.usage import UsageFilter, UsagePage
from llm_manager.services.web_sessions import SessionUser
from llm_manager.types import Message

router = APIRouter()

PERMISSION = "test-llm-configs"
OPERATION = "console"
MAX_TOKENS = 4000
RUNS_PER_PAGE = 15
DEFAULT_PROMPT = (
    "Explain in three short paragraphs what a large language model is and what it is good at, "
    "for someone new to the topic."
)
Tester = Annotated[SessionUser, Depends(Needs(PERMISSION))]


class ConsoleRequest(BaseModel):
    """The console form, as JSON from `fetch` or as a plain form post."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    configuration: Annotated[str, Field(min_length=1, max_length=64)]
    prompt: Annotated[str, Field(min_length=1, max_length=100_000)]
    system: Annotated[str, Field(max_length=20_000)] = ""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] = 256

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


@router.get("/admin/console")
async def console(
    request: Request,
    user: Tester,
    llm: Manager,
    pages: PageRenderer,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    configurations = await _usable(llm)
    default = next((view.slug for view in configurations if view.is_default), None)
    return pages.render(
        request,
        "console.html",
        {
            "configurations": configurations,
            "selected": default or (configurations[0].slug if configurations else None),
            "default_prompt": DEFAULT_PROMPT,
            "max_tokens_limit": MAX_TOKENS,
            "runs": await _runs(llm, cursor),
            "cursor": cursor,
        },
    )


@router.get("/admin/console/runs")
async def runs(
    request: Request,
    user: Tester,
    llm: Manager,
    pages: PageRenderer,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The activity table alone, for htmx to refresh after each run and to page through."""
    return pages.render(request, "console_runs.html", {"runs": await _runs(llm, cursor), "cursor": cursor})


@router.post("/admin/console/streams", status_code=201)
async def start(request: Request, user: Tester, llm: Manager) -> Response:
    """Register a pending stream for this session; nothing is spent until its EventSource attaches."""
    try:
        body = ConsoleRequest.model_validate(await _payload(request))
        parse_params(body.params(), field_prefix="params")
    except ValidationError as error:
        return _invalid(_validation_errors(error))
    except InvalidInputError as error:
        return _invalid({(error.field or "prompt").removeprefix("params."): str(error)})
    if body.configuration not in {view.slug for view in await _usable(llm)}:
        return _invalid({"configuration": "choose an active configuration"})
    stream_id = new_stream_id()
    owner = StreamOwner(owner=_owner_key(user), application_id=None, ticket=new_ticket())
    await llm.services.streams.create(
        PendingStream(id=stream_id, owner=owner, request=body.model_dump(mode="json"))
    )
    base = f"/admin/console/streams/{stream_id}"
    return JSONResponse(
        {"id": stream_id, "events_url": f"{base}/events", "cancel_url": f"{base}/cancel"}, status_code=201
    )


@router.get("/admin/console/streams/{stream_id}/events")
async def events(stream_id: str, request: Request, user: Tester, llm: Manager) -> Response:
    """Attach this session's EventSource to the stream it created, once; others see 404."""
    board = llm.services.streams
    if not await _owned(stream_id, user, llm):
        raise NotFoundError("no such console stream for this session")
    pending = await board.claim(stream_id)
    if pending is None:
        raise NotFoundError("the console stream has expired or is already running")
    return EventStreamResponse(
        _ConsoleRun(pending, user, llm, request).events(), media_type="text/event-stream", headers=SSE_HEADERS
    )


@router.post("/admin/console/streams/{stream_id}/cancel", status_code=202)
async def cancel(stream_id: str, user: Tester, llm: Manager) -> Response:
    """Stop a run of this session, whichever server process runs it."""
    if not await _owned(stream_id, user, llm):
        raise NotFoundError("no such console stream for this session")
    await llm.services.streams.cancel(stream_id)
    return JSONResponse({"id": stream_id, "cancelled": True}, status_code=202)


class _ConsoleRun:
    """One claimed console stream: run the call as the signed-in user and relay its events."""

    def __init__(self, pending: PendingStream, user: SessionUser, llm: LLMManager, request: Request) -> None:
        self._pending = pending
        self._user = user
        self._llm = llm
        self._metrics: GatewayMetrics = request.app.state.metrics
        self._lifecycle: Lifecycle = request.app.state.lifecycle

    async def events(self) -> AsyncIterator[bytes]:
        """Everything, errors included, travels as events: an EventSource cannot read a body."""
        board = self._llm.services.streams
        cancelled = asyncio.Event()
        # Registered before the first byte, so a Stop while a slow model thinks is not lost.
        with self._metrics.stream_opened("sse"), board.running(self._pending.id, cancelled.set):
            if await board.is_cancelled(self._pending.id):
                yield error_event("the run was stopped before it started", "cancelled")
                return
            try:
                call = self._call()
            except (InvalidInputError, ValueError) as error:
                yield error_event(str(error), InvalidInputError.code)
                return
            stream = self._llm.services.chat.stream(call)
            heartbeat = self._llm.settings.sse_heartbeat
            async for chunk in relay_when_started(stream, cancelled, self._lifecycle, heartbeat):
                yield chunk

    def _call(self) -> ChatCall:
        body = ConsoleRequest.model_validate(self._pending.request)
        messages: tuple[Message, ...] = (Message(role="user", content=body.prompt),)
        if body.system:
            messages = (Message(role="system", content=body.system), *messages)
        return ChatCall(
            configuration=body.configuration,
            messages=messages,
            overrides=parse_params(body.params(), field_prefix="params"),
            context=CallContext(user_id=self._user.email),
            operation=OPERATION,
            follow_fallbacks=False,  # the console tests the configuration it names
        )


async def _runs(llm: LLMManager, cursor: str | None) -> UsagePage:
    """Past console runs, newest first: they are usage rows, so they outlive the browser tab."""
    return await llm.services.usage.list_page(
        limit=RUNS_PER_PAGE, cursor=cursor or None, filters=UsageFilter(operation=OPERATION)
    )


async def _usable(llm: LLMManager) -> list[ConfigurationView]:
    """Active, streaming-capable configurations without an application scope: what the console can run."""
    return [
        view
        for view in await llm.services.configurations.usable(application_id=None)
        if view.supports_streaming
    ]


def _owner_key(user: SessionUser) -> str:
    return f"session:{user.session_id}"


async def _owned(stream_id: str, user: SessionUser, llm: LLMManager) -> bool:
    owner = await llm.services.streams.owner(stream_id)
    return owner is not None and hmac.compare_digest(owner.owner.encode(), _owner_key(user).encode())


async def _payload(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            raise InvalidInputError("the body is not valid JSON", field="prompt") from None
        return data if isinstance(data, dict) else {}
    return {key: value for key, value in (await request.form()).items() if isinstance(value, str)}


def _validation_errors(error: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "prompt"
        errors.setdefault(field, problem["msg"])
    return errors


def _invalid(errors: dict[str, str]) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=422)
