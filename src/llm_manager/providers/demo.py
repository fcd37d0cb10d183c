"""An offline, deterministic provider for first runs, demos and tests.

It answers from the prompt with fixed text streamed at a configurable pace
(`options["delay_ms"]` between tokens, default 15 ms). Its tokenizer is whitespace-attached
words, so the token counts it reports are exact for its own text: honest, not estimated.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from llm_manager.providers.base import Provider
from llm_manager.types import (
    ChatRequest,
    Embeddings,
    Finish,
    Message,
    ModelInfo,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
)

_TOKEN = re.compile(r"\s*\S+")
_MODELS = ("demo-chat", "demo-embed")
_EMBEDDING_DIMENSIONS = 16
_DEFAULT_DELAY_MS = 15.0
_REPLY = (
    "This is the LLM Manager demo model, answering offline. You said: “{prompt}”. "
    "Every reply is streamed token by token, counted, priced at zero and logged like a real "
    "call, so you can try the console, the CLI and the API before adding a real provider."
)


def demo_tokens(text: str) -> list[str]:
    """The demo model's tokens: each word with its leading whitespace."""
    return _TOKEN.findall(text)


class DemoProvider(Provider):
    name = "demo"
    label = "Demo (offline)"
    requires_api_key = False
    supports_embeddings = True
    free = True
    is_demo = True

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        delay = float(self.connection.options.get("delay_ms", _DEFAULT_DELAY_MS)) / 1000
        prompt_tokens = sum(len(demo_tokens(_message_text(message))) for message in request.messages)
        if request.tools and request.tool_choice not in (None, "auto", "none"):
            async for event in self._tool_call(request, prompt_tokens):
                yield event
            return
        tokens = demo_tokens(_REPLY.format(prompt=_last_user_text(request.messages)[:200]))
        limit = request.params.max_tokens
        emitted = tokens[:limit] if limit else tokens
        for token in emitted:
            if delay:
                await asyncio.sleep(delay)
            yield TextDelta(text=token)
        yield UsageReport(usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(emitted)))
        yield Finish(reason="length" if len(emitted) < len(tokens) else "stop", model=request.model)

    async def _tool_call(self, request: ChatRequest, prompt_tokens: int) -> AsyncIterator[StreamEvent]:
        names = [tool.name for tool in request.tools]
        name = request.tool_choice if request.tool_choice in names else names[0]
        arguments = json.dumps({"prompt": _last_user_text(request.messages)[:100]})
        yield ToolCallDelta(index=0, id="call_demo_0", name=name, arguments=arguments)
        yield UsageReport(
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(demo_tokens(arguments)))
        )
        yield Finish(reason="tool_calls", model=request.model)

    async def embed(self, model: str, inputs: Sequence[str]) -> Embeddings:
        vectors = tuple(_hash_vector(text) for text in inputs)
        tokens = sum(len(demo_tokens(text)) for text in inputs)
        return Embeddings(vectors=vectors, usage=Usage(prompt_tokens=tokens), model=model)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=model, name=f"{model} (demo)", context_length=8192) for model in _MODELS]


def _message_text(message: Message) -> str:
    calls = " ".join(call.arguments for call in message.tool_calls)
    return f"{message.content or ''} {calls}".strip()


def _last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content:
            return " ".join(message.content.split())
    return ""


def _hash_vector(text: str) -> tuple[float, ...]:
    """A deterministic unit vector: equal texts embed equally, different ones differ."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(byte - 127.5) / 127.5 for byte in digest[:_EMBEDDING_DIMENSIONS]]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return tuple(value / norm for value in raw)
