"""The OpenAI-compatible API: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models`.

With the `x-llm-manager-conversation-id` request header (an id, or `new`), a chat completion uses
server-side history: `messages` is just the new user message, and the reply is stored in the
conversation, so SDK clients need not resend the whole chat.

`model` names one of our configurations (a slug the token may use); the request's parameters
override the configuration's defaults. Any field we do not know is refused, never forwarded — in
particular the ones that would send the call elsewhere (`base_url`, `api_base`, `api_key`, ...).

Streams are serialised straight from pipeline events into pre-built byte templates: the only work
per chunk is encoding the text, so the gateway adds almost nothing between upstream and client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from llm_manager.errors import InvalidInputError, LLMManagerError
from llm_manager.manager import Prompt, to_messages
from llm_manager.providers._wire import encode_base64_floats
from llm_manager.server.auth import InferenceCaller, authorize_configuration
from llm_manager.server.deps import SSE_HEADERS, Manager
from llm_manager.server.errors import classify, error_response
from llm_manager.server.event_stream import EventStreamResponse
from llm_manager.server.lifecycle import Lifecycle, ShuttingDownError
from llm_manager.server.observability import GatewayMetrics
from llm_manager.services.calls import ChatCall
from llm_manager.services.chat import ChatStream
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.conversations import ConversationOwner, ConversationView, Viewer
from llm_manager.services.tokens import Principal
from llm_manager.types import (
    TOOL_CHOICE_MODES,
    ChatResult,
    Finish,
    Message,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolDefinition,
    Usage,
)

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
CONVERSATION_HEADER = "x-llm-manager-conversation-id"
NEW_CONVERSATION = "new"
_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter"}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class FunctionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: FunctionSpec


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: dict[str, str]


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat request. Unknown fields are refused with their name, never passed on."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=64, description="A configuration slug.")]
    messages: Annotated[list[dict[str, Any]], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    user: Annotated[str, Field(max_length=100)] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1, max_length=64, description="A configuration slug.")]
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    user: Annotated[str, Field(max_length=100)] | None = None


@router.post(
    "/chat/completions",
    summary="Chat completion through a configuration (streamed or not)",
    openapi_extra={
        "parameters": [
            {
                "name": CONVERSATION_HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Use server-side history: a conversation id, or `new` to start one. "
                "`messages` is then only the new user message; the response names the conversation "
                "in the same header.",
            }
        ]
    },
)
async def chat_completions(
    body: ChatCompletionRequest, caller: InferenceCaller, llm: Manager, request: Request
) -> Response:
    conversation_id = request.headers.get(CONVERSATION_HEADER)
    if conversation_id is not None:
        return await _conversation_completion(body, caller, llm, request, conversation_id.strip())
    call = await _chat_call(body, caller, llm)
    if not body.stream:
        result = await llm.services.chat.chat(call)
        return Response(
            orjson.dumps(_completion(result, body.model)),
            media_type="application/json",
            headers=_result_headers(result),
        )
    stream = llm.services.chat.stream(call)
    first = await stream.first()  # errors before the first byte keep their HTTP status
    return _streamed(body, stream, first, request, {"x-llm-manager-log-id": stream.log_id})


def _streamed(
    body: ChatCompletionRequest,
    stream: ChatStream,
    first: StreamEvent | None,
    request: Request,
    headers: dict[str, str],
) -> EventStreamResponse:
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = _ChunkWriter(stream.log_id, body.model)
    return EventStreamResponse(
        _sse(stream, first, chunks, include_usage, request.app.state.metrics, request.app.state.lifecycle),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **headers},
    )


async def _conversation_completion(
    body: ChatCompletionRequest, caller: Principal, llm: Manager, request: Request, conversation_id: str
) -> Response:
    """The new user message sent in a stored conversation (`new`: a conversation started now).

    The conversation supplies the system prompt and the history, fitted to the model's window;
    the message and the reply are stored, and a reply stopped by a hang-up is kept `interrupted`.
    An error response names the conversation too, unless it was started now and stayed empty
    (a refused first message): that one is deleted again.
    """
    content = _new_user_message(body)
    overrides = _params(body)
    parse_params(overrides, field_prefix="body")  # a bad parameter is named as the request sent it
    view = await _conversation(body, caller, llm, conversation_id)
    try:
        return await _conversation_reply(body, caller, llm, request, view, content, overrides)
    except LLMManagerError as error:
        response = error_response(error)
        viewer = Viewer(application_id=caller.application_id)
        if conversation_id == NEW_CONVERSATION:
            current = await llm.services.conversations.get(view.id, viewer)
            if current.message_count == 0:
                await llm.services.conversations.delete(view.id, viewer)
                return response
        response.headers[CONVERSATION_HEADER] = view.id
        return response


async def _conversation(
    body: ChatCompletionRequest, caller: Principal, llm: Manager, conversation_id: str
) -> ConversationView:
    """The conversation to send in: a new one on `model`, or the given one (`model` must be its own)."""
    if conversation_id == NEW_CONVERSATION:
        await authorize_configuration(llm, caller, body.model)
        owner = ConversationOwner(application_id=caller.application_id, external_user=body.user)
        return await llm.services.conversations.create(owner, body.model)
    view = await llm.services.conversations.get(conversation_id, Viewer(application_id=caller.application_id))
    if body.model != view.configuration:
        raise InvalidInputError(
            f"model: this conversation uses {view.configuration!r}; send that as the model", field="model"
        )
    await authorize_configuration(llm, caller, view.configuration)
    return view


async def _conversation_reply(
    body: ChatCompletionRequest,
    caller: Principal,
    llm: Manager,
    request: Request,
    view: ConversationView,
    content: str,
    overrides: dict[str, Any],
) -> Response:
    viewer = Viewer(application_id=caller.application_id)
    context = caller.context(user_id=view.external_user or body.user)
    headers = {CONVERSATION_HEADER: view.id}
    replies = llm.services.replies
    if not body.stream:
        reply = await replies.send(view.id, viewer, content, overrides=overrides, context=context)
        return Response(
            orjson.dumps(_completion(reply.result, body.model)),
            media_type="application/json",
            headers={**_result_headers(reply.result), **headers},
        )
    stream = await replies.stream(view.id, viewer, content, overrides=overrides, context=context)
    first = await stream.first()  # errors before the first byte keep their HTTP status
    return _streamed(body, stream, first, request, {**headers, "x-llm-manager-log-id": stream.log_id})


def _new_user_message(body: ChatCompletionRequest) -> str:
    """With server-side history, `messages` is exactly the one new user message, as text."""
    if any(message.get("role") == "system" for message in body.messages):
        raise InvalidInputError(
            "messages: with a conversation, send no system message: the conversation supplies its own "
            "system prompt and history",
            field="messages",
        )
    if len(body.messages) != 1 or body.messages[0].get("role") != "user":
        raise InvalidInputError(
            "messages: with a conversation, send exactly one message, the new user message",
            field="messages",
        )
    if body.tools:
        raise InvalidInputError("tools: not supported with a conversation", field="tools")
    message = _messages(body.messages)[0]
    if not message.content:
        raise InvalidInputError("messages[0].content must not be empty", field="messages[0].content")
    return message.content


@router.post("/embeddings", summary="Embeddings through a configuration (float or base64)")
async def embeddings(body: EmbeddingRequest, caller: InferenceCaller, llm: Manager) -> Response:
    await authorize_configuration(llm, caller, body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if any(not text for text in texts):
        raise InvalidInputError("input: every string must be non-empty", field="input")
    result = await llm.embed(body.model, texts, context=caller.context(user_id=body.user))
    encode = encode_base64_floats if body.encoding_format == "base64" else list
    payload = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(result.vectors)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": result.usage.prompt_tokens, "total_tokens": result.usage.prompt_tokens},
    }
    headers = {"x-llm-manager-log-id": result.log_id}
    if result.cost is not None:
        headers["x-llm-manager-cost"] = _money(result.cost)
    return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


@router.get("/models", summary="The configurations this token may call")
async def models(caller: InferenceCaller, llm: Manager) -> dict[str, Any]:
    views = await llm.configurations.usable(application_id=caller.application_id)
    return {
        "object": "list",
        "data": [
            {
                "id": view.slug,
                "object": "model",
                "created": int(view.created_at.timestamp()),
                "owned_by": view.provider,
            }
            for view in views
            if caller.may_call(view.id)
        ],
    }


def _params(body: ChatCompletionRequest) -> dict[str, Any]:
    params = body.model_dump(
        include={"temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty"},
        exclude_none=True,
    )
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    return params


async def _chat_call(body: ChatCompletionRequest, caller: Principal, llm: Manager) -> ChatCall:
    await authorize_configuration(llm, caller, body.model)
    params = _params(body)
    tool_choice = body.tool_choice
    if isinstance(tool_choice, NamedToolChoice):
        name = tool_choice.function.get("name")
        if not name:
            raise InvalidInputError(
                "tool_choice.function.name is required", field="tool_choice.function.name"
            )
        if name in TOOL_CHOICE_MODES:  # the normalised choice is a mode or a name: it would read as the mode
            raise InvalidInputError(
                f"a tool named {name!r} cannot be chosen by name; rename the tool",
                field="tool_choice.function.name",
            )
        tool_choice_text: str | None = name
    else:
        tool_choice_text = tool_choice
    return ChatCall(
        configuration=body.model,
        messages=_messages(body.messages),
        overrides=parse_params(params, field_prefix="body"),
        tools=tuple(
            ToolDefinition(
                name=tool.function.name,
                description=tool.function.description,
                parameters=tool.function.parameters,
            )
            for tool in body.tools or ()
        ),
        tool_choice=tool_choice_text,
        context=caller.context(user_id=body.user),
        operation="stream" if body.stream else "chat",
    )


def _messages(raw: list[dict[str, Any]]) -> tuple[Message, ...]:
    """OpenAI messages, with text content parts joined; other part types are refused by name."""
    flattened: list[dict[str, Any]] = []
    for index, message in enumerate(raw):
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for part_index, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text":
                    field = f"messages[{index}].content[{part_index}]"
                    raise InvalidInputError(f"{field}: only text content parts are supported", field=field)
                texts.append(str(part.get("text", "")))
            message = {**message, "content": "".join(texts)}
        flattened.append(message)
    prompt: Prompt = flattened
    return to_messages(prompt)


class _ChunkWriter:
    """`chat.completion.chunk` lines from byte templates: one `orjson.dumps` of the text per chunk."""

    def __init__(self, log_id: str, model: str) -> None:
        head = orjson.dumps(
            {
                "id": f"chatcmpl-{log_id}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
            }
        )[:-1]
        self._head = b"data: " + head + b',"choices":[{"index":0,"delta":'
        self._usage_head = b"data: " + head + b',"choices":[],"usage":'
        self.role = self._head + b'{"role":"assistant","content":""},"finish_reason":null}]}\n\n'

    def text(self, text: str) -> bytes:
        return self._head + b'{"content":' + orjson.dumps(text) + b'},"finish_reason":null}]}\n\n'

    def tool_call(self, delta: ToolCallDelta) -> bytes:
        function: dict[str, str] = {"arguments": delta.arguments}
        call: dict[str, Any] = {"index": delta.index, "function": function}
        if delta.id is not None:
            call["id"] = delta.id
            call["type"] = "function"
        if delta.name is not None:
            function["name"] = delta.name
        return self._head + orjson.dumps({"tool_calls": [call]}) + b',"finish_reason":null}]}\n\n'

    def finish(self, reason: str) -> bytes:
        return self._head + b'{},"finish_reason":' + orjson.dumps(_finish_reason(reason)) + b"}]}\n\n"

    def usage(self, result: ChatResult) -> bytes:
        return self._usage_head + orjson.dumps(_usage(result.usage, result.cost)) + b"}\n\n"


async def _sse(
    stream: ChatStream,
    first: StreamEvent | None,
    chunks: _ChunkWriter,
    include_usage: bool,
    metrics: GatewayMetrics,
    lifecycle: Lifecycle,
) -> AsyncIterator[bytes]:
    """Relay the stream; a client that goes away closes it, and the call is accounted `cancelled`."""
    finished = False
    events = aiter(stream)
    with metrics.stream_opened("openai"):
        try:
            yield chunks.role
            event = first
            while event is not None:
                if isinstance(event, TextDelta):
                    yield chunks.text(event.text)
                elif isinstance(event, ToolCallDelta):
                    yield chunks.tool_call(event)
                elif isinstance(event, Finish):
                    finished = True
                    yield chunks.finish(event.reason)
                if lifecycle.stopping.is_set():
                    raise ShuttingDownError("the server is shutting down; the partial reply was saved")
                event = await anext(events, None)
            result = stream.result
            if not finished:
                yield chunks.finish(result.finish_reason if result and result.finish_reason else "stop")
            if include_usage and result is not None:
                yield chunks.usage(result)
            yield b"data: [DONE]\n\n"
        except LLMManagerError as error:
            _, type_ = classify(error)
            payload = {"error": {"message": str(error), "type": type_, "code": error.code, "param": None}}
            yield b"data: " + orjson.dumps(payload) + b"\n\n"
        finally:
            await stream.aclose()


def _completion(result: ChatResult, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text or None}
    if result.tool_calls:
        message["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in result.tool_calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": f"chatcmpl-{result.log_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _finish_reason(result.finish_reason or "stop"),
                "logprobs": None,
            }
        ],
        "usage": _usage(result.usage, result.cost),
    }


def _usage(usage: Usage, cost: Decimal | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }
    if cost is not None:
        payload["cost"] = float(cost)
    return payload


def _finish_reason(reason: str) -> str:
    return reason if reason in _FINISH_REASONS else "stop"


def _result_headers(result: ChatResult) -> dict[str, str]:
    headers = {"x-llm-manager-log-id": result.log_id}
    if result.cost is not None:
        headers["x-llm-manager-cost"] = _money(result.cost)
    return headers


def _money(amount: Decimal) -> str:
    return f"{amount.normalize():f}"
