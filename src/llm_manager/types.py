"""Pure values shared by every layer: messages, requests, stream events, usage, results.

Stream events are a discriminated union of frozen, keyword-only dataclasses: adapters produce
them from wire bytes and HTTP surfaces only serialise them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]
CallStatus = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCall:
    """A complete tool call. `arguments` is the JSON text of the arguments object."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolDefinition:
    """A function the model may call; `parameters` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


class GenerationParams(BaseModel):
    """Sampling parameters. Unknown keys are refused so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=1)] | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_tuple(cls, value: object) -> object:
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def merged(self, overrides: GenerationParams) -> GenerationParams:
        """These parameters with every field the overrides set replaced."""
        return self.model_copy(update=overrides.model_dump(exclude_unset=True, exclude_none=True))

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")


TOOL_CHOICE_MODES = frozenset({"auto", "none", "required"})
"""The `tool_choice` values that are modes; any other value names the tool to call."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatRequest:
    """What an adapter needs for one call. `tool_choice` is one of `TOOL_CHOICE_MODES` or a tool name."""

    model: str
    messages: tuple[Message, ...]
    params: GenerationParams = field(default_factory=GenerationParams)
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    """Token counts for one call. `estimated` is true when the provider did not report them.

    `prompt_tokens` counts every input token, cached ones included (OpenAI's convention, which
    pricing expects); `cached_tokens` and `cache_write_tokens` say how many of them were cache
    reads and writes. Anthropic reports `input_tokens` without cache reads/writes, so its adapter
    adds them.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    reported_cost: Decimal | None = None
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, kw_only=True, slots=True)
class TextDelta:
    text: str
    kind: Literal["text"] = "text"


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call, keyed by `index`; `id` and `name` arrive with the first one."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    kind: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True, kw_only=True, slots=True)
class UsageReport:
    """Usage as reported so far; a later report replaces an earlier one field by field."""

    usage: Usage
    kind: Literal["usage"] = "usage"


@dataclass(frozen=True, kw_only=True, slots=True)
class Finish:
    reason: str
    model: str | None = None
    kind: Literal["finish"] = "finish"


StreamEvent = Annotated[TextDelta | ToolCallDelta | UsageReport | Finish, Field(discriminator="kind")]


@dataclass(frozen=True, kw_only=True, slots=True)
class Completion:
    """What an adapter returns for a whole call."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChatResult:
    """A finished call as the caller sees it, with what accounting recorded."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    cost: Decimal | None
    log_id: str
    configuration: str
    provider: str
    model: str
    finish_reason: str | None
    status: CallStatus
    latency_ms: int
    ttft_ms: int | None
    attempts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Embeddings:
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None = None
    model: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EmbeddingResult:
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage
    cost: Decimal | None
    log_id: str
    configuration: str
    model: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimits:
    """Requests and tokens per minute allowed to a token, an application or a configuration."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None

    def __bool__(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelInfo:
    id: str
    name: str | None = None
    context_length: int | None = None
    owned_by: str | None = None


def merge_usage(current: Usage | None, report: Usage) -> Usage:
    """Combine two usage reports: non-zero fields of the newer one win.

    Anthropic reports input tokens in `message_start` and cumulative output in `message_delta`,
    so neither report alone is the whole picture.
    """
    if current is None:
        return report
    return Usage(
        prompt_tokens=report.prompt_tokens or current.prompt_tokens,
        completion_tokens=report.completion_tokens or current.completion_tokens,
        cached_tokens=report.cached_tokens or current.cached_tokens,
        cache_write_tokens=report.cache_write_tokens or current.cache_write_tokens,
        reasoning_tokens=report.reasoning_tokens or current.reasoning_tokens,
        reported_cost=report.reported_cost if report.reported_cost is not None else current.reported_cost,
        estimated=report.estimated and current.estimated,
    )


def completion_events(completion: Completion) -> list[TextDelta | ToolCallDelta | UsageReport | Finish]:
    """A whole completion as the events a stream of it would have carried."""
    events: list[TextDelta | ToolCallDelta | UsageReport | Finish] = []
    if completion.text:
        events.append(TextDelta(text=completion.text))
    for index, call in enumerate(completion.tool_calls):
        events.append(ToolCallDelta(index=index, id=call.id, name=call.name, arguments=call.arguments))
    if completion.usage is not None:
        events.append(UsageReport(usage=completion.usage))
    events.append(Finish(reason=completion.finish_reason or "stop", model=completion.model))
    return events


class CompletionBuilder:
    """Folds stream events into a `Completion`: text, tool calls joined by index, usage."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.model: str | None = None
        self.text_chars = 0

    def add(self, event: TextDelta | ToolCallDelta | UsageReport | Finish) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
            self.text_chars += len(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self._calls.setdefault(event.index, {"id": None, "name": None, "arguments": []})
            call["id"] = call["id"] or event.id
            call["name"] = call["name"] or event.name
            call["arguments"].append(event.arguments)
        elif isinstance(event, UsageReport):
            self.usage = merge_usage(self.usage, event.usage)
        else:
            self.finish_reason = event.reason
            self.model = event.model or self.model

    def add_all(self, events: Iterable[TextDelta | ToolCallDelta | UsageReport | Finish]) -> None:
        for event in events:
            self.add(event)

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(
                id=call["id"] or f"call_{index}",
                name=call["name"] or "",
                arguments="".join(call["arguments"]) or "{}",
            )
            for index, call in sorted(self._calls.items())
        )

    def build(self) -> Completion:
        return Completion(
            text=self.text,
            tool_calls=self.tool_calls,
            usage=self.usage,
            finish_reason=self.finish_reason,
            model=self.model,
        )
