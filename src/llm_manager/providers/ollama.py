"""Ollama's native API (`/api/chat`, `/api/embed`, `/api/tags`), streamed as NDJSON.

A local Ollama needs no key; Ollama cloud takes `Authorization: Bearer`, sent only when a key is
set. Ollama streams one JSON object a line and puts usage on the final `"done": true` line; a
tool call arrives whole (arguments as an object), never in fragments; and an error after the
stream has started is a line `{"error": "..."}` under HTTP 200.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any

from llm_manager.errors import ProviderError, UnavailableError
from llm_manager.providers import _wire
from llm_manager.providers._http import Headers, UpstreamResponse
from llm_manager.providers.base import Provider
from llm_manager.types import (
    ChatRequest,
    Completion,
    Embeddings,
    Finish,
    GenerationParams,
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

_FINISH_REASONS = {"stop": "stop", "length": "length"}


class OllamaProvider(Provider):
    name = "ollama"
    label = "Ollama"
    default_base_url = "http://localhost:11434"
    requires_api_key = False
    supports_embeddings = True
    free = True

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        with _wire.transport_errors(self.name, self.connection.secrets()):
            async with self.http.stream(
                "POST",
                self._url("/api/chat"),
                headers=self._headers(),
                content=_wire.dumps(request_body(request, stream=True)),
                watched=True,
            ) as response:
                await self._raise_for_status(response)
                async with aclosing(self._decode(response)) as events:
                    async for event in events:
                        yield event

    async def _decode(self, response: UpstreamResponse) -> AsyncGenerator[StreamEvent, None]:
        """Turn NDJSON lines into stream events; usage and `Finish` come with the `done` line."""
        calls = 0
        finished = False
        async for line in _wire.iter_ndjson(response, provider=self.name):
            if not isinstance(line, dict):
                continue
            if line.get("error"):
                raise self._error(None, line, "", response.headers)
            message = line.get("message") or {}
            if content := message.get("content"):
                yield TextDelta(text=content)
            for wire_call in message.get("tool_calls") or ():
                call = _tool_call(wire_call, calls)
                yield ToolCallDelta(index=calls, id=call.id, name=call.name, arguments=call.arguments)
                calls += 1
            if line.get("done") and not finished:
                finished = True
                yield UsageReport(usage=_usage(line))
                reason = "tool_calls" if calls else _finish_reason(line.get("done_reason"))
                yield Finish(reason=reason, model=line.get("model"))
        if not finished:
            raise UnavailableError("ollama stream ended before its final line", provider=self.name)

    async def complete(self, request: ChatRequest) -> Completion:
        reply = await self._post_json("/api/chat", request_body(request, stream=False))
        message = reply.get("message") or {}
        calls = tuple(_tool_call(call, index) for index, call in enumerate(message.get("tool_calls") or ()))
        return Completion(
            text=message.get("content") or "",
            tool_calls=calls,
            usage=_usage(reply),
            finish_reason="tool_calls" if calls else _finish_reason(reply.get("done_reason")),
            model=reply.get("model"),
        )

    async def embed(self, model: str, inputs: Sequence[str]) -> Embeddings:
        reply = await self._post_json("/api/embed", {"model": model, "input": list(inputs)})
        prompt_tokens = reply.get("prompt_eval_count")
        return Embeddings(
            vectors=tuple(
                tuple(float(value) for value in vector) for vector in reply.get("embeddings") or ()
            ),
            usage=Usage(prompt_tokens=int(prompt_tokens)) if prompt_tokens is not None else None,
            model=reply.get("model") or model,
        )

    async def list_models(self) -> list[ModelInfo]:
        with _wire.transport_errors(self.name, self.connection.secrets()):
            response = await self.http.get(self._url("/api/tags"), headers=self._headers())
            await self._raise_for_status(response)
        return [
            ModelInfo(
                id=model["name"],
                name=model["name"],
                context_length=(model.get("details") or {}).get("context_length"),
            )
            for model in _wire.decode_json(response.content, provider=self.name).get("models") or []
        ]

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with _wire.transport_errors(self.name, self.connection.secrets()):
            response = await self.http.post(
                self._url(path), headers=self._headers(), content=_wire.dumps(body)
            )
            await self._raise_for_status(response)
        reply = _wire.decode_json(response.content, provider=self.name)
        if not isinstance(reply, dict):
            raise UnavailableError(f"ollama answered {path} with an unexpected body", provider=self.name)
        return reply

    def _url(self, path: str) -> str:
        return (self.connection.base_url or self.default_base_url).rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.connection.headers}
        if self.connection.api_key:
            headers["authorization"] = f"Bearer {self.connection.api_key}"
        return headers

    async def _raise_for_status(self, response: UpstreamResponse) -> None:
        if response.is_success:
            return
        body = await _wire.error_body(response)
        raise self._error(response.status_code, body, response.text, response.headers)

    def _error(self, status: int | None, body: Any, text: str, headers: Headers) -> ProviderError:
        """Map Ollama's `{"error": "message"}`; it has no type or code, so status and text decide."""
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):  # a proxy in front of Ollama may answer in the OpenAI shape
            error = error.get("message")
        return _wire.classify_error(
            provider=self.name,
            status=status,
            message=str(error or text),
            retry_after=_wire.parse_retry_after(headers),
            secrets=self.connection.secrets(),
        )


def request_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    """The `/api/chat` JSON body for a request.

    Ollama has no `tool_choice`: "none" is honoured by not offering the tools; "required" or a
    tool name cannot be enforced and the tools are offered as with "auto".
    """
    body: dict[str, Any] = {"model": request.model, "messages": _messages(request.messages), "stream": stream}
    if options := _options(request.params):
        body["options"] = options
    if request.tools and request.tool_choice != "none":
        body["tools"] = [_tool(tool) for tool in request.tools]
    return body


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    tool_names: dict[str, str] = {}
    wire: list[dict[str, Any]] = []
    for message in messages:
        entry: dict[str, Any] = {"role": message.role, "content": message.content or ""}
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": call.id,
                    "function": {
                        "name": call.name,
                        "arguments": _wire.arguments_object(call.id, call.arguments),
                    },
                }
                for call in message.tool_calls
            ]
            tool_names.update((call.id, call.name) for call in message.tool_calls)
        if message.role == "tool":
            # Ollama matches a result to its call by tool name; newer servers also by id.
            if tool_name := message.name or tool_names.get(message.tool_call_id or ""):
                entry["tool_name"] = tool_name
            if message.tool_call_id:
                entry["tool_call_id"] = message.tool_call_id
        wire.append(entry)
    return wire


def _options(params: GenerationParams) -> dict[str, Any]:
    options = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "seed": params.seed,
        "stop": list(params.stop) if params.stop else None,
        "num_predict": params.max_tokens,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    return {name: value for name, value in options.items() if value is not None}


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def _tool_call(call: dict[str, Any], index: int) -> ToolCall:
    """A whole wire tool call; `index` counts calls across the stream, since each line has its own.

    Servers before mid-2025 send no `id`, so one is made from the index: stable and unique per call.
    """
    function = call.get("function") or {}
    arguments = function.get("arguments")
    text = arguments if isinstance(arguments, str) else _wire.dumps(arguments or {}).decode()
    return ToolCall(id=call.get("id") or f"call_{index}", name=function.get("name") or "", arguments=text)


def _finish_reason(done_reason: str | None) -> str:
    return _FINISH_REASONS.get(done_reason or "", "stop")


def _usage(line: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=int(line.get("prompt_eval_count") or 0),
        completion_tokens=int(line.get("eval_count") or 0),
    )
