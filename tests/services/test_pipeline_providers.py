"""The call pipeline against every provider's byte-faithful fake: what reaches the caller and the usage row."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType

import pytest

from llm_manager import LLMManager, ProviderError, TextDelta
from llm_manager.errors import AuthenticationError, UnavailableError
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.usage import UsageRow
from llm_manager.settings import Settings
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import anthropic, ollama, openai, openrouter

API_KEY = "sk-test-abcdefghijklmnop"


@dataclass(frozen=True)
class Case:
    provider: str
    model: str
    transcripts: ModuleType
    priced: bool


CASES = [
    Case("openai", "gpt-4o-mini", openai, priced=True),
    Case("openrouter", "x-ai/grok-4", openrouter, priced=True),
    Case("anthropic", "claude-sonnet-4-5", anthropic, priced=True),
    Case("ollama", "llama3.2", ollama, priced=True),
]


@pytest.fixture(params=CASES, ids=[case.provider for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    case: Case = request.param
    return case


async def _configure(
    llm: LLMManager, case: Case, upstream: FakeUpstream, slug: str = "primary", **extra: object
) -> None:
    await llm.configurations.create(
        ConfigurationCreate(
            slug=slug,
            provider=case.provider,
            model=case.model,
            base_url=case.transcripts.base_url(upstream.url),
            api_key=API_KEY,  # type: ignore[arg-type]
            **extra,  # type: ignore[arg-type]
        )
    )


async def _only_row(llm: LLMManager) -> UsageRow:
    page = await llm.usage.list_page()
    assert len(page.rows) == 1, page.rows
    return page.rows[0]


async def _texts(stream: AsyncIterator[object]) -> list[str]:
    return [event.text async for event in stream if isinstance(event, TextDelta)]


async def test_streamed_text_reaches_caller_and_is_accounted(
    llm: LLMManager, upstream: FakeUpstream, case: Case
) -> None:
    upstream.add("POST", case.transcripts.CHAT_PATH, case.transcripts.text_stream())
    await _configure(llm, case, upstream)

    stream = llm.stream("primary", "hello")
    texts = await _texts(stream)

    expected = case.transcripts.TEXT_STREAM_USAGE
    assert "".join(texts) == case.transcripts.TEXT_STREAM_TEXT
    assert len(texts) == case.transcripts.TEXT_STREAM_CHUNKS
    result = stream.result
    assert result is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert not result.usage.estimated
    row = await _only_row(llm)
    assert row.id == result.log_id
    assert (row.status, row.finish_reason, row.attempts) == ("ok", "stop", 1)
    assert (row.prompt_tokens, row.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    assert row.ttft_ms is not None
    assert row.ttft_ms <= row.latency_ms
    assert row.response_chars == len(case.transcripts.TEXT_STREAM_TEXT)
    assert row.cost is not None
    assert not row.unpriced
    if case.provider == "ollama":
        assert row.cost == 0
    else:
        assert row.cost > 0


async def test_streamed_tool_calls_are_assembled(llm: LLMManager, upstream: FakeUpstream, case: Case) -> None:
    upstream.add("POST", case.transcripts.CHAT_PATH, case.transcripts.tool_call_stream())
    await _configure(llm, case, upstream)

    stream = llm.stream("primary", "What is the weather?")
    async for _ in stream:
        pass

    assert stream.result is not None
    assert stream.result.tool_calls == case.transcripts.TOOL_CALL_STREAM_CALLS
    assert stream.result.finish_reason == "tool_calls"
    row = await _only_row(llm)
    assert row.finish_reason == "tool_calls"


async def test_mid_stream_error_is_raised_and_accounted(
    llm: LLMManager, upstream: FakeUpstream, case: Case
) -> None:
    upstream.add("POST", case.transcripts.CHAT_PATH, case.transcripts.mid_stream_error())
    await _configure(llm, case, upstream)

    received: list[str] = []
    with pytest.raises(case.transcripts.MID_STREAM_ERROR_CLASS):
        async for event in llm.stream("primary", "hello"):
            if isinstance(event, TextDelta):
                received.append(event.text)

    assert "".join(received) == case.transcripts.MID_STREAM_ERROR_TEXT
    row = await _only_row(llm)
    assert row.status == "error"
    assert row.error_class == case.transcripts.MID_STREAM_ERROR_CLASS.__name__
    assert row.response_chars == len(case.transcripts.MID_STREAM_ERROR_TEXT)
    assert row.attempts == 1, "nothing is retried once text reached the caller"
    assert len(upstream.requests) == 1


async def test_consumer_abort_closes_upstream_and_is_billed_as_cancelled(
    llm: LLMManager, upstream: FakeUpstream, case: Case
) -> None:
    upstream.add("POST", case.transcripts.CHAT_PATH, case.transcripts.text_stream(chunk_delay=0.05))
    await _configure(llm, case, upstream)

    received: list[str] = []
    async with llm.stream("primary", "hello") as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                received.append(event.text)
                if len(received) == 3:
                    break

    assert upstream.aborted.wait(5), "the upstream request was not closed"
    row = await _only_row(llm)
    assert row.status == "cancelled"
    assert row.response_chars == len("".join(received))
    assert row.completion_tokens > 0
    assert row.tokens_estimated, "the provider never reported the partial completion's tokens"
    assert stream.result is not None
    assert stream.result.status == "cancelled"


async def test_rate_limit_then_success_is_one_row_with_two_attempts(
    llm: LLMManager, upstream: FakeUpstream, case: Case
) -> None:
    upstream.add(
        "POST",
        case.transcripts.CHAT_PATH,
        case.transcripts.error_reply("rate_limited", retry_after="0"),
        case.transcripts.text_stream(),
    )
    await _configure(llm, case, upstream)

    texts = await _texts(llm.stream("primary", "hello"))

    assert "".join(texts) == case.transcripts.TEXT_STREAM_TEXT
    row = await _only_row(llm)
    assert (row.status, row.attempts) == ("ok", 2)
    assert len(upstream.requests) == 2


async def test_fallback_answers_when_primary_fails_before_first_byte(
    llm: LLMManager, upstream: FakeUpstream, case: Case
) -> None:
    with FakeUpstream() as broken:
        broken.add("POST", case.transcripts.CHAT_PATH, case.transcripts.error_reply("authentication"))
        upstream.add("POST", case.transcripts.CHAT_PATH, case.transcripts.text_stream())
        await _configure(llm, case, upstream, slug="backup")
        await _configure(llm, case, broken, slug="primary", fallbacks=["backup"])

        texts = await _texts(llm.stream("primary", "hello"))

    assert "".join(texts) == case.transcripts.TEXT_STREAM_TEXT
    row = await _only_row(llm)
    assert (row.configuration, row.requested_configuration) == ("backup", "primary")
    assert (row.status, row.attempts) == ("ok", 2)


async def test_every_error_kind_maps_and_is_accounted(
    settings: Settings, upstream: FakeUpstream, case: Case
) -> None:
    async with LLMManager.open(settings.model_copy(update={"max_retries": 0})) as llm:
        await _configure(llm, case, upstream)
        for kind, expected in case.transcripts.ERROR_KINDS.items():
            upstream.add("POST", case.transcripts.CHAT_PATH, case.transcripts.error_reply(kind))
            with pytest.raises(expected) as caught:
                await llm.chat("primary", "hello")
            assert isinstance(caught.value, ProviderError)
            assert caught.value.provider == case.provider
        page = await llm.usage.list_page()
    assert len(page.rows) == len(case.transcripts.ERROR_KINDS)
    assert {row.status for row in page.rows} == {"error"}
    assert {row.error_class for row in page.rows} == {
        cls.__name__ for cls in case.transcripts.ERROR_KINDS.values()
    }


async def test_non_streamed_chat(llm: LLMManager, upstream: FakeUpstream, case: Case) -> None:
    upstream.add("POST", case.transcripts.CHAT_PATH, case.transcripts.text_completion())
    await _configure(llm, case, upstream)

    result = await llm.chat("primary", "hello")

    assert result.text == case.transcripts.TEXT_COMPLETION_TEXT
    expected = case.transcripts.TEXT_COMPLETION_USAGE
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    row = await _only_row(llm)
    assert (row.operation, row.status) == ("chat", "ok")


async def test_retry_honours_retry_after(llm: LLMManager, upstream: FakeUpstream) -> None:
    case = CASES[0]
    upstream.add(
        "POST", openai.CHAT_PATH, openai.error_reply("rate_limited", retry_after="1"), openai.text_stream()
    )
    await _configure(llm, case, upstream)

    started = time.perf_counter()
    await _texts(llm.stream("primary", "hello"))

    assert time.perf_counter() - started >= 1.0
    row = await _only_row(llm)
    assert (row.attempts, row.status) == (2, "ok")


async def test_connection_refused_falls_back(llm: LLMManager, upstream: FakeUpstream) -> None:
    case = CASES[0]
    upstream.add("POST", openai.CHAT_PATH, openai.text_stream())
    await _configure(llm, case, upstream, slug="backup")
    await llm.configurations.create(
        ConfigurationCreate(
            slug="primary",
            provider="openai",
            model="gpt-4o-mini",
            base_url=FakeUpstream.closed_port_url() + "/v1",
            api_key=API_KEY,  # type: ignore[arg-type]
            fallbacks=["backup"],
        )
    )

    stream = llm.stream("primary", "hello")
    await _texts(stream)

    assert stream.result is not None
    assert stream.result.configuration == "backup"
    assert stream.result.attempts == 3 + 1  # the primary's try and two retries, then the fallback


async def test_all_configurations_failing_raises_the_last_error_and_records_one_row(
    llm: LLMManager, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.error_reply("authentication"))
    await _configure(llm, CASES[0], upstream)

    with pytest.raises(AuthenticationError):
        await llm.chat("primary", "hello")

    row = await _only_row(llm)
    assert (row.status, row.error_class, row.completion_tokens) == ("error", "AuthenticationError", 0)


async def test_missing_usage_is_estimated_and_flagged(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.text_stream_without_usage())
    await llm.configurations.create(
        ConfigurationCreate(
            slug="llamacpp",
            provider="openai-compatible",
            model="qwen2.5-7b-instruct",
            base_url=openai.base_url(upstream.url),
        )
    )

    texts = await _texts(llm.stream("llamacpp", "hello"))

    row = await _only_row(llm)
    assert "".join(texts) == openai.TEXT_STREAM_TEXT
    assert row.tokens_estimated
    assert row.completion_tokens > 0
    assert row.prompt_tokens > 0
    assert row.cost is None, "an unknown self-hosted model is unpriced, not $0"
    assert row.unpriced


async def test_first_byte_timeout_is_an_error(settings: Settings, upstream: FakeUpstream) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.text_stream(first_byte_delay=2))
    quick = settings.model_copy(update={"first_byte_timeout": 0.3, "max_retries": 0})
    async with LLMManager.open(quick) as llm:
        await _configure(llm, CASES[0], upstream)
        with pytest.raises(ProviderError) as caught:
            async for _ in llm.stream("primary", "hello"):
                pass
        row = await _only_row(llm)
    assert caught.value.code == "timeout"
    assert (row.status, row.error_class) == ("error", "UpstreamTimeoutError")


async def test_dropped_connection_mid_stream_is_an_error(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.text_stream(drop_after=4))
    await _configure(llm, CASES[0], upstream)

    with pytest.raises(UnavailableError):
        async for _ in llm.stream("primary", "hello"):
            pass

    row = await _only_row(llm)
    assert row.status == "error"
    assert row.attempts == 1


async def test_price_override_wins(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("POST", openai.CHAT_PATH, openai.text_stream())
    await _configure(llm, CASES[0], upstream, input_price=Decimal(1), output_price=Decimal(2))

    [_ async for _ in llm.stream("primary", "hello")]

    row = await _only_row(llm)
    usage = openai.TEXT_STREAM_USAGE
    assert row.cost == (Decimal(usage.prompt_tokens) * 1 + Decimal(usage.completion_tokens) * 2) / 1_000_000


async def test_openrouter_reported_cost_is_used(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("POST", openrouter.CHAT_PATH, openrouter.text_stream())
    await _configure(llm, CASES[1], upstream)

    [_ async for _ in llm.stream("primary", "hello")]

    row = await _only_row(llm)
    assert row.cost == openrouter.TEXT_STREAM_USAGE.reported_cost
