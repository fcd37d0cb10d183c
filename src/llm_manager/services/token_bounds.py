"""An upper bound on a request's prompt tokens, for the amount a budget reservation holds.

A budget holds each call's *maximum* cost before the call; if the hold were a mere estimate
(about four characters a token), calls whose real prompt is larger than estimated would each
overrun their hold, and together they could overrun a hard budget by far more than one call.

The bound rests on how every tokenizer the supported providers use works (byte-level BPE, or
SentencePiece with byte fallback): each token of text stands for at least one byte of its UTF-8
encoding, so a text never has more tokens than bytes. On top of the text, providers wrap each
message in a few template tokens, and Anthropic adds a system prompt of a few hundred tokens
when tools are offered; fixed allowances cover those.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from llm_manager.types import Message, ToolDefinition

MESSAGE_ALLOWANCE = 8
"""Template tokens around one message (role markers, separators): 3–6 on the providers we know."""
REQUEST_ALLOWANCE = 8
"""Template tokens around the whole prompt (the reply primer, begin and end markers)."""
TOOLS_ALLOWANCE = 512
"""The system prompt a provider adds when tools are offered (Anthropic documents up to 346 tokens)."""


def prompt_token_bound(messages: Sequence[Message], tools: Sequence[ToolDefinition] = ()) -> int:
    """The most prompt tokens a provider can count for these messages and tools."""
    total = REQUEST_ALLOWANCE + sum(_message_bound(message) for message in messages)
    if tools:
        total += TOOLS_ALLOWANCE + sum(_tool_bound(tool) for tool in tools)
    return total


def inputs_token_bound(inputs: Iterable[str]) -> int:
    """The most tokens an embedding call can count for these inputs."""
    return sum(_bytes(text) + 2 for text in inputs)  # a begin and an end marker each


def _message_bound(message: Message) -> int:
    total = MESSAGE_ALLOWANCE + _bytes(message.content) + _bytes(message.name) + _bytes(message.tool_call_id)
    for call in message.tool_calls:
        total += MESSAGE_ALLOWANCE + _bytes(call.id) + _bytes(call.name) + _bytes(call.arguments)
    return total


def _tool_bound(tool: ToolDefinition) -> int:
    schema = json.dumps(tool.parameters, ensure_ascii=False, separators=(",", ":"))
    return MESSAGE_ALLOWANCE + _bytes(tool.name) + _bytes(tool.description) + _bytes(schema)


def _bytes(text: str | None) -> int:
    return len(text.encode()) if text else 0
