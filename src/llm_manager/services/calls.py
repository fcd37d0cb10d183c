"""The pieces of a call that the pipeline stages share: what was asked, how it went, what to retry.

Kept apart from `chat.py` so the pipeline reads as its stages: resolve, guard, call, account.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from llm_manager.db.base import new_id
from llm_manager.errors import LLMManagerError, ProviderError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers._wire import estimate_tokens, redact
from llm_manager.providers.base import Provider, ProviderConnection
from llm_manager.providers.registry import ProviderRegistry
from llm_manager.services.configurations import ResolvedConfiguration
from llm_manager.types import (
    CallStatus,
    ChatResult,
    CompletionBuilder,
    GenerationParams,
    Message,
    RateLimits,
    ToolDefinition,
    Usage,
)


@dataclass(frozen=True, kw_only=True)
class CallContext:
    """Who is calling: scopes resolution and is recorded on the usage row."""

    application_id: int | None = None
    token_id: int | None = None
    user_id: str | None = None
    conversation_id: str | None = None
    application_limits: RateLimits = field(default_factory=RateLimits)
    token_limits: RateLimits = field(default_factory=RateLimits)


@dataclass(frozen=True, kw_only=True)
class ChatCall:
    configuration: str | None
    """A slug or id; None means the caller's default configuration."""
    messages: tuple[Message, ...]
    overrides: GenerationParams = field(default_factory=GenerationParams)
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: str | None = None
    context: CallContext = field(default_factory=CallContext)
    operation: str = "chat"
    follow_fallbacks: bool = True
    """False for connection tests: a test must exercise the configuration it names."""
    template_name: str | None = None
    template_version: int | None = None
    """The prompt template version the messages were rendered from, recorded on the usage row."""


class Admission(Protocol):
    """A guard's hold on a call (e.g. a budget reservation): settled after, released on failure."""

    async def settle(self, usage: Usage, cost: Decimal | None) -> None: ...

    async def release(self) -> None: ...


class Guard(Protocol):
    """A check before any money is spent. Raise `GuardRefusedError` to refuse the call."""

    async def admit(self, configuration: ResolvedConfiguration, call: ChatCall) -> Admission | None: ...


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    max_retries: int = 2
    max_wait: float = 30.0
    base_delay: float = 0.5

    def delay(self, error: LLMManagerError, attempt: int, waited: float) -> float | None:
        """Seconds to wait before trying again, or None to stop trying this configuration."""
        if not isinstance(error, ProviderError) or not error.retryable or attempt > self.max_retries:
            return None
        delay = error.retry_after if error.retry_after is not None else self.base_delay * 2 ** (attempt - 1)
        return delay if waited + delay <= self.max_wait else None


class ProviderFactory:
    """Builds adapters for resolved configurations on the one shared HTTP client."""

    def __init__(self, registry: ProviderRegistry, http: UpstreamClient) -> None:
        self.registry = registry
        self.http = http

    def build(self, configuration: ResolvedConfiguration) -> Provider:
        provider_type = self.registry.get(configuration.provider)
        connection = ProviderConnection(
            base_url=configuration.base_url or provider_type.default_base_url,
            api_key=configuration.api_key,
            headers=dict(configuration.options.get("headers") or {}),
            options=configuration.options,
        )
        return provider_type(connection, self.http)

    def is_free(self, configuration: ResolvedConfiguration) -> bool:
        return self.registry.get(configuration.provider).free


@dataclass
class CallOutcome:
    """Mutable record of one call while it runs; becomes the usage row and the result."""

    call: ChatCall
    log_id: str = field(default_factory=new_id)
    """Known from the start, so a streaming response can name its usage row in its headers."""
    configuration: ResolvedConfiguration | None = None
    builder: CompletionBuilder = field(default_factory=CompletionBuilder)
    started: float = field(default_factory=time.perf_counter)
    first_event_at: float | None = None
    attempts: int = 0
    status: CallStatus = "ok"
    error: LLMManagerError | None = None
    result: ChatResult | None = None

    def restart(self, configuration: ResolvedConfiguration) -> None:
        self.configuration = configuration
        self.builder = CompletionBuilder()

    def mark_first_event(self) -> None:
        if self.first_event_at is None:
            self.first_event_at = time.perf_counter()

    @property
    def latency_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)

    @property
    def ttft_ms(self) -> int | None:
        return None if self.first_event_at is None else round((self.first_event_at - self.started) * 1000)

    def usage(self) -> Usage:
        """Reported usage, with any part the provider never reported estimated (and flagged).

        Anthropic reports a placeholder of 1 output token at the start; a stream stopped before
        its final report is billed for at least the text that was actually received.
        """
        reported = self.builder.usage
        if self.status == "error" and self.first_event_at is None and reported is None:
            return Usage()  # refused before generating anything: providers bill nothing
        prompt_estimate = sum(estimate_tokens(_message_text(message)) for message in self.call.messages)
        completion_estimate = estimate_tokens(self.builder.text) + sum(
            estimate_tokens(call.arguments) for call in self.builder.tool_calls
        )
        if reported is None:
            return Usage(prompt_tokens=prompt_estimate, completion_tokens=completion_estimate, estimated=True)
        missing_prompt = reported.prompt_tokens == 0 and prompt_estimate > 0
        # Before the final report (a stream cut short), a running count may lag the text received.
        unfinished = self.builder.finish_reason is None
        missing_completion = (reported.completion_tokens == 0 or unfinished) and (
            completion_estimate > reported.completion_tokens
        )
        if not (missing_prompt or missing_completion):
            return reported
        return Usage(
            prompt_tokens=prompt_estimate if missing_prompt else reported.prompt_tokens,
            completion_tokens=completion_estimate if missing_completion else reported.completion_tokens,
            cached_tokens=reported.cached_tokens,
            cache_write_tokens=reported.cache_write_tokens,
            reasoning_tokens=reported.reasoning_tokens,
            reported_cost=reported.reported_cost,
            estimated=True,
        )

    def error_message(self, secrets: Sequence[str]) -> str | None:
        return None if self.error is None else redact(str(self.error), secrets)[:1000]


def _message_text(message: Message) -> str:
    return (message.content or "") + "".join(call.arguments for call in message.tool_calls)
