"""The call pipeline every chat, stream and embedding goes through, from every surface.

1. resolve the configuration (and its fallbacks), merge default parameters with the caller's;
2. guard: each guard may refuse, or hold something (a budget reservation) settled afterwards;
3. call the adapter, retrying 429/5xx/connect errors (honouring Retry-After) only while nothing
   has reached the caller, then trying fallbacks in order; first-byte and idle timeouts;
4. account: exactly one usage row per call, whatever happened — including a caller that stopped
   reading mid-stream (`cancelled`, partial text, tokens estimated if never reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from types import TracebackType
from typing import Self, TypeVar

import anyio

from llm_manager.errors import LLMManagerError, ProviderError, UpstreamTimeoutError
from llm_manager.providers._wire import estimate_tokens
from llm_manager.providers.base import Provider
from llm_manager.services.accounting import (
    CONVERSATION_ID_LENGTH,
    USER_ID_LENGTH,
    UsageRecord,
    UsageWriter,
)
from llm_manager.services.calls import (
    Admission,
    CallContext,
    CallOutcome,
    ChatCall,
    Guard,
    ProviderFactory,
    RetryPolicy,
)
from llm_manager.services.configurations import ConfigurationService, ResolvedConfiguration
from llm_manager.services.pricing import CostQuote, Pricing
from llm_manager.types import (
    ChatRequest,
    ChatResult,
    Completion,
    EmbeddingResult,
    Embeddings,
    Message,
    StreamEvent,
    Usage,
    UsageReport,
    completion_events,
)

T = TypeVar("T")


class ChatStream:
    """A running streamed call: iterate its events; `result` is set once it has ended.

    Use it as an async context manager (or call `aclose()`) to stop early: the upstream request is
    closed at once and the partial call is still accounted as `cancelled`.
    """

    def __init__(self, events: AsyncGenerator[StreamEvent, None], outcome: CallOutcome) -> None:
        self._events = events
        self._outcome = outcome

    def __aiter__(self) -> AsyncGenerator[StreamEvent, None]:
        """The events themselves: `async for` then resumes one generator per event, not two."""
        return self._events

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def first(self) -> StreamEvent | None:
        """The first event (None for an empty stream), closing the stream if getting it fails.

        Servers await it before answering, so a failure before the first byte keeps its status.
        """
        try:
            return await anext(self)
        except StopAsyncIteration:
            return None
        except BaseException:
            await self.aclose()
            raise

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def result(self) -> ChatResult | None:
        return self._outcome.result

    @property
    def log_id(self) -> str:
        """The id the call's usage row will have (known before the first event)."""
        return self._outcome.log_id

    @property
    def outcome(self) -> CallOutcome:
        """The running call's record, for a stream that relays this one (see `ReplyStream`)."""
        return self._outcome


