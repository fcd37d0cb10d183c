"""The Anthropic Messages API (`/v1/messages`), streamed as named server-sent events.

Anthropic differs from the OpenAI shape in ways that matter for accounting and tools: the system
prompt is a top-level field, `max_tokens` is required, tool calls are `tool_use` content blocks
whose input is an object (streamed as `input_json_delta` fragments), tool results travel in a user
message, and usage arrives in two halves (`message_start` for input, `message_delta` for output).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

from llm_manager.errors import InvalidInputError, ProviderError, UnavailableError
from llm_manager.providers import _wire
from llm_manager.providers._http import Headers, UpstreamResponse
from llm_manager.providers.base import Provider
from llm_manager.types import (
    ChatRequest,
    Completion,
    Finish,
    Message,
    ModelInfo,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    Usage,
    UsageReport,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""The API refuses a request without `max_tokens`; this applies when the parameters leave it unset."""
_MODELS_PAGE_SIZE = "1000"
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class AnthropicProvider(Provider):
    name = "anthropic"
    label = "Anthropic"
    default_base_url = "https://api.anthropic.com"

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        secrets = self.connection.secrets()
        with _wire.transport_errors(self.name, secrets):
            async with self.http.stream(
                "POST",
                self._url("/v1/messages"),
                headers=self._headers(),
                content=_wire.dumps(request_body(request, stream=True)),
                watched=True,
            ) as response:
                await self._raise_for_status(response)
                async with aclosing(self._decode(response)) as events:
                    async for event in events:
                        yield event

    async def _decode(self, response: UpstreamResponse) -> AsyncGenerator[StreamEvent, None]:
        """Turn SSE events into stream events; `Finish` comes with `message_stop`."""
        model: str | None = None
        reason: str | None = None
        finished = False
        async for _name, data in _wire.iter_sse(response):
            if not data:
                continue
            event = _wire.decode_json(data, provider=self.name)
            kind = event.get("type")
            if kind == "content_block_delta":
                delta = event["delta"]
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield TextDelta(text=delta["text"])
                elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                    yield ToolCallDelta(index=event["index"], arguments=delta["partial_json"])
            elif kind == "content_block_start":
                block = event["content_block"]
                if block.get("type") == "tool_use":
                    yield ToolCallDelta(index=event["index"], id=block["id"], name=block["name"])
                elif block.get("type") == "text" and block.get("text"):
                    yield TextDelta(text=block["text"])
            elif kind == "message_start":
                message = event["message"]
                model = message.get("model")
                if usage := message.get("usage"):
                    yield UsageReport(usage=_usage(usage))
            elif kind == "message_delta":
                reason = _finish_reason(event.get("delta", {}).get("stop_reason"))
                if usage := event.get("usage"):
                    yield UsageReport(usage=_usage(usage))
            elif kind == "message_stop" and not finished:
                finished = True
                yield Finish(reason=reason or "stop", model=model)
            elif kind == "error":
                raise self._error(None, event, "", response.headers)
        if not finished:
            raise UnavailableError("anthropic stream ended before message_stop", provider=self.name)

    async def complete(self, request: ChatRequest) -> Completion:
        with _wire.transport_errors(self.name, self.connection.secrets()):
            response = await self.http.post(
                self._url("/v1/messages"),
                headers=self._headers(),
                content=_wire.dumps(request_body(request, stream=False)),
            )
            await self._raise_for_status(response)
        message = _wire.decode_json(response.content, provider=self.name)
        blocks = message.get("content") or []
        return Completion(
            text="".join(block["text"] for block in blocks if block.get("type") == "text"),
            tool_calls=tuple(
                ToolCall(id=block["id"], name=block["name"], arguments=_wire.dumps(block["input"]).decode())
                for block in blocks
                if block.get("type") == "tool_use"
            ),
            usage=_usage(message["usage"]) if message.get("usage") else None,
            finish_reason=_finish_reason(message.get("stop_reason")),
            model=message.get("model"),
        )

    async def list_models(self) -> list[ModelInfo]:
        """Every model the key can use, following `has_more` / `last_id` pagination."""
        models: list[ModelInfo] = []
        params = {"limit": _MODELS_PAGE_SIZE}
        while True:
            with _wire.transport_errors(self.name, self.connection.secrets()):
                response = await self.http.get(
                    self._url("/v1/models"), params=params, headers=self._headers()
                )
                await self._raise_for_status(response)
            page = _wire.decode_json(response.content, provider=self.name)
            models += [
                ModelInfo(
                    id=model["id"],
                    name=model.get("display_name"),
                    context_length=model.get("max_input_tokens"),
                    owned_by="anthropic",
                )
                for model in page.get("data") or []
            ]
            if not page.get("has_more") or not page.get("last_id"):
                return models
            params = {"limit": _MODELS_PAGE_SIZE, "after_id": page["last_id"]}

    def _url(self, path: str) -> str:
        return (self.connection.base_url or self.default_base_url).rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        headers = {
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
            **self.connection.headers,
        }
        if self.connection.api_key:
            headers["x-api-key"] = self.connection.api_key
        return headers

    async def _raise_for_status(self, response: UpstreamResponse) -> None:
        if response.is_success:
            return
        body = await _wire.error_body(response)
        raise self._error(response.status_code, body, response.text, response.headers)

    def _error(self, status: int | None, body: Any, text: str, headers: Headers) -> ProviderError:
        """Map `{"type":"error","error":{"type","message"}}`, from a status or an `error` event."""
        error = body.get("error") if isinstance(body, dict) else None
        details = error if isinstance(error, dict) else {}
        return _wire.classify_error(
            provider=self.name,
            status=status,
            message=str(details.get("message") or text),
            error_type=details.get("type"),
            retry_after=_wire.parse_retry_after(headers),
            secrets=self.connection.secrets(),
        )


