"""OpenAI's Chat Completions wire API, spoken by OpenAI itself and by many compatible servers.

`OpenAIProvider` talks to the official API; `OpenAICompatibleProvider` speaks the same wire format
to self-hosted servers (vLLM, llama.cpp, LM Studio, ...). They differ only in quirks, which are
class attributes so that a subclass (OpenRouter) states its differences as data.

The stream is the hot path: each `data:` line is decoded once with orjson and read as plain
dicts, never validated into models chunk by chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, ClassVar, cast

from llm_manager.errors import InvalidInputError, ProviderError, UnavailableError
from llm_manager.providers import _wire
from llm_manager.providers._http import UpstreamResponse
from llm_manager.providers.base import Provider
from llm_manager.types import (
    TOOL_CHOICE_MODES,
    ChatRequest,
    Completion,
    Embeddings,
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

_FINISH_REASONS = {"function_call": "tool_calls"}
_DRAIN_SECONDS = 1.0


class OpenAIProvider(Provider):
    name = "openai"
    label = "OpenAI"
    default_base_url = "https://api.openai.com/v1"
    supports_embeddings = True
    accepts_top_k: ClassVar[bool] = False
    """OpenAI's API refuses `top_k`; most compatible servers accept it."""
    max_tokens_field: ClassVar[str] = "max_completion_tokens"
    """OpenAI deprecated `max_tokens` and its reasoning models refuse it; other servers know only it."""

    # -- request side -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        base = (self.connection.base_url or self.default_base_url).rstrip("/")
        if not base:
            raise InvalidInputError(f"{self.label} needs a base URL", field="base_url")
        return base

    def default_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.connection.api_key:
            headers["Authorization"] = f"Bearer {self.connection.api_key}"
        return headers

    def headers(self) -> dict[str, str]:
        """Our headers, then the configuration's own, which win."""
        return {**self.default_headers(), **self.connection.headers}

    def request_body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [message_to_wire(message) for message in request.messages],
        }
        params = request.params.as_dict()
        if not self.accepts_top_k:
            params.pop("top_k", None)
        if "max_tokens" in params:
            params[self.max_tokens_field] = params.pop("max_tokens")
        body.update(params)
        if request.tools:
            body["tools"] = [tool_to_wire(tool) for tool in request.tools]
            if request.tool_choice:
                body["tool_choice"] = tool_choice_to_wire(request.tool_choice)
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    # -- the four operations ------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        url = f"{self.base_url}/chat/completions"
        content = _wire.dumps(self.request_body(request, stream=True))
        with _wire.transport_errors(self.name, self.connection.secrets()):
            async with self.http.stream(
                "POST", url, content=content, headers=self.headers(), watched=True
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise self.http_error(response)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # A server that ignored `stream: true` answers with one JSON body.
                    await response.aread()
                    for event in completion_events(self.parse_completion(self._payload(response))):
                        yield event
                    return
                # `iter_sse` is an async generator, typed as a plain iterator; close it with the response.
                sse = cast("AsyncGenerator[tuple[str, str], None]", _wire.iter_sse(response))
                async with aclosing(sse) as events:
                    async for _event, data in events:
                        if data == "[DONE]":
                            await self._read_to_end(events)
                            return
                        if not data:
                            continue
                        for item in self.chunk_events(self._decode(data)):
                            yield item

    async def complete(self, request: ChatRequest) -> Completion:
        payload = await self._call("POST", "/chat/completions", self.request_body(request, stream=False))
        return self.parse_completion(payload)

    async def embed(self, model: str, inputs: Sequence[str]) -> Embeddings:
        # base64 is a third of the size of JSON floats; servers that ignore the format send floats.
        body = {"model": model, "input": list(inputs), "encoding_format": "base64"}
        payload = await self._call("POST", "/embeddings", body)
        rows = sorted(_dicts(payload.get("data")), key=lambda row: _int(row.get("index")))
        usage = payload.get("usage")
        return Embeddings(
            vectors=tuple(_vector(row.get("embedding")) for row in rows),
            usage=Usage(prompt_tokens=_int(usage.get("prompt_tokens"))) if isinstance(usage, dict) else None,
            model=payload.get("model") or model,
        )

    async def list_models(self) -> list[ModelInfo]:
        payload = await self._call("GET", "/models")
        return [self.parse_model(entry) for entry in _dicts(payload.get("data")) if entry.get("id")]

    # -- response side ------------------------------------------------------------------------

    def chunk_events(self, chunk: Any) -> Iterator[StreamEvent]:
        """The events in one decoded `chat.completion.chunk`; an `error` key raises."""
        if not isinstance(chunk, dict):
            return
        if error := chunk.get("error"):
            # OpenRouter sends the call's usage with the error: report it so it is accounted.
            if usage := chunk.get("usage"):
                yield UsageReport(usage=self.parse_usage(usage))
            raise self.error_from(error, status=None)
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0):
                continue  # we never ask for n > 1; ignore other choices rather than interleave them
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                yield TextDelta(text=content)
            for position, call in enumerate(delta.get("tool_calls") or ()):
                function = call.get("function") or {}
                yield ToolCallDelta(
                    index=call.get("index", position),
                    id=call.get("id"),
                    name=function.get("name"),
                    arguments=function.get("arguments") or "",
                )
            if reason := choice.get("finish_reason"):
                yield Finish(reason=_FINISH_REASONS.get(reason, reason), model=chunk.get("model"))
        if usage := chunk.get("usage"):
            yield UsageReport(usage=self.parse_usage(usage))

    def parse_usage(self, usage: Mapping[str, Any]) -> Usage:
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return Usage(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            cached_tokens=_int(prompt_details.get("cached_tokens")),
            cache_write_tokens=_int(prompt_details.get("cache_write_tokens")),
            reasoning_tokens=_int(completion_details.get("reasoning_tokens")),
        )

    def parse_completion(self, payload: Mapping[str, Any]) -> Completion:
        choices = _dicts(payload.get("choices"))
        choice = next((c for c in choices if not c.get("index", 0)), {})
        message = choice.get("message") or {}
        calls = tuple(
            ToolCall(
                id=call.get("id") or f"call_{position}",
                name=(call.get("function") or {}).get("name") or "",
                arguments=(call.get("function") or {}).get("arguments") or "{}",
            )
            for position, call in enumerate(_dicts(message.get("tool_calls")))
        )
        usage = payload.get("usage")
        reason = choice.get("finish_reason")
        return Completion(
            text=message.get("content") or "",
            tool_calls=calls,
            usage=self.parse_usage(usage) if isinstance(usage, dict) and usage else None,
            finish_reason=_FINISH_REASONS.get(reason, reason) if reason else None,
            model=payload.get("model"),
        )

    def parse_model(self, entry: Mapping[str, Any]) -> ModelInfo:
        # vLLM reports `max_model_len`; OpenAI reports no context length at all.
        context = entry.get("context_length") or entry.get("max_model_len")
        return ModelInfo(
            id=str(entry["id"]),
            name=entry.get("name"),
            context_length=context if isinstance(context, int) else None,
            owned_by=entry.get("owned_by"),
        )

    # -- errors -------------------------------------------------------------------------------

    def http_error(self, response: UpstreamResponse) -> ProviderError:
        """The error for a non-2xx response, from its status, body and `Retry-After`."""
        try:
            body = _wire.loads(response.content)
        except ValueError:
            body = None
        error: Any = response.text
        if isinstance(body, dict):
            error = body.get("error") or (body if "message" in body else error)
        return self.error_from(
            error, status=response.status_code, retry_after=_wire.parse_retry_after(response.headers)
        )

    def describe_error(self, error: Any) -> tuple[str, str | None, str | None]:
        """`(message, type, code)` of an error object; compatible servers also send bare strings."""
        if not isinstance(error, dict):
            return str(error or ""), None, None
        return str(error.get("message") or ""), _text(error.get("type")), _text(error.get("code"))

    def error_from(
        self, error: Any, *, status: int | None, retry_after: float | None = None
    ) -> ProviderError:
        if status is None and isinstance(error, dict) and type(code := error.get("code")) is int:
            status = code  # mid-stream errors of vLLM and OpenRouter carry the HTTP status as `code`
        message, error_type, code_text = self.describe_error(error)
        return _wire.classify_error(
            provider=self.name,
            status=status,
            message=message,
            error_type=error_type,
            code=code_text,
            retry_after=retry_after,
            secrets=self.connection.secrets(),
        )

    # -- plumbing -----------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        content = _wire.dumps(body) if body is not None else None
        with _wire.transport_errors(self.name, self.connection.secrets()):
            response = await self.http.request(method, url, content=content, headers=self.headers())
        if not response.is_success:
            raise self.http_error(response)
        return self._payload(response)

    def _payload(self, response: UpstreamResponse) -> dict[str, Any]:
        """The JSON object of a successful response; some servers report errors with a 200."""
        payload = self._decode(response.content)
        if not isinstance(payload, dict):
            raise UnavailableError(f"{self.label} sent an unexpected response", provider=self.name)
        if error := payload.get("error"):
            raise self.error_from(error, status=None)
        return payload

    def _decode(self, data: str | bytes) -> Any:
        return _wire.decode_json(data, provider=self.name)

    async def _read_to_end(self, events: AsyncIterator[tuple[str, str]]) -> None:
        """Read what follows `[DONE]` (normally just the end of the body) so that the connection
        goes back to the pool instead of being closed; a server that lingers is simply hung up on."""
        with contextlib.suppress(TimeoutError, ProviderError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                with _wire.transport_errors(self.name, self.connection.secrets()):
                    async for _ in events:
                        pass


class OpenAICompatibleProvider(OpenAIProvider):
    """A self-hosted server speaking OpenAI's wire format; it may need no key at all."""

    name = "openai-compatible"
    label = "OpenAI-compatible server"
    default_base_url = ""
    requires_api_key = False
    accepts_top_k = True
    max_tokens_field = "max_tokens"


def message_to_wire(message: Message) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.role == "tool":
        wire["content"] = message.content or ""
        wire["tool_call_id"] = message.tool_call_id
    elif message.role != "assistant" and message.content is None:
        wire["content"] = ""
    if message.tool_calls:
        wire["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.name and message.role in ("system", "user", "assistant"):
        wire["name"] = message.name
    return wire


def tool_to_wire(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def tool_choice_to_wire(choice: str) -> str | dict[str, Any]:
    if choice in TOOL_CHOICE_MODES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def completion_events(completion: Completion) -> Iterator[StreamEvent]:
    """A whole completion as the events a stream of it would have produced."""
    if completion.text:
        yield TextDelta(text=completion.text)
    for index, call in enumerate(completion.tool_calls):
        yield ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments)
    if completion.usage:
        yield UsageReport(usage=completion.usage)
    if completion.finish_reason:
        yield Finish(reason=completion.finish_reason, model=completion.model)


def _vector(embedding: Any) -> tuple[float, ...]:
    if isinstance(embedding, str):
        return _wire.decode_base64_floats(embedding)
    return tuple(float(value) for value in embedding or ())


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if type(value) is int else 0


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