class ChatService:
    def __init__(
        self,
        *,
        configurations: ConfigurationService,
        providers: ProviderFactory,
        writer: UsageWriter,
        pricing: Pricing,
        retry: RetryPolicy,
        first_byte_timeout: float,
        idle_timeout: float,
        guards: Sequence[Guard] = (),
        observers: Sequence[Callable[[UsageRecord], None]] = (),
    ) -> None:
        self._configurations = configurations
        self._providers = providers
        self._writer = writer
        self._pricing = pricing
        self._retry = retry
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._guards = tuple(guards)
        self._observers = tuple(observers)

    def stream(self, call: ChatCall) -> ChatStream:
        outcome = CallOutcome(call=replace(call, operation=call.operation or "stream"))
        return ChatStream(self._stream_events(outcome), outcome)

    async def chat(self, call: ChatCall, *, outcome: CallOutcome | None = None) -> ChatResult:
        """A whole call through the adapter's plain (non-streaming) endpoint.

        Pass your own `outcome` to see, after a failure, whether the call reached a provider
        (`outcome.result` is then the accounted error) or was refused before any was asked.
        """
        outcome = outcome or CallOutcome(call=call)
        admission: Admission | None = None
        try:
            for configuration in await self._resolve(call):
                outcome.restart(configuration)
                admission = await self._admit(configuration, call)
                try:
                    completion = await self._with_retries(outcome, lambda: self._complete_once(outcome))
                except ProviderError as error:
                    outcome.error = error
                    await _release(admission)
                    admission = None
                    continue
                outcome.error = None
                outcome.builder.add_all(completion_events(completion))
                return await self._account(outcome, admission)
            raise _final_error(outcome)
        except BaseException as error:
            if outcome.result is None:
                await self._account_failure(outcome, error, admission)
            raise

    async def _stream_events(self, outcome: CallOutcome) -> AsyncGenerator[StreamEvent, None]:
        call = outcome.call
        admission: Admission | None = None
        try:
            for configuration in await self._resolve(call):
                outcome.restart(configuration)
                admission = await self._admit(configuration, call)
                try:
                    events, first = await self._with_retries(outcome, lambda: self._open_stream(outcome))
                except ProviderError as error:
                    outcome.error = error
                    await _release(admission)
                    admission = None
                    continue
                outcome.error = None
                # The relay, inlined: every event passes through here, so one generator fewer per event.
                watchdog = _IdleWatchdog(self._idle_timeout)
                try:
                    event = first
                    while event is not None:
                        outcome.builder.add(event)
                        yield event
                        watchdog.waiting()
                        try:
                            event = await anext(events, None)
                        except asyncio.CancelledError:
                            watchdog.raise_if_expired(outcome)
                            raise
                        watchdog.relaying()
                finally:
                    watchdog.close()
                    # Shielded: under a cancelled anyio scope (a server whose client hung up) every
                    # await is cancelled again, and the upstream connection would be left open.
                    with anyio.CancelScope(shield=True):
                        await events.aclose()
                await self._account(outcome, admission)
                return
            raise _final_error(outcome)
        except BaseException as error:
            if outcome.result is None:
                await self._account_failure(outcome, error, admission)
            raise

    async def _open_stream(
        self, outcome: CallOutcome
    ) -> tuple[AsyncGenerator[StreamEvent, None], StreamEvent | None]:
        """Start the upstream stream and wait for its first event (first-byte timeout)."""
        assert outcome.configuration is not None
        provider = self._providers.build(outcome.configuration)
        events = provider.stream(self._request(outcome))
        try:
            async with asyncio.timeout(self._first_byte_timeout):
                first = await anext(events)
        except StopAsyncIteration:
            first = None
        except TimeoutError:
            await events.aclose()
            raise UpstreamTimeoutError(
                f"no first byte within {self._first_byte_timeout:g}s", provider=provider.name
            ) from None
        except BaseException:
            await events.aclose()
            raise
        outcome.mark_first_event()
        return events, first

    async def _complete_once(self, outcome: CallOutcome) -> Completion:
        assert outcome.configuration is not None
        provider = self._providers.build(outcome.configuration)
        completion = await self._within_first_byte_timeout(
            provider.name, provider.complete(self._request(outcome))
        )
        outcome.mark_first_event()
        return completion

    async def _with_retries(self, outcome: CallOutcome, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` until it succeeds or the retry policy gives up; re-raise the last error."""
        waited = 0.0
        tries = 0
        while True:
            tries += 1
            outcome.attempts += 1
            try:
                return await attempt()
            except ProviderError as error:
                delay = self._retry.delay(error, tries, waited)
                if delay is None:
                    raise
                waited += delay
                await asyncio.sleep(delay)

    async def _resolve(self, call: ChatCall) -> list[ResolvedConfiguration]:
        chain = await self._configurations.resolve_chain(
            call.configuration, application_id=call.context.application_id
        )
        return chain if call.follow_fallbacks else chain[:1]

    async def _within_first_byte_timeout(self, provider: str, call: Awaitable[T]) -> T:
        """Whole (non-streamed) calls get the first-byte limit: their first byte is their answer."""
        try:
            async with asyncio.timeout(self._first_byte_timeout):
                return await call
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"no answer within {self._first_byte_timeout:g}s", provider=provider
            ) from None

    async def _admit(self, configuration: ResolvedConfiguration, call: ChatCall) -> Admission | None:
        admissions = [await guard.admit(configuration, call) for guard in self._guards]
        held = [admission for admission in admissions if admission is not None]
        return _Admissions(held) if held else None

    def _request(self, outcome: CallOutcome) -> ChatRequest:
        assert outcome.configuration is not None
        call = outcome.call
        return ChatRequest(
            model=outcome.configuration.model,
            messages=call.messages,
            params=outcome.configuration.params.merged(call.overrides),
            tools=call.tools,
            tool_choice=call.tool_choice,
        )

    def _quote(self, configuration: ResolvedConfiguration, usage: Usage, model: str | None) -> CostQuote:
        free = self._providers.is_free(configuration)
        quote = self._pricing.quote(
            provider=configuration.provider,
            model=configuration.model,
            usage=usage,
            free=free,
            override=configuration.price_override,
        )
        if quote.unpriced and model and model != configuration.model:
            quote = self._pricing.quote(
                provider=configuration.provider, model=model, usage=usage, free=free, override=None
            )
        return quote

    async def _account(self, outcome: CallOutcome, admission: Admission | None) -> ChatResult:
        usage = outcome.usage()
        configuration = outcome.configuration
        assert configuration is not None
        quote = self._quote(configuration, usage, outcome.builder.model)
        record = self._record(outcome, usage, quote)
        outcome.result = ChatResult(
            text=outcome.builder.text,
            tool_calls=outcome.builder.tool_calls,
            usage=usage,
            cost=quote.cost,
            log_id=record.id,
            configuration=configuration.slug,
            provider=configuration.provider,
            model=outcome.builder.model or configuration.model,
            finish_reason=record.finish_reason,
            status=outcome.status,
            latency_ms=record.latency_ms,
            ttft_ms=record.ttft_ms,
            attempts=outcome.attempts,
        )
        await self._writer.put(record)
        for observe in self._observers:
            observe(record)
        if admission is not None:
            await admission.settle(usage, quote.cost)
        return outcome.result

    async def _account_failure(
        self, outcome: CallOutcome, error: BaseException, admission: Admission | None = None
    ) -> None:
        """Account a call that ended in an error or was abandoned by its caller.

        A call refused before any provider was asked (unknown configuration, a guard) spent
        nothing and gets no usage row.
        """
        if outcome.configuration is None or outcome.attempts == 0:
            await _release(admission)
            return
        if isinstance(error, GeneratorExit | asyncio.CancelledError):
            outcome.status = "cancelled"
        else:
            outcome.status = "error"
            if isinstance(error, LLMManagerError):
                outcome.error = error
            elif outcome.error is None:
                outcome.error = LLMManagerError(f"{type(error).__name__}: {error}")
        with contextlib.suppress(Exception):
            await asyncio.shield(self._account(outcome, admission))

    def _record(self, outcome: CallOutcome, usage: Usage, quote: CostQuote) -> UsageRecord:
        configuration = outcome.configuration
        assert configuration is not None
        secrets = (configuration.api_key,) if configuration.api_key else ()
        finish = outcome.builder.finish_reason
        if outcome.status != "ok":
            finish = outcome.status if outcome.status == "cancelled" else "error"
        return UsageRecord(
            id=outcome.log_id,
            operation=outcome.call.operation,
            configuration_id=configuration.id,
            configuration_slug=configuration.slug,
            requested_configuration=outcome.call.configuration or configuration.slug,
            application_id=outcome.call.context.application_id,
            api_token_id=outcome.call.context.token_id,
            provider=configuration.provider,
            model=outcome.builder.model or configuration.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            tokens_estimated=usage.estimated,
            cost=quote.cost,
            unpriced=quote.unpriced,
            latency_ms=outcome.latency_ms,
            ttft_ms=outcome.ttft_ms,
            status=outcome.status,
            error_class=type(outcome.error).__name__ if outcome.error else None,
            error_message=outcome.error_message(secrets),
            finish_reason=finish,
            attempts=max(outcome.attempts, 1),
            response_chars=outcome.builder.text_chars,
            user_id=_clip(outcome.call.context.user_id, USER_ID_LENGTH),
            conversation_id=_clip(outcome.call.context.conversation_id, CONVERSATION_ID_LENGTH),
            template_name=outcome.call.template_name,
            template_version=outcome.call.template_version,
        )

    async def embed(
        self, configuration: str | None, inputs: Sequence[str], context: CallContext | None = None
    ) -> EmbeddingResult:
        call = ChatCall(
            configuration=configuration,
            messages=tuple(Message(role="user", content=text) for text in inputs),
            context=context or CallContext(),
            operation="embed",
        )
        outcome = CallOutcome(call=call)
        admission: Admission | None = None
        try:
            for resolved in await self._resolve(call):
                outcome.restart(resolved)
                admission = await self._admit(resolved, call)
                provider, model = self._providers.build(resolved), resolved.model
                try:
                    embeddings = await self._with_retries(
                        outcome, functools.partial(self._embed_once, provider, model, inputs)
                    )
                    outcome.error = None
                except ProviderError as error:
                    outcome.error = error
                    await _release(admission)
                    admission = None
                    continue
                outcome.mark_first_event()
                usage = embeddings.usage or Usage(
                    prompt_tokens=sum(estimate_tokens(text) for text in inputs), estimated=True
                )
                outcome.builder.add(UsageReport(usage=usage))
                result = await self._account(outcome, admission)
                return EmbeddingResult(
                    vectors=embeddings.vectors,
                    usage=result.usage,
                    cost=result.cost,
                    log_id=result.log_id,
                    configuration=result.configuration,
                    model=embeddings.model or resolved.model,
                )
            raise _final_error(outcome)
        except BaseException as error:
            if outcome.result is None:
                await self._account_failure(outcome, error, admission)
            raise

    async def _embed_once(self, provider: Provider, model: str, inputs: Sequence[str]) -> Embeddings:
        return await self._within_first_byte_timeout(provider.name, provider.embed(model, inputs))


class _IdleWatchdog:
    """The idle timeout of a relayed stream, with one timer per stream instead of one per event.

    `asyncio.timeout` around each event cost a timer, a context manager and a heap push per
    chunk, a measurable share of relaying many streams. Here the timer stays armed and, when it
    fires, either cancels the task still waiting since the deadline (exactly what
    `asyncio.timeout` would do) or re-arms itself for the current wait. While the consumer holds
    an event (between `relaying()` and the next `waiting()`) the clock does not run.
    """

    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._task: asyncio.Task[object] | None = None
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False

    def waiting(self) -> None:
        """The relay starts waiting for the next upstream event in the current task."""
        self._task = asyncio.current_task(self._loop)  # with the loop: no getpid() system call
        self._since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._since + self._timeout, self._check)

    def relaying(self) -> None:
        self._since = None

    def raise_if_expired(self, outcome: CallOutcome) -> None:
        """Turn a cancellation caught while waiting into the timeout, if it was this timeout's
        (and only its); any other cancellation is left for the caller to re-raise."""
        if self._fired and self._task is not None and self._task.uncancel() == 0:
            raise UpstreamTimeoutError(
                f"stream idle for more than {self._timeout:g}s",
                provider=outcome.configuration.provider if outcome.configuration else "",
            ) from None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._since is None or self._task is None:
            return
        deadline = self._since + self._timeout
        if self._loop.time() >= deadline:
            self._fired = True
            self._task.cancel()
        else:
            self._timer = self._loop.call_at(deadline, self._check)


class _Admissions:
    """Several guards' admissions settled or released together."""

    def __init__(self, admissions: Sequence[Admission]) -> None:
        self._admissions = admissions

    async def settle(self, usage: Usage, cost: Decimal | None) -> None:
        for admission in self._admissions:
            await admission.settle(usage, cost)

    async def release(self) -> None:
        for admission in self._admissions:
            await admission.release()


async def _release(admission: Admission | None) -> None:
    if admission is not None:
        await admission.release()


def _clip(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def _final_error(outcome: CallOutcome) -> LLMManagerError:
    return outcome.error or LLMManagerError("no configuration could answer")