def request_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The `/v1/messages` JSON body for a request."""
    system, messages = _messages(request.messages)
    params = request.params
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": messages,
        "stream": stream,
    }
    if system:
        body["system"] = system
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.top_k is not None:
        body["top_k"] = params.top_k
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    # seed and the presence/frequency penalties have no Anthropic equivalent and are not sent.
    if request.tools:
        body["tools"] = [_tool(tool) for tool in request.tools]
        if request.tool_choice:
            body["tool_choice"] = _tool_choice(request.tool_choice)
    return body


def _messages(messages: Sequence[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Split out the system prompt and turn the rest into Anthropic turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
        elif message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": _tool_result_id(message),
                "content": message.content or "",
            }
            # Plain user turns carry a string, so a user turn with a list holds tool results.
            if turns and turns[-1]["role"] == "user" and isinstance(turns[-1]["content"], list):
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else []
            )
            blocks += [
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": _wire.arguments_object(call.id, call.arguments),
                }
                for call in message.tool_calls
            ]
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": message.role, "content": message.content or ""})
    return "\n\n".join(system), turns


def _tool_result_id(message: Message) -> str:
    if not message.tool_call_id:
        raise InvalidInputError("a tool result needs the id of the tool call it answers", field="messages")
    return message.tool_call_id


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    definition: dict[str, Any] = {"name": tool.name}
    if tool.description:
        definition["description"] = tool.description
    definition["input_schema"] = tool.parameters
    return definition


def _tool_choice(choice: str) -> dict[str, str]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _finish_reason(stop_reason: str | None) -> str:
    return _FINISH_REASONS.get(stop_reason or "", "stop")


def _usage(usage: dict[str, Any]) -> Usage:
    """Anthropic's `input_tokens` excludes cache reads and writes; ours is the whole prompt.

    That matches OpenAI's `prompt_tokens` (cached tokens are a part of it) and the pricing table,
    which prices cache reads and writes as parts of the input.
    """
    cached = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0) + cached + written,
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=cached,
        cache_write_tokens=written,
    )
